//! Exemptions granted at run time to a subscriber (a RADIUS User-Name)
//! rather than to an address: they follow the subscriber's sessions, as
//! `[policy] exempt_subscribers` does, and expire like other grants.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::subscribers::MAX_NAME;

/// A run-time exemption of a subscriber.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubscriberGrant {
    pub subscriber: String,
    /// Unix seconds; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub actor: String,
    pub created_at: u64,
}

impl SubscriberGrant {
    pub fn is_active(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// The subscribers of `grants` exempt at `now`.
pub fn active(grants: &BTreeMap<String, SubscriberGrant>, now: u64) -> HashSet<String> {
    grants
        .values()
        .filter(|g| g.is_active(now))
        .map(|g| g.subscriber.clone())
        .collect()
}

/// A subscriber name as a grant takes it: a User-Name as the NAS sends it
/// (compared exactly), at most 253 octets, without spaces or control
/// characters (which no list file could hold either).
pub fn check_name(name: &str) -> Result<&str, String> {
    if name.is_empty() {
        return Err("subscriber: empty name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "subscriber: {} octets; a User-Name has at most {MAX_NAME}",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "subscriber {name:?}: no spaces or control characters in a User-Name"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_list_file_entries() {
        assert_eq!(check_name("alice@example.jp"), Ok("alice@example.jp"));
        assert!(check_name("").is_err());
        assert!(check_name("alice bob").unwrap_err().contains("spaces"));
        assert!(check_name("a\u{7}").is_err());
        assert!(check_name(&"a".repeat(254)).unwrap_err().contains("253"));
    }

    #[test]
    fn only_unexpired_grants_are_active() {
        let grant = |name: &str, expires_at| SubscriberGrant {
            subscriber: name.into(),
            expires_at,
            reason: String::new(),
            actor: "t".into(),
            created_at: 0,
        };
        let grants = BTreeMap::from([
            ("alice".to_owned(), grant("alice", Some(100))),
            ("bob".to_owned(), grant("bob", None)),
        ]);
        assert_eq!(active(&grants, 99).len(), 2);
        assert_eq!(active(&grants, 100), HashSet::from(["bob".to_owned()]));
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::policy::grants::GrantState;

    #[test]
    fn state_files_without_subscribers_load_and_subscriber_grants_expire_and_persist() {
        let old: GrantState =
            serde_json::from_str(r#"{"exempt": {}, "allowed_destinations": {}}"#).unwrap();
        assert!(old.exempt_subscribers.is_empty());
        assert!(!serde_json::to_string(&old)
            .unwrap()
            .contains("exempt_subscribers"));

        let mut state = GrantState::default();
        state.exempt_subscribers.insert(
            "alice@example.jp".into(),
            SubscriberGrant {
                subscriber: "alice@example.jp".into(),
                expires_at: Some(1_000),
                reason: "ticket 1234".into(),
                actor: "desk".into(),
                created_at: 10,
            },
        );
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<GrantState>(&text).unwrap(), state);
        assert_eq!(state.next_expiry(500), Some(1_000));
        assert!(!state.prune(999));
        assert!(state.prune(1_000));
        assert!(state.exempt_subscribers.is_empty());
    }
}
