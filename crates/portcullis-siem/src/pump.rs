//! The forwarder's decisions, without any I/O: what to read next, what a batch is, when a
//! batch counts as delivered, when to reconnect, whether the chain continues, and the status.
//!
//! The I/O loop ([`crate::Forwarder`]) tells the [`Pump`] what happened (connected, records
//! read, batch written, connection lost, cursor stored) with the current [`Instant`], and asks
//! it what to do and until when to sleep.
//!
//! # Delivery
//!
//! Syslog over TCP has no acknowledgement: a completed write only means the bytes are in the
//! kernel. So a written batch is *settling* until [`Settings::settle`] has passed with the
//! connection still up (a receiver that dies or is killed closes or resets the connection,
//! which the loop notices at once); only then is it *delivered* and the cursor moves. When the
//! connection is lost, every settling batch is sent again from the last delivered record: the
//! SIEM may see a record twice, never lose one. A file sink settles at once (after fsync).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use portcullis_audit::{Entry, Filter, Order};
use serde::Serialize;
use tokio::time::Instant;
use tracing::error;

use crate::cursor::{Chains, Cursor};
use crate::format::Formatter;

/// Where delivery stands: after one record of one chain ([`Cursor`], a gateway's own trail) or
/// after one record of each gateway's chain ([`Chains`], the cluster's merged trail).
pub trait Position: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// Whether it is a cluster's (several chains merged).
    const MERGED: bool;
    /// How many records come at or before it (the sum of its seqs), for the status.
    fn records(&self) -> u64;
    /// The last record's hash, when it names one record.
    fn hash_hex(&self) -> String;
    /// The seq reached in each gateway's chain (a cluster's position only).
    fn by_node(&self) -> BTreeMap<String, u64>;
}

impl Position for Cursor {
    const MERGED: bool = false;
    fn records(&self) -> u64 {
        self.seq
    }
    fn hash_hex(&self) -> String {
        self.hash.to_hex()
    }
    fn by_node(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

impl Position for Chains {
    const MERGED: bool = true;
    fn records(&self) -> u64 {
        self.0.values().fold(0u64, |n, c| n.saturating_add(c.seq))
    }
    fn hash_hex(&self) -> String {
        String::new()
    }
    fn by_node(&self) -> BTreeMap<String, u64> {
        self.0.iter().map(|(n, c)| (n.clone(), c.seq)).collect()
    }
}

/// Timing and size of the forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Records per batch (at most [`portcullis_audit::MAX_QUERY_LIMIT`]).
    pub batch: usize,
    /// How often the audit directory is looked at when nothing is known to be new.
    pub poll: Duration,
    /// How long a written batch must stay on a live connection before it counts as delivered
    /// (zero for files).
    pub settle: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: portcullis_audit::MAX_QUERY_LIMIT,
            poll: Duration::from_millis(500),
            settle: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Exponential back-off: `min`, `2 min`, `4 min`, ... capped at `max`, until [`Backoff::reset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min.min(max),
        }
    }

    /// The delay before the next attempt after one more failure.
    pub fn failure(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to `min` (after a success).
    pub fn reset(&mut self) {
        self.next = self.min.min(self.max);
    }
}

/// Records formatted and framed, ready to be written in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<P = Cursor> {
    /// The bytes to write.
    pub bytes: Vec<u8>,
    /// Its first seq.
    pub first_seq: u64,
    /// Where delivery stands once it is delivered.
    pub last: P,
    /// How many records.
    pub count: usize,
}

/// A written batch waiting to count as delivered.
#[derive(Debug, Clone)]
struct Settling<P> {
    last: P,
    due: Instant,
}

/// The forwarder's state, for an API (`GET /api/v1/siem`, say). Seqs are audit seqs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Status {
    /// The sink, as `kind destination`.
    pub sink: String,
    /// Whether a connection (or the file) is open.
    pub connected: bool,
    /// The last record the SIEM is known to have.
    pub delivered_seq: u64,
    /// Its hash.
    pub delivered_hash: String,
    /// The last delivered seq stored in the cursor file (behind `delivered_seq` only while a
    /// store is in progress or failing).
    pub durable_seq: u64,
    /// The last seq written on the current connection (delivered or settling).
    pub sent_seq: u64,
    /// The last seq seen in the audit log, when known.
    pub log_last_seq: Option<u64>,
    /// Records in the log not yet delivered (as far as the log's end is known).
    pub pending: u64,
    /// Times the chain did not continue from the record before (see [`Status::last_gap`]).
    pub gaps: u64,
    /// The latest chain problem: a missing seq, a `prev` that is not the hash before, a
    /// cursor ahead of the log.
    pub last_gap: Option<String>,
    /// The latest error (connect, write, read, cursor store).
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_at_ms: Option<u64>,
    /// Successful connections so far.
    pub connects: u64,
    /// Records written, resends included.
    pub records_written: u64,
    /// A cluster export (the merged trail of every gateway, exported by one at a time).
    pub cluster: bool,
    /// A cluster export: the last seq delivered of each gateway's chain.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub delivered_by_node: BTreeMap<String, u64>,
    /// A cluster export: the gateway that exports it now, as far as this one knows (one at a
    /// time holds the export's lease; the others stand by).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exporter: Option<String>,
    /// A cluster export: records sent after a record of a later time (a gateway's copy in the
    /// store came later than the merge waits, [`SiemConfig::merge_delay_ms`]).
    ///
    /// [`SiemConfig::merge_delay_ms`]: crate::SiemConfig::merge_delay_ms
    pub late: u64,
}

/// The sans-I/O core of a forwarder. See the [module docs](self).
#[derive(Debug)]
pub struct Pump<P = Cursor> {
    settings: Settings,
    formatter: Formatter,
    /// Stored in the cursor file (or the store, for a cluster export).
    durable: P,
    /// Known delivered (settled on a live connection).
    delivered: P,
    /// Written on this connection: where reading goes on.
    sent: P,
    settling: VecDeque<Settling<P>>,
    /// How far chain links were checked (resends are not checked twice).
    checked: P,
    /// The time of the latest record sent by a merge (a cluster export's order).
    merged_ts: u64,
    /// A cluster export: for each chain whose next record waits for the horizon, since when
    /// it waits and the last seq of that chain read by then: those all go once the wait ran out.
    waiting: BTreeMap<String, (Instant, u64)>,
    /// Whether the cursor was checked against the log (its seq there has its hash).
    cursor_checked: bool,
    connected: bool,
    /// Another gateway exports (a cluster export's lease): nothing to connect, read or store.
    standby: bool,
    backoff: Backoff,
    next_connect: Option<Instant>,
    next_read: Option<Instant>,
    next_store: Option<Instant>,
    status: Status,
}

impl<P: Position> Pump<P> {
    /// A pump that goes on after `cursor` (as loaded from the cursor file).
    pub fn new(cursor: P, formatter: Formatter, settings: Settings, sink: String) -> Self {
        Self {
            backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
            settings,
            formatter,
            durable: cursor.clone(),
            delivered: cursor.clone(),
            sent: cursor.clone(),
            settling: VecDeque::new(),
            checked: cursor.clone(),
            merged_ts: 0,
            waiting: BTreeMap::new(),
            cursor_checked: cursor.records() == 0,
            connected: false,
            standby: false,
            next_connect: None,
            next_read: None,
            next_store: None,
            status: Status {
                sink,
                ..Status::default()
            },
        }
    }

    /// The last delivered record.
    pub fn delivered(&self) -> P {
        self.delivered.clone()
    }

    /// The last record sent on this connection: where reading goes on.
    pub fn sent(&self) -> &P {
        &self.sent
    }

    /// Goes on from `position` from now (a cluster export taken over from another gateway:
    /// the store's cursor), dropping whatever this one had sent and not stored.
    pub fn restart(&mut self, position: P) {
        self.standby = false;
        self.waiting.clear();
        self.durable = position.clone();
        self.delivered = position.clone();
        self.sent = position.clone();
        self.checked = position;
        self.settling.clear();
        self.next_read = None;
        self.next_store = None;
    }

    /// Reports a break in a chain (logged, counted, shown): forwarding goes on.
    pub fn report_gap(&mut self, gap: String) {
        error!(sink = %self.status.sink, "audit chain gap: {gap}");
        self.status.gaps += 1;
        self.status.last_gap = Some(gap);
    }

    /// Sets what the status says of the exporting gateway (cluster exports).
    pub fn set_exporter(&mut self, exporter: Option<String>) {
        self.status.exporter = exporter;
    }

    /// Whether the sink is connected.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Records an error for the status (and the log).
    pub fn error(&mut self, message: String, at_ms: u64) {
        self.status.last_error = Some(message);
        self.status.last_error_at_ms = Some(at_ms);
    }

    /// Whether to (re)connect now.
    pub fn wants_connect(&self, now: Instant) -> bool {
        !self.standby && !self.connected && self.next_connect.is_none_or(|t| now >= t)
    }

    /// The sink is connected: (re)send everything after the last delivered record.
    pub fn on_connected(&mut self) {
        self.connected = true;
        self.status.connects += 1;
        self.sent = self.delivered.clone();
        self.settling.clear();
        self.next_read = None;
    }

    /// Another gateway exports now (a cluster export's lease): no connection, nothing
    /// settling; what was delivered and not stored is sent again by whoever exports.
    pub fn on_standby(&mut self) {
        self.standby = true;
        self.connected = false;
        // Whoever exports stores the cursor: nothing is left to store here.
        self.delivered = self.durable.clone();
        self.sent = self.delivered.clone();
        self.settling.clear();
    }

    /// A connection attempt failed: try again after the back-off.
    pub fn on_connect_failed(&mut self, message: String, now: Instant, at_ms: u64) {
        self.next_connect = Some(now + self.backoff.failure());
        self.error(message, at_ms);
    }

    /// The connection failed or closed (write error, reset, EOF): whatever was settling is
    /// not known to be delivered and will be sent again after reconnecting.
    pub fn on_lost(&mut self, message: String, now: Instant, at_ms: u64) {
        self.connected = false;
        self.sent = self.delivered.clone();
        self.settling.clear();
        self.next_connect = Some(now + self.backoff.failure());
        self.error(message, at_ms);
    }

    /// Something new was appended (a notification): look at once.
    pub fn on_wake(&mut self) {
        self.next_read = None;
    }

    /// Whether to look at the audit log now.
    pub fn wants_read(&self, now: Instant) -> bool {
        self.connected && self.next_read.is_none_or(|t| now >= t)
    }

    /// Whether the cursor still has to be checked against the log ([`Pump::on_cursor_check`])
    /// before anything is read.
    pub fn needs_cursor_check(&self) -> bool {
        !self.cursor_checked
    }

    /// Reading the log failed: try again at the next poll.
    pub fn on_read_failed(&mut self, message: String, now: Instant, at_ms: u64) {
        self.next_read = Some(now + self.settings.poll);
        self.error(message, at_ms);
    }

    /// The batch was written and flushed: it settles from now.
    pub fn on_written(&mut self, batch: &Batch<P>, now: Instant) {
        self.sent = batch.last.clone();
        self.status.records_written = self
            .status
            .records_written
            .saturating_add(u64::try_from(batch.count).unwrap_or(u64::MAX));
        self.settling.push_back(Settling {
            last: batch.last.clone(),
            due: now + self.settings.settle,
        });
    }

    /// Moves the batches that have settled on the live connection to delivered. Returns whether
    /// the delivered cursor moved.
    pub fn settle(&mut self, now: Instant) -> bool {
        if !self.connected {
            return false;
        }
        let mut moved = false;
        while let Some(front) = self.settling.front() {
            if front.due > now {
                break;
            }
            if let Some(front) = self.settling.pop_front() {
                self.delivered = front.last;
            }
            moved = true;
        }
        if moved {
            // Delivery works again: the next failure starts the back-off from the bottom.
            self.backoff.reset();
            self.next_store = None;
        }
        moved
    }

    /// Whether a settling batch is due: the loop checks that the connection is still up
    /// before calling [`Pump::settle`].
    pub fn settle_due(&self, now: Instant) -> bool {
        self.connected && self.settling.front().is_some_and(|s| s.due <= now)
    }

    /// The cursor to store now, if the delivered one is not stored yet.
    pub fn to_store(&self, now: Instant) -> Option<P> {
        (self.delivered != self.durable && self.next_store.is_none_or(|t| now >= t))
            .then(|| self.delivered.clone())
    }

    /// The cursor file now holds `cursor`.
    pub fn on_stored(&mut self, cursor: P) {
        self.durable = cursor;
    }

    /// Storing the cursor failed: delivery goes on, storing is tried again at the next poll
    /// (after a restart, the records since the stored cursor are sent again).
    pub fn on_store_failed(&mut self, message: String, now: Instant, at_ms: u64) {
        self.next_store = Some(now + self.settings.poll);
        self.error(message, at_ms);
    }

    /// Until when the loop may sleep (it also wakes on a notification or a lost connection).
    pub fn deadline(&self, now: Instant) -> Instant {
        let mut at = now + self.settings.poll;
        if self.standby {
            return at;
        }
        let mut earlier = |t: Option<Instant>| {
            if let Some(t) = t {
                at = at.min(t);
            }
        };
        if self.connected {
            earlier(Some(self.next_read.unwrap_or(now)));
            earlier(self.settling.front().map(|s| s.due));
        } else {
            earlier(Some(self.next_connect.unwrap_or(now)));
        }
        if self.delivered != self.durable {
            earlier(Some(self.next_store.unwrap_or(now)));
        }
        at
    }

    /// The status now.
    pub fn status(&self) -> Status {
        let log_last = self
            .status
            .log_last_seq
            .unwrap_or(0)
            .max(self.sent.records());
        Status {
            connected: self.connected,
            delivered_seq: self.delivered.records(),
            delivered_hash: self.delivered.hash_hex(),
            durable_seq: self.durable.records(),
            sent_seq: self.sent.records(),
            pending: log_last.saturating_sub(self.delivered.records()),
            delivered_by_node: self.delivered.by_node(),
            cluster: P::MERGED,
            ..self.status.clone()
        }
    }
}

impl Pump<Cursor> {
    /// The log's last seq, when it could be seen cheaply. Returns whether to query for records.
    pub fn on_log_end(&mut self, last: Option<u64>, now: Instant) -> bool {
        if let Some(last) = last {
            self.status.log_last_seq = Some(last);
            if last < self.delivered.seq {
                let gap = format!(
                    "the cursor (seq {}) is ahead of the audit log (last seq {last})",
                    self.delivered.seq
                );
                if self.status.last_gap.as_ref() != Some(&gap) {
                    error!(sink = %self.status.sink, "{gap}");
                    self.status.gaps += 1;
                    self.status.last_gap = Some(gap);
                }
            }
            if last <= self.sent.seq {
                self.next_read = Some(now + self.settings.poll);
                return false;
            }
        }
        true
    }

    /// What to query: the records after the last one sent, oldest first, one batch, and none
    /// past `synced` (the log's fsynced end, when known: a record past it may still vanish in a
    /// crash, and its seq go to another record).
    pub fn read_filter(&self, synced: Option<u64>) -> Filter {
        Filter {
            after_seq: Some(self.sent.seq),
            before_seq: synced.map(|s| s.saturating_add(1)),
            order: Order::OldestFirst,
            ..Filter::new(self.settings.batch)
        }
    }

    /// What the log says of the cursor, checked once before the first read: `log_end` is the
    /// log's last record when it was opened (after a crash: where the log really ends) and
    /// `at_cursor` the record the log has at the cursor's seq (`None`: it has none).
    ///
    /// - the log has the cursor's record (same seq, same hash): go on after it;
    /// - the log ended before the cursor: records were delivered that a crash took back before
    ///   their fsync (an older forwarder read them too early), and their seqs now belong to
    ///   other records: deliver again from the log's real end, never skip those;
    /// - the log has another record at that seq: it is not the log the cursor was about
    ///   (replaced or altered): deliver everything again from the first record.
    ///
    /// Either problem is reported as a gap. Returns whether the cursor moved back.
    pub fn on_cursor_check(&mut self, at_cursor: Option<Cursor>, log_end: Cursor) -> bool {
        self.cursor_checked = true;
        let cursor = self.delivered;
        let (rewind, gap) = if log_end.seq < cursor.seq {
            (
                log_end,
                format!(
                    "the cursor (seq {}) is ahead of the audit log, which really ends at seq {}:                      records delivered before a crash were never fsynced; delivering again from seq {}",
                    cursor.seq,
                    log_end.seq,
                    log_end.seq + 1
                ),
            )
        } else {
            match at_cursor {
                Some(found) if found.seq == cursor.seq && found.hash == cursor.hash => return false,
                Some(found) => (
                    Cursor::START,
                    format!(
                        "the audit log's record at the cursor (seq {}) has hash {}, not the delivered {}:                          the log was replaced or altered; delivering everything again",
                        cursor.seq, found.hash, cursor.hash
                    ),
                ),
                None => (
                    Cursor::START,
                    format!(
                        "the audit log has no record at the cursor (seq {}); delivering everything again",
                        cursor.seq
                    ),
                ),
            }
        };
        error!(sink = %self.status.sink, "{gap}");
        self.status.gaps += 1;
        self.status.last_gap = Some(gap);
        self.delivered = rewind;
        self.sent = rewind;
        self.checked = rewind;
        self.settling.clear();
        self.next_store = None;
        true
    }

    /// The records a [`Pump::read_filter`] query returned: checks that the chain continues and
    /// makes them a batch (none when there were none).
    pub fn on_records(&mut self, entries: &[Entry], now: Instant) -> Option<Batch> {
        // A full page means more are probably waiting: read again at once.
        self.next_read = if entries.len() >= self.settings.batch {
            None
        } else {
            Some(now + self.settings.poll)
        };
        let first_seq = entries.first()?.seq;
        let mut tip = self.sent;
        let mut bytes = Vec::new();
        for entry in entries {
            if entry.seq > self.checked.seq {
                if let Some(gap) = chain_gap(&tip, entry) {
                    error!(sink = %self.status.sink, "audit chain gap: {gap}");
                    self.status.gaps += 1;
                    self.status.last_gap = Some(gap);
                }
                self.checked.seq = entry.seq;
            }
            tip = Cursor {
                seq: entry.seq,
                hash: entry.hash,
            };
            self.formatter.write(&mut bytes, entry);
        }
        self.status.log_last_seq = Some(self.status.log_last_seq.unwrap_or(0).max(tip.seq));
        Some(Batch {
            bytes,
            first_seq,
            last: tip,
            count: entries.len(),
        })
    }
}

/// What a cluster export read of one gateway's chain: its next records after the export's
/// position, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRead {
    /// The gateway.
    pub node: String,
    /// Its records.
    pub entries: Vec<Entry>,
    /// The read stopped before the chain's end in the store (a full page, or a record held
    /// back): the chain may go on there, so the merge must not run past its last record.
    pub more: bool,
}

impl Pump<Chains> {
    /// Merges what the store holds of each gateway's chain after this export's
    /// [`Pump::sent`] position into one batch ordered by time (then gateway, then seq), up to
    /// `horizon_ms`: later records wait, in case a gateway whose copy lags has older ones still
    /// to come — but none waits longer than `max_wait` after it was first seen here (a gateway
    /// whose clock runs ahead would hold its chain back for as long). A record that comes
    /// after later ones went is counted as [`Status::late`], never dropped. Each gateway's
    /// records go in the order of its chain, none skipped: where a chain's own times are not in
    /// order, the merge follows the chain. Every link is checked as on a single trail; a record
    /// naming another gateway than the chain it is in counts as a gap.
    pub fn on_chains(
        &mut self,
        chains: Vec<ChainRead>,
        horizon_ms: u64,
        max_wait: Duration,
        now: Instant,
    ) -> Option<Batch<Chains>> {
        let seen: u64 = chains
            .iter()
            .map(|c| {
                let sent = self.sent.get(&c.node).seq;
                c.entries.last().map_or(sent, |e| e.seq).max(sent)
            })
            .fold(0, u64::saturating_add);
        self.status.log_last_seq = Some(seen);
        self.waiting
            .retain(|node, _| chains.iter().any(|c| &c.node == node));
        let last_read: BTreeMap<String, u64> = chains
            .iter()
            .filter_map(|c| c.entries.last().map(|e| (c.node.clone(), e.seq)))
            .collect();
        let mut heads: Vec<(String, std::iter::Peekable<std::vec::IntoIter<Entry>>, bool)> = chains
            .into_iter()
            .map(|c| (c.node, c.entries.into_iter().peekable(), c.more))
            .collect();
        let mut tip = self.sent.clone();
        let mut bytes = Vec::new();
        let (mut count, mut first_seq, mut more) = (0usize, None, false);
        loop {
            if count >= self.settings.batch {
                more = true;
                break;
            }
            // The chain whose next record comes first.
            let next = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(i, (node, it, _))| {
                    it.peek().map(|e| ((e.ts_ms, node.clone(), e.seq), i))
                })
                .min();
            let Some(((ts, node, seq), i)) = next else {
                break;
            };
            if ts > horizon_ms {
                // Every record of the chain read when its wait began goes once it ran out (a
                // gateway whose clock runs ahead is delayed, not slowed to a record per wait).
                let since = match self.waiting.get(&node) {
                    Some(&(since, upto)) if seq <= upto => since,
                    _ => {
                        let upto = last_read.get(&node).copied().unwrap_or(seq);
                        self.waiting.insert(node.clone(), (now, upto));
                        now
                    }
                };
                if now.saturating_duration_since(since) < max_wait {
                    break;
                }
            }
            let (node, it, chain_more) = &mut heads[i];
            let Some(entry) = it.next() else { break };
            let at = tip.get(node);
            if entry.seq > self.checked.get(node).seq {
                // A record from before its gateway joined a cluster names none.
                let problem = chain_gap(&at, &entry).or_else(|| {
                    entry
                        .node()
                        .filter(|named| *named != node.as_str())
                        .map(|named| {
                            format!(
                                "seq {} of gateway {node:?}'s chain names gateway {named:?}",
                                entry.seq
                            )
                        })
                });
                if let Some(gap) = problem {
                    self.report_gap(format!("gateway {node:?}: {gap}"));
                }
                self.checked.0.insert(
                    node.clone(),
                    Cursor {
                        seq: entry.seq,
                        hash: entry.hash,
                    },
                );
                if entry.ts_ms < self.merged_ts {
                    self.status.late += 1;
                }
            }
            // A time past the horizon (a clock ahead) does not make every record after it late.
            self.merged_ts = self.merged_ts.max(entry.ts_ms.min(horizon_ms));
            tip.0.insert(
                node.clone(),
                Cursor {
                    seq: entry.seq,
                    hash: entry.hash,
                },
            );
            first_seq.get_or_insert(entry.seq);
            self.formatter.write(&mut bytes, &entry);
            count += 1;
            // A chain read to the end of what was read of it may go on in the store: merging on
            // without it would put its next records out of order.
            if *chain_more && it.peek().is_none() {
                more = true;
                break;
            }
        }
        self.next_read = if more {
            None
        } else {
            Some(now + self.settings.poll)
        };
        let first_seq = first_seq?;
        Some(Batch {
            bytes,
            first_seq,
            last: tip,
            count,
        })
    }
}

/// Why `entry` does not continue the chain after `tip`, if it does not.
fn chain_gap(tip: &Cursor, entry: &Entry) -> Option<String> {
    if entry.seq != tip.seq.saturating_add(1) {
        Some(format!(
            "seq {} follows seq {}: {} record(s) missing",
            entry.seq,
            tip.seq,
            entry.seq.saturating_sub(tip.seq).saturating_sub(1)
        ))
    } else if entry.prev != tip.hash {
        Some(format!(
            "seq {} has prev {} but seq {} has hash {}",
            entry.seq, entry.prev, tip.seq, tip.hash
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Framing, Message};
    use portcullis_audit::{Digest, Kind, Record, GENESIS};

    fn h(seq: u64) -> Digest {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&seq.to_be_bytes());
        d[31] = 1;
        Digest(d)
    }

    /// A well-chained record.
    fn rec(seq: u64) -> Entry {
        Entry {
            seq,
            ts_ms: 1000 + seq,
            prev: if seq == 1 { GENESIS } else { h(seq - 1) },
            hash: h(seq),
            seal: None,
            record: Record::new(Kind::LOGIN, "a"),
        }
    }

    fn pump(settings: Settings) -> Pump {
        Pump::new(
            Cursor::START,
            Formatter {
                message: Message::JsonLine,
                framing: Framing::Newline,
            },
            settings,
            "test".into(),
        )
    }

    fn settings() -> Settings {
        Settings {
            batch: 3,
            poll: Duration::from_millis(500),
            settle: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(700),
        }
    }

    fn at(ms: u64) -> Instant {
        // One base for all the instants of a test.
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let delays: Vec<u128> = (0..12).map(|_| b.failure().as_millis()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.failure(), Duration::from_millis(100));
    }

    #[test]
    fn batches_settle_before_the_cursor_moves() {
        let mut p = pump(settings());
        assert!(p.wants_connect(at(0)));
        assert!(!p.wants_read(at(0)), "nothing is read before connecting");
        p.on_connected();
        assert!(p.wants_read(at(0)));
        assert_eq!(p.read_filter(None).after_seq, Some(0));
        assert!(p.on_log_end(Some(5), at(0)));

        let batch = p.on_records(&[rec(1), rec(2), rec(3)], at(0)).unwrap();
        assert_eq!((batch.first_seq, batch.last.seq, batch.count), (1, 3, 3));
        assert_eq!(batch.bytes.iter().filter(|&&b| b == b'\n').count(), 3);
        // A full page: read on at once, after what was sent.
        assert!(p.wants_read(at(0)));
        p.on_written(&batch, at(0));
        assert_eq!(p.read_filter(None).after_seq, Some(3));
        let batch2 = p.on_records(&[rec(4), rec(5)], at(10)).unwrap();
        p.on_written(&batch2, at(10));
        // Not a full page: wait for the poll.
        assert!(!p.wants_read(at(10)));
        assert!(p.wants_read(at(510)));

        assert!(!p.on_log_end(Some(5), at(510)), "nothing new: wait a poll");
        assert!(!p.settle_due(at(999)));
        assert!(!p.settle(at(999)));
        assert_eq!(p.to_store(at(999)), None);
        assert_eq!(p.deadline(at(999)), at(1000));
        assert!(p.settle(at(1000)));
        assert_eq!(p.delivered().seq, 3);
        assert_eq!(p.to_store(at(1000)).map(|c| c.seq), Some(3));
        p.on_stored(p.delivered());
        assert_eq!(p.to_store(at(1000)), None);
        assert!(p.settle(at(1010)));
        assert_eq!(p.delivered().seq, 5);
        let s = p.status();
        assert_eq!(
            (s.delivered_seq, s.durable_seq, s.sent_seq, s.pending),
            (5, 3, 5, 0)
        );
        assert_eq!(s.records_written, 5);
        assert_eq!(s.gaps, 0);
    }

    #[test]
    fn a_lost_connection_resends_from_the_delivered_record() {
        let mut p = pump(settings());
        p.on_connected();
        let b1 = p.on_records(&[rec(1), rec(2), rec(3)], at(0)).unwrap();
        p.on_written(&b1, at(0));
        assert!(p.settle(at(1000)));
        p.on_stored(p.delivered());
        let b2 = p.on_records(&[rec(4), rec(5), rec(6)], at(1000)).unwrap();
        p.on_written(&b2, at(1000));
        // The receiver dies before b2 settled.
        p.on_lost("reset".into(), at(1500), 7);
        assert!(!p.is_connected());
        assert!(!p.settle(at(5000)), "nothing settles without a connection");
        assert_eq!(p.delivered().seq, 3);
        assert!(!p.wants_connect(at(1599)));
        assert!(p.wants_connect(at(1600)));
        assert_eq!(p.deadline(at(1500)), at(1600));
        // Still down: the back-off doubles.
        p.on_connect_failed("refused".into(), at(1600), 8);
        assert!(!p.wants_connect(at(1799)));
        assert!(p.wants_connect(at(1800)));
        let s = p.status();
        assert_eq!(s.last_error.as_deref(), Some("refused"));
        assert_eq!(s.last_error_at_ms, Some(8));
        assert_eq!(s.pending, 3);
        p.on_connected();
        // Resent from seq 4, without counting a gap.
        assert_eq!(p.read_filter(None).after_seq, Some(3));
        let again = p.on_records(&[rec(4), rec(5), rec(6)], at(1800)).unwrap();
        assert_eq!(again.bytes, b2.bytes);
        p.on_written(&again, at(1800));
        assert!(p.settle(at(2800)));
        let s = p.status();
        assert_eq!((s.delivered_seq, s.gaps, s.records_written), (6, 0, 9));
        assert_eq!(s.connects, 2);
    }

    #[test]
    fn chain_gaps_are_reported_and_forwarding_goes_on() {
        let mut p = pump(settings());
        p.on_connected();
        let mut forged = rec(3);
        forged.prev = Digest([9; 32]);
        let b = p.on_records(&[rec(1), rec(2), forged], at(0)).unwrap();
        assert_eq!(b.count, 3);
        let s = p.status();
        assert_eq!(s.gaps, 1);
        assert!(s.last_gap.unwrap().starts_with("seq 3 has prev 0909"));
        p.on_written(&b, at(0));
        let b = p.on_records(&[rec(6)], at(0)).unwrap();
        assert_eq!(b.count, 1);
        let s = p.status();
        assert_eq!(s.gaps, 2);
        assert_eq!(
            s.last_gap.as_deref(),
            Some("seq 6 follows seq 3: 2 record(s) missing")
        );
    }

    #[test]
    fn the_log_end_avoids_needless_queries() {
        let mut p = pump(settings());
        p.on_connected();
        let b = p.on_records(&[rec(1), rec(2)], at(0)).unwrap();
        p.on_written(&b, at(0));
        p.on_wake();
        assert!(p.wants_read(at(1)));
        assert!(!p.on_log_end(Some(2), at(1)), "nothing new");
        assert!(!p.wants_read(at(2)));
        assert!(p.wants_read(at(501)));
        assert!(p.on_log_end(None, at(501)), "unknown end: query");
        assert!(p.on_log_end(Some(3), at(501)));
        assert_eq!(p.status().pending, 3);
        // A log replaced by a shorter one.
        assert!(p.settle(at(1000)));
        assert!(!p.on_log_end(Some(1), at(1000)));
        let s = p.status();
        assert_eq!(s.gaps, 1);
        assert!(s.last_gap.unwrap().contains("ahead of the audit log"));
        assert!(!p.on_log_end(Some(1), at(1500)));
        assert_eq!(p.status().gaps, 1, "the same problem counts once");
    }

    #[test]
    fn a_failed_store_is_retried_at_the_next_poll() {
        let mut p = pump(Settings {
            settle: Duration::ZERO,
            ..settings()
        });
        p.on_connected();
        let b = p.on_records(&[rec(1)], at(0)).unwrap();
        p.on_written(&b, at(0));
        assert!(p.settle(at(0)));
        assert_eq!(p.to_store(at(0)).map(|c| c.seq), Some(1));
        p.on_store_failed("disk full".into(), at(0), 1);
        assert_eq!(p.to_store(at(499)), None);
        assert_eq!(p.to_store(at(500)).map(|c| c.seq), Some(1));
        p.on_stored(p.delivered());
        assert_eq!(p.status().durable_seq, 1);
    }

    #[test]
    fn the_cursor_is_checked_against_the_log_once() {
        let cur = |seq: u64| Cursor { seq, hash: h(seq) };
        let with_cursor = |c: Cursor| {
            Pump::new(
                c,
                Formatter {
                    message: Message::JsonLine,
                    framing: Framing::Newline,
                },
                settings(),
                "test".into(),
            )
        };
        // A fresh cursor needs no check.
        assert!(!pump(settings()).needs_cursor_check());
        // The log has the cursor's record: go on after it.
        let mut p = with_cursor(cur(5));
        assert!(p.needs_cursor_check());
        assert!(!p.on_cursor_check(Some(cur(5)), cur(9)));
        assert!(!p.needs_cursor_check());
        assert_eq!((p.delivered().seq, p.status().gaps), (5, 0));
        // The log really ends before the cursor: deliver again from its end, and store that.
        let mut p = with_cursor(cur(8));
        assert!(p.on_cursor_check(None, cur(5)));
        assert_eq!(p.delivered(), cur(5));
        assert_eq!(p.read_filter(Some(9)).after_seq, Some(5));
        assert_eq!(p.read_filter(Some(9)).before_seq, Some(10));
        assert_eq!(p.to_store(at(0)), Some(cur(5)));
        assert!(p
            .status()
            .last_gap
            .unwrap()
            .contains("really ends at seq 5"));
        // Another record at the cursor's seq: everything again.
        let mut p = with_cursor(cur(8));
        let other = Cursor {
            seq: 8,
            hash: Digest([7; 32]),
        };
        assert!(p.on_cursor_check(Some(other), cur(12)));
        assert_eq!(p.delivered(), Cursor::START);
        assert_eq!(p.status().gaps, 1);
    }

    #[test]
    fn empty_reads_make_no_batch() {
        let mut p = pump(settings());
        p.on_connected();
        assert_eq!(p.on_records(&[], at(0)), None);
        assert!(!p.wants_read(at(0)));
        assert_eq!(p.deadline(at(0)), at(500));
    }

    /// Gateway `node`'s record `seq`, written at `ts`, well chained in that gateway's chain.
    fn nrec(node: &str, seq: u64, ts: u64) -> Entry {
        let hn = |seq: u64| {
            let mut d = h(seq).0;
            d[16] = node.as_bytes()[0];
            Digest(d)
        };
        Entry {
            seq,
            ts_ms: ts,
            prev: if seq == 1 { GENESIS } else { hn(seq - 1) },
            hash: hn(seq),
            seal: None,
            record: Record::new(Kind::LOGIN, "a").detail("node", node),
        }
    }

    fn cluster_pump(batch: usize) -> Pump<Chains> {
        let mut p = Pump::new(
            Chains::default(),
            Formatter {
                message: Message::JsonLine,
                framing: Framing::Newline,
            },
            Settings {
                batch,
                ..settings()
            },
            "test".into(),
        );
        p.on_connected();
        p
    }

    /// (node, seq) of each record of a batch, in its order.
    fn order(batch: &Batch<Chains>) -> Vec<(String, u64)> {
        String::from_utf8(batch.bytes.clone())
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["detail"]["node"].as_str().unwrap().to_owned(),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    const LONG: Duration = Duration::from_secs(3600);

    /// Reads of the chains, each with `page` records at most (a full one: more may follow).
    fn reads(chains: Vec<(String, Vec<Entry>)>, page: usize) -> Vec<ChainRead> {
        chains
            .into_iter()
            .map(|(node, entries)| ChainRead {
                more: entries.len() >= page,
                node,
                entries,
            })
            .collect()
    }

    fn o(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
    }

    #[test]
    fn a_cluster_batch_merges_the_chains_by_time_up_to_the_horizon() {
        let mut p = cluster_pump(100);
        let chains = vec![
            (
                "a".into(),
                vec![nrec("a", 1, 10), nrec("a", 2, 30), nrec("a", 3, 50)],
            ),
            (
                "b".into(),
                vec![nrec("b", 1, 20), nrec("b", 2, 30), nrec("b", 3, 60)],
            ),
        ];
        // Records after 55 wait for gateways whose copies may lag.
        let batch = p.on_chains(reads(chains, 100), 55, LONG, at(0)).unwrap();
        assert_eq!(
            order(&batch),
            o(&[("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)])
        );
        assert_eq!((batch.last.get("a").seq, batch.last.get("b").seq), (3, 2));
        assert!(
            !p.wants_read(at(0)),
            "all read: the next look is at the poll"
        );
        p.on_written(&batch, at(0));
        assert_eq!(p.sent().get("b").seq, 2);
        // Later, B's last one goes; a record of A older than what went is late, still sent.
        let chains = vec![
            ("a".into(), vec![nrec("a", 4, 40)]),
            ("b".into(), vec![nrec("b", 3, 60)]),
        ];
        let batch = p
            .on_chains(reads(chains, 100), 1000, LONG, at(600))
            .unwrap();
        assert_eq!(order(&batch), o(&[("a", 4), ("b", 3)]));
        let status = p.status();
        assert_eq!((status.late, status.gaps), (1, 0));
        p.on_written(&batch, at(600));
        assert!(p.settle(at(1600)));
        assert_eq!(
            p.status().delivered_by_node,
            [("a".to_owned(), 4), ("b".to_owned(), 3)].into()
        );
        assert_eq!(p.status().delivered_seq, 7);
    }

    #[test]
    fn a_chain_goes_in_its_own_order_and_a_full_page_stops_the_merge() {
        // A's clock went back between its records 1 and 2: its order is kept all the same
        // (no record of a chain skipped over).
        let mut p = cluster_pump(100);
        let chains = vec![
            ("a".into(), vec![nrec("a", 1, 50), nrec("a", 2, 10)]),
            ("b".into(), vec![nrec("b", 1, 20)]),
        ];
        let batch = p.on_chains(reads(chains, 100), 100, LONG, at(0)).unwrap();
        assert_eq!(order(&batch), o(&[("b", 1), ("a", 1), ("a", 2)]));

        // A's page is full: the store may hold more of A that come before B's record.
        let mut p = cluster_pump(100);
        let chains = vec![
            ("a".into(), vec![nrec("a", 1, 10), nrec("a", 2, 11)]),
            ("b".into(), vec![nrec("b", 1, 20)]),
        ];
        let batch = p.on_chains(reads(chains, 2), 100, LONG, at(0)).unwrap();
        assert_eq!(order(&batch), o(&[("a", 1), ("a", 2)]));
        assert!(p.wants_read(at(0)), "read on at once");

        // The batch limit, likewise.
        let mut p = cluster_pump(2);
        let chains = vec![
            ("a".into(), vec![nrec("a", 1, 10), nrec("a", 2, 30)]),
            ("b".into(), vec![nrec("b", 1, 20)]),
        ];
        let batch = p.on_chains(reads(chains, 100), 100, LONG, at(0)).unwrap();
        assert_eq!(order(&batch), o(&[("a", 1), ("b", 1)]));
        assert!(p.wants_read(at(0)));
        p.on_written(&batch, at(0));
        let chains = vec![("a".into(), vec![nrec("a", 2, 30)]), ("b".into(), vec![])];
        let batch = p.on_chains(reads(chains, 100), 100, LONG, at(0)).unwrap();
        assert_eq!(order(&batch), o(&[("a", 2)]));
        // Nothing new, or only what is past the horizon: no batch.
        assert_eq!(
            p.on_chains(reads(vec![("a".into(), vec![])], 100), 100, LONG, at(0)),
            None
        );
        assert_eq!(
            p.on_chains(
                reads(vec![("c".into(), vec![nrec("c", 1, 500)])], 100),
                100,
                LONG,
                at(0)
            ),
            None
        );
    }

    #[test]
    fn a_cluster_batch_reports_gaps_and_records_of_another_gateway() {
        let mut p = cluster_pump(100);
        let chains = vec![
            ("a".into(), vec![nrec("a", 1, 10), nrec("a", 3, 30)]),
            ("b".into(), vec![nrec("c", 1, 20)]),
        ];
        let batch = p.on_chains(reads(chains, 100), 100, LONG, at(0)).unwrap();
        assert_eq!(batch.count, 3, "forwarding goes on");
        let status = p.status();
        assert_eq!(status.gaps, 2);
        // Sent again after a lost connection: not reported twice.
        p.on_written(&batch, at(0));
        p.on_lost("reset".into(), at(10), 0);
        p.on_connected();
        let chains = vec![
            ("a".into(), vec![nrec("a", 1, 10), nrec("a", 3, 30)]),
            ("b".into(), vec![nrec("c", 1, 20)]),
        ];
        p.on_chains(reads(chains, 100), 100, LONG, at(20)).unwrap();
        assert_eq!(p.status().gaps, 2);
    }

    #[test]
    fn a_cluster_cursor_round_trips_and_restarts_the_pump() {
        let c = Chains(
            [
                (
                    "gw-a".to_owned(),
                    Cursor {
                        seq: 41,
                        hash: h(41),
                    },
                ),
                ("gw-b".to_owned(), Cursor { seq: 7, hash: h(7) }),
            ]
            .into(),
        );
        assert_eq!(Chains::decode(&c.encode()).unwrap(), c);
        assert_eq!(Chains::decode("").unwrap(), Chains::default());
        assert!(Chains::decode("{\"gw\":{\"seq\":1}}").is_err());
        assert!(Chains::decode("[1]").is_err());
        let mut p = cluster_pump(10);
        p.restart(c.clone());
        assert_eq!((p.delivered(), p.sent().clone()), (c.clone(), c.clone()));
        assert_eq!(p.to_store(at(0)), None, "the store has it");
        assert_eq!(c.get("gw-c"), Cursor::START);
    }

    #[test]
    fn a_record_past_the_horizon_waits_at_most_the_wait_and_a_standby_pump_sleeps() {
        let mut p = cluster_pump(100);
        // Gateway b's clock runs an hour ahead: its record waits for the horizon, but only
        // for as long as `max_wait` from when it was first seen.
        let wait = Duration::from_secs(5);
        let chains = || {
            reads(
                vec![
                    ("a".into(), vec![nrec("a", 1, 1000)]),
                    ("b".into(), vec![nrec("b", 1, 3_601_000)]),
                ],
                100,
            )
        };
        let batch = p.on_chains(chains(), 2000, wait, at(0)).unwrap();
        assert_eq!(order(&batch), o(&[("a", 1)]));
        p.on_written(&batch, at(0));
        let only_b = || {
            reads(
                vec![
                    ("a".into(), vec![]),
                    ("b".into(), vec![nrec("b", 1, 3_601_000)]),
                ],
                100,
            )
        };
        assert_eq!(p.on_chains(only_b(), 4000, wait, at(4000)), None);
        let batch = p.on_chains(only_b(), 6000, wait, at(5000)).unwrap();
        assert_eq!(order(&batch), o(&[("b", 1)]));
        p.on_written(&batch, at(5000));
        // It does not make the records after it late.
        let batch = p
            .on_chains(
                reads(vec![("a".into(), vec![nrec("a", 2, 7000)])], 100),
                8000,
                wait,
                at(8000),
            )
            .unwrap();
        assert_eq!(order(&batch), o(&[("a", 2)]));
        assert_eq!((p.status().late, p.status().gaps), (0, 0));

        // A busy gateway whose clock runs ahead: all it had when the wait began go at its end,
        // not one record per wait; those read later wait their own.
        let mut p = cluster_pump(100);
        let ahead = |to: u64| {
            reads(
                vec![(
                    "b".into(),
                    (1..=to).map(|s| nrec("b", s, 3_600_000 + s)).collect(),
                )],
                100,
            )
        };
        assert_eq!(p.on_chains(ahead(10), 1000, wait, at(0)), None);
        assert_eq!(p.on_chains(ahead(11), 1000, wait, at(4000)), None);
        let batch = p.on_chains(ahead(12), 1000, wait, at(5000)).unwrap();
        assert_eq!(batch.count, 10);
        p.on_written(&batch, at(5000));
        let rest = reads(
            vec![(
                "b".into(),
                (11..=12).map(|s| nrec("b", s, 3_600_000 + s)).collect(),
            )],
            100,
        );
        assert_eq!(p.on_chains(rest.clone(), 1000, wait, at(9000)), None);
        assert_eq!(p.on_chains(rest, 1000, wait, at(10_000)).unwrap().count, 2);

        // A record from before its gateway joined the cluster names no gateway: no gap.
        let mut p = cluster_pump(100);
        let mut old = nrec("c", 1, 10);
        old.record.detail.remove("node");
        let batch = p.on_chains(reads(vec![("c".into(), vec![old])], 100), 100, wait, at(0));
        assert!(batch.is_some());
        assert_eq!(p.status().gaps, 0);

        // Standing by (another gateway exports): nothing to connect, read or store, and the
        // loop sleeps a poll, not at once.
        let mut p = cluster_pump(100);
        p.on_lost("gone".into(), at(0), 0);
        p.on_standby();
        assert!(!p.wants_connect(at(10_000)));
        assert_eq!(p.deadline(at(0)), at(500));
        assert_eq!(p.to_store(at(0)), None);
        assert!(p.status().cluster);
        p.restart(Chains::default());
        assert!(p.wants_connect(at(10_000)));
    }
}
