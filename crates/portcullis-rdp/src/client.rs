//! Towards targets: an RDP client on IronRDP (connector 0.12 / session 0.13) that decodes the
//! target's graphics into the desktop model and relays viewer input as RDP input.
//!
//! Laid out like `server`: `handshake` connects (TCP, TLS through `tls`, the identity check,
//! the login), `active` runs the session loop, `input` translates viewer input into RDP input.

mod active;
mod handshake;
mod input;
pub(crate) mod tls;

use ironrdp_connector::{ConnectorError, ConnectorErrorKind};
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, SessionError};
use ironrdp_tokio::TokioFramed;
use portcullis_core::desktop::ClipFileTerms;
use thiserror::Error;
use tokio::net::TcpStream;

use crate::clip::ClipState;
use crate::drive::{DriveRelay, DriveTerms};
use crate::identity::Refusal;
use crate::reassembly::{BoundsError, Reassembly};

pub use handshake::connect;

/// Smallest and largest desktop a viewer may ask an RDP target for. RDP servers refuse sizes
/// outside roughly this range (and widths must be even for some).
pub const MIN_SIZE: (u16, u16) = (640, 480);
/// See [`MIN_SIZE`].
pub const MAX_SIZE: (u16, u16) = (4096, 2160);

/// The account the gateway logs in with (never shown to users).
#[derive(Clone)]
pub struct RdpCredentials {
    /// User name on the target.
    pub username: String,
    /// Windows domain, if any.
    pub domain: Option<String>,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for RdpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpCredentials")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// How to talk to an RDP target.
#[derive(Debug, Clone, Copy)]
pub struct RdpOptions {
    /// Desktop width asked for (clamped to [`MIN_SIZE`]..[`MAX_SIZE`], made even).
    pub width: u16,
    /// Desktop height asked for.
    pub height: u16,
    /// Offer RemoteFX (lossy, much less bandwidth). Off: lossless bitmaps only.
    pub remotefx: bool,
    /// Offer the target drive redirection (`rdpdr`), relaying the native client's drives under
    /// these terms. `None`: the target is not offered the channel at all.
    pub drive: Option<DriveTerms>,
}

impl Default for RdpOptions {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 800,
            remotefx: false,
            drive: None,
        }
    }
}

impl RdpOptions {
    /// The size actually requested: within bounds, width even.
    pub fn clamped_size(&self) -> (u16, u16) {
        let w = self.width.clamp(MIN_SIZE.0, MAX_SIZE.0) & !1;
        let h = self.height.clamp(MIN_SIZE.1, MAX_SIZE.1);
        (w, h)
    }
}

/// Why an RDP target session could not be opened or ended abnormally.
#[derive(Debug, Error)]
pub enum RdpTargetError {
    /// TCP connection failed.
    #[error("cannot reach RDP target {address}: {source}")]
    Unreachable {
        /// Target address.
        address: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Connecting or the handshake took too long.
    #[error("RDP target {address} did not answer within {seconds} s")]
    Timeout {
        /// Target address.
        address: String,
        /// The limit.
        seconds: u64,
    },
    /// The target refused the stored credentials.
    #[error("RDP target refused the stored credentials: {0}")]
    AuthFailed(String),
    /// The target spoke something unusable.
    #[error("RDP protocol error: {0}")]
    Protocol(String),
    /// The target ended the session (logoff, disconnect, shutdown).
    #[error("RDP target ended the session: {0}")]
    Ended(String),
    /// The target closed the connection.
    #[error("RDP target closed the connection")]
    Closed,
    /// The target broke a reassembly bound (a huge channel message, endless fragments).
    #[error("RDP target sent too much: {0}")]
    Bounds(#[from] BoundsError),
    /// The target is not the one the gateway knows (another certificate, or no NLA where NLA
    /// is due): refused before any credential was sent.
    #[error("RDP target refused: {0}")]
    Untrusted(Refusal),
}

impl RdpTargetError {
    /// True when the target simply went away or ended the session normally.
    pub fn is_closed(&self) -> bool {
        matches!(self, RdpTargetError::Closed | RdpTargetError::Ended(_))
    }

    fn connector(e: ConnectorError) -> Self {
        let text = e.report().to_string();
        match e.kind() {
            ConnectorErrorKind::Credssp(_) | ConnectorErrorKind::AccessDenied => {
                RdpTargetError::AuthFailed(text)
            }
            _ if is_eof(&text) => RdpTargetError::Closed,
            _ => RdpTargetError::Protocol(text),
        }
    }

    fn session(e: SessionError) -> Self {
        RdpTargetError::Protocol(e.report().to_string())
    }

    fn io(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => RdpTargetError::Closed,
            _ => RdpTargetError::Protocol(e.to_string()),
        }
    }
}

fn is_eof(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("eof") || t.contains("connection reset")
}

type Stream = tokio_rustls::client::TlsStream<TcpStream>;

/// An open, logged-in RDP connection.
pub struct RdpTarget {
    framed: TokioFramed<Stream>,
    stage: ActiveStage,
    image: DecodedImage,
    activation: ironrdp_connector::connection_activation::ConnectionActivationFactory,
    /// Clipboard text over CLIPRDR.
    clip: ClipState,
    /// Drive redirection, when the session's terms let files cross.
    drive: Option<DriveRelay>,
    /// Bounds what the target can make IronRDP gather (sees every frame first).
    bounds: Reassembly,
    /// The SHA-256 of the target's certificate, for the log.
    pub certificate_sha256: String,
}

impl std::fmt::Debug for RdpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpTarget")
            .field("width", &self.image.width())
            .field("height", &self.image.height())
            .finish_non_exhaustive()
    }
}

impl RdpTarget {
    /// Lets the adapter fetch files the target copies on its clipboard, for the session's policy
    /// to decide on (`terms.to_client`, at most `terms.max_bytes` in all). Without this, files
    /// the target copies are only named.
    pub fn set_clipboard_files(&mut self, terms: ClipFileTerms) {
        self.clip
            .fetch_files(terms.to_client.then_some(terms.max_bytes));
    }

    /// The desktop size the server granted.
    pub fn size(&self) -> (u32, u32) {
        (
            u32::from(self.image.width()),
            u32::from(self.image.height()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_sizes_are_bounded_and_even() {
        let o = RdpOptions {
            width: 1,
            height: 60000,
            remotefx: false,
            drive: None,
        };
        assert_eq!(o.clamped_size(), (640, 2160));
        let o = RdpOptions {
            width: 1281,
            height: 801,
            remotefx: false,
            drive: None,
        };
        assert_eq!(o.clamped_size(), (1280, 801));
    }
}
