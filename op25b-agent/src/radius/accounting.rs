//! Accounting-Request handling (RFC 2866): Start and Interim-Update put the
//! session as the NAS reports it in the table, Stop removes it,
//! Accounting-On/Off end every session of that NAS.

use std::net::{IpAddr, SocketAddr};

use tracing::info;

use super::{
    codec::{self, attr, code, status, Packet},
    metrics::Outcome,
    server::{Handled, Radius},
    sessions::{ipv6_prefix, Session, SessionKey},
};
use crate::{config::radius::RadiusConfig, policy::prefix::Prefix};

impl Radius {
    /// Accounting-Request handling (RFC 2866).
    pub(super) fn accounting(
        &self,
        config: &RadiusConfig,
        from: SocketAddr,
        packet: &Packet,
    ) -> Handled {
        if packet.code != code::ACCOUNTING_REQUEST {
            return Handled::dropped(
                Outcome::Malformed,
                format!("code {} on the accounting port", packet.code),
            );
        }
        match self.account(config, from, packet) {
            Ok(seq) => Handled {
                outcome: Outcome::Accepted,
                problem: None,
                seq,
                answer: Some((code::ACCOUNTING_RESPONSE, Vec::new())),
            },
            Err(Refused::Malformed(problem)) => Handled::dropped(Outcome::Malformed, problem),
            Err(Refused::Full(problem)) => Handled::dropped(Outcome::TableFull, problem),
        }
    }

    /// Applies one Accounting-Request to the table; returns the change
    /// number its answer waits for.
    fn account(
        &self,
        config: &RadiusConfig,
        from: SocketAddr,
        packet: &Packet,
    ) -> Result<u64, Refused> {
        let malformed = |e: codec::AttributeError| Refused::Malformed(e.to_string());
        let status_type = packet
            .integer(attr::ACCT_STATUS_TYPE)
            .map_err(malformed)?
            .ok_or_else(|| Refused::Malformed("no Acct-Status-Type".into()))?;
        let nas = nas_name(packet, from.ip()).map_err(malformed)?;
        let mut table = self.table.lock().expect("not poisoned");
        match status_type {
            status::START | status::INTERIM_UPDATE | status::STOP => {
                let id = packet
                    .text(attr::ACCT_SESSION_ID)
                    .map_err(malformed)?
                    .ok_or_else(|| Refused::Malformed("no Acct-Session-Id".into()))?;
                if status_type == status::STOP {
                    let key = SessionKey {
                        nas: nas.as_str().into(),
                        id: id.into(),
                    };
                    table.remove(&key);
                    return Ok(table.seq());
                }
                let now = crate::clock::now_unix();
                let stamp = packet
                    .integer(attr::EVENT_TIMESTAMP)
                    .map_err(malformed)?
                    .map_or(now, u64::from);
                let mut ipv6: Vec<Prefix> = Vec::new();
                for kind in [attr::FRAMED_IPV6_PREFIX, attr::DELEGATED_IPV6_PREFIX] {
                    for (addr, len) in packet.ipv6_prefixes(kind).map_err(malformed)? {
                        ipv6.push(ipv6_prefix(addr, len));
                    }
                }
                let attribute_exempt = packet
                    .all(attr::FILTER_ID)
                    .chain(packet.all(attr::CLASS))
                    .any(|a| config.is_exempt_attribute(&a.value));
                let session = Session {
                    nas: table.intern_nas(&nas),
                    id: id.into(),
                    subscriber: packet
                        .text(attr::USER_NAME)
                        .map_err(malformed)?
                        .unwrap_or("")
                        .into(),
                    ipv4: packet.ipv4(attr::FRAMED_IP_ADDRESS).map_err(malformed)?,
                    ipv6,
                    attribute_exempt,
                    coa: None,
                    started_at: stamp,
                    updated_at: stamp,
                };
                table
                    .upsert(session)
                    .map_err(|e| Refused::Full(e.to_string()))?;
            }
            status::ACCOUNTING_ON | status::ACCOUNTING_OFF => {
                let ended = table.clear_nas(&nas);
                if ended > 0 {
                    info!(nas, ended, "Accounting-On/Off: the NAS's sessions ended");
                }
            }
            // Other types (tunnel accounting, Failed): nothing to keep.
            _ => {}
        }
        Ok(table.seq())
    }
}

enum Refused {
    Malformed(String),
    Full(String),
}

/// NAS-Identifier, else NAS-IP-Address, else NAS-IPv6-Address, else the
/// sender's address: how a session's NAS is named (Accounting-On/Off name
/// it the same way).
pub fn nas_name(packet: &Packet, sender: IpAddr) -> Result<String, codec::AttributeError> {
    if let Some(id) = packet.text(attr::NAS_IDENTIFIER)? {
        return Ok(id.to_owned());
    }
    if let Some(ip) = packet.ipv4(attr::NAS_IP_ADDRESS)? {
        return Ok(ip.to_string());
    }
    if let Some(ip) = packet.ipv6(attr::NAS_IPV6_ADDRESS)? {
        return Ok(ip.to_string());
    }
    Ok(sender.to_string())
}
