//! The contract between the XDP program and user space: map and global
//! names, their key and value types, and their sizes. Written once here;
//! the program declares its statics with these names and the agent opens
//! them by these names.

use crate::{reason::REASON_SLOTS, verdict::BlockedPorts};

/// The XDP program's function (and section) name.
pub const PROGRAM_NAME: &str = "op25b";

/// LPM tries keyed by `{prefix_len: u32, addr: [u8; 4|16]}` (address in
/// network byte order); the value is a `u32`: the pool id in the dynamic
/// tries (0 = the default pool), 0 in the others.
pub const MAP_DYNAMIC_V4: &str = "DYNAMIC_V4";
pub const MAP_DYNAMIC_V6: &str = "DYNAMIC_V6";
pub const MAP_EXEMPT_V4: &str = "EXEMPT_V4";
pub const MAP_EXEMPT_V6: &str = "EXEMPT_V6";
pub const MAP_ALLOWED_DST_V4: &str = "ALLOWED_DST_V4";
pub const MAP_ALLOWED_DST_V6: &str = "ALLOWED_DST_V6";
/// Per-CPU array of [`Counter`], indexed by [`counter_index`].
pub const MAP_COUNTERS: &str = "COUNTERS";

/// Ring buffer of [`BlockEvent`]s: one per blocked connection attempt that
/// passes the per-source rate limit.
pub const MAP_EVENTS: &str = "EVENTS";
pub const EVENTS_RING_BYTES: u32 = 2 << 20;
/// Direct-mapped cache of [`EventLimiter`] slots shared by all CPUs,
/// indexed by [`limiter_slot`] of the source. An array lookup is inlined by
/// the verifier, so rate limiting costs a few instructions, not a hash-map
/// walk; two sources sharing a slot evict each other (counted).
pub const MAP_EVENT_LIMITER: &str = "EVENT_LIMITER";
pub const EVENT_LIMITER_SLOTS: u32 = 1 << 14;

/// Per-CPU array of [`Counter`] per (pool, reason) for dynamic sources.
pub const MAP_POOL_COUNTERS: &str = "POOL_COUNTERS";
#[expect(clippy::cast_possible_truncation, reason = "MAX_POOLS is 16")]
pub const POOL_COUNTER_ENTRIES: u32 = MAX_POOLS as u32 * REASON_SLOTS;

/// Index of a (pool, reason) pair in [`MAP_POOL_COUNTERS`]; a pool out of
/// range wraps, so the index is always in the map.
#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "MAX_POOLS is 16")]
pub const fn pool_counter_index(pool: u32, reason: u32) -> u32 {
    (pool % MAX_POOLS as u32) * REASON_SLOTS + reason
}

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
/// The ELF section the program's writable globals live in; aya makes it a
/// one-element array map.
pub const RUNTIME_CONFIG_SECTION: &str = ".data";
/// The pin name of that section's map (bpffs refuses the dot in ".data").
pub const RUNTIME_CONFIG_PIN: &str = "RUNTIME_CONFIG";
/// Read-only global set at load: which interface slot this instance counts in.
pub const GLOBAL_INTERFACE_SLOT: &str = "INTERFACE_SLOT";

/// Interfaces one agent can count separately.
pub const MAX_INTERFACE_SLOTS: u32 = 64;
pub const COUNTER_ENTRIES: u32 = MAX_INTERFACE_SLOTS * REASON_SLOTS;

/// Counter cells past the reasons, per interface slot.
/// Blocked or undecidable connection attempts (SYN without ACK).
pub const COUNTER_ATTEMPTS: u32 = REASON_SLOTS - 1;
/// Attempts whose event the ring buffer had no room for.
pub const COUNTER_EVENTS_LOST: u32 = REASON_SLOTS - 2;
/// Attempts folded into a later event by the per-source rate limit.
pub const COUNTER_EVENTS_SUPPRESSED: u32 = REASON_SLOTS - 3;
/// Folded attempts dropped because another source took the limiter slot.
pub const COUNTER_EVENTS_EVICTED: u32 = REASON_SLOTS - 4;

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
    /// At most one event per source per this many nanoseconds.
    pub event_interval_ns: u64,
    /// [`PoolAction`] of each dynamic pool, indexed by the pool id the
    /// dynamic tries hold as their value. Changing an action is one write.
    pub pool_actions: [u8; MAX_POOLS],
}

/// Dynamic pools (named groups of dynamic prefixes with their own action).
pub const MAX_POOLS: usize = 16;

/// What a dynamic pool does with a blocked attempt.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolAction {
    Drop = 0,
    /// Pass and count as `would_block` (staged rollout).
    Monitor = 1,
    /// Answer a SYN with a TCP reset (the client fails fast); drop the rest.
    Reject = 2,
}

impl PoolAction {
    #[inline(always)]
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Monitor,
            2 => Self::Reject,
            _ => Self::Drop,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Monitor => "monitor",
            Self::Reject => "reject",
        }
    }
}

impl RuntimeConfig {
    pub const DEFAULT: Self = Self {
        blocked_ports: BlockedPorts::SMTP,
        event_interval_ns: 1_000_000_000,
        pool_actions: [0; MAX_POOLS],
    };

    /// The default configuration with other blocked ports.
    pub const fn with_ports(blocked_ports: BlockedPorts) -> Self {
        Self {
            blocked_ports,
            ..Self::DEFAULT
        }
    }

    #[inline(always)]
    pub fn pool_action(&self, pool: u32) -> PoolAction {
        match self.pool_actions.get(pool as usize) {
            Some(&a) => PoolAction::from_u8(a),
            None => PoolAction::Drop,
        }
    }
}

/// Per-source rate-limit state (one slot of the shared cache).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventLimiter {
    /// The source this slot tracks (IPv4 as `::ffff:a.b.c.d`).
    pub src: [u8; 16],
    /// Coarse monotonic time of the last event sent for this source.
    pub last_event_ns: u64,
    /// Attempts since then that sent no event (reported with the next one).
    pub suppressed: u64,
}

/// The limiter slot of a source: a multiplicative hash of its 16 bytes.
#[inline(always)]
pub fn limiter_slot(src: &[u8; 16]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < 16 {
        let word = u32::from_ne_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]);
        h = (h ^ word).wrapping_mul(0x0100_0193);
        i += 4;
    }
    (h ^ (h >> 15)) & (EVENT_LIMITER_SLOTS - 1)
}

/// One blocked connection attempt, as the program reports it. Addresses in
/// network byte order, IPv4 as `::ffff:a.b.c.d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEvent {
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE, ns since boot).
    pub monotonic_ns: u64,
    /// Attempts from this source this event stands for (1 + suppressed).
    pub attempts: u64,
    pub ifindex: u32,
    pub slot: u32,
    pub reason: u32,
    /// Number of VLAN tags in `vlan_ids`.
    pub vlan_count: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub vlan_ids: [u16; 2],
    pub pppoe_session: u16,
    /// Bit 0: `pppoe_session` is set.
    pub flags: u16,
    pub pad: u32,
}

pub const EVENT_FLAG_PPPOE: u16 = 1;

/// An address as the event and limiter keys hold it.
#[inline(always)]
pub fn mapped_v6(addr: &crate::IpAddrBytes) -> [u8; 16] {
    match addr {
        crate::IpAddrBytes::V6(a) => *a,
        crate::IpAddrBytes::V4([a, b, c, d]) => {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, *a, *b, *c, *d]
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: #[repr(C)], made only of integers, with no padding (the size
    // tests below pin the layouts), so every byte pattern is valid.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RuntimeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EventLimiter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BlockEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_types_have_no_padding() {
        assert_eq!(core::mem::size_of::<Counter>(), 16);
        assert_eq!(core::mem::size_of::<RuntimeConfig>(), 40);
        assert_eq!(core::mem::size_of::<BlockEvent>(), 80);
        assert_eq!(core::mem::size_of::<EventLimiter>(), 32);
    }

    #[test]
    fn extra_counters_do_not_collide_with_reasons() {
        let extra = [
            COUNTER_ATTEMPTS,
            COUNTER_EVENTS_LOST,
            COUNTER_EVENTS_SUPPRESSED,
            COUNTER_EVENTS_EVICTED,
        ];
        for reason in crate::Reason::ALL {
            assert!(!extra.contains(&reason.index()), "{reason:?}");
        }
    }

    #[test]
    fn counter_indices_stay_in_the_map() {
        let last = counter_index(MAX_INTERFACE_SLOTS - 1, REASON_SLOTS - 1);
        assert_eq!(last, COUNTER_ENTRIES - 1);
        assert!(counter_index(MAX_INTERFACE_SLOTS + 3, 0) < COUNTER_ENTRIES);
    }
}
