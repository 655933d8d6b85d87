//! The one frame production code builds: the TCP SYN `explain` runs
//! through the program (plain Ethernet, valid checksums).

use std::net::IpAddr;

use op25b_common::parse::{ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP};
use pnet_packet::{
    ip::IpNextHeaderProtocol,
    ipv4::{self, MutableIpv4Packet},
    ipv6::MutableIpv6Packet,
    tcp::{self, MutableTcpPacket, TcpFlags},
};

const TCP_HEADER: usize = 20;
const SOURCE_PORT: u16 = 40_000;

/// A SYN from `src` to `dst`:`dst_port`; both of one address family.
pub fn tcp_syn(src: IpAddr, dst: IpAddr, dst_port: u16) -> Vec<u8> {
    let mut segment = vec![0u8; TCP_HEADER];
    let mut tcp = MutableTcpPacket::new(&mut segment).expect("buffer fits a TCP header");
    tcp.set_source(SOURCE_PORT);
    tcp.set_destination(dst_port);
    tcp.set_sequence(1);
    tcp.set_data_offset(5);
    tcp.set_flags(TcpFlags::SYN);
    tcp.set_window(64_240);
    let (ethertype, packet) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let sum = tcp::ipv4_checksum(&tcp.to_immutable(), &s, &d);
            tcp.set_checksum(sum);
            let mut buf = vec![0u8; 20 + TCP_HEADER];
            let mut ip = MutableIpv4Packet::new(&mut buf).expect("buffer fits IPv4");
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(u16::try_from(20 + TCP_HEADER).expect("small"));
            ip.set_ttl(64);
            ip.set_next_level_protocol(IpNextHeaderProtocol(IPPROTO_TCP));
            ip.set_source(s);
            ip.set_destination(d);
            let sum = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(sum);
            buf[20..].copy_from_slice(&segment);
            (ETH_P_IPV4, buf)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let sum = tcp::ipv6_checksum(&tcp.to_immutable(), &s, &d);
            tcp.set_checksum(sum);
            let mut buf = vec![0u8; 40 + TCP_HEADER];
            let mut ip = MutableIpv6Packet::new(&mut buf).expect("buffer fits IPv6");
            ip.set_version(6);
            ip.set_payload_length(u16::try_from(TCP_HEADER).expect("small"));
            ip.set_next_header(IpNextHeaderProtocol(IPPROTO_TCP));
            ip.set_hop_limit(64);
            ip.set_source(s);
            ip.set_destination(d);
            buf[40..].copy_from_slice(&segment);
            (ETH_P_IPV6, buf)
        }
        _ => panic!("{src} and {dst} are of different address families"),
    };
    let mut frame = Vec::with_capacity(14 + packet.len());
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(&packet);
    frame
}

#[cfg(test)]
mod tests {
    use op25b_common::parse::{parse, Parsed};

    use super::*;

    #[test]
    fn syns_parse_to_their_addresses_and_port() {
        for (src, dst) in [
            ("100.64.1.2", "198.51.100.25"),
            ("2001:db8::2", "2001:db8:5100::25"),
        ] {
            let frame = tcp_syn(src.parse().unwrap(), dst.parse().unwrap(), 25);
            match parse(frame.as_slice()) {
                Parsed::Tcp(seg) => {
                    assert_eq!(seg.known_dst_port(), Some(25), "{src}");
                    assert!(seg.connection_attempt && seg.resettable, "{src}");
                    assert_eq!(
                        (seg.src, seg.dst),
                        (
                            crate::policy::prefix::ip_bytes(src.parse().unwrap()),
                            crate::policy::prefix::ip_bytes(dst.parse().unwrap())
                        )
                    );
                }
                other @ Parsed::Decided(_) => panic!("{src}: parsed as {other:?}"),
            }
        }
    }
}
