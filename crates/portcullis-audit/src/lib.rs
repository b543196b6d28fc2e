//! The audit trail of Portcullis: an append-only, hash-chained log of who did what (logins,
//! sessions, kills, policy decisions, clipboard and file events, admin changes, exports), where
//! each record is fsynced before [`AuditLog::append`] returns, so an action is acknowledged only
//! once its record is on disk.
//!
//! # On disk
//!
//! A log is a directory:
//!
//! ```text
//! audit.lock                              held (flock) by the one AuditLog that has it open
//! audit-00000000000000000001.jsonl        segments, named by the seq of their first record
//! audit-00000000000000412337.jsonl        (20 digits: name order is chain order)
//! ```
//!
//! Each segment is JSON lines, one record per line, in one canonical form:
//!
//! ```text
//! {"seq":1,"ts_ms":1700000000000,"prev":"000…000","hash":"9f2c…","seal":"5be0…","kind":"login","actor":"alice","detail":{"address":"10.0.0.7"}}
//! ```
//!
//! - the fields always come in this order: `seq`, `ts_ms`, `prev`, `hash`, `seal` (left out
//!   when absent), `kind`, `actor`, `target` and `session` (left out when absent), `detail`
//!   (a JSON object); no spaces;
//! - `hash` is the SHA-256 of the line without `"hash":"<64 hex>",`, without
//!   `"seal":"<128 hex>",` and without its newline (its canonical bytes). Verification checks
//!   that the line starts with exactly the header its parsed `seq`, `ts_ms`, `prev`, `hash` and
//!   `seal` give, then hashes the line's own bytes: it never re-serialises, so what is hashed is
//!   what is on disk;
//! - `seal` (a log opened with [`OpenOptions::sealing_key`]: the gateway's Ed25519 recording
//!   signing key) is on the last record of each write: the key's signature of [`SEAL_DOMAIN`]
//!   followed by the record's 32 hash bytes. A hash chain alone can be recomputed by anyone who
//!   can write the files; a seal cannot, and it vouches for every record before it;
//! - `prev` is the previous record's `hash`: [`GENESIS`] (zeros) for seq 1, and the last hash of
//!   the previous segment for the first record of each later one, so the chain runs across
//!   segments;
//! - `seq` grows by one per record, across restarts and segments; `ts_ms` (stamped by the
//!   writer) never decreases.
//!
//! A segment is closed when the next record would take it past
//! [`OpenOptions::max_segment_bytes`] (default 64 MiB); a record's line is at most
//! [`MAX_RECORD_BYTES`] (64 KiB): bigger records are refused, never cut.
//!
//! # Durability
//!
//! One writer thread per log takes every queued record at once, writes them, calls
//! `fdatasync` once and then acknowledges them all (group commit); a new segment's directory
//! entry is fsynced before any record in it is acknowledged. The queue is bounded
//! ([`OpenOptions::queue_depth`]): producers wait ([`AuditLog::submit`]) or are refused
//! ([`AuditLog::try_submit`]). A failed write or fsync stops the log ([`AuditError::Stopped`]):
//! nothing is acknowledged after it until it is opened again.
//!
//! An acknowledged record is always in the log. A record whose append failed (or never returned,
//! because of a crash) may be there too: it was attempted.
//!
//! Readers of the files (the SIEM export) see a batch's lines as soon as they are written, before
//! their fsync: a crash can still take those back, and their seqs then go to other records.
//! [`AuditLog::watermark`] tells such readers how far the log is fsynced ([`Watermark`]).
//! The writer's file operations go through a [`FileLayer`]; [`CrashFiles`] is a fault-injecting
//! one for tests (failing writes, held fsyncs, a crash that forgets what was not fsynced).
//!
//! # Recovery and verification
//!
//! Opening reads the current (last) segment. A crash can only damage what was not fsynced, so
//! unparseable lines at its very end (an incomplete last line, say) were never acknowledged:
//! they are cut, reported in [`AuditLog::recovery`] and logged. Anything else wrong (a readable
//! record with a bad hash, a gap, a bad line followed by good ones) is a broken chain: opening
//! refuses it ([`AuditError::BrokenChain`], naming the record) unless
//! [`OpenOptions::allow_broken_chain`] is given; nothing is ever repaired.
//!
//! A sealing log first checks its last seal with the key's public half: one that does not verify
//! (the log was changed, or the key is another) refuses the open ([`AuditError::SealMismatch`]).
//! Records after the last seal can be a crash's unacknowledged write only up to
//! [`MAX_BATCH_RECORDS`]; more refuse the open ([`AuditError::UnsealedTail`]). Fewer are set
//! aside: copied to a quarantine file, cut, and recorded first (`audit_set_aside`;
//! [`VerifyReport::set_aside`] lists them and checks each file). A log with no seal to go back to
//! (from before sealing) is sealed as found (an `audit_sealed` record; trust on first use):
//! [`VerifyReport::sealed_as_found`] names what no seal made at writing time vouches for.
//!
//! [`verify`] checks the whole chain offline and names the first bad record (file, line, seq,
//! problem); given the public key, every seal and that the last record is sealed. Seals show
//! changes, insertions and deletions even by someone who recomputes the hashes, but not the
//! removal of the most recent records (a shorter log ending at an earlier seal): compare
//! [`VerifyReport::last_hash`] with a copy kept elsewhere (the SIEM export).
//!
//! ```
//! use portcullis_audit::{verify, AuditLog, Filter, Kind, Record};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = AuditLog::open(dir.path()).unwrap();
//! let appended = log
//!     .append(Record::new(Kind::LOGIN, "alice").detail("address", "10.0.0.7"))
//!     .unwrap();
//! assert_eq!(appended.seq, 1);
//! let found = log.query(&Filter { actor: Some("alice".into()), ..Filter::new(10) }).unwrap();
//! assert_eq!(found[0].record.kind, Kind::LOGIN);
//! drop(log);
//! assert_eq!(verify(dir.path(), None).unwrap().last_hash, appended.hash);
//! ```

mod digest;
mod error;
mod files;
mod log;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;
mod query;
mod record;
mod segment;
mod set_aside;
mod ticket;
mod verify;

pub use digest::{BadDigest, Digest, GENESIS};
pub use error::{AuditError, BadRecord, Problem};
pub use files::{AppendFile, CrashFiles, CrashLayer, FileLayer, OsFiles};
pub use log::{
    has_seal, AuditLog, OpenOptions, Recovery, Stats, Watermark, DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_QUEUE_DEPTH, MAX_BATCH_RECORDS,
};
pub use query::{read_lines, read_only_query, Filter, Order, MAX_QUERY_LIMIT};
pub use record::{Entry, Kind, Record, Seal, MAX_RECORD_BYTES, SEAL_DOMAIN};
pub use segment::{held_since, is_held};
pub use ticket::{Appended, Ticket};
pub use verify::{verify, SealedAsFound, SetAside, TornTail, VerifyError, VerifyReport};
