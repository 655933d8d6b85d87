//! `status`.

use std::process::ExitCode;

use super::{CommandError, ConfigOption, JsonOption, PinPathOption};

/// Show what is enforced now: interfaces and their XDP mode, list
/// sizes, blocked ports and per-reason counters, read from the pinned
/// objects (works whether or not the agent runs).
///
/// With --config, also lists configured interfaces that are not attached.
/// Exits 3 when op25b is not loaded.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigOption,
    #[command(flatten)]
    pins: PinPathOption,
    #[command(flatten)]
    output: JsonOption,
}

pub fn execute(args: &StatusArgs) -> Result<ExitCode, CommandError> {
    let config = args.config.load()?;
    let status = crate::observe::status::read(&args.pins.resolve(config.as_ref()), config.as_ref());
    args.output
        .print_pretty(&status, |out, status| write!(out, "{}", status.to_text()))?;
    Ok(if status.loaded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
