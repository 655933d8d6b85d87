//! The events files of one configured path: the current file, the agent's
//! size rotations (`events.jsonl.1` ..) and logrotate's (`.2.gz`,
//! `-20250301.gz`), read line by line in bounded memory.

use std::{
    cell::Cell,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
    rc::Rc,
    time::SystemTime,
};

/// Longer lines are not events (the agent writes about 200 bytes); they are
/// skipped without being held in memory.
pub const MAX_LINE_BYTES: usize = 4096;

/// One file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsFile {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub bytes: u64,
}

/// The current file and its rotations beside it, oldest first (by
/// modification time; the current file last on a tie).
pub fn discover(current: &Path) -> io::Result<Vec<EventsFile>> {
    let dir = current
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(base) = current.file_name().and_then(|n| n.to_str()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", current.display()),
        ));
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        if !(rest.is_empty() || is_rotation_suffix(rest)) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        files.push(EventsFile {
            path: entry.path(),
            modified: meta.modified()?,
            bytes: meta.len(),
        });
    }
    files.sort_by(|a, b| {
        a.modified
            .cmp(&b.modified)
            .then_with(|| rotation_age(b, current).cmp(&rotation_age(a, current)))
    });
    Ok(files)
}

/// `.1`, `.12.gz`, `-20250301`, `-20250301.gz`, `.2025-03-01-10`.
fn is_rotation_suffix(rest: &str) -> bool {
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    let mut chars = rest.chars();
    matches!(chars.next(), Some('.' | '-'))
        && rest.len() > 1
        && chars.all(|c| c.is_ascii_digit() || c == '-' || c == '_')
}

/// Higher for older files on an mtime tie: the current file is 0, `.N` is N.
fn rotation_age(file: &EventsFile, current: &Path) -> u64 {
    if file.path == current {
        return 0;
    }
    let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.trim_end_matches(".gz")
        .rsplit(['.', '-'])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Counts the bytes read from the file itself (compressed bytes for gzip),
/// for progress.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (newline removed) is in the buffer.
    Complete,
    /// The last line has no newline (a write in progress, or a cut file);
    /// it is in the buffer.
    Unterminated,
    /// A line over [`MAX_LINE_BYTES`], skipped.
    TooLong,
    End,
}

/// Reads lines of at most [`MAX_LINE_BYTES`], decompressing gzip files
/// (recognised by their magic number, not their name).
pub struct LineReader {
    reader: Box<dyn BufRead>,
    read: Rc<Cell<u64>>,
}

impl LineReader {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let mut magic = [0u8; 2];
        let gzip = file.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
        let mut file = BufReader::new(file);
        std::io::Seek::rewind(&mut file)?;
        let read = Rc::new(Cell::new(0));
        let counted = Counting {
            inner: file,
            read: Rc::clone(&read),
        };
        let reader: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::with_capacity(
                256 << 10,
                flate2::read::MultiGzDecoder::new(counted),
            ))
        } else {
            Box::new(BufReader::with_capacity(256 << 10, counted))
        };
        Ok(Self { reader, read })
    }

    /// Bytes of the file read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.get()
    }

    /// The next line into `buf` (cleared first).
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Line> {
        buf.clear();
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(match (too_long, buf.is_empty()) {
                    (true, _) => Line::TooLong,
                    (false, true) => Line::End,
                    (false, false) => Line::Unterminated,
                });
            }
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if !too_long {
                if buf.len() + chunk.len() > MAX_LINE_BYTES {
                    too_long = true;
                    buf.clear();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            let used = done.unwrap_or(available.len());
            self.reader.consume(used);
            if done.is_some() {
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("op25b-report-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn lines(path: &Path) -> Vec<(Line, String)> {
        let mut reader = LineReader::open(path).unwrap();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = reader.next_line(&mut buf).unwrap();
            if line == Line::End {
                return out;
            }
            out.push((line, String::from_utf8(buf.clone()).unwrap()));
        }
    }

    #[test]
    fn finds_rotations_oldest_first_and_ignores_strangers() {
        let d = dir("discover");
        let names = [
            "events.jsonl",
            "events.jsonl.1",
            "events.jsonl.2.gz",
            "events.jsonl-20250301.gz",
            "events.jsonl.tmp",
            "events.jsonl.1.bak",
            "other.jsonl",
            "events.jsonlx",
        ];
        for name in names {
            std::fs::write(d.join(name), "").unwrap();
        }
        let t = SystemTime::now();
        let set = |name: &str, age: u64| {
            let f = File::options().write(true).open(d.join(name)).unwrap();
            f.set_modified(t - std::time::Duration::from_secs(age))
                .unwrap();
        };
        set("events.jsonl-20250301.gz", 300);
        set("events.jsonl.2.gz", 100);
        // Same time as the current file: the rotation number decides.
        set("events.jsonl.1", 0);
        set("events.jsonl", 0);
        let found: Vec<String> = discover(&d.join("events.jsonl"))
            .unwrap()
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            found,
            [
                "events.jsonl-20250301.gz",
                "events.jsonl.2.gz",
                "events.jsonl.1",
                "events.jsonl"
            ]
        );
    }

    #[test]
    fn reads_plain_and_gzip_alike_with_a_line_limit() {
        let d = dir("read");
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        let text = format!("one\n{long}\ntwo\n\nthree-cut");
        std::fs::write(d.join("plain"), &text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            File::create(d.join("packed.gz")).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
        let expected = vec![
            (Line::Complete, "one".to_owned()),
            (Line::TooLong, String::new()),
            (Line::Complete, "two".to_owned()),
            (Line::Complete, String::new()),
            (Line::Unterminated, "three-cut".to_owned()),
        ];
        assert_eq!(lines(&d.join("plain")), expected);
        assert_eq!(lines(&d.join("packed.gz")), expected);
        let at_limit = "y".repeat(MAX_LINE_BYTES);
        std::fs::write(d.join("limit"), format!("{at_limit}\n{long}")).unwrap();
        assert_eq!(
            lines(&d.join("limit")),
            vec![(Line::Complete, at_limit), (Line::TooLong, String::new())]
        );
    }

    #[test]
    fn a_cut_gzip_file_is_an_error_after_its_good_lines() {
        let d = dir("cut");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..10_000 {
            writeln!(gz, "line {i} with some padding to make the stream longer").unwrap();
        }
        let bytes = gz.finish().unwrap();
        std::fs::write(d.join("cut.gz"), &bytes[..bytes.len() / 2]).unwrap();
        let mut reader = LineReader::open(&d.join("cut.gz")).unwrap();
        let mut buf = Vec::new();
        let mut good = 0;
        let error = loop {
            match reader.next_line(&mut buf) {
                Ok(Line::Complete) => good += 1,
                Ok(other) => panic!("no error, got {other:?} after {good}"),
                Err(e) => break e,
            }
        };
        assert!(good > 100, "{good}");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }
}
