//! RADIUS: accounting requests applied per second (answers go out only
//! once a change is durable and in the maps), the time from an exempt
//! subscriber's Accounting-Start to its Accounting-Response (which the agent
//! sends only once the exemption is in the map), and the session table's
//! memory per session. The listeners, journal and maps are the agent's own
//! (in process, private maps); the senders play the NAS.
// Counts and byte totals far below 2^52: f64 is exact enough for a report.
#![allow(clippy::cast_precision_loss)]

use std::{
    alloc::{GlobalAlloc, Layout},
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicIsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use op25b_agent::{
    config::radius::{RadiusClient, RadiusConfig},
    dataplane::{Dataplane, Maps},
    huge_pages::HugePages,
    policy::Policy,
    radius::{
        codec::{self, attr, code, status, Attribute},
        sessions::{Session, SessionTable},
        Radius,
    },
};
use serde::Serialize;

const SECRET: &[u8] = b"bench-nas-secret";
/// Requests each sender keeps outstanding (a NAS's window; under the
/// socket's receive buffer so nothing is dropped by the kernel).
const WINDOW: usize = 32;
const SENDERS: usize = 4;

/// Heap bytes live now: the bench binary's allocator counts them. It is
/// the agent's allocator underneath, so the agent's code timed in-process
/// runs as it does in the agent.
pub struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

#[expect(
    clippy::cast_possible_wrap,
    reason = "allocation sizes are far below isize::MAX"
)]
// SAFETY: every call goes to the agent's allocator with its arguments
// unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the agent's allocator.
        unsafe { HugePages.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the agent's allocator.
        unsafe { HugePages.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the agent's allocator.
        unsafe { HugePages.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the agent's allocator.
        unsafe { HugePages.realloc(ptr, layout, new_size) }
    }
}

#[derive(Debug, Serialize)]
pub struct RadiusBench {
    /// Accounting-Starts sent in the throughput run (1% exempt subscribers).
    pub requests: usize,
    pub senders: usize,
    pub window_per_sender: usize,
    /// Requests answered (so durable and in the maps) per second.
    pub applied_per_second: f64,
    /// The same senders against a UDP sink that only reads: their own ceiling.
    pub sender_per_second: f64,
    /// Requests not answered within 2 s (0 expected).
    pub unanswered: usize,
    pub latency_samples: usize,
    /// Accounting-Start sent -> Accounting-Response received (the answer
    /// leaves only after the exemption is in the map).
    pub start_to_exempt_p50_ms: f64,
    pub start_to_exempt_p99_ms: f64,
    /// Sessions in the table whose heap was measured.
    pub sessions_measured: usize,
    /// Heap bytes per session (IPv4 address, a delegated /56, a 20-byte
    /// User-Name), indexes included, journal excluded.
    pub bytes_per_session: f64,
}

fn start_request(identifier: u8, session: &str, user: &str, address: Ipv4Addr) -> Vec<u8> {
    codec::encode_request(
        code::ACCOUNTING_REQUEST,
        identifier,
        &[
            Attribute::u32(attr::ACCT_STATUS_TYPE, status::START),
            Attribute::new(attr::ACCT_SESSION_ID, session),
            Attribute::new(attr::USER_NAME, user),
            Attribute::new(attr::FRAMED_IP_ADDRESS, address.octets()),
            Attribute::new(attr::NAS_IDENTIFIER, "bench-bng"),
        ],
        SECRET,
    )
}

fn subscriber_address(i: usize) -> Ipv4Addr {
    // 100.64.0.0/10 holds 4M addresses: enough for every run.
    Ipv4Addr::from(0x6440_0000 + u32::try_from(i % (1 << 22)).expect("fits"))
}

fn exempt_name(i: usize) -> bool {
    i.is_multiple_of(100)
}

/// The agent's RADIUS side with an agent loop that puts the exempt
/// sessions in real (private) maps.
struct Agent {
    radius: Arc<Radius>,
    accounting: SocketAddr,
    stop: Arc<AtomicBool>,
    looper: Option<std::thread::JoinHandle<()>>,
    _dir: op25b_tests::TempDir,
}

impl Agent {
    fn start(max_sessions: usize, subscribers: HashSet<String>) -> anyhow::Result<Self> {
        let dir = op25b_tests::TempDir::new("bench-radius");
        let radius = Arc::new(Radius::open(RadiusConfig {
            accounting_listen: Some("127.0.0.1:0".parse()?),
            coa_listen: None,
            session_state_file: dir.path().join("sessions.json"),
            max_sessions,
            receive_buffer_bytes: op25b_agent::config::radius::DEFAULT_RECEIVE_BUFFER_BYTES,
            exempt_filter_id: None,
            clients: vec![RadiusClient {
                address: "127.0.0.1/32".parse()?,
                secret_file: dir.path().join("unused"),
                secret: SECRET.to_vec(),
            }],
        })?);
        let (accounting, _) = radius.serve()?;
        let mut dataplane = Dataplane::load(&Maps::Private, 0)?;
        let stop = Arc::new(AtomicBool::new(false));
        let looper = {
            let (radius, stop) = (Arc::clone(&radius), Arc::clone(&stop));
            std::thread::spawn(move || {
                let base = Policy {
                    dynamic: ["100.64.0.0/10".parse().expect("prefix")]
                        .into_iter()
                        .collect(),
                    ..Policy::default()
                };
                while !stop.load(Ordering::Relaxed) {
                    radius.wait(Duration::from_millis(100));
                    radius.sync(&subscribers, || {
                        let mut policy = base.clone();
                        for prefix in radius.exempt_prefixes(&subscribers) {
                            policy.exempt.insert(prefix);
                        }
                        dataplane
                            .apply(&policy)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    });
                }
            })
        };
        Ok(Self {
            radius,
            accounting: accounting.context("accounting listener")?,
            stop,
            looper: Some(looper),
            _dir: dir,
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(looper) = self.looper.take() {
            let _ = looper.join();
        }
    }
}

/// Sends `requests` from `SENDERS` sockets, `WINDOW` outstanding each;
/// with `answers` waits for each window's answers. Returns (seconds, unanswered).
fn send_all(requests: &[Vec<u8>], to: SocketAddr, answers: bool) -> anyhow::Result<(f64, usize)> {
    let per_sender = requests.len().div_ceil(SENDERS);
    let started = Instant::now();
    let unanswered = std::thread::scope(|scope| {
        let workers: Vec<_> = requests
            .chunks(per_sender)
            .map(|share| {
                scope.spawn(move || -> anyhow::Result<usize> {
                    let socket = UdpSocket::bind("127.0.0.1:0")?;
                    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut buffer = [0; 4096];
                    let mut unanswered = 0;
                    for window in share.chunks(WINDOW) {
                        for request in window {
                            socket.send_to(request, to)?;
                        }
                        if answers {
                            for answered in 0..window.len() {
                                if socket.recv(&mut buffer).is_err() {
                                    unanswered += window.len() - answered;
                                    break;
                                }
                            }
                        }
                    }
                    Ok(unanswered)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("sender thread"))
            .sum::<anyhow::Result<usize>>()
    })?;
    Ok((started.elapsed().as_secs_f64(), unanswered))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "an index into a short list"
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

/// The table's heap per session at `sessions` sessions.
fn bytes_per_session(sessions: usize) -> f64 {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut table = SessionTable::new(sessions);
    let nas = table.intern_nas("bench-bng");
    for i in 0..sessions {
        let session = Session {
            nas: Arc::clone(&nas),
            id: Arc::from(format!("{i:016x}").as_str()),
            subscriber: Arc::from(format!("user{i:07}@example.jp").as_str()),
            ipv4: Some(subscriber_address(i)),
            ipv6: vec![op25b_agent::radius::sessions::ipv6_prefix(
                std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | (i as u128) << 72),
                56,
            )],
            attribute_exempt: false,
            coa: None,
            started_at: 1_700_000_000,
            updated_at: 1_700_000_000,
        };
        table.upsert(session).expect("sized for every session");
        if i % 4096 == 0 {
            // The journal goes to disk in the agent; it is not the table.
            drop(table.take_unwritten());
        }
    }
    drop(table.take_unwritten());
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let bytes = (after - before) as f64 / sessions as f64;
    drop(table);
    bytes
}

pub fn radius(
    requests: usize,
    latency_samples: usize,
    sessions: usize,
) -> anyhow::Result<RadiusBench> {
    let subscribers: HashSet<String> = (0..requests)
        .filter(|&i| exempt_name(i))
        .map(|i| format!("user{i}"))
        .chain(["alice-latency".to_owned()])
        .collect();
    let agent = Agent::start(requests + latency_samples + 10, subscribers)?;
    let packets: Vec<Vec<u8>> = (0..requests)
        .map(|i| {
            start_request(
                u8::try_from(i % WINDOW).expect("WINDOW <= 256"),
                &format!("t-{i}"),
                &format!("user{i}"),
                subscriber_address(i),
            )
        })
        .collect();
    let (seconds, unanswered) = send_all(&packets, agent.accounting, true)?;
    let applied = requests - unanswered;
    anyhow::ensure!(
        agent.radius.table.lock().expect("not poisoned").len() == applied,
        "the table does not hold the answered sessions"
    );

    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let sink_address = sink.local_addr()?;
    sink.set_read_timeout(Some(Duration::from_millis(200)))?;
    let draining = std::thread::spawn(move || {
        let mut buffer = [0; 4096];
        while sink.recv(&mut buffer).is_ok() {}
    });
    let (sink_seconds, _) = send_all(&packets, sink_address, false)?;
    let _ = draining.join();

    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut latencies = Vec::with_capacity(latency_samples);
    let mut buffer = [0; 4096];
    for k in 0..latency_samples {
        let request = start_request(
            u8::try_from(k % 256).expect("below 256"),
            &format!("lat-{k}"),
            "alice-latency",
            subscriber_address(requests + k),
        );
        let sent = Instant::now();
        socket.send_to(&request, agent.accounting)?;
        socket
            .recv(&mut buffer)
            .context("no Accounting-Response within 2 s")?;
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    drop(agent);

    Ok(RadiusBench {
        requests,
        senders: SENDERS,
        window_per_sender: WINDOW,
        applied_per_second: applied as f64 / seconds,
        sender_per_second: requests as f64 / sink_seconds,
        unanswered,
        latency_samples,
        start_to_exempt_p50_ms: percentile(&latencies, 0.50),
        start_to_exempt_p99_ms: percentile(&latencies, 0.99),
        sessions_measured: sessions,
        bytes_per_session: bytes_per_session(sessions),
    })
}

/// The section's targets: >= 20,000 requests/s applied with the sender at
/// least twice as fast (so not the bottleneck), p99 Start -> exempt < 50 ms.
pub fn targets(r: &RadiusBench) -> Vec<crate::Target> {
    vec![
        crate::Target {
            name: "RADIUS accounting requests applied".into(),
            measured: format!(
                "{:.0}/s (sender alone {:.0}/s)",
                r.applied_per_second, r.sender_per_second
            ),
            limit: "≥ 20,000/s, sender ≥ 2× that".into(),
            met: r.applied_per_second >= 20_000.0
                && r.sender_per_second >= 2.0 * r.applied_per_second
                && r.unanswered == 0,
        },
        crate::Target {
            name: "Accounting-Start -> exemption in the map, p99".into(),
            measured: format!("{:.2} ms", r.start_to_exempt_p99_ms),
            limit: "< 50 ms".into(),
            met: r.start_to_exempt_p99_ms < 50.0,
        },
    ]
}

pub fn markdown(r: &RadiusBench) -> String {
    format!(
        "RADIUS accounting ({} Accounting-Starts from {} senders, {} outstanding each, 1% exempt; answers only once durable and in the maps)\n\n\
         | measure | value |\n|---|---:|\n\
         | requests applied | {:.0}/s |\n\
         | sender against a UDP sink | {:.0}/s |\n\
         | unanswered | {} |\n\
         | Start -> exemption in map, p50 ({} samples) | {:.2} ms |\n\
         | Start -> exemption in map, p99 | {:.2} ms |\n\
         | session table heap per session (at {} sessions) | {:.0} bytes |\n",
        r.requests,
        r.senders,
        r.window_per_sender,
        r.applied_per_second,
        r.sender_per_second,
        r.unanswered,
        r.latency_samples,
        r.start_to_exempt_p50_ms,
        r.start_to_exempt_p99_ms,
        r.sessions_measured,
        r.bytes_per_session
    )
}
