//! The op25b-agent binary: parse the command line, set up logging, dispatch.
use std::process::ExitCode;

use clap::Parser as _;
use op25b_agent::{
    cli::{Cli, Command, LogFormat},
    commands,
};

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
    let result = match &cli.command {
        Command::CheckConfig { config } => commands::check_config(config),
        Command::Run { config } => commands::run(config),
        Command::Status {
            config,
            pin_path,
            json,
        } => commands::status(config.as_deref(), pin_path.as_deref(), *json),
        Command::Explain {
            src,
            dst,
            port,
            config,
            pin_path,
            json,
        } => commands::explain(
            *src,
            *dst,
            *port,
            config.as_deref(),
            pin_path.as_deref(),
            *json,
        ),
        Command::Top {
            window,
            limit,
            config,
            address,
            json,
            fleet,
        } => {
            if *fleet {
                commands::fleet_top(config.as_deref(), window, *limit, *json)
            } else {
                commands::top(window, *limit, config.as_deref(), address.as_deref(), *json)
            }
        }
        Command::Fleet { config, action } => commands::fleet(config.as_deref(), action),
        Command::Man { dir } => commands::man(dir),
        Command::LabPassThrough { iface, pin } => commands::lab_pass_through(iface, pin),
        Command::Exempt { action, api } => commands::grant("exemptions", action, api),
        Command::AllowDestination { action, api } => {
            commands::grant("allowed_destinations", action, api)
        }
        Command::Completions { shell } => Ok(commands::completions(*shell)),
        Command::Replay {
            config,
            live,
            pin_path,
            capture,
        } => commands::replay_capture(config.as_deref(), *live, pin_path.as_deref(), capture),
    };
    result.unwrap_or_else(|e| {
        eprintln!("op25b-agent: {e}");
        ExitCode::FAILURE
    })
}
