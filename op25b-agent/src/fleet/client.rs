//! The etcd operations op25b needs, shared by the agent's fleet thread and
//! the `fleet` commands: connect (TLS, user), read the policy, write a grant
//! or publish lists in one transaction with its audit line.

use std::{collections::BTreeMap, time::Duration};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp,
};
use serde::Serialize;

pub use super::grant_client::{delete_grant, list_grants, put_grant, read_decoded};
use super::{
    codec::{decode_lists, encode_lists, FleetLists, KeyError, Manifest},
    layout::Layout,
};
use crate::{
    config::fleet::FleetConfig,
    policy::{grants::Grant, ListKind},
};

/// Big enough for a full read of a fleet with several million-prefix lists.
pub const MAX_RESPONSE_BYTES: usize = 1 << 30;
/// How often a write retries when another writer changed the same key in between.
pub(super) const WRITE_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("etcd ({context}): {source}")]
    Etcd {
        context: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("fleet.{key} {}: {source}", path.display())]
    File {
        key: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(#[from] KeyError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Snapshot(String),
}

pub fn etcd(context: impl Into<String>) -> impl FnOnce(etcd_client::Error) -> FleetError {
    let context = context.into();
    move |source| FleetError::Etcd { context, source }
}

fn read(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, FleetError> {
    std::fs::read(path).map_err(|source| FleetError::File {
        key,
        path: path.to_owned(),
        source,
    })
}

/// Connects to the configured endpoints (TLS and user when configured).
pub async fn connect(config: &FleetConfig) -> Result<Client, FleetError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(15))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true);
    if let Some(ca) = &config.ca_file {
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read("ca_file", ca)?));
        if let Some(identity) = &config.identity {
            tls = tls.identity(Identity::from_pem(
                read("cert_file", &identity.cert_file)?,
                read("key_file", &identity.key_file)?,
            ));
        }
        options = options.with_tls(tls);
    }
    if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
        let password = String::from_utf8_lossy(&read("password_file", file)?)
            .trim()
            .to_owned();
        options = options.with_user(user.clone(), password);
    }
    Client::connect(&config.etcd_endpoints, Some(options))
        .await
        .map_err(etcd(format!(
            "connecting to {}",
            config.etcd_endpoints.join(", ")
        )))
}

/// A read of every key under a directory.
pub struct DirRead {
    pub kvs: BTreeMap<String, Vec<u8>>,
    /// The store revision the read saw (a watch resumes after it).
    pub revision: i64,
    /// The newest mod_revision among the keys: what agents report as the
    /// policy revision (every op25b write touches `P/policy/changed`, so
    /// agents that read and agents that watched report the same number).
    pub newest_change: i64,
}

/// Every key under `dir` with its value (at `revision`, or now if 0).
pub async fn read_dir(client: &Client, dir: &str, revision: i64) -> Result<DirRead, FleetError> {
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let mut options = GetOptions::new().with_prefix();
    if revision > 0 {
        options = options.with_revision(revision);
    }
    let mut response = kv
        .get(dir, Some(options))
        .await
        .map_err(etcd(format!("reading {dir}")))?;
    let header_revision = response
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    let mut newest_change = 0;
    let kvs = response
        .take_kvs()
        .into_iter()
        .map(|kv| {
            newest_change = newest_change.max(kv.mod_revision());
            let (k, v) = kv.into_key_value();
            (String::from_utf8_lossy(&k).into_owned(), v)
        })
        .collect();
    Ok(DirRead {
        kvs,
        revision: header_revision,
        newest_change,
    })
}

/// One audit line, stored with the change it describes.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    pub time: String,
    pub node: String,
    pub actor: String,
    pub action: String,
    pub list: String,
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub reason: String,
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The ops every op25b write carries besides its change: the audit line and
/// the touch of `P/policy/changed` that marks the policy's revision.
/// `ops` and the bookkeeping writes, in one transaction, only if `condition` holds.
fn with_bookkeeping(
    layout: &Layout,
    condition: Compare,
    mut ops: Vec<TxnOp>,
    audit: &AuditRecord,
) -> Txn {
    ops.extend(bookkeeping(layout, audit));
    Txn::new().when([condition]).and_then(ops)
}

/// `op` and the bookkeeping, only if `key` is still at `revision` (no lost update).
pub(super) fn if_at_revision(
    layout: &Layout,
    key: &str,
    revision: i64,
    op: TxnOp,
    audit: &AuditRecord,
) -> Txn {
    let unchanged = Compare::mod_revision(key.to_owned(), CompareOp::Equal, revision);
    with_bookkeeping(layout, unchanged, vec![op], audit)
}

fn bookkeeping(layout: &Layout, audit: &AuditRecord) -> Vec<TxnOp> {
    let line = serde_json::to_string(audit).expect("audit serializes");
    vec![
        TxnOp::put(
            layout.audit_key(unix_nanos(), &audit.node),
            line.clone(),
            None,
        ),
        TxnOp::put(layout.changed_key(), line, None),
    ]
}

/// The grant's current value and mod revision (0 when absent).
pub(super) async fn current(
    client: &Client,
    key: &str,
) -> Result<(Option<Vec<u8>>, i64), FleetError> {
    let mut kv = client.kv_client();
    let response = kv
        .get(key, None)
        .await
        .map_err(etcd(format!("reading {key}")))?;
    Ok(response.kvs().first().map_or((None, 0), |kv| {
        (Some(kv.value().to_vec()), kv.mod_revision())
    }))
}

/// Deletes a grant only if it still holds `value` (expiry clean-up: never
/// removes a grant renewed meanwhile). True if this call deleted it.
pub async fn delete_if_unchanged(
    client: &Client,
    layout: &Layout,
    key: &str,
    value: &[u8],
    audit: &AuditRecord,
) -> Result<bool, FleetError> {
    let txn = with_bookkeeping(
        layout,
        Compare::value(key, CompareOp::Equal, value),
        vec![TxnOp::delete(key, None)],
        audit,
    );
    let response = client
        .kv_client()
        .txn(txn)
        .await
        .map_err(etcd(format!("expiring {key}")))?;
    Ok(response.succeeded())
}

/// The published lists, decoded, and the manifest's mod revision (0: none published).
pub async fn read_lists(
    client: &Client,
    layout: &Layout,
) -> Result<(Option<Manifest>, FleetLists, i64), FleetError> {
    let manifest_key = layout.manifest_key();
    let (value, revision) = current(client, &manifest_key).await?;
    let Some(value) = value else {
        return Ok((None, FleetLists::default(), 0));
    };
    // The chunks as of the manifest's revision: a consistent list even if a push races this read.
    let chunks = read_dir(client, &layout.chunks_dir(), revision).await?.kvs;
    let (manifest, lists) = decode_lists(
        &manifest_key,
        &value,
        |hash| {
            let key = layout.chunk_key(hash);
            let value = chunks.get(&key).map(Vec::as_slice);
            (key, value)
        },
        layout.limits(),
    )?;
    Ok((Some(manifest), lists, revision))
}

/// What a publish did.
#[derive(Debug, Default)]
pub struct Published {
    pub chunks_written: usize,
    pub chunks_kept: usize,
    pub chunks_deleted: usize,
    pub revision: i64,
}

/// Publishes `lists`: writes the chunks that are not there yet (one
/// request each, below etcd's request limit), then in one transaction —
/// only if the manifest is still the one read at `expected_revision` — the
/// new manifest, the audit line, and the deletion of chunks nothing names
/// any more. Watchers see the old lists or the new, never a mix.
pub async fn publish_lists(
    client: &Client,
    layout: &Layout,
    lists: &FleetLists,
    expected_revision: i64,
    audit: &AuditRecord,
) -> Result<Published, FleetError> {
    let (manifest, chunks) = encode_lists(lists, &audit.actor, crate::clock::now_unix());
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let existing = kv
        .get(
            layout.chunks_dir(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .map_err(etcd("listing chunks"))?;
    let existing: Vec<String> = existing
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    let mut published = Published::default();
    for (hash, text) in &chunks {
        let key = layout.chunk_key(hash);
        if existing.contains(&key) {
            published.chunks_kept += 1;
            continue;
        }
        kv.put(key.clone(), text.as_bytes(), None)
            .await
            .map_err(etcd(format!("writing {key}")))?;
        published.chunks_written += 1;
    }
    let wanted: Vec<String> = chunks.keys().map(|h| layout.chunk_key(h)).collect();
    let mut ops = vec![TxnOp::put(
        layout.manifest_key(),
        serde_json::to_vec(&manifest).expect("manifest serializes"),
        None,
    )];
    for key in existing.iter().filter(|k| !wanted.contains(k)) {
        ops.push(TxnOp::delete(key.clone(), None));
        published.chunks_deleted += 1;
    }
    let manifest_unchanged =
        Compare::mod_revision(layout.manifest_key(), CompareOp::Equal, expected_revision);
    let txn = with_bookkeeping(layout, manifest_unchanged, ops, audit);
    let response = kv.txn(txn).await.map_err(etcd("publishing the manifest"))?;
    if !response.succeeded() {
        return Err(FleetError::Conflict(
            "someone else published the lists meanwhile: nothing changed; run fleet push again to see the new diff".into(),
        ));
    }
    published.revision = response
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    Ok(published)
}

/// The audit record of `grant` added to `kind`.
pub fn grant_added(node: &str, kind: ListKind, grant: &Grant) -> AuditRecord {
    let (prefix, expires_at) = (&grant.prefix, grant.expires_at);
    audit(
        node,
        &grant.actor,
        "add",
        kind.name(),
        prefix,
        expires_at,
        &grant.reason,
    )
}

/// An audit record stamped now.
pub fn audit(
    node: &str,
    actor: &str,
    action: &str,
    list: &str,
    prefix: &str,
    expires_at: Option<u64>,
    reason: &str,
) -> AuditRecord {
    AuditRecord {
        time: crate::clock::rfc3339(crate::clock::now_unix()),
        node: node.to_owned(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        list: list.to_owned(),
        prefix: prefix.to_owned(),
        expires_at: expires_at.map(crate::clock::rfc3339),
        reason: reason.to_owned(),
    }
}
