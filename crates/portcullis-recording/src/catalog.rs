//! Questions about stored recordings: list, describe, verify, recover, expire.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;

use crate::manifest::{fingerprint, EndState, Entry, SessionMeta, MANIFEST, MAX_LINE};
use crate::scan::{scan, Damage, Depth, Problem, Scan};
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
    /// That user's immutable id (empty for recordings made before ids existed). Not shown: it
    /// decides whose a recording is.
    #[serde(skip_serializing)]
    pub user_id: String,
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
    /// The session's risk score (0 to 100; 0 while it is being recorded).
    pub risk_score: u32,
    /// The risk rules that fired.
    pub risk_rules: Vec<String>,
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
        user_id: meta.user_id,
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
        risk_score: 0,
        risk_rules: Vec::new(),
    };
    match last {
        Some(Entry::End {
            state,
            reason,
            duration_ms,
            ended_at_ms,
            risk_score,
            risk_rules,
            ..
        }) => {
            s.risk_score = risk_score;
            s.risk_rules = risk_rules;
            s.state = match state {
                EndState::Complete => ListedState::Complete,
                EndState::Incomplete | EndState::FoundCut => ListedState::Incomplete,
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

/// The number of manifest lines of a closed recording (its end line's seq + 1), read from its
/// last line; `None` when that is not an end line. For the audit record of its close.
pub fn closed_lines(storage: &dyn RecordingStorage, id: &str) -> Result<Option<u64>, StorageError> {
    Ok(closed_end(storage, id)?.map(|(lines, _)| lines))
}

/// A closed recording's line count and its end line's chain value (hex), as its last line says
/// (unchecked: for the gateway's own record of a close it has just written).
pub fn closed_end(
    storage: &dyn RecordingStorage,
    id: &str,
) -> Result<Option<(u64, String)>, StorageError> {
    let len = storage
        .len(id, MANIFEST)?
        .ok_or_else(|| StorageError::NotFound(id.to_owned()))?;
    let tail_len = len.min(MAX_LINE as u64);
    let tail = storage.read(id, MANIFEST, len - tail_len, tail_len)?;
    let last = tail
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .and_then(|l| serde_json::from_slice::<crate::manifest::Line>(l).ok());
    Ok(last.and_then(|l| match l.body.entry {
        Entry::End { .. } => Some((l.body.seq.saturating_add(1), l.chain)),
        _ => None,
    }))
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
    /// The walk it came from (spans to serve bytes; bodies in manifest line order, with the lines
    /// of a damaged stretch missing).
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
    // Bodies are in seq order; after a damaged stretch some seqs are missing, so look them up.
    let all = &detail.scan.bodies;
    let first = all.partition_point(|b| b.seq < from);
    let last = all.partition_point(|b| b.seq <= to);
    let bodies = all
        .get(first..last)
        .filter(|b| {
            b.first().is_some_and(|x| x.seq == from)
                && b.last().is_some_and(|x| x.seq == to)
                && u64::try_from(b.len()).is_ok_and(|n| n == to - from + 1)
        })
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

/// What a check concludes, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Closed as `complete` by a signed end line; every line, signature and listed byte checks
    /// out; nothing is missing or was added.
    Intact,
    /// Closed as `incomplete` by a signed end line (the gateway stopped while recording and
    /// closed it at its next start); everything listed checks out, the end of the session is
    /// missing.
    Incomplete,
    /// No end line yet, and a running gateway is writing it right now (as its caller tells:
    /// [`Verdict::live`]); everything listed so far checks out.
    Live,
    /// No end line and nobody writing it: lines were removed from the end, or the gateway
    /// stopped and has not restarted (a start closes it as `incomplete`). Or closed as
    /// `found_cut` by a start: the audit trail says the gateway had closed it, its end line was
    /// gone.
    Cut,
    /// Something does not check out: a line, a signature, a byte, or a part set aside by
    /// recovery.
    Altered,
}

impl Status {
    /// The word printed as the verdict.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Intact => "intact",
            Status::Incomplete => "incomplete",
            Status::Live => "live",
            Status::Cut => "cut",
            Status::Altered => "altered",
        }
    }
}

/// The result of checking a recording.
#[derive(Debug)]
pub struct Verdict {
    /// Manifest lines that checked out.
    pub lines: u64,
    /// Media segments among them.
    pub segments: u64,
    /// Lines kept after a damaged stretch the walk could not tie to the lines before it
    /// ([`Damage::tied`]): signed with the key, but not proven to be this recording's; not
    /// counted in `lines` or `segments`.
    pub unproven_lines: u64,
    /// Duration covered by good segments.
    pub duration_ms: u64,
    /// How it ended, if it did.
    pub ended: Option<EndState>,
    /// Why it ended, as the signed end line says.
    pub end_reason: Option<String>,
    /// Bytes present after the last listed range of some file (a torn write, or an addition).
    pub unlisted_bytes: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// Every damaged stretch found (the first is also `problem`).
    pub damage: Vec<Damage>,
    /// Files recovery set aside next to the recording (name, size): bytes it found damaged or
    /// torn, kept byte for byte.
    pub quarantine: Vec<(String, u64)>,
    /// A running gateway is writing it right now. Never set by [`verify`]: only the caller can
    /// tell (the recording is in the recordings folder of a gateway that runs right now and
    /// holds its writer lock); a lock anyone who can read the manifest may hold is no proof.
    pub live: bool,
    /// Fingerprint of the key checked against.
    pub key_fingerprint: String,
    /// Who and what the signed header says the recording is about (`None` when the header does
    /// not check out). Its `session` is the recording's real id, whatever its folder is called:
    /// a caller that knows the folder should be that session's says so when it is not.
    pub meta: Option<SessionMeta>,
}

impl Verdict {
    /// The conclusion.
    pub fn status(&self) -> Status {
        if self.problem.is_some() || !self.damage.is_empty() {
            return Status::Altered;
        }
        match self.ended {
            Some(EndState::Complete) => Status::Intact,
            Some(EndState::Incomplete) => Status::Incomplete,
            Some(EndState::FoundCut) => Status::Cut,
            None if self.live => Status::Live,
            None => Status::Cut,
        }
    }

    /// True only for a recording closed as complete whose every line, signature and byte checks
    /// out with nothing missing or added. A cut, live or incomplete recording is not intact.
    pub fn is_intact(&self) -> bool {
        self.status() == Status::Intact
    }

    /// True when everything listed checks out (whether or not it is closed): what is there is
    /// what the gateway wrote.
    pub fn is_authentic_so_far(&self) -> bool {
        self.problem.is_none() && self.damage.is_empty()
    }

    /// What is missing or wrong, for people (`None` when intact).
    pub fn missing(&self) -> Option<String> {
        match self.status() {
            Status::Intact => None,
            Status::Altered => self
                .problem
                .as_ref()
                .map(|p| format!("at segment {}: {}", p.seq, p.what)),
            Status::Incomplete => Some(format!(
                "the end of the session: {}",
                self.end_reason
                    .as_deref()
                    .unwrap_or("the gateway stopped while recording")
            )),
            Status::Live => Some(format!(
                "the end line: the gateway is still writing it ({} lines so far)",
                self.lines
            )),
            Status::Cut if self.ended.is_some() => Some(format!(
                "the end of the recording: {}",
                self.end_reason.as_deref().unwrap_or("found cut")
            )),
            Status::Cut => Some(format!(
                "the signed end line: the manifest stops after line {}{}; lines were removed \
                 from its end, or the gateway could not close it (it stopped, or its disk was \
                 full) and has not restarted since (a start closes it as incomplete)",
                self.lines.saturating_sub(1),
                if self.unlisted_bytes > 0 {
                    format!(
                        ", and {} bytes follow the last listed segment",
                        self.unlisted_bytes
                    )
                } else {
                    String::new()
                }
            )),
        }
    }
}

/// Prefix of the files recovery sets damaged or torn bytes aside in (never deleted).
pub const QUARANTINE_PREFIX: &str = "quarantine-";

/// Checks every line's chain and signature and every listed byte's hash, and whether the
/// recording is closed. One not closed is [`Status::Cut`] unless the caller sets
/// [`Verdict::live`].
pub fn verify(
    storage: &dyn RecordingStorage,
    id: &str,
    key: &VerifyingKey,
) -> Result<Verdict, StorageError> {
    let s = scan(storage, id, Depth::Full(key))?;
    // Only the files the manifest names count (an export folder holds a README too).
    let mut unlisted = 0;
    let mut quarantine = Vec::new();
    for (file, len) in storage.files(id)? {
        let listed = if file == MANIFEST {
            s.manifest_len
        } else if let Some(end) = s.file_ends.get(&file) {
            *end
        } else {
            if file.starts_with(QUARANTINE_PREFIX) {
                quarantine.push((file, len));
            }
            continue;
        };
        unlisted += len.saturating_sub(listed);
    }
    let untied = s.untied_from.unwrap_or(u64::MAX);
    let proven = s.bodies.iter().filter(|b| b.seq < untied).count() as u64;
    let mut v = Verdict {
        lines: proven,
        unproven_lines: s.bodies.len() as u64 - proven,
        segments: 0,
        duration_ms: 0,
        ended: None,
        end_reason: None,
        unlisted_bytes: unlisted,
        problem: s.first_problem(),
        damage: s.damage.clone(),
        quarantine,
        live: false,
        key_fingerprint: fingerprint(key),
        meta: None,
    };
    for b in &s.bodies {
        match &b.entry {
            Entry::Header { meta, .. } if b.seq == 0 => v.meta = Some(meta.clone()),
            Entry::Segment { end_ms, .. } => {
                if b.seq < untied {
                    v.segments += 1;
                }
                v.duration_ms = *end_ms;
            }
            Entry::End {
                state,
                duration_ms,
                reason,
                ..
            } => {
                v.ended = Some(*state);
                v.duration_ms = *duration_ms;
                v.end_reason = Some(reason.clone());
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
    /// Bytes cut from the recording's files (a torn tail, a damaged tail); every one of them
    /// was first copied to a quarantine file.
    pub discarded_bytes: u64,
    /// A problem found before the end of the manifest (the recording was altered or damaged
    /// while the gateway was down); named in the end line too.
    pub problem: Option<Problem>,
    /// Quarantine files written (bytes set aside, byte for byte).
    pub quarantined: Vec<String>,
    /// The audit trail says this recording was closed, yet its end line was gone: it was cut
    /// after the fact, and closed as [`EndState::FoundCut`].
    pub found_cut: Option<ClosedOnRecord>,
    /// It was closed already (its end line checks out), but the audit trail had no record of
    /// that close (the gateway stopped between the two): recorded now (`found_closed`), nothing
    /// else done. [`Recovered::problem`] names anything the full check found wrong.
    pub found_closed: bool,
    /// It ends with a signed end line, but not as the gateway left it (damage, lines that
    /// cannot be tied to its chain, another line count than the close on record): left as it
    /// is, nothing recorded as closed; [`Recovered::problem`] says what.
    pub altered_end: bool,
    /// Recovery could not close it (a full disk, an unreadable byte, the audit trail refusing
    /// the record of what recovery was about to do): it stays as it was, still verifiable up to
    /// its last listed segment, and the next start tries again. The other recordings are not
    /// held up by it, nor is the start.
    pub failed: Option<StorageError>,
}

/// The audit trail's record that the gateway closed a recording (written once its signed end
/// line was on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedOnRecord {
    /// The audit record's seq.
    pub audit_seq: u64,
    /// Manifest lines the recording had when closed (its end line's seq + 1); 0 when the
    /// record does not say.
    pub lines: u64,
    /// The end line's chain value (hex), which only this recording's manifest leads to; `None`
    /// when the record does not say (older records).
    pub chain: Option<String>,
}

/// What recovery is about to do to one recording: told to [`RecoveryTrail::before`] first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryAct {
    /// Which recording.
    pub id: String,
    /// `delete` (created but never started: no line, no byte), or `close` (an end line follows
    /// the last line that checks out).
    pub action: &'static str,
    /// The end line's state (`None` for a delete).
    pub state: Option<EndState>,
    /// The end line's reason (what the end line will say; empty for a delete).
    pub reason: String,
    /// Manifest lines the recording has once the act is done (its end line's seq + 1; `None`
    /// for a delete): what the next start compares with.
    pub lines: Option<u64>,
    /// The end line's chain value (hex), once known: for a `found_closed`, and for a `close`
    /// when [`RecoveryTrail::after`] hears of it.
    pub chain: Option<String>,
    /// Byte ranges copied to quarantine files: (file, from, to).
    pub set_aside: Vec<(String, u64, u64)>,
    /// Files cut after being set aside: (file, new length, old length).
    pub cut: Vec<(String, u64, u64)>,
}

/// What recovery needs from the audit trail: whether a recording's close is on record, and a
/// durable record of every act before it happens.
pub trait RecoveryTrail {
    /// The trail's latest record that this recording was closed (by the gateway, or by
    /// recovery: a `close` carried out ([`RecoveryTrail::after`]) or a `found_closed`), if any. Asked once per recording at every
    /// start: answer from memory. An error leaves the recording as it is (the next start tries
    /// again).
    fn closed_on_record(&self, id: &str) -> Result<Option<ClosedOnRecord>, String>;
    /// Records `act` durably; only then is it carried out. An error: it is not.
    fn before(&self, act: &RecoveryAct) -> Result<(), String>;
    /// Records that `act` (a `close`) was carried out: its end line is on disk. Only this makes
    /// the close one "on record" (a close that failed, on a full disk say, is retried). An
    /// error leaves the recording closed but its close unrecorded: the next start finds it.
    fn after(&self, act: &RecoveryAct) -> Result<(), String>;
}

/// Closes every recording left open by a gateway that stopped (at start-up, before any session
/// runs, with the audit trail open): appends a signed end line marked incomplete. Nothing is
/// destroyed: a torn or damaged tail (bytes no checked line vouches for at the end of a file) is
/// copied to a quarantine file next to the recording before it is cut, and a damaged line in the
/// middle stays where it is (a copy is set aside too) with the signed lines after it; the end
/// line names the damage. A recording the trail says was closed, but whose end line is gone, is
/// closed as [`EndState::FoundCut`] instead (lines were removed from its end). A recording the
/// gateway stopped while creating (not one complete manifest line, no other byte) is deleted:
/// its session was never opened. Every act is told to `trail` before it happens. Only failing
/// to list the recordings is an error; a recording that cannot be closed is reported with
/// [`Recovered::failed`].
pub fn recover(
    storage: &dyn RecordingStorage,
    key: &Arc<SigningKey>,
    trail: &dyn RecoveryTrail,
    now_ms: i64,
) -> Result<Vec<Recovered>, StorageError> {
    let mut done = Vec::new();
    for id in storage.list()? {
        let closed = match trail.closed_on_record(&id) {
            Ok(c) => c,
            Err(e) => {
                done.push(Recovered::failed(
                    id,
                    StorageError::Refused(format!("the audit trail: {e}")),
                ));
                continue;
            }
        };
        // Closed recordings are the vast majority, and hashing all their bytes at every start
        // would make start-up as slow as the archive is large: one whose last line is the end
        // line the trail says the gateway wrote (signed, chained to the line before it, at the
        // line count on record) is skipped. Anything else (an end line nobody recorded, a forged
        // or moved one) gets the full check.
        if closed
            .as_ref()
            .is_some_and(|c| ends_as_on_record(storage, &id, c, &key.verifying_key()))
        {
            continue;
        }
        match recover_one(storage, key, trail, &id, closed, now_ms) {
            Ok(Some(r)) => done.push(r),
            Ok(None) => {}
            Err(e) => done.push(Recovered::failed(id, e)),
        }
    }
    Ok(done)
}

impl Recovered {
    fn failed(id: String, e: StorageError) -> Self {
        Self {
            id,
            discarded_bytes: 0,
            problem: None,
            quarantined: Vec::new(),
            found_cut: None,
            found_closed: false,
            altered_end: false,
            failed: Some(e),
        }
    }
}

/// True when the recording's manifest ends with the end line `closed` describes: a newline-ended
/// last line at seq `closed.lines - 1` that checks out (chain value from the line before it,
/// signature) and is an end line. Reads two lines at most.
fn ends_as_on_record(
    storage: &dyn RecordingStorage,
    id: &str,
    closed: &ClosedOnRecord,
    key: &VerifyingKey,
) -> bool {
    let (Some(seq), Some(chain)) = (
        closed.lines.checked_sub(1).filter(|s| *s > 0),
        closed.chain.as_deref(),
    ) else {
        return false;
    };
    let Ok(Some(len)) = storage.len(id, MANIFEST) else {
        return false;
    };
    let want = len.min(2 * (MAX_LINE as u64 + 1));
    let Ok(tail) = storage.read(id, MANIFEST, len - want, want) else {
        return false;
    };
    let Some(body) = tail.strip_suffix(b"\n") else {
        return false;
    };
    let mut lines = body.rsplitn(3, |&b| b == b'\n');
    let (Some(last), Some(before)) = (lines.next(), lines.next()) else {
        return false;
    };
    // `before` is whole only if a newline precedes it (or the file starts with it).
    if lines.next().is_none() && want < len {
        return false;
    }
    let Some(prev) = serde_json::from_slice::<crate::manifest::Line>(before)
        .ok()
        .and_then(|l| hex::decode(l.chain).ok())
        .and_then(|c| <[u8; 32]>::try_from(c).ok())
    else {
        return false;
    };
    // The end line must be the one on record (its chain value names this recording's whole
    // manifest: an end line spliced in from another recording has another), and its body must
    // lead to that value from the line before it.
    matches!(
        crate::manifest::check_line(last, seq, &prev, key),
        Ok((crate::manifest::Body { entry: Entry::End { .. }, .. }, c)) if hex::encode(c) == chain
    )
}

/// Most of the end line's reason given to naming damage.
const MAX_REASON: usize = 4000;

fn recover_one(
    storage: &dyn RecordingStorage,
    key: &Arc<SigningKey>,
    trail: &dyn RecoveryTrail,
    id: &str,
    closed: Option<ClosedOnRecord>,
    now_ms: i64,
) -> Result<Option<Recovered>, StorageError> {
    let refused = |e: String| StorageError::Refused(format!("the audit trail: {e}"));
    let delete = |storage: &dyn RecordingStorage| -> Result<(), StorageError> {
        trail
            .before(&RecoveryAct {
                id: id.to_owned(),
                action: "delete",
                state: None,
                reason: String::new(),
                lines: None,
                chain: None,
                set_aside: Vec::new(),
                cut: Vec::new(),
            })
            .map_err(refused)?;
        storage.delete(id)
    };
    let s = match scan(storage, id, Depth::Full(&key.verifying_key())) {
        Ok(s) => s,
        Err(StorageError::NotFound(_)) => {
            // Created but not one line written: nothing to keep.
            delete(storage)?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if s.bodies.is_empty() && never_started(storage, id)? {
        // The gateway stopped while writing the header: the session was never opened.
        delete(storage)?;
        return Ok(None);
    }
    if s.bodies.is_empty() {
        return Ok(None);
    }
    let here = s.bodies.last().map_or(0, |b| b.seq.saturating_add(1));
    if s.is_ended() {
        let end_chain = hex::encode(s.chain);
        let clean = s.first_problem().is_none() && s.untied_from.is_none();
        match &closed {
            // The close on record, exactly (the quick check could not read it, say).
            Some(c) if c.lines == here && c.chain.as_deref() == Some(end_chain.as_str()) => {
                return Ok(None);
            }
            // Whole up to its end line and closed, yet the trail has no record of this close
            // (the gateway stopped between writing the end line and recording it), or one from
            // before closes named their chain value: recorded now, so that the next start can
            // skip it.
            None if clean => {}
            Some(c) if clean && c.lines == here && c.chain.is_none() => {}
            // It ends with a signed end line, but not as the gateway left it: damage before it,
            // lines that cannot be tied to the chain (an end spliced in from another recording
            // signed with the same key), or another end than the close on record. Nothing to
            // close and nothing recorded as closed: `verify` names what is wrong, and the next
            // start checks it fully again.
            _ => {
                return Ok(Some(Recovered {
                    id: id.to_owned(),
                    discarded_bytes: 0,
                    problem: s.first_problem().or_else(|| {
                        closed.as_ref().map(|c| Problem {
                            seq: here.saturating_sub(1),
                            what: format!(
                                "its end line is not the one the audit trail (record {}) says \
                                 the gateway closed it with ({} manifest lines; this one makes \
                                 {here})",
                                c.audit_seq, c.lines
                            ),
                        })
                    }),
                    quarantined: Vec::new(),
                    found_cut: None,
                    found_closed: false,
                    altered_end: true,
                    failed: None,
                }));
            }
        }
        let state = s.bodies.last().and_then(|b| match &b.entry {
            Entry::End { state, .. } => Some(*state),
            _ => None,
        });
        trail
            .before(&RecoveryAct {
                id: id.to_owned(),
                action: "found_closed",
                state,
                reason: format!(
                    "found closed with {here} manifest lines, a close the audit trail had no \
                     record of"
                ),
                lines: Some(here),
                chain: Some(end_chain),
                set_aside: Vec::new(),
                cut: Vec::new(),
            })
            .map_err(refused)?;
        return Ok(Some(Recovered {
            id: id.to_owned(),
            discarded_bytes: 0,
            problem: s.first_problem(),
            quarantined: Vec::new(),
            found_cut: None,
            found_closed: true,
            altered_end: false,
            failed: None,
        }));
    }
    let mut notes: Vec<String> = Vec::new();
    let mut act = RecoveryAct {
        id: id.to_owned(),
        action: "close",
        state: Some(EndState::Incomplete),
        reason: String::new(),
        // The end line follows the last line that checks out.
        lines: Some(here + 1),
        chain: None,
        set_aside: Vec::new(),
        cut: Vec::new(),
    };
    // For each range set aside, the note its quarantine file's name goes in (a damaged middle
    // line's), or none (a cut tail gets its own note).
    let mut note_of: Vec<Option<usize>> = Vec::new();
    // Damaged lines in the middle stay in place; a copy of their bytes is set aside as well.
    for d in s.damage.iter().filter(|d| d.resumed_at.is_some()) {
        let (from, to) = d.manifest;
        notes.push(format!("damaged: {}", d.describe()));
        if to > from {
            act.set_aside.push((MANIFEST.to_owned(), from, to));
            note_of.push(Some(notes.len() - 1));
        }
    }
    if let Some(p) = &s.problem {
        notes.push(format!("damaged: at line {}: {}", p.seq, p.what));
    }
    if let Some(d) = s.tail_damage() {
        notes.push(format!("damaged tail: {}", d.describe()));
    }
    // Bytes after the last checked line of each file (a torn write, a damaged tail): set aside,
    // then cut, so that the end line can follow the last line that checks out.
    for (file, len) in storage.files(id)? {
        if file.starts_with(QUARANTINE_PREFIX) {
            continue;
        }
        let keep = if file == MANIFEST {
            s.manifest_len
        } else {
            s.file_ends.get(&file).copied().unwrap_or(0)
        };
        if len > keep {
            act.set_aside.push((file.clone(), keep, len));
            note_of.push(None);
            act.cut.push((file, keep, len));
        }
    }
    let mut reason = match &closed {
        Some(c) => {
            act.state = Some(EndState::FoundCut);
            format!(
                "found cut: the audit trail (record {}) says the gateway closed this recording \
                 with {} manifest lines before it stopped, but its end line was gone; {} lines \
                 are missing after line {} (removed from its end); closed again at the next \
                 start",
                c.audit_seq,
                if c.lines == 0 {
                    "an unrecorded number of".to_owned()
                } else {
                    c.lines.to_string()
                },
                if c.lines == 0 {
                    "some".to_owned()
                } else {
                    c.lines.saturating_sub(here).max(1).to_string()
                },
                here.saturating_sub(1)
            )
        }
        None => String::from("the gateway stopped while recording; closed at the next start"),
    };
    // The notes name the quarantine files, whose names are known once written: the trail is
    // told the ranges first.
    let mut planned = act.clone();
    planned.reason = reason.clone();
    for n in &notes {
        planned.reason.push_str("; ");
        planned.reason.push_str(n);
    }
    trail.before(&planned).map_err(refused)?;
    let mut quarantined = Vec::new();
    let mut discarded = 0;
    for (i, (file, from, to)) in act.set_aside.iter().enumerate() {
        let q = set_aside(storage, id, file, *from, *to)?;
        match note_of.get(i).copied().flatten() {
            Some(n) => {
                if let Some(n) = notes.get_mut(n) {
                    n.push_str(&format!(" (a copy of those bytes is in {q})"));
                }
            }
            None => notes.push(format!(
                "cut: {} bytes of {file} after its last listed byte {from}, set aside in {q}",
                to - from
            )),
        }
        quarantined.push(q);
    }
    for (file, keep, len) in &act.cut {
        discarded += len - keep;
        storage.truncate(id, file, *keep)?;
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
    for n in &notes {
        reason.push_str("; ");
        reason.push_str(n);
    }
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push_str(" …");
    }
    let sink = storage.reopen(id)?;
    let mut w = RecordingWriter::resume(id.to_owned(), sink, Arc::clone(key), here, s.chain);
    // The session's risk score and rules, from the risk events the kept track holds: a session
    // cut by a crash (the suspicious kind) keeps its score, for the list, reports and retention.
    for_each_risk_event(storage, id, |rule, score| w.recount_risk(rule, score))?;
    w.close(
        act.state.unwrap_or(EndState::Incomplete),
        &reason,
        duration_ms,
        now_ms,
        discarded,
    )?;
    planned.reason = reason.clone();
    planned.chain = Some(w.chain_hex());
    trail.after(&planned).map_err(refused)?;
    Ok(Some(Recovered {
        id: id.to_owned(),
        discarded_bytes: discarded,
        problem: s.first_problem(),
        quarantined,
        found_cut: closed,
        found_closed: false,
        altered_end: false,
        failed: None,
    }))
}

/// Bytes copied per read while setting aside.
const COPY_CHUNK: u64 = 1024 * 1024;

/// Copies bytes `from..to` of `file` to a quarantine file next to it, durably, and returns its
/// name. Idempotent: a start interrupted after the copy finds it whole (the same bytes) and
/// leaves it; a partial copy (interrupted during the copy, the original still whole: a prefix of
/// the bytes) is written again. A file of that name holding anything else (planted, say) is
/// left as it is and the bytes go to the next free name: nothing is cut before its copy is
/// checked byte for byte.
fn set_aside(
    storage: &dyn RecordingStorage,
    id: &str,
    file: &str,
    from: u64,
    to: u64,
) -> Result<String, StorageError> {
    let want = to - from;
    for n in 0..MAX_QUARANTINE_NAMES {
        let name = if n == 0 {
            format!("{QUARANTINE_PREFIX}{file}-{from}")
        } else {
            format!("{QUARANTINE_PREFIX}{file}-{from}-{n}")
        };
        match storage.len(id, &name)? {
            Some(len) if len <= want && same_bytes(storage, id, file, from, &name, len)? => {
                if len == want {
                    return Ok(name);
                }
                // A partial copy of these very bytes: written again.
                storage.truncate(id, &name, 0)?;
            }
            Some(_) => continue,
            None => {}
        }
        copy_range(storage, id, file, from, to, &name)?;
        return Ok(name);
    }
    Err(StorageError::Exists(format!(
        "{id}/{QUARANTINE_PREFIX}{file}-{from} (and {MAX_QUARANTINE_NAMES} other names)"
    )))
}

/// Names tried for one quarantine copy before giving up.
const MAX_QUARANTINE_NAMES: u32 = 100;

/// True when the first `len` bytes of `name` are bytes `from..from + len` of `file`.
fn same_bytes(
    storage: &dyn RecordingStorage,
    id: &str,
    file: &str,
    from: u64,
    name: &str,
    len: u64,
) -> Result<bool, StorageError> {
    let mut at = 0;
    while at < len {
        let n = (len - at).min(COPY_CHUNK);
        if storage.read(id, file, from + at, n)? != storage.read(id, name, at, n)? {
            return Ok(false);
        }
        at += n;
    }
    Ok(true)
}

fn copy_range(
    storage: &dyn RecordingStorage,
    id: &str,
    file: &str,
    from: u64,
    to: u64,
    name: &str,
) -> Result<(), StorageError> {
    let mut sink = storage.reopen(id)?;
    let mut at = from;
    while at < to {
        let n = (to - at).min(COPY_CHUNK);
        let bytes = storage.read(id, file, at, n)?;
        sink.append(name, &bytes)?;
        at += n;
    }
    if to == from {
        sink.append(name, &[])?;
    }
    sink.sync(name)
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
            match storage.delete(&id) {
                Ok(()) => deleted.push(id),
                // Another gateway of the cluster deleted it first.
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// Calls `f(rule, score)` for each `risk` event of recording `id`'s event track as stored, read
/// a piece at a time (a line longer than the writer ever writes is passed over).
fn for_each_risk_event(
    storage: &dyn RecordingStorage,
    id: &str,
    mut f: impl FnMut(&str, u32),
) -> Result<(), StorageError> {
    const PIECE: u64 = 4 << 20;
    let Some(len) = storage.len(id, crate::manifest::EVENTS)? else {
        return Ok(());
    };
    let mut carry: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut take = |line: &[u8]| {
        if !line.windows(13).any(|w| w == b"\"type\":\"risk\"") {
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return;
        };
        // The line's own type (typed or shown text is a string inside another line: its quotes
        // are escaped, and it is no key of the line).
        if v.get("type").and_then(serde_json::Value::as_str) != Some("risk") {
            return;
        }
        let rule = v.get("rule").and_then(serde_json::Value::as_str);
        let score = v.get("score").and_then(serde_json::Value::as_u64);
        if let (Some(rule), Some(score)) = (rule, score) {
            f(rule, u32::try_from(score).unwrap_or(u32::MAX));
        }
    };
    while at < len {
        let n = (len - at).min(PIECE);
        let piece = storage.read(id, crate::manifest::EVENTS, at, n)?;
        at += n;
        carry.extend_from_slice(&piece);
        let mut start = 0;
        while let Some(end) = carry[start..].iter().position(|&b| b == b'\n') {
            take(&carry[start..start + end]);
            start += end + 1;
        }
        carry.drain(..start);
        if carry.len() as u64 > PIECE {
            carry.clear();
        }
    }
    take(&carry);
    Ok(())
}
