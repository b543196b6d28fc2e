#![allow(clippy::unwrap_used)]
//! The recorder thread on a real broker session: what the target showed last, before it went
//! away, is in the recording.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_broker::Broker;
use portcullis_policy::Recording;
use portcullis_recorder::decoder::{RecordingVideo, Step};
use portcullis_recorder::{GatewayRecorder, RecorderConfig};
use portcullis_recording::catalog::detail;
use portcullis_recording::{generate_key, LocalDisk};
use tokio::io::AsyncWriteExt;

#[path = "../../portcullis-broker/tests/common/mod.rs"]
mod common;

const W: u16 = 64;
const H: u16 = 32;
const RED: [u8; 3] = [230, 20, 20];
const BLUE: [u8; 3] = [40, 90, 160];

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

/// Luma of an RGB colour as the decoder gives it back (BT.601, full range).
fn luma(rgb: [u8; 3]) -> i32 {
    (299 * i32::from(rgb[0]) + 587 * i32::from(rgb[1]) + 114 * i32::from(rgb[2])) / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_change_before_the_target_goes_away_is_recorded() {
    // The desktop turns red, then blue 100 ms later (within the frame slot of the red picture,
    // which the recorder takes 20 ms after it), and the target closes the connection at once:
    // the blue picture waits for its slot when the end comes. (Were the recorder busy when both
    // arrive, they would come in one batch, and the picture must still be taken: not forced here.)
    let address = common::serve(|mut s| async move {
        common::handshake(&mut s, W, H, b"last").await?;
        let (mut rd, mut wr) = s.into_split();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while matches!(tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await, Ok(n) if n > 0) {
            }
        });
        wr.write_all(&whole_screen(RED)).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        wr.write_all(&whole_screen(BLUE)).await?;
        wr.shutdown().await
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(LocalDisk::open(dir.path()).unwrap());
    let closed = Arc::new((Mutex::new(None::<String>), tokio::sync::Notify::new()));
    let recorder = GatewayRecorder::new(
        Arc::<LocalDisk>::clone(&disk),
        Arc::new(generate_key()),
        RecorderConfig::default(),
    )
    .with_on_closed(Arc::new({
        let closed = Arc::clone(&closed);
        move |id: &str| {
            *closed.0.lock().unwrap() = Some(id.to_owned());
            closed.1.notify_one();
        }
    }));
    let broker = Broker::default().with_recorder(Arc::new(recorder));
    let session = broker
        .open(common::request(address, Recording::Required))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), closed.1.notified())
        .await
        .expect("the recording was closed after the target went away");
    assert!(session.is_closed());
    let id = closed.0.lock().unwrap().clone().unwrap();

    let d = detail(disk.as_ref(), &id).unwrap();
    let mut video = RecordingVideo::new(disk.as_ref(), &id, &d.scan);
    let mut last = None;
    loop {
        match video.step().unwrap() {
            Step::Picture(p) => last = Some(p),
            Step::Working => {}
            Step::End => break,
        }
    }
    let last = last.expect("the recording has pictures");
    let centre = i32::from(last.luma[usize::from(H / 2) * usize::from(W) + usize::from(W / 2)]);
    assert!(
        (centre - luma(BLUE)).abs() <= 12,
        "the last picture is the blue screen, luma {centre} (blue {}, red {})",
        luma(BLUE),
        luma(RED)
    );
}
