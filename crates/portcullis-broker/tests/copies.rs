//! A target's CopyRect through the broker with a scripted RFB server: a browser viewer whose
//! canvas shows the source gets a copy message (no pixels), a native client gets the
//! destination as damage.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use portcullis_broker::{Broker, RawOutput, ViewerOutput};
use portcullis_core::session::SessionEnd;
use portcullis_core::wire::{decode_server_binary, ClientMessage, ServerBinary};
use portcullis_core::Rect;
use portcullis_policy::Recording;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

mod common;

/// Paints a 16x16 square at (0, 0) at once, then, when `go` is notified, copies it to (100, 50).
async fn copying_server(go: Arc<Notify>) -> String {
    common::serve(move |mut s| {
        let go = Arc::clone(&go);
        async move {
            common::handshake(&mut s, 256, 128, b"copy").await?;
            let (mut rd, mut wr) = s.into_split();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await, Ok(n) if n > 0) {}
            });
            let mut raw = vec![0u8, 0, 0, 1];
            for v in [0u16, 0, 16, 16] {
                raw.extend_from_slice(&v.to_be_bytes());
            }
            raw.extend_from_slice(&0i32.to_be_bytes());
            raw.extend(std::iter::repeat_n([200u8, 10, 10, 0], 256).flatten());
            wr.write_all(&raw).await?;
            go.notified().await;
            let mut copy = vec![0u8, 0, 0, 1];
            for v in [100u16, 50, 16, 16] {
                copy.extend_from_slice(&v.to_be_bytes());
            }
            copy.extend_from_slice(&1i32.to_be_bytes());
            copy.extend_from_slice(&0u16.to_be_bytes());
            copy.extend_from_slice(&0u16.to_be_bytes());
            wr.write_all(&copy).await?;
            std::future::pending::<()>().await;
            Ok(())
        }
    })
    .await
}

/// The next frame's messages, acknowledged.
async fn frame(viewer: &mut portcullis_broker::Viewer) -> Vec<Vec<u8>> {
    loop {
        let out = tokio::time::timeout(Duration::from_secs(5), viewer.next())
            .await
            .unwrap();
        if let ViewerOutput::Frame(f) = out {
            let ServerBinary::FrameEnd { seq } = decode_server_binary(f.last().unwrap()).unwrap()
            else {
                panic!("no end of frame");
            };
            viewer.handle(ClientMessage::Ack { seq }).await.unwrap();
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_reaches_a_browser_as_a_copy_and_a_native_client_as_damage() {
    let go = Arc::new(Notify::new());
    let address = copying_server(Arc::clone(&go)).await;
    let broker = Broker::default();
    let session = broker
        .open(common::request(address, Recording::Optional))
        .await
        .unwrap();
    let (mut viewer, _) = session.attach_viewer("alice");
    let mut native = session.attach_raw_viewer("bob");
    // The native client's pixels show when the framebuffer has the square; the browser viewer
    // learnt of it at the same moment (under the framebuffer's lock), so once it has nothing
    // more to send, its canvas shows the square.
    let square = Rect::new(0, 0, 16, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), native.next())
            .await
            .unwrap()
        {
            RawOutput::Damage(d)
                if d.iter()
                    .any(|(r, px)| r.contains(&square) && px[..4] == [200, 10, 10, 255]) =>
            {
                break
            }
            _ => {}
        }
    }
    // The viewer was not asked for a frame yet: its first takes everything pending (the
    // initial repaint and the square), after which nothing is pending.
    tokio::time::timeout(Duration::from_secs(5), frame(&mut viewer))
        .await
        .unwrap();
    go.notify_one();

    let f = frame(&mut viewer).await;
    let messages: Vec<_> = f.iter().map(|m| decode_server_binary(m).unwrap()).collect();
    assert_eq!(
        messages[..1],
        [ServerBinary::Copy {
            dst: Rect::new(100, 50, 16, 16),
            src: square
        }],
        "{messages:?}"
    );
    assert!(
        messages[1..]
            .iter()
            .all(|m| !matches!(m, ServerBinary::Rect { .. })),
        "the copied pixels were sent again: {messages:?}"
    );
    let RawOutput::Damage(d) = tokio::time::timeout(Duration::from_secs(5), native.next())
        .await
        .unwrap()
    else {
        panic!("expected damage");
    };
    // The destination as damage with the square's pixels (the native client may get other
    // damage in the same batch, and the damage region may cut or merge rectangles).
    let dst = Rect::new(100, 50, 16, 16);
    let red_at = |x: u32, y: u32| {
        d.iter().any(|(r, px)| {
            r.contains(&Rect::new(x, y, 1, 1)) && {
                let i = (((y - r.y) * r.w + (x - r.x)) * 4) as usize;
                px[i..i + 4] == [200, 10, 10, 255]
            }
        })
    };
    assert!(
        red_at(dst.x, dst.y) && red_at(dst.x + 15, dst.y + 15),
        "{:?}",
        d.iter().map(|(r, _)| *r).collect::<Vec<_>>()
    );
    session.close(SessionEnd::ClosedByAdmin {
        message: "done".into(),
    });
}
