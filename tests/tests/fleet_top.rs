//! `top --fleet` end to end: two edge routers (two labs) registered in one
//! etcd, each with blocked attempts of its own, their admin listeners
//! guarded by the fleet's read token and reachable from each other through
//! the etcd namespace. The merged answer adds both boxes' counts; a wrong
//! token leaves both out, each named with the refusal. Needs root and etcd.
use std::{fs, os::unix::fs::PermissionsExt as _, time::Duration};

use op25b_tests::{
    etcd::{Etcd, EtcdNet},
    lab::Lab,
    netns::run,
};

const DYN4: &str = "100.64.1.2";
const MX4: &str = "198.51.100.25";
const READ_TOKEN: &str = "fleet-read-token";

fn secret_file(lab: &Lab, name: &str, text: &str) {
    let path = lab.dir.path().join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn router_lab(index: usize, node: &str) -> Lab {
    let lab = Lab::up_with(
        &[],
        &format!(
            "[metrics]\nlisten_address = \"[::]:9725\"\nread_token_file = \"read.token\"\n\
             [fleet]\netcd_endpoints = [\"http://[2001:db8:e7c{index}::1]:2379\"]\nprefix = \"/top\"\nnode_name = \"{node}\"\n\
             snapshot_file = \"fleet-snapshot.json\"\nadvertise_address = \"[2001:db8:e7c{index}::2]:9725\"\n"
        ),
    );
    secret_file(&lab, "read.token", READ_TOKEN);
    lab
}

/// Lets each router reach the other's side of the etcd namespace.
fn route_between(net: &EtcdNet, routers: [&Lab; 2]) {
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ],
    );
    for (i, lab) in routers.iter().enumerate() {
        let other = 1 - i;
        run(
            "ip",
            &[
                "-n",
                &lab.ns('r'),
                "-6",
                "route",
                "add",
                &format!("2001:db8:e7c{other}::/64"),
                "via",
                &format!("2001:db8:e7c{i}::1"),
            ],
        );
    }
}

fn top_fleet(lab: &Lab) -> serde_json::Value {
    let config = lab.config.to_str().unwrap().to_owned();
    let (ok, out, err) = lab.agent_cmd(&[
        "top", "--fleet", "--window", "1h", "--json", "--config", &config,
    ]);
    assert!(ok, "top --fleet: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn top_fleet_merges_every_box_with_the_fleets_read_token() {
    let mut a = router_lab(0, "edge-a");
    let mut b = router_lab(1, "edge-b");
    let (net, _) = EtcdNet::new(&[&a.ns('r'), &b.ns('r')]);
    route_between(&net, [&a, &b]);
    let _etcd = Etcd::start_in(&net.ns);
    a.start_agent();
    b.start_agent();
    // Blocked attempts on both boxes.
    for (lab, tries) in [(&a, 2), (&b, 3)] {
        for _ in 0..tries {
            assert!(!lab.connects(DYN4, MX4, 25, 0.3), "not enforcing");
        }
    }
    let status_ok = |l: &Lab| {
        let config = l.config.to_str().unwrap().to_owned();
        let (_, out, _) = l.agent_cmd(&["fleet", "status", "--json", "--config", &config]);
        serde_json::from_str::<serde_json::Value>(&out).is_ok_and(|s| {
            s["agents"]
                .as_array()
                .is_some_and(|agents| agents.iter().filter(|a| a["state"] == "ok").count() == 2)
        })
    };
    a.wait_for(Duration::from_secs(10), "both agents registered", status_ok);

    let top = top_fleet(&a);
    assert_eq!(top["boxes"], 2, "{top}");
    assert_eq!(top["unreachable"].as_array().unwrap().len(), 0, "{top}");
    let row = top["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == DYN4)
        .unwrap_or_else(|| panic!("{DYN4} not in {top}"));
    // Each box's own answer (the CLI sends the token from the config):
    // the merged row is their sum.
    let own: Vec<u64> = [&a, &b]
        .iter()
        .map(|lab| {
            let config = lab.config.to_str().unwrap().to_owned();
            let (ok, out, err) =
                lab.agent_cmd(&["top", "--window", "1h", "--json", "--config", &config]);
            assert!(ok, "top: {err}");
            let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
            answer["sources"][0]["attempts"].as_u64().unwrap_or(0)
        })
        .collect();
    assert!(own.iter().all(|&n| n > 0), "a box saw no attempt: {own:?}");
    assert_eq!(row["attempts"].as_u64(), Some(own[0] + own[1]), "{top}");
    let boxes: Vec<&str> = row["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert_eq!(boxes, ["edge-a", "edge-b"], "{top}");

    // The laptop's config with the wrong token: both boxes refuse, by name.
    secret_file(&a, "read.token", "not-the-token");
    let refused = top_fleet(&a);
    assert_eq!(refused["boxes"], 0, "{refused}");
    let unreachable: Vec<&str> = refused["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(unreachable.len(), 2, "{refused}");
    for (node, why) in ["edge-a", "edge-b"].iter().zip(&unreachable) {
        assert!(why.starts_with(node) && why.contains("401"), "{why}");
    }
    a.stop_agent(libc::SIGTERM);
    b.stop_agent(libc::SIGTERM);
}
