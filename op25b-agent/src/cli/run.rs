//! `run --config FILE`.

use std::{path::PathBuf, process::ExitCode};

use super::CommandError;
use crate::{agent::Agent, config::Config};

/// Enforce: attach to the configured interfaces and keep the maps equal
/// to the configuration until SIGTERM.
///
/// Adopts a running op25b (pinned program, maps and links) without a
/// gap; reloads on SIGHUP and whenever the config or a list file
/// changes. A configuration with any error is refused and the running
/// policy stays. Needs CAP_BPF, CAP_NET_ADMIN (and CAP_SYS_ADMIN to
/// mount bpffs if it is not mounted).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file (TOML).
    #[arg(long, env = "OP25B_CONFIG")]
    config: PathBuf,
}

pub fn execute(args: &RunArgs) -> Result<ExitCode, CommandError> {
    let config = Config::load(&args.config)?;
    Agent::start(config)?.run()?;
    Ok(ExitCode::SUCCESS)
}
