//! The checks: each section of the raw configuration validated into the
//! model, every problem collected with its place (not just the first).

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use op25b_common::verdict::MAX_BLOCKED_PORTS;
use toml::Spanned;

use super::{
    raw::{PoolActionSetting, RawApi, RawEvents, RawPool, RawPrefixLimits},
    ApiConfig, ConfigProblem, EventsConfig, InterfaceConfig, DEFAULT_PIN_PATH, SUBMISSION_PORTS,
};
use crate::policy::{
    limits::PrefixLimits,
    list_file::{admit_all, parse_entry, read_list_file, Admit, ListFileError},
    prefix::{Prefix, PrefixSet},
    ListKind, Policy,
};

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

    pub fn prefixes(
        &mut self,
        key: &str,
        entries: &[Spanned<String>],
        into: &mut PrefixSet,
        admit: Admit<'_>,
    ) {
        for (i, entry) in entries.iter().enumerate() {
            let parsed = parse_entry(entry.get_ref().trim()).and_then(|(prefix, expires)| {
                admit(&prefix)?;
                Ok((prefix, expires))
            });
            match parsed {
                Ok((prefix, expires)) => into.insert_until(prefix, expires),
                Err(e) => self.at(&entry.span(), format!("policy.{key}[{i}]"), e),
            }
        }
    }

    pub fn files(
        &mut self,
        key: &str,
        entries: &[Spanned<String>],
        into: &mut PrefixSet,
        seen: &mut Vec<PathBuf>,
        admit: Admit<'_>,
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
            if let Err(e) = read_list_file(&file, into, admit) {
                self.list_file(&e);
            }
            seen.push(file);
        }
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

    /// Pools get ids 1.. (0 is the flat `dynamic` lists); a prefix may sit
    /// in one pool only.
    pub fn pools(&mut self, pools: &[RawPool], policy: &mut Policy, seen: &mut Vec<PathBuf>) {
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
            if !crate::policy::valid_pool_name(name) {
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
                &admit_all,
            );
            self.files(
                &format!("pools[{i}].files"),
                &pool.files,
                &mut members,
                seen,
                &admit_all,
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

    /// `[policy.prefix_limits]`; never /0 (that would exempt everyone).
    pub fn prefix_limits(&mut self, raw: Option<&RawPrefixLimits>) -> PrefixLimits {
        let mut limits = PrefixLimits::default();
        let Some(raw) = raw else {
            return limits;
        };
        for (value, max, slot) in [
            (&raw.exempt_ipv4, 32, &mut limits.exempt_ipv4),
            (&raw.exempt_ipv6, 128, &mut limits.exempt_ipv6),
            (
                &raw.allowed_destinations_ipv4,
                32,
                &mut limits.allowed_destinations_ipv4,
            ),
            (
                &raw.allowed_destinations_ipv6,
                128,
                &mut limits.allowed_destinations_ipv6,
            ),
        ] {
            let Some(value) = value else {
                continue;
            };
            match u8::try_from(*value.get_ref()) {
                Ok(len) if (1..=max).contains(&len) => *slot = len,
                _ => self.at(
                    &value.span(),
                    "policy.prefix_limits".into(),
                    format!("{} is not a prefix length in 1..={max}", value.get_ref()),
                ),
            }
        }
        limits
    }

    /// Each map holds at most `capacity` prefixes per family: a list past
    /// it is refused here rather than half-loaded by the kernel.
    pub fn capacities(&mut self, policy: &Policy, capacity: usize) {
        for list in ListKind::ALL {
            let set = policy.list(list);
            for (family, count) in [("IPv4", set.v4.len()), ("IPv6", set.v6.len())] {
                if count > capacity {
                    self.key(
                        format!("policy.{}", list.name()),
                        format!("{count} {family} prefixes; the kernel map holds {capacity}"),
                    );
                }
            }
        }
    }

    /// A monitor pool inside a drop or reject prefix carves its addresses
    /// out of the stricter pool: legal (a staged rollout does exactly that
    /// the other way round), but worth a word.
    pub fn nested_monitor_pools(&mut self, policy: &Policy) -> Vec<ConfigProblem> {
        use op25b_common::abi::PoolAction;
        let action = |p: &Prefix| policy.pools.get(policy.pool_id(p) as usize);
        let mut warnings = Vec::new();
        for prefix in policy.dynamic.iter() {
            let Some(inner) = action(prefix).filter(|p| p.action == PoolAction::Monitor) else {
                continue;
            };
            let outer = (0..prefix.len())
                .rev()
                .filter_map(|len| prefix.covering(len))
                .find(|c| policy.dynamic.contains_exactly(c));
            let Some(outer) = outer else { continue };
            let Some(outer_pool) = action(&outer).filter(|p| p.action != PoolAction::Monitor)
            else {
                continue;
            };
            warnings.push(ConfigProblem {
                location: self.path.display().to_string(),
                key: Some("policy.pools".into()),
                message: format!(
                    "{prefix} of monitor pool {:?} lies inside {outer} of {} pool {:?}: its subscribers are only monitored",
                    inner.name,
                    outer_pool.action.name(),
                    outer_pool.name
                ),
            });
        }
        warnings
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

    pub fn ports(&mut self, ports: Option<&[Spanned<i64>]>) -> Vec<u16> {
        let Some(ports) = ports else {
            return Policy::default().blocked_ports;
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
