//! Entry points for fuzzing (cargo fuzz targets in `fuzz/`) and for replaying the inputs that
//! once broke something (`fuzz/regressions/`, by an ordinary test). Each takes any bytes and
//! must return, never panic, whatever they are.

use crate::damage::{DamageRegion, MAX_RECTS};
use crate::desktop::{Applied, Framebuffer, PixelLayout, Rect, TargetUpdate};

/// A browser's message (text or binary): parsed or refused. The same bytes as key events
/// (5 bytes each: keysym, pressed) through the risk rules' line editor: a line never grows past
/// its bound.
pub fn client_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::wire::parse_client_message(&text);
    let _ = crate::wire::decode_server_binary(data);
    let mut editor = crate::keytext::LineEditor::new();
    for key in data.chunks(5) {
        let keysym = u32_at(key, 0);
        let down = key.get(4).is_some_and(|b| b & 1 == 1);
        if let crate::keytext::LineKey::Submit(line) = editor.key(keysym, down) {
            assert!(line.line.chars().count() <= crate::keytext::MAX_LINE + 1);
            assert!(line.typed.chars().count() <= crate::keytext::MAX_LINE);
        }
        assert!(editor.line().chars().count() <= crate::keytext::MAX_LINE);
    }
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    let b = [0, 1, 2, 3].map(|k| d.get(i + k).copied().unwrap_or(0));
    u32::from_le_bytes(b)
}

/// Whatever a target's adapter reports, in 17-byte operations: applying it to the framebuffer
/// keeps every invariant (size, damage inside the desktop, bounded damage).
pub fn target_updates(data: &[u8]) {
    let Ok(mut fb) = Framebuffer::new(64, 48) else {
        return;
    };
    let mut damage = DamageRegion::new(64, 48);
    for op in data.chunks(17) {
        let kind = op.first().copied().unwrap_or(0) % 4;
        // Small numbers most of the time, so that valid operations are common too.
        let n = |i: usize| {
            let v = u32_at(op, 1 + 4 * i);
            if v & 0x8000_0000 != 0 {
                v
            } else {
                v % 96
            }
        };
        let rect = Rect::new(n(0), n(1), n(2), n(3));
        let update = match kind {
            0 => TargetUpdate::Resize {
                width: n(0),
                height: n(1),
            },
            1 => {
                let len = usize::try_from(rect.area().min(1 << 16) * 4).unwrap_or(0);
                TargetUpdate::Pixels {
                    rect,
                    // Pixels that differ from one another and from what is there, now and then.
                    data: (0..len)
                        .map(|i| if i % 97 == 0 { op[0] } else { 0x5a })
                        .collect(),
                    layout: PixelLayout::Rgbx,
                }
            }
            2 => TargetUpdate::Copy {
                dst: Rect::new(n(0), n(1), 0, 0),
                src: Rect::new(n(2), n(3), n(1), n(0)),
            },
            _ => TargetUpdate::Bell,
        };
        // Pixels as the session applies them: only what changed is damage, and it must name
        // every pixel that changed.
        let applied = match &update {
            TargetUpdate::Pixels { rect, data, layout } => {
                let before = fb.clone();
                fb.put_rect_changed(*rect, data, *layout).map(|parts| {
                    for p in &parts {
                        assert!(
                            rect.contains(p) && !p.is_empty(),
                            "a part outside the update"
                        );
                        damage.add(*p);
                    }
                    for y in rect.y..rect.y + rect.h {
                        for x in rect.x..rect.x + rect.w {
                            if before.pixel(x, y) != fb.pixel(x, y) {
                                let at = Rect::new(x, y, 1, 1);
                                assert!(
                                    parts.iter().any(|p| p.contains(&at)),
                                    "a change not named"
                                );
                            }
                        }
                    }
                    Applied::Nothing
                })
            }
            _ => fb.apply(&update),
        };
        match applied {
            Ok(Applied::Damaged(r)) => {
                assert!(fb.bounds().contains(&r), "damage outside the desktop");
                damage.add(r);
            }
            Ok(Applied::Resized) => damage.reset_full(fb.width(), fb.height()),
            _ => {}
        }
        let expected = u64::from(fb.width()) * u64::from(fb.height()) * 4;
        assert_eq!(u64::try_from(fb.data().len()).ok(), Some(expected));
        assert!(damage.rects().len() <= MAX_RECTS, "damage unbounded");
    }
}
