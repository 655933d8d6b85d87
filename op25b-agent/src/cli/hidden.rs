//! Hidden commands: the lab's pass-through program, man pages, completions.

use std::{io, path::PathBuf, process::ExitCode};

use super::CommandError;
use crate::dataplane::DataplaneError;

/// Lab helper: attach a pass-through XDP program to IFACE and pin its
/// link at PIN. veth hands XDP_TX frames (op25b's resets) only to a
/// peer that runs XDP itself; real NICs need nothing of the kind.
#[derive(Debug, clap::Args)]
pub struct LabPassThroughArgs {
    iface: String,
    pin: PathBuf,
}

/// Write the man pages (op25b-agent.1 and one per subcommand) into DIR.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Output directory.
    dir: PathBuf,
}

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, ...
    shell: clap_complete::Shell,
}

pub fn lab_pass_through(args: &LabPassThroughArgs) -> Result<ExitCode, CommandError> {
    let mut ebpf =
        aya::Ebpf::load(crate::dataplane::BENCH_PROGRAMS_OBJECT).map_err(DataplaneError::from)?;
    let program: &mut aya::programs::Xdp = ebpf
        .program_mut("xdp_pass_any_mtu")
        .ok_or_else(|| CommandError::Usage("xdp_pass_any_mtu missing".into()))?
        .try_into()
        .map_err(DataplaneError::from)?;
    program.load().map_err(DataplaneError::from)?;
    let index = crate::dataplane::pins::ifindex(&args.iface)
        .ok_or_else(|| CommandError::Usage(format!("no interface {}", args.iface)))?;
    let id = program
        .attach_to_if_index(index, aya::programs::XdpMode::Driver)
        .map_err(DataplaneError::from)?;
    let link = program.take_link(id).map_err(DataplaneError::from)?;
    let link = aya::programs::links::FdLink::try_from(link)
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    link.pin(&args.pin)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", args.pin.display())))?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> Result<ExitCode, CommandError> {
    use clap::CommandFactory as _;
    std::fs::create_dir_all(&args.dir)?;
    clap_mangen::generate_to(super::Cli::command(), &args.dir)?;
    Ok(ExitCode::SUCCESS)
}

pub fn completions(args: &CompletionsArgs) -> ExitCode {
    use clap::CommandFactory as _;
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "op25b-agent", &mut io::stdout());
    ExitCode::SUCCESS
}
