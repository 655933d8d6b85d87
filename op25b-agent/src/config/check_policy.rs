//! The checks of `[policy]`: ports, prefixes and list files (with their
//! bounds), pools, the maps' capacity, and what is legal but worth a word.

use std::path::{Path, PathBuf};

use op25b_common::verdict::MAX_BLOCKED_PORTS;
use toml::Spanned;

use super::{
    check::Checker,
    raw::{PoolActionSetting, RawPool, RawPrefixLimits},
    ConfigProblem, SUBMISSION_PORTS,
};
use crate::policy::{
    limits::PrefixLimits,
    list_file::{admit_all, parse_entry, read_list_file, Admit},
    prefix::{Prefix, PrefixSet},
    ListKind, Policy,
};

impl Checker<'_> {
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
