//! Shared writable mappings of `BPF_F_MMAPABLE` arrays (class table,
//! list record, runtime slots).

use std::{
    os::fd::{AsRawFd as _, BorrowedFd},
    sync::atomic::{AtomicU64, AtomicU8},
};

use super::class_writer::ClassError;

/// A shared, writable mapping of a `BPF_F_MMAPABLE` array.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through
// atomics or happens while `&mut self` is held.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn new(name: &'static str, fd: BorrowedFd<'_>, len: usize) -> Result<Self, ClassError> {
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

    pub fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: `len` bytes mapped at `ptr`, alive as long as `self`;
        // AtomicU8 has the layout of u8.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU8>(), self.len) }
    }

    pub fn words(&self) -> &[AtomicU64] {
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
