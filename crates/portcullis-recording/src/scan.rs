//! Reading a recording back: walking its manifest, checking the chain, signatures and data.
//!
//! A damaged stretch in the middle (a line that does not check out, or bytes that do not match
//! their hash) does not stop the walk: it is noted as [`Damage`] and the walk picks up again at
//! the next line signed with the key, so that what follows stays listed and servable. Lines after
//! a damaged one are signed, but nothing proves they belong after the lines before it (the chain
//! runs through the damage): a recording with damage is never called intact.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
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
    /// Signatures against this key, the data not read (the reader checks each piece it reads
    /// against the hash the signed line gives it: catch-up OCR).
    Signed(&'a VerifyingKey),
}

impl<'a> Depth<'a> {
    /// The key lines are checked against, if they are.
    fn key(self) -> Option<&'a VerifyingKey> {
        match self {
            Depth::Full(key) | Depth::Signed(key) => Some(key),
            Depth::Structure => None,
        }
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Manifest line (segment) number where it is.
    pub seq: u64,
    /// What is wrong, for people.
    pub what: String,
}

/// Bytes of a file that no checked line vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The file.
    pub file: String,
    /// First byte.
    pub from: u64,
    /// One past the last byte.
    pub to: u64,
}

/// A stretch of a recording that does not check out, with the walk going on after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The first manifest line (segment) concerned.
    pub seq: u64,
    /// The line the walk picked up again at (`None`: nothing after it checked out).
    pub resumed_at: Option<u64>,
    /// Bytes of `manifest.jsonl` the damaged lines take (empty when lines are missing, or when
    /// a line is fine but the bytes it names are not).
    pub manifest: (u64, u64),
    /// What is wrong, for people.
    pub what: String,
    /// Data bytes only the damaged lines vouched for.
    pub unverified: Vec<Unverified>,
    /// Lines after the damage that are signed with the key but whose content cannot be tied to
    /// the chain (the chain value before them is lost): kept, not counted as checked.
    pub unproven: Vec<u64>,
    /// The walk picked up again from the chain value before the damage (a line inserted, say):
    /// the lines after it are proven to follow the lines before. `false`: it picked up from a
    /// line signed with the key whose place cannot be proven (a line's body does not name its
    /// recording, so it may come from another recording signed with the same key): the lines
    /// from there on are kept and chain to each other, but are not proven to be this
    /// recording's.
    pub tied: bool,
}

impl Damage {
    /// One sentence naming the damage and what it leaves unproven.
    pub fn describe(&self) -> String {
        let mut s = self.what.clone();
        let (from, to) = self.manifest;
        if to > from {
            s.push_str(&format!(" ({MANIFEST} bytes {from}..{to})"));
        }
        match self.resumed_at {
            Some(next) if next > self.seq.saturating_add(1) => s.push_str(&format!(
                "; lines {}..{} cannot be checked; the walk resumes at line {next}",
                self.seq,
                next - 1
            )),
            Some(next) if next == self.seq.saturating_add(1) && to > from => {
                s.push_str(&format!("; the walk resumes at line {next}"))
            }
            Some(_) => {}
            None => s.push_str("; no line after it checks out"),
        }
        if let (Some(next), false) = (self.resumed_at, self.tied) {
            s.push_str(&format!(
                "; from line {next} on, the lines are signed with the key and chain to each \
                 other, but nothing ties them to this recording's lines before the damage (they \
                 may come from another recording): kept, not proven"
            ));
        }
        for seq in &self.unproven {
            s.push_str(&format!(
                "; line {seq} is signed with the key, but what it says cannot be tied to the \
                 chain after the damage"
            ));
        }
        for u in &self.unverified {
            s.push_str(&format!(
                "; {} bytes {}..{} are vouched for by no line that checks out",
                u.file, u.from, u.to
            ));
        }
        s
    }
}

/// The result of walking a recording.
#[derive(Debug, Default)]
pub struct Scan {
    /// Lines that checked out, in order (with gaps where [`Scan::damage`] says so).
    pub bodies: Vec<Body>,
    /// Chain value after the last good line.
    pub chain: [u8; 32],
    /// Bytes of the manifest up to the end of the last good line.
    pub manifest_len: u64,
    /// For each file, where the listed bytes end.
    pub file_ends: BTreeMap<String, u64>,
    /// A problem that stopped the walk, if any: lines after it are not read.
    pub problem: Option<Problem>,
    /// Damaged stretches the walk went past, in order. A last one with `resumed_at: None` is a
    /// damaged tail.
    pub damage: Vec<Damage>,
    /// A torn last line (no newline) that was ignored.
    pub torn_tail: bool,
    /// The first line after a damaged stretch the walk could not tie to the lines before it
    /// (see [`Damage::tied`]): it and every line after it are kept in [`Scan::bodies`] but not
    /// proven to belong to this recording.
    pub untied_from: Option<u64>,
}

impl Scan {
    /// True when the last good line is an end line.
    pub fn is_ended(&self) -> bool {
        matches!(
            self.bodies.last().map(|b| &b.entry),
            Some(Entry::End { .. })
        )
    }

    /// The first thing wrong: the stopping problem or the first damage, whichever comes first.
    pub fn first_problem(&self) -> Option<Problem> {
        let damage = self.damage.first().map(|d| Problem {
            seq: d.seq,
            what: d.describe(),
        });
        match (damage, &self.problem) {
            (Some(d), Some(p)) if p.seq < d.seq => Some(p.clone()),
            (Some(d), _) => Some(d),
            (None, p) => p.clone(),
        }
    }

    /// The last line that checked out, and the manifest bytes after it hold no line that does
    /// (a damaged tail, if any, is the last damage).
    pub fn tail_damage(&self) -> Option<&Damage> {
        self.damage.last().filter(|d| d.resumed_at.is_none())
    }
}

/// A damaged stretch being walked over.
struct Open {
    damage: Damage,
    /// The chain value after the last line before the damage: a line whose body follows from
    /// it is proven to be the line after them. (Chain values written in the damaged text prove
    /// nothing: anyone can write one, another recording's say.)
    before: [u8; 32],
    /// A signed line whose body could not be tied to its chain value: the next line can be
    /// checked from it. `(chain, next seq)`.
    anchor: Option<([u8; 32], u64)>,
}

/// Walks a recording's manifest. An I/O error reading it or a byte it names (other than a file
/// that is too short, which is damage) is an error: it proves nothing about the recording, and
/// recovery must not cut anything because of it.
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
    let mut pos = 0usize;
    let mut seq = 0u64;
    let mut open: Option<Open> = None;
    // After a damaged line, each file's next span may start after its last listed byte (the
    // bytes between were named by the damaged lines): files already picked up again.
    let mut resync_files: Option<(usize, BTreeSet<String>)> = None;
    while pos < manifest.len() {
        let Some(nl) = manifest[pos..].iter().position(|&b| b == b'\n') else {
            s.torn_tail = true;
            break;
        };
        let start = pos as u64;
        let raw = &manifest[pos..pos + nl];
        pos += nl + 1;
        let end = pos as u64;

        let accepted = match open.as_mut() {
            None => match check(raw, seq, &s.chain, depth) {
                Ok((body, chain)) => Some((body, chain, true)),
                Err(p) if seq == 0 => {
                    s.problem = Some(Problem {
                        seq,
                        what: format!("manifest line {seq}: {p}"),
                    });
                    break;
                }
                Err(p) => {
                    let mut o = Open {
                        damage: Damage {
                            seq,
                            resumed_at: None,
                            manifest: (start, start),
                            what: format!("manifest line {seq}: {p}"),
                            unverified: Vec::new(),
                            unproven: Vec::new(),
                            tied: true,
                        },
                        before: s.chain,
                        anchor: None,
                    };
                    // The line itself may be fine and one before it missing.
                    let found = step(raw, end, &mut o, depth);
                    open = Some(o);
                    found
                }
            },
            Some(o) => step(raw, end, o, depth),
        };
        let Some((body, chain, tied)) = accepted else {
            continue;
        };
        if let Some(o) = open.take() {
            let mut d = o.damage;
            d.resumed_at = Some(body.seq);
            d.tied = tied;
            if !tied && s.untied_from.is_none() {
                s.untied_from = Some(body.seq);
            }
            s.damage.push(d);
            resync_files = Some((s.damage.len() - 1, BTreeSet::new()));
        }
        if s.is_ended() {
            s.problem = Some(Problem {
                seq: body.seq,
                what: format!("line {} follows the end line", body.seq),
            });
            break;
        }
        match check_entry(storage, id, &body, &mut s, depth, &mut resync_files) {
            Ok(()) => {}
            Err(EntryProblem::Fatal(what)) => {
                s.problem = Some(Problem {
                    seq: body.seq,
                    what,
                });
                break;
            }
            Err(EntryProblem::Io(e)) => return Err(e),
            Err(EntryProblem::Data(what)) => s.damage.push(Damage {
                seq: body.seq,
                resumed_at: Some(body.seq.saturating_add(1)),
                manifest: (start, start),
                what,
                unverified: Vec::new(),
                unproven: Vec::new(),
                tied: true,
            }),
        }
        if let (
            Some(key),
            Entry::Header {
                key: header_key, ..
            },
        ) = (depth.key(), &body.entry)
        {
            if *header_key != hex::encode(key.as_bytes()) {
                s.problem = Some(Problem {
                    seq: body.seq,
                    what: format!(
                        "the recording names a different signing key than the one given \
                         (expected fingerprint {})",
                        fingerprint(key)
                    ),
                });
                break;
            }
        }
        seq = body.seq.saturating_add(1);
        s.bodies.push(body);
        s.chain = chain;
        s.manifest_len = end;
    }
    if let Some(o) = open {
        s.damage.push(o.damage);
    }
    if s.problem.is_none() && s.bodies.is_empty() {
        s.problem = Some(Problem {
            seq: 0,
            what: "the manifest has no header".into(),
        });
    }
    Ok(s)
}

fn check(
    raw: &[u8],
    seq: u64,
    prev: &[u8; 32],
    depth: Depth<'_>,
) -> Result<(Body, [u8; 32]), LineProblem> {
    match depth.key() {
        Some(key) => check_line(raw, seq, prev, key),
        None => structure_only(raw, seq, prev),
    }
}

/// One line inside a damaged stretch: picks the walk up again (and says whether from the chain
/// before the damage), or notes the line as damaged (the manifest range grows) or as signed but
/// unprovable (an anchor).
fn step(raw: &[u8], end: u64, o: &mut Open, depth: Depth<'_>) -> Option<(Body, [u8; 32], bool)> {
    match resync(raw, o, depth) {
        Resync::Proven(body, chain, tied) => Some((*body, chain, tied)),
        // The line that failed its check, signed but with altered content: damaged.
        Resync::Anchor(seq) if seq == o.damage.seq => {
            o.damage.manifest.1 = end;
            None
        }
        Resync::Anchor(seq) => {
            o.damage.unproven.push(seq);
            None
        }
        Resync::Bad => {
            o.damage.manifest.1 = end;
            None
        }
    }
}

enum Resync {
    /// The line checks out: the walk goes on from it; `true` when it follows from the chain
    /// before the damage (not from an anchor).
    Proven(Box<Body>, [u8; 32], bool),
    /// The line is signed but its content cannot be tied to the chain: the next line is checked
    /// from its chain value.
    Anchor(u64),
    /// Not a line that checks out.
    Bad,
}

/// Tries to pick the walk up again at `raw`, inside a damaged stretch. Returns the line when
/// it is proven (its body follows from a known chain value and, in full depth, its signature is
/// the key's); a signed line whose body cannot be tied becomes the anchor for the next line.
fn resync(raw: &[u8], o: &mut Open, depth: Depth<'_>) -> Resync {
    if let Some((chain, next)) = o.anchor {
        if let Ok((body, chain)) = check(raw, next, &chain, depth) {
            return Resync::Proven(Box::new(body), chain, false);
        }
    }
    if raw.len() > MAX_LINE {
        return Resync::Bad;
    }
    let Ok(line) = serde_json::from_slice::<Line>(raw) else {
        return Resync::Bad;
    };
    let min_seq = o.anchor.map_or(o.damage.seq, |(_, next)| next);
    if line.body.seq < min_seq {
        return Resync::Bad;
    }
    let Some(chain) = hex::decode(&line.chain)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
    else {
        return Resync::Bad;
    };
    if let Some(key) = depth.key() {
        let signed = hex::decode(&line.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .is_some_and(|sig| {
                key.verify(
                    &crate::manifest::signed_message(&chain),
                    &Signature::from_bytes(&sig),
                )
                .is_ok()
            });
        if !signed {
            return Resync::Bad;
        }
    }
    if chain_next(&o.before, &line.body) == chain {
        return Resync::Proven(Box::new(line.body), chain, true);
    }
    o.anchor = Some((chain, line.body.seq.saturating_add(1)));
    Resync::Anchor(line.body.seq)
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

enum EntryProblem {
    /// The manifest's structure is wrong: the walk stops.
    Fatal(String),
    /// The line is fine, the bytes it names are not.
    Data(String),
    /// The bytes could not be read (an I/O error, not a short file): nothing can be concluded
    /// about them, so the walk fails rather than call them damaged.
    Io(StorageError),
}

fn check_entry(
    storage: &dyn RecordingStorage,
    id: &str,
    body: &Body,
    s: &mut Scan,
    depth: Depth<'_>,
    resync_files: &mut Option<(usize, BTreeSet<String>)>,
) -> Result<(), EntryProblem> {
    use EntryProblem::{Data, Fatal};
    let seq = body.seq;
    let mut spans: Vec<(&str, &Span)> = Vec::new();
    match &body.entry {
        Entry::Header { .. } if seq == 0 => {}
        Entry::Header { .. } => return Err(Fatal(format!("line {seq} is a second header"))),
        _ if seq == 0 => return Err(Fatal("the first line is not a header".into())),
        Entry::Init { video, part, .. } => {
            if video.offset != 0 || video.file != crate::manifest::video_file(*part) {
                return Err(Fatal(format!(
                    "line {seq}: part {part} does not start its own file"
                )));
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
                return Err(Fatal(format!(
                    "segment {seq}: video outside its part's file"
                )));
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
    let mut data_problem = None;
    for (what, span) in spans {
        if check_name(&span.file).is_err()
            || (what == "events" && span.file != EVENTS)
            || (what == "thumbnail" && span.file != THUMBS)
        {
            return Err(Fatal(format!(
                "segment {seq}: {what} in an unexpected file"
            )));
        }
        let expected = s.file_ends.get(&span.file).copied().unwrap_or(0);
        let resumed = match resync_files {
            Some((at, done)) => done.insert(span.file.clone()).then_some(*at),
            None => None,
        };
        if span.offset != expected && !(resumed.is_some() && span.offset > expected) {
            return Err(Fatal(format!(
                "segment {seq}: {what} starts at byte {} of {} but the previous segment ended \
                 at {expected} (bytes missing or inserted)",
                span.offset, span.file
            )));
        }
        if span.offset > expected {
            if let Some(d) = resumed.and_then(|at| s.damage.get_mut(at)) {
                d.unverified.push(Unverified {
                    file: span.file.clone(),
                    from: expected,
                    to: span.offset,
                });
            }
        }
        s.file_ends.insert(span.file.clone(), span.end());
        if let (Depth::Full(_), None) = (depth, &data_problem) {
            if span.len > MAX_SPAN {
                data_problem = Some(format!("segment {seq}: {what} is too large to check"));
                continue;
            }
            match storage.read(id, &span.file, span.offset, span.len) {
                Ok(bytes) => {
                    if hex::encode(Sha256::digest(&bytes)) != span.sha256 {
                        data_problem = Some(format!(
                            "segment {seq}: {what} altered ({} bytes {}..{})",
                            span.file,
                            span.offset,
                            span.end()
                        ));
                    }
                }
                Err(StorageError::NotFound(_)) => {
                    data_problem = Some(format!(
                        "segment {seq}: {what} is missing ({} ends before byte {})",
                        span.file,
                        span.end()
                    ))
                }
                Err(e) => return Err(EntryProblem::Io(e)),
            }
        }
    }
    match data_problem {
        Some(p) => Err(Data(p)),
        None => Ok(()),
    }
}
