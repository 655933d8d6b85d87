//! CIDR prefixes, parsed strictly, and the list files operators keep them in.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use op25b_common::IpAddrBytes;

pub use super::sorted_prefixes::SortedPrefixes;

/// An IPv4 or IPv6 prefix with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// What is wrong with one CIDR string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrefixError {
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    #[error("{0:?} is not a prefix length")]
    BadLength(String),
    #[error("prefix length /{len} is longer than {max} bits")]
    LengthTooLong { len: u8, max: u8 },
    #[error("host bits set in {given}: did you mean {suggested}?")]
    HostBitsSet { given: String, suggested: Prefix },
    #[error(transparent)]
    TooBroad(#[from] super::limits::TooBroad),
    #[error("{given} is an IPv4-mapped IPv6 address, which no packet carries: write it as IPv4 ({suggested})")]
    Ipv4Mapped { given: String, suggested: String },
    #[error("{0:?} is not expires_at=RFC3339 (e.g. expires_at=2026-12-31T00:00:00Z)")]
    BadExpiry(String),
    #[error("unexpected {0:?} after the prefix (only expires_at=... may follow)")]
    Trailing(String),
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::LengthTooLong { len, max });
        }
        let prefix = Self {
            addr: truncate(addr, len),
            len,
        };
        if prefix.addr != addr {
            return Err(PrefixError::HostBitsSet {
                given: format!("{addr}/{len}"),
                suggested: prefix,
            });
        }
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), len >= 96) {
                return Err(PrefixError::Ipv4Mapped {
                    given: format!("{addr}/{len}"),
                    suggested: format!("{v4}/{}", len - 96),
                });
            }
        }
        Ok(prefix)
    }

    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    #[expect(
        clippy::len_without_is_empty,
        reason = "a prefix length, not a container size"
    )]
    pub const fn len(&self) -> u8 {
        self.len
    }

    pub const fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && truncate(addr, self.len) == self.addr
    }

    /// The prefix of length `len` (at most this one's) that holds this one.
    pub fn covering(&self, len: u8) -> Option<Self> {
        (len <= self.len).then(|| Self {
            addr: truncate(self.addr, len),
            len,
        })
    }

    /// The address as the kernel's trie keys hold it (network byte order).
    pub fn addr_bytes(&self) -> IpAddrBytes {
        ip_bytes(self.addr)
    }
}

/// An address as op25b-common sees it.
pub fn ip_bytes(addr: IpAddr) -> IpAddrBytes {
    match addr {
        IpAddr::V4(a) => IpAddrBytes::V4(a.octets()),
        IpAddr::V6(a) => IpAddrBytes::V6(a.octets()),
    }
}

/// The inverse of [`ip_bytes`].
pub fn ip_addr(bytes: &IpAddrBytes) -> IpAddr {
    match *bytes {
        IpAddrBytes::V4(a) => IpAddr::V4(Ipv4Addr::from(a)),
        IpAddrBytes::V6(a) => IpAddr::V6(Ipv6Addr::from(a)),
    }
}

const fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn truncate(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `addr/len`, or a bare address meaning a single host (/32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| PrefixError::BadAddress(addr.to_owned()))?;
        let len = match len {
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => len
                .parse::<u8>()
                .map_err(|_| PrefixError::BadLength(len.to_owned()))?,
            Some(len) => return Err(PrefixError::BadLength(len.to_owned())),
            None => max_len(addr),
        };
        Self::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A set of prefixes of both families, ordered (so diffs are deterministic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSet {
    pub v4: SortedPrefixes,
    pub v6: SortedPrefixes,
    /// Temporary members: Unix seconds after which each leaves the set.
    /// A prefix also listed without expiry is permanent (not in here).
    pub expiring: std::collections::BTreeMap<Prefix, u64>,
}

impl PrefixSet {
    /// Adds a prefix that leaves at `expires` (Unix seconds), or never.
    pub fn insert_until(&mut self, prefix: Prefix, expires: Option<u64>) {
        let family = if prefix.is_ipv4() { &self.v4 } else { &self.v6 };
        let permanent = family.contains(&prefix) && !self.expiring.contains_key(&prefix);
        match expires {
            None => {
                self.expiring.remove(&prefix);
            }
            Some(t) if !permanent => {
                let until = self.expiring.entry(prefix).or_insert(t);
                *until = (*until).max(t);
            }
            Some(_) => {}
        }
        self.insert(prefix);
    }

    /// The set as it stands at `now`: temporary members past their expiry left out.
    #[must_use]
    pub fn active(&self, now: u64) -> Self {
        let mut set = self.clone();
        set.prune_expired(now);
        set
    }

    /// Takes out the temporary members past their expiry, in place (a set
    /// with none keeps its generations).
    pub fn prune_expired(&mut self, now: u64) {
        let expired: std::collections::BTreeSet<Prefix> = self
            .expiring
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(p, _)| *p)
            .collect();
        if expired.is_empty() {
            return;
        }
        self.expiring.retain(|_, &mut t| t > now);
        self.v4.retain(|p| !expired.contains(p));
        self.v6.retain(|p| !expired.contains(p));
    }

    /// The next expiry after `now`.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        self.expiring.values().copied().filter(|&t| t > now).min()
    }

    pub fn insert(&mut self, prefix: Prefix) {
        if prefix.is_ipv4() {
            self.v4.insert(prefix);
        } else {
            self.v6.insert(prefix);
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Takes the generations of `running`'s families where they hold the
    /// same members (see `SortedPrefixes::keep_generation_of`).
    pub fn keep_generations_of(&mut self, running: &Self) {
        self.v4.keep_generation_of(&running.v4);
        self.v6.keep_generation_of(&running.v6);
    }

    /// Folds pending edits into the sorted vectors: a list read whole (a
    /// file, a fleet snapshot) is walked at memory speed on every reload.
    pub fn compact(&mut self) {
        self.v4.compact();
        self.v6.compact();
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Does any prefix cover `addr`? (What the kernel's LPM trie answers.)
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.longest_match(addr).is_some()
    }

    /// Is `prefix` itself a member (not merely covered)?
    pub fn contains_exactly(&self, prefix: &Prefix) -> bool {
        self.v4.contains(prefix) || self.v6.contains(prefix)
    }

    /// The most specific prefix covering `addr`.
    pub fn longest_match(&self, addr: IpAddr) -> Option<Prefix> {
        let family = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        (0..=max_len(addr)).rev().find_map(|len| {
            let candidate = Prefix {
                addr: truncate(addr, len),
                len,
            };
            family.contains(&candidate).then_some(candidate)
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Prefix> {
        self.v4.iter().chain(self.v6.iter())
    }
}

impl FromIterator<Prefix> for PrefixSet {
    fn from_iter<I: IntoIterator<Item = Prefix>>(iter: I) -> Self {
        let mut set = Self::default();
        for prefix in iter {
            set.insert(prefix);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn active_copies_keep_generations_until_something_expires() {
        let mut set = PrefixSet::default();
        set.insert_until(p("100.64.0.0/10"), None);
        set.insert_until(p("100.64.1.7/32"), Some(100));
        assert_eq!(set.active(50).v4.generation(), set.v4.generation());
        let later = set.active(200);
        assert_ne!(later.v4.generation(), set.v4.generation());
        assert!(!later.contains_exactly(&p("100.64.1.7/32")));
        // Once pruned, later copies keep the pruned list's generation.
        assert_eq!(later.active(300).v4.generation(), later.v4.generation());
    }

    #[test]
    fn parses_both_families_and_bare_hosts() {
        assert_eq!(p("100.64.0.0/10").len(), 10);
        assert_eq!(p("2001:db8::/32").len(), 32);
        assert_eq!(p("192.0.2.25").to_string(), "192.0.2.25/32");
        assert_eq!(p("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn refuses_host_bits_and_says_what_was_meant() {
        let err = "100.64.0.1/10".parse::<Prefix>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "host bits set in 100.64.0.1/10: did you mean 100.64.0.0/10?"
        );
        assert!(matches!(
            "2001:db8::1/64".parse::<Prefix>(),
            Err(PrefixError::HostBitsSet { .. })
        ));
    }

    #[test]
    fn refuses_ipv4_mapped_addresses_with_the_ipv4_form() {
        let err = "::ffff:100.64.1.2".parse::<Prefix>().unwrap_err();
        assert_eq!(
            err,
            PrefixError::Ipv4Mapped {
                given: "::ffff:100.64.1.2/128".into(),
                suggested: "100.64.1.2/32".into()
            }
        );
        assert!("::ffff:100.64.0.0/106".parse::<Prefix>().is_err());
        assert!("::/0".parse::<Prefix>().is_ok());
        assert!("2001:db8::ffff:6440:102".parse::<Prefix>().is_ok());
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "/",
            "100.64.0.0/",
            "100.64.0.0/33",
            "::/129",
            "100.64.0.0/x",
            "100.64/10",
            "1.2.3.4/+8",
            "host.example",
            "100.64.0.0/10/3",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn longest_prefix_match_agrees_with_contains() {
        let set: PrefixSet = [p("100.64.0.0/10"), p("2001:db8:1000::/36")]
            .into_iter()
            .collect();
        assert!(set.contains("100.127.255.255".parse().unwrap()));
        assert!(!set.contains("100.128.0.0".parse().unwrap()));
        assert!(set.contains("2001:db8:1fff::1".parse().unwrap()));
        assert!(!set.contains("2001:db8:2000::1".parse().unwrap()));
        assert!(!set.contains("::ffff:100.64.0.1".parse().unwrap()));
    }
}
