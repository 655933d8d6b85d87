//! The record entries that decide a reload's dirty /24 regions: per region
//! and list, the entries covering it (found by a short walk back from the
//! region, or one search per prefix length the list holds) and those inside
//! it (one range). Each list's record is a sorted `u64` array and the
//! regions come sorted, so each search gallops from where the last one
//! ended: a 1% change of a million-entry list touches a few cache lines per
//! region instead of a tree search per length.
//!
//! Pure: no kernel.

use std::ops::Range;

use op25b_common::abi::{record_entry, record_fields, RECORD_DYNAMIC, RECORD_EXEMPT};

use super::class_regions::{mask, ListLengths};

/// The first index of sorted `entries` whose entry is `>= key`, searched
/// outwards from `hint` (doubling steps, then a binary search of the last
/// step): O(log distance) instead of O(log len).
pub fn lower_bound_near(entries: &[u64], hint: usize, key: u64) -> usize {
    let len = entries.len();
    let hint = hint.min(len);
    if hint < len && entries[hint] < key {
        // Forward: everything before `lo` is below `key`.
        let (mut lo, mut step) = (hint + 1, 1);
        while lo + step <= len && entries[lo + step - 1] < key {
            lo += step;
            step *= 2;
        }
        let hi = (lo + step).min(len);
        lo + entries[lo..hi].partition_point(|&e| e < key)
    } else {
        // Backward: everything from `hi` to `hint` is at or above `key`.
        let (mut hi, mut step) = (hint, 1);
        while hi >= step && entries[hi - step] >= key {
            hi -= step;
            step *= 2;
        }
        let lo = hi.saturating_sub(step);
        lo + entries[lo..hi].partition_point(|&e| e < key)
    }
}

/// The deciding entries of every region, per list: (dynamic, exempt), each
/// sorted and without duplicates (a prefix covering several regions is
/// listed once), so the pair is a pre-order walk of just those prefixes.
/// `lists` are the record's (dynamic, exempt) entries.
pub fn deciding_entries(
    lists: [&[u64]; 2],
    lengths: ListLengths,
    regions: &[Range<u32>],
) -> (Vec<u64>, Vec<u64>) {
    let mut found = [Vec::new(), Vec::new()];
    let kinds = [RECORD_DYNAMIC, RECORD_EXEMPT];
    for (list, out) in found.iter_mut().enumerate() {
        let (kind, entries) = (kinds[list], lists[list]);
        let mut cursor = 0;
        for region in regions {
            let len = u8::try_from(24 - (region.end - region.start).trailing_zeros()).unwrap_or(0);
            let addr = region.start << 8;
            let first = lower_bound_near(entries, cursor, record_entry(kind, addr, len, 0));
            if !covering_by_walk(entries, first, (kind, lengths[list]), (addr, len), out) {
                for l in (0..len).filter(|l| lengths[list] & (1 << l) != 0) {
                    let key = record_entry(kind, addr & mask(l), l, 0);
                    let at = lower_bound_near(entries, first, key);
                    if entries.get(at).is_some_and(|&e| e >> 8 == key >> 8) {
                        out.push(entries[at]);
                    }
                }
            }
            let last = record_entry(kind, addr | !mask(len), 32, u8::MAX);
            let end = lower_bound_near(entries, first, last + 1);
            out.extend_from_slice(&entries[first..end]);
            cursor = end;
        }
        out.sort_unstable();
        out.dedup();
    }
    let [dynamic, exempt] = found;
    (dynamic, exempt)
}

/// Entries walked back at most, looking for those covering a region.
const WALK_BACK: usize = 32;

/// Pushes the entries covering the region (`addr`, `len`) onto `out` by
/// walking back from `first` (the region's first entry) through `entries`,
/// the record of list `kind`, whose prefixes have the lengths in `lengths`
/// (bit `len` set for each). Covering entries all sit between the region
/// and where the list's shortest prefix around it would start: usually a
/// handful of entries, each cheaper to look at than a search per length.
/// False (and nothing pushed) if that start may lie more than
/// [`WALK_BACK`] entries back: search then.
fn covering_by_walk(
    entries: &[u64],
    first: usize,
    (kind, lengths): (u8, u64),
    (addr, len): (u32, u8),
    out: &mut Vec<u64>,
) -> bool {
    let shortest = lengths.trailing_zeros().min(32) as u8;
    if shortest >= len {
        return true; // nothing in the list is short enough to cover it
    }
    let floor = record_entry(kind, addr & mask(shortest), shortest, 0);
    let start = first.saturating_sub(WALK_BACK);
    let reached = entries[start..first].partition_point(|&e| e < floor);
    if reached == 0 && start > 0 && entries[start - 1] >= floor {
        return false;
    }
    let pushed = out.len();
    for &entry in &entries[start + reached..first] {
        let (_, a, l, _) = record_fields(entry);
        if l < len && addr & mask(l) == a {
            out.push(entry);
        }
    }
    debug_assert!(out[pushed..].is_sorted());
    true
}

/// The prefix of a record entry, and its pool.
pub fn entry_prefix(entry: u64) -> (crate::policy::prefix::Prefix, u32) {
    let (_, addr, len, pool) = record_fields(entry);
    let prefix = crate::policy::prefix::Prefix::new(std::net::IpAddr::V4(addr.into()), len)
        .expect("the record holds masked prefixes of at most /32");
    (prefix, u32::from(pool))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The galloping search finds what a plain binary search finds,
        /// from any hint.
        #[test]
        fn lower_bound_near_agrees_with_binary_search(
            mut entries in prop::collection::vec(0u64..1000, 0..200),
            hint in 0usize..250,
            key in 0u64..1100,
        ) {
            entries.sort_unstable();
            prop_assert_eq!(
                lower_bound_near(&entries, hint, key),
                entries.partition_point(|&e| e < key)
            );
        }
    }
}
