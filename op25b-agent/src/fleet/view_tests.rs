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

fn subscriber_grant(name: &str, actor: &str, expires_at: Option<u64>) -> Vec<u8> {
    serde_json::to_vec(&crate::policy::subscriber_grants::SubscriberGrant {
        subscriber: name.into(),
        expires_at,
        reason: "T-7".into(),
        actor: actor.into(),
        created_at: 1,
    })
    .unwrap()
}

/// Grants by subscriber: accepted into the view's grants, refused by key
/// when the name or value is bad (the last good value stays), in the
/// snapshot, and listed for expiry once due.
#[test]
fn subscriber_grants_are_held_refused_by_key_snapshotted_and_expire() {
    let layout = Layout::new("/f");
    let mut view = FleetView::new(layout.clone());
    let alice = layout.subscriber_grant_key("alice@example.jp");
    let bob = layout.subscriber_grant_key("bob");
    view.put(&alice, &subscriber_grant("alice@example.jp", "a", None), 3);
    view.put(&bob, &subscriber_grant("bob", "b", Some(100)), 4);
    view.settle();
    assert!(view.refusals().is_empty(), "{:?}", view.refusals());
    let held = view.policy().grants.exempt_subscribers;
    assert_eq!(held.keys().collect::<Vec<_>>(), ["alice@example.jp", "bob"]);

    // Bad values, each refused naming its key; alice keeps her last good value.
    let spaced = layout.subscriber_grant_key("carol smith");
    let other = layout.subscriber_grant_key("dave");
    let big = "x".repeat(5000);
    view.put(&alice, format!("{{\"reason\":\"{big}\"}}").as_bytes(), 5);
    view.put(&spaced, &subscriber_grant("carol smith", "c", None), 6);
    view.put(&other, &subscriber_grant("mallory", "m", None), 7);
    view.put(&layout.subscriber_grant_key(""), b"{}", 8);
    let refused = view.refusals();
    let keys: Vec<&str> = refused.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            layout.subscriber_grant_key("").as_str(),
            alice.as_str(),
            spaced.as_str(),
            other.as_str()
        ]
    );
    assert!(
        refused[1].message.contains("4096"),
        "{}",
        refused[1].message
    );
    assert!(
        refused[2].message.contains("spaces"),
        "{}",
        refused[2].message
    );
    assert!(
        refused[3].message.contains("differs"),
        "{}",
        refused[3].message
    );
    let held = view.policy().grants.exempt_subscribers;
    assert_eq!(held.len(), 2, "no refused name enforced: {held:?}");
    assert_eq!(held["alice@example.jp"].actor, "a", "last good value kept");

    // The snapshot carries them, through the same validation.
    view.put(&alice, &subscriber_grant("alice@example.jp", "a2", None), 9);
    for key in [&spaced, &other] {
        view.delete(key, 10);
    }
    view.delete(&layout.subscriber_grant_key(""), 10);
    assert!(view.refusals().is_empty(), "{:?}", view.refusals());
    let snapshot = view.snapshot();
    assert!(snapshot.kvs.contains_key(&alice) && snapshot.kvs.contains_key(&bob));
    let back = FleetView::from_snapshot(layout.clone(), &snapshot).unwrap();
    assert_eq!(back.policy(), view.policy());

    // Expiry: bob's grant is due at 100, and the policy says when.
    assert_eq!(view.policy().next_expiry(50), Some(100));
    assert!(view.expired_grant_keys(99).is_empty());
    assert_eq!(view.expired_grant_keys(100), std::slice::from_ref(&bob));
    view.delete(&bob, 11);
    assert!(!view.policy().grants.exempt_subscribers.contains_key("bob"));
}
