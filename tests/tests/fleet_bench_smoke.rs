//! The fleet benchmark's smoke mode (2 agents in namespaces, one etcd, 3
//! grants, a 1,000-prefix pool), so it cannot rot between real runs.
//! Needs root and etcd.
#[test]
fn fleet_benchmark_smoke_mode_measures_grants_and_a_pool() {
    op25b_tests::require_root();
    let (table, report) = op25b_tests::run_bench("fleet-bench", &["--fleet", "--smoke"]);
    assert!(
        table.contains("grant commit -> in every agent's maps, p99"),
        "{table}"
    );
    assert_eq!(report["agents"], 2);
    assert_eq!(report["pool_prefixes"], 1000);
    let p99 = report["grant_p99_ms"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 5_000.0, "{report}");
    assert!(report["pool_rollout_s"].as_f64().unwrap() > 0.0, "{report}");
}
