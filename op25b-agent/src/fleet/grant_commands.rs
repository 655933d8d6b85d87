//! `fleet exempt|allow-destination add|del|list`: grants written straight
//! to etcd (one transaction with the audit line) for every box, by prefix
//! or, for exemptions, by subscriber (`--subscriber NAME`: the exemption
//! follows the subscriber's RADIUS sessions).

use std::{
    io::{self, Write},
    path::Path,
    process::ExitCode,
};

use etcd_client::Client;

use super::{
    client,
    commands::{fleet_of, runtime, FleetCommandError},
    grant_client,
    layout::Layout,
};
use crate::{
    api::types::Ttl,
    cli::{fleet::FleetGrantAction as GrantAction, grants::AuditArgs},
    config::{fleet::FleetConfig, Config},
    policy::{
        grants::{write_table, Grant},
        prefix::Prefix,
        subscriber_grants::{check_name, SubscriberGrant},
        ListKind,
    },
};

/// Carries out one grant command against the fleet's etcd.
pub fn grant(
    path: &Path,
    kind: ListKind,
    action: &GrantAction,
) -> Result<ExitCode, FleetCommandError> {
    let config = Config::load(path)?;
    let fleet = fleet_of(&config)?;
    let layout = Layout::new(&fleet.prefix).with_limits(config.prefix_limits);
    if let Some(subscriber) = subscriber_of(action) {
        if kind != ListKind::Exempt {
            return Err(FleetCommandError::Usage(format!(
                "--subscriber {subscriber}: only exemptions follow a subscriber; allowed destinations are prefixes"
            )));
        }
    }
    let mut out = io::stdout().lock();
    runtime().block_on(async {
        let etcd = client::connect(&fleet).await?;
        match action {
            GrantAction::Add {
                subscriber: Some(name),
                ttl,
                audit,
                ..
            } => {
                let grant = add_subscriber(&etcd, &fleet, &layout, name, *ttl, audit).await?;
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&grant).expect("serializes")
                )?;
            }
            GrantAction::Del {
                subscriber: Some(name),
                audit,
                ..
            } => {
                let audit = grant_client::subscriber_audit(
                    &fleet.node_name,
                    &audit.actor(),
                    "delete",
                    name,
                    None,
                    &audit.reason,
                );
                grant_client::delete_subscriber(&etcd, &layout, name, &audit).await?;
                writeln!(out, "{}", serde_json::json!({ "deleted": name }))?;
            }
            GrantAction::Add {
                prefix, ttl, audit, ..
            } => {
                let prefix = parse_prefix(prefix.as_deref())?;
                let now = crate::clock::now_unix();
                let grant = Grant {
                    prefix: prefix.to_string(),
                    expires_at: expires_at(*ttl, now),
                    reason: audit.reason.clone(),
                    actor: audit.actor(),
                    created_at: now,
                };
                let audit = client::grant_added(&fleet.node_name, kind, &grant);
                client::put_grant(&etcd, &layout, kind, &grant, &audit).await?;
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&grant).expect("serializes")
                )?;
            }
            GrantAction::Del { prefix, audit, .. } => {
                let prefix = parse_prefix(prefix.as_deref())?;
                let audit = client::audit(
                    &fleet.node_name,
                    &audit.actor(),
                    "delete",
                    kind.name(),
                    &prefix.to_string(),
                    None,
                    &audit.reason,
                );
                client::delete_grant(&etcd, &layout, kind, &prefix, &audit).await?;
                writeln!(out, "{{\"deleted\":\"{prefix}\"}}")?;
            }
            GrantAction::List { json } => list(&etcd, &layout, kind, *json, &mut out).await?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `list`: the grants in etcd (for exemptions also those by subscriber,
/// as the API lists them); refused values on stderr, by key.
async fn list(
    etcd: &Client,
    layout: &Layout,
    kind: ListKind,
    json: bool,
    out: &mut impl Write,
) -> Result<(), FleetCommandError> {
    let (grants, mut errors) = client::list_grants(etcd, layout, kind).await?;
    let subscribers = if kind == ListKind::Exempt {
        let (subscribers, refused) = grant_client::list_subscribers(etcd, layout).await?;
        errors.extend(refused);
        subscribers
    } else {
        Vec::new()
    };
    if json {
        let mut answer = serde_json::json!({ kind.name(): grants });
        if !subscribers.is_empty() {
            answer["exempt_subscribers"] = serde_json::json!(subscribers);
        }
        writeln!(out, "{answer}")?;
    } else {
        write_table(out, &grants, &subscribers)?;
    }
    for e in errors {
        eprintln!("refused value: {e}");
    }
    Ok(())
}

/// Writes the exemption of subscriber `name` (checked as a User-Name first).
async fn add_subscriber(
    etcd: &Client,
    fleet: &FleetConfig,
    layout: &Layout,
    name: &str,
    ttl: Option<Ttl>,
    audit: &AuditArgs,
) -> Result<SubscriberGrant, FleetCommandError> {
    let name = check_name(name).map_err(FleetCommandError::Usage)?;
    let now = crate::clock::now_unix();
    let grant = SubscriberGrant {
        subscriber: name.to_owned(),
        expires_at: expires_at(ttl, now),
        reason: audit.reason.clone(),
        actor: audit.actor(),
        created_at: now,
    };
    let audit = grant_client::subscriber_added(&fleet.node_name, &grant);
    grant_client::put_subscriber(etcd, layout, &grant, &audit).await?;
    Ok(grant)
}

/// The subscriber a grant command names instead of a prefix.
fn subscriber_of(action: &GrantAction) -> Option<&str> {
    match action {
        GrantAction::Add { subscriber, .. } | GrantAction::Del { subscriber, .. } => {
            subscriber.as_deref()
        }
        GrantAction::List { .. } => None,
    }
}

fn parse_prefix(text: Option<&str>) -> Result<Prefix, FleetCommandError> {
    let text =
        text.ok_or_else(|| FleetCommandError::Usage("give PREFIX or --subscriber".into()))?;
    text.trim()
        .parse()
        .map_err(|e| FleetCommandError::Usage(format!("{text}: {e}")))
}

/// `--ttl` (1 s to 10 years, checked by [`Ttl`]) as an expiry time.
fn expires_at(ttl: Option<Ttl>, now: u64) -> Option<u64> {
    ttl.map(|t| now.saturating_add(t.seconds()))
}
