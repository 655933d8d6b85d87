//! The progress line `report` prints on stderr during a long run.

use std::{
    io::Write,
    time::{Duration, Instant},
};

/// Prints a progress line on stderr once a run takes longer than a few seconds.
pub struct Progress<'w> {
    out: &'w mut dyn Write,
    start: Instant,
    next: Duration,
    every: Duration,
    pub(super) total_bytes: u64,
}

impl<'w> Progress<'w> {
    pub fn new(
        out: &'w mut dyn Write,
        first_after: Duration,
        every: Duration,
        total_bytes: u64,
    ) -> Self {
        Self {
            out,
            start: Instant::now(),
            next: first_after,
            every,
            total_bytes,
        }
    }

    pub(super) fn tick(&mut self, lines: u64, bytes: u64, sources: usize) {
        let elapsed = self.start.elapsed();
        if elapsed < self.next {
            return;
        }
        self.next = elapsed + self.every;
        #[expect(clippy::cast_precision_loss, reason = "a percentage for people")]
        let percent = bytes as f64 * 100.0 / self.total_bytes.max(1) as f64;
        let _ = writeln!(
            self.out,
            "report: {lines} lines, {} of {} MiB read ({percent:.0}%), {sources} sources, {:.0} s",
            bytes >> 20,
            self.total_bytes >> 20,
            elapsed.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_speaks_only_after_its_delay() {
        let mut out = Vec::new();
        let mut quiet = Progress::new(&mut out, Duration::from_secs(3600), Duration::ZERO, 100);
        quiet.tick(10, 50, 1);
        assert!(out.is_empty());
        let mut progress =
            Progress::new(&mut out, Duration::ZERO, Duration::from_secs(3600), 4 << 20);
        progress.tick(1_000, 2 << 20, 7);
        progress.tick(2_000, 3 << 20, 8);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with("report: 1000 lines, 2 of 4 MiB read (50%), 7 sources"),
            "{text}"
        );
    }
}
