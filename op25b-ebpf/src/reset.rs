//! Turns a blocked SYN into the TCP reset that answers it, in place, for
//! XDP_TX: MACs, addresses and ports swapped; VLAN tags and the PPPoE
//! header kept (its length fixed); RST+ACK acknowledging the SYN; checksums
//! computed. The parser marked the frame `resettable` (IPv4 without options
//! or fragmentation, IPv6 without extension headers, whole TCP header).
//!
//! A BPF subprogram taking only the context: it finds the (few, fixed)
//! header offsets itself, so the parser's state need not stay on the stack
//! across the call. Every access goes through a base pointer checked once
//! for the whole header it covers, plus constant offsets: the form the
//! verifier credits.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use op25b_common::parse::{
    ETH_HEADER_LEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ETH_P_PPPOE_SESSION,
    ETH_P_QINQ_9100, IPPROTO_TCP, MAX_VLAN_TAGS, PPP_IPV4, PPP_IPV6,
};

const TCP_HEADER: usize = 20;

/// A pointer to `len` bytes at `offset`, or `None` past the frame's end.
#[inline(always)]
fn window(ctx: &XdpContext, offset: usize, len: usize) -> Option<Bytes> {
    let p = ctx.data() + offset;
    if p + len > ctx.data_end() {
        return None;
    }
    Some(Bytes(p as *mut u8))
}

/// Reads and writes at constant offsets inside a checked window.
#[derive(Clone, Copy)]
struct Bytes(*mut u8);

impl Bytes {
    #[inline(always)]
    fn get(self, i: usize) -> u8 {
        // SAFETY: callers stay inside the window they checked.
        unsafe { *self.0.add(i) }
    }

    #[inline(always)]
    fn get16(self, i: usize) -> u32 {
        (u32::from(self.get(i)) << 8) | u32::from(self.get(i + 1))
    }

    #[inline(always)]
    fn put16(self, i: usize, v: u16) {
        let [hi, lo] = v.to_be_bytes();
        self.set(i, hi);
        self.set(i + 1, lo);
    }

    #[inline(always)]
    fn set(self, i: usize, v: u8) {
        // SAFETY: as above.
        unsafe { *self.0.add(i) = v };
    }

    /// Swaps `T`-sized fields at `a` and `b` with two wide loads.
    #[inline(always)]
    fn swap<T: Copy>(self, a: usize, b: usize) {
        // SAFETY: as above; XDP frames allow unaligned access.
        unsafe {
            let (pa, pb) = (self.0.add(a).cast::<T>(), self.0.add(b).cast::<T>());
            let x = pa.read_unaligned();
            pa.write_unaligned(pb.read_unaligned());
            pb.write_unaligned(x);
        }
    }

    /// One's-complement sum of `words` 16-bit words from `i`.
    #[inline(always)]
    fn sum16(self, i: usize, words: usize) -> u32 {
        let mut sum = 0;
        for w in 0..words {
            sum += self.get16(i + 2 * w);
        }
        sum
    }
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Rewrites the frame into the reset; false if it cannot (then drop).
#[inline(never)]
pub fn answer_with_reset(ctx: &XdpContext) -> bool {
    rewrite(ctx).is_some()
}

/// Where the headers are: (PPPoE header offset if any, network header offset, IPv4?).
#[inline(always)]
fn locate(ctx: &XdpContext) -> Option<(Option<usize>, usize, bool)> {
    let eth = window(ctx, 0, ETH_HEADER_LEN)?;
    let mut ethertype = eth.get16(12) as u16;
    let mut off = ETH_HEADER_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100) {
            break;
        }
        ethertype = window(ctx, off, 4)?.get16(2) as u16;
        off += 4;
    }
    let mut pppoe = None;
    if ethertype == ETH_P_PPPOE_SESSION {
        // Uncompressed protocol field only; a compressed one is not reset.
        ethertype = match window(ctx, off, 8)?.get16(6) as u16 {
            PPP_IPV4 => ETH_P_IPV4,
            PPP_IPV6 => ETH_P_IPV6,
            _ => return None,
        };
        pppoe = Some(off);
        off += 8;
    }
    match ethertype {
        ETH_P_IPV4 if window(ctx, off, 1)?.get(0) == 0x45 => Some((pppoe, off, true)),
        ETH_P_IPV6 if window(ctx, off, 8)?.get(6) == IPPROTO_TCP => Some((pppoe, off, false)),
        _ => None,
    }
}

#[inline(always)]
fn rewrite(ctx: &XdpContext) -> Option<()> {
    let (pppoe, l3, is_v4) = locate(ctx)?;
    let ip_len = if is_v4 { 20 } else { 40 };
    let new_len = l3 + ip_len + TCP_HEADER;
    let old_len = ctx.data_end() - ctx.data();
    if new_len > old_len {
        return None;
    }
    // Trim payload and padding: the reset carries none.
    // SAFETY: shrinking by a bounded, non-negative amount.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, (new_len as i32) - (old_len as i32)) } != 0 {
        return None;
    }
    let eth = window(ctx, 0, 12)?;
    eth.swap::<u32>(0, 6);
    eth.swap::<u16>(4, 10);
    if let Some(pppoe) = pppoe {
        window(ctx, pppoe, 6)?.put16(4, (new_len - pppoe - 6) as u16);
    }
    // Network and TCP header in one checked window.
    let h = window(ctx, l3, ip_len + TCP_HEADER)?;
    let tcp = ip_len;
    // The SYN's data (TCP Fast Open) counts too: ack = seq + 1 + data (RFC 9293).
    let ip_payload = if is_v4 {
        h.get16(2).saturating_sub(20)
    } else {
        h.get16(4)
    };
    let data = ip_payload.saturating_sub(u32::from(h.get(tcp + 12) >> 4) * 4);
    let mut sum: u32 = 6 + TCP_HEADER as u32;
    if is_v4 {
        h.swap::<u32>(12, 16);
        h.put16(2, 40); // total length
        h.put16(4, 0); // identification
        h.put16(6, 0x4000); // don't fragment
        h.set(8, 64); // TTL
        h.put16(10, 0);
        let ip_sum = h.sum16(0, 10);
        h.put16(10, fold(ip_sum));
        sum += h.sum16(12, 4);
    } else {
        h.swap::<u64>(8, 24);
        h.swap::<u64>(16, 32);
        h.put16(4, TCP_HEADER as u16); // payload length
        h.set(7, 64); // hop limit
        sum += h.sum16(8, 16);
    }
    // TCP: ports swapped; seq 0; ack covers the SYN and its data.
    h.swap::<u16>(tcp, tcp + 2);
    let ack = ((h.get16(tcp + 4) << 16) | h.get16(tcp + 6))
        .wrapping_add(1)
        .wrapping_add(data);
    h.put16(tcp + 4, 0);
    h.put16(tcp + 6, 0);
    h.put16(tcp + 8, (ack >> 16) as u16);
    h.put16(tcp + 10, ack as u16);
    h.set(tcp + 12, 5 << 4); // data offset: 20 bytes, no options
    h.set(tcp + 13, 0x14); // RST | ACK
    h.put16(tcp + 14, 0); // window
    h.put16(tcp + 16, 0); // checksum, computed below
    h.put16(tcp + 18, 0); // urgent pointer
    sum += h.sum16(tcp, 10);
    h.put16(tcp + 16, fold(sum));
    Some(())
}
