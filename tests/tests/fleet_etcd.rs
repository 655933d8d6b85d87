//! Fleet commands against a real etcd (Debian's etcd-server on 127.0.0.1
//! with a temporary data dir): push with dry-run and diff, a million-prefix
//! pool list in chunks, grants (by prefix and by subscriber) with their
//! audit lines, lost-update protection, refused values named by key. No BPF, no namespaces.
use std::{fmt::Write as _, fs, process::Command};

use op25b_agent::fleet::{client, codec::FleetLists, layout::Layout};
use op25b_tests::{agent_bin, etcd::Etcd, TempDir};

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(agent_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (ok, out, err) = cli(args);
    assert!(ok, "op25b-agent {args:?}: {out}{err}");
    out
}

fn config(dir: &TempDir, etcd: &Etcd, policy: &str) -> String {
    let path = dir.path().join("fleet.toml");
    fs::write(
        &path,
        format!("{policy}\n[fleet]\netcd_endpoints = [\"{}\"]\nprefix = \"/t\"\nnode_name = \"laptop\"\nsnapshot_file = \"snap.json\"\n", etcd.url),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn get(etcd: &Etcd, key: &str) -> Vec<(String, String)> {
    let key = key.to_owned();
    etcd.with_client(move |c| {
        Box::pin(async move {
            c.kv_client()
                .max_decoding_message_size(1 << 30)
                .get(key, Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .unwrap()
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        kv.key_str().unwrap().to_owned(),
                        kv.value_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
    })
}

#[test]
fn push_shows_the_diff_publishes_in_chunks_and_refuses_a_stale_publish() {
    let etcd = Etcd::start_local();
    let dir = TempDir::new("fleet-push");
    // A big pool list, as a planner would publish it (the bench rolls out 1,000,000).
    let mut big = String::with_capacity(5_000_000);
    for i in 0..250_000u32 {
        let a = 0x6440_0000u32 + (i << 4); // /28s inside 100.64.0.0/10
        let _ = writeln!(big, "{}/28", std::net::Ipv4Addr::from(a));
    }
    fs::write(dir.path().join("pool.txt"), big).unwrap();
    let policy = "[policy]\nexempt = [\"100.64.1.7/32\"]\n[[policy.pools]]\nname = \"ftth\"\naction = \"monitor\"\nfiles = [\"pool.txt\"]\n";
    let cfg = config(&dir, &etcd, policy);

    let dry = ok(&["fleet", "push", "--dry-run", "--config", &cfg]);
    assert!(
        dry.contains("pool ftth: +250000 -0")
            && dry.contains("exempt: +1 -0")
            && dry.contains("dry run"),
        "{dry}"
    );
    assert!(
        get(&etcd, "/t/policy/").is_empty(),
        "a dry run published something"
    );

    let pushed = ok(&["fleet", "push", "--config", &cfg]);
    assert!(
        pushed.contains("published at revision") && pushed.contains("250001 prefixes"),
        "{pushed}"
    );
    let chunks = get(&etcd, "/t/policy/lists/chunks/");
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    assert!(
        chunks.iter().all(|(_, v)| v.len() <= 1_000_000),
        "a chunk over 1 MB"
    );
    let audit = get(&etcd, "/t/audit/");
    assert!(
        audit
            .iter()
            .any(|(_, v)| v.contains("\"action\":\"publish\"") && v.contains("cli:")),
        "{audit:?}"
    );

    // Unchanged: nothing to do. One prefix more: one or two chunks rewritten.
    assert!(ok(&["fleet", "push", "--config", &cfg]).contains("no changes"));
    fs::write(
        &cfg,
        fs::read_to_string(&cfg)
            .unwrap()
            .replace("100.64.1.7/32\"", "100.64.1.7/32\", \"100.64.1.8/32\""),
    )
    .unwrap();
    let again = ok(&["fleet", "push", "--config", &cfg]);
    assert!(
        again.contains("exempt: +1 -0") && again.contains("chunks 1 written"),
        "{again}"
    );

    // A check-config error is refused with file:line, nothing published.
    fs::write(dir.path().join("pool.txt"), "100.64.0.1/28\n").unwrap();
    let (success, out, err) = cli(&["fleet", "push", "--config", &cfg]);
    assert!(
        !success && err.contains("pool.txt:1: host bits set"),
        "{out}{err}"
    );

    // Two planners: a publish based on a stale read changes nothing.
    let url = etcd.url.clone();
    let stale = etcd.with_client(move |c| {
        Box::pin(async move {
            let _ = url;
            let layout = Layout::new("/t");
            let (_, lists, revision) = client::read_lists(&c, &layout).await.unwrap();
            let audit = client::audit("a", "a", "publish", "lists", "", None, "");
            client::publish_lists(&c, &layout, &FleetLists::default(), revision, &audit)
                .await
                .unwrap();
            let stale = client::publish_lists(&c, &layout, &lists, revision, &audit).await;
            stale.map(|_| ()).map_err(|e| e.to_string())
        })
    });
    assert!(
        stale.unwrap_err().contains("someone else published"),
        "lost update"
    );
}

#[test]
fn grants_from_a_laptop_are_audited_and_bad_values_are_named() {
    let etcd = Etcd::start_local();
    let dir = TempDir::new("fleet-grants");
    let cfg = config(&dir, &etcd, "");
    ok(&[
        "fleet",
        "exempt",
        "add",
        "100.64.1.2",
        "--ttl",
        "7d",
        "--reason",
        "ticket 42",
        "--config",
        &cfg,
    ]);
    ok(&[
        "fleet",
        "allow-destination",
        "add",
        "2001:db8:25::26/128",
        "--config",
        &cfg,
    ]);
    let list = ok(&["fleet", "exempt", "list", "--config", &cfg]);
    assert!(
        list.contains("100.64.1.2/32") && list.contains("ticket 42") && list.contains("cli:"),
        "{list}"
    );
    let grant = get(&etcd, "/t/policy/grants/exempt/100.64.1.2/32");
    assert_eq!(grant.len(), 1, "{grant:?}");
    let audit = get(&etcd, "/t/audit/");
    assert!(
        audit
            .iter()
            .any(|(_, v)| v.contains("\"prefix\":\"100.64.1.2/32\"") && v.contains("ticket 42")),
        "{audit:?}"
    );
    assert!(get(&etcd, "/t/policy/changed").len() == 1);

    // Malformed values are reported with their key, the good ones listed.
    etcd.put("/t/policy/grants/exempt/100.64.1.9/32", "{not json");
    let (success, out, err) = cli(&["fleet", "exempt", "list", "--config", &cfg]);
    assert!(success && out.contains("100.64.1.2/32"), "{out}{err}");
    assert!(
        err.contains("/t/policy/grants/exempt/100.64.1.9/32: not a grant"),
        "{err}"
    );

    ok(&["fleet", "exempt", "del", "100.64.1.2/32", "--config", &cfg]);
    assert!(get(&etcd, "/t/policy/grants/exempt/100.64.1.2/32").is_empty());
    let (success, _, err) = cli(&["fleet", "exempt", "del", "100.64.1.2/32", "--config", &cfg]);
    assert!(!success && err.contains("is not granted"), "{err}");
    let (success, _, err) = cli(&["fleet", "exempt", "add", "100.64.1.1/24", "--config", &cfg]);
    assert!(!success && err.contains("host bits set"), "{err}");
    // Broader than the prefix limits: every agent would refuse it, so the
    // laptop must not write it (nor audit it as granted).
    let audited = get(&etcd, "/t/audit/").len();
    let granted = get(&etcd, "/t/policy/grants/exempt/").len();
    for everyone in ["0.0.0.0/0", "::/0"] {
        let (success, out, err) = cli(&["fleet", "exempt", "add", everyone, "--config", &cfg]);
        assert!(!success, "{everyone} accepted: {out}");
        assert!(err.contains("broader"), "{everyone}: {err}");
    }
    assert_eq!(get(&etcd, "/t/policy/grants/exempt/").len(), granted);
    assert_eq!(
        get(&etcd, "/t/audit/").len(),
        audited,
        "a refused grant was audited"
    );

    // etcd gone: a clear error, not a hang.
    drop(etcd);
    let (success, _, err) = cli(&["fleet", "exempt", "list", "--config", &cfg]);
    assert!(!success && err.contains("etcd"), "{err}");
}

#[test]
fn grants_by_subscriber_from_a_laptop_are_audited_and_bad_values_are_named() {
    let etcd = Etcd::start_local();
    let dir = TempDir::new("fleet-subscriber-grants");
    let cfg = config(&dir, &etcd, "");
    // Grants by subscriber: their own key, audited, listed after the
    // prefix grants; a bad value is named by its key; relays take none.
    ok(&[
        "fleet",
        "exempt",
        "add",
        "--subscriber",
        "alice@example.jp",
        "--ttl",
        "1d",
        "--reason",
        "ticket 43",
        "--config",
        &cfg,
    ]);
    let alice = get(
        &etcd,
        "/t/policy/grants/exempt_subscribers/alice@example.jp",
    );
    assert!(
        alice.len() == 1
            && alice[0].1.contains("\"expires_at\"")
            && alice[0].1.contains("ticket 43"),
        "{alice:?}"
    );
    assert!(
        get(&etcd, "/t/audit/")
            .iter()
            .any(|(_, v)| v.contains("subscriber alice@example.jp") && v.contains("ticket 43")),
        "no audit line for the subscriber grant"
    );
    etcd.put(
        "/t/policy/grants/exempt_subscribers/bob",
        "{\"subscriber\":\"mallory\",\"created_at\":1}",
    );
    let (success, out, err) = cli(&["fleet", "exempt", "list", "--config", &cfg]);
    assert!(
        success && out.contains("subscriber alice@example.jp") && !out.contains("mallory"),
        "{out}{err}"
    );
    assert!(
        err.contains("/t/policy/grants/exempt_subscribers/bob: subscriber \"mallory\" differs"),
        "{err}"
    );
    let (success, _, err) = cli(&[
        "fleet",
        "allow-destination",
        "add",
        "--subscriber",
        "alice@example.jp",
        "--config",
        &cfg,
    ]);
    assert!(!success && err.contains("only exemptions"), "{err}");
    let (success, _, err) = cli(&[
        "fleet",
        "exempt",
        "add",
        "--subscriber",
        "alice smith",
        "--config",
        &cfg,
    ]);
    assert!(!success && err.contains("spaces"), "{err}");
    ok(&[
        "fleet",
        "exempt",
        "del",
        "--subscriber",
        "alice@example.jp",
        "--config",
        &cfg,
    ]);
    assert!(get(
        &etcd,
        "/t/policy/grants/exempt_subscribers/alice@example.jp"
    )
    .is_empty());
    let (success, _, err) = cli(&[
        "fleet",
        "exempt",
        "del",
        "--subscriber",
        "alice@example.jp",
        "--config",
        &cfg,
    ]);
    assert!(!success && err.contains("is not granted"), "{err}");
}
