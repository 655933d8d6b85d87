//! X-ARF v4 (xarf-spec 4.2.0) reports, category `infrastructure`, type
//! `botnet`: the fields the core and botnet schemas require (`xarf_version`,
//! `report_id`, `timestamp`, `reporter`, `sender`, `source_identifier`,
//! `category`, `type`, `compromise_evidence`), the recommended ones that
//! apply (`source_port`, `evidence_source`, `evidence`, `bot_capabilities`),
//! and op25b's facts as additional fields, which the schema permits.

use std::time::SystemTime;

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{config::ReportsConfig, source::SourceReport, Context};

/// The X-ARF version whose schemas these reports follow.
pub const XARF_VERSION: &str = "4.2.0";

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[derive(Debug, Serialize)]
struct Document<'a> {
    xarf_version: &'static str,
    report_id: String,
    /// When the abuse occurred: the first attempt in the window.
    timestamp: String,
    reporter: &'a ReportsConfig,
    sender: &'a ReportsConfig,
    source_identifier: String,
    /// Omitted for port 0, which X-ARF does not allow (and no real client uses).
    #[serde(skip_serializing_if = "Option::is_none")]
    source_port: Option<u16>,
    category: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    evidence_source: &'static str,
    compromise_evidence: String,
    bot_capabilities: [&'static str; 1],
    protocol: &'static str,
    first_seen: String,
    last_seen: String,
    attempts_count: u64,
    events_count: u64,
    distinct_destinations_count: usize,
    /// True when the count stopped at its limit: then it is a lower bound.
    distinct_destinations_capped: bool,
    destination_ports: &'a [u16],
    sources: Vec<Source>,
    evidence: Vec<Evidence>,
    #[serde(rename = "_internal", skip_serializing_if = "Option::is_none")]
    internal: Option<Internal<'a>>,
}

#[derive(Debug, Serialize)]
struct Source {
    address: String,
    attempts_count: u64,
    first_seen: String,
    last_seen: String,
}

#[derive(Debug, Serialize)]
struct Evidence {
    content_type: &'static str,
    description: String,
    payload: String,
    hash: String,
    size: usize,
}

/// Stays inside the ISP: X-ARF requires `_internal` to be stripped before
/// a report is sent on.
#[derive(Debug, Serialize)]
struct Internal<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriber: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    sessions: &'a [String],
    /// `file:line` of each evidence item, in the same order.
    evidence_lines: Vec<&'a str>,
    window_start: String,
    generated: String,
    generator: String,
}

/// The facts in plain words, for whoever reads the report.
pub fn compromise_evidence(r: &SourceReport) -> String {
    let ports = r
        .destination_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let port_words = if r.destination_ports.len() == 1 {
        format!("TCP port {ports}")
    } else {
        format!("TCP ports {ports}")
    };
    let destinations = if r.destinations_capped {
        format!(
            "at least {} distinct destination addresses",
            r.distinct_destinations
        )
    } else if r.distinct_destinations == 1 {
        "1 destination address".to_owned()
    } else {
        format!("{} distinct destination addresses", r.distinct_destinations)
    };
    let from = if r.addresses.len() == 1 {
        format!("from {}, a dynamic (end-user) address,", r.first_address)
    } else {
        format!(
            "from {} dynamic (end-user) addresses of one subscriber,",
            r.addresses.len()
        )
    };
    let attempts = if r.attempts == 1 {
        "1 outbound mail connection attempt".to_owned()
    } else {
        format!("{} outbound mail connection attempts", r.attempts)
    };
    format!(
        "{attempts} ({port_words}) to {destinations} {from} \
         between {} and {}, blocked by the network's Outbound Port 25 Blocking. \
         End-user hosts do not deliver mail to other networks directly; such attempts \
         are typical of spam-sending malware on the host.",
        rfc3339(r.first_seen),
        rfc3339(r.last_seen)
    )
}

/// One report as a single JSON line.
pub fn to_json_line(r: &SourceReport, report_id: &str, context: &Context<'_>) -> String {
    let reporter = context
        .reporter
        .expect("X-ARF output is only made with [reports]");
    let evidence = r
        .evidence
        .iter()
        .map(|e| Evidence {
            content_type: "application/json",
            description: format!(
                "op25b block event {} of {} in the window (JSON line of the event log)",
                e.ordinal, r.events
            ),
            payload: base64::engine::general_purpose::STANDARD.encode(&e.text),
            hash: format!("sha256:{:x}", Sha256::digest(e.text.as_bytes())),
            size: e.text.len(),
        })
        .collect();
    let report = Document {
        xarf_version: XARF_VERSION,
        report_id: report_id.to_owned(),
        timestamp: rfc3339(r.first_seen),
        reporter,
        sender: reporter,
        source_identifier: r.first_address.to_string(),
        source_port: Some(r.first_source_port).filter(|&p| p != 0),
        category: "infrastructure",
        kind: "botnet",
        evidence_source: "firewall_logs",
        compromise_evidence: compromise_evidence(r),
        bot_capabilities: ["spam"],
        protocol: "tcp",
        first_seen: rfc3339(r.first_seen),
        last_seen: rfc3339(r.last_seen),
        attempts_count: r.attempts,
        events_count: r.events,
        distinct_destinations_count: r.distinct_destinations,
        distinct_destinations_capped: r.destinations_capped,
        destination_ports: &r.destination_ports,
        sources: r
            .addresses
            .iter()
            .map(|a| Source {
                address: a.address.to_string(),
                attempts_count: a.attempts,
                first_seen: rfc3339(a.first_seen),
                last_seen: rfc3339(a.last_seen),
            })
            .collect(),
        evidence,
        internal: context.internal.then(|| Internal {
            subscriber: r.subscriber(),
            sessions: &r.sessions,
            evidence_lines: r.evidence.iter().map(|e| e.place.as_str()).collect(),
            window_start: rfc3339(context.window_start),
            generated: rfc3339(context.generated),
            generator: format!("op25b-agent {}", env!("CARGO_PKG_VERSION")),
        }),
    };
    serde_json::to_string(&report).expect("report serializes")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::aggregate::{Aggregator, Place};

    fn reporter() -> ReportsConfig {
        ReportsConfig {
            org: "Example ISP".into(),
            contact: "abuse@isp.example".into(),
            domain: "isp.example".into(),
        }
    }

    fn sample(subscriber: bool) -> SourceReport {
        let t0 = humantime::parse_rfc3339("2025-03-01T10:00:00Z").unwrap();
        let mut agg = Aggregator::new(t0);
        let file = agg.add_file("/var/log/op25b/events.jsonl".into());
        let extra = if subscriber {
            r#","subscriber":"alice","session":"S9""#
        } else {
            ""
        };
        for i in 0..3u64 {
            let line = format!(
                r#"{{"time":"2025-03-01T10:00:0{i}.000Z","interface":"eth1","reason":"blocked","src":"100.64.1.2","dst":"198.51.100.{}","src_port":{},"dst_port":25,"attempts":{}{extra}}}"#,
                25 + i,
                50_000 + i,
                i + 1
            );
            agg.add_line(line.as_bytes(), Place { file, line: i + 1 });
        }
        agg.finish(1).0.remove(0)
    }

    fn context(reporter: &ReportsConfig, internal: bool) -> Context<'_> {
        let t0 = humantime::parse_rfc3339("2025-03-01T00:00:00Z").unwrap();
        Context {
            reporter: Some(reporter),
            window_start: t0,
            generated: t0 + Duration::from_secs(86_400),
            internal,
        }
    }

    #[test]
    fn every_required_field_is_there_with_its_value() {
        let reporter = reporter();
        let r = sample(true);
        let id = uuid::Uuid::new_v4().to_string();
        let line = to_json_line(&r, &id, &context(&reporter, true));
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["xarf_version"], "4.2.0");
        assert_eq!(v["report_id"], id.as_str());
        assert_eq!(v["timestamp"], "2025-03-01T10:00:00.000Z");
        for who in ["reporter", "sender"] {
            assert_eq!(
                v[who],
                serde_json::json!({"org": "Example ISP", "contact": "abuse@isp.example", "domain": "isp.example"})
            );
        }
        assert_eq!(v["source_identifier"], "100.64.1.2");
        assert_eq!(v["source_port"], 50_000);
        assert_eq!(
            (v["category"].as_str(), v["type"].as_str()),
            (Some("infrastructure"), Some("botnet"))
        );
        assert_eq!(v["evidence_source"], "firewall_logs");
        assert_eq!(v["attempts_count"], 6);
        assert_eq!(v["distinct_destinations_count"], 3);
        assert_eq!(v["last_seen"], "2025-03-01T10:00:02.000Z");
        let words = v["compromise_evidence"].as_str().unwrap();
        assert!(words.starts_with("6 outbound mail connection attempts (TCP port 25) to 3 distinct destination addresses from 100.64.1.2"), "{words}");
        let evidence = v["evidence"].as_array().unwrap();
        assert_eq!(evidence.len(), 3);
        for item in evidence {
            let payload = base64::engine::general_purpose::STANDARD
                .decode(item["payload"].as_str().unwrap())
                .unwrap();
            let hash = format!("sha256:{:x}", Sha256::digest(&payload));
            assert_eq!(item["hash"], hash.as_str());
            assert_eq!(item["size"], payload.len());
            assert_eq!(item["content_type"], "application/json");
            let text = String::from_utf8(payload).unwrap();
            assert!(!text.contains("alice") && !text.contains("S9"), "{text}");
        }
        assert_eq!(v["_internal"]["subscriber"], "alice");
        assert_eq!(v["_internal"]["sessions"], serde_json::json!(["S9"]));
        assert_eq!(
            v["_internal"]["evidence_lines"][0],
            "/var/log/op25b/events.jsonl:1"
        );
        // The subscriber appears nowhere but in _internal.
        let mut public = v.clone();
        public.as_object_mut().unwrap().remove("_internal");
        assert!(!public.to_string().contains("alice"));
    }

    #[test]
    fn no_internal_leaves_it_out_altogether() {
        let reporter = reporter();
        let line = to_json_line(&sample(true), "id", &context(&reporter, false));
        assert!(
            !line.contains("_internal") && !line.contains("alice") && !line.contains("S9"),
            "{line}"
        );
    }
}
