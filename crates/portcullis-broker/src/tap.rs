//! The recorder's view of a session: damage, resizes and events, handed to a thread that is
//! not part of the session's runtime.
//!
//! The session only ever takes a short lock to add to the tap; it never waits for the
//! consumer. A consumer that falls behind finds merged damage (so it skips intermediate frames)
//! and at most [`MAX_TAP_EVENTS`](crate::MAX_TAP_EVENTS) events (further ones are counted as lost).

pub(crate) mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::session::{SessionEnd, SessionInfo};
use portcullis_core::Rect;

use crate::live::Live;
use crate::locks::{lock, read};
use crate::session::SessionShared;
use state::{TapEvent, TapShared, TapState};

/// What accumulated since the consumer last looked.
#[derive(Debug, Default)]
pub struct TapBatch {
    /// Changed areas (merged).
    pub damage: Vec<Rect>,
    /// The desktop's new size, if it changed.
    pub resized: Option<(u32, u32)>,
    /// Events with the time they happened.
    pub events: Vec<(Instant, TapEvent)>,
    /// Events that did not fit.
    pub events_lost: u64,
    /// Updates the session applied (a consumer that sees more than one per frame is behind).
    pub updates: u64,
    /// The session ended, and why.
    pub ended: Option<String>,
}

/// A consumer's handle on a session (the recorder's). Blocking: use it from a plain thread.
pub struct Tap {
    pub(crate) shared: Arc<TapShared>,
    pub(crate) session: Arc<SessionShared>,
    /// The broker's shutdown waits until the recorder drops its tap.
    pub(crate) _live: Live,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").finish_non_exhaustive()
    }
}

impl Tap {
    /// The session as it was when the tap was made.
    pub fn info(&self) -> SessionInfo {
        lock(&self.session.info).clone()
    }

    /// Waits until something happened or `timeout` passed, and takes it all.
    pub fn wait(&self, timeout: Duration) -> TapBatch {
        let guard = lock(&self.shared.state);
        let nothing_new = |s: &mut TapState| {
            s.damage.is_empty() && s.resized.is_none() && s.events.is_empty() && s.ended.is_none()
        };
        let (mut s, _) = self
            .shared
            .wake
            .wait_timeout_while(guard, timeout, nothing_new)
            .unwrap_or_else(|p| p.into_inner());
        TapBatch {
            damage: s.damage.take(),
            resized: s.resized.take(),
            events: std::mem::take(&mut s.events),
            events_lost: std::mem::take(&mut s.events_lost),
            updates: std::mem::take(&mut s.updates),
            ended: s.ended.clone(),
        }
    }

    /// Puts damage back (the consumer is not ready to draw it yet).
    pub fn return_damage(&self, rects: &[Rect]) {
        let mut s = lock(&self.shared.state);
        for r in rects {
            s.damage.add(*r);
        }
    }

    /// Calls `f` with the desktop's pixels (RGBA, rows back to back), width and height, under
    /// the desktop's read lock: the session cannot apply an update meanwhile, so `f` should
    /// only copy or convert what it needs.
    pub fn read_desktop<R>(&self, f: impl FnOnce(&[u8], u32, u32) -> R) -> R {
        let fb = read(&self.session.desktop);
        f(fb.data(), fb.width(), fb.height())
    }

    /// Ends the session because it can no longer be recorded (deny by default).
    pub fn fail(&self, message: &str) {
        self.session.end(SessionEnd::RecordingFailed {
            message: message.to_owned(),
        });
    }

    /// The desktop's current size.
    pub fn size(&self) -> (u32, u32) {
        let fb = read(&self.session.desktop);
        (fb.width(), fb.height())
    }
}

/// A recorder that lets go of its tap before the session ended (its thread panicked, or it
/// stopped without saying why) can no longer record it: the session ends (deny by default: no
/// unrecorded session). After the end this changes nothing (the first end stands).
impl Drop for Tap {
    fn drop(&mut self) {
        self.fail("the recording stopped");
    }
}

/// Starts recording a session. The broker calls it once the target has answered and before any
/// frame reaches a viewer; an error refuses the session (deny by default: no unrecorded
/// session).
pub trait SessionRecorder: Send + Sync {
    /// Begins recording; the implementation owns `tap` (typically on its own thread) until the
    /// tap reports the end, and drops it once the recording is closed: the gateway's shutdown
    /// waits for that. The error is shown to the user: it must name no server path.
    fn start(&self, tap: Tap) -> Result<(), String>;
}
