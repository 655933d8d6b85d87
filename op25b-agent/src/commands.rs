//! What each subcommand does; `main` only parses and dispatches.

use std::{
    io::{self, Write as _},
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use op25b_common::Reason;

use crate::{
    agent::{Agent, AgentError},
    capture::{Capture, CaptureError},
    config::{Config, ConfigError, MetricsConfig, DEFAULT_PIN_PATH},
    dataplane::{read_pinned_runtime_config, Dataplane, DataplaneError, Maps, RUNTIME_CONFIG_PIN},
    frame::FrameSpec,
    pins::PinLayout,
    policy::ListKind,
    policy::Policy,
    replay::{replay, ReplayError},
};

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
    Io(#[from] io::Error),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("op25b is not loaded at {} (no pinned maps); give --config to judge with a configuration", .0.display())]
    NotLoaded(PathBuf),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::commands::FleetCommandError),
}

fn fleet_config(config: Option<&Path>) -> Result<&Path, CommandError> {
    config.ok_or_else(|| CommandError::Usage("give --config FILE with a [fleet] section".into()))
}

/// `fleet push|status|exempt|allow-destination` (see fleet::commands).
pub fn fleet(
    config: Option<&Path>,
    action: &crate::cli::FleetAction,
) -> Result<ExitCode, CommandError> {
    use crate::{cli::FleetAction, fleet::commands as fc, policy::ListKind};
    let config = fleet_config(config)?;
    Ok(match action {
        FleetAction::Push { dry_run } => fc::push(config, *dry_run)?,
        FleetAction::Status { json } => fc::status(config, *json)?,
        FleetAction::Exempt { action } => fc::grant(config, ListKind::Exempt, action)?,
        FleetAction::AllowDestination { action } => {
            fc::grant(config, ListKind::AllowedDestinations, action)?
        }
    })
}

/// `top --fleet`.
pub fn fleet_top(
    config: Option<&Path>,
    window: &str,
    limit: usize,
    json: bool,
) -> Result<ExitCode, CommandError> {
    Ok(crate::fleet::commands::top(
        fleet_config(config)?,
        window,
        limit,
        json,
    )?)
}

/// `check-config FILE`.
pub fn check_config(path: &Path) -> Result<ExitCode, CommandError> {
    let config = Config::load(path)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}: OK", path.display())?;
    writeln!(out, "blocked_ports: {:?}", config.policy.blocked_ports)?;
    for kind in ListKind::ALL {
        let list = config.policy.list(kind);
        writeln!(
            out,
            "{}: {} IPv4, {} IPv6 prefixes",
            kind.name(),
            list.v4.len(),
            list.v6.len()
        )?;
        if !list.expiring.is_empty() {
            let now = crate::clock::now_unix();
            let expired = list.expiring.values().filter(|&&t| t <= now).count();
            writeln!(
                out,
                "  {} temporary (expires_at), {expired} of them already expired",
                list.expiring.len()
            )?;
        }
    }
    for iface in &config.interfaces {
        writeln!(
            out,
            "interface {}: xdp_mode {}",
            iface.name,
            iface.xdp_mode.name()
        )?;
    }
    writeln!(out, "pin_path: {}", config.pin_path.display())?;
    Ok(ExitCode::SUCCESS)
}

/// `run --config FILE`.
pub fn run(config: &Path) -> Result<ExitCode, CommandError> {
    let config = Config::load(config)?;
    Agent::start(config)?.run()?;
    Ok(ExitCode::SUCCESS)
}

/// The pin directory: explicit, else the config's, else the default.
fn pin_path(explicit: Option<&Path>, config: Option<&Config>) -> PathBuf {
    explicit.map_or_else(
        || config.map_or_else(|| PathBuf::from(DEFAULT_PIN_PATH), |c| c.pin_path.clone()),
        Path::to_owned,
    )
}

fn load_optional(config: Option<&Path>) -> Result<Option<Config>, CommandError> {
    Ok(config.map(Config::load).transpose()?)
}

/// `status`.
pub fn status(
    config: Option<&Path>,
    explicit_pin_path: Option<&Path>,
    json: bool,
) -> Result<ExitCode, CommandError> {
    let config = load_optional(config)?;
    let status = crate::status::read(
        &pin_path(explicit_pin_path, config.as_ref()),
        config.as_ref(),
    );
    let mut out = io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        )?;
    } else {
        write!(out, "{}", status.to_text())?;
    }
    Ok(if status.loaded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// A data plane to judge with: the live pinned policy if op25b is loaded
/// there, else the configuration's.
fn judging_dataplane(
    config: Option<&Config>,
    pins: &Path,
    live_only: bool,
) -> Result<(Dataplane, Policy, String), CommandError> {
    let maps = PinLayout::new(pins).maps_dir();
    if read_pinned_runtime_config(&maps.join(RUNTIME_CONFIG_PIN)).is_some() {
        let mut dataplane = Dataplane::load(&Maps::PinnedPolicy(maps.clone()), 0)?;
        let policy = dataplane.read_policy()?;
        return Ok((
            dataplane,
            policy,
            format!("the live maps at {}", maps.display()),
        ));
    }
    if live_only {
        return Err(CommandError::NotLoaded(pins.to_owned()));
    }
    let config = config.ok_or_else(|| CommandError::NotLoaded(pins.to_owned()))?;
    configured_dataplane(config)
}

/// A private data plane holding `config`'s policy as of now (entries past
/// their `expires_at` left out, as the agent would enforce it).
fn configured_dataplane(config: &Config) -> Result<(Dataplane, Policy, String), CommandError> {
    let policy = config.policy.active(crate::clock::now_unix());
    let mut dataplane = Dataplane::load(&Maps::Private, 0)?;
    dataplane.apply(&policy)?;
    Ok((
        dataplane,
        policy,
        format!("the policy of {}", config.path.display()),
    ))
}

#[derive(serde::Serialize)]
struct Explanation {
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    action: &'static str,
    reason: &'static str,
    judged_against: String,
    blocked_ports: Vec<u16>,
    dynamic_match: Option<String>,
    allowed_destination_match: Option<String>,
    exempt_match: Option<String>,
}

/// `explain SRC DST [--port P]`.
pub fn explain(
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    config: Option<&Path>,
    explicit_pin_path: Option<&Path>,
    json: bool,
) -> Result<ExitCode, CommandError> {
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(CommandError::Usage(format!(
            "{src} and {dst} are of different address families"
        )));
    }
    let config = load_optional(config)?;
    let pins = pin_path(explicit_pin_path, config.as_ref());
    let (dataplane, policy, against) = judging_dataplane(config.as_ref(), &pins, false)?;
    let frame = FrameSpec::tcp_syn(src, dst, port).build();
    let judgement = dataplane.judge(&frame)?;
    let e = Explanation {
        src,
        dst,
        port,
        action: judgement.reason.action().name(),
        reason: judgement.reason.name(),
        judged_against: against,
        blocked_ports: policy.blocked_ports.clone(),
        dynamic_match: policy.dynamic.longest_match(src).map(|p| p.to_string()),
        allowed_destination_match: policy
            .allowed_destinations
            .longest_match(dst)
            .map(|p| p.to_string()),
        exempt_match: policy.exempt.longest_match(src).map(|p| p.to_string()),
    };
    let mut out = io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&e).expect("explanation serializes")
        )?;
    } else {
        let yes = |m: &Option<String>| {
            m.as_ref()
                .map_or_else(|| "no".to_owned(), |p| format!("yes ({p})"))
        };
        writeln!(
            out,
            "{src} -> {dst} port {port}/tcp SYN: {} ({})",
            e.action, e.reason
        )?;
        writeln!(
            out,
            "  judged by the XDP program against {}",
            e.judged_against
        )?;
        writeln!(out, "  blocked ports: {:?}", e.blocked_ports)?;
        writeln!(
            out,
            "  source in a dynamic prefix: {}",
            yes(&e.dynamic_match)
        )?;
        writeln!(
            out,
            "  destination is an allowed relay: {}",
            yes(&e.allowed_destination_match)
        )?;
        writeln!(out, "  source is exempt: {}", yes(&e.exempt_match))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `exempt …` / `allow-destination …`: one API request.
pub fn grant(
    list: &str,
    action: &crate::cli::GrantAction,
    api: &crate::cli::ApiArgs,
) -> Result<ExitCode, CommandError> {
    use crate::cli::GrantAction;
    let config = load_optional(api.config.as_deref())?;
    let defaults = config
        .as_ref()
        .and_then(|c| c.api.clone())
        .unwrap_or_default();
    let socket = api.socket.clone().or(defaults.socket).ok_or_else(|| {
        CommandError::Usage("no API socket: give --socket or a config with [api]".into())
    })?;
    let token_file = api.token_file.clone().unwrap_or(defaults.token_file);
    let token = std::fs::read_to_string(&token_file)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", token_file.display())))?;
    let path = format!("/api/v1/{list}");
    let (method, path, body) = match action {
        GrantAction::Add {
            prefix,
            ttl,
            reason,
            actor,
        } => {
            let actor = actor.clone().unwrap_or_else(|| {
                format!(
                    "cli:{}",
                    std::env::var("USER").unwrap_or_else(|_| "root".into())
                )
            });
            let body = serde_json::json!({ "prefix": prefix, "ttl": ttl, "reason": reason, "actor": actor });
            ("POST", path, Some(body.to_string()))
        }
        GrantAction::Del { prefix } => (
            "DELETE",
            format!("{path}?prefix={}", prefix.replace('/', "%2F")),
            None,
        ),
        GrantAction::List { .. } => ("GET", path, None),
    };
    let (status, answer) =
        crate::provisioning::request(&socket, token.trim(), method, &path, body.as_deref())
            .map_err(|e| {
                CommandError::Usage(format!(
                    "{}: {e} (is the agent running with [api]?)",
                    socket.display()
                ))
            })?;
    let mut out = io::stdout().lock();
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(answer);
        return Err(CommandError::Usage(format!("{status}: {message}")));
    }
    match action {
        GrantAction::List { json: false } => {
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            for g in v[list].as_array().into_iter().flatten() {
                let expires = g["expires_at"]
                    .as_u64()
                    .map_or_else(|| "never".to_owned(), crate::clock::rfc3339);
                writeln!(
                    out,
                    "{:<40} expires {:<22} by {:<16} {}",
                    g["prefix"].as_str().unwrap_or(""),
                    expires,
                    g["actor"].as_str().unwrap_or(""),
                    g["reason"].as_str().unwrap_or("")
                )?;
            }
        }
        _ => writeln!(out, "{answer}")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `lab-pass-through IFACE PIN` (hidden).
pub fn lab_pass_through(iface: &str, pin: &Path) -> Result<ExitCode, CommandError> {
    let mut ebpf =
        aya::Ebpf::load(crate::dataplane::BENCH_PROGRAMS_OBJECT).map_err(DataplaneError::from)?;
    let program: &mut aya::programs::Xdp = ebpf
        .program_mut("xdp_pass_floor")
        .ok_or_else(|| CommandError::Usage("xdp_pass_floor missing".into()))?
        .try_into()
        .map_err(DataplaneError::from)?;
    program.load().map_err(DataplaneError::from)?;
    let index = crate::pins::ifindex(iface)
        .ok_or_else(|| CommandError::Usage(format!("no interface {iface}")))?;
    let id = program
        .attach_to_if_index(index, aya::programs::XdpMode::Driver)
        .map_err(DataplaneError::from)?;
    let link = program.take_link(id).map_err(DataplaneError::from)?;
    let link = aya::programs::links::FdLink::try_from(link)
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    link.pin(pin)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", pin.display())))?;
    Ok(ExitCode::SUCCESS)
}

/// `man DIR`: one page for the tool and one per subcommand.
pub fn man(dir: &Path) -> Result<ExitCode, CommandError> {
    use clap::CommandFactory as _;
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(crate::cli::Cli::command(), dir)?;
    Ok(ExitCode::SUCCESS)
}

/// `completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory as _;
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(shell, &mut cmd, "op25b-agent", &mut io::stdout());
    ExitCode::SUCCESS
}

/// `top [--window 1h]`: asks the running agent.
pub fn top(
    window: &str,
    limit: usize,
    config: Option<&Path>,
    address: Option<&str>,
    json: bool,
) -> Result<ExitCode, CommandError> {
    let config = load_optional(config)?;
    let address = address.map_or_else(
        || {
            config.as_ref().map_or_else(
                || MetricsConfig::default().listen_address,
                |c| c.metrics.listen_address.clone(),
            )
        },
        str::to_owned,
    );
    let body = crate::http::get(
        &address,
        &format!("/api/v1/top?window={window}&limit={limit}"),
    )?;
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{body}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let answer: crate::http::TopAnswer = serde_json::from_str(&body)
        .map_err(|e| CommandError::Usage(format!("bad answer from {address}: {e}")))?;
    writeln!(
        out,
        "{:<40} {:>10} {:>8} {:<20} {:<20} {:>6}",
        "source", "attempts", "±error", "first seen", "last seen", "dests"
    )?;
    for s in &answer.sources {
        writeln!(
            out,
            "{:<40} {:>10} {:>8} {:<20} {:<20} {:>6}",
            s.source, s.attempts, s.error, s.first_seen, s.last_seen, s.distinct_destinations
        )?;
    }
    if answer.sources.is_empty() {
        writeln!(
            out,
            "(no blocked connection attempts in the last {} s)",
            answer.window_seconds
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `replay [--config FILE | --live] CAPTURE`.
pub fn replay_capture(
    config: Option<&Path>,
    live: bool,
    explicit_pin_path: Option<&Path>,
    capture: &Path,
) -> Result<ExitCode, CommandError> {
    let config = load_optional(config)?;
    let mut capture = Capture::open(capture)?;
    let (mut dataplane, _, against) = if live {
        judging_dataplane(
            config.as_ref(),
            &pin_path(explicit_pin_path, config.as_ref()),
            true,
        )?
    } else {
        let config = config
            .as_ref()
            .expect("clap requires --config without --live");
        configured_dataplane(config)?
    };
    let stdout = io::stdout().lock();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
    let summary = replay(&mut dataplane, &mut capture, &mut out)?;

    let mut err = io::stderr().lock();
    writeln!(err, "{} frames, judged against {against}", summary.frames)?;
    for reason in Reason::ALL {
        writeln!(
            err,
            "  {:<16} {:<4} {}",
            reason.name(),
            reason.action().name(),
            summary.count(reason)
        )?;
    }
    if summary.shorter_than_ethernet > 0 {
        writeln!(
            err,
            "  ({} frames shorter than an Ethernet header counted malformed without a test run)",
            summary.shorter_than_ethernet
        )?;
    }
    if summary.cut_for_test_run > 0 {
        writeln!(
            err,
            "  ({} frames longer than {} bytes were cut to that length for the test run)",
            summary.cut_for_test_run,
            crate::dataplane::TEST_RUN_MAX_FRAME
        )?;
    }
    if summary.cut_by_snaplen > 0 {
        writeln!(
            err,
            "  ({} frames were cut by the capture's snap length and judged on what was captured)",
            summary.cut_by_snaplen
        )?;
    }
    match dataplane.verified_instructions() {
        Some(n) => writeln!(
            err,
            "program: {n} instructions processed by the verifier (limit 1000000)"
        )?,
        None => writeln!(
            err,
            "program: the kernel did not report its verified instruction count"
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
