//! The table in memory: sessions by (NAS, Acct-Session-Id), by subscriber
//! and by address, bounded, every change numbered and recorded as a
//! journal line for the store to write.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::{ipv6_prefix, CoaPolicy, ExemptBy, Session, SessionKey};
use crate::policy::prefix::Prefix;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("the session table is full ({max} sessions, [radius] max_sessions)")]
    Full { max: usize },
}

/// One change, as the journal records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "op")]
pub(super) enum Change {
    Upsert { session: Session },
    Remove { key: SessionKey },
    ClearNas { nas: Arc<str> },
}

#[derive(Serialize, Deserialize)]
pub(super) struct JournalLine {
    pub seq: u64,
    #[serde(flatten)]
    pub change: Change,
}

#[derive(Default)]
pub struct SessionTable {
    max_sessions: usize,
    pub(super) sessions: HashMap<SessionKey, Session>,
    by_subscriber: HashMap<Arc<str>, Vec<SessionKey>>,
    by_v4: HashMap<Ipv4Addr, SessionKey>,
    by_v6: HashMap<Prefix, SessionKey>,
    /// How many IPv6 session prefixes have each length (lookups try each).
    pub(super) v6_lengths: BTreeMap<u8, usize>,
    /// Sessions exempt by their own attributes or CoA.
    flagged: HashSet<SessionKey>,
    /// Interned NAS names: few NASes, many sessions.
    nas_names: HashSet<Arc<str>>,
    /// Changes made so far (the journal's sequence number).
    pub(super) seq: u64,
    /// Journal lines not yet written to disk.
    pub(super) unwritten: Vec<u8>,
}

impl SessionTable {
    pub fn new(max_sessions: usize) -> Self {
        Self {
            max_sessions,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// Changes made so far; bumps with every change.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The NAS name shared by every session of that NAS.
    pub fn intern_nas(&mut self, nas: &str) -> Arc<str> {
        if let Some(name) = self.nas_names.get(nas) {
            return Arc::clone(name);
        }
        let name: Arc<str> = Arc::from(nas);
        self.nas_names.insert(Arc::clone(&name));
        name
    }

    fn record(&mut self, change: Change) {
        self.seq += 1;
        let line = JournalLine {
            seq: self.seq,
            change,
        };
        serde_json::to_writer(&mut self.unwritten, &line).expect("journal lines serialize");
        self.unwritten.push(b'\n');
    }

    /// Start or Interim-Update: the session as the NAS now reports it. A
    /// CoA decision and the start time survive updates. An address another
    /// session held moves to this one (that session missed its Stop) and
    /// the stale session is dropped.
    pub fn upsert(&mut self, mut session: Session) -> Result<(), TableError> {
        let key = session.key();
        let old = self.sessions.get(&key);
        if old.is_none() && self.sessions.len() >= self.max_sessions {
            return Err(TableError::Full {
                max: self.max_sessions,
            });
        }
        if let Some(old) = old {
            session.coa = session.coa.or(old.coa);
            session.started_at = old.started_at.min(session.started_at);
            if *old == session {
                return Ok(());
            }
        }
        self.insert(session.clone());
        self.record(Change::Upsert { session });
        Ok(())
    }

    pub(super) fn insert(&mut self, session: Session) {
        let key = session.key();
        self.unindex(&key);
        let holders: HashSet<SessionKey> = session
            .ipv4
            .and_then(|a| self.by_v4.get(&a).cloned())
            .into_iter()
            .chain(
                session
                    .ipv6
                    .iter()
                    .filter_map(|p| self.by_v6.get(p).cloned()),
            )
            .filter(|k| *k != key)
            .collect();
        for stale in holders {
            self.unindex(&stale);
            self.sessions.remove(&stale);
        }
        if let Some(a) = session.ipv4 {
            self.by_v4.insert(a, key.clone());
        }
        for p in &session.ipv6 {
            self.by_v6.insert(*p, key.clone());
            *self.v6_lengths.entry(p.len()).or_default() += 1;
        }
        self.by_subscriber
            .entry(Arc::clone(&session.subscriber))
            .or_default()
            .push(key.clone());
        if session.flagged() {
            self.flagged.insert(key.clone());
        }
        self.sessions.insert(key, session);
    }

    /// Takes `key` out of every index (not out of `sessions`).
    fn unindex(&mut self, key: &SessionKey) {
        let Some(old) = self.sessions.get(key) else {
            return;
        };
        if let Some(a) = old.ipv4 {
            if self.by_v4.get(&a) == Some(key) {
                self.by_v4.remove(&a);
            }
        }
        for p in &old.ipv6 {
            if self.by_v6.get(p) == Some(key) {
                self.by_v6.remove(p);
                if let Some(n) = self.v6_lengths.get_mut(&p.len()) {
                    *n -= 1;
                    if *n == 0 {
                        self.v6_lengths.remove(&p.len());
                    }
                }
            }
        }
        if let Some(keys) = self.by_subscriber.get_mut(&old.subscriber) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_subscriber.remove(&old.subscriber);
            }
        }
        self.flagged.remove(key);
    }

    /// Stop (or Disconnect): the session and its addresses leave.
    pub fn remove(&mut self, key: &SessionKey) -> Option<Session> {
        self.unindex(key);
        let removed = self.sessions.remove(key)?;
        self.record(Change::Remove { key: key.clone() });
        Some(removed)
    }

    /// Accounting-On / Accounting-Off: the NAS restarted or stops, so all
    /// its sessions are over. Returns how many ended.
    pub fn clear_nas(&mut self, nas: &str) -> usize {
        let keys: Vec<SessionKey> = self
            .sessions
            .keys()
            .filter(|k| &*k.nas == nas)
            .cloned()
            .collect();
        for key in &keys {
            self.unindex(key);
            self.sessions.remove(key);
        }
        if !keys.is_empty() {
            self.record(Change::ClearNas {
                nas: Arc::from(nas),
            });
        }
        keys.len()
    }

    /// Sets (or with `None` clears) the CoA decision of a session.
    pub fn set_coa(&mut self, key: &SessionKey, coa: Option<CoaPolicy>) -> bool {
        let Some(session) = self.sessions.get(key) else {
            return false;
        };
        if session.coa == coa {
            return true;
        }
        let mut session = session.clone();
        session.coa = coa;
        self.insert(session.clone());
        self.record(Change::Upsert { session });
        true
    }

    pub fn get(&self, key: &SessionKey) -> Option<&Session> {
        self.sessions.get(key)
    }

    /// Sessions with this Acct-Session-Id (on `nas`, when given).
    pub fn by_session_id<'a>(
        &'a self,
        id: &'a str,
        nas: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Session> + 'a {
        // NAS names are few: try each rather than index the id alone.
        self.nas_names
            .iter()
            .filter(move |n| nas.is_none_or(|want| &***n == want))
            .filter_map(move |n| {
                self.sessions.get(&SessionKey {
                    nas: Arc::clone(n),
                    id: Arc::from(id),
                })
            })
    }

    pub fn by_subscriber(&self, subscriber: &str) -> impl Iterator<Item = &Session> {
        self.by_subscriber
            .get(subscriber)
            .into_iter()
            .flatten()
            .filter_map(|k| self.sessions.get(k))
    }

    /// The session whose address or prefix covers `addr` (most specific).
    pub fn by_address(&self, addr: IpAddr) -> Option<&Session> {
        let key = match addr {
            IpAddr::V4(a) => self.by_v4.get(&a),
            IpAddr::V6(a) => self
                .v6_lengths
                .keys()
                .rev()
                .find_map(|&len| self.by_v6.get(&ipv6_prefix(a, len))),
        }?;
        self.sessions.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Every exempt session with why, given the subscribers exempt by name
    /// (config lists and run-time grants). Costs the number of exempt
    /// sessions, not the table size.
    pub fn exempt_sessions<'a>(
        &'a self,
        exempt_subscribers: &'a HashSet<String>,
    ) -> impl Iterator<Item = (&'a Session, ExemptBy)> + 'a {
        let flagged = self
            .flagged
            .iter()
            .filter_map(|k| self.sessions.get(k))
            .filter_map(move |s| {
                Some((s, s.exemption(exempt_subscribers.contains(&*s.subscriber))?))
            });
        let by_name = exempt_subscribers
            .iter()
            .flat_map(|name| self.by_subscriber(name))
            .filter(|s| !s.flagged())
            .filter_map(|s| Some((s, s.exemption(true)?)));
        flagged.chain(by_name)
    }

    /// Applies a journal line read back from disk.
    pub(super) fn replay(&mut self, change: Change) {
        match change {
            Change::Upsert { mut session } => {
                session.nas = self.intern_nas(&session.nas);
                self.insert(session);
            }
            Change::Remove { key } => {
                self.unindex(&key);
                self.sessions.remove(&key);
            }
            Change::ClearNas { nas } => {
                let keys: Vec<SessionKey> = self
                    .sessions
                    .keys()
                    .filter(|k| k.nas == nas)
                    .cloned()
                    .collect();
                for key in keys {
                    self.unindex(&key);
                    self.sessions.remove(&key);
                }
            }
        }
    }
}

impl SessionTable {
    /// The journal lines not yet on disk (the caller commits them).
    pub fn take_unwritten(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.unwritten)
    }
}
