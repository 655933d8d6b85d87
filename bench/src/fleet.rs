//! Fleet sync at scale (`op25b-bench --fleet`): real agents, each in its own
//! network namespace with its own pinned maps, following one real etcd in
//! a namespace of its own over veth pairs.
//!
//! Measured: time from a grant's commit in etcd (the transaction the API
//! and `fleet exempt add` use) to the address being exempt in each agent's
//! pinned class table, p50/p99 over every (grant, agent) pair; and the roll-out of
//! a pool list of N prefixes (1,000,000 by default) from the start of the
//! publish to the last agent's class table giving it the fleet pool.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use op25b_agent::{
    config::fleet::{FleetConfig, RawFleet},
    fleet::{
        client,
        codec::{FleetLists, FleetPool},
        layout::Layout,
    },
    policy::{grants::Grant, prefix::Prefix, ListKind},
};
use serde::Serialize;

use crate::fleet_lab::{in_ns, set_up, wait, ClassView};
use op25b_common::SourceClass;

#[derive(Debug, Serialize)]
pub struct FleetReport {
    pub agents: usize,
    pub grants: usize,
    pub grant_p50_ms: f64,
    pub grant_p99_ms: f64,
    pub grant_max_ms: f64,
    pub pool_prefixes: usize,
    /// Writing the chunks and committing the manifest.
    pub pool_publish_s: f64,
    /// From the start of the publish until every agent's trie holds the list.
    pub pool_rollout_s: f64,
    /// Same, until the first agent holds it.
    pub pool_first_agent_s: f64,
    /// Grants measured again with the pool list in place (each change
    /// re-merges the whole policy).
    pub grant_with_pool_p50_ms: f64,
    pub grant_with_pool_p99_ms: f64,
}

type EtcdJob = Box<dyn FnOnce(&tokio::runtime::Runtime, &etcd_client::Client) + Send>;

/// Grants `count` prefixes one by one (numbered from `first`); returns the
/// commit-to-trie latency of every (grant, agent) pair but the warm-up's
/// (grant 0), sorted, in ms.
fn measure_grants(
    etcd: &dyn Fn(EtcdJob),
    layout: &Layout,
    classes: &[ClassView],
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for g in first..first + count {
        let addr = [
            100,
            64,
            200 + u8::try_from(g / 256).unwrap_or(0),
            u8::try_from(g % 256).unwrap_or(0),
        ];
        let prefix = Prefix::new(std::net::Ipv4Addr::from(addr).into(), 32)?;
        let grant = Grant {
            prefix: prefix.to_string(),
            expires_at: None,
            reason: "bench".into(),
            actor: "bench".into(),
            created_at: op25b_agent::clock::now_unix(),
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let l = layout.clone();
        etcd(Box::new(move |rt, c| {
            let audit = client::audit(
                "bench",
                "bench",
                "add",
                "exempt",
                &grant.prefix,
                None,
                "bench",
            );
            let result = rt.block_on(client::put_grant(c, &l, ListKind::Exempt, &grant, &audit));
            done_tx
                .send((
                    result.map(|_| ()).map_err(|e| e.to_string()),
                    Instant::now(),
                ))
                .expect("bench");
        }));
        let (result, committed) = done_rx.recv()?;
        result.map_err(anyhow::Error::msg)?;
        let mut pending: Vec<usize> = (0..classes.len()).collect();
        let limit = Duration::from_secs(if g == 0 { 60 } else { 300 });
        while !pending.is_empty() {
            anyhow::ensure!(
                committed.elapsed() < limit,
                "grant {g} did not reach {} agents",
                pending.len()
            );
            pending.retain(|&i| {
                let there = classes[i].class(addr).is_some_and(SourceClass::is_exempt);
                if there && g > 0 {
                    let ms = committed.elapsed().as_secs_f64() * 1000.0;
                    if ms > 500.0 {
                        eprintln!("grant {g}: agent {i} after {ms:.0} ms");
                    }
                    latencies.push(ms);
                }
                !there
            });
            std::thread::sleep(Duration::from_micros(500));
        }
        // De-phase from the agents' 250 ms loop.
        std::thread::sleep(Duration::from_millis(37 + (g as u64 * 53) % 211));
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// Runs the fleet section with `agents` agents, `grants` grants and a pool
/// of `pool_prefixes`.
#[expect(clippy::too_many_lines, reason = "the section, step by step")]
pub fn run(agents: usize, grants: usize, pool_prefixes: usize) -> anyhow::Result<FleetReport> {
    let lab = set_up(agents)?;
    let classes: Vec<ClassView> = {
        let mut views = Vec::new();
        for pin in &lab.pins {
            let mut view = None;
            wait(Duration::from_secs(120), "every agent to load", || {
                view = ClassView::open(pin);
                view.is_some()
            })?;
            views.push(view.expect("opened"));
        }
        views
    };
    // Measured from steady state: an agent still attaching its interface
    // and loading its spare programs applies a change only once its loop
    // runs (start-up, not sync; seen as a ~2 s tail on the first grant).
    let logs: Vec<PathBuf> = (0..agents)
        .map(|i| lab.dir.join(format!("agent{i}.log")))
        .collect();
    wait(
        Duration::from_secs(120),
        "every agent's loop to run",
        || {
            logs.iter().all(|log| {
                std::fs::read_to_string(log).is_ok_and(|text| text.contains("running; SIGHUP"))
            })
        },
    )?;
    let etcd_ns = lab.etcd_ns.clone();
    let (tx, rx) = std::sync::mpsc::channel::<EtcdJob>();
    let etcd_thread = std::thread::spawn(move || {
        in_ns(&etcd_ns, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let raw = RawFleet {
                etcd_endpoints: vec!["http://[::1]:2379".into()],
                prefix: Some("/bench".into()),
                node_name: Some("bench".into()),
                ..RawFleet::default()
            };
            let config = FleetConfig::from_raw(&raw, std::path::Path::new("/")).expect("valid");
            let etcd = runtime.block_on(client::connect(&config)).expect("etcd");
            while let Ok(job) = rx.recv() {
                job(&runtime, &etcd);
            }
        });
    });
    let etcd = |job: EtcdJob| tx.send(job).expect("etcd thread");
    let layout = Layout::new("/bench");

    // Grants: commit -> in every agent's trie (the first one warms up).
    let latencies = measure_grants(&etcd, &layout, &classes, 0, grants + 1)?;

    // Pool roll-out.
    let mut pool = FleetPool {
        name: "bench".into(),
        action: Some(op25b_common::abi::PoolAction::Drop),
        ..FleetPool::default()
    };
    let count = u32::try_from(pool_prefixes)
        .unwrap_or(u32::MAX)
        .min(1 << 20);
    for i in 0..count {
        // /30s tiling 100.64.0.0/10 (1,048,576 of them at most); not the config's own /10.
        pool.prefixes.insert(Prefix::new(
            std::net::Ipv4Addr::from(0x6440_0000 + (i << 2)).into(),
            30,
        )?);
    }
    let last = (0x6440_0000u32 + ((count - 1) << 2)).to_be_bytes();
    let lists = FleetLists {
        pools: vec![pool],
        ..FleetLists::default()
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let l = layout.clone();
    let started = Instant::now();
    etcd(Box::new(move |rt, c| {
        let audit = client::audit("bench", "bench", "publish", "lists", "", None, "bench");
        let result = rt.block_on(async {
            let (_, _, revision) = client::read_lists(c, &l).await?;
            client::publish_lists(c, &l, &lists, revision, &audit).await
        });
        done_tx
            .send(result.map(|_| ()).map_err(|e| e.to_string()))
            .expect("bench");
    }));
    done_rx.recv()?.map_err(anyhow::Error::msg)?;
    let publish = started.elapsed();
    let mut pending: Vec<usize> = (0..classes.len()).collect();
    let mut first = None;
    while !pending.is_empty() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the pool did not reach {} agents",
            pending.len()
        );
        // The config's own 100.64.0.0/10 (pool 0) covers every /30 of the
        // pool: only the fleet pool's id (1) says the /30 itself is there.
        pending.retain(|&i| {
            classes[i]
                .class(last)
                .is_none_or(|c| !(c.is_dynamic() && c.pool() == 1))
        });
        if first.is_none() && pending.len() < classes.len() {
            first = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rollout = started.elapsed();
    // Grants again, with the big list in every agent's policy.
    let with_pool = measure_grants(&etcd, &layout, &classes, grants + 1, grants.min(4) + 1)?;
    drop(tx);
    let _ = etcd_thread.join();
    drop(lab);
    Ok(FleetReport {
        agents,
        grant_with_pool_p50_ms: percentile(&with_pool, 0.5),
        grant_with_pool_p99_ms: percentile(&with_pool, 0.99),
        grants: latencies.len() / agents.max(1),
        grant_p50_ms: percentile(&latencies, 0.5),
        grant_p99_ms: percentile(&latencies, 0.99),
        grant_max_ms: latencies.last().copied().unwrap_or(0.0),
        pool_prefixes: count as usize,
        pool_publish_s: publish.as_secs_f64(),
        pool_rollout_s: rollout.as_secs_f64(),
        pool_first_agent_s: first.unwrap_or(rollout).as_secs_f64(),
    })
}

/// The section as markdown.
pub fn markdown(r: &FleetReport) -> String {
    format!(
        "### Fleet sync ({} agents, each in its own namespace, one etcd)\n\n\
         | measurement | value | target |\n|---|---|---|\n\
         | grant commit -> in every agent's maps, p50 ({} grants x {} agents) | {:.0} ms | |\n\
         | grant commit -> in every agent's maps, p99 | {:.0} ms | < 1000 ms |\n\
         | grant commit -> in every agent's maps, max | {:.0} ms | |\n\
         | publish a {}-prefix pool list (chunks + manifest) | {:.1} s | |\n\
         | ... until the first agent enforces it | {:.1} s | |\n\
         | ... until every agent enforces it | {:.1} s | |\n\
         | grant commit -> every agent, with that pool in place, p50 | {:.0} ms | |\n\
         | grant commit -> every agent, with that pool in place, p99 | {:.0} ms | |\n",
        r.agents,
        r.grants,
        r.agents,
        r.grant_p50_ms,
        r.grant_p99_ms,
        r.grant_max_ms,
        r.pool_prefixes,
        r.pool_publish_s,
        r.pool_first_agent_s,
        r.pool_rollout_s,
        r.grant_with_pool_p50_ms,
        r.grant_with_pool_p99_ms
    )
}
