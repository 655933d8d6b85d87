//! The fleet's keys in etcd, under one prefix `P` per fleet:
//!
//! ```text
//! P/policy/grants/exempt/<prefix>                 one run-time exemption (Grant JSON)
//! P/policy/grants/allowed_destinations/<prefix>   one allowed destination (Grant JSON)
//! P/policy/grants/exempt_subscribers/<name>       one exemption of a RADIUS subscriber (SubscriberGrant JSON)
//! P/policy/lists/manifest                         the published lists: pools, actions, chunk names
//! P/policy/lists/chunks/<sha256>                  <= 1 MB of list text, named by its content hash
//! P/policy/changed                                touched by every op25b write: the policy's revision
//! P/audit/<unix ns>-<node>                        one audit line per change (not watched)
//! P/agents/<node>                                 registration, kept alive on a lease (not watched)
//! P/nodes/<node>                                  every node ever registered: finds the gone ones
//! ```
//!
//! Agents watch `P/policy/` only: a support-desk grant is one small key and
//! one watch event; registration and audit traffic never reaches them.

use crate::policy::{limits::PrefixLimits, prefix::Prefix, ListKind};

/// Key names for one fleet prefix, and the bounds the values under them
/// must keep (the reading box's `policy.prefix_limits`: a fleet value must
/// not open more than a local one may).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
    limits: PrefixLimits,
}

/// What a key under `P/policy/` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyKey<'a> {
    /// A grant; `prefix` is the key's text after the list name (not yet validated).
    Grant {
        kind: ListKind,
        prefix: &'a str,
    },
    /// An exemption by subscriber; `name` is the key's text after the
    /// directory (not yet validated).
    SubscriberGrant {
        name: &'a str,
    },
    Manifest,
    Chunk {
        hash: &'a str,
    },
    Changed,
    /// Anything else under `P/policy/`: refused by name.
    Unknown,
}

/// The directory of grants by subscriber under `P/policy/grants/`.
pub const SUBSCRIBER_GRANTS: &str = "exempt_subscribers";

/// The grant lists that live in etcd, with their names in keys.
pub const GRANT_KINDS: [ListKind; 2] = [ListKind::Exempt, ListKind::AllowedDestinations];

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
            limits: PrefixLimits::default(),
        }
    }

    /// The same keys, with values bounded by `limits` instead of the defaults.
    #[must_use]
    pub fn with_limits(self, limits: PrefixLimits) -> Self {
        Self { limits, ..self }
    }

    pub fn limits(&self) -> &PrefixLimits {
        &self.limits
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What agents watch.
    pub fn policy_dir(&self) -> String {
        format!("{}/policy/", self.prefix)
    }

    pub fn grants_dir(&self, kind: ListKind) -> String {
        format!("{}/policy/grants/{}/", self.prefix, kind.name())
    }

    pub fn grant_key(&self, kind: ListKind, prefix: &Prefix) -> String {
        format!("{}{prefix}", self.grants_dir(kind))
    }

    pub fn subscriber_grants_dir(&self) -> String {
        format!("{}/policy/grants/{SUBSCRIBER_GRANTS}/", self.prefix)
    }

    pub fn subscriber_grant_key(&self, name: &str) -> String {
        format!("{}{name}", self.subscriber_grants_dir())
    }

    pub fn manifest_key(&self) -> String {
        format!("{}/policy/lists/manifest", self.prefix)
    }

    pub fn chunks_dir(&self) -> String {
        format!("{}/policy/lists/chunks/", self.prefix)
    }

    pub fn chunk_key(&self, hash: &str) -> String {
        format!("{}{hash}", self.chunks_dir())
    }

    pub fn changed_key(&self) -> String {
        format!("{}/policy/changed", self.prefix)
    }

    pub fn audit_dir(&self) -> String {
        format!("{}/audit/", self.prefix)
    }

    /// Sorts by time: zero-padded nanoseconds.
    pub fn audit_key(&self, unix_nanos: u128, node: &str) -> String {
        format!("{}{unix_nanos:020}-{node}", self.audit_dir())
    }

    pub fn agents_dir(&self) -> String {
        format!("{}/agents/", self.prefix)
    }

    pub fn agent_key(&self, node: &str) -> String {
        format!("{}{node}", self.agents_dir())
    }

    pub fn nodes_dir(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn node_key(&self, node: &str) -> String {
        format!("{}{node}", self.nodes_dir())
    }

    /// Classifies a key under `P/policy/`; `None` for keys outside it.
    pub fn classify<'a>(&self, key: &'a str) -> Option<PolicyKey<'a>> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("/policy/")?;
        if rest == "changed" {
            return Some(PolicyKey::Changed);
        }
        if rest == "lists/manifest" {
            return Some(PolicyKey::Manifest);
        }
        if let Some(hash) = rest.strip_prefix("lists/chunks/") {
            return Some(PolicyKey::Chunk { hash });
        }
        if let Some(grant) = rest.strip_prefix("grants/") {
            if let Some(name) = grant
                .strip_prefix(SUBSCRIBER_GRANTS)
                .and_then(|r| r.strip_prefix('/'))
            {
                return Some(PolicyKey::SubscriberGrant { name });
            }
            for kind in GRANT_KINDS {
                if let Some(prefix) = grant
                    .strip_prefix(kind.name())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    return Some(PolicyKey::Grant { kind, prefix });
                }
            }
        }
        Some(PolicyKey::Unknown)
    }
}

/// The end of the range of keys starting with `prefix` (etcd's prefix range).
pub fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_classify() {
        let l = Layout::new("/op25b/");
        let p: Prefix = "2001:db8:1000::7/128".parse().unwrap();
        let key = l.grant_key(ListKind::Exempt, &p);
        assert_eq!(key, "/op25b/policy/grants/exempt/2001:db8:1000::7/128");
        assert_eq!(
            l.classify(&key),
            Some(PolicyKey::Grant {
                kind: ListKind::Exempt,
                prefix: "2001:db8:1000::7/128"
            })
        );
        let relay = l.grant_key(
            ListKind::AllowedDestinations,
            &"192.0.2.26/32".parse().unwrap(),
        );
        assert!(matches!(
            l.classify(&relay),
            Some(PolicyKey::Grant {
                kind: ListKind::AllowedDestinations,
                prefix: "192.0.2.26/32"
            })
        ));
        let alice = l.subscriber_grant_key("alice@example.jp");
        assert_eq!(
            alice,
            "/op25b/policy/grants/exempt_subscribers/alice@example.jp"
        );
        assert_eq!(
            l.classify(&alice),
            Some(PolicyKey::SubscriberGrant {
                name: "alice@example.jp"
            })
        );
        assert_eq!(l.classify(&l.manifest_key()), Some(PolicyKey::Manifest));
        assert_eq!(
            l.classify(&l.chunk_key("ab12")),
            Some(PolicyKey::Chunk { hash: "ab12" })
        );
        assert_eq!(l.classify(&l.changed_key()), Some(PolicyKey::Changed));
        assert_eq!(
            l.classify("/op25b/policy/grants/dynamic/1.2.3.4/32"),
            Some(PolicyKey::Unknown)
        );
        assert_eq!(l.classify(&l.agent_key("edge1")), None);
        assert_eq!(l.classify("/op25bx/policy/changed"), None);
        assert!(l.audit_key(5, "n") < l.audit_key(40, "n"));
        assert!(l.policy_dir().starts_with(l.prefix()));
    }

    #[test]
    fn prefix_range_end() {
        assert_eq!(range_end("/a/"), b"/a0".to_vec());
        assert_eq!(range_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
