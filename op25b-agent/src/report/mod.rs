//! `op25b-agent report`: abuse reports from the block events, one per
//! offending source (per subscriber where events name one), as X-ARF v4
//! JSON lines or CSV. Reads the current events file and its rotations
//! (plain or gzip) in one pass with memory per source, not per line.

pub mod aggregate;
pub mod config;
pub mod event;
pub mod files;
pub mod output;
pub mod progress;
pub mod source;
pub mod table;
pub mod xarf;

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use aggregate::{Aggregator, Place, Stats};
use files::{Line, LineReader};
use source::SourceReport;

pub use config::ReportsConfig;
pub use output::write;
pub use progress::Progress;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// X-ARF v4 JSON, one report object per line.
    Xarf,
    /// CSV with a header, one row per source.
    Csv,
}

/// What to report on and how.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    /// Events at most this old.
    pub window: Duration,
    /// Sources with fewer attempts in the window get no report.
    pub min_attempts: u64,
    pub format: Format,
    /// One file per report in this directory; `None`: all to one stream.
    pub out: Option<PathBuf>,
    /// Include `_internal` (X-ARF) or the subscriber columns (CSV).
    pub internal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{config}: [events] path is not set, so there are no events to report on")]
    NoEventsPath { config: PathBuf },
    #[error("{config}: X-ARF reports need a [reports] section (org, contact, domain) for reporter and sender")]
    NoReportsSection { config: PathBuf },
    #[error("--window must be longer than 0")]
    EmptyWindow,
    #[error("no events file at {} nor a rotation of it beside it: is [events] path the one the agent on this box writes?", path.display())]
    NoEventsFiles { path: PathBuf },
    #[error("cannot list the events files beside {}: {source}", path.display())]
    Discover { path: PathBuf, source: io::Error },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("writing the reports: {0}")]
    Output(#[from] io::Error),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// What the X-ARF and CSV writers need besides the facts.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub reporter: Option<&'a ReportsConfig>,
    pub window_start: SystemTime,
    pub generated: SystemTime,
    pub internal: bool,
}

/// What a run read and wrote, for the closing summary.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stats: Stats,
    pub files_read: usize,
    /// Rotations last written before the window began, not opened.
    pub files_older: usize,
    /// Files that could not be read (whole or in part), with why.
    pub file_problems: Vec<String>,
    pub reports: usize,
    pub below_min_attempts: usize,
    /// The files written with --out.
    pub written: Vec<PathBuf>,
}

impl Outcome {
    /// The closing lines for stderr.
    pub fn summary(&self) -> Vec<String> {
        let s = &self.stats;
        let mut lines = vec![format!(
            "{} lines read from {} files ({} in the window, {} before it; {} older files not opened); {} reports, {} sources under --min-attempts",
            s.lines, self.files_read, s.in_window, s.before_window, self.files_older, self.reports, self.below_min_attempts
        )];
        if let Some(first) = &s.first_skipped {
            lines.push(format!("{} lines skipped (first: {first})", s.skipped));
        }
        for problem in &self.file_problems {
            lines.push(format!("not read: {problem}"));
        }
        lines
    }
}

/// Reads the events of `events_path` from `window_start` on.
pub fn collect(
    events_path: &Path,
    window_start: SystemTime,
    min_attempts: u64,
    progress: &mut Progress<'_>,
) -> Result<(Vec<SourceReport>, Outcome), ReportError> {
    let mut outcome = Outcome::default();
    let found = match files::discover(events_path) {
        Ok(found) => found,
        Err(source) => {
            return Err(ReportError::Discover {
                path: events_path.to_owned(),
                source,
            })
        }
    };
    // The agent creates its events file when it starts, so none at all means
    // a wrong path or box: say so rather than report "nothing happened".
    if found.is_empty() {
        return Err(ReportError::NoEventsFiles {
            path: events_path.to_owned(),
        });
    }
    // Lines are written in time order, so a file last written before the
    // window began holds none of it (a minute's slack for clock steps).
    let (found, older): (Vec<_>, Vec<_>) = found
        .into_iter()
        .partition(|f| f.modified + Duration::from_secs(60) >= window_start);
    outcome.files_older = older.len();
    progress.total_bytes = found.iter().map(|f| f.bytes).sum();
    let mut aggregator = Aggregator::new(window_start);
    let mut buf = Vec::with_capacity(files::MAX_LINE_BYTES);
    let mut bytes_before = 0;
    for file in &found {
        let name = file.path.display().to_string();
        let mut reader = match LineReader::open(&file.path) {
            Ok(r) => r,
            Err(e) => {
                outcome.file_problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        outcome.files_read += 1;
        let id = aggregator.add_file(name.clone());
        let mut line = 0u64;
        loop {
            let read = reader.next_line(&mut buf);
            let place = Place {
                file: id,
                line: line + 1,
            };
            match read {
                Ok(Line::End) => break,
                Ok(Line::Complete | Line::Unterminated) => aggregator.add_line(&buf, place),
                Ok(Line::TooLong) => aggregator.skip(
                    place,
                    &format_args!("longer than {} bytes", files::MAX_LINE_BYTES),
                ),
                Err(e) => {
                    outcome.file_problems.push(format!(
                        "{name}:{}: {e}; the rest of this file could not be read",
                        place.line
                    ));
                    break;
                }
            }
            line += 1;
            if line.is_multiple_of(65_536) {
                progress.tick(
                    aggregator.stats.lines,
                    bytes_before + reader.bytes_read(),
                    aggregator.sources(),
                );
            }
        }
        bytes_before += file.bytes;
    }
    let (reports, stats, below) = aggregator.finish(min_attempts);
    outcome.stats = stats;
    outcome.reports = reports.len();
    outcome.below_min_attempts = below;
    Ok((reports, outcome))
}

/// The whole command: check the config, read, write. `now` ends the window.
pub fn run(
    config: &crate::config::Config,
    args: &ReportArgs,
    now: SystemTime,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Outcome, ReportError> {
    let events_path = config
        .events
        .path
        .as_ref()
        .ok_or_else(|| ReportError::NoEventsPath {
            config: config.path.clone(),
        })?;
    if args.format == Format::Xarf && config.reports.is_none() {
        return Err(ReportError::NoReportsSection {
            config: config.path.clone(),
        });
    }
    if args.window.is_zero() {
        return Err(ReportError::EmptyWindow);
    }
    let window_start = now
        .checked_sub(args.window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut progress = Progress::new(stderr, Duration::from_secs(3), Duration::from_secs(5), 0);
    let (reports, mut outcome) =
        collect(events_path, window_start, args.min_attempts, &mut progress)?;
    let context = Context {
        reporter: config.reports.as_ref(),
        window_start,
        generated: now,
        internal: args.internal,
    };
    outcome.written = write(&reports, args, &context, stdout)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn event(time: &str, src: &str, attempts: u64) -> String {
        format!(
            r#"{{"time":"{time}","interface":"eth1","reason":"blocked","src":"{src}","dst":"198.51.100.25","src_port":41000,"dst_port":25,"attempts":{attempts}}}"#
        )
    }

    fn config(dir: &Path, reports: bool) -> crate::config::Config {
        let mut text = "[events]\npath = \"events.jsonl\"\n".to_owned();
        if reports {
            text.push_str("[reports]\norg = \"Example ISP\"\ncontact = \"abuse@isp.example\"\ndomain = \"isp.example\"\n");
        }
        crate::config::Config::parse(&dir.join("op25b.toml"), &text).unwrap()
    }

    #[test]
    fn reads_rotated_and_gzip_files_skipping_corrupt_lines() {
        let dir = std::env::temp_dir().join(format!("op25b-report-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = humantime::parse_rfc3339("2025-03-02T00:00:00Z").unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.join("events.jsonl.2.gz")).unwrap(),
            flate2::Compression::default(),
        );
        writeln!(gz, "{}", event("2025-02-20T00:00:00Z", "100.64.1.2", 50)).unwrap();
        writeln!(gz, "{}", event("2025-03-01T01:00:00Z", "100.64.1.2", 2)).unwrap();
        gz.finish().unwrap();
        std::fs::write(
            dir.join("events.jsonl.1"),
            format!(
                "{}\n{{\"time\":\"2025-03-01T0\n",
                event("2025-03-01T02:00:00Z", "100.64.1.2", 3)
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("events.jsonl"),
            format!(
                "{}\n{}\n{}",
                event("2025-03-01T03:00:00Z", "100.64.1.3", 1),
                "x".repeat(5000),
                // The agent is writing this one: no newline yet, and cut.
                &event("2025-03-01T04:00:00Z", "100.64.1.2", 1)[..40]
            ),
        )
        .unwrap();
        // An old rotation from before the window: not even opened.
        std::fs::write(dir.join("events.jsonl.3"), "not json\n").unwrap();
        let old = std::fs::File::options()
            .write(true)
            .open(dir.join("events.jsonl.3"))
            .unwrap();
        old.set_modified(now - Duration::from_secs(10 * 86_400))
            .unwrap();

        let args = ReportArgs {
            window: Duration::from_secs(86_400),
            min_attempts: 2,
            format: Format::Xarf,
            out: None,
            internal: true,
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let outcome = run(&config(&dir, true), &args, now, &mut stdout, &mut stderr).unwrap();
        let text = String::from_utf8(stdout).unwrap();
        let reports: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(reports.len(), 1, "{text}");
        assert_eq!(reports[0]["source_identifier"], "100.64.1.2");
        assert_eq!(
            reports[0]["attempts_count"], 5,
            "the 50 before the window do not count"
        );
        assert_eq!(reports[0]["first_seen"], "2025-03-01T01:00:00.000Z");
        assert_eq!(outcome.files_read, 3);
        assert_eq!(outcome.files_older, 1);
        assert_eq!((outcome.stats.skipped, outcome.below_min_attempts), (3, 1));
        let summary = outcome.summary().join("\n");
        let first = format!(
            "3 lines skipped (first: {}:2: not an event",
            dir.join("events.jsonl.1").display()
        );
        assert!(summary.contains(&first), "{summary}");
        assert!(
            summary.contains("1 sources under --min-attempts"),
            "{summary}"
        );

        // CSV into a directory: one file per report, named by its report_id.
        let out = dir.join("out");
        let args = ReportArgs {
            format: Format::Csv,
            out: Some(out.clone()),
            min_attempts: 1,
            ..args
        };
        let outcome = run(
            &config(&dir, false),
            &args,
            now,
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(outcome.written.len(), 2);
        for path in &outcome.written {
            let body = std::fs::read_to_string(path).unwrap();
            let id = path.file_stem().unwrap().to_str().unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{}", path.display());
            assert_eq!(body.lines().count(), 2, "{body}");
            assert!(body.lines().nth(1).unwrap().starts_with(id), "{body}");
        }
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            2,
            "no partial files left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn last_hour(format: Format) -> ReportArgs {
        ReportArgs {
            window: Duration::from_secs(3600),
            min_attempts: 1,
            format,
            out: None,
            internal: false,
        }
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let dir = std::env::temp_dir();
        let args = last_hour(Format::Xarf);
        let now = SystemTime::now();
        let e = run(
            &config(&dir, false),
            &args,
            now,
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("need a [reports] section"), "{e}");
        let bare = crate::config::Config::parse(&dir.join("op25b.toml"), "").unwrap();
        let e = run(&bare, &args, now, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("[events] path is not set"), "{e}");
    }

    #[test]
    fn no_events_file_at_all_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let args = last_hour(Format::Csv);
        let config = config(dir.path(), false);
        let run_now = || {
            run(
                &config,
                &args,
                SystemTime::now(),
                &mut Vec::new(),
                &mut Vec::new(),
            )
        };
        let e = run_now().unwrap_err();
        assert!(matches!(e, ReportError::NoEventsFiles { .. }), "{e}");
        assert!(e.to_string().contains("events.jsonl"), "{e}");
        // An empty file (an agent that has blocked nothing yet) is no error.
        std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
        let outcome = run_now().unwrap();
        assert_eq!(outcome.files_read, 1);
        assert_eq!(outcome.reports, 0);
    }
}
