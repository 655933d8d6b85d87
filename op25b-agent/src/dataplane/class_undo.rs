//! Undoing a class apply: the IPv4 regions, the record and the IPv6 trie
//! go back to what [`ClassUndo`] saved, each entry from its new value to
//! its old one (never through a third class).

use std::time::Instant;

use aya::Ebpf;

use super::{
    class_batch::{batch, BatchOp},
    class_writer::{store_changed, ClassError, ClassMaps, ClassStats, ClassUndo},
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
            self.write_record(&old, None, [false; 2], &mut stats);
            self.recorded = Some(old);
        }
        if undo.repainted.is_empty() {
            return Ok(());
        }
        // Blocks first: an old block behind a new pointer gives the old
        // class; a gained block becomes uniform in its /24's old class.
        let repainted = &undo.repainted;
        let (mut keys, mut values): (Vec<u32>, Vec<[u8; 256]>) =
            repainted.old_blocks.iter().copied().unzip();
        for &(n, was) in &repainted.gained {
            keys.push(n);
            values.push([was; 256]);
        }
        batch(ebpf, BatchOp::Update, &keys, &values)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        for (start, old) in repainted.old_regions() {
            store_changed(&self.first, start, old);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.restore(repainted);
        }
        for (n, _) in &repainted.old_blocks {
            self.orphans.remove(n);
        }
        let now = Instant::now();
        for &(n, _) in &repainted.gained {
            self.orphans.entry(n).or_insert(now);
        }
        Ok(())
    }
}
