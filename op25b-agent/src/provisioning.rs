//! Exemptions and allowed destinations granted at run time (customer
//! portal, support desk) instead of by editing files on every box: an
//! HTTP+JSON API on a unix socket (and optionally TCP), bearer-token
//! authenticated, persisted atomically, audited, with optional expiry.
//!
//! The agent enforces `config policy ∪ active grants`; a grant whose
//! `expires_at` has passed is removed from the maps on time.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::{
    clock::{now_unix, rfc3339},
    policy::{ListKind, Policy},
    prefix::Prefix,
};

/// A run-time grant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub prefix: String,
    /// Unix seconds; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub actor: String,
    pub created_at: u64,
}

/// What is persisted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrantState {
    #[serde(default)]
    pub exempt: BTreeMap<String, Grant>,
    #[serde(default)]
    pub allowed_destinations: BTreeMap<String, Grant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a state file: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error("cannot listen on {address}: {message}")]
    Listen { address: String, message: String },
    #[error("{}: the API token file is empty", path.display())]
    EmptyToken { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisioningError + '_ {
    move |source| ProvisioningError::Io {
        path: path.to_owned(),
        source,
    }
}

impl GrantState {
    fn list_mut(&mut self, kind: ListKind) -> Option<&mut BTreeMap<String, Grant>> {
        match kind {
            ListKind::Exempt => Some(&mut self.exempt),
            ListKind::AllowedDestinations => Some(&mut self.allowed_destinations),
            ListKind::Dynamic => None,
        }
    }

    fn list(&self, kind: ListKind) -> &BTreeMap<String, Grant> {
        match kind {
            ListKind::AllowedDestinations => &self.allowed_destinations,
            _ => &self.exempt,
        }
    }

    /// `base` with every grant active at `now` added.
    pub fn effective(&self, base: &Policy, now: u64) -> Policy {
        let mut policy = base.clone();
        for kind in [ListKind::Exempt, ListKind::AllowedDestinations] {
            for grant in self
                .list(kind)
                .values()
                .filter(|g| g.expires_at.is_none_or(|t| t > now))
            {
                if let Ok(prefix) = grant.prefix.parse::<Prefix>() {
                    policy.list_mut(kind).insert(prefix);
                }
            }
        }
        policy
    }

    /// The next expiry after `now`, when the policy must be recomputed.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        self.exempt
            .values()
            .chain(self.allowed_destinations.values())
            .filter_map(|g| g.expires_at)
            .filter(|&t| t > now)
            .min()
    }

    /// Forgets grants that expired (they are already out of the maps).
    pub fn prune(&mut self, now: u64) -> bool {
        let before = self.exempt.len() + self.allowed_destinations.len();
        self.exempt
            .retain(|_, g| g.expires_at.is_none_or(|t| t > now));
        self.allowed_destinations
            .retain(|_, g| g.expires_at.is_none_or(|t| t > now));
        before != self.exempt.len() + self.allowed_destinations.len()
    }

    pub fn load(path: &Path) -> Result<Self, ProvisioningError> {
        match fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ProvisioningError::State {
                path: path.to_owned(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Write to a temporary file, fsync, rename over, fsync the directory:
    /// a crash leaves the old state or the new one, never half of either.
    pub fn save(&self, path: &Path) -> Result<(), ProvisioningError> {
        write_atomically(
            path,
            serde_json::to_string_pretty(self)
                .expect("state serializes")
                .as_bytes(),
        )
    }
}

/// Write to a temporary file, fsync, rename over, fsync the directory: a
/// crash leaves the old content or the new, never half of either.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ProvisioningError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// `[api]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    pub socket: Option<PathBuf>,
    pub listen_address: Option<String>,
    pub token_file: PathBuf,
    pub state_file: PathBuf,
    pub audit_log: PathBuf,
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: Some(PathBuf::from("/run/op25b/api.sock")),
            listen_address: None,
            token_file: PathBuf::from("/etc/op25b/api.token"),
            state_file: PathBuf::from("/var/lib/op25b/state.json"),
            audit_log: PathBuf::from("/var/log/op25b/audit.jsonl"),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Why a shared grant store did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Where grants live when a fleet shares them (etcd, see `fleet`) instead
/// of this box's state file. Writes carry their audit line.
pub trait GrantStore: Send + Sync {
    fn put(&self, kind: ListKind, grant: &Grant) -> Result<(), StoreError>;
    fn delete(&self, kind: ListKind, prefix: &Prefix, actor: &str) -> Result<(), StoreError>;
    fn list(&self, kind: ListKind) -> Result<Vec<Grant>, StoreError>;
}

/// Shared between the API threads and the agent loop.
pub struct Provisioning {
    pub config: ApiConfig,
    token: String,
    state: Mutex<GrantState>,
    /// Set when grants changed: the agent loop reapplies the policy.
    pub changed: AtomicBool,
    /// With `[fleet]`: grants go to the fleet's store, not the state file.
    store: std::sync::OnceLock<Box<dyn GrantStore>>,
}

fn store_error(e: &StoreError) -> Answer {
    match e {
        StoreError::NotFound(m) => error(404, m.clone()),
        StoreError::Unavailable(m) => error(503, format!("not changed: {m}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    prefix: String,
    /// Seconds, or a duration like "7d", "12h".
    #[serde(default)]
    ttl: Option<serde_json::Value>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    actor: String,
}

#[derive(Serialize)]
struct AuditLine<'a> {
    time: String,
    actor: &'a str,
    action: &'a str,
    list: &'a str,
    prefix: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    reason: &'a str,
}

fn parse_ttl(value: &serde_json::Value) -> Result<u64, String> {
    let secs = match value {
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or("ttl: give whole seconds or a duration like \"7d\"")?,
        serde_json::Value::String(s) => humantime::parse_duration(s)
            .map_err(|e| format!("ttl {s:?}: {e}"))?
            .as_secs(),
        _ => return Err("ttl: give whole seconds or a duration like \"7d\"".into()),
    };
    if secs == 0 || secs > 10 * 365 * 86_400 {
        return Err(format!("ttl {secs} s: give 1 s to 10 years"));
    }
    Ok(secs)
}

type Answer = (u16, serde_json::Value);

fn error(status: u16, message: impl Into<String>) -> Answer {
    (status, serde_json::json!({ "error": message.into() }))
}

impl Provisioning {
    pub fn open(config: ApiConfig) -> Result<Self, ProvisioningError> {
        let token = fs::read_to_string(&config.token_file)
            .map_err(io_err(&config.token_file))?
            .trim()
            .to_owned();
        if token.is_empty() {
            return Err(ProvisioningError::EmptyToken {
                path: config.token_file.clone(),
            });
        }
        let mut state = GrantState::load(&config.state_file)?;
        state.prune(now_unix());
        Ok(Self {
            config,
            token,
            state: Mutex::new(state),
            changed: AtomicBool::new(false),
            store: std::sync::OnceLock::new(),
        })
    }

    /// From now on grants are written to (and listed from) `store`.
    pub fn use_store(&self, store: Box<dyn GrantStore>) {
        let _ = self.store.set(store);
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

    fn authorized(&self, request: &Request) -> bool {
        let expected = format!("Bearer {}", self.token);
        request.headers().iter().any(|h| {
            h.field.equiv("Authorization") && {
                let got = h.value.as_str().as_bytes();
                // Length and bytes compared without early exit.
                got.len() == expected.len()
                    && got
                        .iter()
                        .zip(expected.as_bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            }
        })
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

    fn handle(&self, method: &Method, path: &str, query: &str, body: &str) -> Answer {
        let (kind, name) = match path {
            "/api/v1/exemptions" => (ListKind::Exempt, "exemptions"),
            "/api/v1/allowed_destinations" => {
                (ListKind::AllowedDestinations, "allowed_destinations")
            }
            _ => {
                return error(
                    404,
                    "not found: /api/v1/exemptions, /api/v1/allowed_destinations",
                )
            }
        };
        match method {
            Method::Get if self.store.get().is_some() => {
                match self.store.get().expect("checked").list(kind) {
                    Ok(grants) => (200, serde_json::json!({ name: grants })),
                    Err(e) => store_error(&e),
                }
            }
            Method::Get => {
                let state = self.state.lock().expect("not poisoned");
                (
                    200,
                    serde_json::json!({ name: state.list(kind).values().collect::<Vec<_>>() }),
                )
            }
            Method::Post => self.add(kind, name, body),
            Method::Delete => {
                let prefix = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("prefix="))
                    .unwrap_or("");
                let prefix = prefix
                    .replace("%2F", "/")
                    .replace("%2f", "/")
                    .replace("%3A", ":")
                    .replace("%3a", ":");
                let Ok(parsed) = prefix.parse::<Prefix>() else {
                    return error(
                        400,
                        format!("prefix={prefix:?}: give ?prefix=ADDR/LEN of a granted entry"),
                    );
                };
                let key = parsed.to_string();
                if let Some(store) = self.store.get() {
                    if let Err(e) = store.delete(kind, &parsed, "api") {
                        return store_error(&e);
                    }
                    self.audit(&AuditLine {
                        time: rfc3339(now_unix()),
                        actor: "api",
                        action: "delete",
                        list: name,
                        prefix: &key,
                        expires_at: None,
                        reason: "",
                    });
                    return (200, serde_json::json!({ "deleted": key }));
                }
                let mut state = self.state.lock().expect("not poisoned");
                let Some(old) = state.list_mut(kind).and_then(|l| l.remove(&key)) else {
                    return error(404, format!("{key} is not granted in {name}"));
                };
                if let Err(e) = state.save(&self.config.state_file) {
                    state.list_mut(kind).expect("api list").insert(key, old);
                    return error(500, format!("not persisted, nothing changed: {e}"));
                }
                self.changed.store(true, Ordering::Relaxed);
                drop(state);
                self.audit(&AuditLine {
                    time: rfc3339(now_unix()),
                    actor: "api",
                    action: "delete",
                    list: name,
                    prefix: &key,
                    expires_at: None,
                    reason: "",
                });
                (200, serde_json::json!({ "deleted": key }))
            }
            _ => error(405, "use GET, POST or DELETE"),
        }
    }

    fn add(&self, kind: ListKind, name: &str, body: &str) -> Answer {
        let request: AddRequest = match serde_json::from_str(body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("body: {e}")),
        };
        let prefix = match request.prefix.trim().parse::<Prefix>() {
            Ok(p) => p,
            Err(e) => return error(400, format!("prefix: {e}")),
        };
        let ttl = match request.ttl.as_ref().map(parse_ttl).transpose() {
            Ok(t) => t,
            Err(e) => return error(400, e),
        };
        if request.reason.len() > 1024 || request.actor.len() > 256 {
            return error(400, "reason (1024) or actor (256) too long");
        }
        let now = now_unix();
        let grant = Grant {
            prefix: prefix.to_string(),
            expires_at: ttl.map(|t| now + t),
            reason: request.reason,
            actor: if request.actor.is_empty() {
                "api".into()
            } else {
                request.actor
            },
            created_at: now,
        };
        if let Some(store) = self.store.get() {
            if let Err(e) = store.put(kind, &grant) {
                return store_error(&e);
            }
        } else if let Err(answer) = self.save_grant(kind, &grant) {
            return answer;
        }
        self.audit(&AuditLine {
            time: rfc3339(now),
            actor: &grant.actor,
            action: "add",
            list: name,
            prefix: &grant.prefix,
            expires_at: grant.expires_at.map(rfc3339),
            reason: &grant.reason,
        });
        (201, serde_json::to_value(&grant).expect("grant serializes"))
    }

    /// Puts a grant into the local state, persisted before it counts.
    fn save_grant(&self, kind: ListKind, grant: &Grant) -> Result<(), Answer> {
        let mut state = self.state.lock().expect("not poisoned");
        let list = state.list_mut(kind).expect("api list");
        let previous = list.insert(grant.prefix.clone(), grant.clone());
        if let Err(e) = state.save(&self.config.state_file) {
            let list = state.list_mut(kind).expect("api list");
            match previous {
                Some(p) => list.insert(grant.prefix.clone(), p),
                None => list.remove(&grant.prefix),
            };
            return Err(error(500, format!("not persisted, nothing changed: {e}")));
        }
        self.changed.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn serve_request(&self, mut request: Request) {
        let url = request.url().to_owned();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let answer = if !self.authorized(&request) {
            error(
                401,
                "missing or wrong bearer token (Authorization: Bearer <token from token_file>)",
            )
        } else if request
            .body_length()
            .is_some_and(|n| n > self.config.max_body_bytes)
        {
            error(
                413,
                format!("body over {} bytes", self.config.max_body_bytes),
            )
        } else {
            let mut body = String::new();
            let limit = self.config.max_body_bytes as u64 + 1;
            match request.as_reader().take(limit).read_to_string(&mut body) {
                Ok(_) if body.len() > self.config.max_body_bytes => error(
                    413,
                    format!("body over {} bytes", self.config.max_body_bytes),
                ),
                Ok(_) => self.handle(request.method(), path, query, &body),
                Err(e) => error(400, format!("body: {e}")),
            }
        };
        let header = Header::from_bytes("Content-Type", "application/json").expect("valid header");
        let _ = request.respond(
            Response::from_string(answer.1.to_string())
                .with_status_code(answer.0)
                .with_header(header),
        );
    }
}

/// Serves the API on its unix socket (mode 0600) and optional TCP address.
pub fn serve(provisioning: &Arc<Provisioning>) -> Result<(), ProvisioningError> {
    let listen_err = |address: String| {
        move |e: Box<dyn std::error::Error + Send + Sync>| ProvisioningError::Listen {
            address,
            message: e.to_string(),
        }
    };
    let mut servers = Vec::new();
    if let Some(socket) = &provisioning.config.socket {
        if let Some(dir) = socket.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let _ = fs::remove_file(socket);
        servers.push(Server::http_unix(socket).map_err(listen_err(socket.display().to_string()))?);
        fs::set_permissions(socket, fs::Permissions::from_mode(0o600)).map_err(io_err(socket))?;
    }
    if let Some(address) = &provisioning.config.listen_address {
        servers.push(Server::http(address).map_err(listen_err(address.clone()))?);
    }
    for server in servers {
        let server = Arc::new(server);
        // A few workers per listener: concurrent clients do not queue behind one slow request.
        for _ in 0..4 {
            let (server, provisioning) = (Arc::clone(&server), Arc::clone(provisioning));
            std::thread::Builder::new()
                .name("api".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        provisioning.serve_request(request);
                    }
                })
                .expect("spawn api thread");
        }
    }
    Ok(())
}

/// The CLI's client: one request over the unix socket; returns (status, body).
pub fn request(
    socket: &Path,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: op25b\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_grants_join_the_policy_and_expired_ones_leave() {
        let mut state = GrantState::default();
        for (prefix, expires_at) in [("100.64.9.9/32", Some(1_000)), ("100.64.8.8/32", None)] {
            state.exempt.insert(
                prefix.into(),
                Grant {
                    prefix: prefix.into(),
                    expires_at,
                    reason: String::new(),
                    actor: "t".into(),
                    created_at: 0,
                },
            );
        }
        let base = Policy::default();
        assert_eq!(state.effective(&base, 999).exempt.len(), 2);
        assert_eq!(state.effective(&base, 1_000).exempt.len(), 1);
        assert_eq!(state.next_expiry(500), Some(1_000));
        assert!(state.prune(1_000));
        assert_eq!(state.exempt.len(), 1);
    }

    #[test]
    fn state_saves_atomically_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("op25b-state-{}", std::process::id()));
        let path = dir.join("state.json");
        let mut state = GrantState::default();
        state.allowed_destinations.insert(
            "192.0.2.26/32".into(),
            Grant {
                prefix: "192.0.2.26/32".into(),
                expires_at: None,
                reason: "relay".into(),
                actor: "noc".into(),
                created_at: 1,
            },
        );
        state.save(&path).unwrap();
        assert!(!path.with_extension("tmp").exists());
        assert_eq!(GrantState::load(&path).unwrap(), state);
        fs::write(&path, "{\"exempt\": 3}").unwrap();
        assert!(GrantState::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a state file"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl(&serde_json::json!(60)), Ok(60));
        assert_eq!(parse_ttl(&serde_json::json!("7d")), Ok(7 * 86_400));
        assert!(parse_ttl(&serde_json::json!(0)).is_err());
        assert!(parse_ttl(&serde_json::json!("soon")).is_err());
        assert!(parse_ttl(&serde_json::json!(-5)).is_err());
    }
}
