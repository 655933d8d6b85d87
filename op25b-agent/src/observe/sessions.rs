//! Who holds an address right now, for evidence: block events name the
//! subscriber and the session when a RADIUS session holds the source. A
//! trait, so observe/ does not depend on where sessions come from.

use std::net::IpAddr;

/// The subscriber and session holding an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionLabel {
    /// RADIUS User-Name ("" when the NAS sent none).
    pub subscriber: String,
    /// `NAS/Acct-Session-Id`.
    pub session: String,
}

pub trait SessionLookup: Send + Sync {
    /// The session whose IPv4 address or IPv6 prefix holds `addr`, if any.
    fn label_of(&self, addr: IpAddr) -> Option<SessionLabel>;
}
