//! The pass path's shortcut decides only what the full judgement decides,
//! and only frames that pass.
use op25b_common::{
    abi::RuntimeConfig, fast_pass::fast_pass, verdict::judge_fully, Action, BlockedPorts,
    IpAddrBytes, PolicyLookup, Reason, SourceClass,
};
use proptest::prelude::*;

/// The strictest policy: every source dynamic, nothing exempt or allowed.
struct EveryoneDynamic;

impl PolicyLookup for EveryoneDynamic {
    fn source_class(&self, _: &IpAddrBytes) -> SourceClass {
        SourceClass::new(Some(0), false)
    }
    fn is_allowed_destination(&self, _: &IpAddrBytes) -> bool {
        false
    }
}

fn pick<T: Clone + std::fmt::Debug + 'static>(values: &[T]) -> impl Strategy<Value = T> {
    prop::sample::select(values.to_vec())
}

/// Frames near the shortcut's edges: every field it reads is sometimes
/// off (ethertype, version/IHL, total length, protocol, fragment field,
/// ports), and the frame is cut anywhere.
fn near_plain_frame() -> impl Strategy<Value = Vec<u8>> {
    let v4 = (
        pick(&[0x45u8, 0x45, 0x45, 0x46, 0x44, 0x55, 0x65]),
        pick(&[0u16, 19, 20, 40, 1500]),
        pick(&[6u8, 6, 6, 17, 0, 1]),
        pick(&[0u16, 0, 0x2000, 0x4000, 0x0001, 0x2001, 0x1fff]),
    )
        .prop_map(|(vihl, total, proto, frag)| {
            let mut ip = vec![0u8; 20];
            ip[0] = vihl;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[6..8].copy_from_slice(&frag.to_be_bytes());
            ip[9] = proto;
            (0x0800u16, ip)
        });
    let v6 = (
        pick(&[0x60u8, 0x60, 0x40, 0x70]),
        pick(&[6u8, 6, 0, 43, 44, 51, 60, 17, 58]),
    )
        .prop_map(|(version, next)| {
            let mut ip = vec![0u8; 40];
            ip[0] = version;
            ip[6] = next;
            (0x86ddu16, ip)
        });
    let other = pick(&[0x0806u16, 0x8100, 0x88a8, 0x9100, 0x8864, 0x8863, 0x88cc])
        .prop_map(|ethertype| (ethertype, vec![0x45u8; 20]));
    (
        prop_oneof![v4, v6, other],
        pick(&[25u16, 587, 443, 0, 2525]),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<prop::sample::Index>(),
    )
        .prop_map(|((ethertype, ip), dst_port, mut rest, cut)| {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend(ip);
            if rest.len() >= 4 {
                rest[2..4].copy_from_slice(&dst_port.to_be_bytes());
            }
            f.extend(rest);
            f.truncate(cut.index(f.len() + 1).max(12));
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn the_shortcut_says_what_the_full_judgement_says(f in near_plain_frame(), extra in 1u16..) {
        let rules = RuntimeConfig::with_ports(BlockedPorts::new(&[25, extra]).unwrap());
        if let Some(reason) = fast_pass(f.as_slice(), &rules) {
            let (full, _, _) = judge_fully(f.as_slice(), &rules, &EveryoneDynamic);
            prop_assert_eq!(full.reason, reason, "{:02x?}", f);
            prop_assert_eq!(full.action, Action::Pass);
        }
    }
}

fn plain_v4(protocol: u8, fragment: [u8; 2], dst_port: u16) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0]);
    f.extend_from_slice(&fragment);
    f.extend_from_slice(&[64, protocol]);
    f.extend_from_slice(&[0; 10]);
    f.extend_from_slice(&[0x9c, 0x40]);
    f.extend_from_slice(&dst_port.to_be_bytes());
    f.extend_from_slice(&[0; 16]);
    f
}

/// The shortcut is taken where it should be (so the property above is not
/// vacuous) and never for a blocked port, a tag or PPPoE.
#[test]
fn the_shortcut_takes_the_common_passes_only() {
    let rules = RuntimeConfig::DEFAULT;
    let decide = |f: Vec<u8>| fast_pass(f.as_slice(), &rules);
    assert_eq!(decide(plain_v4(6, [0x40, 0], 443)), Some(Reason::NotSmtp));
    assert_eq!(decide(plain_v4(6, [0x20, 0], 443)), Some(Reason::NotSmtp));
    assert_eq!(decide(plain_v4(17, [0, 0], 443)), Some(Reason::NotTcp));
    assert_eq!(decide(plain_v4(6, [0, 1], 25)), Some(Reason::Fragment));
    assert_eq!(decide(plain_v4(6, [0x40, 0], 25)), None);
    let mut tagged = plain_v4(6, [0, 0], 443);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(decide(tagged), None);
    let mut arp = plain_v4(6, [0, 0], 443);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(decide(arp), Some(Reason::NotIp));
    let mut pppoe = plain_v4(6, [0, 0], 443);
    pppoe[12..14].copy_from_slice(&[0x88, 0x64]);
    assert_eq!(decide(pppoe), None);
    let mut v6 = vec![0u8; 12];
    v6.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
    v6.extend_from_slice(&[0; 32]);
    v6.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
    v6.extend_from_slice(&[0; 16]);
    assert_eq!(decide(v6.clone()), Some(Reason::NotSmtp));
    v6[57] = 25;
    v6[56] = 0;
    assert_eq!(decide(v6.clone()), None);
    v6[20] = 0; // hop-by-hop options: the full parse walks them
    assert_eq!(decide(v6.clone()), None);
    v6[20] = 17;
    assert_eq!(decide(v6), Some(Reason::NotTcp));
}
