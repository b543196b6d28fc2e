//! One viewer of a session: a browser's [`Viewer`] (encoded frames, flow-controlled by acks) or
//! a native client's [`RawViewer`] (pixels), attached through the [`SessionHandle`]. What the
//! session itself shares with a viewer is in [`state`].

pub(crate) mod state;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use portcullis_core::desktop::{ClipFile, ClipFileTerms, TargetCommand};
use portcullis_core::flow::{BadAck, FrameWindow};
use portcullis_core::notice;
use portcullis_core::session::{ClipboardDirection, SessionEnd, SessionEvent};
use portcullis_core::wire::{self, ClientMessage, ServerMessage};
use portcullis_core::{InputEvent, Rect};
use portcullis_encode::{Choice, Encoder, Part};
use portcullis_policy::{Direction, TextSource};
use tokio::sync::watch;
use tracing::warn;

use crate::live::Live;
use crate::locks::{lock, read};
use crate::session::{Ending, SessionHandle, SessionShared};
use crate::tap::state::TapEvent;
use state::ViewerShared;

// Viewers attach through the session's handle. The methods live here, above the session, which
// holds only their `ViewerShared` state and so never names a viewer.
impl SessionHandle {
    /// Attaches a viewer that starts with a full repaint, and returns the desktop size it starts
    /// from. The size is read under the viewer list's lock, so a resize that happens later is
    /// announced to this viewer as a `resize` message.
    /// `user` is who watches (the event track of the recording names them).
    pub fn attach_viewer(&self, user: &str) -> (Viewer, (u32, u32)) {
        let (viewer, size) = self.register(user, false);
        self.shared.observer_state_for(&viewer);
        (Viewer::new(Arc::clone(&self.shared), viewer), size)
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
        Ok((Viewer::view_only(Arc::clone(&self.shared), viewer), size))
    }

    /// [`SessionHandle::attach_watcher`], the watcher counting as an observer of a four-eyes
    /// session (the caller checked that the rule names them and that they are not the user):
    /// while one watches, the user's input goes through; when the last leaves, it is held.
    pub async fn attach_observer(&self, user: &str) -> Result<(Viewer, (u32, u32)), String> {
        let (viewer, size) = self.attach_watcher(user).await?;
        self.shared.observer_joined(user).await?;
        viewer.shared.observer.store(true, Ordering::SeqCst);
        Ok((viewer, size))
    }

    /// Attaches a raw viewer (pixels, no browser encoding), starting with a full repaint.
    pub fn attach_raw_viewer(&self, user: &str) -> RawViewer {
        let (viewer, _) = self.register(user, false);
        self.shared.observer_state_for(&viewer);
        self.shared.claim_drive(&viewer);
        RawViewer::new(Arc::clone(&self.shared), viewer)
    }
}

impl ViewerShared {
    /// Records that this viewer left, once. Returns once the event is in the tap, whoever
    /// recorded it.
    pub(crate) fn leave(&self, session: &SessionShared) {
        let mut left = lock(&self.left);
        if !*left {
            *left = true;
            session.tap_event(TapEvent::Session(SessionEvent::ViewerLeft {
                user: self.user.clone(),
            }));
            if self.observer.load(Ordering::SeqCst) {
                session.observer_left(&self.user);
            }
        }
    }
}

/// What a viewer should send next.
#[derive(Debug)]
pub enum ViewerOutput {
    /// A JSON control message.
    Message(ServerMessage),
    /// Binary messages: rectangles, then the end of frame.
    Frame(Vec<Vec<u8>>),
    /// The session is over, and why: tell the browser and close.
    End(SessionEnd),
}

/// What a browser viewer sends in its next frame.
struct Pending {
    /// Copy messages within the canvas, in order.
    copies: Vec<Vec<u8>>,
    /// The damaged rectangles' parts: areas of one colour, and areas of pixels (RGBA) copied
    /// out of the framebuffer.
    parts: Vec<Piece>,
}

/// A part of the damage, ready to encode.
enum Piece {
    Fill(Rect, [u8; 3]),
    Pixels(Rect, Vec<u8>),
}

/// What a viewer found when it went to take its next frame.
enum Taken<T> {
    Nothing,
    /// The session resized since the viewer looked: the resize is sent first.
    ResizeFirst,
    Frame(T),
}

impl<T> Taken<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Taken<U> {
        match self {
            Taken::Nothing => Taken::Nothing,
            Taken::ResizeFirst => Taken::ResizeFirst,
            Taken::Frame(t) => Taken::Frame(f(t)),
        }
    }
}

/// One viewer of a session (a browser tab). Dropping it detaches it.
pub struct Viewer {
    session: Arc<SessionShared>,
    shared: Arc<ViewerShared>,
    window: FrameWindow,
    /// This connection's deflate stream: frames are encoded in the order they are sent.
    encoder: Encoder,
    ending: watch::Receiver<Ending>,
    /// A watcher: its input is never delivered.
    view_only: bool,
    /// The broker's shutdown waits until the viewer is gone (its browser told why).
    _live: Live,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer").finish_non_exhaustive()
    }
}

impl Viewer {
    pub(crate) fn new(session: Arc<SessionShared>, shared: Arc<ViewerShared>) -> Self {
        let ending = session.ending.subscribe();
        let live = session.tracker.enter();
        Self {
            session,
            shared,
            window: FrameWindow::new(),
            encoder: Encoder::new(),
            ending,
            view_only: false,
            _live: live,
        }
    }

    pub(crate) fn view_only(session: Arc<SessionShared>, shared: Arc<ViewerShared>) -> Self {
        let mut viewer = Self::new(session, shared);
        viewer.view_only = true;
        viewer
    }

    /// Waits for the next thing to send. Cancel-safe: nothing is taken from the viewer's state
    /// across an await point.
    pub async fn next(&mut self) -> ViewerOutput {
        loop {
            if let Ending::Ended(m) = &*self.ending.borrow_and_update() {
                return ViewerOutput::End(m.clone());
            }
            {
                let mut s = lock(&self.shared.state);
                if let Some((width, height)) = s.resize.take() {
                    return ViewerOutput::Message(ServerMessage::Resize { width, height });
                }
                if let Some(e) = s.events.pop_front() {
                    return ViewerOutput::Message(e);
                }
            }
            if self.window.can_send() && lock(&self.shared.state).has_frame() {
                // Off the runtime's worker: the read waits for the session's write lock, and
                // copying and compressing a large frame takes milliseconds.
                match blocking(|| self.take_pending().map(|p| self.encode(p))) {
                    Taken::Frame(frame) => return ViewerOutput::Frame(frame),
                    // Announced before any frame of the new size: back to the top.
                    Taken::ResizeFirst => continue,
                    Taken::Nothing => {}
                }
            }
            tokio::select! {
                _ = self.shared.notify.notified() => {}
                _ = self.ending.changed() => {}
            }
        }
    }

    /// Takes the pending copies and damage, with the damage's pixels. One read of the
    /// framebuffer: the copies are exactly those that led from what the browser was sent to
    /// the pixels read (the session adds them under the write lock). A resize the session
    /// announced meanwhile goes first (its damage is in the new size's coordinates).
    fn take_pending(&self) -> Taken<Pending> {
        let fb = read(&self.session.desktop);
        let (copies, mut rects) = {
            let mut s = lock(&self.shared.state);
            if s.resize.is_some() {
                return Taken::ResizeFirst;
            }
            if !s.has_frame() {
                return Taken::Nothing;
            }
            s.take_frame()
        };
        let bounds = fb.bounds();
        // Cleared at each resize and bounded by the desktop, so always inside and describable;
        // if one ever were not, no copy of this frame is sent and the whole desktop is
        // repainted (a later copy may read what a dropped one would have written).
        let messages: Option<Vec<Vec<u8>>> = copies
            .iter()
            .map(|(dst, src)| {
                (bounds.contains(dst) && bounds.contains(src))
                    .then(|| wire::copy_message(*dst, *src).ok())
                    .flatten()
                    .map(|m| m.to_vec())
            })
            .collect();
        let copies = messages.unwrap_or_else(|| {
            warn!("a copy outside the desktop: the frame repaints the whole desktop instead");
            rects = vec![bounds];
            Vec::new()
        });
        // Areas of one colour are found in place (a large change is mostly background: only
        // the rest is copied, palettised and deflated); what has pixels is copied out under the
        // lock and encoded without it, so the session task can keep applying updates while a
        // large frame is compressed.
        let parts = rects
            .iter()
            // The desktop may have shrunk since the damage was recorded.
            .map(|r| r.intersection(&bounds))
            .filter(|r| !r.is_empty())
            .filter_map(|r| portcullis_encode::split(&fb, r).ok())
            .flatten()
            .filter_map(|part| match part {
                Part::Fill(r, rgb) => Some(Piece::Fill(r, rgb)),
                Part::Image(r) => fb.read_rect(r).ok().map(|px| Piece::Pixels(r, px)),
            })
            .collect();
        Taken::Frame(Pending { copies, parts })
    }

    /// One frame: the copies first (in order, on what the browser shows), then the damaged
    /// rectangles, then the end of frame.
    fn encode(&mut self, pending: Pending) -> Vec<Vec<u8>> {
        let Pending { copies, parts } = pending;
        let mut out = Vec::with_capacity(copies.len() + parts.len() + 1);
        out.extend(copies);
        for piece in parts {
            let (r, px) = match piece {
                Piece::Pixels(r, px) => (r, px),
                Piece::Fill(r, rgb) => {
                    let mut msg = Vec::with_capacity(16);
                    match portcullis_encode::encode_fill(r, rgb, &mut msg) {
                        Ok(_) => out.push(msg),
                        Err(error) => warn!(%error, rect = %r, "cannot encode rectangle"),
                    }
                    continue;
                }
            };
            let mut msg = Vec::new();
            let encoded = self
                .encoder
                .encode_rgba(&px, r, Choice::Auto, &mut msg)
                .or_else(|error| {
                    if !error.is_stream_failure() {
                        return Err(error);
                    }
                    // The stream is given up (nothing of this rectangle went into the message);
                    // this and later rectangles go out as standalone images.
                    warn!(%error, "the viewer's deflate stream failed: standalone images from now on");
                    msg.clear();
                    self.encoder.encode_rgba(&px, r, Choice::Auto, &mut msg)
                });
            match encoded {
                Ok(_) => out.push(msg),
                Err(error) => warn!(%error, rect = %r, "cannot encode rectangle"),
            }
        }
        out.push(wire::frame_end(self.window.next_seq()).to_vec());
        out
    }

    /// Resolves with the session's ending once it ended (the same [`Viewer::next`] hands
    /// out). Independent of the viewer: race it against every send to the browser, so an
    /// ended session's viewer is let go even when its browser stopped reading.
    pub fn ended(&self) -> impl Future<Output = SessionEnd> + Send + 'static {
        ended_of(&self.ending)
    }

    /// This viewer leaves and, being the one the session exists for, ends it with `end`.
    /// The leave is in the event track before the end, which the recorder takes as its last
    /// word.
    pub fn leave_and_end(&self, end: SessionEnd) {
        self.shared.leave(&self.session);
        self.session.end(end);
    }

    /// Handles a message from this viewer: input goes to the target (waiting if the target is
    /// slow), acknowledgements open the frame window.
    pub async fn handle(&mut self, msg: ClientMessage) -> Result<(), BadAck> {
        match msg {
            ClientMessage::Ack { seq } => {
                self.window.ack(seq)?;
                self.shared.wake();
            }
            ClientMessage::Refresh => {
                {
                    let mut s = lock(&self.shared.state);
                    s.damage.add_full();
                }
                self.shared.wake();
            }
            // A watcher's input goes nowhere.
            _ if self.view_only => {}
            other => {
                if let Some(input) = other.into_input() {
                    forward_input(&self.session, input).await;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.shared.leave(&self.session);
    }
}

/// Runs CPU-heavy encoding without stalling other tasks on a multi-threaded runtime.
/// Relays a viewer's input to the target, noting keys and clipboard for the recording.
async fn forward_input(session: &SessionShared, input: InputEvent) {
    // Frozen, or a four-eyes session nobody observes: the input is held (dropped), and it does
    // not count as activity either.
    if session.input_held() {
        return;
    }
    // Control characters as Unicode keysyms are no key of any keyboard: a crafted Enter or
    // Escape that the line editor of the risk rules would not see as one.
    if let InputEvent::Key { keysym, .. } = &input {
        if matches!(*keysym, 0x0100_0000..=0x0100_001f | 0x0100_007f..=0x0100_009f) {
            return;
        }
    }
    session.touched();
    if let InputEvent::Clipboard(text) = &input {
        if !session.clipboard_allowed(Direction::ClientToTarget, text.len()) {
            return;
        }
        if session.risk_check(TextSource::Clipboard, text).await {
            return;
        }
    }
    // Files (a native client's): the decision and each file that crosses are recorded there.
    if let InputEvent::ClipboardFiles(files) = &input {
        if !session.clipboard_files_allowed(Direction::ClientToTarget, files) {
            return;
        }
    }
    match &input {
        InputEvent::Key { keysym, down } => {
            session.tap_event(TapEvent::Key {
                keysym: *keysym,
                down: *down,
            });
            // Checked at Enter: a line a risk rule stops is not submitted.
            if !session.risk_key(*keysym, *down).await {
                return;
            }
        }
        InputEvent::Clipboard(text) => session.clipboard_moved(ClipboardDirection::ToTarget, text),
        InputEvent::Pointer { .. } | InputEvent::ClipboardFiles(_) => {}
    }
    let _ = session.commands.send(TargetCommand::Input(input)).await;
}

/// What a raw viewer (a native RDP client) is handed next.
#[derive(Debug)]
pub enum RawOutput {
    /// Changed areas with their pixels (RGBX, top-down).
    Damage(Vec<(Rect, Vec<u8>)>),
    /// The desktop has a new size; its content follows as damage.
    Resize(u32, u32),
    /// The target's clipboard text (already allowed by the policy).
    Clipboard(String),
    /// Files the target copied (already allowed by the policy, with their content).
    ClipboardFiles(Vec<ClipFile>),
    /// Which files the client copies may be fetched (the session's policy), handed out first.
    ClipboardTerms(ClipFileTerms),
    /// A drive redirection message from the target (this client owns the session's drive).
    Device(Vec<u8>),
    /// The session ended, and why.
    End(SessionEnd),
}

/// A viewer that takes pixels rather than browser frames: the gateway's RDP server uses it.
/// Flow control is the caller's: it asks for the next damage once it has sent the last, and
/// changes in between merge.
pub struct RawViewer {
    session: Arc<SessionShared>,
    shared: Arc<ViewerShared>,
    ending: watch::Receiver<Ending>,
    /// The session's clipboard file terms were handed out (first thing).
    terms_told: bool,
    /// The notice painted over the client's picture now (its input is held), if any.
    painted: Option<&'static str>,
    /// The broker's shutdown waits until the viewer is gone (its client disconnected).
    _live: Live,
}

impl std::fmt::Debug for RawViewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawViewer").finish_non_exhaustive()
    }
}

impl RawViewer {
    pub(crate) fn new(session: Arc<SessionShared>, shared: Arc<ViewerShared>) -> Self {
        shared.native.store(true, Ordering::Relaxed);
        let ending = session.ending.subscribe();
        let live = session.tracker.enter();
        Self {
            session,
            shared,
            ending,
            terms_told: false,
            painted: None,
            _live: live,
        }
    }

    /// The current desktop size.
    pub fn size(&self) -> (u32, u32) {
        let fb = read(&self.session.desktop);
        (fb.width(), fb.height())
    }

    /// The next change. Cancel-safe: damage is taken and returned in one step.
    pub async fn next(&mut self) -> RawOutput {
        if !self.terms_told {
            self.terms_told = true;
            return RawOutput::ClipboardTerms(self.session.clip_file_terms());
        }
        loop {
            if let Ending::Ended(m) = &*self.ending.borrow_and_update() {
                return RawOutput::End(m.clone());
            }
            // Read before the viewer's state is locked (the framebuffer's lock comes first).
            let band = self.band();
            let notice = self.notice();
            let rects = {
                let mut s = lock(&self.shared.state);
                if let Some(pdu) = s.device.pop_front() {
                    s.device_bytes -= pdu.len();
                    return RawOutput::Device(pdu);
                }
                // A held input (frozen, or no observer) is painted over the top of the
                // picture, from the session's own state (the frozen and observer messages only
                // wake this viewer): repainted when it changes.
                if notice != self.painted {
                    self.painted = notice;
                    s.damage.add(band);
                }
                // Clipboard text goes to the client's clipboard channel; the bell has no way to
                // a native client.
                while let Some(event) = s.events.pop_front() {
                    if let ServerMessage::Clipboard { text } = event {
                        return RawOutput::Clipboard(text);
                    }
                }
                if let Some(files) = s.clip_files.take() {
                    return RawOutput::ClipboardFiles(files);
                }
                if let Some((w, h)) = s.resize.take() {
                    return RawOutput::Resize(w, h);
                }
                s.copies_to_damage();
                s.damage.take()
            };
            if !rects.is_empty() {
                let notice = self.painted;
                let fb = read(&self.session.desktop);
                let bounds = fb.bounds();
                let pixels = rects
                    .iter()
                    .map(|r| r.intersection(&bounds))
                    .filter(|r| !r.is_empty())
                    .filter_map(|r| fb.read_rect(r).ok().map(|px| (r, px)))
                    .map(|(r, mut px)| {
                        if let Some(text) = notice {
                            notice::paint(&mut px, r, bounds.w, text);
                        }
                        (r, px)
                    })
                    .collect();
                return RawOutput::Damage(pixels);
            }
            tokio::select! {
                _ = self.shared.notify.notified() => {}
                _ = self.ending.changed() => {}
            }
        }
    }

    /// What the client is to be told over its picture, if anything: its input is held (the
    /// session is frozen, a risk rule holds it, or a four-eyes rule waits for an observer).
    fn notice(&self) -> Option<&'static str> {
        let frozen = lock(&self.session.info).frozen;
        if frozen || self.session.risk_hold.load(Ordering::SeqCst) {
            Some(notice::FROZEN)
        } else if self.session.grant.observer_required()
            && self.session.observers.load(Ordering::SeqCst) == 0
        {
            Some(notice::WAITING_FOR_OBSERVER)
        } else {
            None
        }
    }

    /// Where the notice goes on the desktop as it is now.
    fn band(&self) -> Rect {
        let (w, h) = self.size();
        notice::band(w, h)
    }

    /// Relays input to the target.
    pub async fn input(&self, input: InputEvent) {
        forward_input(&self.session, input).await;
    }

    /// Relays a drive redirection message of this client to the target, if this client owns
    /// the session's drive (the target adapter decides on it). Not held while frozen: the
    /// target's requests must be answered, and they only come from what the target does.
    pub async fn device(&self, pdu: Vec<u8>) {
        if self.session.owns_drive(&self.shared) {
            let _ = self.session.commands.send(TargetCommand::Device(pdu)).await;
        }
    }

    /// This client leaves and ends the session it opened, with `end`: the leave is in the
    /// event track before the end.
    pub fn leave_and_end(&self, end: SessionEnd) {
        self.shared.leave(&self.session);
        self.session.end(end);
    }

    /// Resolves with the session's ending once it ended; see [`Viewer::ended`].
    pub fn ended(&self) -> impl Future<Output = SessionEnd> + Send + 'static {
        ended_of(&self.ending)
    }

    /// True when the session ended because the gateway is shutting down.
    pub fn ended_by_shutdown(&self) -> bool {
        self.session.ended_by_shutdown()
    }

    /// Asks for the whole screen again.
    pub fn refresh(&self) {
        lock(&self.shared.state).damage.add_full();
        self.shared.wake();
    }
}

impl Drop for RawViewer {
    fn drop(&mut self) {
        self.shared.leave(&self.session);
    }
}

/// Resolves with the session's ending once it ended. Owns its own receiver: it can be awaited
/// alongside anything the viewer does (a send to a client that stopped reading, say).
fn ended_of(ending: &watch::Receiver<Ending>) -> impl Future<Output = SessionEnd> + Send + 'static {
    let mut ending = ending.clone();
    async move {
        loop {
            if let Ending::Ended(m) = &*ending.borrow_and_update() {
                return m.clone();
            }
            if ending.changed().await.is_err() {
                // The session is gone without an ending: nothing more will come.
                return std::future::pending().await;
            }
        }
    }
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
