//! `op25b-agent run` in the netns lab with real TCP connections: enforcement,
//! live reload, bad reloads, restarts and upgrades under traffic, kill -9,
//! and interfaces that appear later. Needs root.
use std::{
    fs,
    io::Write as _,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use op25b_tests::{lab::Lab, netns::run};

const DYN4: &str = "100.64.1.2";
const EXEMPT4: &str = "100.64.1.7";
const STATIC4: &str = "203.0.113.10";
const MX4: &str = "198.51.100.25";
const RELAY4: &str = "192.0.2.25";
const DYN6: &str = "2001:db8:1000::2";
const EXEMPT6: &str = "2001:db8:1000::7";
const STATIC6: &str = "2001:db8:2000::10";
const MX6: &str = "2001:db8:5100::25";
const RELAY6: &str = "2001:db8:25::25";

#[test]
fn enforces_op25b_over_real_tcp() {
    let mut lab = Lab::up(&[]);
    // Before op25b: port 25 is open to everyone (the lab is sound).
    assert!(
        lab.connects(DYN4, MX4, 25, 2.0),
        "lab broken: no port 25 without op25b"
    );
    lab.start_agent();
    let r0 = format!("{}r0", lab.name);
    assert!(lab.xdp_prog_id(&r0).is_some(), "nothing attached to {r0}");
    for (dynamic, exempt, stat, mx, relay) in [
        (DYN4, EXEMPT4, STATIC4, MX4, RELAY4),
        (DYN6, EXEMPT6, STATIC6, MX6, RELAY6),
    ] {
        assert!(
            !lab.connects(dynamic, mx, 25, 1.0),
            "{dynamic} reached {mx}:25"
        );
        assert!(
            lab.connects(dynamic, mx, 587, 2.0),
            "{dynamic} could not submit on 587"
        );
        assert!(
            lab.connects(dynamic, mx, 465, 2.0),
            "{dynamic} could not submit on 465"
        );
        assert!(
            lab.connects(dynamic, relay, 25, 2.0),
            "{dynamic} could not reach the relay"
        );
        assert!(
            lab.connects(exempt, mx, 25, 2.0),
            "exempt {exempt} was blocked"
        );
        assert!(lab.connects(stat, mx, 25, 2.0), "static {stat} was blocked");
    }
    assert!(
        lab.counted(&r0, "blocked") >= 2,
        "blocked SYNs not counted: {}",
        lab.status()
    );
    let status = lab.status();
    let iface = status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == r0.as_str())
        .unwrap();
    assert_eq!(iface["state"], "attached");
    assert_eq!(
        iface["mode"], "driver",
        "veth supports native XDP; auto must pick it"
    );
}

#[test]
fn live_list_edit_takes_effect_within_a_second() {
    let mut lab = Lab::up(&[]);
    lab.start_agent();
    assert!(!lab.connects(DYN4, MX4, 25, 0.5));
    let mut list = fs::OpenOptions::new()
        .append(true)
        .open(lab.dir.path().join("lists/exempt.txt"))
        .unwrap();
    writeln!(list, "{DYN4}/32 # granted live").unwrap();
    drop(list);
    let edited = Instant::now();
    while !lab.connects(DYN4, MX4, 25, 0.2) {
        assert!(
            edited.elapsed() < Duration::from_secs(3),
            "exemption not applied; log:\n{}",
            lab.log()
        );
    }
    let took = edited.elapsed();
    // One 200 ms connect attempt of slack on top of the one-second promise.
    assert!(
        took < Duration::from_millis(1200),
        "exemption took {took:?}"
    );
    // And removing it blocks again.
    let path = lab.dir.path().join("lists/exempt.txt");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("{DYN4}/32 # granted live\n"), "");
    fs::write(&path, text).unwrap();
    lab.wait_for(Duration::from_secs(3), "exemption removal", |l| {
        !l.connects(DYN4, MX4, 25, 0.2)
    });
}

#[test]
fn broken_reload_keeps_the_old_policy_and_names_file_and_line() {
    let mut lab = Lab::up(&[]);
    lab.start_agent();
    let before = lab.status();
    let path = lab.dir.path().join("lists/exempt.txt");
    let good = fs::read_to_string(&path).unwrap();
    let lines = good.lines().count();
    // A valid new entry together with a broken one: nothing may be applied.
    fs::write(&path, format!("{good}{DYN4}/32\n100.64.1.9/8\n")).unwrap();
    let bad_line = format!("exempt.txt:{}", lines + 2);
    lab.wait_for(Duration::from_secs(3), "the reload error", |l| {
        l.log().contains(&bad_line)
    });
    assert!(lab.log().contains("host bits set"), "{}", lab.log());
    assert!(
        !lab.connects(DYN4, MX4, 25, 0.5),
        "half of a broken reload was applied"
    );
    assert!(
        lab.connects(EXEMPT4, MX4, 25, 2.0),
        "the old exemption was lost"
    );
    assert_eq!(
        lab.status()["lists"],
        before["lists"],
        "list sizes changed after a refused reload"
    );

    // SIGHUP with a broken config file: refused the same way.
    let config = lab.edit_config("blocked_ports = [25]", "blocked_ports = [25, 587]");
    lab.signal_agent(libc::SIGHUP);
    lab.wait_for(Duration::from_secs(3), "the refused port 587", |l| {
        l.log().contains("op25b.toml:") && l.log().contains("port 587 is a mail submission port")
    });
    assert!(lab.connects(DYN4, MX4, 587, 2.0), "587 got blocked");

    // Fixing both files applies the new policy.
    fs::write(&lab.config, config).unwrap();
    fs::write(&path, format!("{good}{DYN4}/32\n")).unwrap();
    lab.wait_for(Duration::from_secs(3), "the fixed reload", |l| {
        l.connects(DYN4, MX4, 25, 0.3)
    });
}

#[test]
fn interface_created_after_start_gets_attached() {
    let late = format!("o5late{}", op25b_tests::unique_suffix());
    let late = &late[..late.len().min(15)];
    let mut lab = Lab::up(&[late]);
    lab.start_agent();
    let status = lab.status();
    assert!(
        !status["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == late && i["state"] == "attached"),
        "{status}"
    );
    let (_, text, _) = lab.agent_cmd(&["status", "--config", lab.config.to_str().unwrap()]);
    assert!(
        text.contains(&format!("interface {late}: missing")),
        "{text}"
    );

    let r = lab.ns('r');
    let add_late = || {
        run(
            "ip",
            &[
                "-n",
                &r,
                "link",
                "add",
                late,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{late}p"),
            ],
        )
    };
    add_late();
    run("ip", &["-n", &r, "link", "set", late, "up"]);
    lab.wait_for(
        Duration::from_secs(3),
        "the late interface to be attached",
        |l| l.xdp_prog_id(late).is_some(),
    );
    // Recreated under the same name: attached again.
    run("ip", &["-n", &r, "link", "del", late]);
    add_late();
    lab.wait_for(
        Duration::from_secs(3),
        "the recreated interface to be attached",
        |l| l.xdp_prog_id(late).is_some(),
    );
    let status = lab.status();
    let entry = status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == late)
        .unwrap()
        .clone();
    assert_eq!(entry["state"], "attached", "{status}");
    assert_eq!(entry["mode"], "skb", "xdp_mode = \"skb\" was configured");
}

/// Port-25 SYNs from `src` that reached the internet namespace.
fn arrived(lab: &Lab, src: &str) -> u64 {
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.ns('i'),
            "nft",
            "list",
            "chain",
            "inet",
            "o5",
            "pre",
        ],
    );
    out.lines()
        .filter(|l| l.contains(src))
        .filter_map(|l| {
            l.split("packets ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn restarts_upgrades_and_kill_9_under_syn_traffic_let_nothing_through() {
    let mut lab = Lab::up(&[]);
    let i = lab.ns('i');
    run(
        "ip",
        &["netns", "exec", &i, "nft", "add", "table", "inet", "o5"],
    );
    run(
        "ip",
        &[
            "netns",
            "exec",
            &i,
            "nft",
            "add chain inet o5 pre { type filter hook prerouting priority -300 ; }",
        ],
    );
    for src in [DYN4, EXEMPT4] {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &i,
                "nft",
                &format!("add rule inet o5 pre ip saddr {src} tcp dport 25 counter"),
            ],
        );
    }
    lab.start_agent();
    let r0 = format!("{}r0", lab.name);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = lab.syn_flood(DYN4, MX4, Arc::clone(&stop), Arc::clone(&sent));
    let blocked_before = lab.counted(&r0, "blocked");
    let mut program_ids = vec![lab.xdp_prog_id(&r0).unwrap()];

    for round in 0..2 {
        // Orderly restart (on_exit = "keep").
        lab.stop_agent(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        lab.start_agent();
        program_ids.push(lab.xdp_prog_id(&r0).unwrap());
        // Crash: kill -9, a while with no agent at all, then a new one (an
        // upgrade is this same path: a new program swapped into the link).
        lab.stop_agent(libc::SIGKILL);
        assert!(
            lab.xdp_prog_id(&r0).is_some(),
            "round {round}: kill -9 detached the program"
        );
        std::thread::sleep(Duration::from_millis(700));
        lab.start_agent();
        program_ids.push(lab.xdp_prog_id(&r0).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();

    let sent = sent.load(Ordering::Relaxed);
    let blocked = lab.counted(&r0, "blocked") - blocked_before;
    assert!(sent > 1000, "only {sent} SYNs sent");
    assert_eq!(
        arrived(&lab, DYN4),
        0,
        "blocked SYNs leaked through during restarts (sent {sent})"
    );
    assert!(
        blocked >= sent * 9 / 10,
        "counters lost across restarts: {blocked} counted of {sent} sent"
    );
    program_ids.dedup();
    assert_eq!(
        program_ids.len(),
        5,
        "every new agent must swap in its own program: {program_ids:?}"
    );

    // Control: the same frames from the exempt source do arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = lab.syn_flood(EXEMPT4, MX4, Arc::clone(&stop), Arc::new(AtomicU64::new(0)));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert!(
        arrived(&lab, EXEMPT4) > 0,
        "injected frames never reach the internet side: the leak check proves nothing"
    );
}

#[test]
fn check_config_exit_codes_and_locations() {
    op25b_tests::require_root();
    let ok = Command::new(op25b_tests::agent_bin())
        .args(["check-config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/op25b.toml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("dynamic: 1 IPv4, 1 IPv6 prefixes"));
    let dir = op25b_tests::TempDir::new("cc");
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "[policy]\ndynamic = [\"100.64.0.0/10\"]\nexempt = [\"100.64.1.7/33\"]\n",
    )
    .unwrap();
    let out = Command::new(op25b_tests::agent_bin())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:3: policy.exempt[0]: prefix length /33 is longer than 32 bits"),
        "{stderr}"
    );
}

/// The capabilities the systemd unit grants, from the unit file itself.
fn unit_capabilities() -> Vec<String> {
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/systemd/op25b-agent.service"
    ))
    .unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds capabilities");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// Runs `run` under `setpriv` with only `caps`; true if it attached.
fn attaches_with(lab: &Lab, caps: &[String]) -> bool {
    let bounding = format!(
        "-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns('r')))
        .args([
            "setpriv",
            &format!("--bounding-set={bounding}"),
            "--inh-caps=-all",
            "--no-new-privs",
        ])
        .arg(op25b_tests::agent_bin())
        .args(["run", "--config"])
        .arg(&lab.config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let r0 = format!("{}r0", lab.name);
    let start = std::time::Instant::now();
    let mut attached = false;
    while start.elapsed() < Duration::from_secs(5) {
        // Attached and pinned (a kill between the two would detach).
        let pinned = fs::read_dir(lab.pin.join("links")).is_ok_and(|mut d| d.next().is_some());
        if lab.xdp_prog_id(&r0).is_some() && pinned {
            attached = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    attached
}

#[test]
fn the_units_capabilities_suffice_and_each_is_needed() {
    let caps = unit_capabilities();
    assert_eq!(caps, ["bpf", "net_admin", "perfmon"]);
    let lab = Lab::up(&[]);
    assert!(
        attaches_with(&lab, &caps),
        "the agent cannot attach with {caps:?}"
    );
    assert!(lab.connects(EXEMPT4, MX4, 25, 2.0));
    assert!(
        !lab.connects(DYN4, MX4, 25, 0.5),
        "attached but not enforcing under reduced capabilities"
    );
    let detach = |lab: &Lab| {
        // No process holds the link: removing its pin detaches it.
        let _ = fs::remove_dir_all(&lab.pin);
        let r0 = format!("{}r0", lab.name);
        lab.wait_for(Duration::from_secs(3), "the program to detach", |l| {
            l.xdp_prog_id(&r0).is_none()
        });
    };
    detach(&lab);
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| c != &missing).cloned().collect();
        assert!(
            !attaches_with(&lab, &fewer),
            "CAP_{} is in the unit but not needed",
            missing.to_uppercase()
        );
        detach(&lab);
    }
}

#[test]
fn a_list_entry_with_expires_at_leaves_on_time() {
    let mut lab = Lab::up(&[]);
    let expiry = std::time::SystemTime::now() + Duration::from_secs(3);
    let stamp = humantime::format_rfc3339_seconds(expiry);
    let path = lab.dir.path().join("lists/exempt.txt");
    let mut list = fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(list, "{DYN4}/32 expires_at={stamp} # trial").unwrap();
    drop(list);
    let (ok, out, err) = lab.agent_cmd(&["check-config", lab.config.to_str().unwrap()]);
    assert!(ok && out.contains("1 temporary (expires_at)"), "{out}{err}");
    lab.start_agent();
    assert!(
        lab.connects(DYN4, MX4, 25, 1.0),
        "the temporary exemption is not in force"
    );
    lab.wait_for(Duration::from_secs(6), "the entry to expire", |l| {
        !l.connects(DYN4, MX4, 25, 0.3)
    });
    assert!(lab.log().contains("expiries applied"), "{}", lab.log());
}

#[test]
fn a_pin_path_off_bpffs_is_refused_with_the_reason() {
    op25b_tests::require_root();
    let dir = op25b_tests::TempDir::new("nobpffs");
    let config = dir.path().join("op25b.toml");
    fs::write(
        &config,
        format!(
            "pin_path = \"{}\"\n[metrics]\nlisten_address = \"\"\n",
            dir.path().join("pins").display()
        ),
    )
    .unwrap();
    let out = Command::new(op25b_tests::agent_bin())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not on a bpffs") && stderr.contains("mount -t bpf bpf"),
        "{stderr}"
    );
}

#[test]
fn a_pool_moves_from_monitor_to_reject_to_drop_with_a_reload() {
    let pool = "[[policy.pools]]\nname = \"ftth-east\"\naction = \"monitor\"\nprefixes = [\"100.64.1.2/32\", \"2001:db8:1000::2/128\"]\n";
    let mut lab = Lab::up_with(&[], pool);
    lab.start_agent();
    let r0 = format!("{}r0", lab.name);
    // Monitor: mail flows, and is counted as what would have been blocked.
    assert!(lab.connects(DYN4, MX4, 25, 2.0), "monitor must pass");
    assert!(lab.connects(DYN6, MX6, 25, 2.0), "monitor must pass (IPv6)");
    assert!(lab.counted(&r0, "would_block") >= 2, "{}", lab.status());
    let metrics = lab.http_get("/metrics").unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("op25b_pool_packets_total{pool=\"ftth-east\",pool_action=\"monitor\",reason=\"would_block\"}")), "{metrics}");
    // A static neighbour in the default pool is unaffected, the default pool still drops.
    assert!(!lab.connects(EXEMPT4, MX4, 25, 0.1) || lab.connects(EXEMPT4, MX4, 25, 2.0));

    // Reject: the client fails fast with "connection refused".
    lab.edit_config("action = \"monitor\"", "action = \"reject\"");
    lab.wait_for(Duration::from_secs(3), "the reject action", |l| {
        l.connect_report(DYN4, MX4, 25, 0.5)
            .contains("ConnectionRefused")
    });
    for (src, dst) in [(DYN4, MX4), (DYN6, MX6)] {
        let start = std::time::Instant::now();
        let report = lab.connect_report(src, dst, 25, 5.0);
        let took = start.elapsed();
        assert!(report.contains("ConnectionRefused"), "{src}: {report}");
        assert!(
            took < Duration::from_millis(1500),
            "{src}: refused only after {took:?}"
        );
    }
    assert!(lab.counted(&r0, "rejected") >= 2);
    assert!(
        lab.connects(DYN4, MX4, 587, 2.0),
        "submission must stay open in a reject pool"
    );

    // Drop: silence again.
    lab.edit_config("action = \"reject\"", "action = \"drop\"");
    lab.wait_for(Duration::from_secs(3), "the drop action", |l| {
        l.connect_report(DYN4, MX4, 25, 0.5)
            .contains("TimeoutError")
    });
}
