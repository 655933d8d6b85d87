//! Writes a [`PolicyDiff`] into the maps in its order, undoing what it
//! wrote when the kernel refuses a step, and reads the maps back.
//!
//! The dynamic and exempt lists go first, as one class step (the class
//! writer recomputes the regions inside changed prefixes and keeps each
//! entry old or new), so a policy the class maps cannot hold is refused
//! before any write. The class step notes what it overwrote (the old bytes
//! and blocks of the repainted regions, the old record, the old IPv6
//! entries), so a later step's failure puts the old lists back too.

use std::net::IpAddr;

use aya::maps::{lpm_trie::Key, LpmTrie, MapData};
use op25b_common::abi::{
    PoolAction, MAP_ALLOWED_DST_V4, MAP_ALLOWED_DST_V6, MAP_CLASS_V4, MAP_CLASS_V6, V6_IN_DYNAMIC,
    V6_IN_EXEMPT, V6_POOL_SHIFT,
};

use super::{
    class_writer::{ClassMaps, ClassStats, ClassSteps, ClassUndo},
    diff::{Insert, PolicyDiff, Removal},
    map_err, Dataplane, DataplaneError,
};
use crate::policy::{
    prefix::{Prefix, PrefixSet},
    ListKind, Policy, Pool, DEFAULT_POOL,
};

/// What applying a policy changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub added: usize,
    pub removed: usize,
    pub ports_changed: bool,
    /// Where the dynamic and exempt lists' step spent its time.
    pub class_steps: ClassSteps,
}

/// How far a diff got before the kernel refused a step.
#[derive(Debug, Default)]
struct Progress {
    /// What the class step overwrote (wholly or in part).
    classes: ClassUndo,
    inserts: usize,
    runtime_config: bool,
    removals: usize,
}

/// The maps a list lives in, (IPv4, IPv6): its own tries for allowed
/// destinations; the class maps (shared by both lists) for dynamic and exempt.
pub const fn list_map_names(list: ListKind) -> (&'static str, &'static str) {
    match list {
        ListKind::Dynamic | ListKind::Exempt => (MAP_CLASS_V4, MAP_CLASS_V6),
        ListKind::AllowedDestinations => (MAP_ALLOWED_DST_V4, MAP_ALLOWED_DST_V6),
    }
}

fn trie_key<const N: usize>(prefix: &Prefix) -> Key<[u8; N]> {
    let bytes: [u8; N] = match prefix.addr() {
        IpAddr::V4(a) => a.octets().as_slice().try_into(),
        IpAddr::V6(a) => a.octets().as_slice().try_into(),
    }
    .expect("family matches the map");
    Key::new(u32::from(prefix.len()), bytes)
}

fn key_prefix(addr: IpAddr, len: u32) -> Prefix {
    // The kernel only holds what we inserted: valid, host bits clear.
    Prefix::new(addr, u8::try_from(len).unwrap_or(u8::MAX)).expect("trie keys are valid prefixes")
}

impl Dataplane {
    /// Makes the maps hold exactly `policy` (see [`PolicyDiff`] for the
    /// order). All or nothing: when the kernel refuses a step, what was
    /// written is undone and the maps hold the previous policy again.
    pub fn apply(&mut self, policy: &Policy) -> Result<ApplyStats, DataplaneError> {
        let current = match self.applied.take() {
            Some(current) => current,
            None => self.read_policy()?,
        };
        let diff = match PolicyDiff::between(&current, policy) {
            Ok(diff) => diff,
            Err(e) => {
                self.applied = Some(current);
                return Err(e.into());
            }
        };
        let mut progress = Progress::default();
        match self.write(policy, &diff, &mut progress) {
            Ok(classes) => {
                // The class maps keep their own state; copying the dynamic
                // and exempt lists would cost more than the whole reload.
                // (Field by field: cloning the whole policy first would copy
                // the lists too.)
                self.applied = Some(Policy {
                    blocked_ports: policy.blocked_ports.clone(),
                    dynamic: PrefixSet::default(),
                    exempt: PrefixSet::default(),
                    allowed_destinations: policy.allowed_destinations.clone(),
                    event_interval_ns: policy.event_interval_ns,
                    pools: policy.pools.clone(),
                    pool_of: std::collections::BTreeMap::new(),
                });
                Ok(ApplyStats {
                    added: diff.inserts.len() + classes.added,
                    removed: diff.removals.len() + classes.removed,
                    ports_changed: diff.runtime_config.is_some(),
                    class_steps: classes.steps,
                })
            }
            Err(e) => match self.undo(&current, &diff, progress) {
                Ok(()) => {
                    self.applied = Some(current);
                    Err(DataplaneError::RolledBack(Box::new(e)))
                }
                Err(undo) => {
                    // The maps are somewhere between: re-read them next time.
                    self.applied = None;
                    Err(DataplaneError::PartlyApplied {
                        first: Box::new(e),
                        undo: Box::new(undo),
                    })
                }
            },
        }
    }

    fn write(
        &mut self,
        policy: &Policy,
        diff: &PolicyDiff,
        progress: &mut Progress,
    ) -> Result<ClassStats, DataplaneError> {
        let classes = self
            .classes
            .apply(&mut self.ebpf, policy, &mut progress.classes)?;
        for insert in &diff.inserts {
            self.insert(insert.list, &insert.prefix, insert.value)?;
            progress.inserts += 1;
        }
        if let Some(config) = diff.runtime_config {
            self.write_runtime_config(config)?;
            progress.runtime_config = true;
        }
        for removal in &diff.removals {
            self.remove(removal)?;
            progress.removals += 1;
        }
        Ok(classes)
    }

    /// Puts back `current` for the steps `progress` says were done, again
    /// adding before removing.
    fn undo(
        &mut self,
        current: &Policy,
        diff: &PolicyDiff,
        progress: Progress,
    ) -> Result<(), DataplaneError> {
        for removed in &diff.removals[..progress.removals] {
            let value = current.trie_value(removed.list, &removed.prefix);
            self.insert(removed.list, &removed.prefix, value)?;
        }
        if progress.runtime_config {
            if let Some(config) = current.runtime_config() {
                self.write_runtime_config(config)?;
            }
        }
        for insert in &diff.inserts[..progress.inserts] {
            let Insert {
                list,
                prefix,
                replaces,
                ..
            } = *insert;
            if replaces {
                self.insert(list, &prefix, current.trie_value(list, &prefix))?;
            } else {
                self.remove(&Removal { list, prefix })?;
            }
        }
        self.classes.undo(&mut self.ebpf, progress.classes)?;
        Ok(())
    }

    fn insert(
        &mut self,
        list: ListKind,
        prefix: &Prefix,
        value: u32,
    ) -> Result<(), DataplaneError> {
        let (v4, v6) = list_map_names(list);
        if prefix.is_ipv4() {
            self.trie::<4>(v4)?
                .insert(&trie_key::<4>(prefix), value, 0)
                .map_err(map_err(v4))
        } else {
            self.trie::<16>(v6)?
                .insert(&trie_key::<16>(prefix), value, 0)
                .map_err(map_err(v6))
        }
    }

    fn remove(&mut self, removal: &Removal) -> Result<(), DataplaneError> {
        let (v4, v6) = list_map_names(removal.list);
        if removal.prefix.is_ipv4() {
            self.trie::<4>(v4)?
                .remove(&trie_key::<4>(&removal.prefix))
                .map_err(map_err(v4))
        } else {
            self.trie::<16>(v6)?
                .remove(&trie_key::<16>(&removal.prefix))
                .map_err(map_err(v6))
        }
    }

    /// Reads back what the maps hold (used when adopting pinned maps).
    pub fn read_policy(&mut self) -> Result<Policy, DataplaneError> {
        let runtime = self.read_runtime_config()?;
        let mut policy = Policy {
            blocked_ports: runtime.blocked_ports.iter().collect(),
            event_interval_ns: runtime.event_interval_ns,
            ..Policy::default()
        };
        // Pool names live in the configuration; the kernel knows ids and actions.
        let used = runtime
            .pool_actions
            .iter()
            .rposition(|&a| a != 0)
            .map_or(1, |i| i + 1);
        policy.pools = (0..used)
            .map(|i| Pool {
                name: if i == 0 {
                    DEFAULT_POOL.into()
                } else {
                    format!("pool{i}")
                },
                action: PoolAction::from_u8(runtime.pool_actions[i]),
            })
            .collect();
        let (dynamic, pools, exempt) = self.classes.read_record()?;
        policy.dynamic = dynamic;
        policy.pool_of = pools;
        policy.exempt = exempt;
        for (prefix, value) in ClassMaps::read_v6(&mut self.ebpf)? {
            if value & V6_IN_DYNAMIC != 0 {
                policy.dynamic.insert(prefix);
                let pool = value >> V6_POOL_SHIFT;
                if pool != 0 {
                    policy.pool_of.insert(prefix, pool);
                }
            }
            if value & V6_IN_EXEMPT != 0 {
                policy.exempt.insert(prefix);
            }
        }
        for list in [ListKind::AllowedDestinations] {
            let (v4, v6) = list_map_names(list);
            let mut entries = Vec::new();
            for item in &self.trie::<4>(v4)? {
                let (key, value) = item.map_err(map_err(v4))?;
                entries.push((
                    key_prefix(IpAddr::from(key.data()), key.prefix_len()),
                    value,
                ));
            }
            for item in &self.trie::<16>(v6)? {
                let (key, value) = item.map_err(map_err(v6))?;
                entries.push((
                    key_prefix(IpAddr::from(key.data()), key.prefix_len()),
                    value,
                ));
            }
            // Allowed destinations hold no value (0).
            for (prefix, _) in entries {
                policy.list_mut(list).insert(prefix);
            }
        }
        Ok(policy)
    }
}

/// Counts the keys of a pinned trie (for `status`, without loading a program).
pub fn count_pinned_keys<const N: usize>(path: &std::path::Path) -> usize {
    let Ok(map) = MapData::from_pin(path) else {
        return 0;
    };
    let map = aya::maps::Map::LpmTrie(map);
    let Ok(trie) = LpmTrie::<&MapData, [u8; N], u32>::try_from(&map) else {
        return 0;
    };
    trie.keys().flatten().count()
}
