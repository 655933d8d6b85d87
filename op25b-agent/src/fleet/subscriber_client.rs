//! Grants by subscriber in etcd (`P/policy/grants/exempt_subscribers/<name>`):
//! written and deleted like prefix grants, one transaction with the audit
//! line, shared by the agent's fleet thread and `fleet exempt --subscriber`.

use etcd_client::Client;

use super::{
    client::{self, delete_existing, put_unless_changed, AuditRecord, FleetError},
    codec::{decode_subscriber_grant, KeyError},
    layout::Layout,
};
use crate::policy::subscriber_grants::{check_name, SubscriberGrant};

/// The audit record of a change to `subscriber`'s exemption.
pub fn audit(
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

/// Writes `grant` with its audit line; returns the grant it replaced, if any.
pub async fn put(
    client: &Client,
    layout: &Layout,
    grant: &SubscriberGrant,
    audit: &AuditRecord,
) -> Result<Option<SubscriberGrant>, FleetError> {
    let name = check_name(&grant.subscriber).map_err(|e| KeyError::new("subscriber", e))?;
    let key = layout.subscriber_grant_key(name);
    let value = serde_json::to_string(grant).expect("grant serializes");
    let old = put_unless_changed(client, layout, &key, value, audit).await?;
    Ok(old.and_then(|v| decode_subscriber_grant(&key, name, &v).ok()))
}

/// Deletes `name`'s exemption with its audit line.
pub async fn delete(
    client: &Client,
    layout: &Layout,
    name: &str,
    audit: &AuditRecord,
) -> Result<(), FleetError> {
    let key = layout.subscriber_grant_key(name);
    let absent = format!("subscriber {name:?} is not granted in the fleet's exemptions");
    delete_existing(client, layout, &key, absent, audit).await
}

/// The grants by subscriber in etcd; values that fail validation come
/// back as errors naming their key.
pub async fn list(
    client: &Client,
    layout: &Layout,
) -> Result<(Vec<SubscriberGrant>, Vec<KeyError>), FleetError> {
    let dir = layout.subscriber_grants_dir();
    let kvs = client::read_dir(client, &dir, 0).await?.kvs;
    let mut grants = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in kvs {
        let name = key.strip_prefix(&dir).unwrap_or_default();
        match decode_subscriber_grant(&key, name, &value) {
            Ok(g) => grants.push(g),
            Err(e) => errors.push(e),
        }
    }
    Ok((grants, errors))
}
