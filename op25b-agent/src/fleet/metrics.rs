//! The fleet's Prometheus series, computed from the fleet thread's state at
//! scrape time (so "seconds since last sync" is never stale itself).

use std::sync::Arc;

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
    Gauge, IntGauge,
};

use super::sync::FleetShared;

pub struct FleetCollector {
    shared: Arc<FleetShared>,
    connected: IntGauge,
    applied_revision: IntGauge,
    accepted_revision: IntGauge,
    last_sync: Gauge,
    since_sync: Gauge,
    refused: IntGauge,
    conflicts: IntGauge,
}

impl FleetCollector {
    pub fn new(shared: Arc<FleetShared>) -> Self {
        let int = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let float = |name: &str, help: &str| Gauge::new(name, help).expect("valid metric");
        Self {
            shared,
            connected: int("op25b_fleet_connected", "1 while the agent follows the fleet's etcd (watch answering), else 0."),
            applied_revision: int("op25b_fleet_applied_revision", "The fleet policy revision (etcd) in this box's maps."),
            accepted_revision: int("op25b_fleet_accepted_revision", "The newest fleet policy revision this agent has read and validated."),
            last_sync: float("op25b_fleet_last_sync_timestamp_seconds", "Unix time etcd last confirmed this agent is up to date (0: never since start)."),
            since_sync: float("op25b_fleet_seconds_since_last_sync", "Seconds since etcd last confirmed this agent is up to date (since start if never)."),
            refused: int("op25b_fleet_refused_values", "Values under the fleet prefix this agent refuses (malformed, oversized); their keys are in the log and in fleet status."),
            conflicts: int("op25b_fleet_conflicts", "Places where the local configuration overrides the fleet policy (see the log)."),
        }
    }

    fn gauges(&self) -> [&dyn Collector; 7] {
        [
            &self.connected,
            &self.applied_revision,
            &self.accepted_revision,
            &self.last_sync,
            &self.since_sync,
            &self.refused,
            &self.conflicts,
        ]
    }
}

static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl Collector for FleetCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges()
            .into_iter()
            .flat_map(Collector::desc)
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = self.shared.status();
        let started = *STARTED.get_or_init(std::time::Instant::now);
        self.connected.set(i64::from(status.connected));
        self.applied_revision.set(status.applied_revision);
        self.accepted_revision.set(status.accepted_revision);
        self.last_sync.set(status.last_sync_unix.unwrap_or(0.0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.since_sync.set(
            status
                .last_sync_unix
                .map_or_else(|| started.elapsed().as_secs_f64(), |t| (now - t).max(0.0)),
        );
        self.refused
            .set(i64::try_from(status.refusals.len()).unwrap_or(i64::MAX));
        self.conflicts
            .set(i64::try_from(status.conflicts.len()).unwrap_or(i64::MAX));
        self.gauges()
            .into_iter()
            .flat_map(Collector::collect)
            .collect()
    }
}

/// Marks the agent's start for "seconds since last sync" before the first sync.
pub fn mark_start() {
    STARTED.get_or_init(std::time::Instant::now);
}
