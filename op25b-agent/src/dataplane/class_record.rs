//! The record of the operator's IPv4 dynamic and exempt lists: an mmap'd
//! array under a sequence lock (for status, explain and a restarted agent;
//! the program never reads it).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    ops::Range,
    os::fd::AsFd as _,
    sync::atomic::{fence, AtomicU64, Ordering},
};

use aya::maps::{LpmTrie, Map, MapData};
use op25b_common::abi::{
    record_entry, record_fields, record_header, LISTS_V4_CAPACITY, MAP_CLASS_V6, MAP_LISTS_V4,
    RECORD_DYNAMIC, RECORD_EXEMPT, V6_IN_DYNAMIC, V6_IN_EXEMPT,
};

use super::{
    class_regions::{dirty_regions, ListLengths},
    class_writer::{ClassError, ClassMaps, ClassStats},
    mmap::Mapping,
};
use crate::policy::{
    prefix::{Prefix, PrefixSet},
    Policy,
};

/// The lists the class maps were last written from: each list's
/// generation (see `SortedPrefixes::generation`) and the pools dynamic
/// entries carry, so an apply can tell an untouched list without walking
/// it; and where the record's exempt entries start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedLists {
    /// (dynamic, exempt) IPv4 generations.
    v4: [u64; 2],
    /// (dynamic, exempt) IPv6 generations.
    v6: [u64; 2],
    /// `None` when there were too many to copy and compare on every apply
    /// (pools given by big list files): then no list is taken as unchanged.
    pools: Option<BTreeMap<Prefix, u32>>,
    exempt_at: usize,
    lengths: ListLengths,
}

impl AppliedLists {
    fn same_pools(&self, policy: &Policy) -> bool {
        self.pools.as_ref() == Some(&policy.pool_of)
    }

    fn same_dynamic(&self, policy: &Policy) -> bool {
        self.v4[0] == policy.dynamic.v4.generation() && self.same_pools(policy)
    }

    fn same_exempt(&self, policy: &Policy) -> bool {
        self.v4[1] == policy.exempt.v4.generation()
    }

    /// Are `policy`'s IPv6 lists those last written?
    pub fn same_v6(&self, policy: &Policy) -> bool {
        self.v6
            == [
                policy.dynamic.v6.generation(),
                policy.exempt.v6.generation(),
            ]
            && self.same_pools(policy)
    }
}

/// Pool assignments copied and compared per apply, at most.
const POOLS_COMPARED: usize = 4096;

/// A new record and the parts of it (and of the old one) that can differ.
pub struct NewRecord {
    pub entries: Vec<u64>,
    pub lengths: ListLengths,
    pub applied: AppliedLists,
    /// The entries of the old record to compare ...
    pub old_part: Range<usize>,
    /// ... with these of the new one.
    pub new_part: Range<usize>,
    /// Entries the map holds at the same place already (an unchanged list
    /// that did not move): the rewrite leaves them.
    pub in_place: Range<usize>,
}

#[cfg(test)]
impl NewRecord {
    /// Where the new record's exempt entries start.
    pub const fn applied_exempt_at(&self) -> usize {
        self.applied.exempt_at
    }
}

/// The record of `policy`'s IPv4 lists: dynamic entries, then exempt ones
/// (the record's sort order). A list `last` says is unchanged is copied
/// from `old` (the record `last` describes) and left out of the comparison:
/// a reload of one list neither walks nor compares the other.
pub fn build_record(policy: &Policy, old: &[u64], last: Option<&AppliedLists>) -> NewRecord {
    let same_dynamic = last.filter(|l| l.same_dynamic(policy));
    let same_exempt = last.filter(|l| l.same_exempt(policy));
    let (dynamic, exempt) = (&policy.dynamic.v4, &policy.exempt.v4);
    let mut entries = Vec::with_capacity(dynamic.len() + exempt.len());
    let dynamic_lengths = if let Some(l) = same_dynamic {
        entries.extend_from_slice(&old[..l.exempt_at]);
        l.lengths[0]
    } else {
        push_entries(&mut entries, policy.with_pools(dynamic), RECORD_DYNAMIC)
    };
    let exempt_at = entries.len();
    let exempt_lengths = if let Some(l) = same_exempt {
        entries.extend_from_slice(&old[l.exempt_at..]);
        l.lengths[1]
    } else {
        push_entries(&mut entries, exempt.iter().map(|p| (p, 0)), RECORD_EXEMPT)
    };
    let old_at = last.map_or(0, |l| l.exempt_at);
    // What can differ, and what the map holds in place already: an
    // unchanged list whose entries start where they did (the dynamic ones
    // always start at 0).
    let (old_part, new_part, in_place) = match (same_dynamic.is_some(), same_exempt.is_some()) {
        (true, true) => (0..0, 0..0, 0..exempt_at),
        (true, false) => (old_at..old.len(), exempt_at..entries.len(), 0..exempt_at),
        (false, true) => {
            let moved = exempt_at != old_at;
            let in_place = if moved {
                0..0
            } else {
                exempt_at..entries.len()
            };
            (0..old_at, 0..exempt_at, in_place)
        }
        (false, false) => (0..old.len(), 0..entries.len(), 0..0),
    };
    let lengths = [dynamic_lengths, exempt_lengths];
    NewRecord {
        entries,
        lengths,
        in_place,
        applied: AppliedLists {
            v4: [dynamic.generation(), exempt.generation()],
            v6: [
                policy.dynamic.v6.generation(),
                policy.exempt.v6.generation(),
            ],
            pools: (policy.pool_of.len() <= POOLS_COMPARED).then(|| policy.pool_of.clone()),
            exempt_at,
            lengths,
        },
        old_part,
        new_part,
    }
}

/// Appends one list's record entries, sorted as the list is, to `entries`;
/// returns the prefix lengths it holds (bit `len`).
fn push_entries<'a>(
    entries: &mut Vec<u64>,
    prefixes: impl Iterator<Item = (&'a Prefix, u32)>,
    list: u8,
) -> u64 {
    let mut lengths = 0u64;
    for (prefix, pool) in prefixes {
        let IpAddr::V4(addr) = prefix.addr() else {
            unreachable!("the v4 half")
        };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "pool ids are below MAX_POOLS"
        )]
        let pool = pool as u8;
        lengths |= 1 << prefix.len();
        entries.push(record_entry(list, u32::from(addr), prefix.len(), pool));
    }
    lengths
}

impl ClassMaps {
    /// Rewrites the record to hold `entries`; `counts` are the (added,
    /// removed) entries against the record, when the caller compared them
    /// already; the entries in `in_place` are in the map already.
    pub(super) fn write_record(
        &mut self,
        entries: &[u64],
        counts: Option<(usize, usize)>,
        in_place: Range<usize>,
        stats: &mut ClassStats,
    ) {
        let capacity = LISTS_V4_CAPACITY as usize - 1;
        let words = self.record.words();
        let header = words[0].load(Ordering::Acquire);
        let (sequence, old_count) = split_header(header);
        let old = &words[1..=old_count.min(capacity)];
        let (added, removed) = counts.unwrap_or_else(|| count_changes(old, entries));
        stats.added += added;
        stats.removed += removed;
        if added == 0 && removed == 0 && old.len() == entries.len() {
            return;
        }
        let count = u32::try_from(entries.len()).expect("checked against the capacity");
        let old_count = u32::try_from(old.len()).expect("below the capacity");
        // Odd while rewriting: readers retry (a sequence lock).
        words[0].store(record_header(sequence | 1, old_count), Ordering::Relaxed);
        fence(Ordering::Release);
        let slots = &words[1..=entries.len()];
        let (start, end) = (
            in_place.start.min(entries.len()),
            in_place.end.min(entries.len()),
        );
        for part in [0..start, end..entries.len()] {
            for (slot, &entry) in slots[part.clone()].iter().zip(&entries[part]) {
                slot.store(entry, Ordering::Relaxed);
            }
        }
        words[0].store(
            record_header((sequence | 1).wrapping_add(1), count),
            Ordering::Release,
        );
    }

    /// The recorded IPv4 lists: (dynamic with pools, exempt).
    pub fn read_record(&self) -> Result<(PrefixSet, BTreeMap<Prefix, u32>, PrefixSet), ClassError> {
        let (mut dynamic, mut pools, mut exempt) =
            (PrefixSet::default(), BTreeMap::new(), PrefixSet::default());
        for entry in read_record_entries(&self.record)? {
            let (list, addr, len, pool) = record_fields(entry);
            let Ok(prefix) = Prefix::new(IpAddr::V4(addr.into()), len) else {
                continue;
            };
            if list == RECORD_EXEMPT {
                exempt.insert(prefix);
            } else {
                dynamic.insert(prefix);
                if pool != 0 {
                    pools.insert(prefix, u32::from(pool));
                }
            }
        }
        Ok((dynamic, pools, exempt))
    }
}

/// The record's entries, read under its sequence lock.
fn read_record_entries(record: &Mapping) -> Result<Vec<u64>, ClassError> {
    let words = record.words();
    for _ in 0..1000 {
        let before = words[0].load(Ordering::Acquire);
        let (sequence, count) = split_header(before);
        if sequence & 1 == 1 {
            std::thread::yield_now();
            continue;
        }
        let entries: Vec<u64> = words[1..=count.min(words.len() - 1)]
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        fence(Ordering::Acquire);
        if words[0].load(Ordering::Relaxed) != before {
            continue;
        }
        return Ok(entries);
    }
    Err(ClassError::RecordBusy)
}

/// Entries per list in pinned class maps (no program needed):
/// `[(dynamic IPv4, IPv6), (exempt IPv4, IPv6)]`, `None` if not pinned.
pub fn pinned_list_counts(maps_dir: &std::path::Path) -> Option<[(usize, usize); 2]> {
    let record = MapData::from_pin(maps_dir.join(MAP_LISTS_V4)).ok()?;
    let record = Mapping::new(
        MAP_LISTS_V4,
        record.fd().as_fd(),
        LISTS_V4_CAPACITY as usize * 8,
    )
    .ok()?;
    let mut counts = [(0, 0); 2];
    for entry in read_record_entries(&record).ok()? {
        let list = usize::from(record_fields(entry).0 == RECORD_EXEMPT);
        counts[list].0 += 1;
    }
    let trie = Map::LpmTrie(MapData::from_pin(maps_dir.join(MAP_CLASS_V6)).ok()?);
    let trie = LpmTrie::<&MapData, [u8; 16], u32>::try_from(&trie).ok()?;
    for (_, value) in trie.iter().flatten() {
        counts[0].1 += usize::from(value & V6_IN_DYNAMIC != 0);
        counts[1].1 += usize::from(value & V6_IN_EXEMPT != 0);
    }
    Some(counts)
}

fn split_header(header: u64) -> (u32, usize) {
    ((header >> 32) as u32, (header & 0xffff_ffff) as usize)
}

/// (added, removed) between the record as the map holds it and `new`,
/// counted by the reload's own comparison (an entry whose pool changed
/// counts as added). Only when the caller has not compared them already.
fn count_changes(old: &[AtomicU64], new: &[u64]) -> (usize, usize) {
    let old: Vec<u64> = old.iter().map(|w| w.load(Ordering::Relaxed)).collect();
    let change = dirty_regions(&old, new);
    (change.added, change.removed)
}
