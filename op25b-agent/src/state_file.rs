//! Small JSON state files (grants, sessions, snapshots) written so that a
//! crash or kill -9 leaves the old content or the new, never half of either.

use std::{
    fs,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a state file: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateFileError + '_ {
    move |source| StateFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads `path`; a missing file is `T::default()`.
pub fn load<T: DeserializeOwned + Default>(path: &Path) -> Result<T, StateFileError> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| StateFileError::Malformed {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Write to a temporary file, fsync, rename over, fsync the directory.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StateFileError> {
    write_atomically(path, |out| {
        serde_json::to_writer_pretty(out, value).map_err(std::io::Error::from)
    })
}

/// Replaces `path` with what `write` produces, atomically as `save` does;
/// for state that is not one JSON value (the RADIUS session snapshot).
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), StateFileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut out = BufWriter::new(file);
    write(&mut out).map_err(io_err(&tmp))?;
    let file = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("op25b-state-file-{}", std::process::id()));
        let path = dir.join("state.json");
        save(&path, &vec![1, 2]).unwrap();
        write_atomically(&path, |w| w.write_all(b"[3]")).unwrap();
        assert_eq!(load::<Vec<u32>>(&path).unwrap(), vec![3]);
        assert!(!path.with_extension("tmp").exists());
        // A writer that fails leaves the old contents.
        let failed = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.unwrap_err().to_string().contains("disk full"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "[3]");
        fs::remove_dir_all(dir).unwrap();
    }
}
