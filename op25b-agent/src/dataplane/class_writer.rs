//! Puts the source classes of `ipv4_class` into the kernel:
//!
//! - the IPv4 first level is written through `mmap` with one byte store per
//!   changed entry, so a packet reads either the old or the new class;
//! - second-level blocks are hash values replaced whole (the kernel swaps
//!   the element under RCU). A /24 that gains a block gets it before its
//!   first-level byte points there; one that loses it gets a uniform block
//!   of its new class first, then its direct byte, and the block itself is
//!   deleted only by a later apply, [`ORPHAN_GRACE`] after, when no packet
//!   can still be between the two reads;
//! - IPv6 classes are LPM-trie entries: new and changed entries go in
//!   longest first, stale ones go out shortest first, so every address's
//!   longest match holds either its old or its new class throughout;
//! - the IPv4 lists themselves are recorded (for status, explain and a
//!   restarted agent) in an mmap'd array under a sequence lock.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    sync::atomic::{fence, AtomicU64, AtomicU8, Ordering},
    time::{Duration, Instant},
};

use aya::{
    maps::{lpm_trie::Key, HashMap, LpmTrie, Map, MapData, MapError},
    Ebpf,
};
use op25b_common::{
    abi::{
        record_entry, record_fields, record_header, CLASS_V4_BLOCK_CAPACITY, LISTS_V4_CAPACITY,
        MAP_CLASS_V4, MAP_CLASS_V4_BLOCKS, MAP_CLASS_V6, MAP_LISTS_V4, RECORD_DYNAMIC,
        RECORD_EXEMPT, V6_IN_DYNAMIC, V6_IN_EXEMPT, V6_POOL_SHIFT,
    },
    SourceClass,
};

use super::ipv4_class::{classify_policy, ClassTable, FIRST_LEVEL_ENTRIES};
use crate::{
    policy::Policy,
    prefix::{Prefix, PrefixSet},
};

/// How long a block unreferenced by the first level stays before it is
/// deleted: far longer than any packet takes between its two lookups.
pub const ORPHAN_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    #[error("map {0} is missing from the program object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("mapping {name} into memory: {source}")]
    Mmap {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} on map {name}: {source}")]
    Batch {
        op: &'static str,
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the IPv4 dynamic and exempt lists hold {count} prefixes; the data plane records at most {capacity}")]
    RecordFull { count: usize, capacity: usize },
    #[error("the IPv4 lists need {count} second-level blocks (/24s split by longer prefixes); the data plane holds at most {capacity}")]
    TooManyBlocks { count: usize, capacity: usize },
    #[error("the IPv4 list record is being rewritten by another process; try again")]
    RecordBusy,
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> ClassError {
    move |source| ClassError::Map { name, source }
}

/// A shared, writable mapping of a `BPF_F_MMAPABLE` array.
pub(super) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through
// atomics or happens while `&mut self` is held.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(super) fn new(
        name: &'static str,
        fd: BorrowedFd<'_>,
        len: usize,
    ) -> Result<Self, ClassError> {
        // SAFETY: a fresh shared mapping of a map fd; the kernel checks the
        // length against the map and the map's BPF_F_MMAPABLE flag.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ClassError::Mmap {
                name,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(super) fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: `len` bytes mapped at `ptr`, alive as long as `self`;
        // AtomicU8 has the layout of u8.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU8>(), self.len) }
    }

    pub(super) fn words(&self) -> &[AtomicU64] {
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "mmap returns page-aligned memory"
        )]
        let words = self.ptr.cast::<AtomicU64>();
        // SAFETY: as above; the mapping is page-aligned.
        unsafe { std::slice::from_raw_parts(words, self.len / 8) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// What this process knows the class maps hold, and their mappings.
pub struct ClassMaps {
    first: Mapping,
    record: Mapping,
    /// The blocks in the hash, once known (read from the kernel on the
    /// first apply after adopting pinned maps).
    blocks: Option<Vec<(u32, [u8; 256])>>,
    /// Blocks no first-level entry points at any more, and since when.
    orphans: std::collections::HashMap<u32, Instant>,
    /// The IPv6 class entries, once known, sorted.
    v6: Option<Vec<(Prefix, u32)>>,
    /// The last table built, kept so the next build reuses its 16 MiB.
    scratch: Option<ClassTable>,
}

/// What applying changed, counted in list entries (a pool change counts
/// as an addition).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub added: usize,
    pub removed: usize,
    pub first_level_writes: usize,
    pub blocks_written: usize,
    pub blocks_deleted: usize,
}

fn map_data<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a MapData, ClassError> {
    match ebpf.map(name).ok_or(ClassError::MissingMap(name))? {
        Map::Array(data) | Map::HashMap(data) | Map::LpmTrie(data) => Ok(data),
        _ => Err(ClassError::MissingMap(name)),
    }
}

impl ClassMaps {
    /// Maps the class and record arrays of a loaded program.
    pub fn open(ebpf: &Ebpf) -> Result<Self, ClassError> {
        let first = map_data(ebpf, MAP_CLASS_V4)?;
        let record = map_data(ebpf, MAP_LISTS_V4)?;
        Ok(Self {
            first: Mapping::new(MAP_CLASS_V4, first.fd().as_fd(), FIRST_LEVEL_ENTRIES)?,
            record: Mapping::new(
                MAP_LISTS_V4,
                record.fd().as_fd(),
                LISTS_V4_CAPACITY as usize * 8,
            )?,
            blocks: None,
            orphans: std::collections::HashMap::new(),
            v6: None,
            scratch: None,
        })
    }

    /// The class of an IPv4 address as the kernel's table holds it now.
    pub fn lookup_v4(&self, ebpf: &Ebpf, addr: [u8; 4]) -> Result<SourceClass, ClassError> {
        let n = op25b_common::abi::slash24(addr);
        let first = self.first.bytes()[n as usize].load(Ordering::Relaxed);
        if first & SourceClass::INDIRECT == 0 {
            return Ok(SourceClass(first));
        }
        let blocks: HashMap<&MapData, u32, [u8; 256]> = HashMap::try_from(
            ebpf.map(MAP_CLASS_V4_BLOCKS)
                .ok_or(ClassError::MissingMap(MAP_CLASS_V4_BLOCKS))?,
        )
        .map_err(map_err(MAP_CLASS_V4_BLOCKS))?;
        Ok(match blocks.get(&n, 0) {
            Ok(block) => SourceClass(block[usize::from(addr[3])]),
            Err(_) => SourceClass(first & !SourceClass::INDIRECT),
        })
    }

    /// Makes the class maps and the record hold `policy`'s dynamic and
    /// exempt lists.
    pub fn apply(&mut self, ebpf: &mut Ebpf, policy: &Policy) -> Result<ClassStats, ClassError> {
        let mut stats = ClassStats::default();
        // Everything that can refuse the policy is checked before the
        // first write: all or nothing.
        let mut table = self.scratch.take().unwrap_or_else(ClassTable::empty);
        let mut entries = Vec::with_capacity(policy.dynamic.v4.len() + policy.exempt.v4.len());
        let mut exempt_entries = Vec::with_capacity(policy.exempt.v4.len());
        // One walk builds the table and the record (dynamic entries, then
        // exempt ones: the record's sort order).
        table.rebuild(classify_policy(policy, true).inspect(|c| {
            let IpAddr::V4(addr) = c.prefix.addr() else {
                return;
            };
            let addr = u32::from(addr);
            if let Some(pool) = c.dynamic {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "pool ids are below MAX_POOLS"
                )]
                entries.push(record_entry(
                    RECORD_DYNAMIC,
                    addr,
                    c.prefix.len(),
                    pool as u8,
                ));
            }
            if c.exempt {
                exempt_entries.push(record_entry(RECORD_EXEMPT, addr, c.prefix.len(), 0));
            }
        }));
        entries.append(&mut exempt_entries);
        let capacity = LISTS_V4_CAPACITY as usize - 1;
        if entries.len() > capacity {
            return Err(ClassError::RecordFull {
                count: entries.len(),
                capacity,
            });
        }
        if table.blocks.len() > CLASS_V4_BLOCK_CAPACITY as usize {
            return Err(ClassError::TooManyBlocks {
                count: table.blocks.len(),
                capacity: CLASS_V4_BLOCK_CAPACITY as usize,
            });
        }
        self.delete_old_orphans(ebpf, &mut stats)?;
        self.write_v4(ebpf, &table, &mut stats)?;
        self.scratch = Some(table);
        self.write_record(&entries, &mut stats);
        self.write_v6(ebpf, policy, &mut stats)?;
        Ok(stats)
    }

    fn blocks_map(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, u32, [u8; 256]>, ClassError> {
        HashMap::try_from(
            ebpf.map_mut(MAP_CLASS_V4_BLOCKS)
                .ok_or(ClassError::MissingMap(MAP_CLASS_V4_BLOCKS))?,
        )
        .map_err(map_err(MAP_CLASS_V4_BLOCKS))
    }

    /// The blocks in the kernel, sorted by /24.
    fn known_blocks(&mut self, ebpf: &mut Ebpf) -> Result<Vec<(u32, [u8; 256])>, ClassError> {
        if let Some(blocks) = self.blocks.take() {
            return Ok(blocks);
        }
        let map = Self::blocks_map(ebpf)?;
        let mut blocks = Vec::new();
        for item in &map {
            blocks.push(item.map_err(map_err(MAP_CLASS_V4_BLOCKS))?);
        }
        blocks.sort_unstable_by_key(|(n, _)| *n);
        // Blocks found unreferenced were orphaned by an earlier agent: their
        // grace starts now.
        let first = self.first.bytes();
        let now = Instant::now();
        for &(n, _) in &blocks {
            if first[n as usize].load(Ordering::Relaxed) & SourceClass::INDIRECT == 0 {
                self.orphans.entry(n).or_insert(now);
            }
        }
        Ok(blocks)
    }

    fn delete_old_orphans(
        &mut self,
        ebpf: &mut Ebpf,
        stats: &mut ClassStats,
    ) -> Result<(), ClassError> {
        let mut blocks = self.known_blocks(ebpf)?;
        let first = self.first.bytes();
        // (Blocks referenced again left the list when that was written.)
        let due: Vec<u32> = self
            .orphans
            .iter()
            .filter(|(_, since)| since.elapsed() >= ORPHAN_GRACE)
            .map(|(&n, _)| n)
            .filter(|&n| first[n as usize].load(Ordering::Relaxed) & SourceClass::INDIRECT == 0)
            .collect();
        for n in &due {
            self.orphans.remove(n);
        }
        let result = batch(ebpf, BatchOp::Delete, &due, &[]);
        if result.is_ok() {
            let due: std::collections::HashSet<u32> = due.iter().copied().collect();
            blocks.retain(|(n, _)| !due.contains(n));
            stats.blocks_deleted += due.len();
        }
        self.blocks = Some(blocks);
        result
    }

    fn write_v4(
        &mut self,
        ebpf: &mut Ebpf,
        table: &ClassTable,
        stats: &mut ClassStats,
    ) -> Result<(), ClassError> {
        let old = self.known_blocks(ebpf)?;
        // 1. Blocks in before anything points at them; blocks losing their
        //    /24's pointer become uniform (the new direct class) first.
        //    Both lists are sorted by /24: one merge, which also yields
        //    what the hash holds afterwards.
        let mut keys = Vec::new();
        let mut values: Vec<[u8; 256]> = Vec::new();
        let mut orphaned = Vec::new();
        let mut next = Vec::with_capacity(table.blocks.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < table.blocks.len() {
            let order = match (old.get(i), table.blocks.get(j)) {
                (Some(o), Some(t)) => o.0.cmp(&t.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let (n, block) = old[i];
                    let uniform = [table.first[n as usize]; 256];
                    if block != uniform {
                        keys.push(n);
                        values.push(uniform);
                    }
                    orphaned.push(n);
                    next.push((n, uniform));
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    keys.push(table.blocks[j].0);
                    values.push(table.blocks[j].1);
                    next.push(table.blocks[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if old[i].1 != table.blocks[j].1 {
                        keys.push(table.blocks[j].0);
                        values.push(table.blocks[j].1);
                    }
                    next.push(table.blocks[j]);
                    i += 1;
                    j += 1;
                }
            }
        }
        drop(old);
        // On failure the hash is somewhere between: re-read it next time.
        batch(ebpf, BatchOp::Update, &keys, &values)?;
        stats.blocks_written += keys.len();
        let blocks = next;
        // 2. The first level, one byte store per changed entry.
        fence(Ordering::SeqCst);
        stats.first_level_writes += store_changed(&self.first, &table.first);
        fence(Ordering::SeqCst);
        // A block referenced again is no orphan; a block orphaned again
        // starts its grace anew.
        self.orphans
            .retain(|&n, _| table.first[n as usize] & SourceClass::INDIRECT == 0);
        let now = Instant::now();
        for n in orphaned {
            self.orphans.entry(n).or_insert(now);
        }
        self.blocks = Some(blocks);
        Ok(())
    }

    fn write_record(&mut self, entries: &[u64], stats: &mut ClassStats) {
        let capacity = LISTS_V4_CAPACITY as usize - 1;
        let words = self.record.words();
        let header = words[0].load(Ordering::Acquire);
        let (sequence, old_count) = split_header(header);
        let old = &words[1..=old_count.min(capacity)];
        let (added, removed) = count_changes(old, entries);
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
        for (slot, &entry) in words[1..].iter().zip(entries) {
            slot.store(entry, Ordering::Relaxed);
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

impl ClassMaps {
    fn trie_v6(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, [u8; 16], u32>, ClassError> {
        LpmTrie::try_from(
            ebpf.map_mut(MAP_CLASS_V6)
                .ok_or(ClassError::MissingMap(MAP_CLASS_V6))?,
        )
        .map_err(map_err(MAP_CLASS_V6))
    }

    /// The IPv6 class entries the trie holds (prefix, value), sorted.
    pub fn read_v6(ebpf: &mut Ebpf) -> Result<Vec<(Prefix, u32)>, ClassError> {
        let trie = Self::trie_v6(ebpf)?;
        let mut entries = Vec::new();
        for item in &trie {
            let (key, value) = item.map_err(map_err(MAP_CLASS_V6))?;
            let len = u8::try_from(key.prefix_len()).unwrap_or(u8::MAX);
            if let Ok(prefix) = Prefix::new(IpAddr::from(key.data()), len) {
                entries.push((prefix, value));
            }
        }
        entries.sort_unstable();
        Ok(entries)
    }

    fn write_v6(
        &mut self,
        ebpf: &mut Ebpf,
        policy: &Policy,
        stats: &mut ClassStats,
    ) -> Result<(), ClassError> {
        let old = match self.v6.take() {
            Some(old) => old,
            None => Self::read_v6(ebpf)?,
        };
        let new = v6_entries(policy);
        let mut upserts: Vec<(Prefix, u32)> = Vec::new();
        let mut stale: Vec<Prefix> = Vec::new();
        // Both sorted by prefix: one merge.
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let order = match (old.get(i), new.get(j)) {
                (Some(o), Some(n)) => o.0.cmp(&n.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            let (before, after) = match order {
                std::cmp::Ordering::Less => {
                    stale.push(old[i].0);
                    i += 1;
                    (old[i - 1].1, 0)
                }
                std::cmp::Ordering::Greater => {
                    upserts.push(new[j]);
                    j += 1;
                    (0, new[j - 1].1)
                }
                std::cmp::Ordering::Equal => {
                    let (o, n) = (old[i].1, new[j].1);
                    if o != n {
                        upserts.push(new[j]);
                    }
                    i += 1;
                    j += 1;
                    (o, n)
                }
            };
            let (a, r) = membership_changes(before, after);
            stats.added += a;
            stats.removed += r;
        }
        upserts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        stale.sort_by_key(Prefix::len);
        let mut trie = Self::trie_v6(ebpf)?;
        for (prefix, value) in &upserts {
            trie.insert(&v6_key(prefix), value, 0)
                .map_err(map_err(MAP_CLASS_V6))?;
        }
        for prefix in &stale {
            trie.remove(&v6_key(prefix))
                .map_err(map_err(MAP_CLASS_V6))?;
        }
        self.v6 = Some(new);
        Ok(())
    }
}

fn split_header(header: u64) -> (u32, usize) {
    ((header >> 32) as u32, (header & 0xffff_ffff) as usize)
}

/// Stores the bytes of `new` that differ from the mapping, one atomic byte
/// store each; returns how many. Compares eight bytes at a time: most of
/// the table does not change.
fn store_changed(live: &Mapping, new: &[u8]) -> usize {
    let (words, bytes) = (live.words(), live.bytes());
    let mut changed = 0;
    for (i, (word, chunk)) in words.iter().zip(new.chunks_exact(8)).enumerate() {
        let want = u64::from_ne_bytes(chunk.try_into().expect("chunks of 8"));
        if word.load(Ordering::Relaxed) == want {
            continue;
        }
        for (j, &n) in chunk.iter().enumerate() {
            let byte = &bytes[i * 8 + j];
            if byte.load(Ordering::Relaxed) != n {
                byte.store(n, Ordering::Relaxed);
                changed += 1;
            }
        }
    }
    changed
}

/// (added, removed) between two sorted records; an entry whose pool
/// changed counts as added.
fn count_changes(old: &[AtomicU64], new: &[u64]) -> (usize, usize) {
    let (mut added, mut removed) = (0, 0);
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let o = old.get(i).map(|w| w.load(Ordering::Relaxed));
        let n = new.get(j).copied();
        match (o, n) {
            (Some(o), Some(n)) if o >> 8 == n >> 8 => {
                added += usize::from(o != n);
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o < n => {
                removed += 1;
                i += 1;
            }
            (Some(_), None) => {
                removed += 1;
                i += 1;
            }
            _ => {
                added += 1;
                j += 1;
            }
        }
    }
    (added, removed)
}

/// The IPv6 class trie entries of `policy`: every prefix of either list
/// with its class and its own membership, sorted.
pub fn v6_entries(policy: &Policy) -> Vec<(Prefix, u32)> {
    classify_policy(policy, false)
        .map(|c| {
            let mut value = u32::from(c.class.0);
            if let Some(pool) = c.dynamic {
                value |= V6_IN_DYNAMIC | (pool << V6_POOL_SHIFT);
            }
            if c.exempt {
                value |= V6_IN_EXEMPT;
            }
            (c.prefix, value)
        })
        .collect()
}

/// List entries added and removed when a trie value goes from `old` to `new`.
fn membership_changes(old: u32, new: u32) -> (usize, usize) {
    let dynamic = |v: u32| (v & V6_IN_DYNAMIC != 0).then_some(v >> V6_POOL_SHIFT);
    let exempt = |v: u32| v & V6_IN_EXEMPT != 0;
    let mut added = 0;
    let mut removed = 0;
    match (dynamic(old), dynamic(new)) {
        (None, Some(_)) => added += 1,
        (Some(_), None) => removed += 1,
        (Some(a), Some(b)) if a != b => added += 1,
        _ => {}
    }
    match (exempt(old), exempt(new)) {
        (false, true) => added += 1,
        (true, false) => removed += 1,
        _ => {}
    }
    (added, removed)
}

fn v6_key(prefix: &Prefix) -> Key<[u8; 16]> {
    let IpAddr::V6(addr) = prefix.addr() else {
        unreachable!("the v6 half")
    };
    Key::new(u32::from(prefix.len()), addr.octets())
}

#[derive(Clone, Copy)]
enum BatchOp {
    Update,
    Delete,
}

/// `bpf_attr.batch` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Updates or deletes many blocks with one `bpf()` call per 4,096.
fn batch(ebpf: &Ebpf, op: BatchOp, keys: &[u32], values: &[[u8; 256]]) -> Result<(), ClassError> {
    if keys.is_empty() {
        return Ok(());
    }
    let fd = map_data(ebpf, MAP_CLASS_V4_BLOCKS)?
        .fd()
        .as_fd()
        .as_raw_fd();
    let (cmd, name) = match op {
        BatchOp::Update => (BPF_MAP_UPDATE_BATCH, "BPF_MAP_UPDATE_BATCH"),
        BatchOp::Delete => (BPF_MAP_DELETE_BATCH, "BPF_MAP_DELETE_BATCH"),
    };
    for (i, chunk) in keys.chunks(4096).enumerate() {
        let values = match op {
            BatchOp::Update => values[i * 4096..].as_ptr() as u64,
            BatchOp::Delete => 0,
        };
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            values,
            count: u32::try_from(chunk.len()).expect("4,096 at most"),
            map_fd: u32::try_from(fd).expect("fds are non-negative"),
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for the batch commands;
        // keys and values point at `count` entries that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                std::ptr::addr_of_mut!(attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        if rc < 0 {
            return Err(ClassError::Batch {
                op: name,
                name: MAP_CLASS_V4_BLOCKS,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Read-only views of the class maps, for tests and diagnostics.
impl super::Dataplane {
    /// The class the kernel's IPv4 table gives `addr` now.
    pub fn kernel_class_v4(&self, addr: std::net::Ipv4Addr) -> Result<SourceClass, ClassError> {
        self.classes.lookup_v4(&self.ebpf, addr.octets())
    }

    /// Second-level blocks in the kernel's hash (referenced or retiring).
    pub fn kernel_class_v4_blocks(&self) -> Result<usize, ClassError> {
        let map = self
            .ebpf
            .map(MAP_CLASS_V4_BLOCKS)
            .ok_or(ClassError::MissingMap(MAP_CLASS_V4_BLOCKS))?;
        let blocks: HashMap<&MapData, u32, [u8; 256]> =
            HashMap::try_from(map).map_err(map_err(MAP_CLASS_V4_BLOCKS))?;
        Ok(blocks.keys().count())
    }
}
