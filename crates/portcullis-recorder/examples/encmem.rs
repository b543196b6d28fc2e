//! Memory of one H.264 encoder at a given size: `encmem [WIDTH HEIGHT [PRESET [X264_PARAMS]]]`.
//! Prints the process's resident memory before opening the encoder, after opening it and after
//! encoding 60 busy frames (random 16x16 blocks over an 800x600 area), in MiB. A first encoder is
//! opened and closed before measuring, so loading FFmpeg's and x264's code is not counted: what
//! is left is what each recorded session pays.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use portcullis_core::Rect;
use portcullis_recorder::encoder::{EncoderSettings, H264Encoder};

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    kb("VmRSS:") / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1920);
    let h: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1080);
    let mut settings = EncoderSettings::default();
    if let Some(p) = args.get(2) {
        settings.preset = p.clone();
    }
    if let Some(x) = args.get(3) {
        settings.x264_params = x.clone();
    }
    let mut rgba = vec![0u8; w as usize * h as usize * 4];
    let warm = H264Encoder::new(w, h, &settings).unwrap();
    drop(warm);
    let before = rss_mib();
    let mut enc = H264Encoder::new(w, h, &settings).unwrap();
    let opened = rss_mib();
    let mut seed = 0x1234_5678u32;
    let area = Rect::new(400, 150, 800.min(w - 400), 600.min(h - 150));
    let t0 = std::time::Instant::now();
    for i in 0..60 {
        for by in (area.y..area.y + area.h).step_by(16) {
            for bx in (area.x..area.x + area.w).step_by(16) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let c = seed.to_le_bytes();
                for y in by..(by + 16).min(area.y + area.h) {
                    for x in bx..(bx + 16).min(area.x + area.w) {
                        let o = (y as usize * w as usize + x as usize) * 4;
                        rgba[o..o + 4].copy_from_slice(&[c[1], c[2], c[3], 255]);
                    }
                }
            }
        }
        let changed = if i == 0 { Rect::new(0, 0, w, h) } else { area };
        enc.encode(&rgba, &[changed], i * 200, i == 0).unwrap();
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0 / 60.0;
    let encoded = rss_mib();
    // What letting go costs: the repeats of the still picture encoded ahead, then a flush.
    let t1 = std::time::Instant::now();
    for i in 0..portcullis_recorder::recorder::PARKED_REPEATS {
        enc.repeat(12_000 + i as i64 * 60_000, false).unwrap();
    }
    enc.flush().unwrap();
    let parked_ms = t1.elapsed().as_secs_f64() * 1000.0;
    // A still screen lets go of its encoder (Recorder's release_after_ms): what stays resident.
    drop(enc);
    let released = rss_mib();
    // ...and after it is opened again, used and let go once more.
    let mut enc = H264Encoder::new(w, h, &settings).unwrap();
    for i in 0..5 {
        enc.encode(&rgba, &[Rect::new(0, 0, w, h)], i * 200, i == 0)
            .unwrap();
    }
    let reopened = rss_mib();
    drop(enc);
    let again = rss_mib();
    println!(
        "{w}x{h} {}: rss before {before:.1} MiB, encoder opened +{:.1}, after 60 busy frames +{:.1} MiB; {ms:.1} ms/frame; \
         {parked_ms:.0} ms for the repeats encoded ahead; let go +{:.1}, opened again +{:.1}, let go again +{:.1}",
        settings.preset,
        opened - before,
        encoded - before,
        released - before,
        reopened - before,
        again - before
    );
}
