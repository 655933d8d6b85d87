//! The JSON the API speaks, shared by the server and the CLI client so the
//! two cannot drift apart.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::{
    grants::{Grant, GrantList},
    subscriber_grants::SubscriberGrant,
};

/// Longest grant: ten years.
pub const MAX_TTL_SECONDS: u64 = 10 * 365 * 86_400;

/// How long a grant lasts, validated: 1 s to 10 years. Written as whole
/// seconds or a duration ("7d", "12h").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "u64")]
pub struct Ttl(u64);

impl Ttl {
    pub const fn seconds(self) -> u64 {
        self.0
    }

    fn checked(seconds: u64) -> Result<Self, String> {
        if seconds == 0 || seconds > MAX_TTL_SECONDS {
            return Err(format!("ttl {seconds} s: give 1 s to 10 years"));
        }
        Ok(Self(seconds))
    }
}

impl From<Ttl> for u64 {
    fn from(ttl: Ttl) -> Self {
        ttl.0
    }
}

impl FromStr for Ttl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let seconds = match s.parse::<u64>() {
            Ok(seconds) => seconds,
            Err(_) => humantime::parse_duration(s)
                .map_err(|e| format!("ttl {s:?}: {e} (give seconds or a duration like 7d, 12h)"))?
                .as_secs(),
        };
        Self::checked(seconds)
    }
}

impl TryFrom<serde_json::Value> for Ttl {
    type Error = String;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        match value {
            serde_json::Value::Number(n) => Self::checked(
                n.as_u64()
                    .ok_or("ttl: give whole seconds or a duration like \"7d\"")?,
            ),
            serde_json::Value::String(s) => s.parse(),
            _ => Err("ttl: give whole seconds or a duration like \"7d\"".into()),
        }
    }
}

/// `POST /api/v1/{exemptions,allowed_destinations}`: exactly one of
/// `prefix` and `subscriber` (exemptions only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscriber: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub actor: String,
}

/// What a grant or revocation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantTarget<'a> {
    Prefix(&'a str),
    Subscriber(&'a str),
}

/// Exactly one of a prefix and a subscriber, or a message saying so.
fn one_target<'a>(prefix: &'a str, subscriber: &'a str) -> Result<GrantTarget<'a>, String> {
    match (prefix.trim(), subscriber.trim()) {
        ("", "") => Err("give prefix or subscriber".into()),
        (prefix, "") => Ok(GrantTarget::Prefix(prefix)),
        ("", subscriber) => Ok(GrantTarget::Subscriber(subscriber)),
        _ => Err("give prefix or subscriber, not both".into()),
    }
}

impl GrantRequest {
    pub fn target(&self) -> Result<GrantTarget<'_>, String> {
        one_target(&self.prefix, &self.subscriber)
    }
}

/// The query of `DELETE /api/v1/{list}?prefix=..&actor=..&reason=..`
/// (or `?subscriber=..`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokeRequest {
    pub prefix: String,
    pub subscriber: String,
    pub actor: String,
    pub reason: String,
}

impl RevokeRequest {
    /// The query string, percent-encoded.
    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if !self.prefix.is_empty() {
            query.append_pair("prefix", &self.prefix);
        }
        if !self.subscriber.is_empty() {
            query.append_pair("subscriber", &self.subscriber);
        }
        query
            .append_pair("actor", &self.actor)
            .append_pair("reason", &self.reason)
            .finish()
    }

    pub fn target(&self) -> Result<GrantTarget<'_>, String> {
        one_target(&self.prefix, &self.subscriber)
    }

    /// Parses a query; unknown parameters are refused by name.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut request = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "prefix" => request.prefix = value.into_owned(),
                "subscriber" => request.subscriber = value.into_owned(),
                "actor" => request.actor = value.into_owned(),
                "reason" => request.reason = value.into_owned(),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (prefix, subscriber, actor, reason)"
                    ))
                }
            }
        }
        Ok(request)
    }
}

/// `GET /api/v1/{list}`: `{"<list>": [grant, ...]}`, and for exemptions
/// `"exempt_subscribers": [...]` when there are any (left out otherwise, so
/// older clients keep reading the answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantListAnswer {
    pub list: GrantList,
    pub grants: Vec<Grant>,
    pub subscribers: Vec<SubscriberGrant>,
}

const SUBSCRIBERS_KEY: &str = "exempt_subscribers";

impl Serialize for GrantListAnswer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(self.list.name(), &self.grants)?;
        if !self.subscribers.is_empty() {
            map.serialize_entry(SUBSCRIBERS_KEY, &self.subscribers)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for GrantListAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
        let subscribers = match map.remove(SUBSCRIBERS_KEY) {
            Some(value) => serde_json::from_value(value).map_err(D::Error::custom)?,
            None => Vec::new(),
        };
        let mut entries = map.into_iter();
        match (entries.next(), entries.next()) {
            (Some((name, grants)), None) => Ok(Self {
                list: GrantList::from_name(&name)
                    .ok_or_else(|| D::Error::custom(format!("unknown list {name:?}")))?,
                grants: serde_json::from_value(grants).map_err(D::Error::custom)?,
                subscribers,
            }),
            _ => Err(D::Error::custom("expected one list")),
        }
    }
}

/// `DELETE` answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeAnswer {
    pub deleted: String,
}

/// Every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

impl fmt::Display for ErrorAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

/// `GET /api/v1/top`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TopAnswer {
    pub window_seconds: u64,
    pub generated_at: u64,
    pub sources: Vec<TopSourceJson>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TopSourceJson {
    /// The source address; for a subscriber row, the most recent one.
    pub source: String,
    /// The RADIUS subscriber, when a session named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// A subscriber row's addresses, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    pub attempts: u64,
    pub error: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub distinct_destinations: u64,
}

impl From<crate::observe::top::TopSource> for TopSourceJson {
    fn from(s: crate::observe::top::TopSource) -> Self {
        Self {
            source: s.source.to_string(),
            subscriber: s.subscriber,
            addresses: s.addresses.iter().map(ToString::to_string).collect(),
            attempts: s.attempts,
            error: s.error,
            first_seen: crate::clock::rfc3339(s.first_seen),
            last_seen: crate::clock::rfc3339(s.last_seen),
            distinct_destinations: s.distinct_destinations,
        }
    }
}

/// The query of `GET /api/v1/top?window=1h&limit=20`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopQuery {
    pub window_seconds: u64,
    pub limit: usize,
}

impl Default for TopQuery {
    fn default() -> Self {
        Self {
            window_seconds: 3600,
            limit: 20,
        }
    }
}

impl TopQuery {
    pub const MAX_LIMIT: usize = 10_000;

    /// A window as the CLI and the query take it: "1h", "30m" or seconds.
    pub fn parse_window(value: &str) -> Result<u64, String> {
        humantime::parse_duration(value)
            .map(|d| d.as_secs())
            .or_else(|_| value.parse())
            .map_err(|_| format!("window={value:?}: give a duration like 1h, 30m or seconds"))
    }

    pub fn to_query(self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("window", &self.window_seconds.to_string())
            .append_pair("limit", &self.limit.to_string())
            .finish()
    }

    /// Parses `window=1h&limit=20`; bad values name themselves.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut top = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "window" => top.window_seconds = Self::parse_window(&value)?,
                "limit" => {
                    top.limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=Self::MAX_LIMIT).contains(l))
                        .ok_or_else(|| format!("limit={value:?}: give 1..=10000"))?;
                }
                other => return Err(format!("unknown parameter {other:?} (window, limit)")),
            }
        }
        Ok(top)
    }
}

/// Which sessions `GET /api/v1/sessions` lists: `subscriber=NAME` (every
/// session of that User-Name), `address=ADDR` (the session holding it), or
/// neither (any `limit` sessions); `limit` defaults to 1000.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionsQuery {
    pub filter: SessionFilter,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionFilter {
    All,
    Subscriber(String),
    Address(std::net::IpAddr),
}

impl Default for SessionsQuery {
    fn default() -> Self {
        Self {
            filter: SessionFilter::All,
            limit: 1000,
        }
    }
}

impl SessionsQuery {
    pub const MAX_LIMIT: usize = 100_000;

    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        match &self.filter {
            SessionFilter::All => {}
            SessionFilter::Subscriber(name) => {
                query.append_pair("subscriber", name);
            }
            SessionFilter::Address(addr) => {
                query.append_pair("address", &addr.to_string());
            }
        }
        query.append_pair("limit", &self.limit.to_string()).finish()
    }

    /// Parses `subscriber=..|address=..&limit=..`; bad values name themselves.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut sessions = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let filter = match key.as_ref() {
                "subscriber" if !value.is_empty() => SessionFilter::Subscriber(value.into_owned()),
                "subscriber" => return Err("subscriber=: give a User-Name".into()),
                "address" => SessionFilter::Address(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| format!("address={value:?}: give an IPv4 or IPv6 address"))?,
                ),
                "limit" => {
                    sessions.limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=Self::MAX_LIMIT).contains(l))
                        .ok_or_else(|| format!("limit={value:?}: give 1..=100000"))?;
                    continue;
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (subscriber, address, limit)"
                    ))
                }
            };
            if sessions.filter != SessionFilter::All {
                return Err("give subscriber or address, not both".into());
            }
            sessions.filter = filter;
        }
        Ok(sessions)
    }
}

/// `GET /api/v1/sessions`: the RADIUS session table (or the part asked for).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsAnswer {
    /// Sessions in the table in all.
    pub total: usize,
    /// Sessions exempt when the maps were last updated.
    pub exempt: usize,
    /// True when more sessions matched than `limit`.
    pub truncated: bool,
    pub sessions: Vec<SessionJson>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionJson {
    /// RADIUS User-Name ("" when the NAS sent none).
    pub subscriber: String,
    /// `NAS/Acct-Session-Id`.
    pub session: String,
    pub nas: String,
    /// The IPv4 address (as /32) and IPv6 prefixes the session holds.
    pub addresses: Vec<String>,
    /// Why the session is exempt: `coa`, `session_attribute` or
    /// `subscriber`; absent when it is enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempt_by: Option<String>,
    /// What a CoA set (`exempt` / `enforce`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coa: Option<String>,
    pub started_at: String,
    pub updated_at: String,
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;
