//! `[radius]` and `[policy] exempt_subscribers*`: parsed, and every problem
//! named by file:line and key.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use super::Config;

fn dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("op25b-radius-config-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn secret(dir: &Path, name: &str, mode: u32) {
    let path = dir.join(name);
    fs::write(&path, "s3cret\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_full_section_parses() {
    let dir = dir("full");
    secret(&dir, "nas.secret", 0o600);
    let text = r#"[radius]
accounting_listen = "127.0.0.1:1813"
coa_listen = ""
session_state_file = "sessions.json"
max_sessions = 500
receive_buffer_bytes = 1048576
exempt_filter_id = "op25b-exempt"
[[radius.clients]]
address = "192.0.2.10/32"
secret_file = "nas.secret"
"#;
    let config = Config::parse(&dir.join("op25b.toml"), text).unwrap();
    let config = config.radius.unwrap();
    assert_eq!(
        config.accounting_listen,
        Some("127.0.0.1:1813".parse().unwrap())
    );
    assert_eq!(config.coa_listen, None);
    assert_eq!(config.session_state_file, dir.join("sessions.json"));
    assert_eq!(config.max_sessions, 500);
    assert_eq!(config.receive_buffer_bytes, 1 << 20);
    assert_eq!(config.clients[0].secret, b"s3cret");
    assert!(config.client("192.0.2.10".parse().unwrap()).is_some());
    assert!(config
        .client("::ffff:192.0.2.10".parse().unwrap())
        .is_some());
    assert!(config.client("192.0.2.11".parse().unwrap()).is_none());
    assert!(config.is_exempt_attribute(b"op25b-exempt"));
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "Debug leaks the secret"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_values_and_readable_secrets_are_named() {
    let dir = dir("bad");
    secret(&dir, "open.secret", 0o644);
    let text = r#"[radius]
accounting_listen = "nowhere"
max_sessions = 0
exempt_filter_id = ""
receive_buffer_bytes = 4096
[[radius.clients]]
address = "192.0.2.10/24"
secret_file = "open.secret"
[[radius.clients]]
address = "192.0.2.20/32"
secret_file = "missing.secret"
"#;
    let e = Config::parse(&dir.join("op25b.toml"), text).unwrap_err();
    let text = e.to_string();
    for expected in [
        "op25b.toml:2: radius.accounting_listen",
        "op25b.toml:3: radius.max_sessions",
        "op25b.toml:4: radius.exempt_filter_id",
        "op25b.toml:5: radius.receive_buffer_bytes: 4096 is not in 65536..=268435456",
        "op25b.toml:7: radius.clients[0].address: host bits set in 192.0.2.10/24",
        "open.secret: radius.clients[0].secret_file: mode 644 lets group or others read",
        "missing.secret: radius.clients[1].secret_file",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    assert_eq!(e.problems.len(), 7, "{text}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn subscriber_lists_and_files() {
    let dir = dir("subs");
    fs::write(
        dir.join("subs.txt"),
        "# business plans\nbob@example.jp\ncarol@example.jp expires_at=2000-01-01T00:00:00Z # gone\n",
    )
    .unwrap();
    let path = dir.join("op25b.toml");
    let config = Config::parse(
        &path,
        "[policy]\nexempt_subscribers = [\"alice@example.jp\"]\nexempt_subscribers_files = [\"subs.txt\"]\n",
    )
    .unwrap();
    let list = &config.exempt_subscribers;
    let active = list.active(900_000_000);
    assert!(active.contains("alice@example.jp"));
    assert!(active.contains("bob@example.jp"));
    assert!(active.contains("carol@example.jp"), "before its expiry");
    assert!(!list.active(2_000_000_000).contains("carol@example.jp"));
    assert_eq!(list.next_expiry(0), Some(946_684_800));
    assert!(
        config.list_files.contains(&dir.join("subs.txt")),
        "watched for reload"
    );

    fs::write(dir.join("bad.txt"), "bob@example.jp\n\nbad name here\n").unwrap();
    let e = Config::parse(
        &path,
        "[policy]\nexempt_subscribers = [\"alice@example.jp\", \"\"]\nexempt_subscribers_files = [\"bad.txt\", \"absent.txt\", \"\"]\n",
    )
    .unwrap_err();
    let text = e.to_string();
    for expected in [
        "op25b.toml:2: policy.exempt_subscribers[1]: empty subscriber name",
        "bad.txt:3: unexpected \"name\"",
        "absent.txt: cannot read",
        "op25b.toml:3: policy.exempt_subscribers_files[2]: empty file name",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    assert_eq!(e.problems.len(), 4, "{text}");
    assert!(
        e.list_files.contains(&dir.join("bad.txt")),
        "a fix is noticed"
    );
    let e = Config::parse(
        &path,
        "[policy]\nexempt_subscribers_files = [\"/dev/null\"]\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("/dev/null: not a regular file"),
        "{e}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn radius_keys_are_checked_by_toml_and_by_line() {
    let dir = dir("agent");
    let path = dir.join("op25b.toml");
    let e = Config::parse(&path, "[radius]\naccounting_listen = \"127.0.0.1:1813\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("radius.clients: no [[radius.clients]]"), "{e}");
    let e = Config::parse(&path, "[radius]\nmax_sessions = -1\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("op25b.toml:2: radius.max_sessions: -1 is not in"),
        "{e}"
    );
    let e = Config::parse(&path, "[radius]\nsecret = 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("op25b.toml:2") && e.contains("unknown field"),
        "{e}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_receive_buffer_past_the_bound_is_named() {
    let dir = dir("rcvbuf");
    // 1 GiB: past the bound (the kernel itself halves requests past INT_MAX / 2).
    let text = "[radius]\nreceive_buffer_bytes = 1073741824\n";
    let e = Config::parse(&dir.join("op25b.toml"), text).unwrap_err();
    assert!(
        e.to_string()
            .contains("op25b.toml:2: radius.receive_buffer_bytes: 1073741824 is not in"),
        "{e}"
    );
    fs::remove_dir_all(dir).unwrap();
}
