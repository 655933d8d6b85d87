//! `[fleet]`: where the fleet's etcd is, how to authenticate, and where the
//! last applied fleet policy is kept for restarts while etcd is down.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[fleet]` as written (absent = fleet sync off).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    #[serde(default)]
    pub etcd_endpoints: Vec<String>,
    pub prefix: Option<String>,
    pub node_name: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub snapshot_file: Option<String>,
    /// `host:port` other boxes reach this agent's `/api/v1/top` at
    /// (`top --fleet`); default: `[metrics] listen_address`.
    pub advertise_address: Option<String>,
}

/// Client certificate and key for mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A validated `[fleet]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of this fleet, e.g. `/op25b` (no trailing slash).
    pub prefix: String,
    pub node_name: String,
    /// CA bundle that signs the etcd servers' certificates (TLS when set).
    pub ca_file: Option<PathBuf>,
    pub identity: Option<ClientIdentity>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub snapshot_file: PathBuf,
    pub advertise_address: Option<String>,
}

pub const DEFAULT_PREFIX: &str = "/op25b";
pub const DEFAULT_SNAPSHOT_FILE: &str = "/var/lib/op25b/fleet-snapshot.json";

/// One problem in `[fleet]`: the key and what is wrong.
pub type FleetConfigProblem = (String, String);

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The host name, as the default node name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl FleetConfig {
    #[expect(
        clippy::too_many_lines,
        reason = "one check per setting, in the section's order"
    )]
    /// Validates `raw`; relative file names resolve against `base` (the
    /// config file's directory). Every problem is returned, not the first.
    pub fn from_raw(raw: &RawFleet, base: &Path) -> Result<Self, Vec<FleetConfigProblem>> {
        let mut problems: Vec<FleetConfigProblem> = Vec::new();
        let mut problem =
            |key: &str, message: String| problems.push((format!("fleet.{key}"), message));
        let file = |value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| base.join(v))
        };
        let ca_file = file(&raw.ca_file);
        if raw.etcd_endpoints.is_empty() {
            problem(
                "etcd_endpoints",
                "give at least one endpoint, e.g. \"https://10.0.0.5:2379\"".into(),
            );
        }
        for (i, endpoint) in raw.etcd_endpoints.iter().enumerate() {
            let rest = endpoint
                .strip_prefix("https://")
                .map(|r| (r, true))
                .or_else(|| endpoint.strip_prefix("http://").map(|r| (r, false)));
            match rest {
                None => problem(
                    &format!("etcd_endpoints[{i}]"),
                    format!("{endpoint:?}: give http://HOST:PORT or https://HOST:PORT"),
                ),
                Some((hostport, tls)) => {
                    let port_ok = hostport.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                    });
                    if !port_ok || hostport.contains('/') {
                        problem(
                            &format!("etcd_endpoints[{i}]"),
                            format!("{endpoint:?}: give HOST:PORT after the scheme, nothing else"),
                        );
                    }
                    if tls != ca_file.is_some() {
                        problem(
                            &format!("etcd_endpoints[{i}]"),
                            if tls {
                                format!("{endpoint:?} is https: set ca_file to the CA that signs etcd's certificate")
                            } else {
                                format!(
                                    "{endpoint:?} is plain http but ca_file is set: use https://"
                                )
                            },
                        );
                    }
                }
            }
        }
        let prefix = raw.prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.into());
        let prefix_ok = prefix.starts_with('/')
            && prefix.len() > 1
            && prefix.len() <= 128
            && !prefix.ends_with('/')
            && !prefix.contains("//")
            && prefix.bytes().all(|b| b.is_ascii_graphic());
        if !prefix_ok {
            problem(
                "prefix",
                format!("{prefix:?}: give a key prefix like \"/op25b\" (leading '/', no trailing '/', printable ASCII)"),
            );
        }
        let node_name = raw
            .node_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(hostname);
        if !valid_name(&node_name) {
            problem(
                "node_name",
                format!("{node_name:?}: use 1-64 of A-Z, a-z, 0-9, '-', '_', '.'"),
            );
        }
        let identity = match (file(&raw.cert_file), file(&raw.key_file)) {
            (Some(cert_file), Some(key_file)) => Some(ClientIdentity {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            _ => {
                problem("cert_file", "cert_file and key_file go together".into());
                None
            }
        };
        if identity.is_some() && ca_file.is_none() {
            problem(
                "cert_file",
                "a client certificate needs TLS: set ca_file and https:// endpoints".into(),
            );
        }
        let username = raw.username.clone().filter(|u| !u.is_empty());
        let password_file = file(&raw.password_file);
        if username.is_some() != password_file.is_some() {
            problem("username", "username and password_file go together".into());
        }
        let snapshot_file =
            file(&raw.snapshot_file).unwrap_or_else(|| PathBuf::from(DEFAULT_SNAPSHOT_FILE));
        let advertise_address = raw.advertise_address.clone().filter(|a| !a.is_empty());
        if let Some(address) = &advertise_address {
            if address
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                problem("advertise_address", format!("{address:?} is not HOST:PORT"));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            etcd_endpoints: raw.etcd_endpoints.clone(),
            prefix,
            node_name,
            ca_file,
            identity,
            username,
            password_file,
            snapshot_file,
            advertise_address,
        })
    }
}

/// `[fleet]` among the other sections: problems join the file's list.
impl super::check::Checker<'_> {
    pub fn fleet(&mut self, raw: &RawFleet) -> Option<FleetConfig> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        FleetConfig::from_raw(raw, base)
            .map_err(|problems| {
                for (key, message) in problems {
                    self.key(key, message);
                }
            })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FleetConfig, Vec<FleetConfigProblem>> {
        let raw: RawFleet = toml::from_str(text).unwrap();
        FleetConfig::from_raw(&raw, Path::new("/etc/op25b"))
    }

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let c = parse(
            r#"
etcd_endpoints = ["https://10.0.0.5:2379", "https://10.0.0.6:2379"]
prefix = "/op25b"
node_name = ""
ca_file = "ca.pem"
cert_file = ""
key_file = ""
username = ""
password_file = ""
snapshot_file = "/var/lib/op25b/fleet-snapshot.json"
"#,
        )
        .unwrap();
        assert_eq!(c.prefix, "/op25b");
        assert_eq!(c.node_name, hostname());
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/op25b/ca.pem")));
        assert_eq!(c.identity, None);
        assert_eq!(c.snapshot_file, PathBuf::from(DEFAULT_SNAPSHOT_FILE));
    }

    #[test]
    fn each_bad_setting_names_its_key() {
        let cases: &[(&str, &str)] = &[
            ("", "fleet.etcd_endpoints: give at least one"),
            (
                "etcd_endpoints = [\"10.0.0.5:2379\"]",
                "fleet.etcd_endpoints[0]: \"10.0.0.5:2379\": give http://",
            ),
            (
                "etcd_endpoints = [\"http://10.0.0.5\"]",
                "fleet.etcd_endpoints[0]: \"http://10.0.0.5\": give HOST:PORT",
            ),
            (
                "etcd_endpoints = [\"https://10.0.0.5:2379\"]",
                "fleet.etcd_endpoints[0]: \"https://10.0.0.5:2379\" is https: set ca_file",
            ),
            (
                "etcd_endpoints = [\"http://h:1\"]\nca_file = \"ca.pem\"",
                "fleet.etcd_endpoints[0]: \"http://h:1\" is plain http but ca_file is set",
            ),
            (
                "etcd_endpoints = [\"http://h:1\"]\nprefix = \"op25b/\"",
                "fleet.prefix: \"op25b/\"",
            ),
            (
                "etcd_endpoints = [\"http://h:1\"]\nnode_name = \"edge 1\"",
                "fleet.node_name: \"edge 1\"",
            ),
            (
                "etcd_endpoints = [\"http://h:1\"]\ncert_file = \"c.pem\"",
                "fleet.cert_file: cert_file and key_file go together",
            ),
            (
                "etcd_endpoints = [\"http://h:1\"]\nusername = \"op25b\"",
                "fleet.username: username and password_file go together",
            ),
            (
                "etcd_endpoints = [\"http://h:1\"]\nadvertise_address = \"nowhere\"",
                "fleet.advertise_address",
            ),
        ];
        for (text, expected) in cases {
            let problems = parse(text).expect_err(text);
            let text_problems: Vec<String> =
                problems.iter().map(|(k, m)| format!("{k}: {m}")).collect();
            assert!(
                text_problems.iter().any(|p| p.starts_with(expected)),
                "{text:?}: wanted {expected:?}, got {text_problems:?}"
            );
        }
    }
}
