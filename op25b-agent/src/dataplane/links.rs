//! Attaching an instance to an interface through a pinned bpf_link, and
//! adopting a pinned link by swapping the program behind it.

use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
    XdpMode,
};

use super::{Dataplane, DataplaneError, ProgramKind};

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
    /// Attaches this instance's `kind` program to `ifindex` through a new
    /// bpf_link and pins the link at `pin`.
    pub fn attach_pinned(
        &mut self,
        ifindex: u32,
        mode: XdpMode,
        kind: ProgramKind,
        pin: &Path,
    ) -> Result<HeldLink, DataplaneError> {
        let program = self.program_mut(kind);
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
    /// this instance's `kind` program (BPF_LINK_UPDATE): no packet sees the
    /// interface without a program. The driver may refuse the one-buffer
    /// build for the interface's MTU; the old program then stays.
    pub fn take_over_link(
        &mut self,
        pin: &Path,
        kind: ProgramKind,
    ) -> Result<HeldLink, DataplaneError> {
        let link_err = |source| DataplaneError::Link {
            path: pin.to_owned(),
            source,
        };
        let pinned = PinnedLink::from_pin(pin).map_err(link_err)?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(link_err)?;
        let program = self.program_mut(kind);
        let id = program.attach_to_link(link)?;
        let link = FdLink::try_from(program.take_link(id)?).map_err(link_err)?;
        Ok(HeldLink {
            link,
            path: pin.to_owned(),
        })
    }
}

impl HeldLink {
    /// Pins the link again at its path (after its pin was removed while
    /// this process held it). The link stays attached throughout.
    pub fn repin(&self) -> Result<(), DataplaneError> {
        let io = |source| DataplaneError::RepinLink {
            path: self.path.clone(),
            source,
        };
        let id = self
            .link
            .info()
            .map_err(|source| DataplaneError::Link {
                path: self.path.clone(),
                source,
            })?
            .id();
        let fd = bpf::link_fd_by_id(id).map_err(io)?;
        bpf::pin(&fd, &self.path).map_err(io)
    }
}

/// The two bpf(2) commands aya 0.14 does not offer for a link it holds.
mod bpf {
    use std::{
        ffi::CString,
        os::{
            fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
            unix::ffi::OsStrExt as _,
        },
        path::Path,
    };

    const BPF_OBJ_PIN: libc::c_long = 6;
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

    /// `bpf_attr` for BPF_OBJ_PIN. The kernel refuses non-zero bytes past
    /// the last field, so the tail padding is an explicit zero.
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        padding: u32,
    }

    /// `bpf_attr` for BPF_*_GET_FD_BY_ID.
    #[repr(C)]
    struct GetFdById {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }

    fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
        // SAFETY: `attr` is a valid, initialized bpf_attr prefix of the
        // command's layout and outlives the call; the kernel reads at most
        // `size_of::<T>()` bytes of it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                std::ptr::from_mut(attr),
                std::mem::size_of::<T>(),
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    pub fn link_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
        let mut attr = GetFdById {
            id,
            next_id: 0,
            open_flags: 0,
        };
        let fd = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr)?;
        let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("bad fd"))?;
        // SAFETY: the kernel just returned this descriptor to us alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn pin(fd: &OwnedFd, path: &Path) -> std::io::Result<()> {
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut attr = ObjPin {
            pathname: path.as_ptr() as u64,
            bpf_fd: u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("bad fd"))?,
            file_flags: 0,
            path_fd: 0,
            padding: 0,
        };
        bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
    }
}
