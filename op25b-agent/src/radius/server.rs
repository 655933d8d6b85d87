//! The RADIUS side of the agent: the listeners (accounting in
//! `accounting.rs`, RFC 2866; CoA in `coa.rs`, RFC 5176), and the handshake with the agent
//! loop that makes "Accounting-Response" mean "in the maps".
//!
//! Each listener is a blocking UDP socket on a thread. A request changes
//! the session table under its lock and queues its answer tagged with the
//! table's change number. The agent loop ([`Radius::sync`]) writes the
//! journal, puts the exempt set in the maps and then publishes the change
//! number it applied; a responder thread per listener sends every answer
//! up to that number. Requests are thus batched: one map update and one
//! fsync cover everything that arrived meanwhile.

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{Arc, Condvar, Mutex, RwLock},
    time::Duration,
};

use crate::wake::Waker;
use tracing::{info, warn};

use super::{
    codec::{self, Attribute, Packet},
    metrics::{request_type, LogLimiter, Outcome, RadiusMetrics},
    sessions::{ExemptBy, Session, SessionStore, SessionTable, StoreError},
    socket::size_receive_buffer,
};
use crate::{config::radius::RadiusConfig, policy::prefix::Prefix};

#[derive(Debug, thiserror::Error)]
pub enum RadiusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen for RADIUS {what} on {address}: {source}")]
    Listen {
        what: &'static str,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A listener's request handler.
pub(super) type Handler = fn(&Radius, &RadiusConfig, SocketAddr, &Packet) -> Handled;

/// An answer waiting for its change to be in the maps.
struct Pending {
    seq: u64,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Shared between the listeners, the responders and the agent loop.
pub struct Radius {
    config: RwLock<RadiusConfig>,
    pub table: Mutex<SessionTable>,
    store: Mutex<SessionStore>,
    /// The highest change number that is durable and in the maps.
    applied: Mutex<u64>,
    applied_changed: Condvar,
    /// Rung by listeners to wake the agent loop before its next tick.
    waker: Arc<Waker>,
    /// The exempt prefixes last put in the maps.
    last_exempt: Mutex<BTreeSet<Prefix>>,
    /// The subscribers exempt by name when the maps were last brought up
    /// to date (what `sessions` and `explain` report as the reason).
    pub(super) applied_subscribers: RwLock<HashSet<String>>,
    pub metrics: RadiusMetrics,
    log_limiter: LogLimiter,
}

impl Radius {
    /// Loads the session table (snapshot + journal).
    pub fn open(config: RadiusConfig) -> Result<Self, RadiusError> {
        let (store, table) = SessionStore::open(&config.session_state_file, config.max_sessions)?;
        info!(
            sessions = table.len(),
            "RADIUS sessions loaded from {}",
            config.session_state_file.display()
        );
        let metrics = RadiusMetrics::new();
        metrics
            .sessions
            .set(i64::try_from(table.len()).unwrap_or(i64::MAX));
        let seq = table.seq();
        Ok(Self {
            config: RwLock::new(config),
            table: Mutex::new(table),
            store: Mutex::new(store),
            applied: Mutex::new(seq),
            applied_changed: Condvar::new(),
            waker: Arc::default(),
            last_exempt: Mutex::new(BTreeSet::new()),
            applied_subscribers: RwLock::default(),
            metrics,
            log_limiter: LogLimiter::new(Duration::from_secs(10)),
        })
    }

    /// Clients, secrets and `exempt_filter_id` from a reloaded config (the
    /// listen addresses, state file and size take a restart).
    pub fn reconfigure(&self, config: &RadiusConfig) {
        let mut current = self.config.write().expect("not poisoned");
        if current.accounting_listen != config.accounting_listen
            || current.coa_listen != config.coa_listen
            || current.session_state_file != config.session_state_file
            || current.max_sessions != config.max_sessions
            || current.receive_buffer_bytes != config.receive_buffer_bytes
        {
            warn!("[radius] listen addresses, session_state_file, max_sessions and receive_buffer_bytes change only with a restart");
        }
        current.clients.clone_from(&config.clients);
        current
            .exempt_filter_id
            .clone_from(&config.exempt_filter_id);
    }

    pub fn config(&self) -> RadiusConfig {
        self.config.read().expect("not poisoned").clone()
    }

    /// Binds the configured listeners and starts their threads; returns
    /// the bound addresses (accounting, CoA).
    pub fn serve(
        self: &Arc<Self>,
    ) -> Result<(Option<SocketAddr>, Option<SocketAddr>), RadiusError> {
        let config = self.config();
        let mut bound = (None, None);
        if let Some(address) = config.accounting_listen {
            bound.0 = Some(self.listen("accounting", address, &config, Self::accounting)?);
        }
        if let Some(address) = config.coa_listen {
            bound.1 = Some(self.listen("CoA", address, &config, Self::coa)?);
        }
        Ok(bound)
    }

    fn listen(
        self: &Arc<Self>,
        what: &'static str,
        address: SocketAddr,
        config: &RadiusConfig,
        handle: Handler,
    ) -> Result<SocketAddr, RadiusError> {
        let err = |source| RadiusError::Listen {
            what,
            address,
            source,
        };
        let socket = UdpSocket::bind(address).map_err(err)?;
        let local = socket.local_addr().map_err(err)?;
        let buffer = size_receive_buffer(&socket, config.receive_buffer_bytes).map_err(err)?;
        // The kernel reports twice what it was asked for.
        if buffer < 2 * config.receive_buffer_bytes {
            warn!(
                "RADIUS {what}: receive buffer {buffer} bytes, less than radius.receive_buffer_bytes = {} asks: \
                 net.core.rmem_max caps it without CAP_NET_ADMIN (raise that sysctl)",
                config.receive_buffer_bytes
            );
        }
        let sender = socket.try_clone().map_err(err)?;
        let queue = Arc::new(Mutex::new(VecDeque::<Pending>::new()));
        let radius = Arc::clone(self);
        let responses = Arc::clone(&queue);
        std::thread::Builder::new()
            .name(format!("radius-{what}-tx"))
            .spawn(move || radius.respond(&sender, &responses))
            .map_err(err)?;
        let radius = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("radius-{what}"))
            .spawn(move || radius.receive(&socket, &queue, handle))
            .map_err(err)?;
        info!("RADIUS {what} on udp {local} (receive buffer {buffer} bytes)");
        Ok(local)
    }

    fn receive(&self, socket: &UdpSocket, queue: &Mutex<VecDeque<Pending>>, handle: Handler) {
        // One octet more than RADIUS allows, so an oversized datagram shows.
        let mut buffer = vec![0; codec::MAX_PACKET_LEN + 1];
        loop {
            let (len, from) = match socket.recv_from(&mut buffer) {
                Ok(got) => got,
                Err(e) => {
                    warn!("RADIUS receive: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if let Some(pending) = self.process(&buffer[..len], from, handle) {
                queue.lock().expect("not poisoned").push_back(pending);
                self.wake_agent();
            }
        }
    }

    /// Checks one datagram and hands it to `handle`; returns the answer to
    /// send once its change is applied.
    fn process(&self, raw: &[u8], from: SocketAddr, handle: Handler) -> Option<Pending> {
        let count = |packet: Option<&Packet>, outcome: Outcome| {
            self.metrics
                .requests
                .with_label_values(&[request_type(packet), outcome.label()])
                .inc();
        };
        let config = self.config.read().expect("not poisoned");
        let Some(client) = config.client(from.ip()) else {
            count(None, Outcome::UnknownClient);
            self.log_limiter.log("unknown_client", || {
                format!("from {from}, not in [[radius.clients]]")
            });
            return None;
        };
        let packet = match codec::decode(raw) {
            Ok(p) => p,
            Err(e) => {
                count(None, Outcome::Malformed);
                self.log_limiter
                    .log("malformed", || format!("from {from}: {e}"));
                return None;
            }
        };
        if !codec::verify_request(raw, &client.secret) {
            count(Some(&packet), Outcome::BadAuthenticator);
            self.log_limiter.log("bad_authenticator", || {
                format!("from {from}: wrong Request Authenticator (shared secret differs?)")
            });
            return None;
        }
        let handled = handle(self, &config, from, &packet);
        count(Some(&packet), handled.outcome);
        if let Some(problem) = &handled.problem {
            self.log_limiter.log(handled.outcome.label(), || {
                format!("from {from}: {problem}")
            });
        }
        let (code, attributes) = handled.answer?;
        let bytes = codec::encode_response(
            code,
            packet.identifier,
            &packet.authenticator,
            &attributes,
            &client.secret,
        );
        Some(Pending {
            seq: handled.seq,
            to: from,
            bytes,
        })
    }

    /// Sends answers whose changes are applied, in arrival order.
    fn respond(&self, socket: &UdpSocket, queue: &Mutex<VecDeque<Pending>>) {
        let mut seen = 0;
        loop {
            let applied = {
                let guard = self.applied.lock().expect("not poisoned");
                let (guard, _) = self
                    .applied_changed
                    .wait_timeout_while(guard, Duration::from_millis(100), |a| *a == seen)
                    .expect("not poisoned");
                *guard
            };
            seen = applied;
            let ready: Vec<Pending> = {
                let mut queue = queue.lock().expect("not poisoned");
                let n = queue.iter().take_while(|p| p.seq <= applied).count();
                queue.drain(..n).collect()
            };
            for answer in ready {
                if let Err(e) = socket.send_to(&answer.bytes, answer.to) {
                    warn!("RADIUS answer to {}: {e}", answer.to);
                }
            }
        }
    }

    fn wake_agent(&self) {
        self.waker.wake(|r| r.radius = true);
    }

    /// What wakes the agent loop (shared with the loop's other wake-ups).
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The agent loop's sleep: returns after `timeout`, or at once when a
    /// request is waiting for its change to be applied.
    pub fn wait(&self, timeout: Duration) {
        self.waker.wait(timeout);
    }

    /// The prefixes of every exempt session, given the subscribers exempt
    /// by name now.
    pub fn exempt_prefixes(&self, subscribers: &HashSet<String>) -> BTreeSet<Prefix> {
        let table = self.table.lock().expect("not poisoned");
        table
            .exempt_sessions(subscribers)
            .flat_map(|(s, _)| s.prefixes())
            .collect()
    }

    /// The session holding `addr` and why it is exempt (if it is).
    pub fn session_of(
        &self,
        addr: IpAddr,
        subscribers: &HashSet<String>,
    ) -> Option<(Session, Option<ExemptBy>)> {
        let table = self.table.lock().expect("not poisoned");
        let session = table.by_address(addr)?;
        Some((
            session.clone(),
            session.exemption(subscribers.contains(&*session.subscriber)),
        ))
    }

    /// Called by the agent loop every tick (and when woken): makes pending
    /// changes durable, runs `apply` (the agent's policy update) when the
    /// exempt set differs from what the maps hold, then releases the
    /// answers. If either step fails, nothing is answered (the NAS
    /// retransmits) and the next call retries.
    pub fn sync(&self, subscribers: &HashSet<String>, apply: impl FnOnce() -> Result<(), String>) {
        let (seq, unwritten, exempt, sessions) = {
            let mut table = self.table.lock().expect("not poisoned");
            let exempt: BTreeSet<Prefix> = table
                .exempt_sessions(subscribers)
                .flat_map(|(s, _)| s.prefixes())
                .collect();
            let exempt_sessions = table.exempt_sessions(subscribers).count();
            self.metrics
                .exempt_sessions
                .set(i64::try_from(exempt_sessions).unwrap_or(i64::MAX));
            (table.seq(), table.take_unwritten(), exempt, table.len())
        };
        self.metrics
            .sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        let mut store = self.store.lock().expect("not poisoned");
        if let Err(e) = store.commit(&unwritten) {
            tracing::error!("RADIUS session journal: {e}; answers held back, retrying");
            return;
        }
        let mut last = self.last_exempt.lock().expect("not poisoned");
        if *last != exempt {
            if let Err(e) = apply() {
                tracing::error!(
                    "RADIUS sessions: applying the exempt set: {e}; answers held back, retrying"
                );
                return;
            }
            *last = exempt;
        }
        drop(last);
        {
            let mut applied = self.applied_subscribers.write().expect("not poisoned");
            if *applied != *subscribers {
                applied.clone_from(subscribers);
            }
        }
        {
            let mut applied = self.applied.lock().expect("not poisoned");
            if *applied != seq {
                *applied = seq;
                self.applied_changed.notify_all();
            }
        }
        let mut table = self.table.lock().expect("not poisoned");
        if store.wants_compaction(&table) {
            if let Err(e) = store.compact(&mut table) {
                warn!("RADIUS session snapshot: {e}; the journal keeps growing until it works");
            }
        }
    }
}

/// What a handler decided.
pub(super) struct Handled {
    pub outcome: Outcome,
    /// Logged (rate-limited) when set.
    pub problem: Option<String>,
    /// The change number the answer waits for.
    pub seq: u64,
    /// Code and attributes of the answer; `None` = no answer.
    pub answer: Option<(u8, Vec<Attribute>)>,
}

impl Handled {
    pub fn dropped(outcome: Outcome, problem: String) -> Self {
        Self {
            outcome,
            problem: Some(problem),
            seq: 0,
            answer: None,
        }
    }
}
