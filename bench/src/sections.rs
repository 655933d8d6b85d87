//! The list-size measurements (scale, IPv4 list, reload under traffic), the
//! targets and the report; per-packet cost is in per_packet.rs.
// Counts and nanoseconds far below 2^52: f64 is exact enough for a report.
#![allow(clippy::cast_precision_loss)]

use std::{
    fmt::Write as _,
    net::IpAddr,
    os::fd::AsFd as _,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use op25b_agent::{
    dataplane::{class_writer::ClassSteps, Dataplane, Maps, ProgramKind},
    policy::{prefix::PrefixSet, Policy},
};
use op25b_common::{decide, Reason};
use op25b_tests::frame::FrameSpec;
use rand::{rngs::StdRng, SeedableRng as _};
use serde::Serialize;

use crate::{per_packet::PerPacket, prefixes, testrun, Target};

pub(crate) const DYN4: &str = "100.64.1.2";
pub(crate) const MX4: &str = "198.51.100.25";

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("bench address")
}

fn set(items: &[&str]) -> PrefixSet {
    items
        .iter()
        .map(|p| p.parse().expect("bench prefix"))
        .collect()
}

pub(crate) fn small_policy() -> Policy {
    Policy {
        dynamic: set(&["100.64.0.0/10", "2001:db8:1000::/36"]),
        exempt: set(&["100.64.1.7/32"]),
        allowed_destinations: set(&["192.0.2.25/32"]),
        ..Policy::default()
    }
}

#[derive(Debug, Serialize)]
pub struct ScaleRow {
    pub prefixes_per_list: usize,
    pub blocked_ns_random_sources: f64,
    pub policy_map_memory_bytes: u64,
    pub load_dynamic_ms: f64,
    pub load_exempt_ms: f64,
    /// The median of `reload_1pct_ms_each`.
    pub reload_1pct_ms: f64,
    pub reload_1pct_ms_each: Vec<f64>,
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A list with 1% of its prefixes replaced by new ones.
fn churn(rng: &mut StdRng, list: &PrefixSet, dynamic: bool) -> PrefixSet {
    let change = (list.len() / 100).max(1);
    let mut next: PrefixSet = list.iter().skip(change).copied().collect();
    let fresh = if list.v6.is_empty() {
        prefixes::list_v4(rng, change * 4, dynamic)
    } else {
        prefixes::list(rng, list.len() + change * 4, dynamic)
    };
    for p in fresh.iter() {
        if next.len() >= list.len() {
            break;
        }
        if !list.v4.contains(p) && !list.v6.contains(p) {
            next.insert(*p);
        }
    }
    // As the changed list file is read.
    next.compact();
    next
}

pub fn scale(n: usize, repeat: u32, runs: usize) -> anyhow::Result<ScaleRow> {
    let mut rng = StdRng::seed_from_u64(25);
    let dynamic = prefixes::list(&mut rng, n, true);
    let exempt = prefixes::list(&mut rng, n, false);
    let mut dp = Dataplane::load(&Maps::Private, 0)?;
    let mut policy = Policy {
        dynamic,
        allowed_destinations: set(&["192.0.2.25/32"]),
        ..Policy::default()
    };
    let (load_dynamic, load_exempt) = load_timed(&mut dp, &mut policy, exempt)?;

    let rules = op25b_common::abi::RuntimeConfig::DEFAULT;
    let mut frames = Vec::new();
    while frames.len() < 32 {
        let src = prefixes::host_in(&mut rng, &policy.dynamic);
        let frame = FrameSpec::tcp_syn(IpAddr::V4(src), ip(MX4), 25).build();
        if decide(frame.as_slice(), &rules, &policy).reason == Reason::Blocked {
            frames.push(frame);
        }
    }
    let per_frame = (repeat / 32).max(1);
    let fd = dp.program(ProgramKind::OneBuffer).fd()?.try_clone()?;
    let mut samples = Vec::new();
    for _ in 0..runs {
        let mut total = 0.0;
        for frame in &frames {
            total += f64::from(testrun::run(fd.as_fd(), frame, per_frame)?.1);
        }
        samples.push(total / frames.len() as f64);
    }
    let memory = dp.policy_memory_bytes();
    let reloads = reload_1pct(&mut dp, &mut rng, &policy)?;
    Ok(ScaleRow {
        prefixes_per_list: n,
        blocked_ns_random_sources: testrun::median(samples),
        policy_map_memory_bytes: memory,
        load_dynamic_ms: ms(load_dynamic),
        load_exempt_ms: ms(load_exempt),
        reload_1pct_ms: reloads.median_ms,
        reload_1pct_ms_each: reloads.each_ms,
    })
}

/// 1% reloads back and forth: the median's time and steps, every time.
struct Reloads {
    median_ms: f64,
    each_ms: Vec<f64>,
    steps: ReloadSteps,
}

/// Reloads between `policy` and a copy with 1% of its dynamic prefixes
/// replaced, back and forth ([`RELOADS`] times, each a 1% change).
fn reload_1pct(dp: &mut Dataplane, rng: &mut StdRng, policy: &Policy) -> anyhow::Result<Reloads> {
    let churned = Policy {
        dynamic: churn(rng, &policy.dynamic, true),
        ..policy.clone()
    };
    let mut reloads = Vec::with_capacity(RELOADS);
    for i in 0..RELOADS {
        let next = if i % 2 == 0 { &churned } else { policy };
        let t = Instant::now();
        let stats = dp.apply(next)?;
        reloads.push((ms(t.elapsed()), stats.class_steps));
    }
    let each_ms: Vec<f64> = reloads.iter().map(|r| r.0).collect();
    // The middle reload by time, as `testrun::median` picks it.
    let mut by_time: Vec<&(f64, ClassSteps)> = reloads.iter().collect();
    by_time.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median_ms, steps) = by_time[by_time.len() / 2];
    Ok(Reloads {
        median_ms: *median_ms,
        each_ms,
        steps: ReloadSteps::of(steps),
    })
}

/// Where a reload's time went (the class step's parts), in ms.
#[derive(Debug, Default, Serialize)]
pub struct ReloadSteps {
    /// The new list record: changed lists walked and compared with the
    /// kept record, unchanged ones shared.
    pub record: f64,
    pub repaint: f64,
    /// Blocks, first-level bytes and orphans written to the kernel.
    pub kernel: f64,
    pub record_write: f64,
    pub ipv6: f64,
}

impl ReloadSteps {
    fn of(steps: &ClassSteps) -> Self {
        Self {
            record: ms(steps.record),
            repaint: ms(steps.repaint),
            kernel: ms(steps.kernel),
            record_write: ms(steps.record_write),
            ipv6: ms(steps.ipv6),
        }
    }
}

/// 1% reloads timed per list size: one sample is at the mercy of the
/// VM's noisiest millisecond, the median of five is not.
pub const RELOADS: usize = 5;

/// IPv4-only lists, the size the class table is built for.
#[derive(Debug, Default, Serialize)]
pub struct Ipv4List {
    pub prefixes: usize,
    /// A dynamic list of `prefixes` /16../24 pools into empty maps.
    pub load_dynamic_ms: f64,
    /// Then an exempt list of `prefixes` /28../32 on top.
    pub load_exempt_ms: f64,
    /// Then the dynamic list with 1% of its prefixes replaced and back,
    /// [`RELOADS`] times: the median of `reload_1pct_ms_each`.
    pub reload_1pct_ms: f64,
    pub reload_1pct_ms_each: Vec<f64>,
    /// The median reload's steps.
    pub reload_1pct_steps_ms: ReloadSteps,
    /// /24s the exemptions split (second-level blocks).
    pub class_blocks: usize,
}

/// Applies `policy` (its dynamic list) into empty maps, then `exempt` on
/// top: the time of each step.
fn load_timed(
    dp: &mut Dataplane,
    policy: &mut Policy,
    exempt: PrefixSet,
) -> anyhow::Result<(Duration, Duration)> {
    let t = Instant::now();
    dp.apply(policy)?;
    let load_dynamic = t.elapsed();
    policy.exempt = exempt;
    let t = Instant::now();
    dp.apply(policy)?;
    Ok((load_dynamic, t.elapsed()))
}

pub fn ipv4_list(n: usize) -> anyhow::Result<Ipv4List> {
    let mut rng = StdRng::seed_from_u64(24);
    let dynamic = prefixes::list_v4(&mut rng, n, true);
    let exempt = prefixes::list_v4(&mut rng, n, false);
    let mut dp = Dataplane::load(&Maps::Private, 0)?;
    let mut policy = Policy {
        dynamic,
        ..Policy::default()
    };
    let (load_dynamic, load_exempt) = load_timed(&mut dp, &mut policy, exempt)?;
    let reloads = reload_1pct(&mut dp, &mut rng, &policy)?;
    Ok(Ipv4List {
        prefixes: n,
        load_dynamic_ms: ms(load_dynamic),
        load_exempt_ms: ms(load_exempt),
        reload_1pct_ms: reloads.median_ms,
        reload_1pct_ms_each: reloads.each_ms,
        reload_1pct_steps_ms: reloads.steps,
        class_blocks: dp.kernel_class_v4_blocks()?,
    })
}

#[derive(Debug, Default, Serialize)]
pub struct ReloadUnderTraffic {
    pub prefixes: usize,
    pub reloads: usize,
    pub reload_ms: Vec<f64>,
    pub frames_judged: u64,
    pub misverdicts: u64,
}

/// Judges stable frames (same verdict under the old and new policy) in a
/// second program instance on the same pinned maps while the control
/// instance reloads a large list back and forth.
pub fn reload_under_traffic(n: usize) -> anyhow::Result<ReloadUnderTraffic> {
    let dir = std::path::PathBuf::from(format!("/sys/fs/bpf/op25b-bench-{}", std::process::id()));
    let _claim = op25b_tests::leftovers::claim(
        op25b_tests::leftovers::Kind::Dir,
        dir.to_str().expect("pin path is UTF-8"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let mut rng = StdRng::seed_from_u64(99);
        let old = Policy {
            dynamic: prefixes::list(&mut rng, n, true),
            exempt: prefixes::list(&mut rng, n / 10, false),
            ..small_policy()
        };
        let new = Policy {
            dynamic: churn(&mut rng, &old.dynamic, true),
            exempt: churn(&mut rng, &old.exempt, false),
            ..old.clone()
        };
        let mut control = Dataplane::load(&Maps::Pinned(dir.clone()), 0)?;
        control.apply(&old)?;
        let tester = Dataplane::load(&Maps::Pinned(dir.clone()), 1)?;
        let rules = op25b_common::abi::RuntimeConfig::DEFAULT;
        let mut frames = Vec::new();
        for _ in 0..400 {
            let src = prefixes::host_in(&mut rng, &old.dynamic);
            for s in [IpAddr::V4(src), ip("203.0.113.10")] {
                let frame = FrameSpec::tcp_syn(s, ip(MX4), 25).build();
                let (a, b) = (
                    decide(frame.as_slice(), &rules, &old),
                    decide(frame.as_slice(), &rules, &new),
                );
                if a == b {
                    frames.push((frame, a.reason));
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (judged, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let worker = {
            let (stop, judged, wrong) =
                (Arc::clone(&stop), Arc::clone(&judged), Arc::clone(&wrong));
            std::thread::spawn(move || -> anyhow::Result<()> {
                testrun::pin_to_cpu(1);
                while !stop.load(Ordering::Relaxed) {
                    for (frame, expected) in &frames {
                        if tester.judge(frame)?.reason != *expected {
                            wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        judged.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        };
        let mut reload_ms = Vec::new();
        for policy in [&new, &old, &new] {
            let t = Instant::now();
            control.apply(policy)?;
            reload_ms.push(ms(t.elapsed()));
        }
        stop.store(true, Ordering::Relaxed);
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("tester panicked"))??;
        Ok(ReloadUnderTraffic {
            prefixes: n,
            reloads: reload_ms.len(),
            reload_ms,
            frames_judged: judged.load(Ordering::Relaxed),
            misverdicts: wrong.load(Ordering::Relaxed),
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub fn targets(
    per_packet: &PerPacket,
    scale: &[ScaleRow],
    ipv4: &Ipv4List,
    throughput: &crate::throughput::Throughput,
    reload: &ReloadUnderTraffic,
) -> Vec<Target> {
    let mut targets = Vec::new();
    for row in per_packet
        .rows
        .iter()
        .filter(|r| matches!(r.reason, "not_ip" | "not_smtp" | "fragment"))
    {
        targets.push(Target {
            name: format!("non-SMTP path {} ≤ floor + 5 ns", row.path),
            measured: format!("floor + {:.1} ns", row.op25b_minus_floor_ns),
            limit: "floor + 5 ns".into(),
            met: row.op25b_minus_floor_ns <= 5.0,
        });
    }
    let at = |n: usize| scale.iter().find(|r| r.prefixes_per_list == n);
    if let (Some(small), Some(big)) = (at(10), scale.iter().max_by_key(|r| r.prefixes_per_list)) {
        let ratio = big.blocked_ns_random_sources / small.blocked_ns_random_sources;
        targets.push(Target {
            name: format!("blocked path, {} prefixes vs 10", big.prefixes_per_list),
            measured: format!("{ratio:.2}×"),
            limit: "≤ 1.3×".into(),
            met: ratio <= 1.3,
        });
    }
    if ipv4.prefixes > 0 {
        targets.push(Target {
            name: format!("{}-prefix IPv4 list loads", ipv4.prefixes),
            measured: format!("{:.0} ms", ipv4.load_dynamic_ms),
            limit: "< 200 ms".into(),
            met: ipv4.load_dynamic_ms < 200.0,
        });
        targets.push(Target {
            name: format!("{}-prefix IPv4 list, 1% reload", ipv4.prefixes),
            measured: format!("{:.0} ms", ipv4.reload_1pct_ms),
            limit: "< 20 ms".into(),
            met: ipv4.reload_1pct_ms < 20.0,
        });
    }
    targets.extend(crate::throughput::targets(throughput));
    targets.push(Target {
        name: format!(
            "mis-verdicts while a {}-prefix list reloads",
            reload.prefixes
        ),
        measured: reload.misverdicts.to_string(),
        limit: "0".into(),
        met: reload.misverdicts == 0,
    });
    targets
}

#[allow(clippy::too_many_lines, reason = "one report, table after table")]
pub fn markdown(
    machine: &str,
    per_packet: &PerPacket,
    scale: &[ScaleRow],
    ipv4: &Ipv4List,
    throughput: &crate::throughput::Throughput,
    reload: &ReloadUnderTraffic,
    targets: &[Target],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "Machine: {machine}\n");
    let _ = writeln!(
        md,
        "Per-packet cost (BPF_PROG_TEST_RUN, repeat {}, median of {}, one CPU, bpf_stats off; verifier: {} instructions one-buffer build, {} frags-aware build)\n",
        per_packet.repeat,
        per_packet.runs,
        per_packet.verified_instructions.map_or_else(|| "?".into(), |n| n.to_string()),
        per_packet.verified_instructions_multi_buffer.map_or_else(|| "?".into(), |n| n.to_string())
    );
    let _ = writeln!(
        md,
        "| path | verdict | op25b ns | floor ns | op25b − floor | ratio | frags-aware build ns | xdp-filter ns |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &per_packet.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:+.1} | {:.2}× | {:.1} | {} |",
            r.path,
            r.reason,
            r.op25b_ns,
            r.floor_ns,
            r.op25b_minus_floor_ns,
            r.op25b_ns / r.floor_ns.max(0.1),
            r.op25b_multi_buffer_ns,
            r.xdp_filter_ns
                .map_or_else(|| "n/a".into(), |v| format!("{v:.1}"))
        );
    }
    let _ = writeln!(
        md,
        "\nScale (dynamic and exempt lists, half IPv4 half IPv6, carrier-like prefix lengths)\n"
    );
    let _ = writeln!(md, "| prefixes per list | blocked ns (random sources) | trie memory | load dynamic | load exempt | reload 1% (median of {RELOADS}) |");
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
    for r in scale {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} MiB | {:.0} ms | {:.0} ms | {:.0} ms |",
            r.prefixes_per_list,
            r.blocked_ns_random_sources,
            r.policy_map_memory_bytes as f64 / f64::from(1 << 20),
            r.load_dynamic_ms,
            r.load_exempt_ms,
            r.reload_1pct_ms
        );
    }
    let _ = writeln!(
        md,
        "\nIPv4 only: {} dynamic /16–/24 pools load in {:.1} ms, {} exempt /28–/32 on top in {:.1} ms ({} /24s split into blocks), 1% of the pools replaced and back {} times in {:.1} ms (median; each: {} ms)",
        ipv4.prefixes,
        ipv4.load_dynamic_ms,
        ipv4.prefixes,
        ipv4.load_exempt_ms,
        ipv4.class_blocks,
        RELOADS,
        ipv4.reload_1pct_ms,
        ipv4.reload_1pct_ms_each
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let steps = &ipv4.reload_1pct_steps_ms;
    let _ = writeln!(
        md,
        "\nThe median reload's steps: list record (walked and compared) {:.1} ms, repaint {:.1}, kernel writes {:.1}, record rewritten {:.1}, IPv6 {:.1}",
        steps.record, steps.repaint, steps.kernel, steps.record_write, steps.ipv6
    );
    md.push_str(&crate::throughput::markdown(throughput));
    let _ = writeln!(
        md,
        "\nReload under traffic: {} prefixes per list, {} reloads ({} ms), {} frames judged meanwhile, {} mis-verdicts\n",
        reload.prefixes,
        reload.reloads,
        reload.reload_ms.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(", "),
        reload.frames_judged,
        reload.misverdicts
    );
    let _ = writeln!(md, "| target | measured | limit | met |");
    let _ = writeln!(md, "|---|---|---|---|");
    for t in targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.name,
            t.measured,
            t.limit,
            if t.met { "yes" } else { "**no**" }
        );
    }
    md
}
