//! Frames longer than one buffer (jumbo MTU): the program is loaded
//! frags-aware and reads headers that lie beyond the first buffer through
//! `bpf_xdp_load_bytes`. BPF_PROG_TEST_RUN builds a multi-buffer frame for
//! a frags-aware program when the data exceeds the first buffer (a page
//! less headroom and tailroom), so these run through the real fragment
//! path. Needs root.
use std::net::IpAddr;

use op25b_agent::dataplane::test_run::TEST_RUN_MAX_FRAME;
use op25b_common::{decide, Reason};
use op25b_tests::{fixtures, frame::FrameSpec, load_dataplane, standard_policy};

const IPV6_NEXT_HEADER: usize = 14 + 6;
const IPV6_PAYLOAD_LEN: usize = 14 + 4;
const IPPROTO_DSTOPTS: u8 = 60;

/// A TCP SYN behind two 2,048-byte destination-options headers: the TCP
/// header starts at byte 4,150, past the first buffer.
fn tcp_beyond_first_buffer(src: &str, port: u16) -> Vec<u8> {
    let src: IpAddr = src.parse().unwrap();
    let plain = FrameSpec::tcp_syn(src, fixtures::OUTSIDE6.parse().unwrap(), port).build();
    let l4 = 14 + 40;
    let mut frame = plain[..l4].to_vec();
    let upper = plain[IPV6_NEXT_HEADER];
    frame[IPV6_NEXT_HEADER] = IPPROTO_DSTOPTS;
    for next in [IPPROTO_DSTOPTS, upper] {
        // (255 + 1) * 8 bytes; the body is Pad1 options (zeros).
        let mut ext = vec![0u8; 2048];
        ext[0] = next;
        ext[1] = 255;
        frame.extend(ext);
    }
    frame.extend_from_slice(&plain[l4..]);
    let payload = u16::from_be_bytes([plain[IPV6_PAYLOAD_LEN], plain[IPV6_PAYLOAD_LEN + 1]]) + 4096;
    frame[IPV6_PAYLOAD_LEN..IPV6_PAYLOAD_LEN + 2].copy_from_slice(&payload.to_be_bytes());
    assert!(
        l4 + 4096 > TEST_RUN_MAX_FRAME,
        "the TCP header must not fit the first buffer"
    );
    frame
}

#[test]
fn headers_beyond_the_first_buffer_are_read_as_the_host_reads_them() {
    let policy = standard_policy();
    let rules = policy.runtime_config().unwrap();
    let dp = load_dataplane(&policy);
    let mut judged = 0;
    for (src, port, expected) in [
        (fixtures::DYN6, 25, Reason::Blocked),
        (fixtures::DYN6, 443, Reason::NotSmtp),
        (fixtures::EXEMPT6, 25, Reason::SrcExempt),
        (fixtures::STATIC6, 25, Reason::SrcNotDynamic),
    ] {
        let frame = tcp_beyond_first_buffer(src, port);
        assert_eq!(decide(frame.as_slice(), &rules, &policy).reason, expected);
        let kernel = dp.judge(&frame).unwrap();
        assert_eq!(kernel.reason, expected, "{src} port {port}");
        // Cut inside and around the fragment-borne TCP header: the kernel
        // must agree with the host on every length (malformed, not a guess).
        for cut in (4150 - 4)..=frame.len() {
            let short = &frame[..cut];
            assert_eq!(
                dp.judge(short).unwrap().reason,
                decide(short, &rules, &policy).reason,
                "{src} port {port} cut at {cut}"
            );
            judged += 1;
        }
    }
    assert!(judged > 0);
}

#[test]
fn a_jumbo_frame_is_judged_and_counted_whole() {
    let policy = standard_policy();
    let dp = load_dataplane(&policy);
    let frame = FrameSpec::tcp_syn(
        fixtures::DYN4.parse().unwrap(),
        fixtures::OUTSIDE4.parse().unwrap(),
        25,
    )
    .payload(&[0x5a; 8000])
    .build();
    assert!(frame.len() > TEST_RUN_MAX_FRAME);
    let before = dp.counters(0).unwrap();
    assert_eq!(dp.judge(&frame).unwrap().reason, Reason::Blocked);
    let after = dp.counters(0).unwrap();
    let moved = |reason: Reason| {
        let pick = |c: &[(Reason, op25b_common::abi::Counter)]| {
            c.iter().find(|(r, _)| *r == reason).unwrap().1
        };
        let (b, a) = (pick(&before), pick(&after));
        (a.packets - b.packets, a.bytes - b.bytes)
    };
    assert_eq!(moved(Reason::Blocked), (1, frame.len() as u64));
}
