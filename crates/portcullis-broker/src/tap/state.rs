//! What the session shares with its tap: the events it reports and the state the recorder's
//! [`Tap`](super::Tap) collects. Names nothing of the session, so the session can hold it.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use portcullis_core::damage::DamageRegion;
use portcullis_core::session::SessionEvent;
use portcullis_core::Rect;

use crate::locks::lock;

/// Events held for a consumer that has not collected them.
pub const MAX_TAP_EVENTS: usize = 10_000;

/// Something the session reports to its tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapEvent {
    /// A session event.
    Session(SessionEvent),
    /// A key press or release from a viewer, as an X11 keysym.
    Key {
        /// Keysym.
        keysym: u32,
        /// Pressed.
        down: bool,
    },
}

#[derive(Debug)]
pub(super) struct TapState {
    pub(super) damage: DamageRegion,
    pub(super) resized: Option<(u32, u32)>,
    pub(super) events: Vec<(Instant, TapEvent)>,
    pub(super) events_lost: u64,
    pub(super) updates: u64,
    /// Damage came since the last update's end (an update that changed nothing is no frame).
    pub(super) damaged: bool,
    pub(super) ended: Option<String>,
}

#[derive(Debug)]
pub(crate) struct TapShared {
    pub(super) state: Mutex<TapState>,
    pub(super) wake: Condvar,
}

impl TapShared {
    pub(crate) fn new(width: u32, height: u32) -> Self {
        let mut damage = DamageRegion::new(width, height);
        damage.reset_full(width, height);
        Self {
            state: Mutex::new(TapState {
                damage,
                resized: None,
                events: Vec::new(),
                events_lost: 0,
                updates: 0,
                damaged: false,
                ended: None,
            }),
            wake: Condvar::new(),
        }
    }

    pub(crate) fn add_damage(&self, rect: Rect) {
        let mut s = lock(&self.state);
        s.damage.add(rect);
        s.damaged = true;
    }

    pub(crate) fn resized(&self, width: u32, height: u32) {
        let mut s = lock(&self.state);
        s.resized = Some((width, height));
        s.damage.reset_full(width, height);
        s.damaged = true;
    }

    /// End of one update from the target: wake the consumer. Counted only when it changed the
    /// picture (a server that re-sends what is there gives the recording no frame to miss: no
    /// false "frames dropped").
    pub(crate) fn updated(&self) {
        let mut s = lock(&self.state);
        if std::mem::take(&mut s.damaged) {
            s.updates += 1;
        }
        drop(s);
        self.wake.notify_one();
    }

    pub(crate) fn event(&self, event: TapEvent) {
        let mut s = lock(&self.state);
        if s.events.len() >= MAX_TAP_EVENTS {
            s.events_lost += 1;
        } else {
            s.events.push((Instant::now(), event));
        }
        drop(s);
        self.wake.notify_one();
    }

    pub(crate) fn end(&self, reason: String) {
        let mut s = lock(&self.state);
        if s.ended.is_none() {
            s.ended = Some(reason);
        }
        drop(s);
        self.wake.notify_one();
    }
}
