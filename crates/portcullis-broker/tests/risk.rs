//! Risk rules in a live session, against a scripted RFB target that notes every key it gets: a
//! command line a `freeze` rule matches is held back (its Enter never reaches the target) and
//! the session frozen, the hit on record (durably) before the freeze; an `alert` rule lets the
//! line through; a `kill` rule ends the session; pasted text a rule matches is not delivered.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_broker::{AuditFuture, Broker, SessionAudit, SessionHandle, Viewer};
use portcullis_core::session::{SessionEnd, SessionEvent, SessionInfo};
use portcullis_core::wire::ClientMessage;
use portcullis_policy::{Policy, PolicyDoc, RiskAction, RiskRuleDoc, TargetRef};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

mod common;

const ENTER: u32 = 0xff0d;

/// What the trail got: (durable?, event); it refuses durable records while `.1` is set.
#[derive(Default)]
struct Trail(Mutex<Vec<(bool, SessionEvent)>>, AtomicBool);

impl SessionAudit for Trail {
    fn session_event(&self, _: &SessionInfo, event: &SessionEvent) {
        self.0.lock().unwrap().push((false, event.clone()));
    }

    fn record_before(&self, _: &SessionInfo, event: &SessionEvent) -> AuditFuture {
        if self.1.load(Ordering::SeqCst) {
            return Box::pin(async { Err("the disk is full".to_owned()) });
        }
        self.0.lock().unwrap().push((true, event.clone()));
        Box::pin(async { Ok(()) })
    }
}

/// The keys (pressed) and clipboard texts the target received, and whether the gateway has
/// closed the connection (then nothing more can arrive).
#[derive(Default)]
struct Received {
    keys: Mutex<Vec<u32>>,
    clipboard: Mutex<Vec<String>>,
    closed: AtomicBool,
}

impl Received {
    /// Once the connection closed (waits up to 10 s): every key the target ever got.
    async fn all_keys(&self) -> Vec<u32> {
        for _ in 0..1000 {
            if self.closed.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            self.closed.load(Ordering::SeqCst),
            "the target connection never closed"
        );
        self.keys.lock().unwrap().clone()
    }
}

/// Reads the client's RFB messages, noting key presses and cut texts.
async fn listen(s: &mut TcpStream, got: &Received) -> std::io::Result<()> {
    loop {
        let kind = s.read_u8().await?;
        match kind {
            0 => drop(s.read_exact(&mut [0u8; 19]).await?),
            2 => {
                s.read_exact(&mut [0u8; 1]).await?;
                let n = s.read_u16().await?;
                let mut skip = vec![0u8; usize::from(n) * 4];
                s.read_exact(&mut skip).await?;
            }
            3 => drop(s.read_exact(&mut [0u8; 9]).await?),
            4 => {
                let down = s.read_u8().await? != 0;
                s.read_exact(&mut [0u8; 2]).await?;
                let keysym = s.read_u32().await?;
                if down {
                    got.keys.lock().unwrap().push(keysym);
                }
            }
            5 => drop(s.read_exact(&mut [0u8; 5]).await?),
            6 => {
                s.read_exact(&mut [0u8; 3]).await?;
                let n = s.read_u32().await?;
                let mut text = vec![0u8; n as usize];
                s.read_exact(&mut text).await?;
                got.clipboard
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&text).into_owned());
            }
            other => panic!("unexpected client message {other}"),
        }
    }
}

async fn target(got: Arc<Received>) -> String {
    common::serve(move |mut s| {
        let got = Arc::clone(&got);
        async move {
            common::handshake(&mut s, 64, 64, b"risk").await?;
            let ended = listen(&mut s, &got).await;
            got.closed.store(true, Ordering::SeqCst);
            ended
        }
    })
    .await
}

fn rule(name: &str, pattern: Option<&str>, action: RiskAction) -> RiskRuleDoc {
    let mut r = RiskRuleDoc::named(name);
    r.pattern = pattern.map(str::to_owned);
    r.action = Some(action);
    r
}

/// A session on the scripted target under the default policy plus `risk`, with the user's viewer.
async fn session(risk: Vec<RiskRuleDoc>) -> (SessionHandle, Viewer, Arc<Received>, Arc<Trail>) {
    let got = Arc::new(Received::default());
    let address = target(Arc::clone(&got)).await;
    let mut doc = PolicyDoc::default_policy();
    doc.risk = risk;
    let policy = Policy::compile(&doc).unwrap();
    let grant = common::grant(portcullis_policy::Recording::Optional)
        .with_risk(policy.risk_for(&TargetRef::new("t", &[])));
    let trail = Arc::new(Trail::default());
    let broker = Broker::default().with_audit(Arc::clone(&trail) as Arc<dyn SessionAudit>);
    let session = broker
        .open(portcullis_broker::testing::browser_request_with(
            address, grant,
        ))
        .await
        .unwrap();
    let (viewer, _) = session.attach_viewer("alice");
    (session, viewer, got, trail)
}

async fn type_line(viewer: &mut Viewer, text: &str) {
    for c in text.chars() {
        press(viewer, c as u32).await;
    }
    press(viewer, ENTER).await;
}

async fn press(viewer: &mut Viewer, keysym: u32) {
    for down in [true, false] {
        viewer
            .handle(ClientMessage::Key { keysym, down })
            .await
            .unwrap();
    }
}

/// Waits (up to 5 s) until the target has received `n` key presses.
async fn keys_at_least(got: &Received, n: usize) -> Vec<u32> {
    for _ in 0..500 {
        let keys = got.keys.lock().unwrap().clone();
        if keys.len() >= n {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got.keys.lock().unwrap().clone()
}

fn keysyms(text: &str) -> Vec<u32> {
    text.chars().map(|c| c as u32).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_rule_holds_the_enter_back_and_freezes_after_recording_the_hit() {
    let (session, mut viewer, got, trail) =
        session(vec![rule("account_creation", None, RiskAction::Freeze)]).await;
    type_line(&mut viewer, "ls").await;
    type_line(&mut viewer, "net user eve pw /add").await;
    // Sent after the held line: nothing goes through while frozen.
    press(&mut viewer, u32::from(b'x')).await;
    let mut want = keysyms("ls");
    want.push(ENTER);
    want.extend(keysyms("net user eve pw /add"));
    keys_at_least(&got, want.len()).await;
    let info = session.info();
    assert!(info.frozen);
    assert_eq!(info.risk_rules, ["account_creation"]);
    assert_eq!(info.risk_score, 40);
    let acts: Vec<_> = trail
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| matches!(e, SessionEvent::Risk { .. } | SessionEvent::Frozen { .. }))
        .cloned()
        .collect();
    assert!(
        matches!(&acts[..], [(true, SessionEvent::Risk { rule, action, source, .. }), (true, SessionEvent::Frozen { by })]
            if rule == "account_creation" && action == "freeze" && source == "typed" && by == "risk rule account_creation"),
        "{acts:?}"
    );

    // Unfrozen, the same line stays on the prompt: its next Enter is checked (and held) again.
    assert!(session.set_frozen(false, "sam").await.unwrap());
    press(&mut viewer, ENTER).await;
    assert!(session.info().frozen);
    // Recalled from history (Up, Down): the editor cannot follow the line, what was typed says it.
    assert!(session.set_frozen(false, "sam").await.unwrap());
    for k in [0xff52, 0xff54, ENTER] {
        press(&mut viewer, k).await;
    }
    assert!(session.info().frozen);
    let mut arrived = want.clone();
    arrived.extend([0xff52, 0xff54]);
    keys_at_least(&got, arrived.len()).await;
    session.close(SessionEnd::ClosedByAdmin {
        message: "done".into(),
    });
    drop(viewer);
    assert_eq!(
        got.all_keys().await,
        arrived,
        "no held Enter (nor anything while frozen) ever arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_the_trail_cannot_take_holds_the_input_all_the_same() {
    let (session, mut viewer, got, trail) =
        session(vec![rule("account_creation", None, RiskAction::Freeze)]).await;
    trail.1.store(true, Ordering::SeqCst);
    type_line(&mut viewer, "useradd eve").await;
    press(&mut viewer, u32::from(b'x')).await;
    // Not frozen on record (it could not be recorded), but the input is held (failing closed),
    // and it cannot be let go while the trail refuses.
    assert!(!session.info().frozen);
    assert!(session.set_frozen(false, "sam").await.is_err());
    press(&mut viewer, u32::from(b'y')).await;
    trail.1.store(false, Ordering::SeqCst);
    assert!(session.set_frozen(false, "sam").await.unwrap());
    press(&mut viewer, u32::from(b'z')).await;
    keys_at_least(&got, "useradd eve".len() + 1).await;
    session.close(SessionEnd::ClosedByAdmin {
        message: "done".into(),
    });
    drop(viewer);
    let mut want = keysyms("useradd eve");
    want.push(u32::from(b'z'));
    assert_eq!(got.all_keys().await, want);
    assert!(trail
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(durable, e)| *durable && matches!(e, SessionEvent::Unfrozen { by } if by == "sam")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_lets_the_line_through_a_kill_ends_the_session_and_a_paste_is_checked() {
    let (session, mut viewer, got, _trail) = session(vec![
        rule("no_shred", Some(r"\bshred-all\b"), RiskAction::Kill),
        rule("no_paste", Some("BEGIN PRIVATE KEY"), RiskAction::Freeze),
    ])
    .await;
    // log_clearing alerts (as shipped): the line goes through, the session is flagged.
    type_line(&mut viewer, "history -c").await;
    let mut want = keysyms("history -c");
    want.push(ENTER);
    assert_eq!(keys_at_least(&got, want.len()).await, want);
    assert!(!session.info().frozen);
    assert_eq!(session.info().risk_rules, ["log_clearing"]);

    // A paste a freeze rule matches is not delivered; an innocent one is.
    viewer
        .handle(ClientMessage::Clipboard {
            text: "-----BEGIN PRIVATE KEY-----".into(),
        })
        .await
        .unwrap();
    assert!(session.info().frozen);
    assert!(session.set_frozen(false, "sam").await.unwrap());
    viewer
        .handle(ClientMessage::Clipboard {
            text: "hello".into(),
        })
        .await
        .unwrap();
    for _ in 0..500 {
        if !got.clipboard.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*got.clipboard.lock().unwrap(), ["hello"]);

    type_line(&mut viewer, "shred-all now").await;
    assert!(session.is_closed());
    drop(viewer);
    assert_eq!(
        got.all_keys().await.iter().filter(|&&k| k == ENTER).count(),
        1,
        "only the alerted line's Enter arrived"
    );
    let info = session.info();
    assert_eq!(info.risk_rules, ["log_clearing", "no_paste", "no_shred"]);
    assert_eq!(info.risk_score, 90);
}
