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

pub use super::{
    chunks::{chunk_list, decode_chunk, sha256_hex, MAX_CHUNK_BYTES},
    grant_value::{decode_grant, decode_subscriber_grant, MAX_GRANT_BYTES},
};
use crate::policy::{
    limits::PrefixLimits,
    prefix::{Prefix, PrefixSet},
    ListKind, Policy, DEFAULT_POOL,
};

pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
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
        set.compact();
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

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
