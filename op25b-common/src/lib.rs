//! The one definition of what op25b does to a packet.
//!
//! This crate is `no_std` and is compiled twice: into the XDP program
//! (`op25b-ebpf`) and into user space (`op25b-agent`, tests). The parser and
//! the verdict are generic over [`PacketBytes`] and [`PolicyLookup`], so the
//! very same code judges a `&[u8]` in a host test and an `XdpContext` in the
//! kernel.
//!
//! - [`packet`]: the bounds-checked byte reader both sides implement.
//! - [`parse`]: Ethernet, VLAN/QinQ, PPPoE, IPv4, IPv6 extension headers, TCP ports.
//! - [`verdict`]: the ordered policy decision and its [`Reason`].
//! - [`abi`]: map names, keys, values and the data-plane configuration block.
#![no_std]
// The verifier needs the parser inlined into the XDP program: one flat
// function keeps packet pointers provably bounded without BPF-to-BPF calls.
#![allow(clippy::inline_always)]

pub mod abi;
pub mod fast_pass;
pub mod packet;
pub mod parse;
pub mod reason;
pub mod verdict;

pub use packet::PacketBytes;
pub use reason::{Action, Reason, Verdict};
pub use verdict::{decide, judge, BlockedPorts, IpAddrBytes, PolicyLookup, Rules, SourceClass};
