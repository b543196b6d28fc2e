//! Drive redirection (MS-RDPEFS, the `rdpdr` static channel) relayed between a native client and
//! an RDP target, under the session's file-transfer terms.
//!
//! The gateway speaks `rdpdr` to neither side itself: the target's messages go to the client and
//! the client's answers go back, through [`DriveRelay`], which reads enough of each to
//! - offer the target only the client's **drives** (printers, ports and smart cards are dropped
//!   from the device list, so the target never learns of them);
//! - refuse, on the client's behalf, what the terms do not allow: reading a file's content
//!   (an upload) or writing, creating, truncating, renaming or deleting (a download). The target
//!   is answered "access denied" and the client never sees the request;
//! - note every file whose content crossed, with its size and SHA-256, when the target closes it.
//!
//! It also mends one ordering fault: xrdp 0.9.21 sends "user logged on" before its capabilities,
//! and FreeRDP 2.11 then ignores it and never announces its drives (xrdp issues 2834, 2971). The
//! relay holds that message until the client has answered the capabilities, so drives work
//! through the gateway where a direct connection has none.
//!
//! When the terms allow no file transfer at all the channel is not offered to the target (see
//! `client`), so this relay only exists for sessions that may move files one way or both.
//!
//! Sans-I/O: bytes in, bytes and events out. Every length is checked against the message, and
//! the relay keeps bounded state (pending requests, open files); a malformed message from either
//! side is dropped and reported, never trusted.
//!
//! Laid out in parts: `wire` reads and builds the messages (ids, a bounded reader, the
//! completions we answer with), `relay` is the state machine above (with `flow`, the record of
//! one file's content), and `channel` is the glue that collects the channel's messages on either
//! side for the session loop.

mod channel;
mod flow;
mod relay;
mod wire;

use portcullis_core::desktop::FileEvent;

pub(crate) use channel::{RdpdrChannel, MAX_RDPDR_PDU};
pub use relay::DriveRelay;

/// Which file-transfer directions the session's terms allow. Decided by the policy (in the
/// broker); the relay only applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriveTerms {
    /// The target may read files of the user's drive.
    pub upload: bool,
    /// The target may write files to the user's drive (and create, rename, delete them).
    pub download: bool,
}

/// What the relay wants done with a message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveOutput {
    /// Send these bytes to the target on its `rdpdr` channel.
    ToTarget(Vec<u8>),
    /// Send these bytes to the client on its `rdpdr` channel.
    ToClient(Vec<u8>),
    /// Record this.
    File(FileEvent),
    /// A message was dropped as malformed or out of place (for the log).
    Dropped(String),
}

/// Bytes the relay of one session may hold at once, whatever the number of files: the parts
/// every open file keeps ahead (both directions) and the paths of open files and of opens still
/// pending. Without it `flow::MAX_AHEAD_BYTES` × `relay::MAX_OPEN_FILES` × 2 directions (32 GiB) would be
/// within bounds. A few files copied in parallel with readahead stay far below it. Past it the
/// relay degrades without ending the session: the file whose part does not fit loses its hash
/// (its record says the hash is unavailable, its byte count stays exact) and a new open is
/// refused to the target as "insufficient resources", as when too many files are open. Ending
/// the session instead would let a slow drive or a busy copy cut a user off for no fault.
pub(crate) const MAX_SESSION_HELD: usize = 16 * 1024 * 1024;
