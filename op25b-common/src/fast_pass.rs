//! The pass path's shortcut. Most frames an edge router sees pass without
//! a policy lookup: TCP to a port that is not blocked, UDP and other
//! protocols, later fragments, non-IP. In plain Ethernet with a plain IP
//! header the reason is known from a handful of header bytes, so
//! [`crate::judge`] asks here first, before the full parse builds a
//! segment. Anything else (VLAN tags, PPPoE, IPv4 options, IPv6 extension
//! headers, short or odd headers, blocked ports) goes the full way, which
//! decides every frame this decides the same way (`tests/fast_pass.rs`
//! checks it on arbitrary bytes, the differential test in the kernel).

use crate::{
    packet::PacketBytes,
    parse::{
        is_ipv6_extension, is_vlan_tpid, ETH_HEADER_LEN, ETH_P_IPV4, ETH_P_IPV6,
        ETH_P_PPPOE_SESSION, IPPROTO_TCP, IPV4_FRAGMENT_OFFSET_MASK,
    },
    reason::Reason,
    verdict::Rules,
};

const IPV4_HEADER_END: usize = ETH_HEADER_LEN + 20;
const IPV6_HEADER_END: usize = ETH_HEADER_LEN + 40;

/// The reason for a frame that passes without a policy lookup, when it is
/// known from its first bytes; `None` means "ask the full parse", not
/// "blocked".
#[inline(always)]
pub fn fast_pass<P, R>(pkt: &P, rules: &R) -> Option<Reason>
where
    P: PacketBytes + ?Sized,
    R: Rules + ?Sized,
{
    let [t0, t1] = pkt.read::<2>(12)?;
    match u16::from_be_bytes([t0, t1]) {
        ETH_P_IPV4 => plain_ipv4(pkt, rules),
        ETH_P_IPV6 => plain_ipv6(pkt, rules),
        ETH_P_PPPOE_SESSION => None,
        tpid if is_vlan_tpid(tpid) => None,
        // ARP, LLDP, MPLS, PPPoE discovery, ...
        _ => Some(Reason::NotIp),
    }
}

#[inline(always)]
fn plain_ipv4<P: PacketBytes + ?Sized, R: Rules + ?Sized>(pkt: &P, rules: &R) -> Option<Reason> {
    let h = pkt.read::<IPV4_HEADER_END>(0)?;
    // Version 4, a 20-byte header, and a total length that holds it.
    if h[14] != 0x45 || u16::from_be_bytes([h[16], h[17]]) < 20 {
        return None;
    }
    if h[23] != IPPROTO_TCP {
        return Some(Reason::NotTcp);
    }
    // A fragment offset is a later fragment; a first fragment (MF set,
    // offset 0) holds its ports here and is decided by them.
    if u16::from_be_bytes([h[20], h[21]]) & IPV4_FRAGMENT_OFFSET_MASK != 0 {
        return Some(Reason::Fragment);
    }
    tcp_to_open_port(pkt, IPV4_HEADER_END, rules)
}

#[inline(always)]
fn plain_ipv6<P: PacketBytes + ?Sized, R: Rules + ?Sized>(pkt: &P, rules: &R) -> Option<Reason> {
    let h = pkt.read::<IPV6_HEADER_END>(0)?;
    if h[14] >> 4 != 6 {
        return None;
    }
    match h[20] {
        IPPROTO_TCP => tcp_to_open_port(pkt, IPV6_HEADER_END, rules),
        // Extension headers: the full parse walks them.
        next if is_ipv6_extension(next) => None,
        _ => Some(Reason::NotTcp),
    }
}

#[inline(always)]
fn tcp_to_open_port<P: PacketBytes + ?Sized, R: Rules + ?Sized>(
    pkt: &P,
    off: usize,
    rules: &R,
) -> Option<Reason> {
    // The destination port only (the source port sits before it).
    let port = u16::from_be_bytes(pkt.read::<2>(off + 2)?);
    (!rules.is_blocked_port(port)).then_some(Reason::NotSmtp)
}
