//! Fleet sync's TLS and etcd user paths against a real etcd (Debian's
//! etcd-server 3.4) on 127.0.0.1: a CA, server and client certificates
//! made here with openssl, etcd requiring client certificates and, once
//! its root user has a password, authentication. The agent's `fleet`
//! commands connect with ca_file/cert_file/key_file/username/password_file;
//! a wrong password and a CA that did not sign the server are refused.
use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use op25b_agent::config::fleet::{FleetConfig, RawFleet};
use op25b_tests::{
    agent_bin,
    etcd::{free_port, single_node_args},
    TempDir,
};

const PASSWORD: &str = "correct horse";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` arguments making a new P-256 key, unencrypted, in `NAME.key`.
fn new_key(name: &str) -> Vec<String> {
    let fixed = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args: Vec<String> = fixed.iter().map(ToString::to_string).collect();
    args.extend(["-keyout".to_owned(), format!("{name}.key")]);
    args
}

fn openssl_owned(dir: &Path, args: &[String]) {
    openssl(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A CA named `name` (`name.key`, `name.crt`).
fn ca(dir: &Path, name: &str) {
    let mut args = vec!["req".to_owned(), "-x509".to_owned()];
    args.extend(new_key(name));
    args.extend([
        "-out".to_owned(),
        format!("{name}.crt"),
        "-days".to_owned(),
        "2".to_owned(),
        "-subj".to_owned(),
        format!("/CN={name}"),
        "-addext".to_owned(),
        "basicConstraints=critical,CA:TRUE".to_owned(),
        "-addext".to_owned(),
        "keyUsage=critical,keyCertSign,cRLSign".to_owned(),
    ]);
    openssl_owned(dir, &args);
}

/// A certificate for `cn` with `extension`, signed by the CA `ca`.
fn signed(dir: &Path, ca: &str, name: &str, cn: &str, extension: &str) {
    let mut args = vec!["req".to_owned()];
    args.extend(new_key(name));
    args.extend([
        "-out".to_owned(),
        format!("{name}.csr"),
        "-subj".to_owned(),
        format!("/CN={cn}"),
        "-addext".to_owned(),
        extension.to_owned(),
    ]);
    openssl_owned(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-copy_extensions",
            "copyall",
        ],
    );
}

/// etcd over TLS with client certificates; killed on drop (also on panic).
struct TlsEtcd(Child);

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_etcd(dir: &Path, client_port: u16) -> TlsEtcd {
    let url = format!("https://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log = fs::File::create(dir.join("etcd.log")).unwrap();
    let child = Command::new("etcd")
        .args(single_node_args(&dir.join("data"), &url, &url, &peer))
        .args(["--cert-file", "server.crt", "--key-file", "server.key"])
        .args(["--trusted-ca-file", "ca.crt", "--client-cert-auth"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("etcd (Debian etcd-server) is installed");
    TlsEtcd(child)
}

fn config(dir: &Path, name: &str, port: u16, ca: &str, user: bool) -> String {
    let auth = if user {
        "username = \"root\"\npassword_file = \"password\"\n"
    } else {
        ""
    };
    let path = dir.join(format!("{name}.toml"));
    fs::write(
        &path,
        format!(
            "[policy]\ndynamic = [\"100.64.0.0/10\"]\n[fleet]\netcd_endpoints = [\"https://127.0.0.1:{port}\"]\n\
             prefix = \"/tls\"\nnode_name = \"laptop\"\nsnapshot_file = \"snap.json\"\n\
             ca_file = \"{ca}.crt\"\ncert_file = \"client.crt\"\nkey_file = \"client.key\"\n{auth}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(agent_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Through the agent's own connect (TLS, client certificate, no user yet):
/// waits for etcd, then gives root a password and turns authentication on.
fn enable_auth(dir: &Path, port: u16) {
    let raw = RawFleet {
        etcd_endpoints: vec![format!("https://127.0.0.1:{port}")],
        prefix: Some("/tls".into()),
        node_name: Some("setup".into()),
        ca_file: Some("ca.crt".into()),
        cert_file: Some("client.crt".into()),
        key_file: Some("client.key".into()),
        ..RawFleet::default()
    };
    let config = FleetConfig::from_raw(&raw, dir).expect("valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let start = Instant::now();
        let mut client = loop {
            let attempt = async {
                let mut c = op25b_agent::fleet::client::connect(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                c.status().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(c)
            };
            match attempt.await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "etcd over TLS: {e}; {}",
                        fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        client.user_add("root", PASSWORD, None).await.unwrap();
        client.user_grant_role("root", "root").await.unwrap();
        client.auth_enable().await.unwrap();
    });
}

#[test]
fn commands_reach_etcd_over_tls_with_a_client_certificate_and_a_password() {
    let dir = TempDir::new("fleet-tls");
    let d = dir.path();
    ca(d, "ca");
    ca(d, "other-ca");
    signed(d, "ca", "server", "etcd", "subjectAltName=IP:127.0.0.1");
    // Not an etcd user: the password, not the certificate's name, authenticates.
    signed(
        d,
        "ca",
        "client",
        "op25b-agent",
        "extendedKeyUsage=clientAuth",
    );
    let port = free_port();
    let _etcd = start_etcd(d, port);
    enable_auth(d, port);

    fs::write(d.join("password"), format!("{PASSWORD}\n")).unwrap();
    let good = config(d, "good", port, "ca", true);
    let (ok, out) = cli(&[
        "fleet",
        "exempt",
        "add",
        "100.64.1.2",
        "--reason",
        "tls",
        "--config",
        &good,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["fleet", "exempt", "list", "--config", &good]);
    assert!(ok && out.contains("100.64.1.2/32"), "{out}");

    // Without the user, the client certificate alone is no etcd user.
    let anonymous = config(d, "anonymous", port, "ca", false);
    let (ok, out) = cli(&["fleet", "exempt", "list", "--config", &anonymous]);
    assert!(
        !ok && out.contains("permission denied"),
        "no user, yet listed: {out}"
    );

    let wrong = d.join("wrong");
    fs::create_dir_all(&wrong).unwrap();
    for file in ["ca.crt", "client.crt", "client.key"] {
        fs::copy(d.join(file), wrong.join(file)).unwrap();
    }
    fs::write(wrong.join("password"), "not it\n").unwrap();
    let bad_password = config(&wrong, "bad", port, "ca", true);
    let (ok, out) = cli(&["fleet", "exempt", "list", "--config", &bad_password]);
    assert!(
        !ok && out.contains("authentication failed"),
        "a wrong password listed: {out}"
    );

    // A CA that did not sign etcd's certificate: the connection is refused.
    fs::write(d.join("password"), format!("{PASSWORD}\n")).unwrap();
    let other_ca = config(d, "other", port, "other-ca", true);
    let (ok, out) = cli(&["fleet", "exempt", "list", "--config", &other_ca]);
    assert!(
        !ok && out.contains("UnknownIssuer"),
        "an unknown server certificate was trusted: {out}"
    );
}
