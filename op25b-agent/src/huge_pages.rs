//! The process's allocator: the system's, with big allocations backed by
//! transparent huge pages. A reload looks blocks up at random in a table
//! of over 100 MB and walks million-entry lists and their 8 MB records;
//! with 4 KiB pages most of those reads also miss the TLB (a 1% reload of
//! a million prefixes took about 15% longer). Distributions ship THP in
//! `madvise` mode, so huge pages are asked for, per allocation of
//! [`ADVISE_FROM`] or more; small allocations are left alone (the advice
//! is a system call that takes the address space's lock).
//!
//! `op25b-agent` and `op25b-bench` (which times the agent's code
//! in-process) both use it.

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, advising huge pages for big allocations.
pub struct HugePages;

/// Allocations at least this big are advised.
pub const ADVISE_FROM: usize = 4 << 20;

const HUGE_PAGE: usize = 2 << 20;

/// Advises huge pages for the whole 2 MiB pages inside `[ptr, ptr + size)`.
fn advise(ptr: *mut u8, size: usize) {
    if ptr.is_null() || size < ADVISE_FROM {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: the range lies inside an allocation this process owns;
        // the advice changes how it is backed, never its contents. A
        // refusal (a kernel without THP) leaves 4 KiB pages: nothing to
        // handle, and `errno` is put back, so an allocation between a
        // failed call and the read of its error does not change the error.
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            *errno = saved;
        }
    }
}

// SAFETY: every call goes to the system allocator with its arguments
// unchanged; big results are only advised.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.realloc(ptr, layout, new_size) };
        advise(ptr, new_size);
        ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `VmFlags` of the mapping holding `addr`, from /proc/self/smaps.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = (lo..hi).contains(&addr);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.to_owned();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn big_allocations_are_advised() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        let size = 16 << 20;
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a valid, non-zero layout; freed below with the same.
        let ptr = unsafe { HugePages.alloc(layout) };
        assert!(!ptr.is_null());
        let flags = vm_flags((ptr as usize).next_multiple_of(HUGE_PAGE));
        // SAFETY: allocated above with this layout.
        unsafe { HugePages.dealloc(ptr, layout) };
        assert!(
            flags.split_whitespace().any(|f| f == "hg"),
            "a 16 MiB allocation is not advised: {flags}"
        );
    }
}
