//! The configured interfaces: attaching (or adopting a pinned link),
//! noticing interfaces that appear, vanish or are recreated, detaching
//! those no longer configured. Each interface counts in its own slot.

use aya::programs::XdpMode;
use tracing::{error, info, warn};

use super::Agent;
use crate::{
    config::{InterfaceConfig, XdpModeSetting},
    dataplane::{
        links::HeldLink,
        pins::{ifindex, AttachMode, LinkPin, PinLayout},
        Dataplane, Maps, ProgramKind,
    },
    observe::metrics::InterfaceView,
};

/// Where one configured interface stands.
pub enum InterfaceState {
    /// Not present in this network namespace (yet).
    Missing,
    /// Attached in `mode`; `program` is this agent's instance behind
    /// `link`, running its `kind` build.
    Attached {
        ifindex: u32,
        mode: AttachMode,
        kind: ProgramKind,
        program: Box<Dataplane>,
        link: HeldLink,
    },
    /// Present but attaching failed (another XDP program, no driver support).
    Failed { error: String },
}

pub struct Interface {
    pub name: String,
    pub wanted: XdpModeSetting,
    /// Run the frags-aware build even where the MTU fits one buffer, so the
    /// MTU can be raised while attached.
    pub jumbo_frames: bool,
    pub slot: u32,
    pub state: InterfaceState,
    /// A program loaded (and verified) for this slot while the interface
    /// is missing: loading is most of an attach, so an interface that comes
    /// back is covered within milliseconds of the kernel's notification.
    spare: Option<Box<Dataplane>>,
}

impl Interface {
    pub fn attached_mode(&self) -> Option<AttachMode> {
        match &self.state {
            InterfaceState::Attached { mode, .. } => Some(*mode),
            _ => None,
        }
    }

    pub fn attached_kind(&self) -> Option<ProgramKind> {
        match &self.state {
            InterfaceState::Attached { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

impl Agent {
    /// Publishes interface states to metrics and readiness.
    pub(super) fn publish_interfaces(&self) {
        let views = self
            .interfaces
            .values()
            .map(|i| InterfaceView {
                name: i.name.clone(),
                slot: i.slot,
                mode: i.attached_mode(),
                program: i.attached_kind(),
            })
            .collect();
        self.telemetry.set_interfaces(views);
        self.report_interfaces_to_fleet();
        let missing: Vec<&str> = self
            .interfaces
            .values()
            .filter(|i| i.attached_mode().is_none())
            .map(|i| i.name.as_str())
            .collect();
        if missing.is_empty() {
            self.readiness.set_ready();
        } else {
            self.readiness
                .set_not_ready(format!("not attached: {}", missing.join(", ")));
        }
    }

    /// Brings the interface table in line with `wanted`.
    pub(super) fn set_interfaces(&mut self, wanted: &[InterfaceConfig]) {
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
            let jumbo_changed = self
                .interfaces
                .get(&want.name)
                .is_some_and(|i| i.jumbo_frames != want.jumbo_frames);
            if jumbo_changed {
                // Forgotten but left attached: the entry made below adopts
                // the pinned link and swaps the other build in atomically.
                info!(interface = %want.name, jumbo_frames = want.jumbo_frames, "jumbo_frames changed: swapping the program build");
                self.interfaces.remove(&want.name);
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
                        jumbo_frames: want.jumbo_frames,
                        slot,
                        state: InterfaceState::Missing,
                        spare: None,
                    },
                );
            }
        }
        self.reconcile_interfaces("configuration");
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
    pub(super) fn detach_unconfigured_pins(&mut self) {
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
    /// `trigger` (configuration, poll, link notification) goes in the log.
    pub fn reconcile_interfaces(&mut self, trigger: &str) {
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
            let missing = matches!(iface.state, InterfaceState::Missing);
            let Some(index) = current else {
                continue;
            };
            if !missing {
                continue;
            }
            let wanted = Wanted {
                mode: iface.wanted,
                kinds: ProgramKind::candidates(iface.jumbo_frames),
            };
            let (slot, spare) = (iface.slot, iface.spare.take());
            let pin = self.pin_of(&name);
            let state = attach(&self.layout, &name, index, slot, wanted, pin, spare);
            match &state {
                InterfaceState::Attached { mode, kind, .. } => {
                    info!(interface = %name, ifindex = index, slot, mode = %mode, program = %kind, trigger, "attached");
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
        self.load_spares();
    }

    /// Keeps a loaded program ready for every interface, off the path of
    /// the attach that will need it.
    fn load_spares(&mut self) {
        let maps = Maps::Pinned(self.layout.maps_dir());
        for iface in self.interfaces.values_mut().filter(|i| i.spare.is_none()) {
            iface.spare = Dataplane::load(&maps, iface.slot)
                .inspect_err(|e| warn!(interface = %iface.name, "cannot preload a program: {e}"))
                .ok()
                .map(Box::new);
        }
    }
}

pub(super) fn detach(state: InterfaceState) {
    if let InterfaceState::Attached { link, .. } = state {
        if let Err(e) = link.detach() {
            warn!("{e}");
        }
    }
}

/// What an interface asks for: an XDP mode and the program builds it may
/// run, best first.
#[derive(Clone, Copy)]
struct Wanted {
    mode: XdpModeSetting,
    kinds: &'static [ProgramKind],
}

/// Attaches (or adopts) one interface, with `spare` if one is loaded. The
/// one-buffer build is tried first; drivers refuse it where the MTU needs
/// more than one buffer per frame, and the frags-aware build runs there.
fn attach(
    layout: &PinLayout,
    name: &str,
    index: u32,
    slot: u32,
    wanted: Wanted,
    pin: Option<LinkPin>,
    spare: Option<Box<Dataplane>>,
) -> InterfaceState {
    let loaded = spare.map_or_else(
        || Dataplane::load(&Maps::Pinned(layout.maps_dir()), slot).map(Box::new),
        Ok,
    );
    let mut program = match loaded {
        Ok(p) => p,
        Err(e) => {
            return InterfaceState::Failed {
                error: e.to_string(),
            }
        }
    };
    let mut errors = Vec::new();
    if let Some(pin) = pin {
        let compatible = match wanted.mode {
            XdpModeSetting::Auto => true,
            XdpModeSetting::Driver => pin.mode == AttachMode::Driver,
            XdpModeSetting::Skb => pin.mode == AttachMode::Skb,
        };
        if pin.ifindex == index && compatible {
            // Adopt: swap our program into the running link, atomically;
            // a build the driver refuses leaves the old program running.
            for &kind in wanted.kinds {
                match program.take_over_link(&pin.path, kind) {
                    Ok(link) => {
                        note_fallback(name, kind, &errors);
                        return InterfaceState::Attached {
                            ifindex: index,
                            mode: pin.mode,
                            kind,
                            program,
                            link,
                        };
                    }
                    Err(e) => errors.push(format!("{kind}: {e}")),
                }
            }
            return InterfaceState::Failed {
                error: errors.join("; "),
            };
        }
        // Made for an interface that is gone (or in another mode): stale.
        let _ = std::fs::remove_file(&pin.path);
    }
    let modes: &[AttachMode] = match wanted.mode {
        XdpModeSetting::Auto => &[AttachMode::Driver, AttachMode::Skb],
        XdpModeSetting::Driver => &[AttachMode::Driver],
        XdpModeSetting::Skb => &[AttachMode::Skb],
    };
    for &mode in modes {
        let path = layout
            .links_dir()
            .join(LinkPin::file_name(name, index, slot, mode));
        let xdp_mode = match mode {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        };
        for &kind in wanted.kinds {
            match program.attach_pinned(index, xdp_mode, kind, &path) {
                Ok(link) => {
                    if mode == AttachMode::Skb && modes.len() > 1 {
                        warn!(interface = %name, "native XDP unavailable ({}), running in generic skb mode: slower", errors.join("; "));
                    } else {
                        note_fallback(name, kind, &errors);
                    }
                    return InterfaceState::Attached {
                        ifindex: index,
                        mode,
                        kind,
                        program,
                        link,
                    };
                }
                Err(e) => errors.push(format!("{mode} {kind}: {e}")),
            }
        }
    }
    InterfaceState::Failed {
        error: errors.join("; "),
    }
}

/// Says why an interface runs the frags-aware build when it was not asked for.
fn note_fallback(name: &str, kind: ProgramKind, refusals: &[String]) {
    if kind == ProgramKind::MultiBuffer && !refusals.is_empty() {
        info!(interface = %name, "the driver refused the one-buffer build ({}): running the frags-aware build, for an MTU past one buffer", refusals.join("; "));
    }
}
