//! `report --config FILE --window 24h ...`: the logic is in [`crate::report`].

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use super::CommandError;
use crate::{config::Config, report::Format};

/// Abuse reports from the block events: one per offending source (per
/// subscriber where events name one), as X-ARF v4 or CSV.
///
/// Reads [events] path of the configuration and its rotations, plain
/// or gzip (events.jsonl.1, events.jsonl.2.gz, ...), in one pass with
/// memory per source, not per line. X-ARF reports are category
/// infrastructure, type botnet, from the [reports] organisation, with
/// the first and last event lines as evidence (sha256 each); the
/// subscriber name appears only in `_internal`. Corrupt or truncated
/// lines are skipped and counted ("N lines skipped", the first file:line
/// named). Prints a progress line on stderr when it runs longer than a
/// few seconds. Needs read access to the events files only.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The agent's configuration (for [events] path and [reports]).
    #[arg(long, env = "OP25B_CONFIG")]
    config: PathBuf,
    /// How far back: 24h, 7d, 30d.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Report only sources with at least this many blocked attempts in the window.
    #[arg(long, default_value_t = 1)]
    min_attempts: u64,
    /// xarf: one X-ARF v4 JSON object per line; csv: a header and one row per source.
    #[arg(long, value_enum, default_value_t = Format::Xarf)]
    format: Format,
    /// Write one file per report into DIR (<report_id>.json or
    /// <report_id>.csv) instead of everything to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Leave out what identifies the subscriber to the ISP: X-ARF's
    /// `_internal` object, the CSV's subscriber and sessions columns.
    /// Use it for reports that leave the ISP.
    #[arg(long)]
    no_internal: bool,
}

pub fn execute(args: &ReportArgs) -> Result<ExitCode, CommandError> {
    let config = Config::load(&args.config)?;
    let report_args = crate::report::ReportArgs {
        window: args.window,
        min_attempts: args.min_attempts,
        format: args.format,
        out: args.out.clone(),
        internal: !args.no_internal,
    };
    let outcome = crate::report::run(
        &config,
        &report_args,
        SystemTime::now(),
        &mut io::stdout().lock(),
        &mut io::stderr(),
    )?;
    let mut err = io::stderr().lock();
    for line in outcome.summary() {
        writeln!(err, "report: {line}")?;
    }
    if let Some(dir) = &args.out {
        writeln!(
            err,
            "report: {} files written to {}",
            outcome.written.len(),
            dir.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
