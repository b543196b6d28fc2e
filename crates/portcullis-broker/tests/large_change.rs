//! A large change through the broker to a browser viewer: what the browser paints from the
//! frame's messages (fills, and chunks of the connection's deflate stream inflated in order)
//! is the target's screen pixel for pixel, and its background goes out as fills, not as
//! deflated pixels.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use portcullis_broker::{Broker, ViewerOutput};
use portcullis_core::wire::{self, decode_server_binary, ClientMessage, ServerBinary};
use portcullis_core::Rect;
use portcullis_policy::Recording;
use tokio::io::AsyncWriteExt;

mod common;

const W: u32 = 1280;
const H: u32 = 800;

/// The target's screen after its one update: a grey background with a light terminal whose
/// first lines hold "text" (dark dots in a pattern, off the 64-pixel grid).
fn screen() -> Vec<[u8; 3]> {
    let mut px = vec![[60u8, 60, 70]; (W * H) as usize];
    for y in 90..610 {
        for x in 150..900 {
            px[(y * W + x) as usize] = [250, 250, 245];
        }
    }
    for line in 0..12u32 {
        for x in 160..(160 + 50 * line + 100).min(890) {
            for y in 100 + line * 18..111 + line * 18 {
                if (x * 7 + y * 3) % 5 < 2 {
                    px[(y * W + x) as usize] = [20, 20, 20];
                }
            }
        }
    }
    px
}

/// Sends the whole screen as one Raw update, then keeps the connection open.
async fn one_update_server() -> String {
    common::serve(|mut s| async move {
        common::handshake(&mut s, W as u16, H as u16, b"large").await?;
        let (mut rd, mut wr) = s.into_split();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while matches!(tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await, Ok(n) if n > 0) {
            }
        });
        let mut raw = vec![0u8, 0, 0, 1];
        for v in [0u16, 0, W as u16, H as u16] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        raw.extend_from_slice(&0i32.to_be_bytes());
        for p in screen() {
            raw.extend_from_slice(&[p[0], p[1], p[2], 0]);
        }
        wr.write_all(&raw).await?;
        std::future::pending::<()>().await;
        Ok(())
    })
    .await
}

/// The browser's side: a canvas and the connection's one inflater.
struct Canvas {
    px: Vec<[u8; 3]>,
    inflater: flate2::Decompress,
    /// Pixels painted from fills and from images, across all frames.
    filled: u64,
    imaged: u64,
}

impl Canvas {
    fn paint(&mut self, msg: &[u8]) {
        let ServerBinary::Rect {
            encoding,
            rect,
            data,
        } = decode_server_binary(msg).unwrap()
        else {
            return;
        };
        let colours: Vec<[u8; 3]> = match encoding {
            3 => {
                self.filled += rect.area();
                vec![[data[0], data[1], data[2]]; rect.area() as usize]
            }
            4 => {
                self.imaged += rect.area();
                self.inflate(data, rect)
            }
            other => panic!("unexpected encoding {other}"),
        };
        for (i, c) in colours.into_iter().enumerate() {
            let (x, y) = (rect.x + i as u32 % rect.w, rect.y + i as u32 / rect.w);
            self.px[(y * W + x) as usize] = c;
        }
    }

    /// One stream chunk: `[1, n - 1, n colours, packed rows]` or `[0, RGB rows]`.
    fn inflate(&mut self, data: &[u8], rect: Rect) -> Vec<[u8; 3]> {
        // Room for more than the image: a chunk that inflates to more is caught below.
        let mut out = Vec::with_capacity(2 + 768 + rect.area() as usize * 3 + 4096);
        let before = self.inflater.total_in();
        self.inflater
            .decompress_vec(data, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(
            self.inflater.total_in() - before,
            data.len() as u64,
            "chunk not all read"
        );
        if out[0] == 0 {
            assert_eq!(
                out.len(),
                1 + rect.area() as usize * 3,
                "RGB image of another size"
            );
            return out[1..]
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect();
        }
        let n = out[1] as usize + 1;
        let colours: Vec<[u8; 3]> = out[2..2 + n * 3]
            .chunks_exact(3)
            .map(|c| [c[0], c[1], c[2]])
            .collect();
        let bits = match n {
            0..=2 => 1,
            3..=4 => 2,
            5..=16 => 4,
            _ => 8,
        };
        let rows = &out[2 + n * 3..];
        let row_bytes = (rect.w as usize * bits).div_ceil(8);
        assert_eq!(
            rows.len(),
            row_bytes * rect.h as usize,
            "palette image of another size"
        );
        let mut px = Vec::with_capacity(rect.area() as usize);
        for y in 0..rect.h as usize {
            for x in 0..rect.w as usize {
                let bit = x * bits;
                let byte = rows[y * row_bytes + bit / 8];
                let index = (byte >> (8 - bits - bit % 8)) & ((1 << bits) - 1) as u8;
                px.push(colours[index as usize]);
            }
        }
        px
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_change_paints_exactly_with_its_background_as_fills() {
    let address = one_update_server().await;
    let broker = Broker::default();
    let session = broker
        .open(common::request(address, Recording::Optional))
        .await
        .unwrap();
    let (mut viewer, (w, h)) = session.attach_viewer("alice");
    assert_eq!((w, h), (W, H));
    let mut canvas = Canvas {
        px: vec![[0; 3]; (W * H) as usize],
        inflater: flate2::Decompress::new(true),
        filled: 0,
        imaged: 0,
    };
    let want = screen();
    while canvas.px != want {
        let out = tokio::time::timeout(Duration::from_secs(10), viewer.next())
            .await
            .expect("the screen was never painted as the target shows it");
        let ViewerOutput::Frame(frame) = out else {
            continue;
        };
        // As the page gets them: batches, each giving back its messages in order.
        for sent in wire::batched(frame.clone()) {
            for m in wire::unbatch(&sent).unwrap() {
                canvas.paint(m);
            }
        }
        let ServerBinary::FrameEnd { seq } = decode_server_binary(frame.last().unwrap()).unwrap()
        else {
            panic!("no end of frame");
        };
        viewer.handle(ClientMessage::Ack { seq }).await.unwrap();
    }
    // The screen's mixed tiles cover the terminal's text and edges (≈ 750×220 and two columns
    // of 520 of 1280×800, rounded to whole tiles: 25%); all the rest went out as fills
    // (the update was one rectangle: whole, it was one image).
    let screen = u64::from(W * H);
    assert!(
        canvas.imaged * 3 < screen,
        "{} of {screen} pixels sent as images ({} as fills)",
        canvas.imaged,
        canvas.filled
    );
}
