//! The block-event log: JSON lines, rotated by size to `path.1` ..
//! `path.N`, reopened on SIGUSR1 after an external logrotate.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

/// Lines not written: the error and how many lines it cost.
#[derive(Debug)]
pub struct Unwritten {
    pub error: std::io::Error,
    pub lines: u64,
}

/// The event log file with size-based rotation. Lines are gathered in
/// memory and written with one `write` per batch; a batch the disk refuses
/// (full, read-only) is dropped and counted, never retried without bound.
pub struct EventLog {
    path: PathBuf,
    file: File,
    written: u64,
    pending: Vec<u8>,
    pending_lines: u64,
    max_bytes: u64,
    max_files: u32,
}

impl EventLog {
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            written,
            pending: Vec::new(),
            pending_lines: 0,
            max_bytes,
            max_files,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path anew (after logrotate moved the file away).
    pub fn reopen(&mut self) -> Result<(), Unwritten> {
        let flushed = self.flush();
        let reopened = Self::open(&self.path, self.max_bytes, self.max_files);
        match reopened {
            Ok(log) => *self = log,
            Err(error) => return Err(Unwritten { error, lines: 0 }),
        }
        flushed
    }

    fn rotate(&mut self) -> Result<(), Unwritten> {
        self.flush()?;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1)).map_err(|error| Unwritten { error, lines: 0 })?;
        self.reopen()
    }

    /// Queues one line; rotates first when it would pass `max_bytes`.
    pub fn write(&mut self, line: &str) -> Result<(), Unwritten> {
        let size = self.written + self.pending.len() as u64;
        let rotated =
            if self.max_bytes > 0 && size > 0 && size + line.len() as u64 + 1 > self.max_bytes {
                self.rotate()
            } else {
                Ok(())
            };
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.pending_lines += 1;
        rotated
    }

    /// Writes what is queued; on failure the queued lines are dropped and
    /// counted in the error.
    pub fn flush(&mut self) -> Result<(), Unwritten> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.pending);
        let lines = std::mem::take(&mut self.pending_lines);
        let bytes = self.pending.len() as u64;
        self.pending.clear();
        match result {
            Ok(()) => {
                self.written += bytes;
                Ok(())
            }
            Err(error) => Err(Unwritten { error, lines }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("op25b-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let mut log = EventLog::open(&path, 100, 2).unwrap();
        for i in 0..20 {
            log.write(&format!(
                "{{\"n\":{i:04},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}"
            ))
            .unwrap();
            log.flush().unwrap();
        }
        log.flush().unwrap();
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(size(&path) <= 100, "current file over the limit");
        assert!(size(&dir.join("events.jsonl.1")) > 0 && size(&dir.join("events.jsonl.2")) > 0);
        assert!(
            !dir.join("events.jsonl.3").exists(),
            "more than max_files kept"
        );
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("\"n\":0019"), "{newest}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_disk_drops_and_counts_each_batch_once() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let mut log = EventLog::open(Path::new("/dev/full"), 0, 1).unwrap();
        for i in 0..1000 {
            log.write(&format!("{{\"n\":{i}}}")).unwrap();
        }
        let lost = log.flush().unwrap_err();
        assert_eq!(lost.lines, 1000);
        assert_eq!(lost.error.raw_os_error(), Some(libc::ENOSPC));
        assert!(log.flush().is_ok(), "a dropped batch is not retried");
        log.write("{}").unwrap();
        assert_eq!(log.flush().unwrap_err().lines, 1);
    }
}
