//! What each subcommand does; `main` only parses and dispatches.

use std::{
    io::{self, Write as _},
    path::Path,
    process::ExitCode,
};

use op25b_common::Reason;

use crate::{
    capture::{Capture, CaptureError},
    config::{Config, ConfigError},
    dataplane::{Dataplane, DataplaneError, Maps},
    policy::ListKind,
    replay::{replay, ReplayError},
};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// `check-config FILE`.
pub fn check_config(path: &Path) -> Result<ExitCode, CommandError> {
    let config = Config::load(path)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}: OK", path.display())?;
    writeln!(out, "blocked_ports: {:?}", config.policy.blocked_ports)?;
    for kind in ListKind::ALL {
        let list = config.policy.list(kind);
        writeln!(
            out,
            "{}: {} IPv4, {} IPv6 prefixes",
            kind.name(),
            list.v4.len(),
            list.v6.len()
        )?;
    }
    for iface in &config.interfaces {
        writeln!(
            out,
            "interface {}: xdp_mode {}",
            iface.name,
            iface.xdp_mode.name()
        )?;
    }
    writeln!(out, "pin_path: {}", config.pin_path.display())?;
    Ok(ExitCode::SUCCESS)
}

/// `replay --config FILE CAPTURE`.
pub fn replay_capture(config: &Path, capture: &Path) -> Result<ExitCode, CommandError> {
    let config = Config::load(config)?;
    let mut capture = Capture::open(capture)?;
    let mut dataplane = Dataplane::load(&Maps::Private, 0)?;
    dataplane.apply(&config.policy)?;
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
    let summary = replay(&mut dataplane, &mut capture, &mut out)?;

    let mut err = io::stderr().lock();
    writeln!(err, "{} frames", summary.frames)?;
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
            "  ({} frames longer than {} bytes were cut to that length for the test run)",
            summary.cut_for_test_run,
            crate::dataplane::TEST_RUN_MAX_FRAME
        )?;
    }
    if summary.cut_by_snaplen > 0 {
        writeln!(
            err,
            "  ({} frames were cut by the capture's snap length and judged on what was captured)",
            summary.cut_by_snaplen
        )?;
    }
    match dataplane.verified_instructions() {
        Some(n) => writeln!(
            err,
            "program: {n} instructions processed by the verifier (limit 1000000)"
        )?,
        None => writeln!(
            err,
            "program: the kernel did not report its verified instruction count"
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
