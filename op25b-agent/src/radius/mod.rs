//! RADIUS: sessions from accounting (RFC 2866) and dynamic authorization
//! (RFC 5176), so an exemption follows the subscriber, not the address.
//! `server` runs the listeners and the handshake with the agent loop;
//! `accounting` and `coa` handle requests; `sessions` is the table and its
//! store; `codec` the packets.
mod accounting;
pub mod coa;
pub mod codec;
mod evidence;
pub mod metrics;
mod query;
pub mod server;
pub mod sessions;
mod socket;

pub use server::{Radius, RadiusError};
#[cfg(test)]
mod tests;
