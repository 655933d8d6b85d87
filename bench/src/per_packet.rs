//! Per-packet cost: every path through both builds of the program, the
//! floor (a bare `XDP_PASS`) and xdp-filter, on the same frames
//! (BPF_PROG_TEST_RUN).
// Nanoseconds far below 2^52: f64 is exact enough for a report.
#![allow(clippy::cast_precision_loss)]

use std::os::fd::AsFd as _;

use anyhow::Context as _;
use aya::programs::Xdp;
use op25b_agent::dataplane::{Dataplane, Maps, ProgramKind, BENCH_PROGRAMS_OBJECT};
use op25b_common::{parse::ETH_P_8021AD, Reason};
use op25b_tests::frame::{Ext, FrameSpec};
use serde::Serialize;

use crate::{
    lab::{sh, BenchNet},
    sections::{ip, small_policy, DYN4, MX4},
    testrun,
};

/// The per-packet rows: (name, frame, expected reason).
fn paths() -> Vec<(&'static str, Vec<u8>, Reason)> {
    let v4 = FrameSpec::tcp_syn(ip(DYN4), ip(MX4), 25);
    let mut arp = v4.build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp.truncate(60);
    vec![
        ("non-IP (ARP)", arp, Reason::NotIp),
        (
            "TCP/443",
            FrameSpec::tcp_syn(ip(DYN4), ip(MX4), 443).build(),
            Reason::NotSmtp,
        ),
        ("TCP/25 blocked", v4.build(), Reason::Blocked),
        (
            "TCP/25 exempt",
            FrameSpec::tcp_syn(ip("100.64.1.7"), ip(MX4), 25).build(),
            Reason::SrcExempt,
        ),
        (
            "TCP/25 to allowed relay",
            FrameSpec::tcp_syn(ip(DYN4), ip("192.0.2.25"), 25).build(),
            Reason::DstAllowed,
        ),
        (
            "IPv6 TCP/25 blocked",
            FrameSpec::tcp_syn(ip("2001:db8:1000::2"), ip("2001:db8:5100::25"), 25).build(),
            Reason::Blocked,
        ),
        (
            "QinQ+PPPoE TCP/25 blocked",
            v4.clone()
                .vlan(ETH_P_8021AD, 10)
                .dot1q(100)
                .pppoe(0x1234)
                .build(),
            Reason::Blocked,
        ),
        (
            "non-first fragment",
            v4.clone().ipv4_fragment(100, false).build(),
            Reason::Fragment,
        ),
        (
            "IPv6 + 2 ext headers, TCP/25 blocked",
            FrameSpec::tcp_syn(ip("2001:db8:1000::2"), ip("2001:db8:5100::25"), 25)
                .ipv6_ext(&[Ext::HopByHop, Ext::DestinationOptions])
                .build(),
            Reason::Blocked,
        ),
    ]
}

fn measure(
    fd: std::os::fd::BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
    runs: usize,
) -> anyhow::Result<f64> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(f64::from(testrun::run(fd, frame, repeat)?.1));
    }
    Ok(testrun::median(samples))
}

struct Baselines {
    _ebpf: aya::Ebpf,
}

pub(crate) fn bench_program<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &str,
) -> anyhow::Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .context("bench program")?
        .try_into()?;
    if prog.fd().is_err() {
        prog.load()?;
    }
    Ok(prog)
}

#[derive(Debug, Serialize)]
pub struct PathRow {
    pub path: &'static str,
    pub reason: &'static str,
    pub op25b_ns: f64,
    pub floor_ns: f64,
    pub op25b_minus_floor_ns: f64,
    /// The frags-aware build (interfaces whose MTU needs it); `op25b_ns` is
    /// the one-buffer build every other interface runs.
    pub op25b_multi_buffer_ns: f64,
    pub xdp_filter_ns: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct PerPacket {
    pub repeat: u32,
    pub runs: usize,
    pub rows: Vec<PathRow>,
    /// The one-buffer build's; the frags-aware build's is beside it.
    pub verified_instructions: Option<u32>,
    pub verified_instructions_multi_buffer: Option<u32>,
}

/// xdp-filter (Debian xdp-tools) on the bench's rx veth, dropping TCP dport 25.
pub(crate) struct XdpFilter<'a>(&'a str);

impl<'a> XdpFilter<'a> {
    pub(crate) fn load(dev: &'a str) -> anyhow::Result<Self> {
        sh(
            "xdp-filter",
            &["load", "-m", "native", "-f", "tcp,ipv4,ipv6", dev],
        )?;
        // Unloaded on drop, also when the port rule is refused.
        let filter = Self(dev);
        sh("xdp-filter", &["port", "-p", "tcp", "-m", "dst", "25"])?;
        Ok(filter)
    }

    fn program_fd(&self) -> anyhow::Result<aya::programs::ProgramFd> {
        let out = sh("ip", &["-j", "link", "show", "dev", self.0])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let id = v[0]["xdp"]["prog"]["id"]
            .as_u64()
            .context("xdp-filter attached a program")?;
        let info = aya::programs::loaded_programs()
            .flatten()
            .find(|p| u64::from(p.id()) == id)
            .context("xdp-filter program by id")?;
        Ok(info.fd()?)
    }
}

impl Drop for XdpFilter<'_> {
    fn drop(&mut self) {
        let _ = sh("xdp-filter", &["unload", self.0]);
    }
}

pub fn per_packet(net: &BenchNet, repeat: u32, runs: usize) -> anyhow::Result<PerPacket> {
    let mut dp = Dataplane::load(&Maps::Private, 0)?;
    dp.apply(&small_policy())?;
    let mut baselines = aya::Ebpf::load(BENCH_PROGRAMS_OBJECT)?;
    let filter = XdpFilter::load(&net.rx).ok();
    let filter_fd = filter.as_ref().map(XdpFilter::program_fd).transpose()?;
    let mut rows = Vec::new();
    for (path, frame, reason) in paths() {
        anyhow::ensure!(
            dp.judge(&frame)?.reason == reason,
            "{path}: op25b did not say {reason:?}"
        );
        let build = |kind| -> anyhow::Result<f64> {
            measure(dp.program(kind).fd()?.as_fd(), &frame, repeat, runs)
        };
        let op25b_ns = build(ProgramKind::OneBuffer)?;
        let op25b_multi_buffer_ns = build(ProgramKind::MultiBuffer)?;
        let floor = bench_program(&mut baselines, "xdp_pass_floor")?;
        let floor_ns = measure(floor.fd()?.as_fd(), &frame, repeat, runs)?;
        let xdp_filter_ns = filter_fd
            .as_ref()
            .map(|fd| measure(fd.as_fd(), &frame, repeat, runs))
            .transpose()?;
        rows.push(PathRow {
            path,
            reason: reason.name(),
            op25b_ns,
            floor_ns,
            op25b_minus_floor_ns: op25b_ns - floor_ns,
            op25b_multi_buffer_ns,
            xdp_filter_ns,
        });
    }
    let _keep = Baselines { _ebpf: baselines };
    Ok(PerPacket {
        repeat,
        runs,
        rows,
        verified_instructions: dp.verified_instructions(ProgramKind::OneBuffer),
        verified_instructions_multi_buffer: dp.verified_instructions(ProgramKind::MultiBuffer),
    })
}
