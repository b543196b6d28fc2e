//! Checking the chain (and, given the gateway's key, its seals) offline, and the segment scan
//! that opening the log shares with it.

use std::io;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use thiserror::Error;

use crate::digest::Digest;
use crate::error::{BadRecord, Problem};
use crate::record::{parse_line, Chain, Entry, Kind, LineError, Seal};
use crate::segment::{list_segments, Ending, Lines, SegmentFile};

/// Unacknowledged bytes a crash left at the end of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// The first torn line, from 1.
    pub line: u64,
    /// Its byte offset: the file's valid length.
    pub offset: u64,
    /// How many bytes follow from there.
    pub bytes: u64,
}

/// What [`verify`] found in a log whose chain is whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Segment files read.
    pub files: usize,
    /// The last record's seq (0 for an empty log).
    pub last_seq: u64,
    /// The last record's hash ([`GENESIS`] for an empty log). Comparing it with a copy kept
    /// elsewhere (a SIEM, a printout) is what shows that nothing was cut off the end: a chain
    /// alone cannot.
    ///
    /// [`GENESIS`]: crate::GENESIS
    pub last_hash: Digest,
    /// Unacknowledged bytes at the end of the last segment, which opening the log cuts: a crash
    /// (or a write in progress while verifying), not a broken chain.
    pub torn_tail: Option<TornTail>,
    /// Whether seals were checked against a key. Without one only the chain was checked, which
    /// proves nothing against someone who can write the files (they can recompute every hash).
    pub key_checked: bool,
    /// Records carrying a seal (each one checked when [`VerifyReport::key_checked`]).
    pub sealed: u64,
    /// The seq of the last sealed record.
    pub last_sealed_seq: Option<u64>,
    /// Records after the last seal, accepted only because a running gateway holds the log (a
    /// write in progress: its seal comes with its last record). 0 when the last record is sealed.
    pub unsealed_tail: u64,
    /// Stretches of records that their writer never sealed and that an `audit_sealed` record
    /// sealed as found when the log was next opened: a log from before sealing, a crash in the
    /// middle of a write, or records added or changed while the gateway was down.
    pub sealed_as_found: Vec<SealedAsFound>,
    /// Unacknowledged records that opening the log set aside (see [`SetAside`]).
    pub set_aside: Vec<SetAside>,
}

/// Records after a log's last seal (what a crash in the middle of a write leaves; records added,
/// or stripped of their seals, while the gateway was down look the same): opening the log copied
/// them to a quarantine file in its directory, cut them, and recorded that (`audit_set_aside`,
/// this record) before anything else. Not part of the chain; kept, vouched for by nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The `audit_set_aside` record's seq.
    pub by_seq: u64,
    /// The first record set aside.
    pub from_seq: u64,
    /// The last one.
    pub to_seq: u64,
    /// The quarantine file's name, in the log's directory.
    pub file: String,
    /// The file is there and holds what the record says (its length and SHA-256): deleting or
    /// editing the only copy of records set aside shows.
    pub file_intact: bool,
}

/// Records an `audit_sealed` record vouches for that were not sealed when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedAsFound {
    /// The first unsealed record's seq.
    pub from_seq: u64,
    /// The last one's (the record the `audit_sealed` record covers).
    pub to_seq: u64,
    /// The `audit_sealed` record's seq.
    pub by_seq: u64,
}

/// Why [`verify`] failed.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("read {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The first bad record: everything before it verified.
    #[error("audit chain broken at {0}")]
    Broken(Box<BadRecord>),
}

/// Checks the whole chain of the log in `dir`, segment by segment in order: each record's hash,
/// its seq (one more than the last), its prev (the last one's hash) and its time (never going
/// back), and that the first record is seq 1 chained from [`GENESIS`]. Stops at the first bad
/// record and names it. Needs no lock: it may run while the log is being appended to.
///
/// With the gateway's `key`, also: every seal present must be that key's seal of its record
/// ([`Problem::BadSeal`]), and the last record must carry one ([`Problem::Unsealed`]), unless a
/// running gateway holds the log and they are at most one write's records (then the records
/// after the last seal are a write in progress, counted in [`VerifyReport::unsealed_tail`] and
/// vouched for by nothing yet). Since each hash covers the previous record, the
/// last seal vouches for the whole log: changing or removing any record means recomputing every
/// later hash, which breaks that seal. Without a key only the chain is checked.
///
/// [`GENESIS`]: crate::GENESIS
pub fn verify(dir: &Path, key: Option<&VerifyingKey>) -> Result<VerifyReport, VerifyError> {
    // A write in progress is at most one write's records, and only while a writer holds the
    // log (a lock anyone who can open its file can take: the CLI checks again a moment later).
    verify_with(dir, key, &|from, last| {
        last - from < crate::segment::MAX_BATCH_RECORDS as u64 && crate::segment::is_held(dir)
    })
}

/// [`verify`], with `in_progress(from, last)` saying whether unsealed records `from..=last` at
/// the end may be a write in progress.
pub(crate) fn verify_with(
    dir: &Path,
    key: Option<&VerifyingKey>,
    in_progress: &dyn Fn(u64, u64) -> bool,
) -> Result<VerifyReport, VerifyError> {
    let segments = list_segments(dir).map_err(|source| VerifyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut chain = Chain::genesis();
    let mut seals = Seals::new(key);
    let mut records = 0;
    let mut torn_tail = None;
    for (i, segment) in segments.iter().enumerate() {
        let position = if i + 1 == segments.len() {
            Position::Last
        } else {
            Position::Earlier
        };
        let scan = scan_segment(segment, &mut chain, &mut seals, position, OnBad::Stop).map_err(
            |source| VerifyError::Io {
                path: segment.path.clone(),
                source,
            },
        )?;
        if let Some(bad) = scan.first_bad {
            return Err(VerifyError::Broken(Box::new(bad)));
        }
        records += scan.records;
        torn_tail = scan.torn;
    }
    let mut unsealed_tail = 0;
    if let (Some(_), Some(last)) = (key, &seals.last) {
        if let Some(from) = seals.unsealed_from {
            if in_progress(from, last.seq) {
                unsealed_tail = last.seq - from + 1;
            } else {
                return Err(VerifyError::Broken(Box::new(BadRecord {
                    file: last.file.clone(),
                    line: last.line,
                    seq: Some(last.seq),
                    problem: Problem::Unsealed {
                        last_sealed: seals.last_sealed,
                    },
                })));
            }
        }
    }
    Ok(VerifyReport {
        records,
        files: segments.len(),
        last_seq: chain.next_seq - 1,
        last_hash: chain.prev,
        torn_tail,
        key_checked: key.is_some(),
        sealed: seals.sealed,
        last_sealed_seq: seals.last_sealed,
        unsealed_tail,
        sealed_as_found: seals.sealed_as_found,
        set_aside: seals
            .set_aside
            .into_iter()
            .map(|(mut aside, bytes, sha256)| {
                aside.file_intact = crate::set_aside::still_there(dir, &aside.file, bytes, &sha256);
                aside
            })
            .collect(),
    })
}

/// Where a record was found.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub(crate) file: PathBuf,
    pub(crate) line: u64,
    pub(crate) seq: u64,
}

/// A sealed record: where the seal is and what it must vouch for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealAt {
    pub(crate) seq: u64,
    pub(crate) hash: Digest,
    pub(crate) seal: Seal,
}

/// The seals seen so far along the chain.
#[derive(Debug)]
pub(crate) struct Seals<'k> {
    /// The key seals are checked against, if any.
    key: Option<&'k VerifyingKey>,
    /// Records with a seal.
    pub(crate) sealed: u64,
    /// The last sealed record's seq.
    pub(crate) last_sealed: Option<u64>,
    /// The first record after the last seal, when there is one.
    pub(crate) unsealed_from: Option<u64>,
    /// The last record seen.
    pub(crate) last: Option<Located>,
    pub(crate) sealed_as_found: Vec<SealedAsFound>,
    /// The last sealed record: its seq, hash and seal.
    pub(crate) last_seal: Option<SealAt>,
    /// Where the last sealed record's line ends: its file, and the byte after its newline.
    pub(crate) last_seal_end: Option<(PathBuf, u64)>,
    /// The `audit_set_aside` records seen, with the length and SHA-256 they give their file.
    pub(crate) set_aside: Vec<(SetAside, u64, String)>,
}

impl<'k> Seals<'k> {
    pub(crate) fn new(key: Option<&'k VerifyingKey>) -> Self {
        Self {
            key,
            sealed: 0,
            last_sealed: None,
            unsealed_from: None,
            last: None,
            sealed_as_found: Vec::new(),
            last_seal: None,
            last_seal_end: None,
            set_aside: Vec::new(),
        }
    }

    /// Takes note of `entry` (at `line` of `file`, its newline ending before byte `end`),
    /// checking its seal if there is a key.
    fn note(&mut self, entry: &Entry, file: &Path, line: u64, end: u64) -> Result<(), Problem> {
        if entry.record.kind == Kind::AUDIT_SET_ASIDE {
            let detail = &entry.record.detail;
            let n = |k: &str| detail.get(k).and_then(serde_json::Value::as_u64);
            let text = |k: &str| {
                detail
                    .get(k)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            self.set_aside.push((
                SetAside {
                    by_seq: entry.seq,
                    from_seq: n("from_seq").unwrap_or(0),
                    to_seq: n("to_seq").unwrap_or(0),
                    file: text("file"),
                    file_intact: false,
                },
                n("bytes").unwrap_or(0),
                text("sha256"),
            ));
        }
        self.last = Some(Located {
            file: file.to_owned(),
            line,
            seq: entry.seq,
        });
        let Some(seal) = &entry.seal else {
            self.unsealed_from.get_or_insert(entry.seq);
            return Ok(());
        };
        if let Some(key) = self.key {
            if !seal.is_valid(key, &entry.hash) {
                return Err(Problem::BadSeal);
            }
        }
        if let Some(from) = self.unsealed_from.take() {
            if entry.record.kind == Kind::AUDIT_SEALED {
                self.sealed_as_found.push(SealedAsFound {
                    from_seq: from,
                    to_seq: entry.seq - 1,
                    by_seq: entry.seq,
                });
            }
        }
        self.sealed += 1;
        self.last_sealed = Some(entry.seq);
        self.last_seal = Some(SealAt {
            seq: entry.seq,
            hash: entry.hash,
            seal: *seal,
        });
        self.last_seal_end = Some((file.to_owned(), end));
        Ok(())
    }
}

/// Whether a segment is the log's last (where a torn tail is expected after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Not the last: it was fsynced whole before the next was started.
    Earlier,
    /// The last, which a crash may have left with a torn tail.
    Last,
}

/// What to do after a bad record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnBad {
    /// Stop there (verify, and a normal open).
    Stop,
    /// Note the first, then go on from each readable record as it claims to be (an open with
    /// `allow_broken_chain`, which needs where the chain ends).
    Resync,
}

/// What [`scan_segment`] found.
#[derive(Debug, Default)]
pub(crate) struct SegmentScan {
    /// Records that checked out.
    pub(crate) records: u64,
    /// The first bad record or file problem.
    pub(crate) first_bad: Option<BadRecord>,
    /// A torn tail (last segment only).
    pub(crate) torn: Option<TornTail>,
    /// The first record's time, if it has one.
    pub(crate) first_ts: Option<u64>,
}

/// Reads one segment, checking each record against `chain` and advancing it.
pub(crate) fn scan_segment(
    segment: &SegmentFile,
    chain: &mut Chain,
    seals: &mut Seals<'_>,
    position: Position,
    on_bad: OnBad,
) -> io::Result<SegmentScan> {
    let mut scan = SegmentScan::default();
    let bad = |line, seq, problem| BadRecord {
        file: segment.path.clone(),
        line,
        seq,
        problem,
    };
    if segment.first_seq != chain.next_seq {
        scan.first_bad = Some(bad(
            0,
            None,
            Problem::MisnamedSegment {
                named: segment.first_seq,
                expected: chain.next_seq,
            },
        ));
        if on_bad == OnBad::Stop {
            return Ok(scan);
        }
    }
    let mut lines = Lines::open(&segment.path)?;
    let mut empty = true;
    // The first line that may be torn, and its problem: a torn tail if nothing readable follows.
    let mut maybe_torn: Option<(u64, u64, Problem)> = None;
    let mut torn_bytes = 0;
    while let Some(line) = lines.next_line()? {
        empty = false;
        let parsed = match line.ending {
            Ending::Newline => parse_line(line.bytes),
            Ending::Eof => Err(LineError::unreadable(Problem::Unterminated)),
            Ending::TooLong => Err(LineError::unreadable(Problem::TooLong)),
        };
        let error = match parsed {
            Ok(entry) => {
                if let Some((number, _, problem)) = maybe_torn.take() {
                    // Readable records after it: not a torn tail but a break in the middle.
                    scan.first_bad.get_or_insert(bad(number, None, problem));
                    if on_bad == OnBad::Stop {
                        return Ok(scan);
                    }
                }
                match chain.check(&entry).and_then(|()| {
                    seals.note(&entry, &segment.path, line.number, line.offset + line.len)
                }) {
                    Ok(()) => scan.records += 1,
                    Err(problem) => {
                        scan.first_bad
                            .get_or_insert(bad(line.number, Some(entry.seq), problem));
                        if on_bad == OnBad::Stop {
                            return Ok(scan);
                        }
                    }
                }
                scan.first_ts.get_or_insert(entry.ts_ms);
                *chain = Chain::after(&entry);
                continue;
            }
            Err(e) => e,
        };
        if position == Position::Last && error.problem.may_be_torn() {
            if maybe_torn.is_none() {
                maybe_torn = Some((line.number, line.offset, error.problem));
                torn_bytes = 0;
            }
            torn_bytes += line.len;
            continue;
        }
        if let Some((number, _, problem)) = maybe_torn.take() {
            scan.first_bad.get_or_insert(bad(number, None, problem));
        }
        scan.first_bad
            .get_or_insert(bad(line.number, error.seq, error.problem));
        if on_bad == OnBad::Stop {
            return Ok(scan);
        }
        if let Some(resume) = error.resume {
            *chain = resume;
        }
    }
    if let Some((line, offset, _)) = maybe_torn {
        scan.torn = Some(TornTail {
            file: segment.path.clone(),
            line,
            offset,
            bytes: torn_bytes,
        });
    }
    if empty && position == Position::Earlier {
        scan.first_bad
            .get_or_insert(bad(0, None, Problem::EmptySegment));
    }
    Ok(scan)
}
