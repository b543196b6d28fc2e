//! The acts the audit trail must hold before they happen: a session's start (before the target
//! is contacted), a watcher (before it sees anything), a freeze or unfreeze (before it takes
//! effect). With a trail that refuses, none of them happens.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_broker::{AuditFuture, Broker, OpenRequest, SessionAudit};
use portcullis_core::session::{SessionEnd, SessionEvent, SessionInfo};
use portcullis_policy::Recording;

mod common;

/// A trail that can be made to refuse, and that notes what it got (and how many connections
/// the target had accepted at that moment).
#[derive(Default)]
struct Trail {
    refuse: AtomicBool,
    accepted: Arc<AtomicUsize>,
    /// (durable?, event kind, target connections so far)
    seen: Mutex<Vec<(bool, String, usize)>>,
}

/// The event's variant name.
fn kind(event: &SessionEvent) -> String {
    format!("{event:?}")
        .split([' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl SessionAudit for Trail {
    fn session_event(&self, _session: &SessionInfo, event: &SessionEvent) {
        let accepted = self.accepted.load(Ordering::SeqCst);
        self.seen
            .lock()
            .unwrap()
            .push((false, kind(event), accepted));
    }

    fn record_before(&self, _session: &SessionInfo, event: &SessionEvent) -> AuditFuture {
        if self.refuse.load(Ordering::SeqCst) {
            return Box::pin(async { Err("no space left on device".to_owned()) });
        }
        let accepted = self.accepted.load(Ordering::SeqCst);
        self.seen
            .lock()
            .unwrap()
            .push((true, kind(event), accepted));
        Box::pin(async { Ok(()) })
    }
}

/// An RFB server (64x64) that counts its connections and then keeps them open, painting
/// nothing.
async fn target(accepted: Arc<AtomicUsize>) -> String {
    common::serve(move |mut s| {
        accepted.fetch_add(1, Ordering::SeqCst);
        async move {
            common::handshake(&mut s, 64, 64, b"fake").await?;
            common::drain(&mut s).await
        }
    })
    .await
}

fn request(address: String) -> OpenRequest {
    common::request(address, Recording::Optional)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_start_cannot_be_recorded_never_contacts_its_target() {
    let trail = Arc::new(Trail::default());
    trail.refuse.store(true, Ordering::SeqCst);
    let address = target(std::sync::Arc::<std::sync::atomic::AtomicUsize>::clone(
        &trail.accepted,
    ))
    .await;
    let broker = Broker::default().with_audit(std::sync::Arc::<Trail>::clone(&trail));
    let err = broker.open(request(address.clone())).await.unwrap_err();
    assert!(err.message.contains("audit trail"), "{}", err.message);
    assert_eq!(
        err.code,
        portcullis_core::wire::ErrorCode::AuditUnavailable,
        "the browser is told why, not 'internal'"
    );
    assert!(broker.list().is_empty());
    // Had it been contacted, the connection would be counted by now: a second session to the
    // same target (recorded this time) is, and the first one never was.
    trail.refuse.store(false, Ordering::SeqCst);
    let session = broker.open(request(address)).await.unwrap();
    assert_eq!(trail.accepted.load(Ordering::SeqCst), 1);
    session.close(SessionEnd::ClosedByAdmin {
        message: "done".into(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_watch_and_freeze_are_on_record_before_they_happen() {
    let trail = Arc::new(Trail::default());
    let address = target(std::sync::Arc::<std::sync::atomic::AtomicUsize>::clone(
        &trail.accepted,
    ))
    .await;
    let broker = Broker::default().with_audit(std::sync::Arc::<Trail>::clone(&trail));
    let session = broker.open(request(address)).await.unwrap();
    {
        let seen = trail.seen.lock().unwrap();
        assert_eq!(
            seen[..2],
            [
                (true, "SessionStart".to_owned(), 0),
                (true, "Policy".to_owned(), 0)
            ],
            "the start is durable before the target is contacted"
        );
        assert!(
            !seen
                .iter()
                .any(|(durable, k, _)| !durable && k == "SessionStart"),
            "the start is recorded once"
        );
    }

    // The trail refuses: no freeze, no watcher.
    trail.refuse.store(true, Ordering::SeqCst);
    assert!(session.set_frozen(true, "sam").await.is_err());
    assert!(!session.info().frozen);
    assert!(session.attach_watcher("sam").await.is_err());
    assert!(!trail
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(_, k, _)| k == "WatcherJoined" || k == "Frozen"));

    // It takes records again: both happen, each recorded (durably) once.
    trail.refuse.store(false, Ordering::SeqCst);
    assert!(session.set_frozen(true, "sam").await.unwrap());
    assert!(session.info().frozen);
    let (_watcher, _) = session.attach_watcher("sam").await.unwrap();
    let acts: Vec<_> = trail
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, k, _)| k == "WatcherJoined" || k == "Frozen")
        .map(|(durable, k, _)| (*durable, k.clone()))
        .collect();
    assert_eq!(
        acts,
        [
            (true, "Frozen".to_owned()),
            (true, "WatcherJoined".to_owned())
        ]
    );
    session.close(SessionEnd::ClosedByAdmin {
        message: "done".into(),
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
}
