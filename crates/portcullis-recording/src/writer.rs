//! Writes one recording: video segments, the event track, thumbnails and the manifest.
//!
//! Every commit appends the data first, fsyncs it, then appends the manifest line that names it
//! and fsyncs the manifest. So a line in the manifest always describes bytes already on disk; a
//! crash leaves at most a tail of unlisted bytes, which recovery cuts off.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use portcullis_core::session::SessionEvent;
use serde::Serialize;

use crate::manifest::{
    seal, video_file, Body, EndState, Entry, SessionMeta, Span, CHAIN_START, EVENTS, MANIFEST,
    THUMBS, VERSION,
};
use crate::storage::{RecordingSink, RecordingStorage, StorageError};

/// Event-track bytes held between commits. Beyond it events are counted, not kept, and the
/// count is written as an `events_lost` event; commits happen at least every second, so only a
/// flood reaches it.
pub const MAX_PENDING_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// One line of the event track.
#[derive(Serialize)]
struct EventLine<'a> {
    t_ms: u64,
    #[serde(flatten)]
    event: &'a SessionEvent,
}

/// A media segment to commit.
#[derive(Debug, Clone, Copy)]
pub struct SegmentInfo {
    /// Start on the recording clock.
    pub start_ms: u64,
    /// End on the recording clock.
    pub end_ms: u64,
    /// Starts with a keyframe.
    pub key: bool,
    /// Frames in it.
    pub frames: u32,
}

/// Writes a recording. Not thread-safe by design: one recorder owns it.
pub struct RecordingWriter {
    id: String,
    sink: Box<dyn RecordingSink>,
    key: Arc<SigningKey>,
    seq: u64,
    chain: [u8; 32],
    part: u32,
    pending_events: Vec<u8>,
    events_lost: u64,
    last_event_ms: u64,
    finished: bool,
    /// The risk rules that fired (from the session's `risk` events), for the end line.
    risk: RiskTally,
}

/// The risk rules that fired in a session and its score: each rule counted once, the score at
/// most [`MAX_RISK_SCORE`] (as the gateway counts it live).
#[derive(Debug, Default, Clone)]
pub struct RiskTally {
    /// The score.
    pub score: u32,
    /// The rules, in the order they first fired.
    pub rules: Vec<String>,
}

/// The highest risk score.
pub const MAX_RISK_SCORE: u32 = 100;
/// The most rules a tally names.
const MAX_RISK_RULES: usize = 64;

impl RiskTally {
    /// Adds a rule that fired with its score.
    pub fn add(&mut self, rule: &str, score: u32) {
        if self.rules.len() < MAX_RISK_RULES && !self.rules.iter().any(|r| r == rule) {
            self.rules.push(rule.to_owned());
            self.score = self.score.saturating_add(score).min(MAX_RISK_SCORE);
        }
    }
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl RecordingWriter {
    /// Creates the recording and writes its signed header.
    pub fn create(
        storage: &dyn RecordingStorage,
        key: Arc<SigningKey>,
        meta: SessionMeta,
    ) -> Result<Self, StorageError> {
        let id = meta.session.clone();
        let sink = storage.create(&id)?;
        let mut w = Self {
            id,
            sink,
            key: Arc::clone(&key),
            seq: 0,
            chain: CHAIN_START,
            part: 0,
            pending_events: Vec::new(),
            events_lost: 0,
            last_event_ms: 0,
            risk: RiskTally::default(),
            finished: false,
        };
        w.commit_line(Entry::Header {
            version: VERSION,
            meta,
            key: hex::encode(key.verifying_key().as_bytes()),
        })?;
        Ok(w)
    }

    /// The recording id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The chain value after the last line written, hex: once closed, the end line's, which
    /// names this recording's whole manifest (what the audit trail's close records).
    pub fn chain_hex(&self) -> String {
        hex::encode(self.chain)
    }

    /// Continues a recording found open at start-up (see `catalog::recover`).
    pub(crate) fn resume(
        id: String,
        sink: Box<dyn RecordingSink>,
        key: Arc<SigningKey>,
        seq: u64,
        chain: [u8; 32],
    ) -> Self {
        Self {
            id,
            sink,
            key,
            seq,
            chain,
            part: 0,
            pending_events: Vec::new(),
            events_lost: 0,
            last_event_ms: 0,
            risk: RiskTally::default(),
            finished: false,
        }
    }

    /// Counts a risk rule that fired in what the track already holds (a recording closed by
    /// recovery keeps its score).
    pub(crate) fn recount_risk(&mut self, rule: &str, score: u32) {
        self.risk.add(rule, score);
    }

    /// Adds an event to the track; it is written with the next commit.
    pub fn event(&mut self, t_ms: u64, event: &SessionEvent) {
        self.last_event_ms = t_ms;
        if let SessionEvent::Risk { rule, score, .. } = event {
            self.risk.add(rule, *score);
        }
        let Ok(mut line) = serde_json::to_vec(&EventLine { t_ms, event }) else {
            return;
        };
        line.push(b'\n');
        // A risk line has room kept for it (twice the limit): a flood of other events around a
        // hit does not push the hit out (recovery recounts the score from the track).
        let limit = if matches!(event, SessionEvent::Risk { .. }) {
            2 * MAX_PENDING_EVENT_BYTES
        } else {
            MAX_PENDING_EVENT_BYTES
        };
        if self.pending_events.len() + line.len() > limit {
            self.events_lost += 1;
            return;
        }
        self.pending_events.extend_from_slice(&line);
    }

    /// True when events wait for a commit.
    pub fn has_pending_events(&self) -> bool {
        !self.pending_events.is_empty() || self.events_lost > 0
    }

    /// Starts a new video part (a new resolution) with its initialisation segment.
    pub fn begin_part(
        &mut self,
        width: u32,
        height: u32,
        codec: &str,
        init: &[u8],
    ) -> Result<u32, StorageError> {
        self.part += 1;
        let file = video_file(self.part);
        let offset = self.sink.append(&file, init)?;
        self.sink.sync(&file)?;
        self.commit_line(Entry::Init {
            part: self.part,
            width,
            height,
            codec: codec.to_owned(),
            video: Span::of(&file, offset, init),
        })?;
        Ok(self.part)
    }

    /// Commits a media segment of the current part, the pending events and a thumbnail.
    pub fn segment(
        &mut self,
        info: SegmentInfo,
        fragment: &[u8],
        thumbnail: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let file = video_file(self.part);
        let offset = self.sink.append(&file, fragment)?;
        self.sink.sync(&file)?;
        let events = self.write_events()?;
        let thumb = match thumbnail {
            Some(jpeg) => {
                let offset = self.sink.append(THUMBS, jpeg)?;
                self.sink.sync(THUMBS)?;
                Some(Span::of(THUMBS, offset, jpeg))
            }
            None => None,
        };
        self.commit_line(Entry::Segment {
            part: self.part,
            start_ms: info.start_ms,
            end_ms: info.end_ms,
            key: info.key,
            frames: info.frames,
            video: Span::of(&file, offset, fragment),
            events,
            thumb,
        })
    }

    /// Commits pending events on their own (nothing changed on screen).
    pub fn flush_events(&mut self) -> Result<(), StorageError> {
        if let Some(events) = self.write_events()? {
            self.commit_line(Entry::Events { events })?;
        }
        Ok(())
    }

    /// Writes the last line. The recording is complete.
    pub fn finish(
        mut self,
        reason: &str,
        duration_ms: u64,
        ended_at_ms: i64,
    ) -> Result<(), StorageError> {
        self.close(EndState::Complete, reason, duration_ms, ended_at_ms, 0)
    }

    pub(crate) fn close(
        &mut self,
        state: EndState,
        reason: &str,
        duration_ms: u64,
        ended_at_ms: i64,
        discarded_bytes: u64,
    ) -> Result<(), StorageError> {
        self.flush_events()?;
        self.commit_line(Entry::End {
            state,
            reason: reason.to_owned(),
            duration_ms,
            ended_at_ms,
            discarded_bytes,
            risk_score: self.risk.score,
            risk_rules: self.risk.rules.clone(),
        })?;
        self.finished = true;
        Ok(())
    }

    /// True once the end line is written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn write_events(&mut self) -> Result<Option<Span>, StorageError> {
        if self.events_lost > 0 {
            let lost = SessionEvent::EventsLost {
                count: self.events_lost,
            };
            if let Ok(mut line) = serde_json::to_vec(&EventLine {
                t_ms: self.last_event_ms,
                event: &lost,
            }) {
                line.push(b'\n');
                self.pending_events.extend_from_slice(&line);
            }
            self.events_lost = 0;
        }
        if self.pending_events.is_empty() {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.pending_events);
        let offset = self.sink.append(EVENTS, &bytes)?;
        self.sink.sync(EVENTS)?;
        Ok(Some(Span::of(EVENTS, offset, &bytes)))
    }

    fn commit_line(&mut self, entry: Entry) -> Result<(), StorageError> {
        let body = Body {
            seq: self.seq,
            entry,
        };
        let (line, chain) = seal(&self.chain, body, &self.key);
        self.sink.append(MANIFEST, &line)?;
        self.sink.sync(MANIFEST)?;
        self.chain = chain;
        self.seq += 1;
        Ok(())
    }
}
