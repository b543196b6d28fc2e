//! Backpressure through the broker with a scripted RFB server: a viewer that stops acknowledging
//! gets at most the frame window and then merged frames, while another viewer keeps flowing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use portcullis_broker::{Broker, OpenRequest, ViewerOutput};
use portcullis_core::session::SessionEnd;
use portcullis_core::wire::{decode_server_binary, ClientMessage, ServerBinary};
use portcullis_policy::Recording;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

const W: u16 = 256;
const H: u16 = 128;

/// A minimal RFB 3.8 server without authentication that paints a 16x16 square at a new place
/// every 2 ms until the client goes away.
async fn scripted_server() -> String {
    common::serve(|mut s| async move {
        common::handshake(&mut s, W, H, b"fake").await?;
        let (mut rd, mut wr) = s.into_split();
        // Discard whatever the client sends (pixel format, encodings, update requests, input).
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        for i in 0u32.. {
            let x = u16::try_from((i * 16) % u32::from(W - 16)).unwrap();
            let y = u16::try_from((i * 16 / u32::from(W)) * 16 % u32::from(H - 16)).unwrap();
            let mut msg = vec![0u8, 0];
            msg.extend_from_slice(&1u16.to_be_bytes());
            for v in [x, y, 16, 16] {
                msg.extend_from_slice(&v.to_be_bytes());
            }
            msg.extend_from_slice(&0i32.to_be_bytes());
            let c = u8::try_from(i % 251).unwrap();
            for _ in 0..16 * 16 {
                msg.extend_from_slice(&[c, 255 - c, 0, 0]);
            }
            if wr.write_all(&msg).await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    })
    .await
}

fn seq_of(frame: &[Vec<u8>]) -> u32 {
    match decode_server_binary(frame.last().unwrap()).unwrap() {
        ServerBinary::FrameEnd { seq } => seq,
        other => panic!("frame does not end with an end-of-frame: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_viewer_gets_the_window_then_merged_frames_and_never_slows_another() {
    let address = scripted_server().await;
    let broker = Broker::default();
    let session = broker.open(request(address)).await.unwrap();
    assert_eq!(session.size(), (u32::from(W), u32::from(H)));
    assert_eq!(broker.list().len(), 1);

    let (mut fast, _) = session.attach_viewer("test");
    let (mut slow, _) = session.attach_viewer("test");

    // The fast viewer acknowledges everything for a second.
    let fast_task = tokio::spawn(async move {
        let mut frames = 0u32;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline {
            if let ViewerOutput::Frame(f) = fast.next().await {
                fast.handle(ClientMessage::Ack { seq: seq_of(&f) })
                    .await
                    .unwrap();
                frames += 1;
            }
        }
        frames
    });

    // The slow viewer takes frames but never acknowledges: exactly the window, then nothing.
    let mut slow_frames = Vec::new();
    let slow_deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(slow_deadline, slow.next()).await {
            Ok(ViewerOutput::Frame(f)) => slow_frames.push(f),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    let fast_frames = fast_task.await.unwrap();
    assert_eq!(
        slow_frames.len(),
        2,
        "a viewer must not get more than the frame window"
    );
    assert!(
        fast_frames > 20,
        "the fast viewer got only {fast_frames} frames"
    );

    // Once it acknowledges, it gets one merged frame with a bounded number of rectangles.
    slow.handle(ClientMessage::Ack {
        seq: seq_of(&slow_frames[1]),
    })
    .await
    .unwrap();
    let ViewerOutput::Frame(merged) = tokio::time::timeout(Duration::from_secs(2), slow.next())
        .await
        .unwrap()
    else {
        panic!("expected a frame");
    };
    assert!(
        merged.len() <= portcullis_core::damage::MAX_RECTS + 1,
        "{} messages",
        merged.len()
    );

    // A bogus acknowledgement is an error for that viewer only.
    assert!(slow.handle(ClientMessage::Ack { seq: 1000 }).await.is_err());

    session.close(SessionEnd::ClosedByAdmin {
        message: "done".into(),
    });
    let end = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let ViewerOutput::End(m) = slow.next().await {
                break m;
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(end, SessionEnd::ClosedByAdmin { .. }));
    for _ in 0..50 {
        if broker.list().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(broker.list().is_empty(), "closed session still listed");
}

/// A recorder that takes the tap and never reads it (a stuck encoder or disk).
struct StuckRecorder(std::sync::Mutex<Vec<portcullis_broker::Tap>>);

impl portcullis_broker::SessionRecorder for StuckRecorder {
    fn start(&self, tap: portcullis_broker::Tap) -> Result<(), String> {
        self.0.lock().unwrap().push(tap);
        Ok(())
    }
}

struct BrokenRecorder;

impl portcullis_broker::SessionRecorder for BrokenRecorder {
    fn start(&self, _tap: portcullis_broker::Tap) -> Result<(), String> {
        Err("disk full".into())
    }
}

/// The default policy, with recording optional (most of these brokers have no recorder).
fn request(address: String) -> OpenRequest {
    common::request(address, Recording::Optional)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_recorder_never_slows_the_session_and_its_tap_stays_bounded() {
    let address = scripted_server().await;
    let recorder = std::sync::Arc::new(StuckRecorder(std::sync::Mutex::default()));
    let broker = Broker::default().with_recorder(std::sync::Arc::<StuckRecorder>::clone(&recorder));
    let session = broker.open(request(address)).await.unwrap();
    let (mut viewer, _) = session.attach_viewer("watcher");
    let mut frames = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        if let ViewerOutput::Frame(f) = viewer.next().await {
            viewer
                .handle(ClientMessage::Ack { seq: seq_of(&f) })
                .await
                .unwrap();
            frames += 1;
        }
    }
    assert!(frames > 20, "the viewer got only {frames} frames");
    // What piled up for the recorder is merged damage, not a queue of frames.
    let tap = recorder.0.lock().unwrap().pop().unwrap();
    let batch = tap.wait(Duration::ZERO);
    assert!(
        !batch.damage.is_empty() && batch.damage.len() <= 24,
        "{}",
        batch.damage.len()
    );
    assert!(batch.updates > 20, "updates seen: {}", batch.updates);
    assert!(batch.events.len() <= portcullis_broker::MAX_TAP_EVENTS);
    session.close(SessionEnd::ClosedByAdmin {
        message: "test over".into(),
    });
    // The end may come in a later batch than the viewer leaving with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut end = tap.wait(Duration::from_secs(2));
    while end.ended.is_none() && std::time::Instant::now() < deadline {
        end = tap.wait(Duration::from_millis(200));
    }
    assert_eq!(end.ended.as_deref(), Some("test over"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_be_recorded_is_refused() {
    let address = scripted_server().await;
    let broker = Broker::default().with_recorder(std::sync::Arc::new(BrokenRecorder));
    let err = broker.open(request(address)).await.unwrap_err();
    assert_eq!(
        err.code,
        portcullis_core::wire::ErrorCode::RecordingUnavailable
    );
    assert!(broker.list().is_empty());
}
