//! ZRLE (RFC 6143, 7.7.6) decoded by us, for our pixel format only (32 bits per pixel, depth 24,
//! red in the lowest byte: a compressed pixel is 3 bytes, red, green, blue). Sans-I/O: one
//! rectangle's zlib data in, the rectangle's pixels out as one RGBX picture.
//!
//! Why not vnc-rs's decoder: it builds every 64×64 tile pixel by pixel, one `Vec` push per pixel
//! even for a tile of one colour, and hands each tile over as its own update (about 120 for a
//! full-screen change, each a framebuffer write and damage of its own). Here a tile of one
//! colour is a word fill and the rectangle is one picture: on a large change of a few colours
//! (a window closed, a terminal cleared) that is most of the gateway's time between the
//! target's bytes and the browser's (benches/LATENCY-NOTES.md).
//!
//! The stream vnc-rs reads is rewritten for it (`watch`, `framer`): vnc-rs reads a CopyRect of
//! each ZRLE rectangle onto itself instead, and the adapter, when vnc-rs reports that copy,
//! decodes the rectangle's data here and hands on the picture.
//!
//! Bounded: the zlib stream is inflated into at most what the rectangle's tiles can take
//! ([`max_tile_bytes`]), a run never goes past its tile, and every read is checked; a hostile
//! server gets an error, never a panic, a hang or memory beyond that bound.

use flate2::{Decompress, FlushDecompress, Status};
use portcullis_core::desktop::Rect;
use thiserror::Error;

/// Side of a ZRLE tile.
const TILE: u32 = 64;
/// Bytes of a compressed pixel in our pixel format.
const CPIXEL: usize = 3;

/// Why a ZRLE rectangle could not be decoded (the connection is then unusable: the zlib stream
/// is shared by every rectangle).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ZrleError {
    /// The zlib data is not a valid continuation of the stream.
    #[error("ZRLE data is not valid zlib data")]
    Zlib,
    /// The data inflates to more than the rectangle's tiles can hold.
    #[error("ZRLE data inflates to more than its rectangle can hold")]
    TooLong,
    /// The tiles end before the rectangle is covered.
    #[error("ZRLE data ends in the middle of a tile")]
    Truncated,
    /// Bytes are left over after the last tile.
    #[error("ZRLE data has {0} bytes after its last tile")]
    Trailing(usize),
    /// A tile's subencoding does not exist (17-127, 129).
    #[error("ZRLE tile with the unknown subencoding {0}")]
    Subencoding(u8),
    /// A run goes past the end of its tile.
    #[error("ZRLE run longer than its tile")]
    RunTooLong,
    /// A palette index beyond the tile's palette.
    #[error("ZRLE palette index {0} beyond a palette of {1}")]
    PaletteIndex(u8, usize),
    /// The rectangle is empty or too large to describe.
    #[error("ZRLE rectangle {0} cannot be decoded")]
    Rect(Rect),
}

/// The most bytes a rectangle's uncompressed ZRLE data can take: per tile its subencoding and
/// a palette of up to 127 pixels, per pixel at most 4 bytes (a plain run of one pixel: the
/// pixel and a length byte). Anything longer is not ZRLE.
pub fn max_tile_bytes(w: u32, h: u32) -> u64 {
    let tiles = u64::from(w.div_ceil(TILE)) * u64::from(h.div_ceil(TILE));
    tiles * (1 + 127 * CPIXEL as u64) + u64::from(w) * u64::from(h) * 4
}

/// A connection's ZRLE decoder: the zlib stream goes on from one rectangle to the next.
pub struct Zrle {
    inflate: Decompress,
    /// The current rectangle's uncompressed data (kept for its capacity).
    raw: Vec<u8>,
}

impl Default for Zrle {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Zrle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zrle").finish_non_exhaustive()
    }
}

impl Zrle {
    /// A decoder at the start of a connection's zlib stream.
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
            raw: Vec::new(),
        }
    }

    /// Decodes one rectangle: `zlib` is all of its data (the length the server announced).
    /// Returns `rect.w × rect.h` pixels, 4 bytes each (red, green, blue, 0).
    pub fn decode(&mut self, rect: Rect, zlib: &[u8]) -> Result<Vec<u8>, ZrleError> {
        if rect.w == 0 || rect.h == 0 || rect.w > 16_384 || rect.h > 16_384 {
            return Err(ZrleError::Rect(rect));
        }
        self.inflate_rect(zlib, max_tile_bytes(rect.w, rect.h))?;
        let pixels = (rect.w * rect.h) as usize;
        let mut out = vec![0_u8; pixels * 4];
        let mut r = Reader {
            data: &self.raw,
            at: 0,
        };
        for ty in (0..rect.h).step_by(TILE as usize) {
            for tx in (0..rect.w).step_by(TILE as usize) {
                let tile = Tile {
                    x: tx,
                    y: ty,
                    w: TILE.min(rect.w - tx),
                    h: TILE.min(rect.h - ty),
                    stride: rect.w,
                };
                decode_tile(&mut r, &tile, &mut out)?;
            }
        }
        let left = self.raw.len() - r.at;
        // A screenful kept for the next rectangle would be memory held for nothing while idle.
        if self.raw.capacity() > 1 << 20 {
            self.raw = Vec::new();
        }
        if left > 0 {
            return Err(ZrleError::Trailing(left));
        }
        Ok(out)
    }

    /// Inflates `zlib` into `self.raw`, at most `max` bytes.
    fn inflate_rect(&mut self, zlib: &[u8], max: u64) -> Result<(), ZrleError> {
        let max = usize::try_from(max).map_err(|_| ZrleError::TooLong)?;
        self.raw.clear();
        let mut input = zlib;
        loop {
            // Room to grow, never past the bound plus one byte (which says "too long").
            if self.raw.len() == self.raw.capacity() {
                let room = (self.raw.len().max(64 * 1024)).min(max + 1 - self.raw.len());
                if room == 0 {
                    return Err(ZrleError::TooLong);
                }
                self.raw.reserve_exact(room);
            }
            let before_in = self.inflate.total_in();
            let before_out = self.raw.len();
            let status = self
                .inflate
                .decompress_vec(input, &mut self.raw, FlushDecompress::Sync)
                .map_err(|_| ZrleError::Zlib)?;
            let used = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(usize::MAX);
            input = input.get(used..).unwrap_or_default();
            if self.raw.len() > max {
                return Err(ZrleError::TooLong);
            }
            let progressed = used > 0 || self.raw.len() > before_out;
            let out_full = self.raw.len() == self.raw.capacity();
            match status {
                // A server never ends the stream: one that does has nothing more to give.
                Status::StreamEnd => break,
                _ if input.is_empty() && !out_full => break,
                _ if !progressed && !out_full => return Err(ZrleError::Zlib),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads a rectangle's uncompressed data.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, ZrleError> {
        let b = *self.data.get(self.at).ok_or(ZrleError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], ZrleError> {
        let end = self.at.checked_add(n).ok_or(ZrleError::Truncated)?;
        let b = self.data.get(self.at..end).ok_or(ZrleError::Truncated)?;
        self.at = end;
        Ok(b)
    }

    /// A compressed pixel as an RGBX word (in memory order).
    fn cpixel(&mut self) -> Result<[u8; 4], ZrleError> {
        let b = self.bytes(CPIXEL)?;
        Ok([b[0], b[1], b[2], 0])
    }

    fn palette(&mut self, n: usize) -> Result<Vec<[u8; 4]>, ZrleError> {
        (0..n).map(|_| self.cpixel()).collect()
    }

    /// A run length: bytes of 255 add up, the first below 255 ends it; the run is that sum + 1.
    /// Never more than `most` (what is left of the tile).
    fn run(&mut self, most: usize) -> Result<usize, ZrleError> {
        let mut len = 1_usize;
        loop {
            let b = self.u8()?;
            len += usize::from(b);
            if len > most {
                return Err(ZrleError::RunTooLong);
            }
            if b != 255 {
                return Ok(len);
            }
        }
    }
}

/// Where a tile lies in the rectangle's picture (`stride` pixels per row).
struct Tile {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    stride: u32,
}

impl Tile {
    fn pixels(&self) -> usize {
        (self.w * self.h) as usize
    }

    /// Byte offset in the picture of the tile's `i`-th pixel (row-major within the tile).
    fn offset(&self, i: usize) -> usize {
        let w = self.w as usize;
        let (row, col) = (i / w, i % w);
        ((self.y as usize + row) * self.stride as usize + self.x as usize + col) * 4
    }

    /// Paints pixels `from..from + n` of the tile in `px`.
    fn run(&self, out: &mut [u8], from: usize, n: usize, px: [u8; 4]) {
        let w = self.w as usize;
        let mut i = from;
        let end = from + n;
        while i < end {
            // The rest of this tile row, or of the run.
            let take = (w - i % w).min(end - i);
            let at = self.offset(i);
            for dst in out[at..at + take * 4].chunks_exact_mut(4) {
                dst.copy_from_slice(&px);
            }
            i += take;
        }
    }
}

fn decode_tile(r: &mut Reader<'_>, t: &Tile, out: &mut [u8]) -> Result<(), ZrleError> {
    let pixels = t.pixels();
    match r.u8()? {
        // Raw: every pixel.
        0 => {
            for i in 0..pixels {
                let px = r.cpixel()?;
                let at = t.offset(i);
                out[at..at + 4].copy_from_slice(&px);
            }
        }
        // One colour.
        1 => {
            let px = r.cpixel()?;
            t.run(out, 0, pixels, px);
        }
        // Packed palette: 1, 2 or 4 bits an index, each row starting on a byte.
        n @ 2..=16 => {
            let palette = r.palette(usize::from(n))?;
            let bits = match n {
                2 => 1,
                3..=4 => 2,
                _ => 4,
            };
            let row_bytes = (t.w as usize * bits).div_ceil(8);
            let per_byte = 8 / bits;
            let mask = (1_u8 << bits) - 1;
            for row in 0..t.h as usize {
                let packed = r.bytes(row_bytes)?;
                for col in 0..t.w as usize {
                    let byte = packed[col / per_byte];
                    let shift = 8 - bits * (col % per_byte + 1);
                    let index = (byte >> shift) & mask;
                    let px = *palette
                        .get(usize::from(index))
                        .ok_or(ZrleError::PaletteIndex(index, palette.len()))?;
                    let at = t.offset(row * t.w as usize + col);
                    out[at..at + 4].copy_from_slice(&px);
                }
            }
        }
        // Plain runs.
        128 => {
            let mut i = 0;
            while i < pixels {
                let px = r.cpixel()?;
                let n = r.run(pixels - i)?;
                t.run(out, i, n, px);
                i += n;
            }
        }
        // Palette runs: an index with its top bit clear is one pixel, with it set a run.
        n @ 130..=255 => {
            let palette = r.palette(usize::from(n - 128))?;
            let mut i = 0;
            while i < pixels {
                let b = r.u8()?;
                let index = b & 0x7f;
                let px = *palette
                    .get(usize::from(index))
                    .ok_or(ZrleError::PaletteIndex(index, palette.len()))?;
                let n = if b & 0x80 == 0 { 1 } else { r.run(pixels - i)? };
                t.run(out, i, n, px);
                i += n;
            }
        }
        other => return Err(ZrleError::Subencoding(other)),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
