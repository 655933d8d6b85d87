//! The broadest prefix an exemption or an allowed destination may be. One
//! entry like `0.0.0.0/0` in either list would let every dynamic subscriber
//! reach port 25: OP25B switched off by a typo or a hostile API client. So
//! config entries, list files and API grants broader than these are
//! refused; the bounds can be lowered in the configuration only (never to
//! /0), and a lowered bound is logged at every load.

use super::{prefix::Prefix, ListKind};

/// Bounds per list and family, as prefix lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixLimits {
    pub exempt_ipv4: u8,
    pub exempt_ipv6: u8,
    pub allowed_destinations_ipv4: u8,
    pub allowed_destinations_ipv6: u8,
}

impl Default for PrefixLimits {
    /// Exemptions: a business customer's block at most (/16, /32 for IPv6:
    /// an RIR allocation to one carrier); relays: hosts or small nets.
    fn default() -> Self {
        Self {
            exempt_ipv4: 16,
            exempt_ipv6: 32,
            allowed_destinations_ipv4: 24,
            allowed_destinations_ipv6: 48,
        }
    }
}

/// An entry broader than its list's bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{prefix} is broader than /{broadest}, the broadest {list} entry allowed (policy.prefix_limits.{key}): it would open port 25 for every dynamic subscriber it covers")]
pub struct TooBroad {
    pub prefix: Prefix,
    pub broadest: u8,
    pub list: &'static str,
    pub key: &'static str,
}

impl PrefixLimits {
    /// The config key and value bounding `list` for one family; `None`
    /// for the dynamic pools (a broad pool blocks more, it opens nothing).
    pub const fn bound(&self, list: ListKind, ipv4: bool) -> Option<(&'static str, u8)> {
        match (list, ipv4) {
            (ListKind::Dynamic, _) => None,
            (ListKind::Exempt, true) => Some(("exempt_ipv4", self.exempt_ipv4)),
            (ListKind::Exempt, false) => Some(("exempt_ipv6", self.exempt_ipv6)),
            (ListKind::AllowedDestinations, true) => {
                Some(("allowed_destinations_ipv4", self.allowed_destinations_ipv4))
            }
            (ListKind::AllowedDestinations, false) => {
                Some(("allowed_destinations_ipv6", self.allowed_destinations_ipv6))
            }
        }
    }

    /// May `prefix` stand in `list`?
    pub fn check(&self, list: ListKind, prefix: &Prefix) -> Result<(), TooBroad> {
        match self.bound(list, prefix.is_ipv4()) {
            Some((key, broadest)) if prefix.len() < broadest => Err(TooBroad {
                prefix: *prefix,
                broadest,
                list: list.name(),
                key,
            }),
            _ => Ok(()),
        }
    }

    /// The bounds set broader than the defaults, as `key /len (default /len)`.
    pub fn lowered(&self) -> Vec<String> {
        let default = Self::default();
        [
            (ListKind::Exempt, true),
            (ListKind::Exempt, false),
            (ListKind::AllowedDestinations, true),
            (ListKind::AllowedDestinations, false),
        ]
        .into_iter()
        .filter_map(|(list, ipv4)| {
            let (key, value) = self.bound(list, ipv4)?;
            let (_, normal) = default.bound(list, ipv4)?;
            (value < normal).then(|| format!("{key} /{value} (default /{normal})"))
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn the_whole_internet_is_never_an_exemption_or_a_relay() {
        let limits = PrefixLimits::default();
        for (list, prefix) in [
            (ListKind::Exempt, "0.0.0.0/0"),
            (ListKind::Exempt, "::/0"),
            (ListKind::Exempt, "100.64.0.0/10"),
            (ListKind::AllowedDestinations, "0.0.0.0/0"),
            (ListKind::AllowedDestinations, "192.0.0.0/16"),
            (ListKind::AllowedDestinations, "2001:db8::/32"),
        ] {
            let err = limits.check(list, &p(prefix)).unwrap_err();
            assert_eq!(err.prefix, p(prefix));
            assert!(err.to_string().contains("policy.prefix_limits."), "{err}");
        }
        assert!(limits.check(ListKind::Exempt, &p("100.64.0.0/16")).is_ok());
        assert!(limits.check(ListKind::Exempt, &p("2001:db8::/32")).is_ok());
        assert!(limits
            .check(ListKind::AllowedDestinations, &p("192.0.2.0/24"))
            .is_ok());
        assert!(limits.check(ListKind::Dynamic, &p("0.0.0.0/0")).is_ok());
    }

    #[test]
    fn lowered_bounds_are_named() {
        let limits = PrefixLimits {
            exempt_ipv4: 8,
            ..PrefixLimits::default()
        };
        assert_eq!(limits.lowered(), ["exempt_ipv4 /8 (default /16)"]);
        assert!(PrefixLimits::default().lowered().is_empty());
    }
}
