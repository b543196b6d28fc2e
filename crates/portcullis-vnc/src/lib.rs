//! VNC target adapter: connects to a VNC server with `vnc-rs` and translates between RFB and the
//! protocol-neutral desktop model of `portcullis-core`.
//!
//! Only this crate knows `vnc-rs`. Its traps, handled here:
//! - the client asks for one full update only and reports no update's end, so the stream it
//!   reads is watched (`watch`, `framer`): after each update (empty ones too) we ask for the next
//!   at once, keeping one incremental request outstanding as RFB clients do, and tell the broker
//!   the update is complete; if the framer loses track, a timer asks instead;
//! - `VncClient::input` waits on the same lock as a pending `recv_event`, so one task owns the
//!   client and multiplexes events, commands and the refresh timer with `select!`;
//! - its event channel is tiny, so events are drained promptly and handed on through a bounded
//!   channel whose backpressure slows reading from the target rather than growing memory;
//! - its ZRLE decoder builds every tile pixel by pixel and hands each tile over on its own, so
//!   ZRLE is decoded by us (`zrle`): the watched stream gives vnc-rs a copy of each ZRLE
//!   rectangle onto itself instead, and the adapter decodes the rectangle when vnc-rs reports
//!   that copy (a large change of a few colours: ~0.2 ms instead of ~2.5).
//!
//! We offer only lossless encodings whose length is known without decoding them (ZRLE, CopyRect,
//! Raw): Tight would hand us JPEG that we would have to decode (and the gateway re-encodes for the
//! browser anyway); TRLE cannot be framed without decoding it.

mod framer;
mod watch;
pub mod zrle;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub use framer::oracles;

use std::sync::Arc;
use std::time::Duration;

use framer::Gathered;
use portcullis_core::desktop::{check_size, InputEvent, PixelLayout, Rect, TargetUpdate};
pub use portcullis_core::desktop::{TargetCommand, Timeouts};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use vnc::{PixelFormat, VncConnector, VncEncoding, VncError, VncEvent, X11Event};
use watch::{Framing, Watched};
use zrle::Zrle;

/// What we offer, best first: lossless, and each measurable by the framer.
const ENCODINGS: [VncEncoding; 4] = [
    VncEncoding::Zrle,
    VncEncoding::CopyRect,
    VncEncoding::Raw,
    VncEncoding::DesktopSizePseudo,
];

/// While update ends are seen, a new request follows each one at once; this only bounds how
/// long a lost or ignored request can stall the picture.
const SAFETY_REFRESH: Duration = Duration::from_secs(1);
/// Longest wait for the safety request while the server stays quiet (it doubles from
/// [`SAFETY_REFRESH`]).
const SAFETY_REFRESH_MAX: Duration = Duration::from_secs(30);
/// Without update ends (the framer lost track): how often we ask when the server was quiet.
const IDLE_REFRESH: Duration = Duration::from_millis(100);
/// Without update ends: after data arrived, how soon we ask again.
const BUSY_REFRESH: Duration = Duration::from_millis(4);

/// Our SetEncodings message as vnc-rs writes it.
fn set_encodings_message() -> Vec<u8> {
    let mut m = vec![2, 0];
    m.extend_from_slice(&u16::try_from(ENCODINGS.len()).unwrap_or(0).to_be_bytes());
    for e in ENCODINGS {
        m.extend_from_slice(&u32::from(e).to_be_bytes());
    }
    m
}

/// Why a VNC target session could not be opened or ended abnormally.
#[derive(Debug, Error)]
pub enum VncTargetError {
    /// TCP connection failed.
    #[error("cannot reach VNC target {address}: {source}")]
    Unreachable {
        /// Target address.
        address: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Connecting or the handshake took too long.
    #[error("VNC target {address} did not answer within {seconds} s")]
    Timeout {
        /// Target address.
        address: String,
        /// The limit.
        seconds: u64,
    },
    /// The target refused the stored credentials.
    #[error("VNC target refused the stored credentials: {0}")]
    AuthFailed(String),
    /// The target spoke something unusable.
    #[error("VNC protocol error: {0}")]
    Protocol(String),
    /// The target closed the connection.
    #[error("VNC target closed the connection")]
    Closed,
}

impl VncTargetError {
    fn from_vnc(e: VncError) -> Self {
        match e {
            VncError::WrongPassword => {
                VncTargetError::AuthFailed("wrong password for the target".into())
            }
            VncError::NoPassword => {
                VncTargetError::AuthFailed("the target asks for a password and none is stored".into())
            }
            VncError::InvalidSecurityTyep(t) => VncTargetError::Protocol(format!(
                "the target offers security type {t}, which is not supported (use VNC password authentication)"
            )),
            VncError::ClientNotRunning => VncTargetError::Closed,
            VncError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                VncTargetError::Closed
            }
            other => VncTargetError::Protocol(other.to_string()),
        }
    }
}

/// An open, authenticated VNC connection.
pub struct VncTarget {
    client: vnc::VncClient,
    framing: Arc<Framing>,
    width: u32,
    height: u32,
}

impl std::fmt::Debug for VncTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VncTarget")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// Connects and authenticates to the VNC server at `address` (host:port).
/// `password` is used for VNC authentication and dropped afterwards.
pub async fn connect(
    address: &str,
    password: String,
    limits: Timeouts,
) -> Result<VncTarget, VncTargetError> {
    let timed_out = |d: Duration| VncTargetError::Timeout {
        address: address.to_owned(),
        seconds: d.as_secs(),
    };
    let tcp = timeout(limits.connect, TcpStream::connect(address))
        .await
        .map_err(|_| timed_out(limits.connect))?
        .map_err(|source| VncTargetError::Unreachable {
            address: address.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let framing = Framing::new();
    let stream = Watched::new(tcp, Arc::clone(&framing), set_encodings_message());
    let handshake = async move {
        let connector = ENCODINGS.into_iter().fold(
            VncConnector::new(stream)
                .set_auth_method(async move { Ok::<String, VncError>(password) }),
            |c, e| c.add_encoding(e),
        );
        let client = connector
            .allow_shared(true)
            .set_pixel_format(PixelFormat::rgba())
            .build()
            .map_err(VncTargetError::from_vnc)?
            .try_start()
            .await
            .map_err(handshake_error)?
            .finish()
            .map_err(VncTargetError::from_vnc)?;
        // The server init announces the size as the first event.
        loop {
            match client
                .recv_event()
                .await
                .map_err(VncTargetError::from_vnc)?
            {
                VncEvent::SetResolution(s) => {
                    let (w, h) = (u32::from(s.width), u32::from(s.height));
                    check_size(w, h).map_err(|e| VncTargetError::Protocol(e.to_string()))?;
                    return Ok(VncTarget {
                        client,
                        framing,
                        width: w,
                        height: h,
                    });
                }
                VncEvent::Error(e) => return Err(VncTargetError::Protocol(e)),
                _ => {}
            }
        }
    };
    timeout(limits.handshake, handshake)
        .await
        .map_err(|_| timed_out(limits.handshake))?
}

impl VncTarget {
    /// The desktop size announced by the server.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Runs the session: forwards target updates to `updates` and `commands` to the target,
    /// until the target closes, an error occurs, or `commands` is closed (a normal close: `Ok`).
    pub async fn run(
        self,
        updates: mpsc::Sender<TargetUpdate>,
        mut commands: mpsc::Receiver<TargetCommand>,
    ) -> Result<(), VncTargetError> {
        let client = self.client;
        let framing = self.framing;
        let result = async {
            // vnc-rs asked for the first full frame itself (right after our SetEncodings, so
            // the framer sees its update): asking again would start a second chain of
            // requests, two updates in flight for good (and the first picture twice).
            let mut last_request = Instant::now();
            let mut busy = true;
            // No update has ended yet: the safety timer asks for the full picture again (a
            // server may ignore the first request, or answer it before its screen is ready).
            let mut seen_end = false;
            // Safety requests since the last update end: each waits twice as long (a server
            // that answers every request would otherwise gain one request chain per quiet
            // second).
            let mut quiet_rounds: u32 = 0;
            // The connection's ZRLE decoder (its zlib stream goes on from one rectangle to the next).
            let mut zrle = Zrle::new();
            loop {
                let wait = if framing.in_sync() {
                    SAFETY_REFRESH
                        .saturating_mul(1 << quiet_rounds.min(5))
                        .min(SAFETY_REFRESH_MAX)
                } else if busy {
                    BUSY_REFRESH
                } else {
                    IDLE_REFRESH
                };
                let deadline = last_request + wait;
                tokio::select! {
                    biased;
                    cmd = commands.recv() => {
                        let Some(cmd) = cmd else { return Ok(()) };
                        if let Some(ev) = to_x11(cmd) {
                            client.input(ev).await.map_err(VncTargetError::from_vnc)?;
                        }
                    }
                    ev = client.recv_event() => {
                        // The stream's framer ended the connection: say why, not "closed".
                        let ev = ev.map_err(|e| match framing.failure() {
                            Some(why) => VncTargetError::Protocol(why),
                            None => VncTargetError::from_vnc(e),
                        })?;
                        let update = match ev {
                            // The update is complete: ask for the next one at once (the
                            // server answers when something changes), then say so.
                            VncEvent::Text(text) if framing.is_marker(&text) => {
                                framing.marker_seen();
                                seen_end = true;
                                quiet_rounds = 0;
                                client.input(X11Event::Refresh).await.map_err(VncTargetError::from_vnc)?;
                                last_request = Instant::now();
                                Some(TargetUpdate::UpdateEnd)
                            }
                            // A copy onto itself: a ZRLE rectangle the stream's framer decoded
                            // (vnc-rs read this copy in its place), or the server's own no-op.
                            VncEvent::Copy(dst, src) if (dst.x, dst.y) == (src.x, src.y) => {
                                swap_zrle(&framing, &mut zrle, rect(dst))?
                            }
                            ev => translate(ev)?,
                        };
                        if let Some(update) = update {
                            busy = true;
                            // Bands: the queue to the session holds 16 updates, not 16 screens.
                            for band in update.into_bands() {
                                if updates.send(band).await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        let ask = if seen_end { X11Event::Refresh } else { X11Event::FullRefresh };
                        client.input(ask).await.map_err(VncTargetError::from_vnc)?;
                        last_request = Instant::now();
                        busy = false;
                        quiet_rounds = quiet_rounds.saturating_add(1);
                    }
                }
            }
        }
        .await;
        let _ = client.close().await;
        result
    }
}

/// During the handshake a server's failure reason (RFB 3.8 sends one) about passwords or
/// authentication means our credentials were refused, not that the protocol broke.
fn handshake_error(e: VncError) -> VncTargetError {
    if let VncError::General(reason) = &e {
        let lower = reason.to_ascii_lowercase();
        if ["password", "auth", "denied", "too many"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return VncTargetError::AuthFailed(reason.clone());
        }
    }
    VncTargetError::from_vnc(e)
}

/// What replaces a copy of `dst` onto itself: the ZRLE rectangle the framer took from vnc-rs
/// for it, decoded now (in stream order, and after vnc-rs checked it against the screen).
fn swap_zrle(
    framing: &Framing,
    zrle: &mut Zrle,
    dst: Rect,
) -> Result<Option<TargetUpdate>, VncTargetError> {
    match framing.take_gathered() {
        Some(Gathered::Zrle { rect, zlib }) if rect == dst => {
            let data = zrle
                .decode(rect, &zlib)
                .map_err(|e| VncTargetError::Protocol(e.to_string()))?;
            Ok(Some(TargetUpdate::Pixels {
                rect,
                data,
                layout: PixelLayout::Rgbx,
            }))
        }
        Some(Gathered::Zrle { rect, .. }) => Err(VncTargetError::Protocol(format!(
            "ZRLE rectangle {rect} out of step with {dst}"
        ))),
        Some(Gathered::NoOp { .. }) | None => Ok(None),
    }
}

fn rect(r: vnc::Rect) -> Rect {
    Rect::new(
        u32::from(r.x),
        u32::from(r.y),
        u32::from(r.width),
        u32::from(r.height),
    )
}

fn translate(ev: VncEvent) -> Result<Option<TargetUpdate>, VncTargetError> {
    Ok(match ev {
        VncEvent::SetResolution(s) => Some(TargetUpdate::Resize {
            width: u32::from(s.width),
            height: u32::from(s.height),
        }),
        VncEvent::RawImage(r, data) => Some(TargetUpdate::Pixels {
            rect: rect(r),
            data,
            layout: PixelLayout::Rgbx,
        }),
        VncEvent::Copy(dst, src) => Some(TargetUpdate::Copy {
            dst: rect(dst),
            src: rect(src),
        }),
        VncEvent::Text(text) => Some(TargetUpdate::Clipboard(text)),
        VncEvent::Bell => Some(TargetUpdate::Bell),
        VncEvent::Error(e) => return Err(VncTargetError::Protocol(e)),
        VncEvent::JpegImage(..) => {
            return Err(VncTargetError::Protocol(
                "target sent JPEG data although Tight was not offered".into(),
            ))
        }
        // Cursor shapes were not asked for; layout announcements are followed by SetResolution.
        _ => None,
    })
}

fn to_x11(cmd: TargetCommand) -> Option<X11Event> {
    Some(match cmd {
        TargetCommand::FullRefresh => X11Event::FullRefresh,
        TargetCommand::Input(InputEvent::Key { keysym, down }) => {
            X11Event::KeyEvent((keysym, down).into())
        }
        TargetCommand::Input(InputEvent::Pointer { x, y, buttons }) => {
            let x = u16::try_from(x).unwrap_or(u16::MAX);
            let y = u16::try_from(y).unwrap_or(u16::MAX);
            X11Event::PointerEvent((x, y, buttons).into())
        }
        // RFB cut text is Latin-1, but vnc-rs writes the String's UTF-8 bytes as they are: only
        // ASCII survives that unchanged, so nothing else is sent (extended clipboard: later).
        TargetCommand::Input(InputEvent::Clipboard(text)) => {
            X11Event::CopyText(text.chars().filter(char::is_ascii).collect())
        }
        // VNC has no drive redirection (and its file-transfer extensions are never negotiated).
        TargetCommand::Device(_) => return None,
        // Clipboard files are RDP's only (the broker never sends them to a VNC target).
        TargetCommand::Input(InputEvent::ClipboardFiles(_)) => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn we_offer_exactly_what_the_framer_follows() {
        let offered: Vec<i32> = super::ENCODINGS
            .iter()
            .map(|e| i32::from_be_bytes(u32::from(*e).to_be_bytes()))
            .collect();
        assert_eq!(offered, crate::framer::FOLLOWED_ENCODINGS);
        let m = super::set_encodings_message();
        assert_eq!(m.len(), 4 + 4 * offered.len());
    }
}
