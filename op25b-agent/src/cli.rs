//! The command line. Doc comments here are the `--help` text (and later the
//! man page), so they are written for the engineer at the console.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Validate a configuration and every list file it names, and print how
    /// many prefixes each list holds per address family.
    ///
    /// Exits non-zero, listing every problem with its file:line and key,
    /// when anything is wrong. Needs no privileges.
    CheckConfig {
        /// The configuration file (TOML).
        config: PathBuf,
    },

    /// Run every frame of a capture through the real XDP program and print
    /// one JSON verdict per frame.
    ///
    /// stdout gets {"frame":N,"action":"pass"|"drop","reason":"..."} per
    /// frame (N from 1); stderr gets a per-reason summary and the program's
    /// verifier instruction count. Takes pcap or pcapng with Ethernet link
    /// type (tcpdump -i IFACE -w FILE). Loads the program without attaching
    /// it anywhere; needs root (CAP_BPF).
    Replay {
        /// The configuration whose policy to judge with.
        #[arg(long, env = "OP25B_CONFIG")]
        config: PathBuf,
        /// The capture file (pcap or pcapng).
        capture: PathBuf,
    },
}
