//! Attaching an instance to an interface through a pinned bpf_link, and
//! adopting a pinned link by swapping the program behind it.

use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
    XdpMode,
};

use super::{Dataplane, DataplaneError};

/// An XDP link this process holds and that is pinned on bpffs: it stays
/// attached when the process exits unless [`HeldLink::detach`] is called.
#[derive(Debug)]
pub struct HeldLink {
    link: FdLink,
    pub path: PathBuf,
}

impl HeldLink {
    /// Removes the pin and closes the link: the program leaves the interface.
    pub fn detach(self) -> Result<(), DataplaneError> {
        std::fs::remove_file(&self.path).map_err(|source| DataplaneError::Unpin {
            path: self.path.clone(),
            source,
        })?;
        drop(self.link);
        Ok(())
    }

    /// The kernel's id of the program the link runs now.
    pub fn program_id(&self) -> Option<u32> {
        self.link.info().ok().map(|i| i.program_id())
    }
}

impl Dataplane {
    /// Attaches this instance to `ifindex` through a new bpf_link and pins
    /// the link at `pin`.
    pub fn attach_pinned(
        &mut self,
        ifindex: u32,
        mode: XdpMode,
        pin: &Path,
    ) -> Result<HeldLink, DataplaneError> {
        let program = self.program_mut();
        let id = program.attach_to_if_index(ifindex, mode)?;
        let link = program.take_link(id)?;
        let link = FdLink::try_from(link).map_err(|source| DataplaneError::Link {
            path: pin.to_owned(),
            source,
        })?;
        let pinned = link.pin(pin).map_err(|source| DataplaneError::PinLink {
            path: pin.to_owned(),
            source,
        })?;
        Ok(HeldLink {
            link: pinned.into(),
            path: pin.to_owned(),
        })
    }

    /// Atomically swaps the program behind the link pinned at `pin` for
    /// this instance (BPF_LINK_UPDATE): no packet sees the interface
    /// without a program.
    pub fn take_over_link(&mut self, pin: &Path) -> Result<HeldLink, DataplaneError> {
        let link_err = |source| DataplaneError::Link {
            path: pin.to_owned(),
            source,
        };
        let pinned = PinnedLink::from_pin(pin).map_err(link_err)?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(link_err)?;
        let program = self.program_mut();
        let id = program.attach_to_link(link)?;
        let link = FdLink::try_from(program.take_link(id)?).map_err(link_err)?;
        Ok(HeldLink {
            link,
            path: pin.to_owned(),
        })
    }
}
