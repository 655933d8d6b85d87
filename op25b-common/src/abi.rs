//! The contract between the XDP program and user space: map and global
//! names, their key and value types, and their sizes. Written once here;
//! the program declares its statics with these names and the agent opens
//! them by these names.

use crate::{reason::REASON_SLOTS, verdict::BlockedPorts};

/// The XDP program's function (and section) name.
pub const PROGRAM_NAME: &str = "op25b";

/// LPM tries keyed by `{prefix_len: u32, addr: [u8; 4|16]}` (address in
/// network byte order); the value is a `u32` reserved for a pool id (0 today).
pub const MAP_DYNAMIC_V4: &str = "DYNAMIC_V4";
pub const MAP_DYNAMIC_V6: &str = "DYNAMIC_V6";
pub const MAP_EXEMPT_V4: &str = "EXEMPT_V4";
pub const MAP_EXEMPT_V6: &str = "EXEMPT_V6";
pub const MAP_ALLOWED_DST_V4: &str = "ALLOWED_DST_V4";
pub const MAP_ALLOWED_DST_V6: &str = "ALLOWED_DST_V6";
/// Per-CPU array of [`Counter`], indexed by [`counter_index`].
pub const MAP_COUNTERS: &str = "COUNTERS";

/// Every policy map, for code that handles them alike (pinning, sizes).
pub const POLICY_MAPS: [&str; 6] = [
    MAP_DYNAMIC_V4,
    MAP_DYNAMIC_V6,
    MAP_EXEMPT_V4,
    MAP_EXEMPT_V6,
    MAP_ALLOWED_DST_V4,
    MAP_ALLOWED_DST_V6,
];

/// Capacity of each policy trie. The tries are not preallocated, so an
/// unused capacity costs no memory; 2^21 leaves room for carrier lists of a
/// million prefixes per list and family.
pub const POLICY_MAP_CAPACITY: u32 = 1 << 21;

/// Writable global (`.data`) holding [`RuntimeConfig`]: read with a plain
/// load, no map lookup, so non-SMTP packets never touch a map helper.
pub const GLOBAL_RUNTIME_CONFIG: &str = "RUNTIME_CONFIG";
/// Read-only global set at load: which interface slot this instance counts in.
pub const GLOBAL_INTERFACE_SLOT: &str = "INTERFACE_SLOT";

/// Interfaces one agent can count separately.
pub const MAX_INTERFACE_SLOTS: u32 = 64;
pub const COUNTER_ENTRIES: u32 = MAX_INTERFACE_SLOTS * REASON_SLOTS;

/// Index of a (slot, reason) pair in [`MAP_COUNTERS`]; a slot out of range wraps, so the index is always in the map.
#[inline(always)]
pub const fn counter_index(slot: u32, reason: u32) -> u32 {
    (slot % MAX_INTERFACE_SLOTS) * REASON_SLOTS + reason
}

/// One per-CPU counter cell.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Data-plane settings that change at run time without reloading the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub blocked_ports: BlockedPorts,
}

impl RuntimeConfig {
    pub const DEFAULT: Self = Self {
        blocked_ports: BlockedPorts::SMTP,
    };
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are #[repr(C)], made only of integers, with no padding.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::RuntimeConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_types_have_no_padding() {
        assert_eq!(core::mem::size_of::<Counter>(), 16);
        assert_eq!(core::mem::size_of::<RuntimeConfig>(), 16);
    }

    #[test]
    fn counter_indices_stay_in_the_map() {
        let last = counter_index(MAX_INTERFACE_SLOTS - 1, REASON_SLOTS - 1);
        assert_eq!(last, COUNTER_ENTRIES - 1);
        assert!(counter_index(MAX_INTERFACE_SLOTS + 3, 0) < COUNTER_ENTRIES);
    }
}
