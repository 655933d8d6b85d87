//! `[radius]` (the accounting and CoA listeners, their clients) and
//! `[policy] exempt_subscribers*`: the model, its defaults and the checks.

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use toml::Spanned;

use super::{
    check::Checker,
    raw::{RawConfig, RawPolicy, RawRadius},
    ConfigProblem,
};
use crate::policy::{
    prefix::Prefix,
    subscribers::{parse_subscriber_entry, SubscriberFileError, SubscriberList, MAX_NAME},
};

pub const DEFAULT_SESSION_STATE_FILE: &str = "/var/lib/op25b/sessions.json";
pub const DEFAULT_MAX_SESSIONS: usize = 1_000_000;
/// Room for a BNG's burst (Accounting-On, then a Start per subscriber)
/// while the agent applies the batch before: about 16,000 full datagrams.
pub const DEFAULT_RECEIVE_BUFFER_BYTES: usize = 8 << 20;
/// The top stays well under the kernel's own cap (INT_MAX / 2 even with
/// CAP_NET_ADMIN), so a buffer smaller than asked always means rmem_max.
const RECEIVE_BUFFER_RANGE: std::ops::RangeInclusive<usize> = (64 << 10)..=(256 << 20);

/// A NAS (or RADIUS server, for CoA) allowed to send, and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RadiusClient {
    pub address: Prefix,
    pub secret_file: PathBuf,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for RadiusClient {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusClient")
            .field("address", &self.address.to_string())
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

/// `[radius]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadiusConfig {
    pub accounting_listen: Option<SocketAddr>,
    pub coa_listen: Option<SocketAddr>,
    pub session_state_file: PathBuf,
    pub max_sessions: usize,
    /// Each listener's socket receive buffer (SO_RCVBUF).
    pub receive_buffer_bytes: usize,
    /// A Filter-Id or Class value that exempts the session carrying it.
    pub exempt_filter_id: Option<String>,
    pub clients: Vec<RadiusClient>,
}

impl RadiusConfig {
    /// The client whose prefix holds `addr` (most specific wins).
    pub fn client(&self, addr: IpAddr) -> Option<&RadiusClient> {
        // A v4 sender on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        self.clients
            .iter()
            .filter(|c| c.address.contains(addr))
            .max_by_key(|c| c.address.len())
    }

    /// Whether a Filter-Id or Class value exempts its session.
    pub fn is_exempt_attribute(&self, value: &[u8]) -> bool {
        self.exempt_filter_id
            .as_ref()
            .is_some_and(|id| id.as_bytes() == value)
    }

    /// Whether a listener is configured (otherwise `[radius]` is inert).
    pub fn listens(&self) -> bool {
        self.accounting_listen.is_some() || self.coa_listen.is_some()
    }
}

/// Reads a shared secret, refusing a file others could read.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {:o} lets group or others read the shared secret; chmod 600 it",
            mode & 0o777
        ));
    }
    let text = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let secret = text.strip_suffix(b"\n").unwrap_or(&text);
    let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
    if secret.is_empty() {
        return Err("the shared secret is empty".into());
    }
    Ok(secret.to_vec())
}

impl Checker<'_> {
    fn listen(&mut self, raw: Option<&Spanned<String>>, key: &str) -> Option<SocketAddr> {
        let raw = raw?;
        let text = raw.get_ref().trim();
        if text.is_empty() {
            return None;
        }
        if let Ok(address) = text.parse() {
            return Some(address);
        }
        self.at(
            &raw.span(),
            format!("radius.{key}"),
            format!("{text:?} is not an address:port (\"\" turns it off)"),
        );
        None
    }

    /// `[radius]` and `[policy] exempt_subscribers*` (one line in `parse`).
    pub fn radius_and_subscribers(
        &mut self,
        raw: &RawConfig,
        list_files: &mut Vec<PathBuf>,
    ) -> (Option<RadiusConfig>, SubscriberList) {
        let radius = raw.radius.as_ref().map(|r| self.radius(r));
        (radius, self.subscribers(&raw.policy, list_files))
    }

    /// Validates `[radius]`; paths resolve against the config's directory.
    pub fn radius(&mut self, raw: &RawRadius) -> RadiusConfig {
        let base = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        let accounting_listen = self.listen(raw.accounting_listen.as_ref(), "accounting_listen");
        let coa_listen = self.listen(raw.coa_listen.as_ref(), "coa_listen");
        let session_state_file = raw.session_state_file.as_ref().map_or_else(
            || PathBuf::from(DEFAULT_SESSION_STATE_FILE),
            |p| base.join(p.get_ref()),
        );
        let mut max_sessions = DEFAULT_MAX_SESSIONS;
        if let Some(max) = &raw.max_sessions {
            match usize::try_from(*max.get_ref()) {
                Ok(n) if (1..=100_000_000).contains(&n) => max_sessions = n,
                _ => self.at(
                    &max.span(),
                    "radius.max_sessions".into(),
                    format!("{} is not in 1..=100000000", max.get_ref()),
                ),
            }
        }
        let mut receive_buffer_bytes = DEFAULT_RECEIVE_BUFFER_BYTES;
        if let Some(bytes) = &raw.receive_buffer_bytes {
            match usize::try_from(*bytes.get_ref()) {
                Ok(n) if RECEIVE_BUFFER_RANGE.contains(&n) => receive_buffer_bytes = n,
                _ => self.at(
                    &bytes.span(),
                    "radius.receive_buffer_bytes".into(),
                    format!(
                        "{} is not in {}..={}",
                        bytes.get_ref(),
                        RECEIVE_BUFFER_RANGE.start(),
                        RECEIVE_BUFFER_RANGE.end()
                    ),
                ),
            }
        }
        let exempt_filter_id = raw.exempt_filter_id.as_ref().and_then(|id| {
            let text = id.get_ref();
            if text.is_empty() || text.len() > MAX_NAME {
                self.at(
                    &id.span(),
                    "radius.exempt_filter_id".into(),
                    "must be 1 to 253 octets (the longest Filter-Id)",
                );
                return None;
            }
            Some(text.clone())
        });
        let mut clients: Vec<RadiusClient> = Vec::new();
        for (i, client) in raw.clients.iter().enumerate() {
            let key = format!("radius.clients[{i}].address");
            let address = match client.address.get_ref().trim().parse::<Prefix>() {
                Ok(p) => Some(p),
                Err(e) => {
                    self.at(&client.address.span(), key.clone(), e);
                    None
                }
            };
            let secret_file = base.join(client.secret_file.get_ref());
            let secret = match read_secret(&secret_file) {
                Ok(s) => Some(s),
                Err(message) => {
                    self.problems.push(ConfigProblem {
                        location: secret_file.display().to_string(),
                        key: None,
                        message: format!("radius.clients[{i}].secret_file: {message}"),
                    });
                    None
                }
            };
            if let (Some(address), Some(secret)) = (address, secret) {
                if clients.iter().any(|c| c.address == address) {
                    self.at(
                        &client.address.span(),
                        key,
                        format!("{address} is listed twice"),
                    );
                }
                clients.push(RadiusClient {
                    address,
                    secret_file,
                    secret,
                });
            }
        }
        if (accounting_listen.is_some() || coa_listen.is_some()) && raw.clients.is_empty() {
            self.key(
                "radius.clients".into(),
                "no [[radius.clients]]: every request would be dropped",
            );
        }
        RadiusConfig {
            accounting_listen,
            coa_listen,
            session_state_file,
            max_sessions,
            receive_buffer_bytes,
            exempt_filter_id,
            clients,
        }
    }

    /// `[policy] exempt_subscribers` and `exempt_subscribers_files`; files
    /// read are pushed to `seen` (watched for live reload).
    pub fn subscribers(&mut self, raw: &RawPolicy, seen: &mut Vec<PathBuf>) -> SubscriberList {
        let mut list = SubscriberList::default();
        for (i, entry) in raw.exempt_subscribers.iter().enumerate() {
            match parse_subscriber_entry(entry.get_ref()) {
                Ok((name, expires)) => list.insert(name, expires),
                Err(message) => self.at(
                    &entry.span(),
                    format!("policy.exempt_subscribers[{i}]"),
                    message,
                ),
            }
        }
        let base = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        for (i, entry) in raw.exempt_subscribers_files.iter().enumerate() {
            if entry.get_ref().trim().is_empty() {
                self.at(
                    &entry.span(),
                    format!("policy.exempt_subscribers_files[{i}]"),
                    "empty file name",
                );
                continue;
            }
            let path = base.join(entry.get_ref());
            match list.read_file(&path) {
                Ok(()) => {}
                Err(SubscriberFileError::File(e)) => self.list_file(&e),
                Err(SubscriberFileError::Line {
                    path,
                    line,
                    message,
                }) => self.problems.push(ConfigProblem {
                    location: format!("{}:{line}", path.display()),
                    key: None,
                    message,
                }),
            }
            seen.push(path);
        }
        list
    }
}
