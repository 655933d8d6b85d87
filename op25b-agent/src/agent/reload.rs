//! Policy changes while running: a reload of the configuration and its
//! lists (validated whole first), and run-time grants and expiries. Both
//! end in one `Dataplane::apply` of the effective policy.

use std::sync::atomic::Ordering;

use tracing::{error, info, warn};

use super::{fleet::FleetMerge, Agent};
use crate::{
    api::provisioning::Provisioning,
    config::{watch::WatchedFiles, Config},
    policy::{ListKind, Policy},
    radius::Radius,
};

impl Agent {
    /// Applies grants made over the API, and removes expired grants and
    /// expired `expires_at` entries of the lists on time.
    pub(super) fn apply_grants(&mut self) {
        let now = crate::clock::now_unix();
        let lists_expired = self
            .config
            .policy
            .next_expiry(self.expiry_checked_at)
            .into_iter()
            .chain(
                self.config
                    .exempt_subscribers
                    .next_expiry(self.expiry_checked_at),
            )
            .any(|t| t <= now);
        let fleet_changed = self.fleet_changed(now);
        self.expiry_checked_at = now;
        let (grants_changed, grants_expired) = match &self.provisioning {
            Some(p) => {
                // Prunes in place under the lock: no copy of the grants per tick.
                let expired = p.expire(now);
                (p.changed.swap(false, Ordering::Relaxed), expired)
            }
            None => (false, false),
        };
        let expired = lists_expired || grants_expired;
        if !grants_changed && !expired && !fleet_changed {
            return;
        }
        if lists_expired {
            // Expired entries leave the running lists once: each later
            // `active()` then copies the lists unchanged, generations kept,
            // instead of removing them again into a new generation.
            self.config.policy.prune_expired(now);
        }
        let provisioning = self.provisioning.clone();
        let provisioning = provisioning.as_deref();
        let started = std::time::Instant::now();
        let (effective, fleet_merge) = effective_policy(
            &self.config,
            provisioning,
            self.radius.as_deref(),
            self.fleet.as_ref(),
        );
        let merged = started.elapsed();
        let applying = std::time::Instant::now();
        match self.control.apply(&effective) {
            Ok(stats) => {
                info!(
                    added = stats.added,
                    removed = stats.removed,
                    expired,
                    fleet = fleet_changed,
                    merge_ms = merged.as_secs_f64() * 1000.0,
                    maps_ms = applying.elapsed().as_secs_f64() * 1000.0,
                    "run-time grants, fleet changes and expiries applied"
                );
                super::fleet::applied(self.fleet.as_ref(), fleet_merge);
                self.telemetry.set_policy(&effective);
            }
            Err(e) => {
                error!("applying run-time grants, fleet changes and expiries: {e}; retrying");
                if let Some(p) = provisioning {
                    p.changed.store(true, Ordering::Relaxed);
                }
                self.fleet_apply_failed(&e.to_string());
            }
        }
    }

    /// Validates everything first; on any problem logs it and keeps the
    /// running policy untouched.
    pub fn reload(&mut self, trigger: &str) {
        // Re-stamp first: a broken file is reported once, not every tick.
        self.watched = WatchedFiles::of(&self.config);
        let mut new = match Config::load(&self.config.path) {
            Ok(new) => new,
            Err(e) => {
                self.telemetry.record_reload(false);
                self.watched.add_refused(&e);
                for problem in &e.problems {
                    error!(trigger, "reload refused, old policy kept: {problem}");
                }
                return;
            }
        };
        if let Err(why) = still_enforces(&self.config.policy, &new.policy) {
            self.telemetry.record_reload(false);
            error!(
                trigger,
                "reload refused, old policy kept: {}: {why}",
                new.path.display()
            );
            return;
        }
        self.watched = WatchedFiles::of(&new);
        log_warnings(&new);
        // Lists read again unchanged keep their generations: the maps'
        // writer then skips them (a million-prefix list not walked). Both
        // sides without their expired entries, as the running one is.
        new.policy.prune_expired(crate::clock::now_unix());
        for list in [ListKind::Dynamic, ListKind::Exempt] {
            new.policy
                .list_mut(list)
                .keep_generations_of(self.config.policy.list(list));
        }
        if new.pin_path != self.config.pin_path {
            warn!(
                "pin_path changed to {}: that takes a restart; keeping {}",
                new.pin_path.display(),
                self.config.pin_path.display()
            );
        }
        if new.fleet != self.config.fleet {
            warn!("[fleet] changed: that takes a restart; keeping the running fleet settings");
        }
        let (effective, fleet_merge) = effective_policy(
            &new,
            self.provisioning.as_deref(),
            self.radius.as_deref(),
            self.fleet.as_ref(),
        );
        match self.control.apply(&effective) {
            Ok(stats) => info!(
                trigger,
                added = stats.added,
                removed = stats.removed,
                ports_changed = stats.ports_changed,
                "reloaded: {}",
                policy_summary(&new)
            ),
            Err(e) => {
                self.telemetry.record_reload(false);
                error!(trigger, "reload failed while updating maps: {e}");
                return;
            }
        }
        if let (Some(radius), Some(wanted)) = (&self.radius, &new.radius) {
            radius.reconfigure(wanted);
        }
        super::fleet::applied(self.fleet.as_ref(), fleet_merge);
        let (pin_path, fleet) = (self.config.pin_path.clone(), self.config.fleet.clone());
        if let Some(p) = &self.provisioning {
            p.set_prefix_limits(new.prefix_limits);
        }
        self.config = Config {
            pin_path,
            fleet,
            ..new
        };
        self.set_interfaces(&self.config.interfaces.clone());
        self.telemetry.set_policy(&effective);
        self.telemetry.record_reload(true);
    }
}

/// The configuration's policy as of now (expired entries out) plus the
/// grants active now (those within the configuration's prefix limits)
/// plus the addresses of exempt RADIUS sessions, merged with the fleet's
/// policy (and what to tell the fleet once it is in the maps).
pub(super) fn effective_policy(
    config: &Config,
    provisioning: Option<&Provisioning>,
    radius: Option<&Radius>,
    fleet: Option<&crate::fleet::Fleet>,
) -> (std::sync::Arc<Policy>, FleetMerge) {
    let now = crate::clock::now_unix();
    let base = config.policy.active(now);
    let policy = match provisioning {
        Some(p) => p.state().effective(&base, now, &config.prefix_limits),
        None => base,
    };
    let local = super::radius::with_sessions(policy, config, provisioning, radius, fleet);
    super::fleet::with_fleet(local, fleet)
}

/// What the configuration accepts but an operator should know, at every load.
pub(super) fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        warn!("{warning}");
    }
    if config.policy.dynamic.is_empty() {
        warn!(
            "{}: no dynamic prefixes: op25b blocks nobody",
            config.path.display()
        );
    }
}

pub(super) fn policy_summary(config: &Config) -> String {
    let lists: Vec<String> = ListKind::ALL
        .iter()
        .map(|k| {
            let l = config.policy.list(*k);
            format!("{} {}+{}", k.name(), l.v4.len(), l.v6.len())
        })
        .collect();
    format!(
        "ports {:?}, {}",
        config.policy.blocked_ports,
        lists.join(", ")
    )
}

/// A configuration that loads fine but has no dynamic prefix at all, while
/// the running one has, is most likely a file caught half-written (an
/// editor saving in place, `>` redirection) or emptied by mistake: it would
/// switch OP25B off for everyone. Such a reload is refused; stopping the
/// agent (with `on_exit = "detach"`) is how enforcement is ended on purpose.
pub(super) fn still_enforces(running: &Policy, new: &Policy) -> Result<(), String> {
    if new.dynamic.is_empty() && !running.dynamic.is_empty() {
        return Err(format!(
            "it has no dynamic prefixes while {} are enforced (an empty or half-written file?); to end enforcement, stop the agent with on_exit = \"detach\"",
            running.dynamic.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_that_would_block_nobody_is_refused() {
        let mut running = Policy::default();
        running.dynamic.insert("100.64.0.0/10".parse().unwrap());
        let empty = Policy::default();
        let err = still_enforces(&running, &empty).unwrap_err();
        assert!(
            err.contains("no dynamic prefixes while 1 are enforced"),
            "{err}"
        );
        let mut smaller = Policy::default();
        smaller.dynamic.insert("100.64.0.0/12".parse().unwrap());
        assert!(still_enforces(&running, &smaller).is_ok());
        assert!(
            still_enforces(&empty, &empty).is_ok(),
            "nothing enforced before, nothing lost"
        );
    }
}
