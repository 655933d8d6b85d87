//! Shared pieces of op25b's tests: the fixture table (run through the host
//! verdict and through the kernel program alike), the standard test policy,
//! and guards for privileged resources.

pub mod etcd;
pub mod fixtures;
pub mod frame;
pub mod fuzz;
pub mod lab;
pub mod leftovers;
pub mod netns;
pub mod radclient;

use op25b_agent::{
    dataplane::{Dataplane, Maps},
    policy::{prefix::PrefixSet, Policy},
};

/// Kernel tests need root (BPF_PROG_LOAD, netns). CI runs as root; anywhere
/// else this fails loudly instead of silently skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs: run it as root (CI does)"
    );
}

fn set(prefixes: &[&str]) -> PrefixSet {
    prefixes
        .iter()
        .map(|p| p.parse().expect("test prefix"))
        .collect()
}

/// The policy every fixture is judged against.
pub fn standard_policy() -> Policy {
    Policy {
        blocked_ports: vec![25],
        dynamic: set(&["100.64.0.0/10", "2001:db8:1000::/36"]),
        exempt: set(&["100.64.1.7/32", "2001:db8:1000::7/128"]),
        allowed_destinations: set(&["192.0.2.25/32", "2001:db8:25::25/128"]),
        ..Policy::default()
    }
}

/// The standard policy with several blocked ports.
pub fn multi_port_policy() -> Policy {
    Policy {
        blocked_ports: vec![25, 2525, 10025],
        ..standard_policy()
    }
}

/// The standard policy plus two pools: "trial" monitors 100.100.0.0/16 and
/// 2001:db8:3000::/36, "strict" rejects 100.101.0.0/16 and 2001:db8:4000::/36.
pub fn pools_policy() -> Policy {
    use op25b_agent::policy::Pool;
    use op25b_common::abi::PoolAction;
    let mut policy = standard_policy();
    for (id, name, action, prefixes) in [
        (
            1,
            "trial",
            PoolAction::Monitor,
            ["100.100.0.0/16", "2001:db8:3000::/36"],
        ),
        (
            2,
            "strict",
            PoolAction::Reject,
            ["100.101.0.0/16", "2001:db8:4000::/36"],
        ),
    ] {
        policy.pools.push(Pool {
            name: name.into(),
            action,
        });
        for p in prefixes {
            let prefix = p.parse().unwrap();
            policy.dynamic.insert(prefix);
            policy.pool_of.insert(prefix, id);
        }
    }
    policy
}

/// The real program, loaded with private maps holding `policy`.
pub fn load_dataplane(policy: &Policy) -> Dataplane {
    require_root();
    let mut dataplane = Dataplane::load(&Maps::Private, 0).expect("the program loads");
    dataplane.apply(policy).expect("the policy applies");
    dataplane
}

/// The agent binary under test. scripts/test.sh builds it before the tests;
/// OP25B_AGENT_BIN points elsewhere (e.g. an installed package).
pub fn agent_bin() -> std::path::PathBuf {
    let path = std::env::var_os("OP25B_AGENT_BIN").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/op25b-agent"),
        std::path::PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Runs the debug `op25b-bench` with `args` plus `--json FILE` in a
/// scratch directory; asserts it succeeded and returns its table (stdout)
/// and its JSON report.
pub fn run_bench(tag: &str, args: &[&str]) -> (String, serde_json::Value) {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/op25b-bench");
    assert!(
        bin.exists(),
        "{} missing: scripts/test.sh builds it",
        bin.display()
    );
    let dir = TempDir::new(tag);
    let json = dir.path().join("report.json");
    let out = std::process::Command::new(&bin)
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (table, report)
}

/// A scratch directory removed on drop (also when the test panics).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "op25b-{tag}-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A short suffix unique within this process and across crashed runs.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", (nanos ^ std::process::id()) & 0xffff, n)
}

/// The standard policy as a config file (plus list files) in `dir`.
pub fn write_standard_config(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(
        dir.join("exempt.txt"),
        "# exemptions\n100.64.1.7/32\n2001:db8:1000::7/128\n",
    )
    .unwrap();
    let config = dir.join("op25b.toml");
    std::fs::write(
        &config,
        r#"[policy]
blocked_ports = [25]
dynamic = ["100.64.0.0/10", "2001:db8:1000::/36"]
exempt_files = ["exempt.txt"]
allowed_destinations = ["192.0.2.25/32", "2001:db8:25::25/128"]
"#,
    )
    .unwrap();
    config
}
