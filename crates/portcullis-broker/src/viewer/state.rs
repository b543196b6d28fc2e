//! What the session shares with one viewer: pending damage, resizes, control and drive
//! messages, and its wake-up. Names nothing of the session, so the session can hold it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use portcullis_core::damage::DamageRegion;
use portcullis_core::desktop::ClipFile;
use portcullis_core::wire::ServerMessage;
use portcullis_core::Rect;
use tokio::sync::Notify;
use tracing::warn;

use crate::locks::lock;

/// Control messages (clipboard, bell) a viewer may have pending. Beyond this the oldest bell
/// goes; clipboard text replaces older clipboard text, so nothing grows without bound.
const MAX_PENDING_EVENTS: usize = 16;

/// Drive redirection messages a native client may have pending. Beyond this the client is not
/// reading (the target's requests then go unanswered, which is the client's own loss).
const MAX_PENDING_DEVICE_BYTES: usize = 16 * 1024 * 1024;

pub(super) struct ViewerState {
    pub(super) damage: DamageRegion,
    pub(super) resize: Option<(u32, u32)>,
    pub(super) events: VecDeque<ServerMessage>,
    /// Drive redirection messages for a native client that owns the drive.
    pub(super) device: VecDeque<Vec<u8>>,
    pub(super) device_bytes: usize,
    /// Files the target copied (allowed by the policy), for a native client's clipboard: the
    /// latest copy only.
    pub(super) clip_files: Option<Vec<ClipFile>>,
}

/// What the session shares with one viewer.
pub(crate) struct ViewerShared {
    pub(super) state: Mutex<ViewerState>,
    pub(super) notify: Notify,
    /// Who watches.
    pub(super) user: String,
    /// A native RDP client (the only kind that takes clipboard files).
    pub(super) native: AtomicBool,
    /// Its leaving is recorded (by whichever comes first: the viewer going away or the session
    /// ending with it still attached). A lock, not a flag: the session's end waits for a leave
    /// in progress on another thread, so the leave is in the tap before the end.
    pub(super) left: Mutex<bool>,
}

impl ViewerShared {
    pub(crate) fn new(width: u32, height: u32, user: &str) -> Self {
        let mut damage = DamageRegion::new(width, height);
        damage.reset_full(width, height);
        Self {
            state: Mutex::new(ViewerState {
                damage,
                resize: None,
                events: VecDeque::new(),
                device: VecDeque::new(),
                device_bytes: 0,
                clip_files: None,
            }),
            notify: Notify::new(),
            user: user.to_owned(),
            native: AtomicBool::new(false),
            left: Mutex::new(false),
        }
    }

    pub(crate) fn add_damage(&self, rect: Rect) {
        lock(&self.state).damage.add(rect);
    }

    pub(crate) fn resized(&self, width: u32, height: u32) {
        let mut s = lock(&self.state);
        s.resize = Some((width, height));
        s.damage.reset_full(width, height);
    }

    pub(crate) fn push_event(&self, event: ServerMessage) {
        let mut s = lock(&self.state);
        if matches!(event, ServerMessage::Clipboard { .. }) {
            s.events
                .retain(|e| !matches!(e, ServerMessage::Clipboard { .. }));
            // Newer than any files the target copied before.
            s.clip_files = None;
        }
        if s.events.len() >= MAX_PENDING_EVENTS {
            if let Some(i) = s
                .events
                .iter()
                .position(|e| matches!(e, ServerMessage::Bell))
            {
                s.events.remove(i);
            } else {
                return;
            }
        }
        s.events.push_back(event);
    }

    /// Files the target copied, for a native client (others have no way to take them): they
    /// replace any clipboard content still pending for it.
    pub(crate) fn push_clip_files(&self, files: &[ClipFile]) {
        if !self.native.load(Ordering::Relaxed) {
            return;
        }
        let mut s = lock(&self.state);
        s.events
            .retain(|e| !matches!(e, ServerMessage::Clipboard { .. }));
        s.clip_files = Some(files.to_vec());
    }

    pub(crate) fn push_device(&self, pdu: Vec<u8>) {
        let mut s = lock(&self.state);
        if s.device_bytes + pdu.len() > MAX_PENDING_DEVICE_BYTES {
            warn!(user = %self.user, "native client not reading its drive messages: one dropped");
            return;
        }
        s.device_bytes += pdu.len();
        s.device.push_back(pdu);
    }

    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }
}
