//! Why opening, appending to or querying the audit log failed.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::verify::BadRecord;

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
