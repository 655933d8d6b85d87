//! Tests of `fleet::codec`.

use super::*;

fn set(n: u32) -> PrefixSet {
    (0..n)
        .map(|i| Prefix::new(std::net::Ipv4Addr::from(0x6440_0000 + (i << 8)).into(), 24).unwrap())
        .collect()
}

fn decode(manifest: &Manifest, chunks: &BTreeMap<String, String>) -> Result<FleetLists, KeyError> {
    let value = serde_json::to_vec(manifest).unwrap();
    decode_lists(
        "P/m",
        &value,
        |h| (format!("P/c/{h}"), chunks.get(h).map(String::as_bytes)),
        &PrefixLimits::default(),
    )
    .map(|(_, l)| l)
}

#[test]
fn lists_round_trip_with_pools_and_expiries() {
    let mut lists = FleetLists {
        dynamic: set(3),
        ..FleetLists::default()
    };
    lists
        .exempt
        .insert_until("100.64.1.7/32".parse().unwrap(), Some(2_000_000_000));
    lists
        .allowed_destinations
        .insert("2001:db8:25::25/128".parse().unwrap());
    lists.pools.push(FleetPool {
        name: "ftth-east".into(),
        action: Some(PoolAction::Monitor),
        prefixes: ["100.96.0.0/12".parse().unwrap()].into_iter().collect(),
    });
    let (manifest, chunks) = encode_lists(&lists, "test", 1);
    assert_eq!(decode(&manifest, &chunks).unwrap(), lists);
}

#[test]
fn a_million_prefixes_fit_in_chunks_below_the_request_limit_and_one_change_moves_one_chunk() {
    let big = set(1_000_000);
    let chunks = chunk_list(&big);
    assert!(chunks.iter().all(|(_, t)| t.len() <= MAX_CHUNK_BYTES));
    assert!(chunks.len() > 20, "{} chunks", chunks.len());
    let mut changed = big.clone();
    changed.insert("198.51.100.0/24".parse().unwrap());
    let after = chunk_list(&changed);
    let before: std::collections::BTreeSet<_> = chunks.iter().map(|(h, _)| h).collect();
    let new = after.iter().filter(|(h, _)| !before.contains(h)).count();
    assert!(new <= 2, "one added prefix rewrote {new} chunks");
}

#[test]
fn bad_values_are_refused_naming_the_key() {
    let lists = FleetLists {
        dynamic: set(2),
        ..FleetLists::default()
    };
    let (manifest, chunks) = encode_lists(&lists, "t", 1);
    let hash = manifest.dynamic.chunks[0].clone();
    // A chunk edited by hand no longer matches its name.
    let mut tampered = chunks.clone();
    tampered.insert(hash.clone(), "100.64.0.1/24\n".into());
    let e = decode(&manifest, &tampered).unwrap_err();
    assert_eq!(e.key, format!("P/c/{hash}"));
    assert!(e.message.contains("SHA-256"), "{e}");
    // A bad line inside a well-named chunk: key and line.
    let bad = "100.64.0.0/24\n100.64.0.1/24\n".to_owned();
    let bad_hash = sha256_hex(bad.as_bytes());
    let mut m = manifest.clone();
    m.dynamic = ListRef {
        chunks: vec![bad_hash.clone()],
        prefixes: 2,
    };
    let e = decode(&m, &BTreeMap::from([(bad_hash.clone(), bad)])).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("P/c/{bad_hash}:2: host bits set in 100.64.0.1/24: did you mean 100.64.0.0/24?")
    );
    // Missing chunk, wrong count, bad pool, unknown field, oversize.
    assert!(decode(&manifest, &BTreeMap::new())
        .unwrap_err()
        .message
        .contains("missing"));
    let mut m = manifest.clone();
    m.dynamic.prefixes = 3;
    assert!(decode(&m, &chunks)
        .unwrap_err()
        .message
        .contains("the manifest says 3"));
    let mut m = manifest.clone();
    m.pools.push(PoolRef {
        name: "default".into(),
        action: "drop".into(),
        list: ListRef::default(),
    });
    assert!(decode(&m, &chunks)
        .unwrap_err()
        .message
        .contains("is taken"));
    let mut m = manifest.clone();
    m.pools.push(PoolRef {
        name: "p".into(),
        action: "block".into(),
        list: ListRef::default(),
    });
    assert!(decode(&m, &chunks)
        .unwrap_err()
        .message
        .contains("not monitor, drop or reject"));
    let mut m = manifest;
    m.pools.push(PoolRef {
        name: "dup".into(),
        action: "drop".into(),
        list: m.dynamic.clone(),
    });
    assert!(decode(&m, &chunks)
        .unwrap_err()
        .message
        .contains("a prefix belongs to one pool"));
    let e = decode_lists(
        "P/m",
        b"{\"format\":1,\"colour\":2}",
        |h| (h.into(), None),
        &PrefixLimits::default(),
    )
    .unwrap_err();
    assert!(e.message.contains("unknown field `colour`"), "{e}");
    let e = decode_lists(
        "P/m",
        &vec![b' '; MAX_MANIFEST_BYTES + 1],
        |h| (h.into(), None),
        &PrefixLimits::default(),
    )
    .unwrap_err();
    assert!(e.message.contains("over the"), "{e}");
}

#[test]
fn grants_decode_strictly() {
    let ok = br#"{"prefix":"100.64.1.7/32","reason":"ticket 1","actor":"desk","created_at":5}"#;
    assert_eq!(
        decode_grant(
            "k",
            "100.64.1.7/32",
            ok,
            ListKind::Exempt,
            &PrefixLimits::default()
        )
        .unwrap()
        .actor,
        "desk"
    );
    let cases: &[(&str, &[u8], &str)] = &[
        ("100.64.1.8/32", ok, "differs from the key's"),
        ("100.64.1.7", ok, "not written canonically"),
        ("banana", ok, "does not end in a prefix"),
        (
            "100.64.1.7/32",
            b"{\"prefix\":\"100.64.1.7/32\"}",
            "missing field `created_at`",
        ),
        ("100.64.1.7/32", b"\xff\xfe", "not a grant"),
        (
            "100.64.1.7/32",
            &[b' '; MAX_GRANT_BYTES + 1],
            "over the 4096-byte limit",
        ),
    ];
    for (prefix, value, needle) in cases {
        let e = decode_grant(
            "P/policy/grants/exempt/x",
            prefix,
            value,
            ListKind::Exempt,
            &PrefixLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.key, "P/policy/grants/exempt/x");
        assert!(e.message.contains(needle), "{prefix}: {e}");
    }
}

#[test]
fn subscriber_grants_decode_only_with_a_matching_valid_name() {
    use crate::fleet::codec::decode_subscriber_grant;
    let key = "/f/policy/grants/exempt_subscribers/alice@example.jp";
    let value = br#"{"subscriber":"alice@example.jp","expires_at":9,"actor":"d","created_at":1}"#;
    let grant = decode_subscriber_grant(key, "alice@example.jp", value).unwrap();
    assert_eq!(
        (grant.subscriber.as_str(), grant.expires_at),
        ("alice@example.jp", Some(9))
    );
    for (name, value, needle) in [
        (
            "alice@example.jp",
            &b"{garbage"[..],
            "not a grant by subscriber",
        ),
        ("bob", &value[..], "differs"),
        (
            "a\u{7}",
            br#"{"subscriber":"a\u0007","created_at":1}"#,
            "control",
        ),
        (
            "alice@example.jp",
            br#"{"subscriber":"alice@example.jp","created_at":1,"extra":1}"#,
            "unknown field",
        ),
    ] {
        let error = decode_subscriber_grant(key, name, value).unwrap_err();
        assert_eq!(error.key, key);
        assert!(error.message.contains(needle), "{name}: {}", error.message);
    }
}
