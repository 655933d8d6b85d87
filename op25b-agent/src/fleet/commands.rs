//! `op25b-agent fleet ...`: the operator's side of fleet
//! sync, from any machine that reaches etcd (an edge box or a laptop).
//! Each command is one short-lived tokio runtime around etcd calls.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Write as _},
    path::Path,
    process::ExitCode,
};

use serde::Serialize;

use super::{
    client::{self, FleetError},
    codec::{action_name, FleetLists},
    layout::Layout,
    registration::Registration,
};
use crate::{
    config::{fleet::FleetConfig, Config},
    policy::{grants::cli_actor, prefix::PrefixSet},
};

#[derive(Debug, thiserror::Error)]
pub enum FleetCommandError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{}: no [fleet] section: say where etcd is", .0.display())]
    NoFleet(std::path::PathBuf),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("metrics.read_token_file: {0}")]
    ReadToken(#[from] crate::api::bearer::TokenError),
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(super) fn fleet_of(config: &Config) -> Result<FleetConfig, FleetCommandError> {
    config
        .fleet
        .clone()
        .ok_or_else(|| FleetCommandError::NoFleet(config.path.clone()))
}

/// Differences between two list sets, per list.
#[derive(Debug, Default, Serialize)]
pub struct ListDiff {
    pub list: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

fn diff_sets(list: &str, old: &PrefixSet, new: &PrefixSet) -> ListDiff {
    let old: BTreeSet<_> = old.iter().collect();
    let new: BTreeSet<_> = new.iter().collect();
    ListDiff {
        list: list.to_owned(),
        added: new.difference(&old).map(ToString::to_string).collect(),
        removed: old.difference(&new).map(ToString::to_string).collect(),
    }
}

/// Per-list differences and pool action changes between published lists and new ones.
pub fn diff_lists(old: &FleetLists, new: &FleetLists) -> (Vec<ListDiff>, Vec<String>) {
    let mut diffs = vec![
        diff_sets("dynamic", &old.dynamic, &new.dynamic),
        diff_sets("exempt", &old.exempt, &new.exempt),
        diff_sets(
            "allowed_destinations",
            &old.allowed_destinations,
            &new.allowed_destinations,
        ),
    ];
    let mut actions = Vec::new();
    let empty = PrefixSet::default();
    let names: BTreeSet<&str> = old
        .pools
        .iter()
        .chain(&new.pools)
        .map(|p| p.name.as_str())
        .collect();
    for name in names {
        let before = old.pools.iter().find(|p| p.name == name);
        let after = new.pools.iter().find(|p| p.name == name);
        let action = |p: Option<&super::codec::FleetPool>| {
            p.map_or("(none)", |p| {
                action_name(p.action.unwrap_or(op25b_common::abi::PoolAction::Drop))
            })
        };
        if action(before) != action(after) {
            actions.push(format!(
                "pool {name}: {} -> {}",
                action(before),
                action(after)
            ));
        }
        diffs.push(diff_sets(
            &format!("pool {name}"),
            before.map_or(&empty, |p| &p.prefixes),
            after.map_or(&empty, |p| &p.prefixes),
        ));
    }
    diffs.retain(|d| !d.added.is_empty() || !d.removed.is_empty());
    (diffs, actions)
}

/// `fleet push --config FILE [--dry-run]`: publishes FILE's lists and pools,
/// validated exactly as `check-config` validates them.
pub fn push(path: &Path, dry_run: bool) -> Result<ExitCode, FleetCommandError> {
    let config = Config::load(path)?;
    let fleet = fleet_of(&config)?;
    let layout = Layout::new(&fleet.prefix).with_limits(config.prefix_limits);
    let lists = FleetLists::from_policy(&config.policy);
    let mut out = io::stdout().lock();
    if config.policy.blocked_ports != [25] {
        writeln!(
            out,
            "note: blocked_ports stay per box; they are not published"
        )?;
    }
    runtime().block_on(async {
        let etcd = client::connect(&fleet).await?;
        let (_, old, revision) = client::read_lists(&etcd, &layout).await?;
        let (diffs, actions) = diff_lists(&old, &lists);
        for line in &actions {
            writeln!(out, "{line}")?;
        }
        for d in &diffs {
            writeln!(out, "{}: +{} -{}", d.list, d.added.len(), d.removed.len())?;
            for p in d.added.iter().take(20) {
                writeln!(out, "  + {p}")?;
            }
            for p in d.removed.iter().take(20) {
                writeln!(out, "  - {p}")?;
            }
            let more = d.added.len().saturating_sub(20) + d.removed.len().saturating_sub(20);
            if more > 0 {
                writeln!(out, "  ... and {more} more")?;
            }
        }
        if diffs.is_empty() && actions.is_empty() {
            writeln!(
                out,
                "no changes against the published lists (revision {revision})"
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        if dry_run {
            writeln!(out, "dry run: nothing published")?;
            return Ok(ExitCode::SUCCESS);
        }
        let audit = client::audit(
            &fleet.node_name,
            &cli_actor(),
            "publish",
            "lists",
            "",
            None,
            &path.display().to_string(),
        );
        let published = client::publish_lists(&etcd, &layout, &lists, revision, &audit).await?;
        writeln!(
            out,
            "published at revision {}: {} prefixes; chunks {} written, {} kept, {} deleted",
            published.revision,
            lists.prefix_count(),
            published.chunks_written,
            published.chunks_kept,
            published.chunks_deleted
        )?;
        Ok(ExitCode::SUCCESS)
    })
}

/// One agent as `fleet status` shows it.
#[derive(Debug, Serialize)]
pub struct AgentState {
    pub node: String,
    /// ok, behind, gone, error
    pub state: String,
    #[serde(flatten)]
    pub registration: Option<Registration>,
}

/// Every registered agent, and the policy revision to compare with.
pub async fn read_agents(
    etcd: &etcd_client::Client,
    layout: &Layout,
) -> Result<(i64, Vec<AgentState>), FleetError> {
    let agents = client::read_dir(etcd, &layout.agents_dir(), 0).await?.kvs;
    let nodes = client::read_dir(etcd, &layout.nodes_dir(), 0).await?.kvs;
    let mut kv = etcd.kv_client();
    let latest = kv
        .get(layout.changed_key(), None)
        .await
        .map_err(client::etcd("reading the policy revision"))?
        .kvs()
        .first()
        .map_or(0, etcd_client::KeyValue::mod_revision);
    let mut states = BTreeMap::new();
    for key in nodes.keys() {
        let node = key
            .strip_prefix(&layout.nodes_dir())
            .unwrap_or(key)
            .to_owned();
        states.insert(
            node.clone(),
            AgentState {
                node,
                state: "gone".into(),
                registration: None,
            },
        );
    }
    for (key, value) in agents {
        let node = key
            .strip_prefix(&layout.agents_dir())
            .unwrap_or(&key)
            .to_owned();
        let registration: Option<Registration> = serde_json::from_slice(&value).ok();
        let state = match &registration {
            None => "error".to_owned(),
            Some(r) if r.last_error.is_some() => "error".to_owned(),
            Some(r) if r.applied_revision < latest => "behind".to_owned(),
            Some(_) => "ok".to_owned(),
        };
        states.insert(
            node.clone(),
            AgentState {
                node,
                state,
                registration,
            },
        );
    }
    Ok((latest, states.into_values().collect()))
}

/// `fleet status [--json]`: every agent, flagged when behind or gone.
pub fn status(path: &Path, json: bool) -> Result<ExitCode, FleetCommandError> {
    let config = Config::load(path)?;
    let fleet = fleet_of(&config)?;
    let layout = Layout::new(&fleet.prefix).with_limits(config.prefix_limits);
    let (latest, agents) = runtime().block_on(async {
        let etcd = client::connect(&fleet).await?;
        read_agents(&etcd, &layout).await
    })?;
    let mut out = io::stdout().lock();
    let healthy = agents.iter().all(|a| a.state == "ok");
    if json {
        let body = serde_json::json!({ "policy_revision": latest, "agents": agents });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&body).expect("serializes")
        )?;
    } else {
        writeln!(
            out,
            "fleet {} at policy revision {latest}: {} agents",
            fleet.prefix,
            agents.len()
        )?;
        writeln!(
            out,
            "{:<24} {:<7} {:>9} {:<24} last error",
            "node", "state", "applied", "interfaces"
        )?;
        for a in &agents {
            let r = a.registration.as_ref();
            writeln!(
                out,
                "{:<24} {:<7} {:>9} {:<24} {}",
                a.node,
                a.state,
                r.map_or_else(|| "-".into(), |r| r.applied_revision.to_string()),
                r.map_or_else(String::new, |r| r.interfaces.join(",")),
                r.and_then(|r| r.last_error.clone()).unwrap_or_default()
            )?;
        }
    }
    // Non-zero when any agent needs attention, for scripts and checks.
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(4)
    })
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
