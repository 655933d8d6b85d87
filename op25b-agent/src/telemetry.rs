//! What the agent tells the NOC: Prometheus series, health and readiness.
//! Kernel counters are read from the pinned per-CPU map at scrape time, so
//! they keep counting across agent restarts. Every label value comes from a
//! bounded set (configured interfaces, reasons, lists), never an address.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, RwLock,
    },
};

use op25b_common::{
    abi::{counter_index, COUNTER_ATTEMPTS, COUNTER_EVENTS_LOST, MAP_COUNTERS},
    Reason,
};
use prometheus::{
    Encoder as _, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::{
    dataplane::PinnedCounters, pins::AttachMode, policy::ListKind, policy::Policy, top::TopSources,
};

/// An interface as the metrics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceView {
    pub name: String,
    pub slot: u32,
    pub mode: Option<AttachMode>,
}

pub struct Telemetry {
    registry: Registry,
    counters_path: PathBuf,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    attempts: IntCounterVec,
    events_lost: IntCounter,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    prefixes: IntGaugeVec,
    attached: IntGaugeVec,
    interfaces: RwLock<Vec<InterfaceView>>,
    pool_packets: IntCounterVec,
    pool_counters_path: PathBuf,
    /// Pool names and actions, by pool id.
    pools: RwLock<Vec<crate::policy::Pool>>,
    ready: AtomicBool,
    /// Events the agent could not write (disk full, ...), folded into
    /// `op25b_events_lost_total` with the kernel's.
    pub events_unwritten: std::sync::atomic::AtomicU64,
    top_sources: IntGaugeVec,
    pub top: Mutex<TopSources>,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl Telemetry {
    pub fn new(maps_dir: &std::path::Path, top_capacity: usize) -> Self {
        let t = Self {
            registry: Registry::new(),
            counters_path: maps_dir.join(MAP_COUNTERS),
            packets: counter_vec("op25b_packets_total", "Packets judged, by interface, action and reason.", &["interface", "action", "reason"]),
            bytes: counter_vec("op25b_bytes_total", "Bytes judged, by interface, action and reason.", &["interface", "action", "reason"]),
            attempts: counter_vec(
                "op25b_blocked_connection_attempts_total",
                "Blocked or undecidable TCP connection attempts (SYN without ACK).",
                &["interface"],
            ),
            events_lost: IntCounter::new("op25b_events_lost_total", "Block events lost: ring buffer full in the kernel, or not written by the agent.").expect("valid metric"),
            reloads: counter_vec("op25b_policy_reloads_total", "Policy loads and reloads, by result.", &["result"]),
            last_reload_success: Gauge::new(
                "op25b_policy_last_reload_success_timestamp_seconds",
                "Unix time of the last policy (re)load that was applied.",
            )
            .expect("valid metric"),
            prefixes: IntGaugeVec::new(Opts::new("op25b_policy_prefixes", "Prefixes in the enforced policy, by list and family."), &["list", "family"]).expect("valid metric"),
            attached: IntGaugeVec::new(
                Opts::new("op25b_interface_attached", "1 for the XDP mode each configured interface runs in (mode=\"none\" when not attached)."),
                &["interface", "mode"],
            )
            .expect("valid metric"),
            interfaces: RwLock::new(Vec::new()),
            pool_packets: counter_vec(
                "op25b_pool_packets_total",
                "Packets from dynamic sources, by pool, the pool's action and reason.",
                &["pool", "pool_action", "reason"],
            ),
            pool_counters_path: maps_dir.join(op25b_common::abi::MAP_POOL_COUNTERS),
            pools: RwLock::new(Vec::new()),
            ready: AtomicBool::new(false),
            events_unwritten: std::sync::atomic::AtomicU64::new(0),
            top_sources: IntGaugeVec::new(
                Opts::new("op25b_top_sources", "Distinct sources with blocked connection attempts in the window (as tracked by the bounded sketch)."),
                &["window"],
            )
            .expect("valid metric"),
            top: Mutex::new(TopSources::new(top_capacity)),
        };
        let build = IntGauge::with_opts(
            Opts::new("op25b_build_info", "Build of the running agent.")
                .const_label("version", env!("CARGO_PKG_VERSION"))
                .const_label("revision", env!("OP25B_GIT_REVISION")),
        )
        .expect("valid metric");
        build.set(1);
        for c in [
            &t.packets,
            &t.bytes,
            &t.attempts,
            &t.reloads,
            &t.pool_packets,
        ] {
            t.registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for r in ["success", "failure"] {
            t.reloads.with_label_values(&[r]);
        }
        t.registry
            .register(Box::new(t.events_lost.clone()))
            .expect("unique metric");
        t.registry
            .register(Box::new(t.last_reload_success.clone()))
            .expect("unique metric");
        t.registry
            .register(Box::new(t.prefixes.clone()))
            .expect("unique metric");
        t.registry
            .register(Box::new(t.attached.clone()))
            .expect("unique metric");
        t.registry.register(Box::new(build)).expect("unique metric");
        t.registry
            .register(Box::new(t.top_sources.clone()))
            .expect("unique metric");
        t
    }

    /// Adds series computed at scrape time by another part (the fleet thread).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry.register(collector).expect("unique metric");
    }

    pub fn set_policy(&self, policy: &Policy) {
        self.pool_packets.reset();
        self.pools
            .write()
            .expect("not poisoned")
            .clone_from(&policy.pools);
        for kind in ListKind::ALL {
            let list = policy.list(kind);
            self.prefixes
                .with_label_values(&[kind.name(), "ipv4"])
                .set(i64::try_from(list.v4.len()).unwrap_or(i64::MAX));
            self.prefixes
                .with_label_values(&[kind.name(), "ipv6"])
                .set(i64::try_from(list.v6.len()).unwrap_or(i64::MAX));
        }
    }

    pub fn set_interfaces(&self, views: Vec<InterfaceView>, ready: bool) {
        self.attached.reset();
        for v in &views {
            for mode in ["driver", "skb", "none"] {
                let current = v.mode.map_or("none", AttachMode::name);
                self.attached
                    .with_label_values(&[&v.name, mode])
                    .set(i64::from(current == mode));
            }
        }
        *self.interfaces.write().expect("not poisoned") = views;
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn interface_name(&self, slot: u32) -> Option<String> {
        self.interfaces
            .read()
            .expect("not poisoned")
            .iter()
            .find(|v| v.slot == slot)
            .map(|v| v.name.clone())
    }

    /// Brings the kernel-backed counters up to the pinned map's values.
    fn refresh_kernel_counters(&self) {
        let Some(counters) = PinnedCounters::open(&self.counters_path) else {
            return;
        };
        let read = |slot: u32, cell: u32| counters.get(counter_index(slot, cell));
        let advance = |counter: &IntCounter, value: u64| {
            // Kernel counters only grow (a reused slot is zeroed before use).
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        let mut lost = 0;
        for view in self.interfaces.read().expect("not poisoned").iter() {
            for reason in Reason::ALL {
                let c = read(view.slot, reason.index());
                let labels = [view.name.as_str(), reason.action().name(), reason.name()];
                advance(&self.packets.with_label_values(&labels), c.packets);
                advance(&self.bytes.with_label_values(&labels), c.bytes);
            }
            advance(
                &self.attempts.with_label_values(&[&view.name]),
                read(view.slot, COUNTER_ATTEMPTS).packets,
            );
            lost += read(view.slot, COUNTER_EVENTS_LOST).packets;
        }
        advance(
            &self.events_lost,
            lost + self.events_unwritten.load(Ordering::Relaxed),
        );
        self.refresh_pool_counters();
    }

    fn refresh_pool_counters(&self) {
        let Some(counters) = PinnedCounters::open(&self.pool_counters_path) else {
            return;
        };
        for (id, pool) in self.pools.read().expect("not poisoned").iter().enumerate() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            for reason in Reason::ALL {
                let index = id * op25b_common::reason::REASON_SLOTS + reason.index();
                let packets = counters.get(index).packets;
                if packets == 0 {
                    continue;
                }
                let c = self.pool_packets.with_label_values(&[
                    &pool.name,
                    pool.action.name(),
                    reason.name(),
                ]);
                c.inc_by(packets.saturating_sub(c.get()));
            }
        }
    }

    /// The text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        self.refresh_kernel_counters();
        let now = crate::clock::now_unix();
        let sources = self.top.lock().expect("not poisoned").sources(now, 3600);
        self.top_sources
            .with_label_values(&["1h"])
            .set(i64::try_from(sources).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        out
    }
}
