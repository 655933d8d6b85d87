//! Fleet sync: one policy for hundreds of edge boxes, kept in etcd.
//! The `[fleet]` settings are `crate::config::fleet`; the provisioning
//! API's seam is `crate::api::grant_store`.
//!
//! - [`layout`]: the keys; [`codec`]: values, validated strictly (lists
//!   cut into [`chunks`], grants in [`grant_value`]);
//! - [`view`]: an agent's view of etcd, per-key refusal, snapshots;
//! - [`merge`]: local configuration + fleet policy, with precedence;
//! - [`sync`]: the fleet thread (watch, resync, snapshot); [`registration`]:
//!   `P/agents/<node>` on a lease; [`handle`]: the agent's [`Fleet`] handle
//!   and the API's grant store;
//! - [`client`]: etcd operations shared with the `fleet` commands
//!   ([`grant_client`]: grants by prefix and by subscriber);
//! - [`commands`]: `fleet push|status`; [`grant_commands`]:
//!   `fleet exempt|allow-destination` (by prefix or `--subscriber`); [`top`]: `top --fleet`;
//! - [`metrics`]: Prometheus series of the fleet thread.
pub mod chunks;
pub mod client;
pub mod codec;
pub mod commands;
pub mod grant_client;
pub mod grant_commands;
pub mod grant_value;
pub mod handle;
pub mod layout;
pub mod merge;
pub mod metrics;
pub mod registration;
pub mod sync;
pub mod top;
pub mod view;

pub use handle::Fleet;
pub use view::FleetPolicy;
