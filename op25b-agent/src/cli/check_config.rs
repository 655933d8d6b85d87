//! `check-config FILE`.

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use super::CommandError;
use crate::{config::Config, policy::ListKind};

/// Validate a configuration and every list file it names, and print how
/// many prefixes each list holds per address family.
///
/// Exits non-zero, listing every problem with its file:line and key,
/// when anything is wrong. Needs no privileges.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The configuration file (TOML).
    config: PathBuf,
}

pub fn execute(args: &CheckConfigArgs) -> Result<ExitCode, CommandError> {
    let path = &args.config;
    let config = Config::load(path)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}: OK", path.display())?;
    writeln!(out, "blocked_ports: {:?}", config.policy.blocked_ports)?;
    let now = crate::clock::now_unix();
    let active = config.policy.active(now);
    for kind in ListKind::ALL {
        let list = active.list(kind);
        writeln!(
            out,
            "{}: {} IPv4, {} IPv6 prefixes",
            kind.name(),
            list.v4.len(),
            list.v6.len()
        )?;
        let all = config.policy.list(kind);
        if !all.expiring.is_empty() {
            let expired = all.expiring.values().filter(|&&t| t <= now).count();
            writeln!(
                out,
                "  {} temporary (expires_at), {expired} of them already expired and not counted",
                all.expiring.len()
            )?;
        }
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
    for warning in &config.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(ExitCode::SUCCESS)
}
