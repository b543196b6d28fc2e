#![allow(clippy::unwrap_used)]
//! The recorder thread on a real broker session: what the target showed last, before it went
//! away, is in the recording.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use portcullis_broker::{Broker, SessionRecorder, Tap};
use portcullis_core::session::SessionState;
use portcullis_policy::Recording;
use portcullis_recorder::decoder::{Picture, RecordingVideo, Step};
use portcullis_recorder::{GatewayRecorder, RecorderConfig};
use portcullis_recording::catalog::detail;
use portcullis_recording::{generate_key, LocalDisk};
use tokio::io::AsyncWriteExt;

#[path = "../../portcullis-broker/tests/common/mod.rs"]
mod common;

const W: u16 = 64;
const H: u16 = 32;
const DARK: [u8; 3] = [20, 20, 20];
const LIGHT: [u8; 3] = [220, 220, 220];

/// One Raw update of the whole desktop in one colour (the client asked for RGBX).
fn whole_screen(c: [u8; 3]) -> Vec<u8> {
    let mut raw = vec![0u8, 0, 0, 1];
    for v in [0, 0, W, H] {
        raw.extend_from_slice(&v.to_be_bytes());
    }
    raw.extend_from_slice(&0i32.to_be_bytes());
    for _ in 0..u32::from(W) * u32::from(H) {
        raw.extend_from_slice(&[c[0], c[1], c[2], 0]);
    }
    raw
}

/// A target whose desktop turns dark, then light `pause` later, and which then closes the
/// connection.
async fn dark_then_light(pause: Duration) -> String {
    common::serve(move |mut s| async move {
        common::handshake(&mut s, W, H, b"last").await?;
        let (mut rd, mut wr) = s.into_split();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while matches!(tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await, Ok(n) if n > 0) {
            }
        });
        wr.write_all(&whole_screen(DARK)).await?;
        tokio::time::sleep(pause).await;
        wr.write_all(&whole_screen(LIGHT)).await?;
        wr.shutdown().await
    })
    .await
}

/// Luma of an RGB colour as the decoder gives it back (BT.601, full range).
fn luma(rgb: [u8; 3]) -> i32 {
    (299 * i32::from(rgb[0]) + 587 * i32::from(rgb[1]) + 114 * i32::from(rgb[2])) / 1000
}

/// A gateway recorder into `disk` that says which recording it closed.
fn recorder(disk: &Arc<LocalDisk>) -> (GatewayRecorder, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let r = GatewayRecorder::new(
        Arc::<LocalDisk>::clone(disk),
        Arc::new(generate_key()),
        RecorderConfig::default(),
    )
    .with_on_closed(Arc::new(move |id: &str| {
        let _ = tx.lock().unwrap().send(id.to_owned());
    }));
    (r, rx)
}

/// The last picture of recording `id`, once it was closed.
fn last_picture(disk: &LocalDisk, closed: &mpsc::Receiver<String>) -> Picture {
    let id = closed
        .recv_timeout(Duration::from_secs(20))
        .expect("the recording was closed after the target went away");
    let d = detail(disk, &id).unwrap();
    let mut video = RecordingVideo::new(disk, &id, &d.scan);
    let mut last = None;
    loop {
        match video.step().unwrap() {
            Step::Picture(p) => last = Some(p),
            Step::Working => {}
            Step::End => break,
        }
    }
    last.expect("the recording has a picture")
}

fn assert_light(p: &Picture) {
    let centre = i32::from(p.luma[usize::from(H / 2) * usize::from(W) + usize::from(W / 2)]);
    assert!(
        (centre - luma(LIGHT)).abs() <= 12,
        "the last picture is the light screen: luma {centre} (light {}, dark {})",
        luma(LIGHT),
        luma(DARK)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_change_before_the_target_goes_away_is_recorded() {
    // The light screen comes 100 ms after the dark one, within the frame slot of the dark
    // picture (taken 20 ms after the recorder saw it), and the end right after it.
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(LocalDisk::open(dir.path()).unwrap());
    let (rec, closed) = recorder(&disk);
    let broker = Broker::default().with_recorder(Arc::new(rec));
    let address = dark_then_light(Duration::from_millis(100)).await;
    let session = broker
        .open(common::request(address, Recording::Required))
        .await
        .unwrap();
    let last = tokio::task::spawn_blocking(move || last_picture(&disk, &closed))
        .await
        .unwrap();
    assert!(session.is_closed());
    assert_light(&last);
}

/// Hands the tap to the real recorder only once told to (everything that happened until then
/// is in its first batch), and says how its start went.
struct LateStart {
    inner: Arc<GatewayRecorder>,
    go: Mutex<Option<StartWhenTold>>,
}

/// When to start, and where to say how it went.
type StartWhenTold = (mpsc::Receiver<()>, mpsc::Sender<Result<(), String>>);

impl SessionRecorder for LateStart {
    fn start(&self, tap: Tap) -> Result<(), String> {
        let (go, started) = self.go.lock().unwrap().take().unwrap();
        let inner = Arc::clone(&self.inner);
        std::thread::spawn(move || {
            if go.recv().is_ok() {
                let _ = started.send(inner.start(tap));
            }
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_comes_with_the_end_is_taken_before_its_time() {
    // The recorder learns of the change and of the end in one batch (as when it was busy
    // encoding while both came): the change is not due yet (the live view's head start), and
    // must be taken all the same.
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(LocalDisk::open(dir.path()).unwrap());
    let (rec, closed) = recorder(&disk);
    let (go, wait) = mpsc::channel();
    let (started_tx, started) = mpsc::channel();
    let broker = Broker::default().with_recorder(Arc::new(LateStart {
        inner: Arc::new(rec),
        go: Mutex::new(Some((wait, started_tx))),
    }));
    let address = dark_then_light(Duration::ZERO).await;
    let session = broker
        .open(common::request(address, Recording::Required))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), session.closed())
        .await
        .expect("the session ended when the target went away");
    // The end is in the tap once the session is listed as closed (`closed` resolves when the
    // teardown starts, before the viewers and the audit trail are done with).
    tokio::time::timeout(Duration::from_secs(20), async {
        while session.info().state != SessionState::Closed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the session's teardown finished");
    go.send(()).unwrap();
    started
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("the recorder started");
    let last = tokio::task::spawn_blocking(move || last_picture(&disk, &closed))
        .await
        .unwrap();
    assert_light(&last);
}
