//! Bearer tokens read from files: the provisioning API's (grants) and the
//! admin listener's optional read token (top sources, sessions, metrics).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the token file is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: the token file is readable by group or others (mode {mode:o}): chmod 600 it", path.display())]
    Exposed { path: PathBuf, mode: u32 },
}

/// A secret a request must carry as `Authorization: Bearer <token>`.
pub struct BearerToken(String);

impl BearerToken {
    /// Reads the token (surrounding whitespace trimmed) from `path`, which
    /// only its owner may read.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_owned(),
            source,
        };
        // As ssh does with keys: a token others can read is no secret.
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
        let token = fs::read_to_string(path).map_err(io)?.trim().to_owned();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self(token))
    }

    /// Does `header` (the request's `Authorization`) carry this token? The
    /// scheme is case-insensitive (RFC 7235), the token compared without
    /// early exit.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some((scheme, token)) = header.and_then(|h| h.split_once(' ')) else {
            return false;
        };
        let (got, expected) = (token.trim().as_bytes(), self.0.as_bytes());
        scheme.eq_ignore_ascii_case("bearer")
            && got.len() == expected.len()
            && got
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The token, for a client sending it.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn token_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        fs::set_permissions(file.path(), fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    #[test]
    fn only_the_exact_token_under_the_bearer_scheme_is_accepted() {
        let file = token_file("s3cret\n", 0o600);
        let token = BearerToken::load(file.path()).unwrap();
        assert!(token.accepts(Some("Bearer s3cret")));
        assert!(token.accepts(Some("bearer s3cret")));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "",
        ] {
            assert!(!token.accepts(Some(wrong)), "{wrong:?} accepted");
        }
        assert!(!token.accepts(None));
    }

    #[test]
    fn an_exposed_or_empty_token_file_is_refused_with_its_path() {
        let exposed = token_file("s3cret", 0o644);
        let err = BearerToken::load(exposed.path()).err().unwrap().to_string();
        assert!(
            err.contains("chmod 600") && err.contains(&exposed.path().display().to_string()),
            "{err}"
        );
        let empty = token_file(" \n", 0o600);
        let err = BearerToken::load(empty.path()).err().unwrap().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
