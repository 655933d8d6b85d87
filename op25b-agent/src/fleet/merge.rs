//! The enforced policy: the local configuration's plus the fleet's.
//!
//! Precedence (README "Fleet sync"): lists are united; where the two
//! disagree the local configuration wins — a prefix in a local pool keeps
//! that pool, and a fleet pool with a local pool's name takes the local
//! action. Blocked ports and everything else stay local. Fleet pools that do
//! not fit beside the local ones (15 pools in all) are enforced as the
//! default pool (drop): the fleet asked for enforcement, and a full pool
//! table must not switch it off.

use std::{collections::BTreeSet, sync::Arc};

use op25b_common::abi::{PoolAction, MAX_POOLS};

use super::{codec::FleetLists, view::FleetPolicy};
use crate::policy::{
    limits::PrefixLimits,
    prefix::{Prefix, PrefixSet},
    ListKind, Policy, Pool,
};

fn has(set: &PrefixSet, prefix: &crate::policy::prefix::Prefix) -> bool {
    set.v4.contains(prefix) || set.v6.contains(prefix)
}

fn active(set: &PrefixSet, now: u64) -> std::borrow::Cow<'_, PrefixSet> {
    if set.expiring.is_empty() {
        std::borrow::Cow::Borrowed(set)
    } else {
        std::borrow::Cow::Owned(set.active(now))
    }
}

/// `base` (the local policy as of `now`) with the fleet's lists and grants
/// active at `now`; the second value lists the conflicts (local won).
/// Grants keep to `limits` (this box's bounds) here too.
pub fn merge(
    base: &Policy,
    fleet: &FleetPolicy,
    now: u64,
    limits: &PrefixLimits,
) -> (Policy, Vec<String>) {
    let (merged, conflicts) = merge_lists(base, &fleet.lists, now);
    (fleet.grants.effective(&merged, now, limits), conflicts)
}

/// The last merge of the fleet's lists, and the enforced policy built on
/// it: a grant changes only the grants, so neither a 1,000,000-prefix list
/// is merged again nor the merged policy copied for each grant.
pub struct MergeCache {
    lists: Arc<FleetLists>,
    base: Policy,
    valid_until: Option<u64>,
    merged: Policy,
    conflicts: Vec<String>,
    /// `merged` plus the grants of the last call; shared with the caller,
    /// and changed in place when the caller has let go of it.
    enforced: Arc<Policy>,
    /// The grant prefixes `enforced` holds beyond `merged` (the ones to
    /// take out again when their grant goes).
    granted: BTreeSet<(ListKind, Prefix)>,
}

/// [`merge`], reusing the lists' merge while the lists, the base and every
/// expiry in the lists are unchanged; then only the grants that changed
/// since the last call are added or taken out (O(grants), not O(lists)).
pub fn merge_cached(
    cache: &mut Option<MergeCache>,
    base: &Policy,
    fleet: &FleetPolicy,
    now: u64,
    limits: &PrefixLimits,
) -> (Arc<Policy>, Vec<String>) {
    let hit = cache.as_ref().is_some_and(|c| {
        Arc::ptr_eq(&c.lists, &fleet.lists)
            && c.valid_until.is_none_or(|t| now < t)
            && c.base == *base
    });
    if !hit {
        let (merged, conflicts) = merge_lists(base, &fleet.lists, now);
        let probe = FleetPolicy {
            lists: Arc::clone(&fleet.lists),
            ..FleetPolicy::default()
        };
        *cache = Some(MergeCache {
            lists: Arc::clone(&fleet.lists),
            base: base.clone(),
            valid_until: probe.next_expiry(now),
            enforced: Arc::new(merged.clone()),
            merged,
            conflicts,
            granted: BTreeSet::new(),
        });
    }
    let cached = cache.as_mut().expect("just filled");
    let wanted: BTreeSet<(ListKind, Prefix)> = fleet
        .grants
        .enforced_prefixes(now, limits)
        .filter(|(kind, prefix)| !cached.merged.list(*kind).contains_exactly(prefix))
        .collect();
    if wanted != cached.granted {
        // Copies only if the caller still holds the last answer.
        let enforced = Arc::make_mut(&mut cached.enforced);
        for (kind, prefix) in cached.granted.difference(&wanted) {
            let list = enforced.list_mut(*kind);
            list.v4.remove(prefix);
            list.v6.remove(prefix);
        }
        for (kind, prefix) in wanted.difference(&cached.granted) {
            enforced.list_mut(*kind).insert(*prefix);
        }
        cached.granted = wanted;
    }
    (Arc::clone(&cached.enforced), cached.conflicts.clone())
}

fn merge_lists(base: &Policy, lists: &FleetLists, now: u64) -> (Policy, Vec<String>) {
    let mut policy = base.clone();
    let mut conflicts = Vec::new();
    for prefix in active(&lists.dynamic, now).iter() {
        if !has(&policy.dynamic, prefix) {
            policy.dynamic.insert(*prefix);
        }
    }
    for pool in &lists.pools {
        let action = pool.action.unwrap_or(PoolAction::Drop);
        let id = if let Some(i) = policy.pools.iter().position(|p| p.name == pool.name) {
            if policy.pools[i].action != action {
                conflicts.push(format!(
                    "fleet pool {:?} is also configured locally: the local action applies",
                    pool.name
                ));
            }
            i
        } else if policy.pools.len() < MAX_POOLS {
            policy.pools.push(Pool {
                name: pool.name.clone(),
                action,
            });
            policy.pools.len() - 1
        } else {
            conflicts.push(format!(
                "no room for fleet pool {:?} ({MAX_POOLS} pools in all): its prefixes are enforced in pool \"default\" (drop)",
                pool.name
            ));
            0
        };
        let id = u32::try_from(id).expect("few pools");
        let mut local = 0usize;
        for prefix in active(&pool.prefixes, now).iter() {
            if has(&policy.dynamic, prefix) {
                if policy.pool_id(prefix) != id {
                    local += 1;
                }
                continue;
            }
            policy.dynamic.insert(*prefix);
            if id != 0 {
                policy.pool_of.insert(*prefix, id);
            }
        }
        if local > 0 {
            conflicts.push(format!(
                "{local} prefixes of fleet pool {:?} are in another pool locally: the local pool applies",
                pool.name
            ));
        }
    }
    for prefix in active(&lists.exempt, now).iter() {
        policy.exempt.insert(*prefix);
    }
    for prefix in active(&lists.allowed_destinations, now).iter() {
        policy.allowed_destinations.insert(*prefix);
    }
    (policy, conflicts)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{fleet::codec::FleetPool, policy::grants::Grant};

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn lists_unite_local_pools_win_and_expired_entries_stay_out() {
        let mut base = Policy::default();
        base.dynamic.insert(p("100.64.0.0/10"));
        base.pools.push(Pool {
            name: "east".into(),
            action: PoolAction::Monitor,
        });
        base.dynamic.insert(p("100.96.0.0/12"));
        base.pool_of.insert(p("100.96.0.0/12"), 1);
        let mut lists = FleetLists::default();
        lists.dynamic.insert(p("100.128.0.0/10"));
        lists.exempt.insert_until(p("100.64.1.7/32"), Some(100));
        lists.pools.push(FleetPool {
            name: "east".into(),
            action: Some(PoolAction::Drop),
            prefixes: [p("100.80.0.0/12")].into_iter().collect(),
        });
        lists.pools.push(FleetPool {
            name: "west".into(),
            action: Some(PoolAction::Reject),
            prefixes: [p("100.64.0.0/10"), p("2001:db8:3000::/36")]
                .into_iter()
                .collect(),
        });
        let mut fleet = FleetPolicy {
            revision: 1,
            lists: Arc::new(lists),
            ..FleetPolicy::default()
        };
        fleet.grants.allowed_destinations.insert(
            "192.0.2.26/32".into(),
            Grant {
                prefix: "192.0.2.26/32".into(),
                expires_at: None,
                reason: String::new(),
                actor: "d".into(),
                created_at: 0,
            },
        );
        let (merged, conflicts) = merge(&base, &fleet, 50, &PrefixLimits::default());
        assert!(has(&merged.dynamic, &p("100.128.0.0/10")));
        assert_eq!(merged.pool_id(&p("100.128.0.0/10")), 0);
        assert_eq!(
            merged.pool_id(&p("100.80.0.0/12")),
            1,
            "same name, same pool"
        );
        assert_eq!(
            merged.pools[1].action,
            PoolAction::Monitor,
            "the local action wins"
        );
        assert_eq!(merged.pools[2].name, "west");
        assert_eq!(merged.pool_id(&p("2001:db8:3000::/36")), 2);
        assert_eq!(
            merged.pool_id(&p("100.64.0.0/10")),
            0,
            "a local prefix keeps its local pool"
        );
        assert!(merged.exempt.contains("100.64.1.7".parse().unwrap()));
        assert!(merged
            .allowed_destinations
            .contains("192.0.2.26".parse().unwrap()));
        assert_eq!(conflicts.len(), 2, "{conflicts:?}");
        let (later, _) = merge(&base, &fleet, 100, &PrefixLimits::default());
        assert!(
            !later.exempt.contains("100.64.1.7".parse().unwrap()),
            "expired entry enforced"
        );
    }

    fn cached(
        cache: &mut Option<MergeCache>,
        base: &Policy,
        fleet: &FleetPolicy,
        now: u64,
    ) -> (Policy, Vec<String>) {
        let (policy, conflicts) = merge_cached(cache, base, fleet, now, &PrefixLimits::default());
        ((*policy).clone(), conflicts)
    }

    fn grant(prefix: &str, expires_at: Option<u64>) -> Grant {
        Grant {
            prefix: prefix.into(),
            expires_at,
            reason: String::new(),
            actor: "d".into(),
            created_at: 0,
        }
    }

    #[test]
    fn the_cached_merge_equals_a_fresh_one_as_grants_lists_and_time_change() {
        // (now, grants added with their expiry, grants revoked)
        type Step = (
            u64,
            &'static [(&'static str, Option<u64>)],
            &'static [&'static str],
        );
        let mut base = Policy::default();
        base.dynamic.insert(p("100.64.0.0/10"));
        let mut lists = FleetLists::default();
        lists.dynamic.insert(p("100.128.0.0/10"));
        lists.exempt.insert_until(p("100.64.1.7/32"), Some(100));
        let mut fleet = FleetPolicy {
            revision: 1,
            lists: Arc::new(lists),
            ..FleetPolicy::default()
        };
        let mut cache = None;
        // Grants come and go: one also in the lists (stays while the list
        // has it), one expiring, one too broad for the bounds.
        let steps: [Step; 6] = [
            (10, &[], &[]),
            (20, &[("100.64.1.8/32", None)], &[]),
            (
                30,
                &[("100.64.1.7/32", None), ("100.64.1.11/32", Some(50))],
                &[],
            ),
            (40, &[("0.0.0.0/0", None)], &["100.64.1.7/32"]),
            (60, &[], &["100.64.1.8/32"]),
            (100, &[("100.64.1.9/32", None)], &[]),
        ];
        let mut held = Vec::new();
        for (now, added, revoked) in steps {
            for (prefix, expires) in added {
                fleet
                    .grants
                    .exempt
                    .insert((*prefix).into(), grant(prefix, *expires));
            }
            for prefix in revoked {
                fleet.grants.exempt.remove(*prefix);
            }
            let fresh = merge(&base, &fleet, now, &PrefixLimits::default());
            assert_eq!(cached(&mut cache, &base, &fleet, now), fresh, "at {now}");
            // An answer still held is never changed under its holder.
            let (answer, _) =
                merge_cached(&mut cache, &base, &fleet, now, &PrefixLimits::default());
            held.push((answer, fresh.0));
        }
        for (answer, fresh) in &held {
            assert_eq!(**answer, *fresh);
        }
        let exempt = |i: usize, addr: &str| held[i].0.exempt.contains(addr.parse().unwrap());
        assert!(
            exempt(3, "100.64.1.7"),
            "revoked, but the list still has it"
        );
        assert!(
            exempt(3, "100.64.1.11") && !exempt(3, "192.0.2.1"),
            "0.0.0.0/0 enforced"
        );
        assert!(!exempt(4, "100.64.1.11") && !exempt(4, "100.64.1.8"));
        assert!(!exempt(5, "100.64.1.7") && exempt(5, "100.64.1.9"));
        let mut other = (*fleet.lists).clone();
        other.allowed_destinations.insert(p("192.0.2.26/32"));
        fleet.lists = Arc::new(other);
        assert_eq!(
            cached(&mut cache, &base, &fleet, 100),
            merge(&base, &fleet, 100, &PrefixLimits::default())
        );
        base.exempt.insert(p("100.64.1.10/32"));
        assert_eq!(
            cached(&mut cache, &base, &fleet, 100),
            merge(&base, &fleet, 100, &PrefixLimits::default())
        );
    }

    #[test]
    fn pools_that_do_not_fit_are_enforced_as_drop() {
        let mut base = Policy::default();
        for i in 0..15 {
            base.pools.push(Pool {
                name: format!("l{i}"),
                action: PoolAction::Monitor,
            });
        }
        let lists = FleetLists {
            pools: vec![FleetPool {
                name: "extra".into(),
                action: Some(PoolAction::Monitor),
                prefixes: [p("100.80.0.0/12")].into_iter().collect(),
            }],
            ..FleetLists::default()
        };
        let fleet = FleetPolicy {
            revision: 1,
            lists: Arc::new(lists),
            ..FleetPolicy::default()
        };
        let (merged, conflicts) = merge(&base, &fleet, 0, &PrefixLimits::default());
        assert_eq!(merged.pool_id(&p("100.80.0.0/12")), 0);
        assert!(has(&merged.dynamic, &p("100.80.0.0/12")));
        assert!(conflicts[0].contains("no room"), "{conflicts:?}");
    }
}
