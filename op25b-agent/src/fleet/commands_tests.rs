//! Tests of `fleet::commands`.

use super::*;

#[test]
fn list_diffs_show_added_removed_and_action_changes() {
    let mut old = FleetLists::default();
    old.exempt.insert("100.64.1.7/32".parse().unwrap());
    old.pools.push(super::super::codec::FleetPool {
        name: "east".into(),
        action: Some(op25b_common::abi::PoolAction::Monitor),
        prefixes: ["100.96.0.0/12".parse().unwrap()].into_iter().collect(),
    });
    let mut new = old.clone();
    new.exempt = ["100.64.1.8/32".parse().unwrap()].into_iter().collect();
    new.pools[0].action = Some(op25b_common::abi::PoolAction::Drop);
    let (diffs, actions) = diff_lists(&old, &new);
    assert_eq!(actions, ["pool east: monitor -> drop"]);
    assert_eq!(diffs.len(), 1);
    assert_eq!(
        (diffs[0].added.as_slice(), diffs[0].removed.as_slice()),
        (
            &["100.64.1.8/32".to_owned()][..],
            &["100.64.1.7/32".to_owned()][..]
        )
    );
}
