//! The contract between the XDP program and user space: map and global
//! names, their key and value types, and their sizes. Written once here;
//! the program declares its statics with these names and the agent opens
//! them by these names.

use crate::{reason::REASON_SLOTS, verdict::BlockedPorts};

/// The frags-aware XDP program's function (and section) name: it takes
/// frames of any MTU, multi-buffer ones included.
pub const PROGRAM_NAME: &str = "op25b";
/// The one-buffer program: the same decision without `xdp.frags`, for
/// interfaces whose MTU fits one buffer (cheaper per packet).
pub const PROGRAM_ONE_BUFFER_NAME: &str = "op25b_one_buffer";

/// IPv4 source classes, first level (DIR-24-8): one [`SourceClass`] byte
/// per /24, in a `BPF_F_MMAPABLE` array of [`CLASS_V4_CHUNK`]-byte values
/// that user space writes through `mmap`, one byte store per entry.
pub const MAP_CLASS_V4: &str = "CLASS_V4";
/// Second level: hash of the /24 number (`addr >> 8`) to 256 class bytes,
/// present only for /24s holding prefixes longer than /24 whose class
/// differs within the /24 (their first-level byte has
/// [`SourceClass::INDIRECT`]).
pub const MAP_CLASS_V4_BLOCKS: &str = "CLASS_V4_BLOCKS";
/// Record of the operator's IPv4 dynamic and exempt lists (for status,
/// explain and adoption; the program never reads it): a `BPF_F_MMAPABLE`
/// array of `u64`. Entry 0 is a seqlock header ([`record_header`]), entries
/// `1..=count` are [`record_entry`]s.
pub const MAP_LISTS_V4: &str = "LISTS_V4";
/// IPv6 source classes: one LPM trie over the union of the dynamic and
/// exempt lists, keyed like the others; the value's low byte is the
/// combined [`SourceClass`] of that prefix, the rest records which lists
/// hold it ([`V6_IN_DYNAMIC`], [`V6_IN_EXEMPT`], pool at [`V6_POOL_SHIFT`]).
pub const MAP_CLASS_V6: &str = "CLASS_V6";
/// LPM tries keyed by `{prefix_len: u32, addr: [u8; 4|16]}` (address in
/// network byte order); the value is unused (0).
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
    MAP_CLASS_V4,
    MAP_CLASS_V4_BLOCKS,
    MAP_LISTS_V4,
    MAP_CLASS_V6,
    MAP_ALLOWED_DST_V4,
    MAP_ALLOWED_DST_V6,
];

/// Capacity of each policy trie. The tries are not preallocated, so an
/// unused capacity costs no memory; 2^21 leaves room for carrier lists of a
/// million prefixes per list and family.
pub const POLICY_MAP_CAPACITY: u32 = 1 << 21;

/// `BPF_F_MMAPABLE`: an array user space maps and writes directly.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_F_NO_PREALLOC`: hash elements allocated on update, not up front.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// Bytes per value of [`MAP_CLASS_V4`] (one page: 4,096 /24s).
pub const CLASS_V4_CHUNK: usize = 4096;
/// Values in [`MAP_CLASS_V4`]: 2^24 /24s in all, 16 MiB.
#[expect(clippy::cast_possible_truncation, reason = "2^24 / 4096 = 4096")]
pub const CLASS_V4_CHUNKS: u32 = ((1usize << 24) / CLASS_V4_CHUNK) as u32;
/// Second-level blocks (/24s with a finer class) the hash can hold.
pub const CLASS_V4_BLOCK_CAPACITY: u32 = 1 << 20;
/// Entries of [`MAP_LISTS_V4`] after its header: IPv4 prefixes of the
/// dynamic and exempt lists together.
pub const LISTS_V4_CAPACITY: u32 = 1 << 21;

/// [`MAP_CLASS_V6`] value bits above the class byte.
pub const V6_IN_DYNAMIC: u32 = 1 << 8;
pub const V6_IN_EXEMPT: u32 = 1 << 9;
pub const V6_POOL_SHIFT: u32 = 16;

/// The /24 number of an IPv4 address (its index in the first level).
#[inline(always)]
pub const fn slash24(addr: [u8; 4]) -> u32 {
    u32::from_be_bytes(addr) >> 8
}

/// [`MAP_LISTS_V4`] header: a sequence number (odd while user space
/// rewrites the record) and the entry count.
pub const fn record_header(sequence: u32, count: u32) -> u64 {
    ((sequence as u64) << 32) | count as u64
}

/// Which list a [`record_entry`] belongs to.
pub const RECORD_DYNAMIC: u8 = 0;
pub const RECORD_EXEMPT: u8 = 1;

/// One recorded IPv4 prefix: list, address, length and pool in one `u64`
/// (in that order, so entries sort as the lists do).
pub const fn record_entry(list: u8, addr: u32, len: u8, pool: u8) -> u64 {
    ((list as u64) << 56) | ((addr as u64) << 24) | ((len as u64) << 16) | pool as u64
}

/// The fields of a [`record_entry`]: (list, address, length, pool).
#[expect(clippy::cast_possible_truncation, reason = "fields are masked out")]
pub const fn record_fields(entry: u64) -> (u8, u32, u8, u8) {
    (
        (entry >> 56) as u8,
        (entry >> 24) as u32,
        (entry >> 16) as u8,
        entry as u8,
    )
}

/// Writable global (`.data`) holding the [`PortBitmap`]: read with a plain
/// load, no map lookup, so non-SMTP packets never touch a map helper. User
/// space replaces the section whole (the kernel copies it without a lock),
/// but the program reads one byte per packet, and a byte is either old or new.
pub const GLOBAL_BLOCKED_PORTS: &str = "BLOCKED_PORT_BITS";
/// `BPF_F_MMAPABLE` array of one [`RuntimeSlots`]: the settings read only
/// once a packet is a blocked attempt. User space stores each slot with one
/// atomic store through `mmap`, so each value the program reads is whole.
pub const MAP_RUNTIME: &str = "RUNTIME";
/// The ELF section the program's writable globals live in; aya makes it a
/// one-element array map.
pub const RUNTIME_CONFIG_SECTION: &str = ".data";
/// The pin name of that section's map (bpffs refuses the dot in ".data";
/// a new name: the section's layout changed from the 40-byte
/// `RUNTIME_CONFIG` of earlier builds to the port bitmap).
pub const RUNTIME_CONFIG_PIN: &str = "BLOCKED_PORTS";
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

/// The blocked destination ports as a bitmap: one bit per port, port 0
/// never set. The program reads the one byte its port lives in.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBitmap {
    pub bits: [u8; 8192],
}

impl PortBitmap {
    pub const EMPTY: Self = Self { bits: [0; 8192] };

    pub const fn from_ports(ports: &BlockedPorts) -> Self {
        let mut bitmap = Self::EMPTY;
        let mut i = 0;
        while i < ports.ports.len() {
            let port = ports.ports[i];
            if port != 0 {
                bitmap.bits[(port >> 3) as usize] |= 1 << (port & 7);
            }
            i += 1;
        }
        bitmap
    }

    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 3)] & (1 << (port & 7)) != 0
    }

    /// The blocked ports, ascending.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=u16::MAX).filter(|&p| self.contains(p))
    }
}

/// The run-time settings the program reads only for blocked attempts, one
/// independent slot each (cf. Cilium's config map): `event_interval_ns` is
/// an aligned `u64` (one load), each pool action is one byte.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeSlots {
    pub event_interval_ns: u64,
    /// [`RUNTIME_SLOTS_READY`] once user space has written the slots (a
    /// fresh map is all zeros).
    pub ready: u64,
    pub pool_actions: [u8; MAX_POOLS],
}

pub const RUNTIME_SLOTS_READY: u64 = 0x6f70_3235_6272_6479;

/// Data-plane settings that change at run time without reloading the
/// program: the policy's view (the kernel holds them as a [`PortBitmap`]
/// and [`RuntimeSlots`]).
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
    /// The source this slot tracks: [`limiter_key`], the bytes of
    /// [`mapped_v6`] as two native-endian words (the same bytes in memory),
    /// so that the program compares and stores it in two aligned words,
    /// not sixteen byte loads.
    pub src: [u64; 2],
    /// Coarse monotonic time of the last event sent for this source.
    pub last_event_ns: u64,
    /// Attempts since then that sent no event (reported with the next one).
    pub suppressed: u64,
}

/// A source as the limiter keys it: [`mapped_v6`]'s bytes as two
/// native-endian words (for IPv4 the first word is 0 and only four bytes
/// are read from the packet's copy).
#[inline(always)]
pub fn limiter_key(addr: &crate::IpAddrBytes) -> [u64; 2] {
    match addr {
        crate::IpAddrBytes::V4([a, b, c, d]) => {
            [0, u64::from_ne_bytes([0, 0, 0xff, 0xff, *a, *b, *c, *d])]
        }
        crate::IpAddrBytes::V6(a) => {
            let [w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15] = *a;
            [
                u64::from_ne_bytes([w0, w1, w2, w3, w4, w5, w6, w7]),
                u64::from_ne_bytes([w8, w9, w10, w11, w12, w13, w14, w15]),
            ]
        }
    }
}

/// The limiter slot of a source: a multiplicative (Fibonacci) hash of its
/// two key words, top bits taken (a product's top bits depend on every
/// input bit): two multiplies on the blocked path.
#[inline(always)]
pub fn limiter_slot(key: &[u64; 2]) -> u32 {
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let h = (key[0].wrapping_mul(GOLDEN) ^ key[1]).wrapping_mul(GOLDEN);
    #[expect(clippy::cast_possible_truncation, reason = "at most 32 bits are left")]
    let slot = (h >> (64 - EVENT_LIMITER_SLOTS.trailing_zeros())) as u32;
    slot
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
    unsafe impl aya::Pod for super::PortBitmap {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RuntimeSlots {}
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
        assert_eq!(core::mem::size_of::<RuntimeSlots>(), 32);
        assert_eq!(core::mem::size_of::<BlockEvent>(), 80);
        assert_eq!(core::mem::size_of::<EventLimiter>(), 32);
    }

    /// The key is `mapped_v6`'s bytes, whatever the byte order.
    #[test]
    fn limiter_keys_are_the_mapped_bytes() {
        for addr in [
            crate::IpAddrBytes::V4([100, 64, 1, 2]),
            crate::IpAddrBytes::V6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34]),
        ] {
            let key = limiter_key(&addr);
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&key[0].to_ne_bytes());
            bytes[8..].copy_from_slice(&key[1].to_ne_bytes());
            assert_eq!(bytes, mapped_v6(&addr), "{addr:?}");
        }
    }

    /// Neighbouring subscribers (a /18 of IPv4, a run of IPv6 /64s) spread
    /// over the slots: a flood from one pool does not evict itself.
    #[test]
    fn limiter_slots_spread_neighbours() {
        let slots = EVENT_LIMITER_SLOTS as usize;
        let mut used = [false; EVENT_LIMITER_SLOTS as usize];
        for host in 0..EVENT_LIMITER_SLOTS {
            let addr = crate::IpAddrBytes::V4((0x6440_0000 + host).to_be_bytes());
            used[limiter_slot(&limiter_key(&addr)) as usize] = true;
        }
        let filled = used.iter().filter(|&&u| u).count();
        // A uniform random mapping fills 1 - 1/e (63%) of the slots.
        assert!(filled * 100 >= slots * 60, "IPv4: {filled} of {slots}");
        let mut used = [false; EVENT_LIMITER_SLOTS as usize];
        for net in 0..EVENT_LIMITER_SLOTS {
            let mut a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            // The /64's last 32 bits vary (a run of subscriber /64s).
            a[4..8].copy_from_slice(&net.to_be_bytes());
            used[limiter_slot(&limiter_key(&crate::IpAddrBytes::V6(a))) as usize] = true;
        }
        let filled = used.iter().filter(|&&u| u).count();
        assert!(filled * 100 >= slots * 60, "IPv6: {filled} of {slots}");
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
    fn the_port_bitmap_holds_exactly_the_ports() {
        let ports = BlockedPorts::new(&[25, 587, 65535, 1]).unwrap();
        let bitmap = PortBitmap::from_ports(&ports);
        for port in 0..=u16::MAX {
            assert_eq!(bitmap.contains(port), ports.contains(port), "{port}");
        }
        let listed: [u16; 4] = [1, 25, 587, 65535];
        assert!(bitmap.ports().eq(listed));
    }

    #[test]
    fn counter_indices_stay_in_the_map() {
        let last = counter_index(MAX_INTERFACE_SLOTS - 1, REASON_SLOTS - 1);
        assert_eq!(last, COUNTER_ENTRIES - 1);
        assert!(counter_index(MAX_INTERFACE_SLOTS + 3, 0) < COUNTER_ENTRIES);
    }
}
