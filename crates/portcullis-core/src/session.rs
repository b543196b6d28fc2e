//! The session model: what an administrator sees of a live session, why a session ended, and
//! the events a recording keeps.

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
    /// The session's risk score so far: the sum of the scores of the risk rules that fired
    /// (each rule counted once), at most 100.
    #[serde(default)]
    pub risk_score: u32,
    /// The risk rules that fired, in the order they first did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk_rules: Vec<String>,
    /// Clipboard text that crossed so far (either way), bytes.
    #[serde(default)]
    pub clipboard_bytes: u64,
    /// Files that crossed so far (drive or clipboard, either way), bytes.
    #[serde(default)]
    pub file_bytes: u64,
}

/// Why a live session ended, whoever ended it. Protocol-neutral: the web crate tells a browser
/// with a `closed` or `error` message, the native RDP path with a disconnect reason; its words
/// ([`Display`](std::fmt::Display)) are what the user, the event track and the audit trail read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// An administrator or the security team ended it (a close, a kill, a revoked grant, a
    /// locked account); `message` says who and why, for the user.
    ClosedByAdmin {
        /// Who and why.
        message: String,
    },
    /// The gateway is shutting down.
    Shutdown,
    /// The policy's maximum duration or time window ran out.
    TimeLimit {
        /// The rule that set it.
        rule: String,
    },
    /// No input for longer than the policy's idle timeout.
    IdleTimeout {
        /// The timeout, in seconds.
        secs: u64,
        /// The rule that set it.
        rule: String,
    },
    /// The target ended the session and said why (an RDP disconnect reason).
    TargetEnded {
        /// The target's words.
        reason: String,
    },
    /// The target closed its connection.
    TargetClosed,
    /// The target could not be reached, refused the stored credentials, or sent (or stopped
    /// taking) what the gateway cannot accept.
    TargetFailed {
        /// Which of these.
        fault: TargetFault,
        /// What happened, safe to show the user (never the target's address).
        message: String,
    },
    /// The session can no longer be recorded, so it does not go on.
    RecordingFailed {
        /// Why.
        message: String,
    },
    /// The browser viewer the session was opened for disconnected.
    ViewerDisconnected,
    /// The native RDP client the session was opened for disconnected.
    NativeClientDisconnected,
    /// The opener went away while the target was being connected.
    ViewerLeftWhileConnecting,
    /// The viewer's client sent what the gateway cannot accept, or stopped answering.
    ClientFault {
        /// What went wrong.
        message: String,
    },
    /// A fault inside the gateway stopped the session.
    Internal,
}

/// How a target failed a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFault {
    /// It did not answer or refused the connection.
    Unreachable,
    /// It refused the stored credentials.
    AuthFailed,
    /// It spoke (or stopped speaking) in a way the gateway cannot accept.
    Protocol,
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::ClosedByAdmin { message }
            | SessionEnd::TargetFailed { message, .. }
            | SessionEnd::RecordingFailed { message }
            | SessionEnd::ClientFault { message } => f.write_str(message),
            SessionEnd::Shutdown => f.write_str("the gateway is shutting down"),
            SessionEnd::TimeLimit { rule } => write!(
                f,
                "the session reached the end of the time the policy allows (rule {rule:?})"
            ),
            SessionEnd::IdleTimeout { secs, rule } => write!(
                f,
                "the session was idle for longer than the policy allows ({secs} s, rule {rule:?})"
            ),
            SessionEnd::TargetEnded { reason } => {
                write!(f, "the target ended the session: {reason}")
            }
            SessionEnd::TargetClosed => f.write_str("the target closed the session"),
            SessionEnd::ViewerDisconnected => f.write_str("the viewer disconnected"),
            SessionEnd::NativeClientDisconnected => {
                f.write_str("the native RDP client disconnected")
            }
            SessionEnd::ViewerLeftWhileConnecting => {
                f.write_str("the viewer left while connecting")
            }
            SessionEnd::Internal => f.write_str("the session stopped on an internal error"),
        }
    }
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

/// The most clipboard text a recording keeps of one transfer (for search), in bytes.
pub const MAX_CLIPBOARD_TEXT: usize = 4096;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The most words one [`SessionEvent::ScreenText`] holds.
pub const MAX_SCREEN_WORDS: usize = 2000;

/// A word read off the screen and where: `[text, x, y, w, h]` in desktop pixels (compact: a
/// screen of text is hundreds of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenWord(pub String, pub u32, pub u32, pub u32, pub u32);

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
        /// How the user came in (absent in recordings made before it was noted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<EntryPath>,
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
    /// A four-eyes session's input is held: no observer watches (yet, or any more).
    InputHeld {
        /// Why (waiting for the first observer, or the last one left).
        why: String,
    },
    /// A four-eyes session's input goes through: an observer watches.
    InputReleased {
        /// The observer.
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
    /// The text of a clipboard transfer, for searching recordings (kept with the key log: not
    /// recorded when keystrokes are not, never in the audit trail). Cut at
    /// [`MAX_CLIPBOARD_TEXT`] bytes.
    ClipboardText {
        /// Which way.
        direction: ClipboardDirection,
        /// The text (its start).
        text: String,
    },
    /// Words read off the screen (the gateway's OCR of a settled change), each with its box on
    /// the desktop, for searching recordings and boxing a hit on the video.
    ScreenText {
        /// The words, in reading order (none: the screen was read and held no text, so
        /// catching up later need not read it again).
        words: Vec<ScreenWord>,
        /// How long before this event the picture was taken (reading takes a while): the
        /// words were on screen at the event's time minus this. Absent in older tracks.
        #[serde(default, skip_serializing_if = "is_zero")]
        age_ms: u64,
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
    /// A risk rule fired on text the user typed, pasted or saw.
    Risk {
        /// The rule's name.
        rule: String,
        /// What it is about.
        description: String,
        /// Where the text came from: `typed`, `screen` or `clipboard`.
        source: String,
        /// What the gateway does: `score`, `alert`, `freeze` or `kill`.
        action: String,
        /// What it adds to the session's score.
        score: u32,
        /// The matching text (short).
        excerpt: String,
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
