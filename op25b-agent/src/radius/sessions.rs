//! The session table that RADIUS accounting keeps: who (User-Name) holds
//! which addresses right now, on which NAS, and whether the session is
//! exempt by its own attributes or by CoA.
//!
//! Indexed by (NAS, Acct-Session-Id), by subscriber and by address, and
//! bounded by `max_sessions`. Persisted as a snapshot plus a journal of
//! changes (see [`SessionStore`]), so a restart or kill -9 loses nothing
//! that was acknowledged.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::{self, BufRead as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("the session table is full ({max} sessions, [radius] max_sessions)")]
    Full { max: usize },
}

/// One change, as the journal records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "op")]
enum Change {
    Upsert { session: Session },
    Remove { key: SessionKey },
    ClearNas { nas: Arc<str> },
}

#[derive(Serialize, Deserialize)]
struct JournalLine {
    seq: u64,
    #[serde(flatten)]
    change: Change,
}

#[derive(Default)]
pub struct SessionTable {
    max_sessions: usize,
    sessions: HashMap<SessionKey, Session>,
    by_subscriber: HashMap<Arc<str>, Vec<SessionKey>>,
    by_v4: HashMap<Ipv4Addr, SessionKey>,
    by_v6: HashMap<Prefix, SessionKey>,
    /// How many IPv6 session prefixes have each length (lookups try each).
    v6_lengths: BTreeMap<u8, usize>,
    /// Sessions exempt by their own attributes or CoA.
    flagged: HashSet<SessionKey>,
    /// Interned NAS names: few NASes, many sessions.
    nas_names: HashSet<Arc<str>>,
    /// Changes made so far (the journal's sequence number).
    seq: u64,
    /// Journal lines not yet written to disk.
    unwritten: Vec<u8>,
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

    fn insert(&mut self, session: Session) {
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
    fn replay(&mut self, change: Change) {
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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] crate::state_file::StateFileError),
    #[error("{}:{line}: not a session record: {message}", path.display())]
    Record {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {count} sessions stored, more than max_sessions = {max}", path.display())]
    OverCapacity {
        path: PathBuf,
        count: usize,
        max: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    op25b_sessions: u32,
    /// The journal sequence number this snapshot includes.
    seq: u64,
}

/// The table on disk: `session_state_file` holds a snapshot (a header line,
/// then one session per line) written atomically; `<file>.journal` holds
/// the changes since, each with its sequence number, appended and fsynced
/// before any answer that depends on them goes out.
pub struct SessionStore {
    path: PathBuf,
    journal_path: PathBuf,
    journal: fs::File,
    /// Journal lines since the last snapshot (compaction trigger).
    journal_lines: usize,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl SessionStore {
    /// Loads the snapshot and replays the journal into a table of at most
    /// `max_sessions`, then starts a fresh snapshot. A torn last journal
    /// line (a crash while appending; never acknowledged) is ignored; any
    /// other bad line is an error naming file:line.
    pub fn open(path: &Path, max_sessions: usize) -> Result<(Self, SessionTable), StoreError> {
        let mut table = SessionTable::new(max_sessions);
        let mut snapshot_seq = 0;
        match fs::File::open(path) {
            Ok(file) => {
                for (index, line) in io::BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(io_at(path))?;
                    let bad = |message: String| StoreError::Record {
                        path: path.to_owned(),
                        line: index + 1,
                        message,
                    };
                    if index == 0 {
                        let header: SnapshotHeader =
                            serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                        snapshot_seq = header.seq;
                        continue;
                    }
                    let mut session: Session =
                        serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                    session.nas = table.intern_nas(&session.nas);
                    table.insert(session);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(path)(e)),
        }
        let journal_path = PathBuf::from(format!("{}.journal", path.display()));
        table.seq = snapshot_seq;
        match fs::read(&journal_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let complete = text.rfind('\n').map_or("", |end| &text[..end]);
                for (index, line) in complete.lines().enumerate() {
                    let entry: JournalLine =
                        serde_json::from_str(line).map_err(|e| StoreError::Record {
                            path: journal_path.clone(),
                            line: index + 1,
                            message: e.to_string(),
                        })?;
                    if entry.seq > table.seq {
                        table.seq = entry.seq;
                        table.replay(entry.change);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&journal_path)(e)),
        }
        if table.len() > max_sessions {
            return Err(StoreError::OverCapacity {
                path: path.to_owned(),
                count: table.len(),
                max: max_sessions,
            });
        }
        let journal = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io_at(&journal_path))?;
        let mut store = Self {
            path: path.to_owned(),
            journal_path,
            journal,
            journal_lines: 0,
        };
        store.compact(&mut table)?;
        Ok((store, table))
    }

    /// Makes the table's changes so far durable: append and fdatasync.
    /// Call before answering the requests that made them.
    pub fn commit(&mut self, unwritten: &[u8]) -> Result<(), StoreError> {
        if unwritten.is_empty() {
            return Ok(());
        }
        self.journal
            .write_all(unwritten)
            .and_then(|()| self.journal.sync_data())
            .map_err(io_at(&self.journal_path))?;
        #[expect(clippy::naive_bytecount, reason = "once per batch, not per packet")]
        let lines = unwritten.iter().filter(|&&b| b == b'\n').count();
        self.journal_lines += lines;
        Ok(())
    }

    /// Whether the journal has grown enough to rewrite the snapshot.
    pub fn wants_compaction(&self, table: &SessionTable) -> bool {
        self.journal_lines > 10_000.max(table.len())
    }

    /// Writes a snapshot of `table` (which must have no unwritten changes
    /// pending that the snapshot should not include) and empties the journal.
    pub fn compact(&mut self, table: &mut SessionTable) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut table.unwritten);
        self.commit(&pending)?;
        crate::state_file::write_atomically(&self.path, |out| {
            serde_json::to_writer(
                &mut *out,
                &SnapshotHeader {
                    op25b_sessions: 1,
                    seq: table.seq,
                },
            )?;
            out.write_all(b"\n")?;
            for session in table.sessions.values() {
                serde_json::to_writer(&mut *out, session)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })?;
        // The snapshot has everything: lines up to its seq are skipped on
        // replay, so a crash before this truncation loses nothing either.
        self.journal
            .set_len(0)
            .and_then(|()| self.journal.sync_all())
            .map_err(io_at(&self.journal_path))?;
        self.journal_lines = 0;
        Ok(())
    }
}

impl SessionTable {
    /// The journal lines not yet on disk (the caller commits them).
    pub fn take_unwritten(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.unwritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(table: &mut SessionTable, id: &str, user: &str, v4: &str) -> Session {
        Session {
            nas: table.intern_nas("bng1"),
            id: id.into(),
            subscriber: user.into(),
            ipv4: Some(v4.parse().unwrap()),
            ipv6: vec![ipv6_prefix("2001:db8:1:100::".parse().unwrap(), 56)],
            attribute_exempt: false,
            coa: None,
            started_at: 100,
            updated_at: 100,
        }
    }

    fn key(id: &str) -> SessionKey {
        SessionKey {
            nas: "bng1".into(),
            id: id.into(),
        }
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn start_interim_stop_keep_every_index_in_step() {
        let mut table = SessionTable::new(10);
        let s = session(&mut table, "s1", "alice", "100.64.0.1");
        table.upsert(s.clone()).unwrap();
        assert_eq!(table.by_address(addr("100.64.0.1")).unwrap().id, s.id);
        assert_eq!(
            table.by_address(addr("2001:db8:1:1ff::9")).unwrap().id,
            s.id
        );
        assert!(table.by_address(addr("2001:db8:1:200::1")).is_none());
        assert_eq!(table.by_subscriber("alice").count(), 1);
        assert_eq!(table.by_session_id("s1", None).count(), 1);
        assert_eq!(table.by_session_id("s1", Some("bng2")).count(), 0);
        // Interim-Update with a new address: the old one leaves the index.
        let mut moved = s.clone();
        moved.ipv4 = Some("100.64.0.2".parse().unwrap());
        moved.updated_at = 200;
        table.upsert(moved).unwrap();
        assert!(table.by_address(addr("100.64.0.1")).is_none());
        assert_eq!(table.get(&key("s1")).unwrap().started_at, 100);
        table.remove(&key("s1")).unwrap();
        assert!(table.is_empty());
        assert!(table.by_address(addr("100.64.0.2")).is_none());
        assert!(table.by_address(addr("2001:db8:1:100::1")).is_none());
        assert_eq!(table.by_subscriber("alice").count(), 0);
        assert!(table.v6_lengths.is_empty());
    }

    #[test]
    fn an_address_taken_over_drops_the_stale_session() {
        let mut table = SessionTable::new(10);
        let old = session(&mut table, "old", "bob", "100.64.0.1");
        table.upsert(old).unwrap();
        let mut new = session(&mut table, "new", "carol", "100.64.0.1");
        new.ipv6.clear();
        table.upsert(new).unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(
            &*table.by_address(addr("100.64.0.1")).unwrap().subscriber,
            "carol"
        );
        assert!(table.by_address(addr("2001:db8:1:100::1")).is_none());
    }

    #[test]
    fn the_table_is_bounded_but_updates_still_fit() {
        let mut table = SessionTable::new(1);
        let s = session(&mut table, "s1", "alice", "100.64.0.1");
        table.upsert(s.clone()).unwrap();
        let other = session(&mut table, "s2", "bob", "100.64.0.2");
        assert_eq!(table.upsert(other), Err(TableError::Full { max: 1 }));
        let mut update = s;
        update.updated_at = 300;
        table.upsert(update).unwrap();
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn accounting_on_clears_only_that_nas() {
        let mut table = SessionTable::new(10);
        let a = session(&mut table, "a", "alice", "100.64.0.1");
        let mut b = session(&mut table, "b", "bob", "100.64.0.2");
        b.nas = table.intern_nas("bng2");
        b.ipv6.clear();
        table.upsert(a).unwrap();
        table.upsert(b).unwrap();
        assert_eq!(table.clear_nas("bng1"), 1);
        assert_eq!(table.len(), 1);
        assert!(table.by_address(addr("100.64.0.1")).is_none());
        assert!(table.by_address(addr("100.64.0.2")).is_some());
    }

    #[test]
    fn exemption_by_name_attribute_and_coa() {
        let mut table = SessionTable::new(10);
        let alice = session(&mut table, "a", "alice", "100.64.0.1");
        let mut bob = session(&mut table, "b", "bob", "100.64.0.2");
        bob.ipv6.clear();
        bob.attribute_exempt = true;
        let mut carol = session(&mut table, "c", "carol", "100.64.0.3");
        carol.ipv6.clear();
        table.upsert(alice).unwrap();
        table.upsert(bob).unwrap();
        table.upsert(carol).unwrap();
        let names: HashSet<String> = ["alice".to_owned(), "nobody".to_owned()].into();
        let exempt = |table: &SessionTable| {
            let mut v: Vec<(String, ExemptBy)> = table
                .exempt_sessions(&names)
                .map(|(s, by)| (s.subscriber.to_string(), by))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(
            exempt(&table),
            [
                ("alice".into(), ExemptBy::Subscriber),
                ("bob".into(), ExemptBy::SessionAttribute)
            ]
        );
        // CoA: enforce alice, exempt carol.
        assert!(table.set_coa(&key("a"), Some(CoaPolicy::Enforce)));
        assert!(table.set_coa(&key("c"), Some(CoaPolicy::Exempt)));
        assert!(!table.set_coa(&key("zz"), Some(CoaPolicy::Exempt)));
        assert_eq!(
            exempt(&table),
            [
                ("bob".into(), ExemptBy::SessionAttribute),
                ("carol".into(), ExemptBy::Coa)
            ]
        );
        // An Interim-Update keeps the CoA decision.
        let mut update = table.get(&key("c")).unwrap().clone();
        update.coa = None;
        update.updated_at = 999;
        table.upsert(update).unwrap();
        assert_eq!(table.get(&key("c")).unwrap().coa, Some(CoaPolicy::Exempt));
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("op25b-sessions-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_journal_and_snapshot_bring_the_table_back() {
        let dir = temp_dir("persist");
        let path = dir.join("sessions.json");
        let (mut store, mut table) = SessionStore::open(&path, 10).unwrap();
        let a = session(&mut table, "a", "alice", "100.64.0.1");
        let mut b = session(&mut table, "b", "bob", "100.64.0.2");
        b.ipv6.clear();
        table.upsert(a).unwrap();
        table.upsert(b).unwrap();
        table.set_coa(&key("b"), Some(CoaPolicy::Exempt));
        store.commit(&table.take_unwritten()).unwrap();
        // "kill -9" here: only snapshot (empty) + journal on disk.
        drop(store);
        let (mut store, mut again) = SessionStore::open(&path, 10).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.get(&key("b")).unwrap().coa, Some(CoaPolicy::Exempt));
        assert!(again.by_address(addr("2001:db8:1:100::1")).is_some());
        // The reopen compacted: a snapshot, an empty journal.
        assert_eq!(
            fs::metadata(dir.join("sessions.json.journal"))
                .unwrap()
                .len(),
            0
        );
        again.clear_nas("bng1");
        let c = session(&mut again, "c", "carol", "100.64.0.3");
        again.upsert(c).unwrap();
        store.commit(&again.take_unwritten()).unwrap();
        // A torn last line (crash mid-append) is ignored.
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join("sessions.json.journal"))
            .unwrap()
            .write_all(b"{\"seq\":99,\"op\":\"rem")
            .unwrap();
        drop(store);
        let (_, third) = SessionStore::open(&path, 10).unwrap();
        assert_eq!(third.len(), 1);
        assert_eq!(&*third.get(&key("c")).unwrap().subscriber, "carol");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn journal_lines_the_snapshot_already_holds_are_skipped() {
        let dir = temp_dir("order");
        let path = dir.join("sessions.json");
        let (mut store, mut table) = SessionStore::open(&path, 10).unwrap();
        let a = session(&mut table, "a", "alice", "100.64.0.1");
        table.upsert(a).unwrap();
        let journal = table.take_unwritten();
        store.commit(&journal).unwrap();
        store.compact(&mut table).unwrap();
        // A crash between snapshot and truncation leaves the journal; its
        // remove of "a" (seq 1) is older than the snapshot and must not run.
        fs::write(
            dir.join("sessions.json.journal"),
            "{\"seq\":1,\"op\":\"remove\",\"key\":{\"nas\":\"bng1\",\"id\":\"a\"}}\n",
        )
        .unwrap();
        let (_, again) = SessionStore::open(&path, 10).unwrap();
        assert_eq!(again.len(), 1, "a journal line older than the snapshot ran");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_record_names_file_and_line_and_capacity_is_checked() {
        let dir = temp_dir("bad");
        let path = dir.join("sessions.json");
        fs::write(&path, "{\"op25b_sessions\":1,\"seq\":0}\n{\"nas\":1}\n").unwrap();
        let e = SessionStore::open(&path, 10).err().unwrap().to_string();
        assert!(e.contains("sessions.json:2: not a session record"), "{e}");
        let (mut store, mut table) = SessionStore::open(&dir.join("ok.json"), 10).unwrap();
        for i in 0..3 {
            let mut s = session(&mut table, &format!("s{i}"), "u", &format!("100.64.0.{i}"));
            s.ipv6.clear();
            table.upsert(s).unwrap();
        }
        store.commit(&table.take_unwritten()).unwrap();
        drop(store);
        let e = SessionStore::open(&dir.join("ok.json"), 2)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("3 sessions stored, more than max_sessions = 2"),
            "{e}"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
