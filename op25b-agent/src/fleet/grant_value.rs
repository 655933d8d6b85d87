//! A grant's value under `P/policy/grants/<list>/<prefix>`, decoded and
//! checked against its key and this box's prefix bounds; and a grant by
//! subscriber under `P/policy/grants/exempt_subscribers/<name>`, checked
//! against its key and the rules of a User-Name.

use super::codec::KeyError;
use crate::policy::{
    grants::Grant,
    limits::PrefixLimits,
    prefix::Prefix,
    subscriber_grants::{check_name, SubscriberGrant},
    ListKind,
};

/// A grant's JSON: a few hundred bytes; anything near this is not a grant.
pub const MAX_GRANT_BYTES: usize = 4096;
fn check_size(key: &str, value: &[u8]) -> Result<(), KeyError> {
    if value.len() > MAX_GRANT_BYTES {
        return Err(KeyError::new(
            key,
            format!(
                "{} bytes, over the {MAX_GRANT_BYTES}-byte limit of a grant",
                value.len()
            ),
        ));
    }
    Ok(())
}

fn check_texts(key: &str, reason: &str, actor: &str) -> Result<(), KeyError> {
    if reason.len() > 1024 || actor.len() > 256 {
        return Err(KeyError::new(key, "reason (1024) or actor (256) too long"));
    }
    Ok(())
}

/// Decodes a grant by subscriber under `key`, whose name carries `name`.
pub fn decode_subscriber_grant(
    key: &str,
    name: &str,
    value: &[u8],
) -> Result<SubscriberGrant, KeyError> {
    check_size(key, value)?;
    check_name(name).map_err(|e| KeyError::new(key, format!("the key's name: {e}")))?;
    let grant: SubscriberGrant = serde_json::from_slice(value)
        .map_err(|e| KeyError::new(key, format!("not a grant by subscriber: {e}")))?;
    if grant.subscriber != name {
        return Err(KeyError::new(
            key,
            format!(
                "subscriber {:?} differs from the key's {name:?}",
                grant.subscriber
            ),
        ));
    }
    check_texts(key, &grant.reason, &grant.actor)?;
    Ok(grant)
}

/// Decodes a grant under `key`, whose name carries `prefix_text`.
pub fn decode_grant(
    key: &str,
    prefix_text: &str,
    value: &[u8],
    kind: ListKind,
    limits: &PrefixLimits,
) -> Result<Grant, KeyError> {
    check_size(key, value)?;
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
    check_texts(key, &grant.reason, &grant.actor)?;
    Ok(grant)
}
