//! Times PNG settings and the viewer's deflate stream on a real screenshot:
//! `cargo run --release -p portcullis-encode --example encode_cost -- shot.png`
#![allow(clippy::print_stdout, clippy::unwrap_used)]
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use portcullis_core::Rect;
use portcullis_encode::{Choice, Encoder};
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).unwrap();
    let img = image::open(path).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    for (name, c, f) in [
        ("fast/adaptive", CompressionType::Fast, FilterType::Adaptive),
        (
            "default/adaptive",
            CompressionType::Default,
            FilterType::Adaptive,
        ),
        ("default/sub", CompressionType::Default, FilterType::Sub),
        ("default/up", CompressionType::Default, FilterType::Up),
        (
            "default/none",
            CompressionType::Default,
            FilterType::NoFilter,
        ),
        (
            "level1/adaptive",
            CompressionType::Level(1),
            FilterType::Adaptive,
        ),
        (
            "level2/adaptive",
            CompressionType::Level(2),
            FilterType::Adaptive,
        ),
        (
            "level3/adaptive",
            CompressionType::Level(3),
            FilterType::Adaptive,
        ),
        ("level1/up", CompressionType::Level(1), FilterType::Up),
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..7 {
            let mut out = Vec::new();
            let t = Instant::now();
            PngEncoder::new_with_quality(&mut out, c, f)
                .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
                .unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            size = out.len();
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{name:18} {:8.2} ms  {:8} bytes", times[3], size);
    }
    // The stream: the whole screen once, then again (what a repaint of known content costs),
    // then line by line (typing, scrolling: small rectangles of glyphs seen before).
    let rgba: Vec<u8> = img.pixels().flat_map(|p| [p[0], p[1], p[2], 0]).collect();
    let whole = Rect::new(0, 0, w, h);
    let mut times = Vec::new();
    let (mut first, mut again) = (0, 0);
    for _ in 0..7 {
        let mut enc = Encoder::new();
        let t = Instant::now();
        let mut out = Vec::new();
        enc.encode_rgba(&rgba, whole, Choice::Lossless, &mut out)
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        first = out.len();
        out.clear();
        enc.encode_rgba(&rgba, whole, Choice::Lossless, &mut out)
            .unwrap();
        again = out.len();
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{:18} {:8.2} ms  {first:8} bytes (again: {again})",
        "stream", times[3]
    );
    let (mut png_lines, mut stream_lines) = (0, 0);
    let mut enc = Encoder::new();
    let row = 16;
    for y in (0..h).step_by(row as usize) {
        let r = Rect::new(0, y, w, row.min(h - y));
        let px = &rgba[(y * w * 4) as usize..((y + r.h) * w * 4) as usize];
        let mut out = Vec::new();
        portcullis_encode::encode_rgba(px, r, Choice::Lossless, &mut out).unwrap();
        png_lines += out.len();
        out.clear();
        enc.encode_rgba(px, r, Choice::Lossless, &mut out).unwrap();
        stream_lines += out.len();
    }
    println!("{row}-pixel strips     png {png_lines} bytes, stream {stream_lines} bytes");
}
