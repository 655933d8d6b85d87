//! Big lists cut into chunks of list-file text at content-defined
//! boundaries (so changing one prefix of a 1,000,000-prefix pool changes one
//! chunk), each named by its SHA-256 and far below etcd's 1.5 MiB request
//! limit; and a chunk checked against its name before it is parsed.

use sha2::{Digest as _, Sha256};

use super::codec::KeyError;
use crate::policy::{
    list_file::{parse_list, Admit},
    prefix::{Prefix, PrefixSet},
};

/// Hard cap of one chunk; etcd refuses requests over 1.5 MiB by default.
pub const MAX_CHUNK_BYTES: usize = 1_000_000;
/// A chunk ends after a line whose hash is 0 modulo this (about 16,384
/// lines, ~260 KB of IPv4 prefixes, on average), or at the hard cap.
const CHUNK_BOUNDARY_MODULUS: u64 = 16_384;
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn line_of(prefix: &Prefix, set: &PrefixSet) -> String {
    match set.expiring.get(prefix) {
        Some(&t) => format!("{prefix} expires_at={}\n", crate::clock::rfc3339(t)),
        None => format!("{prefix}\n"),
    }
}

fn boundary_after(line: &str) -> bool {
    use std::hash::{Hash as _, Hasher as _};
    // SipHash with fixed keys: the same line cuts at the same place on every box and run.
    #[expect(
        deprecated,
        reason = "SipHasher's fixed keys are what makes boundaries stable"
    )]
    let mut h = std::hash::SipHasher::new_with_keys(0x6f70_3235, 0x6266_6c74);
    line.hash(&mut h);
    h.finish().is_multiple_of(CHUNK_BOUNDARY_MODULUS)
}

/// Cuts a set into chunks of list text; returns (hash, text) in order.
pub fn chunk_list(set: &PrefixSet) -> Vec<(String, String)> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for prefix in set.iter() {
        let line = line_of(prefix, set);
        if current.len() + line.len() > MAX_CHUNK_BYTES {
            chunks.push(std::mem::take(&mut current));
        }
        current.push_str(&line);
        if boundary_after(&line) {
            chunks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
        .into_iter()
        .map(|text| (sha256_hex(text.as_bytes()), text))
        .collect()
}

/// Decodes a chunk's text after checking it is what its name says.
pub fn decode_chunk(
    key: &str,
    hash: &str,
    value: &[u8],
    into: &mut PrefixSet,
    admit: Admit<'_>,
) -> Result<(), KeyError> {
    if value.len() > MAX_CHUNK_BYTES {
        return Err(KeyError::new(
            key,
            format!(
                "{} bytes, over the {MAX_CHUNK_BYTES}-byte limit of a chunk",
                value.len()
            ),
        ));
    }
    if sha256_hex(value) != hash {
        return Err(KeyError::new(
            key,
            "content does not match its SHA-256 name (damaged or hand-edited)",
        ));
    }
    let text =
        std::str::from_utf8(value).map_err(|e| KeyError::new(key, format!("not UTF-8: {e}")))?;
    parse_list(text, into, admit)
        .map_err(|(line, e)| KeyError::new(&format!("{key}:{line}"), e.to_string()))
}
