//! The change from the policy the maps hold to the one wanted, computed as
//! a value before anything is written: which entries go in, whether the
//! runtime configuration changes, which entries come out. The order is the
//! contract that makes a reload gap-free: every insert before the runtime
//! configuration, the runtime configuration before every removal, and an
//! entry in both policies never touched.
//!
//! The dynamic and exempt lists are not entries here: they are one class
//! table (`ipv4_class`), which the class writer diffs against what the
//! kernel holds, between the inserts and the runtime configuration.

use op25b_common::{abi::RuntimeConfig, BlockedPorts};

use crate::policy::{prefix::Prefix, ListKind, Policy};

/// One map entry to write: a new prefix, or a dynamic prefix whose pool
/// changed (an in-place update, atomic per entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insert {
    pub list: ListKind,
    pub prefix: Prefix,
    /// The trie value: the pool id for dynamic prefixes, 0 otherwise.
    pub value: u32,
    /// False for a new entry; true when the prefix is there with another value.
    pub replaces: bool,
}

/// One map entry to delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removal {
    pub list: ListKind,
    pub prefix: Prefix,
}

/// Everything that differs, in the order it must be applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDiff {
    pub inserts: Vec<Insert>,
    /// The new runtime configuration, when ports, the event interval or
    /// pool actions changed.
    pub runtime_config: Option<RuntimeConfig>,
    pub removals: Vec<Removal>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("blocked ports {0:?} do not fit the program (at most 8, none 0)")]
pub struct BadPorts(pub Vec<u16>);

impl PolicyDiff {
    /// The diff taking the maps from `current` to `wanted`.
    pub fn between(current: &Policy, wanted: &Policy) -> Result<Self, BadPorts> {
        let ports = BlockedPorts::new(&wanted.blocked_ports)
            .ok_or_else(|| BadPorts(wanted.blocked_ports.clone()))?;
        let mut diff = Self::default();
        for list in [ListKind::AllowedDestinations] {
            let (have, want) = (current.list(list), wanted.list(list));
            for prefix in want.iter() {
                let value = wanted.trie_value(list, prefix);
                let present = have.v4.contains(prefix) || have.v6.contains(prefix);
                let replaces = present && current.trie_value(list, prefix) != value;
                if !present || replaces {
                    diff.inserts.push(Insert {
                        list,
                        prefix: *prefix,
                        value,
                        replaces,
                    });
                }
            }
            diff.removals.extend(
                have.v4
                    .difference(&want.v4)
                    .chain(have.v6.difference(&want.v6))
                    .map(|prefix| Removal {
                        list,
                        prefix: *prefix,
                    }),
            );
        }
        if current.blocked_ports != wanted.blocked_ports
            || current.event_interval_ns != wanted.event_interval_ns
            || current.pool_actions() != wanted.pool_actions()
        {
            diff.runtime_config = Some(RuntimeConfig {
                blocked_ports: ports,
                event_interval_ns: wanted.event_interval_ns,
                pool_actions: wanted.pool_actions(),
            });
        }
        Ok(diff)
    }

    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.runtime_config.is_none() && self.removals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Pool;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn policy(dynamic: &[&str], allowed: &[&str]) -> Policy {
        let mut policy = Policy::default();
        for d in dynamic {
            policy.dynamic.insert(p(d));
        }
        for a in allowed {
            policy.allowed_destinations.insert(p(a));
        }
        policy
    }

    #[test]
    fn equal_policies_need_no_change() {
        let a = policy(&["100.64.0.0/10", "2001:db8:1000::/36"], &["100.64.1.7/32"]);
        assert!(PolicyDiff::between(&a, &a.clone()).unwrap().is_empty());
    }

    #[test]
    fn new_entries_go_in_and_stale_ones_come_out_entries_in_both_untouched() {
        let current = policy(&[], &["192.0.2.25/32", "198.51.100.0/24"]);
        let wanted = policy(
            &[],
            &["192.0.2.25/32", "2001:db8:25::/48", "203.0.113.9/32"],
        );
        let diff = PolicyDiff::between(&current, &wanted).unwrap();
        let inserted: Vec<String> = diff.inserts.iter().map(|i| i.prefix.to_string()).collect();
        let removed: Vec<String> = diff.removals.iter().map(|r| r.prefix.to_string()).collect();
        assert_eq!(inserted, ["203.0.113.9/32", "2001:db8:25::/48"]);
        assert_eq!(removed, ["198.51.100.0/24"]);
        assert!(diff.inserts.iter().all(|i| !i.replaces));
        assert_eq!(diff.runtime_config, None);
    }

    #[test]
    fn class_lists_are_left_to_the_class_writer_pool_actions_to_the_runtime_config() {
        let current = policy(&["100.64.0.0/10"], &[]);
        let mut wanted = current.clone();
        wanted.pools.push(Pool {
            name: "east".into(),
            action: op25b_common::abi::PoolAction::Monitor,
        });
        wanted.pool_of.insert(p("100.64.0.0/10"), 1);
        wanted.dynamic.insert(p("2001:db8:1000::/36"));
        wanted.exempt.insert(p("100.64.1.7/32"));
        let diff = PolicyDiff::between(&current, &wanted).unwrap();
        assert!(diff.inserts.is_empty());
        assert!(diff.removals.is_empty());
        let config = diff.runtime_config.expect("pool actions changed");
        assert_eq!(
            config.pool_actions[1],
            op25b_common::abi::PoolAction::Monitor as u8
        );
    }

    #[test]
    fn port_and_interval_changes_rewrite_the_runtime_config() {
        let current = Policy::default();
        let mut wanted = current.clone();
        wanted.blocked_ports = vec![25, 2525];
        let config = PolicyDiff::between(&current, &wanted)
            .unwrap()
            .runtime_config
            .unwrap();
        assert_eq!(config.blocked_ports.iter().collect::<Vec<_>>(), [25, 2525]);
        let mut slower = current.clone();
        slower.event_interval_ns *= 2;
        assert!(PolicyDiff::between(&current, &slower)
            .unwrap()
            .runtime_config
            .is_some());
    }

    #[test]
    fn ports_that_do_not_fit_are_refused_before_any_change() {
        let mut wanted = policy(&["100.64.0.0/10"], &[]);
        wanted.blocked_ports = (1..=9).collect();
        assert_eq!(
            PolicyDiff::between(&Policy::default(), &wanted),
            Err(BadPorts((1..=9).collect()))
        );
    }
}
