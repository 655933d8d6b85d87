//! Host verdict against kernel verdict on 100,000 random and mutated
//! frames (every 25th made longer than one buffer): both builds of the XDP
//! program (`Dataplane::judge` runs each frame through both) and the host
//! build of the full judgement (`judge_fully`: the reference, without the
//! pass path's shortcut the kernel takes) must never disagree. Needs root.
//! Set OP25B_SEED to replay a run.
use std::{collections::BTreeMap, net::IpAddr};

use op25b_common::{
    parse::{
        ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ETH_P_PPPOE_SESSION, ETH_P_QINQ_9100,
    },
    verdict::judge_fully,
    Reason,
};
use op25b_tests::frame::{Ext, FrameSpec, Transport};
use op25b_tests::{fixtures, load_dataplane, pools_policy};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

const FRAMES: usize = 100_000;

#[expect(
    clippy::too_many_lines,
    reason = "one generator, every knob of a frame"
)]
fn random_spec(rng: &mut StdRng) -> FrameSpec {
    use fixtures::{
        DYN4, DYN6, EXEMPT4, EXEMPT6, OUTSIDE4, OUTSIDE6, RELAY4, RELAY6, STATIC4, STATIC6,
        STRICT4, STRICT6, TRIAL4, TRIAL6,
    };
    let v6 = rng.gen_bool(0.5);
    let pick = |rng: &mut StdRng, v4: &[&str], v6s: &[&str]| -> IpAddr {
        let pool = if v6 { v6s } else { v4 };
        pool.choose(rng).unwrap().parse().unwrap()
    };
    let src = pick(
        rng,
        &[
            DYN4,
            EXEMPT4,
            STATIC4,
            "100.127.255.255",
            "100.63.255.255",
            TRIAL4,
            STRICT4,
            STRICT4,
        ],
        &[
            DYN6,
            EXEMPT6,
            STATIC6,
            "2001:db8:1fff:ffff::1",
            TRIAL6,
            STRICT6,
            STRICT6,
        ],
    );
    let dst = pick(
        rng,
        &[OUTSIDE4, RELAY4, "192.0.2.26"],
        &[OUTSIDE6, RELAY6, "2001:db8:25::26"],
    );
    let port = *[25u16, 25, 25, 587, 465, 443, 2525, 0, 65535]
        .choose(rng)
        .unwrap();
    let mut spec = FrameSpec::tcp_syn(src, dst, port);
    for _ in 0..rng.gen_range(0..=3) {
        let tpid = *[ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ_9100]
            .choose(rng)
            .unwrap();
        spec = spec.vlan(tpid, rng.gen_range(0..4096));
    }
    if rng.gen_bool(0.3) {
        spec = spec.pppoe(rng.gen());
    }
    spec = match rng.gen_range(0..10) {
        0 => spec.transport(Transport::Udp {
            src_port: rng.gen(),
            dst_port: port,
        }),
        1 => spec.transport(Transport::Other {
            protocol: rng.gen(),
            bytes: vec![0; rng.gen_range(0..24)],
        }),
        _ => spec.transport(Transport::Tcp {
            src_port: rng.gen(),
            dst_port: port,
            flags: rng.gen(),
        }),
    };
    if v6 {
        let kinds = [
            Ext::HopByHop,
            Ext::Routing,
            Ext::DestinationOptions,
            Ext::Auth,
        ];
        let chain: Vec<Ext> = (0..rng.gen_range(0..=10))
            .map(|_| {
                if rng.gen_bool(0.15) {
                    Ext::Fragment {
                        offset: if rng.gen_bool(0.5) {
                            0
                        } else {
                            rng.gen_range(1..8192)
                        },
                        more: rng.gen(),
                    }
                } else {
                    *kinds.choose(rng).unwrap()
                }
            })
            .collect();
        spec = spec.ipv6_ext(&chain);
    } else {
        if rng.gen_bool(0.2) {
            let n = rng.gen_range(0..=40);
            spec = spec.ipv4_options(&vec![1; n]);
        }
        if rng.gen_bool(0.2) {
            spec = spec.ipv4_fragment(
                if rng.gen_bool(0.5) {
                    0
                } else {
                    rng.gen_range(1..8192)
                },
                rng.gen(),
            );
        }
    }
    spec.payload(&vec![0x41; rng.gen_range(0..64)])
}

fn mutate(rng: &mut StdRng, frame: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..=3) {
        // Mostly in the headers, where decisions are made.
        let limit = frame.len().min(120);
        let at = rng.gen_range(0..limit);
        frame[at] = if rng.gen_bool(0.5) {
            rng.gen()
        } else {
            frame[at] ^ (1 << rng.gen_range(0..8))
        };
    }
    if rng.gen_bool(0.3) {
        let len = rng.gen_range(14..=frame.len());
        frame.truncate(len);
    }
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(14..=160);
    let mut frame: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    let ethertype = *[
        ETH_P_IPV4,
        ETH_P_IPV6,
        ETH_P_8021Q,
        ETH_P_PPPOE_SESSION,
        0x0806,
    ]
    .choose(rng)
    .unwrap();
    frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
    if ethertype == ETH_P_IPV4 && len > 14 {
        frame[14] = 0x40 | (frame[14] & 0x0f);
    } else if ethertype == ETH_P_IPV6 && len > 14 {
        frame[14] = 0x60 | (frame[14] & 0x0f);
    }
    frame
}

#[test]
fn kernel_and_host_agree_on_100k_frames() {
    let seed: u64 = std::env::var("OP25B_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("OP25B_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let policy = pools_policy();
    let rules = policy.runtime_config().unwrap();
    let dp = load_dataplane(&policy);
    let table: Vec<Vec<u8>> = fixtures::standard().into_iter().map(|f| f.frame).collect();

    let mut by_reason: BTreeMap<Reason, usize> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for i in 0..FRAMES {
        let frame = match i % 3 {
            0 => {
                let mut f = table.choose(&mut rng).unwrap().clone();
                mutate(&mut rng, &mut f);
                f
            }
            1 => {
                let mut f = random_spec(&mut rng).build();
                if rng.gen_bool(0.3) {
                    mutate(&mut rng, &mut f);
                }
                f
            }
            _ => random_bytes(&mut rng),
        };
        let mut frame = frame;
        if i % 25 == 0 {
            // Longer than the first buffer: a multi-buffer frame for the
            // frags-aware program (multi_buffer.rs puts headers there too).
            let extra = rng.gen_range(3600..6000);
            frame.extend((0..extra).map(|_| rng.gen::<u8>()));
        }
        let kernel = dp.judge(&frame).unwrap();
        let (host, _, _) = judge_fully(frame.as_slice(), &rules, &policy);
        *by_reason.entry(kernel.reason).or_default() += 1;
        if kernel.reason != host.reason || kernel.outcome.action() != Some(host.action) {
            disagreements.push(format!(
                "frame {i}: kernel {:?} host {:?}: {frame:02x?}",
                kernel.reason, host.reason
            ));
        }
    }
    eprintln!("verdicts by reason: {by_reason:?}");
    assert!(
        disagreements.is_empty(),
        "{} disagreements (seed {seed}):\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(10)].join("\n")
    );
    for reason in Reason::ALL {
        assert!(
            by_reason.get(&reason).copied().unwrap_or(0) >= 20,
            "the generator rarely reaches {reason:?}: {by_reason:?}"
        );
    }
}
