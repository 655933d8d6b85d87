//! The netns lab of scripts/lab.sh, driven from tests: one lab per test,
//! uniquely named, torn down on drop (also when the test panics).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    agent_bin,
    leftovers::{self, Claim, Kind},
    netns::run,
    unique_suffix, TempDir,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Lab {
    pub name: String,
    pub dir: TempDir,
    pub config: PathBuf,
    pub pin: PathBuf,
    agent: Option<Child>,
    // Dropped after the lab is down (fields drop after Drop::drop).
    _claims: [Claim; 2],
}

impl Lab {
    /// Creates the lab and an agent config from deploy/ for its router;
    /// `extra_interfaces` are configured too (they may not exist yet).
    pub fn up(extra_interfaces: &[&str]) -> Self {
        Self::up_with(extra_interfaces, "")
    }

    /// Like [`Lab::up`], appending `extra_toml` (e.g. an `[events]` section)
    /// to the agent's configuration.
    pub fn up_with(extra_interfaces: &[&str], extra_toml: &str) -> Self {
        crate::require_root();
        let name = format!("o5{}", unique_suffix());
        let dir = TempDir::new(&name);
        let pin = PathBuf::from(format!("/sys/fs/bpf/op25b-test-{name}"));
        let claims = [
            leftovers::claim(Kind::Lab, &name),
            leftovers::claim(Kind::Dir, pin.to_str().expect("pin path is UTF-8")),
        ];
        let lab = Self {
            config: dir.path().join("op25b.toml"),
            name,
            dir,
            pin,
            agent: None,
            _claims: claims,
        };
        run(
            repo().join("scripts/lab.sh").to_str().unwrap(),
            &["up", &lab.name],
        );
        run(
            "cp",
            &[
                "-r",
                repo().join("deploy/lists").to_str().unwrap(),
                lab.dir.path().to_str().unwrap(),
            ],
        );
        let mut interfaces = format!("[[interfaces]]\nname = \"{}r0\"\n", lab.name);
        for extra in extra_interfaces {
            let _ = write!(
                interfaces,
                "[[interfaces]]\nname = \"{extra}\"\nxdp_mode = \"skb\"\n"
            );
        }
        let example = fs::read_to_string(repo().join("deploy/op25b.toml")).unwrap();
        // The example's [policy] section only: a test adds its own others.
        let policy = &example[example
            .find("[policy]")
            .expect("deploy config has [policy]")..];
        let policy = &policy[..policy[1..].find("\n[").map_or(policy.len(), |end| end + 1)];
        fs::write(
            &lab.config,
            format!(
                "pin_path = \"{}\"\non_exit = \"keep\"\n{interfaces}\n{policy}\n{extra_toml}",
                lab.pin.display()
            ),
        )
        .unwrap();
        lab
    }

    /// Replaces `from` (which must be there) with `to` in the agent's
    /// configuration file; returns the text as it was.
    pub fn edit_config(&self, from: &str, to: &str) -> String {
        let text = fs::read_to_string(&self.config).unwrap();
        assert!(
            text.contains(from),
            "{from:?} not in the lab config:\n{text}"
        );
        fs::write(&self.config, text.replace(from, to)).unwrap();
        text
    }

    pub fn ns(&self, role: char) -> String {
        format!("{}{role}", self.name)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `op25b-agent top --window 1h` with the lab's config (and so its
    /// read token), in the router namespace.
    pub fn top_last_hour(&self) -> (bool, String, String) {
        let config = self.config.to_str().expect("UTF-8 path");
        self.agent_cmd(&["top", "--window", "1h", "--config", config])
    }

    /// Runs an agent subcommand inside the router's network namespace
    /// (keeping the host's bpffs), returning (success, stdout, stderr).
    pub fn agent_cmd(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns('r')))
            .arg(agent_bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `op25b-agent run` and waits until its interface is attached.
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "agent already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let before = self.log().matches("running;").count();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns('r')))
            .arg(agent_bin())
            .args(["--log-format", "json", "run", "--config"])
            .arg(&self.config)
            .env("OP25B_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
        self.wait_for(Duration::from_secs(20), "the agent to start", |lab| {
            lab.log().matches("running;").count() > before
        });
    }

    /// Sends `signal` to the agent and waits for it to exit.
    pub fn stop_agent(&mut self, signal: i32) {
        let mut child = self.agent.take().expect("agent running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id().cast_signed(), signal) };
        child.wait().unwrap();
    }

    pub fn signal_agent(&self, signal: i32) {
        let child = self.agent.as_ref().expect("agent running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id().cast_signed(), signal) };
    }

    /// Polls `done` until it holds or `limit` passes (then panics with the log).
    pub fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; agent log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The id of the XDP program on an interface of the router, if any.
    pub fn xdp_prog_id(&self, iface: &str) -> Option<u64> {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.ns('r'),
                "-j",
                "-d",
                "link",
                "show",
                "dev",
                iface,
            ])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get(0)?.get("xdp")?.get("prog")?.get("id")?.as_u64()
    }

    pub fn mac(&self, role: char, iface: &str) -> [u8; 6] {
        let out = run(
            "ip",
            &["-n", &self.ns(role), "-j", "link", "show", "dev", iface],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let text = v[0]["address"].as_str().unwrap();
        let bytes: Vec<u8> = text
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// A real TCP connection from the subscriber side; true if the banner came back.
    pub fn connects(&self, src: &str, dst: &str, port: u16, timeout: f64) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.ns('s'), "/usr/bin/python3"])
            .arg(repo().join("scripts/lab-connect.py"))
            .args([src, dst, &port.to_string(), &timeout.to_string()])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Like [`Lab::connects`], returning the client's one-line report
    /// (`connected ...` or `blocked (ErrorKind: ...)`).
    pub fn connect_report(&self, src: &str, dst: &str, port: u16, timeout: f64) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns('s'), "/usr/bin/python3"])
            .arg(repo().join("scripts/lab-connect.py"))
            .args([src, dst, &port.to_string(), &timeout.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Status JSON as the CLI prints it.
    pub fn status(&self) -> serde_json::Value {
        let (_, out, err) =
            self.agent_cmd(&["status", "--json", "--pin-path", self.pin.to_str().unwrap()]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status: {e}: {out}{err}"))
    }

    /// Packets counted under `reason` on `iface`.
    pub fn counted(&self, iface: &str, reason: &str) -> u64 {
        let status = self.status();
        status["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["name"] == iface)
            .flat_map(|i| i["counters"].as_array().unwrap().iter())
            .filter(|c| c["reason"] == reason)
            .map(|c| c["packets"].as_u64().unwrap())
            .sum()
    }
}

impl Lab {
    /// An AF_PACKET sender on the subscriber's interface (pnet); the socket
    /// lives in the subscriber namespace it was opened in.
    pub fn subscriber_sender(&self) -> Box<dyn pnet_datalink::DataLinkSender> {
        let s0 = format!("{}s0", self.name);
        in_netns(&self.ns('s'), move || {
            let iface = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == s0)
                .expect("subscriber veth");
            match pnet_datalink::channel(&iface, pnet_datalink::Config::default()) {
                Ok(pnet_datalink::Channel::Ethernet(tx, _rx)) => tx,
                _ => panic!("AF_PACKET channel on {s0}"),
            }
        })
        .join()
        .unwrap()
    }

    /// A TCP SYN frame from the subscriber side to the router's MAC.
    pub fn syn_frame(&self, src: &str, dst: &str, dst_port: u16, src_port: u16) -> Vec<u8> {
        let mut spec =
            crate::frame::FrameSpec::tcp_syn(src.parse().unwrap(), dst.parse().unwrap(), dst_port);
        spec.src_mac = self.mac('s', &format!("{}s0", self.name));
        spec.dst_mac = self.mac('r', &format!("{}r0", self.name));
        spec.transport = crate::frame::Transport::Tcp {
            src_port,
            dst_port,
            flags: crate::frame::TCP_SYN,
        };
        spec.build()
    }

    /// Sends SYNs from `src` to `dst`:25 until `stop` (about 3,000 a second),
    /// counting them in `sent`.
    pub fn syn_flood(
        &self,
        src: &str,
        dst: &str,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> std::thread::JoinHandle<()> {
        use std::sync::atomic::Ordering;
        let mut tx = self.subscriber_sender();
        let template = self.syn_frame(src, dst, 25, 10_000);
        std::thread::spawn(move || {
            let mut port: u16 = 10_000;
            let mut frame = template;
            while !stop.load(Ordering::Relaxed) {
                port = port.wrapping_add(1).max(10_000);
                // Source port at the TCP header's start; nobody checks the checksum on the way.
                let l4 = frame.len() - 20;
                frame[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
                tx.send_to(&frame, None).unwrap().unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    }

    /// GET `path` from the agent's HTTP endpoint inside the router namespace.
    pub fn http_get(&self, path: &str) -> Result<String, String> {
        let path = path.to_owned();
        in_netns(&self.ns('r'), move || {
            op25b_agent::api::client::get("127.0.0.1:9725", &path).map_err(|e| e.to_string())
        })
        .join()
        .unwrap()
    }

    /// The value of an unlabelled series in the agent's /metrics.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.http_get("/metrics").ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// The running agent's pid (nsenter execs the agent).
    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("agent running").id()
    }

    /// The agent's resident memory in KiB (nsenter execs the agent, so the
    /// child's pid is the agent's).
    pub fn agent_rss_kib(&self) -> u64 {
        let pid = self.agent.as_ref().expect("agent running").id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(repo().join("scripts/lab.sh"))
            .args(["down", &self.name])
            .output();
        let _ = fs::remove_dir_all(&self.pin);
    }
}

/// Runs `f` on a thread inside network namespace `ns` (setns is per thread).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a valid netns fd.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}
