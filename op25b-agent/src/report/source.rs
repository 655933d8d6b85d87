//! One offending source's state while the events are read (a subscriber
//! where lines name one, else an address), and the report it becomes:
//! counts, times, a bounded set of destinations and the first and last few
//! event lines as evidence.

use std::{collections::HashSet, net::IpAddr, time::SystemTime};

use super::{aggregate::Place, event::EventLine};

/// Evidence lines kept per source: the earliest and the latest few. X-ARF
/// allows 50 evidence items; ten keep reports readable and memory small.
pub const EVIDENCE_EARLIEST: usize = 5;
pub const EVIDENCE_LATEST: usize = 5;
/// Distinct destinations counted exactly per source; past this the count is
/// a lower bound (flagged as such), so one source cannot grow without bound.
/// "At least 128 mail servers" is evidence enough, and the set stays small
/// (~4.6 KiB) however long the window: at 1,024 it was ~36 KiB a source,
/// and a 10,000,000-line report peaked at 4.3× the memory of a 1,000,000-line
/// one.
pub const MAX_DESTINATIONS: usize = 128;
const MAX_PORTS: usize = 16;
const MAX_SESSIONS: usize = 32;

/// Whom a report is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    Subscriber(String),
    Address(IpAddr),
}

#[derive(Debug, Clone)]
struct Kept {
    time: SystemTime,
    seq: u64,
    place: Place,
    text: Box<str>,
}

impl Kept {
    fn order(&self) -> (SystemTime, u64) {
        (self.time, self.seq)
    }
}

/// One address of a source, with its own facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressFacts {
    pub address: IpAddr,
    pub attempts: u64,
    pub events: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

#[derive(Debug)]
pub(super) struct Group {
    addresses: Vec<AddressFacts>,
    /// (time, seq) of the earliest event, its address and source port.
    first: (SystemTime, u64, IpAddr, u16),
    last_seen: SystemTime,
    pub(super) attempts: u64,
    events: u64,
    destinations: HashSet<IpAddr>,
    destinations_capped: bool,
    ports: Vec<u16>,
    sessions: Vec<Box<str>>,
    earliest: Vec<Kept>,
    latest: Vec<Kept>,
}

/// One evidence line of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceLine {
    /// 1-based position among the source's events in the window, by time.
    pub ordinal: u64,
    /// The line as it may leave the ISP (see [`EventLine::public_text`]).
    pub text: String,
    /// `file:line` it was read from.
    pub place: String,
}

/// Everything a report says about one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub key: GroupKey,
    /// The address and source port of the first attempt.
    pub first_address: IpAddr,
    pub first_source_port: u16,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub attempts: u64,
    pub events: u64,
    pub distinct_destinations: usize,
    /// `distinct_destinations` is a lower bound ([`MAX_DESTINATIONS`] reached).
    pub destinations_capped: bool,
    pub destination_ports: Vec<u16>,
    /// Most attempts first.
    pub addresses: Vec<AddressFacts>,
    pub sessions: Vec<String>,
    /// Oldest first.
    pub evidence: Vec<EvidenceLine>,
}

impl SourceReport {
    pub fn subscriber(&self) -> Option<&str> {
        match &self.key {
            GroupKey::Subscriber(name) => Some(name),
            GroupKey::Address(_) => None,
        }
    }
}

impl Group {
    pub(super) fn new(event: &EventLine<'_>, time: SystemTime, seq: u64) -> Self {
        Self {
            addresses: Vec::new(),
            first: (time, seq, event.src, event.src_port),
            last_seen: time,
            attempts: 0,
            events: 0,
            destinations: HashSet::new(),
            destinations_capped: false,
            ports: Vec::new(),
            sessions: Vec::new(),
            earliest: Vec::new(),
            latest: Vec::new(),
        }
    }

    pub(super) fn add(
        &mut self,
        event: &EventLine<'_>,
        line: &[u8],
        time: SystemTime,
        seq: u64,
        place: Place,
    ) {
        self.attempts = self.attempts.saturating_add(event.attempts);
        self.events += 1;
        if (time, seq) < (self.first.0, self.first.1) {
            self.first = (time, seq, event.src, event.src_port);
        }
        self.last_seen = self.last_seen.max(time);
        match self.addresses.iter_mut().find(|a| a.address == event.src) {
            Some(a) => {
                a.attempts = a.attempts.saturating_add(event.attempts);
                a.events += 1;
                a.first_seen = a.first_seen.min(time);
                a.last_seen = a.last_seen.max(time);
            }
            None => self.addresses.push(AddressFacts {
                address: event.src,
                attempts: event.attempts,
                events: 1,
                first_seen: time,
                last_seen: time,
            }),
        }
        if self.destinations.len() < MAX_DESTINATIONS {
            self.destinations.insert(event.dst);
        } else if !self.destinations.contains(&event.dst) {
            self.destinations_capped = true;
        }
        if !self.ports.contains(&event.dst_port) && self.ports.len() < MAX_PORTS {
            self.ports.push(event.dst_port);
        }
        if let Some(session) = event.session.as_deref().filter(|s| !s.is_empty()) {
            if self.sessions.len() < MAX_SESSIONS && !self.sessions.iter().any(|s| &**s == session)
            {
                self.sessions.push(session.into());
            }
        }
        let order = (time, seq);
        let keep_early = self.earliest.len() < EVIDENCE_EARLIEST
            || self.earliest.iter().any(|k| order < k.order());
        let keep_late =
            self.latest.len() < EVIDENCE_LATEST || self.latest.iter().any(|k| order > k.order());
        if keep_early || keep_late {
            let kept = Kept {
                time,
                seq,
                place,
                text: event.public_text(line).into_boxed_str(),
            };
            if keep_early {
                keep_extreme(&mut self.earliest, kept.clone(), EVIDENCE_EARLIEST, true);
            }
            if keep_late {
                keep_extreme(&mut self.latest, kept, EVIDENCE_LATEST, false);
            }
        }
    }

    pub(super) fn into_report(
        mut self,
        key: GroupKey,
        place: &impl Fn(Place) -> String,
    ) -> SourceReport {
        self.earliest.sort_by_key(Kept::order);
        self.latest.sort_by_key(Kept::order);
        let mut evidence: Vec<(u64, EvidenceLine, (SystemTime, u64))> = Vec::new();
        let late_base = self.events - self.latest.len() as u64;
        let early = self.earliest.iter().zip(1..);
        let late = self.latest.iter().zip(late_base + 1..);
        for (kept, ordinal) in early.chain(late) {
            if evidence.iter().any(|(seq, _, _)| *seq == kept.seq) {
                continue;
            }
            evidence.push((
                kept.seq,
                EvidenceLine {
                    ordinal,
                    text: kept.text.to_string(),
                    place: place(kept.place),
                },
                kept.order(),
            ));
        }
        evidence.sort_by_key(|(_, _, order)| *order);
        self.addresses
            .sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.address.cmp(&b.address)));
        self.ports.sort_unstable();
        SourceReport {
            key,
            first_address: self.first.2,
            first_source_port: self.first.3,
            first_seen: self.first.0,
            last_seen: self.last_seen,
            attempts: self.attempts,
            events: self.events,
            distinct_destinations: self.destinations.len(),
            destinations_capped: self.destinations_capped,
            destination_ports: self.ports,
            addresses: self.addresses,
            sessions: self.sessions.into_iter().map(String::from).collect(),
            evidence: evidence.into_iter().map(|(_, e, _)| e).collect(),
        }
    }
}

/// Keeps the `limit` smallest (`smallest`) or largest lines by (time, seq).
fn keep_extreme(kept: &mut Vec<Kept>, new: Kept, limit: usize, smallest: bool) {
    kept.push(new);
    if kept.len() > limit {
        let drop_at = if smallest {
            kept.iter().enumerate().max_by_key(|(_, k)| k.order())
        } else {
            kept.iter().enumerate().min_by_key(|(_, k)| k.order())
        }
        .map(|(i, _)| i)
        .expect("not empty");
        kept.swap_remove(drop_at);
    }
}
