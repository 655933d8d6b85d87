//! The configuration file as TOML gives it: strict (unknown keys refused),
//! with spans kept where a later check needs to name a line.

use serde::Deserialize;
use toml::Spanned;

use super::{InterfaceConfig, MetricsConfig, OnExit};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub pin_path: Option<Spanned<String>>,
    #[serde(default)]
    pub on_exit: Option<OnExit>,
    #[serde(default)]
    pub interfaces: Vec<InterfaceConfig>,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub events: RawEvents,
    #[serde(default)]
    pub api: Option<RawApi>,
    #[serde(default)]
    pub radius: Option<RawRadius>,
    #[serde(default)]
    pub fleet: Option<super::fleet::RawFleet>,
    /// `[reports]`: its keys and checks live with the reports (`crate::report::config`).
    #[serde(default)]
    pub reports: Option<Spanned<crate::report::config::RawReports>>,
}

/// `[radius]`: RADIUS accounting and CoA (absent = off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRadius {
    pub accounting_listen: Option<Spanned<String>>,
    pub coa_listen: Option<Spanned<String>>,
    pub session_state_file: Option<Spanned<String>>,
    pub max_sessions: Option<Spanned<i64>>,
    pub receive_buffer_bytes: Option<Spanned<i64>>,
    pub exempt_filter_id: Option<Spanned<String>>,
    #[serde(default)]
    pub clients: Vec<RawRadiusClient>,
}

/// `[[radius.clients]]`: who may send, and the shared secret's file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRadiusClient {
    pub address: Spanned<String>,
    pub secret_file: Spanned<String>,
}

/// `[api]`: the provisioning API (absent = off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub socket: Option<String>,
    pub listen_address: Option<String>,
    pub token_file: Option<String>,
    pub state_file: Option<String>,
    pub audit_log: Option<String>,
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub path: Option<String>,
    pub max_file_bytes: Option<Spanned<i64>>,
    pub max_files: Option<Spanned<i64>>,
    pub per_source_interval_seconds: Option<Spanned<f64>>,
    pub top_capacity: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub blocked_ports: Option<Vec<Spanned<i64>>>,
    #[serde(default)]
    pub dynamic: Vec<Spanned<String>>,
    #[serde(default)]
    pub dynamic_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub exempt: Vec<Spanned<String>>,
    #[serde(default)]
    pub exempt_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_destinations_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub pools: Vec<RawPool>,
    #[serde(default)]
    pub prefix_limits: Option<RawPrefixLimits>,
    #[serde(default)]
    pub exempt_subscribers: Vec<Spanned<String>>,
    #[serde(default)]
    pub exempt_subscribers_files: Vec<Spanned<String>>,
}

/// `[policy.prefix_limits]`: the broadest exemption and relay entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrefixLimits {
    pub exempt_ipv4: Option<Spanned<i64>>,
    pub exempt_ipv6: Option<Spanned<i64>>,
    pub allowed_destinations_ipv4: Option<Spanned<i64>>,
    pub allowed_destinations_ipv6: Option<Spanned<i64>>,
}

/// `[[policy.pools]]`: dynamic prefixes with their own action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Spanned<String>,
    pub action: PoolActionSetting,
    #[serde(default)]
    pub prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PoolActionSetting {
    Monitor,
    Drop,
    Reject,
}
