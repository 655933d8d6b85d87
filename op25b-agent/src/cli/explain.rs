//! `explain SRC DST [--port P]`.

use std::{net::IpAddr, process::ExitCode};

use super::{
    judging,
    sessions::{admin_endpoint, session_of, SessionOf},
    CommandError, ConfigOption, JsonOption, PinPathOption,
};

/// Explain the verdict for a connection: runs a synthesized TCP SYN
/// through the real XDP program and prints action, reason and the
/// prefixes that matched.
///
/// Uses the live pinned maps when op25b is loaded, else the policy of
/// --config. Test runs never touch the live counters. Names the RADIUS
/// session holding the source and why it is exempt, asked of the running
/// agent (when it cannot be asked, sessions are reported unknown).
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Source address (the subscriber).
    src: IpAddr,
    /// Destination address (the mail server).
    dst: IpAddr,
    /// TCP destination port.
    #[arg(long, default_value_t = 25)]
    port: u16,
    #[command(flatten)]
    config: ConfigOption,
    #[command(flatten)]
    pins: PinPathOption,
    /// The agent's HTTP (metrics) address for the session, overriding the config.
    #[arg(long)]
    agent: Option<String>,
    #[command(flatten)]
    output: JsonOption,
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
    session: SessionOf,
}

pub fn execute(args: &ExplainArgs) -> Result<ExitCode, CommandError> {
    let (src, dst, port) = (args.src, args.dst, args.port);
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(CommandError::Usage(format!(
            "{src} and {dst} are of different address families"
        )));
    }
    let config = args.config.load()?;
    let pins = args.pins.resolve(config.as_ref());
    let judging = judging::live_or_configured(config.as_ref(), &pins, false)?;
    let frame = crate::tools::syn::tcp_syn(src, dst, port);
    let judgement = judging.dataplane.judge(&frame)?;
    let policy = &judging.policy;
    let e = Explanation {
        src,
        dst,
        port,
        action: judgement.reason.action().name(),
        reason: judgement.reason.name(),
        judged_against: judging.against.clone(),
        blocked_ports: policy.blocked_ports.clone(),
        dynamic_match: policy.dynamic.longest_match(src).map(|p| p.to_string()),
        allowed_destination_match: policy
            .allowed_destinations
            .longest_match(dst)
            .map(|p| p.to_string()),
        exempt_match: policy.exempt.longest_match(src).map(|p| p.to_string()),
        session: match admin_endpoint(config.as_ref(), args.agent.as_deref()) {
            Ok(admin) => session_of(&admin, src),
            Err(e) => SessionOf::Unknown { why: e.to_string() },
        },
    };
    args.output.print(&e, |out, e| {
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
        writeln!(out, "  RADIUS session: {}", e.session)
    })?;
    Ok(ExitCode::SUCCESS)
}
