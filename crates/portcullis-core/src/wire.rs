//! The browser WebSocket format. `docs/browser-protocol.md` is its specification; this module is
//! the only Rust code that knows the bytes.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::desktop::{InputEvent, Rect, MAX_CLIPBOARD_BYTES};

/// Largest text message a browser may send. Clipboard text is the only big payload.
pub const MAX_CLIENT_MESSAGE: usize = 256 * 1024;

/// First byte of a binary rectangle message.
pub const KIND_RECT: u8 = 1;
/// First byte of a binary end-of-frame message.
pub const KIND_FRAME_END: u8 = 2;
/// First byte of a binary copy message.
pub const KIND_COPY: u8 = 3;
/// First byte of a binary batch: several messages of a frame in one WebSocket message.
pub const KIND_BATCH: u8 = 4;
/// A batch holds at most this much: each WebSocket message is a task of the page's main thread
/// (a large change is dozens of rectangles), but a batch is read whole before its first
/// rectangle is drawn, so a large frame still goes out in several (a message larger than this
/// goes out alone).
pub const MAX_BATCH: usize = 256 * 1024;
/// Bytes before the image data in a rectangle message.
pub const RECT_HEADER_LEN: usize = 10;
/// Length of a copy message: kind, destination x and y, source x, y, width and height (u16 each).
pub const COPY_LEN: usize = 13;

/// A browser message the gateway could not accept.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Bigger than [`MAX_CLIENT_MESSAGE`].
    #[error("message of {0} bytes exceeds the {MAX_CLIENT_MESSAGE} byte limit")]
    TooLarge(usize),
    /// Not one of the known messages.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Clipboard text over [`MAX_CLIPBOARD_BYTES`].
    #[error("clipboard text of {0} bytes exceeds the {MAX_CLIPBOARD_BYTES} byte limit")]
    ClipboardTooLarge(usize),
    /// A binary message from the browser (it only sends text).
    #[error("unexpected binary message from the browser")]
    UnexpectedBinary,
    /// A rectangle that cannot be described with 16-bit coordinates.
    #[error("rectangle {0} does not fit the wire format")]
    RectTooLarge(Rect),
    /// A server binary message that is cut short or unknown (only for decoding in tests and tools).
    #[error("malformed server binary message")]
    BadServerBinary,
}

/// What a browser may send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum ClientMessage {
    /// A key event (X11 keysym).
    Key {
        /// X11 keysym.
        keysym: u32,
        /// Pressed or released.
        down: bool,
    },
    /// Pointer position and buttons, in desktop coordinates.
    Pointer {
        /// x.
        x: u32,
        /// y.
        y: u32,
        /// Button mask, see [`crate::desktop::buttons`].
        buttons: u8,
    },
    /// The browser-side clipboard text to hand to the target.
    Clipboard {
        /// The text.
        text: String,
    },
    /// A frame was painted.
    Ack {
        /// Its sequence number.
        seq: u32,
    },
    /// Asks for a full repaint.
    Refresh,
}

impl ClientMessage {
    /// The input event this message carries, if it is one.
    pub fn into_input(self) -> Option<InputEvent> {
        match self {
            ClientMessage::Key { keysym, down } => Some(InputEvent::Key { keysym, down }),
            ClientMessage::Pointer { x, y, buttons } => Some(InputEvent::Pointer { x, y, buttons }),
            ClientMessage::Clipboard { text } => Some(InputEvent::Clipboard(text)),
            ClientMessage::Ack { .. } | ClientMessage::Refresh => None,
        }
    }
}

/// Parses one text message from the browser, enforcing every limit.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, WireError> {
    if text.len() > MAX_CLIENT_MESSAGE {
        return Err(WireError::TooLarge(text.len()));
    }
    let msg: ClientMessage =
        serde_json::from_str(text).map_err(|e| WireError::Malformed(e.to_string()))?;
    if let ClientMessage::Clipboard { text } = &msg {
        if text.len() > MAX_CLIPBOARD_BYTES {
            return Err(WireError::ClipboardTooLarge(text.len()));
        }
    }
    Ok(msg)
}

/// Why a session failed, as the browser is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The target did not answer or refused the connection.
    TargetUnreachable,
    /// The target refused the stored credentials.
    TargetAuthFailed,
    /// The target spoke something we could not accept.
    TargetProtocol,
    /// The browser sent something we could not accept.
    BadMessage,
    /// An administrator closed the session.
    ClosedByAdmin,
    /// The session cannot be recorded (storage failing or full), so it does not run.
    RecordingUnavailable,
    /// The policy does not allow this session (entry path, time window, a deny rule, no rule).
    PolicyDenied,
    /// The audit trail cannot take the session's start, so it does not run.
    AuditUnavailable,
    /// A fault inside the gateway.
    Internal,
}

/// A JSON message to the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    /// The session is up.
    Init {
        /// Session id.
        session: String,
        /// Target name.
        target: String,
        /// Desktop width.
        width: u32,
        /// Desktop height.
        height: u32,
    },
    /// New desktop size; a full repaint follows.
    Resize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The target's clipboard text.
    Clipboard {
        /// The text.
        text: String,
    },
    /// The target rang the bell.
    Bell,
    /// The policy refused a crossing (e.g. clipboard text one way): the user is told why.
    Denied {
        /// What was refused (`clipboard_to_target`, `clipboard_to_client`).
        action: String,
        /// Why, naming the rule.
        reason: String,
    },
    /// The security team froze (or unfroze) the session: while frozen, input is not delivered.
    Frozen {
        /// Frozen now.
        frozen: bool,
    },
    /// A four-eyes session (its rule requires an observer): whether one watches now. While
    /// none does, the user's input is held; sent when the session is joined and at each change.
    Observer {
        /// An observer watches now.
        present: bool,
    },
    /// The session failed; the socket closes next.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// The session ended normally.
    Closed {
        /// Why.
        reason: String,
    },
}

impl ServerMessage {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; fall back to a fixed error just in case.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialization failed"}"#.to_owned()
        })
    }
}

/// Image encodings of rectangle messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageEncoding {
    /// Lossless; used for text and UI.
    Png = 1,
    /// Lossy; used for large photographic areas.
    Jpeg = 2,
    /// One colour for the whole rectangle: 3 bytes of data, red, green, blue.
    Fill = 3,
    /// Lossless; a chunk of the connection's one deflate stream (so repeated glyphs and
    /// colours cost little in later messages), which inflates to a palette or RGB image.
    Zlib = 4,
}

/// Writes the header of a rectangle message into `out` (image bytes follow).
pub fn write_rect_header(
    out: &mut Vec<u8>,
    encoding: ImageEncoding,
    rect: Rect,
) -> Result<(), WireError> {
    let field = |v: u32| u16::try_from(v).map_err(|_| WireError::RectTooLarge(rect));
    let (x, y, w, h) = (
        field(rect.x)?,
        field(rect.y)?,
        field(rect.w)?,
        field(rect.h)?,
    );
    out.push(KIND_RECT);
    out.push(encoding as u8);
    for v in [x, y, w, h] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    Ok(())
}

/// A copy message: the browser copies the pixels of `src` (as it shows them now) to the
/// rectangle of the same size at `dst`'s origin. Overlap is allowed.
pub fn copy_message(dst: Rect, src: Rect) -> Result<[u8; COPY_LEN], WireError> {
    let field = |v: u32| u16::try_from(v).map_err(|_| WireError::RectTooLarge(src));
    let fields = [
        field(dst.x)?,
        field(dst.y)?,
        field(src.x)?,
        field(src.y)?,
        field(src.w)?,
        field(src.h)?,
    ];
    let mut out = [0; COPY_LEN];
    out[0] = KIND_COPY;
    for (i, v) in fields.into_iter().enumerate() {
        out[1 + 2 * i..3 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    Ok(out)
}

/// An end-of-frame message.
pub fn frame_end(seq: u32) -> [u8; 5] {
    let s = seq.to_be_bytes();
    [KIND_FRAME_END, s[0], s[1], s[2], s[3]]
}

/// A frame's messages as the WebSocket messages to send, in order: consecutive messages in
/// batches (`[4]`, then each message as a u32 length and its bytes) of at most [`MAX_BATCH`];
/// a message that does not fit one goes out as it is, and so does a batch of one.
pub fn batched(messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut size = 1;
    let flush = |batch: &mut Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>| match batch.len() {
        0 => {}
        1 => out.append(batch),
        _ => {
            let len = 1 + batch.iter().map(|m| 4 + m.len()).sum::<usize>();
            let mut one = Vec::with_capacity(len);
            one.push(KIND_BATCH);
            for m in batch.drain(..) {
                // Below MAX_BATCH: the length fits a u32.
                let n = u32::try_from(m.len()).unwrap_or(u32::MAX);
                one.extend_from_slice(&n.to_be_bytes());
                one.extend_from_slice(&m);
            }
            out.push(one);
        }
    };
    for m in messages {
        if m.len() + 5 > MAX_BATCH {
            flush(&mut batch, &mut out);
            size = 1;
            out.push(m);
            continue;
        }
        if size + 4 + m.len() > MAX_BATCH {
            flush(&mut batch, &mut out);
            size = 1;
        }
        size += 4 + m.len();
        batch.push(m);
    }
    flush(&mut batch, &mut out);
    out
}

/// The messages of a batch (or the one message that is not a batch), for tests and tools;
/// refused as the page refuses them: no part, a part shorter than any message, a batch in a
/// batch, lengths that do not add up.
pub fn unbatch(bytes: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let Some((&KIND_BATCH, mut rest)) = bytes.split_first() else {
        return Ok(vec![bytes]);
    };
    if rest.is_empty() {
        return Err(WireError::BadServerBinary);
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest.split_at_checked(4).ok_or(WireError::BadServerBinary)?;
        let len = usize::try_from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]))
            .map_err(|_| WireError::BadServerBinary)?;
        let (m, after) = after
            .split_at_checked(len)
            .ok_or(WireError::BadServerBinary)?;
        if m.len() < 5 || m[0] == KIND_BATCH {
            return Err(WireError::BadServerBinary);
        }
        out.push(m);
        rest = after;
    }
    Ok(out)
}

/// A decoded binary server message (for tests, benchmarks and tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerBinary<'a> {
    /// A rectangle and its encoded image.
    Rect {
        /// Encoding byte.
        encoding: u8,
        /// Where it goes.
        rect: Rect,
        /// The image bytes.
        data: &'a [u8],
    },
    /// Pixels the browser already shows, copied within the canvas.
    Copy {
        /// Where they go (the source's size).
        dst: Rect,
        /// Where they come from.
        src: Rect,
    },
    /// End of a frame.
    FrameEnd {
        /// Its sequence number.
        seq: u32,
    },
}

/// Decodes a binary server message.
pub fn decode_server_binary(bytes: &[u8]) -> Result<ServerBinary<'_>, WireError> {
    let u16_at = |i: usize| -> Result<u32, WireError> {
        let b = bytes.get(i..i + 2).ok_or(WireError::BadServerBinary)?;
        Ok(u32::from(u16::from_be_bytes([b[0], b[1]])))
    };
    match bytes.first() {
        Some(&KIND_RECT) => {
            let encoding = *bytes.get(1).ok_or(WireError::BadServerBinary)?;
            let rect = Rect::new(u16_at(2)?, u16_at(4)?, u16_at(6)?, u16_at(8)?);
            Ok(ServerBinary::Rect {
                encoding,
                rect,
                data: bytes.get(RECT_HEADER_LEN..).unwrap_or_default(),
            })
        }
        Some(&KIND_COPY) if bytes.len() == COPY_LEN => {
            let (w, h) = (u16_at(9)?, u16_at(11)?);
            Ok(ServerBinary::Copy {
                dst: Rect::new(u16_at(1)?, u16_at(3)?, w, h),
                src: Rect::new(u16_at(5)?, u16_at(7)?, w, h),
            })
        }
        Some(&KIND_FRAME_END) => {
            let s = bytes.get(1..5).ok_or(WireError::BadServerBinary)?;
            Ok(ServerBinary::FrameEnd {
                seq: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
            })
        }
        _ => Err(WireError::BadServerBinary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_goes_out_in_batches_that_give_back_its_messages_in_order() {
        let frame = vec![
            vec![KIND_RECT; 12],
            copy_message(Rect::new(1, 2, 3, 4), Rect::new(5, 6, 3, 4))
                .unwrap()
                .to_vec(),
            frame_end(7).to_vec(),
        ];
        let sent = batched(frame.clone());
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0][0], KIND_BATCH);
        let back: Vec<&[u8]> = frame.iter().map(Vec::as_slice).collect();
        assert_eq!(unbatch(&sent[0]).unwrap(), back);
        // One message alone goes out as it is.
        assert_eq!(
            batched(vec![frame_end(1).to_vec()]),
            vec![frame_end(1).to_vec()]
        );
        // A large frame: batches of at most MAX_BATCH, a message too large for one alone, the
        // order kept.
        let big = vec![
            vec![1; 1000],
            vec![2; MAX_BATCH],
            vec![3; MAX_BATCH / 2],
            vec![6; MAX_BATCH / 2],
            vec![5; 10],
            frame_end(2).to_vec(),
        ];
        let sent = batched(big.clone());
        assert!(
            sent.iter().all(|m| m.len() <= MAX_BATCH || m[0] == 2),
            "sizes"
        );
        let mut again: Vec<Vec<u8>> = Vec::new();
        for m in &sent {
            again.extend(unbatch(m).unwrap().into_iter().map(<[u8]>::to_vec));
        }
        assert_eq!(again, big);
        assert_eq!(sent.len(), 4, "[1] [2] [3] [6 5 end]");
        // A cut batch yields fewer messages or none.
        let whole = batched(frame.clone()).remove(0);
        for cut in 1..whole.len() {
            assert!(
                unbatch(&whole[..cut]).map_or(true, |m| m.len() < frame.len()),
                "cut at {cut}"
            );
        }
        assert_eq!(
            unbatch(&[KIND_BATCH, 0, 0, 0, 9, 1]),
            Err(WireError::BadServerBinary)
        );
        // No part, an empty part, a batch in a batch: refused as the page refuses them.
        let end = frame_end(3);
        for bad in [
            vec![KIND_BATCH],
            [&[KIND_BATCH, 0, 0, 0, 0][..], &[0, 0, 0, 5], &end].concat(),
            [&[KIND_BATCH, 0, 0, 0, 10, KIND_BATCH, 0, 0, 0, 5][..], &end].concat(),
        ] {
            assert_eq!(unbatch(&bad), Err(WireError::BadServerBinary), "{bad:?}");
        }
    }

    #[test]
    fn parses_every_client_message() {
        let cases = [
            (
                r#"{"t":"key","keysym":97,"down":true}"#,
                ClientMessage::Key {
                    keysym: 97,
                    down: true,
                },
            ),
            (
                r#"{"t":"pointer","x":10,"y":20,"buttons":1}"#,
                ClientMessage::Pointer {
                    x: 10,
                    y: 20,
                    buttons: 1,
                },
            ),
            (
                r#"{"t":"clipboard","text":"hi"}"#,
                ClientMessage::Clipboard { text: "hi".into() },
            ),
            (r#"{"t":"ack","seq":7}"#, ClientMessage::Ack { seq: 7 }),
            (r#"{"t":"refresh"}"#, ClientMessage::Refresh),
        ];
        for (text, want) in cases {
            assert_eq!(parse_client_message(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_bad_client_messages() {
        for text in [
            "",
            "null",
            "{}",
            r#"{"t":"key"}"#,
            r#"{"t":"key","keysym":-1,"down":true}"#,
            r#"{"t":"pointer","x":1,"y":1,"buttons":300}"#,
            r#"{"t":"launch_missiles"}"#,
            "[1,2,3]",
            "\u{0}",
        ] {
            assert!(
                matches!(parse_client_message(text), Err(WireError::Malformed(_))),
                "{text:?}"
            );
        }
        let big = format!(
            r#"{{"t":"clipboard","text":"{}"}}"#,
            "a".repeat(MAX_CLIENT_MESSAGE)
        );
        assert!(matches!(
            parse_client_message(&big),
            Err(WireError::TooLarge(_))
        ));
        let clip = format!(
            r#"{{"t":"clipboard","text":"{}"}}"#,
            "a".repeat(MAX_CLIPBOARD_BYTES + 1)
        );
        assert!(matches!(
            parse_client_message(&clip),
            Err(WireError::ClipboardTooLarge(_))
        ));
    }

    #[test]
    fn binary_round_trip() {
        let mut out = Vec::new();
        let r = Rect::new(1, 2, 300, 400);
        write_rect_header(&mut out, ImageEncoding::Png, r).unwrap();
        out.extend_from_slice(b"png");
        assert_eq!(
            decode_server_binary(&out).unwrap(),
            ServerBinary::Rect {
                encoding: 1,
                rect: r,
                data: b"png"
            }
        );
        assert_eq!(
            decode_server_binary(&frame_end(9)).unwrap(),
            ServerBinary::FrameEnd { seq: 9 }
        );
        assert!(
            write_rect_header(&mut out, ImageEncoding::Png, Rect::new(70_000, 0, 1, 1)).is_err()
        );
        assert!(decode_server_binary(&[1, 1, 0]).is_err());
        assert!(decode_server_binary(&[]).is_err());
    }

    #[test]
    fn copy_round_trip_and_hostile_lengths() {
        let (dst, src) = (Rect::new(5, 6, 70, 80), Rect::new(65_535, 2, 70, 80));
        let msg = copy_message(dst, src).unwrap();
        assert_eq!(
            msg,
            [3, 0, 5, 0, 6, 0xff, 0xff, 0, 2, 0, 70, 0, 80],
            "kind, dst x y, src x y, w h"
        );
        assert_eq!(
            decode_server_binary(&msg).unwrap(),
            ServerBinary::Copy { dst, src }
        );
        // The destination takes the source's size whatever `dst` said.
        let odd = copy_message(Rect::new(1, 1, 9, 9), src).unwrap();
        assert_eq!(
            decode_server_binary(&odd).unwrap(),
            ServerBinary::Copy {
                dst: Rect::new(1, 1, 70, 80),
                src
            }
        );
        assert!(copy_message(Rect::new(70_000, 0, 0, 0), src).is_err());
        assert!(copy_message(dst, Rect::new(0, 0, 70_000, 1)).is_err());
        // Cut short or padded: refused, never read past the end.
        for len in 0..msg.len() {
            assert!(decode_server_binary(&msg[..len]).is_err(), "{len}");
        }
        let mut long = msg.to_vec();
        long.push(0);
        assert!(decode_server_binary(&long).is_err());
    }

    #[test]
    fn server_messages_are_tagged_json() {
        let m = ServerMessage::Error {
            code: ErrorCode::TargetAuthFailed,
            message: "wrong password".into(),
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"error","code":"target_auth_failed","message":"wrong password"}"#
        );
        assert_eq!(ServerMessage::Bell.to_json(), r#"{"type":"bell"}"#);
    }
}
