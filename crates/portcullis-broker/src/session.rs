use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::desktop::{
    Applied, ClipFile, ClipFileTerms, FileDirection, FileEvent, Framebuffer, TargetUpdate,
    MAX_CLIPBOARD_BYTES, MAX_CLIPBOARD_FILES, MAX_CLIPBOARD_FILES_BYTES,
};
use portcullis_core::desktop::{TargetCommand, Timeouts};
use portcullis_core::session::{
    ClipboardDirection, EntryPath, SessionEvent, SessionInfo, SessionState,
};
use portcullis_core::wire::{ErrorCode, ServerMessage};
use portcullis_policy::{ClipKind, Direction, FileTransferMode, SessionGrant};
use portcullis_rdp::drive::DriveTerms;
use portcullis_rdp::{IdentityCheck, RdpCredentials, RdpOptions, RdpTargetError};
use portcullis_vnc::VncTargetError;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::live::{Live, Tracker};
use crate::tap::{SessionRecorder, Tap, TapEvent, TapShared};
use crate::viewer::{RawViewer, Viewer, ViewerShared};

/// Updates buffered between the target adapter and the session task. Small: when the session
/// cannot keep up, the adapter stops reading from the target (TCP backpressure), which bounds
/// memory whatever the target sends.
const UPDATE_QUEUE: usize = 16;
/// Commands (input) buffered towards the target; a browser that floods input waits.
const COMMAND_QUEUE: usize = 256;
/// Most live sessions one account may have at once (browser and native together). Each session
/// is a thread, a target connection and a video encoder; a person works in a handful at a time,
/// so 16 leaves room for automation without letting one login starve the gateway.
pub const MAX_SESSIONS_PER_USER: usize = 16;

/// How to reach a target.
#[derive(Clone)]
pub enum TargetSpec {
    /// A VNC server.
    Vnc {
        /// host:port
        address: String,
        /// The VNC password (decrypted just for this connection).
        password: String,
    },
    /// An RDP server.
    Rdp {
        /// host:port
        address: String,
        /// The account the gateway logs in with (decrypted just for this connection).
        credentials: RdpCredentials,
        /// Desktop size and codecs.
        options: RdpOptions,
        /// The target's pinned identity, checked before the credentials are sent.
        identity: IdentityCheck,
    },
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Vnc { address, .. } => f
                .debug_struct("Vnc")
                .field("address", address)
                .field("password", &"[redacted]")
                .finish(),
            TargetSpec::Rdp {
                address,
                options,
                identity,
                ..
            } => f
                .debug_struct("Rdp")
                .field("address", address)
                .field("credentials", &"[redacted]")
                .field("options", options)
                .field("identity", identity)
                .finish(),
        }
    }
}

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

/// A target adapter's failure, whatever the protocol.
#[derive(Debug, Error)]
pub(crate) enum TargetError {
    #[error(transparent)]
    Vnc(#[from] VncTargetError),
    #[error(transparent)]
    Rdp(#[from] RdpTargetError),
}

impl TargetError {
    /// True when the target just went away (a normal end, not worth an error message).
    fn is_closed(&self) -> bool {
        match self {
            TargetError::Vnc(e) => matches!(e, VncTargetError::Closed),
            TargetError::Rdp(e) => matches!(e, RdpTargetError::Closed),
        }
    }
}

impl From<TargetError> for OpenError {
    /// The message is for the user: it never names the target's address (users do not see
    /// addresses); the full error is logged by the caller.
    fn from(e: TargetError) -> Self {
        let unreachable = |source: &dyn std::fmt::Display| {
            (
                ErrorCode::TargetUnreachable,
                format!("cannot reach the target: {source}"),
            )
        };
        let timeout = |seconds: u64| {
            (
                ErrorCode::TargetUnreachable,
                format!("cannot reach the target: no answer within {seconds} s"),
            )
        };
        let (code, message) = match &e {
            TargetError::Vnc(v) => match v {
                VncTargetError::Unreachable { source, .. } => unreachable(source),
                VncTargetError::Timeout { seconds, .. } => timeout(*seconds),
                VncTargetError::AuthFailed(_) => (ErrorCode::TargetAuthFailed, v.to_string()),
                VncTargetError::Protocol(_) | VncTargetError::Closed => {
                    (ErrorCode::TargetProtocol, v.to_string())
                }
            },
            TargetError::Rdp(r) => match r {
                RdpTargetError::Unreachable { source, .. } => unreachable(source),
                RdpTargetError::Timeout { seconds, .. } => timeout(*seconds),
                RdpTargetError::AuthFailed(_) => (
                    ErrorCode::TargetAuthFailed,
                    "the RDP target refused the stored credentials".into(),
                ),
                RdpTargetError::Protocol(_)
                | RdpTargetError::Ended(_)
                | RdpTargetError::Closed
                | RdpTargetError::Bounds(_)
                | RdpTargetError::Untrusted(_) => (ErrorCode::TargetProtocol, r.to_string()),
            },
        };
        OpenError { code, message }
    }
}

/// An open target connection of either protocol.
enum Target {
    Vnc(portcullis_vnc::VncTarget),
    // Boxed: an RDP connection's state is a few KiB.
    Rdp(Box<portcullis_rdp::RdpTarget>),
}

impl Target {
    async fn connect(spec: TargetSpec, timeouts: Timeouts) -> Result<Target, TargetError> {
        Ok(match spec {
            TargetSpec::Vnc { address, password } => {
                Target::Vnc(portcullis_vnc::connect(&address, password, timeouts).await?)
            }
            TargetSpec::Rdp {
                address,
                credentials,
                options,
                identity,
            } => Target::Rdp(Box::new(
                portcullis_rdp::connect(&address, credentials, options, identity, timeouts).await?,
            )),
        })
    }

    fn size(&self) -> (u32, u32) {
        match self {
            Target::Vnc(t) => t.size(),
            Target::Rdp(t) => t.size(),
        }
    }

    async fn run(
        self,
        updates: mpsc::Sender<TargetUpdate>,
        commands: mpsc::Receiver<TargetCommand>,
    ) -> Result<(), TargetError> {
        match self {
            Target::Vnc(t) => Ok(t.run(updates, commands).await?),
            Target::Rdp(t) => Ok(t.run(updates, commands).await?),
        }
    }
}

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
            | SessionEvent::Resize { .. }
            | SessionEvent::FramesDropped { .. }
            | SessionEvent::EventsLost { .. }
    )
}

/// Why a session ended, as viewers are told.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    Running,
    Ended(ServerMessage),
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
    /// Where the target's drive redirection messages go.
    drive: Mutex<DriveRoute>,
    /// The audit trail, if the gateway keeps one.
    audit: Option<Arc<dyn SessionAudit>>,
    /// What the broker's shutdown waits for (this session's viewers and tap enter it).
    pub(crate) tracker: Tracker,
    /// The session was ended by the gateway's shutdown (not by anything about the session).
    by_shutdown: AtomicBool,
}

/// The policy's answer to a crossing, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
}

/// Drive-redirection messages of the target that arrived before a native client claimed the
/// drive: the target's greeting, a few hundred bytes. More is not a real target.
const MAX_EARLY_DEVICE_BYTES: usize = 256 * 1024;

/// The native client that owns the session's redirected drive: the first one to attach (the one
/// that opened the session). Others, and browsers, have none.
#[derive(Default)]
struct DriveRoute {
    owner: Option<Weak<ViewerShared>>,
    claimed: bool,
    early: Vec<Vec<u8>>,
    early_bytes: usize,
}

impl SessionShared {
    fn for_each_viewer(&self, mut f: impl FnMut(&ViewerShared)) {
        let mut viewers = lock(&self.viewers);
        viewers.retain(|w| match w.upgrade() {
            Some(v) => {
                f(&v);
                true
            }
            None => false,
        });
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

    /// Records an act in the audit trail and waits until it is durable: the act may happen
    /// only after this succeeds.
    async fn audit_first(&self, event: &SessionEvent) -> Result<(), String> {
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

    /// Decides a clipboard crossing with the session's grant and records the decision.
    pub(crate) fn clipboard_allowed(&self, direction: Direction, bytes: usize) -> bool {
        let verdict = self.grant.clipboard(direction, ClipKind::Text, bytes);
        let action = match direction {
            Direction::ClientToTarget => "clipboard_to_target",
            Direction::TargetToClient => "clipboard_to_client",
        };
        match verdict.denial() {
            None => self.record_decision(
                action,
                Decision::Allow,
                format!("{bytes} bytes allowed by rule {:?}", self.grant.rule()),
            ),
            Some(denial) => self.record_decision(action, Decision::Deny, denial.explain()),
        }
        verdict.is_allowed()
    }

    /// Records a policy decision about a crossing in the event track (and so the audit trail);
    /// a refusal is also logged and told to every viewer, so the user learns why.
    fn record_decision(&self, action: &str, decision: Decision, reason: String) {
        if decision == Decision::Deny {
            let id = lock(&self.info).id.clone();
            info!(session = %id, action, %reason, "policy denied a crossing");
            let notice = ServerMessage::Denied {
                action: action.into(),
                reason: reason.clone(),
            };
            self.for_each_viewer(|v| {
                v.push_event(notice.clone());
                v.wake();
            });
        }
        self.tap_event(TapEvent::Session(SessionEvent::Policy {
            action: action.into(),
            decision: match decision {
                Decision::Allow => "allow",
                Decision::Deny => "deny",
            }
            .into(),
            reason,
        }));
    }

    /// Which files a native client copies may be fetched for this session (RDP clipboard).
    pub(crate) fn clip_file_terms(&self) -> ClipFileTerms {
        clip_file_terms(&self.grant)
    }

    /// Decides a crossing of clipboard files (RDP) with the session's grant and records it: the
    /// decision, and each file that crossed (name, size, SHA-256) as a file transfer. Files that
    /// were not fetched (the terms refused them, or they exceed the gateway's limit) never cross.
    pub(crate) fn clipboard_files_allowed(&self, direction: Direction, files: &[ClipFile]) -> bool {
        let total = files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
        let bytes = usize::try_from(total).unwrap_or(usize::MAX);
        let names = files
            .iter()
            .map(|f| format!("{} ({} bytes)", f.name, f.size))
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = self.grant.clipboard(direction, ClipKind::Files, bytes);
        let (action, file_direction) = match direction {
            Direction::ClientToTarget => ("clipboard_to_target", FileDirection::Upload),
            Direction::TargetToClient => ("clipboard_to_client", FileDirection::Download),
        };
        let denial = match verdict.denial() {
            Some(denial) => Some(denial.explain()),
            None if files.is_empty() || files.iter().any(|f| f.content.is_none()) => Some(format!(
                "more than the gateway carries for one copy ({MAX_CLIPBOARD_FILES_BYTES} bytes, {MAX_CLIPBOARD_FILES} files)"
            )),
            None => None,
        };
        let Some(why) = denial else {
            self.record_decision(
                action,
                Decision::Allow,
                format!("files {names}: allowed by rule {:?}", self.grant.rule()),
            );
            for f in files {
                self.file_event(FileEvent::Transferred {
                    direction: file_direction,
                    path: format!("clipboard\\{}", f.name),
                    bytes: f.size,
                    sha256: f.content.as_ref().map(|(_, sha)| sha.clone()),
                });
            }
            return true;
        };
        self.record_decision(action, Decision::Deny, format!("files {names}: {why}"));
        false
    }

    /// Makes `viewer` the owner of the session's redirected drive, if it has none yet.
    pub(crate) fn claim_drive(&self, viewer: &Arc<ViewerShared>) {
        let mut route = lock(&self.drive);
        if route.claimed {
            return;
        }
        route.claimed = true;
        route.owner = Some(Arc::downgrade(viewer));
        for pdu in std::mem::take(&mut route.early) {
            viewer.push_device(pdu);
        }
        route.early_bytes = 0;
        viewer.wake();
    }

    /// True when `viewer` owns the session's redirected drive.
    pub(crate) fn owns_drive(&self, viewer: &Arc<ViewerShared>) -> bool {
        let route = lock(&self.drive);
        route
            .owner
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(viewer)))
    }

    /// A drive redirection message from the target, for the drive's owner.
    fn device_to_client(&self, pdu: Vec<u8>) {
        let mut route = lock(&self.drive);
        match route.owner.as_ref().map(Weak::upgrade) {
            Some(Some(owner)) => {
                drop(route);
                owner.push_device(pdu);
                owner.wake();
            }
            // Its client left: nobody answers the target any more.
            Some(None) => {}
            None if route.early_bytes + pdu.len() <= MAX_EARLY_DEVICE_BYTES => {
                route.early_bytes += pdu.len();
                route.early.push(pdu);
            }
            None => warn!("drive redirection messages before any client: dropped"),
        }
    }

    /// Records what happened to a file on the redirected drive, with the policy's verdict.
    fn file_event(&self, event: FileEvent) {
        let direction_of = |d: FileDirection| match d {
            FileDirection::Upload => (Direction::ClientToTarget, "file_upload"),
            FileDirection::Download => (Direction::TargetToClient, "file_download"),
        };
        match event {
            FileEvent::Transferred {
                direction,
                path,
                bytes,
                sha256,
            } => {
                let (dir, action) = direction_of(direction);
                let verdict = self.grant.file_transfer(dir);
                match verdict.denial() {
                    None => self.record_decision(
                        action,
                        Decision::Allow,
                        format!("{path}: allowed by rule {:?}", self.grant.rule()),
                    ),
                    // The adapter applies the same terms, so this does not happen; if it
                    // did, the record says so.
                    Some(denial) => self.record_decision(
                        action,
                        Decision::Deny,
                        format!("{path}: {}", denial.explain()),
                    ),
                }
                self.tap_event(TapEvent::Session(SessionEvent::FileTransfer {
                    direction,
                    path,
                    bytes,
                    sha256,
                }));
            }
            FileEvent::Refused {
                direction,
                path,
                operation,
            } => {
                let (dir, action) = direction_of(direction);
                let why = self
                    .grant
                    .file_transfer(dir)
                    .denial()
                    .map_or_else(|| "not allowed".to_owned(), |d| d.explain());
                self.record_decision(action, Decision::Deny, format!("{operation} {path}: {why}"));
            }
            FileEvent::Changed { path, change } => {
                self.tap_event(TapEvent::Session(SessionEvent::FileChange { path, change }))
            }
        }
    }

    pub(crate) fn end(&self, message: ServerMessage) {
        self.end_because(message, false);
    }

    /// Ends the session unless it already ended; `shutdown` says the gateway is stopping (set
    /// before anyone hears of the end, and only when this is the ending that counts).
    fn end_because(&self, message: ServerMessage, shutdown: bool) {
        self.ending.send_if_modified(|e| match e {
            Ending::Running => {
                self.by_shutdown.store(shutdown, Ordering::SeqCst);
                *e = Ending::Ended(message);
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

    /// A snapshot of its description.
    pub fn info(&self) -> SessionInfo {
        lock(&self.shared.info).clone()
    }

    /// Current desktop size.
    pub fn size(&self) -> (u32, u32) {
        let fb = read(&self.shared.desktop);
        (fb.width(), fb.height())
    }

    /// Attaches a viewer that starts with a full repaint, and returns the desktop size it starts
    /// from. The size is read under the viewer list's lock, so a resize that happens later is
    /// announced to this viewer as a `resize` message.
    /// `user` is who watches (the event track of the recording names them).
    pub fn attach_viewer(&self, user: &str) -> (Viewer, (u32, u32)) {
        let (viewer, size) = self.register(user, false);
        (Viewer::new(self.shared.clone(), viewer), size)
    }

    /// Attaches a view-only viewer for the security team: it sees what the user sees, its input
    /// is never delivered, and the event track notes it as a watcher. The watch is in the audit
    /// trail (durably) before the watcher is attached; when it cannot be recorded, nobody
    /// watches and the error says why.
    pub async fn attach_watcher(&self, user: &str) -> Result<(Viewer, (u32, u32)), String> {
        let event = SessionEvent::WatcherJoined {
            user: user.to_owned(),
        };
        self.shared.audit_first(&event).await?;
        let (viewer, size) = self.register_as(user, event, false);
        Ok((Viewer::view_only(self.shared.clone(), viewer), size))
    }

    /// Freezes (`frozen`) or unfreezes the session on behalf of `by`. While frozen, the user's
    /// input is held (dropped, never delivered later) and the screen keeps being shown and
    /// recorded. The change is in the audit trail (durably) before it takes effect; when it
    /// cannot be recorded, nothing changes and the error says why. Returns false when it
    /// already was in that state.
    pub async fn set_frozen(&self, frozen: bool, by: &str) -> Result<bool, String> {
        if lock(&self.shared.info).frozen == frozen {
            return Ok(false);
        }
        let event = if frozen {
            SessionEvent::Frozen { by: by.to_owned() }
        } else {
            SessionEvent::Unfrozen { by: by.to_owned() }
        };
        self.shared.audit_first(&event).await?;
        {
            let mut info = lock(&self.shared.info);
            if info.frozen == frozen {
                return Ok(false);
            }
            info.frozen = frozen;
        }
        self.shared.frozen.store(frozen, Ordering::SeqCst);
        let id = self.id();
        info!(session = %id, frozen, %by, "session freeze changed");
        self.shared.tap_only(event);
        self.shared.for_each_viewer(|v| {
            v.push_event(ServerMessage::Frozen { frozen });
            v.wake();
        });
        Ok(true)
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

    /// Attaches a raw viewer (pixels, no browser encoding), starting with a full repaint.
    pub fn attach_raw_viewer(&self, user: &str) -> RawViewer {
        let (viewer, _) = self.register(user, false);
        self.shared.claim_drive(&viewer);
        RawViewer::new(self.shared.clone(), viewer)
    }

    /// Lists a new viewer (full repaint pending) and notes it in the event track.
    fn register(&self, user: &str, watcher: bool) -> (Arc<ViewerShared>, (u32, u32)) {
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
    fn register_as(
        &self,
        user: &str,
        event: SessionEvent,
        to_audit: bool,
    ) -> (Arc<ViewerShared>, (u32, u32)) {
        let mut viewers = lock(&self.shared.viewers);
        let (w, h) = self.size();
        let viewer = Arc::new(ViewerShared::new(w, h, user));
        if self.shared.frozen.load(Ordering::SeqCst) {
            viewer.push_event(ServerMessage::Frozen { frozen: true });
        }
        viewers.push(Arc::downgrade(&viewer));
        drop(viewers);
        if to_audit {
            self.shared.tap_event(TapEvent::Session(event));
        } else {
            self.shared.tap_only(event);
        }
        (viewer, (w, h))
    }

    /// Ends the session: the target connection closes and every viewer gets `message`.
    pub fn close(&self, message: ServerMessage) {
        self.shared.end(message);
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(*self.shared.ending.borrow(), Ending::Ended(_))
    }
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
        }
    }

    /// Sends every session's audit-worthy events to `audit`.
    pub fn with_audit(mut self, audit: Arc<dyn SessionAudit>) -> Self {
        self.audit = Some(audit);
        self
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
    pub fn close(&self, id: &str, message: ServerMessage) -> bool {
        match self.get(id) {
            Some(s) => {
                s.close(message);
                true
            }
            None => false,
        }
    }

    /// Ends every session with `message` (the gateway is stopping), refuses any new one, and
    /// waits until every session thread has ended, every viewer was told and let go (browser
    /// sockets closed, native clients disconnected) and every recorder dropped its tap (its
    /// recording closed). The caller bounds the wait; see [`Broker::still_open`].
    pub async fn shutdown(&self, message: ServerMessage) {
        let sessions: Vec<SessionHandle> = {
            let map = lock(&self.sessions);
            self.closing.store(true, Ordering::SeqCst);
            map.values().cloned().collect()
        };
        info!(sessions = sessions.len(), "ending every session");
        for s in sessions {
            s.shared.end_because(message.clone(), true);
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
            drive: Mutex::new(DriveRoute::default()),
            audit: self.audit.clone(),
            tracker: self.tracker.clone(),
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
        for event in opening_events(&req) {
            if let Err(e) = handle.shared.audit_first(&event).await {
                warn!(session = %id, error = %e, "cannot audit the session's start; refusing it");
                return Err(OpenError {
                    code: ErrorCode::Internal,
                    message: format!(
                        "the audit trail cannot be written right now ({e}), so the session was not opened"
                    ),
                });
            }
        }
        let guard = {
            // Under the lock [`Broker::shutdown`] takes: either it sees this session, or this
            // sees that it began (and the start on record gets its end).
            let mut sessions = lock(&self.sessions);
            if self.closing.load(Ordering::SeqCst) {
                handle.shared.audit_only(&SessionEvent::SessionEnd {
                    reason: "the session did not open: the gateway is shutting down".into(),
                });
                return Err(shutting_down());
            }
            sessions.insert(id.clone(), handle.clone());
            // Entered under the same lock: a shutdown that sees no session thread alive also
            // sees no session listed.
            Deregister {
                sessions: self.sessions.clone(),
                id: id.clone(),
                _live: self.tracker.enter(),
            }
        };
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
        let spawned = std::thread::Builder::new()
            .name(format!("session-{}", id.get(..8).unwrap_or(&id)))
            .spawn(move || {
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
                    thread_handle.shared.end(ServerMessage::Error {
                        code: ErrorCode::Internal,
                        message: INTERNAL_ERROR.into(),
                    });
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
        Err(outcome)
    }
}

/// What an open is told once the gateway is stopping.
fn shutting_down() -> OpenError {
    OpenError {
        code: ErrorCode::Internal,
        message: "the gateway is shutting down".into(),
    }
}

/// Connects to the target and runs the session, on the session's own thread. `ready` learns
/// whether the connection succeeded; the session runs until it ends.
async fn session_thread(
    handle: SessionHandle,
    req: OpenRequest,
    timeouts: Timeouts,
    recorder: Option<Arc<dyn SessionRecorder>>,
    commands: mpsc::Receiver<TargetCommand>,
    guard: Deregister,
    ready: oneshot::Sender<Result<(), OpenError>>,
) {
    let id = handle.id();
    let mut ending_rx = handle.shared.ending.subscribe();
    let connect = Target::connect(
        offer_drive(req.spec.clone(), &req.grant, req.entry),
        timeouts,
    );
    let mut target = tokio::select! {
        r = connect => match r {
            Ok(t) => t,
            Err(e) => {
                info!(session = %id, target = %req.target, error = %e, "session failed to open");
                refuse(&handle, ready, OpenError::from(e));
                return;
            }
        },
        _ = ending_rx.wait_for(|e| matches!(e, Ending::Ended(_))) => {
            let error = if handle.shared.ended_by_shutdown() {
                shutting_down()
            } else {
                OpenError {
                    code: ErrorCode::ClosedByAdmin,
                    message: "closed by an administrator while connecting".into(),
                }
            };
            refuse(&handle, ready, error);
            return;
        }
    };
    // Files the target copies are fetched for a native client's session only, and only when
    // the policy lets them cross (browsers and VNC stay text-only).
    if let (Target::Rdp(t), EntryPath::Rdp) = (&mut target, req.entry) {
        t.set_clipboard_files(clip_file_terms(&req.grant));
    }
    let (w, h) = target.size();
    let resized = write(&handle.shared.desktop).resize(w, h);
    if let Err(e) = resized {
        refuse(
            &handle,
            ready,
            OpenError {
                code: ErrorCode::TargetProtocol,
                message: e.to_string(),
            },
        );
        return;
    }
    lock(&handle.shared.info).state = SessionState::Active;
    // In the audit trail already (before the target was contacted); first in the recording.
    let opening = opening_events(&req);
    if let Some(recorder) = recorder {
        let tap = Arc::new(TapShared::new(w, h));
        for event in opening {
            tap.event(TapEvent::Session(event));
        }
        let _ = handle.shared.tap.set(tap.clone());
        let started = recorder.start(Tap {
            shared: tap,
            session: handle.shared.clone(),
            _live: handle.shared.tracker.enter(),
        });
        if let Err(e) = started {
            warn!(session = %id, error = %e, "cannot record the session; refusing it");
            refuse(
                &handle,
                ready,
                OpenError {
                    code: ErrorCode::RecordingUnavailable,
                    message: format!(
                        "the session cannot be recorded right now ({e}), so it was not opened"
                    ),
                },
            );
            return;
        }
    }
    info!(session = %id, user = %req.user, target = %req.target, width = w, height = h, "session opened");
    let (upd_tx, upd_rx) = mpsc::channel(UPDATE_QUEUE);
    let adapter = tokio::spawn(target.run(upd_tx, commands));
    if ready.send(Ok(())).is_err() {
        // The opener went away (the browser left while we connected).
        handle.close(ServerMessage::Closed {
            reason: "the viewer left while connecting".into(),
        });
    }
    run_session(handle, upd_rx, adapter, guard).await;
}

/// Tells the opener why the session did not open. Its start is on record already, so its end
/// is recorded too.
fn refuse(handle: &SessionHandle, ready: oneshot::Sender<Result<(), OpenError>>, e: OpenError) {
    handle.shared.audit_only(&SessionEvent::SessionEnd {
        reason: format!("the session did not open: {}", e.message),
    });
    let _ = ready.send(Err(e));
}

/// A session's first events: its start and the policy's decision to let it open (first in the
/// track like every later decision).
fn opening_events(req: &OpenRequest) -> [SessionEvent; 2] {
    [
        SessionEvent::SessionStart {
            user: req.user.clone(),
            target: req.target.clone(),
            client_addr: req.client_addr.clone(),
        },
        SessionEvent::Policy {
            action: "open".into(),
            decision: "allow".into(),
            reason: open_reason(&req.grant, req.entry),
        },
    ]
}

/// Which clipboard files may be fetched from the side that copies them, from the grant: the
/// policy's own decision for each direction, up to its size limit (and the gateway's).
fn clip_file_terms(grant: &SessionGrant) -> ClipFileTerms {
    ClipFileTerms {
        to_target: grant
            .clipboard(Direction::ClientToTarget, ClipKind::Files, 0)
            .is_allowed(),
        to_client: grant
            .clipboard(Direction::TargetToClient, ClipKind::Files, 0)
            .is_allowed(),
        max_bytes: u64::from(grant.clipboard_max_bytes()).min(MAX_CLIPBOARD_FILES_BYTES),
    }
}

/// An RDP target is offered drive redirection only for a native client (a browser has no drive
/// to share) and only when the policy lets files cross at least one way.
fn offer_drive(spec: TargetSpec, grant: &SessionGrant, entry: EntryPath) -> TargetSpec {
    match spec {
        TargetSpec::Rdp {
            address,
            credentials,
            mut options,
            identity,
        } => {
            let upload = grant.file_transfer(Direction::ClientToTarget).is_allowed();
            let download = grant.file_transfer(Direction::TargetToClient).is_allowed();
            options.drive = (entry == EntryPath::Rdp && (upload || download))
                .then_some(DriveTerms { upload, download });
            TargetSpec::Rdp {
                address,
                credentials,
                options,
                identity,
            }
        }
        vnc => vnc,
    }
}

/// Why the session was let open, and on what terms, for the event track.
fn open_reason(grant: &SessionGrant, entry_path: EntryPath) -> String {
    let entry = match entry_path {
        EntryPath::Browser => "browser",
        EntryPath::Rdp => "native client",
    };
    let mut terms = Vec::new();
    if let Some(s) = grant.max_duration_secs() {
        terms.push(format!("at most {s} s"));
    }
    if grant.window_ends_at_unix_secs().is_some() {
        terms.push("until its time window closes".to_owned());
    }
    if let Some(s) = grant.idle_timeout_secs() {
        terms.push(format!("idle timeout {s} s"));
    }
    if entry_path == EntryPath::Rdp && grant.file_transfer_mode() != FileTransferMode::Off {
        terms.push(format!("drive redirection: {}", grant.file_transfer_mode()));
    }
    let terms = if terms.is_empty() {
        String::new()
    } else {
        format!(" ({})", terms.join(", "))
    };
    format!("{entry} session allowed by rule {:?}{terms}", grant.rule())
}

/// Waits until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Removes a session from the registry when the session task ends, however it ends.
struct Deregister {
    sessions: Arc<Mutex<HashMap<String, SessionHandle>>>,
    id: String,
    /// The session thread is alive.
    _live: Live,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        lock(&self.sessions).remove(&self.id);
    }
}

async fn run_session(
    handle: SessionHandle,
    mut updates: mpsc::Receiver<TargetUpdate>,
    adapter: tokio::task::JoinHandle<Result<(), TargetError>>,
    _guard: Deregister,
) {
    let shared = handle.shared.clone();
    let id = handle.id();
    let mut ending = shared.ending.subscribe();
    let mut target_gone = false;
    let outcome: Result<(), String> = loop {
        tokio::select! {
            first = updates.recv() => {
                let Some(first) = first else {
                    target_gone = true;
                    break Ok(());
                };
                if let Err(e) = apply_batch(&shared, first, &mut updates) {
                    break Err(e);
                }
                if let Err(e) = settle(&shared, &mut updates).await {
                    break Err(e);
                }
                shared.for_each_viewer(ViewerShared::wake);
                if let Some(tap) = shared.tap.get() {
                    tap.updated();
                }
            }
            // wait_for also sees a close that happened before this task first ran.
            _ = ending.wait_for(|e| matches!(e, Ending::Ended(_))) => break Ok(()),
            _ = sleep_until(shared.ends_at) => {
                info!(session = %id, rule = shared.grant.rule(), "session reached its time limit");
                shared.end(ServerMessage::Closed {
                    reason: format!(
                        "the session reached the end of the time the policy allows (rule {:?})",
                        shared.grant.rule()
                    ),
                });
                break Ok(());
            }
            _ = sleep_until(shared.idle_due()) => {
                // Input may have come meanwhile: only a deadline still past counts.
                if shared.idle_due().is_some_and(|due| due <= Instant::now()) {
                    info!(session = %id, rule = shared.grant.rule(), "session idle too long");
                    shared.end(ServerMessage::Closed {
                        reason: format!(
                            "the session was idle for longer than the policy allows ({} s, rule {:?})",
                            shared.grant.idle_timeout_secs().unwrap_or(0),
                            shared.grant.rule()
                        ),
                    });
                    break Ok(());
                }
            }
        }
    };
    lock(&shared.info).state = SessionState::Closing;
    // Dropping the receiver and closing the command channel stops the adapter.
    drop(updates);
    // When the adapter hung up by itself, wait for its verdict (it may still be finishing);
    // otherwise stop it.
    let adapter_result = if target_gone || adapter.is_finished() {
        adapter.await.ok()
    } else {
        adapter.abort();
        None
    };
    let message = match (outcome, adapter_result) {
        (Err(e), _) => ServerMessage::Error {
            code: ErrorCode::TargetProtocol,
            message: format!("the target sent an invalid update: {e}"),
        },
        (Ok(()), Some(Err(TargetError::Rdp(RdpTargetError::Ended(reason))))) => {
            ServerMessage::Closed {
                reason: format!("the target ended the session: {reason}"),
            }
        }
        (Ok(()), Some(Err(e))) if !e.is_closed() => {
            warn!(session = %id, error = %e, "target connection failed");
            let e = OpenError::from(e);
            ServerMessage::Error {
                code: e.code,
                message: e.message,
            }
        }
        _ => ServerMessage::Closed {
            reason: "the target closed the session".into(),
        },
    };
    shared.end(message);
    finish(&shared);
}

/// Why a session whose thread panicked ended, as its viewers, recording and audit trail say.
const INTERNAL_ERROR: &str = "the session stopped on an internal error";

/// After the session's end was set: logs it, records the viewers' leave and the end (audit
/// trail and recording) and wakes the viewers.
fn finish(shared: &SessionShared) {
    let id = lock(&shared.info).id.clone();
    // The first ending wins (an admin's close, say, over what the target did afterwards).
    let ending = shared.ending.borrow().clone();
    match &ending {
        Ending::Ended(m @ ServerMessage::Error { .. }) => {
            warn!(session = %id, reason = %m.to_json(), "session ended with an error")
        }
        Ending::Ended(m) => info!(session = %id, reason = %m.to_json(), "session ended"),
        Ending::Running => {}
    }
    if let Ending::Ended(m) = &ending {
        // Viewers still attached leave with the session: record it before the end, which the
        // recorder takes as its last word.
        shared.for_each_viewer(|v| v.leave(shared));
        let reason = ending_reason(m);
        shared.audit_only(&SessionEvent::SessionEnd {
            reason: reason.clone(),
        });
        if let Some(tap) = shared.tap.get() {
            tap.end(reason);
        }
    }
    lock(&shared.info).state = SessionState::Closed;
    shared.for_each_viewer(ViewerShared::wake);
}

/// A session's ending in words, for the event track.
fn ending_reason(m: &ServerMessage) -> String {
    match m {
        ServerMessage::Closed { reason } => reason.clone(),
        ServerMessage::Error { message, .. } => message.clone(),
        other => other.to_json(),
    }
}

/// Longest a change waits for the rest of its update: a target that never pauses still gets
/// its changes shown at this pace.
const SETTLE_MAX: Duration = Duration::from_millis(12);
/// Scheduler rounds with no new update after which the update counts as complete.
const SETTLE_IDLE_ROUNDS: u32 = 2;

/// Waits until the target's current update has been fully decoded, applying it as it comes.
///
/// vnc-rs hands one update over as many tiles with no end marker. Waking viewers per tile made
/// them send partial frames that queued behind the frame window (+28 ms p50 for a large change),
/// and a quiet timer cost 2-3 ms on every change (timer granularity). Instead: this thread runs
/// only this session's tasks, so when yielding lets every other task run and no new update
/// appears, the decoder has nothing left to decode from what the target sent.
async fn settle(
    shared: &SessionShared,
    updates: &mut mpsc::Receiver<TargetUpdate>,
) -> Result<(), String> {
    let started = Instant::now();
    let mut idle_rounds = 0;
    while idle_rounds < SETTLE_IDLE_ROUNDS && started.elapsed() < SETTLE_MAX {
        tokio::task::yield_now().await;
        match updates.try_recv() {
            Ok(update) => {
                idle_rounds = 0;
                apply_batch(shared, update, updates)?;
            }
            Err(mpsc::error::TryRecvError::Empty) => idle_rounds += 1,
            // The main loop sees the closed channel on its next receive.
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        }
    }
    Ok(())
}

/// Most updates applied in one batch before the session task looks at other work again (a
/// close, say): a target that streams without pause must not monopolise it.
const MAX_BATCH: usize = UPDATE_QUEUE;

/// Applies `first` and whatever else is already queued (up to [`MAX_BATCH`]). Viewers are woken
/// by the caller once the stream settles.
fn apply_batch(
    shared: &SessionShared,
    first: TargetUpdate,
    updates: &mut mpsc::Receiver<TargetUpdate>,
) -> Result<(), String> {
    let mut next = Some(first);
    let mut applied_count = 0;
    while let Some(update) = next.take() {
        applied_count += 1;
        match update {
            TargetUpdate::Clipboard(mut text)
                if shared.clipboard_allowed(Direction::TargetToClient, text.len()) =>
            {
                truncate_utf8(&mut text, MAX_CLIPBOARD_BYTES);
                shared.tap_event(TapEvent::Session(SessionEvent::Clipboard {
                    direction: ClipboardDirection::FromTarget,
                    bytes: text.len() as u64,
                }));
                shared.for_each_viewer(|v| {
                    v.push_event(ServerMessage::Clipboard { text: text.clone() })
                });
            }
            // Refused by the policy (and recorded as such).
            TargetUpdate::Clipboard(_) => {}
            TargetUpdate::ClipboardFiles(files) => {
                if shared.clipboard_files_allowed(Direction::TargetToClient, &files) {
                    shared.for_each_viewer(|v| v.push_clip_files(&files));
                }
            }
            TargetUpdate::Bell => shared.for_each_viewer(|v| v.push_event(ServerMessage::Bell)),
            TargetUpdate::Device(pdu) => shared.device_to_client(pdu),
            TargetUpdate::File(event) => shared.file_event(event),
            other => {
                let applied = write(&shared.desktop)
                    .apply(&other)
                    .map_err(|e| e.to_string())?;
                match applied {
                    Applied::Damaged(r) => {
                        shared.for_each_viewer(|v| v.add_damage(r));
                        if let Some(tap) = shared.tap.get() {
                            tap.add_damage(r);
                        }
                    }
                    Applied::Resized => {
                        let (w, h) = {
                            let fb = read(&shared.desktop);
                            (fb.width(), fb.height())
                        };
                        shared.for_each_viewer(|v| v.resized(w, h));
                        if let Some(tap) = shared.tap.get() {
                            tap.resized(w, h);
                        }
                        shared.tap_event(TapEvent::Session(SessionEvent::Resize {
                            width: w,
                            height: h,
                        }));
                    }
                    Applied::Nothing => {}
                }
            }
        }
        if applied_count < MAX_BATCH {
            next = updates.try_recv().ok();
        }
    }
    Ok(())
}

fn truncate_utf8(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

// Poisoning only follows a panic elsewhere; the data is plain and still usable, so recover it
// instead of spreading the panic to every session.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::cell::RefCell;

    use super::*;
    use portcullis_policy::{Entry, Policy, PolicyDoc, Subject, TargetRef};

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

    struct NoRecorder;

    impl SessionRecorder for NoRecorder {
        fn start(&self, _tap: crate::Tap) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_listed_session_always_has_its_shutdown_guard() {
        let broker = Broker::default().with_recorder(Arc::new(NoRecorder));
        let tracker = broker.tracker.clone();
        let sessions = broker.sessions.clone();
        let seen = std::rc::Rc::new(RefCell::new(None));
        let seen_in = seen.clone();
        ON_REGISTERED.with(|f| {
            *f.borrow_mut() = Some(Box::new(move || {
                // What a shutdown taking the sessions' lock right now would see.
                let listed = lock(&sessions).len();
                *seen_in.borrow_mut() = Some((listed, tracker.count()));
            }))
        });
        let grant = Policy::compile(&PolicyDoc::default_policy())
            .unwrap()
            .session(
                &Subject {
                    user: "alice",
                    role: "user",
                },
                &TargetRef::new("t", &[]),
                Entry::Browser,
                0,
            )
            .into_result()
            .unwrap();
        // Nothing listens there: the open fails after the session was registered.
        let _ = broker
            .open(OpenRequest {
                user: "alice".into(),
                user_id: "u_alice".into(),
                target: "t".into(),
                spec: TargetSpec::Vnc {
                    address: "127.0.0.1:1".into(),
                    password: String::new(),
                },
                client_addr: "test".into(),
                entry: EntryPath::Browser,
                grant,
            })
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
