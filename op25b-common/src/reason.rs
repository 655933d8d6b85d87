//! Why a packet got its verdict. A reason is also its counter's index, so the
//! names here are the only place the set of reasons is written down.

/// The XDP action a verdict maps to. Values are the kernel's `xdp_action`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Drop = 1,
    Pass = 2,
    /// Send the (rewritten) frame back out of the interface: a TCP reset.
    Tx = 3,
}

impl Action {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Pass => "pass",
            Self::Tx => "tx",
        }
    }

    /// Maps a program's return code back to an action (`None` for codes op25b never returns).
    pub const fn from_xdp(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Drop),
            2 => Some(Self::Pass),
            3 => Some(Self::Tx),
            _ => None,
        }
    }
}

/// Every verdict has exactly one reason; they are listed in the order they
/// are decided.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Ethertype after tags/PPPoE is not IPv4/IPv6 (ARP, PPPoE discovery, LCP, a third tag).
    NotIp = 0,
    /// The frame ends inside a header it announces, IHL < 5, or a wrong IP version.
    Malformed = 1,
    /// The upper-layer protocol is known and is not TCP.
    NotTcp = 2,
    /// A non-first IPv4/IPv6 fragment: it carries no ports.
    Fragment = 3,
    /// TCP to a port outside the blocked set.
    NotSmtp = 4,
    /// The source lies in no dynamic prefix.
    SrcNotDynamic = 5,
    /// The destination is one of the ISP's allowed relays.
    DstAllowed = 6,
    /// The source holds an exemption.
    SrcExempt = 7,
    /// Dynamic, non-exempt source to a blocked port elsewhere.
    Blocked = 8,
    /// Like `Blocked`, but the port could not be read within parsing limits.
    Undecidable = 9,
    /// Would be blocked, but the source's pool only monitors: passed, counted.
    WouldBlock = 10,
    /// A SYN from a `reject` pool: answered with a TCP reset (XDP_TX).
    Rejected = 11,
}

/// Counter slots reserved per interface; room for reasons added later
/// without changing the counters map's layout.
pub const REASON_SLOTS: u32 = 16;

impl Reason {
    pub const ALL: [Self; 12] = [
        Self::NotIp,
        Self::Malformed,
        Self::NotTcp,
        Self::Fragment,
        Self::NotSmtp,
        Self::SrcNotDynamic,
        Self::DstAllowed,
        Self::SrcExempt,
        Self::Blocked,
        Self::Undecidable,
        Self::WouldBlock,
        Self::Rejected,
    ];

    pub const fn action(self) -> Action {
        match self {
            Self::Blocked | Self::Undecidable => Action::Drop,
            Self::Rejected => Action::Tx,
            _ => Action::Pass,
        }
    }

    /// The snake_case name used in JSON output, metrics labels and docs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotIp => "not_ip",
            Self::Malformed => "malformed",
            Self::NotTcp => "not_tcp",
            Self::Fragment => "fragment",
            Self::NotSmtp => "not_smtp",
            Self::SrcNotDynamic => "src_not_dynamic",
            Self::DstAllowed => "dst_allowed",
            Self::SrcExempt => "src_exempt",
            Self::Blocked => "blocked",
            Self::Undecidable => "undecidable",
            Self::WouldBlock => "would_block",
            Self::Rejected => "rejected",
        }
    }

    pub const fn index(self) -> u32 {
        self as u32
    }

    pub fn from_index(index: u32) -> Option<Self> {
        Self::ALL.get(index as usize).copied()
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }
}

/// What the program does with a packet, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    pub reason: Reason,
}

impl From<Reason> for Verdict {
    fn from(reason: Reason) -> Self {
        Self {
            action: reason.action(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_fit_the_reserved_slots() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index() as usize, i);
            assert_eq!(Reason::from_index(reason.index()), Some(*reason));
            assert_eq!(Reason::from_name(reason.name()), Some(*reason));
        }
        assert!(Reason::ALL.len() <= REASON_SLOTS as usize);
    }

    #[test]
    fn only_blocked_and_undecidable_drop_and_only_rejected_transmits() {
        for reason in Reason::ALL {
            let drops = matches!(reason, Reason::Blocked | Reason::Undecidable);
            assert_eq!(reason.action() == Action::Drop, drops, "{reason:?}");
            assert_eq!(
                reason.action() == Action::Tx,
                reason == Reason::Rejected,
                "{reason:?}"
            );
        }
    }
}
