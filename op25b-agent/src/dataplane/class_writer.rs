//! Puts the source classes of `ipv4_class` into the kernel:
//!
//! - the IPv4 first level is written through `mmap` with one byte store per
//!   changed entry, so a packet reads either the old or the new class;
//! - second-level blocks are hash values replaced whole (the kernel swaps
//!   the element under RCU). A /24 that gains a block gets it before its
//!   first-level byte points there; one that loses it gets its direct byte
//!   and keeps its old block untouched (a packet that read the old byte
//!   reads the old block: its old class), until a later apply deletes the
//!   block, [`ORPHAN_GRACE`] after, when no packet can still be between the
//!   two reads;
//! - IPv6 classes are LPM-trie entries: new and changed entries go in
//!   longest first, stale ones go out shortest first, so every address's
//!   longest match holds either its old or its new class throughout;
//! - the IPv4 lists themselves are recorded (for status, explain and a
//!   restarted agent) in an mmap'd array under a sequence lock.

use std::{
    os::fd::AsFd as _,
    sync::atomic::{fence, Ordering},
    time::{Duration, Instant},
};

use aya::{
    maps::{HashMap, Map, MapData, MapError},
    Ebpf,
};
use op25b_common::{
    abi::{
        CLASS_V4_BLOCK_CAPACITY, LISTS_V4_CAPACITY, MAP_CLASS_V4, MAP_CLASS_V4_BLOCKS, MAP_LISTS_V4,
    },
    SourceClass,
};

pub use super::class_record::pinned_list_counts;
use super::class_record::{build_record, AppliedLists, RecordLists};
pub use super::class_v6::v6_entries;
use super::{
    class_batch::{batch, BatchOp},
    class_regions::{repaint, repaint_regions, Mirror, Repainted, EVERY_SLASH24},
    ipv4_class::{classify_policy, FIRST_LEVEL_ENTRIES},
    mmap::Mapping,
};
use crate::policy::{prefix::Prefix, Policy};

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

pub(super) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> ClassError {
    move |source| ClassError::Map { name, source }
}

/// What this process knows the class maps hold, and their mappings.
pub struct ClassMaps {
    pub(super) first: Mapping,
    pub(super) record: Mapping,
    /// The IPv4 table the kernel holds (without retiring blocks), once
    /// known: read from the kernel on the first apply after adopting
    /// pinned maps, then kept in step.
    pub(super) mirror: Option<Mirror>,
    /// Blocks no first-level entry points at any more, and since when.
    pub(super) orphans: std::collections::HashMap<u32, Instant>,
    /// The IPv6 class entries, once known, sorted.
    pub(super) v6: Option<Vec<(Prefix, u32)>>,
    /// The record's entries as last written, once known (saves reading
    /// 16 MiB back on each reload).
    pub(super) recorded: Option<RecordLists>,
    /// The lists `recorded` (and the IPv6 entries) were built from, when
    /// this process wrote them.
    pub(super) applied: Option<AppliedLists>,
}

/// What an apply overwrote, so that [`ClassMaps::undo`] can put it back.
#[derive(Debug, Default)]
pub struct ClassUndo {
    pub(super) repainted: Repainted,
    pub(super) record: Option<RecordLists>,
    pub(super) v6: Option<Vec<(Prefix, u32)>>,
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
    pub steps: ClassSteps,
}

/// Where an apply's time went, step by step (the bench reports it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassSteps {
    /// The new record: changed lists walked and compared with the kept
    /// record on the way, unchanged ones shared.
    pub record: Duration,
    pub repaint: Duration,
    /// Orphans deleted, blocks written, first-level bytes stored.
    pub kernel: Duration,
    pub record_write: Duration,
    pub ipv6: Duration,
}

/// The time since `since`, restarting it.
fn lap(since: &mut Instant) -> Duration {
    let now = Instant::now();
    let elapsed = now - *since;
    *since = now;
    elapsed
}

pub(super) fn map_data<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a MapData, ClassError> {
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
            mirror: None,
            orphans: std::collections::HashMap::new(),
            v6: None,
            recorded: None,
            applied: None,
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
    /// exempt lists, noting in `undo` what it overwrote (also when it fails
    /// half-way). Only the /24s inside changed prefixes are recomputed.
    pub fn apply(
        &mut self,
        ebpf: &mut Ebpf,
        policy: &Policy,
        undo: &mut ClassUndo,
    ) -> Result<ClassStats, ClassError> {
        let mut stats = ClassStats::default();
        let mut since = Instant::now();
        // Everything that can refuse the policy is checked before the
        // first write: all or nothing.
        if self.recorded.is_none() {
            // Read from the map: which lists wrote it is not known.
            self.applied = None;
        }
        let old_lists = self
            .recorded
            .take()
            .unwrap_or_else(|| RecordLists::from_entries(self.recorded_entries()));
        let last = self.applied.take();
        let record = build_record(policy, &old_lists, last.as_ref());
        stats.steps.record = lap(&mut since);
        let capacity = LISTS_V4_CAPACITY as usize - 1;
        if record.lists.len() > capacity {
            // Nothing written: the maps still hold what `last` describes.
            self.recorded = Some(old_lists);
            self.applied = last;
            return Err(ClassError::RecordFull {
                count: record.lists.len(),
                capacity,
            });
        }
        let lists = record.lists.lists();
        let change = &record.change;
        let counts = Some((change.added, change.removed));
        let (mut mirror, repainted) = if let Some(mut mirror) = self.mirror.take() {
            // Few regions: only the entries deciding them are looked at
            // (searches); many: one walk over the lists is cheaper.
            let repainted = if change.regions.len() <= record.lists.len() / 16 {
                repaint_regions(&mut mirror, lists, record.lengths, &change.regions)
            } else {
                repaint(&mut mirror, classify_policy(policy, true), &change.regions)
            };
            (mirror, repainted)
        } else {
            let mut mirror = self.mirror_from_kernel(ebpf)?;
            let classified = classify_policy(policy, true);
            let repainted = repaint(&mut mirror, classified, &[EVERY_SLASH24]);
            (mirror, repainted)
        };
        if mirror.blocks.len() > CLASS_V4_BLOCK_CAPACITY as usize {
            let count = mirror.blocks.len();
            mirror.restore(&repainted);
            self.mirror = Some(mirror);
            self.recorded = Some(old_lists);
            self.applied = last;
            return Err(ClassError::TooManyBlocks {
                count,
                capacity: CLASS_V4_BLOCK_CAPACITY as usize,
            });
        }
        stats.steps.repaint = lap(&mut since);
        self.mirror = Some(mirror);
        undo.repainted = repainted;
        self.delete_old_orphans(ebpf, &mut stats)?;
        self.write_v4(ebpf, &undo.repainted, &mut stats)?;
        stats.steps.kernel = lap(&mut since);
        undo.record = Some(old_lists);
        self.write_record(&record.lists, counts, record.in_place, &mut stats);
        stats.steps.record_write = lap(&mut since);
        // IPv6 lists written from these very lists before: the trie holds them.
        if !(self.v6.is_some() && last.is_some_and(|l| l.same_v6(policy))) {
            self.write_v6(ebpf, v6_entries(policy), &mut undo.v6, &mut stats)?;
        }
        stats.steps.ipv6 = lap(&mut since);
        self.recorded = Some(record.lists);
        self.applied = Some(record.applied);
        Ok(stats)
    }

    fn blocks_map(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, u32, [u8; 256]>, ClassError> {
        HashMap::try_from(
            ebpf.map_mut(MAP_CLASS_V4_BLOCKS)
                .ok_or(ClassError::MissingMap(MAP_CLASS_V4_BLOCKS))?,
        )
        .map_err(map_err(MAP_CLASS_V4_BLOCKS))
    }

    /// The table the kernel holds: the live first level and the blocks it
    /// points at. Blocks it does not point at were orphaned by an earlier
    /// agent: their grace starts now.
    fn mirror_from_kernel(&mut self, ebpf: &mut Ebpf) -> Result<Mirror, ClassError> {
        let mut mirror = Mirror::empty();
        for (byte, live) in mirror.first.iter_mut().zip(self.first.bytes()) {
            *byte = live.load(Ordering::Relaxed);
        }
        let map = Self::blocks_map(ebpf)?;
        let now = Instant::now();
        for item in &map {
            let (n, block) = item.map_err(map_err(MAP_CLASS_V4_BLOCKS))?;
            if mirror.first[n as usize] & SourceClass::INDIRECT == 0 {
                self.orphans.entry(n).or_insert(now);
            } else {
                mirror.blocks.insert(n, block);
            }
        }
        Ok(mirror)
    }

    fn delete_old_orphans(
        &mut self,
        ebpf: &mut Ebpf,
        stats: &mut ClassStats,
    ) -> Result<(), ClassError> {
        let first = self.first.bytes();
        // (Blocks referenced again left the list when that was written.)
        let due: Vec<u32> = self
            .orphans
            .iter()
            .filter(|(_, since)| since.elapsed() >= ORPHAN_GRACE)
            .map(|(&n, _)| n)
            .filter(|&n| first[n as usize].load(Ordering::Relaxed) & SourceClass::INDIRECT == 0)
            .collect();
        batch(ebpf, BatchOp::Delete, &due, &[])?;
        for n in &due {
            self.orphans.remove(n);
        }
        stats.blocks_deleted += due.len();
        Ok(())
    }

    /// Writes the repainted regions: blocks first, then the first level.
    fn write_v4(
        &mut self,
        ebpf: &mut Ebpf,
        repainted: &Repainted,
        stats: &mut ClassStats,
    ) -> Result<(), ClassError> {
        let mirror = self.mirror.as_ref().expect("set by apply");
        // 1. Blocks in before anything points at them. A block losing its
        //    /24's pointer is left as it is: only a packet that read the old
        //    pointer reads it, and its old class is allowed (rewriting it
        //    was more than half the block writes of a pool change).
        let keys: Vec<u32> = repainted.written().collect();
        let values: Vec<[u8; 256]> = keys.iter().map(|n| mirror.blocks[n]).collect();
        batch(ebpf, BatchOp::Update, &keys, &values)?;
        stats.blocks_written += keys.len();
        // 2. The first level, one byte store per changed entry.
        fence(Ordering::SeqCst);
        for (start, old) in repainted.old_regions() {
            let range = start..start + old.len();
            stats.first_level_writes += store_changed(&self.first, start, &mirror.first[range]);
        }
        fence(Ordering::SeqCst);
        // A block referenced again is no orphan; a block orphaned again
        // starts its grace anew.
        for n in &keys {
            self.orphans.remove(n);
        }
        let now = Instant::now();
        for &n in &repainted.lost {
            self.orphans.entry(n).or_insert(now);
        }
        Ok(())
    }

    /// The record's entries as this process last wrote them.
    fn recorded_entries(&self) -> Vec<u64> {
        let words = self.record.words();
        let count = (words[0].load(Ordering::Acquire) & 0xffff_ffff) as usize;
        words[1..=count.min(words.len() - 1)]
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }
}

/// The record of `policy`'s IPv4 lists, built afresh (for tests): its
/// entries and the lengths its lists hold.
#[cfg(test)]
pub(super) fn record_entries(policy: &Policy) -> (Vec<u64>, super::class_regions::ListLengths) {
    let record = build_record(policy, &RecordLists::default(), None);
    (record.lists.entries().collect(), record.lengths)
}

/// Stores the bytes of `new` that differ from the mapping at `start`, one
/// atomic byte store each; returns how many. Compares eight bytes at a time
/// where aligned: most of a region does not change.
pub(super) fn store_changed(live: &Mapping, start: usize, new: &[u8]) -> usize {
    let (words, bytes) = (live.words(), live.bytes());
    let mut changed = 0;
    for (i, chunk) in new.chunks(8).enumerate() {
        let at = start + i * 8;
        if chunk.len() == 8 && at.is_multiple_of(8) {
            let want = u64::from_ne_bytes(chunk.try_into().expect("chunks of 8"));
            if words[at / 8].load(Ordering::Relaxed) == want {
                continue;
            }
        }
        for (j, &n) in chunk.iter().enumerate() {
            let byte = &bytes[at + j];
            if byte.load(Ordering::Relaxed) != n {
                byte.store(n, Ordering::Relaxed);
                changed += 1;
            }
        }
    }
    changed
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
