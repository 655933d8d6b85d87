//! The command line. Each command is an args struct and an `execute` in
//! its own module; [`Command::execute`] is the one dispatch. Doc comments
//! here are the `--help` text and the man pages, written for the engineer
//! at the console.

mod check_config;
mod explain;
pub mod fleet;
pub mod grants;
mod hidden;
mod judging;
mod replay;
mod report;
mod run;
mod sessions;
mod status;
mod top;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    agent::AgentError,
    api::client::ClientError,
    config::{Config, ConfigError, DEFAULT_PIN_PATH},
    dataplane::DataplaneError,
    tools::{capture::CaptureError, replay::ReplayError},
};

/// op25b: Outbound Port 25 Blocking for carrier edge routers.
///
/// An XDP program drops TCP to port 25 from dynamic (residential) address
/// ranges at the subscriber-facing interfaces, except to the ISP's own relays
/// and from exempt subscribers. Submission (587, 465) is never blocked.
#[derive(Debug, Parser)]
#[command(name = "op25b-agent", version = crate::VERSION_LONG, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "OP25B_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    CheckConfig(check_config::CheckConfigArgs),
    Run(run::RunArgs),
    Status(status::StatusArgs),
    Explain(explain::ExplainArgs),
    Top(top::TopArgs),
    Fleet(fleet::FleetArgs),
    Report(report::ReportArgs),
    Sessions(sessions::SessionsArgs),
    /// Grant, revoke and list exemptions over the running agent's
    /// provisioning API (persisted, audited, optionally temporary).
    Exempt(grants::GrantArgs),
    /// Grant, revoke and list allowed destinations (relays) over the API.
    AllowDestination(grants::GrantArgs),
    Replay(replay::ReplayArgs),
    #[command(hide = true)]
    LabPassThrough(hidden::LabPassThroughArgs),
    #[command(hide = true)]
    Man(hidden::ManArgs),
    #[command(hide = true)]
    Completions(hidden::CompletionsArgs),
}

impl Command {
    /// Runs the command.
    pub fn execute(&self) -> Result<ExitCode, CommandError> {
        use crate::policy::grants::GrantList;
        match self {
            Self::CheckConfig(args) => check_config::execute(args),
            Self::Run(args) => run::execute(args),
            Self::Status(args) => status::execute(args),
            Self::Explain(args) => explain::execute(args),
            Self::Top(args) => top::execute(args),
            Self::Fleet(args) => fleet::execute(args),
            Self::Report(args) => report::execute(args),
            Self::Sessions(args) => sessions::execute(args),
            Self::Exempt(args) => grants::execute(GrantList::Exemptions, args),
            Self::AllowDestination(args) => grants::execute(GrantList::AllowedDestinations, args),
            Self::Replay(args) => replay::execute(args),
            Self::LabPassThrough(args) => hidden::lab_pass_through(args),
            Self::Man(args) => hidden::man(args),
            Self::Completions(args) => Ok(hidden::completions(args)),
        }
    }
}

/// `--config` where it is optional: what the command reads from the
/// agent's configuration when given (pin path, API, addresses).
#[derive(Debug, Args)]
pub struct ConfigOption {
    /// The agent's configuration (TOML).
    #[arg(long, env = "OP25B_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigOption {
    pub fn load(&self) -> Result<Option<Config>, CommandError> {
        Ok(self.config.as_deref().map(Config::load).transpose()?)
    }
}

/// `--pin-path`: where op25b's maps and links are pinned.
#[derive(Debug, Args)]
pub struct PinPathOption {
    /// The bpffs directory (default: the config's pin_path, else /sys/fs/bpf/op25b).
    #[arg(long)]
    pub pin_path: Option<PathBuf>,
}

impl PinPathOption {
    /// Explicit, else the config's, else the default.
    pub fn resolve(&self, config: Option<&Config>) -> PathBuf {
        self.pin_path.as_deref().map_or_else(
            || config.map_or_else(|| PathBuf::from(DEFAULT_PIN_PATH), |c| c.pin_path.clone()),
            Path::to_owned,
        )
    }
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonOption {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl JsonOption {
    /// Prints `value` as one line of JSON if asked to, else `text(value)`.
    pub fn print<T: serde::Serialize>(
        &self,
        value: &T,
        text: impl FnOnce(&mut dyn std::io::Write, &T) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.print_as(false, value, text)
    }

    /// Like [`Self::print`], with the JSON indented (a document, not a record).
    pub fn print_pretty<T: serde::Serialize>(
        &self,
        value: &T,
        text: impl FnOnce(&mut dyn std::io::Write, &T) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.print_as(true, value, text)
    }

    fn print_as<T: serde::Serialize>(
        &self,
        pretty: bool,
        value: &T,
        text: impl FnOnce(&mut dyn std::io::Write, &T) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if !self.json {
            return text(&mut out, value);
        }
        if pretty {
            serde_json::to_writer_pretty(&mut out, value)?;
        } else {
            serde_json::to_writer(&mut out, value)?;
        }
        writeln!(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("op25b is not loaded at {} (no pinned maps); give --config to judge with a configuration", .0.display())]
    NotLoaded(PathBuf),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("metrics.read_token_file: {0}")]
    ReadToken(#[from] crate::api::bearer::TokenError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::commands::FleetCommandError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}
