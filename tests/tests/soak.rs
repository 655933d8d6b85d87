//! The soak: hours of SYN traffic from many sources, reloads, API grants
//! and revokes, and slow or hostile HTTP clients against one agent, with
//! its memory, descriptors and threads sampled every minute and real probe
//! connections checked throughout. Not part of CI: scripts/soak.sh runs it
//! (OP25B_SOAK_SECONDS, default 3600) and writes target/soak.md.
use std::{
    fmt::Write as _,
    fs,
    io::Write as _,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use op25b_agent::api::client::{self, Endpoint};
use op25b_tests::lab::{in_netns, Lab};

const DYN4: &str = "100.64.1.2";
const EXEMPT4: &str = "100.64.1.7";
const MX4: &str = "198.51.100.25";
const TOKEN: &str = "soak-token";

struct Sample {
    minute: u64,
    rss_kib: u64,
    fds: usize,
    threads: usize,
    probes: u64,
    wrong: u64,
}

fn count_dir(path: &str) -> usize {
    fs::read_dir(path).map_or(0, Iterator::count)
}

#[test]
#[ignore = "an hour long: scripts/soak.sh"]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn soak() {
    let seconds: u64 = std::env::var("OP25B_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let mut lab = Lab::up_with(
        &[],
        "[events]\npath = \"events.jsonl\"\nmax_file_bytes = 1000000\nmax_files = 3\n[api]\nsocket = \"api.sock\"\ntoken_file = \"api.token\"\nstate_file = \"state.json\"\naudit_log = \"audit.jsonl\"\n",
    );
    let token = lab.dir.path().join("api.token");
    fs::write(&token, format!("{TOKEN}\n")).unwrap();
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    lab.start_agent();
    let pid = lab.agent_pid();
    let api = Endpoint::Unix(lab.dir.path().join("api.sock"));

    // SYNs to port 25 from 100.64.1.0/24 and 100.64.2.0/24, ~3,000 a second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let mut tx = lab.subscriber_sender();
        let template = lab.syn_frame(DYN4, MX4, 25, 10_000);
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut frame = template;
            let mut n: u32 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(1);
                // Source address bytes 26..30 (plain Ethernet + IPv4); nobody
                // checks the checksums on the way to the drop.
                frame[28] = if n.is_multiple_of(2) { 1 } else { 2 };
                frame[29] = u8::try_from(2 + n % 250).unwrap();
                tx.send_to(&frame, None).unwrap().unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };

    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let (mut probes, mut wrong, mut round) = (0u64, 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(seconds) {
        round += 1;
        // A reload: the same policy, written anew.
        let text = fs::read_to_string(&lab.config).unwrap();
        fs::write(&lab.config, format!("{text}\n# soak round {round}\n")).unwrap();
        // A grant and its revoke.
        let grant = format!(
            "{{\"prefix\":\"100.64.3.{}\",\"ttl\":60,\"actor\":\"soak\"}}",
            round % 250
        );
        let added = client::request(
            &api,
            "POST".parse().unwrap(),
            "/api/v1/exemptions",
            Some(TOKEN),
            Some(grant.into_bytes()),
        );
        let revoked = client::request(
            &api,
            "DELETE".parse().unwrap(),
            &format!(
                "/api/v1/exemptions?prefix=100.64.3.{}&actor=soak",
                round % 250
            ),
            Some(TOKEN),
            None,
        );
        if !matches!(added, Ok(ref r) if r.status == 201)
            || !matches!(revoked, Ok(ref r) if r.status == 200)
        {
            wrong += 1;
            eprintln!("round {round}: grant {added:?} revoke {revoked:?}");
        }
        // Slow and lying HTTP clients, held a few seconds.
        let hostile = in_netns(&lab.ns('r'), || {
            let target: SocketAddr = "127.0.0.1:9725".parse().unwrap();
            (0..40)
                .filter_map(|i| {
                    let mut s = TcpStream::connect(target).ok()?;
                    let head = if i % 2 == 0 {
                        "GET /metr"
                    } else {
                        "POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"
                    };
                    s.write_all(head.as_bytes()).ok()?;
                    Some(s)
                })
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        // Probes: the verdicts a subscriber would see.
        for (src, port, open) in [(DYN4, 25, false), (EXEMPT4, 25, true), (DYN4, 587, true)] {
            probes += 1;
            if lab.connects(src, MX4, port, 1.0) != open {
                wrong += 1;
                eprintln!("round {round}: {src} -> {MX4}:{port} wanted open={open}");
            }
        }
        if lab.http_get("/metrics").is_err() {
            wrong += 1;
            eprintln!("round {round}: /metrics did not answer");
        }
        std::thread::sleep(Duration::from_secs(3));
        drop(hostile);
        let minute = started.elapsed().as_secs() / 60;
        if samples.last().is_none_or(|s| s.minute < minute) {
            samples.push(Sample {
                minute,
                rss_kib: lab.agent_rss_kib(),
                fds: count_dir(&format!("/proc/{pid}/fd")),
                threads: count_dir(&format!("/proc/{pid}/task")),
                probes,
                wrong,
            });
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();

    let mut report = format!(
        "Soak: {seconds} s, {round} rounds (reload, grant+revoke, 40 hostile HTTP clients, 3 probe connections, a scrape each), SYN flood from 500 sources throughout.\n\n| minute | RSS KiB | fds | threads | probes | wrong |\n|---:|---:|---:|---:|---:|---:|\n"
    );
    for s in &samples {
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} |",
            s.minute, s.rss_kib, s.fds, s.threads, s.probes, s.wrong
        );
    }
    let out = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/soak.md"));
    fs::write(out, &report).unwrap();
    eprintln!("{report}");
    assert_eq!(wrong, 0, "wrong verdicts or failed requests:\n{report}");
    let settled = &samples[samples.len().min(2) - 1];
    let last = samples.last().unwrap();
    assert!(
        last.rss_kib <= settled.rss_kib + settled.rss_kib / 5,
        "memory grew:\n{report}"
    );
    assert!(
        last.fds <= settled.fds + 20 && last.threads <= settled.threads + 5,
        "descriptors or threads grew:\n{report}"
    );
}
