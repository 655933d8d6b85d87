//! The list files operators keep prefixes in: one CIDR a line, optionally
//! `expires_at=RFC3339`, `#` comments. The first bad line fails the file,
//! named by file:line.

use std::path::{Path, PathBuf};

use super::prefix::{Prefix, PrefixError, PrefixSet};

/// One list entry: `PREFIX` or `PREFIX expires_at=RFC3339` (a temporary
/// entry; Unix seconds of its expiry).
pub fn parse_entry(text: &str) -> Result<(Prefix, Option<u64>), PrefixError> {
    let mut words = text.split_whitespace();
    let prefix: Prefix = words.next().unwrap_or("").parse()?;
    let mut expires = None;
    for word in words {
        let Some(stamp) = word.strip_prefix("expires_at=") else {
            return Err(PrefixError::Trailing(word.to_owned()));
        };
        let time = humantime::parse_rfc3339_weak(stamp)
            .map_err(|_| PrefixError::BadExpiry(word.to_owned()))?;
        let unix = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| PrefixError::BadExpiry(word.to_owned()))?;
        expires = Some(unix.as_secs());
    }
    Ok((prefix, expires))
}

/// A list file could not be read, or a line in it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {source}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        source: PrefixError,
    },
}

/// Reads a list file: one CIDR per line, optionally followed by
/// `expires_at=RFC3339`; `#` starts a comment, blank lines are skipped, both
/// families may mix. The first bad line fails the file.
pub fn read_list_file(path: &Path, into: &mut PrefixSet) -> Result<(), ListFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ListFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_list(&text, into).map_err(|(line, source)| ListFileError::Line {
        path: path.to_owned(),
        line,
        source,
    })
}

/// Parses list text; on error returns the 1-based line number.
pub fn parse_list(text: &str, into: &mut PrefixSet) -> Result<(), (usize, PrefixError)> {
    for (index, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let (prefix, expires) = parse_entry(entry).map_err(|e| (index + 1, e))?;
        into.insert_until(prefix, expires);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_text_reports_the_bad_line() {
        let text = "# pools\n100.64.0.0/10  # east\n\n2001:db8::/32\n10.0.0.1/8\n";
        let mut set = PrefixSet::default();
        let (line, err) = parse_list(text, &mut set).unwrap_err();
        assert_eq!(line, 5);
        assert!(matches!(err, PrefixError::HostBitsSet { .. }));
    }

    #[test]
    fn temporary_entries_leave_on_time_and_permanent_ones_win() {
        let mut set = PrefixSet::default();
        parse_list(
            "100.64.1.7/32 expires_at=2026-12-01T00:00:00Z # ticket 1\n2001:db8::7 expires_at=2026-12-02T00:00:00Z\n100.64.1.8/32 expires_at=2026-12-01T00:00:00Z\n100.64.1.8/32\n",
            &mut set,
        )
        .unwrap();
        let dec1 = 1_796_083_200; // 2026-12-01T00:00:00Z
        assert_eq!(set.len(), 3);
        assert_eq!(set.next_expiry(0), Some(dec1));
        let later = set.active(dec1);
        assert!(
            !later.contains("100.64.1.7".parse().unwrap()),
            "expired entry kept"
        );
        assert!(
            later.contains("100.64.1.8".parse().unwrap()),
            "a permanent line must win over a temporary one"
        );
        assert!(later.contains("2001:db8::7".parse().unwrap()));
        assert!(set.active(dec1 - 1).contains("100.64.1.7".parse().unwrap()));
        for bad in [
            "100.64.1.9 expires_at=tomorrow",
            "100.64.1.9 ttl=5",
            "100.64.1.9 expires_at=",
        ] {
            assert!(parse_list(bad, &mut PrefixSet::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_text_with_comments_and_both_families() {
        let mut set = PrefixSet::default();
        parse_list("\n# c\n 100.64.0.0/10 \n2001:db8::/32#x\n", &mut set).unwrap();
        assert_eq!((set.v4.len(), set.v6.len()), (1, 1));
    }
}
