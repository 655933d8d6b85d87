//! The fleet benchmark's smoke mode (2 agents in namespaces, one etcd, 3
//! grants, a 1,000-prefix pool), so it cannot rot between real runs.
//! Needs root and etcd.
use std::process::Command;

#[test]
fn fleet_benchmark_smoke_mode_measures_grants_and_a_pool() {
    op25b_tests::require_root();
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/op25b-bench");
    assert!(
        bin.exists(),
        "{} missing: scripts/test.sh builds it",
        bin.display()
    );
    let dir = op25b_tests::TempDir::new("fleet-bench");
    let json = dir.path().join("fleet.json");
    let out = Command::new(&bin)
        .args(["--fleet", "--smoke", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("grant commit -> in every agent's maps, p99"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["agents"], 2);
    assert_eq!(report["pool_prefixes"], 1000);
    let p99 = report["grant_p99_ms"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 5_000.0, "{report}");
    assert!(report["pool_rollout_s"].as_f64().unwrap() > 0.0, "{report}");
}
