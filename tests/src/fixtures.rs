//! The fixture table: frames carriers see, each with the reason op25b must
//! give it under [`crate::standard_policy`] (or [`crate::multi_port_policy`]).

use std::net::IpAddr;

use crate::frame::{Ext, FrameSpec, Transport, TCP_ACK};
use op25b_common::{
    parse::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_QINQ_9100},
    Reason,
};

pub const DYN4: &str = "100.64.1.2";
pub const EXEMPT4: &str = "100.64.1.7";
pub const STATIC4: &str = "203.0.113.10";
pub const OUTSIDE4: &str = "198.51.100.25";
pub const RELAY4: &str = "192.0.2.25";
pub const DYN6: &str = "2001:db8:1000::2";
pub const EXEMPT6: &str = "2001:db8:1000::7";
pub const STATIC6: &str = "2001:db8:2000::10";
pub const OUTSIDE6: &str = "2001:db8:5100::25";
pub const RELAY6: &str = "2001:db8:25::25";

pub struct Fixture {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub expect: Reason,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture address")
}

fn syn(src: &str, dst: &str, port: u16) -> FrameSpec {
    FrameSpec::tcp_syn(ip(src), ip(dst), port)
}

fn fixture(name: &'static str, spec: &FrameSpec, expect: Reason) -> Fixture {
    Fixture {
        name,
        frame: spec.build(),
        expect,
    }
}

fn raw(name: &'static str, frame: Vec<u8>, expect: Reason) -> Fixture {
    Fixture {
        name,
        frame,
        expect,
    }
}

/// `spec` in a PPPoE session whose PPP protocol field is the compressed
/// one-byte form (PFC, RFC 1661).
fn compressed_ppp_protocol(spec: &FrameSpec) -> Vec<u8> {
    let mut f = spec.clone().pppoe(0x0101).build();
    f.remove(14 + 6);
    let pppoe_length = u16::try_from(f.len() - 20).unwrap();
    f[14 + 4..14 + 6].copy_from_slice(&pppoe_length.to_be_bytes());
    f
}

/// Byte offset of the network header in a frame built from `spec`.
fn l3_offset(spec: &FrameSpec) -> usize {
    14 + 4 * spec.vlans.len() + if spec.pppoe_session.is_some() { 8 } else { 0 }
}

fn with_bytes(spec: &FrameSpec, edit: impl FnOnce(&mut Vec<u8>, usize)) -> Vec<u8> {
    let mut frame = spec.build();
    let l3 = l3_offset(spec);
    edit(&mut frame, l3);
    frame
}

/// Fixtures judged under [`crate::standard_policy`].
#[allow(clippy::too_many_lines, reason = "a table reads best in one piece")]
pub fn standard() -> Vec<Fixture> {
    use Reason::{
        Blocked, DstAllowed, Fragment, Malformed, NotIp, NotSmtp, NotTcp, SrcExempt, SrcNotDynamic,
        Undecidable,
    };
    let v4 = syn(DYN4, OUTSIDE4, 25);
    let v6 = syn(DYN6, OUTSIDE6, 25);
    let eight_ext = [
        Ext::HopByHop,
        Ext::DestinationOptions,
        Ext::Routing,
        Ext::Fragment {
            offset: 0,
            more: true,
        },
        Ext::Auth,
        Ext::DestinationOptions,
        Ext::DestinationOptions,
        Ext::DestinationOptions,
    ];
    let mut nine_ext = eight_ext.to_vec();
    nine_ext.push(Ext::DestinationOptions);
    // Compressed PPP protocol (PFC): one byte 0x21 instead of 0x0021.
    let pfc = compressed_ppp_protocol(&v4);
    let mut arp = v4.build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut discovery = v4.clone().pppoe(7).build();
    discovery[12..14].copy_from_slice(&0x8863u16.to_be_bytes());
    let mut lcp = v4.clone().pppoe(7).build();
    lcp[20..22].copy_from_slice(&0xc021u16.to_be_bytes());
    let tiny_fragment = |src: &str| {
        let spec = syn(src, OUTSIDE4, 25).ipv4_fragment(0, true);
        let mut f = spec.build();
        // Keep 2 bytes of TCP: the source port only.
        f.truncate(14 + 20 + 2);
        f[16..18].copy_from_slice(&22u16.to_be_bytes());
        f
    };
    let ipv6_first_fragment_without_tcp = {
        let spec = v6.clone().ipv6_ext(&[Ext::Fragment {
            offset: 0,
            more: true,
        }]);
        let mut f = spec.build();
        f.truncate(14 + 40 + 8);
        f
    };

    vec![
        // Encapsulations.
        fixture("ipv4 syn to outside:25", &v4, Blocked),
        fixture(
            "ipv4 established ack to outside:25",
            &v4.clone()
                .transport(Transport::Tcp {
                    src_port: 40000,
                    dst_port: 25,
                    flags: TCP_ACK,
                })
                .payload(b"MAIL FROM:<x@example.com>\r\n"),
            Blocked,
        ),
        fixture("ipv6 syn to outside:25", &v6, Blocked),
        fixture("802.1q", &v4.clone().dot1q(100), Blocked),
        fixture(
            "qinq 88a8+8100",
            &v4.clone().vlan(ETH_P_8021AD, 10).dot1q(100),
            Blocked,
        ),
        fixture(
            "qinq 9100+8100",
            &v4.clone().vlan(ETH_P_QINQ_9100, 10).dot1q(100),
            Blocked,
        ),
        fixture(
            "qinq 8100+8100 ipv6",
            &v6.clone().dot1q(10).dot1q(100),
            Blocked,
        ),
        fixture("three tags", &v4.clone().dot1q(1).dot1q(2).dot1q(3), NotIp),
        fixture("pppoe ipv4", &v4.clone().pppoe(0x1234), Blocked),
        fixture("pppoe ipv6", &v6.clone().pppoe(0x1234), Blocked),
        fixture("vlan+pppoe ipv4", &v4.clone().dot1q(200).pppoe(9), Blocked),
        fixture(
            "qinq+pppoe ipv6",
            &v6.clone()
                .vlan(ETH_P_8021AD, 20)
                .vlan(ETH_P_8021Q, 200)
                .pppoe(9),
            Blocked,
        ),
        raw("pppoe ipv4 with compressed protocol field", pfc, Blocked),
        raw("pppoe lcp", lcp, NotIp),
        raw("pppoe discovery", discovery, NotIp),
        raw("arp", arp, NotIp),
        // IPv4 header variants.
        fixture(
            "ipv4 options ihl 7",
            &v4.clone().ipv4_options(&[0x94, 4, 0, 0, 1, 1, 1, 0]),
            Blocked,
        ),
        fixture(
            "ipv4 options ihl 15",
            &v4.clone().ipv4_options(&[1; 40]),
            Blocked,
        ),
        raw(
            "ipv4 ihl 4",
            with_bytes(&v4, |f, l3| f[l3] = 0x44),
            Malformed,
        ),
        raw(
            "ipv4 ethertype with version 6",
            with_bytes(&v4, |f, l3| f[l3] = 0x65),
            Malformed,
        ),
        raw(
            "ipv4 total length below header",
            with_bytes(&v4, |f, l3| f[l3 + 2..l3 + 4].copy_from_slice(&[0, 19])),
            Malformed,
        ),
        raw(
            "ipv4 options past frame end",
            {
                let mut f = v4.build();
                f[14] = 0x4f;
                f.truncate(14 + 40);
                f
            },
            Malformed,
        ),
        raw(
            "ipv6 ethertype with version 4",
            with_bytes(&v6, |f, l3| f[l3] = 0x45),
            Malformed,
        ),
        raw(
            "tcp cut before the ports",
            {
                let mut f = v4.build();
                f.truncate(14 + 20 + 3);
                f
            },
            Malformed,
        ),
        // Fragments.
        fixture(
            "ipv4 first fragment",
            &v4.clone().ipv4_fragment(0, true),
            Blocked,
        ),
        fixture(
            "ipv4 non-first fragment",
            &v4.clone().ipv4_fragment(8, false),
            Fragment,
        ),
        fixture(
            "ipv4 middle fragment",
            &v4.clone().ipv4_fragment(1, true),
            Fragment,
        ),
        fixture(
            "ipv4 udp non-first fragment",
            &v4.clone()
                .transport(Transport::Udp {
                    src_port: 1,
                    dst_port: 25,
                })
                .ipv4_fragment(8, false),
            NotTcp,
        ),
        raw(
            "ipv4 tiny first fragment, dynamic",
            tiny_fragment(DYN4),
            Undecidable,
        ),
        raw(
            "ipv4 tiny first fragment, static",
            tiny_fragment(STATIC4),
            SrcNotDynamic,
        ),
        raw(
            "ipv4 tiny first fragment, exempt",
            tiny_fragment(EXEMPT4),
            SrcExempt,
        ),
        fixture(
            "ipv6 first fragment",
            &v6.clone().ipv6_ext(&[Ext::Fragment {
                offset: 0,
                more: true,
            }]),
            Blocked,
        ),
        fixture(
            "ipv6 non-first fragment",
            &v6.clone().ipv6_ext(&[Ext::Fragment {
                offset: 100,
                more: false,
            }]),
            Fragment,
        ),
        fixture(
            "ipv6 udp non-first fragment",
            &v6.clone()
                .transport(Transport::Udp {
                    src_port: 1,
                    dst_port: 25,
                })
                .ipv6_ext(&[Ext::Fragment {
                    offset: 100,
                    more: false,
                }]),
            NotTcp,
        ),
        raw(
            "ipv6 first fragment without tcp header",
            ipv6_first_fragment_without_tcp,
            Undecidable,
        ),
        // IPv6 extension headers.
        fixture(
            "ipv6 hop-by-hop",
            &v6.clone().ipv6_ext(&[Ext::HopByHop]),
            Blocked,
        ),
        fixture(
            "ipv6 routing",
            &v6.clone().ipv6_ext(&[Ext::Routing]),
            Blocked,
        ),
        fixture(
            "ipv6 destination options",
            &v6.clone().ipv6_ext(&[Ext::DestinationOptions]),
            Blocked,
        ),
        fixture(
            "ipv6 authentication header",
            &v6.clone().ipv6_ext(&[Ext::Auth]),
            Blocked,
        ),
        fixture(
            "ipv6 eight extension headers",
            &v6.clone().ipv6_ext(&eight_ext),
            Blocked,
        ),
        fixture(
            "ipv6 nine extension headers",
            &v6.clone().ipv6_ext(&nine_ext),
            Undecidable,
        ),
        fixture(
            "ipv6 nine extension headers, static",
            &syn(STATIC6, OUTSIDE6, 25).ipv6_ext(&nine_ext),
            SrcNotDynamic,
        ),
        fixture(
            "ipv6 esp",
            &v6.clone().transport(Transport::Other {
                protocol: 50,
                bytes: vec![0; 16],
            }),
            NotTcp,
        ),
        // Ports and protocols.
        fixture(
            "ipv4 udp/25",
            &v4.clone().transport(Transport::Udp {
                src_port: 5353,
                dst_port: 25,
            }),
            NotTcp,
        ),
        fixture(
            "ipv6 udp/25",
            &v6.clone().transport(Transport::Udp {
                src_port: 5353,
                dst_port: 25,
            }),
            NotTcp,
        ),
        fixture(
            "ipv4 icmp",
            &v4.clone().transport(Transport::Other {
                protocol: 1,
                bytes: vec![8, 0, 0, 0, 0, 1, 0, 1],
            }),
            NotTcp,
        ),
        fixture("ipv4 tcp/587", &syn(DYN4, OUTSIDE4, 587), NotSmtp),
        fixture("ipv4 tcp/465", &syn(DYN4, OUTSIDE4, 465), NotSmtp),
        fixture("ipv6 tcp/587", &syn(DYN6, OUTSIDE6, 587), NotSmtp),
        fixture("ipv6 tcp/465", &syn(DYN6, OUTSIDE6, 465), NotSmtp),
        fixture("ipv4 tcp/443", &syn(DYN4, OUTSIDE4, 443), NotSmtp),
        fixture(
            "ipv4 tcp source port 25 (a reply)",
            &syn(DYN4, OUTSIDE4, 40000).transport(Transport::Tcp {
                src_port: 25,
                dst_port: 40000,
                flags: TCP_ACK,
            }),
            NotSmtp,
        ),
        // Policy.
        fixture(
            "ipv4 static source",
            &syn(STATIC4, OUTSIDE4, 25),
            SrcNotDynamic,
        ),
        fixture(
            "ipv6 static source",
            &syn(STATIC6, OUTSIDE6, 25),
            SrcNotDynamic,
        ),
        fixture(
            "ipv4 exempt /32 inside dynamic /10",
            &syn(EXEMPT4, OUTSIDE4, 25),
            SrcExempt,
        ),
        fixture(
            "ipv6 exempt /128 inside dynamic /36",
            &syn(EXEMPT6, OUTSIDE6, 25),
            SrcExempt,
        ),
        fixture("ipv4 to allowed relay", &syn(DYN4, RELAY4, 25), DstAllowed),
        fixture("ipv6 to allowed relay", &syn(DYN6, RELAY6, 25), DstAllowed),
        fixture(
            "ipv4 exempt to allowed relay",
            &syn(EXEMPT4, RELAY4, 25),
            DstAllowed,
        ),
        fixture(
            "pppoe exempt",
            &syn(EXEMPT4, OUTSIDE4, 25).dot1q(7).pppoe(3),
            SrcExempt,
        ),
        raw(
            "ethernet padding after a short syn",
            {
                let mut f = v4.build();
                f.resize(f.len() + 6, 0);
                f
            },
            Blocked,
        ),
    ]
}

/// Fixtures judged under [`crate::multi_port_policy`] (25, 2525, 10025).
pub fn multi_port() -> Vec<Fixture> {
    use Reason::{Blocked, NotSmtp, SrcExempt};
    vec![
        fixture(
            "port 25 in a multi-port set",
            &syn(DYN4, OUTSIDE4, 25),
            Blocked,
        ),
        fixture(
            "port 2525 in a multi-port set",
            &syn(DYN4, OUTSIDE4, 2525),
            Blocked,
        ),
        fixture(
            "port 10025 in a multi-port set, ipv6",
            &syn(DYN6, OUTSIDE6, 10025),
            Blocked,
        ),
        fixture("port 26 outside the set", &syn(DYN4, OUTSIDE4, 26), NotSmtp),
        fixture(
            "port 587 outside the set",
            &syn(DYN4, OUTSIDE4, 587),
            NotSmtp,
        ),
        fixture(
            "exempt on port 2525",
            &syn(EXEMPT4, OUTSIDE4, 2525),
            SrcExempt,
        ),
    ]
}

pub const TRIAL4: &str = "100.100.1.2";
pub const TRIAL6: &str = "2001:db8:3000::2";
pub const STRICT4: &str = "100.101.1.2";
pub const STRICT6: &str = "2001:db8:4000::2";

/// Fixtures judged under [`crate::pools_policy`].
pub fn pools() -> Vec<Fixture> {
    use Reason::{Blocked, DstAllowed, NotSmtp, Rejected, WouldBlock};
    vec![
        fixture(
            "monitor pool ipv4 syn",
            &syn(TRIAL4, OUTSIDE4, 25),
            WouldBlock,
        ),
        fixture(
            "monitor pool ipv6 syn",
            &syn(TRIAL6, OUTSIDE6, 25),
            WouldBlock,
        ),
        fixture("monitor pool to 587", &syn(TRIAL4, OUTSIDE4, 587), NotSmtp),
        fixture(
            "reject pool ipv4 syn",
            &syn(STRICT4, OUTSIDE4, 25),
            Rejected,
        ),
        fixture(
            "reject pool ipv6 syn",
            &syn(STRICT6, OUTSIDE6, 25),
            Rejected,
        ),
        fixture(
            "reject pool ack: dropped",
            &syn(STRICT4, OUTSIDE4, 25).transport(Transport::Tcp {
                src_port: 1,
                dst_port: 25,
                flags: TCP_ACK,
            }),
            Blocked,
        ),
        fixture(
            "reject pool syn with ipv4 options: dropped",
            &syn(STRICT4, OUTSIDE4, 25).ipv4_options(&[1, 1, 1, 1]),
            Blocked,
        ),
        fixture(
            "reject pool ipv6 syn with an extension header: dropped",
            &syn(STRICT6, OUTSIDE6, 25).ipv6_ext(&[Ext::DestinationOptions]),
            Blocked,
        ),
        raw(
            "reject pool pppoe syn with a compressed protocol field: dropped",
            compressed_ppp_protocol(&syn(STRICT4, OUTSIDE4, 25)),
            Blocked,
        ),
        fixture(
            "reject pool to the relay",
            &syn(STRICT4, RELAY4, 25),
            DstAllowed,
        ),
        fixture(
            "default pool still drops",
            &syn(DYN4, OUTSIDE4, 25),
            Blocked,
        ),
    ]
}
