//! The table on disk: a snapshot written atomically plus a journal of the
//! changes since, fsynced before an answer depends on them.

use std::{
    fs,
    io::{self, BufRead as _, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    table::{JournalLine, SessionTable},
    Session,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] crate::state_file::StateFileError),
    #[error("{}:{line}: not a session record: {message}", path.display())]
    Record {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {count} sessions stored, more than max_sessions = {max}", path.display())]
    OverCapacity {
        path: PathBuf,
        count: usize,
        max: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    op25b_sessions: u32,
    /// The journal sequence number this snapshot includes.
    seq: u64,
}

/// The table on disk: `session_state_file` holds a snapshot (a header line,
/// then one session per line) written atomically; `<file>.journal` holds
/// the changes since, each with its sequence number, appended and fsynced
/// before any answer that depends on them goes out.
pub struct SessionStore {
    path: PathBuf,
    journal_path: PathBuf,
    journal: fs::File,
    /// Journal lines since the last snapshot (compaction trigger).
    journal_lines: usize,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl SessionStore {
    /// Loads the snapshot and replays the journal into a table of at most
    /// `max_sessions`, then starts a fresh snapshot. A torn last journal
    /// line (a crash while appending; never acknowledged) is ignored; any
    /// other bad line is an error naming file:line.
    pub fn open(path: &Path, max_sessions: usize) -> Result<(Self, SessionTable), StoreError> {
        let mut table = SessionTable::new(max_sessions);
        let mut snapshot_seq = 0;
        match fs::File::open(path) {
            Ok(file) => {
                for (index, line) in io::BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(io_at(path))?;
                    let bad = |message: String| StoreError::Record {
                        path: path.to_owned(),
                        line: index + 1,
                        message,
                    };
                    if index == 0 {
                        let header: SnapshotHeader =
                            serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                        snapshot_seq = header.seq;
                        continue;
                    }
                    let mut session: Session =
                        serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                    session.nas = table.intern_nas(&session.nas);
                    table.insert(session);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(path)(e)),
        }
        let journal_path = PathBuf::from(format!("{}.journal", path.display()));
        table.seq = snapshot_seq;
        match fs::read(&journal_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let complete = text.rfind('\n').map_or("", |end| &text[..end]);
                for (index, line) in complete.lines().enumerate() {
                    let entry: JournalLine =
                        serde_json::from_str(line).map_err(|e| StoreError::Record {
                            path: journal_path.clone(),
                            line: index + 1,
                            message: e.to_string(),
                        })?;
                    if entry.seq > table.seq {
                        table.seq = entry.seq;
                        table.replay(entry.change);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&journal_path)(e)),
        }
        if table.len() > max_sessions {
            return Err(StoreError::OverCapacity {
                path: path.to_owned(),
                count: table.len(),
                max: max_sessions,
            });
        }
        let journal = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io_at(&journal_path))?;
        let mut store = Self {
            path: path.to_owned(),
            journal_path,
            journal,
            journal_lines: 0,
        };
        store.compact(&mut table)?;
        Ok((store, table))
    }

    /// Makes the table's changes so far durable: append and fdatasync.
    /// Call before answering the requests that made them.
    pub fn commit(&mut self, unwritten: &[u8]) -> Result<(), StoreError> {
        if unwritten.is_empty() {
            return Ok(());
        }
        self.journal
            .write_all(unwritten)
            .and_then(|()| self.journal.sync_data())
            .map_err(io_at(&self.journal_path))?;
        #[expect(clippy::naive_bytecount, reason = "once per batch, not per packet")]
        let lines = unwritten.iter().filter(|&&b| b == b'\n').count();
        self.journal_lines += lines;
        Ok(())
    }

    /// Whether the journal has grown enough to rewrite the snapshot.
    pub fn wants_compaction(&self, table: &SessionTable) -> bool {
        self.journal_lines > 10_000.max(table.len())
    }

    /// Writes a snapshot of `table` (which must have no unwritten changes
    /// pending that the snapshot should not include) and empties the journal.
    pub fn compact(&mut self, table: &mut SessionTable) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut table.unwritten);
        self.commit(&pending)?;
        crate::state_file::write_atomically(&self.path, |out| {
            serde_json::to_writer(
                &mut *out,
                &SnapshotHeader {
                    op25b_sessions: 1,
                    seq: table.seq,
                },
            )?;
            out.write_all(b"\n")?;
            for session in table.sessions.values() {
                serde_json::to_writer(&mut *out, session)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })?;
        // The snapshot has everything: lines up to its seq are skipped on
        // replay, so a crash before this truncation loses nothing either.
        self.journal
            .set_len(0)
            .and_then(|()| self.journal.sync_all())
            .map_err(io_at(&self.journal_path))?;
        self.journal_lines = 0;
        Ok(())
    }
}
