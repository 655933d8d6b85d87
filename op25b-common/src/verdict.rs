//! The ordered OP25B decision. Policy lookups happen only once a packet is
//! known to be TCP to a blocked port (or undecidable TCP), so all other
//! traffic costs no map lookup.

use crate::{
    abi::{PoolAction, RuntimeConfig},
    fast_pass::fast_pass,
    packet::PacketBytes,
    parse::{parse, Parsed, TcpSegment},
    reason::{Reason, Verdict},
};

/// An address in network byte order, as it appears in the packet and in the
/// LPM trie keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpAddrBytes {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the dynamic and exempt lists together say about a source, in one
/// byte: the value of the kernel's class tables.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceClass(pub u8);

impl SourceClass {
    /// Neither dynamic nor an exempt part of a dynamic prefix.
    pub const NEITHER: Self = Self(0);
    /// In a dynamic prefix; the low four bits are the pool of the most
    /// specific one.
    pub const DYNAMIC: u8 = 0x80;
    /// Dynamic, and covered by an exemption (set only with `DYNAMIC`:
    /// an exemption outside the dynamic lists changes nothing).
    pub const EXEMPT: u8 = 0x40;
    /// First-level IPv4 entry only: the /24 has a second-level block; the
    /// other bits are the class of the prefixes covering the whole /24.
    pub const INDIRECT: u8 = 0x20;
    pub const POOL_MASK: u8 = 0x0f;

    /// The class of a source in the most specific dynamic prefix of
    /// `pool` (`None`: not dynamic), exempt or not.
    #[inline(always)]
    #[expect(clippy::cast_possible_truncation, reason = "masked to the pool bits")]
    pub const fn new(dynamic_pool: Option<u32>, exempt: bool) -> Self {
        match dynamic_pool {
            None => Self::NEITHER,
            Some(pool) => Self(
                Self::DYNAMIC
                    | (pool as u8 & Self::POOL_MASK)
                    | if exempt { Self::EXEMPT } else { 0 },
            ),
        }
    }

    #[inline(always)]
    pub const fn is_dynamic(self) -> bool {
        self.0 & Self::DYNAMIC != 0
    }

    #[inline(always)]
    pub const fn is_exempt(self) -> bool {
        self.0 & Self::EXEMPT != 0
    }

    #[inline(always)]
    pub const fn pool(self) -> u32 {
        (self.0 & Self::POOL_MASK) as u32
    }
}

/// The policy lists, as the decision needs them. The kernel implements this
/// over its class tables, host tests over plain prefix lists.
pub trait PolicyLookup {
    /// The class of `src`: its dynamic pool (most specific dynamic prefix)
    /// and whether an exemption covers it. An exemption wins over dynamic
    /// whatever the prefix lengths.
    fn source_class(&self, src: &IpAddrBytes) -> SourceClass;
    /// Is `dst` one of the ISP's own relays (allowed destinations)?
    fn is_allowed_destination(&self, dst: &IpAddrBytes) -> bool;
}

/// The run-time rules, as the decision needs them: the host model answers
/// from a [`RuntimeConfig`], the kernel from its port bitmap and slots.
pub trait Rules {
    /// Is TCP to `port` blocked (port 0 never is)?
    fn is_blocked_port(&self, port: u16) -> bool;
    /// What `pool` does with a blocked attempt.
    fn pool_action(&self, pool: u32) -> PoolAction;
}

impl Rules for RuntimeConfig {
    #[inline(always)]
    fn is_blocked_port(&self, port: u16) -> bool {
        self.blocked_ports.contains(port)
    }

    #[inline(always)]
    fn pool_action(&self, pool: u32) -> PoolAction {
        RuntimeConfig::pool_action(self, pool)
    }
}

/// At most this many blocked ports (the configuration refuses more).
pub const MAX_BLOCKED_PORTS: usize = 8;

/// The blocked destination ports; port 0 marks an unused slot, so a
/// zero-filled block blocks nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockedPorts {
    pub ports: [u16; MAX_BLOCKED_PORTS],
}

impl BlockedPorts {
    /// `[25]`: the default of the configuration.
    pub const SMTP: Self = Self {
        ports: [25, 0, 0, 0, 0, 0, 0, 0],
    };

    /// Fills the slots from `ports`; `None` if there are more than
    /// [`MAX_BLOCKED_PORTS`] or one is 0.
    pub fn new(ports: &[u16]) -> Option<Self> {
        if ports.len() > MAX_BLOCKED_PORTS || ports.contains(&0) {
            return None;
        }
        let mut block = Self {
            ports: [0; MAX_BLOCKED_PORTS],
        };
        block.ports[..ports.len()].copy_from_slice(ports);
        Some(block)
    }

    /// The ports in use (the non-zero slots).
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().copied().filter(|&p| p != 0)
    }

    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        if port == 0 {
            return false;
        }
        // Early exits keep the verifier's paths linear in the slot count.
        for slot in self.ports {
            if slot == port {
                return true;
            }
        }
        false
    }
}

/// Decides one frame. This function *is* the policy: the XDP program calls
/// it on the live frame, host tests call it on a byte slice.
#[inline(always)]
pub fn decide<P, R, L>(pkt: &P, rules: &R, policy: &L) -> Verdict
where
    P: PacketBytes + ?Sized,
    R: Rules + ?Sized,
    L: PolicyLookup,
{
    judge(pkt, rules, policy).0
}

/// Marks "no pool": the source is not dynamic (a sentinel, not an Option,
/// for the verifier's sake).
pub const NO_POOL: u32 = u32::MAX;

/// [`decide`], also handing back the TCP segment it judged (for counting
/// connection attempts, reporting blocked ones and building resets) and
/// the source's dynamic pool ([`NO_POOL`] when it has none).
#[inline(always)]
pub fn judge<P, R, L>(pkt: &P, rules: &R, policy: &L) -> (Verdict, Option<TcpSegment>, u32)
where
    P: PacketBytes + ?Sized,
    R: Rules + ?Sized,
    L: PolicyLookup,
{
    if P::READS_IN_PLACE {
        if let Some(reason) = fast_pass(pkt, rules) {
            return (reason.into(), None, NO_POOL);
        }
    }
    judge_fully(pkt, rules, policy)
}

/// [`judge`] without the pass path's shortcut: for a caller that asked
/// [`fast_pass`] itself (the XDP program, so that its
/// shortcut leaves on a path of its own).
#[inline(always)]
pub fn judge_fully<P, R, L>(pkt: &P, rules: &R, policy: &L) -> (Verdict, Option<TcpSegment>, u32)
where
    P: PacketBytes + ?Sized,
    R: Rules + ?Sized,
    L: PolicyLookup,
{
    let segment = match parse(pkt) {
        Parsed::Decided(reason) => return (reason.into(), None, NO_POOL),
        Parsed::Tcp(segment) => segment,
    };
    let (reason, pool) = decide_segment(&segment, rules, policy);
    (reason.into(), Some(segment), pool)
}

#[inline(always)]
fn decide_segment<R: Rules + ?Sized, L: PolicyLookup>(
    segment: &TcpSegment,
    rules: &R,
    policy: &L,
) -> (Reason, u32) {
    if segment.ports_readable && !rules.is_blocked_port(segment.dst_port) {
        return (Reason::NotSmtp, NO_POOL);
    }
    let class = policy.source_class(&segment.src);
    if !class.is_dynamic() {
        return (Reason::SrcNotDynamic, NO_POOL);
    }
    let pool = class.pool();
    if policy.is_allowed_destination(&segment.dst) {
        return (Reason::DstAllowed, pool);
    }
    if class.is_exempt() {
        return (Reason::SrcExempt, pool);
    }
    let reason = match rules.pool_action(pool) {
        PoolAction::Monitor => Reason::WouldBlock,
        // Only a clean SYN with its ports in hand gets a reset; the rest drops.
        PoolAction::Reject if segment.resettable => Reason::Rejected,
        _ if segment.ports_readable => Reason::Blocked,
        _ => Reason::Undecidable,
    };
    (reason, pool)
}
