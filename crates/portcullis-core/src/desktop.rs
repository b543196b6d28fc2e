//! The protocol-neutral desktop model.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest width or height we accept from any target (matches common server limits).
pub const MAX_DIMENSION: u32 = 8192;
/// Largest pixel count of a desktop: 8K UHD. Bounds the framebuffer at 128 MiB of RGBA.
pub const MAX_PIXELS: u64 = 7680 * 4320;
/// Largest clipboard text the model carries between a target and a viewer, in bytes.
pub const MAX_CLIPBOARD_BYTES: usize = 128 * 1024;

/// Errors of the desktop model: all of them mean the peer sent something inconsistent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DesktopError {
    /// A desktop size of zero or beyond the limits.
    #[error("invalid desktop size {width}x{height} (limit {MAX_DIMENSION} per side, {MAX_PIXELS} pixels)")]
    InvalidSize {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// A rectangle that does not lie inside the desktop.
    #[error("rectangle {rect} lies outside the {width}x{height} desktop")]
    OutOfBounds {
        /// The offending rectangle.
        rect: Rect,
        /// Desktop width.
        width: u32,
        /// Desktop height.
        height: u32,
    },
    /// Pixel data whose length does not match its rectangle.
    #[error("pixel data of {actual} bytes for rectangle {rect}, expected {expected}")]
    BadPixelData {
        /// The rectangle.
        rect: Rect,
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
}

/// An axis-aligned rectangle in desktop pixels. Empty when `w` or `h` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}+{}+{}", self.w, self.h, self.x, self.y)
    }
}

impl Rect {
    /// A rectangle from its origin and size.
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// True when it covers no pixel.
    pub const fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// Right edge (exclusive), without overflow.
    pub const fn right(&self) -> u64 {
        self.x as u64 + self.w as u64
    }

    /// Bottom edge (exclusive), without overflow.
    pub const fn bottom(&self) -> u64 {
        self.y as u64 + self.h as u64
    }

    /// Number of pixels covered.
    pub const fn area(&self) -> u64 {
        self.w as u64 * self.h as u64
    }

    /// The smallest rectangle covering both. An empty rectangle is neutral.
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let r = self.right().max(other.right());
        let b = self.bottom().max(other.bottom());
        Rect::new(
            x,
            y,
            clamp_u32(r - u64::from(x)),
            clamp_u32(b - u64::from(y)),
        )
    }

    /// The overlap of both, empty if they do not overlap.
    pub fn intersection(&self, other: &Rect) -> Rect {
        let x = self.x.max(other.x);
        let y = self.y.max(other.y);
        let r = self.right().min(other.right());
        let b = self.bottom().min(other.bottom());
        if r <= u64::from(x) || b <= u64::from(y) {
            return Rect::default();
        }
        Rect::new(
            x,
            y,
            clamp_u32(r - u64::from(x)),
            clamp_u32(b - u64::from(y)),
        )
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Rect) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.right() <= self.right()
            && other.bottom() <= self.bottom()
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Byte order of 4-byte pixels handed to [`Framebuffer::put_rect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelLayout {
    /// Red, green, blue, then an ignored byte.
    Rgbx,
    /// Blue, green, red, then an ignored byte.
    Bgrx,
}

/// The desktop image: RGBA, 4 bytes a pixel, row-major, alpha always 255.
///
/// INVARIANT: `data.len() == width * height * 4` and the size is within [`MAX_DIMENSION`] and
/// [`MAX_PIXELS`]; every method keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Framebuffer {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for Framebuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framebuffer")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// Checks a desktop size against the limits.
pub fn check_size(width: u32, height: u32) -> Result<(), DesktopError> {
    if width == 0
        || height == 0
        || width > MAX_DIMENSION
        || height > MAX_DIMENSION
        || u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(DesktopError::InvalidSize { width, height });
    }
    Ok(())
}

impl Framebuffer {
    /// A black desktop of the given size.
    pub fn new(width: u32, height: u32) -> Result<Self, DesktopError> {
        check_size(width, height)?;
        let len = pixel_bytes(width, height);
        let mut data = vec![0u8; len];
        for px in data.chunks_exact_mut(4) {
            px[3] = 255;
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The whole desktop as a rectangle.
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    /// The raw RGBA bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Changes the size; the content becomes black.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), DesktopError> {
        *self = Framebuffer::new(width, height)?;
        Ok(())
    }

    fn check_rect(&self, rect: &Rect) -> Result<(), DesktopError> {
        if !self.bounds().contains(rect) {
            return Err(DesktopError::OutOfBounds {
                rect: *rect,
                width: self.width,
                height: self.height,
            });
        }
        Ok(())
    }

    /// `rect` lies inside the desktop and `pixels` holds exactly its 4-byte pixels.
    fn check_pixels(&self, rect: Rect, pixels: &[u8]) -> Result<(), DesktopError> {
        self.check_rect(&rect)?;
        let expected = pixel_bytes(rect.w, rect.h);
        if pixels.len() != expected {
            return Err(DesktopError::BadPixelData {
                rect,
                expected,
                actual: pixels.len(),
            });
        }
        Ok(())
    }

    fn offset(&self, x: u32, y: u32) -> usize {
        // INVARIANT: callers checked x < width and y < height, so this fits in the buffer length.
        (y as usize * self.width as usize + x as usize) * 4
    }

    /// Writes 4-byte pixels of `layout` into `rect`. `pixels` holds `rect.w * rect.h` pixels.
    pub fn put_rect(
        &mut self,
        rect: Rect,
        pixels: &[u8],
        layout: PixelLayout,
    ) -> Result<(), DesktopError> {
        self.check_pixels(rect, pixels)?;
        if rect.is_empty() {
            return Ok(());
        }
        let row_len = rect.w as usize * 4;
        for (y, src) in (rect.y..).zip(pixels.chunks_exact(row_len)) {
            let start = self.offset(rect.x, y);
            put_row(&mut self.data[start..start + row_len], src, layout);
        }
        Ok(())
    }

    /// [`Framebuffer::put_rect`], telling which parts of `rect` the pixels really changed: runs
    /// of 64×64 tiles (on the desktop's grid, cut to `rect`) holding a pixel that differs from
    /// what was there, tile rows of the same extent joined. A server that reports whole strips
    /// of which only some changed (x11vnc polls the screen in tiles and sends what rides along)
    /// then costs the viewers and the recorder only the change.
    pub fn put_rect_changed(
        &mut self,
        rect: Rect,
        pixels: &[u8],
        layout: PixelLayout,
    ) -> Result<Vec<Rect>, DesktopError> {
        self.check_pixels(rect, pixels)?;
        if rect.is_empty() {
            return Ok(Vec::new());
        }
        const T: u32 = CHANGE_TILE;
        let right = rect.x + rect.w;
        let first_col = rect.x / T;
        let mut changed = vec![false; ((right - 1) / T - first_col + 1) as usize];
        let mut open: Vec<Rect> = Vec::new();
        let mut done: Vec<Rect> = Vec::new();
        let mut band_top = rect.y;
        let row_len = rect.w as usize * 4;
        for (y, src) in (rect.y..).zip(pixels.chunks_exact(row_len)) {
            let start = self.offset(rect.x, y);
            let dst = &mut self.data[start..start + row_len];
            let mut x = rect.x;
            while x < right {
                let end = ((x / T + 1) * T).min(right);
                let (a, b) = ((x - rect.x) as usize * 4, (end - rect.x) as usize * 4);
                if put_row(&mut dst[a..b], &src[a..b], layout) {
                    changed[(x / T - first_col) as usize] = true;
                }
                x = end;
            }
            if (y + 1) % T != 0 && y + 1 != rect.y + rect.h {
                continue;
            }
            // The end of a tile row: its runs of changed tiles.
            let h = y + 1 - band_top;
            let mut next = Vec::new();
            let mut col = 0;
            while col < changed.len() {
                if !changed[col] {
                    col += 1;
                    continue;
                }
                let run = changed[col..].iter().take_while(|&&c| c).count();
                // At most 129 columns (8192 pixels wide): these fit.
                let at = |c: usize| {
                    first_col
                        .saturating_add(u32::try_from(c).unwrap_or(u32::MAX))
                        .saturating_mul(T)
                };
                let x0 = at(col).max(rect.x);
                let x1 = at(col + run).min(right);
                let r = Rect::new(x0, band_top, x1 - x0, h);
                match open.iter().position(|o| o.x == r.x && o.w == r.w) {
                    Some(i) => {
                        let mut o = open.swap_remove(i);
                        o.h += h;
                        next.push(o);
                    }
                    None => next.push(r),
                }
                col += run;
            }
            done.append(&mut open);
            open = next;
            changed.iter_mut().for_each(|c| *c = false);
            band_top = y + 1;
        }
        done.append(&mut open);
        Ok(done)
    }

    /// Fills `rect` with one colour.
    pub fn fill(&mut self, rect: Rect, rgb: [u8; 3]) -> Result<(), DesktopError> {
        self.check_rect(&rect)?;
        for y in rect.y..rect.y + rect.h {
            let start = self.offset(rect.x, y);
            for px in self.data[start..start + rect.w as usize * 4].chunks_exact_mut(4) {
                px.copy_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
            }
        }
        Ok(())
    }

    /// Copies the pixels of `src` to the rectangle of the same size at `dst`'s origin
    /// (overlap allowed, as in RFB CopyRect).
    pub fn copy_rect(&mut self, dst: Rect, src: Rect) -> Result<(), DesktopError> {
        let dst = Rect::new(dst.x, dst.y, src.w, src.h);
        self.check_rect(&src)?;
        self.check_rect(&dst)?;
        let row_len = src.w as usize * 4;
        let rows: Box<dyn Iterator<Item = u32>> = if dst.y > src.y {
            Box::new((0..src.h).rev())
        } else {
            Box::new(0..src.h)
        };
        for row in rows {
            let s = self.offset(src.x, src.y + row);
            let d = self.offset(dst.x, dst.y + row);
            self.data.copy_within(s..s + row_len, d);
        }
        Ok(())
    }

    /// Copies `rect` out as tightly packed RGBA.
    pub fn read_rect(&self, rect: Rect) -> Result<Vec<u8>, DesktopError> {
        self.check_rect(&rect)?;
        let row_len = rect.w as usize * 4;
        let mut out = Vec::with_capacity(pixel_bytes(rect.w, rect.h));
        for y in rect.y..rect.y + rect.h {
            let start = self.offset(rect.x, y);
            out.extend_from_slice(&self.data[start..start + row_len]);
        }
        Ok(out)
    }

    /// The RGB value of one pixel, `None` outside the desktop.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let o = self.offset(x, y);
        Some([self.data[o], self.data[o + 1], self.data[o + 2]])
    }
}

fn pixel_bytes(w: u32, h: u32) -> usize {
    w as usize * h as usize * 4
}

/// Mouse button bits of [`InputEvent::Pointer`] (RFB's layout, used by every adapter).
pub mod buttons {
    /// Primary button.
    pub const LEFT: u8 = 1;
    /// Middle button.
    pub const MIDDLE: u8 = 2;
    /// Secondary button.
    pub const RIGHT: u8 = 4;
    /// Wheel one notch up.
    pub const WHEEL_UP: u8 = 8;
    /// Wheel one notch down.
    pub const WHEEL_DOWN: u8 = 16;
    /// Wheel one notch left.
    pub const WHEEL_LEFT: u8 = 32;
    /// Wheel one notch right.
    pub const WHEEL_RIGHT: u8 = 64;
}

/// Input from a viewer to the target, protocol-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputEvent {
    /// A key went down or up, as an X11 keysym.
    Key {
        /// X11 keysym.
        keysym: u32,
        /// Pressed (true) or released.
        down: bool,
    },
    /// The pointer moved or its buttons changed (see [`buttons`]).
    Pointer {
        /// Desktop x.
        x: u32,
        /// Desktop y.
        y: u32,
        /// Button mask.
        buttons: u8,
    },
    /// The viewer's clipboard text, at most [`MAX_CLIPBOARD_BYTES`].
    Clipboard(String),
    /// Files a native RDP client copied, fetched by the gateway when the session's
    /// [`ClipFileTerms`] allowed it, else only named; the broker's policy decides, and only
    /// allowed files (with their content) reach the target.
    ClipboardFiles(Vec<ClipFile>),
}

/// Largest total size of the files of one clipboard copy that the gateway carries (RDP), whatever
/// the policy's own limit: they are held in memory while they are offered.
pub const MAX_CLIPBOARD_FILES_BYTES: u64 = 64 * 1024 * 1024;
/// Most files one clipboard copy may name for the gateway to carry them.
pub const MAX_CLIPBOARD_FILES: usize = 256;

/// A file copied on an RDP clipboard, fetched whole by the gateway from the side that copied it
/// (store and forward: the other side is offered it only once the policy allowed it).
#[derive(Clone, PartialEq, Eq)]
pub struct ClipFile {
    /// Its name (no path).
    pub name: String,
    /// Its size: the content's length, or what the copying side declared when not fetched.
    pub size: u64,
    /// The content, with its SHA-256 (hex). `None`: not fetched, because the session's terms
    /// do not let files cross that way or they are larger than allowed.
    pub content: Option<(Arc<[u8]>, String)>,
}

impl std::fmt::Debug for ClipFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipFile")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("sha256", &self.content.as_ref().map(|(_, h)| h))
            .finish()
    }
}

/// Which clipboard files the gateway may fetch from the side that copied them, decided up front
/// from the session's policy so that refused files are never fetched (only named, so the refusal
/// can be recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClipFileTerms {
    /// Files copied on the user's machine may go to the target.
    pub to_target: bool,
    /// Files copied on the target may go to the user's machine.
    pub to_client: bool,
    /// Their total size at most (bytes).
    pub max_bytes: u64,
}

/// Timeouts for reaching a target (any protocol).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Protocol handshake and authentication, up to the first screen size.
    pub handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            handshake: Duration::from_secs(10),
        }
    }
}

/// A command for a target adapter (VNC or RDP), protocol-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetCommand {
    /// Relay viewer input.
    Input(InputEvent),
    /// Ask the target to send the whole screen again.
    FullRefresh,
    /// A device-redirection message from the native client that owns the session's redirected
    /// drive (RDP `rdpdr`), opaque here: only the RDP adapter reads it, and decides on it.
    Device(Vec<u8>),
}

/// A change reported by a target adapter, in desktop-model terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUpdate {
    /// The desktop has a new size; its content is undefined until repainted.
    Resize {
        /// New width.
        width: u32,
        /// New height.
        height: u32,
    },
    /// New pixels for a rectangle.
    Pixels {
        /// Where.
        rect: Rect,
        /// `rect.w * rect.h` pixels of 4 bytes.
        data: Vec<u8>,
        /// Their byte order.
        layout: PixelLayout,
    },
    /// Pixels moved within the desktop (the destination takes the source's size).
    Copy {
        /// Destination origin.
        dst: Rect,
        /// Source rectangle.
        src: Rect,
    },
    /// The target's clipboard text changed.
    Clipboard(String),
    /// The target rang the bell.
    Bell,
    /// A device-redirection message for the native client that owns the session's redirected
    /// drive (RDP `rdpdr`), already filtered by the adapter.
    Device(Vec<u8>),
    /// Something happened to a file on the user's redirected drive.
    File(FileEvent),
    /// Files copied on the target's clipboard (RDP), fetched by the adapter when the session's
    /// [`ClipFileTerms`] allowed it, else only named; the broker's policy decides.
    ClipboardFiles(Vec<ClipFile>),
    /// The target's current update is complete: what came since the previous one is a
    /// consistent picture, to be shown now. Only adapters that know it send it (VNC); without
    /// it the broker waits for the stream of updates to pause.
    UpdateEnd,
}

/// Most bytes of pixels in one [`TargetUpdate::Pixels`] on its way from an adapter to the
/// session. The queue between them counts updates (16), not bytes: a larger rectangle (a
/// target's full-screen Raw update is 8 MB at 1080p, 133 MB at 8K) goes as bands of whole rows
/// ([`TargetUpdate::into_bands`]), so what a target can make the gateway hold in that queue is
/// bounded by this, not by the desktop's size (the rectangle being cut holds its own size until
/// its last band is sent).
pub const MAX_UPDATE_PIXEL_BYTES: usize = 1 << 20;

impl TargetUpdate {
    /// This update as updates of at most [`MAX_UPDATE_PIXEL_BYTES`] of pixels each (bands of
    /// whole rows, top to bottom; a row wider than that is one band). Anything else, and pixels
    /// whose data does not match their rectangle (the framebuffer refuses them), comes back as
    /// it is.
    pub fn into_bands(self) -> Bands {
        Bands::new(self)
    }
}

/// The updates of [`TargetUpdate::into_bands`].
#[derive(Debug)]
pub struct Bands {
    whole: Option<TargetUpdate>,
    /// Pixels split: the rectangle, its data, its layout, rows per band, the next row.
    split: Option<(Rect, Vec<u8>, PixelLayout, u32, u32)>,
}

impl Bands {
    fn new(update: TargetUpdate) -> Self {
        let whole = |u| Self {
            whole: Some(u),
            split: None,
        };
        let TargetUpdate::Pixels { rect, data, layout } = update else {
            return whole(update);
        };
        let row = rect.w as usize * 4;
        if data.len() <= MAX_UPDATE_PIXEL_BYTES || row == 0 || data.len() != row * rect.h as usize {
            return whole(TargetUpdate::Pixels { rect, data, layout });
        }
        let rows = u32::try_from((MAX_UPDATE_PIXEL_BYTES / row).max(1)).unwrap_or(1);
        Self {
            whole: None,
            split: Some((rect, data, layout, rows, 0)),
        }
    }
}

impl Iterator for Bands {
    type Item = TargetUpdate;

    fn next(&mut self) -> Option<TargetUpdate> {
        if let Some(u) = self.whole.take() {
            return Some(u);
        }
        let (rect, data, layout, rows, next) = self.split.as_mut()?;
        if *next >= rect.h {
            self.split = None;
            return None;
        }
        let h = (*rows).min(rect.h - *next);
        let row = rect.w as usize * 4;
        let from = *next as usize * row;
        let band = data.get(from..from + h as usize * row)?.to_vec();
        let out = TargetUpdate::Pixels {
            rect: Rect::new(rect.x, rect.y + *next, rect.w, h),
            data: band,
            layout: *layout,
        };
        *next += h;
        Some(out)
    }
}

/// Which way a file crossed, seen from the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileDirection {
    /// From the user's machine to the target (the target read a file of the user's drive).
    Upload,
    /// From the target to the user's machine (the target wrote a file on the user's drive).
    Download,
}

/// What the gateway saw happen to a file on a redirected drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    /// File content crossed (reported when the target closed the file).
    Transferred {
        /// Which way.
        direction: FileDirection,
        /// The drive's name and the path on it (`share\dir\file.txt`).
        path: String,
        /// Bytes that crossed.
        bytes: u64,
        /// SHA-256 (hex) of the content, when it crossed as one run from its first byte;
        /// `None` when the target read or wrote it out of order.
        sha256: Option<String>,
    },
    /// The adapter refused an operation because the session's terms do not allow its
    /// direction (the target was told access is denied).
    Refused {
        /// The direction that is not allowed.
        direction: FileDirection,
        /// The drive's name and the path on it.
        path: String,
        /// What was attempted (`read`, `write`, `create`, `delete`, `rename`, ...).
        operation: String,
    },
    /// The target deleted or renamed a file on the user's drive (allowed).
    Changed {
        /// The drive's name and the path on it.
        path: String,
        /// What changed (`deleted`, `renamed to ...`).
        change: String,
    },
}

/// Side of the tiles [`Framebuffer::put_rect_changed`] tells changes in.
pub const CHANGE_TILE: u32 = 64;

/// Writes one row of 4-byte `layout` pixels into `dst` (RGBA, alpha 255); true when a pixel
/// differs from what `dst` held. A word per pixel, which the compiler vectorises (byte by byte
/// it did not: 0.8 ms of a 445k-pixel VNC update, perf in benches/LATENCY-NOTES.md; 0.25 → 0.12
/// ms warm).
fn put_row(dst: &mut [u8], src: &[u8], layout: PixelLayout) -> bool {
    let mut differs = 0u32;
    match layout {
        PixelLayout::Rgbx => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                let px = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) | 0xff00_0000;
                differs |= px ^ u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                d.copy_from_slice(&px.to_le_bytes());
            }
        }
        PixelLayout::Bgrx => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                let v = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                let px = (v & 0x0000_ff00) | ((v >> 16) & 0xff) | ((v & 0xff) << 16) | 0xff00_0000;
                differs |= px ^ u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                d.copy_from_slice(&px.to_le_bytes());
            }
        }
    }
    differs != 0
}

/// What applying a [`TargetUpdate`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// These pixels changed.
    Damaged(Rect),
    /// The size changed; everything must be repainted.
    Resized,
    /// Nothing in the image changed.
    Nothing,
}

impl Framebuffer {
    /// Applies a target's update, validating it against the current size.
    pub fn apply(&mut self, update: &TargetUpdate) -> Result<Applied, DesktopError> {
        match update {
            TargetUpdate::Resize { width, height } => {
                if (*width, *height) != (self.width, self.height) {
                    self.resize(*width, *height)?;
                }
                Ok(Applied::Resized)
            }
            TargetUpdate::Pixels { rect, data, layout } => {
                self.put_rect(*rect, data, *layout)?;
                Ok(Applied::Damaged(*rect))
            }
            TargetUpdate::Copy { dst, src } => {
                self.copy_rect(*dst, *src)?;
                Ok(Applied::Damaged(Rect::new(dst.x, dst.y, src.w, src.h)))
            }
            TargetUpdate::Clipboard(_)
            | TargetUpdate::Bell
            | TargetUpdate::Device(_)
            | TargetUpdate::File(_)
            | TargetUpdate::ClipboardFiles(_)
            | TargetUpdate::UpdateEnd => Ok(Applied::Nothing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_pixels_go_as_bands_of_whole_rows_that_paint_the_same_picture() {
        for (w, h) in [(1920u32, 1080u32), (300, 7), (300_000, 2), (512, 512)] {
            let data: Vec<u8> = (0..w as usize * h as usize * 4)
                .map(|i| u8::try_from(i % 251).unwrap_or(0))
                .collect();
            let whole = TargetUpdate::Pixels {
                rect: Rect::new(5, 9, w, h),
                data: data.clone(),
                layout: PixelLayout::Bgrx,
            };
            let mut next_y = 9;
            let mut joined = Vec::new();
            let mut n = 0;
            for band in whole.into_bands() {
                let TargetUpdate::Pixels { rect, data, layout } = band else {
                    panic!("not pixels");
                };
                assert_eq!(
                    (rect.x, rect.y, rect.w, layout),
                    (5, next_y, w, PixelLayout::Bgrx)
                );
                assert_eq!(data.len(), rect.w as usize * rect.h as usize * 4);
                // At most the bound, or one row when a row alone is over it.
                assert!(data.len() <= MAX_UPDATE_PIXEL_BYTES.max(w as usize * 4));
                next_y += rect.h;
                joined.extend_from_slice(&data);
                n += 1;
            }
            assert_eq!(next_y, 9 + h);
            assert_eq!(joined, data, "{w}x{h}");
            let small = data.len() <= MAX_UPDATE_PIXEL_BYTES;
            assert_eq!(n == 1, small, "{w}x{h}: {n} bands");
        }
    }

    #[test]
    fn put_rect_changed_names_every_changed_pixel_and_little_else() {
        let mut seed = 3u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            seed >> 8
        };
        for layout in [PixelLayout::Rgbx, PixelLayout::Bgrx] {
            let mut fb = Framebuffer::new(1000, 700).unwrap();
            fb.fill(fb.bounds(), [9, 9, 9]).unwrap();
            for _ in 0..200 {
                let (x, y) = (next() % 1000, next() % 700);
                let r = Rect::new(
                    x,
                    y,
                    (1000 - x).min(1 + next() % 400),
                    (700 - y).min(1 + next() % 300),
                );
                // New pixels: what is there, with a few changed at random.
                let mut px = Vec::with_capacity(usize::try_from(r.area() * 4).unwrap());
                for yy in r.y..r.y + r.h {
                    for xx in r.x..r.x + r.w {
                        let [a, b, c] = fb.pixel(xx, yy).unwrap();
                        let (a, b, c) = if next() % 997 == 0 {
                            (a ^ 0x10, b, c)
                        } else {
                            (a, b, c)
                        };
                        let word = match layout {
                            PixelLayout::Rgbx => [a, b, c, 0],
                            PixelLayout::Bgrx => [c, b, a, 0],
                        };
                        px.extend_from_slice(&word);
                    }
                }
                let before = fb.clone();
                let mut whole = fb.clone();
                whole.put_rect(r, &px, layout).unwrap();
                let changed = fb.put_rect_changed(r, &px, layout).unwrap();
                assert_eq!(fb, whole, "the same pixels as put_rect");
                let mut covered = vec![0u8; (r.w * r.h) as usize];
                for c in &changed {
                    assert!(r.contains(c) && !c.is_empty(), "{c} outside {r}");
                    for yy in c.y..c.y + c.h {
                        for xx in c.x..c.x + c.w {
                            covered[((yy - r.y) * r.w + xx - r.x) as usize] += 1;
                        }
                    }
                }
                assert!(covered.iter().all(|&n| n <= 1), "overlapping parts");
                for yy in r.y..r.y + r.h {
                    for xx in r.x..r.x + r.w {
                        if before.pixel(xx, yy) != fb.pixel(xx, yy) {
                            assert_eq!(
                                covered[((yy - r.y) * r.w + xx - r.x) as usize],
                                1,
                                "{xx},{yy} changed, not named"
                            );
                        }
                    }
                }
                // Only tiles holding a change are named.
                for c in &changed {
                    for ty in (c.y / CHANGE_TILE)..=((c.y + c.h - 1) / CHANGE_TILE) {
                        for tx in (c.x / CHANGE_TILE)..=((c.x + c.w - 1) / CHANGE_TILE) {
                            let t = Rect::new(
                                tx * CHANGE_TILE,
                                ty * CHANGE_TILE,
                                CHANGE_TILE,
                                CHANGE_TILE,
                            )
                            .intersection(c);
                            let any = (t.y..t.y + t.h).any(|yy| {
                                (t.x..t.x + t.w).any(|xx| before.pixel(xx, yy) != fb.pixel(xx, yy))
                            });
                            assert!(any, "tile {tx},{ty} of {c} named without a change");
                        }
                    }
                }
            }
            // Nothing new: nothing named.
            let all = fb.read_rect(fb.bounds()).unwrap();
            assert!(fb
                .put_rect_changed(fb.bounds(), &all, PixelLayout::Rgbx)
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn put_rect_changed_finds_one_pixel_at_any_tile_edge_whatever_the_padding_byte() {
        // 8192 wide: the widest desktop; the update starts mid-tile.
        let mut fb = Framebuffer::new(8192, 130).unwrap();
        let r = Rect::new(30, 1, 8162, 129);
        let mut px = fb.read_rect(r).unwrap();
        // The padding byte of the new pixels is anything: not a change.
        for (i, p) in px.chunks_exact_mut(4).enumerate() {
            p[3] = u8::try_from(i % 251).unwrap();
        }
        assert!(fb
            .put_rect_changed(r, &px, PixelLayout::Rgbx)
            .unwrap()
            .is_empty());
        for (x, y) in [
            (30, 1),
            (63, 1),
            (64, 1),
            (127, 63),
            (128, 64),
            (8191, 129),
            (4000, 70),
        ] {
            let i = (((y - r.y) * r.w + (x - r.x)) * 4) as usize;
            px[i + 2] ^= 1;
            let changed = fb.put_rect_changed(r, &px, PixelLayout::Rgbx).unwrap();
            let tile = Rect::new(x / 64 * 64, y / 64 * 64, 64, 64).intersection(&r);
            assert_eq!(changed, vec![tile], "one pixel at {x},{y}");
            assert_eq!(fb.pixel(x, y).map(|p| p[2] & 1), Some(1), "written");
            px[i + 2] ^= 1;
            fb.put_rect_changed(r, &px, PixelLayout::Rgbx).unwrap();
        }
    }

    #[test]
    fn other_updates_and_mismatched_pixels_go_as_they_are() {
        let odd = TargetUpdate::Pixels {
            rect: Rect::new(0, 0, 1000, 1000),
            data: vec![0; 4_000_004],
            layout: PixelLayout::Rgbx,
        };
        let out: Vec<_> = odd.clone().into_bands().collect();
        assert_eq!(out, vec![odd]);
        let out: Vec<_> = TargetUpdate::UpdateEnd.into_bands().collect();
        assert_eq!(out, vec![TargetUpdate::UpdateEnd]);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(Framebuffer::new(0, 10).is_err());
        assert!(Framebuffer::new(MAX_DIMENSION + 1, 10).is_err());
        assert!(Framebuffer::new(8192, 8192).is_err());
        assert!(Framebuffer::new(1920, 1080).is_ok());
    }

    #[test]
    fn put_and_read_round_trip_in_both_layouts() {
        let mut fb = Framebuffer::new(4, 3).unwrap();
        let r = Rect::new(1, 1, 2, 2);
        let px: Vec<u8> = (0..16).collect();
        fb.put_rect(r, &px, PixelLayout::Rgbx).unwrap();
        let back = fb.read_rect(r).unwrap();
        assert_eq!(&back[0..4], &[0, 1, 2, 255]);
        fb.put_rect(r, &px, PixelLayout::Bgrx).unwrap();
        assert_eq!(fb.pixel(1, 1), Some([2, 1, 0]));
        assert_eq!(fb.pixel(2, 2), Some([14, 13, 12]));
        assert_eq!(fb.pixel(0, 0), Some([0, 0, 0]));
    }

    #[test]
    fn put_rect_writes_every_pixel_exactly_in_both_layouts() {
        // Every byte value in every channel (the word-wise conversion must not mix pixels).
        let (w, h) = (16u32, 16u32);
        let px: Vec<u8> = (0..w * h * 4)
            .map(|i| u8::try_from(i * 7 % 256).unwrap())
            .collect();
        for layout in [PixelLayout::Rgbx, PixelLayout::Bgrx] {
            let mut fb = Framebuffer::new(w + 2, h + 1).unwrap();
            let r = Rect::new(1, 1, w, h);
            fb.put_rect(r, &px, layout).unwrap();
            let back = fb.read_rect(r).unwrap();
            for (i, (got, src)) in back.chunks_exact(4).zip(px.chunks_exact(4)).enumerate() {
                let want = match layout {
                    PixelLayout::Rgbx => [src[0], src[1], src[2], 255],
                    PixelLayout::Bgrx => [src[2], src[1], src[0], 255],
                };
                assert_eq!(got, want, "{layout:?} pixel {i}");
            }
            // Nothing outside the rectangle was touched.
            assert_eq!(fb.pixel(0, 0), Some([0, 0, 0]));
            assert_eq!(fb.pixel(w + 1, h), Some([0, 0, 0]));
        }
    }

    #[test]
    fn rejects_out_of_bounds_and_short_data() {
        let mut fb = Framebuffer::new(4, 4).unwrap();
        assert!(matches!(
            fb.put_rect(Rect::new(3, 3, 2, 1), &[0; 8], PixelLayout::Rgbx),
            Err(DesktopError::OutOfBounds { .. })
        ));
        assert!(matches!(
            fb.put_rect(Rect::new(0, 0, 2, 1), &[0; 7], PixelLayout::Rgbx),
            Err(DesktopError::BadPixelData { .. })
        ));
        assert!(fb
            .put_rect(
                Rect::new(u32::MAX, u32::MAX, 2, 2),
                &[0; 16],
                PixelLayout::Rgbx
            )
            .is_err());
        assert!(fb.read_rect(Rect::new(0, 0, 5, 1)).is_err());
    }

    #[test]
    fn copy_rect_handles_overlap_downwards() {
        let mut fb = Framebuffer::new(1, 4).unwrap();
        for y in 0..4u8 {
            fb.fill(Rect::new(0, u32::from(y), 1, 1), [y, y, y])
                .unwrap();
        }
        fb.copy_rect(Rect::new(0, 1, 1, 3), Rect::new(0, 0, 1, 3))
            .unwrap();
        let col: Vec<u8> = (0..4).map(|y| fb.pixel(0, y).unwrap()[0]).collect();
        assert_eq!(col, vec![0, 0, 1, 2]);
        fb.copy_rect(Rect::new(0, 0, 1, 3), Rect::new(0, 1, 1, 3))
            .unwrap();
        let col: Vec<u8> = (0..4).map(|y| fb.pixel(0, y).unwrap()[0]).collect();
        assert_eq!(col, vec![0, 1, 2, 2]);
    }

    #[test]
    fn rect_algebra() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, 5, 10, 10);
        assert_eq!(a.union(&b), Rect::new(0, 0, 15, 15));
        assert_eq!(a.intersection(&b), Rect::new(5, 5, 5, 5));
        assert!(a.intersection(&Rect::new(10, 0, 1, 1)).is_empty());
        assert_eq!(Rect::default().union(&b), b);
        assert!(a.contains(&Rect::new(2, 2, 8, 8)));
        assert!(!a.contains(&b));
    }
}
