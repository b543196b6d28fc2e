//! What changed on the session's screen, for reading text off it (the gateway's OCR): the
//! bounds of every change since the text was last read, when the first and the last of them
//! came. The reader asks for the changed rows once they have stayed unchanged for a moment (a
//! settled screen), never for every frame, and at the latest a while after the first change
//! (a screen that never stops changing — a clock, a spinner — is read all the same).

use std::time::Duration;

use portcullis_core::session::{ScreenWord, SessionEvent, MAX_SCREEN_WORDS};
use portcullis_core::Rect;
use tokio::time::Instant;

use super::{SessionHandle, SessionShared};
use crate::locks::{lock, read};
use crate::tap::state::TapEvent;

/// Rows above and below a change that are read with it (about a line of text: a change inside a
/// line, such as a completed word, is read with the whole line).
const CONTEXT_ROWS: u32 = 16;

/// The changes since the screen was last read.
#[derive(Debug, Default)]
pub(crate) struct ScreenChange {
    /// Their bounds.
    area: Option<Rect>,
    /// When the first and the last one came.
    first: Option<Instant>,
    last: Option<Instant>,
}

/// An area of the screen that changed and then stayed unchanged: its place and its pixels.
#[derive(Debug, Clone)]
pub struct SettledArea {
    /// Where on the desktop.
    pub rect: Rect,
    /// Its pixels, RGBX rows top-down (`rect.w * rect.h * 4` bytes).
    pub pixels: Vec<u8>,
}

impl SessionShared {
    /// Notes a change of `rect` (after the framebuffer took it, its lock let go).
    pub(crate) fn screen_changed(&self, rect: Rect) {
        let mut change = lock(&self.screen);
        change.area = Some(match change.area {
            Some(area) => area.union(&rect),
            None => rect,
        });
        let now = Instant::now();
        change.first.get_or_insert(now);
        change.last = Some(now);
    }
}

impl SessionHandle {
    /// True while a recorder takes the session's events (words read off its screen are kept
    /// in its recording).
    pub fn is_recorded(&self) -> bool {
        self.shared.tap.get().is_some()
    }

    /// Puts words read off the screen `age` ago into the event track (at most
    /// [`MAX_SCREEN_WORDS`](portcullis_core::session::MAX_SCREEN_WORDS), the rest in further
    /// events), for searching the recording. A read that found nothing is an event without
    /// words (the screen was read then: catching up later passes over that moment).
    pub fn screen_words(&self, words: Vec<ScreenWord>, age: Duration) {
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        let mut words = words;
        loop {
            let rest = words.split_off(words.len().min(MAX_SCREEN_WORDS));
            self.shared
                .tap_event(TapEvent::Session(SessionEvent::ScreenText {
                    words,
                    age_ms,
                }));
            if rest.is_empty() {
                break;
            }
            words = rest;
        }
    }

    /// The rows that changed since the last call (full width, with [`CONTEXT_ROWS`] around),
    /// once nothing changed for `settle` or the first change is `at_most` old, with their
    /// pixels; `None` while the screen is still changing, when nothing changed, or when the
    /// area holds more than `max_pixels` (then it is let go). Taking it starts over.
    pub fn settled_change(
        &self,
        settle: Duration,
        at_most: Duration,
        max_pixels: u64,
    ) -> Option<SettledArea> {
        let area = {
            let mut change = lock(&self.shared.screen);
            let settled = change.last?.elapsed() >= settle;
            let overdue = change.first?.elapsed() >= at_most;
            if !settled && !overdue {
                return None;
            }
            change.first = None;
            change.last = None;
            change.area.take()?
        };
        // The framebuffer is read after the change was taken: a change coming in between is
        // both in these pixels and noted again for the next call (read twice, never missed).
        let fb = read(&self.shared.desktop);
        let top = area.y.saturating_sub(CONTEXT_ROWS);
        let bottom = area.y.saturating_add(area.h).saturating_add(CONTEXT_ROWS);
        let rows = Rect::new(0, top, fb.width(), bottom.saturating_sub(top));
        let rect = rows.intersection(&fb.bounds());
        if rect.w == 0 || rect.h == 0 || u64::from(rect.w) * u64::from(rect.h) > max_pixels {
            return None;
        }
        let pixels = fb.read_rect(rect).ok()?;
        Some(SettledArea { rect, pixels })
    }
}
