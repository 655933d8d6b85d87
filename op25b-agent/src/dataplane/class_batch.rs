//! Batched updates and deletes (`bpf()` batch commands, which aya does not
//! wrap): the IPv4 second-level blocks and the IPv6 class trie (the
//! kernel has batch commands for LPM tries since 5.6; op25b needs 5.15).
//! A batch is applied in order, so callers keep their write order.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::Ebpf;
use op25b_common::abi::MAP_CLASS_V4_BLOCKS;

use super::class_writer::{map_data, ClassError};

#[derive(Clone, Copy)]
pub(super) enum BatchOp {
    Update,
    Delete,
}

/// `bpf_attr.batch` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Updates or deletes many blocks with one `bpf()` call per 4,096.
pub(super) fn batch(
    ebpf: &Ebpf,
    op: BatchOp,
    keys: &[u32],
    values: &[[u8; 256]],
) -> Result<(), ClassError> {
    batch_map(ebpf, MAP_CLASS_V4_BLOCKS, op, keys, values)
}

/// Updates (`values[i]` for `keys[i]`) or deletes (`values` unused) many
/// elements of map `name` with one `bpf()` call per 4,096. `K` and `V` must
/// have exactly the map's key and value layout (plain data, no padding).
pub(super) fn batch_map<K: Copy, V: Copy>(
    ebpf: &Ebpf,
    name: &'static str,
    op: BatchOp,
    keys: &[K],
    values: &[V],
) -> Result<(), ClassError> {
    if keys.is_empty() {
        return Ok(());
    }
    if matches!(op, BatchOp::Update) {
        assert_eq!(keys.len(), values.len(), "one value per key");
    }
    let fd = map_data(ebpf, name)?.fd().as_fd().as_raw_fd();
    let (cmd, command) = match op {
        BatchOp::Update => (BPF_MAP_UPDATE_BATCH, "BPF_MAP_UPDATE_BATCH"),
        BatchOp::Delete => (BPF_MAP_DELETE_BATCH, "BPF_MAP_DELETE_BATCH"),
    };
    for (i, chunk) in keys.chunks(4096).enumerate() {
        let values = match op {
            BatchOp::Update => values[i * 4096..].as_ptr() as u64,
            BatchOp::Delete => 0,
        };
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            values,
            count: u32::try_from(chunk.len()).expect("4,096 at most"),
            map_fd: u32::try_from(fd).expect("fds are non-negative"),
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for the batch commands;
        // keys and values point at `count` entries that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                std::ptr::addr_of_mut!(attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        if rc < 0 {
            return Err(ClassError::Batch {
                op: command,
                name,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}
