//! The audit trail as the gateway writes and reads it: every login (and failed one), every
//! session's start, end, watchers, freezes, policy decisions, clipboard and file events, every
//! administrative change (who, what, before and after), every kill, lock and export.
//!
//! An action is on disk in the trail before it takes effect and before the API acknowledges it:
//! handlers record what they are about to do ([`Audit::before`], [`Audit::record`], which wait
//! for the log's fsync) and only then do it, and answer 503 (doing nothing) when the trail
//! cannot be written: the gateway fails closed. When the act then fails, a follow-up record
//! says so. A session's start, a watcher joining and a freeze are recorded the same way
//! through [`SessionAudit::record_before`], awaited by the broker before the target is
//! contacted, the watcher sees the screen, the freeze takes effect. Other events from inside a
//! live session come through [`SessionAudit::session_event`] and are queued without waiting
//! (the session must not stall on a disk); they are also in the session's recording.

pub(crate) mod api;

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_audit::{AuditLog, Kind, Record};
use portcullis_broker::{AuditFuture, SessionAudit};
use portcullis_core::session::{SessionEvent, SessionInfo};
use serde_json::{json, Map, Value};
use tracing::{error, warn};

use crate::WebError;

/// The gateway's audit trail, or none (unit tests of the HTTP layer).
#[derive(Clone, Default)]
pub struct Audit {
    log: Option<Arc<AuditLog>>,
    /// The SIEM exports reading it, for their status.
    exports: Vec<portcullis_siem::Handle>,
}

impl Audit {
    /// The trail, when there is one.
    pub(crate) fn trail(&self) -> Option<Arc<AuditLog>> {
        self.log.clone()
    }
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

    /// Records written and fsynced since the trail was opened (none without a trail).
    pub fn appended(&self) -> Option<u64> {
        self.log.as_ref().map(|l| l.stats().appended)
    }

    /// Why the trail takes nothing more, if it does not (none without a trail).
    pub fn failure(&self) -> Option<String> {
        self.log.as_ref().and_then(|l| l.failure())
    }

    /// Where the trail lives, if there is one.
    pub fn dir(&self) -> Option<PathBuf> {
        self.log.as_ref().map(|l| l.dir().to_path_buf())
    }

    /// How far the trail is fsynced, for readers of its files (the SIEM exports).
    pub fn watermark(&self) -> Option<portcullis_audit::Watermark> {
        self.log.as_ref().map(|l| l.watermark())
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
        self.record_seq(record).await.map(|_| ())
    }

    /// [`Audit::record`], returning the record's seq (none without a trail).
    async fn record_seq(&self, record: Record) -> Result<Option<u64>, WebError> {
        count(&record);
        let Some(log) = &self.log else {
            return Ok(None);
        };
        let kind = record.kind.as_str().to_owned();
        let outcome = match log.try_submit(record) {
            Ok(ticket) => ticket.await.map(|a| Some(a.seq)),
            Err(e) => Err(e),
        };
        outcome.map_err(|e| {
            error!(error = %e, %kind, "the audit trail cannot be written; action refused");
            unavailable(&e)
        })
    }

    /// Records an act that is about to happen (`record` states the intended change: before
    /// and after), waits until the record is on disk, and only then carries it out. When the
    /// trail cannot take the record, `act` does not run (503). When `act` fails after it was
    /// recorded, a follow-up record of the same kind says so (`outcome: "failed"`, the error,
    /// and `intent_seq`, the seq of the record it follows up): the trail never shows a change
    /// that did not happen without saying so.
    pub(crate) async fn before<T>(
        &self,
        record: Record,
        act: impl FnOnce() -> Result<T, WebError>,
    ) -> Result<T, WebError> {
        let mut follow_up = Record {
            detail: Map::new(),
            ..record.clone()
        };
        if let Some(action) = record.detail.get("action") {
            follow_up = follow_up.detail("action", action.clone());
        }
        let seq = self.record_seq(record).await?;
        let e = match act() {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let mut follow_up = follow_up
            .detail("outcome", "failed")
            .detail("error", e.to_string());
        if let Some(seq) = seq {
            follow_up = follow_up.detail("intent_seq", seq);
        }
        if let Err(not_recorded) = self.record(follow_up).await {
            warn!(error = %not_recorded, "the failure of an audited action is not in the trail");
        }
        Err(e)
    }
}

/// A failed login attempt, for the audit trail (`name` as typed: it may be no user at all).
pub(crate) fn login_failed(name: &str, why: &str) -> Record {
    // A password typed into the user name field must not end up in the trail whole.
    let shown: String = name.chars().take(64).collect();
    Record::new(Kind::LOGIN_FAILED, shown)
        .detail("entry", "browser")
        .detail("reason", why)
}

/// An administrator's change, for the audit trail: what changed, and its state before and after
/// (never a secret).
pub(crate) fn admin_change(admin: &str, action: &str, before: Value, after: Value) -> Record {
    Record::new(Kind::ADMIN_CHANGE, admin)
        .detail("action", action)
        .detail("before", before)
        .detail("after", after)
}

/// The answer when the trail cannot take a record: 503, nothing done.
pub(crate) fn unavailable(e: &dyn std::fmt::Display) -> WebError {
    WebError::Unavailable(format!(
        "the audit trail cannot be written right now ({e}), so nothing was done"
    ))
}

/// Session events into the log: queued (the session thread does not wait for the disk), or
/// awaited for the acts that must be on record first.
struct SessionSink {
    log: Arc<AuditLog>,
}

impl SessionAudit for SessionSink {
    fn record_before(&self, session: &SessionInfo, event: &SessionEvent) -> AuditFuture {
        let record = session_record(session, event);
        count(&record);
        let kind = record.kind.as_str().to_owned();
        let submitted = self.log.try_submit(record);
        let id = session.id.clone();
        Box::pin(async move {
            let outcome = match submitted {
                Ok(ticket) => ticket.await.map(|_| ()),
                Err(e) => Err(e),
            };
            outcome.map_err(|e| {
                error!(error = %e, session = %id, %kind, "the audit trail cannot be written; session act refused");
                e.to_string()
            })
        })
    }

    fn session_event(&self, session: &SessionInfo, event: &SessionEvent) {
        self.submit(session, session_record(session, event));
        // A high-risk session is its own event for the SIEM, once, at its end.
        if matches!(event, SessionEvent::SessionEnd { .. }) && session.risk_score >= HIGH_RISK_SCORE
        {
            let record = Record::new(Kind::HIGH_RISK, session.user.as_str())
                .target(session.target.clone())
                .session(session.id.clone())
                .detail("entry", json!(session.entry))
                .detail("risk_score", json!(session.risk_score))
                .detail("risk_rules", json!(session.risk_rules));
            self.submit(session, record);
        }
    }
}

/// The risk score from which a session is high-risk (its own audit record at its end).
pub const HIGH_RISK_SCORE: u32 = 50;

impl SessionSink {
    fn submit(&self, session: &SessionInfo, record: Record) {
        count(&record);
        let kind = record.kind.as_str().to_owned();
        // Waits only while the queue is full: back-pressure rather than a lost record. On the
        // gateway's shared runtime the wait is announced to it (`block_in_place`), so that its
        // other tasks, the shutdown's deadline among them, move to another worker; a session's
        // own thread simply waits.
        let submitted = match self.log.try_submit(record.clone()) {
            Err(portcullis_audit::AuditError::QueueFull) => {
                let wait = || self.log.submit(record);
                match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                        tokio::task::block_in_place(wait)
                    }
                    _ => wait(),
                }
            }
            other => other,
        };
        if let Err(e) = submitted {
            error!(error = %e, session = %session.id, %kind, "audit record of a session event lost");
        }
    }
}

/// Counts what `/metrics` derives from the trail: policy denials.
fn count(record: &Record) {
    if record.kind == Kind::POLICY
        && record.detail.get("decision").and_then(Value::as_str) == Some("deny")
    {
        portcullis_broker::stats::POLICY_DENIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        SessionEvent::InputHeld { .. } => (Kind::SESSION_HOLD, "system"),
        SessionEvent::InputReleased { by } => (Kind::SESSION_RELEASE, by.as_str()),
        SessionEvent::Policy { .. } => (Kind::POLICY, session.user.as_str()),
        SessionEvent::Risk { .. } => (Kind::RISK, session.user.as_str()),
        SessionEvent::Clipboard { .. } => (Kind::CLIPBOARD, session.user.as_str()),
        SessionEvent::FileTransfer { .. } | SessionEvent::FileChange { .. } => {
            (Kind::FILE, session.user.as_str())
        }
        // Not sent by the broker (see `SessionAudit`); kept should that change.
        SessionEvent::Keys { .. }
        | SessionEvent::ClipboardText { .. }
        | SessionEvent::ScreenText { .. }
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
            // A risk hit's matching text may hold what the user typed (a password on a command
            // line): it stays in the recording (like the key log), never in the trail or a SIEM.
            if k == "excerpt" && matches!(event, SessionEvent::Risk { .. }) {
                continue;
            }
            record = record.detail(k, v);
        }
    }
    record
}

#[cfg(test)]
mod tests {
    //! The record comes before the act: with a trail that cannot be written (a disk that fails
    //! every write, under a real log), every state-changing call answers 503 and changes
    //! nothing; with a working trail, a change that fails after it was recorded is followed up.
    #![allow(clippy::unwrap_used)]

    use std::io;
    use std::sync::Arc;

    use axum::http::StatusCode;
    use portcullis_audit::{AuditLog, CrashFiles, CrashLayer, Filter, OpenOptions};
    use portcullis_policy::PolicyDoc;
    use portcullis_secrets::SecretKey;
    use portcullis_store::{MemoryStore, Store, TargetKind, TargetRecord, TokenRecord, UserRecord};
    use serde_json::{json, Value};

    use super::Audit;
    use crate::policy::store as policy_store;
    use crate::AppState;

    struct Gateway {
        state: AppState,
        store: Arc<MemoryStore>,
        files: Arc<CrashFiles>,
        log: Arc<AuditLog>,
        _dir: tempfile::TempDir,
    }

    fn user(name: &str, role: &str, locked: bool) -> UserRecord {
        serde_json::from_value(json!({
            "name": name, "password_hash": "x", "role": role, "created_at": 0, "locked": locked,
        }))
        .unwrap()
    }

    fn gateway() -> Gateway {
        let store = Arc::new(MemoryStore::new());
        store.create_user(&user("root", "admin", false)).unwrap();
        store.create_user(&user("sam", "soc", false)).unwrap();
        store.create_user(&user("alice", "user", false)).unwrap();
        store.create_user(&user("bob", "user", true)).unwrap();
        let mut carol = user("carol", "user", false);
        carol.mfa = Some(portcullis_store::MfaRecord {
            sealed_secret: vec![1, 2, 3],
            confirmed: true,
            last_step: 0,
            since: 0,
            recovery: Vec::new(),
        });
        store.create_user(&carol).unwrap();
        store
            .create_target(&TargetRecord {
                name: "db1".into(),
                kind: TargetKind::Vnc,
                address: "h:5900".into(),
                account: String::new(),
                sealed_secret: vec![],
                description: String::new(),
                created_at: 0,
                labels: vec![],
                identity: Default::default(),
            })
            .unwrap();
        store.create_grant("alice", "db1", 0).unwrap();
        store
            .put_token(&TokenRecord {
                id: "0123456789abcdef".into(),
                user: "alice".into(),
                user_id: String::new(),
                name: "ci".into(),
                scopes: vec!["sessions:read".into()],
                secret_hash: vec![0; 32],
                created_at: 0,
                expires_at: i64::MAX,
                created_by: "root".into(),
            })
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = CrashFiles::new();
        let log = Arc::new(
            OpenOptions::new()
                .file_layer(Arc::new(CrashLayer(Arc::clone(&files))))
                .open(dir.path())
                .unwrap(),
        );
        let broker = portcullis_broker::Broker::new(Default::default());
        let state = AppState::new(
            Arc::<MemoryStore>::clone(&store),
            Arc::new(SecretKey::generate()),
            broker,
        )
        .with_audit(Audit::new(Arc::clone(&log)));
        Gateway {
            state,
            store,
            files,
            log,
            _dir: dir,
        }
    }

    use crate::test_support::call_as as call;

    /// Everything the calls below could change.
    fn snapshot(g: &Gateway) -> Value {
        let s = g.store.as_ref();
        json!({
            "users": s.list_users().unwrap(),
            "targets": s.list_targets().unwrap().iter().map(|t| &t.name).collect::<Vec<_>>(),
            "grants": s.list_grants().unwrap().iter().map(|g| (&g.user, &g.target)).collect::<Vec<_>>(),
            "tokens": s.list_tokens().unwrap(),
            "policy_stored": policy_store::load_policy_doc(s).unwrap(),
            "policy_in_force": g.state.policy.current().doc(),
        })
    }

    #[tokio::test]
    async fn an_unwritable_trail_refuses_every_change_and_changes_nothing() {
        let g = gateway();
        g.files.fail_with(Some(io::ErrorKind::StorageFull));
        let before = snapshot(&g);
        let mut policy = PolicyDoc::default_policy();
        policy.rules.clear();
        let calls: Vec<(&str, &str, &str, Option<Value>)> = vec![
            ("root", "DELETE", "/users/alice", None),
            (
                "root",
                "POST",
                "/users",
                Some(json!({"name": "dave", "password": "a long enough password", "role": "user"})),
            ),
            (
                "root",
                "POST",
                "/tokens",
                Some(json!({"user": "alice", "name": "new", "scopes": ["sessions:read"]})),
            ),
            ("root", "DELETE", "/tokens/0123456789abcdef", None),
            ("root", "PUT", "/policy", Some(json!(policy))),
            ("root", "DELETE", "/users/carol/mfa", None),
            (
                "root",
                "POST",
                "/targets",
                Some(json!({"name": "db2", "address": "h:5901", "password": "pw"})),
            ),
            ("root", "DELETE", "/targets/db1", None),
            (
                "root",
                "POST",
                "/grants",
                Some(json!({"user": "carol", "target": "db1"})),
            ),
            ("root", "DELETE", "/grants/alice/db1", None),
            (
                "sam",
                "POST",
                "/users/alice/lock",
                Some(json!({"reason": "test"})),
            ),
            ("sam", "POST", "/users/bob/unlock", None),
        ];
        for (who, method, path, body) in calls {
            let (status, v) = call(&g.state, who, method, path, body).await;
            assert_eq!(
                status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{method} {path}: {v}"
            );
            assert!(
                v["error"].as_str().unwrap().contains("audit trail"),
                "{method} {path}: {v}"
            );
            assert_eq!(snapshot(&g), before, "{method} {path} changed something");
        }
        // Nothing reached the trail either.
        assert!(g.log.query(&Filter::new(100)).unwrap().is_empty());
    }

    /// A logout is on record before the login ends, and ends it even when the trail cannot
    /// take it (a logout only takes privilege away).
    #[tokio::test]
    async fn a_logout_ends_the_login_and_is_on_record_when_it_can_be() {
        use axum::body::Body as HttpBody;
        use tower::ServiceExt;
        let g = gateway();
        let alice = g.store.get_user("alice").unwrap().unwrap();
        let logout = |token: &str| {
            axum::http::Request::builder()
                .method("POST")
                .uri("/api/v1/auth/logout")
                .header("cookie", format!("pc_session={token}"))
                .header("x-portcullis-csrf", "1")
                .body(HttpBody::empty())
                .unwrap()
        };
        g.files.fail_with(Some(io::ErrorKind::StorageFull));
        let token = g.state.logins.create(&alice).unwrap();
        let res = crate::router(g.state.clone())
            .oneshot(logout(&token))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(
            g.state.logins.lookup(&token).is_none(),
            "the login outlived its logout"
        );
        let token = g.state.logins.create(&alice).unwrap();
        // A trail that works (a failed one stays stopped), same logins.
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path()).unwrap());
        let state = g.state.clone().with_audit(Audit::new(Arc::clone(&log)));
        let res = crate::router(state.clone())
            .oneshot(logout(&token))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(state.logins.lookup(&token).is_none());
        let out = log
            .query(&Filter {
                kinds: vec![portcullis_audit::Kind::LOGOUT],
                ..Filter::new(10)
            })
            .unwrap();
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn the_record_comes_first_and_a_failed_act_is_followed_up() {
        let g = gateway();
        let (status, _) = call(&g.state, "root", "DELETE", "/users/alice", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = call(
            &g.state,
            "root",
            "POST",
            "/grants",
            Some(json!({"user": "nobody", "target": "db1"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let entries = g.log.query(&Filter::new(100)).unwrap();
        let details: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.record.detail.get("action").cloned(),
                    e.record.detail.get("outcome").cloned(),
                )
            })
            .collect();
        assert_eq!(
            details,
            vec![
                (Some(json!("user_delete")), None),
                (Some(json!("grant_create")), None),
                (Some(json!("grant_create")), Some(json!("failed"))),
            ]
        );
        assert_eq!(
            entries[2].record.detail["intent_seq"],
            json!(entries[1].seq)
        );
        assert_eq!(entries[0].record.detail["before"]["name"], json!("alice"));
    }

    /// An RFB 3.8 server without authentication (64x64) that keeps the connection open.
    async fn rfb_target() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            s.write_all(b"RFB 003.008\n").await.unwrap();
            s.read_exact(&mut buf[..12]).await.unwrap();
            s.write_all(&[1, 1]).await.unwrap();
            s.read_exact(&mut buf[..1]).await.unwrap();
            s.write_all(&0u32.to_be_bytes()).await.unwrap();
            s.read_exact(&mut buf[..1]).await.unwrap();
            let mut init = vec![
                0, 64, 0, 64, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0,
            ];
            init.extend_from_slice(&4u32.to_be_bytes());
            init.extend_from_slice(b"fake");
            s.write_all(&init).await.unwrap();
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_freeze_the_trail_cannot_take_is_refused_and_the_session_stays_as_it_was() {
        use portcullis_policy::{Entry, Policy, Recording, Subject, TargetRef};
        let mut g = gateway();
        let broker = portcullis_broker::Broker::new(Default::default())
            .with_audit(g.state.audit.session_sink().unwrap());
        g.state.broker = broker.clone();
        let mut doc = PolicyDoc::default_policy();
        doc.rules[0].recording = Recording::Optional;
        let grant = Policy::compile(&doc)
            .unwrap()
            .session(
                &Subject {
                    user: "alice",
                    role: "user",
                    groups: &[],
                },
                &TargetRef::new("db1", &[]),
                Entry::Browser,
                0,
            )
            .into_result()
            .unwrap();
        let session = broker
            .open(portcullis_broker::OpenRequest {
                user: "alice".into(),
                user_id: "u_alice".into(),
                target: "db1".into(),
                spec: portcullis_broker::TargetSpec::Vnc {
                    address: rfb_target().await,
                    password: String::new(),
                },
                client_addr: "test".into(),
                entry: portcullis_core::session::EntryPath::Browser,
                grant,
            })
            .await
            .unwrap();
        let id = session.id();
        // The start was on record (durably) before the target was contacted.
        let kinds: Vec<String> = g
            .log
            .query(&Filter::new(10))
            .unwrap()
            .iter()
            .map(|e| e.record.kind.as_str().to_owned())
            .collect();
        assert_eq!(
            kinds[..2],
            ["session_start".to_owned(), "policy".to_owned()]
        );

        g.files.fail_with(Some(io::ErrorKind::StorageFull));
        let (status, v) = call(
            &g.state,
            "sam",
            "POST",
            &format!("/sessions/{id}/freeze"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert!(!session.info().frozen, "frozen without a record");
        session.close(portcullis_core::session::SessionEnd::ClosedByAdmin {
            message: "done".into(),
        });
    }

    /// A session event that arrives while the trail's disk is stalled and its queue is full
    /// waits for room (nothing is lost), but on the gateway's runtime it lets the other tasks
    /// run: the shutdown's deadline still fires.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_session_event_on_a_stalled_trail_does_not_stall_the_runtime() {
        use portcullis_broker::SessionAudit;
        use portcullis_core::session::{SessionEvent, SessionInfo};
        let dir = tempfile::tempdir().unwrap();
        let files = CrashFiles::new();
        let log = Arc::new(
            OpenOptions::new()
                .queue_depth(1)
                .file_layer(Arc::new(CrashLayer(Arc::clone(&files))))
                .open(dir.path())
                .unwrap(),
        );
        let record = || portcullis_audit::Record::new(portcullis_audit::Kind::POLICY, "alice");
        files.hold_syncs(true);
        // Let go however the test ends, so that a failure is reported rather than a hang.
        struct Release(Arc<CrashFiles>);
        impl Drop for Release {
            fn drop(&mut self) {
                self.0.hold_syncs(false);
            }
        }
        let release = Release(Arc::clone(&files));
        // One record held in its fsync, one waiting in the queue: the queue is full.
        let _held = log.try_submit(record()).unwrap();
        assert!(files.wait_held(std::time::Duration::from_secs(10)));
        let _queued = log.try_submit(record()).unwrap();
        assert!(log.try_submit(record()).is_err());
        let sink = super::SessionSink {
            log: Arc::clone(&log),
        };
        let info: SessionInfo = serde_json::from_value(json!({
            "id": "s1", "user": "alice", "target": "db1", "client_addr": "127.0.0.1",
            "started_at_ms": 0, "state": "active", "entry": "browser",
        }))
        .unwrap();
        // On the runtime's only worker: waits for room in the queue.
        let waiting = tokio::spawn(async move {
            sink.session_event(&info, &SessionEvent::ViewerLeft { user: "bob".into() });
        });
        // A deadline on the same runtime still fires meanwhile.
        let (fired, heard) = std::sync::mpsc::channel();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = fired.send(());
        });
        assert!(
            heard
                .recv_timeout(std::time::Duration::from_secs(20))
                .is_ok(),
            "a session event waiting on the stalled trail stalled the runtime"
        );
        assert!(!waiting.is_finished());
        drop(release);
        waiting.await.unwrap();
        // Once a later record is on disk, so is the event (the writer goes in order).
        let later = Arc::clone(&log);
        tokio::task::spawn_blocking(move || later.append(record()))
            .await
            .unwrap()
            .unwrap();
        let left = log
            .query(&Filter {
                kinds: vec![portcullis_audit::Kind::VIEWER_LEFT],
                ..Filter::new(10)
            })
            .unwrap();
        assert_eq!(left.len(), 1, "the event waited and was recorded");
    }
}
