//! Metrics for the NOC and evidence for the abuse desk, in the netns lab:
//! scraped series after known traffic, block events and their rate limit,
//! the top list, a real Prometheus server, and the deploy/ rules and
//! dashboard. Needs root, prometheus and promtool (Debian's prometheus).
use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use op25b_tests::frame::{FrameSpec, Transport, TCP_ACK};
use op25b_tests::{lab::Lab, netns::run};

const DYN4: &str = "100.64.1.2";
const EXEMPT4: &str = "100.64.1.7";
const MX4: &str = "198.51.100.25";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The value of the one series `name{labels}` in exposition `text`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (metric, rest) = key.split_once('{').unwrap_or((key, "}"));
            if metric != name {
                return None;
            }
            let got: BTreeSet<String> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let want: BTreeSet<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            (got == want).then(|| value.parse().ok()).flatten()
        })
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: known traffic, then every view of it"
)]
fn metrics_events_and_top_after_known_traffic() {
    let mut lab = Lab::up_with(
        &[],
        "[events]\npath = \"events.jsonl\"\nper_source_interval_seconds = 0.5\n",
    );
    lab.start_agent();
    let r0 = format!("{}r0", lab.name);
    let mut tx = lab.subscriber_sender();
    let send = |tx: &mut Box<dyn pnet_datalink::DataLinkSender>, frame: &[u8]| {
        tx.send_to(frame, None).unwrap().unwrap();
    };
    for i in 0..5 {
        send(&mut tx, &lab.syn_frame(DYN4, MX4, 25, 20_000 + i));
    }
    for i in 0..3 {
        send(&mut tx, &lab.syn_frame(EXEMPT4, MX4, 25, 21_000 + i));
    }
    for i in 0..2 {
        send(&mut tx, &lab.syn_frame(DYN4, MX4, 587, 22_000 + i));
    }
    // An established-session segment: blocked, but not a connection attempt.
    let mut ack = FrameSpec::tcp_syn(DYN4.parse().unwrap(), MX4.parse().unwrap(), 25);
    let syn = lab.syn_frame(DYN4, MX4, 25, 1);
    ack.src_mac.copy_from_slice(&syn[6..12]);
    ack.dst_mac.copy_from_slice(&syn[0..6]);
    ack.transport = Transport::Tcp {
        src_port: 23_000,
        dst_port: 25,
        flags: TCP_ACK,
    };
    send(&mut tx, &ack.build());
    // After the rate-limit interval, one more attempt: its event carries the 4 folded ones.
    std::thread::sleep(Duration::from_millis(700));
    send(&mut tx, &lab.syn_frame(DYN4, MX4, 25, 20_009));

    let mut text = String::new();
    lab.wait_for(
        Duration::from_secs(5),
        "7 blocked packets in /metrics",
        |l| {
            let t = l.http_get("/metrics").unwrap_or_default();
            series(
                &t,
                "op25b_packets_total",
                &[
                    ("action", "drop"),
                    ("interface", &r0),
                    ("reason", "blocked"),
                ],
            ) == Some(7.0)
        },
    );
    text.push_str(&lab.http_get("/metrics").unwrap());
    let iface = r0.as_str();
    let expect = [
        (
            "op25b_packets_total",
            vec![
                ("action", "drop"),
                ("interface", iface),
                ("reason", "blocked"),
            ],
            7.0,
        ),
        (
            "op25b_bytes_total",
            vec![
                ("action", "drop"),
                ("interface", iface),
                ("reason", "blocked"),
            ],
            7.0 * 54.0,
        ),
        (
            "op25b_blocked_connection_attempts_total",
            vec![("interface", iface)],
            6.0,
        ),
        // Passed SYNs reach the MX; its SYN-ACKs meet no socket on the
        // subscriber side, whose RSTs pass back through op25b: twice each.
        (
            "op25b_packets_total",
            vec![
                ("action", "pass"),
                ("interface", iface),
                ("reason", "src_exempt"),
            ],
            6.0,
        ),
        (
            "op25b_packets_total",
            vec![
                ("action", "pass"),
                ("interface", iface),
                ("reason", "not_smtp"),
            ],
            4.0,
        ),
        (
            "op25b_packets_total",
            vec![
                ("action", "drop"),
                ("interface", iface),
                ("reason", "undecidable"),
            ],
            0.0,
        ),
        (
            "op25b_interface_attached",
            vec![("interface", iface), ("mode", "driver")],
            1.0,
        ),
        (
            "op25b_interface_attached",
            vec![("interface", iface), ("mode", "none")],
            0.0,
        ),
        (
            "op25b_policy_prefixes",
            vec![("family", "ipv4"), ("list", "dynamic")],
            1.0,
        ),
        (
            "op25b_policy_prefixes",
            vec![("family", "ipv6"), ("list", "allowed_destinations")],
            1.0,
        ),
        (
            "op25b_policy_reloads_total",
            vec![("result", "success")],
            1.0,
        ),
        (
            "op25b_policy_reloads_total",
            vec![("result", "failure")],
            0.0,
        ),
        ("op25b_events_lost_total", vec![], 0.0),
        ("op25b_top_sources", vec![("window", "1h")], 1.0),
    ];
    for (name, labels, value) in &expect {
        assert_eq!(
            series(&text, name, labels),
            Some(*value),
            "{name}{labels:?} in\n{text}"
        );
    }
    assert!(
        text.contains("op25b_build_info{revision=\"") && text.contains(",version=\"0.1.0\"} 1"),
        "{text}"
    );
    let last_reload = series(
        &text,
        "op25b_policy_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(last_reload > 1.7e9, "{last_reload}");
    assert!(
        !text.contains("100.64.") && !text.contains("198.51."),
        "an address leaked into a label"
    );
    assert_eq!(lab.http_get("/healthz").unwrap(), "ok\n");
    assert_eq!(lab.http_get("/readyz").unwrap(), "ready\n");
    assert!(lab.http_get("/nope").unwrap_err().contains("404"));

    // Events: the first attempt, then one standing for the other five.
    let events_path = lab.dir.path().join("events.jsonl");
    lab.wait_for(Duration::from_secs(3), "two events", |_| {
        fs::read_to_string(&events_path)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    });
    let events: Vec<serde_json::Value> = fs::read_to_string(&events_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["attempts"], 1);
    assert_eq!(
        events[1]["attempts"], 5,
        "the rate limit must fold, not lose, attempts"
    );
    for e in &events {
        assert_eq!(
            (e["src"].as_str(), e["dst"].as_str(), e["dst_port"].as_u64()),
            (Some(DYN4), Some(MX4), Some(25))
        );
        assert_eq!(e["interface"], iface);
        assert_eq!(e["reason"], "blocked");
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }

    // The abuse desk's view, over the API and the CLI.
    let top: serde_json::Value =
        serde_json::from_str(&lab.http_get("/api/v1/top?window=1h").unwrap()).unwrap();
    assert_eq!(top["sources"][0]["source"], DYN4);
    assert_eq!(top["sources"][0]["attempts"], 6);
    assert_eq!(top["sources"].as_array().unwrap().len(), 1);
    let (ok, cli, err) = lab.top_last_hour();
    assert!(ok, "{err}");
    assert!(
        cli.lines()
            .any(|l| l.starts_with(DYN4) && l.split_whitespace().nth(1) == Some("6")),
        "{cli}"
    );
    assert!(lab
        .http_get("/api/v1/top?window=later")
        .unwrap_err()
        .contains("400"));

    // Logrotate: move the file away, SIGUSR1, and new events go to a new file.
    fs::rename(&events_path, lab.dir.path().join("events.jsonl.1")).unwrap();
    lab.signal_agent(libc::SIGUSR1);
    lab.wait_for(
        Duration::from_secs(3),
        "the event log to be reopened",
        |l| l.log().contains("event log reopened"),
    );
    send(&mut tx, &lab.syn_frame("100.64.1.3", MX4, 25, 24_000));
    lab.wait_for(Duration::from_secs(3), "an event in the new file", |_| {
        fs::read_to_string(&events_path).is_ok_and(|t| t.contains("100.64.1.3"))
    });

    // Counters live in pinned maps: a restarted agent keeps counting.
    lab.stop_agent(libc::SIGTERM);
    lab.start_agent();
    let text = lab.http_get("/metrics").unwrap();
    assert_eq!(
        series(
            &text,
            "op25b_packets_total",
            &[
                ("action", "drop"),
                ("interface", iface),
                ("reason", "blocked")
            ]
        ),
        Some(8.0)
    );

    // Every series the dashboard and the rules use is one the agent exports.
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
        .collect();
    for file in [
        "deploy/grafana/op25b-dashboard.json",
        "deploy/prometheus/op25b-rules.yml",
    ] {
        let body = fs::read_to_string(repo().join(file)).unwrap();
        if Path::new(file).extension().is_some_and(|e| e == "json") {
            let dash: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(!dash["panels"].as_array().unwrap().is_empty());
        }
        for word in body
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            // Fleet series exist only with [fleet]; fleet_e2e checks those.
            .filter(|w| w.starts_with("op25b_") && !w.starts_with("op25b_fleet_"))
        {
            assert!(
                exported.contains(word),
                "{file} uses {word}, which the agent does not export"
            );
        }
    }
}

#[test]
fn syn_flood_events_stay_within_the_rate_limit_and_memory_stays_flat() {
    let mut lab = Lab::up_with(
        &[],
        "[events]\npath = \"events.jsonl\"\nper_source_interval_seconds = 1\ntop_capacity = 256\n",
    );
    lab.start_agent();
    let r0 = format!("{}r0", lab.name);
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let flood = lab.syn_flood(DYN4, MX4, Arc::clone(&stop), Arc::clone(&sent));
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 2000, "only {sent} SYNs");
    lab.wait_for(Duration::from_secs(3), "all attempts counted", |l| {
        l.counted(&r0, "blocked") == sent
    });
    std::thread::sleep(Duration::from_millis(300));
    let events = fs::read_to_string(lab.dir.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(
        (1..=4).contains(&events),
        "{events} events for one source in 2.5 s with a 1 s limit"
    );

    // Many distinct sources: memory must plateau once the sketch is full.
    let mut tx = lab.subscriber_sender();
    let mut frame = lab.syn_frame(DYN4, MX4, 25, 30_000);
    let mut flood_sources = |from: u32| {
        for i in from..from + 20_000 {
            // Vary the source inside 100.64.0.0/10 (byte 14 + 12 is the IPv4 source).
            frame[26..30].copy_from_slice(&(0x6440_0000 | (i & 0x003f_ffff)).to_be_bytes());
            tx.send_to(&frame, None).unwrap().unwrap();
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    flood_sources(0x1_0000);
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_first = lab.agent_rss_kib();
    flood_sources(0x2_0000);
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_second = lab.agent_rss_kib();
    assert!(
        rss_after_second < rss_after_first + 2048,
        "agent memory grew from {rss_after_first} KiB to {rss_after_second} KiB on 20,000 more sources"
    );
    let top: serde_json::Value =
        serde_json::from_str(&lab.http_get("/api/v1/top?window=1h&limit=10000").unwrap()).unwrap();
    let tracked = top["sources"].as_array().unwrap().len();
    assert!(
        tracked <= 2 * 256,
        "{tracked} sources tracked with capacity 256 per bucket"
    );
    assert_eq!(
        top["sources"][0]["source"], DYN4,
        "the heavy hitter must lead"
    );
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_agent() {
    let mut lab = Lab::up(&[]);
    lab.start_agent();
    let dir = lab.dir.path();
    let config = fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml"))
        .unwrap()
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    fs::write(dir.join("prometheus.yml"), config).unwrap();
    fs::copy(
        repo().join("deploy/prometheus/op25b-rules.yml"),
        dir.join("op25b-rules.yml"),
    )
    .unwrap();
    let _prometheus = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns('r'), "prometheus"])
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package)"),
    );
    let mut tx = lab.subscriber_sender();
    for i in 0..4 {
        tx.send_to(&lab.syn_frame(DYN4, MX4, 25, 25_000 + i), None)
            .unwrap()
            .unwrap();
    }
    let query = |lab: &Lab, q: &str| -> Option<serde_json::Value> {
        let q = q.to_owned();
        let body = op25b_tests::lab::in_netns(&lab.ns('r'), move || {
            op25b_agent::api::client::get("127.0.0.1:9090", &format!("/api/v1/query?query={q}"))
                .ok()
        })
        .join()
        .unwrap()?;
        serde_json::from_str(&body).ok()
    };
    lab.wait_for(
        Duration::from_secs(30),
        "Prometheus to scrape 4 blocked attempts",
        |l| {
            query(l, "op25b_blocked_connection_attempts_total")
                .is_some_and(|v| v["data"]["result"][0]["value"][1] == "4")
        },
    );
    let up = query(&lab, "up").unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    let rules = op25b_tests::lab::in_netns(&lab.ns('r'), || {
        op25b_agent::api::client::get("127.0.0.1:9090", "/api/v1/rules").unwrap()
    })
    .join()
    .unwrap();
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    assert_eq!(
        rules["data"]["groups"][0]["rules"].as_array().map(Vec::len),
        Some(7),
        "{rules}"
    );
}

#[test]
fn promtool_accepts_the_deployed_rules_and_config() {
    let prom = repo().join("deploy/prometheus");
    run(
        "promtool",
        &[
            "check",
            "rules",
            prom.join("op25b-rules.yml").to_str().unwrap(),
        ],
    );
    run(
        "promtool",
        &[
            "check",
            "config",
            prom.join("prometheus.yml").to_str().unwrap(),
        ],
    );
}
