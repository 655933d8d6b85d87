//! The agent's handle on the fleet thread ([`Fleet`]): start it, read the
//! accepted policy, merge it, report what was applied; and the provisioning
//! API's grant store, whose writes the fleet thread carries out.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use etcd_client::Client;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    client::{self, FleetError},
    grant_client,
    layout::Layout,
    registration::keep_registered,
    sync::{follow, load_snapshot, FleetShared, Inner},
    view::{FleetPolicy, FleetView},
};
use crate::{
    api::grant_store::{GrantStore, StoreError},
    config::fleet::FleetConfig,
    policy::{grants::Grant, prefix::Prefix, subscriber_grants::SubscriberGrant, ListKind},
};

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
    Subscriber(SubscriberRequest),
}

/// Grants by subscriber (`P/policy/grants/exempt_subscribers/`).
enum SubscriberRequest {
    Put {
        grant: SubscriberGrant,
        reply: std::sync::mpsc::Sender<Result<(), StoreError>>,
    },
    Delete {
        name: String,
        actor: String,
        reply: std::sync::mpsc::Sender<Result<(), StoreError>>,
    },
    List {
        reply: std::sync::mpsc::Sender<Result<Vec<SubscriberGrant>, StoreError>>,
    },
}

impl SubscriberRequest {
    fn refuse(self, e: StoreError) {
        match self {
            Self::Put { reply, .. } | Self::Delete { reply, .. } => drop(reply.send(Err(e))),
            Self::List { reply } => drop(reply.send(Err(e))),
        }
    }
}

/// The agent's handle on the fleet thread.
pub struct Fleet {
    pub shared: Arc<FleetShared>,
    requests: mpsc::UnboundedSender<Request>,
}

impl Fleet {
    /// Loads the snapshot (the policy to enforce until etcd answers) and
    /// starts the fleet thread.
    pub fn start(
        config: FleetConfig,
        limits: crate::policy::limits::PrefixLimits,
        top_address: Option<String>,
        waker: Arc<crate::wake::Waker>,
    ) -> Self {
        let layout = Layout::new(&config.prefix).with_limits(limits);
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
            waker,
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

    /// `local` (the box's own policy as of `now`) with the accepted fleet
    /// policy: the enforced policy, the fleet revision in it, the conflicts.
    pub fn merge(
        &self,
        local: &crate::policy::Policy,
        now: u64,
    ) -> (Arc<crate::policy::Policy>, i64, Vec<String>) {
        let fleet_policy = self.policy();
        let mut cache = self.shared.merge_cache.lock().expect("not poisoned");
        let (merged, conflicts) = super::merge::merge_cached(
            &mut cache,
            local,
            &fleet_policy,
            now,
            self.shared.layout.limits(),
        );
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
        if revision > inner.applied_revision {
            if let Some(accepted) = inner.accepted_at {
                info!(
                    revision,
                    ms = accepted.elapsed().as_secs_f64() * 1000.0,
                    "fleet: revision in the maps, counted from its arrival from etcd"
                );
            }
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

    fn put_subscriber(&self, grant: &SubscriberGrant) -> Result<(), StoreError> {
        let grant = grant.clone();
        self.ask(|reply| Request::Subscriber(SubscriberRequest::Put { grant, reply }))
    }

    fn delete_subscriber(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        let (name, actor) = (name.to_owned(), actor.to_owned());
        self.ask(|reply| Request::Subscriber(SubscriberRequest::Delete { name, actor, reply }))
    }

    fn list_subscribers(&self) -> Result<Vec<SubscriberGrant>, StoreError> {
        self.ask(|reply| Request::Subscriber(SubscriberRequest::List { reply }))
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
                Request::Subscriber(request) => request.refuse(e),
            }
            continue;
        };
        let node = &shared.config.node_name;
        let layout = &shared.layout;
        let failed = match request {
            Request::Put { kind, grant, reply } => {
                let audit = client::grant_added(node, kind, &grant);
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
                send_listed(&reply, client::list_grants(etcd_client, layout, kind).await)
            }
            Request::Subscriber(request) => {
                serve_subscriber(etcd_client, node, layout, request).await
            }
        };
        if failed {
            connection = None;
        }
    }
}

/// Carries out a grant-by-subscriber request; true if etcd failed (the
/// connection is then made anew).
async fn serve_subscriber(
    etcd_client: &Client,
    node: &str,
    layout: &Layout,
    request: SubscriberRequest,
) -> bool {
    match request {
        SubscriberRequest::Put { grant, reply } => {
            let audit = grant_client::subscriber_added(node, &grant);
            let result = grant_client::put_subscriber(etcd_client, layout, &grant, &audit).await;
            let failed = matches!(result, Err(FleetError::Etcd { .. }));
            let _ = reply.send(result.map(|_| ()).map_err(|e| unavailable(&e)));
            failed
        }
        SubscriberRequest::Delete { name, actor, reply } => {
            let audit = grant_client::subscriber_audit(node, &actor, "delete", &name, None, "");
            let result = grant_client::delete_subscriber(etcd_client, layout, &name, &audit).await;
            let failed = matches!(result, Err(FleetError::Etcd { .. }));
            let _ = reply.send(result.map_err(|e| unavailable(&e)));
            failed
        }
        SubscriberRequest::List { reply } => send_listed(
            &reply,
            grant_client::list_subscribers(etcd_client, layout).await,
        ),
    }
}

/// Answers a list request with the grants read (the refused values are the
/// view's to report); true if etcd failed.
fn send_listed<T>(
    reply: &std::sync::mpsc::Sender<Result<Vec<T>, StoreError>>,
    result: Result<(Vec<T>, Vec<super::codec::KeyError>), FleetError>,
) -> bool {
    let failed = result.is_err();
    let _ = reply.send(
        result
            .map(|(grants, _)| grants)
            .map_err(|e| unavailable(&e)),
    );
    failed
}
