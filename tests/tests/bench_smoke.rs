//! The benchmark's smoke mode runs every section with tiny repeats, so the
//! benchmark cannot rot between real runs. Needs root, xdp-tools, nftables.
#[test]
fn benchmark_smoke_mode_runs_every_section() {
    op25b_tests::require_root();
    let (table, report) = op25b_tests::run_bench("bench", &["--smoke"]);
    for heading in [
        "| path | verdict | op25b ns",
        "| prefixes per list |",
        "| receiver |",
        "| target |",
        "Reload under traffic",
        "| event lines | file MiB |",
        "RADIUS accounting (",
        "Interface recreated under the agent (",
        "IPv4 only:",
    ] {
        assert!(table.contains(heading), "missing {heading:?} in\n{table}");
    }
    assert_eq!(report["smoke"], true);
    let rows = report["per_packet"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    assert!(rows
        .iter()
        .all(|r| r["op25b_ns"].as_f64().unwrap() > 0.0 && r["floor_ns"].as_f64().unwrap() > 0.0));
    assert!(
        rows.iter().all(|r| r["xdp_filter_ns"].as_f64().is_some()),
        "xdp-filter was not measured"
    );
    assert_throughput(&report["throughput"]);
    assert_eq!(report["reload_under_traffic"]["misverdicts"], 0);
    let ipv4 = &report["ipv4_list"];
    assert!(ipv4["prefixes"].as_u64().unwrap() > 0);
    assert!(ipv4["load_dynamic_ms"].as_f64().unwrap() > 0.0);
    let reload = ipv4["reload_1pct_ms"].as_f64().unwrap();
    assert!(reload > 0.0);
    assert_eq!(ipv4["reload_1pct_ms_each"].as_array().unwrap().len(), 5);
    // The median reload's steps lie inside it and the record was rebuilt.
    let steps = ipv4["reload_1pct_steps_ms"].as_object().unwrap();
    let parts = ["record", "repaint", "kernel", "record_write", "ipv6"];
    let sum: f64 = parts.iter().map(|p| steps[*p].as_f64().unwrap()).sum();
    assert!(
        sum <= reload && steps["record"].as_f64().unwrap() > 0.0,
        "{steps:?} vs {reload} ms"
    );
    assert!(
        report["interface_reattach"]["window_max_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let report_rows = report["abuse_reports"]["rows"].as_array().unwrap();
    assert_eq!(report_rows.len(), 2);
    assert!(report_rows
        .iter()
        .all(|r| r["reports"].as_u64().unwrap() > 0
            && r["peak_rss_mib"].as_f64().unwrap() > 0.0
            && r["seconds"].as_f64().unwrap() > 0.0));
    assert!(
        report["reload_under_traffic"]["frames_judged"]
            .as_u64()
            .unwrap()
            > 0
    );
    let radius = &report["radius"];
    assert_eq!(radius["unanswered"], 0, "{radius}");
    for key in [
        "applied_per_second",
        "sender_per_second",
        "start_to_exempt_p50_ms",
        "start_to_exempt_p99_ms",
        "bytes_per_session",
    ] {
        assert!(radius[key].as_f64().unwrap() > 0.0, "{key}: {radius}");
    }
}

/// Five receiver rows from a named generator; the XDP_DROP ceiling and op25b
/// processed frames (either generator: live frames or AF_PACKET).
fn assert_throughput(throughput: &serde_json::Value) {
    let generator = throughput["generator"].as_str().unwrap_or_default();
    assert!(
        ["xdp_live_frames", "af_packet"].contains(&generator),
        "throughput generator not named: {throughput}"
    );
    let rows = throughput["rows"].as_array().unwrap();
    let receivers: Vec<&str> = rows
        .iter()
        .map(|r| r["receiver"].as_str().unwrap())
        .collect();
    assert_eq!(receivers.len(), 5, "{receivers:?}");
    for prefix in ["XDP_DROP", "op25b"] {
        let row = rows
            .iter()
            .find(|r| r["receiver"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} row in {receivers:?}"));
        assert!(row["processed"].as_u64().unwrap() > 0, "{row}");
        assert!(row["offered_mpps"].as_f64().unwrap() > 0.0, "{row}");
    }
}
