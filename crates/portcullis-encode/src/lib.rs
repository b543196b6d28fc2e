//! Encodes changed desktop rectangles as browser rectangle messages.
//!
//! This crate is the only one that depends on `image`. The policy: text and UI (few distinct
//! colours) go out lossless, as a palette image (or RGB) in a chunk of the viewer's one deflate
//! stream ([`Encoder`]), so glyphs and colours sent before cost little again and terminal text
//! stays sharp; large areas with many colours (photos, gradients, video) go out as JPEG, which is
//! many times smaller for that content.

use flate2::{Compress, Compression, FlushCompress, Status};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use portcullis_core::wire::{self, ImageEncoding, WireError};
use portcullis_core::{DesktopError, Framebuffer, Rect};
use thiserror::Error;

mod split;
pub use split::{split, Part, MAX_PARTS, SPLIT_MIN_AREA, TILE};

/// Smallest area (pixels) considered for JPEG: below it a lossless image costs little whatever
/// the content.
const JPEG_MIN_AREA: u64 = 128 * 128;
/// Distinct colours among the sampled pixels above which an area counts as photographic.
/// UI and text use a handful of colours (plus antialiasing ramps); photos use thousands.
const PHOTO_COLOURS: usize = 384;
/// Pixels sampled to count colours.
const SAMPLES: u64 = 2048;
/// Deflate level of PNG rectangles (the fallback once a viewer's deflate stream failed).
/// Measured on a 1280x800 terminal desktop (`examples/encode_cost.rs`): level 1 takes 7 ms and
/// 142 KB, the default level 6 takes 33-40 ms for 116 KB, the `Fast` setting 4 ms for 283 KB.
const PNG_LEVEL: CompressionType = CompressionType::Level(1);
/// Deflate level of a viewer's stream. Measured on 1280x800 xterm screens
/// (`examples/encode_cost.rs`, release, zlib-rs): a bitmap-font screen (2 colours) is 7.6 KB in
/// 3.0 ms at level 6, 8.9 KB / 3.0 ms at 3, 12.2 KB / 2.7 ms at 1 (PNG level 1: 58 KB / 2.1 ms);
/// an antialiased one (256 greys) 41 KB / 10.1 ms, 53 KB / 7.8 ms, 83 KB / 5.2 ms (PNG: 179 KB /
/// 4.4 ms). A large change (≈190k pixels, a fifth of that screen) costs 0.6-2 ms at level 6.
const STREAM_LEVEL: u32 = 6;
/// JPEG quality for photographic areas.
const JPEG_QUALITY: u8 = 80;
/// Largest palette: more distinct colours go out as RGB.
const MAX_PALETTE: usize = 256;
/// Inflated layouts of a [`ImageEncoding::Zlib`] rectangle (its first byte).
const LAYOUT_RGB: u8 = 0;
const LAYOUT_PALETTE: u8 = 1;

/// Why a rectangle could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The rectangle does not fit the desktop.
    #[error(transparent)]
    Desktop(#[from] DesktopError),
    /// The rectangle does not fit the wire format.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The image codec failed.
    #[error("image encoding failed: {0}")]
    Image(#[from] image::ImageError),
    /// The viewer's deflate stream failed; the encoder goes on without it.
    #[error("deflate stream failed: {0}")]
    Deflate(#[from] flate2::CompressError),
    /// The deflate stream made no progress.
    #[error("deflate stream made no progress")]
    Stalled,
    /// A rectangle without pixels has no image.
    #[error("empty rectangle {0}")]
    Empty(Rect),
}

impl EncodeError {
    /// The viewer's deflate stream failed (and is given up): the same rectangle can still be
    /// sent as a standalone image.
    pub fn is_stream_failure(&self) -> bool {
        matches!(self, Self::Deflate(_) | Self::Stalled)
    }
}

/// Which encoding to use, decided from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Always lossless.
    Lossless,
    /// PNG for UI, JPEG for photographic areas.
    Auto,
}

/// Appends one complete rectangle message (header and image) for `rect` of `fb` to `out`,
/// without a deflate stream (fill, PNG or JPEG): each message stands alone.
pub fn encode_rect(
    fb: &Framebuffer,
    rect: Rect,
    choice: Choice,
    out: &mut Vec<u8>,
) -> Result<ImageEncoding, EncodeError> {
    let rgba = fb.read_rect(rect)?;
    encode_rgba(&rgba, rect, choice, out)
}

/// Like [`encode_rect`], from pixels already copied out of the framebuffer (tightly packed RGBA
/// of `rect`), so the caller need not hold the framebuffer while encoding.
pub fn encode_rgba(
    rgba: &[u8],
    rect: Rect,
    choice: Choice,
    out: &mut Vec<u8>,
) -> Result<ImageEncoding, EncodeError> {
    if let Some(done) = encode_simple(rgba, rect, choice, out)? {
        return Ok(done);
    }
    encode_png(&rgba_to_rgb(rgba), rect, out)
}

/// A viewer's encoder. It keeps one deflate stream for the viewer's whole connection, so every
/// lossless rectangle compresses against what the stream saw before (the browser inflates the
/// chunks in order with one stream too). One per connection, used in the order of sending.
pub struct Encoder {
    /// `None` once the stream failed: from then on lossless rectangles are PNGs, which need
    /// no shared state (a chunk the browser never got would break the stream for good).
    stream: Option<Compress>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("stream", &self.stream.is_some())
            .finish()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// A fresh stream: its first chunk carries the zlib header.
    pub fn new() -> Self {
        Self {
            stream: Some(Compress::new(Compression::new(STREAM_LEVEL), true)),
        }
    }

    /// Appends one complete rectangle message for `rgba` (tightly packed RGBA of `rect`) to
    /// `out`: a fill, a JPEG for photographic areas (with [`Choice::Auto`]), else a palette or
    /// RGB image deflated into the stream and flushed, so the browser can draw it at once.
    /// When the stream fails, the error is returned once with nothing appended to `out`, and
    /// later rectangles are PNGs.
    pub fn encode_rgba(
        &mut self,
        rgba: &[u8],
        rect: Rect,
        choice: Choice,
        out: &mut Vec<u8>,
    ) -> Result<ImageEncoding, EncodeError> {
        if let Some(done) = encode_simple(rgba, rect, choice, out)? {
            return Ok(done);
        }
        if rect.is_empty() {
            return Err(EncodeError::Empty(rect));
        }
        let Some(stream) = self.stream.as_mut() else {
            return encode_png(&rgba_to_rgb(rgba), rect, out);
        };
        let image = lossless_image(rgba, rect.w);
        let start = out.len();
        wire::write_rect_header(out, ImageEncoding::Zlib, rect)?;
        if let Err(error) = deflate_flushed(stream, &image, out) {
            out.truncate(start);
            self.stream = None;
            return Err(error);
        }
        Ok(ImageEncoding::Zlib)
    }
}

/// Checks the pixel count and encodes what needs no lossless image: one colour (a fill) or a
/// photographic area (JPEG, with [`Choice::Auto`]).
fn encode_simple(
    rgba: &[u8],
    rect: Rect,
    choice: Choice,
    out: &mut Vec<u8>,
) -> Result<Option<ImageEncoding>, EncodeError> {
    let expected = usize::try_from(rect.area() * 4).unwrap_or(usize::MAX);
    if rgba.len() != expected {
        return Err(EncodeError::Desktop(DesktopError::BadPixelData {
            rect,
            expected,
            actual: rgba.len(),
        }));
    }
    if let Some(rgb) = solid_colour(rgba) {
        return encode_fill(rect, rgb, out).map(Some);
    }
    if !(matches!(choice, Choice::Auto) && looks_photographic(rgba, rect)) {
        return Ok(None);
    }
    wire::write_rect_header(out, ImageEncoding::Jpeg, rect)?;
    JpegEncoder::new_with_quality(&mut *out, JPEG_QUALITY).write_image(
        &rgba_to_rgb(rgba),
        rect.w,
        rect.h,
        ExtendedColorType::Rgb8,
    )?;
    Ok(Some(ImageEncoding::Jpeg))
}

/// Appends a fill message: every pixel of `rect` is `rgb`.
pub fn encode_fill(
    rect: Rect,
    rgb: [u8; 3],
    out: &mut Vec<u8>,
) -> Result<ImageEncoding, EncodeError> {
    wire::write_rect_header(out, ImageEncoding::Fill, rect)?;
    out.extend_from_slice(&rgb);
    Ok(ImageEncoding::Fill)
}

fn encode_png(rgb: &[u8], rect: Rect, out: &mut Vec<u8>) -> Result<ImageEncoding, EncodeError> {
    wire::write_rect_header(out, ImageEncoding::Png, rect)?;
    PngEncoder::new_with_quality(&mut *out, PNG_LEVEL, FilterType::Adaptive).write_image(
        rgb,
        rect.w,
        rect.h,
        ExtendedColorType::Rgb8,
    )?;
    Ok(ImageEncoding::Png)
}

/// The inflated form of a stream rectangle (docs/browser-protocol.md): `[1, n - 1, n colours
/// (RGB), rows of indices packed 1, 2, 4 or 8 bits per pixel, most significant bits first,
/// each row starting on a byte]` when the area has at most 256 colours, else `[0, RGB rows]`.
fn lossless_image(rgba: &[u8], width: u32) -> Vec<u8> {
    let Some((colours, indices)) = palette(rgba) else {
        let mut out = Vec::with_capacity(1 + rgba.len() / 4 * 3);
        out.push(LAYOUT_RGB);
        for px in rgba.chunks_exact(4) {
            out.extend_from_slice(&px[..3]);
        }
        return out;
    };
    let bits: usize = match colours.len() {
        0..=2 => 1,
        3..=4 => 2,
        5..=16 => 4,
        _ => 8,
    };
    let width = width as usize;
    let row_bytes = (width * bits).div_ceil(8);
    let rows = indices.len().checked_div(width).unwrap_or(0);
    let header = 2 + colours.len() * 3;
    let mut out = vec![0; header + row_bytes * rows];
    out[0] = LAYOUT_PALETTE;
    out[1] = u8::try_from(colours.len().saturating_sub(1)).unwrap_or(u8::MAX);
    for (slot, colour) in out[2..header].chunks_exact_mut(3).zip(&colours) {
        slot.copy_from_slice(colour);
    }
    for (row, packed) in indices
        .chunks_exact(width.max(1))
        .zip(out[header..].chunks_exact_mut(row_bytes.max(1)))
    {
        for (x, &index) in row.iter().enumerate() {
            let bit = x * bits;
            packed[bit / 8] |= index << (8 - bits - bit % 8);
        }
    }
    out
}

/// The area's colours (first seen first) and each pixel's index, or `None` beyond
/// [`MAX_PALETTE`] colours.
fn palette(rgba: &[u8]) -> Option<(Vec<[u8; 3]>, Vec<u8>)> {
    let mut colours: Vec<[u8; 3]> = Vec::new();
    let mut table = ColourTable::new();
    let mut indices = Vec::with_capacity(rgba.len() / 4);
    let mut last: Option<([u8; 3], u8)> = None;
    for px in rgba.chunks_exact(4) {
        let colour = [px[0], px[1], px[2]];
        let index = match last {
            // Runs of one colour are the common case in UI and text.
            Some((c, i)) if c == colour => i,
            _ => match table.get_or_insert(colour, colours.len()) {
                Some(i) => {
                    if usize::from(i) == colours.len() {
                        colours.push(colour);
                    }
                    i
                }
                None => return None,
            },
        };
        last = Some((colour, index));
        indices.push(index);
    }
    Some((colours, indices))
}

/// Colour → palette index for at most [`MAX_PALETTE`] colours: open addressing in a table four
/// times that size (a general hash map with its keyed hash cost twice the time per pixel).
struct ColourTable {
    /// `colour + 1` (0: empty slot), with the colour as 0xRRGGBB.
    keys: [u32; TABLE_SLOTS],
    values: [u8; TABLE_SLOTS],
}

const TABLE_SLOTS: usize = 4 * MAX_PALETTE;

impl ColourTable {
    fn new() -> Self {
        Self {
            keys: [0; TABLE_SLOTS],
            values: [0; TABLE_SLOTS],
        }
    }

    /// The index of `colour`, or `next` (its new index) when it is new; `None` when it is new
    /// and the palette is full.
    fn get_or_insert(&mut self, colour: [u8; 3], next: usize) -> Option<u8> {
        let (slot, key) = probe(&self.keys, colour);
        if self.keys[slot] == key {
            return Some(self.values[slot]);
        }
        let index = u8::try_from(next).ok()?;
        self.keys[slot] = key;
        self.values[slot] = index;
        Some(index)
    }
}

/// Where `colour` is, or goes, in an open-addressed table of colour keys (`colour + 1` as
/// 0xRRGGBB + 1, 0 marking an empty slot; a power-of-two number of slots, never full), and its
/// key: the slot holds the key if the colour is there, else it is the empty slot for it.
fn probe(keys: &[u32], colour: [u8; 3]) -> (usize, u32) {
    let key = (u32::from(colour[0]) << 16 | u32::from(colour[1]) << 8 | u32::from(colour[2])) + 1;
    // Fibonacci hashing: the top bits of the product spread neighbouring colours.
    let bits = keys.len().trailing_zeros();
    let mut slot = (u64::from(key.wrapping_mul(0x9E37_79B1)) >> (32 - bits)) as usize;
    while keys[slot] != 0 && keys[slot] != key {
        slot = (slot + 1) % keys.len();
    }
    (slot, key)
}

/// Deflates `input` into the stream and flushes it to a byte boundary (a sync flush), so the
/// bytes appended to `out` inflate completely given the stream's earlier chunks. Needs zlib's
/// semantics (the workspace pins flate2 to zlib-rs): after a sync flush, output room left over
/// means the flush is complete. The room reserved is zlib's bound for the input (stored blocks
/// and all), so one call normally does it.
fn deflate_flushed(
    stream: &mut Compress,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut rest = input;
    loop {
        let bound = rest.len() + rest.len() / 1000 * 5 + 1024;
        if out.capacity() - out.len() < bound {
            out.reserve(bound);
        }
        let (read, written) = (stream.total_in(), stream.total_out());
        let status = stream.compress_vec(rest, out, FlushCompress::Sync)?;
        let used = usize::try_from(stream.total_in() - read).unwrap_or(usize::MAX);
        rest = rest.get(used..).unwrap_or_default();
        if rest.is_empty() && out.len() < out.capacity() {
            return Ok(());
        }
        if used == 0 && stream.total_out() == written && status != Status::Ok {
            return Err(EncodeError::Stalled);
        }
    }
}

/// The colour of a rectangle that has only one (backgrounds, cleared areas): sent as 3 bytes
/// instead of an image, and drawn by the browser without decoding anything.
///
/// Compared a word per pixel (alpha masked off), in blocks of 16 pixels with no early exit
/// inside a block, which the compiler vectorises: a large change is mostly such areas, and the
/// byte-slice comparison per pixel was 0.5 ms of the gateway's 4 ms on a 445k-pixel background
/// change (perf, benches/LATENCY-NOTES.md; 0.21 → 0.13 ms warm in a micro-benchmark).
fn solid_colour(rgba: &[u8]) -> Option<[u8; 3]> {
    let first = rgba.get(..3)?;
    let want = u32::from_le_bytes([first[0], first[1], first[2], 0]);
    all_of_colour(rgba, want).then(|| [first[0], first[1], first[2]])
}

/// Whether every pixel of `rgba` (alpha ignored) is `want` (`0x00BBGGRR`, as a little-endian
/// word of the pixel with its alpha cleared).
fn all_of_colour(rgba: &[u8], want: u32) -> bool {
    let same = |px: &[u8]| u32::from_le_bytes([px[0], px[1], px[2], px[3]]) & 0x00ff_ffff == want;
    let mut blocks = rgba.chunks_exact(64);
    for block in &mut blocks {
        if !block.chunks_exact(4).fold(true, |all, px| all & same(px)) {
            return false;
        }
    }
    blocks.remainder().chunks_exact(4).all(same)
}

fn rgba_to_rgb(rgba: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        rgb.extend_from_slice(&px[..3]);
    }
    rgb
}

/// [`looks_photographic`] of `rect` (inside `fb`), sampled in place.
fn looks_photographic_in(fb: &Framebuffer, rect: Rect) -> bool {
    let (stride, data) = (fb.width() as usize * 4, fb.data());
    photographic_by(rect.w, rect.h, |x, y| {
        let at = (rect.y + y) as usize * stride + (rect.x + x) as usize * 4;
        data.get(at..at + 3).map(|p| [p[0], p[1], p[2]])
    })
}

/// Whether `rgba` (tightly packed RGBA of `rect`) looks like a photograph or a video: many
/// colours among [`SAMPLES`] pixels spread over it.
fn looks_photographic(rgba: &[u8], rect: Rect) -> bool {
    let w = rect.w as usize;
    photographic_by(rect.w, rect.h, |x, y| {
        let at = (y as usize * w + x as usize) * 4;
        rgba.get(at..at + 3).map(|p| [p[0], p[1], p[2]])
    })
}

/// Counts the colours of about [`SAMPLES`] pixels of a `w`×`h` area (at most one row of
/// `√(SAMPLES × w / h)` more, for areas far wider than high) on a grid shaped like the area,
/// each in the middle of its cell: a photo anywhere in the area is seen, whatever the width
/// (every n-th pixel in reading order hit the same few columns when n was near a multiple of
/// the width). `pixel(x, y)` is `None` outside the data: not photographic.
fn photographic_by(w: u32, h: u32, pixel: impl Fn(u32, u32) -> Option<[u8; 3]>) -> bool {
    let area = u64::from(w) * u64::from(h);
    if area < JPEG_MIN_AREA {
        return false;
    }
    // cols ≈ √(SAMPLES × w / h), rows = SAMPLES / cols, each within the area's own size.
    let cols =
        ((SAMPLES as f64 * f64::from(w) / f64::from(h)).sqrt() as u64).clamp(1, u64::from(w));
    let rows = (SAMPLES / cols).clamp(1, u64::from(h));
    let mut seen = ColourSet::new();
    for r in 0..rows {
        let y = (r * u64::from(h) + u64::from(h) / 2) / rows;
        for c in 0..cols {
            let x = (c * u64::from(w) + u64::from(w) / 2) / cols;
            let Some(px) = pixel(x as u32, y as u32) else {
                return false;
            };
            if seen.insert(px) > PHOTO_COLOURS {
                return true;
            }
        }
    }
    false
}

/// Up to [`PHOTO_COLOURS`] + 1 distinct colours: open addressing (a general hash set with its
/// keyed hash cost several times the time per sample).
struct ColourSet {
    /// As [`probe`] keeps them.
    keys: [u32; SET_SLOTS],
    len: usize,
}

const SET_SLOTS: usize = 1024;
const _: () = assert!(SET_SLOTS.is_power_of_two() && SET_SLOTS >= 2 * (PHOTO_COLOURS + 1));
const _: () = assert!(TABLE_SLOTS.is_power_of_two() && TABLE_SLOTS > MAX_PALETTE);

impl ColourSet {
    fn new() -> Self {
        Self {
            keys: [0; SET_SLOTS],
            len: 0,
        }
    }

    /// Adds `colour` and returns how many distinct colours there are; past
    /// [`PHOTO_COLOURS`] + 1 it only counts (the caller stops there).
    fn insert(&mut self, colour: [u8; 3]) -> usize {
        if self.len > PHOTO_COLOURS {
            return self.len;
        }
        let (slot, key) = probe(&self.keys, colour);
        if self.keys[slot] != key {
            self.keys[slot] = key;
            self.len += 1;
        }
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::wire::{decode_server_binary, ServerBinary};

    fn decode(msg: &[u8]) -> (u8, Rect, image::RgbaImage) {
        match decode_server_binary(msg).unwrap() {
            ServerBinary::Rect {
                encoding,
                rect,
                data,
            } => (
                encoding,
                rect,
                image::load_from_memory(data).unwrap().to_rgba8(),
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ui_content_is_lossless() {
        let mut fb = Framebuffer::new(300, 200).unwrap();
        fb.fill(Rect::new(10, 10, 100, 50), [200, 30, 40]).unwrap();
        fb.fill(Rect::new(12, 12, 3, 3), [255, 255, 255]).unwrap();
        let mut out = Vec::new();
        let r = Rect::new(0, 0, 300, 200);
        assert_eq!(
            encode_rect(&fb, r, Choice::Auto, &mut out).unwrap(),
            ImageEncoding::Png
        );
        let (enc, rect, img) = decode(&out);
        assert_eq!((enc, rect), (1, r));
        for (x, y, px) in img.enumerate_pixels() {
            assert_eq!(px.0[..3], fb.pixel(x, y).unwrap(), "at {x},{y}");
        }
    }

    #[test]
    fn noisy_content_uses_jpeg() {
        let mut fb = Framebuffer::new(256, 256).unwrap();
        let mut px = Vec::new();
        let mut seed = 1u32;
        for _ in 0..256 * 256 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            px.extend_from_slice(&seed.to_le_bytes());
        }
        fb.put_rect(fb.bounds(), &px, portcullis_core::PixelLayout::Rgbx)
            .unwrap();
        let mut out = Vec::new();
        let enc = encode_rect(&fb, fb.bounds(), Choice::Auto, &mut out).unwrap();
        assert_eq!(enc, ImageEncoding::Jpeg);
        let (_, _, img) = decode(&out);
        assert_eq!(img.dimensions(), (256, 256));
        let mut lossless = Vec::new();
        encode_rect(&fb, fb.bounds(), Choice::Lossless, &mut lossless).unwrap();
        assert_eq!(decode(&lossless).0, 1);
    }

    #[test]
    fn the_colour_set_counts_each_colour_once_up_to_the_photo_bound() {
        let mut set = ColourSet::new();
        for round in 0..2 {
            for i in 0..PHOTO_COLOURS as u32 {
                // Neighbouring colours, and colours that differ only in their top bits.
                let c = if i % 2 == 0 { i } else { i << 12 };
                let b = c.to_be_bytes();
                assert_eq!(
                    set.insert([b[1], b[2], b[3]]),
                    if round == 0 {
                        i as usize + 1
                    } else {
                        PHOTO_COLOURS
                    }
                );
            }
        }
        assert_eq!(set.insert([255, 255, 255]), PHOTO_COLOURS + 1);
        assert_eq!(
            set.insert([254, 255, 255]),
            PHOTO_COLOURS + 1,
            "counting stops past the bound"
        );
    }

    #[test]
    fn a_photo_is_seen_whatever_the_width_of_its_area() {
        // 2048 wide: sampling every (area / 2048)-th pixel in reading order hit columns 0 and
        // 1024 only, and a photo between them went lossless.
        let (w, h) = (2048u32, 1024u32);
        let mut fb = Framebuffer::new(w, h).unwrap();
        fb.fill(fb.bounds(), [30, 30, 30]).unwrap();
        let photo = Rect::new(300, 0, 400, h);
        let mut px = Vec::new();
        let mut seed = 5u32;
        for _ in 0..photo.area() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            px.extend_from_slice(&seed.to_le_bytes());
        }
        fb.put_rect(photo, &px, portcullis_core::PixelLayout::Rgbx)
            .unwrap();
        assert!(looks_photographic_in(&fb, fb.bounds()));
        let rgba = fb.read_rect(fb.bounds()).unwrap();
        assert!(looks_photographic(&rgba, fb.bounds()));
        // Tall and narrow, and one column: the grid keeps to the area's shape.
        let column = Rect::new(400, 0, 1, h);
        assert!(!looks_photographic_in(&fb, column), "below the JPEG area");
        let strip = Rect::new(350, 0, 40, h);
        assert!(looks_photographic_in(&fb, strip));
        // Plain UI is not.
        let plain = Rect::new(800, 0, 1248, h);
        assert!(!looks_photographic_in(&fb, plain));
    }

    #[test]
    fn one_pixel_of_another_colour_anywhere_is_not_solid_and_alpha_does_not_count() {
        // Lengths around the 16-pixel blocks: the remainder is checked as well as the blocks.
        for n in [1usize, 15, 16, 17, 31, 32, 33, 100] {
            let mut px = [10u8, 20, 30, 0].repeat(n);
            for (i, a) in px.chunks_exact_mut(4).enumerate() {
                a[3] = u8::try_from(i % 256).unwrap(); // alpha differs everywhere: ignored
            }
            assert_eq!(solid_colour(&px), Some([10, 20, 30]), "{n} pixels");
            // (One pixel alone is always one colour.)
            for at in (0..n).filter(|_| n > 1) {
                for channel in 0..3 {
                    let mut other = px.clone();
                    other[at * 4 + channel] ^= 1;
                    assert_eq!(
                        solid_colour(&other),
                        None,
                        "{n} pixels, pixel {at}, channel {channel}"
                    );
                }
            }
        }
        assert_eq!(solid_colour(&[]), None);
    }

    #[test]
    fn one_colour_is_a_fill() {
        let mut fb = Framebuffer::new(300, 200).unwrap();
        fb.fill(Rect::new(0, 0, 300, 200), [1, 2, 3]).unwrap();
        let mut out = Vec::new();
        let r = Rect::new(10, 10, 200, 100);
        assert_eq!(
            encode_rect(&fb, r, Choice::Auto, &mut out).unwrap(),
            ImageEncoding::Fill
        );
        match decode_server_binary(&out).unwrap() {
            ServerBinary::Rect {
                encoding,
                rect,
                data,
            } => {
                assert_eq!((encoding, rect, data), (3, r, &[1u8, 2, 3][..]));
            }
            other => panic!("unexpected {other:?}"),
        }
        // One different pixel makes it an image again.
        fb.fill(Rect::new(50, 50, 1, 1), [9, 9, 9]).unwrap();
        out.clear();
        assert_eq!(
            encode_rect(&fb, r, Choice::Auto, &mut out).unwrap(),
            ImageEncoding::Png
        );
    }

    /// The browser's side of a stream: one inflater for the whole connection.
    struct Inflater(flate2::Decompress);

    impl Inflater {
        fn new() -> Self {
            Self(flate2::Decompress::new(true))
        }

        /// Inflates one stream rectangle message: its rectangle, RGB pixels and (layout,
        /// palette size).
        fn image(&mut self, msg: &[u8]) -> (Rect, Vec<[u8; 3]>, (u8, usize)) {
            let ServerBinary::Rect {
                encoding,
                rect,
                data,
            } = decode_server_binary(msg).unwrap()
            else {
                panic!("not a rectangle")
            };
            assert_eq!(encoding, ImageEncoding::Zlib as u8);
            let mut inflated = Vec::with_capacity(2 + 256 * 3 + rect.area() as usize * 3);
            let before = self.0.total_in();
            self.0
                .decompress_vec(data, &mut inflated, flate2::FlushDecompress::Sync)
                .unwrap();
            assert_eq!(self.0.total_in() - before, data.len() as u64, "all read");
            // Nothing more comes out of the stream for this chunk.
            let mut more = Vec::with_capacity(16);
            self.0
                .decompress_vec(&[], &mut more, flate2::FlushDecompress::Sync)
                .ok();
            assert!(more.is_empty(), "the chunk inflates to more than its image");
            let (w, h) = (rect.w as usize, rect.h as usize);
            let mut seen = (inflated[0], 0);
            let pixels = match inflated[0] {
                LAYOUT_RGB => {
                    assert_eq!(inflated.len(), 1 + w * h * 3);
                    inflated[1..]
                        .chunks_exact(3)
                        .map(|c| [c[0], c[1], c[2]])
                        .collect()
                }
                LAYOUT_PALETTE => {
                    let n = inflated[1] as usize + 1;
                    seen.1 = n;
                    let colours: Vec<[u8; 3]> = inflated[2..2 + n * 3]
                        .chunks_exact(3)
                        .map(|c| [c[0], c[1], c[2]])
                        .collect();
                    let bits = match n {
                        0..=2 => 1,
                        3..=4 => 2,
                        5..=16 => 4,
                        _ => 8,
                    };
                    let row_bytes = (w * bits).div_ceil(8);
                    let rows = &inflated[2 + n * 3..];
                    assert_eq!(rows.len(), row_bytes * h, "{n} colours");
                    let mut px = Vec::new();
                    for row in rows.chunks_exact(row_bytes) {
                        for x in 0..w {
                            let bit = x * bits;
                            let index =
                                (row[bit / 8] >> (8 - bits - bit % 8)) & ((1 << bits) - 1) as u8;
                            px.push(colours[index as usize]);
                        }
                    }
                    px
                }
                other => panic!("layout {other}"),
            };
            (rect, pixels, seen)
        }
    }

    fn assert_same(fb: &Framebuffer, rect: Rect, pixels: &[[u8; 3]]) {
        assert_eq!(pixels.len() as u64, rect.area());
        for (i, px) in pixels.iter().enumerate() {
            let (x, y) = (rect.x + i as u32 % rect.w, rect.y + i as u32 / rect.w);
            assert_eq!(*px, fb.pixel(x, y).unwrap(), "at {x},{y}");
        }
    }

    /// A desktop of `colours` colours in a pattern with no long runs.
    fn patterned(w: u32, h: u32, colours: u32) -> Framebuffer {
        let mut fb = Framebuffer::new(w, h).unwrap();
        for y in 0..h {
            for x in 0..w {
                let c = (x * 7 + y * 13 + x * y) % colours;
                let v = (c * 251 % 256) as u8;
                fb.fill(Rect::new(x, y, 1, 1), [v, v ^ 0x5a, (c / 256) as u8])
                    .unwrap();
            }
        }
        fb
    }

    /// A desktop where the rectangle `r` holds exactly `colours` distinct colours (when it has
    /// that many pixels), in a pattern with no long runs.
    fn exactly(r: Rect, colours: u32) -> Framebuffer {
        let mut fb = Framebuffer::new(r.x + r.w, r.y + r.h).unwrap();
        for y in 0..r.h {
            for x in 0..r.w {
                let c = (x * 7 + y * r.w) % colours.min(r.area() as u32);
                let c = c.to_be_bytes();
                fb.fill(Rect::new(r.x + x, r.y + y, 1, 1), [c[1], c[2], c[3] ^ 0x55])
                    .unwrap();
            }
        }
        fb
    }

    #[test]
    fn stream_rectangles_are_lossless_for_every_palette_size_and_rgb() {
        let mut enc = Encoder::new();
        let mut inflater = Inflater::new();
        // 1, 2, 4 and 8 bits per index, then RGB; odd widths end rows mid-byte.
        let r = Rect::new(3, 2, 37, 29);
        for (colours, layout, n) in [
            (2, LAYOUT_PALETTE, 2),
            (3, LAYOUT_PALETTE, 3),
            (4, LAYOUT_PALETTE, 4),
            (5, LAYOUT_PALETTE, 5),
            (16, LAYOUT_PALETTE, 16),
            (17, LAYOUT_PALETTE, 17),
            (256, LAYOUT_PALETTE, 256),
            (257, LAYOUT_RGB, 0),
            (1000, LAYOUT_RGB, 0),
        ] {
            let fb = exactly(r, colours);
            let mut out = Vec::new();
            let encoding = enc
                .encode_rgba(&fb.read_rect(r).unwrap(), r, Choice::Lossless, &mut out)
                .unwrap();
            assert_eq!(encoding, ImageEncoding::Zlib, "{colours} colours");
            let (rect, pixels, seen) = inflater.image(&out);
            assert_eq!(rect, r);
            assert_eq!(seen, (layout, n), "{colours} colours");
            assert_same(&fb, r, &pixels);
        }
    }

    #[test]
    fn every_chunk_inflates_to_exactly_its_image_whatever_its_size() {
        // Sizes from a few bytes to megabytes, one stream: each chunk must be complete on its
        // own (a backend that holds back part of a flush fails here).
        let mut enc = Encoder::new();
        let mut inflater = Inflater::new();
        let mut seed = 3u32;
        let mut next = |m: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 8) % m
        };
        for _ in 0..60 {
            let (w, h) = (1 + next(700), 1 + next(500));
            let colours = [2, 9, 200, 100_000][next(4) as usize];
            let mut fb = Framebuffer::new(w, h).unwrap();
            for y in 0..h {
                for x in 0..w {
                    let c = (next(colours)).to_be_bytes();
                    fb.fill(Rect::new(x, y, 1, 1), [c[1], c[2], c[3]]).unwrap();
                }
            }
            let r = fb.bounds();
            let mut out = Vec::new();
            if enc
                .encode_rgba(&fb.read_rect(r).unwrap(), r, Choice::Lossless, &mut out)
                .unwrap()
                == ImageEncoding::Zlib
            {
                assert_same(&fb, r, &inflater.image(&out).1);
            }
        }
    }

    /// The images of the browser's fixture (`web/src/model/testdata/stream-fixture.ts`): the same
    /// formula is in `inflate.test.ts`.
    fn fixture_images() -> Vec<(Rect, Framebuffer)> {
        let mut images = Vec::new();
        // Each twice: the second chunk refers back into the first.
        for (w, h, colours) in [
            (13, 7, 2),
            (13, 7, 2),
            (40, 9, 20),
            (40, 9, 20),
            (17, 5, 1000),
        ] {
            let mut fb = Framebuffer::new(w, h).unwrap();
            for y in 0..h {
                for x in 0..w {
                    let c = (x * 7 + y * 13 + x * y) % colours;
                    let rgb = [(c * 37) as u8, (c * 91 + 7) as u8, (c >> 3) as u8];
                    fb.fill(Rect::new(x, y, 1, 1), rgb).unwrap();
                }
            }
            images.push((fb.bounds(), fb));
        }
        images
    }

    /// The browser's inflater is tested on what this encoder writes: messages, each with a
    /// u32 (big-endian) length before it, in hex in a TypeScript module.
    /// `PORTCULLIS_WRITE_FIXTURES=1` writes it anew. The bytes depend on the zlib
    /// implementation (C zlib in a workspace build, zlib-rs alone), so the check is that the
    /// fixture still inflates to the images, as the encoder's own output does.
    #[test]
    fn the_browser_fixture_is_an_encoding_of_the_fixture_images() {
        let images = fixture_images();
        let mut enc = Encoder::new();
        let mut inflater = Inflater::new();
        let mut file = Vec::new();
        for (r, fb) in &images {
            let mut msg = Vec::new();
            enc.encode_rgba(&fb.read_rect(*r).unwrap(), *r, Choice::Lossless, &mut msg)
                .unwrap();
            assert_same(fb, *r, &inflater.image(&msg).1);
            file.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
            file.extend_from_slice(&msg);
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../web/src/model/testdata/stream-fixture.ts");
        if std::env::var_os("PORTCULLIS_WRITE_FIXTURES").is_some() {
            let hex: String = file.iter().map(|b| format!("{b:02x}")).collect();
            let module = format!(
                "// Written by portcullis-encode's test the_browser_fixture_is_an_encoding_of_the_fixture_images:\n\
                 // stream rectangle messages, each after its u32 (big-endian) length.\n\
                 export const STREAM_FIXTURE_HEX =\n  '{hex}';\n"
            );
            std::fs::write(&path, module).unwrap();
        }
        let module = std::fs::read_to_string(&path).unwrap();
        let hex = module.rsplit('\'').nth(1).expect("the hex string");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut inflater = Inflater::new();
        let mut at = 0;
        for (r, fb) in &images {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let (rect, pixels, _) = inflater.image(&bytes[at + 4..at + 4 + len]);
            assert_eq!(rect, *r);
            assert_same(fb, *r, &pixels);
            at += 4 + len;
        }
        assert_eq!(
            at,
            bytes.len(),
            "{} has more than the images",
            path.display()
        );
    }

    #[test]
    fn an_empty_rectangle_is_refused() {
        let mut out = Vec::new();
        let e = Encoder::new()
            .encode_rgba(&[], Rect::new(0, 0, 0, 5), Choice::Lossless, &mut out)
            .unwrap_err();
        assert!(!e.is_stream_failure(), "{e}");
        assert!(out.is_empty());
    }

    #[test]
    fn the_stream_remembers_what_it_sent() {
        // Two colours at random: text-like, but no pattern deflate finds within the image.
        let mut fb = Framebuffer::new(200, 100).unwrap();
        let mut seed = 7u32;
        for y in 0..100 {
            for x in 0..200 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let v = if seed >> 31 == 1 { 255 } else { 0 };
                fb.fill(Rect::new(x, y, 1, 1), [v, v, v]).unwrap();
            }
        }
        let r = fb.bounds();
        let px = fb.read_rect(r).unwrap();
        let mut enc = Encoder::new();
        let mut inflater = Inflater::new();
        let (mut first, mut again) = (Vec::new(), Vec::new());
        enc.encode_rgba(&px, r, Choice::Auto, &mut first).unwrap();
        enc.encode_rgba(&px, r, Choice::Auto, &mut again).unwrap();
        assert_same(&fb, r, &inflater.image(&first).1);
        assert_same(&fb, r, &inflater.image(&again).1);
        // The same glyphs again are a back-reference into the stream's window.
        assert!(
            again.len() * 4 < first.len(),
            "{} vs {}",
            again.len(),
            first.len()
        );
        // A stateless PNG of the same pixels pays in full every time.
        let mut png = Vec::new();
        encode_rgba(&px, r, Choice::Auto, &mut png).unwrap();
        assert!(
            again.len() * 4 < png.len(),
            "{} vs png {}",
            again.len(),
            png.len()
        );
    }

    #[test]
    fn a_large_desktop_flushes_whole() {
        // More output than one reservation: the loop must keep going until the flush is out.
        let fb = patterned(1920, 1080, 100_000);
        let r = fb.bounds();
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.encode_rgba(&fb.read_rect(r).unwrap(), r, Choice::Lossless, &mut out)
            .unwrap();
        assert_same(&fb, r, &Inflater::new().image(&out).1);
    }

    #[test]
    fn the_stream_encoder_still_fills_and_uses_jpeg() {
        let mut enc = Encoder::new();
        let mut fb = Framebuffer::new(256, 256).unwrap();
        fb.fill(fb.bounds(), [1, 2, 3]).unwrap();
        let mut out = Vec::new();
        let px = fb.read_rect(fb.bounds()).unwrap();
        assert_eq!(
            enc.encode_rgba(&px, fb.bounds(), Choice::Auto, &mut out)
                .unwrap(),
            ImageEncoding::Fill
        );
        let noisy = patterned(256, 256, 100_000);
        let px = noisy.read_rect(noisy.bounds()).unwrap();
        assert_eq!(
            enc.encode_rgba(&px, noisy.bounds(), Choice::Auto, &mut out)
                .unwrap(),
            ImageEncoding::Jpeg
        );
        assert!(enc
            .encode_rgba(&px[..8], noisy.bounds(), Choice::Auto, &mut out)
            .is_err());
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let fb = Framebuffer::new(10, 10).unwrap();
        let mut out = Vec::new();
        assert!(encode_rect(&fb, Rect::new(5, 5, 10, 10), Choice::Auto, &mut out).is_err());
    }
}

/// JPEG quality of thumbnails (small; text need not be readable in them).
const THUMBNAIL_QUALITY: u8 = 70;

/// A JPEG thumbnail of an RGBA image (`width` × `height`, rows back to back), scaled down by
/// averaging to at most `max_width` pixels wide, keeping the aspect ratio.
pub fn thumbnail_jpeg(
    rgba: &[u8],
    width: u32,
    height: u32,
    max_width: u32,
) -> Result<Vec<u8>, EncodeError> {
    portcullis_core::desktop::check_size(width, height)?;
    let needed = width as usize * height as usize * 4;
    if rgba.len() < needed || max_width == 0 {
        return Err(EncodeError::Desktop(DesktopError::BadPixelData {
            rect: Rect::new(0, 0, width, height),
            expected: needed,
            actual: rgba.len(),
        }));
    }
    // Whole-pixel box filter: each output pixel averages a `step` × `step` block.
    let step = width.div_ceil(max_width).max(1);
    let (tw, th) = ((width / step).max(1), (height / step).max(1));
    let mut out = Vec::with_capacity(tw as usize * th as usize * 3);
    for ty in 0..th {
        for tx in 0..tw {
            let mut sum = [0u32; 3];
            for y in ty * step..(ty * step + step).min(height) {
                let row = y as usize * width as usize * 4;
                for x in tx * step..(tx * step + step).min(width) {
                    let p = row + x as usize * 4;
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += u32::from(rgba[p + c]);
                    }
                }
            }
            let n = step * step;
            out.extend(sum.iter().map(|s| u8::try_from(s / n).unwrap_or(u8::MAX)));
        }
    }
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_QUALITY).write_image(
        &out,
        tw,
        th,
        ExtendedColorType::Rgb8,
    )?;
    Ok(jpeg)
}

#[cfg(test)]
mod thumbnail_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn thumbnail_is_small_and_a_jpeg() {
        let (w, h) = (1280u32, 800u32);
        let mut rgba = vec![0u8; (w * h * 4) as usize];
        for (i, px) in rgba.chunks_mut(4).enumerate() {
            px[0] = (i % 256) as u8;
            px[2] = 200;
        }
        let jpeg = thumbnail_jpeg(&rgba, w, h, 240).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
        let img = image::load_from_memory(&jpeg).unwrap();
        assert!(img.width() <= 240 && img.width() >= 200, "{}", img.width());
        assert!(thumbnail_jpeg(&rgba[..10], w, h, 240).is_err());
    }
}
