//! Setting aside the records a crash left after a sealed log's last seal: copied byte for byte
//! to a quarantine file in the log's directory (made durable), then cut from the segment, so
//! that the log goes on from its last seal. Opening the log records it (`audit_set_aside`) as
//! its first act; a crash between the cut and that record is found at the next open by the
//! quarantine file's name (its first seq is the log's next).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::AuditError;
use crate::files::sync_dir;

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

fn name(from_seq: u64, to_seq: u64) -> String {
    format!("{PREFIX}{from_seq:0SEQ_DIGITS$}-{to_seq:0SEQ_DIGITS$}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (from, to) = name
        .strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .split_once('-')?;
    let seq = |d: &str| {
        (d.len() == SEQ_DIGITS && d.bytes().all(|b| b.is_ascii_digit()))
            .then(|| d.parse().ok())
            .flatten()
    };
    Some((seq(from)?, seq(to)?))
}

/// Copies bytes `from..` of `segment` (records `from_seq..=to_seq`) to a new quarantine file
/// in `dir`, durably, then cuts `segment` to `from`. A file of that name already there (planted:
/// a set-aside of these seqs is recorded before the log goes past them) refuses, nothing cut.
pub(crate) fn set_aside(
    dir: &Path,
    segment: &Path,
    from: u64,
    from_seq: u64,
    to_seq: u64,
) -> Result<Quarantined, AuditError> {
    let file = name(from_seq, to_seq);
    let path = dir.join(&file);
    let mut source = File::open(segment).map_err(AuditError::io("open", segment))?;
    io::Seek::seek(&mut source, io::SeekFrom::Start(from))
        .map_err(AuditError::io("read", segment))?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(AuditError::io("create", &path))?;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = source
            .read(&mut buf)
            .map_err(AuditError::io("read", segment))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hash.update(chunk);
        out.write_all(chunk)
            .map_err(AuditError::io("write", &path))?;
        bytes += n as u64;
    }
    out.sync_all().map_err(AuditError::io("fsync", &path))?;
    sync_dir(dir).map_err(AuditError::io("fsync", dir))?;
    let cut = fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .map_err(AuditError::io("open", segment))?;
    cut.set_len(from)
        .map_err(AuditError::io("truncate", segment))?;
    cut.sync_all().map_err(AuditError::io("fsync", segment))?;
    Ok(Quarantined {
        from_seq,
        to_seq,
        file,
        bytes,
        sha256: hex::encode(hash.finalize()),
    })
}

/// The quarantine file in `dir` whose records would have been `next_seq` on: set aside by an
/// open that stopped before recording it.
pub(crate) fn unrecorded(dir: &Path, next_seq: u64) -> Result<Option<Quarantined>, AuditError> {
    for entry in fs::read_dir(dir).map_err(AuditError::io("list", dir))? {
        let entry = entry.map_err(AuditError::io("list", dir))?;
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((from_seq, to_seq)) = parse_name(&file) else {
            continue;
        };
        if from_seq != next_seq {
            continue;
        }
        let path = entry.path();
        let mut source = File::open(&path).map_err(AuditError::io("open", &path))?;
        let mut hash = Sha256::new();
        let bytes = io::copy(&mut source, &mut HashWriter(&mut hash))
            .map_err(AuditError::io("read", &path))?;
        return Ok(Some(Quarantined {
            from_seq,
            to_seq,
            file,
            bytes,
            sha256: hex::encode(hash.finalize()),
        }));
    }
    Ok(None)
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
        assert_eq!(parse_name(&name(7, 9)), Some((7, 9)));
        assert_eq!(parse_name("quarantine-7-9.jsonl"), None);
        assert_eq!(parse_name("audit-00000000000000000007.jsonl"), None);
    }
}
