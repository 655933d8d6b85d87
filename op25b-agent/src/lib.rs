//! op25b's user space. The folders are the architecture:
//! - `cli`: the command line, one module per command, dispatch in one place;
//! - `config`: the TOML file, its checks and the watch for edits;
//! - `policy`: what is enforced, as data (prefixes, list files, grants);
//! - `dataplane`: the loaded XDP program: diffs, map writes, links, pins,
//!   counters, test runs;
//! - `agent`: the `run` loop (reloads, interfaces, lock, systemd);
//! - `observe`: metrics, readiness, block events, top sources, status;
//! - `api`: the HTTP server, its routes (admin, provisioning), the client;
//! - `radius`: RADIUS accounting and CoA: sessions whose subscribers are
//!   exempt join the exempt maps;
//! - `report`: abuse reports (X-ARF v4, CSV) from the block events files;
//! - `tools`: captures, replay, explain's SYN.
//!
//! The `op25b-agent` binary is a thin shell over this.
pub mod agent;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dataplane;
pub mod fleet;
pub mod huge_pages;
pub mod observe;
pub mod policy;
pub mod radius;
pub mod report;
pub mod state_file;
pub mod tools;
pub mod wake;

/// Version, git revision and program build identity, for `--version`.
pub const VERSION_LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("OP25B_GIT_REVISION"),
    ", XDP program ",
    env!("OP25B_PROGRAM_ID"),
    ")"
);
