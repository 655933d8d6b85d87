//! Incremental repaint == full rebuild, and undo gives back the old table.

use std::net::Ipv4Addr;

use op25b_common::{IpAddrBytes, PolicyLookup};
use proptest::prelude::*;

use super::*;
use crate::{
    dataplane::{
        class_record::{build_record, RecordLists},
        class_writer::record_entries,
        ipv4_class::classify_policy,
    },
    policy::{prefix::Prefix, Policy},
};

/// Prefixes in and around 100.64.0.0/20, any length /8../32.
fn arb_prefix() -> impl Strategy<Value = Prefix> {
    (8u8..=32, any::<u32>()).prop_map(|(len, raw)| {
        let addr = 0x6440_0000 | (raw & 0x0fff);
        Prefix::new(IpAddr::V4(Ipv4Addr::from(addr & mask(len))), len).unwrap()
    })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        prop::collection::vec((arb_prefix(), 0u32..3), 0..16),
        prop::collection::vec(arb_prefix(), 0..16),
    )
        .prop_map(|(dynamic, exempt)| Policy::of_lists(&dynamic, &exempt))
}

fn full(policy: &Policy) -> Mirror {
    let mut mirror = Mirror::empty();
    repaint(&mut mirror, classify_policy(policy, true), &[EVERY_SLASH24]);
    mirror
}

/// `repainted` names exactly the blocks that differ between `old` and
/// `new`, with the old contents and first-level bytes undo needs.
fn reports_what_changed(
    old: &Mirror,
    new: &Mirror,
    repainted: &Repainted,
) -> Result<(), TestCaseError> {
    use std::collections::BTreeMap;
    let sorted = |m: &Mirror| {
        m.blocks
            .iter()
            .map(|(&n, b)| (n, *b))
            .collect::<BTreeMap<_, _>>()
    };
    let (old_blocks, new_blocks) = (sorted(old), sorted(new));
    let mut gained: Vec<(u32, u8)> = new_blocks
        .keys()
        .filter(|n| !old_blocks.contains_key(n))
        .map(|&n| (n, old.first[n as usize]))
        .collect();
    let mut lost: Vec<u32> = old_blocks
        .keys()
        .filter(|n| !new_blocks.contains_key(n))
        .copied()
        .collect();
    let mut changed: Vec<u32> = old_blocks
        .iter()
        .filter(|(n, b)| new_blocks.get(n).is_some_and(|now| now != *b))
        .map(|(&n, _)| n)
        .collect();
    let mut saved: Vec<(u32, [u8; 256])> = old_blocks
        .iter()
        .filter(|(n, b)| new_blocks.get(n) != Some(b))
        .map(|(&n, b)| (n, *b))
        .collect();
    let mut report = repainted.clone();
    for list in [&mut gained, &mut report.gained] {
        list.sort_unstable();
    }
    for list in [
        &mut lost,
        &mut changed,
        &mut report.lost,
        &mut report.changed,
    ] {
        list.sort_unstable();
    }
    for list in [&mut saved, &mut report.old_blocks] {
        list.sort_unstable_by_key(|b| b.0);
    }
    prop_assert_eq!(report.gained, gained);
    prop_assert_eq!(report.lost, lost);
    prop_assert_eq!(report.changed, changed);
    prop_assert!(report.old_blocks == saved, "saved old blocks differ");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Repainting only the regions of a change gives the table a full
    /// rebuild gives, and undoing it gives back the old table.
    #[test]
    fn incremental_equals_full_rebuild(before in arb_policy(), after in arb_policy()) {
        let old = full(&before);
        let mut mirror = old.clone();
        let (old_entries, _) = record_entries(&before);
        let (new_entries, lengths) = record_entries(&after);
        let change = dirty_regions(&old_entries, &new_entries);
        // Added: entries new or with a new pool; removed: prefixes gone.
        let prefixes = |e: &[u64]| e.iter().map(|x| x >> 8).collect::<std::collections::BTreeSet<_>>();
        let (old_set, new_set) = (prefixes(&old_entries), prefixes(&new_entries));
        let added = new_entries.iter().filter(|e| !old_entries.contains(e)).count();
        prop_assert_eq!(change.added, added);
        prop_assert_eq!(change.removed, old_set.difference(&new_set).count());
        let regions = change.regions;
        let mut walked = old.clone();
        let walked_report = repaint(&mut walked, classify_policy(&after, true), &regions);
        let new_lists = RecordLists::from_entries(new_entries.clone());
        let repainted = repaint_regions(&mut mirror, new_lists.lists(), lengths, &regions);
        let want = full(&after);
        prop_assert!(mirror == want, "incremental differs from the full rebuild");
        prop_assert!(walked == want, "the walk over every prefix differs");
        reports_what_changed(&old, &want, &repainted)?;
        reports_what_changed(&old, &want, &walked_report)?;
        // And against the lists themselves, address by address.
        for addr in 0x643f_ff00u32..0x6440_1100 {
            let bytes = Ipv4Addr::from(addr).octets();
            prop_assert_eq!(
                mirror.lookup(bytes),
                after.source_class(&IpAddrBytes::V4(bytes)),
                "{}", Ipv4Addr::from(addr)
            );
        }
        mirror.restore(&repainted);
        prop_assert!(mirror == old, "undo did not give back the old table");
    }
}

/// Prefixes of any length /0../32 with addresses in 10.0.0.0/8, most of
/// them long (many per /16: the searches gallop over long runs of the
/// record; the few shorter than /8 cover it whole).
fn arb_wide_prefix() -> impl Strategy<Value = Prefix> {
    (prop_oneof![1 => 0u8..=23, 4 => 24u8..=32], any::<u32>()).prop_map(|(len, raw)| {
        let addr = 0x0a00_0000 | (raw & 0x00ff_ffff);
        Prefix::new(IpAddr::V4(Ipv4Addr::from(addr & mask(len))), len).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    /// Thousands of prefixes and a change of a few percent, regions from
    /// a /24 to the whole space: the record searches find the same
    /// deciding prefixes as a full walk.
    #[test]
    fn large_lists_repaint_as_a_full_rebuild(
        dynamic in prop::collection::vec((arb_wide_prefix(), 0u32..4), 2000..3000),
        exempt in prop::collection::vec(arb_wide_prefix(), 2000..3000),
        changes in prop::collection::vec((arb_wide_prefix(), 0u32..4, any::<bool>()), 1..120),
    ) {
        let before = Policy::of_lists(&dynamic, &exempt);
        let mut after = before.clone();
        for &(prefix, pool, to_exempt) in &changes {
            let list = if to_exempt { &mut after.exempt } else { &mut after.dynamic };
            if list.contains_exactly(&prefix) {
                list.v4.remove(&prefix);
            } else {
                list.insert(prefix);
            }
            if !to_exempt && pool != 0 {
                after.pool_of.insert(prefix, pool);
            }
        }
        let (old_entries, _) = record_entries(&before);
        let (new_entries, lengths) = record_entries(&after);
        let mut mirror = full(&before);
        let regions = dirty_regions(&old_entries, &new_entries).regions;
        let new_lists = RecordLists::from_entries(new_entries);
        repaint_regions(&mut mirror, new_lists.lists(), lengths, &regions);
        prop_assert!(mirror == full(&after), "incremental differs from the full rebuild");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// A record built reusing the half of an unchanged list is the record
    /// built afresh, and comparing only the other half finds the same
    /// change as comparing the whole.
    #[test]
    fn reusing_an_unchanged_list_changes_nothing(
        before in arb_policy(),
        changes in prop::collection::vec((arb_prefix(), 0u32..3, 0u8..3), 0..6),
    ) {
        let old = build_record(&before, &RecordLists::default(), None);
        let mut after = before.clone();
        for &(prefix, pool, what) in &changes {
            match what {
                0 => { after.dynamic.insert(prefix); }
                1 => {
                    if !after.exempt.v4.remove(&prefix) {
                        after.exempt.v4.insert(prefix);
                    }
                }
                _ => { after.pool_of.insert(prefix, pool); }
            }
        }
        let reused = build_record(&after, &old.lists, Some(&old.applied));
        let fresh = build_record(&after, &RecordLists::default(), None);
        prop_assert_eq!(&reused.lists, &fresh.lists);
        prop_assert_eq!(reused.lengths, fresh.lengths);
        prop_assert_eq!(&reused.applied, &fresh.applied);
        let whole = |r: &RecordLists| r.entries().collect::<Vec<u64>>();
        prop_assert_eq!(
            &reused.change,
            &dirty_regions(&whole(&old.lists), &whole(&fresh.lists))
        );
        // What the writer leaves in place is the old record's, at the same index.
        let (old_whole, new_whole) = (whole(&old.lists), whole(&reused.lists));
        let mut at = 0;
        for (list, in_place) in reused.lists.lists().into_iter().zip(reused.in_place) {
            if in_place {
                prop_assert_eq!(old_whole.get(at..at + list.len()), Some(&new_whole[at..at + list.len()]));
            }
            at += list.len();
        }
        // Untouched lists are neither walked nor compared.
        let edited = |w: u8| changes.iter().any(|c| c.2 == w);
        if !edited(0) && !edited(2) {
            prop_assert!(reused.lists.shares(&old.lists, 0));
        }
        if !edited(1) {
            prop_assert!(reused.lists.shares(&old.lists, 1));
        }
    }
}

#[test]
fn regions_nest_into_the_widest() {
    let entries = |ps: &[&str]| {
        let mut p = Policy::default();
        for s in ps {
            p.dynamic.insert(s.parse().unwrap());
        }
        record_entries(&p).0
    };
    let change = dirty_regions(
        &entries(&[]),
        &entries(&[
            "100.64.0.0/16",
            "100.64.1.0/24",
            "100.64.2.7/32",
            "198.51.100.9/32",
        ]),
    );
    let n = |a: [u8; 4]| op25b_common::abi::slash24(a);
    assert_eq!((change.added, change.removed), (4, 0));
    assert_eq!(
        change.regions,
        vec![
            n([100, 64, 0, 0])..n([100, 65, 0, 0]),
            n([198, 51, 100, 0])..n([198, 51, 101, 0])
        ]
    );
}

#[test]
fn equal_records_compare_to_no_change_whatever_their_length() {
    for n in [0u32, 7, 8, 16, 17] {
        let entries: Vec<u64> = (0..n)
            .map(|i| op25b_common::abi::record_entry(0, 0x6440_0000 + (i << 8), 24, 0))
            .collect();
        assert_eq!(dirty_regions(&entries, &entries), RecordChange::default());
        // One more entry at the end is found after the equal runs.
        let mut longer = entries.clone();
        longer.push(op25b_common::abi::record_entry(0, 0x6500_0000, 24, 0));
        let change = dirty_regions(&entries, &longer);
        assert_eq!((change.added, change.removed), (1, 0), "{n} entries");
        assert_eq!(change.regions, vec![0x65_0000..0x65_0001]);
    }
}

#[test]
fn only_a_few_pool_assignments_are_kept_to_tell_a_list_unchanged() {
    for (count, skipped) in [(100u32, true), (5000, false)] {
        let mut policy = Policy::default();
        for i in 0..count {
            let prefix =
                Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap();
            policy.dynamic.insert(prefix);
            policy.pool_of.insert(prefix, 1);
        }
        let first = build_record(&policy, &RecordLists::default(), None);
        let again = build_record(&policy, &first.lists, Some(&first.applied));
        assert_eq!(again.lists, first.lists);
        assert_eq!(
            again.lists.shares(&first.lists, 0),
            skipped,
            "{count} pool assignments"
        );
    }
}
