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
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
    programs::XdpContext,
    Global,
};
use op25b_common::{
    abi::{
        counter_index, limiter_key, limiter_slot, mapped_v6, pool_counter_index, slash24,
        BlockEvent, Counter, EventLimiter, PoolAction, PortBitmap, RuntimeConfig, RuntimeSlots,
        BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, CLASS_V4_BLOCK_CAPACITY, CLASS_V4_CHUNK,
        CLASS_V4_CHUNKS, COUNTER_ATTEMPTS, COUNTER_ENTRIES, COUNTER_EVENTS_EVICTED,
        COUNTER_EVENTS_LOST, COUNTER_EVENTS_SUPPRESSED, EVENTS_RING_BYTES, EVENT_FLAG_PPPOE,
        EVENT_LIMITER_SLOTS, LISTS_V4_CAPACITY, MAX_POOLS, POLICY_MAP_CAPACITY,
        POOL_COUNTER_ENTRIES,
    },
    fast_pass::fast_pass,
    judge,
    parse::TcpSegment,
    verdict::{judge_fully, NO_POOL},
    Action, IpAddrBytes, PacketBytes, PolicyLookup, Rules, SourceClass, Verdict,
};

// Policy maps; names must match `op25b_common::abi::MAP_*`.
/// IPv4 source class per /24 (DIR-24-8 first level), written by user space
/// through mmap.
#[map]
static CLASS_V4: Array<[u8; CLASS_V4_CHUNK]> =
    Array::with_max_entries(CLASS_V4_CHUNKS, BPF_F_MMAPABLE);
/// Per-address classes of the /24s that need them.
#[map]
static CLASS_V4_BLOCKS: HashMap<u32, [u8; 256]> =
    HashMap::with_max_entries(CLASS_V4_BLOCK_CAPACITY, BPF_F_NO_PREALLOC);
/// The operator's IPv4 lists, for user space only.
#[map]
static LISTS_V4: Array<u64> = Array::with_max_entries(LISTS_V4_CAPACITY, BPF_F_MMAPABLE);
/// IPv6 source class: dynamic and exempt lists in one trie.
#[map]
static CLASS_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(POLICY_MAP_CAPACITY, 0);
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

/// The blocked ports, one bit each; a packet reads the one byte of its port.
#[unsafe(no_mangle)]
static BLOCKED_PORT_BITS: Mutable<PortBitmap> = Mutable(UnsafeCell::new(PortBitmap::from_ports(
    &op25b_common::BlockedPorts::SMTP,
)));

/// Event interval and pool actions, read only for blocked attempts.
#[map]
static RUNTIME: Array<RuntimeSlots> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// The run-time rules as the kernel holds them.
struct KernelRules<'a>(&'a PortBitmap);

impl Rules for KernelRules<'_> {
    #[inline(always)]
    fn is_blocked_port(&self, port: u16) -> bool {
        self.0.contains(port)
    }

    #[inline(always)]
    fn pool_action(&self, pool: u32) -> PoolAction {
        match RUNTIME.get(0) {
            // SAFETY: one byte, which user space stores whole.
            Some(slots) => PoolAction::from_u8(unsafe {
                ptr::read_volatile(&slots.pool_actions[pool as usize % MAX_POOLS])
            }),
            None => PoolAction::Drop,
        }
    }
}

/// The event interval: one aligned 8-byte load of a slot user space stores
/// with one atomic store.
#[inline(always)]
fn event_interval_ns() -> u64 {
    match RUNTIME.get(0) {
        // SAFETY: as above.
        Some(slots) => unsafe { ptr::read_volatile(&slots.event_interval_ns) },
        None => RuntimeConfig::DEFAULT.event_interval_ns,
    }
}

/// Which slot of `COUNTERS` this instance counts in; set at load.
#[unsafe(no_mangle)]
static INTERFACE_SLOT: Global<u32> = Global::new(0);

/// A frame held in one buffer, read only through a bounds check against
/// `data_end` (the verifier's form: no helper calls on this path).
struct Frame<'a>(&'a XdpContext);

impl PacketBytes for Frame<'_> {
    const READS_IN_PLACE: bool = true;

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

/// A multi-buffer (jumbo) frame, every read copied with
/// `bpf_xdp_load_bytes`, which walks the fragments (and fails past the end).
struct FragmentedFrame<'a> {
    ctx: &'a XdpContext,
    len: usize,
}

impl PacketBytes for FragmentedFrame<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let mut bytes = [0u8; N];
        // SAFETY: `bytes` is N writable bytes on our stack.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                self.ctx.ctx,
                offset as u32,
                bytes.as_mut_ptr().cast(),
                N as u32,
            )
        };
        (rc == 0).then_some(bytes)
    }
}

struct KernelPolicy;

/// The class of an IPv4 source: one array read, and a hash lookup only in
/// the /24s whose class varies inside.
#[inline(always)]
fn class_v4(addr: [u8; 4]) -> SourceClass {
    let n = slash24(addr);
    let Some(chunk) = CLASS_V4.get(n / CLASS_V4_CHUNK as u32) else {
        return SourceClass::NEITHER;
    };
    let first = chunk[n as usize % CLASS_V4_CHUNK];
    if first & SourceClass::INDIRECT == 0 {
        return SourceClass(first);
    }
    // SAFETY: a plain read of a value the kernel replaces whole (RCU).
    match unsafe { CLASS_V4_BLOCKS.get(&n) } {
        Some(block) => SourceClass(block[usize::from(addr[3])]),
        // Only if user space retired the block between our two reads: the
        // class of the prefixes covering the whole /24.
        None => SourceClass(first & !SourceClass::INDIRECT),
    }
}

impl PolicyLookup for KernelPolicy {
    #[inline(always)]
    fn source_class(&self, src: &IpAddrBytes) -> SourceClass {
        match src {
            IpAddrBytes::V4(a) => class_v4(*a),
            // The low byte is the class; copied out at once (no pointer kept).
            #[expect(clippy::cast_possible_truncation, reason = "the class byte")]
            IpAddrBytes::V6(a) => CLASS_V6
                .get(Key::new(128, *a))
                .map_or(SourceClass::NEITHER, |&v| SourceClass(v as u8)),
        }
    }

    #[inline(always)]
    fn is_allowed_destination(&self, dst: &IpAddrBytes) -> bool {
        match dst {
            IpAddrBytes::V4(a) => ALLOWED_DST_V4.get(Key::new(32, *a)).is_some(),
            IpAddrBytes::V6(a) => ALLOWED_DST_V6.get(Key::new(128, *a)).is_some(),
        }
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

/// For interfaces whose MTU fits one buffer (the agent's first choice):
/// loaded without `xdp.frags`, the kernel only ever hands it linear frames,
/// so the whole path is inline, with no helper call before the parse.
#[xdp]
pub fn op25b_one_buffer(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    // The common case leaves here, on a path of its own: the full judgement
    // is a subprogram, so none of its state is carried through this one.
    if let Some(reason) = fast_pass(&Frame(&ctx), &blocked_ports()) {
        count(INTERFACE_SLOT.load(), reason.index(), 1, bytes);
        // Every reason the shortcut gives passes (op25b-common/tests/fast_pass.rs).
        return xdp_action::XDP_PASS;
    }
    judged_fully(&ctx, bytes)
}

#[inline(never)]
fn judged_fully(ctx: &XdpContext, bytes: u64) -> u32 {
    handle(ctx, &Frame(ctx), bytes, judge_fully)
}

/// Loaded frags-aware (`xdp.frags`), so it attaches in driver mode on
/// interfaces with a jumbo MTU. A frame in one buffer is parsed with direct
/// reads; a multi-buffer one by the same parser over `bpf_xdp_load_bytes`.
/// Each path is its own subprogram, so neither pays for the other and the
/// stack stays within 512 bytes.
#[xdp(frags)]
pub fn op25b(ctx: XdpContext) -> u32 {
    // SAFETY: the context is the live one.
    let total = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    if total == (ctx.data_end() - ctx.data()) as u64 {
        one_buffer(&ctx, total)
    } else {
        fragmented(&ctx, total)
    }
}

#[inline(never)]
fn one_buffer(ctx: &XdpContext, bytes: u64) -> u32 {
    handle(ctx, &Frame(ctx), bytes, judge)
}

#[inline(never)]
fn fragmented(ctx: &XdpContext, bytes: u64) -> u32 {
    let frame = FragmentedFrame {
        ctx,
        len: bytes as usize,
    };
    handle(ctx, &frame, bytes, judge)
}

/// The blocked ports as the verdict reads them.
#[inline(always)]
fn blocked_ports() -> KernelRules<'static> {
    // SAFETY: read one byte at a time (see `BLOCKED_PORT_BITS`).
    // (By reference, not a copy: the stack is 512 bytes for everything.)
    KernelRules(unsafe { &*BLOCKED_PORT_BITS.0.get() })
}

/// How a frame is judged: `op25b_common::judge` or `judge_fully`.
type Judge<F> = fn(&F, &KernelRules<'static>, &KernelPolicy) -> (Verdict, Option<TcpSegment>, u32);

/// Judges, counts and acts on one frame of `bytes` bytes.
#[inline(always)]
fn handle<F: PacketBytes>(ctx: &XdpContext, frame: &F, bytes: u64, judge: Judge<F>) -> u32 {
    let (verdict, segment, pool) = judge(frame, &blocked_ports(), &KernelPolicy);
    let slot = INTERFACE_SLOT.load();
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
            ctx,
            slot,
            verdict.reason.index(),
            &segment,
            event_interval_ns(),
        );
    }
    if verdict.action == Action::Tx {
        return if reset::answer_with_reset(ctx) {
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
    let key = limiter_key(&segment.src);
    let Some(state) = EVENT_LIMITER.get_ptr_mut(limiter_slot(&key)) else {
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
        if (*state).src == key {
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
        (*state).src = key;
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
        (*e).src = mapped_v6(&segment.src);
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
