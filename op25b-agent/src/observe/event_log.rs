//! The block-event log: JSON lines, rotated by size to `path.1` ..
//! `path.N`, reopened on SIGUSR1 after an external logrotate.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

/// The event log file with size-based rotation.
pub struct EventLog {
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
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
            file: BufWriter::new(file),
            written,
            max_bytes,
            max_files,
        })
    }

    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        *self = Self::open(&self.path, self.max_bytes, self.max_files)?;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.reopen()
    }

    pub fn write(&mut self, line: &str) -> std::io::Result<()> {
        if self.max_bytes > 0
            && self.written + line.len() as u64 + 1 > self.max_bytes
            && self.written > 0
        {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
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
}
