//! Builds the frames op25b is tested with: Ethernet with VLAN/QinQ tags,
//! PPPoE sessions, IPv4 with options and fragments, IPv6 with extension
//! headers, TCP and UDP with valid checksums. The kernel fixture tables, the
//! lab and the benchmarks use it to craft traffic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use op25b_common::parse::{
    ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ETH_P_PPPOE_SESSION, IPPROTO_AH, IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, PPP_IPV4,
    PPP_IPV6,
};
use pnet_packet::{
    ip::IpNextHeaderProtocol,
    tcp::{self, MutableTcpPacket, TcpFlags},
    udp::{self, MutableUdpPacket},
    MutablePacket as _,
};

pub const TCP_SYN: u8 = TcpFlags::SYN;
pub const TCP_ACK: u8 = TcpFlags::ACK;

/// An IPv6 extension header to put before the upper layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    HopByHop,
    Routing,
    DestinationOptions,
    /// Authentication header (length counted in 4-byte units).
    Auth,
    /// Fragment header; `offset` in 8-byte units.
    Fragment {
        offset: u16,
        more: bool,
    },
}

impl Ext {
    const fn protocol(self) -> u8 {
        match self {
            Self::HopByHop => IPPROTO_HOPOPTS,
            Self::Routing => IPPROTO_ROUTING,
            Self::DestinationOptions => IPPROTO_DSTOPTS,
            Self::Auth => IPPROTO_AH,
            Self::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }

    /// The header's bytes (8 for all but AH, which is 12: its minimum with an ICV-less body).
    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Self::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(more);
                let [hi, lo] = field.to_be_bytes();
                vec![next, 0, hi, lo, 0, 0, 0x12, 0x34]
            }
            // Payload length 1 => (1 + 2) * 4 = 12 bytes.
            Self::Auth => vec![next, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
            // Hdr ext len 0 => 8 bytes; PadN option filling the rest.
            _ => vec![next, 0, 1, 4, 0, 0, 0, 0],
        }
    }
}

/// The transport layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// Any other protocol number with opaque bytes.
    Other {
        protocol: u8,
        bytes: Vec<u8>,
    },
}

/// Everything about a frame a test wants to vary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Outermost first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    /// PPPoE session id, when the IP packet rides in a PPPoE session.
    pub pppoe_session: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 options (padded to 4 bytes); ignored for IPv6.
    pub ipv4_options: Vec<u8>,
    /// IPv4 fragment: (offset in 8-byte units, more fragments).
    pub ipv4_fragment: Option<(u16, bool)>,
    pub ipv6_ext: Vec<Ext>,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

impl FrameSpec {
    /// A TCP SYN from `src` to `dst`:`dst_port`, plain Ethernet.
    pub fn tcp_syn(src: IpAddr, dst: IpAddr, dst_port: u16) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlans: Vec::new(),
            pppoe_session: None,
            src,
            dst,
            ipv4_options: Vec::new(),
            ipv4_fragment: None,
            ipv6_ext: Vec::new(),
            transport: Transport::Tcp {
                src_port: 40000,
                dst_port,
                flags: TCP_SYN,
            },
            payload: Vec::new(),
        }
    }

    #[must_use]
    pub fn vlan(mut self, tpid: u16, id: u16) -> Self {
        self.vlans.push((tpid, id));
        self
    }

    #[must_use]
    pub fn dot1q(self, id: u16) -> Self {
        self.vlan(ETH_P_8021Q, id)
    }

    #[must_use]
    pub fn pppoe(mut self, session: u16) -> Self {
        self.pppoe_session = Some(session);
        self
    }

    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    #[must_use]
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        self
    }

    #[must_use]
    pub fn ipv4_fragment(mut self, offset: u16, more: bool) -> Self {
        self.ipv4_fragment = Some((offset, more));
        self
    }

    #[must_use]
    pub fn ipv6_ext(mut self, ext: &[Ext]) -> Self {
        self.ipv6_ext = ext.to_vec();
        self
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let l4 = self.transport_bytes();
        let (l3, ethertype, ppp_protocol) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (self.ipv4(s, d, &l4), ETH_P_IPV4, PPP_IPV4),
            (IpAddr::V6(s), IpAddr::V6(d)) => (self.ipv6(s, d, &l4), ETH_P_IPV6, PPP_IPV6),
            _ => panic!("source and destination must be of one family"),
        };
        let mut frame = Vec::with_capacity(l3.len() + 40);
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        for &(tpid, id) in &self.vlans {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        match self.pppoe_session {
            Some(session) => {
                frame.extend_from_slice(&ETH_P_PPPOE_SESSION.to_be_bytes());
                let length = u16::try_from(l3.len() + 2).expect("frame fits PPPoE");
                frame.extend_from_slice(&[0x11, 0x00]);
                frame.extend_from_slice(&session.to_be_bytes());
                frame.extend_from_slice(&length.to_be_bytes());
                frame.extend_from_slice(&ppp_protocol.to_be_bytes());
            }
            None => frame.extend_from_slice(&ethertype.to_be_bytes()),
        }
        frame.extend_from_slice(&l3);
        frame
    }

    fn protocol(&self) -> u8 {
        match &self.transport {
            Transport::Tcp { .. } => IPPROTO_TCP,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Other { protocol, .. } => *protocol,
        }
    }

    /// The transport header and payload, checksummed for the pseudo-header.
    fn transport_bytes(&self) -> Vec<u8> {
        match &self.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                let mut buf = vec![0u8; 20 + self.payload.len()];
                let mut tcp = MutableTcpPacket::new(&mut buf).expect("buffer fits a TCP header");
                tcp.set_source(*src_port);
                tcp.set_destination(*dst_port);
                tcp.set_sequence(0x1000_0000);
                tcp.set_acknowledgement(if flags & TCP_ACK != 0 { 0x2000_0000 } else { 0 });
                tcp.set_data_offset(5);
                tcp.set_flags(*flags);
                tcp.set_window(64240);
                tcp.set_payload(&self.payload);
                let checksum = match (self.src, self.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        tcp::ipv4_checksum(&tcp.to_immutable(), &s, &d)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        tcp::ipv6_checksum(&tcp.to_immutable(), &s, &d)
                    }
                    _ => 0,
                };
                tcp.set_checksum(checksum);
                buf
            }
            Transport::Udp { src_port, dst_port } => {
                let mut buf = vec![0u8; 8 + self.payload.len()];
                let mut udp = MutableUdpPacket::new(&mut buf).expect("buffer fits a UDP header");
                udp.set_source(*src_port);
                udp.set_destination(*dst_port);
                udp.set_length(u16::try_from(8 + self.payload.len()).expect("UDP fits"));
                udp.set_payload(&self.payload);
                let checksum = match (self.src, self.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        udp::ipv4_checksum(&udp.to_immutable(), &s, &d)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        udp::ipv6_checksum(&udp.to_immutable(), &s, &d)
                    }
                    _ => 0,
                };
                udp.set_checksum(checksum);
                buf
            }
            Transport::Other { bytes, .. } => {
                let mut buf = bytes.clone();
                buf.extend_from_slice(&self.payload);
                buf
            }
        }
    }

    fn ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
        use pnet_packet::ipv4::{checksum, MutableIpv4Packet};
        let mut options = self.ipv4_options.clone();
        options.resize(options.len().div_ceil(4) * 4, 0);
        let header_len = 20 + options.len();
        let mut buf = vec![0u8; header_len + l4.len()];
        let mut ip = MutableIpv4Packet::new(&mut buf).expect("buffer fits an IPv4 header");
        ip.set_version(4);
        ip.set_header_length(u8::try_from(header_len / 4).expect("options fit IHL"));
        ip.set_total_length(u16::try_from(header_len + l4.len()).expect("packet fits IPv4"));
        ip.set_identification(0x4242);
        let (offset, more) = self.ipv4_fragment.unwrap_or((0, false));
        ip.set_fragment_offset(offset);
        ip.set_flags(u8::from(more));
        ip.set_ttl(64);
        ip.set_next_level_protocol(IpNextHeaderProtocol(self.protocol()));
        ip.set_source(src);
        ip.set_destination(dst);
        ip.packet_mut()[20..header_len].copy_from_slice(&options);
        let sum = checksum(&ip.to_immutable());
        ip.set_checksum(sum);
        buf[header_len..].copy_from_slice(l4);
        buf
    }

    fn ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
        use pnet_packet::ipv6::MutableIpv6Packet;
        let mut chain = Vec::new();
        for (i, ext) in self.ipv6_ext.iter().enumerate() {
            let next = self
                .ipv6_ext
                .get(i + 1)
                .map_or(self.protocol(), |e| e.protocol());
            chain.extend_from_slice(&ext.bytes(next));
        }
        let first = self
            .ipv6_ext
            .first()
            .map_or(self.protocol(), |e| e.protocol());
        let mut buf = vec![0u8; 40 + chain.len() + l4.len()];
        let mut ip = MutableIpv6Packet::new(&mut buf).expect("buffer fits an IPv6 header");
        ip.set_version(6);
        ip.set_payload_length(u16::try_from(chain.len() + l4.len()).expect("packet fits IPv6"));
        ip.set_next_header(IpNextHeaderProtocol(first));
        ip.set_hop_limit(64);
        ip.set_source(src);
        ip.set_destination(dst);
        buf[40..40 + chain.len()].copy_from_slice(&chain);
        buf[40 + chain.len()..].copy_from_slice(l4);
        buf
    }
}

#[cfg(test)]
mod tests {
    use op25b_common::{parse::parse, parse::Parsed};

    use super::*;

    #[test]
    fn built_frames_parse_to_their_port() {
        let src: IpAddr = "100.64.1.2".parse().unwrap();
        let dst: IpAddr = "198.51.100.25".parse().unwrap();
        for spec in [
            FrameSpec::tcp_syn(src, dst, 25),
            FrameSpec::tcp_syn(src, dst, 25).dot1q(10).dot1q(20),
            FrameSpec::tcp_syn(src, dst, 25).dot1q(10).pppoe(7),
            FrameSpec::tcp_syn(src, dst, 25).ipv4_options(&[1, 1, 1, 1, 7, 7, 4, 0]),
        ] {
            match parse(spec.build().as_slice()) {
                Parsed::Tcp(seg) => assert_eq!(seg.known_dst_port(), Some(25), "{spec:?}"),
                other @ Parsed::Decided(_) => panic!("{spec:?} parsed as {other:?}"),
            }
        }
    }
}
