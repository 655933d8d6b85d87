//! Dynamic authorization (RFC 5176) on `coa_listen`: a CoA-Request with
//! Filter-Id `op25b-exempt` or `op25b-enforce` changes a session's
//! exemption mid-session; a Disconnect-Request ends the session here.

use std::net::SocketAddr;

use super::{
    accounting::nas_name,
    codec::{attr, code, error_cause, Attribute, Packet},
    metrics::Outcome,
    server::{Handled, Radius},
    sessions::{CoaPolicy, SessionKey, SessionTable},
};
use crate::config::radius::RadiusConfig;

/// Filter-Id values a CoA-Request may carry.
pub const COA_EXEMPT: &str = "op25b-exempt";
pub const COA_ENFORCE: &str = "op25b-enforce";

/// Attributes that identify a session, or that RFC 5176 requests carry
/// anyway; anything else is answered with Unsupported-Attribute.
const IDENTIFYING: [u8; 7] = [
    attr::USER_NAME,
    attr::ACCT_SESSION_ID,
    attr::FRAMED_IP_ADDRESS,
    attr::NAS_IP_ADDRESS,
    attr::NAS_IDENTIFIER,
    attr::NAS_IPV6_ADDRESS,
    attr::EVENT_TIMESTAMP,
];

fn nak(request: u8, cause: u32, problem: String, seq: u64) -> Handled {
    let code = if request == code::COA_REQUEST {
        code::COA_NAK
    } else {
        code::DISCONNECT_NAK
    };
    Handled {
        outcome: Outcome::Nak,
        problem: Some(problem),
        seq,
        answer: Some((code, vec![Attribute::u32(attr::ERROR_CAUSE, cause)])),
    }
}

/// The sessions a request names: all of Acct-Session-Id, User-Name and
/// Framed-IP-Address that it carries must match (NAS attributes narrow
/// Acct-Session-Id to that NAS).
fn matching(
    table: &SessionTable,
    packet: &Packet,
    from: SocketAddr,
) -> Result<Vec<SessionKey>, String> {
    let session_id = packet
        .text(attr::ACCT_SESSION_ID)
        .map_err(|e| e.to_string())?;
    let user = packet.text(attr::USER_NAME).map_err(|e| e.to_string())?;
    let address = packet
        .ipv4(attr::FRAMED_IP_ADDRESS)
        .map_err(|e| e.to_string())?;
    let names_nas = [
        attr::NAS_IDENTIFIER,
        attr::NAS_IP_ADDRESS,
        attr::NAS_IPV6_ADDRESS,
    ]
    .iter()
    .any(|&k| packet.first(k).is_some());
    let nas = names_nas
        .then(|| nas_name(packet, from.ip()))
        .transpose()
        .map_err(|e| e.to_string())?;
    let candidates: Vec<SessionKey> = if let Some(id) = session_id {
        table
            .by_session_id(id, nas.as_deref())
            .map(super::sessions::Session::key)
            .collect()
    } else if let Some(user) = user {
        table
            .by_subscriber(user)
            .map(super::sessions::Session::key)
            .collect()
    } else if let Some(address) = address {
        table
            .by_address(address.into())
            .map(super::sessions::Session::key)
            .into_iter()
            .collect()
    } else {
        return Err(String::new());
    };
    Ok(candidates
        .into_iter()
        .filter(|k| {
            let s = table.get(k).expect("keys come from the table");
            user.is_none_or(|u| *s.subscriber == *u)
                && address.is_none_or(|a| s.ipv4 == Some(a))
                && nas.as_deref().is_none_or(|n| *s.nas == *n)
        })
        .collect())
}

impl Radius {
    /// CoA-Request and Disconnect-Request handling.
    pub(super) fn coa(&self, _config: &RadiusConfig, from: SocketAddr, packet: &Packet) -> Handled {
        let request = packet.code;
        if request != code::COA_REQUEST && request != code::DISCONNECT_REQUEST {
            return Handled::dropped(
                Outcome::Malformed,
                format!("code {request} on the CoA port"),
            );
        }
        let mut table = self.table.lock().expect("not poisoned");
        let seq = table.seq();
        let allowed = |kind: u8| {
            IDENTIFYING.contains(&kind)
                || kind == attr::MESSAGE_AUTHENTICATOR
                || (request == code::COA_REQUEST && kind == attr::FILTER_ID)
        };
        if let Some(other) = packet.attributes.iter().find(|a| !allowed(a.kind)) {
            return nak(
                request,
                error_cause::UNSUPPORTED_ATTRIBUTE,
                format!("attribute {} is not supported here", other.kind),
                seq,
            );
        }
        let wanted = if request == code::COA_REQUEST {
            let filters: Vec<&[u8]> = packet
                .all(attr::FILTER_ID)
                .map(|a| a.value.as_slice())
                .collect();
            match filters.as_slice() {
                [] => {
                    return nak(
                        request,
                        error_cause::MISSING_ATTRIBUTE,
                        "CoA-Request without Filter-Id: nothing to change".into(),
                        seq,
                    )
                }
                [one] if *one == COA_EXEMPT.as_bytes() => Some(CoaPolicy::Exempt),
                [one] if *one == COA_ENFORCE.as_bytes() => Some(CoaPolicy::Enforce),
                [_] => {
                    return nak(
                        request,
                        error_cause::INVALID_ATTRIBUTE_VALUE,
                        format!("Filter-Id is neither {COA_EXEMPT} nor {COA_ENFORCE}"),
                        seq,
                    )
                }
                _ => {
                    return nak(
                        request,
                        error_cause::INVALID_REQUEST,
                        "more than one Filter-Id".into(),
                        seq,
                    )
                }
            }
        } else {
            None
        };
        let keys = match matching(&table, packet, from) {
            Ok(keys) => keys,
            Err(problem) if problem.is_empty() => {
                return nak(
                    request,
                    error_cause::MISSING_ATTRIBUTE,
                    "names no session (Acct-Session-Id, User-Name or Framed-IP-Address)".into(),
                    seq,
                )
            }
            Err(problem) => return nak(request, error_cause::INVALID_REQUEST, problem, seq),
        };
        if keys.is_empty() {
            return nak(
                request,
                error_cause::SESSION_CONTEXT_NOT_FOUND,
                "no such session".into(),
                seq,
            );
        }
        for key in &keys {
            match wanted {
                Some(policy) => {
                    table.set_coa(key, Some(policy));
                }
                None => {
                    table.remove(key);
                }
            }
        }
        let ack = if request == code::COA_REQUEST {
            code::COA_ACK
        } else {
            code::DISCONNECT_ACK
        };
        Handled {
            outcome: Outcome::Accepted,
            problem: None,
            seq: table.seq(),
            answer: Some((ack, Vec::new())),
        }
    }
}
