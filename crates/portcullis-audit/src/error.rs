//! Why opening, appending to or querying the audit log failed, and what can be wrong with a
//! record of it (a line or a segment file).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::digest::Digest;

/// An error of the audit log. Cloneable, because one failed fsync fails every record of its batch.
#[derive(Debug, Clone, Error)]
pub enum AuditError {
    /// A file operation failed while opening or reading the log.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done: `open`, `read`, `truncate`, ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Writing or fsyncing failed: the record was not acknowledged, and the log accepts nothing
    /// more until it is opened again (after a failed fsync the kernel may have dropped the data,
    /// so retrying could acknowledge a record that is not on disk).
    #[error("audit log stopped: {op} {}: {source}", .path.display())]
    Stopped {
        /// `write`, `fsync`, `create` or `fsync dir`.
        op: &'static str,
        /// The segment or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Another `AuditLog` (in this process or another) has the directory open.
    #[error("audit log {} is already open elsewhere", .0.display())]
    Locked(PathBuf),
    /// The chain is broken before the end of the current segment. Nothing is repaired: run
    /// `verify`, keep the evidence, and open with
    /// [`OpenOptions::allow_broken_chain`](crate::OpenOptions::allow_broken_chain) to go on.
    #[error("audit log chain is broken: {0}")]
    BrokenChain(Box<BadRecord>),
    /// The last seal of the log does not verify with the sealing key: the log was changed (and
    /// its hashes recomputed), or the key is not the one that sealed it. Nothing is appended.
    #[error(
        "the seal of record {seq} does not verify with this gateway's key: the trail was \
        changed, or the key is not the one that sealed it; check with `portcullis audit verify`"
    )]
    SealMismatch {
        /// The last sealed record's seq.
        seq: u64,
    },
    /// More records follow the last seal than one write of the writer holds, so they are not a
    /// crash's unacknowledged write: they were added or had their seals stripped while the
    /// gateway was down. Nothing is appended (sealing them would vouch for them).
    #[error(
        "{count} records follow the last seal (record {last_sealed_seq}), more than one \
        write holds: they were not written by this gateway as they are (added, or their seals \
        stripped); check with `portcullis audit verify`"
    )]
    UnsealedTail {
        /// Records after the last seal.
        count: u64,
        /// The last sealed record's seq.
        last_sealed_seq: u64,
    },
    /// The record's line would be longer than [`MAX_RECORD_BYTES`](crate::MAX_RECORD_BYTES).
    #[error("audit record too large: up to {bytes} bytes, at most {max}")]
    RecordTooLarge {
        /// The size its line could have.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The record is not acceptable (empty actor, bad kind name).
    #[error("invalid audit record: {0}")]
    InvalidRecord(&'static str),
    /// The queue is full ([`AuditLog::try_submit`](crate::AuditLog::try_submit) only).
    #[error("audit queue is full")]
    QueueFull,
    /// The log was closed, or its writer thread is gone.
    #[error("audit log is closed")]
    Closed,
    /// An option is out of range.
    #[error("invalid audit log option: {0}")]
    InvalidOptions(&'static str),
}

impl AuditError {
    /// Wraps an I/O error with what was done and to which path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| AuditError::Io {
            op,
            path,
            source: Arc::new(source),
        }
    }
}

/// What is wrong with a line or a segment file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// The line is not a JSON record of this format.
    #[error("unparseable: {0}")]
    Unparseable(String),
    /// The line is longer than any record can be.
    #[error("line longer than a record can be")]
    TooLong,
    /// The file ends in the middle of a line (only tolerated at the end of the last segment).
    #[error("incomplete line (no newline)")]
    Unterminated,
    /// The line parses but is not in the one form the log writes (field order, spacing, hex case).
    #[error("not in canonical form")]
    NotCanonical,
    /// The record's `hash` is not the SHA-256 of its canonical bytes: it was changed.
    #[error("hash mismatch: stored {stored}, computed {computed}")]
    HashMismatch {
        /// The `hash` field.
        stored: Digest,
        /// What its bytes hash to.
        computed: Digest,
    },
    /// The record's `seq` is not the one after the previous record's: records are missing,
    /// duplicated or reordered.
    #[error("seq gap: expected {expected}, found {found}")]
    SeqGap {
        /// The previous record's seq plus one.
        expected: u64,
        /// The record's seq.
        found: u64,
    },
    /// The record's `prev` is not the previous record's `hash`.
    #[error("prev mismatch: expected {expected}, found {found}")]
    PrevMismatch {
        /// The previous record's hash.
        expected: Digest,
        /// The record's `prev`.
        found: Digest,
    },
    /// The record's time is before the previous record's (the writer never lets time go back).
    #[error("time went backwards: {found} ms after {previous} ms")]
    TimeWentBackwards {
        /// The previous record's `ts_ms`.
        previous: u64,
        /// The record's `ts_ms`.
        found: u64,
    },
    /// The segment's name does not give the seq the chain expects next: a segment before it is
    /// missing, or it was renamed.
    #[error("segment named for seq {named}, but seq {expected} is next")]
    MisnamedSegment {
        /// The seq in the file name.
        named: u64,
        /// The seq the chain expects.
        expected: u64,
    },
    /// A segment other than the last has no record.
    #[error("empty segment")]
    EmptySegment,
    /// The record's seal is not the given key's seal of its hash: the seal, or the record and
    /// every hash before it, was made by someone else.
    #[error("seal does not verify with the given key")]
    BadSeal,
    /// The log's last record carries no seal, so nothing vouches for the records after the last
    /// seal: they were added or changed while the gateway was down, or a crash cut the write
    /// that would have sealed them (never acknowledged; the gateway seals them as found, with an
    /// `audit_sealed` record, when it next opens the trail).
    #[error("the last record carries no seal (the last seal is at {})",
        .last_sealed.map_or_else(|| "no record".to_owned(), |s| format!("seq {s}")))]
    Unsealed {
        /// The seq of the last sealed record, if there is one.
        last_sealed: Option<u64>,
    },
}

impl Problem {
    /// Whether a crash in the middle of a write can leave this: such lines at the very end of the
    /// last segment were never acknowledged, and are a torn tail rather than a broken chain.
    pub(crate) fn may_be_torn(&self) -> bool {
        matches!(
            self,
            Problem::Unparseable(_) | Problem::TooLong | Problem::Unterminated
        )
    }
}

/// The first bad record (or segment) of a log, located for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The segment file.
    pub file: PathBuf,
    /// The line, from 1; 0 when the problem is the file itself (its name, or it is empty).
    pub line: u64,
    /// The record's seq, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, " line {}", self.line)?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for BadRecord {}
