//! `op25b-agent run`: keeps the XDP program attached to every configured
//! interface and its maps equal to the configuration, across reloads,
//! restarts, upgrades and interfaces that come and go.
//!
//! The rules that make it gap-free:
//! - every map and every link is pinned, so the kernel keeps enforcing while
//!   no agent runs (`on_exit = "keep"`);
//! - a starting agent never detaches: it loads its program and swaps it
//!   into the pinned link atomically (BPF_LINK_UPDATE);
//! - policy changes are diffs, new entries in before stale ones out
//!   (`reload`, `crate::dataplane::diff`);
//! - a configuration that fails validation changes nothing.

mod fleet;
mod interfaces;
mod link_events;
mod lock;
mod pin_guard;
mod radius;
mod reload;
pub mod systemd;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tracing::{error, info};

pub use self::interfaces::{Interface, InterfaceState};
use crate::{
    api::{
        admin::{AdminRoutes, ListenError},
        provisioning::{Provisioning, ProvisioningError},
    },
    config::{watch::WatchedFiles, Config, ConfigError, OnExit},
    dataplane::{
        pins::{PinError, PinLayout},
        Dataplane, DataplaneError, Maps,
    },
    observe::{events::EventsHandle, metrics::Telemetry, readiness::Readiness},
};

/// How often files are checked for changes (an edit takes effect within this).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// How often interfaces are checked for appearing and vanishing.
pub const INTERFACE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pins(#[from] PinError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Provisioning(#[from] ProvisioningError),
    #[error("metrics.read_token_file: {0}")]
    ReadToken(#[from] crate::api::bearer::TokenError),
    #[error(transparent)]
    Radius(#[from] crate::radius::RadiusError),
    #[error("another op25b-agent already manages {}", path.display())]
    AlreadyRunning { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Agent {
    config: Config,
    layout: PinLayout,
    /// An unattached instance that owns the map handles for policy updates.
    control: Dataplane,
    pub interfaces: BTreeMap<String, Interface>,
    watched: WatchedFiles,
    pub telemetry: Arc<Telemetry>,
    pub readiness: Arc<Readiness>,
    events: EventsHandle,
    /// Run-time grants (the provisioning API), when configured.
    provisioning: Option<Arc<Provisioning>>,
    /// Wakes the loop early: link notifications, RADIUS requests.
    waker: Arc<crate::wake::Waker>,
    /// RADIUS sessions (accounting, CoA), when `[radius]` listens.
    radius: Option<Arc<crate::radius::Radius>>,
    /// Fleet sync (`[fleet]`): the fleet's policy joins the local one.
    fleet: Option<crate::fleet::Fleet>,
    /// Expiries up to this Unix second are already out of the maps.
    expiry_checked_at: u64,
    /// Holds the flock on the pin directory for the agent's lifetime.
    lock: std::fs::File,
}

impl Agent {
    /// Takes over (or sets up) enforcement for `config`.
    pub fn start(config: Config) -> Result<Self, AgentError> {
        raise_open_files_limit();
        let layout = PinLayout::new(&config.pin_path);
        layout.prepare()?;
        let lock = lock::lock_dir(&layout.root)?;
        let mut control = Dataplane::load(&Maps::Pinned(layout.maps_dir()), 0)?;
        reload::log_warnings(&config);
        let provisioning = config
            .api
            .as_ref()
            .map(|api| start_provisioning(api.clone(), config.prefix_limits))
            .transpose()?;
        let radius = radius::open(&config)?;
        let waker: Arc<crate::wake::Waker> = radius.as_ref().map(|r| r.waker()).unwrap_or_default();
        let fleet = fleet::start(&config, provisioning.as_deref(), &waker);
        let (effective, fleet_merge) = reload::effective_policy(
            &config,
            provisioning.as_deref(),
            radius.as_deref(),
            fleet.as_ref(),
        );
        let stats = control.apply(&effective)?;
        fleet::applied(fleet.as_ref(), fleet_merge);
        info!(
            added = stats.added,
            removed = stats.removed,
            "policy in the maps: {}",
            reload::policy_summary(&config)
        );
        let telemetry = Arc::new(Telemetry::new(
            &layout.maps_dir(),
            config.events.top_capacity,
        ));
        let readiness = Arc::new(Readiness::default());
        telemetry.set_policy(&effective);
        telemetry.record_reload(true);
        radius::serve(radius.as_ref(), &telemetry)?;
        fleet::register_metrics(fleet.as_ref(), &telemetry);
        if !config.metrics.listen_address.is_empty() {
            let routes = AdminRoutes {
                telemetry: Arc::clone(&telemetry),
                readiness: Arc::clone(&readiness),
                radius: radius.clone(),
                read_token: config.metrics.read_token()?,
            };
            let bound = crate::api::admin::serve(&config.metrics.listen_address, routes)?;
            info!("metrics on http://{bound}/metrics");
        }
        let events = EventsHandle::spawn(
            layout.maps_dir(),
            config.events.clone(),
            Arc::clone(&telemetry),
            radius::session_lookup(radius.as_ref()),
        );
        let mut agent = Self {
            watched: WatchedFiles::of(&config),
            config,
            layout,
            control,
            interfaces: BTreeMap::new(),
            telemetry,
            readiness,
            events,
            provisioning,
            waker,
            radius,
            fleet,
            expiry_checked_at: crate::clock::now_unix(),
            lock,
        };
        agent.set_interfaces(&agent.config.interfaces.clone());
        agent.detach_unconfigured_pins();
        Ok(agent)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Ready: the policy is loaded and every configured interface attached.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Runs until SIGTERM or SIGINT; reloads on SIGHUP and on file changes.
    pub fn run(mut self) -> Result<(), AgentError> {
        let stop = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let signals = [
            (signal_hook::consts::SIGTERM, &stop),
            (signal_hook::consts::SIGINT, &stop),
            (signal_hook::consts::SIGHUP, &hup),
            // logrotate's postrotate: reopen the event log.
            (signal_hook::consts::SIGUSR1, self.events.reopen_flag()),
        ];
        for (signal, flag) in signals {
            signal_hook::flag::register(signal, Arc::clone(flag)).map_err(|source| {
                AgentError::Io {
                    path: PathBuf::from("signal handler"),
                    source,
                }
            })?;
        }
        systemd::notify_ready();
        info!(
            "running; SIGHUP or editing {} reloads",
            self.config.path.display()
        );
        link_events::spawn(Arc::clone(&self.waker));
        let mut last_interface_check = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                self.reload("SIGHUP");
            } else if self.watched.changed() {
                self.watched
                    .settle(Duration::from_millis(50), Duration::from_secs(1));
                self.reload("file change");
            }
            self.apply_grants();
            self.guard_pins();
            self.apply_sessions();
            if last_interface_check.elapsed() >= INTERFACE_INTERVAL {
                self.reconcile_interfaces("poll");
                last_interface_check = Instant::now();
            }
            // Sleeps until the next tick, an interface change, a RADIUS
            // request waiting for the maps, or a new fleet policy.
            if self.waker.wait(WATCH_INTERVAL).link {
                self.reconcile_interfaces("link notification");
                last_interface_check = Instant::now();
            }
        }
        self.shutdown();
        Ok(())
    }

    fn shutdown(mut self) {
        self.events.stop();
        match self.config.on_exit {
            OnExit::Keep => {
                let (stay, end) = self.outliving();
                if end.is_empty() {
                    info!("stopping; enforcement stays in force on {stay:?} (on_exit = \"keep\")");
                } else {
                    error!("stopping; enforcement stays in force on {stay:?} only: it ENDS on {end:?}, whose pins are gone");
                }
            }
            OnExit::Detach => {
                info!("stopping; detaching from every interface (on_exit = \"detach\")");
                for (_, iface) in self.interfaces {
                    interfaces::detach(iface.state);
                }
                for pin in self.layout.link_pins() {
                    let _ = std::fs::remove_file(&pin.path);
                }
                let _ = std::fs::remove_dir_all(&self.layout.root);
            }
        }
    }
}

fn start_provisioning(
    api: crate::config::ApiConfig,
    limits: crate::policy::limits::PrefixLimits,
) -> Result<Arc<Provisioning>, AgentError> {
    let where_ = api.socket.as_ref().map_or_else(
        || api.listen_address.clone().unwrap_or_default(),
        |s| s.display().to_string(),
    );
    let provisioning = Arc::new(Provisioning::open(api, limits)?);
    crate::api::provisioning::serve(&provisioning)?;
    info!("provisioning API on {where_}");
    Ok(provisioning)
}

/// Hundreds of HTTP clients (some hostile) each hold a descriptor: lift
/// the soft limit to the hard one so accepting them never starves the rest.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                tracing::warn!(
                    "cannot raise the open files limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}
