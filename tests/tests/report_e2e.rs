//! Abuse reports from real block events: the netns lab blocks known SYNs,
//! the event log is rotated and gzipped as logrotate would, a cut line and
//! a corrupt one are added, and `op25b-agent report` is checked field by
//! field, in X-ARF (also against the published X-ARF v4 schemas) and CSV.
//! Needs root, gzip, and the schemas and python3-jsonschema that
//! scripts/setup-toolchain.sh installs.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use base64::Engine as _;
use op25b_tests::lab::Lab;
use sha2::{Digest as _, Sha256};

const DYN4: &str = "100.64.1.2";
const OTHER4: &str = "100.64.1.3";
const MX4: &str = "198.51.100.25";
const MX4B: &str = "198.51.100.26";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The published X-ARF v4 schemas (PyPI xarf 1.0.0 = xarf-spec v4.2.0).
fn schemas() -> PathBuf {
    let dir = std::env::var_os("OP25B_XARF_SCHEMAS").map_or_else(
        || PathBuf::from("/usr/local/share/op25b/xarf-1.0.0/schemas"),
        PathBuf::from,
    );
    assert!(
        dir.join("xarf-v4-master.json").exists(),
        "{} has no X-ARF schemas: run scripts/setup-toolchain.sh",
        dir.display()
    );
    dir
}

/// scripts/validate-xarf.py over `reports` (JSON lines): (valid, its output).
fn validate(reports: &str) -> (bool, String) {
    let mut child = Command::new("/usr/bin/python3")
        .arg(repo().join("scripts/validate-xarf.py"))
        .arg(schemas())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(reports.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn event_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: real events, rotation, then every view of the report"
)]
fn reports_from_real_events_rotated_and_gzipped() {
    let mut lab = Lab::up_with(
        &[],
        "[events]\npath = \"events.jsonl\"\nper_source_interval_seconds = 0.5\n\
         [reports]\norg = \"Example ISP\"\ncontact = \"abuse@isp.example\"\ndomain = \"isp.example\"\n",
    );
    lab.start_agent();
    let mut tx = lab.subscriber_sender();
    let mut send = |frame: &[u8]| tx.send_to(frame, None).unwrap().unwrap();
    let events = lab.dir.path().join("events.jsonl");
    let wait_lines = |n: usize| {
        lab.wait_for(Duration::from_secs(5), &format!("{n} event lines"), |_| {
            event_lines(&events).len() >= n
        });
    };

    // Five attempts at once: one event, four folded into the next one.
    for i in 0..5 {
        send(&lab.syn_frame(DYN4, MX4, 25, 20_000 + i));
    }
    std::thread::sleep(Duration::from_millis(700));
    send(&lab.syn_frame(DYN4, MX4, 25, 20_009));
    send(&lab.syn_frame(OTHER4, MX4, 25, 30_000));
    wait_lines(3);

    // logrotate: move away, reopen, compress. The old file ends in a line
    // cut short (as by a full disk).
    let rotated = lab.dir.path().join("events.jsonl.1");
    fs::rename(&events, &rotated).unwrap();
    lab.signal_agent(libc::SIGUSR1);
    lab.wait_for(
        Duration::from_secs(3),
        "the event log to be reopened",
        |l| l.log().contains("event log reopened"),
    );
    let first_batch = event_lines(&rotated);
    assert_eq!(first_batch.len(), 3, "{first_batch:?}");
    fs::OpenOptions::new()
        .append(true)
        .open(&rotated)
        .unwrap()
        .write_all(b"{\"time\":\"2025-03-01T10:")
        .unwrap();
    let gzip = Command::new("gzip").arg(&rotated).status().unwrap();
    assert!(gzip.success());

    std::thread::sleep(Duration::from_millis(600));
    send(&lab.syn_frame(DYN4, MX4B, 25, 20_010));
    wait_lines(1);
    let second_batch = event_lines(&events);
    fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap()
        .write_all(b"garbage that is no event\n")
        .unwrap();
    let all_lines: Vec<String> = first_batch.iter().chain(&second_batch).cloned().collect();

    let config = lab.config.to_str().unwrap().to_owned();
    let (ok, out, err) = lab.agent_cmd(&[
        "report",
        "--config",
        &config,
        "--window",
        "1h",
        "--min-attempts",
        "2",
    ]);
    assert!(ok, "{err}");
    let gz_name = format!("{}.gz", rotated.display());
    assert!(
        err.contains(&format!("2 lines skipped (first: {gz_name}:4: ")),
        "{err}"
    );
    assert!(
        err.contains("1 reports, 1 sources under --min-attempts"),
        "{err}"
    );
    let reports: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 1, "{out}");
    let r = &reports[0];

    // Field by field, against the events the agent wrote.
    let first: serde_json::Value = serde_json::from_str(&first_batch[0]).unwrap();
    let last: serde_json::Value = serde_json::from_str(&second_batch[0]).unwrap();
    assert_eq!(r["xarf_version"], "4.2.0");
    let id = r["report_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID in its hyphenated form: {id}");
    assert_eq!(id.as_bytes()[14], b'4', "version 4: {id}");
    assert_eq!(r["category"], "infrastructure");
    assert_eq!(r["type"], "botnet");
    for who in ["reporter", "sender"] {
        assert_eq!(
            r[who],
            serde_json::json!({"org": "Example ISP", "contact": "abuse@isp.example", "domain": "isp.example"})
        );
    }
    assert_eq!(r["source_identifier"], DYN4);
    assert_eq!(r["source_port"], 20_000, "the first attempt's port");
    let first_time = first["time"].as_str().unwrap();
    let last_time = last["time"].as_str().unwrap();
    assert_eq!(r["timestamp"], first_time);
    assert_eq!(r["first_seen"], first_time);
    assert_eq!(r["last_seen"], last_time);
    assert_eq!(r["attempts_count"], 7, "1 + 5 folded + 1");
    assert_eq!(r["events_count"], 3);
    assert_eq!(r["distinct_destinations_count"], 2);
    assert_eq!(r["destination_ports"], serde_json::json!([25]));
    assert_eq!(r["evidence_source"], "firewall_logs");
    assert_eq!(r["bot_capabilities"], serde_json::json!(["spam"]));
    let words = r["compromise_evidence"].as_str().unwrap();
    assert!(
        words.starts_with(&format!(
            "7 outbound mail connection attempts (TCP port 25) to 2 distinct destination addresses from {DYN4}"
        )),
        "{words}"
    );
    let evidence = r["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 3);
    let dyn_lines: Vec<&String> = all_lines.iter().filter(|l| l.contains(DYN4)).collect();
    for (item, line) in evidence.iter().zip(&dyn_lines) {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(item["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(payload.clone()).unwrap(),
            **line,
            "evidence is the event line, byte for byte"
        );
        assert_eq!(
            item["hash"].as_str().unwrap(),
            format!("sha256:{:x}", Sha256::digest(&payload))
        );
        assert_eq!(item["content_type"], "application/json");
    }
    let places: Vec<String> = r["_internal"]["evidence_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        places,
        [
            format!("{gz_name}:1"),
            format!("{gz_name}:2"),
            format!("{}:1", events.display())
        ]
    );

    // The published schema accepts it, and would refuse a report without
    // the one field the botnet type requires.
    let (valid, why) = validate(&out);
    assert!(valid, "{why}");
    let mut broken = r.clone();
    broken
        .as_object_mut()
        .unwrap()
        .remove("compromise_evidence");
    let (valid, why) = validate(&broken.to_string());
    assert!(
        !valid && why.contains("'compromise_evidence' is a required property"),
        "{why}"
    );

    // Without _internal, into a directory: one file per report.
    let out_dir = lab.dir.path().join("reports");
    let (ok, _, err) = lab.agent_cmd(&[
        "report",
        "--config",
        &config,
        "--window",
        "1h",
        "--no-internal",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let mut files: Vec<PathBuf> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut texts = String::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            file.file_name().unwrap().to_str().unwrap(),
            format!("{}.json", report["report_id"].as_str().unwrap())
        );
        assert!(report.get("_internal").is_none(), "{text}");
        texts.push_str(&text);
    }
    let (valid, why) = validate(&texts);
    assert!(valid, "{why}");

    // CSV: a header and one row per source.
    let (ok, csv, err) = lab.agent_cmd(&[
        "report", "--config", &config, "--window", "1h", "--format", "csv",
    ]);
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let column = |name: &str| rows[0].iter().position(|h| *h == name).unwrap();
    let (source, attempts, destinations) = (
        column("source_identifier"),
        column("attempts_count"),
        column("distinct_destinations_count"),
    );
    assert_eq!(
        (rows[1][source], rows[1][attempts], rows[1][destinations]),
        (DYN4, "7", "2")
    );
    assert_eq!((rows[2][source], rows[2][attempts]), (OTHER4, "1"));
    assert!(rows[0].contains(&"subscriber"));

    // A window that ends before the events holds nothing to report.
    let (ok, out, err) = lab.agent_cmd(&["report", "--config", &config, "--window", "1ms"]);
    assert!(ok, "{err}");
    assert!(out.is_empty(), "{out}");
}
