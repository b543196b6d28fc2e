//! The audit trail as the gateway writes and reads it: every login (and failed one), every
//! session's start, end, watchers, freezes, policy decisions, clipboard and file events, every
//! administrative change (who, what, before and after), every kill, lock and export.
//!
//! An action the API acknowledges is on disk in the trail first: handlers call
//! [`Audit::record`], which waits for the log's fsync, and answer 503 (doing nothing) when the
//! trail cannot be written: the gateway fails closed. Events from inside a live session come
//! through [`SessionAudit`] and are queued without waiting (the session must not stall on a disk);
//! they are also in the session's recording.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use portcullis_audit::{AuditLog, Entry, Filter, Kind, Order, Record};
use portcullis_broker::SessionAudit;
use portcullis_core::session::{SessionEvent, SessionInfo};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{error, warn};

use crate::auth::Soc;
use crate::{AppState, WebError};

/// The gateway's audit trail, or none (unit tests of the HTTP layer).
#[derive(Clone, Default)]
pub struct Audit {
    log: Option<Arc<AuditLog>>,
    /// The SIEM exports reading it, for their status.
    exports: Vec<portcullis_siem::Handle>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("dir", &self.log.as_ref().map(|l| l.dir().to_path_buf()))
            .finish()
    }
}

impl Audit {
    /// Writes to `log`.
    pub fn new(log: Arc<AuditLog>) -> Self {
        Self {
            log: Some(log),
            exports: Vec::new(),
        }
    }

    /// Shows the status of these SIEM exports (`GET /audit/exports`).
    pub fn with_exports(mut self, exports: Vec<portcullis_siem::Handle>) -> Self {
        self.exports = exports;
        self
    }

    /// Where the trail lives, if there is one.
    pub fn dir(&self) -> Option<PathBuf> {
        self.log.as_ref().map(|l| l.dir().to_path_buf())
    }

    /// The sink the broker sends session events to.
    pub fn session_sink(&self) -> Option<Arc<dyn SessionAudit>> {
        self.log
            .clone()
            .map(|log| Arc::new(SessionSink { log }) as Arc<dyn SessionAudit>)
    }

    /// Records `record` and waits until it is on disk. An error means the action must not be
    /// carried out (or acknowledged): the trail cannot take it.
    pub(crate) async fn record(&self, record: Record) -> Result<(), WebError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let kind = record.kind.as_str().to_owned();
        let outcome = match log.try_submit(record) {
            Ok(ticket) => ticket.await.map(|_| ()),
            Err(e) => Err(e),
        };
        outcome.map_err(|e| {
            error!(error = %e, %kind, "the audit trail cannot be written; action refused");
            WebError::Unavailable(format!(
                "the audit trail cannot be written right now ({e}), so nothing was done"
            ))
        })
    }
}

/// Session events into the log, queued (the session thread does not wait for the disk).
struct SessionSink {
    log: Arc<AuditLog>,
}

impl SessionAudit for SessionSink {
    fn session_event(&self, session: &SessionInfo, event: &SessionEvent) {
        let record = session_record(session, event);
        let kind = record.kind.as_str().to_owned();
        // Waits only while the queue is full: back-pressure rather than a lost record.
        if let Err(e) = self.log.submit(record) {
            error!(error = %e, session = %session.id, %kind, "audit record of a session event lost");
        }
    }
}

/// The audit record of a session event: its kind, who acted, and the event's fields as detail.
fn session_record(session: &SessionInfo, event: &SessionEvent) -> Record {
    let (kind, actor) = match event {
        SessionEvent::SessionStart { .. } => (Kind::SESSION_START, session.user.as_str()),
        SessionEvent::SessionEnd { .. } => (Kind::SESSION_END, session.user.as_str()),
        SessionEvent::ViewerJoined { user } => (Kind::VIEWER_JOINED, user.as_str()),
        SessionEvent::WatcherJoined { user } => (Kind::WATCHER, user.as_str()),
        SessionEvent::ViewerLeft { user } => (Kind::VIEWER_LEFT, user.as_str()),
        SessionEvent::Frozen { by } => (Kind::SESSION_FREEZE, by.as_str()),
        SessionEvent::Unfrozen { by } => (Kind::SESSION_UNFREEZE, by.as_str()),
        SessionEvent::Policy { .. } => (Kind::POLICY, session.user.as_str()),
        SessionEvent::Clipboard { .. } => (Kind::CLIPBOARD, session.user.as_str()),
        SessionEvent::FileTransfer { .. } | SessionEvent::FileChange { .. } => {
            (Kind::FILE, session.user.as_str())
        }
        // Not sent by the broker (see `SessionAudit`); kept should that change.
        SessionEvent::Keys { .. }
        | SessionEvent::Resize { .. }
        | SessionEvent::FramesDropped { .. }
        | SessionEvent::EventsLost { .. } => (Kind::POLICY, session.user.as_str()),
    };
    let mut record = Record::new(kind, actor)
        .target(session.target.clone())
        .session(session.id.clone())
        .detail("entry", json!(session.entry));
    if let Ok(Value::Object(fields)) = serde_json::to_value(event) {
        for (k, v) in fields {
            record = record.detail(k, v);
        }
    }
    record
}

/// Most entries one query returns.
const MAX_PAGE: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Who acted (exact).
    actor: Option<String>,
    /// Which target (exact).
    target: Option<String>,
    /// Which session (exact).
    session: Option<String>,
    /// Record kinds, comma-separated.
    kind: Option<String>,
    /// From this time (Unix ms, inclusive).
    since_ms: Option<u64>,
    /// Until this time (Unix ms, exclusive).
    until_ms: Option<u64>,
    /// Newest first, older than this sequence number (paging backwards).
    before_seq: Option<u64>,
    /// At most this many (default 100, at most 500).
    limit: Option<usize>,
}

/// `GET /audit`: the trail, newest first, filtered (security team and administrators).
pub(crate) async fn query(
    State(state): State<AppState>,
    Soc(_who): Soc,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, WebError> {
    let Some(log) = state.audit.log.clone() else {
        return Err(WebError::NotFound(
            "this gateway keeps no audit trail".into(),
        ));
    };
    let mut kinds = Vec::new();
    for name in q.kind.iter().flat_map(|k| k.split(',')).map(str::trim) {
        if !name.is_empty() {
            kinds.push(Kind::new(name).map_err(|e| WebError::BadRequest(e.to_string()))?);
        }
    }
    let limit = q.limit.unwrap_or(100).min(MAX_PAGE);
    let filter = Filter {
        actor: q.actor,
        target: q.target,
        session: q.session,
        kinds,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before_seq: q.before_seq,
        order: Order::NewestFirst,
        ..Filter::new(limit)
    };
    let entries: Vec<Entry> = tokio::task::spawn_blocking(move || log.query(&filter))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next_before_seq": next })))
}

/// `GET /audit/exports`: each SIEM export's status (connected, last delivered record, pending,
/// last error), so the security team sees a SIEM falling behind.
pub(crate) async fn exports(State(state): State<AppState>, Soc(_who): Soc) -> Json<Value> {
    let last = state.audit.log.as_ref().map(|l| l.recovery().next_seq);
    let list: Vec<Value> = state
        .audit
        .exports
        .iter()
        .map(|h| serde_json::to_value(h.status()).unwrap_or(Value::Null))
        .collect();
    Json(json!({ "exports": list, "next_seq_at_start": last }))
}

/// `GET /audit/verify`: checks the whole chain now and says where it breaks, if it does.
pub(crate) async fn verify(
    State(state): State<AppState>,
    Soc(_who): Soc,
) -> Result<Json<Value>, WebError> {
    let Some(dir) = state.audit.dir() else {
        return Err(WebError::NotFound(
            "this gateway keeps no audit trail".into(),
        ));
    };
    let report = tokio::task::spawn_blocking(move || portcullis_audit::verify(&dir))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(Json(match report {
        Ok(r) => json!({
            "ok": true,
            "records": r.records,
            "files": r.files,
            "last_seq": r.last_seq,
            "last_hash": r.last_hash.to_hex(),
        }),
        Err(e) => {
            warn!(error = %e, "the audit trail does not verify");
            json!({ "ok": false, "error": e.to_string() })
        }
    }))
}
