//! Block events folded into one state per offending source
//! ([`super::source`]). Memory grows with the sources, never with the lines.

use std::{collections::HashMap, net::IpAddr, time::SystemTime};

use super::{
    event::EventLine,
    source::{Group, GroupKey, SourceReport},
};

/// Where a line is: an index into the file names and a 1-based line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub file: u32,
    pub line: u64,
}

/// Counts of what was read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub lines: u64,
    pub in_window: u64,
    pub before_window: u64,
    pub skipped: u64,
    /// `file:line: why` of the first skipped line.
    pub first_skipped: Option<String>,
}

/// Folds lines into per-source state.
pub struct Aggregator {
    since: SystemTime,
    files: Vec<String>,
    by_subscriber: HashMap<Box<str>, Group>,
    by_address: HashMap<IpAddr, Group>,
    seq: u64,
    pub stats: Stats,
}

impl Aggregator {
    /// Events before `since` are outside the window.
    pub fn new(since: SystemTime) -> Self {
        Self {
            since,
            files: Vec::new(),
            by_subscriber: HashMap::new(),
            by_address: HashMap::new(),
            seq: 0,
            stats: Stats::default(),
        }
    }

    /// Registers a file name for [`Place::file`].
    pub fn add_file(&mut self, name: String) -> u32 {
        self.files.push(name);
        u32::try_from(self.files.len() - 1).expect("fewer than 2^32 files")
    }

    fn place(&self, place: Place) -> String {
        format!("{}:{}", self.files[place.file as usize], place.line)
    }

    /// Sources so far.
    pub fn sources(&self) -> usize {
        self.by_subscriber.len() + self.by_address.len()
    }

    /// Counts a line that could not be used.
    pub fn skip(&mut self, place: Place, why: &dyn std::fmt::Display) {
        self.stats.lines += 1;
        self.stats.skipped += 1;
        if self.stats.first_skipped.is_none() {
            self.stats.first_skipped = Some(format!("{}: {why}", self.place(place)));
        }
    }

    /// Reads one line (without its newline).
    pub fn add_line(&mut self, line: &[u8], place: Place) {
        let (event, time) = match EventLine::parse(line) {
            Ok(parsed) => parsed,
            Err(e) => return self.skip(place, &e),
        };
        self.stats.lines += 1;
        if time < self.since {
            self.stats.before_window += 1;
            return;
        }
        self.stats.in_window += 1;
        self.seq += 1;
        let seq = self.seq;
        let group = match event.subscriber() {
            Some(name) => {
                if !self.by_subscriber.contains_key(name) {
                    self.by_subscriber
                        .insert(name.into(), Group::new(&event, time, seq));
                }
                self.by_subscriber.get_mut(name).expect("just inserted")
            }
            None => self
                .by_address
                .entry(event.src)
                .or_insert_with(|| Group::new(&event, time, seq)),
        };
        group.add(&event, line, time, seq, place);
    }

    /// The sources with at least `min_attempts` attempts, most attempts
    /// first (then by key, for a stable order).
    pub fn finish(self, min_attempts: u64) -> (Vec<SourceReport>, Stats, usize) {
        let files = self.files;
        let place = |p: Place| format!("{}:{}", files[p.file as usize], p.line);
        let mut below = 0;
        let mut reports: Vec<SourceReport> = self
            .by_subscriber
            .into_iter()
            .map(|(k, g)| (GroupKey::Subscriber(k.into()), g))
            .chain(
                self.by_address
                    .into_iter()
                    .map(|(k, g)| (GroupKey::Address(k), g)),
            )
            .filter(|(_, g)| {
                let keep = g.attempts >= min_attempts;
                below += usize::from(!keep);
                keep
            })
            .map(|(key, group)| group.into_report(key, &place))
            .collect();
        reports.sort_by(|a, b| b.attempts.cmp(&a.attempts).then_with(|| a.key.cmp(&b.key)));
        (reports, self.stats, below)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::source::{EVIDENCE_EARLIEST, EVIDENCE_LATEST, MAX_DESTINATIONS};

    fn at(seconds: u64) -> SystemTime {
        humantime::parse_rfc3339("2025-03-01T00:00:00Z").unwrap() + Duration::from_secs(seconds)
    }

    fn line(seconds: u64, src: &str, dst: &str, attempts: u64, extra: &str) -> String {
        format!(
            r#"{{"time":"{}","interface":"eth1","reason":"blocked","src":"{src}","dst":"{dst}","src_port":{},"dst_port":25,"attempts":{attempts}{extra}}}"#,
            humantime::format_rfc3339_millis(at(seconds)),
            40_000 + seconds
        )
    }

    fn feed(agg: &mut Aggregator, lines: &[String]) {
        let file = agg.add_file("events.jsonl".into());
        for (i, l) in lines.iter().enumerate() {
            agg.add_line(
                l.as_bytes(),
                Place {
                    file,
                    line: i as u64 + 1,
                },
            );
        }
    }

    #[test]
    fn one_report_per_source_with_its_facts() {
        let mut agg = Aggregator::new(at(100));
        feed(
            &mut agg,
            &[
                line(50, "100.64.1.2", "198.51.100.25", 9, ""),
                line(200, "100.64.1.2", "198.51.100.25", 1, ""),
                line(150, "100.64.1.2", "198.51.100.26", 4, ""),
                line(300, "100.64.9.9", "198.51.100.25", 1, ""),
                "{broken".into(),
                line(400, "2001:db8:1000::5", "2001:db8:25::1", 2, ""),
            ],
        );
        let (reports, stats, below) = agg.finish(2);
        assert_eq!(
            stats,
            Stats {
                lines: 6,
                in_window: 4,
                before_window: 1,
                skipped: 1,
                first_skipped: Some(
                    "events.jsonl:5: not an event: key must be a string at line 1 column 2".into()
                ),
            }
        );
        assert_eq!(below, 1, "100.64.9.9 had 1 attempt, under --min-attempts 2");
        assert_eq!(reports.len(), 2);
        let r = &reports[0];
        assert_eq!(r.key, GroupKey::Address("100.64.1.2".parse().unwrap()));
        assert_eq!((r.attempts, r.events, r.distinct_destinations), (5, 2, 2));
        assert_eq!((r.first_seen, r.last_seen), (at(150), at(200)));
        assert_eq!(
            r.first_source_port, 40_150,
            "the port of the earliest attempt"
        );
        assert_eq!(r.destination_ports, [25]);
        assert_eq!(r.evidence.len(), 2);
        assert_eq!(r.evidence[0].ordinal, 1);
        assert_eq!(r.evidence[0].place, "events.jsonl:3");
        assert!(r.evidence[0].text.contains("198.51.100.26"));
        assert_eq!(
            reports[1].key,
            GroupKey::Address("2001:db8:1000::5".parse().unwrap())
        );
    }

    #[test]
    fn a_subscriber_is_one_report_over_its_addresses() {
        let mut agg = Aggregator::new(at(0));
        let sub = r#","subscriber":"alice","session":"S1""#;
        let sub2 = r#","subscriber":"alice","session":"S2""#;
        feed(
            &mut agg,
            &[
                line(10, "100.64.1.2", "198.51.100.25", 1, sub),
                line(20, "100.64.7.7", "198.51.100.25", 3, sub2),
                line(30, "100.64.1.2", "198.51.100.25", 1, ""),
            ],
        );
        let (reports, _, _) = agg.finish(1);
        assert_eq!(reports.len(), 2);
        let alice = &reports[0];
        assert_eq!(alice.subscriber(), Some("alice"));
        assert_eq!(alice.attempts, 4);
        assert_eq!(alice.first_address, "100.64.1.2".parse::<IpAddr>().unwrap());
        let addresses: Vec<(String, u64)> = alice
            .addresses
            .iter()
            .map(|a| (a.address.to_string(), a.attempts))
            .collect();
        assert_eq!(
            addresses,
            [("100.64.7.7".into(), 3), ("100.64.1.2".into(), 1)]
        );
        assert_eq!(alice.sessions, ["S1", "S2"]);
        assert!(alice
            .evidence
            .iter()
            .all(|e| !e.text.contains("alice") && !e.text.contains("S1")));
        assert_eq!(
            reports[1].key,
            GroupKey::Address("100.64.1.2".parse().unwrap())
        );
        assert_eq!(reports[1].attempts, 1);
    }

    #[test]
    fn evidence_is_the_earliest_and_latest_lines_whatever_the_file_order() {
        let mut agg = Aggregator::new(at(0));
        // 30 events, fed newest file first and shuffled within.
        let mut lines: Vec<String> = (1..=30)
            .map(|s| line(s, "100.64.1.2", &format!("198.51.100.{s}"), 1, ""))
            .collect();
        lines.reverse();
        lines.swap(3, 17);
        feed(&mut agg, &lines);
        let (reports, _, _) = agg.finish(1);
        let r = &reports[0];
        let ordinals: Vec<u64> = r.evidence.iter().map(|e| e.ordinal).collect();
        assert_eq!(ordinals, [1, 2, 3, 4, 5, 26, 27, 28, 29, 30]);
        for e in &r.evidence {
            let t = humantime::format_rfc3339_millis(at(e.ordinal)).to_string();
            assert!(e.text.contains(&t), "event {} is {}", e.ordinal, e.text);
        }
        assert_eq!(
            (r.first_seen, r.last_seen, r.distinct_destinations),
            (at(1), at(30), 30)
        );
    }

    #[test]
    fn destinations_stop_growing_and_say_so() {
        let mut agg = Aggregator::new(at(0));
        let file = agg.add_file("f".into());
        for i in 0..(MAX_DESTINATIONS as u64 + 10) {
            let dst = std::net::Ipv4Addr::from(0xc633_6400 + u32::try_from(i).unwrap());
            let l = line(1, "100.64.1.2", &dst.to_string(), 1, "");
            agg.add_line(l.as_bytes(), Place { file, line: i + 1 });
        }
        let (reports, _, _) = agg.finish(1);
        assert_eq!(reports[0].distinct_destinations, MAX_DESTINATIONS);
        assert!(reports[0].destinations_capped);
        assert_eq!(
            reports[0].evidence.len(),
            EVIDENCE_EARLIEST + EVIDENCE_LATEST
        );
    }
}
