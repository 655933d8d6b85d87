//! `replay [--config FILE | --live] CAPTURE`.

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use op25b_common::Reason;

use super::{judging, CommandError, PinPathOption};
use crate::{
    config::Config,
    dataplane::{test_run::TEST_RUN_MAX_FRAME, ProgramKind},
    tools::{capture::Capture, replay::replay},
};

/// Run every frame of a capture through the real XDP program and print
/// one JSON verdict per frame.
///
/// stdout gets {"frame":N,"action":"pass"|"drop","reason":"..."} per
/// frame (N from 1); stderr gets a per-reason summary and the program's
/// verifier instruction count. Takes pcap or pcapng with Ethernet link
/// type (tcpdump -i IFACE -w FILE). Loads the program without attaching
/// it anywhere; needs root (CAP_BPF).
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The configuration whose policy to judge with.
    #[arg(long, env = "OP25B_CONFIG", required_unless_present = "live")]
    config: Option<PathBuf>,
    /// Judge with the live pinned maps of a running op25b instead.
    #[arg(long)]
    live: bool,
    #[command(flatten)]
    pins: PinPathOption,
    /// The capture file (pcap or pcapng).
    capture: PathBuf,
}

pub fn execute(args: &ReplayArgs) -> Result<ExitCode, CommandError> {
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let mut capture = Capture::open(&args.capture)?;
    let mut judging = if args.live {
        judging::live_or_configured(config.as_ref(), &args.pins.resolve(config.as_ref()), true)?
    } else {
        let config = config
            .as_ref()
            .expect("clap requires --config without --live");
        judging::configured(config)?
    };
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
    let summary = replay(&mut judging.dataplane, &mut capture, &mut out)?;

    let mut err = io::stderr().lock();
    writeln!(
        err,
        "{} frames, judged against {}",
        summary.frames, judging.against
    )?;
    for reason in Reason::ALL {
        writeln!(
            err,
            "  {:<16} {:<4} {}",
            reason.name(),
            reason.action().name(),
            summary.count(reason)
        )?;
    }
    if summary.shorter_than_ethernet > 0 {
        writeln!(
            err,
            "  ({} frames shorter than an Ethernet header counted malformed without a test run)",
            summary.shorter_than_ethernet
        )?;
    }
    if summary.cut_for_test_run > 0 {
        writeln!(
            err,
            "  ({} frames longer than {TEST_RUN_MAX_FRAME} bytes were cut to that length for the test run)",
            summary.cut_for_test_run,
        )?;
    }
    if summary.cut_by_snaplen > 0 {
        writeln!(
            err,
            "  ({} frames were cut by the capture's snap length and judged on what was captured)",
            summary.cut_by_snaplen
        )?;
    }
    for kind in ProgramKind::ALL {
        match judging.dataplane.verified_instructions(kind) {
            Some(n) => writeln!(
                err,
                "program ({kind}): {n} instructions processed by the verifier (limit 1000000)"
            )?,
            None => writeln!(
                err,
                "program ({kind}): the kernel did not report its verified instruction count"
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
