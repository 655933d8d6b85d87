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

/// Where the provisioning API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The agent's configuration (for [api] socket and token_file).
    #[arg(long, env = "OP25B_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The API's unix socket, overriding the config.
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// File holding the bearer token, overriding the config.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GrantAction {
    /// Grant PREFIX (a bare address means one host).
    Add {
        prefix: String,
        /// Expire after this long: 7d, 12h, 3600s. Default: never.
        #[arg(long)]
        ttl: Option<String>,
        /// Why: a ticket reference or free text (audited).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who asks (audited); default "cli:$USER".
        #[arg(long)]
        actor: Option<String>,
    },
    /// Revoke PREFIX.
    Del { prefix: String },
    /// List the grants.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// Publish the lists and pools of --config to etcd, validated first
    /// exactly as check-config does; prints the diff against what is
    /// published. Blocked ports and interfaces stay per box.
    Push {
        /// Show the diff, publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List every agent of the fleet: applied revision, interfaces, last
    /// error; flags agents behind the latest revision or gone (exit 4).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Grant, revoke and list exemptions for every box (in etcd, audited).
    Exempt {
        #[command(subcommand)]
        action: GrantAction,
    },
    /// Grant, revoke and list allowed destinations for every box.
    AllowDestination {
        #[command(subcommand)]
        action: GrantAction,
    },
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

    /// Enforce: attach to the configured interfaces and keep the maps equal
    /// to the configuration until SIGTERM.
    ///
    /// Adopts a running op25b (pinned program, maps and links) without a
    /// gap; reloads on SIGHUP and whenever the config or a list file
    /// changes. A configuration with any error is refused and the running
    /// policy stays. Needs CAP_BPF, CAP_NET_ADMIN (and CAP_SYS_ADMIN to
    /// mount bpffs if it is not mounted).
    Run {
        /// The configuration file (TOML).
        #[arg(long, env = "OP25B_CONFIG")]
        config: PathBuf,
    },

    /// Show what is enforced now: interfaces and their XDP mode, list
    /// sizes, blocked ports and per-reason counters, read from the pinned
    /// objects (works whether or not the agent runs).
    Status {
        /// Also list configured interfaces that are not attached.
        #[arg(long, env = "OP25B_CONFIG")]
        config: Option<PathBuf>,
        /// The bpffs directory (default: the config's pin_path, else /sys/fs/bpf/op25b).
        #[arg(long)]
        pin_path: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Explain the verdict for a connection: runs a synthesized TCP SYN
    /// through the real XDP program and prints action, reason and the
    /// prefixes that matched.
    ///
    /// Uses the live pinned maps when op25b is loaded, else the policy of
    /// --config. Test runs never touch the live counters.
    Explain {
        /// Source address (the subscriber).
        src: std::net::IpAddr,
        /// Destination address (the mail server).
        dst: std::net::IpAddr,
        /// TCP destination port.
        #[arg(long, default_value_t = 25)]
        port: u16,
        /// Configuration to judge with when op25b is not loaded (and where its pin_path is).
        #[arg(long, env = "OP25B_CONFIG")]
        config: Option<PathBuf>,
        /// The bpffs directory (default: the config's pin_path, else /sys/fs/bpf/op25b).
        #[arg(long)]
        pin_path: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Suspected infected subscribers: the sources with the most blocked
    /// connection attempts in a window, asked of the running agent.
    ///
    /// Counts come from the kernel's block events (each carries the
    /// attempts the per-source rate limit folded into it); memory is
    /// bounded by a Space-Saving sketch per 5-minute bucket, kept 24 h.
    Top {
        /// How far back: 1h, 30m, 24h (5-minute resolution).
        #[arg(long, default_value = "1h")]
        window: String,
        /// How many sources.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The agent's configuration (for its metrics.listen_address).
        #[arg(long, env = "OP25B_CONFIG")]
        config: Option<PathBuf>,
        /// The agent's HTTP address, overriding the config.
        #[arg(long)]
        address: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Ask every agent registered in the fleet (--config names [fleet])
        /// and merge their answers.
        #[arg(long)]
        fleet: bool,
    },

    /// Fleet sync on etcd: publish lists to every box, grant for every box,
    /// and see every agent's state.
    Fleet {
        /// A configuration with [fleet] (where etcd is and how to log in);
        /// for `push` also the lists and pools to publish.
        #[arg(long, env = "OP25B_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: FleetAction,
    },

    /// Grant, revoke and list exemptions over the running agent's
    /// provisioning API (persisted, audited, optionally temporary).
    Exempt {
        #[command(subcommand)]
        action: GrantAction,
        #[command(flatten)]
        api: ApiArgs,
    },

    /// Grant, revoke and list allowed destinations (relays) over the API.
    AllowDestination {
        #[command(subcommand)]
        action: GrantAction,
        #[command(flatten)]
        api: ApiArgs,
    },

    /// Lab helper: attach a pass-through XDP program to IFACE and pin its
    /// link at PIN. veth hands XDP_TX frames (op25b's resets) only to a
    /// peer that runs XDP itself; real NICs need nothing of the kind.
    #[command(hide = true)]
    LabPassThrough { iface: String, pin: PathBuf },

    /// Write the man pages (op25b-agent.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        /// Output directory.
        dir: PathBuf,
    },

    /// Print a shell completion script.
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, ...
        shell: clap_complete::Shell,
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
        #[arg(long, env = "OP25B_CONFIG", required_unless_present = "live")]
        config: Option<PathBuf>,
        /// Judge with the live pinned maps of a running op25b instead.
        #[arg(long)]
        live: bool,
        /// The bpffs directory for --live (default: the config's pin_path, else /sys/fs/bpf/op25b).
        #[arg(long)]
        pin_path: Option<PathBuf>,
        /// The capture file (pcap or pcapng).
        capture: PathBuf,
    },
}
