//! The ordered OP25B decision. Policy lookups happen only once a packet is
//! known to be TCP to a blocked port (or undecidable TCP), so all other
//! traffic costs no map lookup.

use crate::{
    abi::{PoolAction, RuntimeConfig},
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

/// The policy lists, as the decision needs them. The kernel implements this
/// over LPM-trie maps, host tests over plain prefix lists.
pub trait PolicyLookup {
    /// The pool of the most specific dynamic (residential) prefix holding
    /// `src`, or `None` when `src` is not dynamic.
    fn dynamic_pool(&self, src: &IpAddrBytes) -> Option<u32>;
    /// Is `dst` one of the ISP's own relays (allowed destinations)?
    fn is_allowed_destination(&self, dst: &IpAddrBytes) -> bool;
    /// Does `src` hold an exemption? Wins over dynamic whatever the prefix lengths.
    fn is_exempt(&self, src: &IpAddrBytes) -> bool;
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
pub fn decide<P, L>(pkt: &P, rules: &RuntimeConfig, policy: &L) -> Verdict
where
    P: PacketBytes + ?Sized,
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
pub fn judge<P, L>(pkt: &P, rules: &RuntimeConfig, policy: &L) -> (Verdict, Option<TcpSegment>, u32)
where
    P: PacketBytes + ?Sized,
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
fn decide_segment<L: PolicyLookup>(
    segment: &TcpSegment,
    rules: &RuntimeConfig,
    policy: &L,
) -> (Reason, u32) {
    if segment.ports_readable && !rules.blocked_ports.contains(segment.dst_port) {
        return (Reason::NotSmtp, NO_POOL);
    }
    let Some(pool) = policy.dynamic_pool(&segment.src) else {
        return (Reason::SrcNotDynamic, NO_POOL);
    };
    if policy.is_allowed_destination(&segment.dst) {
        return (Reason::DstAllowed, pool);
    }
    if policy.is_exempt(&segment.src) {
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
