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

use etcd_client::{Client, EventType, WatchOptions};
use tracing::{error, info, warn};

use super::{
    client::{self, etcd, FleetError, MAX_RESPONSE_BYTES},
    codec::KeyError,
    layout::Layout,
    registration::Registration,
    view::{FleetPolicy, FleetView, Snapshot},
};
use crate::config::fleet::FleetConfig;

/// How often the watch is asked for progress; no answer in three rounds
/// counts as etcd lost.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Expired grants are deleted from etcd by whichever agent gets there first.
const EXPIRY_SWEEP: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(super) struct Inner {
    /// Accepted from etcd (or the snapshot); the agent applies it.
    pub(super) policy: Arc<FleetPolicy>,
    pub(super) refusals: Vec<KeyError>,
    pub(super) conflicts: Vec<String>,
    pub(super) last_sync_unix: Option<f64>,
    pub(super) last_error: Option<String>,
    pub(super) apply_error: Option<String>,
    pub(super) applied_revision: i64,
    pub(super) interfaces: Vec<String>,
    /// When the newest accepted policy arrived from etcd: the agent's
    /// share of a change's latency is measured from here.
    pub(super) accepted_at: Option<Instant>,
}

/// Shared between the fleet thread, the agent loop, the API and metrics.
pub struct FleetShared {
    pub config: FleetConfig,
    pub layout: Layout,
    pub(super) top_address: Option<String>,
    pub(super) inner: Mutex<Inner>,
    pub(super) changed: AtomicBool,
    pub(super) connected: AtomicBool,
    /// The agent loop's waker: rung when a new policy is accepted (no wait for its tick).
    pub(super) waker: Arc<crate::wake::Waker>,
    pub(super) merge_cache: Mutex<Option<super::merge::MergeCache>>,
    /// The next snapshot to write (see `write_snapshots`).
    pub(super) snapshot: (Mutex<Option<Vec<u8>>>, std::sync::Condvar),
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
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
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

    pub(super) fn registration(&self) -> Registration {
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
    pub(super) fn publish(&self, view: &FleetView) {
        let refusals = view.refusals();
        {
            let mut inner = self.lock();
            for refusal in refusals.iter().filter(|r| !inner.refusals.contains(r)) {
                error!(key = %refusal.key, "fleet value refused, the last good policy stays: {refusal}");
            }
            inner.policy = Arc::new(view.policy());
            inner.refusals = refusals;
            inner.accepted_at = Some(Instant::now());
        }
        self.changed.store(true, Ordering::Relaxed);
        self.waker.wake(|r| r.fleet = true);
        // Written by its own thread: an fsync must not hold up the next watch event.
        let bytes = serde_json::to_vec(&view.snapshot()).expect("snapshot serializes");
        *self.snapshot.0.lock().expect("not poisoned") = Some(bytes);
        self.snapshot.1.notify_all();
    }

    /// Writes the newest pending snapshot, forever (older pending ones are
    /// skipped: only the last accepted policy matters).
    pub(super) fn write_snapshots(&self) {
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
            if let Err(e) = crate::state_file::write_atomically(&self.config.snapshot_file, |out| {
                out.write_all(&bytes)
            }) {
                error!("fleet snapshot not written (a restart while etcd is down would miss this policy): {e}");
                self.lock().last_error = Some(format!("snapshot: {e}"));
            }
        }
    }

    pub(super) fn synced(&self) {
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

    pub(super) fn lost(&self, error: &FleetError) {
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

/// Where following etcd stands across connections.
struct Follower {
    view: FleetView,
    /// Events up to this revision are in the view; a watch resumes after it.
    seen: i64,
    resync: bool,
}

/// Follows `P/policy/` for the life of the process.
pub(super) async fn follow(shared: Arc<FleetShared>, view: FleetView) {
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
        // `exempt/<prefix>` or `exempt_subscribers/<name>` (a name may hold '/').
        let grants_dir = format!("{}grants/", view.layout().policy_dir());
        let prefix = key.strip_prefix(&grants_dir).unwrap_or_default();
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
