//! `top [--window 1h]`: asks the running agent.

use std::process::ExitCode;

use super::{CommandError, ConfigOption, JsonOption};
use crate::api::types::{TopAnswer, TopQuery};

/// Suspected infected subscribers: the sources with the most blocked
/// connection attempts in a window, asked of the running agent. When a
/// RADIUS session names the subscriber, its attempts are one row (named
/// by the subscriber, its addresses listed) however often it reconnects.
///
/// Counts come from the kernel's block events (each carries the
/// attempts the per-source rate limit folded into it); memory is
/// bounded by a Space-Saving sketch per 5-minute bucket, kept 24 h.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// How far back: 1h, 30m, 24h (5-minute resolution).
    #[arg(long, default_value = "1h", value_parser = TopQuery::parse_window)]
    window: u64,
    /// How many sources (1..=10000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    limit: u16,
    /// The agent's configuration (for its metrics.listen_address).
    #[command(flatten)]
    config: ConfigOption,
    /// The agent's HTTP address, overriding the config.
    #[arg(long)]
    address: Option<String>,
    /// Ask every agent registered in the fleet (--config names [fleet])
    /// and merge their answers.
    #[arg(long)]
    fleet: bool,
    #[command(flatten)]
    output: JsonOption,
}

pub fn execute(args: &TopArgs) -> Result<ExitCode, CommandError> {
    if args.fleet {
        let path = args.config.config.as_deref().ok_or_else(|| {
            CommandError::Usage("top --fleet: give --config FILE with a [fleet] section".into())
        })?;
        return Ok(crate::fleet::top::top(
            path,
            args.window,
            usize::from(args.limit),
            args.output.json,
        )?);
    }
    let config = args.config.load()?;
    let admin = super::sessions::admin_endpoint(config.as_ref(), args.address.as_deref())?;
    let query = TopQuery {
        window_seconds: args.window,
        limit: usize::from(args.limit),
    };
    let path = format!("/api/v1/top?{}", query.to_query());
    let answer: TopAnswer = admin.get_json(&path)?;
    args.output.print(&answer, |out, answer| {
        writeln!(
            out,
            "{:<40} {:>10} {:>8} {:<20} {:<20} {:>6}",
            "source", "attempts", "±error", "first seen", "last seen", "dests"
        )?;
        for s in &answer.sources {
            writeln!(
                out,
                "{:<40} {:>10} {:>8} {:<20} {:<20} {:>6}",
                s.subscriber.as_deref().unwrap_or(&s.source),
                s.attempts,
                s.error,
                s.first_seen,
                s.last_seen,
                s.distinct_destinations
            )?;
            if s.subscriber.is_some() {
                writeln!(out, "  addresses: {}", s.addresses.join(", "))?;
            }
        }
        if answer.sources.is_empty() {
            writeln!(
                out,
                "(no blocked connection attempts in the last {} s)",
                answer.window_seconds
            )?;
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
