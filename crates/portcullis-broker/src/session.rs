//! A live session as everything around it shares it ([`SessionShared`]) and the handle the
//! gateway holds ([`SessionHandle`]): freeze, audit and end (viewers attach through it in
//! `viewer`, above this module). The session's other jobs live in the submodules below.

mod crossing;
mod drive;
mod registry;
mod risk;
mod screen;
mod target;
mod task;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use portcullis_core::desktop::{Framebuffer, TargetCommand};
use portcullis_core::session::{ClipboardDirection, SessionEnd, SessionEvent, SessionInfo};
use portcullis_core::wire::ServerMessage;
use portcullis_policy::SessionGrant;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::info;

pub use registry::{Broker, OpenError, OpenRequest, MAX_SESSIONS_PER_USER};
pub use screen::SettledArea;
pub use target::TargetSpec;

use crate::live::{Changes, Tracker};
use crate::locks::{lock, read};
use crate::tap::state::{TapEvent, TapShared};
use crate::viewer::state::ViewerShared;
use drive::DriveRoute;

/// Where a session's events that belong in the audit trail go (the gateway's audit log).
pub trait SessionAudit: Send + Sync + 'static {
    /// `event` happened in `session`. Only audit-worthy events come here: end, viewers,
    /// policy decisions, clipboard and file events (not keys, not resizes: those are in the
    /// recording). Called on the session's own thread: it must not block for long (queue and
    /// return).
    fn session_event(&self, session: &SessionInfo, event: &SessionEvent);

    /// Records `event`, which is about to happen, and resolves once it is durable in the trail
    /// (fsynced). The broker awaits it before acts that must be on record first: a session's
    /// start and the policy's decision to open it (before the target is contacted), a watcher
    /// joining (before it sees the screen), a freeze or unfreeze (before it takes effect). An
    /// error (why the trail cannot take it) means the act does not happen.
    fn record_before(&self, session: &SessionInfo, event: &SessionEvent) -> AuditFuture;
}

/// What [`SessionAudit::record_before`] returns: resolves once the record is durable, or with
/// why it cannot be.
pub type AuditFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// True for the events that [`SessionAudit`] receives.
fn audit_worthy(event: &SessionEvent) -> bool {
    !matches!(
        event,
        SessionEvent::Keys { .. }
            | SessionEvent::ClipboardText { .. }
            | SessionEvent::ScreenText { .. }
            | SessionEvent::Resize { .. }
            | SessionEvent::FramesDropped { .. }
            | SessionEvent::EventsLost { .. }
    )
}

/// Why a session ended, as viewers are told.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    Running,
    Ended(SessionEnd),
}

pub(crate) struct SessionShared {
    pub(crate) info: Mutex<SessionInfo>,
    pub(crate) desktop: RwLock<Framebuffer>,
    viewers: Mutex<Vec<Weak<ViewerShared>>>,
    pub(crate) commands: mpsc::Sender<TargetCommand>,
    pub(crate) ending: watch::Sender<Ending>,
    /// The recorder's tap, once recording started.
    pub(crate) tap: OnceLock<Arc<TapShared>>,
    /// What the policy allows this session.
    pub(crate) grant: SessionGrant,
    /// When the session was opened, and the last viewer input since then (ms): the idle clock.
    opened: Instant,
    last_input_ms: AtomicU64,
    /// When the policy's maximum duration or time window ends the session.
    ends_at: Option<Instant>,
    /// The security team holds the user's input.
    pub(crate) frozen: AtomicBool,
    /// A risk rule's freeze or kill is on its way: input is held meanwhile.
    pub(crate) risk_hold: AtomicBool,
    /// What the risk rules follow (the command line being typed).
    pub(crate) risk: Mutex<risk::RiskState>,
    /// What changed on the screen since its text was last read (never held together with the
    /// framebuffer's lock).
    pub(crate) screen: Mutex<screen::ScreenChange>,
    /// Observers watching now (four eyes: the grant requires one for input to go through).
    pub(crate) observers: std::sync::atomic::AtomicUsize,
    /// The four-eyes hold of the session's start is in the event track.
    pub(crate) hold_recorded: AtomicBool,
    /// Where the target's drive redirection messages go.
    drive: Mutex<DriveRoute>,
    /// The audit trail, if the gateway keeps one.
    audit: Option<Arc<dyn SessionAudit>>,
    /// What the broker's shutdown waits for (this session's viewers and tap enter it).
    pub(crate) tracker: Tracker,
    /// Told of changes the security team's console shows.
    pub(crate) changed: Changes,
    /// The session was ended by the gateway's shutdown (not by anything about the session).
    by_shutdown: AtomicBool,
}

impl SessionShared {
    /// Calls `f` for every viewer still there, with the viewer list let go: `f` may record in
    /// the audit trail, which can wait on a stalled disk, and an attach on the shared runtime
    /// takes that list.
    fn for_each_viewer(&self, mut f: impl FnMut(&ViewerShared)) {
        for v in &self.viewers_now() {
            f(v);
        }
    }

    /// The viewers still there (the list is let go on return).
    fn viewers_now(&self) -> Vec<Arc<ViewerShared>> {
        let mut viewers = lock(&self.viewers);
        viewers.retain(|w| w.strong_count() > 0);
        viewers.iter().filter_map(Weak::upgrade).collect()
    }

    /// Whether the user's input is held: frozen by the security team, or a four-eyes session
    /// nobody observes.
    pub(crate) fn input_held(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
            || self.risk_hold.load(Ordering::SeqCst)
            || (self.grant.observer_required() && self.observers.load(Ordering::SeqCst) == 0)
    }

    /// A four-eyes session's user viewer joins: told whether an observer watches; the session's
    /// first hold is recorded once.
    pub(crate) fn observer_state_for(&self, viewer: &ViewerShared) {
        if !self.grant.observer_required() {
            return;
        }
        let present = self.observers.load(Ordering::SeqCst) > 0;
        viewer.push_event(ServerMessage::Observer { present });
        if !present && !self.hold_recorded.swap(true, Ordering::SeqCst) {
            self.tap_event(TapEvent::Session(SessionEvent::InputHeld {
                why: format!(
                    "waiting for an observer (four-eyes rule {:?})",
                    self.grant.rule()
                ),
            }));
        }
    }

    /// An observer (`user`) starts watching: the first one lets the input through, once that
    /// is in the audit trail (durably); when it cannot be recorded, they do not count and the
    /// error says why (the input stays held).
    pub(crate) async fn observer_joined(&self, user: &str) -> Result<(), String> {
        let released = SessionEvent::InputReleased {
            by: user.to_owned(),
        };
        loop {
            let now = self.observers.load(Ordering::SeqCst);
            if now == 0 {
                // On record before the first observer lets input through. Another observer
                // may come meanwhile: then this one's record stands for both.
                self.audit_first(&released).await?;
            }
            if self
                .observers
                .compare_exchange(now, now + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                if now == 0 {
                    self.hold_recorded.store(true, Ordering::SeqCst);
                    self.tap_only(released);
                    info!(session = %lock(&self.info).id, observer = %user, "four eyes: observed, input goes through");
                    self.for_each_viewer(|v| {
                        v.push_event(ServerMessage::Observer { present: true });
                        v.wake();
                    });
                }
                return Ok(());
            }
            // The count changed meanwhile (an observer came or went): decide again.
        }
    }

    /// An observer (`user`) stops watching: when it was the last, the input is held again.
    pub(crate) fn observer_left(&self, user: &str) {
        let before = self
            .observers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if before == Ok(1) && matches!(*self.ending.borrow(), Ending::Running) {
            self.tap_event(TapEvent::Session(SessionEvent::InputHeld {
                why: format!("the last observer ({user}) left: input held until one watches"),
            }));
            info!(session = %lock(&self.info).id, observer = %user, "four eyes: the last observer left, input held");
            self.for_each_viewer(|v| {
                v.push_event(ServerMessage::Observer { present: false });
                v.wake();
            });
        }
    }

    /// Notes a clipboard transfer in the event track: its size (audited) and its text (its
    /// start, for searching the recording; never audited).
    pub(crate) fn clipboard_moved(&self, direction: ClipboardDirection, text: &str) {
        {
            let mut info = lock(&self.info);
            info.clipboard_bytes = info.clipboard_bytes.saturating_add(text.len() as u64);
        }
        self.tap_event(TapEvent::Session(SessionEvent::Clipboard {
            direction,
            bytes: text.len() as u64,
        }));
        let mut end = text.len().min(portcullis_core::session::MAX_CLIPBOARD_TEXT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end > 0 {
            self.tap_event(TapEvent::Session(SessionEvent::ClipboardText {
                direction,
                text: text[..end].to_owned(),
            }));
        }
    }

    pub(crate) fn tap_event(&self, event: TapEvent) {
        if let (TapEvent::Session(e), Some(audit)) = (&event, &self.audit) {
            if audit_worthy(e) {
                let info = lock(&self.info).clone();
                audit.session_event(&info, e);
            }
        }
        if let Some(tap) = self.tap.get() {
            tap.event(event);
        }
    }

    /// See [`SessionHandle::set_frozen`]. An unfreeze also lets go of input a risk rule's
    /// freeze held when its record failed.
    pub(crate) async fn set_frozen(&self, frozen: bool, by: &str) -> Result<bool, String> {
        if lock(&self.info).frozen == frozen {
            // A risk rule's hold whose freeze could not be recorded: let go once this is.
            if !frozen && self.risk_hold.load(Ordering::SeqCst) {
                self.audit_first(&SessionEvent::Unfrozen { by: by.to_owned() })
                    .await?;
                self.risk_hold.store(false, Ordering::SeqCst);
                return Ok(true);
            }
            return Ok(false);
        }
        let event = if frozen {
            SessionEvent::Frozen { by: by.to_owned() }
        } else {
            SessionEvent::Unfrozen { by: by.to_owned() }
        };
        self.audit_first(&event).await?;
        {
            let mut info = lock(&self.info);
            if info.frozen == frozen {
                return Ok(false);
            }
            info.frozen = frozen;
        }
        self.changed.bump();
        self.frozen.store(frozen, Ordering::SeqCst);
        if !frozen {
            self.risk_hold.store(false, Ordering::SeqCst);
        }
        let id = lock(&self.info).id.clone();
        info!(session = %id, frozen, %by, "session freeze changed");
        self.tap_only(event);
        self.for_each_viewer(|v| {
            v.push_event(ServerMessage::Frozen { frozen });
            v.wake();
        });
        Ok(true)
    }

    /// Records an act in the audit trail and waits until it is durable: the act may happen
    /// only after this succeeds.
    pub(crate) async fn audit_first(&self, event: &SessionEvent) -> Result<(), String> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let info = lock(&self.info).clone();
        audit.record_before(&info, event).await
    }

    /// Sends an event to the recording's tap only (the audit trail has it already).
    fn tap_only(&self, event: SessionEvent) {
        if let Some(tap) = self.tap.get() {
            tap.event(TapEvent::Session(event));
        }
    }

    /// Sends an event to the audit trail only (the recording's tap has it another way).
    fn audit_only(&self, event: &SessionEvent) {
        if let Some(audit) = &self.audit {
            let info = lock(&self.info).clone();
            audit.session_event(&info, event);
        }
    }

    /// Notes viewer input (for the idle timeout).
    pub(crate) fn touched(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_input_ms.store(ms, Ordering::Relaxed);
    }

    /// When the session counts as idle if no input comes before.
    fn idle_due(&self) -> Option<Instant> {
        let idle = Duration::from_secs(self.grant.idle_timeout_secs()?);
        let last = Duration::from_millis(self.last_input_ms.load(Ordering::Relaxed));
        Some(self.opened + last + idle)
    }

    pub(crate) fn end(&self, end: SessionEnd) {
        self.end_because(end, false);
    }

    /// Ends the session unless it already ended; `shutdown` says the gateway is stopping (set
    /// before anyone hears of the end, and only when this is the ending that counts).
    fn end_because(&self, end: SessionEnd, shutdown: bool) {
        self.ending.send_if_modified(|e| match e {
            Ending::Running => {
                self.by_shutdown.store(shutdown, Ordering::SeqCst);
                *e = Ending::Ended(end);
                true
            }
            Ending::Ended(_) => false,
        });
    }

    /// True when the gateway's shutdown ended the session.
    pub(crate) fn ended_by_shutdown(&self) -> bool {
        self.by_shutdown.load(Ordering::SeqCst)
    }
}

/// A live session. Cloning gives another handle to the same session.
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) shared: Arc<SessionShared>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    /// The session id.
    pub fn id(&self) -> String {
        lock(&self.shared.info).id.clone()
    }

    /// What the policy allows it (its rule, and whether it needs an observer).
    pub fn grant(&self) -> &SessionGrant {
        &self.shared.grant
    }

    /// A snapshot of its description.
    pub fn info(&self) -> SessionInfo {
        lock(&self.shared.info).clone()
    }

    /// Current desktop size.
    pub fn size(&self) -> (u32, u32) {
        let fb = read(&self.shared.desktop);
        (fb.width(), fb.height())
    }

    /// Freezes (`frozen`) or unfreezes the session on behalf of `by`. While frozen, the user's
    /// input is held (dropped, never delivered later) and the screen keeps being shown and
    /// recorded. The change is in the audit trail (durably) before it takes effect; when it
    /// cannot be recorded, nothing changes and the error says why. Returns false when it
    /// already was in that state.
    pub async fn set_frozen(&self, frozen: bool, by: &str) -> Result<bool, String> {
        self.shared.set_frozen(frozen, by).await
    }

    /// Behaviour rule `rule` fires on the session (the gateway compared it with the user's
    /// history; `detail` says how): scored and acted on like any risk rule. Returns true when
    /// it froze or ended the session; nothing happens when the rule is off for this session.
    pub async fn behaviour(&self, rule: &str, detail: &str) -> bool {
        match self.shared.grant.risk().behaviour(rule, detail) {
            Some(hit) => self.shared.risk_fired(vec![hit]).await,
            None => false,
        }
    }

    /// The limit (bytes in one session) of volume rule `rule` for this session; `None` when the
    /// rule is off for it.
    pub fn volume_limit(&self, rule: &str) -> Option<u64> {
        self.shared.grant.risk().volume_limit(rule)
    }

    /// Why the session ended; `None` while it runs.
    pub fn end_reason(&self) -> Option<SessionEnd> {
        match &*self.shared.ending.borrow() {
            Ending::Ended(end) => Some(end.clone()),
            Ending::Running => None,
        }
    }

    /// Resolves once the session has ended.
    pub async fn closed(&self) {
        let mut ending = self.shared.ending.subscribe();
        let _ = ending.wait_for(|e| matches!(e, Ending::Ended(_))).await;
    }

    /// Checks text read off the session's screen against its risk rules (see
    /// [`portcullis_policy::risk`]) and acts on what fires: alert, freeze or end. Returns true
    /// when a rule froze or ended the session.
    pub async fn screen_text(&self, text: &str) -> bool {
        self.shared
            .risk_check(portcullis_policy::TextSource::Screen, text)
            .await
    }

    /// A JPEG of the screen as it is now, at most `max_width` wide (for the SOC's live list).
    pub fn thumbnail(&self, max_width: u32) -> Option<Vec<u8>> {
        // Copied under the lock, encoded outside it: the session is never held up for long.
        let (data, w, h) = {
            let fb = read(&self.shared.desktop);
            (fb.data().to_vec(), fb.width(), fb.height())
        };
        portcullis_encode::thumbnail_jpeg(&data, w, h, max_width).ok()
    }

    /// Lists a new viewer (full repaint pending) and notes it in the event track.
    pub(crate) fn register(&self, user: &str, watcher: bool) -> (Arc<ViewerShared>, (u32, u32)) {
        let user = user.to_owned();
        let event = if watcher {
            SessionEvent::WatcherJoined { user: user.clone() }
        } else {
            SessionEvent::ViewerJoined { user: user.clone() }
        };
        self.register_as(&user, event, true)
    }

    /// Lists a new viewer and notes `event` in the event track (and, unless it is there
    /// already, in the audit trail).
    pub(crate) fn register_as(
        &self,
        user: &str,
        event: SessionEvent,
        to_audit: bool,
    ) -> (Arc<ViewerShared>, (u32, u32)) {
        // The framebuffer's lock, then the list's (as the session applying a change does): no
        // change falls between the size read here and the viewer being on the list.
        let fb = read(&self.shared.desktop);
        let (w, h) = (fb.width(), fb.height());
        let mut viewers = lock(&self.shared.viewers);
        let viewer = Arc::new(ViewerShared::new(w, h, user));
        if self.shared.frozen.load(Ordering::SeqCst) {
            viewer.push_event(ServerMessage::Frozen { frozen: true });
        }
        viewers.push(Arc::downgrade(&viewer));
        drop(viewers);
        drop(fb);
        if to_audit {
            self.shared.tap_event(TapEvent::Session(event));
        } else {
            self.shared.tap_only(event);
        }
        (viewer, (w, h))
    }

    /// Ends the session: the target connection closes and every viewer is told `end`.
    pub fn close(&self, end: SessionEnd) {
        self.shared.end(end);
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(*self.shared.ending.borrow(), Ending::Ended(_))
    }
}
