//! Incremental repainting of the IPv4 class table: a change to the lists
//! can only change the class of addresses inside the prefixes that were
//! added, removed or changed pool, so only those regions (widened to whole
//! /24s) are recomputed, from the prefixes covering them and the prefixes
//! inside them, shortest first. A first load is the region 0.0.0.0/0.
//!
//! Pure: no kernel. `class_writer` writes what changed.

use std::{collections::HashMap, net::IpAddr, ops::Range};

use op25b_common::{abi::record_fields, SourceClass};

use super::{
    class_deciding::{deciding_entries, entry_prefix},
    ipv4_class::{classify, Classified, FIRST_LEVEL_ENTRIES},
};
use crate::policy::prefix::Prefix;

/// The IPv4 class table as this process keeps it: the first level and the
/// blocks of every /24 marked [`SourceClass::INDIRECT`] (exactly those;
/// a region's blocks are found from its first-level bytes, so no order is
/// needed and a hash map is the cheapest keeper).
#[derive(Clone, PartialEq, Eq)]
pub struct Mirror {
    pub first: Vec<u8>,
    pub blocks: HashMap<u32, [u8; 256]>,
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

/// One repainted region: its /24s, and what it held before.
#[derive(Clone, Debug)]
pub struct Repainted {
    pub range: Range<u32>,
    pub old_first: Vec<u8>,
    pub old_blocks: Vec<(u32, [u8; 256])>,
    /// The region's blocks now, sorted.
    pub new_blocks: Vec<(u32, [u8; 256])>,
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
    let mut changed: Vec<(u32, u8)> = Vec::new();
    let (mut added, mut removed) = (0, 0);
    let mut push = |entry: u64| {
        let (_, addr, len, _) = record_fields(entry);
        changed.push((addr, len.min(24)));
    };
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        // Most of a reload is long equal runs: eight entries at a time.
        while old.len() - i >= 8 && new.len() - j >= 8 && same8(&old[i..i + 8], &new[j..j + 8]) {
            i += 8;
            j += 8;
        }
        match (old.get(i), new.get(j)) {
            (Some(&o), Some(&n)) if o == n => {
                i += 1;
                j += 1;
            }
            (Some(&o), Some(&n)) if o >> 8 == n >> 8 => {
                push(n);
                added += 1;
                i += 1;
                j += 1;
            }
            (Some(&o), Some(&n)) if o < n => {
                push(o);
                removed += 1;
                i += 1;
            }
            (Some(&o), None) => {
                push(o);
                removed += 1;
                i += 1;
            }
            (_, Some(&n)) => {
                push(n);
                added += 1;
                j += 1;
            }
            (None, None) => break, // the runs ended both lists
        }
    }
    // Aligned ranges either nest or are disjoint: sorted by start and then
    // widest first, each range not inside the last kept one is new.
    let mut ranges: Vec<Range<u32>> = changed
        .into_iter()
        .map(|(addr, len)| slash24_range(addr & mask(len), len))
        .collect();
    ranges.sort_unstable_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    ranges.dedup_by(|next, kept| next.end <= kept.end && next.start >= kept.start);
    RecordChange {
        regions: ranges,
        added,
        removed,
    }
}

/// Eight entries equal? (Compared inline: slice `==` calls `memcmp`.)
fn same8(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
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
/// (`entries`, sorted) that decide them: per region, the listed prefixes
/// covering it and those inside it, classified in one walk.
pub fn repaint_regions(
    mirror: &mut Mirror,
    entries: &[u64],
    lengths: ListLengths,
    regions: &[Range<u32>],
) -> Vec<Repainted> {
    let (dynamic, exempt) = deciding_entries(entries, lengths, regions);
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
/// them, in pre-order); returns each region's old and new state.
pub fn repaint(
    mirror: &mut Mirror,
    classified: impl Iterator<Item = Classified>,
    regions: &[Range<u32>],
) -> Vec<Repainted> {
    let mut out: Vec<Repainted> = Vec::with_capacity(regions.len());
    // The listed prefixes enclosing the last item.
    let mut stack: Vec<Enclosing> = Vec::with_capacity(32);
    let mut open: Option<OpenBlock> = None;
    let mut next = 0;
    for item in classified {
        let IpAddr::V4(addr) = item.prefix.addr() else {
            continue;
        };
        let (addr, len) = (u32::from(addr), item.prefix.len());
        let n = addr >> 8;
        // Regions wholly before this item are done.
        finish_before(
            mirror, &mut out, &mut open, &mut stack, regions, &mut next, n,
        );
        let inside = next < regions.len() && holds(&regions[next], addr, len);
        if inside {
            start(mirror, &mut out, &mut stack, &regions[next], next);
            if item.class != item.parent_class {
                let last = next_out(&out);
                paint_one(mirror, &mut out[last], &mut open, addr, len, item.class.0);
            }
        }
        while let Some(&(a, l, _)) = stack.last() {
            if contains(a, l, addr, len) {
                break;
            }
            stack.pop();
        }
        stack.push((addr, len, item.class.0));
    }
    finish_before(
        mirror,
        &mut out,
        &mut open,
        &mut stack,
        regions,
        &mut next,
        u32::MAX,
    );
    out
}

/// Finishes the regions from `next` on that end at or before /24 `bound`.
fn finish_before(
    mirror: &mut Mirror,
    out: &mut Vec<Repainted>,
    open: &mut Option<OpenBlock>,
    stack: &mut Vec<Enclosing>,
    regions: &[Range<u32>],
    next: &mut usize,
    bound: u32,
) {
    while *next < regions.len() && regions[*next].end <= bound {
        finish(mirror, out, open, stack, &regions[*next], *next);
        *next += 1;
    }
}

const fn next_out(out: &[Repainted]) -> usize {
    out.len() - 1
}

/// Opens region `index` once: saves what it held, fills it with the class
/// of the innermost listed prefix covering it.
fn start(
    mirror: &mut Mirror,
    out: &mut Vec<Repainted>,
    stack: &mut Vec<Enclosing>,
    region: &Range<u32>,
    index: usize,
) {
    if out.len() > index {
        return;
    }
    // Only prefixes of /24 or shorter can cover a region of whole /24s.
    while let Some(&(a, l, _)) = stack.last() {
        let covers = slash24_range(a, l);
        if l <= 24 && covers.start <= region.start && region.end <= covers.end {
            break;
        }
        stack.pop();
    }
    let base = stack.last().map_or(SourceClass::NEITHER.0, |s| s.2);
    let slice = &mut mirror.first[region.start as usize..region.end as usize];
    let old_first = slice.to_vec();
    slice.fill(base);
    // The region's blocks are those its old first level points at, in order.
    let old_blocks = (region.start..)
        .zip(&old_first)
        .filter(|&(_, &first)| first & SourceClass::INDIRECT != 0)
        .filter_map(|(n, _)| mirror.blocks.remove(&n).map(|b| (n, b)))
        .collect();
    out.push(Repainted {
        range: region.clone(),
        old_first,
        old_blocks,
        new_blocks: Vec::new(),
    });
}

fn finish(
    mirror: &mut Mirror,
    out: &mut Vec<Repainted>,
    open: &mut Option<OpenBlock>,
    stack: &mut Vec<Enclosing>,
    region: &Range<u32>,
    index: usize,
) {
    start(mirror, out, stack, region, index);
    let last = next_out(out);
    close(mirror, &mut out[last], open.take().as_ref());
}

fn paint_one(
    mirror: &mut Mirror,
    region: &mut Repainted,
    open: &mut Option<OpenBlock>,
    addr: u32,
    len: u8,
    class: u8,
) {
    let n = addr >> 8;
    if len <= 24 {
        close(mirror, region, open.take().as_ref());
        let r = slash24_range(addr, len);
        mirror.first[r.start as usize..r.end as usize].fill(class);
        return;
    }
    if open.as_ref().is_none_or(|b| b.n != n) {
        close(mirror, region, open.take().as_ref());
        *open = Some(OpenBlock {
            n,
            classes: [mirror.first[n as usize]; 256],
        });
    }
    let block = open.as_mut().expect("opened above");
    let start = (addr & 0xff) as usize;
    block.classes[start..start + (1usize << (32 - len))].fill(class);
}

/// Files a finished block: a /24 whose classes all agree needs none.
fn close(mirror: &mut Mirror, region: &mut Repainted, block: Option<&OpenBlock>) {
    let Some(&OpenBlock { n, classes }) = block else {
        return;
    };
    let first = &mut mirror.first[n as usize];
    if classes.iter().all(|&c| c == classes[0]) {
        *first = classes[0];
    } else {
        *first |= SourceClass::INDIRECT;
        mirror.blocks.insert(n, classes);
        region.new_blocks.push((n, classes));
    }
}

impl Mirror {
    pub fn empty() -> Self {
        Self {
            first: vec![0; FIRST_LEVEL_ENTRIES],
            blocks: HashMap::new(),
        }
    }

    /// Puts back what `repainted` saved (the reverse of [`repaint`]).
    pub fn restore(&mut self, repainted: &[Repainted]) {
        for r in repainted.iter().rev() {
            self.first[r.range.start as usize..r.range.end as usize].copy_from_slice(&r.old_first);
            for (n, _) in &r.new_blocks {
                self.blocks.remove(n);
            }
            self.blocks.extend(r.old_blocks.iter().copied());
        }
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
