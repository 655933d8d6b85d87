//! RADIUS packets (RFC 2865 §3, §5), accounting (RFC 2866) and dynamic
//! authorization (RFC 5176): decode, authenticator checks, encode.
//!
//! Hand-written rather than the `radius` crate: that crate is built around
//! a tokio server and generated dictionaries, while op25b needs a dozen
//! attributes, a blocking socket and a decoder that is one pure function
//! (`decode`) that can be fuzzed. The decoder never panics: every length is
//! checked before it is used.

use std::net::{Ipv4Addr, Ipv6Addr};

use md5::{Digest as _, Md5};

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

/// Attribute types op25b reads or writes.
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const FILTER_ID: u8 = 11;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const CLASS: u8 = 25;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
    pub const FRAMED_IPV6_PREFIX: u8 = 97;
    pub const ERROR_CAUSE: u8 = 101;
    pub const DELEGATED_IPV6_PREFIX: u8 = 123;
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

/// A value of the wrong shape for its attribute type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} (attribute {kind}): {message}")]
pub struct AttributeError {
    pub kind: u8,
    pub name: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub kind: u8,
    pub value: Vec<u8>,
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

/// Attribute names for messages.
pub fn attribute_name(kind: u8) -> &'static str {
    match kind {
        attr::USER_NAME => "User-Name",
        attr::NAS_IP_ADDRESS => "NAS-IP-Address",
        attr::FRAMED_IP_ADDRESS => "Framed-IP-Address",
        attr::FILTER_ID => "Filter-Id",
        attr::REPLY_MESSAGE => "Reply-Message",
        attr::CLASS => "Class",
        attr::NAS_IDENTIFIER => "NAS-Identifier",
        attr::ACCT_STATUS_TYPE => "Acct-Status-Type",
        attr::ACCT_SESSION_ID => "Acct-Session-Id",
        attr::EVENT_TIMESTAMP => "Event-Timestamp",
        attr::MESSAGE_AUTHENTICATOR => "Message-Authenticator",
        attr::NAS_IPV6_ADDRESS => "NAS-IPv6-Address",
        attr::FRAMED_IPV6_PREFIX => "Framed-IPv6-Prefix",
        attr::ERROR_CAUSE => "Error-Cause",
        attr::DELEGATED_IPV6_PREFIX => "Delegated-IPv6-Prefix",
        _ => "attribute",
    }
}

impl Attribute {
    pub fn new(kind: u8, value: impl Into<Vec<u8>>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }

    pub fn u32(kind: u8, value: u32) -> Self {
        Self::new(kind, value.to_be_bytes())
    }

    pub fn ipv6_prefix(kind: u8, addr: Ipv6Addr, len: u8) -> Self {
        let octets = usize::from(len.div_ceil(8)).min(16);
        let mut value = vec![0, len];
        value.extend_from_slice(&addr.octets()[..octets]);
        Self::new(kind, value)
    }

    fn error(&self, message: impl Into<String>) -> AttributeError {
        AttributeError {
            kind: self.kind,
            name: attribute_name(self.kind),
            message: message.into(),
        }
    }
}

impl Packet {
    /// The first attribute of `kind`.
    pub fn first(&self, kind: u8) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind == kind)
    }

    pub fn all(&self, kind: u8) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(move |a| a.kind == kind)
    }

    /// A text attribute (User-Name, Acct-Session-Id, ...): must be UTF-8.
    pub fn text(&self, kind: u8) -> Result<Option<&str>, AttributeError> {
        self.first(kind)
            .map(|a| std::str::from_utf8(&a.value).map_err(|_| a.error("not UTF-8 text")))
            .transpose()
    }

    pub fn integer(&self, kind: u8) -> Result<Option<u32>, AttributeError> {
        self.first(kind)
            .map(|a| {
                <[u8; 4]>::try_from(a.value.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| a.error(format!("{} octets, an integer has 4", a.value.len())))
            })
            .transpose()
    }

    pub fn ipv4(&self, kind: u8) -> Result<Option<Ipv4Addr>, AttributeError> {
        self.first(kind)
            .map(|a| {
                <[u8; 4]>::try_from(a.value.as_slice())
                    .map(Ipv4Addr::from)
                    .map_err(|_| a.error(format!("{} octets, an address has 4", a.value.len())))
            })
            .transpose()
    }

    pub fn ipv6(&self, kind: u8) -> Result<Option<Ipv6Addr>, AttributeError> {
        self.first(kind)
            .map(|a| {
                <[u8; 16]>::try_from(a.value.as_slice())
                    .map(Ipv6Addr::from)
                    .map_err(|_| a.error(format!("{} octets, an address has 16", a.value.len())))
            })
            .transpose()
    }

    /// Every Framed-IPv6-Prefix / Delegated-IPv6-Prefix (RFC 3162 §2.3):
    /// reserved octet, prefix length, then only the octets the length needs.
    pub fn ipv6_prefixes(&self, kind: u8) -> Result<Vec<(Ipv6Addr, u8)>, AttributeError> {
        self.all(kind)
            .map(|a| {
                let [_reserved, len, rest @ ..] = a.value.as_slice() else {
                    return Err(a.error("shorter than its 2-octet header"));
                };
                if *len > 128 {
                    return Err(a.error(format!("prefix length {len} is over 128")));
                }
                let needed = usize::from(len.div_ceil(8));
                if rest.len() < needed || rest.len() > 16 {
                    return Err(a.error(format!("{} prefix octets for a /{len}", rest.len())));
                }
                let mut octets = [0; 16];
                octets[..rest.len()].copy_from_slice(rest);
                Ok((Ipv6Addr::from(octets), *len))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECRET: &[u8] = b"testing123";

    fn accounting_start() -> Vec<u8> {
        encode_request(
            code::ACCOUNTING_REQUEST,
            7,
            &[
                Attribute::u32(attr::ACCT_STATUS_TYPE, status::START),
                Attribute::new(attr::USER_NAME, "alice@example.jp"),
                Attribute::new(attr::ACCT_SESSION_ID, "0001"),
                Attribute::new(attr::FRAMED_IP_ADDRESS, [100, 64, 0, 1]),
                Attribute::ipv6_prefix(
                    attr::DELEGATED_IPV6_PREFIX,
                    "2001:db8:1200::".parse().unwrap(),
                    56,
                ),
                Attribute::new(attr::NAS_IDENTIFIER, "bng1"),
            ],
            SECRET,
        )
    }

    #[test]
    fn a_request_round_trips_and_its_authenticator_verifies() {
        let raw = accounting_start();
        let packet = decode(&raw).unwrap();
        assert_eq!(packet.code, code::ACCOUNTING_REQUEST);
        assert_eq!(packet.identifier, 7);
        assert_eq!(
            packet.text(attr::USER_NAME).unwrap(),
            Some("alice@example.jp")
        );
        assert_eq!(
            packet.integer(attr::ACCT_STATUS_TYPE).unwrap(),
            Some(status::START)
        );
        assert_eq!(
            packet.ipv4(attr::FRAMED_IP_ADDRESS).unwrap(),
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
        assert_eq!(
            packet.ipv6_prefixes(attr::DELEGATED_IPV6_PREFIX).unwrap(),
            vec![("2001:db8:1200::".parse().unwrap(), 56)]
        );
        assert!(verify_request(&raw, SECRET));
        assert!(!verify_request(&raw, b"wrong"));
        let mut tampered = raw.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(!verify_request(&tampered, SECRET));
    }

    /// The RFC 2866 authenticator is the MD5 of the packet with a zero
    /// authenticator plus the secret: check against an independent value.
    #[test]
    fn the_request_authenticator_matches_a_known_value() {
        // Code 4, id 0, length 26, Acct-Status-Type Start; secret "s".
        let mut raw = vec![4, 0, 0, 26];
        raw.extend([0; 16]);
        raw.extend([40, 6, 0, 0, 0, 1]);
        // Computed with Python's hashlib over the same octets plus "s".
        let expected = [
            0x7c, 0x75, 0xe9, 0xcc, 0xcc, 0x84, 0x1d, 0xa6, 0xac, 0x7f, 0x81, 0x40, 0x17, 0xc4,
            0x69, 0x4c,
        ];
        raw[4..20].copy_from_slice(&expected);
        assert!(verify_request(&raw, b"s"));
        assert_eq!(encode_request(4, 0, &[Attribute::u32(40, 1)], b"s"), raw);
    }

    #[test]
    fn responses_carry_a_response_authenticator() {
        let request = decode(&accounting_start()).unwrap();
        let response = encode_response(
            code::ACCOUNTING_RESPONSE,
            request.identifier,
            &request.authenticator,
            &[],
            SECRET,
        );
        assert_eq!(response.len(), HEADER_LEN);
        assert!(verify_response(&response, &request.authenticator, SECRET));
        assert!(!verify_response(&response, &[0; 16], SECRET));
        let nak = encode_response(
            code::COA_NAK,
            1,
            &request.authenticator,
            &[Attribute::u32(
                attr::ERROR_CAUSE,
                error_cause::SESSION_CONTEXT_NOT_FOUND,
            )],
            SECRET,
        );
        let decoded = decode(&nak).unwrap();
        assert_eq!(decoded.integer(attr::ERROR_CAUSE).unwrap(), Some(503));
    }

    #[test]
    fn malformed_packets_are_typed_errors() {
        let good = accounting_start();
        assert_eq!(
            decode(&good[..19]),
            Err(DecodeError::ShortHeader { have: 19 })
        );
        let mut lying = good.clone();
        lying[2..4].copy_from_slice(&u16::try_from(good.len() + 10).unwrap().to_be_bytes());
        assert!(matches!(decode(&lying), Err(DecodeError::Truncated { .. })));
        let mut small = good.clone();
        small[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(decode(&small), Err(DecodeError::BadLength { declared: 10 }));
        for bad_len in [0u8, 1] {
            let mut zero = good.clone();
            zero[21] = bad_len;
            assert!(matches!(
                decode(&zero),
                Err(DecodeError::AttributeLength { offset: 20, .. })
            ));
        }
        let mut overlong = good.clone();
        overlong[21] = 255;
        assert!(matches!(
            decode(&overlong),
            Err(DecodeError::AttributeLength { .. })
        ));
        // One octet left over after the last attribute.
        let mut dangling = good.clone();
        dangling.push(1);
        let len = u16::try_from(dangling.len()).unwrap();
        dangling[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            decode(&dangling),
            Err(DecodeError::AttributeHeader { .. })
        ));
        assert_eq!(
            decode(&vec![0; MAX_PACKET_LEN + 1]),
            Err(DecodeError::TooLong { have: 4097 })
        );
        // Padding past Length is ignored.
        let mut padded = good.clone();
        padded.extend([0; 5]);
        assert_eq!(decode(&padded), decode(&good));
    }

    #[test]
    fn attribute_values_of_the_wrong_shape_are_named() {
        let raw = encode_request(
            code::ACCOUNTING_REQUEST,
            1,
            &[
                Attribute::new(attr::FRAMED_IP_ADDRESS, [1, 2, 3]),
                Attribute::new(attr::USER_NAME, [0xff, 0xfe]),
                Attribute::new(attr::FRAMED_IPV6_PREFIX, [0, 129]),
            ],
            SECRET,
        );
        let packet = decode(&raw).unwrap();
        let e = packet.ipv4(attr::FRAMED_IP_ADDRESS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Framed-IP-Address (attribute 8): 3 octets, an address has 4"
        );
        assert!(packet.text(attr::USER_NAME).is_err());
        assert!(packet.ipv6_prefixes(attr::FRAMED_IPV6_PREFIX).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            if let Ok(p) = decode(&bytes) {
                let _ = p.text(attr::USER_NAME);
                let _ = p.ipv6_prefixes(attr::FRAMED_IPV6_PREFIX);
                let _ = p.integer(attr::ACCT_STATUS_TYPE);
            }
            let _ = verify_request(&bytes, SECRET);
        }

        #[test]
        fn mutated_valid_packets_never_panic_and_decode_consistently(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut raw = accounting_start();
            for (at, value) in edits {
                let at = at % raw.len();
                raw[at] = value;
            }
            raw.truncate(cut % (raw.len() + 1));
            if let Ok(packet) = decode(&raw) {
                // Whatever decodes re-encodes to the same attribute bytes.
                let declared = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
                prop_assert_eq!(encode_attributes(&packet.attributes), raw[HEADER_LEN..declared].to_vec());
                let _ = packet.ipv6_prefixes(attr::DELEGATED_IPV6_PREFIX);
                let _ = packet.ipv4(attr::FRAMED_IP_ADDRESS);
            }
            let _ = verify_request(&raw, SECRET);
        }
    }
}
