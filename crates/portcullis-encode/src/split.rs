//! Cutting a large damaged rectangle into areas of one colour and areas of pixels, read in place
//! in the framebuffer.
//!
//! A large change (a window closed, a screen cleared) is mostly background, but the rectangles a
//! VNC server reports are not: x11vnc reports its damage as tile-aligned strips that carry parts
//! of a terminal along, so each went out as one palette image although, measured on the latency
//! benchmark's large change, 61% of its 64×64 tiles were one colour (benches/LATENCY-NOTES.md,
//! plan items 4 and 5). Sent as fills, those cost 13 bytes each, no palette, no deflate, no copy
//! out of the framebuffer and no expansion in the page.

use portcullis_core::{DesktopError, Framebuffer, Rect};

/// Side of the square tiles a large rectangle is looked at in.
pub const TILE: u32 = 64;
/// Rectangles smaller than this (pixels) stay whole: typing and small changes keep one message.
/// One a tile wide or high is not cut into tiles either, only its plain borders are trimmed.
pub const SPLIT_MIN_AREA: u64 = 4 * (TILE as u64) * (TILE as u64);
/// More parts than this for one rectangle (a checkerboard of colours) and it stays one image:
/// thousands of tiny messages would cost the page more than the pixels they save.
pub const MAX_PARTS: usize = 128;

/// One part of a damaged rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every pixel has this colour (RGB).
    Fill(Rect, [u8; 3]),
    /// More than one colour: the pixels are to be read and encoded as an image.
    Image(Rect),
}

impl Part {
    /// The area this part covers.
    pub fn rect(&self) -> Rect {
        match *self {
            Part::Fill(r, _) | Part::Image(r) => r,
        }
    }
}

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Solid([u8; 3]),
    Mixed,
}

/// Cuts `rect` of `fb` into parts that cover it exactly, without overlap: one part when it is
/// small ([`SPLIT_MIN_AREA`]), else runs of 64×64 tiles, a run being tiles side by side of one
/// colour or tiles side by side each of several colours, and runs of the same extent in tile
/// rows one above the other joined. An image part of a tile or more then loses its borders of
/// one colour to fills (a window's edge in a run of background tiles). A photograph stays one
/// image. Reads the framebuffer in place; copies nothing.
pub fn split(fb: &Framebuffer, rect: Rect) -> Result<Vec<Part>, DesktopError> {
    if !fb.bounds().contains(&rect) {
        return Err(DesktopError::OutOfBounds {
            rect,
            width: fb.width(),
            height: fb.height(),
        });
    }
    if rect.is_empty() {
        return Ok(Vec::new());
    }
    let whole = |kind| trimmed(fb, vec![part(rect, kind)]);
    if rect.area() < SPLIT_MIN_AREA {
        return Ok(vec![part(rect, kind_of(fb, rect))]);
    }
    // A strip one tile high (a line of text, a scrolled-in row) is not cut into tiles: cut
    // into pieces, each with its header, palette and stream flush, it cost more bytes than it
    // saved (measured on TigerVNC's `seq` and window move: twice the bytes). Its plain
    // borders (margins, the space between lines) are trimmed off: one image still.
    if rect.w <= TILE || rect.h <= TILE {
        return Ok(whole(kind_of(fb, rect)));
    }
    // A photograph or a video stays one image (one JPEG, not strips of it; pieces below the
    // JPEG size would go lossless). One colour throughout makes one fill below (each tile row
    // one run, the runs joined).
    if crate::looks_photographic_in(fb, rect) {
        return Ok(vec![Part::Image(rect)]);
    }
    // Runs still open from the tile row above: (x, w, kind) → the rectangle so far.
    let mut open: Vec<(Rect, Kind)> = Vec::new();
    let mut done: Vec<Part> = Vec::new();
    let mut y = rect.y;
    while y < rect.y + rect.h {
        let h = TILE.min(rect.y + rect.h - y);
        let mut row: Vec<(Rect, Kind)> = Vec::new();
        let mut x = rect.x;
        while x < rect.x + rect.w {
            let w = TILE.min(rect.x + rect.w - x);
            let kind = kind_of(fb, Rect::new(x, y, w, h));
            match row.last_mut() {
                Some((r, k)) if *k == kind => r.w += w,
                _ => row.push((Rect::new(x, y, w, h), kind)),
            }
            x += w;
        }
        // Extend the runs above that this row continues exactly (same columns, same kind);
        // close the others.
        let mut next = Vec::with_capacity(row.len());
        for (r, kind) in row {
            match open
                .iter()
                .position(|(o, k)| *k == kind && o.x == r.x && o.w == r.w)
            {
                Some(i) => {
                    let (mut o, k) = open.swap_remove(i);
                    o.h += r.h;
                    next.push((o, k));
                }
                None => next.push((r, kind)),
            }
        }
        done.extend(open.drain(..).map(|(r, k)| part(r, k)));
        if done.len() + next.len() > MAX_PARTS {
            return Ok(whole(Kind::Mixed));
        }
        open = next;
        y += h;
    }
    done.extend(open.into_iter().map(|(r, k)| part(r, k)));
    Ok(trimmed(fb, done))
}

/// Images of at least this many pixels have their borders of one colour cut off as fills.
const TRIM_MIN_AREA: u64 = (TILE as u64) * (TILE as u64);

/// `parts` with each large enough image's borders of one colour (whole rows at its top and
/// bottom, then whole columns at its left and right) cut off as fills, while the parts stay at
/// most [`MAX_PARTS`]. A tile run holding the edge of a window is mostly background: x11vnc's
/// large change around a terminal sent 225k pixels of such images for 30k of the window's own
/// (benches/LATENCY-NOTES.md). A photographic image is left whole (one JPEG: a trimmed core
/// below the JPEG size would go lossless).
fn trimmed(fb: &Framebuffer, parts: Vec<Part>) -> Vec<Part> {
    let mut room = MAX_PARTS.saturating_sub(parts.len());
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let Part::Image(r) = p else {
            out.push(p);
            continue;
        };
        let start = out.len();
        // Again on what is left: a window's border, then its own background.
        let mut core = Some(r);
        // Whether the last pass cut something: then what is left may be one colour (an area
        // of one colour is cut whole, as one fill, so what a pass that cuts nothing leaves is
        // not).
        let mut cut = false;
        for _ in 0..TRIM_PASSES {
            let Some(c) = core.filter(|c| room >= 4 && c.area() >= TRIM_MIN_AREA) else {
                break;
            };
            let before = out.len();
            core = trim(fb, c, &mut out);
            cut = out.len() > before;
            room = room.saturating_sub(out.len() - before);
            if !cut {
                break;
            }
        }
        // Looked at only when something was cut (sampling costs more than a trim that finds
        // nothing): a photograph stays one image.
        if out.len() > start && crate::looks_photographic_in(fb, r) {
            room += out.len() - start;
            out.truncate(start);
            out.push(Part::Image(r));
            continue;
        }
        match core {
            Some(c) if cut => out.push(part(c, kind_of(fb, c))),
            Some(c) => out.push(Part::Image(c)),
            None => {}
        }
    }
    out
}

/// Most times an image's borders are cut off, each time from what the last left.
const TRIM_PASSES: usize = 3;
/// Smallest border cut off (pixels; a line of a window's border counts if it is this long): a
/// smaller one costs the page a message to save the gateway a few microseconds of palette and
/// deflate.
const MIN_BAND: u64 = 512;

/// Pushes the borders of one colour of image `r` as up to four fills and returns what is left
/// of it, if anything.
fn trim(fb: &Framebuffer, r: Rect, out: &mut Vec<Part>) -> Option<Rect> {
    let rgb = |w: u32| {
        let b = w.to_le_bytes();
        [b[0], b[1], b[2]]
    };
    let (x0, x1) = (r.x, r.x + r.w);
    let (mut y0, mut y1) = (r.y, r.y + r.h);
    // Whole rows of one colour at the top, then at the bottom.
    let top = word(fb, x0, y0);
    while y0 < y1 && row_is(fb, y0, x0, x1, top) {
        y0 += 1;
    }
    // A thin band is not worth a message of its own (unless it is all there is).
    let worth = |area: u64, all: bool| all || area >= MIN_BAND;
    if !worth(u64::from(y0 - r.y) * u64::from(r.w), y0 == y1) {
        y0 = r.y;
    }
    if y0 > r.y {
        out.push(Part::Fill(Rect::new(x0, r.y, r.w, y0 - r.y), rgb(top)));
    }
    if y0 == y1 {
        return None;
    }
    let bottom = word(fb, x0, y1 - 1);
    let bottom_end = y1;
    while y1 > y0 && row_is(fb, y1 - 1, x0, x1, bottom) {
        y1 -= 1;
    }
    if !worth(u64::from(bottom_end - y1) * u64::from(r.w), y0 == y1) {
        y1 = bottom_end;
    }
    if y1 < bottom_end {
        out.push(Part::Fill(
            Rect::new(x0, y1, r.w, bottom_end - y1),
            rgb(bottom),
        ));
    }
    if y0 == y1 {
        return None;
    }
    // Whole columns of one colour at the left, then at the right (of the rows left): the
    // shortest run of the colour from each row's start (end), row by row in memory order.
    let h = y1 - y0;
    let left = word(fb, x0, y0);
    let mut l = r.w;
    for y in y0..y1 {
        // Compared a block at a time while the row keeps the run; pixel by pixel where it ends.
        if !row_is(fb, y, x0, x0 + l, left) {
            l = (x0..x0 + l).take_while(|&x| word(fb, x, y) == left).count() as u32;
        }
        if l == 0 {
            break;
        }
    }
    if !worth(u64::from(l) * u64::from(h), l == r.w) {
        l = 0;
    }
    if l > 0 {
        out.push(Part::Fill(Rect::new(x0, y0, l, h), rgb(left)));
    }
    let inner = x0 + l;
    if inner == x1 {
        return None;
    }
    let right = word(fb, x1 - 1, y0);
    let mut n = x1 - inner;
    for y in y0..y1 {
        if !row_is(fb, y, x1 - n, x1, right) {
            n = (x1 - n..x1)
                .rev()
                .take_while(|&x| word(fb, x, y) == right)
                .count() as u32;
        }
        if n == 0 {
            break;
        }
    }
    if !worth(u64::from(n) * u64::from(h), n == x1 - inner) {
        n = 0;
    }
    if n > 0 {
        out.push(Part::Fill(Rect::new(x1 - n, y0, n, h), rgb(right)));
    }
    (x1 - n > inner).then(|| Rect::new(inner, y0, x1 - n - inner, h))
}

fn part(rect: Rect, kind: Kind) -> Part {
    match kind {
        Kind::Solid(rgb) => Part::Fill(rect, rgb),
        Kind::Mixed => Part::Image(rect),
    }
}

/// Whether `rect` (inside `fb`) is one colour, looked at row by row in place.
fn kind_of(fb: &Framebuffer, rect: Rect) -> Kind {
    let want = word(fb, rect.x, rect.y);
    if (rect.y..rect.y + rect.h).all(|y| row_is(fb, y, rect.x, rect.x + rect.w, want)) {
        let b = want.to_le_bytes();
        Kind::Solid([b[0], b[1], b[2]])
    } else {
        Kind::Mixed
    }
}

/// Pixel (x, y) of `fb` as a word with the padding byte cleared (`u32::MAX`, no colour, outside).
fn word(fb: &Framebuffer, x: u32, y: u32) -> u32 {
    let at = y as usize * fb.width() as usize * 4 + x as usize * 4;
    fb.data()
        .get(at..at + 4)
        .map_or(u32::MAX, |p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
}

/// Whether pixels `x0..x1` of row `y` of `fb` are all `want` (as [`word`] gives it).
fn row_is(fb: &Framebuffer, y: u32, x0: u32, x1: u32, want: u32) -> bool {
    let at = y as usize * fb.width() as usize * 4 + x0 as usize * 4;
    fb.data()
        .get(at..at + (x1 - x0) as usize * 4)
        .is_some_and(|row| crate::all_of_colour(row, want))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image parts of `parts`, in order.
    fn images(parts: &[Part]) -> Vec<Part> {
        parts
            .iter()
            .copied()
            .filter(|p| matches!(p, Part::Image(_)))
            .collect()
    }

    /// Every pixel of `rect` is covered by exactly one part, fills are true to the pixels, and
    /// images really hold more than one colour.
    fn check_cover(fb: &Framebuffer, rect: Rect, parts: &[Part]) {
        let mut covered = vec![0u8; rect.area() as usize];
        for p in parts {
            let r = p.rect();
            assert!(rect.contains(&r), "{p:?} outside {rect}");
            assert!(!r.is_empty(), "empty part {p:?}");
            for y in r.y..r.y + r.h {
                for x in r.x..r.x + r.w {
                    covered[((y - rect.y) * rect.w + (x - rect.x)) as usize] += 1;
                    if let Part::Fill(_, rgb) = p {
                        assert_eq!(fb.pixel(x, y), Some(*rgb), "fill {p:?} at {x},{y}");
                    }
                }
            }
            if let Part::Image(r) = p {
                assert_eq!(kind_of(fb, *r), Kind::Mixed, "image {p:?} of one colour");
            }
        }
        assert!(covered.iter().all(|&c| c == 1), "not covered exactly once");
    }

    #[test]
    fn a_small_rectangle_is_one_part() {
        let mut fb = Framebuffer::new(300, 200).unwrap();
        fb.fill(Rect::new(0, 0, 300, 200), [9, 8, 7]).unwrap();
        let r = Rect::new(5, 5, 120, 100); // 12 000 pixels: below the bound
        assert_eq!(split(&fb, r).unwrap(), vec![Part::Fill(r, [9, 8, 7])]);
        // One odd pixel in it, far from every border: still one part (typing stays one
        // message), not trimmed down to the pixel.
        fb.fill(Rect::new(60, 50, 1, 1), [1, 1, 1]).unwrap();
        assert_eq!(split(&fb, r).unwrap(), vec![Part::Image(r)]);
    }

    #[test]
    fn a_strip_is_not_cut_into_tiles_only_its_plain_borders_are_trimmed() {
        // A tall strip one tile wide and a wide one a tile high, above the area bound, with
        // dots far apart that would make a split into tiles worth it otherwise: one image
        // holds them all, only its plain borders are cut off as fills.
        let mut big = Framebuffer::new(400, 400).unwrap();
        for (x, y) in [(10, 350), (40, 30), (350, 10), (30, 40)] {
            big.fill(Rect::new(x, y, 1, 1), [1, 1, 1]).unwrap();
        }
        for (r, image) in [
            (Rect::new(0, 0, 64, 400), Rect::new(10, 30, 31, 321)),
            (Rect::new(0, 0, 400, 64), Rect::new(30, 10, 321, 31)),
        ] {
            let parts = split(&big, r).unwrap();
            check_cover(&big, r, &parts);
            assert_eq!(images(&parts), [Part::Image(image)], "{parts:?}");
            assert!(parts.len() <= 5, "{parts:?}");
        }
        // One tile more each way, and it is cut into tiles.
        assert!(images(&split(&big, Rect::new(0, 0, 65, 400)).unwrap()).len() > 1);
        // A line of text across the screen (`seq`, a scrolled-in row): one image of the text
        // itself, the margins and the space above and below as fills.
        let mut fb = Framebuffer::new(1280, 800).unwrap();
        fb.fill(fb.bounds(), [255; 3]).unwrap();
        for i in 0..70 {
            fb.fill(
                Rect::new(100 + i * 8, 402 + (i % 3), 5, 9 - (i % 3)),
                [0; 3],
            )
            .unwrap();
        }
        let line = Rect::new(0, 384, 1280, 64);
        let parts = split(&fb, line).unwrap();
        check_cover(&fb, line, &parts);
        assert_eq!(
            images(&parts),
            [Part::Image(Rect::new(100, 402, 557, 9))],
            "{parts:?}"
        );
        assert_eq!(parts.len(), 5, "{parts:?}");
    }

    #[test]
    fn a_photograph_in_a_strip_stays_one_image() {
        // Noise in the middle of a plain strip: trimmed, the noise would be below the JPEG
        // size and go lossless.
        let mut fb = Framebuffer::new(1280, 800).unwrap();
        fb.fill(fb.bounds(), [200, 200, 200]).unwrap();
        let mut seed = 3u32;
        let mut px = Vec::with_capacity(240 * 64 * 4);
        for _ in 0..240 * 64 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            px.extend_from_slice(&seed.to_le_bytes());
        }
        fb.put_rect(
            Rect::new(400, 0, 240, 64),
            &px,
            portcullis_core::PixelLayout::Rgbx,
        )
        .unwrap();
        let strip = Rect::new(0, 0, 1024, 64);
        assert_eq!(split(&fb, strip).unwrap(), vec![Part::Image(strip)]);
    }

    #[test]
    fn trimming_never_makes_more_parts_than_the_bound() {
        // Images of 128×128 with a small pattern in the middle: each trims into four fills
        // and the pattern. With 128 parts already there is no room: they stay as they are;
        // with 30, images are trimmed while there is room, and the parts stay within the bound.
        let mut fb = Framebuffer::new(4096, 512).unwrap();
        fb.fill(fb.bounds(), [7, 7, 7]).unwrap();
        let squares: Vec<Rect> = (0..4)
            .flat_map(|ty| (0..32).map(move |tx| Rect::new(tx * 128, ty * 128, 128, 128)))
            .collect();
        for q in &squares {
            fb.fill(Rect::new(q.x + 56, q.y + 56, 16, 16), [200, 0, 0])
                .unwrap();
            fb.fill(Rect::new(q.x + 60, q.y + 60, 4, 4), [0, 0, 200])
                .unwrap();
        }
        let all: Vec<Part> = squares.iter().map(|q| Part::Image(*q)).collect();
        assert_eq!(trimmed(&fb, all.clone()), all);
        let parts = trimmed(&fb, all[..30].to_vec());
        assert!(parts.len() <= MAX_PARTS, "{} parts", parts.len());
        assert!(parts.len() > 120, "room left unused: {} parts", parts.len());
        check_cover(&fb, Rect::new(0, 0, 3840, 128), &parts);
    }

    #[test]
    fn a_cleared_background_is_one_fill() {
        let mut fb = Framebuffer::new(1280, 800).unwrap();
        fb.fill(fb.bounds(), [40, 40, 40]).unwrap();
        assert_eq!(
            split(&fb, fb.bounds()).unwrap(),
            vec![Part::Fill(fb.bounds(), [40, 40, 40])]
        );
    }

    #[test]
    fn text_in_a_background_becomes_fills_around_one_image() {
        // A terminal's text block inside a large strip of background, off the tile grid.
        let mut fb = Framebuffer::new(1280, 800).unwrap();
        fb.fill(fb.bounds(), [255, 255, 255]).unwrap();
        for i in 0..40 {
            fb.fill(Rect::new(300 + i * 7, 200 + (i % 5) * 16, 3, 9), [0, 0, 0])
                .unwrap();
        }
        let r = Rect::new(0, 64, 1216, 288);
        let parts = split(&fb, r).unwrap();
        check_cover(&fb, r, &parts);
        let image: u64 = parts
            .iter()
            .filter(|p| matches!(p, Part::Image(_)))
            .map(|p| p.rect().area())
            .sum();
        assert!(
            image * 4 < r.area(),
            "{image} of {} pixels as images",
            r.area()
        );
        // Runs of one extent and kind in tile rows one above the other are joined: the text
        // (two tile rows of different extents) is two images, its background above one fill.
        assert_eq!(
            parts.iter().filter(|p| matches!(p, Part::Image(_))).count(),
            2,
            "{parts:?}"
        );
        assert_eq!(parts[0], Part::Fill(Rect::new(0, 64, 1216, 128), [255; 3]));
    }

    #[test]
    fn every_layout_is_covered_exactly_and_truly() {
        // Pseudo-random blocks of a few colours on sizes that do and do not end on a tile.
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            seed >> 8
        };
        for (w, h) in [(1280u32, 800u32), (1000, 333), (130, 700), (777, 129)] {
            let mut fb = Framebuffer::new(w, h).unwrap();
            for _ in 0..30 {
                let (x, y) = (next() % w, next() % h);
                let (rw, rh) = (1 + next() % 300, 1 + next() % 300);
                let rect = Rect::new(x, y, rw.min(w - x), rh.min(h - y));
                let c = (next() % 3) as u8 * 100;
                fb.fill(rect, [c, c, 255 - c]).unwrap();
            }
            for _ in 0..20 {
                let (x, y) = (next() % w, next() % h);
                let rect = Rect::new(
                    x,
                    y,
                    (w - x).min(1 + next() % 900),
                    (h - y).min(1 + next() % 700),
                );
                let parts = split(&fb, rect).unwrap();
                check_cover(&fb, rect, &parts);
                assert!(parts.len() <= MAX_PARTS);
            }
        }
    }

    #[test]
    fn a_window_edge_in_background_tiles_is_sent_as_its_few_pixels() {
        // The latency benchmark's large change: x11vnc's four strips around a terminal (a
        // bordered white window with some text) after the background changed colour.
        let mut fb = Framebuffer::new(1280, 800).unwrap();
        fb.fill(fb.bounds(), [0x20, 0x60, 0x40]).unwrap();
        fb.fill(Rect::new(40, 40, 1006, 606), [0, 0, 0]).unwrap();
        fb.fill(Rect::new(41, 41, 1004, 604), [255; 3]).unwrap();
        for i in 0..60 {
            fb.fill(Rect::new(44 + i * 9, 44 + (i % 6) * 15, 5, 9), [0; 3])
                .unwrap();
        }
        let strips = [
            Rect::new(0, 0, 1280, 64),
            Rect::new(0, 64, 64, 576),
            Rect::new(1024, 64, 256, 576),
            Rect::new(0, 640, 1280, 160),
        ];
        let (mut image, mut messages) = (0, 0);
        for r in strips {
            let parts = split(&fb, r).unwrap();
            check_cover(&fb, r, &parts);
            messages += parts.len();
            image += parts
                .iter()
                .filter(|p| matches!(p, Part::Image(_)))
                .map(|p| p.rect().area())
                .sum::<u64>();
        }
        // Before trimming: 225 280 pixels (whole tile runs along the window's edges); trimmed
        // (bands of 512 pixels or more): 30 103.
        assert!(image < 40_000, "{image} pixels as images");
        // At what cost to the page: 9 before (the tile runs), 17 now.
        assert!(messages <= 20, "{messages} messages");
    }

    /// A 2048×1024 desktop of `background` whose tile rows from `from_row` on alternate black
    /// and white tiles.
    fn checkerboard(from_row: u32, background: [u8; 3]) -> Framebuffer {
        let mut fb = Framebuffer::new(2048, 1024).unwrap();
        fb.fill(fb.bounds(), background).unwrap();
        for ty in from_row..16 {
            for tx in 0..32 {
                let c = if (tx + ty) % 2 == 0 { 0 } else { 255 };
                fb.fill(Rect::new(tx * 64, ty * 64, 64, 64), [c, c, c])
                    .unwrap();
            }
        }
        fb
    }

    #[test]
    fn a_checkerboard_of_colours_stays_one_image() {
        let fb = checkerboard(0, [0; 3]);
        assert_eq!(
            split(&fb, fb.bounds()).unwrap(),
            vec![Part::Image(fb.bounds())]
        );
        // Also when plain rows before it were closed as parts already (they are trimmed off
        // as a fill).
        let fb = checkerboard(4, [5; 3]);
        assert_eq!(
            split(&fb, fb.bounds()).unwrap(),
            vec![
                Part::Fill(Rect::new(0, 0, 2048, 256), [5; 3]),
                Part::Image(Rect::new(0, 256, 2048, 768))
            ]
        );
    }

    #[test]
    fn a_photograph_among_panels_stays_one_image() {
        // Noise (a photo) with ragged solid panels over it: split, it would be strips of
        // different extents, each too small for JPEG.
        let mut fb = Framebuffer::new(1280, 800).unwrap();
        let mut seed = 1u32;
        let mut px = Vec::with_capacity(1280 * 800 * 4);
        for _ in 0..1280 * 800 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            px.extend_from_slice(&seed.to_le_bytes());
        }
        fb.put_rect(fb.bounds(), &px, portcullis_core::PixelLayout::Rgbx)
            .unwrap();
        for i in 0..10 {
            fb.fill(Rect::new(0, i * 80, 100 + i * 37, 80), [30, 30, 30])
                .unwrap();
        }
        assert_eq!(
            split(&fb, fb.bounds()).unwrap(),
            vec![Part::Image(fb.bounds())]
        );
    }

    #[test]
    fn outside_the_desktop_is_refused_and_empty_is_nothing() {
        let fb = Framebuffer::new(100, 100).unwrap();
        assert!(split(&fb, Rect::new(50, 50, 51, 10)).is_err());
        assert!(split(&fb, Rect::new(50, 50, 0, 10)).unwrap().is_empty());
    }
}
