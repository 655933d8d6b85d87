//! `status`: what the kernel is enforcing right now, read from the pinned
//! objects alone (no agent needs to run).

use std::{fmt::Write as _, path::Path};

use op25b_common::{abi::counter_index, Reason};
use serde::Serialize;

use crate::{
    config::Config,
    dataplane::{
        counters::PinnedCounters,
        pins::{ifindex, PinLayout},
        runtime_config,
        writer::{count_pinned_keys, list_map_names},
        ProgramKind,
    },
    policy::ListKind,
};

#[derive(Debug, Serialize)]
pub struct Status {
    pub pin_path: String,
    /// False when nothing is pinned there: op25b is not enforcing.
    pub loaded: bool,
    pub blocked_ports: Vec<u16>,
    pub interfaces: Vec<InterfaceStatus>,
    pub lists: Vec<ListStatus>,
}

#[derive(Debug, Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// `attached`, `stale` (the interface it was made for is gone) or
    /// `missing` (configured, not attached).
    pub state: &'static str,
    pub mode: Option<&'static str>,
    /// The program build behind the link (`one_buffer`, `multi_buffer`).
    pub program: Option<&'static str>,
    pub ifindex: Option<u32>,
    pub slot: Option<u32>,
    pub counters: Vec<ReasonCount>,
}

#[derive(Debug, Serialize)]
pub struct ReasonCount {
    pub reason: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ListStatus {
    pub list: &'static str,
    pub ipv4: usize,
    pub ipv6: usize,
}

fn slot_counters(counters: Option<&PinnedCounters>, slot: u32) -> Vec<ReasonCount> {
    Reason::ALL
        .iter()
        .map(|&reason| {
            let sum = counters
                .map(|c| c.get(counter_index(slot, reason.index())))
                .unwrap_or_default();
            ReasonCount {
                reason: reason.name(),
                action: reason.action().name(),
                packets: sum.packets,
                bytes: sum.bytes,
            }
        })
        .collect()
}

/// Reads the state pinned under `pin_path`; `config`, when given, adds the
/// configured interfaces that are not attached.
pub fn read(pin_path: &Path, config: Option<&Config>) -> Status {
    let layout = PinLayout::new(pin_path);
    let maps = layout.maps_dir();
    let counters = PinnedCounters::open(&maps.join(op25b_common::abi::MAP_COUNTERS));
    let runtime = runtime_config::pinned_in(&maps);

    let mut interfaces: Vec<InterfaceStatus> = layout
        .link_pins()
        .into_iter()
        .map(|pin| InterfaceStatus {
            state: if pin.is_live() { "attached" } else { "stale" },
            mode: Some(pin.mode.name()),
            program: ProgramKind::behind_pinned_link(&pin.path).map(ProgramKind::label),
            ifindex: Some(pin.ifindex),
            slot: Some(pin.slot),
            counters: slot_counters(counters.as_ref(), pin.slot),
            name: pin.interface,
        })
        .collect();
    for iface in config.map(|c| c.interfaces.as_slice()).unwrap_or_default() {
        if !interfaces.iter().any(|i| i.name == iface.name) {
            interfaces.push(InterfaceStatus {
                name: iface.name.clone(),
                state: "missing",
                mode: None,
                program: None,
                ifindex: ifindex(&iface.name),
                slot: None,
                counters: Vec::new(),
            });
        }
    }
    let class_counts = crate::dataplane::class_writer::pinned_list_counts(&maps);
    let lists = ListKind::ALL
        .iter()
        .map(|&kind| {
            let (v4, v6) = list_map_names(kind);
            let (ipv4, ipv6) = match kind {
                ListKind::Dynamic | ListKind::Exempt => class_counts
                    .map(|c| c[usize::from(kind == ListKind::Exempt)])
                    .unwrap_or_default(),
                ListKind::AllowedDestinations => (
                    count_pinned_keys::<4>(&maps.join(v4)),
                    count_pinned_keys::<16>(&maps.join(v6)),
                ),
            };
            ListStatus {
                list: kind.name(),
                ipv4,
                ipv6,
            }
        })
        .collect();
    Status {
        pin_path: pin_path.display().to_string(),
        loaded: runtime.is_some(),
        blocked_ports: runtime
            .map(|r| r.blocked_ports.iter().collect())
            .unwrap_or_default(),
        interfaces,
        lists,
    }
}

impl Status {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.loaded {
            let _ = writeln!(
                out,
                "op25b is not loaded: nothing pinned at {}",
                self.pin_path
            );
        }
        let _ = writeln!(out, "pin path: {}", self.pin_path);
        let _ = writeln!(out, "blocked ports: {:?}", self.blocked_ports);
        for l in &self.lists {
            let _ = writeln!(
                out,
                "list {:<22} {:>9} IPv4 {:>9} IPv6",
                l.list, l.ipv4, l.ipv6
            );
        }
        for i in &self.interfaces {
            let _ = writeln!(
                out,
                "interface {}: {}{}",
                i.name,
                i.state,
                match (i.mode, i.program) {
                    (Some(m), Some(p)) => format!(" ({m} mode, {p} build)"),
                    (Some(m), None) => format!(" ({m} mode)"),
                    _ => String::new(),
                }
            );
            for c in i.counters.iter().filter(|c| c.packets > 0) {
                let _ = writeln!(
                    out,
                    "  {:<16} {:<4} {:>12} packets {:>14} bytes",
                    c.reason, c.action, c.packets, c.bytes
                );
            }
        }
        out
    }
}
