#![allow(clippy::unwrap_used)]

use flate2::{Compress, Compression, FlushCompress};

use super::*;

/// A server's side of the stream: tiles written as the test says, zlib-compressed with a sync
/// flush per rectangle (as servers do).
struct Server {
    zlib: Compress,
}

/// How the test server writes a tile.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Raw,
    Solid,
    Packed,
    PlainRle,
    PaletteRle,
}

impl Server {
    fn new() -> Self {
        Self {
            zlib: Compress::new(Compression::default(), true),
        }
    }

    fn compress(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + 1024);
        let before = self.zlib.total_in();
        loop {
            let done = usize::try_from(self.zlib.total_in() - before).unwrap();
            out.reserve(1024);
            self.zlib
                .compress_vec(&raw[done..], &mut out, FlushCompress::Sync)
                .unwrap();
            if usize::try_from(self.zlib.total_in() - before).unwrap() == raw.len()
                && out.len() < out.capacity()
            {
                return out;
            }
        }
    }

    /// The uncompressed data of `picture` (`w` × `h` RGBX), each tile written the way
    /// `way(tile index)` says (falling back to raw where the tile does not allow it).
    fn tiles(picture: &[u8], w: u32, h: u32, way: impl Fn(usize) -> Way) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut n = 0;
        for ty in (0..h).step_by(64) {
            for tx in (0..w).step_by(64) {
                let (tw, th) = (64.min(w - tx), 64.min(h - ty));
                let px: Vec<[u8; 3]> = (0..th)
                    .flat_map(|y| (0..tw).map(move |x| (x, y)))
                    .map(|(x, y)| {
                        let i = (((ty + y) * w + tx + x) * 4) as usize;
                        [picture[i], picture[i + 1], picture[i + 2]]
                    })
                    .collect();
                write_tile(&mut raw, &px, tw as usize, way(n));
                n += 1;
            }
        }
        raw
    }
}

fn palette_of(px: &[[u8; 3]]) -> Vec<[u8; 3]> {
    let mut p: Vec<[u8; 3]> = Vec::new();
    for c in px {
        if !p.contains(c) {
            p.push(*c);
        }
    }
    p
}

fn run_length(raw: &mut Vec<u8>, n: usize) {
    let mut left = n - 1;
    while left >= 255 {
        raw.push(255);
        left -= 255;
    }
    raw.push(u8::try_from(left).unwrap());
}

fn runs(px: &[[u8; 3]]) -> Vec<([u8; 3], usize)> {
    let mut out: Vec<([u8; 3], usize)> = Vec::new();
    for c in px {
        match out.last_mut() {
            Some((last, n)) if last == c => *n += 1,
            _ => out.push((*c, 1)),
        }
    }
    out
}

fn write_tile(raw: &mut Vec<u8>, px: &[[u8; 3]], tw: usize, way: Way) {
    let palette = palette_of(px);
    let index = |c: &[u8; 3]| u8::try_from(palette.iter().position(|p| p == c).unwrap()).unwrap();
    match way {
        Way::Solid if palette.len() == 1 => {
            raw.push(1);
            raw.extend_from_slice(&palette[0]);
        }
        Way::Packed if (2..=16).contains(&palette.len()) => {
            raw.push(u8::try_from(palette.len()).unwrap());
            palette.iter().for_each(|c| raw.extend_from_slice(c));
            let bits = match palette.len() {
                2 => 1,
                3..=4 => 2,
                _ => 4,
            };
            for row in px.chunks(tw) {
                let mut byte = 0_u8;
                let mut used = 0;
                for c in row {
                    byte |= index(c) << (8 - bits - used);
                    used += bits;
                    if used == 8 {
                        raw.push(byte);
                        byte = 0;
                        used = 0;
                    }
                }
                if used > 0 {
                    raw.push(byte);
                }
            }
        }
        Way::PlainRle => {
            raw.push(128);
            for (c, n) in runs(px) {
                raw.extend_from_slice(&c);
                run_length(raw, n);
            }
        }
        Way::PaletteRle if (2..=127).contains(&palette.len()) => {
            raw.push(128 + u8::try_from(palette.len()).unwrap());
            palette.iter().for_each(|c| raw.extend_from_slice(c));
            for (c, n) in runs(px) {
                if n == 1 {
                    raw.push(index(&c));
                } else {
                    raw.push(index(&c) | 0x80);
                    run_length(raw, n);
                }
            }
        }
        _ => {
            raw.push(0);
            px.iter().for_each(|c| raw.extend_from_slice(c));
        }
    }
}

/// A picture with areas of one colour, a few-colour pattern and noise, so that every way of
/// writing a tile has tiles it fits.
fn picture(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut px = vec![0_u8; (w * h * 4) as usize];
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    for y in 0..h {
        for x in 0..w {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let c: [u8; 3] = if x < w / 3 {
                [20, 40, 60]
            } else if x < 2 * w / 3 {
                let k = u8::try_from((x / 3 + y / 5) % 5).unwrap();
                [k * 40, 255 - k * 30, k * 7]
            } else {
                let b = s.to_le_bytes();
                [b[0], b[1], b[2]]
            };
            let i = ((y * w + x) * 4) as usize;
            px[i..i + 3].copy_from_slice(&c);
        }
    }
    px
}

const WAYS: [Way; 5] = [
    Way::Raw,
    Way::Solid,
    Way::Packed,
    Way::PlainRle,
    Way::PaletteRle,
];

#[test]
fn every_way_of_writing_a_tile_decodes_to_the_picture_edge_tiles_included() {
    let mut server = Server::new();
    let mut zrle = Zrle::new();
    // 64-pixel tiles and partial ones at the right and bottom; rectangles one after the other
    // on the same zlib stream.
    for (i, (w, h)) in [(200, 150), (64, 64), (1, 1), (65, 3), (333, 70)]
        .into_iter()
        .enumerate()
    {
        let pic = picture(w, h, u32::try_from(i).unwrap() + 1);
        for shift in 0..WAYS.len() {
            let raw = Server::tiles(&pic, w, h, |n| WAYS[(n + shift) % WAYS.len()]);
            let zlib = server.compress(&raw);
            let got = zrle.decode(Rect::new(0, 0, w, h), &zlib).unwrap();
            assert_eq!(got.len(), pic.len());
            assert!(got == pic, "{w}x{h}, ways shifted by {shift}");
        }
    }
}

#[test]
fn long_runs_span_tile_rows() {
    // A run of a whole 64×64 tile (4096 pixels: sixteen 255 bytes and the rest).
    let (w, h) = (64, 64);
    let mut pic = vec![0_u8; 64 * 64 * 4];
    for (i, p) in pic.chunks_exact_mut(4).enumerate() {
        let c = if i < 4000 { [1, 2, 3] } else { [9, 8, 7] };
        p[..3].copy_from_slice(&c);
    }
    for way in [Way::PlainRle, Way::PaletteRle] {
        let raw = Server::tiles(&pic, w, h, |_| way);
        let got = Zrle::new()
            .decode(Rect::new(0, 0, w, h), &Server::new().compress(&raw))
            .unwrap();
        assert!(got == pic, "{way:?}");
    }
}

/// Decodes `raw` (uncompressed tile data) for a `w` × `h` rectangle.
fn decode_raw(raw: &[u8], w: u32, h: u32) -> Result<Vec<u8>, ZrleError> {
    Zrle::new().decode(Rect::new(0, 0, w, h), &Server::new().compress(raw))
}

#[test]
fn hostile_tiles_are_errors() {
    // Unknown subencodings.
    for sub in [17_u8, 100, 127, 129] {
        assert_eq!(decode_raw(&[sub], 4, 4), Err(ZrleError::Subencoding(sub)));
    }
    // Ends inside a tile, or before the last one.
    assert_eq!(decode_raw(&[1, 5, 5], 4, 4), Err(ZrleError::Truncated));
    assert_eq!(decode_raw(&[1, 5, 5, 5], 65, 1), Err(ZrleError::Truncated));
    // Bytes after the last tile.
    assert_eq!(
        decode_raw(&[1, 5, 5, 5, 0, 0], 4, 4),
        Err(ZrleError::Trailing(2))
    );
    // A plain run of 17 pixels in a 16-pixel tile; a palette run the same.
    assert_eq!(
        decode_raw(&[128, 1, 2, 3, 16], 4, 4),
        Err(ZrleError::RunTooLong)
    );
    assert_eq!(
        decode_raw(&[130, 1, 2, 3, 4, 5, 6, 0x80, 16], 4, 4),
        Err(ZrleError::RunTooLong)
    );
    // A run that never ends within the tile (255s all along).
    let mut endless = vec![128, 1, 2, 3];
    endless.extend(std::iter::repeat_n(255, 100));
    assert_eq!(decode_raw(&endless, 64, 64), Err(ZrleError::RunTooLong));
    // Palette indices beyond the palette: packed (2 colours, index 1 fine; 4 bits for 5
    // colours, index 7) and in runs.
    let mut packed = vec![5];
    packed.extend_from_slice(&[0; 15]);
    packed.extend_from_slice(&[0x07, 0x00]);
    assert_eq!(
        decode_raw(&packed, 4, 1),
        Err(ZrleError::PaletteIndex(7, 5))
    );
    assert_eq!(
        decode_raw(&[130, 1, 1, 1, 2, 2, 2, 5], 1, 1),
        Err(ZrleError::PaletteIndex(5, 2))
    );
    // Empty or absurd rectangles.
    assert!(matches!(
        Zrle::new().decode(Rect::new(0, 0, 0, 5), &[]),
        Err(ZrleError::Rect(_))
    ));
    assert!(matches!(
        Zrle::new().decode(Rect::new(0, 0, 70_000, 5), &[]),
        Err(ZrleError::Rect(_))
    ));
}

#[test]
fn a_zip_bomb_stops_at_what_the_rectangle_can_hold() {
    // 50 MB of zeros compress to ~50 kB: far more than a 16×16 rectangle's tiles can take.
    let zeros = vec![0_u8; 50_000_000];
    let zlib = Server::new().compress(&zeros);
    assert!(zlib.len() < 100_000);
    assert_eq!(
        Zrle::new().decode(Rect::new(0, 0, 16, 16), &zlib),
        Err(ZrleError::TooLong)
    );
    // Not zlib at all.
    assert_eq!(
        Zrle::new().decode(Rect::new(0, 0, 16, 16), &[0xff; 40]),
        Err(ZrleError::Zlib)
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A smoke test of what the fuzz target (vnc_zrle) does at scale: random data, raw and
    // compressed, for rectangles of a few sizes.
    let mut s = 0x1234_5678_u32;
    for round in 0..3000 {
        let len = (round % 97) + 1;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s.to_le_bytes()[0]
            })
            .collect();
        let (w, h) = (1 + round % 70, 1 + round % 13);
        let _ = decode_raw(&bytes, w, h);
        let _ = Zrle::new().decode(Rect::new(0, 0, w, h), &bytes);
    }
}
