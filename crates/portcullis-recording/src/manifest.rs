//! The manifest: an append-only, hash-chained, signed list of everything a recording holds.
//!
//! Each line of `manifest.jsonl` is `{"body": {...}, "chain": hex, "sig": hex}`. `chain` is
//! SHA-256 of the previous line's chain (32 zero bytes for the first) followed by the body's JSON;
//! `sig` is the gateway's Ed25519 signature of `chain`. A body names byte ranges of the
//! recording's other files with their SHA-256, so changing, removing or reordering any byte of
//! video, events or thumbnails, or any manifest line, breaks the chain or a range's hash.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Format version written in the header.
pub const VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.jsonl";
/// The event track's file name.
pub const EVENTS: &str = "events.jsonl";
/// The thumbnails' file name (JPEGs back to back, located by the manifest).
pub const THUMBS: &str = "thumbs.bin";
/// Longest manifest line accepted when reading.
pub const MAX_LINE: usize = 64 * 1024;

/// The video file of a part.
pub fn video_file(part: u32) -> String {
    format!("video-{part}.mp4")
}

/// Bytes of one file of the recording, with their hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// File name inside the recording.
    pub file: String,
    /// Where the bytes start.
    pub offset: u64,
    /// How many.
    pub len: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
}

impl Span {
    /// The span of `bytes` written at `offset` of `file`.
    pub fn of(file: &str, offset: u64, bytes: &[u8]) -> Self {
        Self {
            file: file.to_owned(),
            offset,
            len: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// Who and what a recording is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionMeta {
    /// The session id (also the recording id).
    pub session: String,
    /// Gateway user.
    pub user: String,
    /// That user's immutable id: the recording is theirs, not a later account's of the same
    /// name. Empty in recordings made before users had ids.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// Target name.
    pub target: String,
    /// The user's address.
    pub client_addr: String,
    /// Unix ms at the recording's time 0.
    pub started_at_ms: i64,
    /// Whether the gateway meant to read this session's screen for search when it recorded it
    /// (`[ocr]` on, with `recordings`): a recording made with reading turned off is not read
    /// afterwards either (catch-up). Absent in recordings made before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_search: Option<bool>,
}

/// How a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndState {
    /// The session ended and the recorder closed the recording.
    Complete,
    /// The gateway stopped without closing it; found and closed at the next start.
    Incomplete,
    /// The gateway had closed it (the audit trail says so), yet its end line was gone when the
    /// next start found it: lines were removed from its end. Closed again by that start; the
    /// reason says what the trail recorded.
    FoundCut,
}

/// What one manifest line says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// First line.
    Header {
        /// [`VERSION`].
        version: u32,
        /// The session.
        meta: SessionMeta,
        /// The signing key's public half, hex.
        key: String,
    },
    /// A video part begins (one resolution): its initialisation segment.
    Init {
        /// Part number, from 1.
        part: u32,
        /// Video width.
        width: u32,
        /// Video height.
        height: u32,
        /// RFC 6381 codec string, e.g. `avc1.64001f`.
        codec: String,
        /// The ftyp+moov bytes at the start of the part's file.
        video: Span,
    },
    /// A media segment (one MP4 fragment), with the events and thumbnail written alongside.
    Segment {
        /// Part it belongs to.
        part: u32,
        /// Start, ms on the recording clock.
        start_ms: u64,
        /// End, ms on the recording clock.
        end_ms: u64,
        /// Starts with a keyframe.
        key: bool,
        /// Frames in it.
        frames: u32,
        /// The moof+mdat bytes.
        video: Span,
        /// Event-track lines written with it.
        events: Option<Span>,
        /// A thumbnail (JPEG) of its first frame.
        thumb: Option<Span>,
    },
    /// Event-track lines written without video (nothing changed on screen).
    Events {
        /// The lines.
        events: Span,
    },
    /// Last line.
    End {
        /// How it ended.
        state: EndState,
        /// Why.
        reason: String,
        /// Length, ms on the recording clock.
        duration_ms: u64,
        /// Unix ms when this line was written.
        ended_at_ms: i64,
        /// Bytes after the last listed range that recovery cut off (a torn write).
        discarded_bytes: u64,
        /// The session's risk score: the scores of the risk rules that fired, each rule once,
        /// at most 100.
        #[serde(default, skip_serializing_if = "is_zero")]
        risk_score: u32,
        /// The risk rules that fired, in the order they first did.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        risk_rules: Vec<String>,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A manifest line's signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// 0 for the header, then +1 per line.
    pub seq: u64,
    /// What it says.
    pub entry: Entry,
}

/// One line as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The content.
    pub body: Body,
    /// Hex SHA-256 chain value up to and including this line.
    pub chain: String,
    /// Hex Ed25519 signature of the chain value.
    pub sig: String,
}

/// The chain value before the first line.
pub const CHAIN_START: [u8; 32] = [0; 32];

const SIG_CONTEXT: &[u8] = b"portcullis recording chain v1:";

/// The chain value after `body`.
pub fn chain_next(prev: &[u8; 32], body: &Body) -> [u8; 32] {
    let json = serde_json::to_vec(body).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev);
    h.update(&json);
    h.finalize().into()
}

pub(crate) fn signed_message(chain: &[u8; 32]) -> Vec<u8> {
    let mut m = SIG_CONTEXT.to_vec();
    m.extend_from_slice(chain);
    m
}

/// Seals `body` after `prev`: returns the line (with its trailing newline) and the new chain.
pub fn seal(prev: &[u8; 32], body: Body, key: &SigningKey) -> (Vec<u8>, [u8; 32]) {
    let chain = chain_next(prev, &body);
    let sig = key.sign(&signed_message(&chain));
    let line = Line {
        body,
        chain: hex::encode(chain),
        sig: hex::encode(sig.to_bytes()),
    };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    (bytes, chain)
}

/// Why a line does not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// Not a manifest line.
    Malformed(String),
    /// Out of sequence (a line missing or moved).
    Sequence {
        /// Expected seq.
        expected: u64,
        /// Found seq.
        found: u64,
    },
    /// The chain value does not follow from the previous line and this body.
    Chain,
    /// The signature is not the key's.
    Signature,
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineProblem::Malformed(e) => write!(f, "not a valid manifest line ({e})"),
            LineProblem::Sequence { expected, found } => write!(
                f,
                "line {found} where line {expected} should be (a line is missing or moved)"
            ),
            LineProblem::Chain => write!(f, "its hash chain does not follow from the line before"),
            LineProblem::Signature => write!(f, "its signature is not the gateway key's"),
        }
    }
}

/// Parses one line and checks it against the previous chain value and the key. Returns the body
/// and the new chain value.
pub fn check_line(
    raw: &[u8],
    expected_seq: u64,
    prev: &[u8; 32],
    key: &VerifyingKey,
) -> Result<(Body, [u8; 32]), LineProblem> {
    if raw.len() > MAX_LINE {
        return Err(LineProblem::Malformed(format!(
            "{} bytes, more than {MAX_LINE}",
            raw.len()
        )));
    }
    let line: Line =
        serde_json::from_slice(raw).map_err(|e| LineProblem::Malformed(e.to_string()))?;
    if line.body.seq != expected_seq {
        return Err(LineProblem::Sequence {
            expected: expected_seq,
            found: line.body.seq,
        });
    }
    let chain = chain_next(prev, &line.body);
    if hex::encode(chain) != line.chain {
        return Err(LineProblem::Chain);
    }
    let sig = hex::decode(&line.sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(LineProblem::Signature)?;
    key.verify(&signed_message(&chain), &sig)
        .map_err(|_| LineProblem::Signature)?;
    Ok((line.body, chain))
}

/// A key's short fingerprint for people: the first 16 hex digits of SHA-256 of the public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
        .chars()
        .take(16)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn body(seq: u64) -> Body {
        Body {
            seq,
            entry: Entry::Events {
                events: Span::of(EVENTS, 0, b"x"),
            },
        }
    }

    #[test]
    fn a_sealed_line_checks_out_and_any_change_is_caught() {
        let k = key();
        let (line, chain) = seal(&CHAIN_START, body(0), &k);
        let raw = &line[..line.len() - 1];
        let (b, c) = check_line(raw, 0, &CHAIN_START, &k.verifying_key()).unwrap();
        assert_eq!(b, body(0));
        assert_eq!(c, chain);

        let text = String::from_utf8(raw.to_vec()).unwrap();
        let altered = text.replace("\"len\":1", "\"len\":2");
        assert_eq!(
            check_line(altered.as_bytes(), 0, &CHAIN_START, &k.verifying_key()).unwrap_err(),
            LineProblem::Chain
        );
        assert!(matches!(
            check_line(raw, 1, &CHAIN_START, &k.verifying_key()).unwrap_err(),
            LineProblem::Sequence { .. }
        ));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            check_line(raw, 0, &CHAIN_START, &other.verifying_key()).unwrap_err(),
            LineProblem::Signature
        );
        assert!(matches!(
            check_line(b"{}", 0, &CHAIN_START, &k.verifying_key()).unwrap_err(),
            LineProblem::Malformed(_)
        ));
    }
}
