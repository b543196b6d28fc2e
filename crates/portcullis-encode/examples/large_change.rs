//! Times the viewer's work on the latency benchmark's large change (x11vnc's four strips around
//! an xterm at 40,40 1004x604 on 1280x800): `cargo run --release -p portcullis-encode --example large_change`
#![allow(clippy::print_stdout, clippy::unwrap_used)]
use portcullis_core::{Framebuffer, Rect};
use portcullis_encode::{split, Choice, Encoder, Part};
use std::time::{Duration, Instant};

fn main() {
    let mut fb = Framebuffer::new(1280, 800).unwrap();
    let xterm = Rect::new(40, 40, 1006, 606);
    fb.fill(xterm, [0, 0, 0]).unwrap();
    fb.fill(Rect::new(41, 41, 1004, 604), [255, 255, 255])
        .unwrap();
    // Text: glyph-like specks on the first lines.
    let mut seed = 7u32;
    for line in 0..6u32 {
        for x in 44..700u32 {
            for y in 0..13u32 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if seed >> 29 == 0 {
                    fb.fill(Rect::new(x, 44 + line * 15 + y, 1, 1), [0, 0, 0])
                        .unwrap();
                }
            }
        }
    }
    let strips = [
        Rect::new(0, 0, 1280, 64),
        Rect::new(0, 64, 64, 576),
        Rect::new(1024, 64, 256, 576),
        Rect::new(0, 640, 1280, 160),
    ];
    let paint_bg = |fb: &mut Framebuffer, c: [u8; 3]| {
        for r in [
            Rect::new(0, 0, 1280, 40),
            Rect::new(0, 40, 40, 606),
            Rect::new(1046, 40, 234, 606),
            Rect::new(0, 646, 1280, 154),
        ] {
            fb.fill(r, c).unwrap();
        }
    };
    let mut enc = Encoder::new();
    let (mut t_split, mut t_read, mut t_enc) = (vec![], vec![], vec![]);
    let mut bytes = 0;
    let mut img_area = 0;
    for i in 0..300 {
        paint_bg(
            &mut fb,
            if i % 2 == 0 {
                [0x20, 0x60, 0x40]
            } else {
                [0x60, 0x20, 0x40]
            },
        );
        let t0 = Instant::now();
        let parts: Vec<Part> = strips
            .iter()
            .flat_map(|r| split(&fb, *r).unwrap())
            .collect();
        let t1 = Instant::now();
        let imgs: Vec<(Rect, Vec<u8>)> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Image(r) => Some((*r, fb.read_rect(*r).unwrap())),
                Part::Fill(..) => None,
            })
            .collect();
        let t2 = Instant::now();
        let mut out = Vec::new();
        for (r, px) in &imgs {
            enc.encode_rgba(px, *r, Choice::Auto, &mut out).unwrap();
        }
        let t3 = Instant::now();
        t_split.push(t1 - t0);
        t_read.push(t2 - t1);
        t_enc.push(t3 - t2);
        bytes = out.len();
        img_area = imgs.iter().map(|(r, _)| r.area()).sum::<u64>();
        if i == 0 {
            println!("parts: {parts:?}");
        }
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    println!(
        "split {:.3} ms, read {:.3} ms, encode {:.3} ms (median of 300); images {} px, {} bytes",
        med(&mut t_split),
        med(&mut t_read),
        med(&mut t_enc),
        img_area,
        bytes
    );
}
