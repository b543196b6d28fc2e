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
}

/// One live session, as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Unique id (a UUID string).
    pub id: String,
    /// The gateway user who opened it.
    pub user: String,
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
}
