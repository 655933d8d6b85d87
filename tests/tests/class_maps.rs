//! The source-class maps in the kernel hold what the lists say, through
//! any sequence of reloads: the IPv4 DIR-24-8 table (first level and
//! blocks), the IPv6 class trie, the list record and the run-time slots.
//! Needs root.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use op25b_agent::{
    dataplane::{class_writer::pinned_list_counts, runtime_config::read_pinned, Dataplane, Maps},
    policy::{prefix::Prefix, Policy, Pool},
};
use op25b_common::{
    abi::{PoolAction, RUNTIME_CONFIG_PIN},
    decide, IpAddrBytes, PolicyLookup,
};
use op25b_tests::{frame::FrameSpec, pools_policy, require_root, unique_suffix};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// 100.64.0.0/20: sixteen /24s, so random prefixes nest and split /24s.
const REGION_V4: u32 = 0x6440_0000;

fn random_v4(rng: &mut StdRng) -> Prefix {
    let len = rng.gen_range(12..=32u8);
    let addr = REGION_V4 | (rng.gen::<u32>() & 0x0fff);
    let mask = u32::MAX << (32 - u32::from(len));
    Prefix::new(IpAddr::V4(Ipv4Addr::from(addr & mask)), len).unwrap()
}

/// Inside 2001:db8::/112, lengths /100../128 (nesting is likely).
fn random_v6(rng: &mut StdRng) -> Prefix {
    let len = rng.gen_range(100..=128u8);
    let addr = (0x2001_0db8_u128 << 96) | u128::from(rng.gen::<u16>() & 0x0fff);
    let mask = u128::MAX << (128 - u32::from(len));
    Prefix::new(IpAddr::V6(Ipv6Addr::from(addr & mask)), len).unwrap()
}

fn random_policy(rng: &mut StdRng) -> Policy {
    let mut policy = Policy::default();
    for (name, action) in [
        ("trial", PoolAction::Monitor),
        ("strict", PoolAction::Reject),
        ("more", PoolAction::Drop),
    ] {
        policy.pools.push(Pool {
            name: name.into(),
            action,
        });
    }
    for _ in 0..rng.gen_range(0..30) {
        let prefix = if rng.gen_bool(0.5) {
            random_v4(rng)
        } else {
            random_v6(rng)
        };
        policy.dynamic.insert(prefix);
        let pool = rng.gen_range(0..4);
        if pool != 0 {
            policy.pool_of.insert(prefix, pool);
        }
    }
    for _ in 0..rng.gen_range(0..30) {
        policy.exempt.insert(if rng.gen_bool(0.5) {
            random_v4(rng)
        } else {
            random_v6(rng)
        });
    }
    policy.event_interval_ns = rng.gen_range(1..10) * 1_000_000_000;
    policy
}

/// `policy` with prefixes added to or taken from one list, or pools moved.
fn edit_one_list(rng: &mut StdRng, mut policy: Policy) -> Policy {
    let which = rng.gen_range(0..3);
    for _ in 0..rng.gen_range(1..6) {
        let prefix = if rng.gen_bool(0.5) {
            random_v4(rng)
        } else {
            random_v6(rng)
        };
        let list = match which {
            0 => &mut policy.dynamic,
            1 => &mut policy.exempt,
            _ => {
                if policy.dynamic.contains_exactly(&prefix) {
                    policy.pool_of.insert(prefix, rng.gen_range(1..4));
                }
                continue;
            }
        };
        if list.contains_exactly(&prefix) {
            list.v4.remove(&prefix);
            list.v6.remove(&prefix);
            policy.pool_of.remove(&prefix);
        } else {
            list.insert(prefix);
        }
    }
    policy
}

fn syn_to_port_25(src: IpAddr) -> Vec<u8> {
    let dst: IpAddr = if src.is_ipv4() {
        "198.51.100.25".parse().unwrap()
    } else {
        "2001:db8:5100::25".parse().unwrap()
    };
    FrameSpec::tcp_syn(src, dst, 25).build()
}

#[test]
fn random_policies_reload_into_the_kernel_as_the_lists_say() {
    require_root();
    let seed = std::env::var("OP25B_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("OP25B_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dp = Dataplane::load(&Maps::Private, 0).unwrap();
    let mut policy = Policy::default();
    for round in 0..18 {
        // A new policy, or the last one with one list edited (a copy keeps
        // the other lists' generations: the class writer skips them).
        policy = match round % 3 {
            0 => random_policy(&mut rng),
            _ => edit_one_list(&mut rng, policy),
        };
        dp.apply(&policy).unwrap();
        // Every IPv4 address of the region and a /24 either side.
        for addr in (REGION_V4 - 256)..(REGION_V4 + 0x1000 + 256) {
            let addr = Ipv4Addr::from(addr);
            assert_eq!(
                dp.kernel_class_v4(addr).unwrap(),
                policy.source_class(&IpAddrBytes::V4(addr.octets())),
                "round {round}: {addr}"
            );
        }
        // Verdicts, judged by the program itself, on a sample of both families.
        let rules = policy.runtime_config().unwrap();
        for _ in 0..300 {
            let src = if rng.gen_bool(0.5) {
                IpAddr::V4(Ipv4Addr::from(REGION_V4 | (rng.gen::<u32>() & 0x0fff)))
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8_u128 << 96) | u128::from(rng.gen::<u16>() & 0x0fff),
                ))
            };
            let frame = syn_to_port_25(src);
            let want = decide(frame.as_slice(), &rules, &policy);
            assert_eq!(
                dp.judge(&frame).unwrap().reason,
                want.reason,
                "round {round}: {src}"
            );
        }
        // The lists read back as they were given.
        let read = dp.read_policy().unwrap();
        assert_eq!(read.dynamic, policy.dynamic, "round {round}");
        assert_eq!(read.exempt, policy.exempt, "round {round}");
        assert_eq!(read.pool_of, policy.pool_of, "round {round}");
        assert_eq!(read.event_interval_ns, policy.event_interval_ns);
        assert_eq!(read.pool_actions(), policy.pool_actions());
    }
}

#[test]
fn retired_blocks_stay_until_their_grace_is_over() {
    require_root();
    let mut dp = Dataplane::load(&Maps::Private, 0).unwrap();
    let split: Policy = Policy {
        dynamic: ["100.64.0.0/16".parse().unwrap()].into_iter().collect(),
        exempt: ["100.64.1.7/32".parse().unwrap()].into_iter().collect(),
        ..Policy::default()
    };
    dp.apply(&split).unwrap();
    assert_eq!(dp.kernel_class_v4_blocks().unwrap(), 1);
    let whole = Policy {
        exempt: op25b_agent::policy::prefix::PrefixSet::default(),
        ..split.clone()
    };
    dp.apply(&whole).unwrap();
    // Retired but kept (untouched: only a packet that read the old pointer
    // reads it); the /24's byte gives the new class.
    assert_eq!(dp.kernel_class_v4_blocks().unwrap(), 1);
    let host = Ipv4Addr::new(100, 64, 1, 7);
    assert_eq!(
        dp.kernel_class_v4(host).unwrap(),
        whole.source_class(&IpAddrBytes::V4(host.octets()))
    );
    std::thread::sleep(op25b_agent::dataplane::class_writer::ORPHAN_GRACE * 2);
    dp.apply(&whole).unwrap();
    assert_eq!(dp.kernel_class_v4_blocks().unwrap(), 0);
    // And it comes back when the /24 splits again.
    dp.apply(&split).unwrap();
    assert_eq!(dp.kernel_class_v4_blocks().unwrap(), 1);
    assert!(dp.kernel_class_v4(host).unwrap().is_exempt());
}

/// A bpffs directory removed on drop (also when the test panics).
struct PinDir(std::path::PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pinned_lists_and_runtime_slots_read_back_and_adopt_without_changes() {
    require_root();
    let dir = PinDir(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/op25b-classes-{}-{}",
        std::process::id(),
        unique_suffix()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut policy = pools_policy();
    policy.blocked_ports = vec![587, 25];
    policy.event_interval_ns = 7_000_000_000;
    let mut first = Dataplane::load(&Maps::Pinned(dir.0.clone()), 0).unwrap();
    first.apply(&policy).unwrap();

    let counts = pinned_list_counts(&dir.0).unwrap();
    assert_eq!(
        counts[0],
        (policy.dynamic.v4.len(), policy.dynamic.v6.len())
    );
    assert_eq!(counts[1], (policy.exempt.v4.len(), policy.exempt.v6.len()));
    let runtime = read_pinned(&dir.0.join(RUNTIME_CONFIG_PIN)).unwrap();
    assert_eq!(runtime.blocked_ports.iter().collect::<Vec<_>>(), [25, 587]);
    assert_eq!(runtime.event_interval_ns, 7_000_000_000);
    assert_eq!(runtime.pool_actions, policy.pool_actions());

    // A second instance (a restarted agent) adopts the maps: nothing to add
    // or remove, and the program it loads keeps the live ports.
    let mut second = Dataplane::load(&Maps::Pinned(dir.0.clone()), 1).unwrap();
    let read = second.read_policy().unwrap();
    assert_eq!(
        (&read.dynamic, &read.exempt, &read.pool_of),
        (&policy.dynamic, &policy.exempt, &policy.pool_of)
    );
    let stats = second.apply(&policy).unwrap();
    assert_eq!((stats.added, stats.removed), (0, 0));
    let frame = FrameSpec::tcp_syn(
        "100.64.1.2".parse().unwrap(),
        "198.51.100.25".parse().unwrap(),
        587,
    )
    .build();
    assert_eq!(
        second.judge(&frame).unwrap().reason,
        op25b_common::Reason::Blocked
    );
}
