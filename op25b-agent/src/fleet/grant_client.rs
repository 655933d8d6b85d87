//! Grants in etcd, by prefix (`P/policy/grants/<list>/<prefix>`) and by
//! subscriber (`P/policy/grants/exempt_subscribers/<name>`): each written or
//! deleted in one transaction with its audit line, conditional on the key
//! as read; shared by the agent's fleet thread and the `fleet` commands.

use etcd_client::{Client, TxnOp};

use super::{
    client::{
        self, current, etcd, if_at_revision, read_dir, AuditRecord, FleetError, WRITE_ATTEMPTS,
    },
    codec::{decode_grant, decode_subscriber_grant, KeyError},
    layout::Layout,
};
use crate::policy::{
    grants::Grant,
    prefix::Prefix,
    subscriber_grants::{check_name, SubscriberGrant},
    ListKind,
};

/// Writes `value` under `key` and its audit line in one transaction,
/// conditional on the key being as read: a concurrent writer of the same
/// grant is never overwritten unseen (the loser re-reads and audits what it
/// replaced). Returns the value it replaced, if any.
async fn put_unless_changed(
    client: &Client,
    layout: &Layout,
    key: &str,
    value: String,
    audit: &AuditRecord,
) -> Result<Option<Vec<u8>>, FleetError> {
    let mut kv = client.kv_client();
    for _ in 0..WRITE_ATTEMPTS {
        let (old, revision) = current(client, key).await?;
        let op = TxnOp::put(key.to_owned(), value.clone(), None);
        let txn = if_at_revision(layout, key, revision, op, audit);
        let response = kv.txn(txn).await.map_err(etcd(format!("writing {key}")))?;
        if response.succeeded() {
            return Ok(old);
        }
    }
    Err(FleetError::Conflict(format!(
        "{key}: changed by others {WRITE_ATTEMPTS} times while writing; try again"
    )))
}

/// Deletes `key` (conditional on it being as read) with its audit line;
/// `NotFound(absent)` when there is nothing to delete.
async fn delete_existing(
    client: &Client,
    layout: &Layout,
    key: &str,
    absent: String,
    audit: &AuditRecord,
) -> Result<(), FleetError> {
    let mut kv = client.kv_client();
    for _ in 0..WRITE_ATTEMPTS {
        let (old, revision) = current(client, key).await?;
        if old.is_none() {
            return Err(FleetError::NotFound(absent));
        }
        let txn = if_at_revision(layout, key, revision, TxnOp::delete(key, None), audit);
        if kv
            .txn(txn)
            .await
            .map_err(etcd(format!("deleting {key}")))?
            .succeeded()
        {
            return Ok(());
        }
    }
    Err(FleetError::Conflict(format!(
        "{key}: changed by others {WRITE_ATTEMPTS} times while deleting; try again"
    )))
}

/// Writes `grant` and its audit line in one transaction (see
/// [`put_unless_changed`]). Returns the grant it replaced, if any.
pub async fn put_grant(
    client: &Client,
    layout: &Layout,
    kind: ListKind,
    grant: &Grant,
    audit: &AuditRecord,
) -> Result<Option<Grant>, FleetError> {
    let prefix: Prefix = grant
        .prefix
        .parse()
        .map_err(|e| KeyError::new("prefix", format!("{e}")))?;
    let key = layout.grant_key(kind, &prefix);
    let value = serde_json::to_string(grant).expect("grant serializes");
    // Nothing goes in that the agents would refuse (a prefix broader than
    // the limits, an oversized value): refused here, with the reason.
    decode_grant(
        &key,
        &prefix.to_string(),
        value.as_bytes(),
        kind,
        layout.limits(),
    )?;
    let old = put_unless_changed(client, layout, &key, value, audit).await?;
    Ok(old.and_then(|v| decode_grant(&key, &grant.prefix, &v, kind, layout.limits()).ok()))
}

/// Deletes a grant (conditional on it being as read) with its audit line.
pub async fn delete_grant(
    client: &Client,
    layout: &Layout,
    kind: ListKind,
    prefix: &Prefix,
    audit: &AuditRecord,
) -> Result<(), FleetError> {
    let key = layout.grant_key(kind, prefix);
    let absent = format!("{prefix} is not granted in the fleet's {}", kind.name());
    delete_existing(client, layout, &key, absent, audit).await
}

/// Every value under `dir`, decoded by `decode(key, name after dir, value)`;
/// values that fail validation come back as errors naming their key.
pub async fn read_decoded<T>(
    client: &Client,
    dir: &str,
    decode: impl Fn(&str, &str, &[u8]) -> Result<T, KeyError>,
) -> Result<(Vec<T>, Vec<KeyError>), FleetError> {
    let kvs = read_dir(client, dir, 0).await?.kvs;
    let (mut decoded, mut errors) = (Vec::new(), Vec::new());
    for (key, value) in kvs {
        let name = key.strip_prefix(dir).unwrap_or_default();
        match decode(&key, name, &value) {
            Ok(v) => decoded.push(v),
            Err(e) => errors.push(e),
        }
    }
    Ok((decoded, errors))
}

/// The grants of one list in etcd, and the refused values.
pub async fn list_grants(
    client: &Client,
    layout: &Layout,
    kind: ListKind,
) -> Result<(Vec<Grant>, Vec<KeyError>), FleetError> {
    read_decoded(client, &layout.grants_dir(kind), |key, prefix, value| {
        decode_grant(key, prefix, value, kind, layout.limits())
    })
    .await
}

/// The audit record of a change to `subscriber`'s exemption.
pub fn subscriber_audit(
    node: &str,
    actor: &str,
    action: &str,
    subscriber: &str,
    expires_at: Option<u64>,
    reason: &str,
) -> AuditRecord {
    let what = format!("subscriber {subscriber}");
    client::audit(
        node,
        actor,
        action,
        "exempt_subscribers",
        &what,
        expires_at,
        reason,
    )
}

/// The audit record of `grant` added.
pub fn subscriber_added(node: &str, grant: &SubscriberGrant) -> AuditRecord {
    let (name, expires_at) = (&grant.subscriber, grant.expires_at);
    subscriber_audit(node, &grant.actor, "add", name, expires_at, &grant.reason)
}

/// Writes `grant` with its audit line; returns the grant it replaced, if any.
pub async fn put_subscriber(
    client: &Client,
    layout: &Layout,
    grant: &SubscriberGrant,
    audit: &AuditRecord,
) -> Result<Option<SubscriberGrant>, FleetError> {
    let name = check_name(&grant.subscriber).map_err(|e| KeyError::new("subscriber", e))?;
    let key = layout.subscriber_grant_key(name);
    let value = serde_json::to_string(grant).expect("grant serializes");
    decode_subscriber_grant(&key, name, value.as_bytes())?;
    let old = put_unless_changed(client, layout, &key, value, audit).await?;
    Ok(old.and_then(|v| decode_subscriber_grant(&key, name, &v).ok()))
}

/// Deletes `name`'s exemption with its audit line.
pub async fn delete_subscriber(
    client: &Client,
    layout: &Layout,
    name: &str,
    audit: &AuditRecord,
) -> Result<(), FleetError> {
    let key = layout.subscriber_grant_key(name);
    let absent = format!("subscriber {name:?} is not granted in the fleet's exemptions");
    delete_existing(client, layout, &key, absent, audit).await
}

/// The grants by subscriber in etcd, and the refused values (by key).
pub async fn list_subscribers(
    client: &Client,
    layout: &Layout,
) -> Result<(Vec<SubscriberGrant>, Vec<KeyError>), FleetError> {
    let dir = layout.subscriber_grants_dir();
    read_decoded(client, &dir, decode_subscriber_grant).await
}
