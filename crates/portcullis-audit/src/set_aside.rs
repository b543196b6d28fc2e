//! Setting aside the records a crash left after a sealed log's last seal: copied byte for byte
//! to a quarantine file in the log's directory (made durable), then cut from the segment, so
//! that the log goes on from its last seal. Opening the log records it (`audit_set_aside`) as
//! its first act; a crash between the cut and that record is found at the next open by the
//! quarantine file's name (its first seq is the log's next).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::AuditError;
use crate::files::{cut, sync_dir};
use crate::record::MAX_RECORD_BYTES;
use crate::segment::MAX_BATCH_RECORDS;

const PREFIX: &str = "quarantine-";
const SUFFIX: &str = ".jsonl";
const SEQ_DIGITS: usize = 20;

/// A quarantine file of records set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quarantined {
    /// The first record's seq.
    pub(crate) from_seq: u64,
    /// The last one's.
    pub(crate) to_seq: u64,
    /// The file's name, in the log's directory.
    pub(crate) file: String,
    /// Its length.
    pub(crate) bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub(crate) sha256: String,
}

/// `quarantine-<from>-<to>.jsonl`, or with `-<n>` before the suffix when `n` > 0.
fn name(from_seq: u64, to_seq: u64, n: u32) -> String {
    if n == 0 {
        format!("{PREFIX}{from_seq:0SEQ_DIGITS$}-{to_seq:0SEQ_DIGITS$}{SUFFIX}")
    } else {
        format!("{PREFIX}{from_seq:0SEQ_DIGITS$}-{to_seq:0SEQ_DIGITS$}-{n}{SUFFIX}")
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let body = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let mut parts = body.splitn(3, '-');
    let (from, to) = (parts.next()?, parts.next()?);
    if let Some(n) = parts.next() {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let seq = |d: &str| {
        (d.len() == SEQ_DIGITS && d.bytes().all(|b| b.is_ascii_digit()))
            .then(|| d.parse().ok())
            .flatten()
    };
    Some((seq(from)?, seq(to)?))
}

/// Copies bytes `from..` of `segment` (records `from_seq..=to_seq`) to a quarantine file in
/// `dir`, durably, then cuts `segment` to `from`. The copy is written under a temporary name and
/// renamed once whole, so an interrupted start (a full disk, a crash) leaves either nothing under
/// the final name or the whole copy: a file of that name holding exactly these bytes is taken as
/// the copy (the cut was what stopped), anything else there is left alone and another name used.
pub(crate) fn set_aside(
    dir: &Path,
    segment: &Path,
    from: u64,
    from_seq: u64,
    to_seq: u64,
) -> Result<Quarantined, AuditError> {
    let (bytes, sha256) = hash_from(segment, from)?;
    let mut chosen = None;
    for n in 0..MAX_NAMES {
        let file = name(from_seq, to_seq, n);
        let path = dir.join(&file);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                copy_durably(dir, segment, from, &path)?;
                chosen = Some(file);
                break;
            }
            Err(e) => return Err(AuditError::io("stat", &path)(e)),
            Ok(m) if m.is_file() && m.len() == bytes && hash_file(&path)?.1 == sha256 => {
                chosen = Some(file);
                break;
            }
            Ok(_) => continue,
        }
    }
    let Some(file) = chosen else {
        return Err(AuditError::io(
            "create",
            &dir.join(name(from_seq, to_seq, 0)),
        )(io::ErrorKind::AlreadyExists.into()));
    };
    cut(segment, from)?;
    Ok(Quarantined {
        from_seq,
        to_seq,
        file,
        bytes,
        sha256,
    })
}

/// Names tried for one set-aside before giving up.
const MAX_NAMES: u32 = 100;

/// Bytes `from..` of `segment` copied to `path` under a temporary name, fsynced, renamed, and
/// the directory fsynced.
fn copy_durably(dir: &Path, segment: &Path, from: u64, path: &Path) -> Result<(), AuditError> {
    let partial = path.with_extension("partial");
    let mut source = File::open(segment).map_err(AuditError::io("open", segment))?;
    io::Seek::seek(&mut source, io::SeekFrom::Start(from))
        .map_err(AuditError::io("read", segment))?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&partial)
        .map_err(AuditError::io("create", &partial))?;
    io::copy(&mut source, &mut out).map_err(AuditError::io("write", &partial))?;
    out.sync_all().map_err(AuditError::io("fsync", &partial))?;
    fs::rename(&partial, path).map_err(AuditError::io("rename", &partial))?;
    sync_dir(dir).map_err(AuditError::io("fsync", dir))
}

/// Length and hex SHA-256 of bytes `from..` of `path`.
fn hash_from(path: &Path, from: u64) -> Result<(u64, String), AuditError> {
    let mut f = File::open(path).map_err(AuditError::io("open", path))?;
    io::Seek::seek(&mut f, io::SeekFrom::Start(from)).map_err(AuditError::io("read", path))?;
    let mut hash = Sha256::new();
    let bytes =
        io::copy(&mut f, &mut HashWriter(&mut hash)).map_err(AuditError::io("read", path))?;
    Ok((bytes, hex::encode(hash.finalize())))
}

fn hash_file(path: &Path) -> Result<(u64, String), AuditError> {
    hash_from(path, 0)
}

/// The quarantine file in `dir` whose records would have been `next_seq` on: set aside by an
/// open that stopped before recording it. Only a regular file no larger than one write can be,
/// named with a sensible range, counts (a FIFO or a planted giant is left alone).
pub(crate) fn unrecorded(dir: &Path, next_seq: u64) -> Result<Option<Quarantined>, AuditError> {
    for entry in fs::read_dir(dir).map_err(AuditError::io("list", dir))? {
        let entry = entry.map_err(AuditError::io("list", dir))?;
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((from_seq, to_seq)) = parse_name(&file) else {
            continue;
        };
        if from_seq != next_seq
            || to_seq < from_seq
            || to_seq - from_seq >= MAX_BATCH_RECORDS as u64
        {
            continue;
        }
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(AuditError::io("stat", &path))?;
        if !meta.is_file() || meta.len() > MAX_SET_ASIDE_BYTES {
            continue;
        }
        let (bytes, sha256) = hash_file(&path)?;
        return Ok(Some(Quarantined {
            from_seq,
            to_seq,
            file,
            bytes,
            sha256,
        }));
    }
    Ok(None)
}

/// The most bytes one write can hold.
const MAX_SET_ASIDE_BYTES: u64 = MAX_BATCH_RECORDS as u64 * (MAX_RECORD_BYTES as u64 + 1);

/// Whether the quarantine file `file` in `dir` still holds `bytes` bytes hashing to `sha256`
/// (what its `audit_set_aside` record says).
pub(crate) fn still_there(dir: &Path, file: &str, bytes: u64, sha256: &str) -> bool {
    if parse_name(file).is_none() {
        return false;
    }
    let path = dir.join(file);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() && m.len() == bytes => {
            hash_file(&path).is_ok_and(|(_, h)| h == sha256)
        }
        _ => false,
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        assert_eq!(parse_name(&name(7, 9, 0)), Some((7, 9)));
        assert_eq!(parse_name(&name(7, 9, 3)), Some((7, 9)));
        assert_eq!(
            parse_name("quarantine-00000000000000000007-00000000000000000009-.jsonl"),
            None
        );
        assert_eq!(parse_name("quarantine-7-9.jsonl"), None);
        assert_eq!(parse_name("audit-00000000000000000007.jsonl"), None);
    }
}
