//! Properties of the parser and verdict on arbitrary bytes.
use op25b_common::abi::RuntimeConfig;
use op25b_common::{
    decide, parse::parse, parse::Parsed, Action, BlockedPorts, IpAddrBytes, PolicyLookup, Reason,
    SourceClass,
};
use proptest::prelude::*;

/// A policy that answers every lookup the same way.
struct Uniform {
    dynamic: bool,
    allowed: bool,
    exempt: bool,
}

impl PolicyLookup for Uniform {
    fn source_class(&self, _: &IpAddrBytes) -> SourceClass {
        SourceClass::new(self.dynamic.then_some(0), self.exempt)
    }
    fn is_allowed_destination(&self, _: &IpAddrBytes) -> bool {
        self.allowed
    }
}

/// Frames that start like something op25b parses, then go random.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let ethertypes = prop::sample::select(vec![
        0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x8864, 0x8863, 0x0806,
    ]);
    (ethertypes, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(ethertype, rest)| {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend(rest);
        f
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let v = decide(bytes.as_slice(), &RuntimeConfig::DEFAULT, &Uniform { dynamic: true, allowed: false, exempt: false });
        prop_assert_eq!(v.action, v.reason.action());
    }

    #[test]
    fn nothing_is_dropped_unless_the_source_is_dynamic(f in frame()) {
        let v = decide(f.as_slice(), &RuntimeConfig::DEFAULT, &Uniform { dynamic: false, allowed: false, exempt: false });
        prop_assert_eq!(v.action, Action::Pass);
    }

    #[test]
    fn exemptions_and_relays_always_pass(f in frame(), allowed in any::<bool>()) {
        let v = decide(f.as_slice(), &RuntimeConfig::DEFAULT, &Uniform { dynamic: true, allowed, exempt: !allowed });
        prop_assert_eq!(v.action, Action::Pass);
    }

    #[test]
    fn tcp_to_a_blocked_port_from_dynamic_is_dropped(f in frame(), port in 1u16..) {
        let ports = RuntimeConfig::with_ports(BlockedPorts::new(&[port]).unwrap());
        let v = decide(f.as_slice(), &ports, &Uniform { dynamic: true, allowed: false, exempt: false });
        match parse(f.as_slice()) {
            Parsed::Tcp(seg) if seg.known_dst_port() == Some(port) => prop_assert_eq!(v.reason, Reason::Blocked),
            Parsed::Tcp(seg) if seg.known_dst_port().is_none() => prop_assert_eq!(v.reason, Reason::Undecidable),
            Parsed::Tcp(_) => prop_assert_eq!(v.reason, Reason::NotSmtp),
            Parsed::Decided(r) => prop_assert_eq!(v.reason, r),
        }
    }

    #[test]
    fn submission_ports_are_never_blocked_by_default(f in frame()) {
        let v = decide(f.as_slice(), &RuntimeConfig::DEFAULT, &Uniform { dynamic: true, allowed: false, exempt: false });
        if let Parsed::Tcp(seg) = parse(f.as_slice()) {
            if matches!(seg.known_dst_port(), Some(587 | 465)) {
                prop_assert_eq!(v.reason, Reason::NotSmtp);
            }
        }
    }
}

#[test]
fn blocked_ports_refuse_zero_and_too_many() {
    assert!(BlockedPorts::new(&[0]).is_none());
    assert!(BlockedPorts::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).is_none());
    let p = BlockedPorts::new(&[25, 2525]).unwrap();
    assert!(p.contains(25) && p.contains(2525) && !p.contains(0) && !p.contains(26));
}
