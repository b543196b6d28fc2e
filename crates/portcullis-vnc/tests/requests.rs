//! The adapter keeps one incremental update request outstanding: against a fake RFB server on a
//! local socket, the next request follows each update (an empty one too) at once, and none
//! comes while one is outstanding (no timer polling).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use portcullis_core::desktop::TargetUpdate;
use portcullis_vnc::{connect, TargetCommand, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A client message, as far as the fake server cares.
#[derive(Debug, PartialEq)]
enum FromClient {
    Request { incremental: bool },
    Other,
}

async fn handshake(s: &mut TcpStream) {
    handshake_sized(s, 64, 48).await;
}

async fn handshake_sized(s: &mut TcpStream, width: u16, height: u16) {
    s.write_all(b"RFB 003.008\n").await.unwrap();
    let mut version = [0; 12];
    s.read_exact(&mut version).await.unwrap();
    s.write_all(&[1, 1]).await.unwrap(); // one security type: None
    assert_eq!(s.read_u8().await.unwrap(), 1);
    s.write_all(&0_u32.to_be_bytes()).await.unwrap(); // SecurityResult: OK
    let _shared = s.read_u8().await.unwrap();
    let mut init = [width.to_be_bytes(), height.to_be_bytes()].concat();
    init.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    init.extend_from_slice(&4_u32.to_be_bytes());
    init.extend_from_slice(b"fake");
    s.write_all(&init).await.unwrap();
}

async fn read_message(s: &mut TcpStream) -> FromClient {
    let kind = s.read_u8().await.unwrap();
    let skip = |n: usize| vec![0_u8; n];
    match kind {
        0 => {
            s.read_exact(&mut skip(19)).await.unwrap();
        }
        2 => {
            let mut h = [0; 3];
            s.read_exact(&mut h).await.unwrap();
            let n = usize::from(u16::from_be_bytes([h[1], h[2]]));
            s.read_exact(&mut skip(4 * n)).await.unwrap();
        }
        3 => {
            let mut r = [0; 9];
            s.read_exact(&mut r).await.unwrap();
            return FromClient::Request {
                incremental: r[0] == 1,
            };
        }
        4 => {
            s.read_exact(&mut skip(7)).await.unwrap();
        }
        5 => {
            s.read_exact(&mut skip(5)).await.unwrap();
        }
        other => panic!("unexpected client message {other}"),
    }
    FromClient::Other
}

async fn next_request(s: &mut TcpStream) -> FromClient {
    loop {
        let m = read_message(s).await;
        if m != FromClient::Other {
            return m;
        }
    }
}

const EMPTY_UPDATE: [u8; 4] = [0, 0, 0, 0];

fn one_pixel_update() -> Vec<u8> {
    let mut m = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1];
    m.extend_from_slice(&0_i32.to_be_bytes()); // Raw
    m.extend_from_slice(&[10, 20, 30, 0]);
    m
}

/// Accepts the adapter's connection, does the handshake and takes vnc-rs's first request, which
/// asks for the full picture.
async fn accept_to_first_request(listener: TcpListener) -> TcpStream {
    let (mut s, _) = listener.accept().await.unwrap();
    handshake(&mut s).await;
    assert_eq!(
        next_request(&mut s).await,
        FromClient::Request { incremental: false }
    );
    s
}

/// The adapter connected to `address` and running: its updates, its commands (dropping them
/// ends it) and its task.
async fn start_adapter(
    address: &str,
) -> (
    mpsc::Receiver<TargetUpdate>,
    mpsc::Sender<TargetCommand>,
    tokio::task::JoinHandle<Result<(), portcullis_vnc::VncTargetError>>,
) {
    let target = connect(address, String::new(), Timeouts::default())
        .await
        .unwrap();
    let (updates_tx, updates) = mpsc::channel(16);
    let (commands, commands_rx) = mpsc::channel::<TargetCommand>(4);
    let adapter = tokio::spawn(target.run(updates_tx, commands_rx));
    (updates, commands, adapter)
}

const ROUNDS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_again_right_after_each_update_even_an_empty_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let mut s = accept_to_first_request(listener).await;
        // vnc-rs's first (full) request gets a pixel.
        s.write_all(&one_pixel_update()).await.unwrap();
        // Every later request gets an empty update at once: the client must ask again at
        // once, not when a timer fires (which took 100 ms per round before).
        let started = Instant::now();
        for _ in 0..ROUNDS {
            let _ = next_request(&mut s).await;
            s.write_all(&EMPTY_UPDATE).await.unwrap();
        }
        let rounds_took = started.elapsed();
        // Now the server keeps quiet: with a request outstanding, the client waits, it does not
        // poll. At most the answer to the last update arrives (one chain of requests: vnc-rs's
        // first, full, request is the only one not following an update).
        let mut while_quiet = 0;
        let quiet_until = Instant::now() + Duration::from_millis(100);
        while tokio::time::timeout_at(quiet_until.into(), next_request(&mut s))
            .await
            .is_ok()
        {
            while_quiet += 1;
        }
        // One more empty update: the next request follows at once (the safety timer is 1 s).
        s.write_all(&EMPTY_UPDATE).await.unwrap();
        let answered = Instant::now();
        let _ = timeout(Duration::from_millis(800), next_request(&mut s))
            .await
            .expect("a request right after the empty update");
        (rounds_took, while_quiet, answered.elapsed(), s)
    });

    let (mut updates, commands, adapter) = start_adapter(&address).await;
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(u) = updates.recv().await {
            seen.push(u);
        }
        seen
    });
    let (rounds_took, while_quiet, next_after, socket) = server.await.unwrap();
    drop(commands);
    let _ = adapter.await;
    drop(socket);
    let seen = collector.await.unwrap();

    assert!(
        rounds_took < Duration::from_millis(2500),
        "{ROUNDS} empty updates took {rounds_took:?}: the client waited for a timer"
    );
    assert!(
        while_quiet <= 1,
        "{while_quiet} requests came while one was outstanding"
    );
    // The safety timer would send one ≈900 ms after the update; a timer-paced client (100 ms)
    // would take 5 s for the rounds.
    assert!(next_after < Duration::from_millis(600), "{next_after:?}");
    // The broker hears of each update's end, after the update's pixels.
    let first_pixels = seen
        .iter()
        .position(|u| matches!(u, TargetUpdate::Pixels { .. }))
        .expect("the pixel arrived");
    let first_end = seen
        .iter()
        .position(|u| matches!(u, TargetUpdate::UpdateEnd))
        .expect("update ends are reported");
    assert!(first_pixels < first_end, "{seen:?}");
    let ends = seen
        .iter()
        .filter(|u| matches!(u, TargetUpdate::UpdateEnd))
        .count();
    assert!(
        ends >= ROUNDS,
        "only {ends} update ends for {} updates",
        ROUNDS + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_request_left_unanswered_is_asked_again_in_full() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        // vnc-rs's first, full, request: ignored (a server whose screen is not ready).
        let mut s = accept_to_first_request(listener).await;
        // The safety timer (1 s) asks again, for the whole picture, not for changes since.
        let again = timeout(Duration::from_secs(3), next_request(&mut s))
            .await
            .expect("a second request within the safety time");
        (again, s)
    });
    let (_updates, commands, adapter) = start_adapter(&address).await;
    let (again, socket) = server.await.unwrap();
    assert_eq!(again, FromClient::Request { incremental: false });
    drop(commands);
    let _ = adapter.await;
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_screen_raw_update_reaches_the_session_in_bands_of_at_most_a_mib() {
    use portcullis_core::desktop::MAX_UPDATE_PIXEL_BYTES;
    // 3 MiB of pixels in one rectangle: the queue to the session (16 updates) must not hold
    // whole screens, whatever the desktop's size (bounds.test.mjs floods 4K the same way).
    const W: u16 = 1024;
    const H: u16 = 768;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        handshake_sized(&mut s, W, H).await;
        assert_eq!(
            next_request(&mut s).await,
            FromClient::Request { incremental: false }
        );
        let mut m = vec![0, 0, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&W.to_be_bytes());
        m.extend_from_slice(&H.to_be_bytes());
        m.extend_from_slice(&0_i32.to_be_bytes()); // Raw
        m.extend((0..usize::from(W) * usize::from(H)).flat_map(|i| {
            let b = u8::try_from(i % 251).unwrap();
            [b, b, b, 0]
        }));
        s.write_all(&m).await.unwrap();
        // The next request says the update was read; then the server goes away.
        let _ = timeout(Duration::from_secs(10), next_request(&mut s)).await;
        s
    });
    let (mut updates, commands, adapter) = start_adapter(&address).await;
    let mut rows = 0;
    let mut biggest = 0;
    while rows < u32::from(H) {
        let u = timeout(Duration::from_secs(10), updates.recv())
            .await
            .expect("the update's pixels within 10 s")
            .expect("the adapter is running");
        if let TargetUpdate::Pixels { rect, data, .. } = u {
            assert_eq!(
                (rect.x, rect.w, rect.y),
                (0, u32::from(W), rows),
                "bands top to bottom"
            );
            assert_eq!(data.len(), (rect.w * rect.h * 4) as usize);
            biggest = biggest.max(data.len());
            rows += rect.h;
        }
    }
    assert!(
        biggest <= MAX_UPDATE_PIXEL_BYTES,
        "a band of {biggest} bytes"
    );
    let socket = server.await.unwrap();
    drop(commands);
    drop(socket);
    let _ = adapter.await;
}

/// A picture for the ZRLE test: areas of one colour, stripes of two, and noise.
fn zrle_picture(w: u16, h: u16) -> Vec<[u8; 3]> {
    let mut s = 7_u32;
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            match x * 3 / w {
                0 => [10, 20, 30],
                1 if y % 8 < 4 => [200, 0, 0],
                1 => [0, 200, 0],
                _ => {
                    let b = s.to_le_bytes();
                    [b[0], b[1], b[2]]
                }
            }
        })
        .collect()
}

/// ZRLE tiles of `px` (`w` wide): solid tiles as one colour, the others alternately raw and
/// as plain runs.
fn zrle_tiles(px: &[[u8; 3]], w: u16, h: u16) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut n = 0;
    for ty in (0..h).step_by(64) {
        for tx in (0..w).step_by(64) {
            let (tw, th) = (64.min(w - tx), 64.min(h - ty));
            let tile: Vec<[u8; 3]> = (ty..ty + th)
                .flat_map(|y| (tx..tx + tw).map(move |x| (x, y)))
                .map(|(x, y)| px[usize::from(y) * usize::from(w) + usize::from(x)])
                .collect();
            n += 1;
            if tile.iter().all(|c| *c == tile[0]) {
                raw.push(1);
                raw.extend_from_slice(&tile[0]);
            } else if n % 2 == 0 {
                raw.push(0);
                tile.iter().for_each(|c| raw.extend_from_slice(c));
            } else {
                raw.push(128);
                let mut i = 0;
                while i < tile.len() {
                    let run = tile[i..].iter().take_while(|c| **c == tile[i]).count();
                    raw.extend_from_slice(&tile[i]);
                    let mut left = run - 1;
                    while left >= 255 {
                        raw.push(255);
                        left -= 255;
                    }
                    raw.push(u8::try_from(left).unwrap());
                    i += run;
                }
            }
        }
    }
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrle_is_decoded_by_the_adapter_in_order_with_copies_and_update_ends() {
    use flate2::{Compress, Compression, FlushCompress};
    const W: u16 = 300;
    const H: u16 = 200;
    let px = zrle_picture(W, H);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let tiles = zrle_tiles(&px, W, H);
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        handshake_sized(&mut s, 400, 300).await;
        assert_eq!(
            next_request(&mut s).await,
            FromClient::Request { incremental: false }
        );
        let mut zlib = Compress::new(Compression::default(), true);
        let rect = |x: u16, y: u16, w: u16, h: u16, enc: i32| {
            let mut m = Vec::new();
            for v in [x, y, w, h] {
                m.extend_from_slice(&v.to_be_bytes());
            }
            m.extend_from_slice(&enc.to_be_bytes());
            m
        };
        // One update: a ZRLE rectangle, the server's own copy of a rectangle onto itself, a real
        // copy, and a second ZRLE rectangle (one tile of one colour) on the same zlib stream.
        let mut m = vec![0, 0, 0, 4];
        let mut compress = |raw: &[u8]| {
            let mut out = Vec::with_capacity(raw.len() * 2 + 1024);
            zlib.compress_vec(raw, &mut out, FlushCompress::Sync)
                .unwrap();
            out
        };
        let first = compress(&tiles);
        m.extend(rect(10, 20, W, H, 16));
        m.extend_from_slice(&u32::try_from(first.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&first);
        m.extend(rect(5, 5, 8, 8, 1));
        m.extend_from_slice(&[0, 5, 0, 5]);
        m.extend(rect(50, 60, 8, 8, 1));
        m.extend_from_slice(&[0, 1, 0, 2]);
        let second = compress(&[1, 9, 8, 7]);
        m.extend(rect(0, 0, 16, 16, 16));
        m.extend_from_slice(&u32::try_from(second.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&second);
        // Handed over one byte at a time for the first kilobyte, then in one go: the framer
        // must not depend on where reads cut the stream.
        for b in &m[..1024] {
            s.write_all(&[*b]).await.unwrap();
        }
        s.write_all(&m[1024..]).await.unwrap();
        let _ = timeout(Duration::from_secs(10), next_request(&mut s)).await;
        s
    });
    let (mut updates, commands, adapter) = start_adapter(&address).await;
    let mut seen = Vec::new();
    loop {
        let u = timeout(Duration::from_secs(10), updates.recv())
            .await
            .expect("the update within 10 s")
            .expect("the adapter is running");
        let end = matches!(u, TargetUpdate::UpdateEnd);
        seen.push(u);
        if end {
            break;
        }
    }
    let socket = server.await.unwrap();
    drop(commands);
    drop(socket);
    let _ = adapter.await;

    // The first rectangle, in bands top to bottom, exactly the picture.
    let mut picture = Vec::new();
    let mut rest = seen.iter();
    while picture.len() < usize::from(W) * usize::from(H) * 4 {
        match rest.next() {
            Some(TargetUpdate::Pixels { rect, data, .. }) => {
                assert_eq!((rect.x, rect.w), (10, u32::from(W)), "{rect}");
                assert_eq!(
                    rect.y,
                    20 + u32::try_from(picture.len() / (usize::from(W) * 4)).unwrap()
                );
                picture.extend_from_slice(data);
            }
            other => panic!("expected the first rectangle's pixels, got {other:?}"),
        }
    }
    let want: Vec<u8> = px.iter().flat_map(|c| [c[0], c[1], c[2], 0]).collect();
    assert!(picture == want, "the decoded picture differs");
    // The server's copy onto itself is nothing; the real copy is a copy; then the one-colour
    // rectangle; then the update's end.
    let rest: Vec<_> = rest.collect();
    assert!(
        matches!(rest[0], TargetUpdate::Copy { dst, src } if (dst.x, dst.y, src.x, src.y) == (50, 60, 1, 2)),
        "{:?}",
        rest[0]
    );
    match rest[1] {
        TargetUpdate::Pixels { rect, data, .. } => {
            assert_eq!((rect.x, rect.y, rect.w, rect.h), (0, 0, 16, 16));
            assert!(data.chunks_exact(4).all(|p| p == [9, 8, 7, 0]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(rest[2], TargetUpdate::UpdateEnd), "{:?}", rest[2]);
    assert_eq!(rest.len(), 3, "{rest:?}");
}

/// The adapter's outcome when a server sends `update` as its first update.
async fn outcome_of(update: Vec<u8>) -> Result<(), portcullis_vnc::VncTargetError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        handshake_sized(&mut s, 400, 300).await;
        let _ = next_request(&mut s).await;
        s.write_all(&update).await.unwrap();
        // Keep the connection open: the adapter must end on what it read, not on a close.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let target = connect(&address, String::new(), Timeouts::default())
        .await
        .unwrap();
    let (updates_tx, mut updates) = mpsc::channel(16);
    let (_commands, commands_rx) = mpsc::channel::<TargetCommand>(4);
    let drain = tokio::spawn(async move { while updates.recv().await.is_some() {} });
    let outcome = timeout(Duration::from_secs(5), target.run(updates_tx, commands_rx))
        .await
        .expect("the adapter ends within 5 s");
    server.abort();
    drain.abort();
    outcome
}

fn zrle_update(w: u16, h: u16, length: u32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(&w.to_be_bytes());
    m.extend_from_slice(&h.to_be_bytes());
    m.extend_from_slice(&16_i32.to_be_bytes());
    m.extend_from_slice(&length.to_be_bytes());
    m.extend_from_slice(data);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_zrle_ends_the_session_with_a_clear_error() {
    // Not zlib; a length far beyond what a 16×16 rectangle can take (no memory is reserved
    // for it); a rectangle larger than any taken.
    for (update, says) in [
        (zrle_update(16, 16, 8, &[0xff; 8]), "zlib"),
        (zrle_update(16, 16, u32::MAX, &[]), "bytes of ZRLE data"),
        (
            zrle_update(8192, 8192, 4, &[0; 4]),
            "ZRLE rectangle of 8192x8192",
        ),
    ] {
        let e = outcome_of(update).await.expect_err("the session ends");
        assert!(e.to_string().contains(says), "{e}");
    }
}
