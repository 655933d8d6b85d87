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
