//! The codec against known values, malformed packets and random bytes.

use std::net::Ipv4Addr;

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
        0x7c, 0x75, 0xe9, 0xcc, 0xcc, 0x84, 0x1d, 0xa6, 0xac, 0x7f, 0x81, 0x40, 0x17, 0xc4, 0x69,
        0x4c,
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
