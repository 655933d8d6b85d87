//! op25b-bench: what op25b costs, measured beside its baselines in one run.
//!
//! Sections: per-packet cost (BPF_PROG_TEST_RUN, against a bare XDP_PASS
//! floor and xdp-filter), scale (list sizes 10 .. 1,000,000: blocked-path
//! cost, kernel memory, load and 1% reload times), throughput through a
//! veth pair (live-frame generator; op25b vs xdp-filter vs nftables vs no
//! filter) and mis-verdicts while a 1,000,000-entry list reloads.
//! Prints a markdown table, writes JSON. `--smoke` runs everything tiny.
mod fleet;
mod lab;
mod prefixes;
mod report;
mod sections;
mod testrun;

use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

/// Benchmark op25b against its baselines (needs root).
#[derive(Debug, Parser)]
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

    let mut targets = sections::targets(&per_packet, &scale, &throughput, &reload);
    targets.extend(report::targets(&report_bench));
    let report = Report {
        machine,
        smoke: args.smoke,
        per_packet,
        scale,
        throughput,
        reload_under_traffic: reload,
        abuse_reports: report_bench,
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
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    eprintln!("JSON written to {}", args.json.display());
    Ok(())
}
