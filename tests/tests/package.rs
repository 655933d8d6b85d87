//! The Debian package: builds from one command, installs with dpkg, its
//! binary, config, man page and unit work, and it removes cleanly. Needs
//! root; installs into the system and removes itself again (also on panic).
use std::{path::Path, process::Command};

use op25b_tests::{netns::run, require_root};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Purges the package on drop, whatever the test did.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "op25b"]).output();
    }
}

fn installed(path: &str) -> bool {
    Path::new(path).exists()
}

#[test]
fn deb_builds_installs_works_and_removes_cleanly() {
    require_root();
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "op25b"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("install ok installed"),
        "op25b is already installed on this machine; not touching it"
    );
    let deb = run(repo().join("scripts/build-deb.sh").to_str().unwrap(), &[]);
    let deb = repo().join(
        deb.lines()
            .last()
            .expect("build-deb prints the package path")
            .trim(),
    );
    let contents = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    for path in [
        "./usr/bin/op25b-agent",
        "./lib/systemd/system/op25b-agent.service",
        "./etc/op25b/op25b.toml",
        "./etc/op25b/lists/dynamic.txt",
        "./usr/share/man/man1/op25b-agent.1.gz",
        "./usr/share/man/man1/op25b-agent-run.1.gz",
        "./usr/share/bash-completion/completions/op25b-agent",
        "./usr/share/zsh/vendor-completions/_op25b-agent",
    ] {
        assert!(
            contents.contains(path),
            "{path} missing from the package:\n{contents}"
        );
    }
    let conffiles = run("dpkg-deb", &["-I", deb.to_str().unwrap(), "conffiles"]);
    assert!(conffiles.contains("/etc/op25b/op25b.toml"), "{conffiles}");

    let _guard = Installed;
    run("dpkg", &["-i", deb.to_str().unwrap()]);
    let version = run("/usr/bin/op25b-agent", &["--version"]);
    assert!(
        version.starts_with("op25b-agent 0.1.0 (git ") && version.contains(", XDP program "),
        "{version}"
    );
    let check = run(
        "/usr/bin/op25b-agent",
        &["check-config", "/etc/op25b/op25b.toml"],
    );
    assert!(
        check.contains("/etc/op25b/op25b.toml: OK")
            && check.contains("dynamic: 1 IPv4, 1 IPv6 prefixes"),
        "{check}"
    );
    let man = run("man", &["-w", "op25b-agent"]);
    assert_eq!(man.trim(), "/usr/share/man/man1/op25b-agent.1.gz");
    let page = run("man", &["op25b-agent-run"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(page.contains("Adopts a running op25b"), "{page}");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/op25b-agent.service"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let complaints = String::from_utf8_lossy(&verify.stderr)
        .lines()
        .filter(|l| l.contains("op25b"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(complaints.is_empty(), "{complaints:?}");

    run("dpkg", &["-r", "op25b"]);
    assert!(
        !installed("/usr/bin/op25b-agent") && !installed("/lib/systemd/system/op25b-agent.service")
    );
    assert!(
        installed("/etc/op25b/op25b.toml"),
        "remove must keep the operator's configuration"
    );
    run("dpkg", &["--purge", "op25b"]);
    assert!(
        !installed("/etc/op25b"),
        "purge must remove the configuration"
    );
}
