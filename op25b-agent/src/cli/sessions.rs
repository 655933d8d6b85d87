//! `sessions [--subscriber NAME | --address ADDR]`: the running agent's
//! RADIUS session table, read from `GET /api/v1/sessions` on its admin
//! (metrics) listener; also the session part of `explain`.

use std::{net::IpAddr, process::ExitCode};

use serde::Serialize;

use super::{CommandError, ConfigOption, JsonOption};
use crate::{
    api::{
        admin::NO_RADIUS,
        client::{AdminEndpoint, ClientError, Endpoint},
        types::{SessionFilter, SessionJson, SessionsAnswer, SessionsQuery},
    },
    config::{Config, MetricsConfig},
};

/// Show the RADIUS sessions the running agent knows: who (User-Name)
/// holds which addresses, and whether and why each session is exempt
/// (`subscriber`: `exempt_subscribers` or a grant; `session_attribute`:
/// its Filter-Id/Class; `coa`: a CoA-Request).
#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    /// Only the sessions of this subscriber (RADIUS User-Name).
    #[arg(long, conflicts_with = "address")]
    subscriber: Option<String>,
    /// Only the session holding this IPv4 address or IPv6 address.
    #[arg(long)]
    address: Option<IpAddr>,
    /// At most this many sessions (1..=100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
    /// The agent's configuration (for its metrics.listen_address).
    #[command(flatten)]
    config: ConfigOption,
    /// The agent's HTTP (metrics) address, overriding the config.
    #[arg(long)]
    agent: Option<String>,
    #[command(flatten)]
    output: JsonOption,
}

/// The admin listener of the agent: the flag, else the config's, else the
/// default; with the config's read token, if it sets one.
pub(super) fn admin_endpoint(
    config: Option<&Config>,
    flag: Option<&str>,
) -> Result<AdminEndpoint, CommandError> {
    let metrics = config.map_or_else(MetricsConfig::default, |c| c.metrics.clone());
    let read_token = metrics.read_token()?.map(|t| t.secret().to_owned());
    Ok(AdminEndpoint {
        endpoint: Endpoint::Tcp(flag.map_or(metrics.listen_address, str::to_owned)),
        read_token,
    })
}

pub fn execute(args: &SessionsArgs) -> Result<ExitCode, CommandError> {
    let config = args.config.load()?;
    let admin = admin_endpoint(config.as_ref(), args.agent.as_deref())?;
    let filter = match (&args.subscriber, args.address) {
        (Some(name), _) => SessionFilter::Subscriber(name.clone()),
        (None, Some(addr)) => SessionFilter::Address(addr),
        (None, None) => SessionFilter::All,
    };
    let query = SessionsQuery {
        filter,
        limit: args.limit as usize,
    };
    let path = format!("/api/v1/sessions?{}", query.to_query());
    let answer: SessionsAnswer = admin.get_json(&path)?;
    args.output.print(&answer, |out, answer| {
        writeln!(
            out,
            "{:<28} {:<28} {:<36} {:<18} started",
            "subscriber", "session", "addresses", "exempt by"
        )?;
        for s in &answer.sessions {
            writeln!(
                out,
                "{:<28} {:<28} {:<36} {:<18} {}",
                s.subscriber,
                s.session,
                s.addresses.join(","),
                s.exempt_by.as_deref().unwrap_or("-"),
                s.started_at
            )?;
        }
        writeln!(
            out,
            "({} shown of {} sessions{}; {} exempt)",
            answer.sessions.len(),
            answer.total,
            if answer.truncated {
                ", more match: raise --limit"
            } else {
                ""
            },
            answer.exempt
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What the running agent says about the session holding an address.
#[derive(Debug, Serialize)]
#[serde(tag = "known", rename_all = "snake_case")]
pub(super) enum SessionOf {
    /// The agent could not be asked: sessions are unknown.
    Unknown {
        why: String,
    },
    /// The agent keeps no session table (no `[radius]` listener).
    NoRadius,
    /// No session holds the address.
    NoSession,
    Held {
        session: SessionJson,
    },
}

/// Asks the agent at `admin` which session holds `addr`.
pub(super) fn session_of(admin: &AdminEndpoint, addr: IpAddr) -> SessionOf {
    let query = SessionsQuery {
        filter: SessionFilter::Address(addr),
        limit: 1,
    };
    let path = format!("/api/v1/sessions?{}", query.to_query());
    match admin.get_json::<SessionsAnswer>(&path) {
        Ok(mut answer) => answer
            .sessions
            .pop()
            .map_or(SessionOf::NoSession, |session| SessionOf::Held { session }),
        Err(ClientError::Status { message, .. }) if message.contains(NO_RADIUS) => {
            SessionOf::NoRadius
        }
        Err(e) => SessionOf::Unknown {
            why: format!("the agent could not be asked ({e})"),
        },
    }
}

impl std::fmt::Display for SessionOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown { why } => write!(f, "unknown: {why}"),
            Self::NoRadius => f.write_str("none known: the agent has no [radius] listener"),
            Self::NoSession => f.write_str("none: no RADIUS session holds the source"),
            Self::Held { session } => {
                write!(
                    f,
                    "{} of {:?} ({})",
                    session.session,
                    session.subscriber,
                    session.addresses.join(", ")
                )?;
                match &session.exempt_by {
                    Some(by) => write!(f, ", exempt by {by}"),
                    None => f.write_str(", not exempt"),
                }
            }
        }
    }
}
