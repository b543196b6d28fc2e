//! The session task, on the session's own thread: connects the target, then runs until the
//! session ends, applying the target's updates to the desktop model and waking viewers once an
//! update has settled; at the end, tells everyone why.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::desktop::{
    Applied, TargetCommand, TargetUpdate, Timeouts, MAX_CLIPBOARD_BYTES,
};
use portcullis_core::session::{
    ClipboardDirection, EntryPath, SessionEnd, SessionEvent, SessionState, TargetFault,
};
use portcullis_core::wire::{ErrorCode, ServerMessage};
use portcullis_policy::Direction;
use portcullis_rdp::RdpTargetError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use super::crossing::{clip_file_terms, offer_drive, open_reason};
use super::registry::{shutting_down, Deregister, OpenError, OpenRequest};
use super::target::{Target, TargetError};
use super::{Ending, SessionHandle, SessionShared};
use crate::locks::{lock, write};
use crate::tap::state::{TapEvent, TapShared};
use crate::tap::{SessionRecorder, Tap};
use crate::viewer::state::ViewerShared;

/// Updates buffered between the target adapter and the session task. Small: when the session
/// cannot keep up, the adapter stops reading from the target (TCP backpressure), which bounds
/// memory whatever the target sends.
const UPDATE_QUEUE: usize = 16;
/// Connects to the target and runs the session, on the session's own thread. `ready` learns
/// whether the connection succeeded; the session runs until it ends.
pub(super) async fn session_thread(
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
        ended = ending_rx.wait_for(|e| matches!(e, Ending::Ended(_))) => {
            // A kill while the target was still being reached (the session is listed, so the
            // SOC can end it then): the user is told the same words as after the connect.
            let why = match ended.as_deref() {
                Ok(Ending::Ended(SessionEnd::ClosedByAdmin { message })) => Some(message.clone()),
                _ => None,
            };
            drop(ended);
            let error = if handle.shared.ended_by_shutdown() {
                shutting_down()
            } else {
                OpenError {
                    code: ErrorCode::ClosedByAdmin,
                    message: why
                        .unwrap_or_else(|| "closed by an administrator while connecting".into()),
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
    handle.shared.changed.bump();
    // In the audit trail already (before the target was contacted); first in the recording.
    let opening = opening_events(&req);
    if let Some(recorder) = recorder {
        let tap = Arc::new(TapShared::new(w, h));
        for event in opening {
            tap.event(TapEvent::Session(event));
        }
        let _ = handle.shared.tap.set(Arc::clone(&tap));
        let started = recorder.start(Tap {
            shared: tap,
            session: Arc::clone(&handle.shared),
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
        handle.close(SessionEnd::ViewerLeftWhileConnecting);
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
pub(super) fn opening_events(req: &OpenRequest) -> [SessionEvent; 2] {
    [
        SessionEvent::SessionStart {
            user: req.user.clone(),
            target: req.target.clone(),
            client_addr: req.client_addr.clone(),
            entry: Some(req.entry),
        },
        SessionEvent::Policy {
            action: "open".into(),
            decision: "allow".into(),
            reason: open_reason(&req.grant, req.entry),
        },
    ]
}

/// Waits until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn run_session(
    handle: SessionHandle,
    mut updates: mpsc::Receiver<TargetUpdate>,
    adapter: tokio::task::JoinHandle<Result<(), TargetError>>,
    _guard: Deregister,
) {
    let shared = Arc::clone(&handle.shared);
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
                match apply_batch(&shared, first, &mut updates) {
                    Err(e) => break Err(e),
                    // The adapter said the update is complete: nothing to wait for.
                    Ok(Batch::Complete) => {}
                    Ok(Batch::Open) => {
                        if let Err(e) = settle(&shared, &mut updates).await {
                            break Err(e);
                        }
                    }
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
                shared.end(SessionEnd::TimeLimit {
                    rule: shared.grant.rule().to_owned(),
                });
                break Ok(());
            }
            _ = sleep_until(shared.idle_due()) => {
                // Input may have come meanwhile: only a deadline still past counts.
                if shared.idle_due().is_some_and(|due| due <= Instant::now()) {
                    info!(session = %id, rule = shared.grant.rule(), "session idle too long");
                    shared.end(SessionEnd::IdleTimeout {
                        secs: shared.grant.idle_timeout_secs().unwrap_or(0),
                        rule: shared.grant.rule().to_owned(),
                    });
                    break Ok(());
                }
            }
        }
    };
    lock(&shared.info).state = SessionState::Closing;
    shared.changed.bump();
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
    let end = match (outcome, adapter_result) {
        (Err(e), _) => SessionEnd::TargetFailed {
            fault: TargetFault::Protocol,
            message: format!("the target sent an invalid update: {e}"),
        },
        (Ok(()), Some(Err(TargetError::Rdp(RdpTargetError::Ended(reason))))) => {
            SessionEnd::TargetEnded { reason }
        }
        (Ok(()), Some(Err(e))) if !e.is_closed() => {
            warn!(session = %id, error = %e, "target connection failed");
            let (fault, message) = e.fault();
            SessionEnd::TargetFailed { fault, message }
        }
        _ => SessionEnd::TargetClosed,
    };
    shared.end(end);
    finish(&shared);
}

/// After the session's end was set: logs it, records the viewers' leave and the end (audit
/// trail and recording) and wakes the viewers.
pub(super) fn finish(shared: &SessionShared) {
    let id = lock(&shared.info).id.clone();
    // The first ending wins (an admin's close, say, over what the target did afterwards).
    let ending = shared.ending.borrow().clone();
    match &ending {
        Ending::Ended(
            end @ (SessionEnd::ClosedByAdmin { .. }
            | SessionEnd::TargetFailed { .. }
            | SessionEnd::RecordingFailed { .. }
            | SessionEnd::ClientFault { .. }
            | SessionEnd::Internal),
        ) => warn!(session = %id, reason = %end, "session ended with an error"),
        Ending::Ended(end) => info!(session = %id, reason = %end, "session ended"),
        Ending::Running => {}
    }
    if let Ending::Ended(end) = &ending {
        // Viewers still attached leave with the session: record it before the end, which the
        // recorder takes as its last word.
        shared.for_each_viewer(|v| v.leave(shared));
        let reason = end.to_string();
        shared.audit_only(&SessionEvent::SessionEnd {
            reason: reason.clone(),
        });
        if let Some(tap) = shared.tap.get() {
            tap.end(reason);
        }
    }
    lock(&shared.info).state = SessionState::Closed;
    shared.changed.bump();
    shared.for_each_viewer(ViewerShared::wake);
}

/// Longest a change waits for the rest of its update: a target that never pauses still gets
/// its changes shown at this pace.
const SETTLE_MAX: Duration = Duration::from_millis(12);
/// Scheduler rounds with no new update after which the update counts as complete.
const SETTLE_IDLE_ROUNDS: u32 = 2;

/// Waits until the target's current update has been fully decoded, applying it as it comes,
/// or until the adapter says it is complete ([`TargetUpdate::UpdateEnd`]).
///
/// Adapters that cannot tell hand one update over as many tiles with no end marker. Waking viewers per tile made
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
                if apply_batch(shared, update, updates)? == Batch::Complete {
                    break;
                }
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

/// Whether a batch of updates ended with the end of the target's update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// The adapter said the update is complete.
    Complete,
    /// More may belong to the same update.
    Open,
}

/// Applies `first` and whatever else is already queued (up to [`MAX_BATCH`]), stopping after an
/// [`TargetUpdate::UpdateEnd`]. Viewers are woken by the caller once the update is complete.
fn apply_batch(
    shared: &SessionShared,
    first: TargetUpdate,
    updates: &mut mpsc::Receiver<TargetUpdate>,
) -> Result<Batch, String> {
    let mut next = Some(first);
    let mut applied_count = 0;
    while let Some(update) = next.take() {
        applied_count += 1;
        match update {
            TargetUpdate::UpdateEnd => return Ok(Batch::Complete),
            TargetUpdate::Clipboard(mut text)
                if shared.clipboard_allowed(Direction::TargetToClient, text.len()) =>
            {
                truncate_utf8(&mut text, MAX_CLIPBOARD_BYTES);
                shared.clipboard_moved(ClipboardDirection::FromTarget, &text);
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
            other => apply_pixels(shared, &other)?,
        }
        if applied_count < MAX_BATCH {
            next = updates.try_recv().ok();
        }
    }
    Ok(Batch::Open)
}

/// Most parts of one pixel update handed to the viewers and the tap one by one.
const MAX_CHANGED_PARTS: usize = 16;

/// Applies a change of the picture (pixels, a copy, a resize) and tells the viewers and the
/// tap. The viewers learn of it under the framebuffer's write lock, so a viewer that reads the
/// framebuffer sees exactly the changes it was told of (what its copy rule relies on).
fn apply_pixels(shared: &SessionShared, update: &TargetUpdate) -> Result<(), String> {
    // The framebuffer's lock, then the list's (as attaching does): a viewer is either on the
    // list and told of this change, or attaches after it and starts from the result.
    let mut fb = write(&shared.desktop);
    let viewers = shared.viewers_now();
    // Pixels: only what they really changed is damage (a server may send whole strips of
    // which a part changed), for the viewers and the recorder alike.
    if let TargetUpdate::Pixels { rect, data, layout } = update {
        let mut changed = fb
            .put_rect_changed(*rect, data, *layout)
            .map_err(|e| e.to_string())?;
        // Every viewer's damage region merges what it is given: scattered changes (a hostile
        // checkerboard of tiles) are handed over as the one area they span, not thousands of
        // rectangles, while the write lock is held.
        if changed.len() > MAX_CHANGED_PARTS {
            changed = changed
                .iter()
                .copied()
                .reduce(|a, b| a.union(&b))
                .into_iter()
                .collect();
        }
        for r in &changed {
            viewers.iter().for_each(|v| v.add_damage(*r));
        }
        drop(fb);
        if let Some(tap) = shared.tap.get() {
            changed.iter().for_each(|r| tap.add_damage(*r));
        }
        if let Some(all) = changed.iter().copied().reduce(|a, b| a.union(&b)) {
            shared.screen_changed(all);
        }
        return Ok(());
    }
    match fb.apply(update).map_err(|e| e.to_string())? {
        Applied::Damaged(r) => {
            match update {
                TargetUpdate::Copy { src, .. } => viewers.iter().for_each(|v| v.add_copy(r, *src)),
                _ => viewers.iter().for_each(|v| v.add_damage(r)),
            }
            drop(fb);
            // The recorder takes plain damage.
            if let Some(tap) = shared.tap.get() {
                tap.add_damage(r);
            }
            shared.screen_changed(r);
        }
        Applied::Resized => {
            let (w, h) = (fb.width(), fb.height());
            viewers.iter().for_each(|v| v.resized(w, h));
            // Told under the write lock: a recorder that finds the framebuffer no longer the
            // size it knows finds the resize waiting in the tap (lock order: framebuffer, then
            // the tap's state), rather than looking again and again until it comes.
            if let Some(tap) = shared.tap.get() {
                tap.resized(w, h);
            }
            drop(fb);
            shared.screen_changed(portcullis_core::Rect::new(0, 0, w, h));
            shared.tap_event(TapEvent::Session(SessionEvent::Resize {
                width: w,
                height: h,
            }));
        }
        Applied::Nothing => {}
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
