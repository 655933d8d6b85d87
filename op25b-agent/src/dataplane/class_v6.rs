//! IPv6 source classes: one LPM trie over both lists. New and changed
//! entries go in longest first, stale ones go out shortest first, so every
//! address's longest match holds its old or its new class throughout.

use std::net::IpAddr;

use aya::{
    maps::{lpm_trie::Key, LpmTrie, MapData},
    Ebpf,
};
use op25b_common::abi::{MAP_CLASS_V6, V6_IN_DYNAMIC, V6_IN_EXEMPT, V6_POOL_SHIFT};

use super::{
    class_batch::{batch_map, BatchOp},
    class_writer::{map_err, ClassError, ClassMaps, ClassStats},
    ipv4_class::classify_policy,
};
use crate::policy::{prefix::Prefix, Policy};

impl ClassMaps {
    fn trie_v6(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, [u8; 16], u32>, ClassError> {
        LpmTrie::try_from(
            ebpf.map_mut(MAP_CLASS_V6)
                .ok_or(ClassError::MissingMap(MAP_CLASS_V6))?,
        )
        .map_err(map_err(MAP_CLASS_V6))
    }

    /// The IPv6 class entries the trie holds (prefix, value), sorted.
    pub fn read_v6(ebpf: &mut Ebpf) -> Result<Vec<(Prefix, u32)>, ClassError> {
        let trie = Self::trie_v6(ebpf)?;
        let mut entries = Vec::new();
        for item in &trie {
            let (key, value) = item.map_err(map_err(MAP_CLASS_V6))?;
            let len = u8::try_from(key.prefix_len()).unwrap_or(u8::MAX);
            if let Ok(prefix) = Prefix::new(IpAddr::from(key.data()), len) {
                entries.push((prefix, value));
            }
        }
        entries.sort_unstable();
        Ok(entries)
    }

    /// Makes the trie hold `new`, leaving what it held in `undo` (before
    /// the first write, so a failure half-way can be undone).
    pub(super) fn write_v6(
        &mut self,
        ebpf: &mut Ebpf,
        new: Vec<(Prefix, u32)>,
        undo: &mut Option<Vec<(Prefix, u32)>>,
        stats: &mut ClassStats,
    ) -> Result<(), ClassError> {
        let old = match self.v6.take() {
            Some(old) => old,
            None => Self::read_v6(ebpf)?,
        };
        let mut upserts: Vec<(Prefix, u32)> = Vec::new();
        let mut stale: Vec<Prefix> = Vec::new();
        // Both sorted by prefix: one merge.
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let order = match (old.get(i), new.get(j)) {
                (Some(o), Some(n)) => o.0.cmp(&n.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            let (before, after) = match order {
                std::cmp::Ordering::Less => {
                    stale.push(old[i].0);
                    i += 1;
                    (old[i - 1].1, 0)
                }
                std::cmp::Ordering::Greater => {
                    upserts.push(new[j]);
                    j += 1;
                    (0, new[j - 1].1)
                }
                std::cmp::Ordering::Equal => {
                    let (o, n) = (old[i].1, new[j].1);
                    if o != n {
                        upserts.push(new[j]);
                    }
                    i += 1;
                    j += 1;
                    (o, n)
                }
            };
            let (a, r) = membership_changes(before, after);
            stats.added += a;
            stats.removed += r;
        }
        upserts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        stale.sort_by_key(Prefix::len);
        *undo = Some(old);
        // In order (longest first in, shortest first out), batched.
        let keys: Vec<Key<[u8; 16]>> = upserts.iter().map(|(p, _)| v6_key(p)).collect();
        let values: Vec<u32> = upserts.iter().map(|&(_, v)| v).collect();
        batch_map(ebpf, MAP_CLASS_V6, BatchOp::Update, &keys, &values)?;
        let keys: Vec<Key<[u8; 16]>> = stale.iter().map(v6_key).collect();
        batch_map::<_, u32>(ebpf, MAP_CLASS_V6, BatchOp::Delete, &keys, &[])?;
        self.v6 = Some(new);
        Ok(())
    }
}

/// The IPv6 class trie entries of `policy`: every prefix of either list
/// with its class and its own membership, sorted.
pub fn v6_entries(policy: &Policy) -> Vec<(Prefix, u32)> {
    classify_policy(policy, false)
        .map(|c| {
            let mut value = u32::from(c.class.0);
            if let Some(pool) = c.dynamic {
                value |= V6_IN_DYNAMIC | (pool << V6_POOL_SHIFT);
            }
            if c.exempt {
                value |= V6_IN_EXEMPT;
            }
            (c.prefix, value)
        })
        .collect()
}

/// List entries added and removed when a trie value goes from `old` to `new`.
fn membership_changes(old: u32, new: u32) -> (usize, usize) {
    let dynamic = |v: u32| (v & V6_IN_DYNAMIC != 0).then_some(v >> V6_POOL_SHIFT);
    let exempt = |v: u32| v & V6_IN_EXEMPT != 0;
    let mut added = 0;
    let mut removed = 0;
    match (dynamic(old), dynamic(new)) {
        (None, Some(_)) => added += 1,
        (Some(_), None) => removed += 1,
        (Some(a), Some(b)) if a != b => added += 1,
        _ => {}
    }
    match (exempt(old), exempt(new)) {
        (false, true) => added += 1,
        (true, false) => removed += 1,
        _ => {}
    }
    (added, removed)
}

fn v6_key(prefix: &Prefix) -> Key<[u8; 16]> {
    let IpAddr::V6(addr) = prefix.addr() else {
        unreachable!("the v6 half")
    };
    Key::new(u32::from(prefix.len()), addr.octets())
}
