//! The policy the data plane enforces, as plain data: what the config
//! compiles to, what is diffed on reload, and (through [`PolicyLookup`]) the
//! host-side model the kernel program is checked against.

use op25b_common::{IpAddrBytes, PolicyLookup};

use crate::prefix::{ip_addr, PrefixSet};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub blocked_ports: Vec<u16>,
    pub dynamic: PrefixSet,
    pub exempt: PrefixSet,
    pub allowed_destinations: PrefixSet,
    /// At most one block event per source per this many nanoseconds.
    pub event_interval_ns: u64,
}

impl Default for Policy {
    /// What a freshly loaded program holds: port 25, empty lists.
    fn default() -> Self {
        let runtime = op25b_common::abi::RuntimeConfig::DEFAULT;
        Self {
            blocked_ports: runtime
                .blocked_ports
                .ports
                .into_iter()
                .filter(|&p| p != 0)
                .collect(),
            dynamic: PrefixSet::default(),
            exempt: PrefixSet::default(),
            allowed_destinations: PrefixSet::default(),
            event_interval_ns: runtime.event_interval_ns,
        }
    }
}

/// The three lists by name, in a fixed order, for code that treats them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListKind {
    Dynamic,
    Exempt,
    AllowedDestinations,
}

impl ListKind {
    pub const ALL: [Self; 3] = [Self::Dynamic, Self::Exempt, Self::AllowedDestinations];

    /// Bounded label value, also the config key.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Exempt => "exempt",
            Self::AllowedDestinations => "allowed_destinations",
        }
    }
}

impl Policy {
    /// The policy as it stands at `now` (Unix seconds): temporary entries
    /// past their `expires_at` left out.
    #[must_use]
    pub fn active(&self, now: u64) -> Self {
        Self {
            dynamic: self.dynamic.active(now),
            exempt: self.exempt.active(now),
            allowed_destinations: self.allowed_destinations.active(now),
            ..self.clone()
        }
    }

    /// When the next temporary entry expires.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        ListKind::ALL
            .iter()
            .filter_map(|k| self.list(*k).next_expiry(now))
            .min()
    }

    pub fn list(&self, kind: ListKind) -> &PrefixSet {
        match kind {
            ListKind::Dynamic => &self.dynamic,
            ListKind::Exempt => &self.exempt,
            ListKind::AllowedDestinations => &self.allowed_destinations,
        }
    }

    pub fn list_mut(&mut self, kind: ListKind) -> &mut PrefixSet {
        match kind {
            ListKind::Dynamic => &mut self.dynamic,
            ListKind::Exempt => &mut self.exempt,
            ListKind::AllowedDestinations => &mut self.allowed_destinations,
        }
    }
}

impl PolicyLookup for Policy {
    fn is_dynamic(&self, src: &IpAddrBytes) -> bool {
        self.dynamic.contains(ip_addr(src))
    }

    fn is_allowed_destination(&self, dst: &IpAddrBytes) -> bool {
        self.allowed_destinations.contains(ip_addr(dst))
    }

    fn is_exempt(&self, src: &IpAddrBytes) -> bool {
        self.exempt.contains(ip_addr(src))
    }
}
