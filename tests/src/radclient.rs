//! FreeRADIUS's radclient (Debian freeradius-utils) as the NAS in lab tests:
//! run inside a namespace against an agent listening on 127.0.0.1 there.

use std::{io::Write as _, process::Command};

/// Sends one `kind` request (`acct`, `coa`, `disconnect`) with `attributes`
/// (radclient's text form) to 127.0.0.1:`port` in namespace `ns`; returns
/// (answered, radclient's output).
pub fn send(ns: &str, port: u16, kind: &str, secret: &str, attributes: &str) -> (bool, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "radclient", "-r", "1", "-t", "3", "-x"])
        .arg(format!("127.0.0.1:{port}"))
        .args([kind, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("radclient (apt install freeradius-utils; scripts/setup-toolchain.sh does)");
    child
        .stdin
        .as_mut()
        .expect("piped stdin")
        .write_all(attributes.as_bytes())
        .expect("radclient reads its attributes");
    let out = child.wait_with_output().expect("radclient runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
