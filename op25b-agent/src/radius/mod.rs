//! RADIUS: sessions from accounting (RFC 2866) and dynamic authorization
//! (RFC 5176), so an exemption follows the subscriber, not the address.
pub mod codec;
pub mod sessions;
