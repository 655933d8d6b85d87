//! The record of the operator's IPv4 dynamic and exempt lists: an mmap'd
//! array under a sequence lock (for status, explain and a restarted agent;
//! the program never reads it).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::fd::AsFd as _,
    sync::{
        atomic::{fence, AtomicU64, Ordering},
        Arc,
    },
};

use aya::maps::{LpmTrie, Map, MapData};
use op25b_common::abi::{
    record_entry, record_fields, record_header, LISTS_V4_CAPACITY, MAP_CLASS_V6, MAP_LISTS_V4,
    RECORD_DYNAMIC, RECORD_EXEMPT, V6_IN_DYNAMIC, V6_IN_EXEMPT,
};

use super::{
    class_regions::{dirty_regions, Changes, Comparer, ListLengths, RecordChange},
    class_writer::{ClassError, ClassMaps, ClassStats},
    mmap::Mapping,
};
use crate::policy::{
    prefix::{Prefix, PrefixSet},
    Policy,
};

/// The record's entries as this process keeps them: each list's, sorted
/// (dynamic, exempt), shared with the undo of the apply that replaced
/// them, so that a list an apply did not change is not copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordLists {
    lists: [Arc<Vec<u64>>; 2],
}

impl RecordLists {
    /// Splits a record's entries (sorted: dynamic ones first) by list.
    pub fn from_entries(mut entries: Vec<u64>) -> Self {
        let at = entries.partition_point(|&e| record_fields(e).0 != RECORD_EXEMPT);
        let exempt = entries.split_off(at);
        Self {
            lists: [Arc::new(entries), Arc::new(exempt)],
        }
    }

    /// (dynamic, exempt).
    pub fn lists(&self) -> [&[u64]; 2] {
        [&self.lists[0], &self.lists[1]]
    }

    pub fn len(&self) -> usize {
        self.lists[0].len() + self.lists[1].len()
    }

    /// Does list `i` share its entries with `other`'s (was it left unwalked)?
    #[cfg(test)]
    pub fn shares(&self, other: &Self, i: usize) -> bool {
        Arc::ptr_eq(&self.lists[i], &other.lists[i])
    }

    /// Every entry, in the record's order.
    pub fn entries(&self) -> impl Iterator<Item = u64> + '_ {
        self.lists[0].iter().chain(self.lists[1].iter()).copied()
    }
}

/// The lists the class maps were last written from: each list's
/// generation (see `SortedPrefixes::generation`) and the pools dynamic
/// entries carry, so an apply can tell an untouched list without walking it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedLists {
    /// (dynamic, exempt) IPv4 generations.
    v4: [u64; 2],
    /// (dynamic, exempt) IPv6 generations.
    v6: [u64; 2],
    /// `None` when there were too many to copy and compare on every apply
    /// (pools given by big list files): then no list is taken as unchanged.
    pools: Option<BTreeMap<Prefix, u32>>,
    lengths: ListLengths,
}

impl AppliedLists {
    fn same_pools(&self, policy: &Policy) -> bool {
        self.pools.as_ref() == Some(&policy.pool_of)
    }

    /// Are `policy`'s IPv4 lists (dynamic, exempt) those last written?
    fn same_v4(&self, policy: &Policy) -> [bool; 2] {
        [
            self.v4[0] == policy.dynamic.v4.generation() && self.same_pools(policy),
            self.v4[1] == policy.exempt.v4.generation(),
        ]
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

/// A new record, and what differs from the old one.
pub struct NewRecord {
    pub lists: RecordLists,
    pub lengths: ListLengths,
    pub applied: AppliedLists,
    /// What the lists walked afresh changed (compared with the old record
    /// on the way; the others are the old record's, shared).
    pub change: RecordChange,
    /// The lists the map holds at the same place already (unchanged, not
    /// moved): the rewrite leaves them.
    pub in_place: [bool; 2],
}

/// The record of `policy`'s IPv4 lists: dynamic entries, then exempt ones
/// (the record's sort order), and what changed against `old` (the record
/// `last` describes). A list `last` says is unchanged is shared with `old`
/// and not compared: a reload of one list neither walks nor compares the
/// other.
pub fn build_record(policy: &Policy, old: &RecordLists, last: Option<&AppliedLists>) -> NewRecord {
    let same = last.map_or([false; 2], |l| l.same_v4(policy));
    let (dynamic, exempt) = (&policy.dynamic.v4, &policy.exempt.v4);
    let [old_dynamic, old_exempt] = &old.lists;
    let kept_lengths = last.map_or([0; 2], |l| l.lengths);
    let mut changes = Changes::default();
    let (dynamic_list, dynamic_lengths) = if same[0] {
        (Arc::clone(old_dynamic), kept_lengths[0])
    } else {
        let walk = policy.with_pools(dynamic);
        let compared = Comparer::new(old_dynamic, &mut changes);
        list_entries(walk, dynamic.len(), RECORD_DYNAMIC, compared)
    };
    let (exempt_list, exempt_lengths) = if same[1] {
        (Arc::clone(old_exempt), kept_lengths[1])
    } else {
        let walk = exempt.iter().map(|p| (p, 0));
        let compared = Comparer::new(old_exempt, &mut changes);
        list_entries(walk, exempt.len(), RECORD_EXEMPT, compared)
    };
    // The dynamic entries always start the record; the exempt ones stay
    // in place when the dynamic list kept its length.
    let in_place = [same[0], same[1] && dynamic_list.len() == old_dynamic.len()];
    let lengths = [dynamic_lengths, exempt_lengths];
    NewRecord {
        lists: RecordLists {
            lists: [dynamic_list, exempt_list],
        },
        lengths,
        change: changes.into_record_change(),
        in_place,
        applied: AppliedLists {
            v4: [dynamic.generation(), exempt.generation()],
            v6: [
                policy.dynamic.v6.generation(),
                policy.exempt.v6.generation(),
            ],
            pools: (policy.pool_of.len() <= POOLS_COMPARED).then(|| policy.pool_of.clone()),
            lengths,
        },
    }
}

/// One list's record entries, sorted as the list is, each compared with
/// the old list's as it is made; and the prefix lengths it holds (bit
/// `len`).
fn list_entries<'a>(
    prefixes: impl Iterator<Item = (&'a Prefix, u32)>,
    count: usize,
    list: u8,
    mut compared: Comparer,
) -> (Arc<Vec<u64>>, u64) {
    let mut entries = Vec::with_capacity(count);
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
        let entry = record_entry(list, u32::from(addr), prefix.len(), pool);
        compared.feed(entry);
        entries.push(entry);
    }
    compared.finish();
    (Arc::new(entries), lengths)
}

impl ClassMaps {
    /// Rewrites the record to hold `lists`; `counts` are the (added,
    /// removed) entries against the record, when the caller compared them
    /// already; the lists `in_place` says are in the map already.
    pub(super) fn write_record(
        &mut self,
        lists: &RecordLists,
        counts: Option<(usize, usize)>,
        in_place: [bool; 2],
        stats: &mut ClassStats,
    ) {
        let capacity = LISTS_V4_CAPACITY as usize - 1;
        let words = self.record.words();
        let header = words[0].load(Ordering::Acquire);
        let (sequence, old_count) = split_header(header);
        let old = &words[1..=old_count.min(capacity)];
        let (added, removed) = counts.unwrap_or_else(|| count_changes(old, lists));
        stats.added += added;
        stats.removed += removed;
        if added == 0 && removed == 0 && old.len() == lists.len() {
            return;
        }
        let count = u32::try_from(lists.len()).expect("checked against the capacity");
        let old_count = u32::try_from(old.len()).expect("below the capacity");
        // Odd while rewriting: readers retry (a sequence lock).
        words[0].store(record_header(sequence | 1, old_count), Ordering::Relaxed);
        fence(Ordering::Release);
        let mut at = 1;
        for (list, in_place) in lists.lists().into_iter().zip(in_place) {
            if !in_place {
                for (slot, &entry) in words[at..at + list.len()].iter().zip(list) {
                    slot.store(entry, Ordering::Relaxed);
                }
            }
            at += list.len();
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
fn count_changes(old: &[AtomicU64], new: &RecordLists) -> (usize, usize) {
    let old: Vec<u64> = old.iter().map(|w| w.load(Ordering::Relaxed)).collect();
    let new: Vec<u64> = new.entries().collect();
    let change = dirty_regions(&old, &new);
    (change.added, change.removed)
}
