//! Source classes computed in user space from the dynamic and exempt lists
//! together, so that the program answers "dynamic pool N", "exempt" or
//! "neither" with one lookup: for IPv4 a DIR-24-8 table (a byte per /24,
//! a 256-byte block for the few /24s whose class varies inside), for IPv6
//! one LPM-trie entry per listed prefix holding its combined class.
//!
//! Pure: no kernel, no I/O. `class_writer` puts the result into the maps.
//!
//! Both lists are walked at once in address order, which for prefixes
//! sorted by (address, length) is the pre-order of the prefix tree: every
//! prefix comes after the prefixes that contain it. A stack of the
//! enclosing prefixes gives each prefix its effective class (most specific
//! dynamic pool, any covering exemption), so exempt-inside-dynamic and
//! dynamic-inside-exempt come out right whatever the prefix lengths.

use std::net::IpAddr;

use op25b_common::SourceClass;

use super::class_regions::{repaint, Mirror, EVERY_SLASH24};
use crate::policy::{prefix::Prefix, Policy};

/// First-level entries: one per /24.
pub const FIRST_LEVEL_ENTRIES: usize = 1 << 24;

/// One prefix as the sweep sees it: address bits left in an integer of
/// `max_len` bits (32 or 128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    addr: u128,
    len: u8,
    /// Pool, if the prefix is in the dynamic list.
    dynamic: Option<u32>,
    /// Is the prefix in the exempt list?
    exempt: bool,
}

/// One listed prefix with its own membership and its effective class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub prefix: Prefix,
    /// Pool, if the prefix itself is in the dynamic list.
    pub dynamic: Option<u32>,
    /// Is the prefix itself in the exempt list?
    pub exempt: bool,
    /// The class of the addresses whose most specific listed prefix this is.
    pub class: SourceClass,
    /// The class of the enclosing listed prefix (NEITHER if none).
    pub parent_class: SourceClass,
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Does the prefix (`addr`, `len`) of a `max_len`-bit family contain `other`?
fn contains(max_len: u8, (addr, len): (u128, u8), other: (u128, u8)) -> bool {
    len <= other.1
        && (addr ^ other.0)
            .checked_shr(u32::from(max_len - len))
            .unwrap_or(0)
            == 0
}

/// The union of `dynamic` and `exempt` (both one family, sorted by
/// address then length, as `BTreeSet<Prefix>` iterates) in pre-order, each
/// with its effective class.
pub fn classify<'a>(
    dynamic: impl IntoIterator<Item = (&'a Prefix, u32)>,
    exempt: impl IntoIterator<Item = &'a Prefix>,
) -> impl Iterator<Item = Classified> {
    let mut dynamic = dynamic.into_iter().peekable();
    let mut exempt = exempt.into_iter().peekable();
    let merged = std::iter::from_fn(move || {
        let take_dynamic = match (dynamic.peek(), exempt.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((d, _)), Some(e)) => *d <= *e,
        };
        if take_dynamic {
            let (prefix, pool) = dynamic.next()?;
            let exempt = exempt.next_if(|e| *e == prefix).is_some();
            Some((*prefix, Some(pool), exempt))
        } else {
            Some((*exempt.next()?, None, true))
        }
    });
    let mut stack: Vec<(Node, SourceClass)> = Vec::with_capacity(32);
    merged.map(move |(prefix, dynamic, exempt)| {
        let max_len = if prefix.addr().is_ipv4() { 32 } else { 128 };
        let node = Node {
            addr: bits(prefix.addr()),
            len: prefix.len(),
            dynamic,
            exempt,
        };
        while let Some((top, _)) = stack.last() {
            if contains(max_len, (top.addr, top.len), (node.addr, node.len)) {
                break;
            }
            stack.pop();
        }
        // The enclosing prefix's effective membership, carried in its node.
        let (parent, parent_class) = stack.last().map_or(
            (
                Node {
                    addr: 0,
                    len: 0,
                    dynamic: None,
                    exempt: false,
                },
                SourceClass::NEITHER,
            ),
            |&(n, c)| (n, c),
        );
        let effective = Node {
            dynamic: dynamic.or(parent.dynamic),
            exempt: exempt || parent.exempt,
            ..node
        };
        let class = SourceClass::new(effective.dynamic, effective.exempt);
        stack.push((effective, class));
        Classified {
            prefix,
            dynamic,
            exempt,
            class,
            parent_class,
        }
    })
}

/// The dynamic and exempt lists of one family of `policy`, classified.
pub fn classify_policy(policy: &Policy, v4: bool) -> impl Iterator<Item = Classified> + '_ {
    let (dynamic, exempt) = if v4 {
        (&policy.dynamic.v4, &policy.exempt.v4)
    } else {
        (&policy.dynamic.v6, &policy.exempt.v6)
    };
    classify(policy.with_pools(dynamic), exempt.iter())
}

/// Builds the IPv4 class table of `policy` from scratch (the region of
/// every /24; a reload repaints only the regions that changed).
pub fn build_v4(policy: &Policy) -> Mirror {
    let mut table = Mirror::empty();
    repaint(&mut table, classify_policy(policy, true), &[EVERY_SLASH24]);
    table
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use op25b_common::{IpAddrBytes, PolicyLookup};
    use proptest::prelude::*;

    use super::*;

    fn policy(dynamic: &[(&str, u32)], exempt: &[&str]) -> Policy {
        let dynamic: Vec<(Prefix, u32)> = dynamic
            .iter()
            .map(|&(p, pool)| (p.parse().unwrap(), pool))
            .collect();
        let exempt: Vec<Prefix> = exempt.iter().map(|p| p.parse().unwrap()).collect();
        Policy::of_lists(&dynamic, &exempt)
    }

    fn class_of(table: &Mirror, addr: &str) -> SourceClass {
        table.lookup(addr.parse::<Ipv4Addr>().unwrap().octets())
    }

    const fn dynamic(pool: u32) -> SourceClass {
        SourceClass::new(Some(pool), false)
    }

    const fn exempt(pool: u32) -> SourceClass {
        SourceClass::new(Some(pool), true)
    }

    #[test]
    fn exempt_inside_dynamic_at_any_length() {
        let p = policy(
            &[("100.64.0.0/10", 0)],
            &[
                "100.64.1.7/32",
                "100.64.2.0/25",
                "100.64.16.0/20",
                "100.65.0.0/24",
            ],
        );
        let t = build_v4(&p);
        assert_eq!(class_of(&t, "100.64.1.7"), exempt(0));
        assert_eq!(class_of(&t, "100.64.1.6"), dynamic(0));
        assert_eq!(class_of(&t, "100.64.1.8"), dynamic(0));
        assert_eq!(class_of(&t, "100.64.2.127"), exempt(0));
        assert_eq!(class_of(&t, "100.64.2.128"), dynamic(0));
        assert_eq!(class_of(&t, "100.64.31.255"), exempt(0));
        assert_eq!(class_of(&t, "100.64.32.0"), dynamic(0));
        assert_eq!(class_of(&t, "100.65.0.9"), exempt(0));
        assert_eq!(class_of(&t, "100.128.0.1"), SourceClass::NEITHER);
        // Only the two /24s that are split need a block.
        assert_eq!(t.blocks.len(), 2);
    }

    #[test]
    fn dynamic_inside_exempt_stays_exempt() {
        let p = policy(
            &[
                ("198.51.100.0/24", 1),
                ("198.51.100.128/28", 2),
                ("203.0.113.0/24", 0),
            ],
            &["198.51.0.0/16", "203.0.113.64/26"],
        );
        let t = build_v4(&p);
        assert_eq!(class_of(&t, "198.51.100.1"), exempt(1));
        assert_eq!(class_of(&t, "198.51.100.129"), exempt(2));
        assert_eq!(class_of(&t, "198.51.101.1"), SourceClass::NEITHER);
        assert_eq!(class_of(&t, "203.0.113.63"), dynamic(0));
        assert_eq!(class_of(&t, "203.0.113.64"), exempt(0));
        assert_eq!(class_of(&t, "203.0.113.128"), dynamic(0));
    }

    #[test]
    fn the_most_specific_dynamic_prefix_gives_the_pool() {
        let p = policy(
            &[("10.0.0.0/8", 1), ("10.1.0.0/16", 2), ("10.1.2.0/30", 3)],
            &[],
        );
        let t = build_v4(&p);
        assert_eq!(class_of(&t, "10.9.9.9"), dynamic(1));
        assert_eq!(class_of(&t, "10.1.9.9"), dynamic(2));
        assert_eq!(class_of(&t, "10.1.2.3"), dynamic(3));
        assert_eq!(class_of(&t, "10.1.2.4"), dynamic(2));
    }

    #[test]
    fn exemptions_outside_dynamic_and_uniform_blocks_cost_no_block() {
        let mut hosts: Vec<String> = (0..=255).map(|i| format!("100.64.9.{i}/32")).collect();
        hosts.push("192.0.2.7/32".into());
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let p = policy(&[("100.64.0.0/16", 0)], &hosts);
        let t = build_v4(&p);
        assert!(t.blocks.is_empty(), "{t:?}");
        assert_eq!(class_of(&t, "100.64.9.200"), exempt(0));
        assert_eq!(class_of(&t, "100.64.10.200"), dynamic(0));
        assert_eq!(class_of(&t, "192.0.2.7"), SourceClass::NEITHER);
    }

    #[test]
    fn a_prefix_in_both_lists_is_exempt() {
        let p = policy(&[("100.64.0.0/16", 4)], &["100.64.0.0/16"]);
        let t = build_v4(&p);
        assert_eq!(class_of(&t, "100.64.3.3"), exempt(4));
        let all: Vec<_> = classify_policy(&p, true).collect();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].dynamic, all[0].exempt), (Some(4), true));
    }

    #[test]
    fn the_indirect_entry_keeps_the_covering_class() {
        let p = policy(&[("100.64.0.0/16", 5)], &["100.64.1.7/32"]);
        let t = build_v4(&p);
        let n = op25b_common::abi::slash24([100, 64, 1, 0]) as usize;
        assert_eq!(t.first[n], dynamic(5).0 | SourceClass::INDIRECT);
    }

    #[test]
    fn ipv6_classes_come_from_the_same_walk() {
        let p = policy(
            &[("2001:db8::/32", 1), ("2001:db8:1::/48", 2)],
            &["2001:db8:1:2::/64", "2001::/16", "2001:db9::/32"],
        );
        let classified: Vec<_> = classify_policy(&p, false).collect();
        let by = |s: &str| {
            classified
                .iter()
                .find(|c| c.prefix == s.parse().unwrap())
                .unwrap()
                .class
        };
        assert_eq!(by("2001::/16"), SourceClass::NEITHER);
        assert_eq!(by("2001:db8::/32"), exempt(1));
        assert_eq!(by("2001:db8:1::/48"), exempt(2));
        assert_eq!(by("2001:db8:1:2::/64"), exempt(2));
        assert_eq!(by("2001:db9::/32"), SourceClass::NEITHER);
    }

    /// Prefixes at or around 100.64.0.0/20 (16 /24s), any length /12../32.
    fn arb_prefix() -> impl Strategy<Value = Prefix> {
        (12u8..=32, any::<u32>()).prop_map(|(len, raw)| {
            let addr = 0x6440_0000 | (raw & 0x0fff);
            let mask = u32::MAX << (32 - u32::from(len));
            Prefix::new(IpAddr::V4(Ipv4Addr::from(addr & mask)), len).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every address of the region (and around it) gets the class the
        /// plain lists give, whatever the nesting.
        #[test]
        fn the_table_agrees_with_the_lists(
            dynamic in prop::collection::vec((arb_prefix(), 0u32..4), 0..24),
            exempt in prop::collection::vec(arb_prefix(), 0..24),
        ) {
            let p = Policy::of_lists(&dynamic, &exempt);
            let t = build_v4(&p);
            for addr in 0x643f_ff00u32..0x6440_1100 {
                let bytes = Ipv4Addr::from(addr).octets();
                prop_assert_eq!(
                    t.lookup(bytes),
                    p.source_class(&IpAddrBytes::V4(bytes)),
                    "{}", Ipv4Addr::from(addr)
                );
            }
        }
    }
}
