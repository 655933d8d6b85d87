//! Throughput through the bench's veth pair: blocked SYNs go into the tx end
//! and each receiver on the rx end (XDP_DROP only, op25b, xdp-filter,
//! nftables netdev ingress, no filter) counts what it processed.
//!
//! The generator is BPF_PROG_TEST_RUN live frames where the kernel allows
//! them; a kernel that refuses them gets an AF_PACKET sender instead.
// Counts far below 2^52: f64 is exact enough for a report.
#![allow(clippy::cast_precision_loss)]

use std::{
    fmt::Write as _,
    os::fd::AsFd as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::programs::XdpMode;
use op25b_agent::{
    dataplane::{Dataplane, Maps, ProgramKind, BENCH_PROGRAMS_OBJECT},
    policy::Policy,
};
use op25b_common::Reason;
use op25b_tests::frame::FrameSpec;
use rand::{rngs::StdRng, SeedableRng as _};
use serde::Serialize;

use crate::{
    afpacket::{PacketSender, Sent},
    lab::{sh, BenchNet},
    per_packet::{bench_program, XdpFilter},
    prefixes,
    sections::{ip, ms, small_policy, DYN4, MX4},
    testrun, Target,
};

/// A receiver "kept up" when it processed at least this share of what the
/// generator attempted (a few frames may still be in flight at the end).
const KEPT_UP: f64 = 0.99;

/// Rounds of the XDP receivers (ceiling, op25b, xdp-filter), taken in turn
/// so that drift in the machine's load hits each alike; each row reports
/// its median round, and op25b's ratio to another receiver is the median
/// of the rounds' ratios.
const XDP_ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Generator {
    /// BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX on the tx end.
    XdpLiveFrames,
    /// An AF_PACKET socket on the tx end, qdisc bypassed, sendmmsg batches.
    AfPacket,
}

#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    pub receiver: &'static str,
    /// What the generator tried to push per second in this run.
    pub offered_mpps: f64,
    pub attempted: u64,
    /// Frames the tx device refused (receiver behind; AF_PACKET only).
    pub refused_at_tx: u64,
    pub processed: u64,
    pub elapsed_ms: f64,
    pub mpps: f64,
    /// Processed (nearly) everything attempted: its rate is the generator's.
    pub kept_up: bool,
    /// Each round's rate (the XDP receivers run [`XDP_ROUNDS`] interleaved
    /// rounds, the row is the median one; the others run once).
    pub mpps_rounds: Vec<f64>,
    /// Whether it kept up, per round.
    pub kept_up_rounds: Vec<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct Throughput {
    pub frames_offered: u32,
    pub generator_offered_mpps: f64,
    /// Which generator produced the rows (None: nothing measured).
    pub generator: Option<Generator>,
    /// Why the kernel's live-frame generator was not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_frames_refused: Option<String>,
    /// The rx end's NAPI ran in its own kernel thread (AF_PACKET only), so
    /// the receivers did not run on the sending CPU.
    pub receiver_napi_threaded: bool,
    /// Every receiver kept up: the rates measure the generator, and ratios
    /// between receivers say nothing.
    pub generator_bound: bool,
    pub rows: Vec<ThroughputRow>,
    /// Why the section measured nothing; the other sections still run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
}

/// The frame source, chosen once per run by [`Source::probe`].
enum Source {
    Live { ebpf: aya::Ebpf, tx_index: u32 },
    Packet(PacketSender),
}

impl Source {
    /// Live frames if one test run of them works, else AF_PACKET (with the
    /// kernel's reason for refusing live frames).
    fn probe(tx_index: u32, frame: &[u8]) -> anyhow::Result<(Self, Option<String>)> {
        let mut ebpf = aya::Ebpf::load(BENCH_PROGRAMS_OBJECT)?;
        let tried = bench_program(&mut ebpf, "xdp_tx_generator").and_then(|gen| {
            testrun::live(gen.fd()?.as_fd(), frame, tx_index, 1, 1)
                .context("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES")
        });
        match tried {
            Ok(()) => Ok((Self::Live { ebpf, tx_index }, None)),
            Err(why) => {
                let sender = PacketSender::open(tx_index).context("AF_PACKET generator")?;
                Ok((Self::Packet(sender), Some(format!("{why:#}"))))
            }
        }
    }

    fn kind(&self) -> Generator {
        match self {
            Self::Live { .. } => Generator::XdpLiveFrames,
            Self::Packet(_) => Generator::AfPacket,
        }
    }

    fn send(&mut self, frame: &[u8], frames: u32) -> anyhow::Result<Sent> {
        match self {
            Self::Live { ebpf, tx_index } => {
                let gen = bench_program(ebpf, "xdp_tx_generator")?;
                testrun::live(gen.fd()?.as_fd(), frame, *tx_index, frames, 64)?;
                Ok(Sent {
                    attempted: u64::from(frames),
                    refused: 0,
                })
            }
            Self::Packet(sender) => Ok(sender.send(frame, u64::from(frames))?),
        }
    }
}

fn ethtool_stat(dev: &str, name: &str) -> u64 {
    sh("ethtool", &["-S", dev])
        .ok()
        .and_then(|out| {
            out.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{name}:"))?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Frames the device received by any path: veth adds its NAPI (XDP or GRO)
/// frames and those its peer handed straight to the stack.
fn rx_packets(dev: &str) -> u64 {
    sh("ip", &["-j", "-s", "link", "show", "dev", dev])
        .ok()
        .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
        .and_then(|v| v[0]["stats64"]["rx"]["packets"].as_u64())
        .unwrap_or(0)
}

fn nft_counter() -> u64 {
    sh("nft", &["list", "chain", "netdev", "o5bench", "in"])
        .ok()
        .and_then(|out| {
            out.split("packets ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Moves the rx end's NAPI into its own kernel thread, so the receivers run
/// beside the AF_PACKET sender rather than inside its system calls. GRO on
/// the rx end and no TSO on the tx end send every frame through that NAPI,
/// with or without XDP attached.
fn thread_rx_napi(net: &BenchNet) -> anyhow::Result<()> {
    sh("ethtool", &["-K", &net.rx, "gro", "on"])?;
    sh("ethtool", &["-K", &net.tx, "tso", "off", "gso", "off"])?;
    // `ip netns exec` mounts the namespace's own sysfs.
    let knob = format!("echo 1 > /sys/class/net/{}/threaded", net.rx);
    sh("ip", &["netns", "exec", &net.ns, "sh", "-c", &knob])?;
    Ok(())
}

fn mac_of(dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = sh("ip", &["-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let mac: Vec<u8> = v[0]["address"]
        .as_str()
        .with_context(|| format!("{dev}: no MAC address"))?
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()?;
    <[u8; 6]>::try_from(mac).map_err(|_| anyhow::anyhow!("{dev}: MAC is not 6 bytes"))
}

/// [`throughput`], or why it measured nothing (the other sections still run).
pub fn throughput_or_why(net: &BenchNet, frames: u32) -> Throughput {
    throughput(net, frames).unwrap_or_else(|e| {
        eprintln!("throughput not measured: {e:#}");
        Throughput {
            not_measured: Some(format!("{e:#}")),
            ..Throughput::default()
        }
    })
}

pub fn throughput(net: &BenchNet, frames: u32) -> anyhow::Result<Throughput> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut dynamic = prefixes::list(&mut rng, 1_000, true);
    dynamic.insert("100.64.0.0/10".parse()?);
    let policy = Policy {
        dynamic: dynamic.clone(),
        ..small_policy()
    };
    let mut spec = FrameSpec::tcp_syn(ip(DYN4), ip(MX4), 25);
    spec.dst_mac = mac_of(&net.rx)?;
    let frame = spec.build();
    let rx_index = BenchNet::ifindex(&net.rx);
    let (mut source, live_frames_refused) = Source::probe(BenchNet::ifindex(&net.tx), &frame)?;
    if let Some(why) = &live_frames_refused {
        eprintln!("throughput: live frames refused ({why}); generating with AF_PACKET");
    }
    let generator = source.kind();
    let receiver_napi_threaded = generator == Generator::AfPacket
        && thread_rx_napi(net)
            .inspect_err(|e| eprintln!("throughput: rx NAPI stays on the sending CPU: {e:#}"))
            .is_ok();
    let mut rows = Vec::new();

    let mut run =
        |receiver: &'static str, count: &dyn Fn() -> u64| -> anyhow::Result<ThroughputRow> {
            let before = count();
            let t = Instant::now();
            let sent = source.send(&frame, frames)?;
            let elapsed = t.elapsed();
            std::thread::sleep(Duration::from_millis(200));
            let processed = count() - before;
            let secs = elapsed.as_secs_f64();
            let mpps = processed as f64 / secs / 1e6;
            let kept_up = sent.refused == 0 && processed as f64 >= KEPT_UP * sent.attempted as f64;
            Ok(ThroughputRow {
                receiver,
                offered_mpps: sent.attempted as f64 / secs / 1e6,
                attempted: sent.attempted,
                refused_at_tx: sent.refused,
                processed,
                elapsed_ms: ms(elapsed),
                mpps,
                kept_up,
                mpps_rounds: vec![mpps],
                kept_up_rounds: vec![kept_up],
            })
        };

    // A receiver that only drops: the ceiling of generator + veth.
    let mut baselines = aya::Ebpf::load(BENCH_PROGRAMS_OBJECT)?;
    let mut dp = Dataplane::load(&Maps::Private, 0)?;
    dp.apply(&policy)?;
    let xdp_filter_available = XdpFilter::load(&net.rx).is_ok();
    let mut rounds: [Vec<ThroughputRow>; 3] = Default::default();
    for _ in 0..XDP_ROUNDS {
        let drop_all = bench_program(&mut baselines, "xdp_drop_all")?;
        let link = drop_all.attach_to_if_index(rx_index, XdpMode::Driver)?;
        rounds[0].push(run("XDP_DROP only (ceiling)", &|| {
            ethtool_stat(&net.rx, "rx_queue_0_xdp_packets")
        })?);
        drop_all.detach(link)?;

        let link = dp
            .program_mut(ProgramKind::OneBuffer)
            .attach_to_if_index(rx_index, XdpMode::Driver)?;
        rounds[1].push(run("op25b", &|| blocked_count(&dp))?);
        dp.program_mut(ProgramKind::OneBuffer).detach(link)?;

        if xdp_filter_available {
            // A round it cannot load in is left out (the row says how many ran).
            match XdpFilter::load(&net.rx) {
                Ok(filter) => {
                    rounds[2].push(run("xdp-filter (tcp dport 25)", &|| {
                        ethtool_stat(&net.rx, "rx_queue_0_xdp_packets")
                    })?);
                    drop(filter);
                }
                Err(e) => eprintln!("throughput: xdp-filter round left out: {e:#}"),
            }
        }
    }
    rows.extend(rounds.into_iter().filter_map(median_round));

    // Without XDP on rx, veth needs NAPI (GRO) to take XDP_TX frames.
    sh("ethtool", &["-K", &net.rx, "gro", "on"])?;
    load_nft_rule(net, &dynamic)?;
    rows.push(run("nftables netdev ingress, interval set", &nft_counter)?);
    sh("nft", &["delete", "table", "netdev", "o5bench"])?;
    rows.push(run("no filter (stack, no XDP)", &|| rx_packets(&net.rx))?);

    let generator_offered_mpps = rows
        .iter()
        .find(|r| r.receiver.starts_with("XDP_DROP"))
        .map_or(0.0, |r| r.offered_mpps);
    Ok(Throughput {
        frames_offered: frames,
        generator_offered_mpps,
        generator: Some(generator),
        live_frames_refused,
        receiver_napi_threaded,
        generator_bound: rows.iter().all(|r| r.kept_up),
        rows,
        not_measured: None,
    })
}

/// Frames op25b counted as blocked on interface slot 0.
fn blocked_count(dp: &Dataplane) -> u64 {
    dp.counters(0).map_or(0, |c| {
        c.iter()
            .find(|(r, _)| *r == Reason::Blocked)
            .map_or(0, |(_, c)| c.packets)
    })
}

/// nftables' best form of the rule on the rx end: one interval set of the
/// dynamic list, matched at netdev ingress.
fn load_nft_rule(
    net: &BenchNet,
    dynamic: &op25b_agent::policy::prefix::PrefixSet,
) -> anyhow::Result<()> {
    let elements: Vec<String> = dynamic.v4.iter().map(ToString::to_string).collect();
    let script = format!(
        "table netdev o5bench {{\n set dyn {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n chain in {{ type filter hook ingress device {} priority -500;\n  ip saddr @dyn tcp dport 25 counter drop\n }}\n}}\n",
        elements.join(", "),
        net.rx
    );
    let path = std::env::temp_dir().join(format!("op25b-bench-{}.nft", std::process::id()));
    std::fs::write(&path, script)?;
    sh("nft", &["-f", path.to_str().context("path")?])?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// The round with the median rate, carrying every round's rate.
fn median_round(mut rounds: Vec<ThroughputRow>) -> Option<ThroughputRow> {
    let all: Vec<f64> = rounds.iter().map(|r| r.mpps).collect();
    let kept_up: Vec<bool> = rounds.iter().map(|r| r.kept_up).collect();
    rounds.sort_by(|a, b| a.mpps.total_cmp(&b.mpps));
    let mid = rounds.len() / 2;
    let mut row = rounds.into_iter().nth(mid)?;
    row.mpps_rounds = all;
    row.kept_up_rounds = kept_up;
    Some(row)
}

/// op25b's rate over another receiver's, and whether each kept up in the
/// round it comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Paired {
    ratio: f64,
    op_kept_up: bool,
    other_kept_up: bool,
}

/// op25b's rate over `other`'s: the round whose ratio is the median when
/// both ran the same rounds in turn (its kept-up flags with it), else the
/// rows'.
fn rate_ratio(op: &ThroughputRow, other: &ThroughputRow) -> Paired {
    let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
    let rounds = op.mpps_rounds.len();
    let paired = rounds >= 2
        && other.mpps_rounds.len() == rounds
        && op.kept_up_rounds.len() == rounds
        && other.kept_up_rounds.len() == rounds;
    if !paired {
        return Paired {
            ratio: ratio(op.mpps, other.mpps),
            op_kept_up: op.kept_up,
            other_kept_up: other.kept_up,
        };
    }
    let mut pairs: Vec<Paired> = (0..rounds)
        .map(|i| Paired {
            ratio: ratio(op.mpps_rounds[i], other.mpps_rounds[i]),
            op_kept_up: op.kept_up_rounds[i],
            other_kept_up: other.kept_up_rounds[i],
        })
        .collect();
    pairs.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    pairs[rounds / 2]
}

/// op25b's drop rate against `other`'s, honest about what bounds each.
fn ratio_target(t: &Throughput, other: &str, factor: f64) -> Option<Target> {
    let name = format!("drop rate vs {other}");
    let limit = format!("≥ {factor}×");
    let row = |prefix: &str| t.rows.iter().find(|r| r.receiver.starts_with(prefix));
    let paired = match (row("op25b"), row(other)) {
        (Some(op), Some(o)) => Some(rate_ratio(op, o)),
        _ => None,
    };
    let (measured, met) = match paired {
        Some(p) if p.op_kept_up && p.other_kept_up => (
            format!(
                "not measured: generator-bound at {:.2} Mpps",
                t.generator_offered_mpps
            ),
            false,
        ),
        Some(p) => {
            // A receiver that kept up was faster than the generator let it show.
            let bound = match (p.op_kept_up, p.other_kept_up) {
                (true, false) => "≥ ",
                (false, true) => "≤ ",
                _ => "",
            };
            (
                format!("{bound}{:.2}×", p.ratio),
                p.ratio >= factor && bound != "≤ ",
            )
        }
        _ if t.not_measured.is_some() => ("not measured".into(), false),
        _ => return None,
    };
    Some(Target {
        name,
        measured,
        limit,
        met,
    })
}

pub fn targets(t: &Throughput) -> Vec<Target> {
    [("xdp-filter", 1.0), ("nftables", 5.0)]
        .into_iter()
        .filter_map(|(other, factor)| ratio_target(t, other, factor))
        .collect()
}

fn describe(t: &Throughput) -> String {
    match (t.generator, &t.live_frames_refused) {
        (Some(Generator::XdpLiveFrames), _) => {
            "generator: BPF_PROG_TEST_RUN live frames, XDP_TX on the tx end; generator and receiver share the bench CPU".into()
        }
        (Some(Generator::AfPacket), why) => format!(
            "generator: AF_PACKET sendmmsg on the tx end, qdisc bypassed, because the kernel refused live frames ({}); {}; frames reach rx as socket buffers, which veth copies into XDP buffers for the XDP receivers while nftables and the stack take them as they are, so XDP-vs-nftables ratios understate a NIC driver's",
            why.as_deref().unwrap_or("?"),
            if t.receiver_napi_threaded {
                "the rx end's NAPI (where the receivers run) in its own kernel thread beside the sender; offered counts frames the full ring refused"
            } else {
                "veth runs the rx end's NAPI on the sending CPU, so generator and receiver share it"
            }
        ),
        (None, _) => "no generator".into(),
    }
}

pub fn markdown(t: &Throughput) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\nThroughput through a veth pair ({} blocked SYNs per receiver and round; the XDP receivers ran {XDP_ROUNDS} rounds in turn, each row is its median round; {}; generator into an XDP_DROP receiver: {:.2} Mpps)\n",
        t.frames_offered,
        describe(t),
        t.generator_offered_mpps
    );
    let _ = writeln!(
        md,
        "| receiver | offered Mpps | refused at tx | processed | processed Mpps | Mpps per round | kept up |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---|");
    if let Some(why) = &t.not_measured {
        let _ = writeln!(md, "| not measured: {why} | | | | | | |");
    }
    for r in &t.rows {
        let rounds: Vec<String> = r.mpps_rounds.iter().map(|m| format!("{m:.2}")).collect();
        let _ = writeln!(
            md,
            "| {} | {:.2} | {} | {} | {:.2} | {} | {} |",
            r.receiver,
            r.offered_mpps,
            r.refused_at_tx,
            r.processed,
            r.mpps,
            rounds.join(", "),
            if r.kept_up { "yes" } else { "no" }
        );
    }
    if t.generator_bound {
        let _ = writeln!(
            md,
            "\nEvery receiver kept up with the generator: these rates are generator-bound, and ratios between receivers are not measured."
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(receiver: &'static str, rounds: &[f64]) -> ThroughputRow {
        ThroughputRow {
            receiver,
            offered_mpps: 0.0,
            attempted: 0,
            refused_at_tx: 0,
            processed: 0,
            elapsed_ms: 0.0,
            mpps: rounds[0],
            kept_up: false,
            mpps_rounds: rounds.to_vec(),
            kept_up_rounds: vec![false; rounds.len()],
        }
    }

    #[test]
    fn a_row_is_its_median_round_and_keeps_every_round() {
        let rounds = [1.5, 1.2, 1.4]
            .iter()
            .map(|&m| row("op25b", &[m]))
            .collect();
        let median = median_round(rounds).unwrap();
        assert!((median.mpps - 1.4).abs() < 1e-9, "{}", median.mpps);
        assert_eq!(median.mpps_rounds, vec![1.5, 1.2, 1.4]);
        assert!(median_round(Vec::new()).is_none());
    }

    /// Paired rounds: the ratios 0.95, 1.05 and 1.10 give 1.05, round 2's
    /// (the ratio of the rows' median rates would be 1.10 / 1.05 = 1.048).
    #[test]
    fn the_ratio_is_the_median_of_paired_rounds() {
        let op = row("op25b", &[1.0, 2.0, 1.1]);
        let other = row("xdp-filter", &[1.05, 1.9, 1.0]);
        let paired = rate_ratio(&op, &other);
        assert!((paired.ratio - 2.0 / 1.9).abs() < 1e-9, "{paired:?}");
        // Rounds that do not pair up fall back to the rows' rates.
        let single = row("nftables", &[0.5]);
        assert!((rate_ratio(&op, &single).ratio - 2.0).abs() < 1e-9);
    }

    /// The bound comes from the round the median ratio comes from: there
    /// xdp-filter kept up, so op25b's ratio is at most what is shown.
    #[test]
    fn the_median_round_says_who_kept_up() {
        let op = row("op25b", &[1.61, 1.30, 1.60]);
        let mut other = row("xdp-filter", &[1.60, 1.50, 1.40]);
        other.kept_up_rounds = vec![true, false, false];
        let paired = rate_ratio(&op, &other);
        assert!((paired.ratio - 1.61 / 1.60).abs() < 1e-9, "{paired:?}");
        assert!(paired.other_kept_up && !paired.op_kept_up, "{paired:?}");
        let t = Throughput {
            rows: vec![op, other],
            ..Throughput::default()
        };
        let target = ratio_target(&t, "xdp-filter", 1.0).unwrap();
        assert!(target.measured.starts_with("≤ "), "{}", target.measured);
        assert!(!target.met);
    }
}
