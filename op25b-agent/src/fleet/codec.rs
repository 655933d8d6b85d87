//! Values under `P/policy/`: encoded by `fleet push` and the provisioning
//! API, decoded and validated strictly by every agent. A value that fails is
//! refused with its key named; the caller keeps the last good policy.
//!
//! Big lists are cut into chunks of list-file text (the syntax of list
//! files, so the same parser validates them) at content-defined boundaries:
//! changing one prefix of a 1,000,000-prefix pool changes one chunk, and
//! each chunk stays far below etcd's 1.5 MiB request limit.

use std::collections::BTreeMap;

use op25b_common::abi::{PoolAction, MAX_POOLS};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::policy::{
    grants::Grant,
    limits::PrefixLimits,
    list_file::{parse_list, Admit},
    prefix::{Prefix, PrefixSet},
    ListKind, Policy, DEFAULT_POOL,
};

/// A grant's JSON: a few hundred bytes; anything near this is not a grant.
pub const MAX_GRANT_BYTES: usize = 4096;
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Hard cap of one chunk; etcd refuses requests over 1.5 MiB by default.
pub const MAX_CHUNK_BYTES: usize = 1_000_000;
/// A chunk ends after a line whose hash is 0 modulo this (about 16,384
/// lines, ~260 KB of IPv4 prefixes, on average), or at the hard cap.
const CHUNK_BOUNDARY_MODULUS: u64 = 16_384;
/// Manifest versions this agent understands.
pub const MANIFEST_FORMAT: u32 = 1;

/// A value refused, and which key holds it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

impl KeyError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// One list as the manifest names it: its chunks, in order, and how many
/// prefixes they hold (checked on decode).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRef {
    pub chunks: Vec<String>,
    pub prefixes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRef {
    pub name: String,
    pub action: String,
    #[serde(flatten)]
    pub list: ListRef,
}

/// `P/policy/lists/manifest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The flat dynamic lists: the pool "default", action drop.
    #[serde(default)]
    pub dynamic: ListRef,
    #[serde(default)]
    pub pools: Vec<PoolRef>,
    #[serde(default)]
    pub exempt: ListRef,
    #[serde(default)]
    pub allowed_destinations: ListRef,
    #[serde(default)]
    pub published_at: u64,
    #[serde(default)]
    pub published_by: String,
}

/// A fleet pool: dynamic prefixes with their own action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetPool {
    pub name: String,
    pub action: Option<PoolAction>,
    pub prefixes: PrefixSet,
}

/// The fleet's published lists, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetLists {
    pub dynamic: PrefixSet,
    pub pools: Vec<FleetPool>,
    pub exempt: PrefixSet,
    pub allowed_destinations: PrefixSet,
}

impl FleetLists {
    pub fn prefix_count(&self) -> usize {
        self.dynamic.len()
            + self.exempt.len()
            + self.allowed_destinations.len()
            + self.pools.iter().map(|p| p.prefixes.len()).sum::<usize>()
    }

    /// The lists of a policy (as `Config` builds it from files).
    pub fn from_policy(policy: &Policy) -> Self {
        let mut lists = Self {
            exempt: policy.exempt.clone(),
            allowed_destinations: policy.allowed_destinations.clone(),
            pools: policy
                .pools
                .iter()
                .skip(1)
                .map(|p| FleetPool {
                    name: p.name.clone(),
                    action: Some(p.action),
                    prefixes: PrefixSet::default(),
                })
                .collect(),
            ..Self::default()
        };
        for prefix in policy.dynamic.iter() {
            let until = policy.dynamic.expiring.get(prefix).copied();
            let id = policy.pool_id(prefix) as usize;
            let set = match id.checked_sub(1).and_then(|i| lists.pools.get_mut(i)) {
                Some(pool) => &mut pool.prefixes,
                None => &mut lists.dynamic,
            };
            set.insert_until(*prefix, until);
        }
        lists
    }
}

pub fn action_name(action: PoolAction) -> &'static str {
    match action {
        PoolAction::Monitor => "monitor",
        PoolAction::Reject => "reject",
        PoolAction::Drop => "drop",
    }
}

fn parse_action(name: &str) -> Option<PoolAction> {
    match name {
        "monitor" => Some(PoolAction::Monitor),
        "drop" => Some(PoolAction::Drop),
        "reject" => Some(PoolAction::Reject),
        _ => None,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn line_of(prefix: &Prefix, set: &PrefixSet) -> String {
    match set.expiring.get(prefix) {
        Some(&t) => format!("{prefix} expires_at={}\n", crate::clock::rfc3339(t)),
        None => format!("{prefix}\n"),
    }
}

fn boundary_after(line: &str) -> bool {
    use std::hash::{Hash as _, Hasher as _};
    // SipHash with fixed keys: the same line cuts at the same place on every box and run.
    #[expect(
        deprecated,
        reason = "SipHasher's fixed keys are what makes boundaries stable"
    )]
    let mut h = std::hash::SipHasher::new_with_keys(0x6f70_3235, 0x6266_6c74);
    line.hash(&mut h);
    h.finish().is_multiple_of(CHUNK_BOUNDARY_MODULUS)
}

/// Cuts a set into chunks of list text; returns (hash, text) in order.
pub fn chunk_list(set: &PrefixSet) -> Vec<(String, String)> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for prefix in set.iter() {
        let line = line_of(prefix, set);
        if current.len() + line.len() > MAX_CHUNK_BYTES {
            chunks.push(std::mem::take(&mut current));
        }
        current.push_str(&line);
        if boundary_after(&line) {
            chunks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
        .into_iter()
        .map(|text| (sha256_hex(text.as_bytes()), text))
        .collect()
}

/// Encodes lists: the manifest and every chunk it names (deduplicated).
pub fn encode_lists(
    lists: &FleetLists,
    published_by: &str,
    now: u64,
) -> (Manifest, BTreeMap<String, String>) {
    let mut chunks = BTreeMap::new();
    let mut list_ref = |set: &PrefixSet| {
        let mut r = ListRef {
            chunks: Vec::new(),
            prefixes: set.len() as u64,
        };
        for (hash, text) in chunk_list(set) {
            r.chunks.push(hash.clone());
            chunks.insert(hash, text);
        }
        r
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        dynamic: list_ref(&lists.dynamic),
        pools: lists
            .pools
            .iter()
            .map(|p| PoolRef {
                name: p.name.clone(),
                action: action_name(p.action.unwrap_or(PoolAction::Drop)).into(),
                list: list_ref(&p.prefixes),
            })
            .collect(),
        exempt: list_ref(&lists.exempt),
        allowed_destinations: list_ref(&lists.allowed_destinations),
        published_at: now,
        published_by: published_by.to_owned(),
    };
    (manifest, chunks)
}

/// Decodes a chunk's text after checking it is what its name says.
pub fn decode_chunk(
    key: &str,
    hash: &str,
    value: &[u8],
    into: &mut PrefixSet,
    admit: Admit<'_>,
) -> Result<(), KeyError> {
    if value.len() > MAX_CHUNK_BYTES {
        return Err(KeyError::new(
            key,
            format!(
                "{} bytes, over the {MAX_CHUNK_BYTES}-byte limit of a chunk",
                value.len()
            ),
        ));
    }
    if sha256_hex(value) != hash {
        return Err(KeyError::new(
            key,
            "content does not match its SHA-256 name (damaged or hand-edited)",
        ));
    }
    let text =
        std::str::from_utf8(value).map_err(|e| KeyError::new(key, format!("not UTF-8: {e}")))?;
    parse_list(text, into, admit)
        .map_err(|(line, e)| KeyError::new(&format!("{key}:{line}"), e.to_string()))
}

/// Decodes the manifest and every chunk it names; `chunk(hash)` returns a
/// chunk's (key, value) when present. All or nothing.
#[expect(
    clippy::too_many_lines,
    reason = "one validation pass over the manifest, in its order"
)]
pub fn decode_lists<'a>(
    manifest_key: &str,
    value: &[u8],
    chunk: impl Fn(&str) -> (String, Option<&'a [u8]>),
    limits: &PrefixLimits,
) -> Result<(Manifest, FleetLists), KeyError> {
    if value.len() > MAX_MANIFEST_BYTES {
        return Err(KeyError::new(
            manifest_key,
            format!(
                "{} bytes, over the {MAX_MANIFEST_BYTES}-byte limit of a manifest",
                value.len()
            ),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(value)
        .map_err(|e| KeyError::new(manifest_key, format!("not a manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(KeyError::new(
            manifest_key,
            format!(
                "format {} is not {MANIFEST_FORMAT}: this agent is too old for it",
                manifest.format
            ),
        ));
    }
    if manifest.pools.len() > MAX_POOLS - 1 {
        return Err(KeyError::new(
            manifest_key,
            format!(
                "pools: {} given, at most {}",
                manifest.pools.len(),
                MAX_POOLS - 1
            ),
        ));
    }
    let read = |what: &str, kind: ListKind, r: &ListRef| -> Result<PrefixSet, KeyError> {
        // Exemptions and relays broader than this box's bounds are refused,
        // as in its own list files: one `0.0.0.0/0` would open port 25.
        let admit = |prefix: &Prefix| limits.check(kind, prefix);
        let mut set = PrefixSet::default();
        for hash in &r.chunks {
            if hash.len() != 64
                || !hash
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(KeyError::new(
                    manifest_key,
                    format!("{what}: {hash:?} is not a SHA-256 chunk name"),
                ));
            }
            let (key, value) = chunk(hash);
            let value = value.ok_or_else(|| {
                KeyError::new(&key, format!("missing, but the manifest's {what} names it"))
            })?;
            decode_chunk(&key, hash, value, &mut set, &admit)?;
        }
        if set.len() as u64 != r.prefixes {
            return Err(KeyError::new(
                manifest_key,
                format!(
                    "{what}: the chunks hold {} prefixes, the manifest says {}",
                    set.len(),
                    r.prefixes
                ),
            ));
        }
        Ok(set)
    };
    let mut lists = FleetLists {
        dynamic: read("dynamic", ListKind::Dynamic, &manifest.dynamic)?,
        exempt: read("exempt", ListKind::Exempt, &manifest.exempt)?,
        allowed_destinations: read(
            "allowed_destinations",
            ListKind::AllowedDestinations,
            &manifest.allowed_destinations,
        )?,
        pools: Vec::new(),
    };
    for (i, pool) in manifest.pools.iter().enumerate() {
        let what = format!("pools[{i}]");
        if !crate::policy::valid_pool_name(&pool.name) {
            return Err(KeyError::new(
                manifest_key,
                format!(
                    "{what}.name: {:?}: use 1-32 of a-z, 0-9, '-', '_'",
                    pool.name
                ),
            ));
        }
        if pool.name == DEFAULT_POOL || lists.pools.iter().any(|p: &FleetPool| p.name == pool.name)
        {
            return Err(KeyError::new(
                manifest_key,
                format!("{what}.name: pool name {:?} is taken", pool.name),
            ));
        }
        let action = parse_action(&pool.action).ok_or_else(|| {
            KeyError::new(
                manifest_key,
                format!(
                    "{what}.action: {:?} is not monitor, drop or reject",
                    pool.action
                ),
            )
        })?;
        let prefixes = read(&what, ListKind::Dynamic, &pool.list)?;
        for prefix in prefixes.iter() {
            let other = if lists.dynamic.v4.contains(prefix) || lists.dynamic.v6.contains(prefix) {
                Some(DEFAULT_POOL)
            } else {
                lists
                    .pools
                    .iter()
                    .find(|p| p.prefixes.v4.contains(prefix) || p.prefixes.v6.contains(prefix))
                    .map(|p| p.name.as_str())
            };
            if let Some(other) = other {
                return Err(KeyError::new(
                    manifest_key,
                    format!(
                        "{what}: {prefix} is also in pool {other:?}: a prefix belongs to one pool"
                    ),
                ));
            }
        }
        lists.pools.push(FleetPool {
            name: pool.name.clone(),
            action: Some(action),
            prefixes,
        });
    }
    Ok((manifest, lists))
}

/// Decodes a grant under `key`, whose name carries `prefix_text`.
pub fn decode_grant(
    key: &str,
    prefix_text: &str,
    value: &[u8],
    kind: ListKind,
    limits: &PrefixLimits,
) -> Result<Grant, KeyError> {
    if value.len() > MAX_GRANT_BYTES {
        return Err(KeyError::new(
            key,
            format!(
                "{} bytes, over the {MAX_GRANT_BYTES}-byte limit of a grant",
                value.len()
            ),
        ));
    }
    let named: Prefix = prefix_text
        .parse()
        .map_err(|e| KeyError::new(key, format!("the key does not end in a prefix: {e}")))?;
    if named.to_string() != prefix_text {
        return Err(KeyError::new(
            key,
            format!("the key's prefix is not written canonically (as {named})"),
        ));
    }
    let grant: Grant = serde_json::from_slice(value)
        .map_err(|e| KeyError::new(key, format!("not a grant: {e}")))?;
    let prefix: Prefix = grant
        .prefix
        .parse()
        .map_err(|e| KeyError::new(key, format!("prefix: {e}")))?;
    if prefix != named {
        return Err(KeyError::new(
            key,
            format!("prefix {prefix} differs from the key's {named}"),
        ));
    }
    limits
        .check(kind, &prefix)
        .map_err(|e| KeyError::new(key, e.to_string()))?;
    if grant.reason.len() > 1024 || grant.actor.len() > 256 {
        return Err(KeyError::new(key, "reason (1024) or actor (256) too long"));
    }
    Ok(grant)
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
