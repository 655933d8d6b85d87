//! Fleet sync end to end, in network namespaces: two edge routers (two
//! labs), each with an agent, and a real etcd in a namespace of its own
//! wired to both. A grant through A's API enforces on B; etcd killed ->
//! both keep enforcing, B restarted -> enforces from its snapshot; etcd
//! back -> a new grant converges; a compaction while B is cut off -> B
//! resyncs; a malformed value -> refused with the key named, the last good
//! policy stays, metrics and fleet status say so; a grant by subscriber
//! through A's API exempts that subscriber's RADIUS session on B. Needs
//! root, etcd and radclient.
use std::{fs, time::Duration};

use op25b_tests::{
    etcd::{Etcd, EtcdNet},
    lab::Lab,
    netns::run,
};

const DYN4: &str = "100.64.1.2";
const DYN6: &str = "2001:db8:1000::2";
const MX4: &str = "198.51.100.25";
const MX6: &str = "2001:db8:5100::25";
const TOKEN: &str = "fleet-e2e-token";
const NAS_SECRET: &str = "fleet-e2e-nas";
/// B's RADIUS accounting listener (inside B's router namespace).
const RADIUS_TOML: &str = "[radius]\naccounting_listen = \"127.0.0.1:1813\"\nsession_state_file = \"sessions.json\"\n[[radius.clients]]\naddress = \"127.0.0.1/32\"\nsecret_file = \"nas.secret\"\n";

fn router_lab(index: usize, node: &str, extra_toml: &str) -> Lab {
    let lab = Lab::up_with(
        &[],
        &format!(
            "{extra_toml}[api]\nsocket = \"api.sock\"\ntoken_file = \"api.token\"\nstate_file = \"state.json\"\naudit_log = \"audit.jsonl\"\n\
             [fleet]\netcd_endpoints = [\"http://[2001:db8:e7c{index}::1]:2379\"]\nprefix = \"/e2e\"\nnode_name = \"{node}\"\nsnapshot_file = \"fleet-snapshot.json\"\n"
        ),
    );
    let token = lab.dir.path().join("api.token");
    fs::write(&token, TOKEN).unwrap();
    // The agent refuses a token others can read.
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let secret = lab.dir.path().join("nas.secret");
    fs::write(&secret, NAS_SECRET).unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    lab
}

/// The values under an etcd key prefix.
fn etcd_values(etcd: &Etcd, prefix: &'static str) -> Vec<String> {
    etcd.with_client(move |c| {
        Box::pin(async move {
            let r = c
                .kv_client()
                .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .unwrap();
            r.kvs()
                .iter()
                .map(|kv| kv.value_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
    })
}

fn cli(lab: &Lab, args: &[&str]) -> String {
    let mut all = args.to_vec();
    let config = lab.config.to_str().unwrap().to_owned();
    all.extend(["--config", &config]);
    let (ok, out, err) = lab.agent_cmd(&all);
    assert!(ok, "op25b-agent {args:?}: {out}{err}");
    out
}

fn fleet_status(lab: &Lab) -> serde_json::Value {
    let config = lab.config.to_str().unwrap().to_owned();
    let (_, out, err) = lab.agent_cmd(&["fleet", "status", "--json", "--config", &config]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("fleet status: {e}: {out}{err}"))
}

fn agent_state(status: &serde_json::Value, node: &str) -> String {
    status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["node"] == node)
        .map_or_else(
            || "missing".into(),
            |a| a["state"].as_str().unwrap().to_owned(),
        )
}

const CONVERGE: Duration = Duration::from_secs(5);
/// Losing etcd is noticed within a few progress rounds.
const NOTICE: Duration = Duration::from_secs(20);

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story, step by step, as the issue tells it"
)]
fn two_routers_one_policy_fail_static_snapshot_resync_and_refusal() {
    let mut a = router_lab(0, "edge-a", "");
    let mut b = router_lab(1, "edge-b", RADIUS_TOML);
    let (net, _) = EtcdNet::new(&[&a.ns('r'), &b.ns('r')]);
    let mut etcd = Etcd::start_in(&net.ns);
    a.start_agent();
    b.start_agent();
    for lab in [&a, &b] {
        assert!(
            !lab.connects(DYN4, MX4, 25, 0.5),
            "dynamic source not blocked before any grant"
        );
    }

    // A grant through A's provisioning API enforces on B's router.
    cli(
        &a,
        &["exempt", "add", "100.64.1.2/32", "--reason", "ticket 7"],
    );
    b.wait_for(CONVERGE, "A's grant to reach B", |l| {
        l.connects(DYN4, MX4, 25, 0.3)
    });
    a.wait_for(CONVERGE, "A's grant on A", |l| {
        l.connects(DYN4, MX4, 25, 0.3)
    });
    assert!(
        !a.dir.path().join("state.json").exists(),
        "with [fleet] the grant belongs in etcd, not in A's state file"
    );
    let audit = etcd_values(&etcd, "/e2e/audit/");
    assert!(
        audit
            .iter()
            .any(|l| l.contains("ticket 7") && l.contains("edge-a")),
        "{audit:?}"
    );
    a.wait_for(CONVERGE, "both agents registered and up to date", |l| {
        let s = fleet_status(l);
        agent_state(&s, "edge-a") == "ok" && agent_state(&s, "edge-b") == "ok"
    });
    assert_eq!(b.metric("op25b_fleet_connected"), Some(1.0));

    // etcd killed: both keep enforcing exactly as last applied.
    etcd.kill();
    for lab in [&a, &b] {
        lab.wait_for(NOTICE, "the agent to notice etcd is gone", |l| {
            l.metric("op25b_fleet_connected") == Some(0.0)
        });
        assert!(
            lab.connects(DYN4, MX4, 25, 1.0),
            "the fleet grant was lost without etcd"
        );
        assert!(
            !lab.connects(DYN6, MX6, 25, 0.5),
            "enforcement lost without etcd"
        );
    }
    // B restarted while etcd is down: enforces from its snapshot.
    b.stop_agent(libc::SIGTERM);
    b.start_agent();
    assert!(b.log().contains("enforcing the snapshot"), "{}", b.log());
    assert!(
        b.connects(DYN4, MX4, 25, 1.0),
        "B forgot the fleet grant across a restart without etcd"
    );
    assert!(!b.connects(DYN6, MX6, 25, 0.5));

    // etcd back: a new grant (from an operator's CLI) converges on both.
    etcd.restart();
    cli(
        &a,
        &[
            "fleet",
            "exempt",
            "add",
            "2001:db8:1000::2/128",
            "--reason",
            "ticket 8",
        ],
    );
    for lab in [&a, &b] {
        lab.wait_for(NOTICE, "the new grant after etcd came back", |l| {
            l.connects(DYN6, MX6, 25, 0.3)
        });
    }

    // B cut off from etcd; meanwhile a revocation and a compaction.
    let b_end = net.router_end(1);
    run(
        "ip",
        &[
            "netns",
            "exec",
            &b.ns('r'),
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{b_end}.keep_addr_on_down=1"),
        ],
    );
    run("ip", &["-n", &b.ns('r'), "link", "set", &b_end, "down"]);
    b.wait_for(NOTICE, "B to notice it is cut off", |l| {
        l.metric("op25b_fleet_connected") == Some(0.0)
    });
    cli(&a, &["exempt", "del", "100.64.1.2/32"]);
    a.wait_for(CONVERGE, "the revocation on A", |l| {
        !l.connects(DYN4, MX4, 25, 0.3)
    });
    assert!(
        b.connects(DYN4, MX4, 25, 1.0),
        "B changed its policy while cut off"
    );
    etcd.with_client(|mut c| {
        Box::pin(async move {
            let revision = c
                .get("/e2e/policy/changed", None)
                .await
                .unwrap()
                .header()
                .unwrap()
                .revision();
            c.compact(
                revision,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .unwrap();
        })
    });
    run("ip", &["-n", &b.ns('r'), "link", "set", &b_end, "up"]);
    b.wait_for(NOTICE, "B to resync after the compaction", |l| {
        !l.connects(DYN4, MX4, 25, 0.3)
    });
    assert!(
        b.log().contains("compacted"),
        "B did not report the resync: {}",
        b.log()
    );
    assert!(b.connects(DYN6, MX6, 25, 1.0), "the resync lost a grant");

    // A malformed value: refused with its key named; the last good policy stays.
    let bad_key = "/e2e/policy/grants/exempt/2001:db8:1000::2/128";
    etcd.put(
        bad_key,
        "{\"prefix\": \"2001:db8:1000::2/128\", \"colour\": 1}",
    );
    for lab in [&a, &b] {
        lab.wait_for(CONVERGE, "the refusal in the log and metrics", |l| {
            l.log().contains(bad_key) && l.metric("op25b_fleet_refused_values") == Some(1.0)
        });
        assert!(
            lab.connects(DYN6, MX6, 25, 1.0),
            "a malformed value removed the last good grant"
        );
    }
    a.wait_for(CONVERGE, "fleet status to flag the refusal", |l| {
        let s = fleet_status(l);
        s["agents"].as_array().unwrap().iter().all(|agent| {
            agent["state"] == "error"
                && agent["last_error"].as_str().unwrap_or("").contains(bad_key)
        })
    });
    // Agents that watched and an agent that re-read everything report the
    // same revision (the stale-box alert compares them).
    a.wait_for(CONVERGE, "A and B at one applied revision", |l| {
        let revision = l.metric("op25b_fleet_applied_revision");
        revision.is_some() && revision == b.metric("op25b_fleet_applied_revision")
    });
    // A grant broader than the exemption bound (one etcd write away from
    // switching OP25B off for every box): refused with its key and the
    // bound named; DYN4 stays blocked.
    let everyone = "/e2e/policy/grants/exempt/0.0.0.0/0";
    etcd.put(
        everyone,
        "{\"prefix\": \"0.0.0.0/0\", \"actor\": \"mallory\", \"created_at\": 1}",
    );
    for lab in [&a, &b] {
        lab.wait_for(CONVERGE, "the too-broad grant refused by name", |l| {
            let log = l.log();
            log.contains(everyone)
                && log.contains("policy.prefix_limits.exempt_ipv4")
                && l.metric("op25b_fleet_refused_values") == Some(2.0)
        });
        assert!(
            !lab.connects(DYN4, MX4, 25, 0.5),
            "a fleet 0.0.0.0/0 exemption opened port 25"
        );
    }
    a_subscriber_granted_through_a_is_exempt_in_her_session_on_b(&a, &b, &etcd);
    // Every fleet series the alert rules use is exported by a fleet agent.
    let text = a.http_get("/metrics").unwrap();
    let rules = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/op25b-rules.yml"
    ))
    .unwrap();
    let used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("op25b_fleet_"))
        .collect();
    assert!(used.len() >= 3, "{used:?}");
    for word in used {
        assert!(
            text.contains(&format!("# TYPE {word} ")),
            "the rules use {word}, which the agent does not export"
        );
    }
    drop(net);
}

/// Alice has a RADIUS session on B only (DYN4, blocked). A grant by
/// subscriber through A's API goes to etcd and exempts her session on B;
/// A, where she has no session, keeps blocking DYN4. Revoked from the
/// fleet CLI, B blocks her again.
fn a_subscriber_granted_through_a_is_exempt_in_her_session_on_b(a: &Lab, b: &Lab, etcd: &Etcd) {
    let (answered, out) = op25b_tests::radclient::send(
        &b.ns('r'),
        1813,
        "acct",
        NAS_SECRET,
        &format!(
            "Acct-Status-Type = Start\nAcct-Session-Id = \"s-1\"\nUser-Name = \"alice@example.jp\"\nFramed-IP-Address = {DYN4}\nNAS-Identifier = \"bng1\"\n"
        ),
    );
    assert!(answered, "no Accounting-Response: {out}\n{}", b.log());
    assert!(
        !b.connects(DYN4, MX4, 25, 0.5),
        "alice exempt before any grant"
    );

    cli(
        a,
        &[
            "exempt",
            "add",
            "--subscriber",
            "alice@example.jp",
            "--reason",
            "ticket 9",
        ],
    );
    b.wait_for(
        CONVERGE,
        "A's subscriber grant to exempt alice's session on B",
        |l| l.connects(DYN4, MX4, 25, 0.3),
    );
    assert!(
        !a.connects(DYN4, MX4, 25, 0.5),
        "A has no session of alice: DYN4 must stay blocked there"
    );
    let grant = etcd_values(
        etcd,
        "/e2e/policy/grants/exempt_subscribers/alice@example.jp",
    );
    assert!(
        grant.len() == 1 && grant[0].contains("ticket 9"),
        "{grant:?}"
    );
    let audit = etcd_values(etcd, "/e2e/audit/");
    assert!(
        audit
            .iter()
            .any(|l| l.contains("subscriber alice@example.jp") && l.contains("edge-a")),
        "{audit:?}"
    );
    assert!(!a.dir.path().join("state.json").exists());
    assert!(cli(a, &["exempt", "list"]).contains("subscriber alice@example.jp"));
    b.wait_for(CONVERGE, "the grant in B's snapshot", |l| {
        fs::read_to_string(l.dir.path().join("fleet-snapshot.json"))
            .is_ok_and(|s| s.contains("exempt_subscribers/alice@example.jp"))
    });

    cli(
        a,
        &["fleet", "exempt", "del", "--subscriber", "alice@example.jp"],
    );
    b.wait_for(CONVERGE, "the revoked subscriber grant leaving B", |l| {
        !l.connects(DYN4, MX4, 25, 0.3)
    });
}
