//! RADIUS attributes (RFC 2865 §5): the types op25b reads or writes, and
//! their values read as text, integers, addresses and IPv6 prefixes, each
//! refused with a typed error when its shape is wrong.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Packet;

/// Attribute types op25b reads or writes.
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const FILTER_ID: u8 = 11;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const CLASS: u8 = 25;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
    pub const FRAMED_IPV6_PREFIX: u8 = 97;
    pub const ERROR_CAUSE: u8 = 101;
    pub const DELEGATED_IPV6_PREFIX: u8 = 123;
}

/// A value of the wrong shape for its attribute type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} (attribute {kind}): {message}")]
pub struct AttributeError {
    pub kind: u8,
    pub name: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// Attribute names for messages.
pub fn attribute_name(kind: u8) -> &'static str {
    match kind {
        attr::USER_NAME => "User-Name",
        attr::NAS_IP_ADDRESS => "NAS-IP-Address",
        attr::FRAMED_IP_ADDRESS => "Framed-IP-Address",
        attr::FILTER_ID => "Filter-Id",
        attr::REPLY_MESSAGE => "Reply-Message",
        attr::CLASS => "Class",
        attr::NAS_IDENTIFIER => "NAS-Identifier",
        attr::ACCT_STATUS_TYPE => "Acct-Status-Type",
        attr::ACCT_SESSION_ID => "Acct-Session-Id",
        attr::EVENT_TIMESTAMP => "Event-Timestamp",
        attr::MESSAGE_AUTHENTICATOR => "Message-Authenticator",
        attr::NAS_IPV6_ADDRESS => "NAS-IPv6-Address",
        attr::FRAMED_IPV6_PREFIX => "Framed-IPv6-Prefix",
        attr::ERROR_CAUSE => "Error-Cause",
        attr::DELEGATED_IPV6_PREFIX => "Delegated-IPv6-Prefix",
        _ => "attribute",
    }
}

impl Attribute {
    pub fn new(kind: u8, value: impl Into<Vec<u8>>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }

    pub fn u32(kind: u8, value: u32) -> Self {
        Self::new(kind, value.to_be_bytes())
    }

    pub fn ipv6_prefix(kind: u8, addr: Ipv6Addr, len: u8) -> Self {
        let octets = usize::from(len.div_ceil(8)).min(16);
        let mut value = vec![0, len];
        value.extend_from_slice(&addr.octets()[..octets]);
        Self::new(kind, value)
    }

    fn error(&self, message: impl Into<String>) -> AttributeError {
        AttributeError {
            kind: self.kind,
            name: attribute_name(self.kind),
            message: message.into(),
        }
    }
}

impl Packet {
    /// The first attribute of `kind`.
    pub fn first(&self, kind: u8) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind == kind)
    }

    pub fn all(&self, kind: u8) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(move |a| a.kind == kind)
    }

    /// A text attribute (User-Name, Acct-Session-Id, ...): must be UTF-8.
    pub fn text(&self, kind: u8) -> Result<Option<&str>, AttributeError> {
        self.first(kind)
            .map(|a| std::str::from_utf8(&a.value).map_err(|_| a.error("not UTF-8 text")))
            .transpose()
    }

    pub fn integer(&self, kind: u8) -> Result<Option<u32>, AttributeError> {
        self.first(kind)
            .map(|a| {
                <[u8; 4]>::try_from(a.value.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| a.error(format!("{} octets, an integer has 4", a.value.len())))
            })
            .transpose()
    }

    pub fn ipv4(&self, kind: u8) -> Result<Option<Ipv4Addr>, AttributeError> {
        self.first(kind)
            .map(|a| {
                <[u8; 4]>::try_from(a.value.as_slice())
                    .map(Ipv4Addr::from)
                    .map_err(|_| a.error(format!("{} octets, an address has 4", a.value.len())))
            })
            .transpose()
    }

    pub fn ipv6(&self, kind: u8) -> Result<Option<Ipv6Addr>, AttributeError> {
        self.first(kind)
            .map(|a| {
                <[u8; 16]>::try_from(a.value.as_slice())
                    .map(Ipv6Addr::from)
                    .map_err(|_| a.error(format!("{} octets, an address has 16", a.value.len())))
            })
            .transpose()
    }

    /// Every Framed-IPv6-Prefix / Delegated-IPv6-Prefix (RFC 3162 §2.3):
    /// reserved octet, prefix length, then only the octets the length needs.
    pub fn ipv6_prefixes(&self, kind: u8) -> Result<Vec<(Ipv6Addr, u8)>, AttributeError> {
        self.all(kind)
            .map(|a| {
                let [_reserved, len, rest @ ..] = a.value.as_slice() else {
                    return Err(a.error("shorter than its 2-octet header"));
                };
                if *len > 128 {
                    return Err(a.error(format!("prefix length {len} is over 128")));
                }
                let needed = usize::from(len.div_ceil(8));
                if rest.len() < needed || rest.len() > 16 {
                    return Err(a.error(format!("{} prefix octets for a /{len}", rest.len())));
                }
                let mut octets = [0; 16];
                octets[..rest.len()].copy_from_slice(rest);
                Ok((Ipv6Addr::from(octets), *len))
            })
            .collect()
    }
}
