//! The pin directory is what lets enforcement outlive the agent, and what
//! keeps a second agent out. If an operator removes it under a running
//! agent (`rm -rf /sys/fs/bpf/op25b`), the agent notices within a loop
//! tick, says so loudly, re-pins the maps and links it still holds and
//! takes the lock again; if it cannot, it goes unready and says what a
//! stop would mean. A stop never claims enforcement stays when it will not.

use std::os::unix::fs::MetadataExt as _;

use tracing::{error, info, warn};

use super::{lock, Agent, AgentError, InterfaceState};
use crate::dataplane::Maps;

impl Agent {
    /// Is the locked pin directory still the one at the pin path, with the
    /// runtime configuration pinned in it?
    fn pins_intact(&self) -> bool {
        let Ok(locked) = self.lock.metadata() else {
            return false;
        };
        let here = std::fs::metadata(&self.layout.root);
        here.is_ok_and(|m| m.ino() == locked.ino() && m.dev() == locked.dev())
            && self
                .layout
                .maps_dir()
                .join(op25b_common::abi::RUNTIME_CONFIG_PIN)
                .exists()
    }

    /// Checks the pins; restores them if they went.
    pub(super) fn guard_pins(&mut self) {
        if self.pins_intact() {
            return;
        }
        error!(
            "the pin directory {} was removed or replaced under the running agent: re-pinning maps and links",
            self.layout.root.display()
        );
        match self.repin() {
            Ok(()) => {
                info!("maps and links pinned again; the lock is held again");
                self.publish_interfaces();
            }
            Err(e) => {
                error!("cannot restore the pins: {e}; enforcement ends when this agent stops");
                self.readiness
                    .set_not_ready(format!("pins removed and not restored: {e}"));
            }
        }
    }

    fn repin(&mut self) -> Result<(), AgentError> {
        self.layout.prepare()?;
        self.lock = lock::lock_dir(&self.layout.root)?;
        self.control
            .repin_maps(&Maps::Pinned(self.layout.maps_dir()))?;
        for iface in self.interfaces.values() {
            if let InterfaceState::Attached { link, .. } = &iface.state {
                if !link.path.exists() {
                    link.repin()?;
                }
            }
        }
        Ok(())
    }

    /// Interfaces whose enforcement outlives this process: attached, with
    /// the link pinned where the next agent will look.
    pub(super) fn outliving(&self) -> (Vec<&str>, Vec<&str>) {
        let intact = self.pins_intact();
        let mut stay = Vec::new();
        let mut end = Vec::new();
        for iface in self.interfaces.values() {
            if let InterfaceState::Attached { link, .. } = &iface.state {
                if intact && link.path.exists() {
                    stay.push(iface.name.as_str());
                } else {
                    end.push(iface.name.as_str());
                }
            }
        }
        if !end.is_empty() {
            warn!("link pins missing for {end:?}: XDP leaves them when this process exits");
        }
        (stay, end)
    }
}
