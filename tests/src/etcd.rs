//! A real etcd (Debian's `etcd-server`) for fleet tests: started on a
//! loopback or lab address with a temporary data dir, killed and restarted
//! at will, stopped on drop (also when the test panics).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{lab::in_netns, netns::run, unique_suffix, TempDir};

pub struct Etcd {
    /// `http://HOST:PORT` for clients.
    pub url: String,
    /// The network namespace it runs in (None: this one).
    pub ns: Option<String>,
    listen: String,
    client: String,
    peer_port: u16,
    data: TempDir,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// On 127.0.0.1, free ports, in this namespace.
    pub fn start_local() -> Self {
        let client = format!("127.0.0.1:{}", free_port());
        Self::start(None, client, free_port())
    }

    /// In namespace `ns` (its `lo` must be up: the peer URL binds
    /// 127.0.0.1), serving clients on every address of it, port 2379.
    pub fn start_in(ns: &str) -> Self {
        Self::start(Some(ns.to_owned()), "[::1]:2379".into(), 2380)
    }

    fn start(ns: Option<String>, client: String, peer_port: u16) -> Self {
        let listen = if ns.is_some() {
            "http://[::]:2379".to_owned()
        } else {
            format!("http://{client}")
        };
        let mut etcd = Self {
            url: format!("http://{client}"),
            listen,
            ns,
            client,
            peer_port,
            data: TempDir::new("etcd"),
            child: None,
        };
        etcd.spawn();
        etcd
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("etcd");
                c
            }
            None => Command::new("etcd"),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("etcd.log"))
            .unwrap();
        command
            .args(single_node_args(
                &self.data_dir(),
                &self.listen,
                &self.url,
                &peer,
            ))
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(
            command
                .spawn()
                .expect("etcd (Debian etcd-server) is installed"),
        );
        self.wait_ready();
    }

    /// Waits for `/health` to say true.
    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let address = self.client.clone();
            let ask =
                move || op25b_agent::api::client::get(&address, "/health").unwrap_or_default();
            let answer = match &self.ns {
                Some(ns) => in_netns(ns, ask).join().unwrap(),
                None => ask(),
            };
            if answer.contains("\"health\":\"true\"") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not become healthy: {}",
                std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9, as a crash or a lost box would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Writes `value` at `key` as it is: a test's hostile or malformed value.
    pub fn put(&self, key: &str, value: &str) {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.with_client(move |mut c| {
            Box::pin(async move {
                c.put(key, value, None).await.unwrap();
            })
        });
    }

    /// Runs `f` with a connected client on a runtime of its own (inside the
    /// etcd's namespace when it has one).
    pub fn with_client<T: Send + 'static>(
        &self,
        f: impl FnOnce(etcd_client::Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>
            + Send
            + 'static,
    ) -> T {
        let url = self.url.clone();
        let job = move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = etcd_client::Client::connect([url], None).await.unwrap();
                f(client).await
            })
        };
        match &self.ns {
            Some(ns) => in_netns(ns, job).join().unwrap(),
            None => std::thread::spawn(job).join().unwrap(),
        }
    }
}

/// The arguments of a one-member etcd (named `op25b-test`) on `data`,
/// serving clients at `listen` (advertised as `url`), peers at `peer`.
pub fn single_node_args(
    data: &std::path::Path,
    listen: &str,
    url: &str,
    peer: &str,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["--name", "op25b-test", "--data-dir"]
        .iter()
        .map(Into::into)
        .collect();
    args.push(data.into());
    for arg in [
        "--listen-client-urls",
        listen,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        &format!("op25b-test={peer}"),
        "--logger",
        "zap",
        "--log-level",
        "warn",
    ] {
        args.push(arg.into());
    }
    args
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A network namespace holding an etcd, wired by a veth to each router
/// namespace given: `2001:db8:e7c<N>::1` on its side, `...::2` on the
/// router's. Removed on drop.
pub struct EtcdNet {
    pub ns: String,
}

impl EtcdNet {
    /// Wires `routers` (namespace names); returns the net and, per router,
    /// the URL it reaches etcd at.
    pub fn new(routers: &[&str]) -> (Self, Vec<String>) {
        let ns = format!("o5e{}", unique_suffix());
        run("ip", &["netns", "add", &ns]);
        let net = Self { ns };
        run("ip", &["-n", &net.ns, "link", "set", "lo", "up"]);
        let mut urls = Vec::new();
        for (i, router) in routers.iter().enumerate() {
            let (inner, outer) = (format!("{}x{i}", net.ns), format!("{}y{i}", net.ns));
            assert!(inner.len() <= 15, "{inner}");
            run(
                "ip",
                &[
                    "link", "add", &inner, "netns", &net.ns, "type", "veth", "peer", "name",
                    &outer, "netns", router,
                ],
            );
            let subnet = format!("2001:db8:e7c{i}");
            run(
                "ip",
                &[
                    "-n",
                    &net.ns,
                    "addr",
                    "add",
                    &format!("{subnet}::1/64"),
                    "dev",
                    &inner,
                    "nodad",
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    router,
                    "addr",
                    "add",
                    &format!("{subnet}::2/64"),
                    "dev",
                    &outer,
                    "nodad",
                ],
            );
            run("ip", &["-n", &net.ns, "link", "set", &inner, "up"]);
            run("ip", &["-n", router, "link", "set", &outer, "up"]);
            urls.push(format!("http://[{subnet}::1]:2379"));
        }
        (net, urls)
    }

    /// The router-side interface of router `i` (to cut it off etcd).
    pub fn router_end(&self, i: usize) -> String {
        format!("{}y{i}", self.ns)
    }
}

impl Drop for EtcdNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
