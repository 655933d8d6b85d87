//! What a hostile afternoon found, each as a regression test in the netns
//! lab: a full disk under a SYN flood, hostile HTTP clients, the pin
//! directory removed under a running agent, an interface recreated, a grant
//! for the whole internet. Needs root.
use std::{
    fs,
    io::Write as _,
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use op25b_agent::api::client::{self, Endpoint};
use op25b_tests::{
    lab::{in_netns, Lab},
    netns::run,
};

const DYN4: &str = "100.64.1.2";
const MX4: &str = "198.51.100.25";
const TOKEN: &str = "hardening-token";

/// The value of an unlabelled series in a scrape.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_full_disk_under_a_syn_flood_costs_counted_events_not_a_flooded_log() {
    let mut lab = Lab::up_with(
        &[],
        "[events]\npath = \"events.jsonl\"\nper_source_interval_seconds = 0\n",
    );
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    std::os::unix::fs::symlink("/dev/full", lab.dir.path().join("events.jsonl")).unwrap();
    lab.start_agent();
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let flood = lab.syn_flood(DYN4, MX4, Arc::clone(&stop), Arc::clone(&sent));
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 1000, "the flood sent only {sent} SYNs");
    lab.wait_for(Duration::from_secs(3), "the losses to be counted", |l| {
        l.http_get("/metrics")
            .ok()
            .and_then(|m| series(&m, "op25b_events_lost_total"))
            .is_some_and(|lost| lost >= f64::from(u32::try_from(sent / 2).unwrap_or(u32::MAX)))
    });
    let log = lab.log();
    let complaints = log.lines().filter(|l| l.contains("event log")).count();
    assert!(
        (1..=2).contains(&complaints),
        "{complaints} log lines about the event log for {sent} lost events:\n{log}"
    );
    assert!(!lab.connects(DYN4, MX4, 25, 0.5), "still enforcing");
}

/// Opens `count` TCP connections to `target` from `source`, sending `head`.
fn open_connections(source: &str, target: SocketAddr, count: usize, head: &str) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            socket
                .bind(&format!("{source}:0").parse::<SocketAddr>().ok()?.into())
                .ok()?;
            socket.connect(&target.into()).ok()?;
            let mut stream: TcpStream = socket.into();
            stream.write_all(head.as_bytes()).ok()?;
            Some(stream)
        })
        .collect()
}

#[test]
fn hostile_http_clients_stop_neither_metrics_nor_the_api() {
    let mut lab = Lab::up_with(
        &[],
        "[api]\nsocket = \"api.sock\"\nlisten_address = \"127.0.0.1:9726\"\ntoken_file = \"api.token\"\nstate_file = \"state.json\"\naudit_log = \"audit.jsonl\"\n",
    );
    let token = lab.dir.path().join("api.token");
    fs::write(&token, format!("{TOKEN}\n")).unwrap();
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    lab.start_agent();
    let socket = lab.dir.path().join("api.sock");

    // Hundreds of idle connections from ten addresses, and clients that
    // announce a 100 MB body and send nothing, on every listener.
    let held = in_netns(&lab.ns('r'), move || {
        let metrics: SocketAddr = "127.0.0.1:9725".parse().unwrap();
        let api: SocketAddr = "127.0.0.1:9726".parse().unwrap();
        let mut held = Vec::new();
        for peer in 2..12 {
            held.extend(open_connections(
                &format!("127.0.0.{peer}"),
                metrics,
                30,
                "GET /metr",
            ));
        }
        let lying =
            "POST /api/v1/exemptions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
        held.extend(open_connections("127.0.0.20", metrics, 8, lying));
        held.extend(open_connections("127.0.0.21", api, 8, lying));
        held
    })
    .join()
    .unwrap();
    assert!(held.len() >= 300, "opened only {} connections", held.len());
    let mut lying_unix = Vec::new();
    for _ in 0..8 {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.write_all(
            b"POST /api/v1/exemptions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n",
        )
        .unwrap();
        lying_unix.push(s);
    }

    let started = Instant::now();
    let metrics = lab.http_get("/metrics").expect("metrics answer");
    assert!(metrics.contains("op25b_build_info"));
    let reply = client::request(
        &Endpoint::Unix(socket.clone()),
        "GET".parse().unwrap(),
        "/api/v1/exemptions",
        Some(TOKEN),
        None,
    )
    .expect("the API answers");
    assert_eq!(reply.status, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "answers took {waited:?}");

    let pid = lab.agent_pid();
    let threads = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    assert!(
        threads < 40,
        "{threads} threads for {} open connections",
        held.len() + 8
    );

    // One grant must not switch OP25B off.
    for prefix in ["0.0.0.0/0", "::/0", "100.0.0.0/8"] {
        let reply = client::request(
            &Endpoint::Unix(socket.clone()),
            "POST".parse().unwrap(),
            "/api/v1/exemptions",
            Some(TOKEN),
            Some(format!("{{\"prefix\":\"{prefix}\"}}").into_bytes()),
        )
        .unwrap();
        assert_eq!(reply.status, 400, "{prefix}: {}", reply.text());
        assert!(reply.text().contains("broader than"), "{}", reply.text());
    }
    assert!(
        !lab.connects(DYN4, MX4, 25, 0.5),
        "port 25 opened by a refused grant"
    );
    drop(held);
    drop(lying_unix);
}

#[test]
fn the_pin_directory_removed_under_the_agent_is_restored_and_nothing_is_claimed_falsely() {
    let mut lab = Lab::up(&[]);
    lab.start_agent();
    assert!(!lab.connects(DYN4, MX4, 25, 0.5));
    fs::remove_dir_all(&lab.pin).unwrap();
    lab.wait_for(Duration::from_secs(5), "the pins to be restored", |l| {
        l.log().contains("pinned again")
    });
    assert!(lab
        .log()
        .contains("was removed or replaced under the running agent"));
    let status = lab.status();
    assert_eq!(status["loaded"], true, "{status}");
    assert_eq!(status["interfaces"][0]["state"], "attached", "{status}");
    // The lock is held again: a second agent is refused.
    let (ok, _, err) = lab.agent_cmd(&["run", "--config", lab.config.to_str().unwrap()]);
    assert!(!ok && err.contains("already manages"), "{err}");
    // Stopping keeps enforcement, and the pins prove it.
    lab.stop_agent(libc::SIGTERM);
    assert!(lab.log().contains("enforcement stays in force"));
    assert!(
        !lab.connects(DYN4, MX4, 25, 0.5),
        "enforcement ended with the agent"
    );
}

#[test]
fn a_recreated_interface_is_attached_on_the_kernels_notification() {
    let late = format!("o5hard{}", op25b_tests::unique_suffix());
    let late = &late[..late.len().min(15)];
    let mut lab = Lab::up(&[late]);
    lab.start_agent();
    let r = lab.ns('r');
    let peer = format!("{late}p");
    let add = || {
        run(
            "ip",
            &[
                "-n", &r, "link", "add", late, "type", "veth", "peer", "name", &peer,
            ],
        )
    };
    add();
    lab.wait_for(
        Duration::from_secs(3),
        "the interface to be attached",
        |l| l.xdp_prog_id(late).is_some(),
    );
    run("ip", &["-n", &r, "link", "del", late]);
    add();
    lab.wait_for(Duration::from_secs(3), "the recreated interface", |l| {
        l.xdp_prog_id(late).is_some()
    });
    let attached: Vec<String> = lab
        .log()
        .lines()
        .filter(|l| l.contains("\"attached\"") && l.contains(late))
        .map(str::to_owned)
        .collect();
    assert!(
        attached.iter().any(|l| l.contains("link notification")),
        "no attach on a link notification: {attached:?}"
    );
}

#[test]
fn an_emptied_or_half_written_config_does_not_switch_enforcement_off() {
    let mut lab = Lab::up(&[]);
    lab.start_agent();
    assert!(!lab.connects(DYN4, MX4, 25, 0.5));
    let text = fs::read_to_string(&lab.config).unwrap();
    // What `>` redirection or an editor saving in place leaves for a moment.
    fs::write(&lab.config, "").unwrap();
    lab.wait_for(
        Duration::from_secs(5),
        "the empty config to be refused",
        |l| l.log().contains("no dynamic prefixes while"),
    );
    assert!(
        !lab.connects(DYN4, MX4, 25, 0.5),
        "an empty file opened port 25"
    );
    fs::write(&lab.config, text).unwrap();
    lab.wait_for(
        Duration::from_secs(5),
        "the full config to be reloaded",
        |l| l.log().contains("reloaded:"),
    );
    assert!(!lab.connects(DYN4, MX4, 25, 0.5));
}

#[test]
fn a_read_token_keeps_sources_and_subscribers_from_whoever_reaches_the_listener() {
    let mut lab = Lab::up_with(&[], "[metrics]\nread_token_file = \"read.token\"\n");
    let token_path = lab.dir.path().join("read.token");
    fs::write(&token_path, "read-secret\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&token_path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    lab.start_agent();
    assert!(!lab.connects(DYN4, MX4, 25, 0.5), "not enforcing");
    for path in ["/metrics", "/api/v1/top?window=1h"] {
        let refused = lab.http_get(path).unwrap_err();
        assert!(
            refused.contains("401"),
            "{path} without the token: {refused}"
        );
    }
    assert_eq!(lab.http_get("/healthz").unwrap(), "ok\n");
    let metrics = in_netns(&lab.ns('r'), move || {
        client::AdminEndpoint {
            endpoint: Endpoint::Tcp("127.0.0.1:9725".into()),
            read_token: Some("read-secret".into()),
        }
        .get_text("/metrics")
    })
    .join()
    .unwrap()
    .expect("/metrics with the token");
    assert!(metrics.contains("op25b_build_info"), "{metrics}");
    // The CLI reads the token from the same config and sends it.
    let (ok, cli, err) = lab.top_last_hour();
    assert!(ok, "top with the config's token: {err}");
    assert!(cli.lines().any(|l| l.starts_with(DYN4)), "{cli}");
    // A token others can read is refused at start, by name.
    lab.stop_agent(libc::SIGTERM);
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&token_path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (ok, _, err) = lab.agent_cmd(&["run", "--config", lab.config.to_str().unwrap()]);
    assert!(!ok, "started with an exposed read token");
    assert!(
        err.contains("metrics.read_token_file") && err.contains("chmod 600"),
        "{err}"
    );
}
