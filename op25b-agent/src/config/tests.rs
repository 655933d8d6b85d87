//! Parsing and validation, with the exact place every problem is reported at.

use std::path::PathBuf;

use super::*;

thread_local! {
    // One directory per test (each runs on its own thread), removed when
    // the thread ends.
    static DIR: tempfile::TempDir = tempfile::Builder::new()
        .prefix("op25b-config-")
        .tempdir()
        .unwrap();
}

fn dir() -> PathBuf {
    DIR.with(|d| d.path().to_owned())
}

fn problems(text: &str) -> Vec<String> {
    let path = dir().join("op25b.toml");
    match Config::parse(&path, text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e
            .problems
            .iter()
            .map(|p| p.to_string().replace(&dir().display().to_string(), "D"))
            .collect(),
    }
}

#[test]
fn the_issue_example_parses() {
    let d = dir();
    std::fs::write(
        d.join("dynamic.txt"),
        "# pools\n100.96.0.0/11\n2001:db8:2000::/36 # v6 pool\n",
    )
    .unwrap();
    let text = r#"
[policy]
blocked_ports = [25]
dynamic = ["100.64.0.0/10", "2001:db8:1000::/36"]
dynamic_files = ["dynamic.txt"]
exempt = ["100.64.1.7/32"]
exempt_files = []
allowed_destinations = ["192.0.2.25/32"]
allowed_destinations_files = []
"#;
    let config = Config::parse(&d.join("op25b.toml"), text).unwrap();
    assert_eq!(config.policy.blocked_ports, vec![25]);
    assert_eq!(
        (
            config.policy.dynamic.v4.len(),
            config.policy.dynamic.v6.len()
        ),
        (2, 2)
    );
    assert_eq!(config.policy.exempt.len(), 1);
    assert_eq!(config.pin_path, PathBuf::from(DEFAULT_PIN_PATH));
    assert_eq!(config.on_exit, OnExit::Keep);
    assert_eq!(config.list_files, vec![d.join("dynamic.txt")]);
}

#[test]
fn defaults_block_port_25_only() {
    let config = Config::parse(&dir().join("x.toml"), "").unwrap();
    assert_eq!(config.policy.blocked_ports, vec![25]);
    assert!(config.policy.dynamic.is_empty());
}

#[test]
fn each_class_of_bad_config_names_its_place() {
    let cases: &[(&str, &str)] = &[
        ("[policy]\nblocked_port = [25]\n", "D/op25b.toml:2: unknown field `blocked_port`"),
        ("[policy\n", "D/op25b.toml:1: "),
        ("[policy]\nblocked_ports = [25, 587]\n", "D/op25b.toml:2: policy.blocked_ports[1]: port 587 is a mail submission port"),
        ("[policy]\nblocked_ports = [\n 465]\n", "D/op25b.toml:3: policy.blocked_ports[0]: port 465 is a mail submission port"),
        ("[policy]\nblocked_ports = [0]\n", "D/op25b.toml:2: policy.blocked_ports[0]: port 0 is not in 1..=65535"),
        ("[policy]\nblocked_ports = [65536]\n", "D/op25b.toml:2: policy.blocked_ports[0]: port 65536 is not in 1..=65535"),
        ("[policy]\nblocked_ports = [1,2,3,4,5,6,7,8,9]\n", "D/op25b.toml:2: policy.blocked_ports: 9 ports given, at most 8"),
        ("[policy]\nblocked_ports = [25, 25]\n", "policy.blocked_ports[1]: port 25 is listed twice"),
        ("[policy]\ndynamic = [\n\"100.64.0.0/10\",\n\"100.64.0.1/10\"]\n", "D/op25b.toml:4: policy.dynamic[1]: host bits set in 100.64.0.1/10"),
        ("[policy]\nexempt = [\"2001:db8::1/64\"]\n", "D/op25b.toml:2: policy.exempt[0]: host bits set"),
        ("[policy]\nallowed_destinations = [\"192.0.2.300/32\"]\n", "D/op25b.toml:2: policy.allowed_destinations[0]: \"192.0.2.300\" is not an IPv4 or IPv6 address"),
        ("[policy]\ndynamic_files = [\"missing.txt\"]\n", "D/missing.txt: cannot read"),
        ("pin_path = \"relative/dir\"\n", "D/op25b.toml:1: pin_path: must be an absolute path"),
        ("on_exit = \"maybe\"\n", "D/op25b.toml:1: unknown variant `maybe`"),
        ("[[interfaces]]\nname = \"eth1\"\nxdp_mode = \"fast\"\n", "D/op25b.toml:3: unknown variant `fast`"),
        ("[[interfaces]]\nname = \"eth1\"\n[[interfaces]]\nname = \"eth1\"\n", "interfaces[1].name: \"eth1\" is listed twice"),
        ("[[interfaces]]\nname = \"a-name-far-too-long\"\n", "interfaces[0].name: \"a-name-far-too-long\" is not an interface name"),
        ("[policy]\nexempt = [\"0.0.0.0/0\"]\n", "D/op25b.toml:2: policy.exempt[0]: 0.0.0.0/0 is broader than /16"),
        ("[policy]\nexempt = [\"::/0\"]\n", "D/op25b.toml:2: policy.exempt[0]: ::/0 is broader than /32"),
        ("[policy]\nallowed_destinations = [\"0.0.0.0/0\"]\n", "D/op25b.toml:2: policy.allowed_destinations[0]: 0.0.0.0/0 is broader than /24"),
        ("[policy]\nexempt = [\"::ffff:100.64.1.2\"]\n", "policy.exempt[0]: ::ffff:100.64.1.2/128 is an IPv4-mapped IPv6 address"),
        ("[policy.prefix_limits]\nexempt_ipv4 = 0\n", "D/op25b.toml:2: policy.prefix_limits: 0 is not a prefix length in 1..=32"),
        ("[api]\nsocket = \"\"\nlisten_address = \"0.0.0.0:8080\"\n", "api.listen_address: 0.0.0.0:8080 is not a loopback address"),
    ];
    for (text, expected) in cases {
        let got = problems(text);
        assert!(
            got.iter()
                .any(|p| p.starts_with(expected) || p.contains(expected)),
            "for {text:?} expected {expected:?}, got {got:?}"
        );
    }
}

#[test]
fn pools_parse_with_ids_actions_and_files() {
    let d = dir();
    std::fs::write(d.join("west.txt"), "100.96.0.0/12\n2001:db8:3000::/36\n").unwrap();
    let text = r#"
[policy]
dynamic = ["100.64.0.0/12"]
[[policy.pools]]
name = "ftth-east"
action = "monitor"
prefixes = ["100.80.0.0/12"]
[[policy.pools]]
name = "ftth-west"
action = "reject"
files = ["west.txt"]
"#;
    let config = Config::parse(&d.join("op25b.toml"), text).unwrap();
    let p = &config.policy;
    let names: Vec<&str> = p.pools.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["default", "ftth-east", "ftth-west"]);
    assert_eq!(p.pool_actions()[..3], [0, 1, 2]);
    assert_eq!(p.pool_id(&"100.64.0.0/12".parse().unwrap()), 0);
    assert_eq!(p.pool_id(&"100.80.0.0/12".parse().unwrap()), 1);
    assert_eq!(p.pool_id(&"2001:db8:3000::/36".parse().unwrap()), 2);
    assert_eq!(p.dynamic.len(), 4);
    assert_eq!(config.list_files, vec![d.join("west.txt")]);
}

#[test]
fn bad_pools_name_their_place() {
    let cases: &[(&str, &str)] = &[
        ("[[policy.pools]]\nname = \"a\"\naction = \"block\"\n", "D/op25b.toml:3: unknown variant `block`"),
        ("[[policy.pools]]\nname = \"Bad Name\"\naction = \"drop\"\n", "D/op25b.toml:2: policy.pools[0].name: \"Bad Name\": use 1-32 of"),
        ("[[policy.pools]]\nname = \"default\"\naction = \"drop\"\n", "policy.pools[0].name: pool name \"default\" is taken"),
        ("[[policy.pools]]\nname = \"a\"\naction = \"drop\"\n[[policy.pools]]\nname = \"a\"\naction = \"drop\"\n", "policy.pools[1].name: pool name \"a\" is taken"),
        ("[policy]\ndynamic = [\"100.64.0.0/10\"]\n[[policy.pools]]\nname = \"a\"\naction = \"drop\"\nprefixes = [\"100.64.0.0/10\"]\n", "100.64.0.0/10 is also in pool \"default\""),
        ("[[policy.pools]]\nname = \"a\"\naction = \"drop\"\nprefixes = [\"100.64.0.1/10\"]\n", "D/op25b.toml:4: policy.pools[0].prefixes[0]: host bits set"),
    ];
    for (text, expected) in cases {
        let got = problems(text);
        assert!(
            got.iter().any(|p| p.contains(expected)),
            "for {text:?} expected {expected:?}, got {got:?}"
        );
    }
    let many = (0..16).fold(String::new(), |acc, i| {
        acc + "[[policy.pools]]
name = \"p" + &i.to_string()
            + "\"
action = \"drop\"
"
    });
    assert!(problems(&many)
        .iter()
        .any(|p| p.contains("at most 15 pools")));
}

#[test]
fn a_bad_list_line_names_file_and_line() {
    let d = dir();
    std::fs::write(
        d.join("bad-list.txt"),
        "100.64.0.0/10\n\n# comment\n100.64.0.1/10\n",
    )
    .unwrap();
    let got = problems("[policy]\ndynamic_files = [\"bad-list.txt\"]\n");
    assert_eq!(
        got,
        vec!["D/bad-list.txt:4: host bits set in 100.64.0.1/10: did you mean 100.64.0.0/10?"]
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let got =
        problems("[policy]\nblocked_ports = [587]\ndynamic = [\"x\"]\nexempt = [\"1.2.3.4/33\"]\n");
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn list_files_obey_the_prefix_limits_and_lowering_them_is_a_warning() {
    let d = dir();
    std::fs::write(d.join("broad.txt"), "100.64.1.7\n10.0.0.0/8\n").unwrap();
    let got = problems("[policy]\nexempt_files = [\"broad.txt\"]\n");
    assert_eq!(
        got,
        vec!["D/broad.txt:2: 10.0.0.0/8 is broader than /16, the broadest exempt entry allowed (policy.prefix_limits.exempt_ipv4): it would open port 25 for every dynamic subscriber it covers"]
    );
    let text =
        "[policy]\nexempt_files = [\"broad.txt\"]\n[policy.prefix_limits]\nexempt_ipv4 = 8\n";
    let config = Config::parse(&d.join("op25b.toml"), text).unwrap();
    assert_eq!(config.policy.exempt.len(), 2);
    assert_eq!(config.warnings.len(), 1);
    assert!(config.warnings[0]
        .to_string()
        .contains("lowered: exempt_ipv4 /8 (default /16)"));
}

#[test]
fn a_list_past_the_map_capacity_is_refused_not_half_loaded() {
    let mut check = check::Checker {
        path: std::path::Path::new("x.toml"),
        text: "",
        problems: Vec::new(),
    };
    let mut policy = Policy::default();
    for i in 0..5u32 {
        policy.exempt.insert(
            format!("{}/32", std::net::Ipv4Addr::from(0x6440_0000 + i))
                .parse()
                .unwrap(),
        );
    }
    check.capacities(&policy, 4);
    assert_eq!(check.problems.len(), 1);
    assert_eq!(
        check.problems[0].to_string(),
        "x.toml: policy.exempt: 5 IPv4 prefixes; the kernel map holds 4"
    );
}

#[test]
fn a_monitor_pool_inside_a_drop_pool_is_a_warning() {
    let text = "[policy]\ndynamic = [\"100.64.0.0/10\"]\n[[policy.pools]]\nname = \"trial\"\naction = \"monitor\"\nprefixes = [\"100.64.8.0/24\"]\n";
    let config = Config::parse(&dir().join("op25b.toml"), text).unwrap();
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0]
        .message
        .contains("100.64.8.0/24 of monitor pool \"trial\" lies inside 100.64.0.0/10 of drop pool \"default\""));
}

#[test]
fn an_open_admin_listener_off_loopback_is_warned_about_until_it_has_a_read_token() {
    let d = dir();
    let open = Config::parse(
        &d.join("op25b.toml"),
        "[metrics]\nlisten_address = \"0.0.0.0:9725\"\n",
    )
    .unwrap();
    assert_eq!(open.warnings.len(), 1, "{:?}", open.warnings);
    let warning = open.warnings[0].to_string();
    assert!(
        warning.contains("metrics.read_token_file") && warning.contains("0.0.0.0:9725"),
        "{warning}"
    );
    let guarded = Config::parse(
        &d.join("op25b.toml"),
        "[metrics]\nlisten_address = \"0.0.0.0:9725\"\nread_token_file = \"read.token\"\n",
    )
    .unwrap();
    assert!(guarded.warnings.is_empty(), "{:?}", guarded.warnings);
    assert_eq!(
        guarded.metrics.read_token_file.as_deref(),
        Some(d.join("read.token").as_path()),
        "relative to the config file"
    );
    let local = Config::parse(&d.join("op25b.toml"), "").unwrap();
    assert!(local.warnings.is_empty(), "{:?}", local.warnings);
}
