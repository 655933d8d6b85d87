//! A list of 1,000,000 prefixes loads, and reloads with 1% changed as a
//! diff, into the real maps. Needs root. (Timings are for the benchmark.)
use std::{fmt::Write as _, time::Instant};

use op25b_agent::{
    config::Config,
    dataplane::{Dataplane, Maps},
};
use op25b_common::Reason;
use op25b_tests::{require_root, TempDir};

/// `count` distinct /32s inside 100.64.0.0/10, starting at `offset`.
fn host_list(offset: u32, count: u32) -> String {
    let base = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0));
    let mut text = String::with_capacity(count as usize * 18);
    for i in offset..offset + count {
        let _ = writeln!(text, "{}/32", std::net::Ipv4Addr::from(base + i));
    }
    text
}

#[test]
fn a_million_prefixes_load_and_reload_as_a_diff() {
    require_root();
    let dir = TempDir::new("million");
    let config_path = dir.path().join("op25b.toml");
    std::fs::write(
        &config_path,
        "[policy]\ndynamic = [\"100.64.0.0/10\"]\nexempt_files = [\"exempt.txt\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("exempt.txt"), host_list(0, 1_000_000)).unwrap();

    let t = Instant::now();
    let config = Config::load(&config_path).unwrap();
    let parsed = t.elapsed();
    assert_eq!(config.policy.exempt.v4.len(), 1_000_000);
    let mut dp = Dataplane::load(&Maps::Private, 0).unwrap();
    let t = Instant::now();
    let stats = dp.apply(&config.policy).unwrap();
    eprintln!("parse {parsed:?}, load {:?}", t.elapsed());
    assert_eq!(stats.added, 1_000_001);

    // 1% changed: 10,000 out, 10,000 new in.
    std::fs::write(dir.path().join("exempt.txt"), host_list(10_000, 1_000_000)).unwrap();
    let config = Config::load(&config_path).unwrap();
    let t = Instant::now();
    let stats = dp.apply(&config.policy).unwrap();
    eprintln!("reload 1% {:?}", t.elapsed());
    assert_eq!((stats.added, stats.removed), (10_000, 10_000));

    // The maps hold exactly the new list.
    let read = dp.read_policy().unwrap();
    assert_eq!(read.exempt, config.policy.exempt);
    let frame = |src: &str| {
        op25b_tests::frame::FrameSpec::tcp_syn(
            src.parse().unwrap(),
            "198.51.100.25".parse().unwrap(),
            25,
        )
        .build()
    };
    assert_eq!(
        dp.judge(&frame("100.64.0.1")).unwrap().reason,
        Reason::Blocked,
        "removed exemption still applies"
    );
    assert_eq!(
        dp.judge(&frame("100.79.105.79")).unwrap().reason,
        Reason::SrcExempt,
        "the last new exemption is missing"
    );
}

/// A reload the kernel refuses half-way (a list past the map's capacity,
/// applied without the config checks that normally stop it) is undone:
/// the maps hold the previous policy, the class step written before the
/// refusal included, and the error says so.
#[test]
fn a_reload_the_kernel_refuses_half_way_is_undone() {
    require_root();
    let mut dp = Dataplane::load(&Maps::Private, 0).unwrap();
    let mut before = op25b_agent::policy::Policy::default();
    before.dynamic.insert("100.64.0.0/10".parse().unwrap());
    before.exempt.insert("100.64.1.7/32".parse().unwrap());
    before.exempt.insert("100.64.3.7/32".parse().unwrap());
    dp.apply(&before).unwrap();

    let capacity = op25b_common::abi::POLICY_MAP_CAPACITY;
    let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
    let mut too_big = before.clone();
    too_big.blocked_ports = vec![25, 2525];
    // The class step goes first and succeeds: a new exemption, a new
    // dynamic /24 with a split, a split /24 split anew, and the old host
    // exemption gone (its block lost, gained, changed and lost).
    too_big.exempt.v4.remove(&"100.64.1.7/32".parse().unwrap());
    too_big.exempt.insert("100.64.3.9/32".parse().unwrap());
    too_big.exempt.insert("100.64.2.0/24".parse().unwrap());
    too_big.dynamic.insert("198.51.100.0/24".parse().unwrap());
    too_big.exempt.insert("198.51.100.9/32".parse().unwrap());
    // The allowed-destination trie then refuses past its capacity.
    for i in 0..=capacity {
        too_big.allowed_destinations.insert(
            format!("{}/32", std::net::Ipv4Addr::from(base + i))
                .parse()
                .unwrap(),
        );
    }
    let err = dp.apply(&too_big).unwrap_err();
    assert!(
        matches!(err, op25b_agent::dataplane::DataplaneError::RolledBack(_)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("the maps hold the previous policy"),
        "{err}"
    );
    let read = dp.read_policy().unwrap();
    assert_eq!(
        read.exempt, before.exempt,
        "entries of the refused reload stayed"
    );
    assert_eq!(read.dynamic, before.dynamic);
    assert!(read.allowed_destinations.v4.is_empty());
    assert_eq!(read.blocked_ports, before.blocked_ports);
    // The class table itself is back, byte and block alike.
    let class = |a: &str| dp.kernel_class_v4(a.parse().unwrap()).unwrap();
    let dynamic = op25b_common::SourceClass::new(Some(0), false);
    let exempt = op25b_common::SourceClass::new(Some(0), true);
    assert_eq!(class("100.64.1.7"), exempt);
    assert_eq!(class("100.64.1.8"), dynamic);
    assert_eq!(class("100.64.2.1"), dynamic);
    assert_eq!(class("100.64.3.7"), exempt);
    assert_eq!(class("100.64.3.9"), dynamic);
    assert_eq!(class("198.51.100.9"), op25b_common::SourceClass::NEITHER);
    assert_eq!(class("198.51.100.10"), op25b_common::SourceClass::NEITHER);
    // And the next apply starts from the truth.
    let mut after = before.clone();
    after.exempt.insert("100.64.1.8/32".parse().unwrap());
    assert_eq!(dp.apply(&after).unwrap().added, 1);
}
