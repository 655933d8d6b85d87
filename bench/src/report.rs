//! `op25b-agent report` over a large synthetic events file: wall time and
//! peak RSS of the real binary as a child, beside the floor of reading the
//! same file at all, at two sizes with the same sources (bounded memory
//! means the peak stays flat as lines grow).
// Counts far below 2^52: f64 is exact enough for a report.
#![allow(clippy::cast_precision_loss)]

use std::{
    fmt::Write as _,
    fs::File,
    io::{BufWriter, Read as _, Write as _},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use serde::Serialize;

use crate::Target;

#[derive(Debug, Serialize)]
pub struct ReportRow {
    pub lines: u64,
    pub file_mib: f64,
    pub sources: u32,
    pub reports: usize,
    pub seconds: f64,
    pub lines_per_second: f64,
    /// Reading the same file with a plain 256 KiB buffer, counting newlines.
    pub read_floor_seconds: f64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct ReportBench {
    pub rows: Vec<ReportRow>,
}

/// The agent binary beside this one (scripts/bench.sh builds both), or
/// OP25B_AGENT_BIN.
fn agent_bin() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("OP25B_AGENT_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .context("bench binary has a directory")?
            .join("op25b-agent"),
    };
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it (scripts/bench.sh does)",
        path.display()
    );
    Ok(path)
}

/// `lines` events from `sources` sources over the last 29 days, one in
/// five sources named by a subscriber (as RADIUS accounting adds them).
fn write_events(path: &Path, lines: u64, sources: u32) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(13);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let now = SystemTime::now();
    let span = Duration::from_secs(29 * 86_400);
    for i in 0..lines {
        // Oldest first, as the agent writes them.
        let back = span.mul_f64(1.0 - i as f64 / lines as f64);
        let time = humantime::format_rfc3339_millis(now - back);
        let source = rng.gen_range(0..sources);
        let src = Ipv4Addr::from(0x6440_0000 + source);
        let dst = Ipv4Addr::from(0xc633_6400 + rng.gen_range(0..4096u32));
        let src_port: u16 = rng.gen_range(1024..=65_535);
        let attempts: u32 = rng.gen_range(1..=5);
        write!(
            out,
            r#"{{"time":"{time}","interface":"eth1","reason":"blocked","src":"{src}","dst":"{dst}","src_port":{src_port},"dst_port":25,"attempts":{attempts}"#
        )?;
        if source % 5 == 0 {
            write!(
                out,
                r#","subscriber":"sub{}@isp.example","session":"S{}""#,
                source,
                source % 97
            )?;
        }
        out.write_all(b"}\n")?;
    }
    out.flush()?;
    Ok(())
}

fn read_floor(path: &Path) -> anyhow::Result<(Duration, u64)> {
    let start = Instant::now();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 << 10];
    let mut newlines = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        #[expect(clippy::naive_bytecount, reason = "the floor is the plainest scan")]
        let found = buf[..n].iter().filter(|&&b| b == b'\n').count();
        newlines += found as u64;
    }
    Ok((start.elapsed(), newlines))
}

/// Runs the agent's `report` on `config`; (wall time, peak RSS KiB, reports).
///
/// GNU time reads the peak from wait4 of a child it forked itself. Our own
/// wait4 would not do: a child spawned from this (large) process carries
/// our peak RSS across exec in its ru_maxrss.
fn run_report(bin: &Path, config: &Path, out: &Path) -> anyhow::Result<(Duration, u64, usize)> {
    let peak_file = out.with_extension("peak");
    let start = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&peak_file)
        .arg(bin)
        .args(["report", "--window", "30d", "--config"])
        .arg(config)
        .stdout(File::create(out)?)
        .stderr(Stdio::null())
        .status()
        .context("/usr/bin/time (Debian package time)")?;
    let elapsed = start.elapsed();
    anyhow::ensure!(status.success(), "report failed: {status}");
    let peak_kib = std::fs::read_to_string(&peak_file)?
        .trim()
        .parse()
        .context("GNU time's %M")?;
    let reports = std::fs::read_to_string(out)?.lines().count();
    Ok((elapsed, peak_kib, reports))
}

pub fn bench(sizes: &[u64], sources: u32) -> anyhow::Result<ReportBench> {
    let bin = agent_bin()?;
    let dir = std::env::temp_dir().join(format!("op25b-bench-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let config = dir.join("op25b.toml");
        std::fs::write(
            &config,
            "[events]\npath = \"events.jsonl\"\n[reports]\norg = \"Example ISP\"\n\
             contact = \"abuse@isp.example\"\ndomain = \"isp.example\"\n",
        )?;
        let events = dir.join("events.jsonl");
        let mut rows = Vec::new();
        for &lines in sizes {
            eprintln!("  {lines} event lines ...");
            write_events(&events, lines, sources)?;
            let file_mib = std::fs::metadata(&events)?.len() as f64 / f64::from(1 << 20);
            let (floor, counted) = read_floor(&events)?;
            anyhow::ensure!(counted == lines, "wrote {lines} lines, read {counted}");
            let (elapsed, peak_kib, reports) = run_report(&bin, &config, &dir.join("out.jsonl"))?;
            anyhow::ensure!(
                reports > 0 && reports <= sources as usize,
                "{reports} reports from {sources} sources"
            );
            rows.push(ReportRow {
                lines,
                file_mib,
                sources,
                reports,
                seconds: elapsed.as_secs_f64(),
                lines_per_second: lines as f64 / elapsed.as_secs_f64(),
                read_floor_seconds: floor.as_secs_f64(),
                peak_rss_mib: peak_kib as f64 / 1024.0,
            });
        }
        Ok(ReportBench { rows })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub fn markdown(bench: &ReportBench) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Abuse reports (`op25b-agent report --window 30d`, X-ARF, as a child process; peak RSS by GNU time)\n"
    );
    let _ = writeln!(
        md,
        "| event lines | file MiB | sources | reports | seconds | lines/s | read floor s | peak RSS MiB |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &bench.rows {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {:.2} | {:.0} | {:.2} | {:.1} |",
            r.lines,
            r.file_mib,
            r.sources,
            r.reports,
            r.seconds,
            r.lines_per_second,
            r.read_floor_seconds,
            r.peak_rss_mib
        );
    }
    md
}

/// Memory stays flat from the smaller to the larger file.
pub fn targets(bench: &ReportBench) -> Vec<Target> {
    let (Some(small), Some(big)) = (bench.rows.first(), bench.rows.last()) else {
        return Vec::new();
    };
    let ratio = big.peak_rss_mib / small.peak_rss_mib;
    vec![Target {
        name: format!(
            "report peak RSS, {} vs {} event lines",
            big.lines, small.lines
        ),
        measured: format!("{ratio:.2}× ({:.1} MiB)", big.peak_rss_mib),
        limit: "≤ 1.5×".into(),
        met: ratio <= 1.5,
    }]
}
