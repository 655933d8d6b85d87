//! Fleet sync: one policy for hundreds of edge boxes, kept in etcd.
//!
//! - [`layout`]: the keys; [`codec`]: values, validated strictly;
//! - [`view`]: an agent's view of etcd, per-key refusal, snapshots;
//! - [`merge`]: local configuration + fleet policy, with precedence;
//! - [`sync`]: the fleet thread (watch, resync, snapshot, registration);
//! - [`client`]: etcd operations shared with the `fleet` commands;
//! - [`commands`]: `fleet push|status|exempt|allow-destination`, `top --fleet`;
//! - [`metrics`]: Prometheus series of the fleet thread.
pub mod client;
pub mod codec;
pub mod commands;

pub mod config;
pub mod layout;
pub mod merge;
pub mod metrics;

pub mod sync;
pub mod view;

pub use sync::Fleet;
pub use view::FleetPolicy;
