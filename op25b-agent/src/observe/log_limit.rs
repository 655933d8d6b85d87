//! A recurring failure (a full disk under a SYN flood, a flood of bad
//! packets) is logged at a bounded rate: the first at once, then at most one
//! line per interval saying how many were folded into it.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    folded: u64,
}

impl LogLimiter {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            folded: 0,
        }
    }

    /// `Some(n)` when this occurrence may be logged, `n` being how many
    /// were held back since the last line; `None` to stay quiet.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            self.folded += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.folded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.admit(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(limiter.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limiter.admit(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(limiter.admit(t0 + Duration::from_secs(11)), None);
        assert_eq!(limiter.admit(t0 + Duration::from_secs(20)), Some(1));
    }
}
