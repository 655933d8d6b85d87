//! The session table that RADIUS accounting keeps: who (User-Name) holds
//! which addresses right now, on which NAS, and whether the session is
//! exempt by its own attributes or by CoA.
//!
//! Indexed by (NAS, Acct-Session-Id), by subscriber and by address, and
//! bounded by `max_sessions`. Persisted as a snapshot plus a journal of
//! changes (see [`SessionStore`]), so a restart or kill -9 loses nothing
//! that was acknowledged.

mod store;
mod table;
#[cfg(test)]
mod tests;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

pub use self::{
    store::{SessionStore, StoreError},
    table::{SessionTable, TableError},
};
use crate::policy::prefix::Prefix;

/// What a CoA-Request set for a session, overriding its attributes and the
/// subscriber lists until the session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoaPolicy {
    Exempt,
    Enforce,
}

/// Why a session is exempt (for `explain` and `sessions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemptBy {
    /// A CoA-Request with the exempt Filter-Id.
    Coa,
    /// The session's own Filter-Id or Class is `exempt_filter_id`.
    SessionAttribute,
    /// The subscriber is in `exempt_subscribers` or has a run-time grant.
    Subscriber,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    pub nas: Arc<str>,
    pub id: Arc<str>,
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.nas, self.id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// NAS-Identifier, else NAS-IP-Address, else the sender's address.
    pub nas: Arc<str>,
    /// Acct-Session-Id.
    pub id: Arc<str>,
    /// User-Name ("" when the NAS sent none).
    #[serde(default)]
    pub subscriber: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// Framed-IPv6-Prefix and Delegated-IPv6-Prefix.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "prefix_strings"
    )]
    pub ipv6: Vec<Prefix>,
    /// Filter-Id or Class equal to `exempt_filter_id` in accounting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attribute_exempt: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coa: Option<CoaPolicy>,
    pub started_at: u64,
    pub updated_at: u64,
}

mod prefix_strings {
    use serde::{de::Error as _, Deserialize as _, Deserializer, Serializer};

    use crate::policy::prefix::Prefix;

    pub fn serialize<S: Serializer>(prefixes: &[Prefix], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(prefixes.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Prefix>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| s.parse().map_err(D::Error::custom))
            .collect()
    }
}

impl Session {
    pub fn key(&self) -> SessionKey {
        SessionKey {
            nas: Arc::clone(&self.nas),
            id: Arc::clone(&self.id),
        }
    }

    /// Whether and why this session is exempt, given whether its
    /// subscriber is exempt by name. CoA wins over everything: an
    /// `op25b-enforce` CoA ends an exemption mid-session.
    pub fn exemption(&self, subscriber_exempt: bool) -> Option<ExemptBy> {
        match self.coa {
            Some(CoaPolicy::Exempt) => Some(ExemptBy::Coa),
            None if self.attribute_exempt => Some(ExemptBy::SessionAttribute),
            None if subscriber_exempt => Some(ExemptBy::Subscriber),
            Some(CoaPolicy::Enforce) | None => None,
        }
    }

    /// The session's addresses as prefixes (the IPv4 address as a /32).
    pub fn prefixes(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.ipv4
            .map(|a| Prefix::new(IpAddr::V4(a), 32).expect("a /32 has no host bits"))
            .into_iter()
            .chain(self.ipv6.iter().copied())
    }

    /// Exempt without looking at the subscriber lists.
    fn flagged(&self) -> bool {
        self.exemption(false).is_some()
    }
}

/// An IPv6 prefix from RADIUS, host bits cleared (a NAS may send them).
pub fn ipv6_prefix(addr: Ipv6Addr, len: u8) -> Prefix {
    let len = len.min(128);
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    let network = Ipv6Addr::from(u128::from(addr) & mask);
    Prefix::new(IpAddr::V6(network), len).expect("host bits cleared, length capped")
}
