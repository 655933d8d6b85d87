//! `op25b-agent run`: keeps the XDP program attached to every configured
//! interface and its maps equal to the configuration, across reloads,
//! restarts, upgrades and interfaces that come and go.
//!
//! The rules that make it gap-free:
//! - every map and every link is pinned, so the kernel keeps enforcing while
//!   no agent runs (`on_exit = "keep"`);
//! - a starting agent never detaches: it loads its program and swaps it
//!   into the pinned link atomically (BPF_LINK_UPDATE);
//! - policy changes are diffs, new entries in before stale ones out;
//! - a configuration that fails validation changes nothing.

use std::{
    collections::BTreeMap,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use aya::programs::XdpMode;
use tracing::{error, info, warn};

use crate::{
    config::{Config, ConfigError, InterfaceConfig, OnExit, XdpModeSetting},
    dataplane::{Dataplane, DataplaneError, HeldLink, Maps},
    pins::{ifindex, AttachMode, LinkPin, PinError, PinLayout},
    policy::ListKind,
    provisioning::Provisioning,
    telemetry::{InterfaceView, Telemetry},
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
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Provisioning(#[from] crate::provisioning::ProvisioningError),
    #[error("another op25b-agent already manages {}", path.display())]
    AlreadyRunning { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where one configured interface stands.
pub enum InterfaceState {
    /// Not present in this network namespace (yet).
    Missing,
    /// Attached in `mode`; `program` is this agent's instance behind `link`.
    Attached {
        ifindex: u32,
        mode: AttachMode,
        program: Box<Dataplane>,
        link: HeldLink,
    },
    /// Present but attaching failed (another XDP program, no driver support).
    Failed { error: String },
}

pub struct Interface {
    pub name: String,
    pub wanted: XdpModeSetting,
    pub slot: u32,
    pub state: InterfaceState,
}

impl Interface {
    pub fn attached_mode(&self) -> Option<AttachMode> {
        match &self.state {
            InterfaceState::Attached { mode, .. } => Some(*mode),
            _ => None,
        }
    }
}

/// Identity of a watched file: a change in any part means "reload".
type FileStamp = Option<(std::time::SystemTime, u64, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

pub struct Agent {
    config: Config,
    layout: PinLayout,
    /// An unattached instance that owns the map handles for policy updates.
    control: Dataplane,
    pub interfaces: BTreeMap<String, Interface>,
    watched: Vec<(PathBuf, FileStamp)>,
    pub telemetry: Arc<Telemetry>,
    events_reopen: Arc<AtomicBool>,
    events_stop: Arc<AtomicBool>,
    events_thread: Option<std::thread::JoinHandle<()>>,
    /// Run-time grants (the provisioning API), when configured.
    provisioning: Option<Arc<Provisioning>>,
    /// Expiries up to this Unix second are already out of the maps.
    expiry_checked_at: u64,
    /// Fleet sync (`[fleet]`): the fleet's policy joins the local one.
    fleet: Option<crate::fleet::Fleet>,
    /// Holds the flock on the pin directory for the agent's lifetime.
    _lock: std::fs::File,
}

impl Agent {
    /// Takes over (or sets up) enforcement for `config`.
    pub fn start(config: Config) -> Result<Self, AgentError> {
        let layout = PinLayout::new(&config.pin_path);
        layout.prepare()?;
        let lock = lock_dir(&layout.root)?;
        let mut control = Dataplane::load(&Maps::Pinned(layout.maps_dir()), 0)?;
        let provisioning = match &config.api {
            Some(api) => {
                let provisioning = Arc::new(Provisioning::open(api.clone())?);
                crate::provisioning::serve(&provisioning)?;
                info!(
                    "provisioning API on {}",
                    api.socket.as_ref().map_or_else(
                        || api.listen_address.clone().unwrap_or_default(),
                        |s| s.display().to_string()
                    )
                );
                Some(provisioning)
            }
            None => None,
        };
        let fleet = start_fleet(&config, provisioning.as_deref());
        let (effective, fleet_merge) =
            effective_policy(&config, provisioning.as_deref(), fleet.as_ref());
        let stats = control.apply(&effective)?;
        fleet_applied(fleet.as_ref(), fleet_merge);
        info!(
            added = stats.added,
            removed = stats.removed,
            "policy in the maps: {}",
            policy_summary(&config)
        );
        let telemetry = Arc::new(Telemetry::new(
            &layout.maps_dir(),
            config.events.top_capacity,
        ));
        telemetry.set_policy(&effective);
        record_reload(&telemetry, true);
        if let Some(fleet) = &fleet {
            telemetry.register(Box::new(crate::fleet::metrics::FleetCollector::new(
                std::sync::Arc::clone(&fleet.shared),
            )));
        }
        if !config.metrics.listen_address.is_empty() {
            let bound = crate::http::serve(&config.metrics.listen_address, Arc::clone(&telemetry))?;
            info!("metrics on http://{bound}/metrics");
        }
        let (events_reopen, events_stop, events_thread) = crate::events::spawn(
            layout.maps_dir(),
            config.events.clone(),
            Arc::clone(&telemetry),
        );
        let mut agent = Self {
            watched: watch_list(&config),
            config,
            layout,
            control,
            interfaces: BTreeMap::new(),
            telemetry,
            events_reopen,
            events_stop,
            events_thread: Some(events_thread),
            provisioning,
            expiry_checked_at: crate::clock::now_unix(),
            fleet,
            _lock: lock,
        };
        agent.set_interfaces(&agent.config.interfaces.clone());
        agent.detach_unconfigured_pins();
        Ok(agent)
    }

    /// Publishes interface states to metrics and readiness.
    fn publish_interfaces(&self) {
        let views = self
            .interfaces
            .values()
            .map(|i| InterfaceView {
                name: i.name.clone(),
                slot: i.slot,
                mode: i.attached_mode(),
            })
            .collect();
        if let Some(fleet) = &self.fleet {
            fleet.set_interfaces(
                self.interfaces
                    .values()
                    .filter(|i| i.attached_mode().is_some())
                    .map(|i| i.name.clone())
                    .collect(),
            );
        }
        self.telemetry.set_interfaces(views, self.is_ready());
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Ready: the policy is loaded and every configured interface attached.
    pub fn is_ready(&self) -> bool {
        self.interfaces
            .values()
            .all(|i| i.attached_mode().is_some())
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
            (signal_hook::consts::SIGUSR1, &self.events_reopen),
        ];
        for (signal, flag) in signals {
            signal_hook::flag::register(signal, Arc::clone(flag)).map_err(|source| {
                AgentError::Io {
                    path: PathBuf::from("signal handler"),
                    source,
                }
            })?;
        }
        crate::systemd::notify_ready();
        info!(
            "running; SIGHUP or editing {} reloads",
            self.config.path.display()
        );
        let mut last_interface_check = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                self.reload("SIGHUP");
            } else if self.files_changed() {
                self.reload("file change");
            }
            self.apply_grants();
            if last_interface_check.elapsed() >= INTERFACE_INTERVAL {
                self.reconcile_interfaces();
                last_interface_check = Instant::now();
            }
            match &self.fleet {
                Some(fleet) => fleet.wait_for_change(WATCH_INTERVAL),
                None => std::thread::sleep(WATCH_INTERVAL),
            }
        }
        self.shutdown();
        Ok(())
    }

    /// Applies grants made over the API, and removes expired ones on time.
    /// Applies grants made over the API, and removes expired grants and
    /// expired `expires_at` entries of the lists on time.
    fn apply_grants(&mut self) {
        let now = crate::clock::now_unix();
        let lists_expired = self
            .config
            .policy
            .next_expiry(self.expiry_checked_at)
            .is_some_and(|t| t <= now)
            || self.fleet.as_ref().is_some_and(|f| {
                f.take_changed()
                    || f.policy()
                        .next_expiry(self.expiry_checked_at)
                        .is_some_and(|t| t <= now)
            });
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
        if !grants_changed && !expired {
            return;
        }
        let provisioning = self.provisioning.clone();
        let provisioning = provisioning.as_deref();
        let (effective, fleet_merge) =
            effective_policy(&self.config, provisioning, self.fleet.as_ref());
        match self.control.apply(&effective) {
            Ok(stats) => {
                info!(
                    added = stats.added,
                    removed = stats.removed,
                    expired,
                    "run-time grants, fleet changes and expiries applied"
                );
                fleet_applied(self.fleet.as_ref(), fleet_merge);
                self.telemetry.set_policy(&effective);
            }
            Err(e) => {
                error!("applying run-time grants, fleet changes and expiries: {e}; retrying");
                if let Some(p) = provisioning {
                    p.changed.store(true, Ordering::Relaxed);
                }
                if let Some(fleet) = &self.fleet {
                    fleet.apply_failed(e.to_string());
                }
            }
        }
    }

    fn files_changed(&mut self) -> bool {
        self.watched.iter().any(|(path, old)| stamp(path) != *old)
    }

    /// Validates everything first; on any problem logs it and keeps the
    /// running policy untouched.
    pub fn reload(&mut self, trigger: &str) {
        // Re-stamp first: a broken file is reported once, not every tick.
        self.watched = watch_list(&self.config);
        let new = match Config::load(&self.config.path) {
            Ok(new) => new,
            Err(e) => {
                record_reload(&self.telemetry, false);
                // Also watch list files only the refused config names, so fixing them retries.
                self.watched
                    .extend(e.list_files.iter().map(|p| (p.clone(), stamp(p))));
                for problem in &e.problems {
                    error!(trigger, "reload refused, old policy kept: {problem}");
                }
                return;
            }
        };
        self.watched = watch_list(&new);
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
        let (effective, fleet_merge) =
            effective_policy(&new, self.provisioning.as_deref(), self.fleet.as_ref());
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
                record_reload(&self.telemetry, false);
                error!(trigger, "reload failed while updating maps (entries added so far stay, none removed): {e}");
                return;
            }
        }
        fleet_applied(self.fleet.as_ref(), fleet_merge);
        let (pin_path, fleet) = (self.config.pin_path.clone(), self.config.fleet.clone());
        self.config = Config {
            pin_path,
            fleet,
            ..new
        };
        self.set_interfaces(&self.config.interfaces.clone());
        self.telemetry.set_policy(&effective);
        record_reload(&self.telemetry, true);
    }

    /// Brings the interface table in line with `wanted`.
    fn set_interfaces(&mut self, wanted: &[InterfaceConfig]) {
        let names: Vec<&String> = wanted.iter().map(|i| &i.name).collect();
        let removed: Vec<String> = self
            .interfaces
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for name in removed {
            if let Some(iface) = self.interfaces.remove(&name) {
                info!(interface = %name, "no longer configured: detaching");
                detach(iface.state);
            }
        }
        for want in wanted {
            let mode_changed = self
                .interfaces
                .get(&want.name)
                .is_some_and(|i| i.wanted != want.xdp_mode);
            if mode_changed {
                warn!(interface = %want.name, "xdp_mode changed: re-attaching (native and generic XDP cannot overlap, so this leaves a brief gap)");
                if let Some(iface) = self.interfaces.remove(&want.name) {
                    detach(iface.state);
                }
            }
            if !self.interfaces.contains_key(&want.name) {
                let pin = self.pin_of(&want.name);
                let (slot, fresh) = match &pin {
                    Some(pin) => (pin.slot, false),
                    None => (self.free_slot(), true),
                };
                if fresh {
                    if let Err(e) = self.control.reset_counters(slot) {
                        warn!(interface = %want.name, "cannot reset counters of slot {slot}: {e}");
                    }
                }
                self.interfaces.insert(
                    want.name.clone(),
                    Interface {
                        name: want.name.clone(),
                        wanted: want.xdp_mode,
                        slot,
                        state: InterfaceState::Missing,
                    },
                );
            }
        }
        self.reconcile_interfaces();
    }

    fn pin_of(&self, name: &str) -> Option<LinkPin> {
        self.layout
            .link_pins()
            .into_iter()
            .find(|p| p.interface == name)
    }

    fn free_slot(&self) -> u32 {
        let pinned: Vec<u32> = self.layout.link_pins().iter().map(|p| p.slot).collect();
        (0..op25b_common::abi::MAX_INTERFACE_SLOTS)
            .find(|s| !pinned.contains(s) && !self.interfaces.values().any(|i| i.slot == *s))
            .expect("config validation caps interfaces at the slot count")
    }

    /// Pins of interfaces the configuration no longer names: detach them.
    fn detach_unconfigured_pins(&mut self) {
        for pin in self.layout.link_pins() {
            if !self.interfaces.contains_key(&pin.interface) {
                info!(interface = %pin.interface, "pinned but not configured: detaching");
                if let Err(e) = std::fs::remove_file(&pin.path) {
                    warn!("cannot remove {}: {e}", pin.path.display());
                }
            }
        }
    }

    /// Attaches interfaces that appeared, notices the ones that vanished.
    pub fn reconcile_interfaces(&mut self) {
        let names: Vec<String> = self.interfaces.keys().cloned().collect();
        for name in names {
            let current = ifindex(&name);
            let Some(iface) = self.interfaces.get_mut(&name) else {
                continue;
            };
            if let InterfaceState::Attached {
                ifindex: attached, ..
            } = &iface.state
            {
                if current == Some(*attached) {
                    continue;
                }
                warn!(interface = %name, "interface vanished or was recreated: its program went with it");
                let old = std::mem::replace(&mut iface.state, InterfaceState::Missing);
                if let InterfaceState::Attached { link, .. } = old {
                    // The kernel already detached it; the pin is stale.
                    let _ = link.detach();
                }
            }
            let Some(index) = current else {
                continue;
            };
            let retry = matches!(iface.state, InterfaceState::Missing);
            if !retry {
                continue;
            }
            let (slot, wanted) = (iface.slot, iface.wanted);
            let pin = self.pin_of(&name);
            let state = attach(&self.layout, &name, index, slot, wanted, pin);
            match &state {
                InterfaceState::Attached { mode, .. } => {
                    info!(interface = %name, ifindex = index, slot, mode = %mode, "attached");
                }
                InterfaceState::Failed { error } => {
                    error!(interface = %name, "cannot attach: {error}");
                }
                InterfaceState::Missing => {}
            }
            if let Some(iface) = self.interfaces.get_mut(&name) {
                iface.state = state;
            }
        }
        self.publish_interfaces();
    }

    fn shutdown(mut self) {
        self.events_stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.events_thread.take() {
            let _ = thread.join();
        }
        match self.config.on_exit {
            OnExit::Keep => {
                let attached: Vec<&str> = self
                    .interfaces
                    .values()
                    .filter(|i| i.attached_mode().is_some())
                    .map(|i| i.name.as_str())
                    .collect();
                info!("stopping; enforcement stays in force on {attached:?} (on_exit = \"keep\")");
            }
            OnExit::Detach => {
                info!("stopping; detaching from every interface (on_exit = \"detach\")");
                for (_, iface) in self.interfaces {
                    detach(iface.state);
                }
                for pin in self.layout.link_pins() {
                    let _ = std::fs::remove_file(&pin.path);
                }
                let _ = std::fs::remove_dir_all(&self.layout.root);
            }
        }
    }
}

/// The fleet revision and precedence conflicts of a merged policy.
type FleetMerge = Option<(i64, Vec<String>)>;

/// The configuration's policy as of now (expired entries out) plus the
/// grants active now, plus the fleet's policy (see fleet::merge for precedence).
fn effective_policy(
    config: &Config,
    provisioning: Option<&Provisioning>,
    fleet: Option<&crate::fleet::Fleet>,
) -> (crate::policy::Policy, FleetMerge) {
    let now = crate::clock::now_unix();
    let base = config.policy.active(now);
    let local = match provisioning {
        Some(p) => p.state().effective(&base, now),
        None => base,
    };
    match fleet {
        Some(fleet) => {
            let (merged, revision, conflicts) = fleet.merge(&local, now);
            (merged, Some((revision, conflicts)))
        }
        None => (local, None),
    }
}

/// Starts fleet sync if configured. Without a snapshot the first apply
/// waits a little for etcd, so a fresh box does not start on its local
/// policy alone when etcd is right there.
fn start_fleet(
    config: &Config,
    provisioning: Option<&Provisioning>,
) -> Option<crate::fleet::Fleet> {
    let settings = config.fleet.clone()?;
    crate::fleet::metrics::mark_start();
    let top_address = Some(config.metrics.listen_address.clone()).filter(|a| !a.is_empty());
    let fleet = crate::fleet::Fleet::start(settings, top_address);
    if let Some(p) = provisioning {
        p.use_store(fleet.grant_store());
        info!("provisioning API: grants go to the fleet's etcd");
    }
    if fleet.policy().revision == 0 && !fleet.wait_for_sync(FLEET_START_WAIT) {
        warn!("fleet: no snapshot and etcd not answering yet: starting with the local policy, the fleet's follows when etcd answers");
    }
    Some(fleet)
}

/// How long a start without a fleet snapshot waits for etcd.
const FLEET_START_WAIT: Duration = Duration::from_secs(5);

fn fleet_applied(fleet: Option<&crate::fleet::Fleet>, merge: FleetMerge) {
    if let (Some(fleet), Some((revision, conflicts))) = (fleet, merge) {
        fleet.applied(revision, conflicts);
    }
}

fn record_reload(telemetry: &Telemetry, ok: bool) {
    telemetry
        .reloads
        .with_label_values(&[if ok { "success" } else { "failure" }])
        .inc();
    if ok {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        telemetry.last_reload_success.set(now);
    }
}

fn detach(state: InterfaceState) {
    if let InterfaceState::Attached { link, .. } = state {
        if let Err(e) = link.detach() {
            warn!("{e}");
        }
    }
}

/// Attaches (or adopts) one interface.
fn attach(
    layout: &PinLayout,
    name: &str,
    index: u32,
    slot: u32,
    wanted: XdpModeSetting,
    pin: Option<LinkPin>,
) -> InterfaceState {
    let mut program = match Dataplane::load(&Maps::Pinned(layout.maps_dir()), slot) {
        Ok(p) => Box::new(p),
        Err(e) => {
            return InterfaceState::Failed {
                error: e.to_string(),
            }
        }
    };
    if let Some(pin) = pin {
        let compatible = match wanted {
            XdpModeSetting::Auto => true,
            XdpModeSetting::Driver => pin.mode == AttachMode::Driver,
            XdpModeSetting::Skb => pin.mode == AttachMode::Skb,
        };
        if pin.ifindex == index && compatible {
            // Adopt: swap our program into the running link, atomically.
            return match program.take_over_link(&pin.path) {
                Ok(link) => InterfaceState::Attached {
                    ifindex: index,
                    mode: pin.mode,
                    program,
                    link,
                },
                Err(e) => InterfaceState::Failed {
                    error: e.to_string(),
                },
            };
        }
        // Made for an interface that is gone (or in another mode): stale.
        let _ = std::fs::remove_file(&pin.path);
    }
    let modes: &[AttachMode] = match wanted {
        XdpModeSetting::Auto => &[AttachMode::Driver, AttachMode::Skb],
        XdpModeSetting::Driver => &[AttachMode::Driver],
        XdpModeSetting::Skb => &[AttachMode::Skb],
    };
    let mut errors = Vec::new();
    for &mode in modes {
        let path = layout
            .links_dir()
            .join(LinkPin::file_name(name, index, slot, mode));
        let xdp_mode = match mode {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        };
        match program.attach_pinned(index, xdp_mode, &path) {
            Ok(link) => {
                if !errors.is_empty() {
                    warn!(interface = %name, "native XDP unavailable ({}), running in generic skb mode: slower", errors.join("; "));
                }
                return InterfaceState::Attached {
                    ifindex: index,
                    mode,
                    program,
                    link,
                };
            }
            Err(e) => errors.push(format!("{mode}: {e}")),
        }
    }
    InterfaceState::Failed {
        error: errors.join("; "),
    }
}

fn watch_list(config: &Config) -> Vec<(PathBuf, FileStamp)> {
    std::iter::once(&config.path)
        .chain(&config.list_files)
        .map(|p| (p.clone(), stamp(p)))
        .collect()
}

fn policy_summary(config: &Config) -> String {
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

/// One agent per pin directory: an exclusive flock on it.
fn lock_dir(dir: &Path) -> Result<std::fs::File, AgentError> {
    let file = std::fs::File::open(dir).map_err(|source| AgentError::Io {
        path: dir.to_owned(),
        source,
    })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(AgentError::AlreadyRunning {
            path: dir.to_owned(),
        });
    }
    Ok(file)
}
