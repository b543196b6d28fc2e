//! Questions about stored recordings: list, describe, verify, recover, expire.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;

use crate::manifest::{fingerprint, EndState, Entry, SessionMeta, MANIFEST, MAX_LINE};
use crate::scan::{scan, Depth, Problem, Scan};
use crate::storage::{RecordingStorage, StorageError};
use crate::writer::RecordingWriter;

/// A recording's state as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListedState {
    /// Live: still being written.
    Recording,
    /// Closed normally.
    Complete,
    /// The gateway stopped before closing it.
    Incomplete,
}

impl ListedState {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ListedState::Recording => "recording",
            ListedState::Complete => "complete",
            ListedState::Incomplete => "incomplete",
        }
    }
}

/// One recording in a list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Recording (= session) id.
    pub id: String,
    /// Gateway user.
    pub user: String,
    /// Target name.
    pub target: String,
    /// The user's address.
    pub client_addr: String,
    /// Unix ms at time 0.
    pub started_at_ms: i64,
    /// Unix ms at the end line, if written.
    pub ended_at_ms: Option<i64>,
    /// Length so far.
    pub duration_ms: u64,
    /// State.
    pub state: ListedState,
    /// Bytes stored.
    pub bytes: u64,
    /// Why it ended.
    pub end_reason: Option<String>,
}

/// Lists one recording cheaply: its header and its last manifest line only. `live` says whether
/// the gateway is writing it right now.
pub fn summary(
    storage: &dyn RecordingStorage,
    id: &str,
    live: bool,
) -> Result<Summary, StorageError> {
    let len = storage
        .len(id, MANIFEST)?
        .ok_or_else(|| StorageError::NotFound(id.to_owned()))?;
    let head = storage.read(id, MANIFEST, 0, len.min(MAX_LINE as u64))?;
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let meta = match parse_entry(first) {
        Some(Entry::Header { meta, .. }) => meta,
        _ => return Err(StorageError::NotFound(format!("{id} (no readable header)"))),
    };
    let tail_len = len.min(MAX_LINE as u64);
    let tail = storage.read(id, MANIFEST, len - tail_len, tail_len)?;
    let last = tail
        .split(|&b| b == b'\n')
        .rev()
        .filter(|l| !l.is_empty())
        .find_map(parse_entry);
    let bytes = storage.files(id)?.iter().map(|(_, n)| n).sum();
    let mut s = Summary {
        id: id.to_owned(),
        user: meta.user,
        target: meta.target,
        client_addr: meta.client_addr,
        started_at_ms: meta.started_at_ms,
        ended_at_ms: None,
        duration_ms: 0,
        state: if live {
            ListedState::Recording
        } else {
            ListedState::Incomplete
        },
        bytes,
        end_reason: None,
    };
    match last {
        Some(Entry::End {
            state,
            reason,
            duration_ms,
            ended_at_ms,
            ..
        }) => {
            s.state = match state {
                EndState::Complete => ListedState::Complete,
                EndState::Incomplete => ListedState::Incomplete,
            };
            s.duration_ms = duration_ms;
            s.ended_at_ms = Some(ended_at_ms);
            s.end_reason = Some(reason);
        }
        Some(Entry::Segment { end_ms, .. }) => s.duration_ms = end_ms,
        _ => {}
    }
    Ok(s)
}

fn parse_entry(raw: &[u8]) -> Option<Entry> {
    serde_json::from_slice::<crate::manifest::Line>(raw)
        .ok()
        .map(|l| l.body.entry)
}

/// A video part as the player needs it.
#[derive(Debug, Clone, Serialize)]
pub struct PartInfo {
    /// Part number.
    pub part: u32,
    /// Manifest line of its init segment.
    pub seq: u64,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Codec string.
    pub codec: String,
}

/// A media segment as the player needs it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentEntry {
    /// Manifest line.
    pub seq: u64,
    /// Part.
    pub part: u32,
    /// Start ms.
    pub start_ms: u64,
    /// End ms.
    pub end_ms: u64,
    /// Starts with a keyframe.
    pub key: bool,
}

/// A thumbnail's place.
#[derive(Debug, Clone, Serialize)]
pub struct ThumbEntry {
    /// Manifest line of its segment.
    pub seq: u64,
    /// Its time.
    pub t_ms: u64,
}

/// Everything the player needs to know about a recording.
#[derive(Debug)]
pub struct Detail {
    /// Header.
    pub meta: SessionMeta,
    /// Parts.
    pub inits: Vec<PartInfo>,
    /// Segments, in order.
    pub segments: Vec<SegmentEntry>,
    /// Thumbnails, in order.
    pub thumbnails: Vec<ThumbEntry>,
    /// The walk it came from (spans to serve bytes; body `n` is manifest line `n`).
    pub scan: Scan,
}

/// Reads a recording's structure (no signature or data check: see [`verify`]).
pub fn detail(storage: &dyn RecordingStorage, id: &str) -> Result<Detail, StorageError> {
    let scan = scan(storage, id, Depth::Structure)?;
    let mut meta = None;
    let mut inits = Vec::new();
    let mut segments = Vec::new();
    let mut thumbnails = Vec::new();
    for b in &scan.bodies {
        match &b.entry {
            Entry::Header { meta: m, .. } => meta = Some(m.clone()),
            Entry::Init {
                part,
                width,
                height,
                codec,
                ..
            } => inits.push(PartInfo {
                part: *part,
                seq: b.seq,
                width: *width,
                height: *height,
                codec: codec.clone(),
            }),
            Entry::Segment {
                part,
                start_ms,
                end_ms,
                key,
                thumb,
                ..
            } => {
                segments.push(SegmentEntry {
                    seq: b.seq,
                    part: *part,
                    start_ms: *start_ms,
                    end_ms: *end_ms,
                    key: *key,
                });
                if thumb.is_some() {
                    thumbnails.push(ThumbEntry {
                        seq: b.seq,
                        t_ms: *start_ms,
                    });
                }
            }
            Entry::Events { .. } | Entry::End { .. } => {}
        }
    }
    let meta = meta.ok_or_else(|| StorageError::NotFound(format!("{id} (no readable header)")))?;
    Ok(Detail {
        meta,
        inits,
        segments,
        thumbnails,
        scan,
    })
}

/// Which bytes of a recording to serve.
#[derive(Debug, Clone, Copy)]
pub enum Piece {
    /// The init segment of a part.
    Init(u32),
    /// A media segment by manifest line.
    Segment(u64),
    /// The thumbnail of a segment.
    Thumbnail(u64),
}

/// Reads a piece named by the manifest.
pub fn read_piece(
    storage: &dyn RecordingStorage,
    id: &str,
    detail: &Detail,
    piece: Piece,
) -> Result<Vec<u8>, StorageError> {
    let span = detail
        .scan
        .bodies
        .iter()
        .find_map(|b| match (&b.entry, piece) {
            (Entry::Init { part, video, .. }, Piece::Init(p)) if *part == p => Some(video),
            (Entry::Segment { video, .. }, Piece::Segment(seq)) if b.seq == seq => Some(video),
            (Entry::Segment { thumb: Some(t), .. }, Piece::Thumbnail(seq)) if b.seq == seq => {
                Some(t)
            }
            _ => None,
        });
    let span = span.ok_or_else(|| StorageError::NotFound(format!("{id}: {piece:?}")))?;
    storage.read(id, &span.file, span.offset, span.len)
}

/// Most segments one run may hold.
pub const MAX_RUN_SEGMENTS: u64 = 600;
/// Most bytes one run may hold.
pub const MAX_RUN_BYTES: u64 = 64 * 1024 * 1024;

/// The media segments `from..=to` (manifest lines) of one part, back to back, read at once: they
/// lie contiguously in the part's file. A player seeking far from a keyframe fetches the whole
/// run in one request instead of one per segment.
pub fn read_run(
    storage: &dyn RecordingStorage,
    id: &str,
    detail: &Detail,
    from: u64,
    to: u64,
) -> Result<Vec<u8>, StorageError> {
    let bad = |why: &str| StorageError::NotFound(format!("{id}: segments {from}..={to} ({why})"));
    if to < from || to - from >= MAX_RUN_SEGMENTS {
        return Err(bad("not a valid run"));
    }
    let first = usize::try_from(from).map_err(|_| bad("out of range"))?;
    let last = usize::try_from(to).map_err(|_| bad("out of range"))?;
    let bodies = detail
        .scan
        .bodies
        .get(first..=last)
        .ok_or_else(|| bad("not in the manifest"))?;
    let mut span: Option<(u32, &str, u64, u64)> = None;
    for b in bodies {
        match &b.entry {
            Entry::Segment { part, video, .. } => match &mut span {
                None => span = Some((*part, &video.file, video.offset, video.end())),
                Some((p, _, _, end)) if *p == *part && *end == video.offset => *end = video.end(),
                Some(_) => return Err(bad("not one part")),
            },
            Entry::Events { .. } => {}
            _ => return Err(bad("not only media segments")),
        }
    }
    let (_, file, start, end) = span.ok_or_else(|| bad("no media segment"))?;
    if end - start > MAX_RUN_BYTES {
        return Err(bad("too large"));
    }
    storage.read(id, file, start, end - start)
}

/// The result of checking a recording.
#[derive(Debug)]
pub struct Verdict {
    /// Manifest lines that checked out.
    pub lines: u64,
    /// Media segments among them.
    pub segments: u64,
    /// Duration covered by good segments.
    pub duration_ms: u64,
    /// How it ended, if it did.
    pub ended: Option<EndState>,
    /// Bytes present after the last listed range of some file (a torn write, or an addition).
    pub unlisted_bytes: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// Fingerprint of the key checked against.
    pub key_fingerprint: String,
}

impl Verdict {
    /// True when every line, signature and byte checks out and nothing was added after the end.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks every line's chain and signature and every listed byte's hash.
pub fn verify(
    storage: &dyn RecordingStorage,
    id: &str,
    key: &VerifyingKey,
) -> Result<Verdict, StorageError> {
    let s = scan(storage, id, Depth::Full(key))?;
    // Only the files the manifest names count (an export folder holds a README too).
    let mut unlisted = 0;
    for (file, len) in storage.files(id)? {
        let listed = if file == MANIFEST {
            s.manifest_len
        } else if let Some(end) = s.file_ends.get(&file) {
            *end
        } else {
            continue;
        };
        unlisted += len.saturating_sub(listed);
    }
    let mut v = Verdict {
        lines: s.bodies.len() as u64,
        segments: 0,
        duration_ms: 0,
        ended: None,
        unlisted_bytes: unlisted,
        problem: s.problem.clone(),
        key_fingerprint: fingerprint(key),
    };
    for b in &s.bodies {
        match &b.entry {
            Entry::Segment { end_ms, .. } => {
                v.segments += 1;
                v.duration_ms = *end_ms;
            }
            Entry::End {
                state, duration_ms, ..
            } => {
                v.ended = Some(*state);
                v.duration_ms = *duration_ms;
            }
            _ => {}
        }
    }
    if v.problem.is_none() && v.ended.is_some() && unlisted > 0 {
        v.problem = Some(Problem {
            seq: v.lines,
            what: format!("{unlisted} bytes were added after the recording was closed"),
        });
    }
    Ok(v)
}

/// What recovery did to one recording.
#[derive(Debug)]
pub struct Recovered {
    /// Which.
    pub id: String,
    /// Torn bytes cut off.
    pub discarded_bytes: u64,
    /// A problem found before the end of the manifest (the recording was altered while the
    /// gateway was down); recovery then closes it at the last good line.
    pub problem: Option<Problem>,
    /// Recovery could not close it (a full disk, say): it stays open, still verifiable up to its
    /// last listed segment, and the next start tries again. The other recordings are not held
    /// up by it, nor is the start.
    pub failed: Option<StorageError>,
}

/// Closes every recording left open by a gateway that stopped (at start-up, before any session
/// runs): cuts torn tails and appends a signed end line marked incomplete. A recording the
/// gateway stopped while creating (not one complete manifest line, no other byte) is deleted:
/// its session was never opened. Only failing to list the recordings is an error; a recording
/// that cannot be closed is reported with [`Recovered::failed`].
pub fn recover(
    storage: &dyn RecordingStorage,
    key: &Arc<SigningKey>,
    now_ms: i64,
) -> Result<Vec<Recovered>, StorageError> {
    let mut done = Vec::new();
    for id in storage.list()? {
        // Closed recordings are the vast majority: their last line says so, and hashing all their
        // bytes at every start would make start-up as slow as the archive is large.
        if summary(storage, &id, false).is_ok_and(|s| s.ended_at_ms.is_some()) {
            continue;
        }
        match recover_one(storage, key, &id, now_ms) {
            Ok(Some(r)) => done.push(r),
            Ok(None) => {}
            Err(e) => done.push(Recovered {
                id,
                discarded_bytes: 0,
                problem: None,
                failed: Some(e),
            }),
        }
    }
    Ok(done)
}

fn recover_one(
    storage: &dyn RecordingStorage,
    key: &Arc<SigningKey>,
    id: &str,
    now_ms: i64,
) -> Result<Option<Recovered>, StorageError> {
    let s = match scan(storage, id, Depth::Full(&key.verifying_key())) {
        Ok(s) => s,
        Err(StorageError::NotFound(_)) => {
            // Created but not one line written: nothing to keep.
            storage.delete(id)?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if s.bodies.is_empty() && never_started(storage, id)? {
        // The gateway stopped while writing the header: the session was never opened.
        storage.delete(id)?;
        return Ok(None);
    }
    if s.is_ended() || s.bodies.is_empty() {
        return Ok(None);
    }
    let mut discarded = 0;
    for (file, len) in storage.files(id)? {
        let keep = if file == MANIFEST {
            s.manifest_len
        } else {
            s.file_ends.get(&file).copied().unwrap_or(0)
        };
        if len > keep {
            discarded += len - keep;
            storage.truncate(id, &file, keep)?;
        }
    }
    let duration_ms = s
        .bodies
        .iter()
        .rev()
        .find_map(|b| match b.entry {
            Entry::Segment { end_ms, .. } => Some(end_ms),
            _ => None,
        })
        .unwrap_or(0);
    let sink = storage.reopen(id)?;
    let mut w = RecordingWriter::resume(
        id.to_owned(),
        sink,
        key.clone(),
        s.bodies.len() as u64,
        s.chain,
    );
    w.close(
        EndState::Incomplete,
        "the gateway stopped while recording; closed at the next start",
        duration_ms,
        now_ms,
        discarded,
    )?;
    Ok(Some(Recovered {
        id: id.to_owned(),
        discarded_bytes: discarded,
        problem: s.problem,
        failed: None,
    }))
}

/// True when a recording holds no complete manifest line and no other byte: what a gateway
/// stopped between creating it and writing its header leaves (the header is its first write).
/// A manifest with a line, even a bad one, or any other data is evidence and stays.
fn never_started(storage: &dyn RecordingStorage, id: &str) -> Result<bool, StorageError> {
    for (file, len) in storage.files(id)? {
        if file == MANIFEST {
            if len > MAX_LINE as u64 {
                return Ok(false);
            }
            if storage.read(id, MANIFEST, 0, len)?.contains(&b'\n') {
                return Ok(false);
            }
        } else if len > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deletes closed recordings that ended before `cutoff_ms` (Unix ms). Live and unclosed ones
/// are kept. Returns the ids deleted.
pub fn expire(
    storage: &dyn RecordingStorage,
    cutoff_ms: i64,
    is_live: impl Fn(&str) -> bool,
) -> Result<Vec<String>, StorageError> {
    let mut deleted = Vec::new();
    for id in storage.list()? {
        if is_live(&id) {
            continue;
        }
        let Ok(s) = summary(storage, &id, false) else {
            continue;
        };
        if s.ended_at_ms.is_some_and(|t| t < cutoff_ms) {
            storage.delete(&id)?;
            deleted.push(id);
        }
    }
    Ok(deleted)
}
