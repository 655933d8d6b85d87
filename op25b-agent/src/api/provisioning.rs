//! Exemptions and allowed destinations granted at run time (customer
//! portal, support desk) instead of by editing files on every box: JSON
//! over HTTP on a unix socket (and optionally TCP), bearer-token
//! authenticated, persisted atomically, audited, with optional expiry.
//!
//! The agent enforces `config policy ∪ active grants`; a grant whose
//! `expires_at` has passed is removed from the maps on time. The handlers
//! are plain functions of the request, tested in process.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock, RwLock,
    },
};

use hyper::Method;
use serde::Serialize;

use super::{
    bearer::{BearerToken, TokenError},
    grant_store::{self, GrantStore},
    server::{self, Answer, Limits, Listener, RequestHead, Routes},
    types::{GrantListAnswer, GrantRequest, GrantTarget, RevokeAnswer, RevokeRequest},
};
use crate::{
    clock::{now_unix, rfc3339},
    config::ApiConfig,
    policy::{
        grants::{Grant, GrantList, GrantState},
        limits::PrefixLimits,
        prefix::Prefix,
    },
    state_file::StateFileError,
};

#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API token: {0}")]
    Token(#[from] TokenError),
}

/// Shared between the API threads and the agent loop.
pub struct Provisioning {
    pub config: ApiConfig,
    token: BearerToken,
    state: Mutex<GrantState>,
    /// The broadest grant each list takes (from the configuration).
    prefix_limits: RwLock<PrefixLimits>,
    /// Set when grants changed: the agent loop reapplies the policy.
    pub changed: AtomicBool,
    /// With `[fleet]`: grants go to the fleet's store, not the state file.
    store: OnceLock<Box<dyn GrantStore>>,
}

#[derive(Serialize)]
struct AuditLine<'a> {
    time: String,
    actor: &'a str,
    action: &'a str,
    list: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    prefix: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriber: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    reason: &'a str,
}

const NOT_FOUND: &str = "not found: /api/v1/exemptions, /api/v1/allowed_destinations";

impl Provisioning {
    pub fn open(config: ApiConfig, prefix_limits: PrefixLimits) -> Result<Self, ProvisioningError> {
        let token = BearerToken::load(&config.token_file)?;
        let mut state = GrantState::load(&config.state_file)?;
        state.prune(now_unix());
        Ok(Self {
            config,
            token,
            state: Mutex::new(state),
            prefix_limits: RwLock::new(prefix_limits),
            changed: AtomicBool::new(false),
            store: OnceLock::new(),
        })
    }

    /// From now on grants are written to (and listed from) `store`.
    pub fn use_store(&self, store: Box<dyn GrantStore>) {
        let _ = self.store.set(store);
    }

    /// The configuration's limits changed (a reload).
    pub fn set_prefix_limits(&self, limits: PrefixLimits) {
        *self.prefix_limits.write().expect("not poisoned") = limits;
    }

    pub fn state(&self) -> GrantState {
        self.state.lock().expect("not poisoned").clone()
    }

    /// Drops expired grants; true if any went (their prefixes leave the maps).
    pub fn expire(&self, now: u64) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        let pruned = state.prune(now);
        if pruned {
            if let Err(e) = state.save(&self.config.state_file) {
                tracing::error!("saving grants after expiry: {e}");
            }
        }
        pruned
    }

    fn audit(&self, line: &AuditLine<'_>) {
        let text = serde_json::to_string(line).expect("audit line serializes");
        let result = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.audit_log)
            .and_then(|mut f| writeln!(f, "{text}"));
        if let Err(e) = result {
            tracing::error!("audit log {}: {e}", self.config.audit_log.display());
        }
    }

    /// `GET /api/v1/{list}`.
    pub fn list(&self, list: GrantList) -> Answer {
        if let Some(store) = self.store.get() {
            let subscribers = match list {
                GrantList::Exemptions => store.list_subscribers(),
                GrantList::AllowedDestinations => Ok(Vec::new()),
            };
            return match store.list(list.list_kind()).and_then(|grants| {
                subscribers.map(|subscribers| GrantListAnswer {
                    list,
                    grants,
                    subscribers,
                })
            }) {
                Ok(answer) => Answer::json(200, &answer),
                Err(e) => grant_store::answer(&e),
            };
        }
        let state = self.state.lock().expect("not poisoned");
        Answer::json(
            200,
            &GrantListAnswer {
                list,
                grants: state.list(list).values().cloned().collect(),
                subscribers: match list {
                    GrantList::Exemptions => state.exempt_subscribers.values().cloned().collect(),
                    GrantList::AllowedDestinations => Vec::new(),
                },
            },
        )
    }

    /// `POST /api/v1/{list}`.
    pub fn add(&self, list: GrantList, body: &[u8]) -> Answer {
        let request: GrantRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return Answer::error(400, format!("body: {e}")),
        };
        match request.target() {
            Err(e) => return Answer::error(400, e),
            Ok(GrantTarget::Subscriber(name)) => {
                let name = name.to_owned();
                return self.add_subscriber(list, name, request);
            }
            Ok(GrantTarget::Prefix(_)) => {}
        }
        let prefix = match request.prefix.trim().parse::<Prefix>() {
            Ok(p) => p,
            Err(e) => return Answer::error(400, format!("prefix: {e}")),
        };
        let limits = *self.prefix_limits.read().expect("not poisoned");
        if let Err(e) = limits.check(list.list_kind(), &prefix) {
            tracing::warn!("refused a grant in {}: {e}", list.name());
            return Answer::error(400, format!("prefix: {e}"));
        }
        if request.reason.len() > 1024 || request.actor.len() > 256 {
            return Answer::error(400, "reason (1024) or actor (256) too long");
        }
        let now = now_unix();
        let grant = Grant {
            prefix: prefix.to_string(),
            expires_at: request.ttl.map(|t| now + t.seconds()),
            reason: request.reason,
            actor: actor_or_api(request.actor),
            created_at: now,
        };
        let stored = match self.store.get() {
            Some(store) => store
                .put(list.list_kind(), &grant)
                .map_err(|e| grant_store::answer(&e)),
            None => self.save_grant(list, &grant),
        };
        if let Err(answer) = stored {
            return answer;
        }
        self.audit(&AuditLine {
            time: rfc3339(now),
            actor: &grant.actor,
            action: "add",
            list: list.name(),
            prefix: &grant.prefix,
            subscriber: None,
            expires_at: grant.expires_at.map(rfc3339),
            reason: &grant.reason,
        });
        Answer::json(201, &grant)
    }

    /// `DELETE /api/v1/{list}?prefix=..[&actor=..&reason=..]`.
    pub fn revoke(&self, list: GrantList, query: &str) -> Answer {
        let request = match RevokeRequest::from_query(query) {
            Ok(r) => r,
            Err(e) => return Answer::error(400, e),
        };
        match request.target() {
            Err(e) => return Answer::error(400, e),
            Ok(GrantTarget::Subscriber(name)) => {
                let name = name.to_owned();
                return self.revoke_subscriber(list, &name, &request);
            }
            Ok(GrantTarget::Prefix(_)) => {}
        }
        let Ok(parsed) = request.prefix.parse::<Prefix>() else {
            return Answer::error(
                400,
                format!(
                    "prefix={:?}: give ?prefix=ADDR/LEN of a granted entry",
                    request.prefix
                ),
            );
        };
        if request.reason.len() > 1024 || request.actor.len() > 256 {
            return Answer::error(400, "reason (1024) or actor (256) too long");
        }
        let key = parsed.to_string();
        let actor = actor_or_api(request.actor);
        let removed = match self.store.get() {
            Some(store) => store
                .delete(list.list_kind(), &parsed, &actor)
                .map_err(|e| grant_store::answer(&e)),
            None => self.remove_grant(list, &key),
        };
        if let Err(answer) = removed {
            return answer;
        }
        self.audit(&AuditLine {
            time: rfc3339(now_unix()),
            actor: &actor,
            action: "delete",
            list: list.name(),
            prefix: &key,
            subscriber: None,
            expires_at: None,
            reason: &request.reason,
        });
        Answer::json(200, &RevokeAnswer { deleted: key })
    }
}

impl Provisioning {
    /// Applies `change` to the grants and persists them before they count;
    /// if they cannot be persisted the grants are put back as they were
    /// (the answer says nothing changed). A refused change changes nothing.
    pub(super) fn persist_change<T>(
        &self,
        change: impl FnOnce(&mut GrantState) -> Result<T, Answer>,
    ) -> Result<T, Answer> {
        let mut state = self.state.lock().expect("not poisoned");
        let before = state.clone();
        let done = change(&mut state)?;
        if let Err(e) = state.save(&self.config.state_file) {
            *state = before;
            return Err(Answer::error(
                500,
                format!("not persisted, nothing changed: {e}"),
            ));
        }
        self.changed.store(true, Ordering::Relaxed);
        Ok(done)
    }

    /// Puts a grant into the local state, persisted before it counts.
    fn save_grant(&self, list: GrantList, grant: &Grant) -> Result<(), Answer> {
        self.persist_change(|state| {
            state
                .list_mut(list)
                .insert(grant.prefix.clone(), grant.clone());
            Ok(())
        })
    }

    /// Takes a grant out of the local state, persisted before it counts.
    fn remove_grant(&self, list: GrantList, key: &str) -> Result<(), Answer> {
        self.persist_change(|state| match state.list_mut(list).remove(key) {
            Some(_) => Ok(()),
            None => Err(Answer::error(
                404,
                format!("{key} is not granted in {}", list.name()),
            )),
        })
    }
}

fn actor_or_api(actor: String) -> String {
    if actor.is_empty() {
        "api".into()
    } else {
        actor
    }
}

impl Routes for Provisioning {
    fn admit(&self, head: &RequestHead) -> Option<Answer> {
        (!self.token.accepts(head.authorization.as_deref())).then(|| {
            Answer::error(
                401,
                "missing or wrong bearer token (Authorization: Bearer <token from token_file>)",
            )
        })
    }

    fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    fn answer(&self, head: &RequestHead, body: &[u8]) -> Answer {
        let Some(list) = head
            .path
            .strip_prefix("/api/v1/")
            .and_then(GrantList::from_name)
        else {
            return Answer::error(404, NOT_FOUND);
        };
        match head.method {
            Method::GET => self.list(list),
            Method::POST => self.add(list, body),
            Method::DELETE => self.revoke(list, &head.query),
            _ => Answer::error(405, "use GET, POST or DELETE"),
        }
    }
}

/// Serves the API on its unix socket (mode 0600) and optional TCP address.
pub fn serve(provisioning: &Arc<Provisioning>) -> Result<(), ProvisioningError> {
    let listen_err = |address: String| move |source| ProvisioningError::Listen { address, source };
    let io_err = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| ProvisioningError::Io { path, source }
    };
    let routes: Arc<dyn Routes> = Arc::clone(provisioning) as Arc<dyn Routes>;
    if let Some(socket) = &provisioning.config.socket {
        if let Some(dir) = socket.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let _ = fs::remove_file(socket);
        let listener = std::os::unix::net::UnixListener::bind(socket)
            .map_err(listen_err(socket.display().to_string()))?;
        fs::set_permissions(socket, fs::Permissions::from_mode(0o600)).map_err(io_err(socket))?;
        server::serve(
            "http-api-unix",
            Listener::Unix(listener),
            Arc::clone(&routes),
            Limits::default(),
        )
        .map_err(listen_err(socket.display().to_string()))?;
    }
    if let Some(address) = &provisioning.config.listen_address {
        let listener = std::net::TcpListener::bind(address).map_err(listen_err(address.clone()))?;
        server::serve(
            "http-api",
            Listener::Tcp(listener),
            routes,
            Limits::default(),
        )
        .map_err(listen_err(address.clone()))?;
    }
    Ok(())
}

#[path = "subscriber_grants.rs"]
mod subscriber_grants;

#[cfg(test)]
#[path = "provisioning_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "provisioning_store_tests.rs"]
mod store_tests;
