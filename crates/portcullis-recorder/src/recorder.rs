//! The recording policy: when to encode, when to cut a fragment, where keyframes go.
//!
//! [`Recorder`] is driven by its caller (the session loop in [`crate::gateway`] or a test) with
//! pictures and times; it never reads a clock itself.

use std::collections::VecDeque;

use portcullis_core::session::SessionEvent;
use portcullis_core::Rect;
use portcullis_recording::{RecordingWriter, SegmentInfo, StorageError};
use thiserror::Error;
use tracing::warn;

use portcullis_encode::EncodeError;

use crate::encoder::{Encoded, EncoderError, EncoderSettings, H264Encoder, Pixels};
use crate::{h264, mp4};

/// Why recording failed.
#[derive(Debug, Error)]
pub enum RecordError {
    /// Encoding failed.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// Writing failed.
    #[error("cannot write the recording: {0}")]
    Storage(#[from] StorageError),
}

/// Whether typed text goes into the event track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystrokeLog {
    /// Keys as text (`ls<Enter>`).
    Text,
    /// No keystrokes at all.
    Off,
}

/// How sessions are recorded.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Most frames per second encoded; changes in between are merged.
    pub max_fps: u32,
    /// A fragment (fsynced, listed, playable) is cut at least this often while a new picture is
    /// pending: the most screen activity a crash can lose. Events are committed as often.
    pub fragment_ms: u64,
    /// While the screen stays the same, a fragment (one repeat of the picture, to move the
    /// timeline on) is cut this often: a crash then loses only how long nothing changed. Each
    /// costs ~700 bytes (its signed manifest line ~480): once a minute, an idle hour is ~0.04 MB.
    pub idle_fragment_ms: u64,
    /// A keyframe on the first new picture this long after the last one (bounds how far back a
    /// seek reaches). Placed by time only: an unchanged screen gets none. 30 s: a click anywhere
    /// in a one-hour 1080p recording shows its frame in 141 ms at p95 (267 with 60 s, 120 with
    /// 20 s) for 13% more bytes than 60 s (23% with 20 s): benches/README.md, "Keyframes".
    pub keyframe_max_ms: u64,
    /// A thumbnail at most this often.
    pub thumbnail_every_ms: u64,
    /// Thumbnail width.
    pub thumbnail_width: u32,
    /// With drafts (`EncoderSettings::draft_crf`): a new picture that stays on screen this long
    /// is encoded again at the full quality (only what differs from its draft costs bytes).
    /// What a screen shows for less time than this (each step of a scroll, of a window moved,
    /// of typing) is recorded as a draft; what a reviewer can read, because it stayed, is
    /// refined. While something keeps changing (a blinking cursor, a clock, a long scroll),
    /// the screen is refined every `REFINE_AT_MOST` × this anyway; and the last picture of a
    /// part (the session ends, the desktop is resized) is encoded at the full quality when x264
    /// still holds it (only with a lookahead), else refined 1 ms after the last frame given.
    pub refine_after_ms: u64,
    /// A screen still this long (no new picture, nothing left to refine, its thumbnail taken)
    /// lets go of its encoder: x264's frames and tables, ~29 MiB at 1080p (`examples/encmem.rs`),
    /// are freed while nobody changes anything. Repeats for the next `PARKED_REPEATS` idle fragments are encoded before it
    /// goes, so the timeline still moves on (a crash loses no more than before); the next new
    /// picture opens an encoder again and is a keyframe (with this at least `keyframe_max_ms`,
    /// it would have been one anyway). 0: never.
    pub release_after_ms: u64,
    /// libx264 settings.
    pub encoder: EncoderSettings,
    /// Keystrokes in the event track.
    pub keystrokes: KeystrokeLog,
    /// Free space the recording storage must keep: below it a session is refused, and a running
    /// one is ended once less than half of it is left (rather than recorded into a full disk).
    pub min_free_bytes: u64,
    /// The gateway means to read this session's screen for search (`[ocr]` on, with
    /// `recordings`): said in the recording's header (`SessionMeta::screen_search`).
    pub screen_search: bool,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            max_fps: 5,
            fragment_ms: 1000,
            idle_fragment_ms: 60_000,
            keyframe_max_ms: 30_000,
            thumbnail_every_ms: 10_000,
            thumbnail_width: 240,
            refine_after_ms: 1000,
            release_after_ms: 60_000,
            encoder: EncoderSettings::default(),
            keystrokes: KeystrokeLog::Text,
            min_free_bytes: 512 * 1024 * 1024,
            screen_search: false,
        }
    }
}

struct Part {
    /// `None` while the screen is still and the encoder was let go
    /// (`RecorderConfig::release_after_ms`).
    encoder: Option<H264Encoder>,
    /// Desktop size (the encoded size is padded to even).
    width: u32,
    height: u32,
    /// The parameter sets of the part's init segment, once written.
    params: Option<(Vec<u8>, Vec<u8>)>,
    fragments: u32,
}

struct Pending {
    sample: Vec<u8>,
    time_ms: u64,
    key: bool,
    /// The same picture as the frame before it.
    repeat: bool,
}

/// Records one session into a [`RecordingWriter`].
pub struct Recorder {
    cfg: RecorderConfig,
    writer: RecordingWriter,
    part: Option<Part>,
    pending: Option<Pending>,
    samples: Vec<mp4::Sample>,
    last_pts: Option<u64>,
    /// Frames given to the encoder and not out yet (x264's lookahead holds them), oldest first:
    /// time and whether each shows something new. No B-frames: they come out in this order.
    inflight: VecDeque<(u64, Picture)>,
    /// Time of the last frame given to the encoder.
    last_in_ms: Option<u64>,
    /// Time of the last keyframe asked for.
    last_key_ms: u64,
    last_thumb_ms: Option<u64>,
    /// A thumbnail waiting for its segment, with the time of the frame it shows.
    thumb: Option<(u64, Vec<u8>)>,
    /// A new picture came after the last thumbnail was taken (which no longer shows the screen).
    thumb_stale: bool,
    frames: u64,
    last_commit_ms: u64,
    /// While the picture on screen is a draft only: the times of the first draft since the last
    /// refinement and of the last one.
    unrefined: Option<(u64, u64)>,
    /// Time of the last new picture given.
    last_new_ms: Option<u64>,
    /// While the encoder is let go: repeats of the still picture it encoded for the idle
    /// fragments to come, oldest first (each a few tens of bytes).
    parked: VecDeque<Encoded>,
}

/// How many idle fragments' repeats are encoded before an encoder is let go: with one fragment a
/// minute, an hour. After that, a still screen gets no more fragments until it changes (the
/// last picture is kept, not its time: a crash then loses the still time beyond the hour).
pub const PARKED_REPEATS: u64 = 60;

/// The desktop as the recorder reads it.
pub trait Screen {
    /// Calls `f` with the desktop's pixels if it is `width` × `height` now and returns true;
    /// returns false without calling it otherwise (a resize is on its way). `f` converts what
    /// changed (and makes a thumbnail when one is due): whatever guards the pixels may be held
    /// for that long, never for the encoding.
    fn read(&self, width: u32, height: u32, f: &mut dyn FnMut(&Pixels<'_>)) -> bool;
}

/// A padded RGBA image in memory, as a [`Screen`].
struct Image<'a>(Pixels<'a>);

impl<'a> Image<'a> {
    /// `rgba`: `width` × `height` padded to even, rows back to back.
    fn new(rgba: &'a [u8], width: u32, height: u32) -> Result<Self, RecordError> {
        let (pw, ph) = padded(width, height);
        if rgba.len() != pw as usize * ph as usize * 4 {
            return Err(RecordError::Encoder(EncoderError::BadFrame {
                width: pw,
                height: ph,
                got: rgba.len(),
            }));
        }
        Ok(Self(Pixels {
            rgba,
            stride: pw,
            width: pw,
            height: ph,
        }))
    }
}

impl Screen for Image<'_> {
    fn read(&self, _width: u32, _height: u32, f: &mut dyn FnMut(&Pixels<'_>)) -> bool {
        f(&self.0);
        true
    }
}

/// Rows of the screen converted per read: the screen's lock (which the session needs to apply
/// the target's updates) is taken again for each band, never for a whole large change.
const BAND_ROWS: u32 = 64;

/// Converts the `changed` areas of `screen` into the encoder's picture, band by band. False if
/// the screen is no longer `width` × `height` (then the picture may be partly converted).
fn read_changed(
    screen: &dyn Screen,
    width: u32,
    height: u32,
    changed: &[Rect],
    encoder: &mut H264Encoder,
) -> bool {
    let top = changed.iter().map(|r| r.y).min().unwrap_or(0);
    let bottom = changed
        .iter()
        .map(|r| r.y.saturating_add(r.h))
        .max()
        .unwrap_or(0);
    let mut y = top - top % 2;
    // At least one read: it also checks the size.
    loop {
        let band = Rect::new(0, y, u32::MAX / 2, BAND_ROWS);
        let read = screen.read(width, height, &mut |pixels| {
            for r in changed {
                let part = r.intersection(&band);
                if !part.is_empty() {
                    encoder.convert_from(pixels, part);
                }
            }
        });
        if !read {
            return false;
        }
        y = y.saturating_add(BAND_ROWS);
        if y >= bottom {
            return true;
        }
    }
}

/// While the screen keeps changing, drafts wait at most this many `refine_after_ms` since the
/// first of them for a refinement.
pub const REFINE_AT_MOST: u64 = 3;

/// The size libx264 gets for a desktop: 4:2:0 needs even sides.
pub fn padded(width: u32, height: u32) -> (u32, u32) {
    (width + (width & 1), height + (height & 1))
}

impl Recorder {
    /// A recorder writing into `writer`.
    pub fn new(writer: RecordingWriter, mut cfg: RecorderConfig) -> Self {
        // A draft is coarser than the picture it is refined to, or there is none.
        let crf = cfg.encoder.crf;
        cfg.encoder.draft_crf = cfg.encoder.draft_crf.filter(|&d| d > crf);
        Self {
            cfg,
            writer,
            part: None,
            pending: None,
            samples: Vec::new(),
            last_pts: None,
            inflight: VecDeque::new(),
            last_in_ms: None,
            last_key_ms: 0,
            last_thumb_ms: None,
            thumb: None,
            thumb_stale: false,
            frames: 0,
            last_commit_ms: 0,
            unrefined: None,
            last_new_ms: None,
            parked: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RecorderConfig {
        &self.cfg
    }

    /// Frames encoded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Whether an encoder is open now (none before the first picture, nor while a still screen
    /// let go of it).
    pub fn holds_encoder(&self) -> bool {
        self.part.as_ref().is_some_and(|p| p.encoder.is_some())
    }

    /// An event at `t_ms`.
    pub fn event(&mut self, t_ms: u64, event: &SessionEvent) {
        self.writer.event(t_ms, event);
    }

    /// A new picture of the desktop (`width` × `height` padded to even, RGBA) at `now_ms`.
    /// `rgba` is the padded image.
    pub fn frame(
        &mut self,
        now_ms: u64,
        rgba: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(), RecordError> {
        let (pw, ph) = padded(width, height);
        self.frame_changed(now_ms, rgba, width, height, &[Rect::new(0, 0, pw, ph)])
    }

    /// Like [`Recorder::frame`], when only `changed` differs from the previous picture (the
    /// rest is not converted again).
    pub fn frame_changed(
        &mut self,
        now_ms: u64,
        rgba: &[u8],
        width: u32,
        height: u32,
        changed: &[Rect],
    ) -> Result<(), RecordError> {
        let image = Image::new(rgba, width, height)?;
        self.frame_changed_on(now_ms, &image, width, height, changed)
            .map(|_| ())
    }

    /// A new picture on `screen` (`width` × `height`) at `now_ms`, of which only `changed`
    /// differs from the previous one. The screen is read once (converting what changed, and a
    /// thumbnail when one is due), then encoded. False: the screen no longer has that size,
    /// nothing was read (a resize is on its way; the caller keeps the damage).
    pub fn frame_changed_on(
        &mut self,
        now_ms: u64,
        screen: &dyn Screen,
        width: u32,
        height: u32,
        changed: &[Rect],
    ) -> Result<bool, RecordError> {
        let (pw, ph) = padded(width, height);
        let everything = [Rect::new(0, 0, pw, ph)];
        if self
            .part
            .as_ref()
            .is_some_and(|p| (p.width, p.height) != (width, height))
        {
            self.end_part(now_ms)?;
        }
        let mut changed = changed;
        let mut opened = false;
        match self.part.as_mut() {
            Some(part) if part.encoder.is_some() => {}
            Some(part) => {
                // The screen changes again after a still while: a new encoder for the same part
                // (opened with the same settings, so with the same parameter sets: x264 derives
                // the PPS's initial QP from the CRF it is opened with, never from a later change).
                part.encoder = Some(H264Encoder::new(pw, ph, &self.cfg.encoder)?);
                opened = true;
            }
            None => {
                self.part = Some(Part {
                    encoder: Some(H264Encoder::new(pw, ph, &self.cfg.encoder)?),
                    width,
                    height,
                    params: None,
                    fragments: 0,
                });
                opened = true;
            }
        }
        if opened {
            // A new encoder starts from nothing: convert the whole picture.
            changed = &everything;
        }
        let pts = self.next_pts(now_ms);
        let key = opened || self.wants_key(pts);
        let thumb_width = self
            .wants_thumbnail(pts)
            .then_some(self.cfg.thumbnail_width);
        let Some(encoder) = self.part.as_mut().and_then(|p| p.encoder.as_mut()) else {
            return Ok(true);
        };
        if !read_changed(screen, width, height, changed, encoder) {
            if opened {
                // Not (wholly) converted: the next picture opens one again, whole.
                if let Some(part) = self.part.as_mut() {
                    part.encoder = None;
                }
            }
            return Ok(false);
        }
        // The repeats encoded ahead by an encoder let go are of no more use.
        self.parked.clear();
        if key {
            self.last_key_ms = pts;
        }
        match thumb_width.map(|tw| encoder.thumbnail(tw)) {
            Some(made) => self.keep_thumbnail(pts, made),
            None => self.thumb_stale = true,
        }
        let Some(encoder) = self.part.as_mut().and_then(|p| p.encoder.as_mut()) else {
            return Ok(true);
        };
        if let Some(draft) = self.cfg.encoder.draft_crf {
            let cap = self.cfg.refine_after_ms.saturating_mul(REFINE_AT_MOST);
            match self.unrefined {
                Some((first, _)) if pts >= first.saturating_add(cap) => {
                    // Drafts have waited long enough (the screen keeps changing): this
                    // picture is the refinement, at the full quality, rather than a draft
                    // and a refinement of it 1 ms later.
                    encoder.set_crf(self.cfg.encoder.crf);
                    self.unrefined = None;
                }
                first => {
                    encoder.set_crf(draft);
                    self.unrefined = Some((first.map_or(pts, |(f, _)| f), pts));
                }
            }
        }
        let out = encoder.send_picture(to_i64(pts), key)?;
        self.inflight.push_back((pts, Picture::New));
        self.last_in_ms = Some(pts);
        self.last_new_ms = Some(pts);
        self.take_encoded(out)?;
        Ok(true)
    }

    /// Encodes the draft on screen again at the full quality, at `pts`: a new picture for the
    /// fragments (cut within `fragment_ms`, like any change).
    fn refine(&mut self, pts: u64) -> Result<(), RecordError> {
        self.unrefined = None;
        let crf = self.cfg.encoder.crf;
        if let Some(encoder) = self.encoder() {
            encoder.set_crf(crf);
        }
        self.encode_repeat(pts, Picture::New)
    }

    /// Repeats the picture (never a keyframe) at `pts`, at the quality it was last encoded at.
    fn repeat(&mut self, pts: u64) -> Result<(), RecordError> {
        self.encode_repeat(pts, Picture::Repeat)
    }

    /// Gives the encoder the last picture again at `pts`, counted as `picture`.
    fn encode_repeat(&mut self, pts: u64, picture: Picture) -> Result<(), RecordError> {
        let Some(encoder) = self.encoder() else {
            return Ok(());
        };
        let out = encoder.repeat(to_i64(pts), false)?;
        self.inflight.push_back((pts, picture));
        self.last_in_ms = Some(pts);
        self.take_encoded(out)
    }

    /// The screen is still and x264's lookahead holds new pictures: repeats of the picture, one
    /// per frame slot up to `now_ms`, push them out (a few tens of bytes each), so they reach
    /// the next fragment in time.
    fn drain(&mut self, now_ms: u64) -> Result<(), RecordError> {
        let slot = 1000 / u64::from(self.cfg.encoder.fps.max(1));
        while self.encoder().is_some() && self.inflight.iter().any(|(_, p)| *p == Picture::New) {
            let Some(last) = self.last_in_ms else { break };
            let pts = last + slot;
            if pts > now_ms {
                break;
            }
            self.repeat(pts)?;
        }
        Ok(())
    }

    /// The screen shows the picture of the last frame still: when the picture changed after
    /// the last thumbnail, once a thumbnail is due and the next fragment starts with this
    /// picture, takes the thumbnail of the settled screen (from the encoder's copy of that
    /// picture, not from the screen). Without it, a screen that changes for a moment and then
    /// stays (a session's first picture, often still black, and the desktop drawn right after)
    /// keeps the old thumbnail until the next change.
    pub fn settled_now(&mut self, now_ms: u64) {
        let Some(pending) = self.pending.as_ref() else {
            return;
        };
        // The fragment cut next must start with the pending picture: its thumbnail is "of its
        // first frame".
        if !self.thumb_stale || self.thumb.is_some() || !self.samples.is_empty() {
            return;
        }
        if !self.wants_thumbnail(now_ms) {
            return;
        }
        let at = pending.time_ms;
        let tw = self.cfg.thumbnail_width;
        let Some(encoder) = self.part.as_ref().and_then(|p| p.encoder.as_ref()) else {
            return;
        };
        let made = encoder.thumbnail(tw);
        self.keep_thumbnail(at, made);
        // Due again only after the interval, counted from now.
        self.last_thumb_ms = Some(now_ms);
    }

    /// When the caller should call [`Recorder::tick`] next at the latest (besides the fragments'
    /// second): a draft's refinement is due.
    pub fn next_deadline(&self) -> Option<u64> {
        let after = self.cfg.refine_after_ms;
        self.unrefined.map(|(first, last)| {
            let cap = first.saturating_add(after.saturating_mul(REFINE_AT_MOST));
            last.saturating_add(after).min(cap)
        })
    }

    /// Time passes with nothing new on screen: refines a draft once due, cuts a fragment once
    /// one is due, so what is recorded becomes durable and playable.
    pub fn tick(&mut self, now_ms: u64) -> Result<(), RecordError> {
        if self.next_deadline().is_some_and(|due| now_ms >= due) {
            let pts = self.next_pts(now_ms);
            self.refine(pts)?;
        }
        self.drain(now_ms)?;
        self.release_if_still(now_ms)?;
        let fragment_start = self
            .samples
            .first()
            .map(|s| s.time_ms)
            .or(self.pending.as_ref().map(|p| p.time_ms));
        // Only an unchanged picture pending, and nothing new in the fragment: no hurry, unless
        // a thumbnail of the settled screen waits for it (a reviewer's hover shows the screen
        // within a second, not a minute later).
        let only_repeats = self.samples.is_empty()
            && self.thumb.is_none()
            && self.pending.as_ref().is_some_and(|p| p.repeat);
        let every = if only_repeats {
            self.cfg.idle_fragment_ms
        } else {
            self.cfg.fragment_ms
        };
        // Without an encoder, the timeline moves on only with a repeat encoded ahead; once those
        // ran out (a still hour), only events are committed until the screen changes.
        let parked_due = self
            .parked
            .front()
            .is_some_and(|e| e.pts_ms <= to_i64(now_ms));
        let can_cut = self.encoder().is_some() || !self.samples.is_empty() || parked_due;
        match fragment_start {
            Some(start) if now_ms >= start + every && can_cut => {
                if self.pending.is_some() {
                    // Encode the same picture again so the pending frame gets its duration
                    // and the timeline has no hole (or, without an encoder, take the repeat
                    // encoded for this moment before it went).
                    if self.encoder().is_some() {
                        let pts = self.next_pts(now_ms);
                        self.repeat(pts)?;
                    } else if parked_due {
                        if let Some(e) = self.parked.pop_front() {
                            self.take_one(e, Picture::Repeat)?;
                        }
                    }
                }
                self.flush_fragment()?;
            }
            _ => {
                if now_ms >= self.last_commit_ms + self.cfg.fragment_ms
                    && self.writer.has_pending_events()
                {
                    self.writer.flush_events()?;
                    self.last_commit_ms = now_ms;
                }
            }
        }
        Ok(())
    }

    /// The desktop changed size: the current part ends here; the next frame starts a new one.
    pub fn resize(&mut self, now_ms: u64) -> Result<(), RecordError> {
        self.end_part(now_ms)
    }

    /// The session ended at `now_ms`: writes what is left and closes the recording.
    pub fn finish(
        mut self,
        now_ms: u64,
        reason: &str,
        ended_at_ms: i64,
    ) -> Result<(), RecordError> {
        self.end_part(now_ms)?;
        let end = self.last_pts.map_or(now_ms, |p| now_ms.max(p + 1));
        self.writer.event(
            end,
            &SessionEvent::SessionEnd {
                reason: reason.to_owned(),
            },
        );
        self.writer.finish(reason, end, ended_at_ms)?;
        Ok(())
    }

    fn end_part(&mut self, now_ms: u64) -> Result<(), RecordError> {
        if self.unrefined.is_some() {
            // The last picture stays on screen until the end: a reviewer reads it. If x264
            // still holds the last frame given (the draft, or a repeat of it: only with a
            // lookahead), it is encoded at the full quality and shows until the end; else the
            // draft is refined 1 ms after the last frame given (a draft until then, as any
            // picture shown for less than `refine_after_ms`).
            self.unrefined = None;
            let crf = self.cfg.encoder.crf;
            let after_last = self.last_in_ms.map_or(now_ms, |t| t + 1);
            if let Some(encoder) = self.encoder() {
                if encoder.held() > 0 {
                    encoder.requalify_held(crf);
                } else {
                    let pts = self.next_pts(after_last);
                    self.refine(pts)?;
                }
            }
        }
        if let Some(encoder) = self.encoder() {
            // What x264's lookahead still holds comes out now.
            let rest = encoder.flush()?;
            self.take_encoded(rest)?;
        }
        self.parked.clear();
        self.inflight.clear();
        self.last_in_ms = None;
        let end = self.last_pts.map_or(now_ms, |p| now_ms.max(p + 1));
        self.settle_pending(end);
        self.flush_fragment()?;
        self.part = None;
        if self.last_pts.is_some() {
            // The next part starts where this one ends: no hole in the timeline.
            self.last_pts = Some(end.saturating_sub(1));
        }
        Ok(())
    }

    /// The time of a frame at `now_ms`: after everything given to the encoder and everything
    /// written.
    fn next_pts(&self, now_ms: u64) -> u64 {
        let after = match (self.last_pts, self.last_in_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        match after {
            Some(last) => now_ms.max(last + 1),
            None => now_ms,
        }
    }

    /// A new picture at `pts` is a keyframe: the first of a part, or the first this long after
    /// the last keyframe (by time only).
    fn wants_key(&self, pts: u64) -> bool {
        match &self.part {
            Some(p) if p.params.is_some() || self.last_in_ms.is_some() => {
                pts >= self.last_key_ms + self.cfg.keyframe_max_ms
            }
            _ => true,
        }
    }

    fn wants_thumbnail(&self, pts: u64) -> bool {
        self.last_thumb_ms
            .is_none_or(|t| pts >= t + self.cfg.thumbnail_every_ms)
    }

    /// A thumbnail made of the picture shown at `at`.
    fn keep_thumbnail(&mut self, at: u64, made: Result<Vec<u8>, EncodeError>) {
        match made {
            Ok(jpeg) => {
                self.thumb = Some((at, jpeg));
                self.last_thumb_ms = Some(at);
                self.thumb_stale = false;
            }
            Err(error) => warn!(%error, "cannot make a thumbnail"),
        }
    }

    /// Takes what the encoder produced: the oldest frames in flight, in order.
    fn take_encoded(&mut self, out: Vec<Encoded>) -> Result<(), RecordError> {
        for e in out {
            let picture = match self.inflight.pop_front() {
                Some((_, Picture::Parked)) => {
                    self.parked.push_back(e);
                    continue;
                }
                Some((_, picture)) => picture,
                None => Picture::New,
            };
            self.take_one(e, picture)?;
        }
        Ok(())
    }

    /// One frame out of the encoder: it becomes the pending frame.
    fn take_one(&mut self, e: Encoded, picture: Picture) -> Result<(), RecordError> {
        let time = u64::try_from(e.pts_ms).unwrap_or(0);
        if e.key {
            // A keyframe starts a fragment: seeks start at fragment boundaries.
            self.settle_pending(time);
            self.flush_fragment()?;
        } else {
            self.settle_pending(time);
        }
        let Some(part) = self.part.as_mut() else {
            return Ok(());
        };
        if e.key {
            if let (Some(sps), Some(pps)) = (&e.unit.sps, &e.unit.pps) {
                // The first keyframe starts the part's file; one whose parameter sets differ
                // from the init segment's (an encoder opened again and set up otherwise:
                // never seen, but the samples carry no parameter sets) starts a new file.
                if part
                    .params
                    .as_ref()
                    .is_none_or(|(s, p)| s != sps || p != pps)
                {
                    let avcc = h264::avcc(sps, pps).unwrap_or_default();
                    let (pw, ph) = padded(part.width, part.height);
                    let init = mp4::init_segment(pw, ph, &avcc);
                    self.writer
                        .begin_part(pw, ph, &h264::codec_string(sps), &init)?;
                    part.params = Some((sps.clone(), pps.clone()));
                    part.fragments = 0;
                }
            }
        }
        if part.params.is_none() {
            // Nothing can be decoded before the parameter sets.
            return Ok(());
        }
        self.frames += 1;
        self.pending = Some(Pending {
            sample: e.unit.sample,
            time_ms: time,
            key: e.key,
            repeat: picture == Picture::Repeat,
        });
        self.last_pts = Some(time);
        Ok(())
    }

    /// The encoder of the current part, if it has one now.
    fn encoder(&mut self) -> Option<&mut H264Encoder> {
        self.part.as_mut().and_then(|p| p.encoder.as_mut())
    }

    /// Lets go of the encoder once the screen stayed the same `release_after_ms` and nothing is
    /// left to refine or to come out; repeats for the next idle fragments are encoded first.
    fn release_if_still(&mut self, now_ms: u64) -> Result<(), RecordError> {
        let after = self.cfg.release_after_ms;
        // A screen that settled after a change gets its thumbnail first (`settled`, from the
        // caller's picture, which goes with the encoder).
        if after == 0
            || self.thumb_stale
            || self.unrefined.is_some()
            || self.inflight.iter().any(|(_, p)| *p == Picture::New)
            || self
                .last_new_ms
                .is_none_or(|t| now_ms < t.saturating_add(after))
        {
            return Ok(());
        }
        let Some(last) = self.last_in_ms else {
            return Ok(());
        };
        let every = self.cfg.idle_fragment_ms.max(1);
        let Some(mut encoder) = self.part.as_mut().and_then(|p| p.encoder.take()) else {
            return Ok(());
        };
        let mut out = Vec::new();
        for k in 1..=PARKED_REPEATS {
            let pts = last.saturating_add(every.saturating_mul(k));
            out.extend(encoder.repeat(to_i64(pts), false)?);
            self.inflight.push_back((pts, Picture::Parked));
        }
        out.extend(encoder.flush()?);
        drop(encoder);
        self.take_encoded(out)?;
        self.inflight.clear();
        Ok(())
    }

    /// The pending frame shows until `until`.
    fn settle_pending(&mut self, until: u64) {
        if let Some(p) = self.pending.take() {
            self.samples.push(mp4::Sample {
                data: p.sample,
                time_ms: p.time_ms,
                duration_ms: duration(p.time_ms, until),
                key: p.key,
            });
        }
    }

    fn flush_fragment(&mut self) -> Result<(), RecordError> {
        let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) else {
            return Ok(());
        };
        let info = SegmentInfo {
            start_ms: first.time_ms,
            end_ms: last.time_ms + u64::from(last.duration_ms),
            key: first.key,
            frames: u32::try_from(self.samples.len()).unwrap_or(u32::MAX),
        };
        let Some(part) = self.part.as_mut() else {
            self.samples.clear();
            return Ok(());
        };
        part.fragments += 1;
        let bytes = mp4::fragment(part.fragments, &self.samples);
        // INVARIANT: a thumbnail goes with the fragment holding its frame, never an earlier one
        // (a keyframe cuts the fragment before it while its thumbnail is already taken).
        let last_time = self.samples.last().map_or(0, |s| s.time_ms);
        let thumb = self
            .thumb
            .take_if(|(at, _)| *at <= last_time)
            .map(|(_, jpeg)| jpeg);
        self.writer.segment(info, &bytes, thumb.as_deref())?;
        self.last_commit_ms = info.end_ms;
        self.samples.clear();
        Ok(())
    }
}

/// Whether an encoded frame shows something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Picture {
    New,
    Repeat,
    /// A repeat encoded ahead for an idle fragment, before the encoder is let go.
    Parked,
}

fn duration(from: u64, to: u64) -> u32 {
    u32::try_from(to.saturating_sub(from))
        .unwrap_or(u32::MAX)
        .max(1)
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
