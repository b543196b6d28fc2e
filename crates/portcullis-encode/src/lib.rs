//! Encodes changed desktop rectangles as browser rectangle messages.
//!
//! This crate is the only one that depends on `image`. The policy: text and UI (few distinct
//! colours) go out as PNG, lossless, so terminal text stays sharp; large areas with many colours
//! (photos, gradients, video) go out as JPEG, which is many times smaller for that content.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use portcullis_core::wire::{self, ImageEncoding, WireError};
use portcullis_core::{DesktopError, Framebuffer, Rect};
use thiserror::Error;

/// Smallest area (pixels) considered for JPEG: below it PNG costs little whatever the content.
const JPEG_MIN_AREA: u64 = 128 * 128;
/// Distinct colours among the sampled pixels above which an area counts as photographic.
/// UI and text use a handful of colours (plus antialiasing ramps); photos use thousands.
const PHOTO_COLOURS: usize = 384;
/// Pixels sampled to count colours.
const SAMPLES: u64 = 2048;
/// Deflate level of PNG rectangles. Measured on a 1280x800 terminal desktop
/// (`examples/encode_cost.rs`): level 1 takes 7 ms and 142 KB, the default level 6 takes 33-40 ms
/// for 116 KB, the `Fast` setting 4 ms for 283 KB. Level 1 keeps a full repaint well inside a
/// frame time while sending about half of what noVNC's Tight does for the same workload.
const PNG_LEVEL: CompressionType = CompressionType::Level(1);
/// JPEG quality for photographic areas.
const JPEG_QUALITY: u8 = 80;

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
}

/// Which encoding to use, decided from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Always lossless.
    Lossless,
    /// PNG for UI, JPEG for photographic areas.
    Auto,
}

/// Appends one complete rectangle message (header and image) for `rect` of `fb` to `out`.
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
    let expected = usize::try_from(rect.area() * 4).unwrap_or(usize::MAX);
    if rgba.len() != expected {
        return Err(EncodeError::Desktop(DesktopError::BadPixelData {
            rect,
            expected,
            actual: rgba.len(),
        }));
    }
    if let Some(rgb) = solid_colour(rgba) {
        wire::write_rect_header(out, ImageEncoding::Fill, rect)?;
        out.extend_from_slice(&rgb);
        return Ok(ImageEncoding::Fill);
    }
    let photographic = matches!(choice, Choice::Auto) && looks_photographic(rgba, rect.area());
    let rgb = rgba_to_rgb(rgba);
    if photographic {
        wire::write_rect_header(out, ImageEncoding::Jpeg, rect)?;
        JpegEncoder::new_with_quality(&mut *out, JPEG_QUALITY).write_image(
            &rgb,
            rect.w,
            rect.h,
            ExtendedColorType::Rgb8,
        )?;
        return Ok(ImageEncoding::Jpeg);
    }
    wire::write_rect_header(out, ImageEncoding::Png, rect)?;
    PngEncoder::new_with_quality(&mut *out, PNG_LEVEL, FilterType::Adaptive).write_image(
        &rgb,
        rect.w,
        rect.h,
        ExtendedColorType::Rgb8,
    )?;
    Ok(ImageEncoding::Png)
}

/// The colour of a rectangle that has only one (backgrounds, cleared areas): sent as 3 bytes
/// instead of an image, and drawn by the browser without decoding anything.
fn solid_colour(rgba: &[u8]) -> Option<[u8; 3]> {
    let first = rgba.get(..3)?;
    rgba.chunks_exact(4)
        .all(|px| &px[..3] == first)
        .then(|| [first[0], first[1], first[2]])
}

fn rgba_to_rgb(rgba: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        rgb.extend_from_slice(&px[..3]);
    }
    rgb
}

fn looks_photographic(rgba: &[u8], area: u64) -> bool {
    if area < JPEG_MIN_AREA {
        return false;
    }
    let step = usize::try_from((area / SAMPLES).max(1)).unwrap_or(1);
    let mut seen = std::collections::HashSet::with_capacity(PHOTO_COLOURS + 1);
    for px in rgba.chunks_exact(4).step_by(step) {
        seen.insert([px[0], px[1], px[2]]);
        if seen.len() > PHOTO_COLOURS {
            return true;
        }
    }
    false
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
