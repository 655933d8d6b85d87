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
    net::IpAddr,
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
        record_entry, CLASS_V4_BLOCK_CAPACITY, LISTS_V4_CAPACITY, MAP_CLASS_V4,
        MAP_CLASS_V4_BLOCKS, MAP_LISTS_V4, RECORD_DYNAMIC, RECORD_EXEMPT,
    },
    SourceClass,
};

pub use super::class_record::pinned_list_counts;
pub use super::class_v6::v6_entries;
use super::{
    class_batch::{batch, BatchOp},
    ipv4_class::{classify_policy, ClassTable, FIRST_LEVEL_ENTRIES},
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

impl ClassError {
    /// Whether the apply that failed had written to the maps: the checks
    /// that refuse a policy run before the first write.
    pub fn wrote_something(&self) -> bool {
        !matches!(self, Self::RecordFull { .. } | Self::TooManyBlocks { .. })
    }
}

pub(super) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> ClassError {
    move |source| ClassError::Map { name, source }
}

/// What this process knows the class maps hold, and their mappings.
pub struct ClassMaps {
    pub(super) first: Mapping,
    pub(super) record: Mapping,
    /// The blocks in the hash, once known (read from the kernel on the
    /// first apply after adopting pinned maps).
    pub(super) blocks: Option<Vec<(u32, [u8; 256])>>,
    /// Blocks no first-level entry points at any more, and since when.
    pub(super) orphans: std::collections::HashMap<u32, Instant>,
    /// The IPv6 class entries, once known, sorted.
    pub(super) v6: Option<Vec<(Prefix, u32)>>,
    /// The last table built, kept so the next build reuses its 16 MiB.
    pub(super) scratch: Option<ClassTable>,
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
