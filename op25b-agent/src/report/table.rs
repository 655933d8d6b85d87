//! The same facts as the X-ARF reports, one CSV row per source, for the
//! abuse desk's spreadsheet. Lists inside a cell are space-separated.

use std::io::Write;

use super::{
    source::SourceReport,
    xarf::{compromise_evidence, rfc3339},
};

const PUBLIC_COLUMNS: [&str; 13] = [
    "report_id",
    "timestamp",
    "source_identifier",
    "source_port",
    "addresses",
    "first_seen",
    "last_seen",
    "attempts_count",
    "events_count",
    "distinct_destinations_count",
    "distinct_destinations_capped",
    "destination_ports",
    "compromise_evidence",
];
/// Left out with --no-internal.
const INTERNAL_COLUMNS: [&str; 2] = ["subscriber", "sessions"];

/// Writes the header, then one row per report.
pub struct Table<W: Write> {
    writer: csv::Writer<W>,
    internal: bool,
}

impl<W: Write> Table<W> {
    pub fn new(out: W, internal: bool) -> csv::Result<Self> {
        let mut writer = csv::Writer::from_writer(out);
        let mut header: Vec<&str> = PUBLIC_COLUMNS.to_vec();
        if internal {
            header.extend(INTERNAL_COLUMNS);
        }
        writer.write_record(&header)?;
        Ok(Self { writer, internal })
    }

    pub fn row(&mut self, r: &SourceReport, report_id: &str) -> csv::Result<()> {
        let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(" ");
        let mut row = vec![
            report_id.to_owned(),
            rfc3339(r.first_seen),
            r.first_address.to_string(),
            r.first_source_port.to_string(),
            join(&mut r.addresses.iter().map(|a| a.address.to_string())),
            rfc3339(r.first_seen),
            rfc3339(r.last_seen),
            r.attempts.to_string(),
            r.events.to_string(),
            r.distinct_destinations.to_string(),
            r.destinations_capped.to_string(),
            join(&mut r.destination_ports.iter().map(u16::to_string)),
            compromise_evidence(r),
        ];
        if self.internal {
            row.push(r.subscriber().unwrap_or("").to_owned());
            row.push(r.sessions.join(" "));
        }
        self.writer.write_record(&row)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.writer.flush()?;
        self.writer
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::{Aggregator, Place};

    #[test]
    fn header_and_rows_hold_the_facts() {
        let t0 = humantime::parse_rfc3339("2025-03-01T10:00:00Z").unwrap();
        let mut agg = Aggregator::new(t0);
        let file = agg.add_file("events.jsonl".into());
        let lines = [
            r#"{"time":"2025-03-01T10:00:01.000Z","interface":"eth1","reason":"blocked","src":"100.64.1.2","dst":"198.51.100.25","src_port":41000,"dst_port":25,"attempts":2,"subscriber":"bob, \"the\" builder"}"#,
            r#"{"time":"2025-03-01T10:00:05.000Z","interface":"eth1","reason":"blocked","src":"100.64.1.3","dst":"198.51.100.26","src_port":41001,"dst_port":2525,"attempts":1,"subscriber":"bob, \"the\" builder"}"#,
        ];
        for (i, l) in lines.iter().enumerate() {
            agg.add_line(
                l.as_bytes(),
                Place {
                    file,
                    line: i as u64 + 1,
                },
            );
        }
        let (reports, _, _) = agg.finish(1);
        for internal in [true, false] {
            let mut table = Table::new(Vec::new(), internal).unwrap();
            table.row(&reports[0], "id-1").unwrap();
            let text = String::from_utf8(table.finish().unwrap()).unwrap();
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let header: Vec<String> = reader
                .headers()
                .unwrap()
                .iter()
                .map(str::to_owned)
                .collect();
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            assert_eq!(rows.len(), 1);
            let cell = |name: &str| {
                let i = header
                    .iter()
                    .position(|h| h == name)
                    .unwrap_or_else(|| panic!("no {name}"));
                rows[0][i].to_owned()
            };
            assert_eq!(cell("report_id"), "id-1");
            assert_eq!(cell("source_identifier"), "100.64.1.2");
            assert_eq!(cell("source_port"), "41000");
            assert_eq!(cell("addresses"), "100.64.1.2 100.64.1.3");
            assert_eq!(cell("attempts_count"), "3");
            assert_eq!(cell("destination_ports"), "25 2525");
            assert_eq!(cell("last_seen"), "2025-03-01T10:00:05.000Z");
            assert_eq!(cell("distinct_destinations_capped"), "false");
            if internal {
                assert_eq!(cell("subscriber"), "bob, \"the\" builder");
            } else {
                assert!(!header.iter().any(|h| h == "subscriber"));
                assert!(!text.contains("bob"), "{text}");
            }
        }
    }
}
