//! The fixture table through the real XDP program with BPF_PROG_TEST_RUN:
//! action, exact counter delta, unchanged frame; then every truncation of
//! every fixture. Needs root.
use op25b_agent::{dataplane::Dataplane, policy::Policy};
use op25b_common::{decide, BlockedPorts, Reason};
use op25b_tests::{fixtures, load_dataplane, multi_port_policy, standard_policy};

fn counters(dp: &Dataplane) -> Vec<(Reason, u64, u64)> {
    dp.counters(0)
        .unwrap()
        .into_iter()
        .map(|(r, c)| (r, c.packets, c.bytes))
        .collect()
}

fn run_table(table: &[fixtures::Fixture], policy: &Policy) {
    let dp = load_dataplane(policy);
    for f in table {
        let before = counters(&dp);
        let out = dp.test_run(&f.frame).unwrap();
        let after = counters(&dp);
        assert_eq!(out.action(), Some(f.expect.action()), "{}: action", f.name);
        assert_eq!(
            out.frame_out, f.frame,
            "{}: the program changed the frame",
            f.name
        );
        for ((reason, p0, b0), (_, p1, b1)) in before.iter().zip(&after) {
            let (dp_, db) = if *reason == f.expect {
                (1, f.frame.len() as u64)
            } else {
                (0, 0)
            };
            assert_eq!(
                (p1 - p0, b1 - b0),
                (dp_, db),
                "{}: counter delta of {reason:?}",
                f.name
            );
        }
    }
}

#[test]
fn standard_fixtures_in_the_kernel() {
    run_table(&fixtures::standard(), &standard_policy());
}

#[test]
fn multi_port_fixtures_in_the_kernel() {
    run_table(&fixtures::multi_port(), &multi_port_policy());
}

/// Cutting a frame short can only make it `malformed` (or, for a first
/// fragment, `undecidable`) below some length and leave its verdict intact
/// above it; and the kernel must agree with the host at every length.
#[test]
fn every_truncation_of_every_fixture() {
    let policy = standard_policy();
    let ports = BlockedPorts::new(&policy.blocked_ports).unwrap();
    let dp = load_dataplane(&policy);
    let mut runs = 0;
    for f in fixtures::standard() {
        let mut seen = Vec::new();
        // The kernel refuses test runs shorter than an Ethernet header.
        for len in 14..=f.frame.len() {
            let cut = &f.frame[..len];
            let kernel = dp.judge(cut).unwrap();
            let host = decide(cut, &ports, &policy);
            assert_eq!(
                kernel.reason, host.reason,
                "{} cut to {len}: kernel vs host",
                f.name
            );
            assert_eq!(
                kernel.outcome.action(),
                Some(host.action),
                "{} cut to {len}",
                f.name
            );
            if seen.last() != Some(&kernel.reason) {
                seen.push(kernel.reason);
            }
            runs += 1;
        }
        assert_eq!(seen.last(), Some(&f.expect), "{}: whole frame", f.name);
        // Before the whole verdict: malformed, then (first fragments) undecidable.
        let before = &seen[..seen.len() - 1];
        let allowed: &[&[Reason]] = &[
            &[],
            &[Reason::Malformed],
            &[Reason::Undecidable],
            &[Reason::Malformed, Reason::Undecidable],
        ];
        assert!(
            allowed.contains(&before),
            "{}: truncations went through {seen:?}",
            f.name
        );
    }
    assert!(runs > 3000, "only {runs} truncations ran");
}

#[test]
fn verifier_budget_has_room() {
    let dp = load_dataplane(&standard_policy());
    let insns = dp
        .verified_instructions()
        .expect("kernel reports verified_insns");
    eprintln!("verifier processed {insns} instructions");
    assert!(
        insns < 200_000,
        "{insns} verified instructions is over 20% of the 1M budget"
    );
}
