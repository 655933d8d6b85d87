//! Reading the session table for people: `GET /api/v1/sessions` (the
//! `sessions` command) and the session part of `explain`.

use std::net::IpAddr;

use super::{sessions::Session, Radius};
use crate::{
    api::types::{SessionFilter, SessionJson, SessionsAnswer, SessionsQuery},
    clock::rfc3339,
};

impl Radius {
    /// The sessions `query` asks for, with why each is exempt as of the
    /// last map update. Unfiltered, the first `limit` sessions in no
    /// particular order (sorted among themselves): the table lock is not
    /// held to sort a million sessions.
    pub fn sessions(&self, query: &SessionsQuery) -> SessionsAnswer {
        let subscribers = self.applied_subscribers.read().expect("not poisoned");
        let table = self.table.lock().expect("not poisoned");
        let json = |s: &Session| session_json(s, subscribers.contains(&*s.subscriber));
        let (mut sessions, matched): (Vec<SessionJson>, usize) = match &query.filter {
            SessionFilter::All => (
                table.iter().take(query.limit).map(json).collect(),
                table.len(),
            ),
            SessionFilter::Subscriber(name) => {
                let all: Vec<SessionJson> = table.by_subscriber(name).map(json).collect();
                let matched = all.len();
                (all.into_iter().take(query.limit).collect(), matched)
            }
            SessionFilter::Address(addr) => {
                let found: Vec<SessionJson> =
                    table.by_address(*addr).map(json).into_iter().collect();
                let matched = found.len();
                (found, matched)
            }
        };
        let total = table.len();
        drop(table);
        sessions
            .sort_by(|a, b| (&a.subscriber, &a.started_at).cmp(&(&b.subscriber, &b.started_at)));
        SessionsAnswer {
            total,
            exempt: usize::try_from(self.metrics.exempt_sessions.get()).unwrap_or(0),
            truncated: matched > sessions.len(),
            sessions,
        }
    }

    /// The session holding `addr`, for `explain`.
    pub fn session_at(&self, addr: IpAddr) -> Option<SessionJson> {
        self.sessions(&SessionsQuery {
            filter: SessionFilter::Address(addr),
            limit: 1,
        })
        .sessions
        .pop()
    }
}

fn session_json(session: &Session, subscriber_exempt: bool) -> SessionJson {
    SessionJson {
        subscriber: session.subscriber.to_string(),
        session: session.key().to_string(),
        nas: session.nas.to_string(),
        addresses: session.prefixes().map(|p| p.to_string()).collect(),
        exempt_by: session.exemption(subscriber_exempt).map(|e| label(&e)),
        coa: session.coa.map(|c| label(&c)),
        started_at: rfc3339(session.started_at),
        updated_at: rfc3339(session.updated_at),
    }
}

/// The snake_case name serde gives a unit variant (as the journal has it).
fn label<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use super::*;
    use crate::{config::radius::RadiusConfig, radius::sessions::CoaPolicy};

    fn session(id: &str, subscriber: &str, ipv4: [u8; 4], coa: Option<CoaPolicy>) -> Session {
        Session {
            nas: Arc::from("bng1"),
            id: Arc::from(id),
            subscriber: Arc::from(subscriber),
            ipv4: Some(ipv4.into()),
            ipv6: vec![format!("2001:db8:{}::/56", ipv4[3]).parse().unwrap()],
            attribute_exempt: false,
            coa,
            started_at: 1_000,
            updated_at: 2_000,
        }
    }

    #[test]
    fn sessions_are_listed_by_subscriber_and_address_with_why_they_are_exempt() {
        let dir = std::env::temp_dir().join(format!("op25b-query-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let radius = Radius::open(RadiusConfig {
            accounting_listen: None,
            coa_listen: None,
            session_state_file: dir.join("sessions.json"),
            max_sessions: 10,
            receive_buffer_bytes: crate::config::radius::DEFAULT_RECEIVE_BUFFER_BYTES,
            exempt_filter_id: None,
            clients: Vec::new(),
        })
        .unwrap();
        {
            let mut table = radius.table.lock().unwrap();
            table
                .upsert(session("s1", "alice", [100, 64, 0, 1], None))
                .unwrap();
            table
                .upsert(session(
                    "s2",
                    "bob",
                    [100, 64, 0, 2],
                    Some(CoaPolicy::Exempt),
                ))
                .unwrap();
            table
                .upsert(session("s3", "carol", [100, 64, 0, 3], None))
                .unwrap();
        }
        // Before the maps were updated alice's name exempts nothing yet.
        let alice = SessionsQuery {
            filter: SessionFilter::Subscriber("alice".into()),
            limit: 10,
        };
        assert_eq!(radius.sessions(&alice).sessions[0].exempt_by, None);
        radius.sync(&HashSet::from(["alice".to_owned()]), || Ok(()));

        let answer = radius.sessions(&alice);
        assert_eq!(
            (answer.total, answer.exempt, answer.truncated),
            (3, 2, false)
        );
        let only = &answer.sessions[..];
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].session, "bng1/s1");
        assert_eq!(only[0].addresses, ["100.64.0.1/32", "2001:db8:1::/56"]);
        assert_eq!(only[0].exempt_by.as_deref(), Some("subscriber"));

        let in_prefix = radius.session_at("2001:db8:2:0:ff::9".parse().unwrap());
        assert_eq!(in_prefix.map(|s| s.subscriber).as_deref(), Some("bob"));
        let by_v4 = radius.session_at("100.64.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            (
                by_v4.subscriber.as_str(),
                by_v4.exempt_by.as_deref(),
                by_v4.coa.as_deref()
            ),
            ("bob", Some("coa"), Some("exempt"))
        );
        let carol = radius.session_at("100.64.0.3".parse().unwrap()).unwrap();
        assert_eq!(carol.exempt_by, None);
        assert!(radius.session_at("100.64.0.99".parse().unwrap()).is_none());

        let limited = radius.sessions(&SessionsQuery {
            filter: SessionFilter::All,
            limit: 2,
        });
        assert_eq!((limited.sessions.len(), limited.truncated), (2, true));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
