//! What the agent tells the NOC: Prometheus series.
//! Kernel counters are read from the pinned per-CPU map at scrape time, so
//! they keep counting across agent restarts. Every label value comes from a
//! bounded set (configured interfaces, reasons, lists), never an address.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Mutex, RwLock},
};

use op25b_common::{
    abi::{counter_index, pool_counter_index, COUNTER_ATTEMPTS, COUNTER_EVENTS_LOST, MAP_COUNTERS},
    Reason,
};
use prometheus::{
    core::Collector, Encoder as _, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::top::TopSources;
use crate::{
    dataplane::{counters::PinnedCounters, pins::AttachMode},
    policy::{ListKind, Policy},
};

/// An interface as the metrics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceView {
    pub name: String,
    pub slot: u32,
    pub mode: Option<AttachMode>,
    /// The program build it runs (None: not attached).
    pub program: Option<crate::dataplane::ProgramKind>,
}

pub struct Telemetry {
    registry: Registry,
    counters_path: PathBuf,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    attempts: IntCounterVec,
    events_lost: IntCounter,
    reloads: IntCounterVec,
    last_reload_success: Gauge,
    prefixes: IntGaugeVec,
    attached: IntGaugeVec,
    program: IntGaugeVec,
    interfaces: RwLock<Vec<InterfaceView>>,
    pool_packets: IntCounterVec,
    pool_counters_path: PathBuf,
    /// Pool names and actions, by pool id.
    pools: RwLock<Vec<crate::policy::Pool>>,
    /// Events the agent could not write (disk full, ...), folded into
    /// `op25b_events_lost_total` with the kernel's.
    pub events_unwritten: std::sync::atomic::AtomicU64,
    top_sources: IntGaugeVec,
    pub top: Mutex<TopSources>,
}

/// Declares a metric and registers it in one step, so no metric can be
/// declared and forgotten.
fn registered<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Telemetry {
    pub fn new(maps_dir: &std::path::Path, top_capacity: usize) -> Self {
        let registry = Registry::new();
        let r = &registry;
        registered(
            r,
            IntGauge::with_opts(
                Opts::new("op25b_build_info", "Build of the running agent.")
                    .const_label("version", env!("CARGO_PKG_VERSION"))
                    .const_label("revision", env!("OP25B_GIT_REVISION")),
            )
            .expect("valid metric"),
        )
        .set(1);
        let reloads = counter_vec(
            r,
            "op25b_policy_reloads_total",
            "Policy loads and reloads, by result.",
            &["result"],
        );
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        Self {
            counters_path: maps_dir.join(MAP_COUNTERS),
            packets: counter_vec(r, "op25b_packets_total", "Packets judged, by interface, action and reason.", &["interface", "action", "reason"]),
            bytes: counter_vec(r, "op25b_bytes_total", "Bytes judged, by interface, action and reason.", &["interface", "action", "reason"]),
            attempts: counter_vec(
                r,
                "op25b_blocked_connection_attempts_total",
                "Blocked or undecidable TCP connection attempts (SYN without ACK).",
                &["interface"],
            ),
            events_lost: registered(r, IntCounter::new("op25b_events_lost_total", "Block events lost: ring buffer full in the kernel, or not written by the agent.").expect("valid metric")),
            reloads,
            last_reload_success: registered(
                r,
                Gauge::new(
                    "op25b_policy_last_reload_success_timestamp_seconds",
                    "Unix time of the last policy (re)load that was applied.",
                )
                .expect("valid metric"),
            ),
            prefixes: gauge_vec(r, "op25b_policy_prefixes", "Prefixes in the enforced policy, by list and family.", &["list", "family"]),
            attached: gauge_vec(
                r,
                "op25b_interface_attached",
                "1 for the XDP mode each configured interface runs in (mode=\"none\" when not attached).",
                &["interface", "mode"],
            ),
            program: gauge_vec(
                r,
                "op25b_interface_program",
                "1 for the program build each attached interface runs (one_buffer, or multi_buffer where the MTU needs it or jumbo_frames is set).",
                &["interface", "program"],
            ),
            interfaces: RwLock::new(Vec::new()),
            pool_packets: counter_vec(
                r,
                "op25b_pool_packets_total",
                "Packets from dynamic sources, by pool, the pool's action and reason.",
                &["pool", "pool_action", "reason"],
            ),
            pool_counters_path: maps_dir.join(op25b_common::abi::MAP_POOL_COUNTERS),
            pools: RwLock::new(Vec::new()),
            events_unwritten: std::sync::atomic::AtomicU64::new(0),
            top_sources: gauge_vec(
                r,
                "op25b_top_sources",
                "Distinct sources with blocked connection attempts in the window (as tracked by the bounded sketch).",
                &["window"],
            ),
            top: Mutex::new(TopSources::new(top_capacity)),
            registry,
        }
    }

    /// Counts a policy load or reload; a success also stamps its time.
    pub fn record_reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_reload_success.set(now);
        }
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

    pub fn set_interfaces(&self, views: Vec<InterfaceView>) {
        self.attached.reset();
        self.program.reset();
        for v in &views {
            if let Some(kind) = v.program {
                self.program
                    .with_label_values(&[&v.name, kind.label()])
                    .set(1);
            }
            for mode in ["driver", "skb", "none"] {
                let current = v.mode.map_or("none", AttachMode::name);
                self.attached
                    .with_label_values(&[&v.name, mode])
                    .set(i64::from(current == mode));
            }
        }
        *self.interfaces.write().expect("not poisoned") = views;
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
                let index = pool_counter_index(id, reason.index());
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
    /// For series other modules own (RADIUS).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
