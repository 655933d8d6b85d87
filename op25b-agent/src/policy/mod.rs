//! The policy the data plane enforces, as plain data: what the config
//! compiles to, what is diffed on reload, and (through [`PolicyLookup`]) the
//! host-side model the kernel program is checked against. Prefixes, list
//! files and run-time grants are the parts it is made of.

pub mod grants;
pub mod limits;
pub mod list_file;
pub mod prefix;
pub mod sorted_prefixes;
pub mod subscriber_grants;
pub mod subscribers;

use std::collections::BTreeMap;

use op25b_common::{
    abi::{PoolAction, MAX_POOLS},
    IpAddrBytes, PolicyLookup, SourceClass,
};

use self::prefix::{ip_addr, Prefix, PrefixSet};

/// A named group of dynamic prefixes with its own action. Pool 0 is
/// "default": the flat `dynamic` lists, action drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub action: PoolAction,
}

pub const DEFAULT_POOL: &str = "default";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub blocked_ports: Vec<u16>,
    pub dynamic: PrefixSet,
    pub exempt: PrefixSet,
    pub allowed_destinations: PrefixSet,
    /// At most one block event per source per this many nanoseconds.
    pub event_interval_ns: u64,
    /// Pools by id; `pools[0]` is the default pool.
    pub pools: Vec<Pool>,
    /// The pool of each dynamic prefix not in the default pool.
    pub pool_of: BTreeMap<Prefix, u32>,
}

impl Default for Policy {
    /// What a freshly loaded program holds: port 25, empty lists.
    fn default() -> Self {
        let runtime = op25b_common::abi::RuntimeConfig::DEFAULT;
        Self {
            blocked_ports: runtime.blocked_ports.iter().collect(),
            dynamic: PrefixSet::default(),
            exempt: PrefixSet::default(),
            allowed_destinations: PrefixSet::default(),
            event_interval_ns: runtime.event_interval_ns,
            pools: vec![Pool {
                name: DEFAULT_POOL.into(),
                action: PoolAction::Drop,
            }],
            pool_of: BTreeMap::new(),
        }
    }
}

/// The three lists by name, in a fixed order, for code that treats them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListKind {
    Dynamic,
    Exempt,
    AllowedDestinations,
}

impl ListKind {
    pub const ALL: [Self; 3] = [Self::Dynamic, Self::Exempt, Self::AllowedDestinations];

    /// Bounded label value, also the config key.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Exempt => "exempt",
            Self::AllowedDestinations => "allowed_destinations",
        }
    }
}

impl Policy {
    /// The policy as it stands at `now` (Unix seconds): temporary entries
    /// past their `expires_at` left out.
    #[must_use]
    pub fn active(&self, now: u64) -> Self {
        let mut policy = self.clone();
        policy.prune_expired(now);
        policy
    }

    /// Takes the temporary entries past their `expires_at` out of the
    /// lists, in place.
    pub fn prune_expired(&mut self, now: u64) {
        for list in ListKind::ALL {
            self.list_mut(list).prune_expired(now);
        }
    }

    /// Folds each list's pending edits in, once all its files are read
    /// (once per list: per file would cost O(files x n)).
    pub fn compact_lists(&mut self) {
        for list in ListKind::ALL {
            self.list_mut(list).compact();
        }
    }

    /// When the next temporary entry expires.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        ListKind::ALL
            .iter()
            .filter_map(|k| self.list(*k).next_expiry(now))
            .min()
    }

    /// The pool id a dynamic prefix's trie entry holds.
    pub fn pool_id(&self, prefix: &Prefix) -> u32 {
        self.pool_of.get(prefix).copied().unwrap_or(0)
    }

    /// `prefixes` (sorted, as a list's set holds them) each with its pool id.
    /// Walks `pool_of` alongside in the same order instead of looking each
    /// prefix up: at a million prefixes the lookups were most of a reload.
    pub fn with_pools<'a>(
        &'a self,
        prefixes: &'a prefix::SortedPrefixes,
    ) -> impl Iterator<Item = (&'a Prefix, u32)> + 'a {
        let mut pools = self.pool_of.iter().peekable();
        // Without pools, no merge step per prefix: it doubled the walk.
        let no_pools = self.pool_of.is_empty();
        prefixes.iter().map(move |prefix| {
            if no_pools {
                return (prefix, 0);
            }
            while pools.next_if(|(p, _)| *p < prefix).is_some() {}
            let id = pools
                .next_if(|(p, _)| *p == prefix)
                .map_or(0, |(_, id)| *id);
            (prefix, id)
        })
    }

    /// The value `prefix`'s entry holds in `list`'s trie.
    pub fn trie_value(&self, list: ListKind, prefix: &Prefix) -> u32 {
        if list == ListKind::Dynamic {
            self.pool_id(prefix)
        } else {
            0
        }
    }

    /// The data plane's run-time configuration for this policy (`None` if
    /// the ports do not fit; validation prevents that).
    pub fn runtime_config(&self) -> Option<op25b_common::abi::RuntimeConfig> {
        Some(op25b_common::abi::RuntimeConfig {
            blocked_ports: op25b_common::BlockedPorts::new(&self.blocked_ports)?,
            event_interval_ns: self.event_interval_ns,
            pool_actions: self.pool_actions(),
        })
    }

    /// The per-pool actions as the data plane holds them.
    pub fn pool_actions(&self) -> [u8; MAX_POOLS] {
        let mut actions = [PoolAction::Drop as u8; MAX_POOLS];
        for (slot, pool) in actions.iter_mut().zip(&self.pools) {
            *slot = pool.action as u8;
        }
        actions
    }

    pub fn list(&self, kind: ListKind) -> &PrefixSet {
        match kind {
            ListKind::Dynamic => &self.dynamic,
            ListKind::Exempt => &self.exempt,
            ListKind::AllowedDestinations => &self.allowed_destinations,
        }
    }

    pub fn list_mut(&mut self, kind: ListKind) -> &mut PrefixSet {
        match kind {
            ListKind::Dynamic => &mut self.dynamic,
            ListKind::Exempt => &mut self.exempt,
            ListKind::AllowedDestinations => &mut self.allowed_destinations,
        }
    }
}

impl PolicyLookup for Policy {
    fn source_class(&self, src: &IpAddrBytes) -> SourceClass {
        let pool = self
            .dynamic
            .longest_match(ip_addr(src))
            .map(|p| self.pool_id(&p));
        SourceClass::new(pool, self.exempt.contains(ip_addr(src)))
    }

    fn is_allowed_destination(&self, dst: &IpAddrBytes) -> bool {
        self.allowed_destinations.contains(ip_addr(dst))
    }
}

/// A pool name: 1-32 of a-z, 0-9, '-', '_' (it becomes a metric label).
pub fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Policies for tests, from plain lists.
#[cfg(test)]
impl Policy {
    /// These dynamic prefixes with their pools (0: none) and exemptions.
    pub fn of_lists(dynamic: &[(Prefix, u32)], exempt: &[Prefix]) -> Self {
        let mut p = Self::default();
        for &(prefix, pool) in dynamic {
            p.dynamic.insert(prefix);
            if pool != 0 {
                p.pool_of.insert(prefix, pool);
            }
        }
        for prefix in exempt {
            p.exempt.insert(*prefix);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v4(addr: u32, len: u8) -> Prefix {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Prefix::new(std::net::Ipv4Addr::from(addr & mask).into(), len).unwrap()
    }

    fn v6(addr: u128, len: u8) -> Prefix {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        Prefix::new(std::net::Ipv6Addr::from(addr & mask).into(), len).unwrap()
    }

    proptest! {
        /// The ordered walk gives every prefix the pool a lookup gives it,
        /// whatever mix of families, members with and without a pool, and
        /// pool entries of prefixes that are not members.
        #[test]
        fn with_pools_agrees_with_pool_id(
            members in proptest::collection::vec((any::<u32>(), 8u8..=32, 0u32..4), 0..200),
            v6_members in proptest::collection::vec((any::<u128>(), 16u8..=128, 0u32..4), 0..50),
            strays in proptest::collection::vec((any::<u32>(), 8u8..=32, 1u32..4), 0..50),
        ) {
            let mut policy = Policy::default();
            let both = members
                .iter()
                .map(|&(a, len, id)| (v4(a, len), id))
                .chain(v6_members.iter().map(|&(a, len, id)| (v6(a, len), id)));
            for (prefix, id) in both {
                policy.dynamic.insert(prefix);
                if id != 0 {
                    policy.pool_of.insert(prefix, id);
                }
            }
            for &(a, len, id) in &strays {
                let prefix = v4(a, len);
                if !policy.dynamic.v4.contains(&prefix) {
                    policy.pool_of.insert(prefix, id);
                }
            }
            for set in [&policy.dynamic.v4, &policy.dynamic.v6] {
                let walked: Vec<_> = policy.with_pools(set).map(|(p, id)| (*p, id)).collect();
                let looked_up: Vec<_> = set.iter().map(|p| (*p, policy.pool_id(p))).collect();
                prop_assert_eq!(walked, looked_up);
            }
        }
    }
}
