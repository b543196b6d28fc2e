//! What changed on the session's screen, for reading text off it (the gateway's OCR): the
//! bounds of every change since the text was last read, and when the last change came. The
//! reader asks for the changed area once it has stayed unchanged for a moment (a settled
//! screen), never for every frame.

use std::time::Duration;

use portcullis_core::Rect;
use tokio::time::Instant;

use super::{SessionHandle, SessionShared};
use crate::locks::{lock, read};

/// The changes since the screen was last read.
#[derive(Debug, Default)]
pub(crate) struct ScreenChange {
    /// Their bounds.
    area: Option<Rect>,
    /// When the last one came.
    at: Option<Instant>,
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
    /// Notes a change of `rect` (after the framebuffer took it).
    pub(crate) fn screen_changed(&self, rect: Rect) {
        let mut change = lock(&self.screen);
        change.area = Some(match change.area {
            Some(area) => area.union(&rect),
            None => rect,
        });
        change.at = Some(Instant::now());
    }
}

impl SessionHandle {
    /// The area that changed since the last call, once nothing changed for `settle`, with its
    /// pixels; `None` while the screen is still changing or when nothing changed. Taking it
    /// starts over: the next call covers the changes after this one.
    pub fn settled_change(&self, settle: Duration) -> Option<SettledArea> {
        let area = {
            let mut change = lock(&self.shared.screen);
            if change.at?.elapsed() < settle {
                return None;
            }
            change.at = None;
            change.area.take()?
        };
        // The framebuffer is read after the change was taken: a change coming in between is
        // both in these pixels and noted again for the next call (read twice, never missed).
        let fb = read(&self.shared.desktop);
        let rect = area.intersection(&fb.bounds());
        if rect.w == 0 || rect.h == 0 {
            return None;
        }
        let pixels = fb.read_rect(rect).ok()?;
        Some(SettledArea { rect, pixels })
    }
}
