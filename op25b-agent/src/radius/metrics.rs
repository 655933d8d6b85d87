//! What RADIUS tells the NOC: requests by type and result, sessions,
//! exempt sessions; and a log of dropped requests that a flood cannot flood.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tracing::warn;

use super::codec::{attr, code, status, Packet};

/// Why a request was not answered, or how it was: the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    UnknownClient,
    BadAuthenticator,
    Malformed,
    TableFull,
    /// A CoA or Disconnect answered with a NAK.
    Nak,
}

impl Outcome {
    pub const fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::UnknownClient => "unknown_client",
            Self::BadAuthenticator => "bad_authenticator",
            Self::Malformed => "malformed",
            Self::TableFull => "table_full",
            Self::Nak => "nak",
        }
    }
}

/// The `type` label: a bounded set.
pub fn request_type(packet: Option<&Packet>) -> &'static str {
    let Some(packet) = packet else {
        return "unknown";
    };
    match packet.code {
        code::ACCOUNTING_REQUEST => match packet.integer(attr::ACCT_STATUS_TYPE) {
            Ok(Some(status::START)) => "start",
            Ok(Some(status::STOP)) => "stop",
            Ok(Some(status::INTERIM_UPDATE)) => "interim_update",
            Ok(Some(status::ACCOUNTING_ON)) => "accounting_on",
            Ok(Some(status::ACCOUNTING_OFF)) => "accounting_off",
            _ => "accounting_other",
        },
        code::COA_REQUEST => "coa",
        code::DISCONNECT_REQUEST => "disconnect",
        _ => "unknown",
    }
}

pub struct RadiusMetrics {
    pub requests: IntCounterVec,
    pub sessions: IntGauge,
    pub exempt_sessions: IntGauge,
}

impl RadiusMetrics {
    pub(super) fn new() -> Self {
        Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "op25b_radius_requests_total",
                    "RADIUS requests by type (start, stop, interim_update, accounting_on, accounting_off, accounting_other, coa, disconnect, unknown) and result (accepted, nak, unknown_client, bad_authenticator, malformed, table_full).",
                ),
                &["type", "result"],
            )
            .expect("valid metric"),
            sessions: IntGauge::new("op25b_radius_sessions", "Sessions in the RADIUS session table.")
                .expect("valid metric"),
            exempt_sessions: IntGauge::new(
                "op25b_radius_exempt_sessions",
                "Sessions whose addresses are exempt right now.",
            )
            .expect("valid metric"),
        }
    }

    pub fn register(&self, registry: &Registry) {
        for collector in [
            Box::new(self.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.sessions.clone()),
            Box::new(self.exempt_sessions.clone()),
        ] {
            registry.register(collector).expect("unique metric");
        }
    }
}

/// Logs a kind of bad request at most once per interval, with how many
/// were not logged in between: a flood of garbage cannot flood the log.
pub(super) struct LogLimiter {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn log(&self, kind: &'static str, message: impl FnOnce() -> String) {
        let mut last = self.last.lock().expect("not poisoned");
        let now = Instant::now();
        match last.get_mut(kind) {
            Some((at, suppressed)) if now.duration_since(*at) < self.interval => *suppressed += 1,
            entry => {
                let suppressed = entry.map_or(0, |(_, s)| *s);
                warn!(kind, suppressed, "RADIUS request dropped: {}", message());
                last.insert(kind, (now, 0));
            }
        }
    }
}
