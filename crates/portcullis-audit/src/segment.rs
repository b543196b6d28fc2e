//! The directory layout (segment files) and reading their lines with a bounded buffer.
//!
//! A log is a directory holding `audit.lock` and segment files named
//! `audit-<seq of their first record, 20 digits>.jsonl`: the zero padding makes name order the
//! chain's order. Other files are ignored.

use std::fs::{self, File, TryLockError};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::record::MAX_RECORD_BYTES;

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";
/// Digits of `u64::MAX`, so every sequence number fits the fixed-width name.
const SEQ_DIGITS: usize = 20;

/// The lock file's name: held (`flock`) while a log is open for appending.
/// The most records one write of the writer holds: it takes the whole queue at once, and the
/// queue holds at most this many. So a crash in the middle of a write leaves fewer whole records
/// after the last seal than this; opening a sealed log refuses more (they were not a crash).
pub const MAX_BATCH_RECORDS: usize = 16 * 1024;

pub(crate) const LOCK_FILE: &str = "audit.lock";

/// The file name of the segment whose first record is `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:0SEQ_DIGITS$}{SUFFIX}")
}

/// The first seq a segment file name stands for, if it is one.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment file on disk.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    /// The seq its name says its first record has.
    pub(crate) first_seq: u64,
    /// Its path.
    pub(crate) path: PathBuf,
}

/// The segments of a log directory, oldest first.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(first_seq) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            segments.push(SegmentFile {
                first_seq,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// How a piece of a segment between newlines ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// With a newline, within [`MAX_RECORD_BYTES`].
    Newline,
    /// At the end of the file without a newline: a torn write (or a write in progress).
    Eof,
    /// Longer than any record can be; its bytes were skipped, not kept.
    TooLong,
}

/// One line read by [`Lines`].
pub(crate) struct RawLine<'a> {
    /// Byte offset of its first byte in the file.
    pub(crate) offset: u64,
    /// Its number, from 1.
    pub(crate) number: u64,
    /// Its bytes without the newline (empty when [`Ending::TooLong`]).
    pub(crate) bytes: &'a [u8],
    /// How it ended.
    pub(crate) ending: Ending,
    /// Its length on disk, newline included.
    pub(crate) len: u64,
}

/// Reads lines of at most [`MAX_RECORD_BYTES`], so a corrupt file (say a run of zeros without a
/// newline) cannot make us allocate its whole size.
pub(crate) struct Lines<R> {
    reader: R,
    offset: u64,
    number: u64,
    buf: Vec<u8>,
}

impl Lines<BufReader<File>> {
    /// Lines of a file from its start.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Ok(Self::new(BufReader::with_capacity(
            MAX_RECORD_BYTES,
            File::open(path)?,
        )))
    }
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader,
            offset: 0,
            number: 0,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        self.buf.clear();
        let mut len = 0u64;
        let mut too_long = false;
        let ending = loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if len == 0 {
                    return Ok(None);
                }
                break if too_long {
                    Ending::TooLong
                } else {
                    Ending::Eof
                };
            }
            let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            if !too_long && self.buf.len() + chunk.len() < MAX_RECORD_BYTES {
                self.buf.extend_from_slice(chunk);
            } else {
                too_long = true;
                self.buf.clear();
            }
            let used = chunk.len() + usize::from(found);
            len += used as u64;
            self.reader.consume(used);
            if found {
                break if too_long {
                    Ending::TooLong
                } else {
                    Ending::Newline
                };
            }
        };
        let offset = self.offset;
        self.offset += len;
        self.number += 1;
        Ok(Some(RawLine {
            offset,
            number: self.number,
            bytes: &self.buf,
            ending,
            len,
        }))
    }
}

/// The last newline-terminated line of a file (without its newline) and its offset, or `None`
/// when it has none that fits a record. Reads only the file's tail.
pub(crate) fn read_last_line(path: &Path) -> io::Result<Option<(Vec<u8>, u64)>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    // A line, its newline, and the newline before it.
    let window = (MAX_RECORD_BYTES as u64 + 1).min(len);
    let window_start = len - window;
    file.seek(SeekFrom::Start(window_start))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    let start = match tail[..end].iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        // The line starts the file, or it is longer than a record can be.
        None if window_start == 0 => 0,
        None => return Ok(None),
    };
    Ok(Some((
        tail[start..end].to_vec(),
        window_start + start as u64,
    )))
}

/// The number (from 1) of the line starting at `offset`: counts the newlines before it.
pub(crate) fn line_number_at(path: &Path, offset: u64) -> io::Result<u64> {
    Ok(count_newlines(path, offset)? + 1)
}

/// Newlines in the first `upto` bytes of a file.
fn count_newlines(path: &Path, upto: u64) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(MAX_RECORD_BYTES, File::open(path)?.take(upto));
    let mut count = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(count);
        }
        count += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let n = buf.len();
        reader.consume(n);
    }
}

/// The first line of a file, if it ends with a newline.
pub(crate) fn read_first_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut lines = Lines::open(path)?;
    Ok(lines
        .next_line()?
        .filter(|l| l.ending == Ending::Newline)
        .map(|l| l.bytes.to_vec()))
}

/// A segment as the log knows it, for queries.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    /// Its first record's time; `None` while it has none (or it cannot be read).
    pub(crate) first_ts: Option<u64>,
}

/// True when a process has the log in `dir` open for writing right now (it holds the log's
/// lock): a running gateway. `false` when nobody does, or when it cannot be told (no lock file,
/// no permission, a filesystem without locks).
pub fn is_held(dir: &Path) -> bool {
    let Ok(file) = fs::File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    // A shared lock is refused only while the writer's exclusive one is held; it is released
    // when `file` is dropped.
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// When the process holding the log in `dir` took it (Unix ms), while one does: what it wrote
/// in the lock file, which only the log's owner can write (anyone who can read the file can take
/// a lock on it, not write it). `None` when nobody holds the log or it cannot be told.
pub fn held_since(dir: &Path) -> Option<u64> {
    if !is_held(dir) {
        return None;
    }
    let text = fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_seqs() {
        assert_eq!(segment_name(1), "audit-00000000000000000001.jsonl");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("audit-1.jsonl"), None);
        assert_eq!(parse_segment_name("audit-0000000000000000000x.jsonl"), None);
    }

    #[test]
    fn lines_are_bounded_and_endings_reported() {
        let mut data = b"one\ntwo\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
        data.extend_from_slice(b"\nlast");
        let mut lines = Lines::new(&data[..]);
        let mut seen = Vec::new();
        while let Some(l) = lines.next_line().unwrap() {
            seen.push((l.number, l.offset, l.bytes.to_vec(), l.ending));
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0], (1, 0, b"one".to_vec(), Ending::Newline));
        assert_eq!(seen[1], (2, 4, b"two".to_vec(), Ending::Newline));
        assert_eq!(seen[2].3, Ending::TooLong);
        assert!(seen[2].2.is_empty());
        assert_eq!(seen[3].2, b"last".to_vec());
        assert_eq!(seen[3].3, Ending::Eof);
    }

    #[test]
    fn last_line_is_found_from_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"a\nbb\nccc\ntorn").unwrap();
        assert_eq!(read_last_line(&path).unwrap(), Some((b"ccc".to_vec(), 5)));
        assert_eq!(line_number_at(&path, 5).unwrap(), 3);
        std::fs::write(&path, b"only\n").unwrap();
        assert_eq!(read_last_line(&path).unwrap(), Some((b"only".to_vec(), 0)));
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read_last_line(&path).unwrap(), None);
    }
}
