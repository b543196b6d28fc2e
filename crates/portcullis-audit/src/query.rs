//! Finding records: a linear scan of the segments that skips those outside the range asked.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use tracing::warn;

use crate::error::AuditError;
use crate::record::{parse_line, Entry, Head, Kind};
use crate::segment::{Ending, Lines, SegmentMeta};

/// The most records one query returns: a page of the audit screen. Records are at most
/// 64 KiB, so an answer stays under 64 MiB; page on with `after_seq`/`before_seq`.
pub const MAX_QUERY_LIMIT: usize = 1000;

/// Which end of the matching records a query returns first (and which its limit keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Lowest seq first; page on with `after_seq` = the last seq returned.
    #[default]
    OldestFirst,
    /// Highest seq first (an audit screen); page on with `before_seq` = the last seq returned.
    NewestFirst,
}

/// Which records a query returns. Every condition given must hold; `None` or empty means any.
///
/// ```
/// use portcullis_audit::{Filter, Kind, Order};
/// let filter = Filter {
///     actor: Some("alice".into()),
///     kinds: vec![Kind::LOGIN, Kind::LOGIN_FAILED],
///     order: Order::NewestFirst,
///     ..Filter::new(50)
/// };
/// # let _ = filter;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Who did it.
    pub actor: Option<String>,
    /// What it was done to.
    pub target: Option<String>,
    /// The session.
    pub session: Option<String>,
    /// Any of these kinds.
    pub kinds: Vec<Kind>,
    /// At or after this time (Unix ms).
    pub since_ms: Option<u64>,
    /// Before this time (Unix ms).
    pub until_ms: Option<u64>,
    /// Seq above this.
    pub after_seq: Option<u64>,
    /// Seq below this.
    pub before_seq: Option<u64>,
    /// Which end comes first.
    pub order: Order,
    /// At most this many records; more than [`MAX_QUERY_LIMIT`] counts as that.
    pub limit: usize,
}

impl Filter {
    /// Matches everything, oldest first, at most `limit` records (capped at
    /// [`MAX_QUERY_LIMIT`]): there is no query without a limit.
    pub fn new(limit: usize) -> Self {
        Self {
            actor: None,
            target: None,
            session: None,
            kinds: Vec::new(),
            since_ms: None,
            until_ms: None,
            after_seq: None,
            before_seq: None,
            order: Order::OldestFirst,
            limit,
        }
    }

    fn matches(&self, head: &Head<'_>) -> bool {
        fn same(want: Option<&String>, have: Option<&str>) -> bool {
            want.is_none_or(|w| have == Some(w.as_str()))
        }
        same(self.actor.as_ref(), Some(&head.actor))
            && same(self.target.as_ref(), head.target.as_deref())
            && same(self.session.as_ref(), head.session.as_deref())
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k.as_str() == head.kind))
    }
}

/// The seq and time bounds of a query (inclusive, except `until`).
struct Bounds {
    first_seq: u64,
    last_seq: u64,
    since: u64,
    until: u64,
}

/// Runs a query over the segments (oldest first), reading no record past `durable`.
pub(crate) fn run(
    segments: &[SegmentMeta],
    durable: u64,
    filter: &Filter,
) -> Result<Vec<Entry>, AuditError> {
    let limit = filter.limit.min(MAX_QUERY_LIMIT);
    let bounds = Bounds {
        first_seq: filter.after_seq.map_or(1, |s| s.saturating_add(1)),
        last_seq: filter
            .before_seq
            .map_or(durable, |s| s.saturating_sub(1).min(durable)),
        since: filter.since_ms.unwrap_or(0),
        until: filter.until_ms.unwrap_or(u64::MAX),
    };
    let mut out = Vec::new();
    if limit == 0 || bounds.first_seq > bounds.last_seq || bounds.since >= bounds.until {
        return Ok(out);
    }
    // Segment i holds seqs [first_seq_i, first_seq_{i+1}) and, as time never goes back along
    // the log, times within [first_ts_i, first_ts_{i+1}].
    let span = |i: usize| {
        let next = segments.get(i + 1);
        let seqs = (
            segments[i].first_seq,
            next.map_or(durable, |n| n.first_seq.saturating_sub(1)),
        );
        let times = (
            segments[i].first_ts.unwrap_or(0),
            next.and_then(|n| n.first_ts).unwrap_or(u64::MAX),
        );
        (seqs, times)
    };
    match filter.order {
        Order::OldestFirst => {
            for (i, segment) in segments.iter().enumerate() {
                let ((_, last_seq), (_, last_ts)) = span(i);
                if last_seq < bounds.first_seq || last_ts < bounds.since {
                    continue;
                }
                let flow = scan(segment, &bounds, filter, |entry| {
                    out.push(entry);
                    if out.len() == limit {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })?;
                if flow.is_break() {
                    break;
                }
            }
        }
        Order::NewestFirst => {
            for (i, segment) in segments.iter().enumerate().rev() {
                let ((first_seq, last_seq), (first_ts, last_ts)) = span(i);
                if last_seq < bounds.first_seq || last_ts < bounds.since {
                    break;
                }
                if first_seq > bounds.last_seq || first_ts >= bounds.until {
                    continue;
                }
                // Keep this segment's last `room` matches.
                let room = limit - out.len();
                let mut newest = VecDeque::with_capacity(room.min(64));
                // Going past the bounds ends only this segment: older ones may still match.
                let _ = scan(segment, &bounds, filter, |entry| {
                    if newest.len() == room {
                        newest.pop_front();
                    }
                    newest.push_back(entry);
                    ControlFlow::Continue(())
                })?;
                out.extend(newest.into_iter().rev());
                if out.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Feeds the matching records of one segment to `found`, oldest first. Breaks when `found` does
/// or when the records go past the bounds (seq or time; both only grow along the log).
fn scan(
    segment: &SegmentMeta,
    bounds: &Bounds,
    filter: &Filter,
    mut found: impl FnMut(Entry) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, AuditError> {
    if segment.first_seq > bounds.last_seq {
        return Ok(ControlFlow::Break(()));
    }
    let io = |op| AuditError::io(op, &segment.path);
    let mut lines = Lines::open(&segment.path).map_err(io("open"))?;
    while let Some(line) = lines.next_line().map_err(io("read"))? {
        if line.ending != Ending::Newline {
            continue;
        }
        let Ok(head) = serde_json::from_slice::<Head<'_>>(line.bytes) else {
            warn!(file = %segment.path.display(), line = line.number, "unreadable audit record skipped");
            continue;
        };
        if head.seq > bounds.last_seq || head.ts_ms >= bounds.until {
            return Ok(ControlFlow::Break(()));
        }
        if head.seq < bounds.first_seq || head.ts_ms < bounds.since || !filter.matches(&head) {
            continue;
        }
        match parse_line(line.bytes) {
            Ok(entry) => {
                if found(entry).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Err(e) => {
                warn!(
                    file = %segment.path.display(),
                    line = line.number,
                    problem = %e.problem,
                    "invalid audit record left out of a query"
                );
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Runs a query straight on a log directory, without opening the log (no lock taken, no writer
/// started): for tools reading the trail while the gateway writes it. Only whole lines are read;
/// a record being written is left out.
pub fn read_only_query(dir: &std::path::Path, filter: &Filter) -> Result<Vec<Entry>, AuditError> {
    let files = crate::segment::list_segments(dir).map_err(AuditError::io("list", dir))?;
    let mut segments = Vec::with_capacity(files.len());
    for file in files {
        let first = crate::segment::read_first_line(&file.path)
            .map_err(AuditError::io("read", &file.path))?;
        segments.push(crate::segment::SegmentMeta {
            first_seq: file.first_seq,
            first_ts: first
                .and_then(|l| crate::record::parse_line(&l).ok())
                .map(|e| e.ts_ms),
            path: file.path,
        });
    }
    run(&segments, u64::MAX, filter)
}

/// The stored lines (without their newlines) of the records after `after_seq`, oldest first, at
/// most `max`, each with its parsed entry: what a copy of the chain elsewhere is made of (the
/// cluster's mirror), byte for byte as on disk. Only whole lines in canonical form whose hash
/// checks out are returned; a damaged one is skipped, so the copy shows a gap where the chain
/// here is damaged (`verify` names it in both).
pub fn read_lines(
    dir: &std::path::Path,
    after_seq: u64,
    max: usize,
) -> Result<Vec<(Entry, Vec<u8>)>, AuditError> {
    let files = crate::segment::list_segments(dir).map_err(AuditError::io("list", dir))?;
    let mut out = Vec::new();
    for (i, file) in files.iter().enumerate() {
        // A segment all of whose records come at or before `after_seq` is not read.
        if files
            .get(i + 1)
            .is_some_and(|next| next.first_seq <= after_seq.saturating_add(1))
        {
            continue;
        }
        let mut lines = Lines::open(&file.path).map_err(AuditError::io("open", &file.path))?;
        while let Some(line) = lines
            .next_line()
            .map_err(AuditError::io("read", &file.path))?
        {
            if line.ending != Ending::Newline {
                continue;
            }
            // Lines before the one asked for are skipped on their seq alone (a canonical line
            // starts `{"seq":N,`), not parsed and hashed: catching up stays linear.
            if seq_of(line.bytes).is_some_and(|seq| seq <= after_seq) {
                continue;
            }
            let Ok(entry) = parse_line(line.bytes) else {
                continue;
            };
            if entry.seq > after_seq {
                out.push((entry, line.bytes.to_vec()));
                if out.len() >= max {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The seq a canonical line starts with (`{"seq":N,`), read without parsing the line.
fn seq_of(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}
