//! One address family's prefixes of a list: a sorted vector, plus the
//! edits made since it was last rebuilt.
//!
//! A million-entry list is walked on every reload (the class writer builds
//! its record from it), compared and copied. A `BTreeSet` scatters its
//! entries over a hundred thousand nodes and walks them at 5–10 ns each; a
//! sorted vector walks, compares and copies at memory speed. Edits one at a
//! time (a RADIUS session, a grant, an unsorted list file) go into two small
//! sets first and are merged in once they reach an eighth of the vector, so
//! each costs O(log n) amortised instead of a memmove of the whole vector.

use std::{
    collections::{btree_set, BTreeSet},
    fmt,
    iter::Peekable,
    sync::atomic::{AtomicU64, Ordering},
};

use super::prefix::Prefix;

/// Edits are merged into the vector once there are this many, or an eighth
/// of the vector, whichever is more.
const MERGE_AT_LEAST: usize = 64;

/// Generations handed out so far (0: the empty set never edited).
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// A set of prefixes of one family, ordered as `Prefix` orders them.
#[derive(Clone, Default)]
pub struct SortedPrefixes {
    /// Sorted, without duplicates.
    sorted: Vec<Prefix>,
    /// Members not in `sorted`.
    added: BTreeSet<Prefix>,
    /// Entries of `sorted` that are no longer members.
    removed: BTreeSet<Prefix>,
    /// New with every edit, kept by `clone`: see [`Self::generation`].
    generation: u64,
}

impl SortedPrefixes {
    pub const fn new() -> Self {
        Self {
            sorted: Vec::new(),
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
            generation: 0,
        }
    }

    /// Two sets of the same generation hold the same members: one is a
    /// copy of the other and neither was edited since. Lets a reload skip
    /// comparing a million-entry list it applied before, unchanged.
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes `running`'s generation if both hold the same members (O(n)):
    /// a list file read again unchanged then tells the class writer it
    /// need not walk it. True if it did.
    pub fn keep_generation_of(&mut self, running: &Self) -> bool {
        let same = self == running;
        if same {
            self.generation = running.generation;
        }
        same
    }

    fn edited(&mut self) {
        self.generation = GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1;
    }

    /// Adds `prefix`; false if it was a member already.
    pub fn insert(&mut self, prefix: Prefix) -> bool {
        if self.removed.remove(&prefix) {
            self.edited();
            return true;
        }
        if self.sorted.binary_search(&prefix).is_ok() {
            return false;
        }
        // A list read in order appends.
        if self.added.is_empty() && self.sorted.last().is_none_or(|last| *last < prefix) {
            self.sorted.push(prefix);
            self.edited();
            return true;
        }
        if !self.added.insert(prefix) {
            return false;
        }
        self.edited();
        self.merge_if_due();
        true
    }

    /// Takes `prefix` out; false if it was not a member.
    pub fn remove(&mut self, prefix: &Prefix) -> bool {
        if self.added.remove(prefix) {
            self.edited();
            return true;
        }
        if self.sorted.binary_search(prefix).is_err() || !self.removed.insert(*prefix) {
            return false;
        }
        self.edited();
        self.merge_if_due();
        true
    }

    pub fn contains(&self, prefix: &Prefix) -> bool {
        self.added.contains(prefix)
            || (self.sorted.binary_search(prefix).is_ok() && !self.removed.contains(prefix))
    }

    pub fn len(&self) -> usize {
        self.sorted.len() + self.added.len() - self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members in order.
    pub fn iter(&self) -> Iter<'_> {
        let (run, rest) = if self.added.is_empty() && self.removed.is_empty() {
            (&self.sorted[..], &[][..])
        } else {
            (&[][..], &self.sorted[..])
        };
        Iter {
            run: run.iter(),
            rest,
            added: self.added.iter().peekable(),
            removed: self.removed.iter().peekable(),
        }
    }

    /// The members not in `other`, in order.
    pub fn difference<'a>(&'a self, other: &'a Self) -> impl Iterator<Item = &'a Prefix> + 'a {
        self.iter().filter(|p| !other.contains(p))
    }

    /// Keeps only the members `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Prefix) -> bool) {
        self.compact();
        let before = self.sorted.len();
        self.sorted.retain(|p| keep(p));
        if self.sorted.len() != before {
            self.edited();
        }
    }

    fn merge_if_due(&mut self) {
        if self.added.len() + self.removed.len() > MERGE_AT_LEAST.max(self.sorted.len() / 8) {
            self.compact();
        }
    }

    /// Folds the edits into the vector: O(n + edits).
    pub fn compact(&mut self) {
        if self.added.is_empty() && self.removed.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.len());
        merged.extend(self.iter().copied());
        self.sorted = merged;
        self.added.clear();
        self.removed.clear();
    }
}

/// The members of a [`SortedPrefixes`] in order: runs of the vector
/// between edits, walked as slices, and the edits where they fall.
pub struct Iter<'a> {
    /// Vector entries before the next edit.
    run: std::slice::Iter<'a, Prefix>,
    /// Vector entries from the next edit on.
    rest: &'a [Prefix],
    added: Peekable<btree_set::Iter<'a, Prefix>>,
    removed: Peekable<btree_set::Iter<'a, Prefix>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Prefix;

    #[inline]
    fn next(&mut self) -> Option<&'a Prefix> {
        if let Some(next) = self.run.next() {
            return Some(next);
        }
        self.next_after_run()
    }
}

impl<'a> Iter<'a> {
    /// At the end of a run: the next edit, or the next run.
    fn next_after_run(&mut self) -> Option<&'a Prefix> {
        loop {
            let edit = match (self.added.peek(), self.removed.peek()) {
                (Some(a), Some(r)) => (*a).min(*r),
                (Some(a), None) => *a,
                (None, Some(r)) => *r,
                (None, None) => {
                    self.run = std::mem::take(&mut self.rest).iter();
                    return self.run.next();
                }
            };
            let before = count_below(self.rest, edit);
            if before > 0 {
                let (run, rest) = self.rest.split_at(before);
                (self.run, self.rest) = (run.iter(), rest);
                return self.run.next();
            }
            // `removed` is a subset of the vector, `added` disjoint from it.
            if self.removed.next_if(|r| *r == edit).is_some() {
                self.rest = &self.rest[1..];
                continue;
            }
            return self.added.next();
        }
    }
}

/// How many entries of sorted `entries` are below `key`, searched from the
/// front in doubling steps: edits a hundred entries apart cost a few nearby
/// reads each, not a binary search's cache misses across the whole vector.
fn count_below(entries: &[Prefix], key: &Prefix) -> usize {
    let mut step = 1;
    while step <= entries.len() && entries[step - 1] < *key {
        step *= 2;
    }
    let from = step / 2;
    let to = step.min(entries.len());
    from + entries[from..to].partition_point(|p| p < key)
}

impl<'a> IntoIterator for &'a SortedPrefixes {
    type Item = &'a Prefix;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<Prefix> for SortedPrefixes {
    fn from_iter<I: IntoIterator<Item = Prefix>>(iter: I) -> Self {
        let mut sorted: Vec<Prefix> = iter.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut set = Self {
            sorted,
            ..Self::default()
        };
        set.edited();
        set
    }
}

impl Extend<Prefix> for SortedPrefixes {
    fn extend<I: IntoIterator<Item = Prefix>>(&mut self, iter: I) {
        for prefix in iter {
            self.insert(prefix);
        }
    }
}

/// Equal members, however each set holds them.
impl PartialEq for SortedPrefixes {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for SortedPrefixes {}

impl fmt::Debug for SortedPrefixes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;

    fn prefix(addr: u32, len: u8) -> Prefix {
        let masked = if len == 0 {
            0
        } else {
            addr & (u32::MAX << (32 - len))
        };
        Prefix::new(IpAddr::V4(Ipv4Addr::from(masked)), len).expect("masked")
    }

    #[derive(Clone, Debug)]
    enum Edit {
        Insert(u32, u8),
        Remove(u32, u8),
        Retain(u8),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        // Few distinct addresses, so edits hit members often.
        prop_oneof![
            4 => (0u32..300, 22u8..=32).prop_map(|(a, l)| Edit::Insert(a << 8, l)),
            2 => (0u32..300, 22u8..=32).prop_map(|(a, l)| Edit::Remove(a << 8, l)),
            1 => (2u8..7).prop_map(Edit::Retain),
        ]
    }

    proptest! {
        /// Any sequence of edits leaves the same members, in the same
        /// order, as a `BTreeSet` given the same edits, and every answer on
        /// the way agrees.
        #[test]
        fn behaves_as_a_btree_set(
            start in prop::collection::vec((0u32..300, 22u8..=32), 0..400),
            edits in prop::collection::vec(edit(), 0..600),
        ) {
            let start: Vec<Prefix> = start.iter().map(|&(a, l)| prefix(a << 8, l)).collect();
            let mut set: SortedPrefixes = start.iter().copied().collect();
            let mut model: BTreeSet<Prefix> = start.into_iter().collect();
            for edit in edits {
                match edit {
                    Edit::Insert(a, l) => {
                        let (p, generation) = (prefix(a, l), set.generation());
                        let inserted = set.insert(p);
                        prop_assert_eq!(inserted, model.insert(p));
                        prop_assert_eq!(generation == set.generation(), !inserted);
                    }
                    Edit::Remove(a, l) => {
                        let (p, generation) = (prefix(a, l), set.generation());
                        prop_assert_eq!(set.contains(&p), model.contains(&p));
                        let removed = set.remove(&p);
                        prop_assert_eq!(removed, model.remove(&p));
                        prop_assert_eq!(generation == set.generation(), !removed);
                    }
                    Edit::Retain(m) => {
                        let keep = |p: &Prefix| !p.len().is_multiple_of(m);
                        set.retain(keep);
                        model.retain(keep);
                    }
                }
                prop_assert_eq!(set.len(), model.len());
            }
            prop_assert!(set.iter().eq(model.iter()));
            // A copy keeps the generation until either is edited.
            let mut copy = set.clone();
            prop_assert_eq!(copy.generation(), set.generation());
            let outside = prefix(999 << 8, 24);
            copy.insert(outside);
            prop_assert_ne!(copy.generation(), set.generation());
            copy.remove(&outside);
            prop_assert_ne!(copy.generation(), set.generation(), "edited back, still another generation");
            let other: SortedPrefixes = model.iter().copied().collect();
            prop_assert_eq!(&set, &other);
        }
    }

    proptest! {
        #[test]
        fn count_below_agrees_with_a_binary_search(
            entries in prop::collection::btree_set((0u32..500, 24u8..=32), 0..300),
            key in (0u32..520, 24u8..=32),
        ) {
            let entries: Vec<Prefix> = entries.iter().map(|&(a, l)| prefix(a << 8, l)).collect::<BTreeSet<_>>().into_iter().collect();
            let key = prefix(key.0 << 8, key.1);
            prop_assert_eq!(count_below(&entries, &key), entries.partition_point(|p| *p < key));
        }
    }

    #[test]
    fn a_list_read_out_of_order_stays_cheap_and_ordered() {
        // 20,000 inserts in reverse order: edits merge in batches.
        let mut set = SortedPrefixes::new();
        for i in (0..20_000u32).rev() {
            assert!(set.insert(prefix(i << 8, 24)));
        }
        assert!(set.added.len() <= set.sorted.len() / 8 + MERGE_AT_LEAST);
        assert_eq!(set.len(), 20_000);
        assert!(set.iter().zip(set.iter().skip(1)).all(|(a, b)| a < b));
        // Compacted as a list file is once read: one vector, same members.
        let (before, generation) = (set.clone(), set.generation());
        set.compact();
        assert!(set.added.is_empty() && set.removed.is_empty());
        assert_eq!(set, before);
        assert_eq!(set.generation(), generation, "compacting changes no member");
    }

    #[test]
    fn a_list_read_again_unchanged_keeps_the_running_generation() {
        let running: SortedPrefixes = (0..100u32).map(|i| prefix(i << 8, 24)).collect();
        let mut again: SortedPrefixes = (0..100u32).rev().map(|i| prefix(i << 8, 24)).collect();
        assert_ne!(again.generation(), running.generation());
        assert!(again.keep_generation_of(&running));
        assert_eq!(again.generation(), running.generation());
        let mut changed: SortedPrefixes = (1..101u32).map(|i| prefix(i << 8, 24)).collect();
        let generation = changed.generation();
        assert!(!changed.keep_generation_of(&running));
        assert_eq!(changed.generation(), generation);
    }

    #[test]
    fn difference_and_equality_ignore_how_members_are_held() {
        let mut a: SortedPrefixes = (0..10u32).map(|i| prefix(i << 8, 24)).collect();
        let b: SortedPrefixes = (5..10u32).map(|i| prefix(i << 8, 24)).collect();
        let gone: Vec<Prefix> = a.difference(&b).copied().collect();
        assert_eq!(
            gone,
            (0..5u32).map(|i| prefix(i << 8, 24)).collect::<Vec<_>>()
        );
        for p in &gone {
            a.remove(p);
        }
        assert_eq!(a, b);
        assert!(!a.removed.is_empty(), "held as edits, compared as members");
    }
}
