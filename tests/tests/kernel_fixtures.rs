//! The fixture table through the real XDP program with BPF_PROG_TEST_RUN:
//! action, exact counter delta, unchanged frame; then every truncation of
//! every fixture. Needs root.
use op25b_agent::{
    dataplane::{Dataplane, ProgramKind},
    policy::Policy,
};
use op25b_common::{decide, Reason};
use op25b_tests::{fixtures, load_dataplane, multi_port_policy, pools_policy, standard_policy};

fn counters(dp: &Dataplane) -> Vec<(Reason, u64, u64)> {
    dp.counters(0)
        .unwrap()
        .into_iter()
        .map(|(r, c)| (r, c.packets, c.bytes))
        .collect()
}

fn run_table(table: &[fixtures::Fixture], policy: &Policy) {
    let dp = load_dataplane(policy);
    for f in table {
        let before = counters(&dp);
        let out = dp.test_run(&f.frame).unwrap();
        let after = counters(&dp);
        assert_eq!(out.action(), Some(f.expect.action()), "{}: action", f.name);
        // A reset is the one verdict that rewrites (checked field by field below).
        if f.expect != Reason::Rejected {
            assert_eq!(
                out.frame_out, f.frame,
                "{}: the program changed the frame",
                f.name
            );
        }
        for ((reason, p0, b0), (_, p1, b1)) in before.iter().zip(&after) {
            let (dp_, db) = if *reason == f.expect {
                (1, f.frame.len() as u64)
            } else {
                (0, 0)
            };
            assert_eq!(
                (p1 - p0, b1 - b0),
                (dp_, db),
                "{}: counter delta of {reason:?}",
                f.name
            );
        }
    }
}

#[test]
fn standard_fixtures_in_the_kernel() {
    run_table(&fixtures::standard(), &standard_policy());
}

#[test]
fn multi_port_fixtures_in_the_kernel() {
    run_table(&fixtures::multi_port(), &multi_port_policy());
}

/// Cutting a frame short can only make it `malformed` (or, for a first
/// fragment, `undecidable`) below some length and leave its verdict intact
/// above it; and the kernel must agree with the host at every length.
#[test]
fn every_truncation_of_every_fixture() {
    let policy = standard_policy();
    let rules = policy.runtime_config().unwrap();
    let dp = load_dataplane(&policy);
    let mut runs = 0;
    for f in fixtures::standard() {
        let mut seen = Vec::new();
        // The kernel refuses test runs shorter than an Ethernet header.
        for len in 14..=f.frame.len() {
            let cut = &f.frame[..len];
            let kernel = dp.judge(cut).unwrap();
            let host = decide(cut, &rules, &policy);
            assert_eq!(
                kernel.reason, host.reason,
                "{} cut to {len}: kernel vs host",
                f.name
            );
            assert_eq!(
                kernel.outcome.action(),
                Some(host.action),
                "{} cut to {len}",
                f.name
            );
            if seen.last() != Some(&kernel.reason) {
                seen.push(kernel.reason);
            }
            runs += 1;
        }
        assert_eq!(seen.last(), Some(&f.expect), "{}: whole frame", f.name);
        // Before the whole verdict: malformed, then (first fragments) undecidable.
        let before = &seen[..seen.len() - 1];
        let allowed: &[&[Reason]] = &[
            &[],
            &[Reason::Malformed],
            &[Reason::Undecidable],
            &[Reason::Malformed, Reason::Undecidable],
        ];
        assert!(
            allowed.contains(&before),
            "{}: truncations went through {seen:?}",
            f.name
        );
    }
    assert!(runs > 3000, "only {runs} truncations ran");
}

#[test]
fn verifier_budget_has_room() {
    let dp = load_dataplane(&standard_policy());
    for kind in ProgramKind::ALL {
        let insns = dp
            .verified_instructions(kind)
            .expect("kernel reports verified_insns");
        eprintln!("verifier processed {insns} instructions for the {kind} build");
        assert!(
            insns < 200_000,
            "{kind} build: {insns} verified instructions is over 20% of the 1M budget"
        );
    }
}

#[test]
fn pool_fixtures_in_the_kernel() {
    run_table(&fixtures::pools(), &pools_policy());
}

/// A SYN from a reject pool comes back as a valid RST+ACK, in every
/// encapsulation: checked field by field, checksums by pnet.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of encapsulations, one field-by-field check"
)]
fn reject_answers_with_a_valid_reset_in_every_encapsulation() {
    use op25b_common::parse::{ETH_P_8021AD, ETH_P_8021Q};
    use op25b_tests::frame::FrameSpec;
    use pnet_packet::{ipv4::Ipv4Packet, ipv6::Ipv6Packet, tcp::TcpPacket, Packet as _};

    let dp = load_dataplane(&pools_policy());
    let v4 = || {
        FrameSpec::tcp_syn(
            fixtures::STRICT4.parse().unwrap(),
            fixtures::OUTSIDE4.parse().unwrap(),
            25,
        )
        .payload(b"early data")
    };
    let v6 = || {
        FrameSpec::tcp_syn(
            fixtures::STRICT6.parse().unwrap(),
            fixtures::OUTSIDE6.parse().unwrap(),
            25,
        )
    };
    let cases = [
        ("plain ipv4", v4()),
        ("plain ipv6", v6()),
        ("802.1q ipv4", v4().dot1q(100)),
        ("qinq ipv6", v6().vlan(ETH_P_8021AD, 10).dot1q(20)),
        ("pppoe ipv4", v4().pppoe(0x1234)),
        ("pppoe ipv6", v6().pppoe(0x4321)),
        ("vlan+pppoe ipv4", v4().vlan(ETH_P_8021Q, 7).pppoe(9)),
        (
            "qinq+pppoe ipv6",
            v6().vlan(ETH_P_8021AD, 1).dot1q(2).pppoe(3),
        ),
    ];
    for (name, spec) in cases {
        let mut input = spec.build();
        input.resize(input.len().max(60), 0); // Ethernet padding on the wire
        let out = dp.judge(&input).unwrap();
        assert_eq!(out.reason, Reason::Rejected, "{name}");
        assert_eq!(
            out.outcome.action(),
            Some(op25b_common::Action::Tx),
            "{name}"
        );
        let rst = &out.outcome.frame_out;
        let l2 = 14 + 4 * spec.vlans.len() + if spec.pppoe_session.is_some() { 8 } else { 0 };
        let ip_len = if spec.src.is_ipv4() { 20 } else { 40 };
        assert_eq!(
            rst.len(),
            l2 + ip_len + 20,
            "{name}: no payload, no padding"
        );
        assert_eq!(
            (&rst[0..6], &rst[6..12]),
            (&input[6..12], &input[0..6]),
            "{name}: MACs swapped"
        );
        let l2_tail = l2 - if spec.pppoe_session.is_some() { 8 } else { 0 };
        assert_eq!(rst[12..l2_tail], input[12..l2_tail], "{name}: tags kept");
        if let Some(session) = spec.pppoe_session {
            let p = l2 - 8;
            assert_eq!(
                u16::from_be_bytes([rst[p + 2], rst[p + 3]]),
                session,
                "{name}"
            );
            assert_eq!(
                usize::from(u16::from_be_bytes([rst[p + 4], rst[p + 5]])),
                ip_len + 20 + 2,
                "{name}: PPPoE length"
            );
            assert_eq!(
                rst[p + 6..p + 8],
                input[p + 6..p + 8],
                "{name}: PPP protocol"
            );
        }
        let original = TcpPacket::new(&input[l2 + ip_len..]).unwrap();
        let tcp = TcpPacket::new(&rst[l2 + ip_len..]).unwrap();
        let (src, dst);
        match (spec.src, spec.dst) {
            (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                let ip = Ipv4Packet::new(&rst[l2..]).unwrap();
                assert_eq!(
                    (ip.get_source(), ip.get_destination()),
                    (d, s),
                    "{name}: addresses swapped"
                );
                assert_eq!(ip.get_total_length(), 40, "{name}");
                assert_eq!(
                    ip.get_checksum(),
                    pnet_packet::ipv4::checksum(&ip),
                    "{name}: IPv4 checksum"
                );
                assert_eq!(
                    tcp.get_checksum(),
                    pnet_packet::tcp::ipv4_checksum(&tcp, &d, &s),
                    "{name}: TCP checksum"
                );
                (src, dst) = (d.to_string(), s.to_string());
            }
            (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                let ip = Ipv6Packet::new(&rst[l2..]).unwrap();
                assert_eq!(
                    (ip.get_source(), ip.get_destination()),
                    (d, s),
                    "{name}: addresses swapped"
                );
                assert_eq!(ip.get_payload_length(), 20, "{name}");
                assert_eq!(
                    tcp.get_checksum(),
                    pnet_packet::tcp::ipv6_checksum(&tcp, &d, &s),
                    "{name}: TCP checksum"
                );
                (src, dst) = (d.to_string(), s.to_string());
            }
            _ => unreachable!(),
        }
        assert_eq!(
            (tcp.get_source(), tcp.get_destination()),
            (original.get_destination(), original.get_source()),
            "{name}: ports"
        );
        assert_eq!(
            tcp.get_flags(),
            pnet_packet::tcp::TcpFlags::RST | pnet_packet::tcp::TcpFlags::ACK,
            "{name}: RST+ACK"
        );
        assert_eq!(tcp.get_sequence(), 0, "{name}");
        let data = u32::try_from(spec.payload.len()).unwrap();
        assert_eq!(
            tcp.get_acknowledgement(),
            original.get_sequence().wrapping_add(1 + data),
            "{name}: acknowledges the SYN and its data"
        );
        assert_eq!(
            (tcp.get_data_offset(), tcp.payload().len()),
            (5, 0),
            "{name}: {src} -> {dst}"
        );
    }
}
