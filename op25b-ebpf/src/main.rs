//! The op25b XDP program: a thin shell around `op25b_common::decide`.
//!
//! Everything that decides lives in `op25b-common`; this file only binds it
//! to the kernel: the frame reader, the maps, the globals and the counters.
#![no_std]
#![no_main]

mod reset;

use core::{cell::UnsafeCell, ptr};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray, RingBuf},
    programs::XdpContext,
    Global,
};
use op25b_common::{
    abi::{
        counter_index, limiter_slot, mapped_v6, pool_counter_index, BlockEvent, Counter,
        EventLimiter, RuntimeConfig, COUNTER_ATTEMPTS, COUNTER_ENTRIES, COUNTER_EVENTS_EVICTED,
        COUNTER_EVENTS_LOST, COUNTER_EVENTS_SUPPRESSED, EVENTS_RING_BYTES, EVENT_FLAG_PPPOE,
        EVENT_LIMITER_SLOTS, POLICY_MAP_CAPACITY, POOL_COUNTER_ENTRIES,
    },
    judge,
    parse::TcpSegment,
    verdict::NO_POOL,
    Action, IpAddrBytes, PacketBytes, PolicyLookup,
};

// Policy tries; names must match `op25b_common::abi::MAP_*`.
#[map]
static DYNAMIC_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(POLICY_MAP_CAPACITY, 0);
#[map]
static DYNAMIC_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(POLICY_MAP_CAPACITY, 0);
#[map]
static EXEMPT_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(POLICY_MAP_CAPACITY, 0);
#[map]
static EXEMPT_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(POLICY_MAP_CAPACITY, 0);
#[map]
static ALLOWED_DST_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(POLICY_MAP_CAPACITY, 0);
#[map]
static ALLOWED_DST_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(POLICY_MAP_CAPACITY, 0);

/// Packets and bytes per (interface slot, reason), per CPU.
#[map]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

/// Packets and bytes per (pool, reason) for dynamic sources, per CPU.
#[map]
static POOL_COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(POOL_COUNTER_ENTRIES, 0);

/// Blocked connection attempts for user space, rate-limited per source.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);
#[map]
static EVENT_LIMITER: Array<EventLimiter> = Array::with_max_entries(EVENT_LIMITER_SLOTS, 0);

/// Writable by user space at run time (it lives in `.data`); read with a
/// plain load, so checking the port costs no map lookup.
#[repr(transparent)]
struct Mutable<T>(UnsafeCell<T>);
// SAFETY: the program only reads it; user space replaces it whole.
unsafe impl<T> Sync for Mutable<T> {}

#[unsafe(no_mangle)]
static RUNTIME_CONFIG: Mutable<RuntimeConfig> = Mutable(UnsafeCell::new(RuntimeConfig::DEFAULT));

/// Which slot of `COUNTERS` this instance counts in; set at load.
#[unsafe(no_mangle)]
static INTERFACE_SLOT: Global<u32> = Global::new(0);

/// The live frame, read only through a bounds check against `data_end`.
struct Frame<'a>(&'a XdpContext);

impl PacketBytes for Frame<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.0.data() + offset;
        if start + N > self.0.data_end() {
            return None;
        }
        // SAFETY: [start, start + N) was just checked to lie inside the frame.
        Some(unsafe { ptr::read_unaligned(start as *const [u8; N]) })
    }
}

struct KernelPolicy;

#[inline(always)]
fn lookup(v4: &LpmTrie<[u8; 4], u32>, v6: &LpmTrie<[u8; 16], u32>, addr: &IpAddrBytes) -> bool {
    match addr {
        IpAddrBytes::V4(a) => v4.get(Key::new(32, *a)).is_some(),
        IpAddrBytes::V6(a) => v6.get(Key::new(128, *a)).is_some(),
    }
}

impl PolicyLookup for KernelPolicy {
    #[inline(always)]
    fn dynamic_pool(&self, src: &IpAddrBytes) -> Option<u32> {
        // The value is the pool id; copied out at once (a u32, no pointer kept).
        match src {
            IpAddrBytes::V4(a) => DYNAMIC_V4.get(Key::new(32, *a)).copied(),
            IpAddrBytes::V6(a) => DYNAMIC_V6.get(Key::new(128, *a)).copied(),
        }
    }

    #[inline(always)]
    fn is_allowed_destination(&self, dst: &IpAddrBytes) -> bool {
        lookup(&ALLOWED_DST_V4, &ALLOWED_DST_V6, dst)
    }

    #[inline(always)]
    fn is_exempt(&self, src: &IpAddrBytes) -> bool {
        lookup(&EXEMPT_V4, &EXEMPT_V6, src)
    }
}

#[inline(always)]
fn count(slot: u32, cell: u32, packets: u64, bytes: u64) {
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index(slot, cell)) {
        // SAFETY: a per-CPU cell, touched only by this CPU.
        unsafe {
            (*counter).packets += packets;
            (*counter).bytes += bytes;
        }
    }
}

#[xdp]
pub fn op25b(ctx: XdpContext) -> u32 {
    let frame = Frame(&ctx);
    // SAFETY: a plain read of a value user space only ever replaces whole.
    // (By reference, not a copy: the stack is 512 bytes for everything.)
    let config = unsafe { &*RUNTIME_CONFIG.0.get() };
    let (verdict, segment, pool) = judge(&frame, config, &KernelPolicy);
    let slot = INTERFACE_SLOT.load();
    let bytes = frame.len() as u64;
    count(slot, verdict.reason.index(), 1, bytes);
    if pool != NO_POOL {
        count_pool(pool, verdict.reason.index(), bytes);
    }
    if verdict.action == Action::Pass {
        return xdp_action::XDP_PASS;
    }
    let Some(segment) = segment else {
        return verdict.action as u32;
    };
    if segment.connection_attempt {
        count(slot, COUNTER_ATTEMPTS, 1, bytes);
        report(
            &ctx,
            slot,
            verdict.reason.index(),
            &segment,
            config.event_interval_ns,
        );
    }
    if verdict.action == Action::Tx {
        return if reset::answer_with_reset(&ctx) {
            xdp_action::XDP_TX
        } else {
            xdp_action::XDP_DROP
        };
    }
    verdict.action as u32
}

#[inline(always)]
fn count_pool(pool: u32, reason: u32, bytes: u64) {
    let index = pool_counter_index(pool, reason);
    if let Some(counter) = POOL_COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU cell, touched only by this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

/// Sends an event for a blocked attempt unless this source had one less
/// than `interval_ns` ago; suppressed attempts ride along in the next one.
// A BPF subprogram of its own: the event it builds stays off the parser's stack.
#[inline(never)]
fn report(ctx: &XdpContext, slot: u32, reason: u32, segment: &TcpSegment, interval_ns: u64) {
    let src = mapped_v6(&segment.src);
    let Some(state) = EVENT_LIMITER.get_ptr_mut(limiter_slot(&src)) else {
        return;
    };
    // SAFETY: no preconditions; coarse (jiffy) resolution is plenty for a
    // per-second limit and costs far less than the precise clock.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a live array value shared by all CPUs. Updates are plain
    // stores (the BPF target has no atomic add here): CPUs racing on one
    // source can drop a few folded attempts or send an extra event, never
    // corrupt anything.
    unsafe {
        if (*state).src == src {
            if now.wrapping_sub((*state).last_event_ns) < interval_ns {
                (*state).suppressed += 1;
                count(slot, COUNTER_EVENTS_SUPPRESSED, 1, 0);
                return;
            }
        } else if (*state).suppressed > 0 {
            // Another source held the slot: its folded attempts are lost to events.
            count(slot, COUNTER_EVENTS_EVICTED, (*state).suppressed, 0);
            (*state).suppressed = 0;
        }
    }
    // SAFETY: as above.
    let attempts = unsafe {
        let folded = (*state).suppressed;
        (*state).suppressed = 0;
        (*state).src = src;
        (*state).last_event_ns = now;
        1 + folded
    };
    let Some(mut entry) = EVENTS.reserve::<BlockEvent>(0) else {
        count(slot, COUNTER_EVENTS_LOST, 1, 0);
        return;
    };
    let encap = &segment.encap;
    // Field by field into the ring buffer: no 80-byte copy on the stack.
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at the reserved, exclusively owned entry.
    unsafe {
        (*e).monotonic_ns = now;
        (*e).attempts = attempts;
        (*e).ifindex = ctx.ingress_ifindex() as u32;
        (*e).slot = slot;
        (*e).reason = reason;
        (*e).vlan_count = u32::from(encap.vlan_count);
        (*e).src = src;
        (*e).dst = mapped_v6(&segment.dst);
        (*e).src_port = segment.src_port;
        (*e).dst_port = segment.dst_port;
        (*e).vlan_ids = encap.vlan_ids;
        (*e).pppoe_session = encap.pppoe_session;
        (*e).flags = if encap.in_pppoe { EVENT_FLAG_PPPOE } else { 0 };
        (*e).pad = 0;
    }
    entry.submit(0);
}

// Keeps the xdp_action import honest: op25b's actions are the kernel's.
const _: () = assert!(op25b_common::Action::Pass as u32 == xdp_action::XDP_PASS);
const _: () = assert!(op25b_common::Action::Drop as u32 == xdp_action::XDP_DROP);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
