//! The checks: each section of the raw configuration validated into the
//! model, every problem collected with its place (not just the first).
//! `[policy]` has its own file (check_policy.rs).

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use toml::Spanned;

use super::{
    raw::{RawApi, RawEvents},
    ApiConfig, ConfigProblem, EventsConfig, InterfaceConfig, MetricsConfig, DEFAULT_PIN_PATH,
};
use crate::policy::list_file::ListFileError;

/// Collects problems against one config file's text.
pub struct Checker<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub problems: Vec<ConfigProblem>,
}

impl Checker<'_> {
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    pub fn at(&mut self, span: &Range<usize>, key: String, message: impl fmt::Display) {
        let location = format!("{}:{}", self.path.display(), self.line_of(span));
        self.problems.push(ConfigProblem {
            location,
            key: Some(key),
            message: message.to_string(),
        });
    }

    /// A problem with a key whose line is not known (e.g. inside an array of tables).
    pub fn key(&mut self, key: String, message: impl fmt::Display) {
        self.problems.push(ConfigProblem {
            location: self.path.display().to_string(),
            key: Some(key),
            message: message.to_string(),
        });
    }

    pub fn list_file(&mut self, error: &ListFileError) {
        let (location, message) = match error {
            ListFileError::Read { path, source } => {
                (path.display().to_string(), format!("cannot read: {source}"))
            }
            ListFileError::NotAFile { path } | ListFileError::TooLarge { path } => {
                let message = error.to_string();
                let message = message
                    .strip_prefix(&format!("{}: ", path.display()))
                    .unwrap_or(&message)
                    .to_owned();
                (path.display().to_string(), message)
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

    pub fn events(&mut self, raw: &RawEvents) -> EventsConfig {
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

    /// `[metrics]`: the listener's address and its read token (a path
    /// relative to the config file). A listener off loopback without a
    /// token is allowed (Prometheus scrapes across the network) but warned
    /// about: its top sources and sessions name subscribers.
    pub fn metrics(&mut self, raw: &MetricsConfig) -> (MetricsConfig, Option<ConfigProblem>) {
        let base = self.path.parent().unwrap_or(Path::new("."));
        let metrics = MetricsConfig {
            listen_address: raw.listen_address.clone(),
            read_token_file: raw
                .read_token_file
                .as_ref()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| base.join(p)),
        };
        if metrics.listen_address.is_empty() {
            return (metrics, None);
        }
        let Ok(address) = metrics.listen_address.parse::<std::net::SocketAddr>() else {
            self.key(
                "metrics.listen_address".into(),
                format!("{:?} is not an address:port", metrics.listen_address),
            );
            return (metrics, None);
        };
        let open = (!address.ip().is_loopback() && metrics.read_token_file.is_none()).then(|| {
            ConfigProblem {
                location: self.path.display().to_string(),
                key: Some("metrics.read_token_file".into()),
                message: format!("not set, and {address} is not loopback: anyone who reaches it reads the top sources and RADIUS sessions (subscriber names); set a read token"),
            }
        });
        (metrics, open)
    }

    pub fn api(&mut self, raw: &RawApi) -> ApiConfig {
        let base = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut api = ApiConfig::default();
        let path =
            |p: &Option<String>, default: PathBuf| p.as_ref().map_or(default, |p| base.join(p));
        api.socket = match &raw.socket {
            Some(s) if s.is_empty() => None,
            s => Some(path(s, api.socket.clone().expect("default socket"))),
        };
        api.listen_address = raw.listen_address.clone().filter(|a| !a.is_empty());
        if let Some(address) = &api.listen_address {
            match address.parse::<std::net::SocketAddr>() {
                Err(_) => self.key(
                    "api.listen_address".into(),
                    format!("{address:?} is not an address:port"),
                ),
                // The API has no TLS: a bearer token must not cross a network in clear.
                Ok(a) if !a.ip().is_loopback() => self.key(
                    "api.listen_address".into(),
                    format!("{address} is not a loopback address and the API speaks plain HTTP: use the unix socket, or a loopback address behind a TLS-terminating proxy"),
                ),
                Ok(_) => {}
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

    pub fn pin_path(&mut self, pin: Option<&Spanned<String>>) -> PathBuf {
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

    pub fn interfaces(&mut self, interfaces: &[InterfaceConfig]) {
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
}
