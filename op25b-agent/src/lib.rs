//! op25b's user space: configuration, policy, the data-plane handle and the
//! operator commands. The `op25b-agent` binary is a thin shell over this.
pub mod agent;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dataplane;
pub mod events;
pub mod fleet;
pub mod frame;
pub mod http;
pub mod pins;
pub mod policy;
pub mod prefix;
pub mod provisioning;
pub mod replay;
pub mod status;
pub mod systemd;
pub mod telemetry;
pub mod top;

/// Version, git revision and program build identity, for `--version`.
pub const VERSION_LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("OP25B_GIT_REVISION"),
    ", XDP program ",
    env!("OP25B_PROGRAM_ID"),
    ")"
);
