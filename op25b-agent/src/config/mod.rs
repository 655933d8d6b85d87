//! The agent's TOML configuration, validated whole: `raw` is the file as
//! TOML gives it, `check` turns it into the model below naming every
//! problem's `file:line` and key, `watch` notices edits. A configuration
//! either loads entirely or not at all. Every default is defined here, once.

mod check;
mod check_policy;
pub mod fleet;
mod problem;
pub mod radius;
#[cfg(test)]
mod radius_tests;
mod raw;
mod reports;
#[cfg(test)]
mod tests;
pub mod watch;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::problem::{ConfigError, ConfigProblem};
use self::{check::Checker, raw::RawConfig};
use crate::api::bearer::{BearerToken, TokenError};
use crate::policy::{
    limits::PrefixLimits, list_file::admit_all, prefix::Prefix, subscribers::SubscriberList,
    ListKind, Policy,
};
use op25b_common::abi::POLICY_MAP_CAPACITY;

/// Submission ports (RFC 6409 / RFC 8314) must stay open whatever the config says.
pub const SUBMISSION_PORTS: [u16; 2] = [587, 465];
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/op25b";

/// `[metrics]`: the Prometheus endpoint and the abuse-desk API.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `/metrics`, `/healthz`, `/readyz`, `/api/v1/top`; "" disables.
    pub listen_address: String,
    /// A bearer token `/metrics`, `/api/v1/top` and `/api/v1/sessions` ask
    /// for (they name sources and subscribers); relative to the config
    /// file. None: they answer anyone who reaches the listener.
    pub read_token_file: Option<PathBuf>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen_address: "127.0.0.1:9725".into(),
            read_token_file: None,
        }
    }
}

impl MetricsConfig {
    /// The read token, if one is configured (read now, from its file).
    pub fn read_token(&self) -> Result<Option<BearerToken>, TokenError> {
        self.read_token_file
            .as_deref()
            .map(BearerToken::load)
            .transpose()
    }
}

/// `[events]`: block events (JSON lines) and the top-sources sketch.
#[derive(Clone, Debug, PartialEq)]
pub struct EventsConfig {
    /// JSON-lines file for block events; `None` keeps them in memory only
    /// (they still feed `top`). Reopened on SIGUSR1 (logrotate).
    pub path: Option<PathBuf>,
    /// Rotate to `path.1` .. `path.N` past this size; 0 = never (external logrotate).
    pub max_file_bytes: u64,
    pub max_files: u32,
    /// At most one event per source per interval; the kernel folds the
    /// attempts in between into the next event's `attempts`.
    pub per_source_interval_ns: u64,
    /// Sources tracked per 5-minute bucket of the top-sources sketch.
    pub top_capacity: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_file_bytes: 100 << 20,
            max_files: 5,
            per_source_interval_ns: op25b_common::abi::RuntimeConfig::DEFAULT.event_interval_ns,
            top_capacity: 1024,
        }
    }
}

/// What happens to enforcement when the agent stops.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnExit {
    /// Leave the program attached (pinned links): enforcement outlives the agent.
    #[default]
    Keep,
    /// Detach from every interface and remove the pins.
    Detach,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum XdpModeSetting {
    /// Native (driver) mode, falling back to generic (skb) mode with a warning.
    #[default]
    Auto,
    Driver,
    Skb,
}

impl XdpModeSetting {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Driver => "driver",
            Self::Skb => "skb",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
    #[serde(default)]
    pub xdp_mode: XdpModeSetting,
    /// Attach the frags-aware build even where the MTU fits one buffer, so
    /// the MTU can later be raised past one buffer while attached (drivers
    /// refuse that under the cheaper one-buffer build).
    #[serde(default)]
    pub jumbo_frames: bool,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub pin_path: PathBuf,
    pub on_exit: OnExit,
    pub interfaces: Vec<InterfaceConfig>,
    pub policy: Policy,
    /// Every list file the policy was read from (watched for live reload).
    pub list_files: Vec<PathBuf>,
    pub metrics: MetricsConfig,
    pub events: EventsConfig,
    /// The provisioning API, when configured.
    pub api: Option<ApiConfig>,
    /// The broadest exemption and relay entries (config, files, grants).
    pub prefix_limits: PrefixLimits,
    /// What is legal but worth a word (check-config prints these, the
    /// agent logs them at every load).
    pub warnings: Vec<ConfigProblem>,
    /// `[radius]`, when configured.
    pub radius: Option<radius::RadiusConfig>,
    /// `[policy] exempt_subscribers` and `exempt_subscribers_files`.
    pub exempt_subscribers: SubscriberList,
    /// `[fleet]`: fleet sync on etcd, when configured.
    pub fleet: Option<fleet::FleetConfig>,
    /// `[reports]`: who abuse reports come from, when configured.
    pub reports: Option<crate::report::ReportsConfig>,
}

/// `[api]` settings: the provisioning API (absent = off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    pub socket: Option<PathBuf>,
    pub listen_address: Option<String>,
    pub token_file: PathBuf,
    pub state_file: PathBuf,
    pub audit_log: PathBuf,
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: Some(PathBuf::from("/run/op25b/api.sock")),
            listen_address: None,
            token_file: PathBuf::from("/etc/op25b/api.token"),
            state_file: PathBuf::from("/var/lib/op25b/state.json"),
            audit_log: PathBuf::from("/var/log/op25b/audit.jsonl"),
            max_body_bytes: 64 * 1024,
        }
    }
}

impl Config {
    /// Reads, parses and validates `path` and every list file it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![ConfigProblem {
                location: path.display().to_string(),
                key: None,
                message: format!("cannot read: {e}"),
            }],
            list_files: Vec::new(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses config `text` as if read from `path` (list files resolve beside it).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut check = Checker {
            path,
            text,
            problems: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let location = format!("{}:{}", path.display(), check.line_of(&span));
                check.problems.push(ConfigProblem {
                    location,
                    key: None,
                    message: e.message().to_owned(),
                });
                return Err(ConfigError {
                    problems: check.problems,
                    list_files: Vec::new(),
                });
            }
        };
        let p = &raw.policy;
        let mut list_files = Vec::new();
        let mut policy = Policy {
            blocked_ports: check.ports(p.blocked_ports.as_deref()),
            ..Policy::default()
        };
        let prefix_limits = check.prefix_limits(p.prefix_limits.as_ref());
        check.prefixes("dynamic", &p.dynamic, &mut policy.dynamic, &admit_all);
        check.pools(&p.pools, &mut policy, &mut list_files);
        check.files(
            "dynamic_files",
            &p.dynamic_files,
            &mut policy.dynamic,
            &mut list_files,
            &admit_all,
        );
        for (list, entries, files) in [
            (ListKind::Exempt, &p.exempt, &p.exempt_files),
            (
                ListKind::AllowedDestinations,
                &p.allowed_destinations,
                &p.allowed_destinations_files,
            ),
        ] {
            let admit = |prefix: &Prefix| prefix_limits.check(list, prefix);
            let into = policy.list_mut(list);
            check.prefixes(list.name(), entries, into, &admit);
            let key = format!("{}_files", list.name());
            check.files(&key, files, into, &mut list_files, &admit);
        }
        policy.compact_lists();
        check.capacities(&policy, POLICY_MAP_CAPACITY as usize);
        let mut warnings = check.nested_monitor_pools(&policy);
        warnings.extend(
            prefix_limits
                .lowered()
                .into_iter()
                .map(|bound| ConfigProblem {
                    location: path.display().to_string(),
                    key: Some("policy.prefix_limits".into()),
                    message: format!("lowered: {bound}; broader exemptions or relays are accepted"),
                }),
        );

        let events = check.events(&raw.events);
        policy.event_interval_ns = events.per_source_interval_ns;
        let (metrics, open_listener) = check.metrics(&raw.metrics);
        warnings.extend(open_listener);
        let api = raw.api.as_ref().map(|a| check.api(a));
        let (radius, exempt_subscribers) = check.radius_and_subscribers(&raw, &mut list_files);
        let fleet = raw.fleet.as_ref().and_then(|f| check.fleet(f));
        let reports = raw.reports.as_ref().and_then(|r| check.reports(r));
        let pin_path = check.pin_path(raw.pin_path.as_ref());
        check.interfaces(&raw.interfaces);

        if !check.problems.is_empty() {
            return Err(ConfigError {
                problems: check.problems,
                list_files,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            pin_path,
            on_exit: raw.on_exit.unwrap_or_default(),
            interfaces: raw.interfaces,
            policy,
            list_files,
            metrics,
            events,
            api,
            prefix_limits,
            warnings,
            radius,
            exempt_subscribers,
            fleet,
            reports,
        })
    }
}
