//! op25b-bench: what op25b costs, measured beside its baselines in one run.
//!
//! Sections: per-packet cost (BPF_PROG_TEST_RUN, against a bare XDP_PASS
//! floor and xdp-filter), scale (list sizes 10 .. 1,000,000: blocked-path
//! cost, kernel memory, load and 1% reload times), throughput through a
//! veth pair (live-frame generator; op25b vs xdp-filter vs nftables vs no
//! filter), mis-verdicts while a 1,000,000-entry list reloads, and RADIUS
//! (accounting requests applied/s, Start -> exemption latency, bytes per
//! session).
//! Prints a markdown table, writes JSON. `--smoke` runs everything tiny.
mod fleet;
mod fleet_lab;
mod lab;
mod prefixes;
mod radius;
mod reattach;
mod report;
mod sections;
mod testrun;

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
    per_packet: sections::PerPacket,
    scale: Vec<sections::ScaleRow>,
    throughput: sections::Throughput,
    reload_under_traffic: sections::ReloadUnderTraffic,
    abuse_reports: report::ReportBench,
    radius: radius::RadiusBench,
    interface_reattach: reattach::ReattachBench,
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.fleet {
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
        return Ok(());
    }
    let (repeat, runs) = if args.smoke {
        (1_000, 1)
    } else {
        (args.repeat, args.runs.max(1))
    };
    let sizes: &[usize] = if args.smoke {
        &[10, 1_000]
    } else {
        &[10, 1_000, 100_000, 1_000_000]
    };
    let machine = machine();
    if args.only_radius {
        return only_radius(&args, &machine);
    }
    if args.only_reattach {
        let reattach = reattach::bench(if args.smoke { 2 } else { 20 })?;
        println!("Machine: {machine}\n\n{}", reattach::markdown(&reattach));
        return Ok(());
    }
    let _stats = testrun::StatsOff::new();
    let net = lab::BenchNet::new()?;
    testrun::pin_to_cpu(0);

    eprintln!("per-packet cost ...");
    let per_packet = sections::per_packet(&net, repeat, runs)?;
    eprintln!("scale ...");
    let scale = sizes
        .iter()
        .map(|&n| sections::scale(n, repeat, runs))
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!("throughput ...");
    let throughput = sections::throughput(&net, if args.smoke { 20_000 } else { 5_000_000 })?;
    eprintln!("reload under traffic ...");
    let reload = sections::reload_under_traffic(if args.smoke { 10_000 } else { 1_000_000 })?;
    drop(net);
    eprintln!("abuse reports ...");
    let report_bench = if args.smoke {
        report::bench(&[10_000, 20_000], 500)?
    } else {
        report::bench(&[1_000_000, 10_000_000], 10_000)?
    };

    eprintln!("RADIUS ...");
    let radius = radius_section(args.smoke)?;
    eprintln!("interface recreated under the agent ...");
    let reattach = reattach::bench(if args.smoke { 2 } else { 20 })?;

    let mut targets = sections::targets(&per_packet, &scale, &throughput, &reload);
    targets.extend(report::targets(&report_bench));
    targets.extend(radius::targets(&radius));
    targets.push(reattach::target(&reattach));
    let report = Report {
        machine,
        smoke: args.smoke,
        per_packet,
        scale,
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
            &report.throughput,
            &report.reload_under_traffic,
            &report.targets
        )
    );
    println!("{}", report::markdown(&report.abuse_reports));
    println!("{}", radius::markdown(&report.radius));
    println!("{}", reattach::markdown(&report.interface_reattach));
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    eprintln!("JSON written to {}", args.json.display());
    Ok(())
}
