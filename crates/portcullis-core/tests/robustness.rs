//! Randomised robustness: whatever a peer sends, the core returns an error or a value and never
//! panics. (A coverage-guided `cargo fuzz` target over the same entry points comes with the
//! hardening issue; this keeps the property checked on every test run.)
#![allow(clippy::unwrap_used)]

use portcullis_core::damage::{DamageRegion, MAX_RECTS};
use portcullis_core::desktop::{Framebuffer, PixelLayout, Rect, TargetUpdate};
use portcullis_core::wire::{decode_server_binary, parse_client_message};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn client_messages_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let pieces = [
        "{",
        "}",
        "\"t\"",
        ":",
        ",",
        "\"key\"",
        "\"pointer\"",
        "\"clipboard\"",
        "\"ack\"",
        "\"refresh\"",
        "\"keysym\"",
        "\"down\"",
        "true",
        "false",
        "null",
        "\"x\"",
        "\"y\"",
        "\"buttons\"",
        "\"seq\"",
        "\"text\"",
        "1",
        "-1",
        "4294967296",
        "1e9",
        "\"\\u0000\"",
        "[",
        "]",
        "\"\\ud800\"",
    ];
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..rng.below(16) {
            s.push_str(pieces[usize::try_from(rng.below(pieces.len() as u64)).unwrap()]);
        }
        let _ = parse_client_message(&s);
        let bytes: Vec<u8> = (0..rng.below(24)).map(|_| rng.next() as u8).collect();
        let _ = parse_client_message(&String::from_utf8_lossy(&bytes));
        let _ = decode_server_binary(&bytes);
    }
}

#[test]
fn target_updates_never_panic_and_keep_the_framebuffer_consistent() {
    let mut rng = XorShift(42);
    let mut fb = Framebuffer::new(64, 48).unwrap();
    let mut damage = DamageRegion::new(64, 48);
    for _ in 0..20_000 {
        let r = |rng: &mut XorShift| {
            let pick = |rng: &mut XorShift| match rng.below(4) {
                0 => u32::MAX - rng.below(4) as u32,
                1 => rng.below(70_000) as u32,
                _ => rng.below(80) as u32,
            };
            Rect::new(pick(rng), pick(rng), pick(rng), pick(rng))
        };
        let update = match rng.below(4) {
            0 => TargetUpdate::Resize {
                width: rng.below(100) as u32,
                height: rng.below(100) as u32,
            },
            1 => {
                let rect = r(&mut rng);
                let len = if rng.below(2) == 0 {
                    usize::try_from(rect.area().min(10_000) * 4).unwrap()
                } else {
                    usize::try_from(rng.below(500)).unwrap()
                };
                TargetUpdate::Pixels {
                    rect,
                    data: vec![7; len],
                    layout: PixelLayout::Bgrx,
                }
            }
            2 => TargetUpdate::Copy {
                dst: r(&mut rng),
                src: r(&mut rng),
            },
            _ => TargetUpdate::Bell,
        };
        if let Ok(portcullis_core::Applied::Damaged(rect)) = fb.apply(&update) {
            assert!(fb.bounds().contains(&rect));
            damage.add(rect);
        }
        assert_eq!(
            fb.data().len(),
            fb.width() as usize * fb.height() as usize * 4
        );
        assert!(damage.rects().len() <= MAX_RECTS);
    }
}
