//! `top --fleet`: every registered agent's `/api/v1/top`, merged. The
//! one HTTP client (`crate::api::client`) asks each box.

use std::{
    collections::BTreeMap,
    io::{self, Write as _},
    path::Path,
    process::ExitCode,
};

use serde::Serialize;

use super::{
    client,
    commands::{fleet_of, read_agents, runtime, AgentState, FleetCommandError},
    layout::Layout,
};
use crate::{
    api::{
        bearer::BearerToken,
        client::{self as api_client, Endpoint},
        types::{TopAnswer, TopQuery},
    },
    config::Config,
};

/// Boxes asked at the same time by `top --fleet`.
const BOXES_AT_ONCE: usize = 32;

/// `top --fleet`: asks every registered agent's `/api/v1/top` and merges
/// the answers. Space-Saving sketches merge by adding counts; a source
/// missing from a box's (truncated) answer may still have up to that box's
/// smallest listed count there, which is added to its error.
pub fn top(
    path: &Path,
    window_seconds: u64,
    limit: usize,
    json: bool,
) -> Result<ExitCode, FleetCommandError> {
    let config = Config::load(path)?;
    let fleet = fleet_of(&config)?;
    // Every box of a fleet is expected to share the read token.
    let read_token = config.metrics.read_token()?;
    let layout = Layout::new(&fleet.prefix).with_limits(config.prefix_limits);
    let (_, agents) = runtime().block_on(async {
        let etcd = client::connect(&fleet).await?;
        read_agents(&etcd, &layout).await
    })?;
    // Ask each box for more than `limit`, so the merged top is not cut short.
    let per_box = (limit * 4).clamp(100, TopQuery::MAX_LIMIT);
    let query = TopQuery {
        window_seconds,
        limit: per_box,
    };
    let path = format!("/api/v1/top?{}", query.to_query());
    let token = read_token.as_ref().map(BearerToken::secret);
    let ask = |agent: &AgentState| -> Result<(String, TopAnswer), String> {
        let address = agent
            .registration
            .as_ref()
            .and_then(|r| r.top_address.clone())
            .ok_or_else(|| format!("{}: no top address registered", agent.node))?;
        api_client::get_json::<TopAnswer>(&Endpoint::Tcp(address), &path, token)
            .map(|answer| (agent.node.clone(), answer))
            .map_err(|e| format!("{}: {e}", agent.node))
    };
    let live: Vec<&AgentState> = agents.iter().filter(|a| a.state != "gone").collect();
    let (answers, unreachable) = ask_each(&live, BOXES_AT_ONCE, |a| ask(a));
    let merged = merge_top(&answers, per_box, limit);
    let mut out = io::stdout().lock();
    if json {
        let body = serde_json::json!({ "boxes": answers.len(), "unreachable": unreachable, "sources": merged });
        writeln!(out, "{body}")?;
    } else {
        writeln!(
            out,
            "{:<40} {:>10} {:>8} {:<20} {:<20} boxes",
            "source", "attempts", "±error", "first seen", "last seen"
        )?;
        for s in &merged {
            writeln!(
                out,
                "{:<40} {:>10} {:>8} {:<20} {:<20} {}",
                s.source,
                s.attempts,
                s.error,
                s.first_seen,
                s.last_seen,
                s.boxes.join(",")
            )?;
        }
        for u in &unreachable {
            writeln!(out, "(not included: {u})")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One merged top line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FleetTopSource {
    pub source: String,
    /// A subscriber row (RADIUS): merged across boxes by subscriber, not address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    pub attempts: u64,
    pub error: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub boxes: Vec<String>,
}

/// Asks `ask` of every item, `at_once` at a time (one box that does not
/// answer costs its timeout once, not once per box behind it); the answers
/// and the failures, each in the items' order.
fn ask_each<I: Sync, T: Send>(
    items: &[I],
    at_once: usize,
    ask: impl Fn(&I) -> Result<T, String> + Sync,
) -> (Vec<T>, Vec<String>) {
    let (mut answers, mut failures) = (Vec::new(), Vec::new());
    for batch in items.chunks(at_once.max(1)) {
        let results: Vec<_> = std::thread::scope(|scope| {
            let asking: Vec<_> = batch.iter().map(|i| scope.spawn(|| ask(i))).collect();
            asking
                .into_iter()
                .map(std::thread::ScopedJoinHandle::join)
                .collect()
        });
        for result in results {
            match result {
                Ok(Ok(answer)) => answers.push(answer),
                Ok(Err(why)) => failures.push(why),
                Err(_) => failures.push("an answer could not be read".into()),
            }
        }
    }
    (answers, failures)
}

/// Merges per-box top answers (each asked for `asked` lines).
pub fn merge_top(
    answers: &[(String, TopAnswer)],
    asked: usize,
    limit: usize,
) -> Vec<FleetTopSource> {
    let mut merged: BTreeMap<String, FleetTopSource> = BTreeMap::new();
    for (node, answer) in answers {
        for s in &answer.sources {
            // A subscriber roams between boxes and addresses: one row for it.
            let key = s
                .subscriber
                .as_ref()
                .map_or_else(|| s.source.clone(), |name| format!("subscriber {name}"));
            let entry = merged.entry(key).or_insert_with(|| FleetTopSource {
                source: s.source.clone(),
                subscriber: s.subscriber.clone(),
                attempts: 0,
                error: 0,
                first_seen: s.first_seen.clone(),
                last_seen: s.last_seen.clone(),
                boxes: Vec::new(),
            });
            entry.attempts += s.attempts;
            entry.error += s.error;
            entry.first_seen = entry.first_seen.clone().min(s.first_seen.clone());
            entry.last_seen = entry.last_seen.clone().max(s.last_seen.clone());
            entry.boxes.push(node.clone());
        }
    }
    // A box whose answer was cut at `asked` lines may hold an unlisted source
    // with up to its smallest listed count.
    for (node, answer) in answers {
        if answer.sources.len() < asked {
            continue;
        }
        let floor = answer.sources.iter().map(|s| s.attempts).min().unwrap_or(0);
        for entry in merged.values_mut().filter(|e| !e.boxes.contains(node)) {
            entry.attempts += floor;
            entry.error += floor;
        }
    }
    let mut list: Vec<FleetTopSource> = merged.into_values().collect();
    list.sort_by(|a, b| {
        b.attempts
            .cmp(&a.attempts)
            .then_with(|| a.source.cmp(&b.source))
    });
    list.truncate(limit);
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::TopSourceJson;

    fn answer(lines: &[(&str, u64)]) -> TopAnswer {
        TopAnswer {
            window_seconds: 3600,
            generated_at: 0,
            sources: lines
                .iter()
                .map(|(s, n)| TopSourceJson {
                    source: (*s).into(),
                    subscriber: None,
                    addresses: Vec::new(),
                    attempts: *n,
                    error: 0,
                    first_seen: "2026-01-01T00:00:00Z".into(),
                    last_seen: "2026-01-01T00:00:00Z".into(),
                    distinct_destinations: 1,
                })
                .collect(),
        }
    }

    /// All of a batch are asked at once: each waits until the whole batch
    /// has arrived, which asking one after another would never see.
    #[test]
    fn a_batch_is_asked_at_once_and_answers_keep_their_order() {
        use std::sync::{Condvar, Mutex};
        let arrived = (Mutex::new(0usize), Condvar::new());
        let items: Vec<u32> = (0..6).collect();
        let (answers, failures) = ask_each(&items, 3, |&i| {
            let (count, all_here) = &arrived;
            let mut n = count.lock().unwrap();
            *n += 1;
            all_here.notify_all();
            let batch_end = if i < 3 { 3 } else { 6 };
            let (n, waited) = all_here
                .wait_timeout_while(n, std::time::Duration::from_secs(10), |n| *n < batch_end)
                .unwrap();
            drop(n);
            if i == 4 {
                return Err(format!("box {i} is silent"));
            }
            if waited.timed_out() {
                Err(format!("box {i} was asked alone"))
            } else {
                Ok(i)
            }
        });
        assert_eq!(answers, [0, 1, 2, 3, 5]);
        assert_eq!(failures, ["box 4 is silent"]);
    }

    #[test]
    fn top_answers_merge_by_adding_counts_and_bounding_the_error() {
        let answers = vec![
            (
                "a".to_owned(),
                answer(&[("100.64.1.2", 50), ("100.64.1.3", 10)]),
            ),
            (
                "b".to_owned(),
                answer(&[("100.64.1.2", 5), ("100.64.9.9", 30)]),
            ),
        ];
        let merged = merge_top(&answers, 100, 10);
        assert_eq!(merged[0].source, "100.64.1.2");
        assert_eq!((merged[0].attempts, merged[0].error), (55, 0));
        assert_eq!(merged[0].boxes, ["a", "b"]);
        assert_eq!(merged[1].source, "100.64.9.9");
        // Truncated answers (asked for 2): an unlisted source may hide below the box's floor.
        let merged = merge_top(&answers, 2, 10);
        let nine = merged.iter().find(|s| s.source == "100.64.9.9").unwrap();
        assert_eq!((nine.attempts, nine.error), (40, 10));
    }

    #[test]
    fn a_subscriber_seen_on_two_boxes_at_two_addresses_is_one_row() {
        let mut a = answer(&[("100.64.1.2", 50)]);
        a.sources[0].subscriber = Some("alice@example.jp".into());
        let mut b = answer(&[("100.64.7.7", 5), ("100.64.1.2", 3)]);
        b.sources[0].subscriber = Some("alice@example.jp".into());
        let merged = merge_top(&[("a".to_owned(), a), ("b".to_owned(), b)], 100, 10);
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0].subscriber.as_deref(), Some("alice@example.jp"));
        assert_eq!(merged[0].attempts, 55);
        assert_eq!(merged[0].boxes, ["a", "b"]);
        assert_eq!(
            (merged[1].source.as_str(), merged[1].attempts),
            ("100.64.1.2", 3)
        );
    }
}
