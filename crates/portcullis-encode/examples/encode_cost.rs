//! Times PNG settings on a real screenshot: `cargo run --release --example encode_cost -- shot.png`
#![allow(clippy::print_stdout, clippy::unwrap_used)]
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
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
}
