//! RADIUS packets (RFC 2865 §3, §5), accounting (RFC 2866) and dynamic
//! authorization (RFC 5176): decode, authenticator checks, encode.
//!
//! Hand-written rather than the `radius` crate: that crate is built around
//! a tokio server and generated dictionaries, while op25b needs a dozen
//! attributes, a blocking socket and a decoder that is one pure function
//! (`decode`) that can be fuzzed. The decoder never panics: every length is
//! checked before it is used.

use md5::{Digest as _, Md5};

mod attributes;
#[cfg(test)]
mod tests;

pub use self::attributes::{attr, attribute_name, Attribute, AttributeError};
/// RFC 2865 §3: a packet is 20 to 4096 octets.
pub const MAX_PACKET_LEN: usize = 4096;
pub const HEADER_LEN: usize = 20;
const MAX_ATTRIBUTE_VALUE: usize = 253;

/// Packet codes op25b speaks.
pub mod code {
    pub const ACCOUNTING_REQUEST: u8 = 4;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    pub const DISCONNECT_REQUEST: u8 = 40;
    pub const DISCONNECT_ACK: u8 = 41;
    pub const DISCONNECT_NAK: u8 = 42;
    pub const COA_REQUEST: u8 = 43;
    pub const COA_ACK: u8 = 44;
    pub const COA_NAK: u8 = 45;
}

/// Acct-Status-Type values (RFC 2866 §5.1).
pub mod status {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
}

/// Error-Cause values (RFC 5176 §3.5).
pub mod error_cause {
    pub const UNSUPPORTED_ATTRIBUTE: u32 = 401;
    pub const MISSING_ATTRIBUTE: u32 = 402;
    pub const INVALID_REQUEST: u32 = 404;
    pub const INVALID_ATTRIBUTE_VALUE: u32 = 407;
    pub const SESSION_CONTEXT_NOT_FOUND: u32 = 503;
}

/// Why bytes are not a RADIUS packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{have} octets: shorter than the 20-octet header")]
    ShortHeader { have: usize },
    #[error("{have} octets: longer than the 4096 RADIUS allows")]
    TooLong { have: usize },
    #[error("Length field says {declared}, outside 20..=4096")]
    BadLength { declared: usize },
    #[error("Length field says {declared} but only {have} octets arrived")]
    Truncated { declared: usize, have: usize },
    #[error("attribute {kind} at offset {offset}: length {length} is invalid (needs 2..={room})")]
    AttributeLength {
        offset: usize,
        kind: u8,
        length: usize,
        room: usize,
    },
    #[error("attribute at offset {offset}: only {room} octet left for its header")]
    AttributeHeader { offset: usize, room: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

/// Decodes one datagram. Octets past the Length field are padding and
/// ignored (RFC 2865 §3).
pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    if bytes.len() > MAX_PACKET_LEN {
        return Err(DecodeError::TooLong { have: bytes.len() });
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(DecodeError::ShortHeader { have: bytes.len() });
    };
    let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&declared) {
        return Err(DecodeError::BadLength { declared });
    }
    let Some(packet) = bytes.get(..declared) else {
        return Err(DecodeError::Truncated {
            declared,
            have: bytes.len(),
        });
    };
    let mut authenticator = [0; 16];
    authenticator.copy_from_slice(&header[4..HEADER_LEN]);
    let mut attributes = Vec::new();
    let mut offset = HEADER_LEN;
    while offset < declared {
        let room = declared - offset;
        let (Some(&kind), Some(&length)) = (packet.get(offset), packet.get(offset + 1)) else {
            return Err(DecodeError::AttributeHeader { offset, room });
        };
        let length = usize::from(length);
        if length < 2 || length > room {
            return Err(DecodeError::AttributeLength {
                offset,
                kind,
                length,
                room,
            });
        }
        attributes.push(Attribute {
            kind,
            value: packet[offset + 2..offset + length].to_vec(),
        });
        offset += length;
    }
    Ok(Packet {
        code: packet[0],
        identifier: packet[1],
        authenticator,
        attributes,
    })
}

fn md5_of(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The Request Authenticator an Accounting-Request, CoA-Request or
/// Disconnect-Request must carry (RFC 2866 §3, RFC 5176 §2.3):
/// MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret).
/// `raw` is the packet as received (only its first Length octets count).
fn request_authenticator(raw: &[u8], secret: &[u8]) -> Option<[u8; 16]> {
    let declared = usize::from(u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]));
    if declared < HEADER_LEN {
        return None;
    }
    let packet = raw.get(..declared)?;
    Some(md5_of(&[
        &packet[..4],
        &[0; 16],
        packet.get(HEADER_LEN..)?,
        secret,
    ]))
}

/// Whether `raw` carries the right Request Authenticator for `secret`.
/// Compared in constant time so a wrong guess learns nothing from timing.
pub fn verify_request(raw: &[u8], secret: &[u8]) -> bool {
    let Some(expected) = request_authenticator(raw, secret) else {
        return false;
    };
    let Some(got) = raw.get(4..HEADER_LEN) else {
        return false;
    };
    expected
        .iter()
        .zip(got)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

fn encode_attributes(attributes: &[Attribute]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in attributes {
        let value = &a.value[..a.value.len().min(MAX_ATTRIBUTE_VALUE)];
        out.push(a.kind);
        out.push(u8::try_from(value.len() + 2).expect("capped at 255"));
        out.extend_from_slice(value);
    }
    out
}

fn assemble(code: u8, identifier: u8, authenticator: &[u8; 16], attributes: &[u8]) -> Vec<u8> {
    let length = u16::try_from(HEADER_LEN + attributes.len()).expect("caller keeps packets small");
    let mut out = Vec::with_capacity(usize::from(length));
    out.push(code);
    out.push(identifier);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(authenticator);
    out.extend_from_slice(attributes);
    out
}

/// A response (Accounting-Response, CoA-ACK/NAK, Disconnect-ACK/NAK) to a
/// request with `request_authenticator`: its Response Authenticator is
/// MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
pub fn encode_response(
    code: u8,
    identifier: u8,
    request_authenticator: &[u8; 16],
    attributes: &[Attribute],
    secret: &[u8],
) -> Vec<u8> {
    let attrs = encode_attributes(attributes);
    let mut out = assemble(code, identifier, request_authenticator, &attrs);
    let authenticator = md5_of(&[&out, secret]);
    out[4..HEADER_LEN].copy_from_slice(&authenticator);
    out
}

/// A request whose authenticator is computed over zeros (Accounting,
/// CoA, Disconnect): what a NAS sends. Used by tests and the benchmark.
pub fn encode_request(
    code: u8,
    identifier: u8,
    attributes: &[Attribute],
    secret: &[u8],
) -> Vec<u8> {
    let attrs = encode_attributes(attributes);
    let mut out = assemble(code, identifier, &[0; 16], &attrs);
    let authenticator = md5_of(&[&out, secret]);
    out[4..HEADER_LEN].copy_from_slice(&authenticator);
    out
}

/// Whether `raw` is a correct response to a request with
/// `request_authenticator` (what a client checks; for tests).
pub fn verify_response(raw: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
    let Some(got) = raw.get(4..HEADER_LEN) else {
        return false;
    };
    let expected = md5_of(&[&raw[..4], request_authenticator, &raw[HEADER_LEN..], secret]);
    expected == got
}
