//! Suspected infected subscribers: the sources with the most blocked
//! connection attempts in a window, in bounded memory.
//!
//! Time is cut into 5-minute buckets kept for 24 hours; each bucket is a
//! Space-Saving sketch (Metwally et al.) of at most `capacity` sources, so
//! memory stays at most `BUCKETS × capacity` entries (about 200 bytes each:
//! ~59 MB at the default `events.top_capacity` of 1024) however many distinct sources attack. A
//! source's count can be overestimated by at most its `error`; any source
//! with more than 1/capacity of a bucket's attempts is always listed.
//! Distinct destinations are estimated by linear counting over a 128-bit
//! bitmap, over the destinations of reported events (a lower bound when the
//! kernel's per-source rate limit folds attempts together).

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    hash::{Hash, Hasher},
    net::IpAddr,
};

use serde::Serialize;

pub const BUCKET_SECONDS: u64 = 300;
pub const BUCKETS: usize = 24 * 3600 / 300;
const _: () = assert!(BUCKETS as u64 * BUCKET_SECONDS == 24 * 3600);

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    count: u64,
    error: u64,
    first_seen: u64,
    last_seen: u64,
    destinations: u128,
}

/// One Space-Saving sketch.
#[derive(Debug)]
struct Sketch {
    entries: HashMap<IpAddr, Entry>,
    /// (count, source), to find the smallest in O(log n).
    order: BTreeSet<(u64, IpAddr)>,
    capacity: usize,
}

impl Sketch {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::with_capacity(capacity),
            order: BTreeSet::new(),
            capacity,
        }
    }

    fn add(&mut self, src: IpAddr, attempts: u64, time: u64, dst_bit: u128) {
        let entry = if let Some(entry) = self.entries.get_mut(&src) {
            self.order.remove(&(entry.count, src));
            entry
        } else {
            let mut fresh = Entry {
                first_seen: time,
                ..Entry::default()
            };
            if self.entries.len() >= self.capacity {
                // Replace the smallest: the newcomer inherits its count as error.
                let (min_count, min_src) = self.order.pop_first().expect("full sketch has entries");
                self.entries.remove(&min_src);
                fresh.count = min_count;
                fresh.error = min_count;
            }
            self.entries.entry(src).or_insert(fresh)
        };
        entry.count += attempts;
        entry.last_seen = entry.last_seen.max(time);
        entry.destinations |= dst_bit;
        self.order.insert((entry.count, src));
    }
}

#[derive(Debug)]
struct Bucket {
    start: u64,
    sketch: Sketch,
}

/// The top-sources tracker.
#[derive(Debug)]
pub struct TopSources {
    buckets: VecDeque<Bucket>,
    capacity: usize,
}

/// One line of the top list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopSource {
    pub source: IpAddr,
    /// Blocked connection attempts in the window (may overestimate by `error`).
    pub attempts: u64,
    pub error: u64,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Estimated distinct destinations among reported attempts.
    pub distinct_destinations: u64,
}

fn destination_bit(dst: IpAddr) -> u128 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dst.hash(&mut h);
    1u128 << (h.finish() % 128)
}

/// Linear counting over a 128-bit bitmap.
fn estimate_distinct(bitmap: u128) -> u64 {
    let zeros = f64::from(bitmap.count_zeros());
    if zeros == 0.0 {
        return 128 * 5; // saturated: "hundreds"
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "small positive estimate"
    )]
    let n = (-128.0 * (zeros / 128.0).ln()).round() as u64;
    n.max(u64::from(bitmap != 0))
}

impl TopSources {
    pub fn new(capacity: usize) -> Self {
        Self {
            buckets: VecDeque::with_capacity(BUCKETS),
            capacity,
        }
    }

    /// Records `attempts` blocked attempts from `src` to `dst` at `time` (Unix seconds).
    pub fn record(&mut self, src: IpAddr, dst: IpAddr, attempts: u64, time: u64) {
        let start = time - time % BUCKET_SECONDS;
        if self.buckets.back().is_none_or(|b| b.start < start) {
            self.buckets.push_back(Bucket {
                start,
                sketch: Sketch::new(self.capacity),
            });
            let horizon = start.saturating_sub(BUCKET_SECONDS * BUCKETS as u64);
            while self.buckets.front().is_some_and(|b| b.start <= horizon) {
                self.buckets.pop_front();
            }
        }
        // Late events land in their own bucket if it is still kept.
        if let Some(bucket) = self.buckets.iter_mut().rev().find(|b| b.start <= start) {
            bucket.sketch.add(src, attempts, time, destination_bit(dst));
        }
    }

    /// The `limit` sources with most attempts in the `window_seconds` before `now`.
    /// Each tracked source's entries summed over the buckets in the window.
    fn merged(&self, now: u64, window_seconds: u64) -> HashMap<IpAddr, Entry> {
        let since = now.saturating_sub(window_seconds);
        let mut merged: HashMap<IpAddr, Entry> = HashMap::new();
        for bucket in self
            .buckets
            .iter()
            .filter(|b| b.start + BUCKET_SECONDS > since)
        {
            for (src, e) in &bucket.sketch.entries {
                let m = merged.entry(*src).or_insert(Entry {
                    first_seen: e.first_seen,
                    ..Entry::default()
                });
                m.count += e.count;
                m.error += e.error;
                m.first_seen = m.first_seen.min(e.first_seen);
                m.last_seen = m.last_seen.max(e.last_seen);
                m.destinations |= e.destinations;
            }
        }
        merged
    }

    /// How many distinct sources the window holds (as tracked).
    pub fn sources(&self, now: u64, window_seconds: u64) -> usize {
        self.merged(now, window_seconds).len()
    }

    pub fn top(&self, now: u64, window_seconds: u64, limit: usize) -> Vec<TopSource> {
        let merged = self.merged(now, window_seconds);
        let mut list: Vec<TopSource> = merged
            .into_iter()
            .map(|(source, e)| TopSource {
                source,
                attempts: e.count,
                error: e.error,
                first_seen: e.first_seen,
                last_seen: e.last_seen,
                distinct_destinations: estimate_distinct(e.destinations),
            })
            .collect();
        list.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.source.cmp(&b.source)));
        list.truncate(limit);
        list
    }

    /// Entries held now (for the memory bound).
    pub fn entries(&self) -> usize {
        self.buckets.iter().map(|b| b.sketch.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut top = TopSources::new(16);
        for i in 0..10u64 {
            top.record(
                ip("100.64.0.1"),
                ip(&format!("198.51.100.{i}")),
                3,
                1_000_000 + i,
            );
        }
        top.record(ip("100.64.0.2"), ip("198.51.100.1"), 1, 1_000_005);
        let list = top.top(1_000_010, 3600, 10);
        assert_eq!(list[0].source, ip("100.64.0.1"));
        assert_eq!((list[0].attempts, list[0].error), (30, 0));
        assert_eq!(
            (list[0].first_seen, list[0].last_seen),
            (1_000_000, 1_000_009)
        );
        assert!(
            (8..=12).contains(&list[0].distinct_destinations),
            "{}",
            list[0].distinct_destinations
        );
        assert_eq!(list[1].attempts, 1);
    }

    #[test]
    fn heavy_hitters_survive_a_million_distinct_sources_in_bounded_memory() {
        let capacity = 256;
        let mut top = TopSources::new(capacity);
        let t0 = 1_700_000_000 - 1_700_000_000 % BUCKET_SECONDS;
        for i in 0..1_000_000u32 {
            let noise = IpAddr::from(std::net::Ipv4Addr::from(0x6440_0000 + i));
            top.record(noise, ip("198.51.100.25"), 1, t0 + u64::from(i % 200));
            if i % 100 == 0 {
                top.record(
                    ip("100.127.0.1"),
                    ip("198.51.100.25"),
                    5,
                    t0 + u64::from(i % 200),
                );
            }
        }
        assert!(top.entries() <= capacity, "{} entries", top.entries());
        let list = top.top(t0 + 250, 3600, 3);
        assert_eq!(list[0].source, ip("100.127.0.1"));
        // True count 50,000; Space-Saving never underestimates and bounds the error.
        assert!(
            list[0].attempts >= 50_000 && list[0].attempts - list[0].error <= 50_000,
            "{list:?}"
        );
    }

    #[test]
    fn windows_and_retention() {
        let mut top = TopSources::new(8);
        let t0 = 1_700_000_000 - 1_700_000_000 % BUCKET_SECONDS;
        top.record(ip("100.64.0.1"), ip("192.0.2.1"), 7, t0);
        top.record(ip("100.64.0.2"), ip("192.0.2.1"), 2, t0 + 2 * 3600);
        assert_eq!(
            top.top(t0 + 2 * 3600 + 10, 3600, 10).len(),
            1,
            "the old source is outside a 1 h window"
        );
        assert_eq!(top.top(t0 + 2 * 3600 + 10, 3 * 3600, 10).len(), 2);
        top.record(ip("100.64.0.3"), ip("192.0.2.1"), 1, t0 + 30 * 3600);
        assert_eq!(top.buckets.len(), 1, "buckets older than 24 h are dropped");
        assert!(top
            .top(t0 + 30 * 3600, 48 * 3600, 10)
            .iter()
            .all(|s| s.source != ip("100.64.0.1")));
    }
}
