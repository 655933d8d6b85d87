//! Subscribers exempt by name (`[policy] exempt_subscribers*`): RADIUS
//! User-Names, each with an optional expiry. The files follow the list-file
//! rules: one name a line, `#` comments, optional `expires_at=RFC3339`,
//! a regular file of bounded size.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use super::list_file::{read_bounded, ListFileError};

/// RFC 2865 §5.1: User-Name is at most 253 octets.
pub const MAX_NAME: usize = 253;

/// Subscribers exempt by name: each with its expiry (Unix seconds) or none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberList {
    pub names: BTreeMap<String, Option<u64>>,
}

/// A subscriber file could not be read, or a line in it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberFileError {
    /// Unreadable, not a regular file or too large: as for a list file.
    #[error(transparent)]
    File(#[from] ListFileError),
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl SubscriberList {
    pub fn insert(&mut self, name: String, expires: Option<u64>) {
        // Listed twice: the later expiry (or none) wins, as with prefixes.
        let entry = self.names.entry(name).or_insert(expires);
        *entry = match (*entry, expires) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    /// Adds every name in a subscriber file; the first bad line fails it
    /// (as a prefix list file does), naming file:line.
    pub fn read_file(&mut self, path: &Path) -> Result<(), SubscriberFileError> {
        let text = read_bounded(path)?;
        let mut read = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (name, expires) =
                parse_subscriber_entry(line).map_err(|message| SubscriberFileError::Line {
                    path: path.to_owned(),
                    line: n + 1,
                    message,
                })?;
            read.insert(name, expires);
        }
        for (name, expires) in read.names {
            self.insert(name, expires);
        }
        Ok(())
    }

    /// The names exempt at `now`.
    pub fn active(&self, now: u64) -> HashSet<String> {
        self.names
            .iter()
            .filter(|(_, e)| e.is_none_or(|t| t > now))
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        self.names
            .values()
            .filter_map(|e| *e)
            .filter(|&t| t > now)
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One line or entry: `NAME` or `NAME expires_at=RFC3339`.
pub fn parse_subscriber_entry(text: &str) -> Result<(String, Option<u64>), String> {
    let mut words = text.split_whitespace();
    let name = words.next().unwrap_or("");
    if name.is_empty() {
        return Err("empty subscriber name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "{} octets: a User-Name has at most 253",
            name.len()
        ));
    }
    let mut expires = None;
    for word in words {
        let Some(stamp) = word.strip_prefix("expires_at=") else {
            return Err(format!(
                "unexpected {word:?} after the name (only expires_at=... may follow; names have no spaces)"
            ));
        };
        let unix = humantime::parse_rfc3339_weak(stamp)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .ok_or_else(|| {
                format!("{word:?} is not expires_at=RFC3339 (e.g. expires_at=2026-12-31T00:00:00Z)")
            })?;
        expires = Some(unix.as_secs());
    }
    Ok((name.to_owned(), expires))
}
