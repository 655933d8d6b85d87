//! The op25b-agent binary: parse the command line, set up logging, dispatch.
use std::process::ExitCode;

use clap::Parser as _;
use op25b_agent::cli::{Cli, LogFormat};

/// Big allocations on huge pages (see `huge_pages`).
#[global_allocator]
static ALLOCATOR: op25b_agent::huge_pages::HugePages = op25b_agent::huge_pages::HugePages;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("OP25B_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    cli.command.execute().unwrap_or_else(|e| {
        eprintln!("op25b-agent: {e}");
        ExitCode::FAILURE
    })
}
