//! The fleet thread: one thread owning a tokio runtime (etcd-client needs
//! one), talking to the synchronous agent through [`FleetShared`] and a
//! request channel. It keeps the agent's [`FleetView`] equal to etcd's
//! `P/policy/` by watching it, writes `snapshot_file`, keeps the agent's
//! registration alive on a lease, and serves grant writes for the API.
//!
//! Fail-static: losing etcd changes nothing in the maps; the agent keeps the
//! last accepted policy. Reconnecting resumes the watch after the last event
//! seen, or reads everything again if etcd compacted that history.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use etcd_client::{Client, EventType, PutOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    client::{self, etcd, FleetError, MAX_RESPONSE_BYTES},
    codec::KeyError,
    config::FleetConfig,
    layout::Layout,
    view::{FleetPolicy, FleetView, Snapshot},
};
use crate::{
    policy::ListKind,
    prefix::Prefix,
    provisioning::{Grant, GrantStore, StoreError},
};

/// How often the watch is asked for progress; no answer in three rounds
/// counts as etcd lost.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// The registration lease; kept alive every third of it.
pub const REGISTRATION_TTL_SECONDS: i64 = 15;
/// Expired grants are deleted from etcd by whichever agent gets there first.
const EXPIRY_SWEEP: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What an agent publishes under `P/agents/<node>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub node: String,
    pub version: String,
    pub program: String,
    /// The fleet revision in this box's maps.
    pub applied_revision: i64,
    pub interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Keys whose values this box refused.
    #[serde(default)]
    pub refused_keys: Vec<String>,
    /// Where `/api/v1/top` answers (`top --fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_address: Option<String>,
    #[serde(default)]
    pub updated_at: u64,
}

#[derive(Default)]
struct Inner {
    /// Accepted from etcd (or the snapshot); the agent applies it.
    policy: Arc<FleetPolicy>,
    refusals: Vec<KeyError>,
    conflicts: Vec<String>,
    last_sync_unix: Option<f64>,
    last_error: Option<String>,
    apply_error: Option<String>,
    applied_revision: i64,
    interfaces: Vec<String>,
}

/// Shared between the fleet thread, the agent loop, the API and metrics.
pub struct FleetShared {
    pub config: FleetConfig,
    pub layout: Layout,
    top_address: Option<String>,
    inner: Mutex<Inner>,
    changed: AtomicBool,
    connected: AtomicBool,
    /// Wakes the agent loop when a new policy is accepted (no wait for its tick).
    wake: (Mutex<bool>, std::sync::Condvar),
    merge_cache: Mutex<Option<super::merge::MergeCache>>,
    /// The next snapshot to write (see `write_snapshots`).
    snapshot: (Mutex<Option<Vec<u8>>>, std::sync::Condvar),
}

/// What metrics and status read.
#[derive(Clone, Debug, Default)]
pub struct FleetStatus {
    pub connected: bool,
    pub applied_revision: i64,
    pub accepted_revision: i64,
    pub last_sync_unix: Option<f64>,
    pub refusals: Vec<KeyError>,
    pub conflicts: Vec<String>,
    pub last_error: Option<String>,
}

impl FleetShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    pub fn status(&self) -> FleetStatus {
        let inner = self.lock();
        FleetStatus {
            connected: self.connected.load(Ordering::Relaxed),
            applied_revision: inner.applied_revision,
            accepted_revision: inner.policy.revision,
            last_sync_unix: inner.last_sync_unix,
            refusals: inner.refusals.clone(),
            conflicts: inner.conflicts.clone(),
            last_error: inner
                .apply_error
                .clone()
                .or_else(|| inner.last_error.clone()),
        }
    }

    fn registration(&self) -> Registration {
        let inner = self.lock();
        let mut errors: Vec<String> = inner.apply_error.iter().cloned().collect();
        errors.extend(inner.last_error.iter().cloned());
        errors.extend(inner.refusals.iter().map(ToString::to_string));
        Registration {
            node: self.config.node_name.clone(),
            version: crate::VERSION_LONG.into(),
            program: env!("OP25B_PROGRAM_ID").into(),
            applied_revision: inner.applied_revision,
            interfaces: inner.interfaces.clone(),
            last_error: (!errors.is_empty()).then(|| errors.join("; ")),
            refused_keys: inner.refusals.iter().map(|e| e.key.clone()).collect(),
            top_address: self.top_address.clone(),
            updated_at: 0,
        }
    }

    /// A newly accepted view: hand it to the agent, keep it on disk.
    fn publish(&self, view: &FleetView) {
        let refusals = view.refusals();
        {
            let mut inner = self.lock();
            for refusal in refusals.iter().filter(|r| !inner.refusals.contains(r)) {
                error!(key = %refusal.key, "fleet value refused, the last good policy stays: {refusal}");
            }
            inner.policy = Arc::new(view.policy());
            inner.refusals = refusals;
        }
        self.changed.store(true, Ordering::Relaxed);
        *self.wake.0.lock().expect("not poisoned") = true;
        self.wake.1.notify_all();
        // Written by its own thread: an fsync must not hold up the next watch event.
        let bytes = serde_json::to_vec(&view.snapshot()).expect("snapshot serializes");
        *self.snapshot.0.lock().expect("not poisoned") = Some(bytes);
        self.snapshot.1.notify_all();
    }

    /// Writes the newest pending snapshot, forever (older pending ones are
    /// skipped: only the last accepted policy matters).
    fn write_snapshots(&self) {
        loop {
            let bytes = {
                let slot = self.snapshot.0.lock().expect("not poisoned");
                let mut slot = self
                    .snapshot
                    .1
                    .wait_while(slot, |pending| pending.is_none())
                    .expect("not poisoned");
                slot.take().expect("pending")
            };
            if let Err(e) =
                crate::provisioning::write_atomically(&self.config.snapshot_file, &bytes)
            {
                error!("fleet snapshot not written (a restart while etcd is down would miss this policy): {e}");
                self.lock().last_error = Some(format!("snapshot: {e}"));
            }
        }
    }

    fn synced(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut inner = self.lock();
        inner.last_sync_unix = Some(now);
        inner.last_error = None;
        drop(inner);
        if !self.connected.swap(true, Ordering::Relaxed) {
            info!("fleet: in sync with etcd");
        }
    }

    fn lost(&self, error: &FleetError) {
        let message = error.to_string();
        if self.connected.swap(false, Ordering::Relaxed) {
            warn!("fleet: etcd lost, enforcing the last applied fleet policy: {message}");
        }
        self.lock().last_error = Some(message);
    }
}

/// Reads `snapshot_file` through the same validation as etcd's values.
pub fn load_snapshot(
    config: &FleetConfig,
    layout: &Layout,
) -> Result<Option<FleetView>, FleetError> {
    let path = &config.snapshot_file;
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FleetError::File {
                key: "snapshot_file",
                path: path.clone(),
                source,
            })
        }
    };
    let snapshot: Snapshot = serde_json::from_slice(&text).map_err(|e| {
        FleetError::Snapshot(format!("{}: not a fleet snapshot: {e}", path.display()))
    })?;
    FleetView::from_snapshot(layout.clone(), &snapshot)
        .map(Some)
        .map_err(|e| FleetError::Snapshot(format!("{}: {e}", path.display())))
}

enum Request {
    Put {
        kind: ListKind,
        grant: Grant,
        reply: std::sync::mpsc::Sender<Result<(), StoreError>>,
    },
    Delete {
        kind: ListKind,
        prefix: Prefix,
        actor: String,
        reply: std::sync::mpsc::Sender<Result<(), StoreError>>,
    },
    List {
        kind: ListKind,
        reply: std::sync::mpsc::Sender<Result<Vec<Grant>, StoreError>>,
    },
}

/// The agent's handle on the fleet thread.
pub struct Fleet {
    pub shared: Arc<FleetShared>,
    requests: mpsc::UnboundedSender<Request>,
}

impl Fleet {
    /// Loads the snapshot (the policy to enforce until etcd answers) and
    /// starts the fleet thread.
    pub fn start(config: FleetConfig, top_address: Option<String>) -> Self {
        let layout = Layout::new(&config.prefix);
        let view = match load_snapshot(&config, &layout) {
            Ok(Some(view)) => {
                info!(
                    revision = view.revision,
                    "fleet: enforcing the snapshot until etcd answers"
                );
                view
            }
            Ok(None) => {
                info!(
                    "fleet: no snapshot yet at {}",
                    config.snapshot_file.display()
                );
                FleetView::new(layout.clone())
            }
            Err(e) => {
                error!("fleet: snapshot refused, starting without fleet policy until etcd answers: {e}");
                FleetView::new(layout.clone())
            }
        };
        let shared = Arc::new(FleetShared {
            top_address: config.advertise_address.clone().or(top_address),
            config,
            layout,
            inner: Mutex::new(Inner {
                policy: Arc::new(view.policy()),
                ..Inner::default()
            }),
            changed: AtomicBool::new(true),
            connected: AtomicBool::new(false),
            wake: (Mutex::new(false), std::sync::Condvar::new()),
            merge_cache: Mutex::new(None),
            snapshot: (Mutex::new(None), std::sync::Condvar::new()),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("fleet-snapshot".into())
            .spawn(move || writer.write_snapshots())
            .expect("spawn snapshot thread");
        let (tx, rx) = mpsc::unbounded_channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async move {
                    tokio::spawn(serve_requests(Arc::clone(&thread_shared), rx));
                    tokio::spawn(keep_registered(Arc::clone(&thread_shared)));
                    follow(thread_shared, view).await;
                });
            })
            .expect("spawn fleet thread");
        Self {
            shared,
            requests: tx,
        }
    }

    /// The accepted fleet policy (cheap: shared lists).
    pub fn policy(&self) -> Arc<FleetPolicy> {
        Arc::clone(&self.shared.lock().policy)
    }

    /// Sleeps up to `limit`, less if a new fleet policy arrives meanwhile
    /// (the agent loop's tick, so a grant does not wait for it).
    pub fn wait_for_change(&self, limit: Duration) {
        let (flag, signal) = &self.shared.wake;
        let guard = flag.lock().expect("not poisoned");
        let (mut guard, _) = signal
            .wait_timeout_while(guard, limit, |woken| !*woken)
            .expect("not poisoned");
        *guard = false;
    }

    /// `local` (the box's own policy as of `now`) with the accepted fleet
    /// policy: the enforced policy, the fleet revision in it, the conflicts.
    pub fn merge(
        &self,
        local: &crate::policy::Policy,
        now: u64,
    ) -> (crate::policy::Policy, i64, Vec<String>) {
        let fleet_policy = self.policy();
        let mut cache = self.shared.merge_cache.lock().expect("not poisoned");
        let (merged, conflicts) = super::merge::merge_cached(&mut cache, local, &fleet_policy, now);
        (merged, fleet_policy.revision, conflicts)
    }

    /// True once after each change of the accepted policy.
    pub fn take_changed(&self) -> bool {
        self.shared.changed.swap(false, Ordering::Relaxed)
    }

    /// The agent put `revision` into the maps (with these precedence conflicts).
    pub fn applied(&self, revision: i64, conflicts: Vec<String>) {
        let mut inner = self.shared.lock();
        for conflict in conflicts.iter().filter(|c| !inner.conflicts.contains(c)) {
            warn!("fleet policy vs local configuration: {conflict}");
        }
        inner.applied_revision = revision;
        inner.conflicts = conflicts;
        inner.apply_error = None;
    }

    /// The maps could not take the fleet policy; the agent retries.
    pub fn apply_failed(&self, error: String) {
        self.shared.lock().apply_error = Some(error);
        self.shared.changed.store(true, Ordering::Relaxed);
    }

    pub fn set_interfaces(&self, interfaces: Vec<String>) {
        self.shared.lock().interfaces = interfaces;
    }

    /// Waits until etcd has answered once (start-up without a snapshot).
    pub fn wait_for_sync(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.shared.lock().last_sync_unix.is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The provisioning API's store when `[fleet]` is on.
    pub fn grant_store(&self) -> Box<dyn GrantStore> {
        Box::new(EtcdGrants {
            requests: self.requests.clone(),
        })
    }
}

/// Grants in etcd, for the (synchronous) provisioning API.
struct EtcdGrants {
    requests: mpsc::UnboundedSender<Request>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

impl EtcdGrants {
    fn ask<T>(
        &self,
        make: impl FnOnce(std::sync::mpsc::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.requests
            .send(make(tx))
            .map_err(|_| StoreError::Unavailable("the fleet thread is gone".into()))?;
        rx.recv_timeout(REQUEST_TIMEOUT).map_err(|_| {
            StoreError::Unavailable(
                "etcd did not answer in time; the change may or may not have been made".into(),
            )
        })?
    }
}

impl GrantStore for EtcdGrants {
    fn put(&self, kind: ListKind, grant: &Grant) -> Result<(), StoreError> {
        let grant = grant.clone();
        self.ask(|reply| Request::Put { kind, grant, reply })
    }

    fn delete(&self, kind: ListKind, prefix: &Prefix, actor: &str) -> Result<(), StoreError> {
        let (prefix, actor) = (*prefix, actor.to_owned());
        self.ask(|reply| Request::Delete {
            kind,
            prefix,
            actor,
            reply,
        })
    }

    fn list(&self, kind: ListKind) -> Result<Vec<Grant>, StoreError> {
        self.ask(|reply| Request::List { kind, reply })
    }
}

fn unavailable(e: &FleetError) -> StoreError {
    match e {
        FleetError::NotFound(m) => StoreError::NotFound(m.clone()),
        other => StoreError::Unavailable(format!("etcd: {other}")),
    }
}

/// Grant writes for the API, on a connection of their own.
async fn serve_requests(shared: Arc<FleetShared>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut connection: Option<Client> = None;
    while let Some(request) = requests.recv().await {
        if connection.is_none() {
            connection = client::connect(&shared.config).await.ok();
        }
        let Some(etcd_client) = connection.as_ref() else {
            let e = StoreError::Unavailable("etcd is unreachable: nothing changed".into());
            match request {
                Request::Put { reply, .. } | Request::Delete { reply, .. } => {
                    drop(reply.send(Err(e)));
                }
                Request::List { reply, .. } => drop(reply.send(Err(e))),
            }
            continue;
        };
        let node = &shared.config.node_name;
        let layout = &shared.layout;
        let failed = match request {
            Request::Put { kind, grant, reply } => {
                let audit = client::audit(
                    node,
                    &grant.actor,
                    "add",
                    kind.name(),
                    &grant.prefix,
                    grant.expires_at,
                    &grant.reason,
                );
                let result = client::put_grant(etcd_client, layout, kind, &grant, &audit).await;
                let failed = matches!(result, Err(FleetError::Etcd { .. }));
                let _ = reply.send(result.map(|_| ()).map_err(|e| unavailable(&e)));
                failed
            }
            Request::Delete {
                kind,
                prefix,
                actor,
                reply,
            } => {
                let audit = client::audit(
                    node,
                    &actor,
                    "delete",
                    kind.name(),
                    &prefix.to_string(),
                    None,
                    "",
                );
                let result = client::delete_grant(etcd_client, layout, kind, &prefix, &audit).await;
                let failed = matches!(result, Err(FleetError::Etcd { .. }));
                let _ = reply.send(result.map_err(|e| unavailable(&e)));
                failed
            }
            Request::List { kind, reply } => {
                let result = client::list_grants(etcd_client, layout, kind).await;
                let failed = result.is_err();
                let _ = reply.send(
                    result
                        .map(|(grants, _)| grants)
                        .map_err(|e| unavailable(&e)),
                );
                failed
            }
        };
        if failed {
            connection = None;
        }
    }
}

/// Where following etcd stands across connections.
struct Follower {
    view: FleetView,
    /// Events up to this revision are in the view; a watch resumes after it.
    seen: i64,
    resync: bool,
}

/// Follows `P/policy/` for the life of the process.
async fn follow(shared: Arc<FleetShared>, view: FleetView) {
    let mut state = Follower {
        view,
        seen: 0,
        // First contact reads everything: the snapshot may be far behind.
        resync: true,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        match session(&shared, &mut state).await {
            Ok(()) => continue, // compacted: read everything again at once
            Err(e) => shared.lost(&e),
        }
        if started.elapsed() > MAX_BACKOFF * 2 {
            backoff = Duration::from_millis(200);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: (re)sync, then watch until something breaks. Returns
/// Ok when the watch history was compacted (resync needed at once).
async fn session(shared: &FleetShared, state: &mut Follower) -> Result<(), FleetError> {
    let etcd_client = client::connect(&shared.config).await?;
    let dir = state.view.layout().policy_dir();
    if state.resync {
        let read = client::read_dir(&etcd_client, &dir, 0).await?;
        let (revision, before) = (read.revision, state.view.policy());
        state.view.resync(&read.kvs, read.newest_change);
        state.view.settle();
        state.seen = revision;
        state.resync = false;
        if state.view.policy() != before || shared.lock().refusals != state.view.refusals() {
            shared.publish(&state.view);
        }
        info!(revision, "fleet: read the whole policy from etcd");
    }
    let mut watch_client = etcd_client
        .watch_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(state.seen + 1)
        .with_progress_notify();
    let mut stream = watch_client
        .watch(dir.clone(), Some(options))
        .await
        .map_err(etcd(format!("watching {dir}")))?;
    shared.synced();
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    let mut sweep = tokio::time::interval(EXPIRY_SWEEP);
    let mut unanswered = 0u32;
    loop {
        tokio::select! {
            message = stream.message() => {
                let response = message
                    .map_err(etcd("watch"))?
                    .ok_or_else(|| FleetError::Conflict("etcd closed the watch".into()))?;
                if response.compact_revision() > 0 {
                    warn!(
                        from = state.seen + 1,
                        kept_from = response.compact_revision(),
                        "fleet: etcd compacted the history this agent missed; reading the whole policy again"
                    );
                    state.resync = true;
                    return Ok(());
                }
                if response.canceled() {
                    return Err(FleetError::Conflict(format!("etcd cancelled the watch: {}", response.cancel_reason())));
                }
                unanswered = 0;
                let events = response.events();
                for event in events {
                    let Some(kv) = event.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key());
                    match event.event_type() {
                        EventType::Put => state.view.put(&key, kv.value(), kv.mod_revision()),
                        EventType::Delete => state.view.delete(&key, kv.mod_revision()),
                    }
                    state.seen = state.seen.max(kv.mod_revision());
                }
                if !events.is_empty() {
                    state.view.settle();
                    shared.publish(&state.view);
                }
                shared.synced();
            }
            _ = progress.tick() => {
                unanswered += 1;
                if unanswered > 3 {
                    return Err(FleetError::Conflict("etcd stopped answering the watch".into()));
                }
                stream.request_progress().await.map_err(etcd("watch progress"))?;
            }
            _ = sweep.tick() => expire_grants(&etcd_client, shared, &state.view).await,
        }
    }
}

/// Deletes grants that expired a while ago (each box waits a different few
/// seconds, so usually one box does it; the delete is conditional anyway).
async fn expire_grants(etcd_client: &Client, shared: &FleetShared, view: &FleetView) {
    let delay = u64::from(shared.config.node_name.bytes().fold(0u8, u8::wrapping_add) % 20);
    let now = crate::clock::now_unix();
    for key in view.expired_grant_keys(now.saturating_sub(delay)) {
        let Some(value) = view.raw(&key) else {
            continue;
        };
        let prefix = key.rsplit_once("/grants/").map_or("", |(_, p)| p);
        let audit = client::audit(
            &shared.config.node_name,
            "op25b",
            "expire",
            "grants",
            prefix,
            None,
            "expires_at passed",
        );
        match client::delete_if_unchanged(etcd_client, view.layout(), &key, value, &audit).await {
            Ok(true) => info!(key, "fleet: expired grant removed from etcd"),
            Ok(false) => {}
            Err(e) => warn!(key, "fleet: removing an expired grant: {e}"),
        }
    }
}

/// Keeps `P/agents/<node>` alive on a lease and up to date.
async fn keep_registered(shared: Arc<FleetShared>) {
    loop {
        if let Err(e) = registration_session(&shared).await {
            tracing::debug!("fleet registration: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn registration_session(shared: &FleetShared) -> Result<(), FleetError> {
    let etcd_client = client::connect(&shared.config).await?;
    let mut leases = etcd_client.lease_client();
    let lease = leases
        .grant(REGISTRATION_TTL_SECONDS, None)
        .await
        .map_err(etcd("registration lease"))?
        .id();
    let (mut keeper, mut answers) = leases
        .keep_alive(lease)
        .await
        .map_err(etcd("registration keep-alive"))?;
    let mut kv = etcd_client.kv_client();
    let node = &shared.config.node_name;
    let seen = serde_json::json!({ "node": node, "last_registered": crate::clock::rfc3339(crate::clock::now_unix()) });
    kv.put(shared.layout.node_key(node), seen.to_string(), None)
        .await
        .map_err(etcd("registering"))?;
    let mut written: Option<Registration> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut keep_alive = tokio::time::interval(Duration::from_secs(
        u64::try_from(REGISTRATION_TTL_SECONDS / 3).unwrap_or(5),
    ));
    loop {
        tokio::select! {
            _ = keep_alive.tick() => {
                keeper.keep_alive().await.map_err(etcd("registration keep-alive"))?;
                let answer = answers.message().await.map_err(etcd("registration keep-alive"))?;
                if answer.is_none_or(|a| a.ttl() <= 0) {
                    return Err(FleetError::Conflict("registration lease expired".into()));
                }
            }
            _ = tick.tick() => {
                let registration = shared.registration();
                if written.as_ref() != Some(&registration) {
                    let mut value = registration.clone();
                    value.updated_at = crate::clock::now_unix();
                    kv.put(
                        shared.layout.agent_key(node),
                        serde_json::to_string(&value).expect("registration serializes"),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                    .await
                    .map_err(etcd("registering"))?;
                    written = Some(registration);
                }
            }
        }
    }
}
