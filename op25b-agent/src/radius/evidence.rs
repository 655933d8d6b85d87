//! The session table as evidence: which subscriber and session hold an
//! address, for block events.

use std::net::IpAddr;

use super::Radius;
use crate::observe::sessions::{SessionLabel, SessionLookup};

impl SessionLookup for Radius {
    fn label_of(&self, addr: IpAddr) -> Option<SessionLabel> {
        let table = self.table.lock().expect("not poisoned");
        let session = table.by_address(addr)?;
        Some(SessionLabel {
            subscriber: session.subscriber.to_string(),
            session: session.key().to_string(),
        })
    }
}
