//! Recording files: where they live, what they hold, and how to tell they were not altered.
//!
//! A recording is a folder of append-only files (see [`manifest`] for the format):
//! `video-N.mp4` (fragmented MP4, one per resolution), `events.jsonl` (the event track),
//! `thumbs.bin` (JPEG thumbnails) and `manifest.jsonl` (a hash chain over all of it, each line
//! signed with the gateway's Ed25519 key). Nothing here encodes video (that is
//! `portcullis-recorder`) or does network I/O.

pub mod catalog;
mod live;
pub mod manifest;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;
pub mod scan;
pub mod storage;
pub mod writer;

pub use catalog::{
    closed_end, closed_lines, detail, expire, read_piece, read_run, recover, summary, verify,
    ClosedOnRecord, Detail, ListedState, Piece, Recovered, RecoveryAct, RecoveryTrail, Status,
    Summary, Verdict, QUARANTINE_PREFIX,
};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use live::LiveRecordings;
pub use manifest::{SessionMeta, Span};
pub use storage::{LocalDisk, RecordingSink, RecordingStorage, StorageError, UploadStatus};
pub use writer::{RecordingWriter, SegmentInfo};

/// Now, in Unix milliseconds (the wall-clock times manifests record).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random signing key.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}
