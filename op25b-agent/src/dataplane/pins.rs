//! The bpffs layout the agent leaves behind, so that enforcement outlives
//! it and the next agent (or `status`) can find everything:
//!
//! ```text
//! <pin_path>/maps/<MAP>                            policy tries, counters, runtime config
//! <pin_path>/links/<slot>_<ifindex>_<mode>_<ifname>  one pinned XDP link per interface
//! ```
//! bpffs refuses dots in names (EPERM), so a `.` in an interface name (VLAN
//! subinterfaces like `eth0.100`) is written `%2e`, and `%` as `%25`.
//! The link's file name carries what the kernel will not tell about an XDP
//! link: the interface index it was made for (a recreated interface gets a
//! new one), the counter slot, and the attach mode.

use std::{
    ffi::CString,
    fmt, fs, io,
    path::{Path, PathBuf},
};

/// Magic number of a bpffs superblock (statfs f_type).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where Linux mounts bpffs by convention.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// Native XDP in the driver.
    Driver,
    /// Generic XDP in the kernel's receive path.
    Skb,
}

impl AttachMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Driver => "driver",
            Self::Skb => "skb",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "driver" => Some(Self::Driver),
            "skb" => Some(Self::Skb),
            _ => None,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One pinned XDP link, as named on bpffs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPin {
    pub interface: String,
    pub ifindex: u32,
    pub slot: u32,
    pub mode: AttachMode,
    pub path: PathBuf,
}

impl LinkPin {
    pub fn file_name(interface: &str, ifindex: u32, slot: u32, mode: AttachMode) -> String {
        let escaped = interface.replace('%', "%25").replace('.', "%2e");
        format!("{slot}_{ifindex}_{mode}_{escaped}")
    }

    /// Parses a link pin's file name.
    pub fn parse(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let mut parts = name.splitn(4, '_');
        let slot = parts.next()?.parse().ok()?;
        let ifindex = parts.next()?.parse().ok()?;
        let mode = AttachMode::parse(parts.next()?)?;
        let interface = parts.next()?.replace("%2e", ".").replace("%25", "%");
        Some(Self {
            interface,
            ifindex,
            slot,
            mode,
            path: path.to_owned(),
        })
    }

    /// Is the interface this link was made for still there (same index)?
    pub fn is_live(&self) -> bool {
        ifindex(&self.interface) == Some(self.ifindex)
    }
}

#[derive(Clone, Debug)]
pub struct PinLayout {
    pub root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{}: not on a bpffs, and op25b only mounts one at {DEFAULT_BPFFS}; mount one there (mount -t bpf bpf DIR) or set pin_path under an existing bpffs", path.display())]
    NotBpffs { path: PathBuf },
    #[error("mounting bpffs on {DEFAULT_BPFFS}: {source} (needs CAP_SYS_ADMIN; or mount it before starting the agent)")]
    Mount {
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PinLayout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    /// Makes sure the root lies on a bpffs (mounting the conventional one
    /// if that is where it should be) and that the directories exist.
    pub fn prepare(&self) -> Result<(), PinError> {
        if !on_bpffs(&self.root) {
            let conventional = Path::new(DEFAULT_BPFFS);
            if !self.root.starts_with(conventional) || is_bpffs(conventional) {
                return Err(PinError::NotBpffs {
                    path: self.root.clone(),
                });
            }
            mount_bpffs(conventional)?;
            tracing::info!("mounted bpffs on {DEFAULT_BPFFS}");
        }
        for dir in [self.maps_dir(), self.links_dir()] {
            fs::create_dir_all(&dir).map_err(|source| PinError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Every link pin, in file-name order; unparseable names are ignored.
    pub fn link_pins(&self) -> Vec<LinkPin> {
        let Ok(entries) = fs::read_dir(self.links_dir()) else {
            return Vec::new();
        };
        let mut pins: Vec<LinkPin> = entries
            .filter_map(|e| LinkPin::parse(&e.ok()?.path()))
            .collect();
        pins.sort_by(|a, b| a.path.cmp(&b.path));
        pins
    }
}

fn statfs_type(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path, st a valid out pointer.
    (unsafe { libc::statfs(c.as_ptr(), &raw mut st) } == 0).then_some(st.f_type)
}

fn is_bpffs(path: &Path) -> bool {
    statfs_type(path) == Some(BPF_FS_MAGIC)
}

/// Is `path`, or its nearest existing ancestor, on a bpffs?
fn on_bpffs(path: &Path) -> bool {
    path.ancestors().find(|p| p.exists()).is_some_and(is_bpffs)
}

fn mount_bpffs(target: &Path) -> Result<(), PinError> {
    let c_target = CString::new(target.as_os_str().as_encoded_bytes()).expect("no NUL in path");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c_target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(PinError::Mount {
            source: io::Error::last_os_error(),
        })
    }
}

/// The interface's index in this network namespace, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pin_names_round_trip_with_dots_in_interface_names() {
        for iface in ["eth1", "bond0.100", "enp1s0f1.4000.10", "odd%2e_name"] {
            let name = LinkPin::file_name(iface, 42, 3, AttachMode::Skb);
            assert!(!name.contains('.'), "bpffs refuses dots: {name}");
            let pin = LinkPin::parse(&Path::new("/x").join(&name)).unwrap();
            assert_eq!(
                (pin.interface.as_str(), pin.ifindex, pin.slot, pin.mode),
                (iface, 42, 3, AttachMode::Skb)
            );
        }
        assert!(LinkPin::parse(Path::new("/x/3_notanumber_skb_eth1")).is_none());
        assert!(LinkPin::parse(Path::new("/x/3_4_turbo_eth1")).is_none());
    }
}
