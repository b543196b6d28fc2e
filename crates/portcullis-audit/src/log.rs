//! The log: opening and recovering a directory, and the group-commit writer thread (which seals
//! the last record of each write when given the gateway's key).

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};
use std::{fmt, mem};

use ed25519_dalek::{SigningKey, VerifyingKey};
use tracing::{error, warn};

use crate::digest::Digest;
use crate::error::{AuditError, BadRecord, Problem};
use crate::files::{create_segment, cut, sync_dir, AppendFile, FileLayer, OsFiles};
use crate::query::{self, Filter};
use crate::record::{
    frame, insert_seal, parse_line, Chain, Entry, Framed, Kind, Record, Seal, MAX_RECORD_BYTES,
    SEAL_TAG_BYTES,
};
use crate::segment::{
    list_segments, read_first_line, read_last_line, segment_name, Ending, Lines, SegmentMeta,
    LOCK_FILE,
};
use crate::ticket::{ticket, Appended, Reply, Ticket};
use crate::verify::{scan_segment, OnBad, Position, SealAt, Seals, SetAside, TornTail};

/// Default segment size before rotation: 64 MiB keeps a segment quick to scan and to copy,
/// and a busy gateway (a few hundred records a minute) at a handful of files a month.
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Default queue depth: records waiting for the writer. At [`MAX_RECORD_BYTES`] each, the queue
/// holds at most 64 MiB; in practice records are a few hundred bytes.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;

pub use crate::segment::MAX_BATCH_RECORDS;

/// Largest queue depth accepted (1 GiB of records at the worst): a write is one queue's worth.
const MAX_QUEUE_DEPTH: usize = MAX_BATCH_RECORDS;

/// Smallest segment size accepted: a segment must hold the largest record.
const MIN_SEGMENT_BYTES: u64 = MAX_RECORD_BYTES as u64;

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How to open a log. [`AuditLog::open`] uses the defaults.
#[derive(Clone)]
pub struct OpenOptions {
    max_segment_bytes: u64,
    queue_depth: usize,
    on_broken_chain: OnBad,
    clock: Clock,
    files: Arc<dyn FileLayer>,
    seal: Option<Arc<SigningKey>>,
    node: Option<Arc<str>>,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("max_segment_bytes", &self.max_segment_bytes)
            .field("queue_depth", &self.queue_depth)
            .field("on_broken_chain", &self.on_broken_chain)
            .field("files", &self.files)
            .field("sealing", &self.seal.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// The defaults: 64 MiB segments, a queue of 1024, refuse a broken chain, the system clock.
    pub fn new() -> Self {
        Self {
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            on_broken_chain: OnBad::Stop,
            clock: Arc::new(system_ms),
            files: Arc::new(OsFiles),
            seal: None,
            node: None,
        }
    }

    /// Names the gateway in every record (`detail.node`, unless the record names one): in a
    /// cluster each gateway keeps its own chain, and a record seen in the merged view, a SIEM
    /// or an export still says where it happened, under the chain's hashes and seals.
    #[must_use]
    pub fn node(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Seals the log with the gateway's signing key: the last record of each write carries the
    /// key's seal of its hash. Opening checks the log's last seal with the key
    /// ([`AuditError::SealMismatch`]); records after the last seal (a crash in the middle of a
    /// write: at most [`MAX_BATCH_RECORDS`], else [`AuditError::UnsealedTail`]) are set aside
    /// in a quarantine file, recorded first (`audit_set_aside`); a log with no seal to go back
    /// to (from before sealing) first gets an `audit_sealed` record that seals it as found.
    /// Then [`verify`](crate::verify) with the public key shows any change.
    #[must_use]
    pub fn sealing_key(mut self, key: SigningKey) -> Self {
        self.seal = Some(Arc::new(key));
        self
    }

    /// Starts a new segment before a record would take the current one past `bytes`
    /// (at least [`MAX_RECORD_BYTES`]).
    #[must_use]
    pub fn max_segment_bytes(mut self, bytes: u64) -> Self {
        self.max_segment_bytes = bytes;
        self
    }

    /// How many records may wait for the writer (1 to 16384); more make
    /// [`AuditLog::submit`] wait and [`AuditLog::try_submit`] fail.
    #[must_use]
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }

    /// Opens even when the current segment's chain is broken (the break is left in place for
    /// `verify` to name, reported in [`Recovery::broken_chain`], and new records chain from the
    /// last readable one). Without it such a log is refused with [`AuditError::BrokenChain`].
    #[must_use]
    pub fn allow_broken_chain(mut self) -> Self {
        self.on_broken_chain = OnBad::Resync;
        self
    }

    /// The clock stamping records (Unix milliseconds), for tests. The writer never lets time go
    /// back along the log, whatever the clock does.
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The file operations the writer uses (default: the operating system's). For tests that
    /// put faults under the log ([`CrashFiles`](crate::CrashFiles)): reading stays on the real
    /// files.
    #[must_use]
    pub fn file_layer(mut self, files: Arc<dyn FileLayer>) -> Self {
        self.files = files;
        self
    }

    /// Opens (creating if need be) the log in `dir`: takes its lock, checks the current segment
    /// and cuts its torn tail, and starts the writer thread.
    pub fn open(&self, dir: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        if self.max_segment_bytes < MIN_SEGMENT_BYTES {
            return Err(AuditError::InvalidOptions(
                "max_segment_bytes must hold the largest record (64 KiB)",
            ));
        }
        if !(1..=MAX_QUEUE_DEPTH).contains(&self.queue_depth) {
            return Err(AuditError::InvalidOptions(
                "queue_depth must be between 1 and 16384",
            ));
        }
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(AuditError::io("create", &dir))?;
        let lock = lock_dir(&dir)?;
        let mut state = recover(&dir, self.on_broken_chain, self.seal.is_some())?;
        let mut set_aside = None;
        if let Some(key) = &self.seal {
            check_last_seal(&state, &key.verifying_key())?;
            // Records after the last seal, in the write a crash left unfinished (never
            // acknowledged: nothing waited on them), are set aside rather than vouched for.
            if let Some((end, offset, last_sealed)) = state
                .unsealed_end
                .as_ref()
                .and_then(|e| Some((e.seq, e.tail_offset?, e.last_sealed_seq?)))
            {
                let found = crate::set_aside::set_aside(
                    &dir,
                    &state.current,
                    offset,
                    last_sealed + 1,
                    end,
                )?;
                warn!(from_seq = found.from_seq, to_seq = found.to_seq, file = %found.file,
                    "the audit trail ended in records after its last seal (a crash in the middle \
                     of a write: never acknowledged): set aside");
                set_aside = Some(found);
                state = recover(&dir, self.on_broken_chain, true)?;
            } else {
                set_aside = crate::set_aside::unrecorded(&dir, state.chain.next_seq)?;
            }
        }
        let unsealed_end = state.unsealed_end.take().filter(|_| self.seal.is_some());

        let path = state.current;
        let file = self
            .files
            .open_append(&path)
            .map_err(AuditError::io("open", &path))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                state: State::Open,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            capacity: self.queue_depth,
            durable_seq: AtomicU64::new(state.chain.next_seq - 1),
            written_seq: AtomicU64::new(state.chain.next_seq - 1),
            opened_at: (state.chain.next_seq - 1, state.chain.prev),
            appended: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            segments: Mutex::new(state.segments),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            dir: dir.clone(),
            file,
            path,
            size: state.size,
            chain: state.chain,
            max_segment_bytes: self.max_segment_bytes,
            clock: Arc::clone(&self.clock),
            files: Arc::clone(&self.files),
            buf: Vec::new(),
            seal: self.seal.clone(),
            last_framed: None,
        };
        let handle = std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || writer.run())
            .map_err(AuditError::io("spawn writer for", &dir))?;
        let mut log = AuditLog {
            shared,
            writer: Some(handle),
            recovery: state.recovery,
            dir,
            verifying_key: self.seal.as_ref().map(|k| k.verifying_key()),
            node: self.node.clone(),
            _lock: lock,
        };
        if let Some(q) = set_aside {
            let record = Record::new(Kind::AUDIT_SET_ASIDE, "system")
                .detail("from_seq", q.from_seq)
                .detail("to_seq", q.to_seq)
                .detail("records", q.to_seq - q.from_seq + 1)
                .detail("file", q.file.as_str())
                .detail("bytes", q.bytes)
                .detail("sha256", q.sha256.as_str())
                .detail(
                    "reason",
                    "records after the trail's last seal (a write a crash left unfinished, or \
                     records added or stripped of their seals while the gateway was down): \
                     copied to the file named, not part of the chain",
                );
            let by_seq = log.append(record)?.seq;
            log.recovery.set_aside = Some(SetAside {
                by_seq,
                from_seq: q.from_seq,
                to_seq: q.to_seq,
                file: q.file,
                file_intact: true,
            });
            log.recovery.next_seq = by_seq + 1;
        }
        if let Some(end) = unsealed_end {
            let earlier = end.last_sealed_seq.is_some();
            warn!(seq = end.seq, hash = %end.hash, last_sealed_seq = ?end.last_sealed_seq,
                "the audit trail's last record carries no seal (a log from before sealing, or a \
                 crash in the middle of a write): sealing it as found");
            let record = Record::new(Kind::AUDIT_SEALED, "system")
                .detail("seq", end.seq)
                .detail("hash", end.hash.to_hex())
                .detail("last_sealed_seq", end.last_sealed_seq)
                .detail("earlier_records_sealed", earlier);
            let sealed = log.append(record)?.seq;
            log.recovery.sealed_as_found = Some(sealed);
            log.recovery.next_seq = sealed + 1;
        }
        Ok(log)
    }
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What opening found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The torn tail that was cut from the current segment (bytes of records that were never
    /// acknowledged: a crash came before their fsync).
    pub torn_tail: Option<TornTail>,
    /// The first break in the current segment's chain, left in place (only with
    /// [`OpenOptions::allow_broken_chain`]).
    pub broken_chain: Option<BadRecord>,
    /// The seq the next record gets.
    pub next_seq: u64,
    /// The seq of the `audit_sealed` record opening appended because the last record carried
    /// no seal (only with [`OpenOptions::sealing_key`]).
    pub sealed_as_found: Option<u64>,
    /// Records after the last seal that opening set aside (only with
    /// [`OpenOptions::sealing_key`]).
    pub set_aside: Option<SetAside>,
}

/// Counters since the log was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Records written and acknowledged.
    pub appended: u64,
    /// Batches: each wrote whatever was queued when the writer came for it.
    pub batches: u64,
    /// `fsync`s of segments (one per batch, two when a batch spans a rotation).
    pub fsyncs: u64,
}

/// An open audit log: append-only, hash-chained, fsynced before acknowledging (group commit).
///
/// One writer thread owns the files. Callers hand it records ([`AuditLog::append`],
/// [`AuditLog::submit`], [`AuditLog::try_submit`]); each time it wakes it takes **everything**
/// queued, writes it, fsyncs once and only then acknowledges every record of the batch. So
/// concurrent callers share fsyncs and throughput grows with them while each record still waits
/// for its own data to be on disk.
///
/// `AuditLog` is `Send + Sync`: share it in an `Arc`. Dropping it writes what is queued,
/// acknowledges it and stops the writer ([`AuditLog::close`] does the same and reports a failure).
///
/// From async code: `log.try_submit(record)?.await` never blocks the executor (a full queue is
/// [`AuditError::QueueFull`]: refuse the audited action), or `spawn_blocking` around
/// [`AuditLog::append`] to wait for room instead. The crate needs no async runtime.
pub struct AuditLog {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    recovery: Recovery,
    dir: PathBuf,
    /// The public half of the sealing key, if the log seals.
    verifying_key: Option<VerifyingKey>,
    /// The gateway named in every record ([`OpenOptions::node`]).
    node: Option<Arc<str>>,
    /// Held for the log's life: a second `AuditLog` on the directory is refused.
    _lock: File,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Whether a submitter waits for room in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenFull {
    Wait,
    Fail,
}

impl AuditLog {
    /// Opens the log in `dir` with the default [`OpenOptions`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, AuditError> {
        OpenOptions::new().open(dir)
    }

    /// Appends a record and returns once it is fsynced. Blocks (also while the queue is full):
    /// from async code, see the type's documentation.
    pub fn append(&self, record: Record) -> Result<Appended, AuditError> {
        self.submit(record)?.wait()
    }

    /// Queues a record, waiting while the queue is full, and returns its [`Ticket`]: the record
    /// is on disk once the ticket says so.
    pub fn submit(&self, record: Record) -> Result<Ticket, AuditError> {
        self.enqueue(&record, WhenFull::Wait)
    }

    /// Queues records that belong together so that the writer takes them in one batch (one
    /// write, one fsync): they are on disk together or not at all, unless the queue has no
    /// room for all of them (then [`AuditError::QueueFull`], and nothing is queued).
    pub fn submit_all(&self, records: &[Record]) -> Result<Vec<Ticket>, AuditError> {
        let bodies = records
            .iter()
            .map(|r| self.body(r))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = &*self.shared;
        let mut queue = shared.lock_queue();
        match &queue.state {
            State::Open => {}
            State::Closing => return Err(AuditError::Closed),
            State::Stopped(e) => return Err(e.clone()),
        }
        if queue.items.len().saturating_add(bodies.len()) > shared.capacity {
            return Err(AuditError::QueueFull);
        }
        let tickets = bodies
            .into_iter()
            .map(|body| {
                let (reply, ticket) = ticket();
                queue.items.push(Pending { body, reply });
                ticket
            })
            .collect();
        drop(queue);
        shared.work.notify_one();
        Ok(tickets)
    }

    /// Queues a record without ever blocking; fails with [`AuditError::QueueFull`] when the
    /// queue is full.
    pub fn try_submit(&self, record: Record) -> Result<Ticket, AuditError> {
        self.enqueue(&record, WhenFull::Fail)
    }

    /// The record's stored body, with this gateway's name when it has one.
    fn body(&self, record: &Record) -> Result<Vec<u8>, AuditError> {
        match &self.node {
            Some(node) if !record.detail.contains_key("node") => {
                let mut named = record.clone();
                named
                    .detail
                    .insert("node".to_owned(), serde_json::Value::from(node.as_ref()));
                named.encode_body()
            }
            _ => record.encode_body(),
        }
    }

    fn enqueue(&self, record: &Record, when_full: WhenFull) -> Result<Ticket, AuditError> {
        let body = self.body(record)?;
        let shared = &*self.shared;
        let mut queue = shared.lock_queue();
        loop {
            match &queue.state {
                State::Open => {}
                State::Closing => return Err(AuditError::Closed),
                State::Stopped(e) => return Err(e.clone()),
            }
            if queue.items.len() < shared.capacity {
                break;
            }
            if when_full == WhenFull::Fail {
                return Err(AuditError::QueueFull);
            }
            queue = shared
                .room
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let (reply, ticket) = ticket();
        queue.items.push(Pending { body, reply });
        drop(queue);
        shared.work.notify_one();
        Ok(ticket)
    }

    /// [`verify`](crate::verify) of this log, by its writer: only records written after the
    /// check began may lack their seal (a write in progress); an acknowledged record after the
    /// last seal is [`Problem::Unsealed`], whoever holds the lock. Blocking file I/O.
    pub fn verify(&self) -> Result<crate::VerifyReport, crate::VerifyError> {
        let acknowledged = self.shared.durable_seq.load(Ordering::Acquire);
        crate::verify::verify_with(&self.dir, self.verifying_key.as_ref(), &|from, last| {
            // Only records this writer has started writing and not yet acknowledged, while it
            // still writes: not records someone else appended after its last write.
            let written = self.shared.written_seq.load(Ordering::Acquire);
            let writing = matches!(self.shared.lock_queue().state, State::Open);
            writing && from > acknowledged && last <= written
        })
    }

    /// Records matching `filter`, read from the segments (acknowledged records only). A linear
    /// scan that skips segments outside the filter's seq or time range; blocking file I/O.
    /// A returned record's own hash checked out (one that does not is left out, with a
    /// warning); the chain between records is [`verify`](crate::verify)'s job.
    pub fn query(&self, filter: &Filter) -> Result<Vec<Entry>, AuditError> {
        let segments = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let durable = self.shared.durable_seq.load(Ordering::Acquire);
        query::run(&segments, durable, filter)
    }

    /// What readers of the files may trust: see [`Watermark`].
    pub fn watermark(&self) -> Watermark {
        Watermark {
            shared: Arc::clone(&self.shared),
        }
    }

    /// What opening found and did.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Counters since the log was opened.
    pub fn stats(&self) -> Stats {
        Stats {
            appended: self.shared.appended.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// Why the log takes nothing more, if it does not (a write or fsync failed, or it is
    /// closing): what a readiness check reports.
    pub fn failure(&self) -> Option<String> {
        match &self.shared.lock_queue().state {
            State::Open => None,
            State::Closing => Some("the audit trail is closing".to_owned()),
            State::Stopped(e) => Some(format!("the audit trail stopped: {e}")),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key that checks this log's seals (the public half of its sealing key), if it seals.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        self.verifying_key
    }

    /// Writes and acknowledges what is queued, stops the writer, and says whether it had
    /// stopped on a failure.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.shut_down();
        match &self.shared.lock_queue().state {
            State::Stopped(e) => Err(e.clone()),
            State::Open | State::Closing => Ok(()),
        }
    }

    fn shut_down(&mut self) {
        {
            let mut queue = self.shared.lock_queue();
            if matches!(queue.state, State::Open) {
                queue.state = State::Closing;
            }
        }
        self.shared.work.notify_all();
        self.shared.room.notify_all();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                error!(dir = %self.dir.display(), "audit writer thread panicked");
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// How far the log's files can be trusted by a reader that reads them directly (the SIEM
/// export): the writer appends a batch, fsyncs it, and only then moves the watermark. A whole
/// line past it may still vanish in a crash (its fsync had not returned), and its seq then goes
/// to another record: read no further than [`Watermark::synced_seq`].
///
/// Cheap to clone; it keeps showing the last value after the log is closed.
#[derive(Clone)]
pub struct Watermark {
    shared: Arc<Shared>,
}

impl fmt::Debug for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watermark")
            .field("synced_seq", &self.synced_seq())
            .field("opened_at", &self.opened_at())
            .finish()
    }
}

impl Watermark {
    /// The last record known to be fsynced (0 when the log has none).
    pub fn synced_seq(&self) -> u64 {
        self.shared.durable_seq.load(Ordering::Acquire)
    }

    /// The seq and hash of the log's last record when it was opened (after a torn tail was
    /// cut): everything after a crash continues from there. `(0, GENESIS)` for an empty log.
    pub fn opened_at(&self) -> (u64, Digest) {
        self.shared.opened_at
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when records are queued or the log closes: wakes the writer.
    work: Condvar,
    /// Signalled when the writer empties the queue: wakes waiting submitters.
    room: Condvar,
    capacity: usize,
    /// The last fsynced seq: queries read no further (a line past it may be half written, or
    /// whole but not yet on disk: a crash would take it back).
    durable_seq: AtomicU64,
    /// The last record the writer has handed to the file (fsynced or not yet).
    written_seq: AtomicU64,
    /// The last record's seq and hash when the log was opened.
    opened_at: (u64, Digest),
    appended: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    segments: Mutex<Vec<SegmentMeta>>,
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock, so a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Queue {
    items: Vec<Pending>,
    state: State,
}

enum State {
    Open,
    /// Closing: what is queued is still written; nothing new is taken.
    Closing,
    /// A write or fsync failed: nothing more is taken until the log is opened again.
    Stopped(AuditError),
}

struct Pending {
    /// The record's serialised fields ([`Record::encode_body`]).
    body: Vec<u8>,
    reply: Reply,
}

/// The writer thread's state: the only code that writes segments.
struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    file: Box<dyn AppendFile>,
    path: PathBuf,
    /// Bytes in the current segment.
    size: u64,
    chain: Chain,
    max_segment_bytes: u64,
    clock: Clock,
    files: Arc<dyn FileLayer>,
    buf: Vec<u8>,
    /// The key sealing the last record of each write.
    seal: Option<Arc<SigningKey>>,
    /// The last line framed in `buf`: the one the next write seals.
    last_framed: Option<Framed>,
}

/// Whatever ends the writer thread (a return or a panic), nobody is left waiting: the log takes
/// no more records and those still queued are told it is closed.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let orphans = {
            let mut queue = self.0.lock_queue();
            if matches!(queue.state, State::Open) {
                queue.state = State::Closing;
            }
            mem::take(&mut queue.items)
        };
        self.0.room.notify_all();
        drop(orphans);
    }
}

impl Writer {
    fn run(mut self) {
        let _guard = ExitGuard(Arc::clone(&self.shared));
        loop {
            let batch = {
                let mut queue = self.shared.lock_queue();
                loop {
                    if !queue.items.is_empty() {
                        debug_assert!(queue.items.len() <= MAX_BATCH_RECORDS);
                        break mem::take(&mut queue.items);
                    }
                    if !matches!(queue.state, State::Open) {
                        return;
                    }
                    queue = self
                        .shared
                        .work
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            self.shared.room.notify_all();
            if let Err(e) = self.commit(batch) {
                error!(error = %e, "audit log stopped");
                let orphans = {
                    let mut queue = self.shared.lock_queue();
                    queue.state = State::Stopped(e.clone());
                    mem::take(&mut queue.items)
                };
                for pending in orphans {
                    pending.reply.send(Err(e.clone()));
                }
                return;
            }
        }
    }

    /// Writes a batch, fsyncs, then acknowledges it (or fails all of it).
    fn commit(&mut self, batch: Vec<Pending>) -> Result<(), AuditError> {
        match self.write_batch(&batch) {
            Ok(appended) => {
                let shared = &self.shared;
                if let Some(last) = appended.last() {
                    shared.durable_seq.store(last.seq, Ordering::Release);
                }
                shared
                    .appended
                    .fetch_add(appended.len() as u64, Ordering::Relaxed);
                shared.batches.fetch_add(1, Ordering::Relaxed);
                for (pending, appended) in batch.into_iter().zip(appended) {
                    pending.reply.send(Ok(appended));
                }
                Ok(())
            }
            Err(e) => {
                for pending in batch {
                    pending.reply.send(Err(e.clone()));
                }
                Err(e)
            }
        }
    }

    fn write_batch(&mut self, batch: &[Pending]) -> Result<Vec<Appended>, AuditError> {
        let mut appended = Vec::with_capacity(batch.len());
        let now = (self.clock)();
        self.buf.clear();
        self.last_framed = None;
        // The one seal a write carries, on its last line.
        let seal_bytes = if self.seal.is_some() {
            SEAL_TAG_BYTES
        } else {
            0
        };
        for pending in batch {
            let ts_ms = now.max(self.chain.last_ts);
            let seq = self.chain.next_seq;
            let start = self.buf.len();
            let before = self.last_framed;
            let framed = frame(&mut self.buf, seq, ts_ms, &self.chain.prev, &pending.body);
            let hash = framed.hash;
            let unwritten = self.size + start as u64;
            let line_bytes = (self.buf.len() - start + seal_bytes) as u64;
            if unwritten > 0 && unwritten + line_bytes > self.max_segment_bytes {
                let line = self.buf.split_off(start);
                // The segment's last write seals its last record.
                self.last_framed = before;
                self.flush()?;
                self.rotate(seq, ts_ms)?;
                self.buf = line;
                self.last_framed = Some(Framed {
                    hash,
                    seal_at: framed.seal_at - start,
                });
            } else {
                self.last_framed = Some(framed);
                if unwritten == 0 {
                    self.note_first_ts(ts_ms);
                }
            }
            self.chain = Chain {
                next_seq: seq + 1,
                prev: hash,
                last_ts: ts_ms,
            };
            appended.push(Appended { seq, ts_ms, hash });
        }
        self.flush()?;
        Ok(appended)
    }

    /// Seals the buffer's last line (when the log seals), writes the buffer to the current
    /// segment and fsyncs it: the seal is in the same write and fsync as the records it covers.
    fn flush(&mut self) -> Result<(), AuditError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let (Some(key), Some(last)) = (&self.seal, self.last_framed.take()) {
            insert_seal(&mut self.buf, &last, &Seal::sign(key, &last.hash));
        }
        // Before the bytes reach the file: a check of the log by its owner meanwhile takes
        // these records for its own write in progress, and no others.
        self.shared
            .written_seq
            .store(self.chain.next_seq - 1, Ordering::Release);
        self.file
            .write_all(&self.buf)
            .map_err(stopped("write", &self.path))?;
        self.file
            .sync_data()
            .map_err(stopped("fsync", &self.path))?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Starts the segment whose first record is `first_seq`, and makes its name durable.
    fn rotate(&mut self, first_seq: u64, first_ts: u64) -> Result<(), AuditError> {
        let path = self.dir.join(segment_name(first_seq));
        self.file = self
            .files
            .create_new(&path)
            .map_err(stopped("create", &path))?;
        self.files
            .sync_dir(&self.dir)
            .map_err(stopped("fsync dir", &self.dir))?;
        self.path = path.clone();
        self.size = 0;
        self.shared
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(SegmentMeta {
                first_seq,
                path,
                first_ts: Some(first_ts),
            });
        Ok(())
    }

    /// Remembers the time of the first record of a segment that had none (opened empty).
    fn note_first_ts(&self, ts_ms: u64) {
        let mut segments = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = segments.last_mut() {
            last.first_ts.get_or_insert(ts_ms);
        }
    }
}

fn stopped(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AuditError {
    let path = path.to_owned();
    move |source| AuditError::Stopped {
        op,
        path,
        source: Arc::new(source),
    }
}

fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(AuditError::io("open", &path))?;
    match file.try_lock() {
        Ok(()) => {
            // Since when this writer holds the log (see `held_since`); the file stays the lock
            // whatever this write does.
            let mut f = &file;
            let _ = f.set_len(0).and_then(|()| {
                std::io::Write::write_all(&mut f, format!("{}\n", system_ms()).as_bytes())
            });
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked(dir.to_owned())),
        Err(TryLockError::Error(e)) => Err(AuditError::io("lock", &path)(e)),
    }
}

/// Where an opened log stands.
struct Recovered {
    segments: Vec<SegmentMeta>,
    /// The current segment's path.
    current: PathBuf,
    chain: Chain,
    /// Bytes in the current (last) segment.
    size: u64,
    recovery: Recovery,
    /// The last record, when it carries no seal.
    unsealed_end: Option<UnsealedEnd>,
    /// The last sealed record of the whole log, if any record has a seal.
    last_seal: Option<SealAt>,
}

/// Before a sealing log is opened: the last seal must be this key's, and the records after it
/// must be few enough to be a crash's unacknowledged write. A log without any seal (from before
/// sealing) passes, and is sealed as found.
fn check_last_seal(state: &Recovered, key: &VerifyingKey) -> Result<(), AuditError> {
    let Some(last) = state.last_seal else {
        return Ok(());
    };
    if !last.seal.is_valid(key, &last.hash) {
        return Err(AuditError::SealMismatch { seq: last.seq });
    }
    let last_seq = state.chain.next_seq - 1;
    let unsealed = last_seq.saturating_sub(last.seq);
    if unsealed > MAX_BATCH_RECORDS as u64 {
        return Err(AuditError::UnsealedTail {
            count: unsealed,
            last_sealed_seq: last.seq,
        });
    }
    Ok(())
}

/// A log's last record that carries no seal.
struct UnsealedEnd {
    seq: u64,
    hash: Digest,
    /// The last sealed record in the segments read (the current one, else the previous one's
    /// last record).
    last_sealed_seq: Option<u64>,
    /// Where the records after the last seal begin in the current segment, when the last seal
    /// is in it or ends the previous segment (a write a crash left unfinished lies there).
    tail_offset: Option<u64>,
}

/// Reads the directory: every segment's first record time, the chain up to the start of the
/// current segment (from the previous segment's last line), then the current segment whole,
/// cutting its torn tail.
fn recover(dir: &Path, on_bad: OnBad, sealing: bool) -> Result<Recovered, AuditError> {
    let mut files = list_segments(dir).map_err(AuditError::io("list", dir))?;
    if files.is_empty() {
        let path = dir.join(segment_name(1));
        create_segment(&path).map_err(AuditError::io("create", &path))?;
        sync_dir(dir).map_err(AuditError::io("fsync", dir))?;
        files = list_segments(dir).map_err(AuditError::io("list", dir))?;
    }
    let Some((current, earlier)) = files.split_last() else {
        return Err(AuditError::io("list", dir)(
            std::io::ErrorKind::NotFound.into(),
        ));
    };
    let mut segments = Vec::with_capacity(files.len());
    for file in earlier {
        let first = read_first_line(&file.path).map_err(AuditError::io("read", &file.path))?;
        segments.push(SegmentMeta {
            first_seq: file.first_seq,
            path: file.path.clone(),
            first_ts: first.and_then(|l| parse_line(&l).ok()).map(|e| e.ts_ms),
        });
    }

    let mut broken = None;
    // The previous segment's last record, when it is sealed.
    let mut previous_seal = None;
    let mut chain = match earlier.last() {
        None => Chain::genesis(),
        Some(previous) => match chain_after(previous.path.as_path())? {
            Ok((chain, sealed)) => {
                previous_seal = sealed;
                chain
            }
            Err(bad) => {
                if on_bad == OnBad::Stop {
                    return Err(AuditError::BrokenChain(Box::new(bad)));
                }
                broken = Some(bad);
                Chain {
                    next_seq: current.first_seq,
                    ..Chain::genesis()
                }
            }
        },
    };

    let mut seals = Seals::new(None);
    let scan = scan_segment(current, &mut chain, &mut seals, Position::Last, on_bad)
        .map_err(AuditError::io("read", &current.path))?;
    // The last seal: in the current segment, else the previous one's last record, else (a log
    // whose segments do not end sealed: from before sealing, or stripped) anywhere before, read
    // only by a sealing log.
    let last_seal = match seals.last_seal.or(previous_seal) {
        Some(seal) => Some(seal),
        None if sealing => last_seal_in(earlier.iter().rev().map(|f| f.path.as_path()))?,
        None => None,
    };
    let last_seq = chain.next_seq - 1;
    let tail_offset = match (&seals.last_seal_end, previous_seal) {
        (Some((file, end)), _) if *file == current.path => Some(*end),
        (None, Some(_)) => Some(0),
        _ => None,
    }
    .filter(|_| scan.first_bad.is_none() && broken.is_none());
    let unsealed_end =
        (last_seq > 0 && last_seal.map(|s| s.seq) != Some(last_seq)).then(|| UnsealedEnd {
            seq: last_seq,
            hash: chain.prev,
            last_sealed_seq: last_seal.map(|s| s.seq),
            tail_offset,
        });
    if let Some(bad) = scan.first_bad {
        if on_bad == OnBad::Stop {
            return Err(AuditError::BrokenChain(Box::new(bad)));
        }
        warn!(%bad, "audit log chain is broken; appending anyway (allow_broken_chain)");
        broken.get_or_insert(bad);
    }
    let mut size = fs::metadata(&current.path)
        .map_err(AuditError::io("stat", &current.path))?
        .len();
    if let Some(torn) = &scan.torn {
        cut(&current.path, torn.offset)?;
        warn!(
            file = %torn.file.display(),
            line = torn.line,
            bytes = torn.bytes,
            "cut the torn tail of the audit log (never acknowledged)"
        );
        size = torn.offset;
    }
    segments.push(SegmentMeta {
        first_seq: current.first_seq,
        path: current.path.clone(),
        first_ts: scan.first_ts,
    });
    Ok(Recovered {
        segments,
        current: current.path.clone(),
        chain,
        size,
        recovery: Recovery {
            torn_tail: scan.torn,
            broken_chain: broken,
            next_seq: chain.next_seq,
            sealed_as_found: None,
            set_aside: None,
        },
        unsealed_end,
        last_seal,
    })
}

/// The last sealed record in the first of `files` (taken in order) that has one.
fn last_seal_in<'p>(files: impl Iterator<Item = &'p Path>) -> Result<Option<SealAt>, AuditError> {
    for path in files {
        let mut lines = Lines::open(path).map_err(AuditError::io("read", path))?;
        let mut found = None;
        while let Some(line) = lines.next_line().map_err(AuditError::io("read", path))? {
            if line.ending != Ending::Newline {
                continue;
            }
            if let Ok(entry) = parse_line(line.bytes) {
                if let Some(seal) = entry.seal {
                    found = Some(SealAt {
                        seq: entry.seq,
                        hash: entry.hash,
                        seal,
                    });
                }
            }
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Whether any record of the log in `dir` carries a seal (the trail was sealed by some key).
/// Cheap for a sealed log (its last segment ends sealed); reads a log without seals whole.
/// `false` when `dir` does not exist.
pub fn has_seal(dir: &Path) -> Result<bool, AuditError> {
    if !dir.exists() {
        return Ok(false);
    }
    let files = list_segments(dir).map_err(AuditError::io("list", dir))?;
    for file in files.iter().rev() {
        if let Some((line, _)) =
            read_last_line(&file.path).map_err(AuditError::io("read", &file.path))?
        {
            if parse_line(&line).is_ok_and(|e| e.seal.is_some()) {
                return Ok(true);
            }
        }
    }
    Ok(last_seal_in(files.iter().rev().map(|f| f.path.as_path()))?.is_some())
}

/// The chain right after the last record of a finished segment and that record's seal, or why
/// it cannot be had.
fn chain_after(path: &Path) -> Result<Result<(Chain, Option<SealAt>), BadRecord>, AuditError> {
    let last = read_last_line(path).map_err(AuditError::io("read", path))?;
    let line_number =
        |offset| crate::segment::line_number_at(path, offset).map_err(AuditError::io("read", path));
    let bad = |line, seq, problem| BadRecord {
        file: path.to_owned(),
        line,
        seq,
        problem,
    };
    Ok(match last {
        None => Err(bad(0, None, Problem::EmptySegment)),
        Some((line, offset)) => match parse_line(&line) {
            Ok(entry) => Ok((
                Chain::after(&entry),
                entry.seal.map(|seal| SealAt {
                    seq: entry.seq,
                    hash: entry.hash,
                    seal,
                }),
            )),
            Err(e) => Err(bad(line_number(offset)?, e.seq, e.problem)),
        },
    })
}
