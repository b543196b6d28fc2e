//! The registry of live sessions ([`Broker`]): listing, closing, shutdown, and `open`, which
//! registers a session and starts its thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::desktop::{Framebuffer, Timeouts};
use portcullis_core::session::{EntryPath, SessionEnd, SessionEvent, SessionInfo, SessionState};
use portcullis_core::wire::ErrorCode;
use portcullis_policy::SessionGrant;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::drive::DriveRoute;
use super::target::TargetSpec;
use super::task::{finish, opening_events, session_thread};
use super::{Ending, SessionAudit, SessionHandle, SessionShared};
use crate::live::{Changes, Live, Tracker};
use crate::locks::lock;
use crate::tap::SessionRecorder;

/// Commands (input) buffered towards the target; a browser that floods input waits.
const COMMAND_QUEUE: usize = 256;
/// Most live sessions one account may have at once (browser and native together). Each session
/// is a thread, a target connection and a video encoder; a person works in a handful at a time,
/// so 16 leaves room for automation without letting one login starve the gateway.
pub const MAX_SESSIONS_PER_USER: usize = 16;

/// A request to open a session.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// Gateway user.
    pub user: String,
    /// Their immutable id.
    pub user_id: String,
    /// Target name.
    pub target: String,
    /// How to reach it.
    pub spec: TargetSpec,
    /// The user's address.
    pub client_addr: String,
    /// How the user came in.
    pub entry: EntryPath,
    /// What the policy allowed: the session enforces its clipboard verdicts, time limit and
    /// idle timeout, and is refused when it requires a recording and none is configured.
    pub grant: SessionGrant,
}

/// Why a session could not be opened.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct OpenError {
    /// For the browser.
    pub code: ErrorCode,
    /// Human-readable, safe to show the user (never contains secrets).
    pub message: String,
}

/// The registry of live sessions. Cheap to clone.
#[derive(Clone, Default)]
pub struct Broker {
    sessions: Arc<Mutex<HashMap<String, SessionHandle>>>,
    timeouts: Timeouts,
    recorder: Option<Arc<dyn SessionRecorder>>,
    audit: Option<Arc<dyn SessionAudit>>,
    /// Session threads, viewers and recorder taps still alive (what a shutdown waits for).
    tracker: Tracker,
    /// Set by [`Broker::shutdown`] (under the sessions' lock): no session opens any more.
    closing: Arc<AtomicBool>,
    /// Bumped whenever a session opens, ends, changes state, is frozen or scores a risk (what
    /// the security team's console shows): see [`Broker::changes`].
    changed: Changes,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with the given target timeouts.
    pub fn new(timeouts: Timeouts) -> Self {
        Self {
            sessions: Arc::default(),
            timeouts,
            recorder: None,
            audit: None,
            tracker: Tracker::default(),
            closing: Arc::default(),
            changed: Changes::default(),
        }
    }

    /// Sends every session's audit-worthy events to `audit`.
    pub fn with_audit(mut self, audit: Arc<dyn SessionAudit>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// A receiver that sees a new value whenever a session opens, ends, changes state, is
    /// frozen or unfrozen, or scores a risk (several changes may show as one): the security
    /// team's console refreshes on it instead of waiting for its next poll.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Records every session with `recorder`; a session it cannot record does not open.
    pub fn with_recorder(mut self, recorder: Arc<dyn SessionRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// True when sessions are recorded.
    pub fn records(&self) -> bool {
        self.recorder.is_some()
    }

    /// Every live session.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = lock(&self.sessions).values().map(|s| s.info()).collect();
        v.sort_by(|a, b| a.started_at_ms.cmp(&b.started_at_ms).then(a.id.cmp(&b.id)));
        v
    }

    /// A live session by id.
    pub fn get(&self, id: &str) -> Option<SessionHandle> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Closes a session by id; false if there is none.
    pub fn close(&self, id: &str, end: SessionEnd) -> bool {
        match self.get(id) {
            Some(s) => {
                s.close(end);
                true
            }
            None => false,
        }
    }

    /// Ends every session with `end` (the gateway is stopping), refuses any new one, and
    /// waits until every session thread has ended, every viewer was told and let go (browser
    /// sockets closed, native clients disconnected) and every recorder dropped its tap (its
    /// recording closed). The caller bounds the wait; see [`Broker::still_open`].
    pub async fn shutdown(&self, end: SessionEnd) {
        let sessions: Vec<SessionHandle> = {
            let map = lock(&self.sessions);
            self.closing.store(true, Ordering::SeqCst);
            map.values().cloned().collect()
        };
        info!(sessions = sessions.len(), "ending every session");
        for s in sessions {
            s.shared.end_because(end.clone(), true);
        }
        self.tracker.idle().await;
    }

    /// Session threads, viewers and recordings not finished yet (what [`Broker::shutdown`]
    /// still waits for).
    pub fn still_open(&self) -> usize {
        self.tracker.count()
    }

    /// Connects to the target and starts the session. While connecting, the session is listed
    /// in state `connecting`; on failure it disappears and the error says why.
    pub async fn open(&self, req: OpenRequest) -> Result<SessionHandle, OpenError> {
        // A shutdown waits for an open under way (entered before `closing` is read): a start
        // it puts on record gets its end on record before the gateway's stop.
        let opening = self.tracker.enter();
        if self.closing.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        // One account cannot take the gateway's threads and encoders from everyone else. (Two
        // opens racing may both pass: the cap is a bound on resources, not an exact count.)
        let open_now = lock(&self.sessions)
            .values()
            .filter(|h| {
                let info = h.info();
                if req.user_id.is_empty() {
                    info.user == req.user
                } else {
                    info.user_id == req.user_id
                }
            })
            .count();
        if open_now >= MAX_SESSIONS_PER_USER {
            return Err(OpenError {
                code: ErrorCode::PolicyDenied,
                message: format!(
                    "you already have {open_now} live sessions, the most one account may have at once: close one first"
                ),
            });
        }
        if let Some(denial) = req.grant.recording(self.recorder.is_some()).denial() {
            return Err(OpenError {
                code: ErrorCode::RecordingUnavailable,
                message: denial.explain(),
            });
        }
        let id = uuid::Uuid::new_v4().to_string();
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let info = SessionInfo {
            id: id.clone(),
            user: req.user.clone(),
            user_id: req.user_id.clone(),
            target: req.target.clone(),
            client_addr: req.client_addr.clone(),
            started_at_ms,
            state: SessionState::Connecting,
            entry: req.entry,
            frozen: false,
            risk_score: 0,
            risk_rules: Vec::new(),
            clipboard_bytes: 0,
            file_bytes: 0,
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ending, _) = watch::channel(Ending::Running);
        let shared = Arc::new(SessionShared {
            info: Mutex::new(info),
            desktop: RwLock::new(Framebuffer::new(1, 1).map_err(|e| OpenError {
                code: ErrorCode::Internal,
                message: e.to_string(),
            })?),
            viewers: Mutex::new(Vec::new()),
            commands: cmd_tx,
            ending,
            tap: OnceLock::new(),
            grant: req.grant.clone(),
            opened: Instant::now(),
            last_input_ms: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            risk_hold: AtomicBool::new(false),
            risk: Mutex::default(),
            screen: Mutex::default(),
            observers: std::sync::atomic::AtomicUsize::new(0),
            hold_recorded: AtomicBool::new(false),
            drive: Mutex::new(DriveRoute::default()),
            audit: self.audit.clone(),
            tracker: self.tracker.clone(),
            changed: self.changed.clone(),
            by_shutdown: AtomicBool::new(false),
            ends_at: req.grant.ends_at_unix_secs(started_at_ms / 1000).map(|at| {
                let left = u64::try_from(at.saturating_sub(started_at_ms / 1000)).unwrap_or(0);
                Instant::now() + Duration::from_secs(left)
            }),
        });
        let handle = SessionHandle { shared };
        if self.closing.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        // On record, durably, before the target is contacted: no unaudited session.
        for (i, event) in opening_events(&req).iter().enumerate() {
            if let Err(e) = handle.shared.audit_first(event).await {
                warn!(session = %id, error = %e, "cannot audit the session's start; refusing it");
                if i > 0 {
                    // Its start is on record: so is its end, if the trail takes it.
                    handle.shared.audit_only(&SessionEvent::SessionEnd {
                        reason: format!(
                            "the session did not open: the audit trail cannot be written ({e})"
                        ),
                    });
                }
                return Err(OpenError {
                    code: ErrorCode::AuditUnavailable,
                    message: format!(
                        "the audit trail cannot be written right now ({e}), so the session was not opened"
                    ),
                });
            }
        }
        let guard = {
            // Under the lock [`Broker::shutdown`] takes: either it sees this session, or this
            // sees that it began (and the start on record gets its end, recorded once the lock
            // is let go: a stalled trail must not hold up the shutdown's lock).
            let mut sessions = lock(&self.sessions);
            if self.closing.load(Ordering::SeqCst) {
                None
            } else {
                sessions.insert(id.clone(), handle.clone());
                self.changed.bump();
                // Entered under the same lock: a shutdown that sees no session thread alive
                // also sees no session listed.
                Some(Deregister {
                    sessions: Arc::clone(&self.sessions),
                    id: id.clone(),
                    changed: self.changed.clone(),
                    _live: self.tracker.enter(),
                })
            }
        };
        let Some(guard) = guard else {
            handle.shared.audit_only(&SessionEvent::SessionEnd {
                reason: "the session did not open: the gateway is shutting down".into(),
            });
            return Err(shutting_down());
        };
        // The session thread's guard holds the shutdown from here on.
        drop(opening);
        #[cfg(test)]
        tests::registered();

        // Each session lives on its own thread with a single-threaded runtime: vnc-rs hands an
        // update over tile by tile through its own tasks, and hops between them are far cheaper
        // on one thread than across a shared pool (measured with benches/run.mjs). It is also
        // what !Send protocol stacks (ironrdp-server) need.
        let (ready_tx, ready_rx) = oneshot::channel();
        let timeouts = self.timeouts;
        let recorder = self.recorder.clone();
        let thread_handle = handle.clone();
        // Held until the thread is done, after a panic's `finish` too (the guard inside the
        // session's future goes as the panic unwinds it): the session's end is on record before
        // a shutdown waiting for it writes the gateway's stop.
        let alive = self.tracker.enter();
        let spawned = std::thread::Builder::new()
            .name(format!("session-{}", id.get(..8).unwrap_or(&id)))
            .spawn(move || {
                let _alive = alive;
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(OpenError {
                            code: ErrorCode::Internal,
                            message: format!("cannot start the session runtime: {e}"),
                        }));
                        return;
                    }
                };
                let run = std::panic::AssertUnwindSafe(|| {
                    rt.block_on(session_thread(
                        thread_handle.clone(),
                        req,
                        timeouts,
                        recorder,
                        cmd_rx,
                        guard,
                        ready_tx,
                    ))
                });
                // A bug must not leave a zombie: viewers waiting forever, a recording never
                // closed, a shutdown waiting for them. The session ends as it would otherwise.
                if std::panic::catch_unwind(run).is_err() {
                    error!(session = %thread_handle.id(), "session thread panicked: ending the session");
                    thread_handle.shared.end(SessionEnd::Internal);
                    finish(&thread_handle.shared);
                }
            });
        if let Err(e) = spawned {
            return Err(OpenError {
                code: ErrorCode::Internal,
                message: format!("cannot start the session thread: {e}"),
            });
        }
        let outcome = match ready_rx.await {
            Ok(Ok(())) => return Ok(handle),
            Ok(Err(e)) => e,
            Err(_) => OpenError {
                code: ErrorCode::Internal,
                message: "the session thread ended while connecting".into(),
            },
        };
        // The session thread deregisters it as it ends, which may be just after it answered:
        // a session that failed to open is not listed once the caller hears of it.
        lock(&self.sessions).remove(&id);
        self.changed.bump();
        Err(outcome)
    }
}

/// What an open is told once the gateway is stopping.
pub(super) fn shutting_down() -> OpenError {
    OpenError {
        code: ErrorCode::Internal,
        message: "the gateway is shutting down".into(),
    }
}

/// Removes a session from the registry when the session task ends, however it ends.
pub(super) struct Deregister {
    sessions: Arc<Mutex<HashMap<String, SessionHandle>>>,
    id: String,
    /// Told of the removal.
    changed: Changes,
    /// The session thread is alive.
    _live: Live,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        lock(&self.sessions).remove(&self.id);
        self.changed.bump();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::cell::RefCell;

    use super::*;

    thread_local! {
        /// Called by [`Broker::open`] once the session is registered (tests only).
        static ON_REGISTERED: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
    }

    pub(super) fn registered() {
        ON_REGISTERED.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                f();
            }
        });
    }

    /// A trail whose first record waits until `release` is notified; it keeps what it takes.
    #[derive(Default)]
    struct HeldTrail {
        release: Arc<tokio::sync::Notify>,
        held: AtomicBool,
        events: Arc<Mutex<Vec<String>>>,
    }

    impl SessionAudit for HeldTrail {
        fn session_event(&self, _: &SessionInfo, event: &SessionEvent) {
            lock(&self.events).push(format!("{event:?}"));
        }
        fn record_before(&self, _: &SessionInfo, _: &SessionEvent) -> super::super::AuditFuture {
            let release = Arc::clone(&self.release);
            let first = !self.held.swap(true, Ordering::SeqCst);
            Box::pin(async move {
                if first {
                    release.notified().await;
                }
                Ok(())
            })
        }
    }

    /// A trail that takes the first record before an act and refuses the next.
    #[derive(Default)]
    struct FailsSecond {
        before: std::sync::atomic::AtomicUsize,
        events: Mutex<Vec<String>>,
    }

    impl SessionAudit for FailsSecond {
        fn session_event(&self, _: &SessionInfo, event: &SessionEvent) {
            lock(&self.events).push(format!("{event:?}"));
        }
        fn record_before(&self, _: &SessionInfo, _: &SessionEvent) -> super::super::AuditFuture {
            let n = self.before.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    Ok(())
                } else {
                    Err("the disk is full".to_owned())
                }
            })
        }
    }

    /// A session whose start is on record but whose policy decision is not does not open, and
    /// its end is on record too.
    #[tokio::test(flavor = "current_thread")]
    async fn a_start_on_record_gets_its_end_when_the_open_is_refused() {
        let trail = Arc::new(FailsSecond::default());
        let broker = Broker::default()
            .with_audit(Arc::<FailsSecond>::clone(&trail))
            .with_recorder(crate::testing::HoldingRecorder::shared());
        let refused = broker
            .open(crate::testing::browser_request("127.0.0.1:1".to_owned()))
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::AuditUnavailable);
        let events = lock(&trail.events).clone();
        assert!(
            events.len() == 1 && events[0].contains("SessionEnd"),
            "{events:?}"
        );
    }

    /// An open under way when the shutdown begins holds the shutdown until its start, already
    /// on record, has its end on record too: the gateway's stop comes last.
    #[tokio::test(flavor = "current_thread")]
    async fn a_shutdown_waits_for_an_open_under_way_and_its_end_record() {
        let trail = Arc::new(HeldTrail::default());
        let events = Arc::clone(&trail.events);
        let release = Arc::clone(&trail.release);
        let broker = Broker::default()
            .with_audit(Arc::<HeldTrail>::clone(&trail))
            .with_recorder(crate::testing::HoldingRecorder::shared());
        let opener = broker.clone();
        let open = tokio::spawn(async move {
            opener
                .open(crate::testing::browser_request("127.0.0.1:1".to_owned()))
                .await
        });
        while !trail.held.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let stopper = broker.clone();
        let stop_events = Arc::clone(&events);
        let stop = tokio::spawn(async move {
            stopper.shutdown(SessionEnd::Shutdown).await;
            lock(&stop_events).push("gateway stopped".to_owned());
        });
        while !broker.closing.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(
            !stop.is_finished(),
            "the shutdown did not wait for the open"
        );
        release.notify_one();
        let refused = open.await.unwrap().unwrap_err();
        assert!(refused.message.contains("shutting down"), "{refused}");
        stop.await.unwrap();
        let events = lock(&events).clone();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].contains("SessionEnd"), "{events:?}");
        assert_eq!(events[1], "gateway stopped");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_listed_session_always_has_its_shutdown_guard() {
        let broker = Broker::default().with_recorder(crate::testing::HoldingRecorder::shared());
        let tracker = broker.tracker.clone();
        let sessions = Arc::clone(&broker.sessions);
        let seen = std::rc::Rc::new(RefCell::new(None));
        let seen_in = std::rc::Rc::clone(&seen);
        ON_REGISTERED.with(|f| {
            *f.borrow_mut() = Some(Box::new(move || {
                // What a shutdown taking the sessions' lock right now would see.
                let listed = lock(&sessions).len();
                *seen_in.borrow_mut() = Some((listed, tracker.count()));
            }))
        });
        // Nothing listens there: the open fails after the session was registered.
        let _ = broker
            .open(crate::testing::browser_request("127.0.0.1:1".to_owned()))
            .await;
        ON_REGISTERED.with(|f| f.borrow_mut().take());
        let (listed, guards) = seen.borrow().unwrap();
        assert_eq!(listed, 1);
        assert!(
            guards >= 1,
            "a session was listed with no shutdown guard: a shutdown would not wait for it"
        );
    }
}
