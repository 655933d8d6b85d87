//! Incremental repainting of the IPv4 class table: a change to the lists
//! can only change the class of addresses inside the prefixes that were
//! added, removed or changed pool, so only those regions (widened to whole
//! /24s) are recomputed, from the prefixes covering them and the prefixes
//! inside them, shortest first. A first load is the region 0.0.0.0/0.
//!
//! Pure: no kernel. `class_writer` writes what changed.

use std::{
    collections::{hash_map::Entry, HashMap},
    net::IpAddr,
    ops::Range,
};

use op25b_common::{abi::record_fields, SourceClass};

use super::{
    class_deciding::{deciding_entries, entry_prefix},
    ipv4_class::{classify, Classified, FIRST_LEVEL_ENTRIES},
};
use crate::policy::prefix::Prefix;

/// The IPv4 class table as this process keeps it: the first level and the
/// blocks of every /24 marked [`SourceClass::INDIRECT`] (exactly those;
/// a region's blocks are found from its first-level bytes, so no order is
/// needed and a hash map is the cheapest keeper). Hashed with foldhash,
/// randomly seeded: a reload looks up thousands of blocks by `u32` key,
/// for which SipHash does more than it needs to.
#[derive(Clone, PartialEq, Eq)]
pub struct Mirror {
    pub first: Vec<u8>,
    pub blocks: HashMap<u32, [u8; 256], foldhash::fast::RandomState>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// The region of a first load: every /24.
pub const EVERY_SLASH24: Range<u32> = 0..1 << 24;

/// What a repaint changed: enough to write it to the kernel and to undo
/// it. Blocks are updated in place in the mirror; only those that changed
/// are noted (most blocks of a region keep their classes).
#[derive(Clone, Debug, Default)]
pub struct Repainted {
    /// The repainted /24 ranges, sorted.
    pub regions: Vec<Range<u32>>,
    /// Their first-level bytes before, one region after the other.
    pub old_first: Vec<u8>,
    /// The blocks that changed or went, as they were.
    pub old_blocks: Vec<(u32, [u8; 256])>,
    /// /24s whose block changed.
    pub changed: Vec<u32>,
    /// /24s that gained a block, and their first-level byte before.
    pub gained: Vec<(u32, u8)>,
    /// /24s that lost their block (the first level no longer points at it).
    pub lost: Vec<u32>,
}

impl Repainted {
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Each region's first /24 and its first-level bytes before.
    pub fn old_regions(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        let mut at = 0;
        self.regions.iter().map(move |r| {
            let len = (r.end - r.start) as usize;
            at += len;
            (r.start as usize, &self.old_first[at - len..at])
        })
    }

    /// The /24s whose block the kernel needs anew: changed or gained.
    pub fn written(&self) -> impl Iterator<Item = u32> + '_ {
        let gained = self.gained.iter().map(|&(n, _)| n);
        self.changed.iter().copied().chain(gained)
    }
}

/// The /24 range of a prefix (a prefix longer than /24 widens to its /24).
fn slash24_range(addr: u32, len: u8) -> Range<u32> {
    let start = if len == 0 {
        0
    } else {
        (addr >> 8) & !((1u32 << (24 - len.min(24))) - 1)
    };
    start..start + (1u32 << (24 - len.min(24)))
}

/// What changed between two sorted records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordChange {
    /// The /24 regions whose classes can differ: aligned, disjoint, sorted.
    pub regions: Vec<Range<u32>>,
    /// Entries new or with a new pool.
    pub added: usize,
    pub removed: usize,
}

/// Compares two sorted record entry lists.
pub fn dirty_regions(old: &[u64], new: &[u64]) -> RecordChange {
    let mut changes = Changes::default();
    let mut comparer = Comparer::new(old, &mut changes);
    for &entry in new {
        comparer.feed(entry);
    }
    comparer.finish();
    changes.into_record_change()
}

/// What differs between old and new record entries, as found so far.
#[derive(Debug, Default)]
pub struct Changes {
    /// The prefix (address, length up to /24) of each entry that differs.
    prefixes: Vec<(u32, u8)>,
    /// Entries new or with a new pool.
    added: usize,
    removed: usize,
}

impl Changes {
    pub fn into_record_change(self) -> RecordChange {
        RecordChange {
            regions: regions_of(self.prefixes),
            added: self.added,
            removed: self.removed,
        }
    }

    fn push(&mut self, entry: u64) {
        let (_, addr, len, _) = record_fields(entry);
        self.prefixes.push((addr, len.min(24)));
    }
}

/// Compares a list's new record entries, fed in order as they are built,
/// with its old ones: the walk that builds a list compares it on the way,
/// without reading the new entries again.
pub struct Comparer<'a> {
    old: &'a [u64],
    at: usize,
    changes: &'a mut Changes,
}

impl<'a> Comparer<'a> {
    pub fn new(old: &'a [u64], changes: &'a mut Changes) -> Self {
        Self {
            old,
            at: 0,
            changes,
        }
    }

    /// Takes the next new entry (entries come sorted).
    #[inline]
    pub fn feed(&mut self, entry: u64) {
        // Most entries are the old ones again: one load and compare.
        if self.old.get(self.at) == Some(&entry) {
            self.at += 1;
        } else {
            self.differs(entry);
        }
    }

    #[cold]
    #[inline(never)]
    fn differs(&mut self, entry: u64) {
        // Old entries of other prefixes before it are gone.
        while let Some(&old) = self.old.get(self.at) {
            if old >= entry || old >> 8 == entry >> 8 {
                break;
            }
            self.changes.push(old);
            self.changes.removed += 1;
            self.at += 1;
        }
        match self.old.get(self.at) {
            Some(&old) if old == entry => self.at += 1,
            Some(&old) if old >> 8 == entry >> 8 => {
                // The same prefix with another pool.
                self.changes.push(entry);
                self.changes.added += 1;
                self.at += 1;
            }
            _ => {
                self.changes.push(entry);
                self.changes.added += 1;
            }
        }
    }

    /// The old entries after the last new one are gone.
    pub fn finish(self) {
        for &old in &self.old[self.at..] {
            self.changes.push(old);
            self.changes.removed += 1;
        }
    }
}

/// The /24 regions of changed prefixes: aligned, disjoint, sorted.
fn regions_of(changed: Vec<(u32, u8)>) -> Vec<Range<u32>> {
    // Aligned ranges either nest or are disjoint: sorted by start and then
    // widest first, each range not inside the last kept one is new.
    let mut ranges: Vec<Range<u32>> = changed
        .into_iter()
        .map(|(addr, len)| slash24_range(addr & mask(len), len))
        .collect();
    ranges.sort_unstable_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    ranges.dedup_by(|next, kept| next.end <= kept.end && next.start >= kept.start);
    ranges
}

pub(super) const fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

/// Does the /24 range `outer` contain the prefix (`addr`, `len`)?
fn holds(outer: &Range<u32>, addr: u32, len: u8) -> bool {
    let r = slash24_range(addr, len);
    outer.start <= r.start && r.end <= outer.end
}

/// Does the listed prefix (`addr`, `len`) contain the prefix (`other`, `other_len`)?
const fn contains(addr: u32, len: u8, other: u32, other_len: u8) -> bool {
    len <= other_len && other & mask(len) == addr
}

/// An enclosing listed prefix: address, length, effective class.
type Enclosing = (u32, u8, u8);

/// Which prefix lengths each IPv4 list holds (bit `len`): (dynamic, exempt).
pub type ListLengths = [u64; 2];

/// Repaints `regions` of `mirror` from only the entries of the new record
/// (`lists`: dynamic, exempt; sorted) that decide them: per region, the
/// listed prefixes covering it and those inside it, classified in one walk.
pub fn repaint_regions(
    mirror: &mut Mirror,
    lists: [&[u64]; 2],
    lengths: ListLengths,
    regions: &[Range<u32>],
) -> Repainted {
    let (dynamic, exempt) = deciding_entries(lists, lengths, regions);
    let dynamic: Vec<(Prefix, u32)> = dynamic.into_iter().map(entry_prefix).collect();
    let exempt: Vec<Prefix> = exempt.into_iter().map(|e| entry_prefix(e).0).collect();
    let classified = classify(dynamic.iter().map(|(p, pool)| (p, *pool)), exempt.iter());
    repaint(mirror, classified, regions)
}

/// A block being filled: its /24 and classes.
struct OpenBlock {
    n: u32,
    classes: [u8; 256],
}

/// Repaints `regions` of `mirror` from the classified IPv4 lists (all of
/// them, in pre-order); returns what changed.
pub fn repaint(
    mirror: &mut Mirror,
    classified: impl Iterator<Item = Classified>,
    regions: &[Range<u32>],
) -> Repainted {
    let mut painter = Painter {
        mirror,
        regions,
        next: 0,
        region_at: 0,
        stack: Vec::with_capacity(32),
        open: None,
        out: Repainted {
            regions: Vec::with_capacity(regions.len()),
            ..Repainted::default()
        },
    };
    for item in classified {
        let IpAddr::V4(addr) = item.prefix.addr() else {
            continue;
        };
        let (addr, len) = (u32::from(addr), item.prefix.len());
        // Regions wholly before this item are done.
        painter.finish_before(addr >> 8);
        let next = painter.next;
        if next < regions.len() && holds(&regions[next], addr, len) {
            painter.start();
            if item.class != item.parent_class {
                painter.paint(addr, len, item.class.0);
            }
        }
        painter.enter(addr, len, item.class.0);
    }
    painter.finish_before(u32::MAX);
    painter.out
}

/// One repaint's walk: the region being painted is `regions[next]`.
struct Painter<'a> {
    mirror: &'a mut Mirror,
    regions: &'a [Range<u32>],
    next: usize,
    /// Where the region being painted starts in `out.old_first`.
    region_at: usize,
    /// The listed prefixes enclosing the last item.
    stack: Vec<Enclosing>,
    open: Option<OpenBlock>,
    out: Repainted,
}

impl Painter<'_> {
    /// Finishes the regions from `next` on that end at or before /24 `bound`.
    fn finish_before(&mut self, bound: u32) {
        while self.next < self.regions.len() && self.regions[self.next].end <= bound {
            self.finish();
            self.next += 1;
        }
    }

    /// Makes the listed prefix (`addr`, `len`) the innermost enclosing one.
    fn enter(&mut self, addr: u32, len: u8, class: u8) {
        while let Some(&(a, l, _)) = self.stack.last() {
            if contains(a, l, addr, len) {
                break;
            }
            self.stack.pop();
        }
        self.stack.push((addr, len, class));
    }

    /// Opens region `next` once: saves its first level, fills it with the
    /// class of the innermost listed prefix covering it.
    fn start(&mut self) {
        if self.out.regions.len() > self.next {
            return;
        }
        let region = &self.regions[self.next];
        // Only prefixes of /24 or shorter can cover a region of whole /24s.
        while let Some(&(a, l, _)) = self.stack.last() {
            let covers = slash24_range(a, l);
            if l <= 24 && covers.start <= region.start && region.end <= covers.end {
                break;
            }
            self.stack.pop();
        }
        let base = self.stack.last().map_or(SourceClass::NEITHER.0, |s| s.2);
        let slice = &mut self.mirror.first[region.start as usize..region.end as usize];
        self.region_at = self.out.old_first.len();
        self.out.old_first.extend_from_slice(slice);
        slice.fill(base);
        self.out.regions.push(region.clone());
    }

    /// Closes region `next`: its last block, and the blocks of its /24s
    /// that are direct now.
    fn finish(&mut self) {
        self.start();
        self.close();
        let start = self.regions[self.next].start as usize;
        let old = &self.out.old_first[self.region_at..];
        for (i, chunk) in old.chunks(8).enumerate() {
            // Most of a region never had blocks: eight bytes at a time.
            if chunk.iter().fold(0, |any, &b| any | b) & SourceClass::INDIRECT == 0 {
                continue;
            }
            for (j, &was) in chunk.iter().enumerate() {
                let n = start + i * 8 + j;
                if was & SourceClass::INDIRECT != 0
                    && self.mirror.first[n] & SourceClass::INDIRECT == 0
                {
                    #[expect(clippy::cast_possible_truncation, reason = "a /24 index")]
                    let n = n as u32;
                    if let Some(block) = self.mirror.blocks.remove(&n) {
                        self.out.old_blocks.push((n, block));
                        self.out.lost.push(n);
                    }
                }
            }
        }
    }

    fn paint(&mut self, addr: u32, len: u8, class: u8) {
        let n = addr >> 8;
        if len <= 24 {
            self.close();
            let r = slash24_range(addr, len);
            self.mirror.first[r.start as usize..r.end as usize].fill(class);
            return;
        }
        if self.open.as_ref().is_none_or(|b| b.n != n) {
            self.close();
            self.open = Some(OpenBlock {
                n,
                classes: [self.mirror.first[n as usize]; 256],
            });
        }
        let block = self.open.as_mut().expect("opened above");
        let start = (addr & 0xff) as usize;
        block.classes[start..start + (1usize << (32 - len))].fill(class);
    }

    /// Files the open block: a /24 whose classes all agree needs none; a
    /// block already there is updated in place.
    fn close(&mut self) {
        let Some(OpenBlock { n, classes }) = self.open.take() else {
            return;
        };
        let first = &mut self.mirror.first[n as usize];
        if classes.iter().all(|&c| c == classes[0]) {
            *first = classes[0];
            return;
        }
        *first |= SourceClass::INDIRECT;
        match self.mirror.blocks.entry(n) {
            Entry::Occupied(mut kept) => {
                if *kept.get() != classes {
                    self.out.old_blocks.push((n, *kept.get()));
                    *kept.get_mut() = classes;
                    self.out.changed.push(n);
                }
            }
            Entry::Vacant(free) => {
                free.insert(classes);
                let offset = (n - self.regions[self.next].start) as usize;
                let was = self.out.old_first[self.region_at + offset];
                self.out.gained.push((n, was));
            }
        }
    }
}

impl Mirror {
    pub fn empty() -> Self {
        Self {
            first: vec![0; FIRST_LEVEL_ENTRIES],
            blocks: HashMap::default(),
        }
    }

    /// Puts back what `repainted` saved (the reverse of [`repaint`]).
    pub fn restore(&mut self, repainted: &Repainted) {
        for (start, old) in repainted.old_regions() {
            self.first[start..start + old.len()].copy_from_slice(old);
        }
        for (n, _) in &repainted.gained {
            self.blocks.remove(n);
        }
        self.blocks.extend(repainted.old_blocks.iter().copied());
    }

    /// The class of `addr`, read as the program reads it.
    pub fn lookup(&self, addr: [u8; 4]) -> SourceClass {
        let n = op25b_common::abi::slash24(addr);
        let first = self.first[n as usize];
        if first & SourceClass::INDIRECT == 0 {
            return SourceClass(first);
        }
        self.blocks
            .get(&n)
            .map_or(SourceClass(first & !SourceClass::INDIRECT), |b| {
                SourceClass(b[usize::from(addr[3])])
            })
    }
}

#[cfg(test)]
#[path = "class_regions_tests.rs"]
mod tests;
