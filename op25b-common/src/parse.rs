//! Parses the frames carriers see on subscriber links down to the TCP
//! destination port.
//!
//! Written for the verifier as much as for people: every read goes through
//! [`PacketBytes::read`], loops have constant bounds, offsets stay bounded by
//! construction (at most [`MAX_L4_OFFSET`]), nothing indexes or panics.

use crate::{packet::PacketBytes, reason::Reason, verdict::IpAddrBytes};

pub const ETH_HEADER_LEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still common on older BRAS gear.
pub const ETH_P_QINQ_9100: u16 = 0x9100;
pub const ETH_P_PPPOE_DISCOVERY: u16 = 0x8863;
pub const ETH_P_PPPOE_SESSION: u16 = 0x8864;
pub const PPP_IPV4: u16 = 0x0021;
pub const PPP_IPV6: u16 = 0x0057;
/// VLAN tags parsed before giving up with `not_ip` (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_DSTOPTS: u8 = 60;
/// IPv6 extension headers walked before the packet is `undecidable`.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
pub(crate) const IPV4_FRAGMENT_OFFSET_MASK: u16 = 0x1fff;
/// Ethernet + 2 tags + PPPoE/PPP + IPv6 + 8 extension headers of the largest
/// size (2,048 bytes each). Keeps every offset provably small for the verifier.
pub const MAX_L4_OFFSET: usize = ETH_HEADER_LEN + 8 + 8 + IPV6_HEADER_LEN + 8 * 2048;

/// Where the parser stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Decided without policy: `not_ip`, `malformed`, `not_tcp` or `fragment`.
    Decided(Reason),
    /// A TCP segment (or first fragment) whose fate depends on port and policy.
    Tcp(TcpSegment),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub src: IpAddrBytes,
    pub dst: IpAddrBytes,
    /// False when the ports lie beyond what this frame (a first fragment)
    /// carries or beyond the parsing limits: the packet is undecidable.
    /// (A flag beside plain integers, not `Option<u16>`: LLVM fills a
    /// `None`'s payload with whatever register is at hand, a packet pointer
    /// included, and the verifier refuses the masking that follows.)
    pub ports_readable: bool,
    pub dst_port: u16,
    pub src_port: u16,
    /// A SYN without ACK, or a segment whose flags lie beyond the frame
    /// (a short first fragment: counted as an attempt, failing closed).
    pub connection_attempt: bool,
    /// A SYN without ACK with its whole TCP header, in a plain network
    /// header (IPv4 without options or fragmentation, IPv6 without extension
    /// headers) and, under PPPoE, a two-byte PPP protocol field: one a reset
    /// can answer in place.
    pub resettable: bool,
    /// Where the subscriber sits: tags and PPPoE session (for evidence).
    pub encap: Encap,
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// The layer-2 path of a frame: VLAN ids outermost first (0 when absent)
/// and the PPPoE session id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encap {
    pub vlan_ids: [u16; MAX_VLAN_TAGS],
    pub vlan_count: u8,
    pub in_pppoe: bool,
    pub pppoe_session: u16,
    /// The PPP protocol field is the compressed one-byte form: the reset
    /// is built only for the two-byte form, so such a SYN is not resettable.
    pub compressed_ppp_protocol: bool,
}

impl TcpSegment {
    /// The destination port, if the frame holds it.
    pub fn known_dst_port(&self) -> Option<u16> {
        self.ports_readable.then_some(self.dst_port)
    }
}

/// Does the frame hold byte `at` (at >= 1)? Asked as a two-byte read
/// ending there: LLVM may turn a one-byte bounds check (`p + 1 > end`)
/// into `p >= end`, a form the verifier credits no range for.
#[inline(always)]
fn has_byte<P: PacketBytes + ?Sized>(pkt: &P, at: usize) -> bool {
    pkt.read::<2>(at - 1).is_some()
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Where the network layer starts and which one it is.
enum Link {
    Ipv4(usize, Encap),
    Ipv6(usize, Encap),
    Decided(Reason),
}

#[inline(always)]
pub fn parse<P: PacketBytes + ?Sized>(pkt: &P) -> Parsed {
    match parse_link(pkt) {
        Link::Ipv4(off, encap) => parse_ipv4(pkt, off, encap),
        Link::Ipv6(off, encap) => parse_ipv6(pkt, off, encap),
        Link::Decided(reason) => Parsed::Decided(reason),
    }
}

#[inline(always)]
fn parse_link<P: PacketBytes + ?Sized>(pkt: &P) -> Link {
    let Some(ethertype) = pkt.read::<2>(12) else {
        return Link::Decided(Reason::Malformed);
    };
    let mut ethertype = be16(ethertype);
    let mut off = ETH_HEADER_LEN;
    let mut encap = Encap::default();
    for slot in 0..MAX_VLAN_TAGS {
        if !is_vlan_tpid(ethertype) {
            break;
        }
        // Tag control (2 bytes) then the next ethertype.
        let Some(tag) = pkt.read::<4>(off) else {
            return Link::Decided(Reason::Malformed);
        };
        encap.vlan_ids[slot] = be16([tag[0], tag[1]]) & 0x0fff;
        encap.vlan_count += 1;
        ethertype = be16([tag[2], tag[3]]);
        off += 4;
    }
    match ethertype {
        ETH_P_IPV4 => Link::Ipv4(off, encap),
        ETH_P_IPV6 => Link::Ipv6(off, encap),
        ETH_P_PPPOE_SESSION => parse_pppoe_session(pkt, off, encap),
        // A third tag, PPPoE discovery, ARP, LLDP, MPLS, ...
        _ => Link::Decided(Reason::NotIp),
    }
}

#[inline(always)]
pub(crate) fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100)
}

/// PPPoE session header (ver/type, code, session id, length: 6 bytes), then
/// the PPP protocol. A protocol whose first byte is odd is a compressed
/// one-byte field (PFC, RFC 1661 §6.5): parsing it keeps such frames from
/// slipping past as `not_ip`.
#[inline(always)]
fn parse_pppoe_session<P: PacketBytes + ?Sized>(pkt: &P, off: usize, mut encap: Encap) -> Link {
    let Some(head) = pkt.read::<7>(off) else {
        return Link::Decided(Reason::Malformed);
    };
    encap.in_pppoe = true;
    encap.pppoe_session = be16([head[2], head[3]]);
    let (protocol, l3) = if head[6] & 1 == 1 {
        encap.compressed_ppp_protocol = true;
        (u16::from(head[6]), off + 7)
    } else {
        let Some([_, low]) = pkt.read::<2>(off + 6) else {
            return Link::Decided(Reason::Malformed);
        };
        (be16([head[6], low]), off + 8)
    };
    match protocol {
        PPP_IPV4 => Link::Ipv4(l3, encap),
        PPP_IPV6 => Link::Ipv6(l3, encap),
        _ => Link::Decided(Reason::NotIp),
    }
}

#[inline(always)]
fn parse_ipv4<P: PacketBytes + ?Sized>(pkt: &P, off: usize, encap: Encap) -> Parsed {
    let Some(h) = pkt.read::<IPV4_MIN_HEADER_LEN>(off) else {
        return Parsed::Decided(Reason::Malformed);
    };
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(be16([h[2], h[3]]));
    if h[0] >> 4 != 4 || header_len < IPV4_MIN_HEADER_LEN || total_len < header_len {
        return Parsed::Decided(Reason::Malformed);
    }
    // Options must be there too; the last byte of the header proves it.
    if !has_byte(pkt, off + header_len - 1) {
        return Parsed::Decided(Reason::Malformed);
    }
    if h[9] != IPPROTO_TCP {
        return Parsed::Decided(Reason::NotTcp);
    }
    let fragment = be16([h[6], h[7]]);
    if fragment & IPV4_FRAGMENT_OFFSET_MASK != 0 {
        return Parsed::Decided(Reason::Fragment);
    }
    let is_first_fragment = fragment & IPV4_MORE_FRAGMENTS != 0;
    let src = IpAddrBytes::V4([h[12], h[13], h[14], h[15]]);
    let dst = IpAddrBytes::V4([h[16], h[17], h[18], h[19]]);
    let plain = header_len == IPV4_MIN_HEADER_LEN && !is_first_fragment;
    tcp_ports(
        pkt,
        off + header_len,
        (src, dst),
        (is_first_fragment, plain),
        encap,
    )
}

/// Reads the destination port. A segment cut before it is `malformed`, unless
/// it is a first fragment, where the rest is elsewhere: undecidable.
#[inline(always)]
fn tcp_ports<P: PacketBytes + ?Sized>(
    pkt: &P,
    off: usize,
    (src, dst): (IpAddrBytes, IpAddrBytes),
    (is_first_fragment, plain_l3): (bool, bool),
    encap: Encap,
) -> Parsed {
    let Some(ports) = pkt.read::<4>(off) else {
        return if is_first_fragment {
            unreadable(src, dst, encap)
        } else {
            Parsed::Decided(Reason::Malformed)
        };
    };
    // Decided here, not carried as Option<u8>: LLVM would otherwise keep
    // the packet pointer around and mask it, which the verifier refuses.
    let (connection_attempt, syn_only) = match pkt.read::<2>(off + 12) {
        Some([_, flags]) => {
            let syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
            (syn, syn)
        }
        None => (true, false),
    };
    let resettable =
        syn_only && plain_l3 && !encap.compressed_ppp_protocol && has_byte(pkt, off + 19);
    Parsed::Tcp(TcpSegment {
        src,
        dst,
        ports_readable: true,
        dst_port: be16([ports[2], ports[3]]),
        src_port: be16([ports[0], ports[1]]),
        connection_attempt,
        resettable,
        encap,
    })
}

/// A TCP segment whose ports are out of reach: undecidable.
#[inline(always)]
fn unreadable(src: IpAddrBytes, dst: IpAddrBytes, encap: Encap) -> Parsed {
    Parsed::Tcp(TcpSegment {
        src,
        dst,
        ports_readable: false,
        dst_port: 0,
        src_port: 0,
        connection_attempt: true,
        resettable: false,
        encap,
    })
}

#[inline(always)]
pub(crate) fn is_ipv6_extension(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_DSTOPTS | IPPROTO_AH
    )
}

#[inline(always)]
fn parse_ipv6<P: PacketBytes + ?Sized>(pkt: &P, off: usize, encap: Encap) -> Parsed {
    let Some(h) = pkt.read::<IPV6_HEADER_LEN>(off) else {
        return Parsed::Decided(Reason::Malformed);
    };
    if h[0] >> 4 != 6 {
        return Parsed::Decided(Reason::Malformed);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let (src, dst) = (IpAddrBytes::V6(src), IpAddrBytes::V6(dst));

    let mut next = h[6];
    let mut off = off + IPV6_HEADER_LEN;
    let mut is_first_fragment = false;
    // One more pass than the limit: the last may only find the upper layer.
    for walked in 0..=MAX_IPV6_EXT_HEADERS {
        if next == IPPROTO_TCP {
            return tcp_ports(
                pkt,
                off,
                (src, dst),
                (is_first_fragment, walked == 0),
                encap,
            );
        }
        if !is_ipv6_extension(next) {
            return Parsed::Decided(Reason::NotTcp);
        }
        if walked == MAX_IPV6_EXT_HEADERS {
            break;
        }
        // Every extension header starts with (next header, length).
        let Some(ext) = pkt.read::<4>(off) else {
            return truncated_ipv6(src, dst, is_first_fragment, encap);
        };
        let header_len = match next {
            IPPROTO_FRAGMENT => {
                let fragment_offset = be16([ext[2], ext[3]]) >> 3;
                if fragment_offset != 0 {
                    // Only the fragment's own first header is known.
                    return Parsed::Decided(
                        if ext[0] == IPPROTO_TCP || is_ipv6_extension(ext[0]) {
                            Reason::Fragment
                        } else {
                            Reason::NotTcp
                        },
                    );
                }
                is_first_fragment = true;
                8
            }
            IPPROTO_AH => (usize::from(ext[1]) + 2) * 4,
            _ => (usize::from(ext[1]) + 1) * 8,
        };
        // The whole header must be in the frame, as the kernel requires.
        if !has_byte(pkt, off + header_len - 1) {
            return truncated_ipv6(src, dst, is_first_fragment, encap);
        }
        next = ext[0];
        off += header_len;
    }
    // More extension headers than we walk: fail closed, for dynamic sources only.
    unreadable(src, dst, encap)
}

/// An extension header chain cut short: broken in a whole packet, but in a
/// first fragment the upper layer may simply be in the next one.
#[inline(always)]
fn truncated_ipv6(
    src: IpAddrBytes,
    dst: IpAddrBytes,
    is_first_fragment: bool,
    encap: Encap,
) -> Parsed {
    if is_first_fragment {
        unreadable(src, dst, encap)
    } else {
        Parsed::Decided(Reason::Malformed)
    }
}
