//! Tests of `fleet::view`.

use super::*;
use crate::fleet::codec::{encode_lists, FleetPool};

fn grant(prefix: &str, actor: &str) -> Vec<u8> {
    format!("{{\"prefix\":\"{prefix}\",\"actor\":\"{actor}\",\"created_at\":1}}").into_bytes()
}

#[test]
fn a_bad_grant_keeps_its_last_good_value_and_the_others_apply() {
    let layout = Layout::new("/f");
    let mut view = FleetView::new(layout.clone());
    let k1 = "/f/policy/grants/exempt/100.64.1.7/32";
    let k2 = "/f/policy/grants/exempt/100.64.1.8/32";
    view.put(k1, &grant("100.64.1.7/32", "a"), 5);
    view.put(k1, b"{garbage", 6);
    view.put(k2, &grant("100.64.1.8/32", "b"), 7);
    view.settle();
    let p = view.policy();
    assert_eq!(p.revision, 7);
    assert_eq!(
        p.grants.exempt["100.64.1.7/32"].actor, "a",
        "last good value kept"
    );
    assert!(p.grants.exempt.contains_key("100.64.1.8/32"));
    let refused = view.refusals();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].key, k1);
    // Fixing it clears the refusal; deleting removes the grant.
    view.put(k1, &grant("100.64.1.7/32", "c"), 8);
    assert!(view.refusals().is_empty());
    view.delete(k1, 9);
    assert!(!view.policy().grants.exempt.contains_key("100.64.1.7/32"));
    view.put("/f/policy/whatever", b"x", 10);
    assert_eq!(view.refusals()[0].key, "/f/policy/whatever");
}

#[test]
fn lists_change_only_when_the_manifest_and_chunks_agree_and_snapshots_round_trip() {
    let layout = Layout::new("/f");
    let mut view = FleetView::new(layout.clone());
    let lists = FleetLists {
        pools: vec![FleetPool {
            name: "east".into(),
            action: Some(op25b_common::abi::PoolAction::Monitor),
            prefixes: ["100.96.0.0/12".parse().unwrap()].into_iter().collect(),
        }],
        ..FleetLists::default()
    };
    let (manifest, chunks) = encode_lists(&lists, "t", 1);
    // The manifest before its chunks (a half-written list): refused, nothing changes.
    view.put(
        &layout.manifest_key(),
        &serde_json::to_vec(&manifest).unwrap(),
        3,
    );
    assert!(!view.settle());
    assert!(
        view.refusals()[0].message.contains("missing"),
        "{:?}",
        view.refusals()
    );
    for (hash, text) in &chunks {
        view.put(&layout.chunk_key(hash), text.as_bytes(), 4);
    }
    assert!(view.settle(), "the chunk's arrival completes the list");
    assert!(view.refusals().is_empty());
    assert_eq!(*view.policy().lists, lists);
    view.put(
        "/f/policy/grants/allowed_destinations/192.0.2.26/32",
        &grant("192.0.2.26/32", "x"),
        5,
    );

    let snapshot = view.snapshot();
    let text = serde_json::to_string(&snapshot).unwrap();
    let back =
        FleetView::from_snapshot(layout.clone(), &serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back.policy(), view.policy());
    assert!(FleetView::from_snapshot(Layout::new("/other"), &snapshot).is_err());

    // A damaged chunk in etcd: refused with its key, the lists stay.
    let hash = &manifest.pools[0].list.chunks[0];
    view.put(&layout.chunk_key(hash), b"100.96.0.0/11\n", 6);
    assert!(!view.settle());
    assert_eq!(view.refusals()[0].key, layout.chunk_key(hash));
    assert_eq!(*view.policy().lists, lists);
    // Removing the manifest withdraws the fleet's lists.
    view.delete(&layout.manifest_key(), 7);
    assert!(view.settle());
    assert_eq!(view.policy().lists.prefix_count(), 0);
}

#[test]
fn resync_applies_what_changed_while_away() {
    let layout = Layout::new("/f");
    let mut view = FleetView::new(layout);
    view.put(
        "/f/policy/grants/exempt/100.64.1.7/32",
        &grant("100.64.1.7/32", "a"),
        2,
    );
    let kvs = BTreeMap::from([(
        "/f/policy/grants/exempt/100.64.1.9/32".to_owned(),
        grant("100.64.1.9/32", "b"),
    )]);
    view.resync(&kvs, 20);
    let p = view.policy();
    assert_eq!(
        p.grants.exempt.keys().collect::<Vec<_>>(),
        ["100.64.1.9/32"]
    );
    assert_eq!(p.revision, 20);
}

/// A fleet value must not open more than a local one may: an exemption or
/// relay broader than this box's `policy.prefix_limits` is refused with its
/// key named, and the last good policy stays.
#[test]
fn fleet_values_broader_than_the_prefix_limits_are_refused_naming_the_key() {
    let layout = Layout::new("/f");
    let mut view = FleetView::new(layout.clone());

    // A grant of everything, in etcd by hand or by an old agent.
    let everyone = "/f/policy/grants/exempt/0.0.0.0/0";
    view.put(everyone, &grant("0.0.0.0/0", "mallory"), 3);
    view.settle();
    assert!(view.policy().grants.exempt.is_empty());
    let refused = view.refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].key, everyone);
    assert!(
        refused[0]
            .message
            .contains("policy.prefix_limits.exempt_ipv4"),
        "{}",
        refused[0].message
    );

    // Published lists: good ones first, then a relay list opening ::/0.
    let good = FleetLists {
        exempt: ["100.64.1.7/32".parse().unwrap()].into_iter().collect(),
        ..FleetLists::default()
    };
    let publish = |view: &mut FleetView, lists: &FleetLists, revision| {
        let (manifest, chunks) = encode_lists(lists, "t", 1);
        for (hash, text) in &chunks {
            view.put(&layout.chunk_key(hash), text.as_bytes(), revision);
        }
        view.put(
            &layout.manifest_key(),
            &serde_json::to_vec(&manifest).unwrap(),
            revision,
        );
        view.settle();
    };
    publish(&mut view, &good, 4);
    assert_eq!(*view.policy().lists, good);
    let bad = FleetLists {
        allowed_destinations: ["::/0".parse().unwrap()].into_iter().collect(),
        ..good.clone()
    };
    publish(&mut view, &bad, 5);
    assert_eq!(*view.policy().lists, good, "the last good lists stay");
    let refusal = view
        .refusals()
        .into_iter()
        .find(|r| r.message.contains("allowed_destinations_ipv6"))
        .expect("the relay chunk is refused");
    assert!(
        refusal.key.starts_with(&layout.chunks_dir()) && refusal.key.ends_with(":1"),
        "names the chunk and its line: {}",
        refusal.key
    );

    // A box whose configuration lowered the bound takes what it allows.
    let lowered = crate::policy::limits::PrefixLimits {
        exempt_ipv4: 8,
        ..crate::policy::limits::PrefixLimits::default()
    };
    let mut lenient = FleetView::new(Layout::new("/f").with_limits(lowered));
    let wide = "/f/policy/grants/exempt/10.0.0.0/8";
    lenient.put(wide, &grant("10.0.0.0/8", "a"), 3);
    lenient.settle();
    assert!(lenient.refusals().is_empty());
    assert!(lenient.policy().grants.exempt.contains_key("10.0.0.0/8"));
    view.put(wide, &grant("10.0.0.0/8", "a"), 6);
    assert!(view.refusals().iter().any(|r| r.key == wide));
}
