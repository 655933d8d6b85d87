//! Which files a configuration was read from, and whether any changed since
//! they were stamped: the live-reload trigger.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// Identity of a watched file: a change in any part means "reload".
type FileStamp = Option<(std::time::SystemTime, u64, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The config file and its list files, stamped when last read.
#[derive(Debug, Default)]
pub struct WatchedFiles(Vec<(PathBuf, FileStamp)>);

impl WatchedFiles {
    /// The files `config` was read from, as they are now.
    pub fn of(config: &Config) -> Self {
        Self(
            std::iter::once(&config.path)
                .chain(&config.list_files)
                .map(|p| (p.clone(), stamp(p)))
                .collect(),
        )
    }

    /// Also watch the list files only a refused configuration names, so
    /// fixing them retries.
    pub fn add_refused(&mut self, refused: &ConfigError) {
        self.0
            .extend(refused.list_files.iter().map(|p| (p.clone(), stamp(p))));
    }

    pub fn changed(&self) -> bool {
        self.0.iter().any(|(path, old)| stamp(path) != *old)
    }

    /// Waits (up to `limit`) until the files stop changing: an editor or a
    /// copy still writing is read when done, not half-way.
    pub fn settle(&self, step: std::time::Duration, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        let mut last: Vec<FileStamp> = self.0.iter().map(|(p, _)| stamp(p)).collect();
        while started.elapsed() < limit {
            std::thread::sleep(step);
            let now: Vec<FileStamp> = self.0.iter().map(|(p, _)| stamp(p)).collect();
            if now == last {
                return;
            }
            last = now;
        }
    }
}
