//! Exemptions and allowed destinations granted at run time (the
//! provisioning API), as data: what is persisted, what joins the policy.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use super::{
    limits::PrefixLimits, prefix::Prefix, subscriber_grants::SubscriberGrant, ListKind, Policy,
};
use crate::state_file::{self, StateFileError};

/// A run-time grant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub prefix: String,
    /// Unix seconds; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub actor: String,
    pub created_at: u64,
}

impl Grant {
    pub fn is_active(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// Who a grant or publication from the command line is recorded as, when
/// `--actor` does not say: `cli:$USER`.
pub fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "root".into())
    )
}

/// One grant as the CLI's tables show it: what, expiry, who, why.
pub fn table_line(what: &str, expires_at: Option<u64>, actor: &str, reason: &str) -> String {
    let expires = expires_at.map_or_else(|| "never".to_owned(), crate::clock::rfc3339);
    format!("{what:<40} expires {expires:<22} by {actor:<16} {reason}")
}

/// Prefix grants, then grants by subscriber, one table line each.
pub fn write_table(
    out: &mut impl std::io::Write,
    grants: &[Grant],
    subscribers: &[SubscriberGrant],
) -> std::io::Result<()> {
    for g in grants {
        writeln!(
            out,
            "{}",
            table_line(&g.prefix, g.expires_at, &g.actor, &g.reason)
        )?;
    }
    for g in subscribers {
        let what = format!("subscriber {}", g.subscriber);
        writeln!(
            out,
            "{}",
            table_line(&what, g.expires_at, &g.actor, &g.reason)
        )?;
    }
    Ok(())
}

/// What is persisted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrantState {
    #[serde(default)]
    pub exempt: BTreeMap<String, Grant>,
    #[serde(default)]
    pub allowed_destinations: BTreeMap<String, Grant>,
    /// Subscribers exempt by name; left out of the file when empty, so a
    /// file without them stays readable by older agents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exempt_subscribers: BTreeMap<String, SubscriberGrant>,
}

/// The lists grants can be made in (the dynamic pools come from files only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantList {
    Exemptions,
    AllowedDestinations,
}

impl GrantList {
    pub const ALL: [Self; 2] = [Self::Exemptions, Self::AllowedDestinations];

    /// The API path segment and the JSON key of the list.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Exemptions => "exemptions",
            Self::AllowedDestinations => "allowed_destinations",
        }
    }

    pub const fn list_kind(self) -> ListKind {
        match self {
            Self::Exemptions => ListKind::Exempt,
            Self::AllowedDestinations => ListKind::AllowedDestinations,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }
}

impl GrantState {
    pub fn list(&self, list: GrantList) -> &BTreeMap<String, Grant> {
        match list {
            GrantList::Exemptions => &self.exempt,
            GrantList::AllowedDestinations => &self.allowed_destinations,
        }
    }

    pub fn list_mut(&mut self, list: GrantList) -> &mut BTreeMap<String, Grant> {
        match list {
            GrantList::Exemptions => &mut self.exempt,
            GrantList::AllowedDestinations => &mut self.allowed_destinations,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Grant> {
        self.exempt
            .values()
            .chain(self.allowed_destinations.values())
    }

    /// `base` with every grant active at `now` added; a grant broader than
    /// `limits` (made before the limits were raised) is left out, loudly.
    pub fn effective(&self, base: &Policy, now: u64, limits: &PrefixLimits) -> Policy {
        let mut policy = base.clone();
        for (kind, prefix) in self.enforced_prefixes(now, limits) {
            policy.list_mut(kind).insert(prefix);
        }
        policy
    }

    /// The prefixes grants put into the maps at `now`: active and within
    /// `limits` (a grant that is not a prefix or too broad is logged, not enforced).
    pub fn enforced_prefixes<'a>(
        &'a self,
        now: u64,
        limits: &'a PrefixLimits,
    ) -> impl Iterator<Item = (ListKind, Prefix)> + 'a {
        GrantList::ALL.into_iter().flat_map(move |list| {
            self.list(list)
                .values()
                .filter(move |g| g.is_active(now))
                .filter_map(move |grant| {
                    let Ok(prefix) = grant.prefix.parse::<Prefix>() else {
                        tracing::error!(
                            "grant {:?} in {} is not a prefix: not enforced",
                            grant.prefix,
                            list.name()
                        );
                        return None;
                    };
                    match limits.check(list.list_kind(), &prefix) {
                        Ok(()) => Some((list.list_kind(), prefix)),
                        Err(e) => {
                            tracing::error!("grant in {}: {e}: not enforced", list.name());
                            None
                        }
                    }
                })
        })
    }

    /// The next expiry after `now`, when the policy must be recomputed.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        self.all()
            .filter_map(|g| g.expires_at)
            .chain(
                self.exempt_subscribers
                    .values()
                    .filter_map(|g| g.expires_at),
            )
            .filter(|&t| t > now)
            .min()
    }

    /// Forgets grants that expired (they are already out of the maps).
    pub fn prune(&mut self, now: u64) -> bool {
        let count =
            |s: &Self| s.exempt.len() + s.allowed_destinations.len() + s.exempt_subscribers.len();
        let before = count(self);
        self.exempt.retain(|_, g| g.is_active(now));
        self.allowed_destinations.retain(|_, g| g.is_active(now));
        self.exempt_subscribers.retain(|_, g| g.is_active(now));
        before != count(self)
    }

    pub fn load(path: &Path) -> Result<Self, StateFileError> {
        state_file::load(path)
    }

    /// Atomic: a crash leaves the old state or the new one.
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        state_file::save(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(prefix: &str, expires_at: Option<u64>) -> Grant {
        Grant {
            prefix: prefix.into(),
            expires_at,
            reason: String::new(),
            actor: "t".into(),
            created_at: 0,
        }
    }

    #[test]
    fn active_grants_join_the_policy_and_expired_ones_leave() {
        let mut state = GrantState::default();
        for (prefix, expires_at) in [("100.64.9.9/32", Some(1_000)), ("100.64.8.8/32", None)] {
            state
                .exempt
                .insert(prefix.into(), grant(prefix, expires_at));
        }
        let base = Policy::default();
        let limits = PrefixLimits::default();
        assert_eq!(state.effective(&base, 999, &limits).exempt.len(), 2);
        assert_eq!(state.effective(&base, 1_000, &limits).exempt.len(), 1);
        assert_eq!(state.next_expiry(500), Some(1_000));
        assert!(state.prune(1_000));
        assert_eq!(state.exempt.len(), 1);
    }

    #[test]
    fn grants_broader_than_the_limits_are_not_enforced() {
        let mut state = GrantState::default();
        state
            .exempt
            .insert("0.0.0.0/0".into(), grant("0.0.0.0/0", None));
        state
            .exempt
            .insert("100.64.8.8/32".into(), grant("100.64.8.8/32", None));
        let policy = state.effective(&Policy::default(), 0, &PrefixLimits::default());
        assert_eq!(
            policy
                .exempt
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["100.64.8.8/32"]
        );
    }

    #[test]
    fn state_saves_atomically_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("op25b-state-{}", std::process::id()));
        let path = dir.join("state.json");
        let mut state = GrantState::default();
        state.allowed_destinations.insert(
            "192.0.2.26/32".into(),
            Grant {
                reason: "relay".into(),
                actor: "noc".into(),
                created_at: 1,
                ..grant("192.0.2.26/32", None)
            },
        );
        state.save(&path).unwrap();
        assert!(!path.with_extension("tmp").exists());
        assert_eq!(GrantState::load(&path).unwrap(), state);
        std::fs::write(&path, "{\"exempt\": 3}").unwrap();
        assert!(GrantState::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not a state file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
