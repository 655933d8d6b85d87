//! The JSON the API speaks, shared by the server and the CLI client so the
//! two cannot drift apart.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::grants::{Grant, GrantList};

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

/// `POST /api/v1/{exemptions,allowed_destinations}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub actor: String,
}

/// The query of `DELETE /api/v1/{list}?prefix=..&actor=..&reason=..`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokeRequest {
    pub prefix: String,
    pub actor: String,
    pub reason: String,
}

impl RevokeRequest {
    /// The query string, percent-encoded.
    pub fn to_query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("prefix", &self.prefix)
            .append_pair("actor", &self.actor)
            .append_pair("reason", &self.reason)
            .finish()
    }

    /// Parses a query; unknown parameters are refused by name.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut request = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "prefix" => request.prefix = value.into_owned(),
                "actor" => request.actor = value.into_owned(),
                "reason" => request.reason = value.into_owned(),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (prefix, actor, reason)"
                    ))
                }
            }
        }
        Ok(request)
    }
}

/// `GET /api/v1/{list}`: `{"<list>": [grant, ...]}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantListAnswer {
    pub list: GrantList,
    pub grants: Vec<Grant>,
}

impl Serialize for GrantListAnswer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BTreeMap::from([(self.list.name(), &self.grants)]).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GrantListAnswer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = BTreeMap::<String, Vec<Grant>>::deserialize(deserializer)?;
        let mut entries = map.into_iter();
        match (entries.next(), entries.next()) {
            (Some((name, grants)), None) => Ok(Self {
                list: GrantList::from_name(&name)
                    .ok_or_else(|| D::Error::custom(format!("unknown list {name:?}")))?,
                grants,
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
    pub source: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_takes_seconds_or_durations_within_bounds() {
        let ttl = |v: serde_json::Value| Ttl::try_from(v).map(Ttl::seconds);
        assert_eq!(ttl(serde_json::json!(60)), Ok(60));
        assert_eq!(ttl(serde_json::json!("7d")), Ok(7 * 86_400));
        assert!(ttl(serde_json::json!(0)).is_err());
        assert!(ttl(serde_json::json!("soon")).is_err());
        assert!(ttl(serde_json::json!(-5)).is_err());
        assert!(ttl(serde_json::json!(MAX_TTL_SECONDS + 1)).is_err());
        assert_eq!("3600".parse::<Ttl>().map(Ttl::seconds), Ok(3600));
        assert!("11y".parse::<Ttl>().is_err());
    }

    #[test]
    fn top_query_parsing() {
        let q = |s: &str| TopQuery::from_query(s).map(|t| (t.window_seconds, t.limit));
        assert_eq!(q(""), Ok((3600, 20)));
        assert_eq!(q("window=24h&limit=5"), Ok((86_400, 5)));
        assert_eq!(q("window=90"), Ok((90, 20)));
        assert!(q("window=soon").unwrap_err().contains("window"));
        assert!(q("limit=0").unwrap_err().contains("limit"));
        assert!(q("sort=asc").unwrap_err().contains("unknown parameter"));
        let round = TopQuery {
            window_seconds: 7200,
            limit: 3,
        };
        assert_eq!(TopQuery::from_query(&round.to_query()), Ok(round));
    }

    #[test]
    fn revoke_queries_round_trip_with_reserved_characters() {
        let request = RevokeRequest {
            prefix: "2001:db8::/64".into(),
            actor: "desk&co".into(),
            reason: "ticket #12 = done".into(),
        };
        assert_eq!(RevokeRequest::from_query(&request.to_query()), Ok(request));
        assert!(RevokeRequest::from_query("prefix=1.2.3.4&x=1").is_err());
    }

    #[test]
    fn grant_lists_keep_their_wire_form() {
        let answer = GrantListAnswer {
            list: GrantList::AllowedDestinations,
            grants: Vec::new(),
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(text, r#"{"allowed_destinations":[]}"#);
        assert_eq!(
            serde_json::from_str::<GrantListAnswer>(&text).unwrap(),
            answer
        );
    }
}
