//! What killed runs leave behind. Drop guards remove a test's namespaces,
//! veth pairs and pins, but a test, soak or bench killed with SIGKILL never
//! runs them. So each guard also records what it made, with its owner's
//! pid and start time, in a registry directory; the next guard to be made
//! first removes whatever belongs to an owner that is gone.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// Where the records live: tmpfs, so a reboot (which removes the
/// resources too) clears them.
pub const REGISTRY: &str = "/run/op25b-tests";

/// What a record stands for, and so how to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A lab of scripts/lab.sh (its three namespaces), by lab name.
    Lab,
    /// A network namespace, by name (its processes are killed first).
    Netns,
    /// A veth pair in the root namespace, by one end's name.
    Veth,
    /// A directory, removed whole: only op25b's own under bpffs or /tmp.
    Dir,
}

impl Kind {
    const fn tag(self) -> &'static str {
        match self {
            Self::Lab => "lab",
            Self::Netns => "netns",
            Self::Veth => "veth",
            Self::Dir => "dir",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        [Self::Lab, Self::Netns, Self::Veth, Self::Dir]
            .into_iter()
            .find(|k| k.tag() == tag)
    }
}

/// The record of one resource; dropping it (after the resource is gone)
/// removes the record.
#[derive(Debug)]
pub struct Claim {
    record: PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.record);
    }
}

/// Sweeps the registry, then records `name` as this process's. Call it
/// before creating the resource, so a crash in between leaves only a
/// record whose removal finds nothing.
pub fn claim(kind: Kind, name: &str) -> Claim {
    claim_in(Path::new(REGISTRY), kind, name)
}

pub fn claim_in(registry: &Path, kind: Kind, name: &str) -> Claim {
    sweep_in(registry);
    let _ = fs::create_dir_all(registry);
    let record = registry.join(format!("{}.{}", kind.tag(), record_name(name)));
    if let Some(owner) = Owner::current() {
        let _ = write_record(&record, owner, kind, name);
    }
    Claim { record }
}

/// Writes one record (tests use it to stand in for a killed owner).
pub fn write_record(record: &Path, owner: Owner, kind: Kind, name: &str) -> std::io::Result<()> {
    fs::write(
        record,
        format!("{}\n{}\n{name}\n", owner.to_line(), kind.tag()),
    )
}

/// Removes every recorded resource whose owner is gone; returns their
/// names.
pub fn sweep_in(registry: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(registry) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let mut lines = text.lines();
        let (Some(owner), Some(kind), Some(name)) = (lines.next(), lines.next(), lines.next())
        else {
            continue;
        };
        let Some(kind) = Kind::from_tag(kind) else {
            continue;
        };
        // An owner we cannot read is not known to be gone: leave it.
        match Owner::parse(owner) {
            Some(owner) if !owner.is_alive() => {}
            _ => continue,
        }
        remove(kind, name);
        let _ = fs::remove_file(entry.path());
        removed.push(name.to_owned());
    }
    removed
}

fn remove(kind: Kind, name: &str) {
    match kind {
        Kind::Lab => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab.sh");
            let _ = Command::new(script).args(["down", name]).output();
        }
        Kind::Netns => {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
        Kind::Veth => {
            let _ = Command::new("ip").args(["link", "del", name]).output();
        }
        Kind::Dir => {
            // A record is plain text anyone root can write: never follow
            // one outside op25b's own scratch places.
            let path = Path::new(name);
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("op25b-"));
            let under = [Path::new("/sys/fs/bpf"), &std::env::temp_dir()]
                .iter()
                .any(|root| path.parent() == Some(root));
            if ours && under {
                let _ = fs::remove_dir_all(path);
            }
        }
    }
}

/// A record file name from a resource name (a path has slashes).
fn record_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A process, told apart from a later one with the same pid by its start
/// time (field 22 of /proc/PID/stat, in clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub started: u64,
}

impl Owner {
    pub fn current() -> Option<Self> {
        Self::of(std::process::id())
    }

    pub fn of(pid: u32) -> Option<Self> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name in parentheses may hold spaces: count after it.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let started = after_name.split_whitespace().nth(19)?.parse().ok()?;
        Some(Self { pid, started })
    }

    pub fn is_alive(self) -> bool {
        Self::of(self.pid) == Some(self)
    }

    fn to_line(self) -> String {
        format!("{} {}", self.pid, self.started)
    }

    fn parse(line: &str) -> Option<Self> {
        let (pid, started) = line.split_once(' ')?;
        Some(Self {
            pid: pid.parse().ok()?,
            started: started.parse().ok()?,
        })
    }
}
