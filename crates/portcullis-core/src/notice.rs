//! A notice painted over the top of a native RDP client's picture: such clients have no other
//! way to be told that their input is held (a four-eyes session waiting for an observer, a
//! session the security team froze). A band across the desktop's top rows with the words in
//! capitals, drawn with a small built-in 5×7 font at twice its size. Pure: it paints into the
//! pixels of a changed area on their way to the client; the desktop itself is never changed
//! (the recording and the browser viewers show the target's picture as it is).

use crate::Rect;

/// Height of the band, in pixels.
pub const BAND_HEIGHT: u32 = 28;
/// Each font pixel is drawn as a square this wide.
const SCALE: u32 = 2;
const GLYPH_W: u32 = 5;
const GLYPH_H: u32 = 7;
/// Space between letters, in font pixels.
const GAP: u32 = 1;
/// The band's colour and the letters' (RGBX).
const BAND: [u8; 4] = [0xb0, 0x1e, 0x1e, 0];
const INK: [u8; 4] = [0xff, 0xff, 0xff, 0];

/// What a native client is told while a four-eyes session waits for an observer.
pub const WAITING_FOR_OBSERVER: &str = "INPUT HELD: WAITING FOR AN OBSERVER (FOUR-EYES RULE)";
/// What a native client is told while the security team holds the session.
pub const FROZEN: &str = "INPUT HELD: THE SECURITY TEAM FROZE THIS SESSION";

/// The band's place on a desktop `width` × `height`.
pub fn band(width: u32, height: u32) -> Rect {
    Rect::new(0, 0, width, BAND_HEIGHT.min(height))
}

/// Paints the band with `text` over `pixels`, the RGBX rows (top-down) of `area` of a desktop
/// `width` wide: only where `area` meets the band. Characters the font lacks are left blank.
pub fn paint(pixels: &mut [u8], area: Rect, width: u32, text: &str) {
    let stripe = area.intersection(&Rect::new(0, 0, width, BAND_HEIGHT));
    if stripe.is_empty() || pixels.len() < (area.w as usize) * (area.h as usize) * 4 {
        return;
    }
    let chars: Vec<char> = text.chars().collect();
    let advance = (GLYPH_W + GAP) * SCALE;
    let text_w = u32::try_from(chars.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(advance);
    let left = width.saturating_sub(text_w) / 2;
    let top = (BAND_HEIGHT - GLYPH_H * SCALE) / 2;
    for y in stripe.y..stripe.y + stripe.h {
        for x in stripe.x..stripe.x + stripe.w {
            let ink = (|| {
                let (dx, dy) = (x.checked_sub(left)?, y.checked_sub(top)?);
                let (col, row) = (dx / SCALE % (GLYPH_W + GAP), dy / SCALE);
                if col >= GLYPH_W || row >= GLYPH_H {
                    return None;
                }
                let c = *chars.get((dx / advance) as usize)?;
                glyph(c)?
                    .as_bytes()
                    .get((row * GLYPH_W + col) as usize)
                    .filter(|b| **b == b'#')
            })()
            .is_some();
            let at = (((y - area.y) * area.w + (x - area.x)) * 4) as usize;
            pixels[at..at + 4].copy_from_slice(if ink { &INK } else { &BAND });
        }
    }
}

/// A character's 5×7 picture, rows top-down, `#` for ink.
fn glyph(c: char) -> Option<&'static str> {
    Some(match c {
        'A' => ".###.#...##...#######...##...##...#",
        'B' => "####.#...##...#####.#...##...#####.",
        'C' => ".###.#...##....#....#....#...#.###.",
        'D' => "####.#...##...##...##...##...#####.",
        'E' => "######....#....####.#....#....#####",
        'F' => "######....#....####.#....#....#....",
        'G' => ".###.#...##....#.####...##...#.####",
        'H' => "#...##...##...#######...##...##...#",
        'I' => ".###...#....#....#....#....#...###.",
        'J' => "..###...#....#....#....#.#..#..##..",
        'K' => "#...##..#.#.#..##...#.#..#..#.#...#",
        'L' => "#....#....#....#....#....#....#####",
        'M' => "#...###.###.#.##.#.##...##...##...#",
        'N' => "#...##...###..##.#.##..###...##...#",
        'O' => ".###.#...##...##...##...##...#.###.",
        'P' => "####.#...##...#####.#....#....#....",
        'Q' => ".###.#...##...##...##.#.##..#..##.#",
        'R' => "####.#...##...#####.#.#..#..#.#...#",
        'S' => ".###.#...##.....###.....##...#.###.",
        'T' => "#####..#....#....#....#....#....#..",
        'U' => "#...##...##...##...##...##...#.###.",
        'V' => "#...##...##...##...##...#.#.#...#..",
        'W' => "#...##...##...##.#.##.#.##.#.#.#.#.",
        'X' => "#...##...#.#.#...#...#.#.#...##...#",
        'Y' => "#...##...#.#.#...#....#....#....#..",
        'Z' => "#####....#...#...#...#...#....#####",
        '-' => "...............#####...............",
        ':' => ".......#....#.........#....#.......",
        '.' => "...........................#....#..",
        '(' => "...#...#...#....#....#.....#.....#.",
        ')' => ".#.....#.....#....#....#...#...#...",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_five_by_seven() {
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ-:.()".chars() {
            let g = glyph(c).unwrap_or_default();
            assert_eq!(g.len(), 35, "{c}");
            assert!(g.bytes().all(|b| b == b'#' || b == b'.'), "{c}");
        }
        for text in [WAITING_FOR_OBSERVER, FROZEN] {
            assert!(
                text.chars().all(|c| c == ' ' || glyph(c).is_some()),
                "{text}"
            );
        }
    }

    #[test]
    fn only_the_band_is_painted_and_it_has_ink() {
        // An area straddling the band's bottom edge, away from the left.
        let area = Rect::new(100, 20, 300, 20);
        let mut px = vec![7u8; 300 * 20 * 4];
        paint(&mut px, area, 1024, WAITING_FOR_OBSERVER);
        let at = |x: u32, y: u32| {
            let i = (((y - area.y) * area.w + (x - area.x)) * 4) as usize;
            [px[i], px[i + 1], px[i + 2]]
        };
        for x in 100..400 {
            for y in 28..40 {
                assert_eq!(at(x, y), [7, 7, 7], "below the band at {x},{y}");
            }
        }
        let band_px = (100..400)
            .flat_map(|x| (20..28).map(move |y| (x, y)))
            .map(|(x, y)| at(x, y));
        let (mut red, mut white) = (0, 0);
        for p in band_px {
            match p {
                [0xb0, 0x1e, 0x1e] => red += 1,
                [0xff, 0xff, 0xff] => white += 1,
                other => panic!("unexpected colour {other:?}"),
            }
        }
        assert!(red > 0 && white > 0, "red {red}, white {white}");
    }

    #[test]
    fn odd_areas_and_text_do_not_panic() {
        let mut px = vec![0u8; 16];
        paint(
            &mut px,
            Rect::new(0, 0, 2, 2),
            2,
            "ÄÖ\u{0}  WIDE TEXT FAR TOO LONG",
        );
        paint(&mut px, Rect::new(0, 0, 50, 50), 50, "SHORT BUFFER");
        paint(&mut [], Rect::new(0, 0, 0, 0), 0, "");
        paint(&mut px, Rect::new(u32::MAX - 1, 0, 1, 1), u32::MAX, "A");
    }
}
