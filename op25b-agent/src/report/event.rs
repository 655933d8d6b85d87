//! One block event line as [`crate::events`] writes it, read back. Unknown
//! fields are accepted (lines from newer agents); `subscriber` and `session`
//! come from RADIUS accounting where it is configured.

use std::{borrow::Cow, net::IpAddr, time::SystemTime};

use serde::{Deserialize, Serialize};

/// Why a line was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not an event: {0}")]
    Json(String),
    #[error("time {0:?} is not an RFC 3339 UTC time")]
    Time(String),
    #[error("attempts is 0")]
    NoAttempts,
}

#[derive(Debug, Deserialize)]
pub struct EventLine<'a> {
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub interface: Cow<'a, str>,
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub attempts: u64,
    #[serde(default)]
    pub vlan: Vec<u16>,
    #[serde(default)]
    pub pppoe_session: Option<u16>,
    #[serde(default, borrow)]
    pub subscriber: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub session: Option<Cow<'a, str>>,
}

/// The fields of an event that may leave the ISP, in the agent's order.
#[derive(Serialize)]
struct PublicEvent<'e> {
    time: &'e str,
    interface: &'e str,
    reason: &'e str,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    attempts: u64,
    #[serde(skip_serializing_if = "<[u16]>::is_empty")]
    vlan: &'e [u16],
    #[serde(skip_serializing_if = "Option::is_none")]
    pppoe_session: Option<u16>,
}

impl<'a> EventLine<'a> {
    /// Parses one line (without its newline) and its time.
    pub fn parse(line: &'a [u8]) -> Result<(Self, SystemTime), LineError> {
        let event: Self =
            serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
        let time = humantime::parse_rfc3339(&event.time)
            .map_err(|_| LineError::Time(event.time.clone().into_owned()))?;
        if event.attempts == 0 {
            return Err(LineError::NoAttempts);
        }
        Ok((event, time))
    }

    /// The subscriber this line names, if any (an empty name is none).
    pub fn subscriber(&self) -> Option<&str> {
        self.subscriber.as_deref().filter(|s| !s.is_empty())
    }

    /// Whether the line carries fields that must stay inside the ISP.
    pub fn has_private_fields(&self) -> bool {
        self.subscriber.is_some() || self.session.is_some()
    }

    /// The line as evidence for another network: exactly as written when it
    /// names nobody, else rewritten without `subscriber` and `session`.
    pub fn public_text(&self, line: &[u8]) -> String {
        if !self.has_private_fields() {
            // Parsed as JSON, so it is UTF-8.
            return String::from_utf8_lossy(line).into_owned();
        }
        serde_json::to_string(&PublicEvent {
            time: &self.time,
            interface: &self.interface,
            reason: &self.reason,
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            attempts: self.attempts,
            vlan: &self.vlan,
            pppoe_session: self.pppoe_session,
        })
        .expect("event serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::events::EventRecord;

    #[test]
    fn the_agents_own_lines_parse_and_stay_byte_exact() {
        let record = EventRecord {
            time: "2025-03-01T10:00:00.123Z".into(),
            interface: "eth1".into(),
            reason: "blocked",
            src: "100.64.1.2".parse().unwrap(),
            dst: "2001:db8::25".parse().unwrap(),
            src_port: 40_000,
            dst_port: 25,
            attempts: 3,
            vlan: vec![100, 200],
            pppoe_session: Some(7),
            subscriber: None,
            session: None,
        };
        let line = serde_json::to_string(&record).unwrap();
        let (event, time) = EventLine::parse(line.as_bytes()).unwrap();
        assert_eq!(event.src, record.src);
        assert_eq!(event.dst, record.dst);
        assert_eq!(
            (event.attempts, event.dst_port, event.pppoe_session),
            (3, 25, Some(7))
        );
        assert_eq!(
            time,
            humantime::parse_rfc3339("2025-03-01T10:00:00.123Z").unwrap()
        );
        assert_eq!(event.public_text(line.as_bytes()), line);
        assert_eq!(event.subscriber(), None);

        // What the agent writes when a RADIUS session holds the source.
        let named = EventRecord {
            subscriber: Some("alice@isp".into()),
            session: Some("nas1/S-1".into()),
            ..record
        };
        let named_line = serde_json::to_string(&named).unwrap();
        let (event, _) = EventLine::parse(named_line.as_bytes()).unwrap();
        assert_eq!(event.subscriber(), Some("alice@isp"));
        assert_eq!(event.session.as_deref(), Some("nas1/S-1"));
        assert_eq!(
            event.public_text(named_line.as_bytes()),
            line,
            "evidence is the line without subscriber and session"
        );
    }

    #[test]
    fn subscriber_and_session_never_reach_the_public_text() {
        let with = r#"{"time":"2025-03-01T10:00:00.123Z","interface":"eth1","reason":"blocked","src":"100.64.1.2","dst":"198.51.100.25","src_port":40000,"dst_port":25,"attempts":1,"subscriber":"alice@isp","session":"S-1","future":1}"#;
        let (event, _) = EventLine::parse(with.as_bytes()).unwrap();
        assert_eq!(event.subscriber(), Some("alice@isp"));
        let public = event.public_text(with.as_bytes());
        assert_eq!(
            public,
            r#"{"time":"2025-03-01T10:00:00.123Z","interface":"eth1","reason":"blocked","src":"100.64.1.2","dst":"198.51.100.25","src_port":40000,"dst_port":25,"attempts":1}"#
        );
    }

    #[test]
    fn broken_lines_say_why() {
        let cases: &[(&str, &str)] = &[
            ("{\"time\":\"2025-03-01T10:00:00Z\"", "not an event"),
            ("garbage", "not an event"),
            (
                r#"{"time":"yesterday","interface":"e","reason":"blocked","src":"100.64.1.2","dst":"198.51.100.25","src_port":1,"dst_port":25,"attempts":1}"#,
                "is not an RFC 3339",
            ),
            (
                r#"{"time":"2025-03-01T10:00:00Z","interface":"e","reason":"blocked","src":"100.64.1.300","dst":"198.51.100.25","src_port":1,"dst_port":25,"attempts":1}"#,
                "not an event",
            ),
            (
                r#"{"time":"2025-03-01T10:00:00Z","interface":"e","reason":"blocked","src":"100.64.1.3","dst":"198.51.100.25","src_port":1,"dst_port":25,"attempts":0}"#,
                "attempts is 0",
            ),
        ];
        for (line, why) in cases {
            let e = EventLine::parse(line.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(why), "{line}: {e}");
        }
    }
}
