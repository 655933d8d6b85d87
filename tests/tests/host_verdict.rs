//! The fixture table through the host build of the verdict (no root needed).
use op25b_common::decide;
use op25b_tests::{fixtures, multi_port_policy, pools_policy, standard_policy};

fn check(table: Vec<fixtures::Fixture>, policy: &op25b_agent::policy::Policy) {
    let rules = policy.runtime_config().unwrap();
    let mut wrong = Vec::new();
    for f in table {
        let got = decide(f.frame.as_slice(), &rules, policy);
        if got.reason != f.expect || got.action != f.expect.action() {
            wrong.push(format!(
                "{}: expected {:?}, got {:?}",
                f.name, f.expect, got
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "host verdict disagrees with the table:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn standard_fixtures() {
    check(fixtures::standard(), &standard_policy());
}

#[test]
fn multi_port_fixtures() {
    check(fixtures::multi_port(), &multi_port_policy());
}

#[test]
fn pool_fixtures() {
    check(fixtures::pools(), &pools_policy());
}
