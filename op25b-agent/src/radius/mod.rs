//! RADIUS: sessions from accounting (RFC 2866) and dynamic authorization
//! (RFC 5176), so an exemption follows the subscriber, not the address.
pub mod coa;
pub mod codec;
pub mod server;
pub mod sessions;

pub use server::{Radius, RadiusError};
#[cfg(test)]
mod tests;
