//! `fleet push|status|exempt|allow-destination`: fleet sync on etcd from
//! any box or an operator's laptop (the work is in `crate::fleet::commands`).

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;

use super::{grants::AuditArgs, CommandError};
use crate::{
    api::types::Ttl,
    fleet::{commands as fleet_commands, grant_commands},
    policy::ListKind,
};

/// Fleet sync on etcd: publish lists to every box, grant for every box,
/// and see every agent's state.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// A configuration with [fleet] (where etcd is and how to log in);
    /// for `push` also the lists and pools to publish.
    #[arg(long, env = "OP25B_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: FleetAction,
}

#[derive(Debug, Subcommand)]
enum FleetAction {
    /// Publish the lists and pools of --config to etcd, validated first
    /// exactly as check-config does; prints the diff against what is
    /// published. Blocked ports and interfaces stay per box.
    Push {
        /// Show the diff, publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List every agent of the fleet: applied revision, interfaces, last
    /// error; flags agents behind the latest revision or gone (exit 4).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Grant, revoke and list exemptions for every box (in etcd, audited).
    Exempt {
        #[command(subcommand)]
        action: FleetGrantAction,
    },
    /// Grant, revoke and list allowed destinations for every box.
    AllowDestination {
        #[command(subcommand)]
        action: FleetGrantAction,
    },
}

/// A grant written straight to etcd (no running agent needed).
#[derive(Debug, Subcommand)]
pub enum FleetGrantAction {
    /// Grant PREFIX (a bare address means one host), or exempt a
    /// subscriber by name (`fleet exempt add --subscriber alice@example.jp`).
    Add {
        #[arg(required_unless_present = "subscriber")]
        prefix: Option<String>,
        /// A RADIUS User-Name instead of a prefix: the exemption follows
        /// the subscriber's sessions on every box (exemptions only).
        #[arg(long, conflicts_with = "prefix")]
        subscriber: Option<String>,
        /// Expire after this long: 7d, 12h, 3600 (seconds). Default: never.
        #[arg(long)]
        ttl: Option<Ttl>,
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// Revoke PREFIX, or the grant of `--subscriber NAME`.
    Del {
        #[arg(required_unless_present = "subscriber")]
        prefix: Option<String>,
        #[arg(long, conflicts_with = "prefix")]
        subscriber: Option<String>,
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// List the grants.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn execute(args: &FleetArgs) -> Result<ExitCode, CommandError> {
    let config = args
        .config
        .as_deref()
        .ok_or_else(|| CommandError::Usage("give --config FILE with a [fleet] section".into()))?;
    Ok(match &args.action {
        FleetAction::Push { dry_run } => fleet_commands::push(config, *dry_run)?,
        FleetAction::Status { json } => fleet_commands::status(config, *json)?,
        FleetAction::Exempt { action } => grant_commands::grant(config, ListKind::Exempt, action)?,
        FleetAction::AllowDestination { action } => {
            grant_commands::grant(config, ListKind::AllowedDestinations, action)?
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::Cli;

    fn parses(args: &[&str]) -> Result<(), String> {
        let mut all = vec!["op25b-agent", "fleet"];
        all.extend(args);
        Cli::try_parse_from(all)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Fleet grants take the provisioning API's TTL: 1 s to 10 years, in
    /// seconds or a duration; a TTL that would overflow the expiry time (or
    /// expire at once) is refused before anything reaches etcd.
    #[test]
    fn fleet_grant_ttls_are_bounded_like_the_apis() {
        for good in ["7d", "12h", "3600"] {
            parses(&["exempt", "add", "192.0.2.1", "--ttl", good]).unwrap();
        }
        for bad in ["0", "11years", "600000000000000000y", "soon"] {
            let err = parses(&["exempt", "add", "192.0.2.1", "--ttl", bad]).unwrap_err();
            assert!(err.contains("ttl"), "{bad}: {err}");
        }
        parses(&[
            "exempt",
            "del",
            "192.0.2.1",
            "--reason",
            "ticket 8",
            "--actor",
            "noc",
        ])
        .unwrap();
    }
}
