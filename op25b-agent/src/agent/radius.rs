//! The agent loop's side of RADIUS: the session table opened at start, the
//! addresses of exempt sessions joined to the exempt maps, and the sync that
//! lets the listeners answer only once a change is durable and in the maps.

use std::{collections::HashSet, sync::Arc};

use tracing::info;

use super::{reload::effective_policy, Agent};
use crate::{
    config::Config,
    observe::metrics::Telemetry,
    policy::Policy,
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

/// Subscribers exempt by name now: `[policy] exempt_subscribers(_files)`.
pub(super) fn exempt_subscribers(config: &Config) -> HashSet<String> {
    config.exempt_subscribers.active(crate::clock::now_unix())
}

/// `policy` with the addresses of every exempt session added.
pub(super) fn with_sessions(
    mut policy: Policy,
    config: &Config,
    radius: Option<&Radius>,
) -> Policy {
    if let Some(radius) = radius {
        for prefix in radius.exempt_prefixes(&exempt_subscribers(config)) {
            policy.exempt.insert(prefix);
        }
    }
    policy
}

impl Agent {
    /// Makes RADIUS changes durable and puts the exempt sessions in the
    /// maps; answers to the NAS go out after this.
    pub(super) fn apply_sessions(&mut self) {
        let Some(radius) = self.radius.clone() else {
            return;
        };
        let subscribers = exempt_subscribers(&self.config);
        radius.sync(&subscribers, || {
            let effective =
                effective_policy(&self.config, self.provisioning.as_deref(), Some(&radius));
            let stats = self.control.apply(&effective).map_err(|e| e.to_string())?;
            info!(
                added = stats.added,
                removed = stats.removed,
                "RADIUS session exemptions applied"
            );
            self.telemetry.set_policy(&effective);
            Ok(())
        });
    }

    /// The RADIUS loop wake-up: returns after `timeout`, or as soon as a
    /// RADIUS request waits for its change to reach the maps.
    pub(super) fn sleep(&self, timeout: std::time::Duration) {
        match &self.radius {
            Some(radius) => radius.wait(timeout),
            None => std::thread::sleep(timeout),
        }
    }
}
