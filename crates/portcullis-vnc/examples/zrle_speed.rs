//! How long `portcullis_vnc::zrle` takes to decode a large change, for benches/LATENCY-NOTES.md:
//! a 1280×800 rectangle of four areas of one colour each (what TigerVNC sends when a terminal
//! is cleared: every tile solid), and the same rectangle with text-like noise in one area (raw
//! tiles there). Prints the median of 200 decodes of each.
//!
//!     cargo run --release -p portcullis-vnc --example zrle_speed

#![allow(clippy::print_stdout)]

use std::time::Instant;

use flate2::{Compress, Compression, FlushCompress};
use portcullis_core::desktop::Rect;
use portcullis_vnc::zrle::Zrle;

const W: u32 = 1280;
const H: u32 = 800;

fn colour(x: u32, y: u32, noisy: bool) -> [u8; 3] {
    match (x * 4 / W, y) {
        (0, _) => [30, 30, 30],
        (1, _) => [200, 200, 200],
        (2, y) if noisy && y < 400 => {
            let v = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503);
            [(v >> 3) as u8, (v >> 11) as u8, (v >> 19) as u8]
        }
        (2, _) => [64, 32, 16],
        _ => [0, 90, 160],
    }
}

/// One rectangle's uncompressed ZRLE tiles: solid where the tile is one colour, raw elsewhere.
fn tiles(noisy: bool) -> Vec<u8> {
    let mut raw = Vec::new();
    for ty in (0..H).step_by(64) {
        for tx in (0..W).step_by(64) {
            let (tw, th) = (64.min(W - tx), 64.min(H - ty));
            let px: Vec<[u8; 3]> = (0..th)
                .flat_map(|y| (0..tw).map(move |x| colour(tx + x, ty + y, noisy)))
                .collect();
            if px.iter().all(|p| *p == px[0]) {
                raw.push(1);
                raw.extend_from_slice(&px[0]);
            } else {
                raw.push(0);
                px.iter().for_each(|p| raw.extend_from_slice(p));
            }
        }
    }
    raw
}

fn main() {
    for noisy in [false, true] {
        let raw = tiles(noisy);
        let mut z = Compress::new(Compression::default(), true);
        let mut zlib = Vec::with_capacity(raw.len() + 4096);
        z.compress_vec(&raw, &mut zlib, FlushCompress::Sync)
            .expect("compress");
        let mut times = Vec::new();
        // A fresh decoder each round: the data starts a zlib stream of its own.
        for _ in 0..200 {
            let mut d = Zrle::new();
            let t = Instant::now();
            let px = d.decode(Rect::new(0, 0, W, H), &zlib).expect("decode");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(px.len(), (W * H * 4) as usize);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{}: {} bytes of zlib, decode median {:.3} ms (p90 {:.3})",
            if noisy {
                "four areas, one with noise"
            } else {
                "four areas of one colour"
            },
            zlib.len(),
            times[100],
            times[180]
        );
    }
}
