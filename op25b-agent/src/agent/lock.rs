//! One agent per pin directory.

use std::{os::fd::AsRawFd as _, path::Path};

use super::AgentError;

/// One agent per pin directory: an exclusive flock on it.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File, AgentError> {
    let file = std::fs::File::open(dir).map_err(|source| AgentError::Io {
        path: dir.to_owned(),
        source,
    })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(AgentError::AlreadyRunning {
            path: dir.to_owned(),
        });
    }
    Ok(file)
}
