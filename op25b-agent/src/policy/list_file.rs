//! The list files operators keep prefixes in: one CIDR a line, optionally
//! `expires_at=RFC3339`, `#` comments. The first bad line fails the file,
//! named by file:line.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
};

use super::{
    limits::TooBroad,
    prefix::{Prefix, PrefixError, PrefixSet},
};

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

/// Largest list file read: far above what the maps hold written as text
/// (2^21 entries of ~50 bytes), small enough that a wrong path (a log, a
/// device) cannot exhaust memory.
pub const MAX_LIST_FILE_BYTES: u64 = 256 << 20;

/// A list file could not be read, or a line in it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: larger than {} MiB: not a list file?", path.display(), MAX_LIST_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{}:{line}: {source}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        source: PrefixError,
    },
}

/// Which entries a list takes beyond being valid prefixes (its bounds).
pub type Admit<'a> = &'a dyn Fn(&Prefix) -> Result<(), TooBroad>;

/// Takes every valid prefix.
pub fn admit_all(_: &Prefix) -> Result<(), TooBroad> {
    Ok(())
}

/// Reads a list file: one CIDR per line, optionally followed by
/// `expires_at=RFC3339`; `#` starts a comment, blank lines are skipped, both
/// families may mix. The first bad line fails the file.
pub fn read_list_file(
    path: &Path,
    into: &mut PrefixSet,
    admit: Admit<'_>,
) -> Result<(), ListFileError> {
    let text = read_bounded(path)?;
    parse_list(&text, into, admit).map_err(|(line, source)| ListFileError::Line {
        path: path.to_owned(),
        line,
        source,
    })
}

/// Reads a list-like file: a regular file of at most `MAX_LIST_FILE_BYTES`
/// (also the subscriber files).
pub(crate) fn read_bounded(path: &Path) -> Result<String, ListFileError> {
    let read = |source| ListFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    if !file.metadata().map_err(read)?.is_file() {
        return Err(ListFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mut text = String::new();
    file.take(MAX_LIST_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_LIST_FILE_BYTES {
        return Err(ListFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// Parses list text; on error returns the 1-based line number.
pub fn parse_list(
    text: &str,
    into: &mut PrefixSet,
    admit: Admit<'_>,
) -> Result<(), (usize, PrefixError)> {
    for (index, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let (prefix, expires) = parse_entry(entry).map_err(|e| (index + 1, e))?;
        admit(&prefix).map_err(|e| (index + 1, e.into()))?;
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
        let (line, err) = parse_list(text, &mut set, &admit_all).unwrap_err();
        assert_eq!(line, 5);
        assert!(matches!(err, PrefixError::HostBitsSet { .. }));
    }

    #[test]
    fn temporary_entries_leave_on_time_and_permanent_ones_win() {
        let mut set = PrefixSet::default();
        parse_list(
            "100.64.1.7/32 expires_at=2026-12-01T00:00:00Z # ticket 1\n2001:db8::7 expires_at=2026-12-02T00:00:00Z\n100.64.1.8/32 expires_at=2026-12-01T00:00:00Z\n100.64.1.8/32\n",
            &mut set,
            &admit_all,
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
            assert!(
                parse_list(bad, &mut PrefixSet::default(), &admit_all).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn list_text_with_comments_and_both_families() {
        let mut set = PrefixSet::default();
        parse_list(
            "\n# c\n 100.64.0.0/10 \n2001:db8::/32#x\n",
            &mut set,
            &admit_all,
        )
        .unwrap();
        assert_eq!((set.v4.len(), set.v6.len()), (1, 1));
    }

    #[test]
    fn devices_and_huge_files_are_refused_before_reading_them_whole() {
        let err = read_list_file(
            Path::new("/dev/zero"),
            &mut PrefixSet::default(),
            &admit_all,
        )
        .unwrap_err();
        assert!(matches!(err, ListFileError::NotAFile { .. }), "{err}");
        let dir = std::env::temp_dir().join(format!("op25b-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.txt");
        let file = std::fs::File::create(&big).unwrap();
        // Sparse: no disk is used for the size.
        file.set_len(MAX_LIST_FILE_BYTES + 1).unwrap();
        let err = read_list_file(&big, &mut PrefixSet::default(), &admit_all).unwrap_err();
        assert!(matches!(err, ListFileError::TooLarge { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_list_refuses_entries_its_bounds_refuse_naming_the_line() {
        use crate::policy::{limits::PrefixLimits, ListKind};
        let limits = PrefixLimits::default();
        let admit = |p: &Prefix| limits.check(ListKind::Exempt, p);
        let (line, err) =
            parse_list("100.64.1.7\n0.0.0.0/0\n", &mut PrefixSet::default(), &admit).unwrap_err();
        assert_eq!(line, 2);
        assert!(err.to_string().contains("broader than /16"), "{err}");
    }
}
