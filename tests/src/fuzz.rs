//! The bodies of op25b's fuzz targets (fuzz/, cargo-fuzz), one per parser
//! that takes outside input, kept here so the corpus replay in the tests
//! (tests/tests/fuzz_corpus.rs) runs exactly what libFuzzer runs. Each
//! must return, never panic, whatever the bytes.

use std::{path::Path, sync::OnceLock, time::SystemTime};

use op25b_agent::{
    api::types::{GrantRequest, RevokeRequest, TopQuery},
    config::Config,
    policy::{
        limits::PrefixLimits,
        list_file::{admit_all, parse_entry, parse_list},
        prefix::{Prefix, PrefixSet},
        ListKind, Policy,
    },
    report::{
        aggregate::{Aggregator, Place},
        table::Table,
        xarf, Context, ReportsConfig,
    },
    tools::capture::Capture,
};
use op25b_common::{abi::RuntimeConfig, decide};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay and scripts/fuzz.sh.
pub const TARGETS: [(&str, Target); 7] = [
    ("frame_verdict", frame_verdict),
    ("config_file", config_file),
    ("list_file", list_file),
    ("api_request", api_request),
    ("capture", capture),
    ("radius_packet", radius_packet),
    ("event_lines", event_lines),
];

fn policy() -> &'static (Policy, RuntimeConfig) {
    static POLICY: OnceLock<(Policy, RuntimeConfig)> = OnceLock::new();
    POLICY.get_or_init(|| {
        let policy = crate::pools_policy();
        let rules = policy.runtime_config().expect("test policy fits");
        (policy, rules)
    })
}

/// The host-side parser and verdict (the code the XDP program runs).
pub fn frame_verdict(data: &[u8]) {
    let (policy, rules) = policy();
    let verdict = decide(data, rules, policy);
    assert_eq!(verdict.reason.action(), verdict.action, "{data:02x?}");
}

/// A configuration file (list files it names resolve nowhere).
pub fn config_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(Path::new("/nonexistent/op25b-fuzz/op25b.toml"), text);
    }
}

/// List file text, with and without the exemption bounds.
pub fn list_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = PrefixLimits::default();
    let admit = |p: &Prefix| limits.check(ListKind::Exempt, p);
    let mut set = PrefixSet::default();
    if parse_list(text, &mut set, &admit).is_ok() {
        assert!(set
            .iter()
            .all(|p| limits.check(ListKind::Exempt, p).is_ok()));
    }
    let _ = parse_list(text, &mut PrefixSet::default(), &admit_all);
    let _ = parse_entry(text);
}

/// API request bodies and query strings.
pub fn api_request(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<GrantRequest>(data) {
        let _ = request.prefix.parse::<Prefix>();
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(revoke) = RevokeRequest::from_query(&text) {
        assert_eq!(RevokeRequest::from_query(&revoke.to_query()), Ok(revoke));
    }
    if let Ok(top) = TopQuery::from_query(&text) {
        assert!((1..=TopQuery::MAX_LIMIT).contains(&top.limit));
    }
}

/// pcap and pcapng input to `replay` (at most 1,000 frames a case).
pub fn capture(data: &[u8]) {
    let Ok(mut capture) = Capture::from_reader(Path::new("fuzz.pcap"), data) else {
        return;
    };
    for _ in 0..1000 {
        match capture.next_frame() {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

/// A RADIUS datagram (accounting, CoA, Disconnect) as a NAS sends it:
/// decoded, verified, and re-encoded consistently when it decodes.
pub fn radius_packet(data: &[u8]) {
    use op25b_agent::radius::codec::{decode, encode_request, verify_request};
    let Ok(packet) = decode(data) else {
        return;
    };
    let _ = verify_request(data, b"fuzz-secret");
    let again = encode_request(
        packet.code,
        packet.identifier,
        &packet.attributes,
        b"fuzz-secret",
    );
    let decoded = decode(&again).expect("what we encode decodes");
    assert_eq!(decoded.attributes, packet.attributes);
    assert!(verify_request(&again, b"fuzz-secret"));
}

/// Events file lines as `report` reads them, through to X-ARF and CSV:
/// every line counted once, and no subscriber or session in the evidence.
pub fn event_lines(data: &[u8]) {
    let mut aggregator = Aggregator::new(SystemTime::UNIX_EPOCH);
    let file = aggregator.add_file("events.jsonl".into());
    for (line, text) in (1..).zip(data.split(|&b| b == b'\n')) {
        aggregator.add_line(text, Place { file, line });
    }
    let (reports, stats, _) = aggregator.finish(1);
    assert_eq!(
        stats.lines,
        stats.in_window + stats.before_window + stats.skipped,
        "{stats:?}"
    );
    let reporter = ReportsConfig {
        org: "Example ISP".into(),
        contact: "abuse@isp.example".into(),
        domain: "isp.example".into(),
    };
    let context = Context {
        reporter: Some(&reporter),
        window_start: SystemTime::UNIX_EPOCH,
        generated: SystemTime::UNIX_EPOCH,
        internal: false,
    };
    let mut table = Table::new(Vec::new(), true).expect("CSV header");
    for report in &reports {
        let json = xarf::to_json_line(report, "fuzz", &context);
        let value: serde_json::Value = serde_json::from_str(&json).expect("X-ARF is JSON");
        assert!(value.get("_internal").is_none(), "{json}");
        for evidence in &report.evidence {
            let line: serde_json::Value =
                serde_json::from_str(&evidence.text).expect("evidence is a JSON line");
            for private in ["subscriber", "session"] {
                assert!(
                    line.get(private).is_none_or(serde_json::Value::is_null),
                    "{json}"
                );
            }
        }
        table.row(report, "fuzz").expect("CSV row");
    }
    table.finish().expect("CSV to memory");
}
