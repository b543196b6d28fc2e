//! Search across recordings: an indexer thread reads every recording's event track into the
//! search index (portcullis-search), a piece at a time while it is written, and `GET /search`
//! answers with the moments the words were typed, pasted, named or on screen, each with a
//! thumbnail and (screen words) the boxes to draw on the video. A plain user finds only their
//! own recordings; the index holds nothing the recordings do not (delete its folder and it is
//! rebuilt from them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_core::session::ScreenWord;
use portcullis_recording::catalog::{ListedState, Summary};
use portcullis_recording::manifest::{EVENTS, MANIFEST};
use portcullis_search::{Done, Entry, Kind, Progress, Recording, SearchIndex, WordBox};
use portcullis_store::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::Recordings;
use crate::extract::AuthUser;
use crate::{AppState, WebError};

/// How often the indexer looks for new event-track bytes.
const EVERY: Duration = Duration::from_secs(2);
/// The most event-track bytes read from one recording in one pass.
const MAX_READ: u64 = 8 * 1024 * 1024;

/// The search index and what the indexer saw last of each recording.
#[derive(Clone)]
pub struct Search {
    index: Arc<SearchIndex>,
    catch_up: Arc<Mutex<CatchUpShared>>,
}

/// A closed recording whose screen the catch-up reader should read (portcullis-recorder
/// decodes it again; the binary's `serve/catch_up`).
#[derive(Debug, Clone)]
pub struct CatchUpJob {
    /// The recording.
    pub recording: String,
    /// Moments before this (ms on its clock) were caught up already.
    pub from_ms: u64,
    /// When the live reader read its screen (sorted): those moments need no second read.
    pub live_reads: Vec<u64>,
    /// The reads say when their picture was taken (tracks written before they did are
    /// stamped when reading ended: a catch-up allows for that).
    pub reads_aged: bool,
}

/// What the catch-up reader read of one recording.
#[derive(Debug, Clone, Default)]
pub struct CaughtUp {
    /// The recording.
    pub recording: String,
    /// Each moment read: when (ms on the recording's clock) and the words with their boxes.
    pub moments: Vec<(u64, Vec<ScreenWord>)>,
    /// Read up to here.
    pub through_ms: u64,
    /// The whole video was read (or all of it that could be).
    pub finished: bool,
    /// Its storage failed: tried again later, after the others (a minute, doubling up to a
    /// day).
    pub failed: bool,
}

/// The first wait after a recording could not be read, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_LONGEST: Duration = Duration::from_secs(24 * 3600);

/// Between the indexer and the catch-up reader.
#[derive(Default)]
struct CatchUpShared {
    /// Recordings indexed to their end whose screens were not caught up, newest first.
    due: Vec<(String, u64)>,
    /// The one the reader works on, until the indexer added what it read.
    in_flight: Option<String>,
    /// What it read, for the indexer to add.
    read: Vec<CaughtUp>,
    /// The recordings, once the indexer started.
    recordings: Option<Recordings>,
    /// Recordings whose storage failed: how often in a row, and when to try again.
    retry: HashMap<String, (u32, Instant)>,
}

impl CatchUpShared {
    /// Recording `id` could not be read: later, after the others.
    fn failed(&mut self, id: &str) {
        let (n, _) = self.retry.get(id).copied().unwrap_or((0, Instant::now()));
        let wait = RETRY_FIRST
            .saturating_mul(1u32 << n.min(16))
            .min(RETRY_LONGEST);
        self.retry
            .insert(id.to_owned(), (n.saturating_add(1), Instant::now() + wait));
    }
}

fn shared(m: &Mutex<CatchUpShared>) -> std::sync::MutexGuard<'_, CatchUpShared> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search").finish_non_exhaustive()
    }
}

impl Search {
    /// Opens the index in `dir`; one unreadable or of another version is made anew (it is
    /// filled again from the recordings).
    pub fn open(dir: &Path) -> Result<Self, String> {
        let index = match SearchIndex::open(dir) {
            Ok(index) => index,
            Err(e) => {
                warn!(error = %e, dir = %dir.display(), "the search index is rebuilt from the recordings");
                SearchIndex::rebuild(dir).map_err(|e| e.to_string())?
            }
        };
        Ok(Self {
            index: Arc::new(index),
            catch_up: Arc::default(),
        })
    }

    /// The next recording the catch-up reader should read, taken off the list (given back by
    /// [`Search::caught_up`]); `None` when none waits.
    pub fn next_catch_up(&self) -> Option<CatchUpJob> {
        let (recording, from_ms, recordings) = {
            let mut s = shared(&self.catch_up);
            if s.in_flight.is_some() {
                return None;
            }
            let recordings = s.recordings.clone()?;
            if s.due.is_empty() {
                return None;
            }
            let (id, from) = s.due.remove(0);
            s.in_flight = Some(id.clone());
            (id, from, recordings)
        };
        match live_reads(recordings.storage.as_ref(), &recording) {
            Ok((mut live_reads, reads_aged)) => {
                live_reads.sort_unstable();
                Some(CatchUpJob {
                    recording,
                    from_ms,
                    live_reads,
                    reads_aged,
                })
            }
            // Without knowing what was read live, everything would be read (and found) twice:
            // given back, tried again after the indexer's next pass.
            Err(e) => {
                warn!(recording = %recording, error = %e, "cannot read a recording's event track to catch up its screen; tried again later");
                let mut s = shared(&self.catch_up);
                s.in_flight = None;
                s.failed(&recording);
                None
            }
        }
    }

    /// What the catch-up reader read of a job's recording (all, or up to where it stopped):
    /// the indexer adds it at its next pass (and only then takes the next job: a recording is
    /// not listed again before what was read of it is in).
    pub fn caught_up(&self, read: CaughtUp) {
        shared(&self.catch_up).read.push(read);
    }

    /// Starts the indexer thread over `recordings`; it stops when `stop` is set.
    pub fn start_indexer(
        &self,
        recordings: Recordings,
        stop: Arc<AtomicBool>,
    ) -> Result<(), String> {
        let index = Arc::clone(&self.index);
        shared(&self.catch_up).recordings = Some(recordings.clone());
        let catch_up = Arc::clone(&self.catch_up);
        std::thread::Builder::new()
            .name("search-indexer".into())
            .spawn(move || Indexer::new(index, recordings, catch_up).run(&stop))
            .map(drop)
            .map_err(|e| format!("cannot start the search indexer: {e}"))
    }
}

/// How long after a failed purge the next is tried.
const PURGE_RETRY: Duration = Duration::from_secs(60);

/// The indexer's state between passes.
struct Indexer {
    index: Arc<SearchIndex>,
    recordings: Recordings,
    progress: Progress,
    /// Each recording's manifest length when last read (unchanged: nothing new).
    seen: HashMap<String, u64>,
    /// When a purge of taken-out texts last failed (tried again a minute later, not every pass).
    purge_failed: Option<Instant>,
    catch_up: Arc<Mutex<CatchUpShared>>,
}

impl Indexer {
    fn new(
        index: Arc<SearchIndex>,
        recordings: Recordings,
        catch_up: Arc<Mutex<CatchUpShared>>,
    ) -> Self {
        let progress = index.progress().unwrap_or_default();
        Self {
            index,
            recordings,
            progress,
            seen: HashMap::new(),
            purge_failed: None,
            catch_up,
        }
    }

    /// Adds what the catch-up reader read (of recordings still here) and lists the recordings
    /// it should read next: indexed to their end, screen not caught up, newest first.
    fn catch_up(&mut self, listed: &[Summary]) -> Result<bool, String> {
        let read = std::mem::take(&mut shared(&self.catch_up).read);
        let mut changed = false;
        for caught in read {
            {
                let mut s = shared(&self.catch_up);
                if s.in_flight.as_deref() == Some(caught.recording.as_str()) {
                    s.in_flight = None;
                }
                if caught.failed {
                    s.failed(&caught.recording);
                } else {
                    s.retry.remove(&caught.recording);
                }
            }
            let Some(summary) = listed.iter().find(|s| s.id == caught.recording) else {
                continue;
            };
            // Deleted meanwhile (retention): its words stay out.
            if !matches!(
                self.recordings.storage.len(&caught.recording, MANIFEST),
                Ok(Some(_))
            ) {
                continue;
            }
            let Some(done) = self.progress.recordings.get_mut(&caught.recording) else {
                continue;
            };
            let entries: Vec<Entry> = caught
                .moments
                .into_iter()
                .filter(|(_, words)| !words.is_empty())
                .map(|(t_ms, words)| Entry {
                    kind: Kind::Screen,
                    t_ms,
                    text: words
                        .iter()
                        .map(|w| w.0.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    words: words
                        .into_iter()
                        .map(|ScreenWord(word, x, y, w, h)| WordBox { word, x, y, w, h })
                        .collect(),
                })
                .collect();
            let recording = Recording {
                id: summary.id.clone(),
                user: summary.user.clone(),
                user_id: summary.user_id.clone(),
                target: summary.target.clone(),
                entry: done.entry.clone(),
                started_at_ms: summary.started_at_ms,
            };
            self.index
                .add(&recording, &entries)
                .map_err(|e| e.to_string())?;
            done.screen_caught_up_ms = done.screen_caught_up_ms.max(caught.through_ms);
            done.screen_caught_up |= caught.finished;
            changed = true;
        }
        let mut due: Vec<(&Summary, u64)> = listed
            .iter()
            .filter_map(|s| {
                let done = self.progress.recordings.get(&s.id)?;
                (done.complete && !done.screen_caught_up).then_some((s, done.screen_caught_up_ms))
            })
            .collect();
        due.sort_by_key(|(s, _)| std::cmp::Reverse(s.started_at_ms));
        let mut s = shared(&self.catch_up);
        let now = Instant::now();
        let waiting = |id: &str| s.retry.get(id).is_some_and(|(_, at)| *at > now);
        let mut due: Vec<(String, u64)> = due
            .into_iter()
            .filter(|(summary, _)| s.in_flight.as_deref() != Some(summary.id.as_str()))
            .filter(|(summary, _)| !waiting(&summary.id))
            .map(|(summary, from)| (summary.id.clone(), from))
            .collect();
        // Those that failed before come after the others (the sort keeps newest first within).
        due.sort_by_key(|(id, _)| s.retry.contains_key(id));
        s.due = due;
        // Recordings gone (deleted) are no longer tried again.
        let present: std::collections::HashSet<&str> =
            listed.iter().map(|l| l.id.as_str()).collect();
        s.retry.retain(|id, _| present.contains(id.as_str()));
        Ok(changed)
    }

    fn run(mut self, stop: &AtomicBool) {
        info!(
            indexed = self.progress.recordings.len(),
            "search indexer started"
        );
        let mut failures = 0u32;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            match self.pass(stop) {
                Ok(_) => failures = 0,
                Err(e) if failures < 5 => {
                    failures += 1;
                    warn!(error = %e, "search indexing failed: tried again");
                }
                Err(_) => {}
            }
            let rest = EVERY.saturating_sub(started.elapsed());
            let until = Instant::now() + rest;
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// One look at every recording: what is new in their tracks goes into the index; deleted
    /// recordings come out. Returns how many texts were added.
    fn pass(&mut self, stop: &AtomicBool) -> Result<usize, String> {
        let listed = self.recordings.listed().map_err(|e| e.to_string())?;
        let mut added = 0usize;
        let mut changed = false;
        let present: std::collections::HashSet<&str> =
            listed.iter().map(|s| s.id.as_str()).collect();
        let gone: Vec<String> = self
            .progress
            .recordings
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        let forgot = !gone.is_empty();
        for id in gone {
            self.index.forget(&id);
            self.progress.recordings.remove(&id);
            self.seen.remove(&id);
            changed = true;
        }
        for summary in &listed {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            // One recording that cannot be read holds no other back: said, and tried again
            // once its manifest grows.
            match self.index_one(summary) {
                Ok(Some(n)) => {
                    added += n;
                    changed = true;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(recording = %summary.id, error = %e, "cannot index a recording");
                    if let Ok(Some(len)) = self.recordings.storage.len(&summary.id, MANIFEST) {
                        self.seen.insert(summary.id.clone(), len);
                    }
                }
            }
        }
        if self.catch_up(&listed)? {
            changed = true;
        }
        if changed {
            self.index
                .commit(&self.progress)
                .map_err(|e| e.to_string())?;
        }
        // A deleted recording's words leave the index's files too (retention), not only the
        // results.
        // (Also later, should a purge have failed or the gateway stopped before it.)
        let retry_due = self
            .purge_failed
            .is_none_or(|at| at.elapsed() >= PURGE_RETRY);
        if (forgot || self.index.taken_out_still_stored() > 0) && retry_due {
            match self.index.purge() {
                Ok(_) => self.purge_failed = None,
                Err(e) => {
                    self.purge_failed = Some(Instant::now());
                    warn!(error = %e, "cannot purge deleted recordings' words from the index files; trying again in a minute");
                }
            }
        }
        Ok(added)
    }

    /// Reads what is new in one recording's track into the index (committed by the caller):
    /// how many texts, or `None` when there was nothing new.
    fn index_one(&mut self, summary: &Summary) -> Result<Option<usize>, String> {
        let done = self
            .progress
            .recordings
            .get(&summary.id)
            .cloned()
            .unwrap_or_default();
        if done.complete {
            return Ok(None);
        }
        let storage = self.recordings.storage.as_ref();
        let Some(manifest_len) = storage
            .len(&summary.id, MANIFEST)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if self.seen.get(&summary.id) == Some(&manifest_len) {
            return Ok(None);
        }
        let detail = self
            .recordings
            .detail(&summary.id)
            .map_err(|e| e.to_string())?;
        // Only what the manifest lists (a line being written is not read half-done).
        let listed_len = detail.scan.file_ends.get(EVENTS).copied().unwrap_or(0);
        let from = done.resume.offset.min(listed_len);
        let to = listed_len.min(from.saturating_add(MAX_READ));
        let bytes = if to > from {
            storage
                .read(&summary.id, EVENTS, from, to - from)
                .map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let ended = summary.state != ListedState::Recording;
        let complete = ended && to == listed_len;
        let reading = portcullis_search::read_track(&bytes, &done.resume, complete);
        let entry = reading.entry_path.clone().unwrap_or(done.entry);
        let recording = Recording {
            id: summary.id.clone(),
            user: summary.user.clone(),
            user_id: summary.user_id.clone(),
            target: summary.target.clone(),
            entry: entry.clone(),
            started_at_ms: summary.started_at_ms,
        };
        self.index
            .add(&recording, &reading.entries)
            .map_err(|e| e.to_string())?;
        self.progress.recordings.insert(
            summary.id.clone(),
            Done {
                resume: reading.resume,
                complete,
                entry,
                ..done
            },
        );
        // Read to its listed end: nothing new until the manifest grows.
        if to == listed_len {
            self.seen.insert(summary.id.clone(), manifest_len);
        }
        Ok(Some(reading.entries.len()))
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/search", get(search))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    q: String,
    user: Option<String>,
    target: Option<String>,
    /// `browser` or `rdp`.
    entry: Option<String>,
    /// `typed`, `clipboard`, `file` or `screen`.
    kind: Option<String>,
    /// Unix ms.
    from: Option<i64>,
    /// Unix ms.
    to: Option<i64>,
    limit: Option<usize>,
}

/// `GET /search?q=…`: the moments the words were found, best first.
async fn search(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Value>, WebError> {
    let (Some(search), Some(recordings)) = (state.search.clone(), state.recordings.clone()) else {
        return Err(WebError::NotFound(
            "search is off (recording is off)".into(),
        ));
    };
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            WebError::BadRequest(format!(
                "kind: expected typed, clipboard, file or screen, got {k:?}"
            ))
        })?),
    };
    if let Some(e) = q.entry.as_deref() {
        if !["browser", "rdp"].contains(&e) {
            return Err(WebError::BadRequest(format!(
                "entry: expected browser or rdp, got {e:?}"
            )));
        }
    }
    // A plain user finds only their own recordings (by account, not by name: recordings made
    // before accounts had ids are not found), newest first and without scores or index size
    // (the ranking would tell how often words occur in recordings they may not see).
    let own_only = match user.role {
        Role::Admin | Role::Reviewer | Role::Soc => false,
        Role::User => true,
    };
    if own_only && user.id.is_empty() {
        return Err(WebError::Forbidden("this login has no account id".into()));
    }
    let query = portcullis_search::Query {
        text: q.q,
        only_user_id: own_only.then(|| user.id.clone()),
        newest_first: own_only,
        user: q.user.filter(|u| !u.is_empty()),
        target: q.target.filter(|t| !t.is_empty()),
        entry: q.entry.filter(|e| !e.is_empty()),
        kind,
        from_ms: q.from,
        to_ms: q.to,
        limit: q.limit.unwrap_or(50),
    };
    let hits = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let hits = search.index.search(&query).map_err(|e| match e {
            portcullis_search::SearchError::BadQuery(m) => WebError::BadRequest(m),
            other => WebError::Internal(other.to_string()),
        })?;
        let took = started.elapsed();
        // Each hit with the thumbnail of its moment and the desktop's size (for the boxes).
        let mut details = HashMap::new();
        let out: Vec<Value> = hits
            .into_iter()
            .map(|hit| {
                let detail = details
                    .entry(hit.recording.clone())
                    .or_insert_with(|| recordings.detail(&hit.recording).ok())
                    .clone();
                let thumb = detail.as_ref().and_then(|d| {
                    d.thumbnails
                        .iter()
                        .rev()
                        .find(|t| t.t_ms <= hit.t_ms)
                        .or(d.thumbnails.first())
                        .map(|t| t.seq)
                });
                let size = detail.as_ref().and_then(|d| {
                    d.inits
                        .last()
                        .map(|p| json!({"width": p.width, "height": p.height}))
                });
                let mut v = serde_json::to_value(&hit).unwrap_or_default();
                v["thumbnail_seq"] = json!(thumb);
                v["desktop"] = size.unwrap_or(Value::Null);
                v
            })
            .collect();
        let indexed = (!own_only).then(|| search.index.len());
        Ok::<_, WebError>(json!({
            "hits": out,
            "took_ms": took.as_secs_f64() * 1000.0,
            "indexed": indexed,
        }))
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))??;
    Ok(Json(hits))
}

/// How much of an event track is read at once to find the live reads.
const READS_CHUNK: u64 = 8 * 1024 * 1024;

/// When the live reader read the screen of recording `id`: its whole event track, read a
/// piece at a time (whole lines each).
fn live_reads(
    storage: &dyn portcullis_recording::RecordingStorage,
    id: &str,
) -> Result<(Vec<u64>, bool), portcullis_recording::StorageError> {
    let len = storage.len(id, EVENTS)?.unwrap_or(0);
    let (mut reads, mut aged) = (Vec::new(), false);
    let mut at = 0u64;
    while at < len {
        let bytes = storage.read(id, EVENTS, at, READS_CHUNK.min(len - at))?;
        // Up to the last whole line (a line longer than a chunk is passed over).
        let whole = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(bytes.len(), |end| end + 1);
        if whole == 0 {
            break;
        }
        aged |= portcullis_search::screen_reads(&bytes[..whole], &mut reads);
        at += whole as u64;
    }
    Ok((reads, aged))
}

/// Where the index lives under the data directory.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("search")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_core::session::SessionEvent;
    use portcullis_recording::oracles::test_meta;
    use portcullis_recording::{LiveRecordings, LocalDisk, RecordingStorage, RecordingWriter};

    use super::*;

    /// A closed recording whose live reader read the screen at 2 s (taken 500 ms before).
    fn record(
        disk: &dyn RecordingStorage,
        key: &Arc<portcullis_recording::SigningKey>,
        id: &str,
        started: i64,
    ) {
        let mut w = RecordingWriter::create(disk, Arc::clone(key), test_meta(id, started)).unwrap();
        w.event(
            2000,
            &SessionEvent::ScreenText {
                words: vec![ScreenWord("prompt".into(), 1, 2, 30, 10)],
                age_ms: 500,
            },
        );
        w.finish("closed", 60_000, started + 60_000).unwrap();
    }

    fn found(search: &Search, word: &str) -> Vec<(String, u64)> {
        let q = portcullis_search::Query {
            text: word.into(),
            limit: 10,
            ..Default::default()
        };
        search
            .index
            .search(&q)
            .unwrap()
            .into_iter()
            .map(|h| (h.recording, h.t_ms))
            .collect()
    }

    #[test]
    fn caught_up_words_are_indexed_once_and_never_for_a_deleted_recording() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn RecordingStorage> = Arc::new(LocalDisk::open(dir.path()).unwrap());
        let key = Arc::new(portcullis_recording::generate_key());
        record(disk.as_ref(), &key, "older", 1_000);
        record(disk.as_ref(), &key, "newer", 2_000);
        let recordings = Recordings::new(
            Arc::clone(&disk),
            LiveRecordings::default(),
            key.verifying_key(),
        );
        let index_dir = tempfile::tempdir().unwrap();
        let search = Search::open(index_dir.path()).unwrap();
        shared(&search.catch_up).recordings = Some(recordings.clone());
        let mut indexer = Indexer::new(
            Arc::clone(&search.index),
            recordings,
            Arc::clone(&search.catch_up),
        );
        // Nothing is due before the indexer read the tracks to their end.
        assert!(search.next_catch_up().is_none());
        let stop = AtomicBool::new(false);
        indexer.pass(&stop).unwrap();

        // Newest first, with when the live reader read it (when the picture was taken).
        let job = search.next_catch_up().unwrap();
        assert_eq!(job.recording, "newer");
        assert_eq!(
            (job.from_ms, job.live_reads.as_slice(), job.reads_aged),
            (0, &[1500][..], true)
        );
        // One at a time; and not again while what was read is not in the index yet.
        assert!(search.next_catch_up().is_none());
        search.caught_up(CaughtUp {
            recording: "newer".into(),
            moments: vec![
                (5000, vec![ScreenWord("harbour".into(), 0, 40, 60, 12)]),
                (9000, Vec::new()),
            ],
            through_ms: 60_000,
            finished: true,
            failed: false,
        });
        assert!(search.next_catch_up().is_none());
        indexer.pass(&stop).unwrap();
        assert_eq!(found(&search, "harbour"), [("newer".to_owned(), 5000)]);
        assert!(indexer.progress.recordings["newer"].screen_caught_up);

        // The next; deleted (retention) before what was read of it came in: not indexed.
        let job = search.next_catch_up().unwrap();
        assert_eq!(job.recording, "older");
        disk.delete("older").unwrap();
        search.caught_up(CaughtUp {
            recording: "older".into(),
            moments: vec![(3000, vec![ScreenWord("ledger".into(), 0, 0, 50, 12)])],
            through_ms: 60_000,
            finished: true,
            failed: false,
        });
        indexer.pass(&stop).unwrap();
        assert!(found(&search, "ledger").is_empty());
        // Nothing left, nothing read twice.
        indexer.pass(&stop).unwrap();
        assert!(search.next_catch_up().is_none());
        assert_eq!(found(&search, "harbour").len(), 1);
    }
}
