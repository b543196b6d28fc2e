//! Recordings written to a local spool and uploaded to the object store.
//!
//! The writer's durability promise is kept by the spool (a [`LocalDisk`]: data fsynced, then the
//! manifest line naming it, fsynced). Each time the manifest is made durable, the spool's sink
//! hands the uploader a checkpoint: the lengths of every file as far as they are durable and
//! named by the manifest (bytes recovery never cuts). The uploader stores what is new of each
//! file as a part, the data files before the manifest, so a manifest in the store only names
//! bytes already there. When the writer is done and the recording has its signed end line, each
//! file becomes one object, the parts are deleted and the spool's copy goes. A recording the
//! gateway left open stays in the spool: the next start's recovery closes it there, and its
//! upload finishes then. The store down means the spool grows and the uploads wait and retry;
//! sessions go on.
//!
//! Reads take the spool's copy while there is one (this gateway's recordings, freshest), else
//! the object store's: any gateway serves any recording.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portcullis_recording::manifest::MANIFEST;
use portcullis_recording::{
    LocalDisk, RecordingSink, RecordingStorage, StorageError, UploadStatus,
};

use crate::remote::{Layout, Remote};

/// At most this many bytes go into one part (a large gap is uploaded in several).
const PART_MAX: u64 = 8 * 1024 * 1024;
/// Parallel uploads (one recording is only ever uploaded by one of them at a time).
const WORKERS: usize = 4;
/// After a failure, uploads wait this long, doubling up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Lag samples kept for the percentiles.
const LAG_SAMPLES: usize = 2048;
/// A file's parts are folded into one once this many of the same size class follow each other
/// (see [`fold`]): a file written for days stays a few hundred objects, not one per upload.
const FOLD: usize = 64;
/// A fold is at most this big (it is read into memory and put in one call); parts that would
/// make a bigger one stay as they are.
const FOLD_MAX: u64 = 32 * 1024 * 1024;

/// A part of a file in the store, as this uploader made it (or found it at the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    offset: u64,
    size: u64,
    /// 0 for an upload's part, `n + 1` for a fold of parts of level `n`; [`FROZEN`] for parts
    /// that are folded no more.
    level: u8,
}

const FROZEN: u8 = u8::MAX;

/// One recording's upload.
#[derive(Debug, Default)]
struct Entry {
    /// Lengths durable in the spool and named by its manifest: what to upload.
    target: BTreeMap<String, u64>,
    /// Since when the oldest bytes of `target` not yet uploaded have waited.
    waiting_since: Option<Instant>,
    /// When the first checkpoint after the one being uploaded arrived.
    next_since: Option<Instant>,
    /// What the store holds (`None`: not asked yet).
    uploaded: Option<BTreeMap<String, u64>>,
    /// The parts of each file in the store, in order (known when `uploaded` is).
    parts: BTreeMap<String, Vec<Part>>,
    /// No writer any more: upload the rest and, once it is closed, finish it in the store.
    closed: bool,
    /// A worker has it.
    busy: bool,
    last_done: Option<Instant>,
    /// Something that retrying will not mend (the store holds more than the spool): left
    /// alone until the next start, reported.
    stuck: Option<String>,
    /// Closed in the spool but not closed (no end line): kept there for recovery.
    parked: bool,
}

impl Entry {
    fn behind(&self) -> u64 {
        let up = self.uploaded.as_ref();
        self.target
            .iter()
            .map(|(f, &n)| n.saturating_sub(up.and_then(|u| u.get(f)).copied().unwrap_or(0)))
            .sum()
    }

    fn has_work(&self) -> bool {
        self.stuck.is_none()
            && !self.parked
            && (self.closed || self.uploaded.is_none() || self.behind() > 0)
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    stopping: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    reachable: bool,
    uploaded_bytes: u64,
    failures: u64,
    lags: VecDeque<u64>,
}

#[derive(Debug)]
struct Uploads {
    state: Mutex<State>,
    wake: Condvar,
    every: Duration,
    fold: usize,
    spool: LocalDisk,
    remote: Arc<Remote>,
}

/// What one upload round ended with.
enum Outcome {
    /// Everything up to the snapshot is in the store.
    Uploaded,
    /// The recording is finished in the store and gone from the spool.
    Finished,
    /// Uploaded, but the recording has no end line: it stays in the spool for recovery.
    Parked,
    /// The spool holds it no more (deleted meanwhile).
    Gone,
}

/// Where one upload round stands: what the store holds, the parts, the bytes sent.
struct Progress<'a> {
    uploaded: Option<BTreeMap<String, u64>>,
    parts: &'a mut BTreeMap<String, Vec<Part>>,
    sent: u64,
}

/// The parts of a file the store already holds (a restart), in order: one that lies within the
/// one before (a fold a crash cut short) is left out, as is everything from a gap on; they
/// count as uploads' parts.
fn found_parts(layout: &Layout) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::new();
    let mut end = 0u64;
    for (&offset, &size) in &layout.parts {
        let part_end = offset.saturating_add(size);
        if offset > end {
            break;
        }
        if part_end <= end {
            continue;
        }
        out.push(Part {
            offset,
            size,
            level: 0,
        });
        end = part_end;
    }
    out
}

/// A [`RecordingStorage`] over a local spool and an object store.
#[derive(Debug, Clone)]
pub struct Spooled {
    up: Arc<Uploads>,
}

impl Spooled {
    /// Over `spool` (this gateway's, already recovered or not: nothing is uploaded before
    /// [`Spooled::start`]) and `remote`; a recording is uploaded at most every `every` while
    /// it is written.
    pub fn new(spool: LocalDisk, remote: Remote, every: Duration) -> Self {
        Self {
            up: Arc::new(Uploads {
                state: Mutex::new(State {
                    reachable: true,
                    ..State::default()
                }),
                wake: Condvar::new(),
                every,
                fold: FOLD,
                spool,
                remote: Arc::new(remote),
            }),
        }
    }

    /// Folds a file's parts once `n` (at least 2) of a size class follow each other, instead of
    /// 64: for tests, which would otherwise need thousands of uploads to see a fold.
    #[doc(hidden)]
    #[must_use]
    pub fn fold_after(self, n: usize) -> Self {
        match Arc::try_unwrap(self.up) {
            Ok(mut up) => {
                up.fold = n.max(2);
                Self { up: Arc::new(up) }
            }
            Err(up) => Self { up },
        }
    }

    /// The local spool (for start-up recovery, which runs on it before [`Spooled::start`]).
    pub fn spool(&self) -> &LocalDisk {
        &self.up.spool
    }

    /// Starts the uploads: every recording in the spool is taken as closed (nothing writes
    /// before the gateway is up), so it is uploaded and finished, or parked if it has no end.
    pub fn start(&self) -> Result<(), StorageError> {
        let ids = self.up.spool.list()?;
        {
            let mut st = self.up.lock();
            let now = Instant::now();
            for id in ids {
                let e = st.entries.entry(id).or_default();
                e.closed = true;
                e.waiting_since.get_or_insert(now);
            }
        }
        for n in 0..WORKERS {
            let up = Arc::clone(&self.up);
            std::thread::Builder::new()
                .name(format!("upload-{n}"))
                .spawn(move || up.work())
                .map_err(|e| StorageError::Io {
                    op: "start",
                    path: "the upload threads".to_owned(),
                    source: e,
                })?;
        }
        self.up.wake.notify_all();
        Ok(())
    }

    /// Waits until nothing is left to upload (parked and stuck recordings aside) or `until`;
    /// true when nothing is left. Then the uploads stop.
    pub fn finish(&self, until: Instant) -> bool {
        let mut st = self.up.lock();
        let done = loop {
            let left = st.entries.values().any(|e| e.has_work() || e.busy);
            if !left {
                break true;
            }
            let now = Instant::now();
            if now >= until {
                break false;
            }
            st = self
                .up
                .wake
                .wait_timeout(st, (until - now).min(Duration::from_millis(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        };
        st.stopping = true;
        drop(st);
        self.up.wake.notify_all();
        done
    }

    fn spooled(&self, id: &str) -> bool {
        self.up.spool.files(id).is_ok()
    }

    fn layout_of(&self, id: &str) -> Result<BTreeMap<String, Layout>, StorageError> {
        let layout = self.up.remote.layout(id)?;
        if layout.is_empty() {
            return Err(StorageError::NotFound(id.to_owned()));
        }
        Ok(layout)
    }
}

impl Uploads {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checkpoint(&self, id: &str, lengths: BTreeMap<String, u64>) {
        let mut st = self.lock();
        let e = st.entries.entry(id.to_owned()).or_default();
        let now = Instant::now();
        e.target = lengths;
        if e.busy {
            e.next_since.get_or_insert(now);
        } else {
            e.waiting_since.get_or_insert(now);
        }
        drop(st);
        self.wake.notify_one();
    }

    fn closed(&self, id: &str) {
        let mut st = self.lock();
        if let Some(e) = st.entries.get_mut(id) {
            e.closed = true;
            e.waiting_since.get_or_insert_with(Instant::now);
        }
        drop(st);
        self.wake.notify_all();
    }

    /// One worker: takes a recording that is due, uploads, reports; until stopped.
    fn work(&self) {
        loop {
            let (id, target, uploaded, mut parts, closed) = {
                let mut st = self.lock();
                loop {
                    if st.stopping {
                        return;
                    }
                    let now = Instant::now();
                    let mut next = now + Duration::from_secs(1);
                    let held = st.retry_at.filter(|&t| t > now);
                    let pick = match held {
                        Some(t) => {
                            next = next.min(t);
                            None
                        }
                        None => st
                            .entries
                            .iter()
                            .filter(|(_, e)| !e.busy && e.has_work())
                            .filter(|(_, e)| {
                                let due =
                                    e.closed || e.last_done.is_none_or(|t| now >= t + self.every);
                                if !due {
                                    if let Some(t) = e.last_done {
                                        next = next.min(t + self.every);
                                    }
                                }
                                due
                            })
                            .min_by_key(|(_, e)| e.waiting_since)
                            .map(|(id, _)| id.clone()),
                    };
                    if let Some(id) = pick {
                        if let Some(e) = st.entries.get_mut(&id) {
                            e.busy = true;
                            break (
                                id,
                                e.target.clone(),
                                e.uploaded.clone(),
                                std::mem::take(&mut e.parts),
                                e.closed,
                            );
                        }
                    }
                    st = self
                        .wake
                        .wait_timeout(st, next.saturating_duration_since(now))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            };
            let mut progress = Progress {
                uploaded,
                parts: &mut parts,
                sent: 0,
            };
            let result = self.upload(&id, &target, closed, &mut progress);
            let (uploaded, sent) = (progress.uploaded, progress.sent);
            self.report(&id, uploaded, parts, sent, result);
        }
    }

    fn report(
        &self,
        id: &str,
        progress: Option<BTreeMap<String, u64>>,
        parts: BTreeMap<String, Vec<Part>>,
        sent: u64,
        result: Result<Outcome, StorageError>,
    ) {
        let mut st = self.lock();
        let now = Instant::now();
        st.uploaded_bytes += sent;
        let mut lag = None;
        match &result {
            Ok(_) => {
                st.reachable = true;
                st.retry_at = None;
                st.backoff = Duration::ZERO;
            }
            // The store holds more than the spool: nothing to retry (see below).
            Err(StorageError::Refused(_)) => st.failures += 1,
            // The store or the spool failed (a 404 from a bucket being set up, say): wait, retry.
            Err(e) => {
                if matches!(e, StorageError::Remote { .. } | StorageError::NotFound(_)) {
                    st.reachable = false;
                }
                st.failures += 1;
                st.backoff = (st.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                st.retry_at = Some(now + st.backoff);
            }
        }
        let remove = match (result, st.entries.get_mut(id)) {
            (_, None) => false,
            (result, Some(e)) => {
                e.busy = false;
                e.uploaded = progress;
                e.parts = parts;
                match result {
                    Ok(Outcome::Finished | Outcome::Gone) => true,
                    Ok(Outcome::Parked) => {
                        e.parked = true;
                        tracing::warn!(recording = %id,
                            "a recording left without its end line was uploaded as it is and \
                             stays in the spool: the next start closes it and finishes the upload");
                        false
                    }
                    Ok(Outcome::Uploaded) => {
                        e.last_done = Some(now);
                        if let Some(since) = e.waiting_since.take() {
                            lag = Some(now - since);
                        }
                        e.waiting_since = e.next_since.take();
                        if e.behind() > 0 && e.waiting_since.is_none() {
                            e.waiting_since = Some(now);
                        }
                        false
                    }
                    Err(StorageError::Refused(why)) => {
                        tracing::error!(recording = %id, error = %why,
                            "the recording's upload cannot go on; it stays in the spool, untouched, until the gateway starts again");
                        e.stuck = Some(why);
                        false
                    }
                    Err(other) => {
                        tracing::warn!(recording = %id, error = %other,
                            "cannot upload the recording now; it stays in the spool and the upload is retried");
                        e.waiting_since = e.waiting_since.or(e.next_since.take());
                        false
                    }
                }
            }
        };
        if remove {
            if let Some(e) = st.entries.remove(id) {
                if let Some(since) = e.waiting_since {
                    lag = Some(now - since);
                }
            }
        }
        if let Some(lag) = lag {
            if st.lags.len() == LAG_SAMPLES {
                st.lags.pop_front();
            }
            st.lags
                .push_back(u64::try_from(lag.as_millis()).unwrap_or(u64::MAX));
        }
        drop(st);
        self.wake.notify_all();
    }

    /// Uploads `target` (or, when `closed`, all the spool holds of a recording with its end
    /// line) beyond what the store holds; data files before the manifest.
    fn upload(
        &self,
        id: &str,
        target: &BTreeMap<String, u64>,
        closed: bool,
        progress: &mut Progress<'_>,
    ) -> Result<Outcome, StorageError> {
        let spooled = match self.spool.files(id) {
            Ok(files) => files,
            Err(StorageError::NotFound(_)) => return Ok(Outcome::Gone),
            Err(e) => return Err(e),
        };
        let uploaded = match &mut progress.uploaded {
            Some(u) => u,
            None => {
                let layout = self.remote.layout(id)?;
                *progress.parts = layout
                    .iter()
                    .map(|(f, l)| (f.clone(), found_parts(l)))
                    .collect();
                progress
                    .uploaded
                    .insert(layout.into_iter().map(|(f, l)| (f, l.len())).collect())
            }
        };
        let sent = &mut progress.sent;
        let finishing = closed
            && match portcullis_recording::closed_end(&self.spool, id) {
                Ok(end) => end.is_some(),
                // Nothing written yet, or a manifest that cannot be read: not closed.
                Err(StorageError::NotFound(_)) => false,
                Err(e) => return Err(e),
            };
        let goal: BTreeMap<String, u64> = if finishing {
            spooled.into_iter().collect()
        } else {
            target.clone()
        };
        let mut order: Vec<(&String, &u64)> = goal.iter().collect();
        order.sort_by_key(|(f, _)| f.as_str() == MANIFEST);
        for (file, &len) in order {
            let mut have = uploaded.get(file).copied().unwrap_or(0);
            if have > len {
                return Err(StorageError::Refused(format!(
                    "{id}/{file}: the object store holds {have} bytes, the spool {len}"
                )));
            }
            let parts = progress.parts.entry(file.clone()).or_default();
            while have < len {
                let n = (len - have).min(PART_MAX);
                let bytes = self.spool.read(id, file, have, n)?;
                self.remote.put_part(id, file, have, bytes)?;
                parts.push(Part {
                    offset: have,
                    size: n,
                    level: 0,
                });
                have += n;
                *sent += n;
                uploaded.insert(file.clone(), have);
            }
        }
        if !finishing {
            // After the manifest: a fold only saves objects, it never holds an upload back
            // (one that fails is tried again next round).
            for (file, parts) in progress.parts.iter_mut() {
                if let Err(e) = self.fold(id, file, parts) {
                    tracing::warn!(recording = %id, %file, error = %e, "cannot fold the recording's parts in the object store now (tried again later)");
                    break;
                }
            }
        }
        if !finishing {
            return Ok(if closed {
                Outcome::Parked
            } else {
                Outcome::Uploaded
            });
        }
        // Each file as one object, then the parts go, then the spool's copy.
        let layout = self.remote.layout(id)?;
        for (file, &len) in &goal {
            if layout.get(file).and_then(|l| l.whole) != Some(len) {
                let read = |offset: u64, n: u64| self.spool.read(id, file, offset, n);
                self.remote.put_whole(id, file, len, &read)?;
            }
        }
        for (file, l) in &layout {
            if goal.contains_key(file) {
                self.remote.delete_parts(id, file, l)?;
            }
        }
        self.spool.delete(id)?;
        tracing::info!(recording = %id, "recording uploaded to the object store");
        Ok(Outcome::Finished)
    }

    /// Folds the last parts of `file` while the last [`Uploads::fold`] are of one level and
    /// contiguous: as many of them, from the first, as make at most [`FOLD_MAX`] together
    /// become one part of the next level. The fold is put under the first one's name (the same
    /// bytes from that offset on, and more), then the others are deleted. A reader between the
    /// two finds overlapping parts, which it reads as one file; a crash between leaves them so
    /// until the recording is finished (its parts are all deleted then). A part too big to
    /// fold with the next stays as it is for good. Each byte is uploaded about once per level.
    fn fold(&self, id: &str, file: &str, parts: &mut Vec<Part>) -> Result<(), StorageError> {
        while parts.len() >= self.fold {
            let first = parts.len() - self.fold;
            let tail = &parts[first..];
            let level = tail[0].level;
            let contiguous = tail
                .windows(2)
                .all(|w| w[0].offset.saturating_add(w[0].size) == w[1].offset);
            if level == FROZEN || tail.iter().any(|p| p.level != level) || !contiguous {
                return Ok(());
            }
            let (mut size, mut n) = (0u64, 0usize);
            for p in tail {
                if size.saturating_add(p.size) > FOLD_MAX {
                    break;
                }
                size += p.size;
                n += 1;
            }
            if n < 2 || level == FROZEN - 1 {
                parts[first].level = FROZEN;
                continue;
            }
            let start = tail[0].offset;
            let folded = Layout {
                whole: None,
                parts: tail[1..n].iter().map(|p| (p.offset, p.size)).collect(),
            };
            let bytes = self.spool.read(id, file, start, size)?;
            self.remote.put_part(id, file, start, bytes)?;
            // Folded from here on, whether or not the parts it covers go now: left over, they
            // overlap it (readers take that) until the recording is finished and they go with
            // it. Never put again.
            parts.splice(
                first..first + n,
                [Part {
                    offset: start,
                    size,
                    level: level + 1,
                }],
            );
            self.remote.delete_parts(id, file, &folded)?;
        }
        Ok(())
    }

    fn status(&self) -> UploadStatus {
        let st = self.lock();
        let now = Instant::now();
        let pending: Vec<&Entry> = st.entries.values().filter(|e| e.has_work()).collect();
        let mut lags: Vec<u64> = st.lags.iter().copied().collect();
        lags.sort_unstable();
        let at = |q: usize| lags[(lags.len() - 1) * q / 100];
        UploadStatus {
            pending_bytes: pending.iter().map(|e| e.behind()).sum(),
            pending_recordings: pending.len() as u64,
            oldest_pending_ms: pending
                .iter()
                .filter_map(|e| e.waiting_since)
                .map(|t| u64::try_from((now - t).as_millis()).unwrap_or(u64::MAX))
                .max()
                .unwrap_or(0),
            uploaded_bytes: st.uploaded_bytes,
            failures: st.failures,
            reachable: st.reachable,
            lag_ms: (!lags.is_empty()).then(|| (at(50), at(99))),
        }
    }
}

/// The spool's sink: writes as the local disk does and tells the uploader what became durable.
struct SpoolSink {
    id: String,
    inner: Box<dyn RecordingSink>,
    /// Bytes appended per file.
    written: BTreeMap<String, u64>,
    /// Bytes made durable per file.
    durable: BTreeMap<String, u64>,
    up: Arc<Uploads>,
}

impl RecordingSink for SpoolSink {
    fn append(&mut self, file: &str, bytes: &[u8]) -> Result<u64, StorageError> {
        let offset = self.inner.append(file, bytes)?;
        self.written
            .insert(file.to_owned(), offset + bytes.len() as u64);
        Ok(offset)
    }

    fn sync(&mut self, file: &str) -> Result<(), StorageError> {
        self.inner.sync(file)?;
        if let Some(&n) = self.written.get(file) {
            self.durable.insert(file.to_owned(), n);
        }
        if file == MANIFEST {
            // Every data byte durable now is named by the manifest (the writer makes the data
            // durable before it writes the line that names it).
            self.up.checkpoint(&self.id, self.durable.clone());
        }
        Ok(())
    }
}

impl Drop for SpoolSink {
    fn drop(&mut self) {
        self.up.closed(&self.id);
    }
}

impl Spooled {
    fn sink(
        &self,
        id: &str,
        inner: Box<dyn RecordingSink>,
        reopened: bool,
    ) -> Box<dyn RecordingSink> {
        let mut durable = BTreeMap::new();
        if reopened {
            if let Ok(files) = self.up.spool.files(id) {
                durable.extend(files);
            }
        }
        {
            let mut st = self.up.lock();
            let e = st.entries.entry(id.to_owned()).or_default();
            e.closed = false;
            e.parked = false;
        }
        Box::new(SpoolSink {
            id: id.to_owned(),
            inner,
            written: durable.clone(),
            durable,
            up: Arc::clone(&self.up),
        })
    }

    /// Runs `f` on the store's copy of `id`, once more on a fresh layout if a part went
    /// meanwhile (a recording being finished in the store).
    fn remote_read<T>(
        &self,
        id: &str,
        f: impl Fn(&BTreeMap<String, Layout>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let layout = self.layout_of(id)?;
        match f(&layout) {
            Err(StorageError::NotFound(_)) => f(&self.layout_of(id)?),
            other => other,
        }
    }
}

impl RecordingStorage for Spooled {
    fn create(&self, id: &str) -> Result<Box<dyn RecordingSink>, StorageError> {
        let inner = self.up.spool.create(id)?;
        Ok(self.sink(id, inner, false))
    }

    fn reopen(&self, id: &str) -> Result<Box<dyn RecordingSink>, StorageError> {
        let inner = self.up.spool.reopen(id)?;
        Ok(self.sink(id, inner, true))
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut ids = self.up.remote.list()?;
        match self.up.spool.list() {
            Ok(spooled) => ids.extend(spooled),
            // No local folder yet (a gateway that never recorded): only the store's.
            Err(StorageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn files(&self, id: &str) -> Result<Vec<(String, u64)>, StorageError> {
        match self.up.spool.files(id) {
            Err(StorageError::NotFound(_)) => {}
            other => return other,
        }
        self.remote_read(id, |layout| {
            Ok(layout.iter().map(|(f, l)| (f.clone(), l.len())).collect())
        })
    }

    fn len(&self, id: &str, file: &str) -> Result<Option<u64>, StorageError> {
        if self.spooled(id) {
            return self.up.spool.len(id, file);
        }
        portcullis_recording::storage::check_name(file)?;
        match self.layout_of(id) {
            Ok(layout) => Ok(layout.get(file).map(Layout::len)),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(&self, id: &str, file: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        if self.spooled(id) {
            match self.up.spool.read(id, file, offset, len) {
                // Finished in the store and gone from the spool meanwhile: read it there.
                Err(StorageError::NotFound(_)) if !self.spooled(id) => {}
                other => return other,
            }
        }
        portcullis_recording::storage::check_name(file)?;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| StorageError::NotFound(format!("{id}/{file} bytes {offset}..+{len}")))?;
        self.remote_read(id, |layout| {
            let l = layout
                .get(file)
                .ok_or_else(|| StorageError::NotFound(format!("{id}/{file}")))?;
            self.up.remote.read(id, file, l, offset..end)
        })
    }

    fn truncate(&self, id: &str, file: &str, len: u64) -> Result<(), StorageError> {
        if self.spooled(id) {
            return self.up.spool.truncate(id, file, len);
        }
        Err(StorageError::Refused(format!(
            "{id} is in the object store, where recordings are not changed"
        )))
    }

    fn delete(&self, id: &str) -> Result<(), StorageError> {
        // Never under an upload of it: wait for the worker, then forget it.
        {
            let mut st = self.up.lock();
            while st.entries.get(id).is_some_and(|e| e.busy) {
                st = self
                    .up
                    .wake
                    .wait_timeout(st, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            st.entries.remove(id);
        }
        let local = match self.up.spool.delete(id) {
            Ok(()) => true,
            Err(StorageError::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        let remote = self.up.remote.delete(id)?;
        if local || remote {
            Ok(())
        } else {
            Err(StorageError::NotFound(id.to_owned()))
        }
    }

    fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        self.up.spool.available_bytes()
    }

    fn is_being_written(&self, id: &str) -> Result<bool, StorageError> {
        self.up.spool.is_being_written(id)
    }

    fn uploads(&self) -> Option<UploadStatus> {
        Some(self.up.status())
    }

    fn probe(&self) -> Result<(), StorageError> {
        self.up.remote.probe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_found_at_a_start_leave_out_what_an_earlier_one_covers_and_stop_at_a_gap() {
        let layout = Layout {
            whole: None,
            // A fold [0, 300) a crash left with two of the parts it covers; then [300, 350),
            // one overlapping the end, and one after a gap.
            parts: [
                (0, 300),
                (100, 100),
                (200, 100),
                (300, 50),
                (320, 60),
                (500, 10),
            ]
            .into(),
        };
        let found: Vec<(u64, u64)> = found_parts(&layout)
            .iter()
            .map(|p| (p.offset, p.size))
            .collect();
        assert_eq!(found, [(0, 300), (300, 50), (320, 60)]);
        assert!(found_parts(&Layout::default()).is_empty());
    }
}
