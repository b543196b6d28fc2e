//! The session model: what an administrator sees of a live session.

use serde::{Deserialize, Serialize};

/// Lifecycle of a brokered session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// The gateway is connecting to the target.
    Connecting,
    /// Frames and input flow.
    Active,
    /// Teardown has started.
    Closing,
    /// Gone; kept briefly so a list shows how it ended.
    Closed,
}

/// How a viewer reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryPath {
    /// A browser over the session WebSocket.
    Browser,
    /// A native RDP client (mstsc, FreeRDP) through the gateway's RDP listener.
    Rdp,
}

/// One live session, as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Unique id (a UUID string).
    pub id: String,
    /// The gateway user who opened it.
    pub user: String,
    /// That user's immutable id (recordings belong to the account, not to the name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// The target's name.
    pub target: String,
    /// The user's address as the gateway saw it.
    pub client_addr: String,
    /// Start time, Unix milliseconds.
    pub started_at_ms: i64,
    /// Current state.
    pub state: SessionState,
    /// How the user came in.
    pub entry: EntryPath,
    /// The security team holds the user's input (the screen is still shown and recorded).
    #[serde(default)]
    pub frozen: bool,
}

/// Direction of a clipboard transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipboardDirection {
    /// From a viewer to the target.
    ToTarget,
    /// From the target to the viewers.
    FromTarget,
}

/// Something that happened in a session, as the event track of its recording keeps it. The
/// recording stamps each with its time on the recording's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionEvent {
    /// The session started (the target answered).
    SessionStart {
        /// Gateway user.
        user: String,
        /// Target name.
        target: String,
        /// The user's address.
        client_addr: String,
    },
    /// Someone started watching (the user's own browser counts).
    ViewerJoined {
        /// Gateway user.
        user: String,
    },
    /// Someone of the security team started watching, view-only.
    WatcherJoined {
        /// Gateway user.
        user: String,
    },
    /// The security team froze the session: the user's input is held from now on.
    Frozen {
        /// Who froze it.
        by: String,
    },
    /// The session was unfrozen: input goes through again.
    Unfrozen {
        /// Who unfroze it.
        by: String,
    },
    /// A viewer (or watcher) went away.
    ViewerLeft {
        /// Gateway user.
        user: String,
    },
    /// Keyboard input, as text where it can be derived (`<Enter>`, `<Ctrl+c>` for others).
    Keys {
        /// The typed text.
        text: String,
    },
    /// Clipboard text moved.
    Clipboard {
        /// Which way.
        direction: ClipboardDirection,
        /// Its size in bytes (UTF-8).
        bytes: u64,
    },
    /// File content crossed through a redirected drive.
    FileTransfer {
        /// Which way.
        direction: crate::desktop::FileDirection,
        /// The drive's name and the path on it.
        path: String,
        /// Bytes that crossed.
        bytes: u64,
        /// SHA-256 (hex) of the content, when it crossed as one run from its first byte.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    /// The target deleted or renamed a file on the user's redirected drive.
    FileChange {
        /// The drive's name and the path on it.
        path: String,
        /// What changed.
        change: String,
    },
    /// The desktop changed size.
    Resize {
        /// New width.
        width: u32,
        /// New height.
        height: u32,
    },
    /// A policy decision (allow or deny) about an action.
    Policy {
        /// What was attempted (e.g. `clipboard`).
        action: String,
        /// `allow` or `deny`.
        decision: String,
        /// Why.
        reason: String,
    },
    /// The recorder could not keep up and skipped intermediate screen updates.
    FramesDropped {
        /// How many updates were merged away since the last frame.
        count: u64,
    },
    /// Events arrived faster than they could be kept; this many were not recorded.
    EventsLost {
        /// How many.
        count: u64,
    },
    /// The session ended.
    SessionEnd {
        /// Why.
        reason: String,
    },
}
