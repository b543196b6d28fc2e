//! Reading a recording back: walking its manifest, checking the chain, signatures and data.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::manifest::{
    chain_next, check_line, fingerprint, Body, Entry, Line, LineProblem, Span, CHAIN_START, EVENTS,
    MANIFEST, MAX_LINE, THUMBS,
};
use crate::storage::{check_name, read_all, RecordingStorage, StorageError};

/// Largest manifest read (a day-long recording has ~90k lines of ~700 bytes).
pub const MAX_MANIFEST: u64 = 512 * 1024 * 1024;
/// Largest single span read and hashed.
pub const MAX_SPAN: u64 = 256 * 1024 * 1024;

/// What to check while walking.
#[derive(Debug, Clone, Copy)]
pub enum Depth<'a> {
    /// Structure and chain only (fast; for listing and serving).
    Structure,
    /// Also signatures against this key and every byte's hash.
    Full(&'a VerifyingKey),
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Manifest line (segment) number where it is.
    pub seq: u64,
    /// What is wrong, for people.
    pub what: String,
}

/// The result of walking a recording.
#[derive(Debug, Default)]
pub struct Scan {
    /// Lines that checked out, in order.
    pub bodies: Vec<Body>,
    /// Chain value after the last good line.
    pub chain: [u8; 32],
    /// Bytes of the manifest covered by good lines.
    pub manifest_len: u64,
    /// For each file, where the listed bytes end.
    pub file_ends: BTreeMap<String, u64>,
    /// The first problem, if any: lines after it are not read.
    pub problem: Option<Problem>,
    /// A torn last line (no newline) that was ignored.
    pub torn_tail: bool,
}

impl Scan {
    /// True when the last good line is an end line.
    pub fn is_ended(&self) -> bool {
        matches!(
            self.bodies.last().map(|b| &b.entry),
            Some(Entry::End { .. })
        )
    }
}

/// Walks a recording's manifest.
pub fn scan(
    storage: &dyn RecordingStorage,
    id: &str,
    depth: Depth<'_>,
) -> Result<Scan, StorageError> {
    let manifest = read_all(storage, id, MANIFEST, MAX_MANIFEST)?;
    let mut s = Scan {
        chain: CHAIN_START,
        ..Scan::default()
    };
    let mut rest: &[u8] = &manifest;
    let mut seq = 0u64;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            s.torn_tail = true;
            break;
        };
        let raw = &rest[..nl];
        rest = &rest[nl + 1..];
        let checked = match depth {
            Depth::Full(key) => check_line(raw, seq, &s.chain, key),
            Depth::Structure => structure_only(raw, seq, &s.chain),
        };
        let (body, chain) = match checked {
            Ok(ok) => ok,
            Err(p) => {
                s.problem = Some(Problem {
                    seq,
                    what: format!("manifest line {seq}: {p}"),
                });
                break;
            }
        };
        if let Err(what) = check_entry(storage, id, &body, &mut s, depth) {
            s.problem = Some(Problem { seq, what });
            break;
        }
        if let (
            Depth::Full(key),
            Entry::Header {
                key: header_key, ..
            },
        ) = (depth, &body.entry)
        {
            if *header_key != hex::encode(key.as_bytes()) {
                s.problem = Some(Problem {
                    seq,
                    what: format!(
                        "the recording names a different signing key than the one given \
                         (expected fingerprint {})",
                        fingerprint(key)
                    ),
                });
                break;
            }
        }
        if s.is_ended() {
            s.problem = Some(Problem {
                seq,
                what: format!("line {seq} follows the end line"),
            });
            break;
        }
        s.bodies.push(body);
        s.chain = chain;
        s.manifest_len = (manifest.len() - rest.len()) as u64;
        seq += 1;
    }
    if s.problem.is_none() && s.bodies.is_empty() {
        s.problem = Some(Problem {
            seq: 0,
            what: "the manifest has no header".into(),
        });
    }
    Ok(s)
}

fn structure_only(raw: &[u8], seq: u64, prev: &[u8; 32]) -> Result<(Body, [u8; 32]), LineProblem> {
    if raw.len() > MAX_LINE {
        return Err(LineProblem::Malformed("line too long".into()));
    }
    let line: Line =
        serde_json::from_slice(raw).map_err(|e| LineProblem::Malformed(e.to_string()))?;
    if line.body.seq != seq {
        return Err(LineProblem::Sequence {
            expected: seq,
            found: line.body.seq,
        });
    }
    let chain = chain_next(prev, &line.body);
    if hex::encode(chain) != line.chain {
        return Err(LineProblem::Chain);
    }
    Ok((line.body, chain))
}

fn check_entry(
    storage: &dyn RecordingStorage,
    id: &str,
    body: &Body,
    s: &mut Scan,
    depth: Depth<'_>,
) -> Result<(), String> {
    let seq = body.seq;
    let mut spans: Vec<(&str, &Span)> = Vec::new();
    match &body.entry {
        Entry::Header { .. } if seq == 0 => {}
        Entry::Header { .. } => return Err(format!("line {seq} is a second header")),
        _ if seq == 0 => return Err("the first line is not a header".into()),
        Entry::Init { video, part, .. } => {
            if video.offset != 0 || video.file != crate::manifest::video_file(*part) {
                return Err(format!(
                    "line {seq}: part {part} does not start its own file"
                ));
            }
            spans.push(("initialisation segment", video));
        }
        Entry::Segment {
            video,
            events,
            thumb,
            part,
            ..
        } => {
            if video.file != crate::manifest::video_file(*part) {
                return Err(format!("segment {seq}: video outside its part's file"));
            }
            spans.push(("video", video));
            if let Some(e) = events {
                spans.push(("events", e));
            }
            if let Some(t) = thumb {
                spans.push(("thumbnail", t));
            }
        }
        Entry::Events { events } => spans.push(("events", events)),
        Entry::End { .. } => {}
    }
    for (what, span) in spans {
        if check_name(&span.file).is_err()
            || (what == "events" && span.file != EVENTS)
            || (what == "thumbnail" && span.file != THUMBS)
        {
            return Err(format!("segment {seq}: {what} in an unexpected file"));
        }
        let expected = s.file_ends.get(&span.file).copied().unwrap_or(0);
        if span.offset != expected {
            return Err(format!(
                "segment {seq}: {what} starts at byte {} of {} but the previous segment ended \
                 at {expected} (bytes missing or inserted)",
                span.offset, span.file
            ));
        }
        s.file_ends.insert(span.file.clone(), span.end());
        if let Depth::Full(_) = depth {
            if span.len > MAX_SPAN {
                return Err(format!("segment {seq}: {what} is too large to check"));
            }
            let bytes = match storage.read(id, &span.file, span.offset, span.len) {
                Ok(b) => b,
                Err(StorageError::NotFound(_)) => {
                    return Err(format!(
                        "segment {seq}: {what} is missing ({} ends before byte {})",
                        span.file,
                        span.end()
                    ))
                }
                Err(e) => return Err(format!("segment {seq}: cannot read {what}: {e}")),
            };
            if hex::encode(Sha256::digest(&bytes)) != span.sha256 {
                return Err(format!(
                    "segment {seq}: {what} altered ({} bytes {}..{})",
                    span.file,
                    span.offset,
                    span.end()
                ));
            }
        }
    }
    Ok(())
}
