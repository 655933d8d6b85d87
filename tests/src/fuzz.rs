//! The bodies of op25b's fuzz targets (fuzz/, cargo-fuzz), one per parser
//! that takes outside input, kept here so the corpus replay in the tests
//! (tests/tests/fuzz_corpus.rs) runs exactly what libFuzzer runs. Each
//! must return, never panic, whatever the bytes.

use std::{path::Path, sync::OnceLock};

use op25b_agent::{
    api::types::{GrantRequest, RevokeRequest, TopQuery},
    config::Config,
    policy::{
        limits::PrefixLimits,
        list_file::{admit_all, parse_entry, parse_list},
        prefix::{Prefix, PrefixSet},
        ListKind, Policy,
    },
    tools::capture::Capture,
};
use op25b_common::{abi::RuntimeConfig, decide};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay and scripts/fuzz.sh.
pub const TARGETS: [(&str, Target); 6] = [
    ("frame_verdict", frame_verdict),
    ("config_file", config_file),
    ("list_file", list_file),
    ("api_request", api_request),
    ("capture", capture),
    ("radius_packet", radius_packet),
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
