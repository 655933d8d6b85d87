//! op25b-bench: what op25b costs, measured beside its baselines in one run.
//!
//! Sections: per-packet cost (BPF_PROG_TEST_RUN, against a bare XDP_PASS
//! floor and xdp-filter), scale (list sizes 10 .. 1,000,000: blocked-path
//! cost, kernel memory, load and 1% reload times), throughput through a
//! veth pair (live-frame generator, or AF_PACKET where the kernel refuses
//! live frames; op25b vs xdp-filter vs nftables vs no
//! filter), mis-verdicts while a 1,000,000-entry list reloads, RADIUS
//! (accounting requests applied/s, Start -> exemption latency, bytes per
//! session), and on its own (`--fleet`) fleet sync through etcd.
//! Prints a markdown table, writes JSON. `--smoke` runs everything tiny.
mod afpacket;
mod fleet;
mod fleet_lab;
mod lab;
mod per_packet;
mod prefixes;
mod radius;
mod reattach;
mod report;
mod sections;
mod testrun;
mod throughput;

use std::path::PathBuf;

use clap::Parser;

/// Counts live heap bytes, for the session table's memory per session.
#[global_allocator]
static ALLOCATOR: radius::CountingAllocator = radius::CountingAllocator;
use serde::Serialize;

/// Benchmark op25b against its baselines (needs root).
#[derive(Debug, Parser)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "command-line switches, each read once"
)]
struct Args {
    /// Tiny repeats and sizes: checks the benchmark works, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/op25b-bench.json")]
    json: PathBuf,
    /// Test-run repeats per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Measurements per row (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only the RADIUS section (needs no veth lab, no XDP attach).
    #[arg(long)]
    only_radius: bool,
    /// Only the interface-recreated section (needs the netns lab, no veth bench net).
    #[arg(long)]
    only_reattach: bool,
    /// Run only these sections (repeatable; default: all).
    #[arg(long, value_enum)]
    only: Vec<Section>,
    /// Run only the fleet-sync section: real agents in namespaces following one etcd.
    #[arg(long)]
    fleet: bool,
    /// Agents for --fleet.
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Grants measured for --fleet.
    #[arg(long, default_value_t = 30)]
    grants: usize,
    /// Prefixes in the pool list rolled out by --fleet.
    #[arg(long, default_value_t = 1_000_000)]
    pool_prefixes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    PerPacket,
    Scale,
    Ipv4,
    Throughput,
    Reload,
    Reports,
    Radius,
    Reattach,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub limit: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    smoke: bool,
    per_packet: per_packet::PerPacket,
    scale: Vec<sections::ScaleRow>,
    ipv4_list: sections::Ipv4List,
    throughput: throughput::Throughput,
    reload_under_traffic: sections::ReloadUnderTraffic,
    #[serde(skip_serializing_if = "Option::is_none")]
    abuse_reports: Option<report::ReportBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    radius: Option<radius::RadiusBench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface_reattach: Option<reattach::ReattachBench>,
    targets: Vec<Target>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|s| s.trim().to_owned())
            })
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

fn radius_section(smoke: bool) -> anyhow::Result<radius::RadiusBench> {
    if smoke {
        radius::radius(2_000, 20, 10_000)
    } else {
        radius::radius(200_000, 1_000, 1_000_000)
    }
}

/// `--only-radius`: the RADIUS section alone, its own JSON.
fn only_radius(args: &Args, machine: &str) -> anyhow::Result<()> {
    let radius = radius_section(args.smoke)?;
    let targets = radius::targets(&radius);
    println!("Machine: {machine}\n\n{}", radius::markdown(&radius));
    for t in &targets {
        println!(
            "| {} | {} | {} | {} |",
            t.name,
            t.measured,
            t.limit,
            if t.met { "yes" } else { "**no**" }
        );
    }
    let report = serde_json::json!({
        "machine": machine,
        "smoke": args.smoke,
        "radius": radius,
        "targets": targets,
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

type OffLabSections = (
    Option<report::ReportBench>,
    Option<radius::RadiusBench>,
    Option<reattach::ReattachBench>,
);

/// The sections that need no veth bench net: abuse reports, RADIUS, reattach.
fn off_lab_sections(
    args: &Args,
    wanted: impl Fn(Section) -> bool,
) -> anyhow::Result<OffLabSections> {
    let mut report_bench = None;
    if wanted(Section::Reports) {
        eprintln!("abuse reports ...");
        report_bench = Some(if args.smoke {
            report::bench(&[10_000, 20_000], 500)?
        } else {
            report::bench(&[1_000_000, 10_000_000], 10_000)?
        });
    }
    let mut radius = None;
    if wanted(Section::Radius) {
        eprintln!("RADIUS ...");
        radius = Some(radius_section(args.smoke)?);
    }
    let mut reattach = None;
    if wanted(Section::Reattach) {
        eprintln!("interface recreated under the agent ...");
        reattach = Some(reattach::bench(if args.smoke { 2 } else { 20 })?);
    }
    Ok((report_bench, radius, reattach))
}

/// `--only-radius` / `--only-reattach`: one section alone, without the veth lab.
fn only_one(args: &Args, machine: &str) -> anyhow::Result<()> {
    if args.only_radius {
        return only_radius(args, machine);
    }
    let reattach = reattach::bench(if args.smoke { 2 } else { 20 })?;
    println!("Machine: {machine}\n\n{}", reattach::markdown(&reattach));
    Ok(())
}

/// `--fleet`: the fleet-sync section alone (its own agents and etcd), its own JSON.
fn only_fleet(args: &Args) -> anyhow::Result<()> {
    let report = if args.smoke {
        fleet::run(2, 3, 1_000)?
    } else {
        fleet::run(args.agents, args.grants, args.pool_prefixes)?
    };
    println!("{}", fleet::markdown(&report));
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

/// Prefixes per list in the scale section.
fn list_sizes(smoke: bool) -> &'static [usize] {
    if smoke {
        &[10, 1_000]
    } else {
        &[10, 1_000, 100_000, 1_000_000]
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.fleet {
        return only_fleet(&args);
    }
    let (repeat, runs) = if args.smoke {
        (1_000, 1)
    } else {
        (args.repeat, args.runs.max(1))
    };
    let sizes = list_sizes(args.smoke);
    let machine = machine();
    if args.only_radius || args.only_reattach {
        return only_one(&args, &machine);
    }
    let _stats = testrun::StatsOff::new();
    let net = lab::BenchNet::new()?;
    testrun::pin_to_cpu(0);

    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let mut per_packet = per_packet::PerPacket::default();
    if wanted(Section::PerPacket) {
        eprintln!("per-packet cost ...");
        per_packet = per_packet::per_packet(&net, repeat, runs)?;
    }
    let mut scale = Vec::new();
    if wanted(Section::Scale) {
        eprintln!("scale ...");
        scale = sizes
            .iter()
            .map(|&n| sections::scale(n, repeat, runs))
            .collect::<anyhow::Result<Vec<_>>>()?;
    }
    let mut ipv4_list = sections::Ipv4List::default();
    if wanted(Section::Ipv4) {
        eprintln!("IPv4 list ...");
        ipv4_list = sections::ipv4_list(if args.smoke { 1_000 } else { 1_000_000 })?;
    }
    let mut throughput = throughput::Throughput::default();
    if wanted(Section::Throughput) {
        eprintln!("throughput ...");
        throughput =
            throughput::throughput_or_why(&net, if args.smoke { 20_000 } else { 5_000_000 });
    }
    let mut reload = sections::ReloadUnderTraffic::default();
    if wanted(Section::Reload) {
        eprintln!("reload under traffic ...");
        reload = sections::reload_under_traffic(if args.smoke { 10_000 } else { 1_000_000 })?;
    }
    drop(net);
    let (report_bench, radius, reattach) = off_lab_sections(&args, wanted)?;

    let mut targets = sections::targets(&per_packet, &scale, &ipv4_list, &throughput, &reload);
    if let Some(r) = &report_bench {
        targets.extend(report::targets(r));
    }
    if let Some(r) = &radius {
        targets.extend(radius::targets(r));
    }
    if let Some(r) = &reattach {
        targets.push(reattach::target(r));
    }
    let report = Report {
        machine,
        smoke: args.smoke,
        per_packet,
        scale,
        ipv4_list,
        throughput,
        reload_under_traffic: reload,
        abuse_reports: report_bench,
        radius,
        interface_reattach: reattach,
        targets,
    };
    println!(
        "{}",
        sections::markdown(
            &report.machine,
            &report.per_packet,
            &report.scale,
            &report.ipv4_list,
            &report.throughput,
            &report.reload_under_traffic,
            &report.targets
        )
    );
    if let Some(r) = &report.abuse_reports {
        println!("{}", report::markdown(r));
    }
    if let Some(r) = &report.radius {
        println!("{}", radius::markdown(r));
    }
    if let Some(r) = &report.interface_reattach {
        println!("{}", reattach::markdown(r));
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    eprintln!("JSON written to {}", args.json.display());
    Ok(())
}
