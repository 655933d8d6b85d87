//! The one way the parser touches packet bytes.

/// Bounds-checked reads of a frame. The kernel side implements it over
/// `XdpContext` (pointer compare against `data_end`, which the verifier
/// needs); the host side over `&[u8]`.
pub trait PacketBytes {
    /// Reads cost no copy or call (direct loads from one buffer): worth
    /// the pass path's shortcut ([`crate::fast_pass`]) before the full
    /// parse. Frames read through a helper skip it.
    const READS_IN_PLACE: bool = false;

    /// The frame's length in bytes.
    fn len(&self) -> usize;

    /// `N` bytes starting at `offset`, or `None` when the frame ends first.
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PacketBytes for [u8] {
    const READS_IN_PLACE: bool = true;

    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        let bytes = self.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}
