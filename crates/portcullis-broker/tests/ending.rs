//! How sessions end: a viewer's leave is in the recorder's tap before the end (also when the
//! session ends because that viewer left, and when it ends for another reason while the viewer
//! is leaving), and the gateway's shutdown ends every session and waits for its viewers and
//! recorders.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_broker::{
    AuditFuture, Broker, OpenRequest, SessionAudit, SessionRecorder, Tap, TapEvent, ViewerOutput,
};
use portcullis_core::session::{SessionEnd, SessionEvent, SessionInfo};
use portcullis_policy::Recording;
use tokio::io::AsyncWriteExt;

mod common;

/// A minimal RFB server without authentication: a 64x32 desktop that never changes.
async fn still_server() -> String {
    common::still_server(64, 32, b"still").await
}

/// Sessions here are recorded, as the shipped policy requires.
fn request(address: String) -> OpenRequest {
    common::request(address, Recording::Required)
}

/// What a recorder thread saw in its tap, and whether it finished.
#[derive(Default)]
struct Seen {
    /// Session events, in order, with the end (`SessionEnd`) appended when the tap reported it.
    events: Mutex<Vec<SessionEvent>>,
    /// The recorder dropped its tap (its recording is closed).
    finished: AtomicBool,
}

/// A recorder that reads its tap on its own thread like the real one: it takes each batch's
/// events, and at the end takes `closing` to close the recording before dropping the tap.
struct ReadingRecorder {
    seen: Arc<Seen>,
    closing: Duration,
}

impl SessionRecorder for ReadingRecorder {
    fn start(&self, tap: Tap) -> Result<(), String> {
        let seen = std::sync::Arc::<Seen>::clone(&self.seen);
        let closing = self.closing;
        std::thread::spawn(move || loop {
            let batch = tap.wait(Duration::from_millis(100));
            let mut events = seen.events.lock().unwrap();
            for (_, e) in batch.events {
                if let TapEvent::Session(e) = e {
                    events.push(e);
                }
            }
            if let Some(reason) = batch.ended {
                events.push(SessionEvent::SessionEnd { reason });
                drop(events);
                std::thread::sleep(closing);
                seen.finished.store(true, Ordering::SeqCst);
                drop(tap);
                return;
            }
        });
        Ok(())
    }
}

/// An audit trail that takes its time with a viewer's leave (a busy disk queue): the window in
/// which the leave was once marked done but not yet in the tap.
struct SlowLeaveAudit;

impl SessionAudit for SlowLeaveAudit {
    fn session_event(&self, _session: &SessionInfo, event: &SessionEvent) {
        if matches!(event, SessionEvent::ViewerLeft { .. }) {
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn record_before(&self, _session: &SessionInfo, _event: &SessionEvent) -> AuditFuture {
        Box::pin(async { Ok(()) })
    }
}

fn broker_with(seen: &Arc<Seen>, closing: Duration) -> Broker {
    Broker::default()
        .with_audit(Arc::new(SlowLeaveAudit))
        .with_recorder(Arc::new(ReadingRecorder {
            seen: std::sync::Arc::<Seen>::clone(seen),
            closing,
        }))
}

/// Waits until the recorder dropped its tap, and returns what it saw.
async fn recorded(seen: &Seen) -> Vec<SessionEvent> {
    for _ in 0..100 {
        if seen.finished.load(Ordering::SeqCst) {
            return seen.events.lock().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the recorder never finished: {:?}",
        seen.events.lock().unwrap()
    );
}

/// The position of the first event matching `f`.
fn position(events: &[SessionEvent], f: impl Fn(&SessionEvent) -> bool) -> Option<usize> {
    events.iter().position(f)
}

fn assert_left_before_end(events: &[SessionEvent]) {
    let left = position(
        events,
        |e| matches!(e, SessionEvent::ViewerLeft { user } if user == "alice"),
    );
    let end = position(events, |e| matches!(e, SessionEvent::SessionEnd { .. }));
    assert!(
        left.is_some() && end.is_some() && left < end,
        "the leave must come before the end: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leave_precedes_the_end_when_the_last_viewer_leaving_ends_the_session() {
    let seen = Arc::new(Seen::default());
    let broker = broker_with(&seen, Duration::ZERO);
    let session = broker.open(request(still_server().await)).await.unwrap();
    let (viewer, _) = session.attach_viewer("alice");
    viewer.leave_and_end(SessionEnd::ViewerDisconnected);
    drop(viewer);
    assert_left_before_end(&recorded(&seen).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leave_precedes_the_end_when_the_session_ends_while_the_viewer_leaves() {
    let seen = Arc::new(Seen::default());
    let broker = broker_with(&seen, Duration::ZERO);
    let session = broker.open(request(still_server().await)).await.unwrap();
    let (viewer, _) = session.attach_viewer("alice");
    // The viewer goes away on another thread (its leave is on its way to the audit trail) and
    // meanwhile the session ends for another reason (an admin, the target).
    std::thread::spawn(move || drop(viewer));
    tokio::time::sleep(Duration::from_millis(50)).await;
    session.close(SessionEnd::ClosedByAdmin {
        message: "closed elsewhere".into(),
    });
    assert_left_before_end(&recorded(&seen).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_session_and_waits_for_viewers_and_recorders() {
    let seen = Arc::new(Seen::default());
    let broker = broker_with(&seen, Duration::from_millis(400));
    let session = broker.open(request(still_server().await)).await.unwrap();
    let (mut viewer, _) = session.attach_viewer("alice");
    let raw = session.attach_raw_viewer("bob");
    assert!(!raw.ended_by_shutdown());
    // The browser's side: takes what comes until the end, then takes its time telling the
    // browser before it lets the viewer go.
    let told = Arc::new(Mutex::new(None));
    let browser = tokio::spawn({
        let told = std::sync::Arc::<
            std::sync::Mutex<std::option::Option<portcullis_core::session::SessionEnd>>,
        >::clone(&told);
        async move {
            loop {
                if let ViewerOutput::End(m) = viewer.next().await {
                    *told.lock().unwrap() = Some(m);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(viewer);
        }
    });
    let native = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let by_shutdown = raw.ended_by_shutdown();
        drop(raw);
        by_shutdown
    });
    let reason = SessionEnd::Shutdown;
    assert!(broker.still_open() > 0);
    tokio::time::timeout(Duration::from_secs(5), broker.shutdown(reason.clone()))
        .await
        .expect("the shutdown finished");
    // Returned only once the recorder closed its recording and both viewers were let go.
    assert!(seen.finished.load(Ordering::SeqCst));
    assert_eq!(broker.still_open(), 0);
    browser.await.unwrap();
    assert_eq!(told.lock().unwrap().clone(), Some(reason));
    assert!(
        native.await.unwrap(),
        "the native viewer learns it was a shutdown"
    );
    let events = seen.events.lock().unwrap().clone();
    assert!(
        matches!(events.last(), Some(SessionEvent::SessionEnd { reason }) if reason == "the gateway is shutting down"),
        "{events:?}"
    );
    assert!(broker.list().is_empty());
    // Nothing opens any more.
    let refused = broker
        .open(request(still_server().await))
        .await
        .unwrap_err();
    assert!(refused.message.contains("shutting down"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_has_at_most_its_share_of_live_sessions() {
    let seen = Arc::new(Seen::default());
    let broker = broker_with(&seen, Duration::ZERO);
    let address = still_server().await;
    let mut held = Vec::new();
    for _ in 0..portcullis_broker::MAX_SESSIONS_PER_USER {
        held.push(broker.open(request(address.clone())).await.unwrap());
    }
    let refused = broker.open(request(address.clone())).await.unwrap_err();
    assert_eq!(refused.code, portcullis_core::wire::ErrorCode::PolicyDenied);
    assert!(
        refused.message.contains("close one first"),
        "{}",
        refused.message
    );
    // Another account is not affected.
    let mut bobs = request(address.clone());
    bobs.user = "bob".into();
    bobs.user_id = "u_bob".into();
    assert!(broker.open(bobs).await.is_ok());
}

/// An RFB server like [`still_server`] whose desktop puts text on the clipboard right away
/// (ServerCutText): the session thread then asks the policy, and records its decision.
async fn copying_server() -> String {
    common::serve(|mut s| async move {
        common::handshake(&mut s, 64, 32, b"copy").await?;
        // Give the gateway time to attach its viewer first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = b"copied";
        let mut cut = vec![3, 0, 0, 0];
        cut.extend_from_slice(&(text.len() as u32).to_be_bytes());
        cut.extend_from_slice(text);
        s.write_all(&cut).await?;
        common::drain(&mut s).await
    })
    .await
}

/// An audit trail with a bug: it panics on the first clipboard decision, on the session's own
/// thread. It keeps every event it takes.
/// With `slow_end`, it takes its time over the end record (a busy disk).
#[derive(Default)]
struct PanickingAudit {
    panicked: AtomicBool,
    events: Mutex<Vec<SessionEvent>>,
    slow_end: bool,
}

impl SessionAudit for PanickingAudit {
    fn session_event(&self, _session: &SessionInfo, event: &SessionEvent) {
        if matches!(event, SessionEvent::Policy { action, .. } if action.starts_with("clipboard"))
            && !self.panicked.swap(true, Ordering::SeqCst)
        {
            panic!("a bug in the session thread");
        }
        if self.slow_end && matches!(event, SessionEvent::SessionEnd { .. }) {
            std::thread::sleep(Duration::from_millis(300));
        }
        self.events.lock().unwrap().push(event.clone());
    }

    fn record_before(&self, _session: &SessionInfo, _event: &SessionEvent) -> AuditFuture {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_session_thread_still_ends_its_session() {
    let seen = Arc::new(Seen::default());
    let audit = Arc::new(PanickingAudit::default());
    let broker = Broker::default()
        .with_audit(std::sync::Arc::<PanickingAudit>::clone(&audit))
        .with_recorder(Arc::new(ReadingRecorder {
            seen: std::sync::Arc::<Seen>::clone(&seen),
            closing: Duration::ZERO,
        }));
    let session = broker.open(request(copying_server().await)).await.unwrap();
    let (mut viewer, _) = session.attach_viewer("alice");
    // The viewer is told the session ended (it would otherwise wait forever).
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let ViewerOutput::End(m) = viewer.next().await {
                return m;
            }
        }
    })
    .await
    .expect("the viewer was told the session ended");
    assert!(audit.panicked.load(Ordering::SeqCst));
    let internal = |reason: &str| reason.contains("internal error");
    assert!(
        matches!(&end, SessionEnd::Internal) && internal(&end.to_string()),
        "{end:?}"
    );
    // The recording closed with the end as its last word, after the viewer's leave.
    let events = recorded(&seen).await;
    assert_left_before_end(&events);
    assert!(
        matches!(events.last(), Some(SessionEvent::SessionEnd { reason }) if internal(reason)),
        "{events:?}"
    );
    // The audit trail has the end.
    assert!(
        audit
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, SessionEvent::SessionEnd { reason } if internal(reason))),
        "{:?}",
        audit.events.lock().unwrap()
    );
    // A shutdown waits only for this viewer, and returns once it is let go.
    drop(viewer);
    tokio::time::timeout(
        Duration::from_secs(5),
        broker.shutdown(SessionEnd::Shutdown),
    )
    .await
    .expect("nothing was left behind");
    assert!(broker.list().is_empty());
}

/// A recorder whose thread panics (a bug in the encoder, say) while the session runs.
struct PanickingRecorder;

impl SessionRecorder for PanickingRecorder {
    fn start(&self, tap: Tap) -> Result<(), String> {
        std::thread::spawn(move || {
            let _tap = tap;
            panic!("the recorder broke (on purpose, for the test)");
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_recorder_dies_ends_instead_of_running_unrecorded() {
    let broker = Broker::default().with_recorder(Arc::new(PanickingRecorder));
    let session = broker.open(request(still_server().await)).await.unwrap();
    let (mut viewer, _) = session.attach_viewer("alice");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let ViewerOutput::End(m) = viewer.next().await {
                return m;
            }
        }
    })
    .await
    .expect("the session ended when its recorder died");
    assert!(
        matches!(&end, SessionEnd::RecordingFailed { message } if message == "the recording stopped"),
        "{end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_sessions_viewer_hears_of_it_while_busy_elsewhere() {
    let seen = Arc::new(Seen::default());
    let broker = broker_with(&seen, Duration::ZERO);
    let session = broker.open(request(still_server().await)).await.unwrap();
    let (viewer, _) = session.attach_viewer("alice");
    let raw = session.attach_raw_viewer("bob");
    // Taken while running, awaited while the viewers are stuck elsewhere (a send that never
    // returns): an admin's close reaches them.
    let (ended, raw_ended) = (viewer.ended(), raw.ended());
    let closed = SessionEnd::ClosedByAdmin {
        message: "closed by the SOC".into(),
    };
    session.close(closed.clone());
    let heard = tokio::time::timeout(Duration::from_secs(2), async {
        (ended.await, raw_ended.await)
    })
    .await
    .expect("the end was heard");
    assert_eq!(heard, (closed.clone(), closed.clone()));
    // Also when asked after the end.
    assert_eq!(viewer.ended().await, closed);
}

/// A session thread that panics still has its end on record before a shutdown waiting for it
/// returns (the gateway's stop record comes after it), however slow the trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_for_the_end_record_of_a_panicked_session() {
    let audit = Arc::new(PanickingAudit {
        slow_end: true,
        ..PanickingAudit::default()
    });
    // Unrecorded: no recorder's tap holds the shutdown, only the session thread.
    let broker = Broker::default().with_audit(Arc::<PanickingAudit>::clone(&audit));
    let _session = broker
        .open(common::request(copying_server().await, Recording::Optional))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !audit.panicked.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the session thread panicked");
    tokio::time::timeout(
        Duration::from_secs(5),
        broker.shutdown(SessionEnd::Shutdown),
    )
    .await
    .expect("the shutdown finished");
    assert!(
        audit
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, SessionEvent::SessionEnd { .. })),
        "the shutdown returned before the session's end was on record: {:?}",
        audit.events.lock().unwrap()
    );
}

/// Words read off the screen and pasted text reach the recording's track for search: a screen
/// of more words than one event holds in several events, a long paste cut at a character's
/// boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_words_and_pasted_text_reach_the_track_bounded() {
    use portcullis_core::session::{ScreenWord, MAX_CLIPBOARD_TEXT, MAX_SCREEN_WORDS};
    let seen = Arc::new(Seen::default());
    let broker = broker_with(&seen, Duration::ZERO);
    let session = broker.open(request(still_server().await)).await.unwrap();
    assert!(session.is_recorded());
    let (mut viewer, _) = session.attach_viewer("alice");
    let words: Vec<ScreenWord> = (0..MAX_SCREEN_WORDS + 5)
        .map(|i| ScreenWord(format!("w{i}"), i as u32, 1, 2, 3))
        .collect();
    session.screen_words(words, Duration::from_millis(1500));
    // 3-byte characters: the cut lands inside one unless it steps back.
    let pasted = "€".repeat(MAX_CLIPBOARD_TEXT);
    viewer
        .handle(portcullis_core::wire::ClientMessage::Clipboard { text: pasted })
        .await
        .unwrap();
    viewer.leave_and_end(SessionEnd::ViewerDisconnected);
    drop(viewer);
    let events = recorded(&seen).await;
    let screens: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::ScreenText { words, age_ms } => {
                assert_eq!(*age_ms, 1500);
                Some(words.len())
            }
            _ => None,
        })
        .collect();
    assert_eq!(screens, [MAX_SCREEN_WORDS, 5]);
    let text = events
        .iter()
        .find_map(|e| match e {
            SessionEvent::ClipboardText { text, .. } => Some(text.clone()),
            _ => None,
        })
        .expect("no clipboard text in the track");
    assert!(text.len() <= MAX_CLIPBOARD_TEXT && text.len() > MAX_CLIPBOARD_TEXT - 3);
    assert!(text.chars().all(|c| c == '€'));
    assert!(events.iter().any(|e| matches!(
        e,
        SessionEvent::Clipboard { bytes, .. } if *bytes == 3 * MAX_CLIPBOARD_TEXT as u64
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_the_target_is_reached_tells_the_user_its_reason() {
    // A target that accepts the connection and says nothing: the session is listed (the SOC
    // sees it) while it is still being reached.
    let silent = common::serve(|mut s| async move { common::drain(&mut s).await }).await;
    let broker = Broker::default();
    let opening = tokio::spawn({
        let broker = broker.clone();
        async move {
            broker
                .open(common::request(silent, Recording::Optional))
                .await
        }
    });
    let listed = async {
        loop {
            if let Some(s) = broker.list().first() {
                break s.id.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let id = tokio::time::timeout(Duration::from_secs(5), listed)
        .await
        .expect("the session is listed while its target is reached");
    let reason = "the security team ended this session: one session at a time";
    assert!(broker.close(
        &id,
        SessionEnd::ClosedByAdmin {
            message: reason.into()
        }
    ));
    let refused = tokio::time::timeout(Duration::from_secs(5), opening)
        .await
        .expect("the opening ended")
        .unwrap()
        .expect_err("the session did not open");
    assert_eq!(refused.message, reason);
}
