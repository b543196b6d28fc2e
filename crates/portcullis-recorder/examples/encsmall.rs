//! CPU of one H.264 encoder for a small change on a large screen:
//! `encsmall [WIDTH HEIGHT [SIDE [X264_PARAMS]]]`. A SIDE×SIDE square (default 24) changes colour
//! on every frame of a still picture (a grid of dark lines); prints the median and p90 wall time
//! of `encode` per frame over 300 frames, after 20 frames of warm-up. X264_PARAMS are appended
//! to the recorder's own (`weightp=1`, `qp=24`, `me=hex`, …) to weigh a setting.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use portcullis_core::Rect;
use portcullis_recorder::encoder::{EncoderSettings, H264Encoder};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1920);
    let h: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1080);
    let side: u32 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(24u32)
        .clamp(1, w.min(h) / 2);
    // Every picture at `crf`: what a change costs, without the drafts' second encode.
    let settings = EncoderSettings {
        draft_crf: None,
        x264_params: args.get(3).cloned().unwrap_or_default(),
        ..EncoderSettings::default()
    };
    // A still picture with text-like detail: every 9th column and 17th row dark.
    let mut rgba = vec![255u8; w as usize * h as usize * 4];
    for y in 0..h as usize {
        for x in 0..w as usize {
            if x % 9 == 0 || y % 17 == 0 {
                let o = (y * w as usize + x) * 4;
                rgba[o..o + 3].copy_from_slice(&[20, 20, 20]);
            }
        }
    }
    let mut enc = H264Encoder::new(w, h, &settings).unwrap();
    enc.encode(&rgba, &[Rect::new(0, 0, w, h)], 0, true)
        .unwrap();
    let sq = Rect::new((w - side) / 2, (h - side) / 2, side, side);
    let mut times = Vec::new();
    for i in 1..=320u32 {
        let c = (i * 37 % 256) as u8;
        for y in sq.y..sq.y + sq.h {
            for x in sq.x..sq.x + sq.w {
                let o = (y as usize * w as usize + x as usize) * 4;
                rgba[o..o + 3].copy_from_slice(&[c, 255 - c, c / 2]);
            }
        }
        let t = std::time::Instant::now();
        enc.encode(&rgba, &[sq], i64::from(i) * 200, false).unwrap();
        if i > 20 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{w}x{h} {side}px '{}': encode p50 {:.2} ms, p90 {:.2} ms, min {:.2}",
        settings.x264_params,
        q(0.5),
        q(0.9),
        q(0.0)
    );
}
