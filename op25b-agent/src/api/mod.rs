//! HTTP at the agent's edge: `server` (one hardened transport for every
//! listener), `admin` (metrics, health, readiness, top sources),
//! `provisioning` (run-time grants; `grant_store` when a fleet keeps them), `types` (the JSON both sides speak)
//! and `client` (the one client the CLI uses); `bearer` reads the tokens both
//! listeners check.

pub mod admin;
pub mod bearer;
pub mod client;
pub mod grant_store;
pub mod provisioning;
pub mod server;
pub mod types;
