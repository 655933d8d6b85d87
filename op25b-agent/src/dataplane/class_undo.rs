//! Undoing a class apply: the IPv4 regions, the record and the IPv6 trie
//! go back to what [`ClassUndo`] saved, each entry from its new value to
//! its old one (never through a third class).

use std::time::Instant;

use aya::Ebpf;

use super::{
    class_batch::{batch, BatchOp},
    class_writer::{merge_blocks, store_changed, ClassError, ClassMaps, ClassStats, ClassUndo},
};

impl ClassMaps {
    /// Puts back what the apply that filled `undo` overwrote. On failure
    /// the maps are somewhere between: the next apply re-reads them.
    pub fn undo(&mut self, ebpf: &mut Ebpf, undo: ClassUndo) -> Result<(), ClassError> {
        // Which lists the maps hold again is not tracked: compare them whole.
        self.applied = None;
        let result = self.undo_inner(ebpf, undo);
        if result.is_err() {
            self.mirror = None;
            self.v6 = None;
            self.recorded = None;
        }
        result
    }

    fn undo_inner(&mut self, ebpf: &mut Ebpf, undo: ClassUndo) -> Result<(), ClassError> {
        let mut stats = ClassStats::default();
        if let Some(old) = undo.v6 {
            // What the trie holds now is not known for sure: re-read it.
            self.v6 = None;
            self.write_v6(ebpf, old, &mut None, &mut stats)?;
        }
        if let Some(old) = undo.record {
            self.write_record(&old, None, 0..0, &mut stats);
            self.recorded = Some(old);
        }
        if undo.repainted.is_empty() {
            return Ok(());
        }
        // Blocks first: an old block behind a new pointer gives the old
        // class; a new block becomes uniform in its /24's old class.
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut orphaned = Vec::new();
        for region in &undo.repainted {
            merge_blocks(&region.old_blocks, &region.new_blocks, |n, old, _| {
                keys.push(n);
                if let Some(old) = old {
                    values.push(*old);
                } else {
                    let offset = (n - region.range.start) as usize;
                    values.push([region.old_first[offset]; 256]);
                    orphaned.push(n);
                }
            });
        }
        batch(ebpf, BatchOp::Update, &keys, &values)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        for region in &undo.repainted {
            store_changed(&self.first, region.range.start as usize, &region.old_first);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.restore(&undo.repainted);
        }
        for region in &undo.repainted {
            for (n, _) in &region.old_blocks {
                self.orphans.remove(n);
            }
        }
        let now = Instant::now();
        for n in orphaned {
            self.orphans.entry(n).or_insert(now);
        }
        Ok(())
    }
}
