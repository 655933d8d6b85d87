//! An etcd that accepts connections and never answers (a peer behind a
//! black-holing firewall, a hung process): the agent must start on its
//! local policy, enforce it, stay responsive, say in its metrics that it
//! does not follow the fleet, and refuse a grant it cannot store with a
//! clear error instead of hanging. Needs root.
use std::{
    fs,
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use op25b_tests::lab::{in_netns, Lab};

const DYN4: &str = "100.64.1.2";
const EXEMPT4: &str = "100.64.1.7";
const MX4: &str = "198.51.100.25";
/// Inside the router's namespace only.
const SILENT_ETCD: &str = "127.0.0.1:23790";

/// Accepts every connection and holds it open without a byte, until dropped.
struct SilentPeer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentPeer {
    fn start(ns: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stopping = Arc::clone(&stop);
        let thread = in_netns(ns, move || {
            let listener = TcpListener::bind(SILENT_ETCD).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let mut held = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_silent_etcd_leaves_the_local_policy_enforced_and_grants_refused_clearly() {
    let mut lab = Lab::up_with(
        &[],
        &format!(
            "[api]\nsocket = \"api.sock\"\ntoken_file = \"api.token\"\nstate_file = \"state.json\"\naudit_log = \"audit.jsonl\"\n\
             [fleet]\netcd_endpoints = [\"http://{SILENT_ETCD}\"]\nprefix = \"/silent\"\nnode_name = \"r1\"\nsnapshot_file = \"fleet-snapshot.json\"\n"
        ),
    );
    let token = lab.dir.path().join("api.token");
    fs::write(&token, "silent-token").unwrap();
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let _peer = SilentPeer::start(&lab.ns('r'));

    lab.start_agent();
    assert!(
        !lab.connects(DYN4, MX4, 25, 1.0),
        "local policy not enforced"
    );
    assert!(lab.connects(EXEMPT4, MX4, 25, 2.0), "local exemption lost");
    assert!(
        lab.log().contains("starting with the local policy"),
        "the start on the local policy is not explained:\n{}",
        lab.log()
    );
    assert_eq!(lab.metric("op25b_fleet_connected"), Some(0.0));
    assert_eq!(lab.metric("op25b_fleet_applied_revision"), Some(0.0));

    // A grant cannot reach etcd: refused with a reason, in bounded time,
    // and nothing changes.
    let started = Instant::now();
    let config = lab.config.to_str().unwrap().to_owned();
    let (ok, out, err) = lab.agent_cmd(&[
        "exempt",
        "add",
        "100.64.1.2/32",
        "--reason",
        "ticket 9",
        "--config",
        &config,
    ]);
    let took = started.elapsed();
    assert!(!ok, "a grant was accepted with etcd silent: {out}");
    assert!(
        err.contains("etcd") || err.contains("no answer"),
        "the refusal does not say why: {err}"
    );
    assert!(
        took < Duration::from_secs(60),
        "the grant hung for {took:?}"
    );
    assert!(
        !lab.connects(DYN4, MX4, 25, 1.0),
        "the refused grant took effect"
    );
    assert_eq!(lab.http_get("/healthz").unwrap(), "ok\n");
    eprintln!("grant refused after {took:?}: {err}");
}
