//! The fleet benchmark's lab: one etcd and N agents, each in a network
//! namespace of its own joined to etcd's by a veth, each with its own
//! pinned maps; everything removed on drop (also on error).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{Array, HashMap, Map, MapData};
use op25b_agent::dataplane::pins::PinLayout;
use op25b_common::{
    abi::{slash24, CLASS_V4_CHUNK, MAP_CLASS_V4, MAP_CLASS_V4_BLOCKS},
    SourceClass,
};

use crate::lab::sh;

/// Everything the bench sets up, torn down on drop (also on error).
pub(crate) struct FleetLab {
    pub(crate) tag: String,
    pub(crate) dir: PathBuf,
    pub(crate) etcd_ns: String,
    pub(crate) etcd: Option<Child>,
    pub(crate) agent_ns: Vec<String>,
    pub(crate) agents: Vec<Child>,
    pub(crate) pins: Vec<PathBuf>,
}

impl Drop for FleetLab {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(agent.id().cast_signed(), libc::SIGTERM) };
        }
        for agent in &mut self.agents {
            let _ = agent.wait();
        }
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
        for ns in self.agent_ns.iter().chain(std::iter::once(&self.etcd_ns)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        for pin in &self.pins {
            let _ = std::fs::remove_dir_all(pin);
        }
        // OP25B_BENCH_KEEP_LOGS=DIR keeps the agents' and etcd's logs (to see where a slow grant went).
        if let Some(keep) = std::env::var_os("OP25B_BENCH_KEEP_LOGS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "log") {
                    let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.tag;
    }
}

fn agent_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("op25b-agent");
    anyhow::ensure!(
        bin.exists(),
        "{} missing: build the bins first",
        bin.display()
    );
    Ok(bin)
}

pub(crate) fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns");
        // SAFETY: setns on this thread only.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .expect("netns thread")
}

pub(crate) fn wait(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done() {
        anyhow::ensure!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[expect(clippy::too_many_lines, reason = "the lab, step by step")]
pub(crate) fn set_up(agents: usize) -> anyhow::Result<FleetLab> {
    let id = std::process::id() % 10_000;
    let tag = format!("f{id}");
    let dir = std::env::temp_dir().join(format!("op25b-bench-fleet-{id}"));
    std::fs::create_dir_all(&dir)?;
    let mut lab = FleetLab {
        etcd_ns: format!("o5{tag}e"),
        tag: tag.clone(),
        dir: dir.clone(),
        etcd: None,
        agent_ns: Vec::new(),
        agents: Vec::new(),
        pins: Vec::new(),
    };
    sh("ip", &["netns", "add", &lab.etcd_ns])?;
    sh("ip", &["-n", &lab.etcd_ns, "link", "set", "lo", "up"])?;
    for i in 0..agents {
        let ns = format!("o5{tag}a{i}");
        sh("ip", &["netns", "add", &ns])?;
        lab.agent_ns.push(ns.clone());
        let (e_end, a_end) = (format!("{tag}e{i}"), format!("{tag}a{i}"));
        sh(
            "ip",
            &[
                "link",
                "add",
                &e_end,
                "netns",
                &lab.etcd_ns,
                "type",
                "veth",
                "peer",
                "name",
                &a_end,
                "netns",
                &ns,
            ],
        )?;
        let subnet = format!("2001:db8:e8:{i:x}");
        sh(
            "ip",
            &[
                "-n",
                &lab.etcd_ns,
                "addr",
                "add",
                &format!("{subnet}::1/64"),
                "dev",
                &e_end,
                "nodad",
            ],
        )?;
        sh(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{subnet}::2/64"),
                "dev",
                &a_end,
                "nodad",
            ],
        )?;
        for (n, dev) in [(&lab.etcd_ns, &e_end), (&ns, &a_end)] {
            sh("ip", &["-n", n, "link", "set", dev, "up"])?;
        }
        // The interface the agent attaches to.
        sh(
            "ip",
            &[
                "-n", &ns, "link", "add", "x0", "type", "veth", "peer", "name", "x1",
            ],
        )?;
        sh("ip", &["-n", &ns, "link", "set", "x0", "up"])?;
        sh("ip", &["-n", &ns, "link", "set", "x1", "up"])?;
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
    }
    let log = std::fs::File::create(dir.join("etcd.log"))?;
    lab.etcd = Some(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.etcd_ns))
            .arg("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.join("etcd"))
            .args([
                "--listen-client-urls",
                "http://[::]:2379",
                "--advertise-client-urls",
                "http://[::1]:2379",
            ])
            .args([
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
            ])
            .args([
                "--initial-cluster",
                "bench=http://127.0.0.1:2380",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ])
            .args(["--quota-backend-bytes", "8589934592"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("etcd (Debian etcd-server)")?,
    );
    let ns = lab.etcd_ns.clone();
    wait(Duration::from_secs(30), "etcd", || {
        in_ns(&ns, || {
            op25b_agent::api::client::get("[::1]:2379", "/health").unwrap_or_default()
        })
        .contains("\"health\":\"true\"")
    })?;
    let bin = agent_bin()?;
    for (i, ns) in lab.agent_ns.clone().iter().enumerate() {
        let pin = PathBuf::from(format!("/sys/fs/bpf/op25b-bench-{tag}-{i}"));
        lab.pins.push(pin.clone());
        let config = dir.join(format!("agent{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "pin_path = \"{}\"\non_exit = \"detach\"\n[[interfaces]]\nname = \"x0\"\nxdp_mode = \"skb\"\n[policy]\ndynamic = [\"100.64.0.0/10\"]\n[metrics]\nlisten_address = \"\"\n\
                 [fleet]\netcd_endpoints = [\"http://[2001:db8:e8:{i:x}::1]:2379\"]\nprefix = \"/bench\"\nnode_name = \"bench-{i}\"\nsnapshot_file = \"snap{i}.json\"\n",
                pin.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join(format!("agent{i}.log")))?;
        lab.agents.push(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{ns}"))
                .arg(&bin)
                .args(["run", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
    }
    Ok(lab)
}

/// One agent's pinned IPv4 class maps (the table the program reads), for
/// polling: a change is "in the maps" when the class of an address says so.
pub(crate) struct ClassView {
    first: Array<MapData, [u8; CLASS_V4_CHUNK]>,
    blocks: HashMap<MapData, u32, [u8; 256]>,
}

impl ClassView {
    pub(crate) fn open(pin: &std::path::Path) -> Option<Self> {
        let maps = PinLayout::new(pin).maps_dir();
        let first = MapData::from_pin(maps.join(MAP_CLASS_V4)).ok()?;
        let blocks = MapData::from_pin(maps.join(MAP_CLASS_V4_BLOCKS)).ok()?;
        Some(Self {
            first: Array::try_from(Map::Array(first)).ok()?,
            blocks: HashMap::try_from(Map::HashMap(blocks)).ok()?,
        })
    }

    /// The class the program would give `addr` now (as it reads it: the
    /// first-level byte, then the /24's block where the byte points there).
    pub(crate) fn class(&self, addr: [u8; 4]) -> Option<SourceClass> {
        let n = slash24(addr);
        let chunk_len = u32::try_from(CLASS_V4_CHUNK).expect("a page");
        let chunk = self.first.get(&(n / chunk_len), 0).ok()?;
        let first = chunk[(n % chunk_len) as usize];
        if first & SourceClass::INDIRECT == 0 {
            return Some(SourceClass(first));
        }
        Some(match self.blocks.get(&n, 0) {
            Ok(block) => SourceClass(block[usize::from(addr[3])]),
            Err(_) => SourceClass(first & !SourceClass::INDIRECT),
        })
    }
}
