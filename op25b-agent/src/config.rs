//! The agent's TOML configuration: parsed strictly (unknown keys refused),
//! validated whole, with every error naming `file:line` and the key.
//! A configuration either loads entirely or not at all.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use op25b_common::verdict::MAX_BLOCKED_PORTS;
use serde::Deserialize;
use toml::Spanned;

use crate::{
    policy::Policy,
    prefix::{read_list_file, ListFileError, PrefixSet},
};

/// Submission ports (RFC 6409 / RFC 8314) must stay open whatever the config says.
pub const SUBMISSION_PORTS: [u16; 2] = [587, 465];
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/op25b";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pin_path: Option<Spanned<String>>,
    #[serde(default)]
    on_exit: Option<OnExit>,
    #[serde(default)]
    interfaces: Vec<InterfaceConfig>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    fleet: Option<crate::fleet::config::RawFleet>,
}

/// `[api]`: the provisioning API (absent = off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    socket: Option<String>,
    listen_address: Option<String>,
    token_file: Option<String>,
    state_file: Option<String>,
    audit_log: Option<String>,
    max_body_bytes: Option<usize>,
}

/// `[metrics]`: the Prometheus endpoint and the abuse-desk API.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `/metrics`, `/healthz`, `/readyz`, `/api/v1/top`; "" disables.
    pub listen_address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen_address: "127.0.0.1:9725".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    path: Option<String>,
    max_file_bytes: Option<Spanned<i64>>,
    max_files: Option<Spanned<i64>>,
    per_source_interval_seconds: Option<Spanned<f64>>,
    top_capacity: Option<Spanned<i64>>,
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
            per_source_interval_ns: 1_000_000_000,
            top_capacity: 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    blocked_ports: Option<Vec<Spanned<i64>>>,
    #[serde(default)]
    dynamic: Vec<Spanned<String>>,
    #[serde(default)]
    dynamic_files: Vec<Spanned<String>>,
    #[serde(default)]
    exempt: Vec<Spanned<String>>,
    #[serde(default)]
    exempt_files: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_destinations: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_destinations_files: Vec<Spanned<String>>,
    #[serde(default)]
    pools: Vec<RawPool>,
}

/// `[[policy.pools]]`: dynamic prefixes with their own action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Spanned<String>,
    action: PoolActionSetting,
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    files: Vec<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum PoolActionSetting {
    Monitor,
    Drop,
    Reject,
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
    pub api: Option<crate::provisioning::ApiConfig>,
    /// Fleet sync on etcd, when configured.
    pub fleet: Option<crate::fleet::config::FleetConfig>,
}

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `file:line` (or just `file` when there is no line).
    pub location: String,
    /// The key, e.g. `policy.dynamic[2]`, when the problem is in the config itself.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: {key}: {}", self.location, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// The configuration was refused; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
    /// The list files the configuration names (watched for a fix).
    pub list_files: Vec<PathBuf>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Collects problems against one config file's text.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    problems: Vec<ConfigProblem>,
}

impl Checker<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn at(&mut self, span: &Range<usize>, key: String, message: impl fmt::Display) {
        let location = format!("{}:{}", self.path.display(), self.line_of(span));
        self.problems.push(ConfigProblem {
            location,
            key: Some(key),
            message: message.to_string(),
        });
    }

    /// A problem with a key whose line is not known (e.g. inside an array of tables).
    fn key(&mut self, key: String, message: impl fmt::Display) {
        self.problems.push(ConfigProblem {
            location: self.path.display().to_string(),
            key: Some(key),
            message: message.to_string(),
        });
    }

    fn list_file(&mut self, error: &ListFileError) {
        let (location, message) = match error {
            ListFileError::Read { path, source } => {
                (path.display().to_string(), format!("cannot read: {source}"))
            }
            ListFileError::Line { path, line, source } => {
                (format!("{}:{line}", path.display()), source.to_string())
            }
        };
        self.problems.push(ConfigProblem {
            location,
            key: None,
            message,
        });
    }

    fn prefixes(&mut self, key: &str, entries: &[Spanned<String>], into: &mut PrefixSet) {
        for (i, entry) in entries.iter().enumerate() {
            match crate::prefix::parse_entry(entry.get_ref().trim()) {
                Ok((prefix, expires)) => into.insert_until(prefix, expires),
                Err(e) => self.at(&entry.span(), format!("policy.{key}[{i}]"), e),
            }
        }
    }

    fn files(
        &mut self,
        key: &str,
        entries: &[Spanned<String>],
        into: &mut PrefixSet,
        seen: &mut Vec<PathBuf>,
    ) {
        let base = self.path.parent().unwrap_or(Path::new("."));
        for (i, entry) in entries.iter().enumerate() {
            if entry.get_ref().trim().is_empty() {
                self.at(
                    &entry.span(),
                    format!("policy.{key}[{i}]"),
                    "empty file name",
                );
                continue;
            }
            let file = base.join(entry.get_ref());
            if let Err(e) = read_list_file(&file, into) {
                self.list_file(&e);
            }
            seen.push(file);
        }
    }

    fn events(&mut self, raw: &RawEvents) -> EventsConfig {
        let mut events = EventsConfig::default();
        let base = self.path.parent().unwrap_or(Path::new("."));
        events.path = raw
            .path
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| base.join(p));
        let mut int = |value: &Option<Spanned<i64>>,
                       key: &str,
                       range: std::ops::RangeInclusive<i64>|
         -> Option<i64> {
            let value = value.as_ref()?;
            if range.contains(value.get_ref()) {
                Some(*value.get_ref())
            } else {
                self.at(
                    &value.span(),
                    format!("events.{key}"),
                    format!(
                        "{} is not in {}..={}",
                        value.get_ref(),
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        };
        if let Some(v) = int(&raw.max_file_bytes, "max_file_bytes", 0..=i64::MAX) {
            events.max_file_bytes = v.unsigned_abs();
        }
        if let Some(v) = int(&raw.max_files, "max_files", 1..=1000) {
            events.max_files = u32::try_from(v).unwrap_or(1);
        }
        if let Some(v) = int(&raw.top_capacity, "top_capacity", 16..=1_000_000) {
            events.top_capacity = usize::try_from(v).unwrap_or(16);
        }
        if let Some(seconds) = &raw.per_source_interval_seconds {
            let s = *seconds.get_ref();
            if (0.0..=86_400.0).contains(&s) {
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "checked to lie in 0..=86400 s"
                )]
                let ns = (s * 1e9) as u64;
                events.per_source_interval_ns = ns;
            } else {
                self.at(
                    &seconds.span(),
                    "events.per_source_interval_seconds".into(),
                    format!("{s} is not in 0..=86400"),
                );
            }
        }
        events
    }

    fn api(&mut self, raw: &RawApi) -> crate::provisioning::ApiConfig {
        let base = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut api = crate::provisioning::ApiConfig::default();
        let path =
            |p: &Option<String>, default: PathBuf| p.as_ref().map_or(default, |p| base.join(p));
        api.socket = match &raw.socket {
            Some(s) if s.is_empty() => None,
            s => Some(path(s, api.socket.clone().expect("default socket"))),
        };
        api.listen_address = raw.listen_address.clone().filter(|a| !a.is_empty());
        if let Some(address) = &api.listen_address {
            if address.parse::<std::net::SocketAddr>().is_err() {
                self.key(
                    "api.listen_address".into(),
                    format!("{address:?} is not an address:port"),
                );
            }
        }
        if api.socket.is_none() && api.listen_address.is_none() {
            self.key(
                "api".into(),
                "neither socket nor listen_address: the API would be unreachable",
            );
        }
        api.token_file = path(&raw.token_file, api.token_file);
        api.state_file = path(&raw.state_file, api.state_file);
        api.audit_log = path(&raw.audit_log, api.audit_log);
        if let Some(max) = raw.max_body_bytes {
            if (64..=16 << 20).contains(&max) {
                api.max_body_bytes = max;
            } else {
                self.key(
                    "api.max_body_bytes".into(),
                    format!("{max} is not in 64..=16777216"),
                );
            }
        }
        api
    }

    /// Pools get ids 1.. (0 is the flat `dynamic` lists); a prefix may sit
    /// in one pool only.
    fn pools(&mut self, pools: &[RawPool], policy: &mut Policy, seen: &mut Vec<PathBuf>) {
        use op25b_common::abi::{PoolAction, MAX_POOLS};
        if let Some(extra) = pools.get(MAX_POOLS - 1) {
            self.at(
                &extra.name.span(),
                "policy.pools".into(),
                format!("at most {} pools are supported", MAX_POOLS - 1),
            );
            return;
        }
        for (i, pool) in pools.iter().enumerate() {
            let name = pool.name.get_ref();
            let key = format!("policy.pools[{i}].name");
            if !valid_pool_name(name) {
                self.at(
                    &pool.name.span(),
                    key,
                    format!("{name:?}: use 1-32 of a-z, 0-9, '-', '_'"),
                );
            } else if name == crate::policy::DEFAULT_POOL
                || policy.pools.iter().any(|p| &p.name == name)
            {
                self.at(
                    &pool.name.span(),
                    key,
                    format!("pool name {name:?} is taken"),
                );
            }
            let id = u32::try_from(i + 1).expect("few pools");
            let mut members = PrefixSet::default();
            self.prefixes(
                &format!("pools[{i}].prefixes"),
                &pool.prefixes,
                &mut members,
            );
            self.files(
                &format!("pools[{i}].files"),
                &pool.files,
                &mut members,
                seen,
            );
            for prefix in members.v4.iter().chain(members.v6.iter()) {
                if policy.dynamic.v4.contains(prefix) || policy.dynamic.v6.contains(prefix) {
                    let other = policy.pool_id(prefix);
                    let other = policy
                        .pools
                        .get(other as usize)
                        .map_or("?", |p| p.name.as_str());
                    self.at(
                        &pool.name.span(),
                        format!("policy.pools[{i}]"),
                        format!("{prefix} is also in pool {other:?}: a prefix belongs to one pool"),
                    );
                    continue;
                }
                policy
                    .dynamic
                    .insert_until(*prefix, members.expiring.get(prefix).copied());
                policy.pool_of.insert(*prefix, id);
            }
            policy.pools.push(crate::policy::Pool {
                name: name.clone(),
                action: match pool.action {
                    PoolActionSetting::Monitor => PoolAction::Monitor,
                    PoolActionSetting::Drop => PoolAction::Drop,
                    PoolActionSetting::Reject => PoolAction::Reject,
                },
            });
        }
    }

    fn pin_path(&mut self, pin: Option<&Spanned<String>>) -> PathBuf {
        match pin {
            Some(pin) if !Path::new(pin.get_ref()).is_absolute() => {
                self.at(
                    &pin.span(),
                    "pin_path".into(),
                    "must be an absolute path on a bpffs",
                );
                PathBuf::new()
            }
            Some(pin) => PathBuf::from(pin.get_ref()),
            None => PathBuf::from(DEFAULT_PIN_PATH),
        }
    }

    fn interfaces(&mut self, interfaces: &[InterfaceConfig]) {
        let mut names = Vec::new();
        for (i, iface) in interfaces.iter().enumerate() {
            if iface.name.is_empty()
                || iface.name.len() > 15
                || iface.name.contains(['/', ' ', ':'])
            {
                self.key(
                    format!("interfaces[{i}].name"),
                    format!("{:?} is not an interface name", iface.name),
                );
            } else if names.contains(&&iface.name) {
                self.key(
                    format!("interfaces[{i}].name"),
                    format!("{:?} is listed twice", iface.name),
                );
            }
            names.push(&iface.name);
        }
        if interfaces.len() > op25b_common::abi::MAX_INTERFACE_SLOTS as usize {
            self.key(
                "interfaces".into(),
                format!(
                    "at most {} interfaces are supported",
                    op25b_common::abi::MAX_INTERFACE_SLOTS
                ),
            );
        }
    }

    fn ports(&mut self, ports: Option<&[Spanned<i64>]>) -> Vec<u16> {
        let Some(ports) = ports else {
            return vec![25];
        };
        let mut valid = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let key = format!("policy.blocked_ports[{i}]");
            let value = *port.get_ref();
            match u16::try_from(value) {
                Ok(0) | Err(_) => {
                    self.at(&port.span(), key, format!("port {value} is not in 1..=65535"));
                }
                Ok(p) if SUBMISSION_PORTS.contains(&p) => self.at(
                    &port.span(),
                    key,
                    format!("port {p} is a mail submission port and must never be blocked (RFC 5068, RFC 8314)"),
                ),
                Ok(p) if valid.contains(&p) => {
                    self.at(&port.span(), key, format!("port {p} is listed twice"));
                }
                Ok(p) => valid.push(p),
            }
        }
        if let Some(extra) = ports.get(MAX_BLOCKED_PORTS) {
            self.at(
                &extra.span(),
                "policy.blocked_ports".into(),
                format!(
                    "{} ports given, at most {} are supported",
                    ports.len(),
                    MAX_BLOCKED_PORTS
                ),
            );
        }
        valid
    }
}

/// A pool name: 1-32 of a-z, 0-9, '-', '_' (it becomes a metric label).
pub fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
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
        check.prefixes("dynamic", &p.dynamic, &mut policy.dynamic);
        check.pools(&p.pools, &mut policy, &mut list_files);
        check.files(
            "dynamic_files",
            &p.dynamic_files,
            &mut policy.dynamic,
            &mut list_files,
        );
        check.prefixes("exempt", &p.exempt, &mut policy.exempt);
        check.files(
            "exempt_files",
            &p.exempt_files,
            &mut policy.exempt,
            &mut list_files,
        );
        check.prefixes(
            "allowed_destinations",
            &p.allowed_destinations,
            &mut policy.allowed_destinations,
        );
        check.files(
            "allowed_destinations_files",
            &p.allowed_destinations_files,
            &mut policy.allowed_destinations,
            &mut list_files,
        );

        let events = check.events(&raw.events);
        policy.event_interval_ns = events.per_source_interval_ns;
        if !raw.metrics.listen_address.is_empty()
            && raw
                .metrics
                .listen_address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            check.key(
                "metrics.listen_address".into(),
                format!("{:?} is not an address:port", raw.metrics.listen_address),
            );
        }
        let api = raw.api.as_ref().map(|a| check.api(a));
        let fleet = raw.fleet.as_ref().and_then(|f| {
            crate::fleet::config::FleetConfig::from_raw(f, path.parent().unwrap_or(Path::new(".")))
                .map_err(|problems| {
                    for (key, message) in problems {
                        check.key(key, message);
                    }
                })
                .ok()
        });
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
            metrics: raw.metrics,
            events,
            api,
            fleet,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "op25b-config-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn problems(text: &str) -> Vec<String> {
        let path = dir().join("op25b.toml");
        match Config::parse(&path, text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e
                .problems
                .iter()
                .map(|p| p.to_string().replace(&dir().display().to_string(), "D"))
                .collect(),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let d = dir();
        std::fs::write(
            d.join("dynamic.txt"),
            "# pools\n100.96.0.0/11\n2001:db8:2000::/36 # v6 pool\n",
        )
        .unwrap();
        let text = r#"
[policy]
blocked_ports = [25]
dynamic = ["100.64.0.0/10", "2001:db8:1000::/36"]
dynamic_files = ["dynamic.txt"]
exempt = ["100.64.1.7/32"]
exempt_files = []
allowed_destinations = ["192.0.2.25/32"]
allowed_destinations_files = []
"#;
        let config = Config::parse(&d.join("op25b.toml"), text).unwrap();
        assert_eq!(config.policy.blocked_ports, vec![25]);
        assert_eq!(
            (
                config.policy.dynamic.v4.len(),
                config.policy.dynamic.v6.len()
            ),
            (2, 2)
        );
        assert_eq!(config.policy.exempt.len(), 1);
        assert_eq!(config.pin_path, PathBuf::from(DEFAULT_PIN_PATH));
        assert_eq!(config.on_exit, OnExit::Keep);
        assert_eq!(config.list_files, vec![d.join("dynamic.txt")]);
    }

    #[test]
    fn defaults_block_port_25_only() {
        let config = Config::parse(&dir().join("x.toml"), "").unwrap();
        assert_eq!(config.policy.blocked_ports, vec![25]);
        assert!(config.policy.dynamic.is_empty());
    }

    #[test]
    fn each_class_of_bad_config_names_its_place() {
        let cases: &[(&str, &str)] = &[
            ("[policy]\nblocked_port = [25]\n", "D/op25b.toml:2: unknown field `blocked_port`"),
            ("[policy\n", "D/op25b.toml:1: "),
            ("[policy]\nblocked_ports = [25, 587]\n", "D/op25b.toml:2: policy.blocked_ports[1]: port 587 is a mail submission port"),
            ("[policy]\nblocked_ports = [\n 465]\n", "D/op25b.toml:3: policy.blocked_ports[0]: port 465 is a mail submission port"),
            ("[policy]\nblocked_ports = [0]\n", "D/op25b.toml:2: policy.blocked_ports[0]: port 0 is not in 1..=65535"),
            ("[policy]\nblocked_ports = [65536]\n", "D/op25b.toml:2: policy.blocked_ports[0]: port 65536 is not in 1..=65535"),
            ("[policy]\nblocked_ports = [1,2,3,4,5,6,7,8,9]\n", "D/op25b.toml:2: policy.blocked_ports: 9 ports given, at most 8"),
            ("[policy]\nblocked_ports = [25, 25]\n", "policy.blocked_ports[1]: port 25 is listed twice"),
            ("[policy]\ndynamic = [\n\"100.64.0.0/10\",\n\"100.64.0.1/10\"]\n", "D/op25b.toml:4: policy.dynamic[1]: host bits set in 100.64.0.1/10"),
            ("[policy]\nexempt = [\"2001:db8::1/64\"]\n", "D/op25b.toml:2: policy.exempt[0]: host bits set"),
            ("[policy]\nallowed_destinations = [\"192.0.2.300/32\"]\n", "D/op25b.toml:2: policy.allowed_destinations[0]: \"192.0.2.300\" is not an IPv4 or IPv6 address"),
            ("[policy]\ndynamic_files = [\"missing.txt\"]\n", "D/missing.txt: cannot read"),
            ("pin_path = \"relative/dir\"\n", "D/op25b.toml:1: pin_path: must be an absolute path"),
            ("on_exit = \"maybe\"\n", "D/op25b.toml:1: unknown variant `maybe`"),
            ("[[interfaces]]\nname = \"eth1\"\nxdp_mode = \"fast\"\n", "D/op25b.toml:3: unknown variant `fast`"),
            ("[[interfaces]]\nname = \"eth1\"\n[[interfaces]]\nname = \"eth1\"\n", "interfaces[1].name: \"eth1\" is listed twice"),
            ("[[interfaces]]\nname = \"a-name-far-too-long\"\n", "interfaces[0].name: \"a-name-far-too-long\" is not an interface name"),
        ];
        for (text, expected) in cases {
            let got = problems(text);
            assert!(
                got.iter()
                    .any(|p| p.starts_with(expected) || p.contains(expected)),
                "for {text:?} expected {expected:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn pools_parse_with_ids_actions_and_files() {
        let d = dir();
        std::fs::write(d.join("west.txt"), "100.96.0.0/12\n2001:db8:3000::/36\n").unwrap();
        let text = r#"
[policy]
dynamic = ["100.64.0.0/12"]
[[policy.pools]]
name = "ftth-east"
action = "monitor"
prefixes = ["100.80.0.0/12"]
[[policy.pools]]
name = "ftth-west"
action = "reject"
files = ["west.txt"]
"#;
        let config = Config::parse(&d.join("op25b.toml"), text).unwrap();
        let p = &config.policy;
        let names: Vec<&str> = p.pools.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["default", "ftth-east", "ftth-west"]);
        assert_eq!(p.pool_actions()[..3], [0, 1, 2]);
        assert_eq!(p.pool_id(&"100.64.0.0/12".parse().unwrap()), 0);
        assert_eq!(p.pool_id(&"100.80.0.0/12".parse().unwrap()), 1);
        assert_eq!(p.pool_id(&"2001:db8:3000::/36".parse().unwrap()), 2);
        assert_eq!(p.dynamic.len(), 4);
        assert_eq!(config.list_files, vec![d.join("west.txt")]);
    }

    #[test]
    fn bad_pools_name_their_place() {
        let cases: &[(&str, &str)] = &[
            ("[[policy.pools]]\nname = \"a\"\naction = \"block\"\n", "D/op25b.toml:3: unknown variant `block`"),
            ("[[policy.pools]]\nname = \"Bad Name\"\naction = \"drop\"\n", "D/op25b.toml:2: policy.pools[0].name: \"Bad Name\": use 1-32 of"),
            ("[[policy.pools]]\nname = \"default\"\naction = \"drop\"\n", "policy.pools[0].name: pool name \"default\" is taken"),
            ("[[policy.pools]]\nname = \"a\"\naction = \"drop\"\n[[policy.pools]]\nname = \"a\"\naction = \"drop\"\n", "policy.pools[1].name: pool name \"a\" is taken"),
            ("[policy]\ndynamic = [\"100.64.0.0/10\"]\n[[policy.pools]]\nname = \"a\"\naction = \"drop\"\nprefixes = [\"100.64.0.0/10\"]\n", "100.64.0.0/10 is also in pool \"default\""),
            ("[[policy.pools]]\nname = \"a\"\naction = \"drop\"\nprefixes = [\"100.64.0.1/10\"]\n", "D/op25b.toml:4: policy.pools[0].prefixes[0]: host bits set"),
        ];
        for (text, expected) in cases {
            let got = problems(text);
            assert!(
                got.iter().any(|p| p.contains(expected)),
                "for {text:?} expected {expected:?}, got {got:?}"
            );
        }
        let many = (0..16).fold(String::new(), |acc, i| {
            acc + "[[policy.pools]]
name = \"p" + &i.to_string()
                + "\"
action = \"drop\"
"
        });
        assert!(problems(&many)
            .iter()
            .any(|p| p.contains("at most 15 pools")));
    }

    #[test]
    fn a_bad_list_line_names_file_and_line() {
        let d = dir();
        std::fs::write(
            d.join("bad-list.txt"),
            "100.64.0.0/10\n\n# comment\n100.64.0.1/10\n",
        )
        .unwrap();
        let got = problems("[policy]\ndynamic_files = [\"bad-list.txt\"]\n");
        assert_eq!(
            got,
            vec!["D/bad-list.txt:4: host bits set in 100.64.0.1/10: did you mean 100.64.0.0/10?"]
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let got = problems(
            "[policy]\nblocked_ports = [587]\ndynamic = [\"x\"]\nexempt = [\"1.2.3.4/33\"]\n",
        );
        assert_eq!(got.len(), 3, "{got:?}");
    }
}
