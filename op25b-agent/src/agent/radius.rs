//! The agent loop's side of RADIUS: the session table opened at start, the
//! addresses of exempt sessions joined to the exempt maps, and the sync that
//! lets the listeners answer only once a change is durable and in the maps.

use std::{collections::HashSet, sync::Arc};

use tracing::{info, warn};

use super::{reload::effective_policy, Agent};
use crate::{
    api::provisioning::Provisioning,
    config::Config,
    fleet::Fleet,
    observe::{metrics::Telemetry, sessions::SessionLookup},
    policy::{limits::PrefixLimits, prefix::Prefix, subscriber_grants, ListKind, Policy},
    radius::{Radius, RadiusError},
};

/// Opens the session table when `[radius]` has a listener.
pub(super) fn open(config: &Config) -> Result<Option<Arc<Radius>>, RadiusError> {
    match &config.radius {
        Some(radius) if radius.listens() => Ok(Some(Arc::new(Radius::open(radius.clone())?))),
        _ => Ok(None),
    }
}

/// Registers the RADIUS series and starts the listeners.
pub(super) fn serve(
    radius: Option<&Arc<Radius>>,
    telemetry: &Telemetry,
) -> Result<(), RadiusError> {
    if let Some(radius) = radius {
        radius.metrics.register(telemetry.registry());
        radius.serve()?;
    }
    Ok(())
}

/// What names a block event's subscriber and session.
pub(super) fn session_lookup(radius: Option<&Arc<Radius>>) -> Option<Arc<dyn SessionLookup>> {
    radius.map(|r| Arc::clone(r) as Arc<dyn SessionLookup>)
}

/// Subscribers exempt by name now: `[policy] exempt_subscribers(_files)`,
/// the subscribers granted over the API on this box, and (with `[fleet]`)
/// those granted in the fleet's etcd.
pub(super) fn exempt_subscribers(
    config: &Config,
    provisioning: Option<&Provisioning>,
    fleet: Option<&Fleet>,
) -> HashSet<String> {
    let now = crate::clock::now_unix();
    let mut subscribers = config.exempt_subscribers.active(now);
    if let Some(provisioning) = provisioning {
        subscribers.extend(provisioning.exempt_subscribers(now));
    }
    if let Some(fleet) = fleet {
        subscribers.extend(subscriber_grants::active(
            &fleet.policy().grants.exempt_subscribers,
            now,
        ));
    }
    subscribers
}

/// `policy` with the addresses of every exempt session added, within the
/// exemption bounds.
pub(super) fn with_sessions(
    mut policy: Policy,
    config: &Config,
    provisioning: Option<&Provisioning>,
    radius: Option<&Radius>,
    fleet: Option<&Fleet>,
) -> Policy {
    if let Some(radius) = radius {
        let prefixes = radius.exempt_prefixes(&exempt_subscribers(config, provisioning, fleet));
        for prefix in within_bounds(prefixes, config.prefix_limits) {
            policy.exempt.insert(prefix);
        }
    }
    policy
}

/// A NAS reporting a session prefix broader than an exemption may be
/// (`Framed-IPv6-Prefix = ::/0` by mistake) must not open port 25 for
/// everyone it covers: such a prefix stays out of the maps, with a warning.
fn within_bounds(
    prefixes: impl IntoIterator<Item = Prefix>,
    limits: PrefixLimits,
) -> impl Iterator<Item = Prefix> {
    prefixes.into_iter().filter(move |prefix| {
        limits
            .check(ListKind::Exempt, prefix)
            .inspect_err(|too_broad| warn!("RADIUS session prefix not exempted: {too_broad}"))
            .is_ok()
    })
}

impl Agent {
    /// Makes RADIUS changes durable and puts the exempt sessions in the
    /// maps; answers to the NAS go out after this.
    pub(super) fn apply_sessions(&mut self) {
        let Some(radius) = self.radius.clone() else {
            return;
        };
        let subscribers = exempt_subscribers(
            &self.config,
            self.provisioning.as_deref(),
            self.fleet.as_ref(),
        );
        radius.sync(&subscribers, || {
            let (effective, fleet_merge) = effective_policy(
                &self.config,
                self.provisioning.as_deref(),
                Some(&radius),
                self.fleet.as_ref(),
            );
            let stats = self.control.apply(&effective).map_err(|e| e.to_string())?;
            super::fleet::applied(self.fleet.as_ref(), fleet_merge);
            info!(
                added = stats.added,
                removed = stats.removed,
                "RADIUS session exemptions applied"
            );
            self.telemetry.set_policy(&effective);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_prefixes_broader_than_an_exemption_stay_out() {
        let prefixes: Vec<Prefix> = ["100.64.1.2/32", "2001:db8:1::/48", "::/0", "0.0.0.0/0"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let kept: Vec<String> = within_bounds(prefixes, PrefixLimits::default())
            .map(|p| p.to_string())
            .collect();
        assert_eq!(kept, ["100.64.1.2/32", "2001:db8:1::/48"]);
    }
}
