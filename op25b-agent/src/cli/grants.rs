//! `exempt …` and `allow-destination …`: grants over the running agent's
//! provisioning API.

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use clap::Subcommand;
use hyper::Method;

use super::CommandError;
use crate::policy::grants::{cli_actor, write_table};
use crate::{
    api::{
        client::{self, Endpoint, Reply},
        types::{GrantListAnswer, GrantRequest, RevokeRequest, Ttl},
    },
    config::{ApiConfig, Config},
    policy::grants::GrantList,
};

#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    #[command(subcommand)]
    action: GrantAction,
    #[command(flatten)]
    api: ApiArgs,
}

/// Where the provisioning API is and how to authenticate.
#[derive(Debug, clap::Args)]
struct ApiArgs {
    /// The agent's configuration (for [api] socket and token_file).
    #[arg(long, env = "OP25B_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The API's unix socket, overriding the config.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// File holding the bearer token, overriding the config.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum GrantAction {
    /// Grant PREFIX (a bare address means one host), or exempt a
    /// subscriber by name (`exempt add --subscriber alice@example.jp`).
    Add {
        #[arg(required_unless_present = "subscriber")]
        prefix: Option<String>,
        /// A RADIUS User-Name instead of a prefix: the exemption follows
        /// the subscriber's sessions (exemptions only).
        #[arg(long, conflicts_with = "prefix")]
        subscriber: Option<String>,
        /// Expire after this long: 7d, 12h, 3600 (seconds). Default: never.
        #[arg(long)]
        ttl: Option<Ttl>,
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// Revoke PREFIX, or the grant of `--subscriber NAME`.
    Del {
        #[arg(required_unless_present = "subscriber")]
        prefix: Option<String>,
        #[arg(long, conflicts_with = "prefix")]
        subscriber: Option<String>,
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// List the grants.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Who asks and why: both go into the audit log.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Why: a ticket reference or free text (audited).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who asks (audited); default "cli:$USER".
    #[arg(long)]
    actor: Option<String>,
}

impl AuditArgs {
    pub fn actor(&self) -> String {
        self.actor.clone().unwrap_or_else(cli_actor)
    }
}

impl ApiArgs {
    /// The endpoint and token: flags first, then the config's [api].
    fn resolve(&self) -> Result<(Endpoint, String), CommandError> {
        let config = self.config.as_deref().map(Config::load).transpose()?;
        let api = config.and_then(|c| c.api).unwrap_or_else(|| ApiConfig {
            listen_address: None,
            ..ApiConfig::default()
        });
        let endpoint = match (self.socket.clone(), api.socket, api.listen_address) {
            (Some(socket), _, _) | (None, Some(socket), _) => Endpoint::Unix(socket),
            (None, None, Some(address)) => Endpoint::Tcp(address),
            (None, None, None) => {
                return Err(CommandError::Usage(
                    "no API socket: give --socket or a config with [api]".into(),
                ))
            }
        };
        let token_file = self.token_file.clone().unwrap_or(api.token_file);
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| CommandError::Usage(format!("{}: {e}", token_file.display())))?;
        Ok((endpoint, token.trim().to_owned()))
    }
}

pub fn execute(list: GrantList, args: &GrantArgs) -> Result<ExitCode, CommandError> {
    let (endpoint, token) = args.api.resolve()?;
    let path = format!("/api/v1/{}", list.name());
    let (method, path, body) = match &args.action {
        GrantAction::Add {
            prefix,
            subscriber,
            ttl,
            audit,
        } => {
            let request = GrantRequest {
                prefix: prefix.clone().unwrap_or_default(),
                subscriber: subscriber.clone().unwrap_or_default(),
                ttl: *ttl,
                reason: audit.reason.clone(),
                actor: audit.actor(),
            };
            let body = serde_json::to_vec(&request).expect("request serializes");
            (Method::POST, path, Some(body))
        }
        GrantAction::Del {
            prefix,
            subscriber,
            audit,
        } => {
            let query = RevokeRequest {
                prefix: prefix.clone().unwrap_or_default(),
                subscriber: subscriber.clone().unwrap_or_default(),
                actor: audit.actor(),
                reason: audit.reason.clone(),
            }
            .to_query();
            (Method::DELETE, format!("{path}?{query}"), None)
        }
        GrantAction::List { .. } => (Method::GET, path, None),
    };
    let reply = client::request(&endpoint, method, &path, Some(&token), body)
        .map_err(|e| CommandError::Usage(format!("{e} (is the agent running with [api]?)")))?;
    if !(200..300).contains(&reply.status) {
        return Err(CommandError::Usage(format!(
            "{}: {}",
            reply.status,
            reply.error_message()
        )));
    }
    let mut out = io::stdout().lock();
    match &args.action {
        GrantAction::List { json: false } => print_list(&mut out, &endpoint, &reply)?,
        _ => writeln!(out, "{}", reply.text())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(
    out: &mut impl io::Write,
    endpoint: &Endpoint,
    reply: &Reply,
) -> Result<(), CommandError> {
    let answer: GrantListAnswer = serde_json::from_slice(&reply.body)
        .map_err(|e| CommandError::Usage(format!("bad answer from {endpoint}: {e}")))?;
    write_table(out, &answer.grants, &answer.subscribers)?;
    Ok(())
}
