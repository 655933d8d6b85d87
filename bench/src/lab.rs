//! The bench's own network namespace and veth pair, removed on drop.

use std::process::Command;

use op25b_tests::leftovers::{self, Claim, Kind};

pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A fresh network namespace this process has entered (so interfaces, XDP
/// attachments and child processes like nft live there), with a veth pair.
pub struct BenchNet {
    pub ns: String,
    pub tx: String,
    pub rx: String,
    home: std::fs::File,
    // Lets a later run remove the namespace should this one be SIGKILLed.
    _claim: Claim,
}

impl BenchNet {
    pub fn new() -> anyhow::Result<Self> {
        let id = std::process::id() % 100_000;
        let ns = format!("o5bench{id}");
        let home = std::fs::File::open("/proc/self/ns/net")?;
        let claim = leftovers::claim(Kind::Netns, &ns);
        sh("ip", &["netns", "add", &ns])?;
        let net = Self {
            tx: "benchtx".into(),
            rx: "benchrx".into(),
            ns,
            home,
            _claim: claim,
        };
        let file = std::fs::File::open(format!("/run/netns/{}", net.ns))?;
        // SAFETY: setns with a valid netns fd; the bench is single-threaded here.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        anyhow::ensure!(rc == 0, "setns: {}", std::io::Error::last_os_error());
        sh(
            "ip",
            &[
                "link", "add", &net.tx, "type", "veth", "peer", "name", &net.rx,
            ],
        )?;
        for dev in [&net.tx, &net.rx] {
            sh("ip", &["link", "set", dev, "up"])?;
        }
        Ok(net)
    }

    /// Index of one of the bench's interfaces (in the namespace it entered).
    pub fn ifindex(dev: &str) -> u32 {
        op25b_agent::dataplane::pins::ifindex(dev).expect("bench veth exists")
    }
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        // SAFETY: back to the namespace we came from.
        unsafe {
            libc::setns(
                std::os::fd::AsRawFd::as_raw_fd(&self.home),
                libc::CLONE_NEWNET,
            )
        };
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
