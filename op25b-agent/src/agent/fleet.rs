//! The agent loop's side of fleet sync: the fleet thread started at start,
//! the fleet's policy merged into the enforced one (see `crate::fleet::merge`
//! for precedence), and what the agent tells the fleet back (the revision in
//! its maps, its interfaces, a failed apply).

use std::{sync::Arc, time::Duration};

use tracing::{info, warn};

use super::Agent;
use crate::{
    api::provisioning::Provisioning, config::Config, fleet::Fleet, observe::metrics::Telemetry,
    policy::Policy, wake::Waker,
};

/// The fleet revision and precedence conflicts of a merged policy.
pub(super) type FleetMerge = Option<(i64, Vec<String>)>;

/// How long a start without a fleet snapshot waits for etcd.
const START_WAIT: Duration = Duration::from_secs(5);

/// Starts fleet sync if `[fleet]` is configured; the provisioning API then
/// writes grants to etcd. Without a snapshot the first apply waits a little
/// for etcd, so a fresh box does not start on its local policy alone when
/// etcd is right there.
pub(super) fn start(
    config: &Config,
    provisioning: Option<&Provisioning>,
    waker: &Arc<Waker>,
) -> Option<Fleet> {
    let settings = config.fleet.clone()?;
    crate::fleet::metrics::mark_start();
    let top_address = Some(config.metrics.listen_address.clone()).filter(|a| !a.is_empty());
    let fleet = Fleet::start(
        settings,
        config.prefix_limits,
        top_address,
        Arc::clone(waker),
    );
    if let Some(p) = provisioning {
        p.use_store(fleet.grant_store());
        info!("provisioning API: grants go to the fleet's etcd");
    }
    if fleet.policy().revision == 0 && !fleet.wait_for_sync(START_WAIT) {
        warn!("fleet: no snapshot and etcd not answering yet: starting with the local policy, the fleet's follows when etcd answers");
    }
    Some(fleet)
}

/// Adds the fleet's series to the agent's registry.
pub(super) fn register_metrics(fleet: Option<&Fleet>, telemetry: &Telemetry) {
    if let Some(fleet) = fleet {
        telemetry
            .registry()
            .register(Box::new(crate::fleet::metrics::FleetCollector::new(
                Arc::clone(&fleet.shared),
            )))
            .expect("fleet metric names are unique");
    }
}

/// `local` (configuration, grants, sessions as of now) with the fleet's
/// accepted policy, and what to report once it is in the maps.
/// Shared with the fleet's merge cache: drop it once applied, so the next
/// grant changes it in place instead of copying it.
pub(super) fn with_fleet(local: Policy, fleet: Option<&Fleet>) -> (Arc<Policy>, FleetMerge) {
    match fleet {
        Some(fleet) => {
            let (merged, revision, conflicts) = fleet.merge(&local, crate::clock::now_unix());
            (merged, Some((revision, conflicts)))
        }
        None => (Arc::new(local), None),
    }
}

/// The merged policy is in the maps: the fleet may say so (registration,
/// metrics).
pub(super) fn applied(fleet: Option<&Fleet>, merge: FleetMerge) {
    if let (Some(fleet), Some((revision, conflicts))) = (fleet, merge) {
        fleet.applied(revision, conflicts);
    }
}

impl Agent {
    /// A new fleet policy was accepted, or one of its entries expires now.
    pub(super) fn fleet_changed(&self, now: u64) -> bool {
        self.fleet.as_ref().is_some_and(|f| {
            f.take_changed()
                || f.policy()
                    .next_expiry(self.expiry_checked_at)
                    .is_some_and(|t| t <= now)
        })
    }

    /// The maps refused the policy; the fleet's status says so until a retry works.
    pub(super) fn fleet_apply_failed(&self, error: &str) {
        if let Some(fleet) = &self.fleet {
            fleet.apply_failed(error.to_owned());
        }
    }

    /// The interfaces enforcing now, for the registration.
    pub(super) fn report_interfaces_to_fleet(&self) {
        if let Some(fleet) = &self.fleet {
            fleet.set_interfaces(
                self.interfaces
                    .values()
                    .filter(|i| i.attached_mode().is_some())
                    .map(|i| i.name.clone())
                    .collect(),
            );
        }
    }
}
