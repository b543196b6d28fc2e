//! H.264 encoding of RGBA frames through FFmpeg's libx264 (the only FFmpeg user in Portcullis).

use std::collections::VecDeque;
use std::sync::Once;

use ff::format::Pixel;
use ff::util::frame::video::Video as VideoFrame;
use ff::{codec, picture, Dictionary, Packet};
use ffmpeg_next as ff;
use portcullis_core::Rect;
use portcullis_encode::EncodeError;
use thiserror::Error;
use tracing::warn;

use crate::h264;

/// Why the encoder failed.
#[derive(Debug, Error)]
pub enum EncoderError {
    /// FFmpeg has no libx264 built in.
    #[error("this FFmpeg has no libx264 encoder")]
    NoX264,
    /// FFmpeg refused.
    #[error("ffmpeg: {context}: {source}")]
    Ffmpeg {
        /// What we were doing.
        context: &'static str,
        /// FFmpeg's error.
        source: ff::Error,
    },
    /// A frame of the wrong size.
    #[error("frame of {got} bytes for {width}x{height}")]
    BadFrame {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes given.
        got: usize,
    },
}

fn ffe(context: &'static str) -> impl FnOnce(ff::Error) -> EncoderError {
    move |source| EncoderError::Ffmpeg { context, source }
}

/// Encoder settings: chosen on the size × legibility × CPU × memory frontier measured by
/// `examples/reencode.rs` (see benches/README.md, "Recording").
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    /// x264 preset (`ultrafast` … `veryslow`).
    pub preset: String,
    /// x264 tune (`animation`, `stillimage`, …), empty for none.
    pub tune: String,
    /// Constant rate factor (0-51, lower is better quality) of a picture that stays on screen
    /// (with `qcomp=1`, the quantizer of its P-frames).
    pub crf: u8,
    /// Constant rate factor of a *draft*: a new picture while the screen is changing, which the
    /// recorder encodes again at `crf` (a refinement, only the difference) once it has stayed
    /// still (`RecorderConfig::refine_after_ms`). Pictures replaced before then (scrolling,
    /// a moving window, typing) cost a draft's bytes only. `None`: every picture at `crf`.
    pub draft_crf: Option<u8>,
    /// The frame rate x264 assumes for every frame (the recorder's `max_fps`): the input is
    /// constant-rate, the quantizer does not depend on durations (`qcomp=1`), and the packets
    /// keep their real timestamps.
    pub fps: u32,
    /// Frames x264 looks ahead for its macroblock tree, which x264 turns off at our `qcomp=1`:
    /// it takes effect only with a `qcomp` below 1 in `x264_params`. Then each frame costs a
    /// frame of memory and delays a frame's output by one frame: the recorder pushes them out
    /// with repeats of the picture, at `fps`, once the screen is still.
    /// 0: no lookahead, one packet per frame.
    pub lookahead: u32,
    /// More x264 options (`key=value:…`), after ours.
    pub x264_params: String,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            preset: "veryfast".into(),
            tune: String::new(),
            // The highest CRF whose OCR legibility stays ≥ 0.95 of the screen's (crf 28: 0.94).
            crf: 24,
            // Drafts at 38 (OCR 0.91 of the screen's words), refined at 24 after a second: 20%
            // fewer bytes on a dense 1080p xterm capture, the same legibility once still, 15%
            // more CPU (examples/reencode.rs, benches/README.md).
            draft_crf: Some(38),
            fps: 5,
            lookahead: 0,
            x264_params: String::new(),
        }
    }
}

/// One encoded frame.
#[derive(Debug)]
pub struct Encoded {
    /// Presentation time, ms.
    pub pts_ms: i64,
    /// An IDR frame.
    pub key: bool,
    /// The access unit.
    pub unit: h264::AccessUnit,
}

/// The only code in Portcullis that calls FFmpeg's C API itself (`ffmpeg-next` has no safe way to
/// set an option of an open encoder).
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{CStr, CString};

    use ffmpeg_next as ff;

    /// Sets the option `name` of the open encoder (its own, or its codec's private ones) to
    /// `value`.
    pub(super) fn set_option(
        encoder: &mut ff::encoder::Video,
        name: &CStr,
        value: u8,
    ) -> Result<(), ff::Error> {
        let value = CString::new(value.to_string()).map_err(|_| ff::Error::InvalidData)?;
        // SAFETY: `encoder` is an open codec context that we own exclusively (`&mut`), so the
        // pointer is valid and nothing else uses the context during the call. An
        // `AVCodecContext` starts with its `AVClass`, as `av_opt_set` requires; with
        // `AV_OPT_SEARCH_CHILDREN` it also searches the codec's private context, and only when
        // the codec declares a private class (libx264's lists "crf"). It writes the parsed
        // value into the option's field when found, else returns an error and writes nothing.
        // Both strings are NUL-terminated and outlive the call; FFmpeg keeps no pointer to
        // them.
        let ret = unsafe {
            let ctx = encoder.as_mut_ptr();
            if ctx.is_null() {
                return Err(ff::Error::InvalidData);
            }
            ff::ffi::av_opt_set(
                ctx.cast(),
                name.as_ptr(),
                value.as_ptr(),
                ff::ffi::AV_OPT_SEARCH_CHILDREN,
            )
        };
        if ret < 0 {
            Err(ff::Error::from(ret))
        } else {
            Ok(())
        }
    }

    /// Makes glibc serve every C allocation of `mmap_threshold` bytes or more with its own
    /// mapping, returned to the system when freed; and turns transparent huge pages off for the
    /// process.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub(super) fn tune_memory(mmap_threshold: i32) {
        // SAFETY: neither call takes a pointer. `mallopt` sets one of glibc's tunables under its
        // lock (thread-safe) and affects only where later allocations are placed; `prctl`
        // with PR_SET_THP_DISABLE sets a flag of the process (its four further arguments are
        // integers: nonzero to disable, then three zeros, which the kernel requires). Either fails without effect (return value
        // ignored), which changes nothing but memory use.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold);
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            );
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub(super) fn tune_memory(_mmap_threshold: i32) {}
}

/// libx264 and FFmpeg allocate with glibc's `malloc` (not the gateway's allocator). By default
/// glibc raises its mmap threshold to the size of the largest block freed, so a closed encoder's
/// frames (1-10 MB each) stay in glibc's heap for later instead of going back to the system:
/// measured with `examples/encmem.rs` at 1080p, 19.7 of 40 MiB stayed resident after closing an
/// encoder, 4.6 with this threshold fixed. Fixing it (which also turns glibc's adjustment off)
/// costs one `mmap` per such block, at an encoder's opening.
///
/// And x264 asks for transparent huge pages on every buffer of 1.75 MiB or more: each first touch
/// then makes a whole 2 MiB page resident, also in its output buffers, of which a P-frame of
/// screen content uses a few kB. The process has them off from the first encoder on (with the
/// system set to `always`, that also keeps them from the gateway's own allocations, which are
/// better off without; children would inherit it, and the gateway starts none): 40.2 → 34.8 MiB
/// per busy 1080p encoder (encmem).
const C_MMAP_THRESHOLD: i32 = 512 * 1024;

fn clamp_u8(v: i32) -> u8 {
    u8::try_from(v.clamp(0, 255)).unwrap_or(u8::MAX)
}

/// An RGBA picture to convert from: `width` × `height` pixels, rows `stride` pixels apart.
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'a> {
    /// The pixels, 4 bytes each (R, G, B, unused).
    pub rgba: &'a [u8],
    /// Pixels from one row to the next.
    pub stride: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// An H.264 encoder for frames of one size. Even sizes only (4:2:0): the recorder pads.
pub struct H264Encoder {
    encoder: ff::encoder::Video,
    yuv: VideoFrame,
    width: u32,
    height: u32,
    /// The CRF of the next frame given.
    crf: u8,
    /// libx264's `crf` option as last set.
    x264_crf: u8,
    /// The CRF wanted for each frame given to libx264 and not encoded yet, oldest first.
    held: VecDeque<u8>,
    /// The timestamp of the last frame given.
    last_pts: i64,
    /// Changing the quality failed once: it is not tried again (nor logged at every frame).
    fixed_crf: bool,
}

static INIT: Once = Once::new();

/// Sets FFmpeg up once per process (logging, and glibc's allocation threshold: see
/// `ffi::tune_memory`), for the encoder and the decoder alike.
pub(crate) fn init_ffmpeg() {
    INIT.call_once(|| {
        ffi::tune_memory(C_MMAP_THRESHOLD);
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Error);
    });
}

impl H264Encoder {
    /// Opens libx264 for `width` × `height` (both even).
    pub fn new(width: u32, height: u32, settings: &EncoderSettings) -> Result<Self, EncoderError> {
        init_ffmpeg();
        let codec = ff::encoder::find_by_name("libx264").ok_or(EncoderError::NoX264)?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ffe("video encoder"))?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        // Milliseconds, and a nominal rate: without one, FFmpeg tells x264 the rate is the
        // time base's (1000 fps) and x264, when it cannot use timestamps, rate-controls every
        // frame as if it lasted 1 ms (P-frames far coarser than the CRF asks, keyframes finer).
        enc.set_time_base((1, 1000));
        let fps = i32::try_from(settings.fps.clamp(1, 60)).unwrap_or(5);
        enc.set_frame_rate(Some((fps, 1)));
        // Keyframes are placed by the recorder (forced IDR), never by x264 on its own.
        enc.set_gop(100_000);
        enc.set_max_b_frames(0);
        enc.set_colorspace(ff::color::Space::SMPTE170M);
        enc.set_color_range(ff::color::Range::MPEG);
        let mut opts = Dictionary::new();
        opts.set("preset", &settings.preset);
        if !settings.tune.is_empty() {
            opts.set("tune", &settings.tune);
        }
        opts.set("crf", &settings.crf.to_string());
        opts.set("forced-idr", "1");
        opts.set("threads", "1");
        // Uneven multi-hexagon search over ±128 pixels finds scrolled text (xterm, pagers): on
        // a 1080p xterm capture (examples/reencode.rs) ±16 hexagon 136 MB/h, ±64 72 MB/h,
        // ±128 62 MB/h for 11% more CPU than ±64, ±256 53 MB/h for 43% more.
        // No B-frames and no frame-threading lookahead: output is delayed by `lookahead` frames
        // only. Constant-rate input (`force-cfr`): with variable-rate input x264 holds every
        // frame until the next one arrives (to learn how long it lasts) and keeps a picture
        // more for it (≈6 MiB at 1080p, `examples/encmem.rs`), while the quantizer does not
        // depend on durations here (`qcomp=1`, at which x264 also turns its macroblock tree
        // off: its rate model reduces to the CRF). The packets keep our millisecond timestamps,
        // which the MP4 samples carry; the stream's own timing information (SPS) then says
        // `fps` at a fixed rate, which no player of the MP4 reads.
        // No deblocking filter: it smooths block edges, which text does not have where blocks
        // meet, and costs decoding time at every seek (re-encoding a 1080p xterm capture: 0.4%
        // more bytes, 12% less encoding CPU, 25% less decoding time, OCR as good or better,
        // drafts included).
        // Whole-pixel motion only (subme 0): screens move by whole pixels, and x264 then keeps
        // one luma plane per reference frame instead of four (with drafts, on a 1080p xterm
        // capture: 4% more bytes, 20% less CPU, 11 MiB less per session, the same OCR).
        // Text wants one quantizer everywhere: no adaptive quantization (it raises the quantizer
        // of busy blocks, i.e. of text) and qcomp 1 (a frame's quantizer does not fall with its
        // complexity, so a repeat of a still picture is not re-encoded finer, and new text is
        // coded alike whatever else changed). Re-encoding a 1080p xterm capture, against the
        // stillimage tune: the same OCR legibility for 25-30% fewer bytes (benches/README.md).
        // No weighted prediction (`weightp=0`): it is for fades, which a screen does not do. x264
        // otherwise analyses every picture's brightness against its reference (1080p, a 24-pixel
        // change: 4.0 → 3.7 ms per picture, `examples/encsmall.rs`; a 1080p xterm capture
        // re-encoded to the same bytes) and keeps a weighted copy of the reference for it.
        let lookahead = settings.lookahead.min(60);
        let mut params = format!(
            "scenecut=0:repeat-headers=1:aud=0:me=umh:merange=128:subme=0:bframes=0:\
             sync-lookahead=0:rc-lookahead={lookahead}:mbtree={}:aq-mode=0:qcomp=1:no-deblock=1:\
             force-cfr=1:weightp=0",
            u8::from(lookahead > 0)
        );
        if !settings.x264_params.is_empty() {
            params.push(':');
            params.push_str(&settings.x264_params);
        }
        opts.set("x264-params", &params);
        let encoder = enc.open_with(opts).map_err(ffe("open libx264"))?;
        Ok(Self {
            encoder,
            yuv: VideoFrame::new(Pixel::YUV420P, width, height),
            width,
            height,
            crf: settings.crf,
            x264_crf: settings.crf,
            held: VecDeque::new(),
            last_pts: 0,
            fixed_crf: false,
        })
    }

    /// The CRF of the frames given from now on (0-51; with `qcomp=1`, a P-frame's quantizer).
    ///
    /// libx264 may encode a frame later than it is given: a lookahead holds frames (and
    /// variable-rate input, not ours, holds each until the next). FFmpeg's wrapper
    /// reconfigures x264 when its `crf` option changed, before x264 encodes whatever frame
    /// comes out of that call: so the option is set, at each call, to what the oldest frame
    /// still held was given with ([`H264Encoder::send`]).
    pub fn set_crf(&mut self, crf: u8) {
        self.crf = crf.min(51);
    }

    /// Sets libx264's `crf` option to `crf`. A failure is logged and the quality stays as it
    /// is: drafts save bytes, they are no reason to end a session.
    fn apply_crf(&mut self, crf: u8) -> bool {
        if crf == self.x264_crf {
            return true;
        }
        if self.fixed_crf {
            return false;
        }
        match ffi::set_option(&mut self.encoder, c"crf", crf) {
            Ok(()) => {
                self.x264_crf = crf;
                true
            }
            Err(error) => {
                let now = self.x264_crf;
                warn!(%error, crf, now, "cannot change libx264's quality: every frame of this part is encoded at crf {now}");
                self.fixed_crf = true;
                false
            }
        }
    }

    /// How many frames libx264 holds, given and not encoded yet.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The frames held and not encoded yet (the last one given, with a lookahead more) get
    /// `crf` instead of what they were given with: e.g. the recording ends, and what shows
    /// last is a reviewer's to read.
    pub fn requalify_held(&mut self, crf: u8) {
        for c in &mut self.held {
            *c = crf.min(51);
        }
    }

    /// Frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Encodes a new picture (`rgba`: width × height × 4 bytes, rows back to back) of which only
    /// `changed` differs from the previous one (the whole frame for the first picture).
    pub fn encode(
        &mut self,
        rgba: &[u8],
        changed: &[Rect],
        pts_ms: i64,
        key: bool,
    ) -> Result<Vec<Encoded>, EncoderError> {
        if rgba.len() != self.width as usize * 4 * self.height as usize {
            return Err(EncoderError::BadFrame {
                width: self.width,
                height: self.height,
                got: rgba.len(),
            });
        }
        let whole = Pixels {
            rgba,
            stride: self.width,
            width: self.width,
            height: self.height,
        };
        for r in changed {
            self.convert_from(&whole, *r);
        }
        self.send(pts_ms, key)
    }

    /// A JPEG thumbnail, at most `max_width` wide, of the picture as converted so far (box
    /// filter over the YUV planes, then BT.601 back to RGB): made without the screen's lock.
    pub fn thumbnail(&self, max_width: u32) -> Result<Vec<u8>, EncodeError> {
        let (w, h) = (self.width as usize, self.height as usize);
        // Whole 2×2 chroma blocks: an even step.
        let step = w.div_ceil(max_width.max(1) as usize).max(2);
        let step = step + (step & 1);
        let (tw, th) = ((w / step).max(1), (h / step).max(1));
        let (ys, us, vs) = (self.yuv.stride(0), self.yuv.stride(1), self.yuv.stride(2));
        let (yp, up, vp) = (self.yuv.data(0), self.yuv.data(1), self.yuv.data(2));
        let avg = |plane: &[u8], stride: usize, x0: usize, y0: usize, n: usize| -> i32 {
            let mut sum = 0u32;
            for y in y0..y0 + n {
                for x in x0..x0 + n {
                    sum += u32::from(plane.get(y * stride + x).copied().unwrap_or(0));
                }
            }
            i32::try_from(sum / u32::try_from(n * n).unwrap_or(1)).unwrap_or(0)
        };
        let mut rgba = Vec::with_capacity(tw * th * 4);
        for ty in 0..th {
            for tx in 0..tw {
                let c = 298 * (avg(yp, ys, tx * step, ty * step, step) - 16);
                let (cx, cy, n) = (tx * step / 2, ty * step / 2, step / 2);
                let d = avg(up, us, cx, cy, n) - 128;
                let e = avg(vp, vs, cx, cy, n) - 128;
                rgba.extend_from_slice(&[
                    clamp_u8((c + 409 * e + 128) >> 8),
                    clamp_u8((c - 100 * d - 208 * e + 128) >> 8),
                    clamp_u8((c + 516 * d + 128) >> 8),
                    255,
                ]);
            }
        }
        let (tw, th) = (
            u32::try_from(tw).unwrap_or(1),
            u32::try_from(th).unwrap_or(1),
        );
        portcullis_encode::thumbnail_jpeg(&rgba, tw, th, tw)
    }

    /// Encodes the picture as converted so far (a new picture) at `pts_ms`.
    pub fn send_picture(&mut self, pts_ms: i64, key: bool) -> Result<Vec<Encoded>, EncoderError> {
        self.send(pts_ms, key)
    }

    /// RGBA → YUV 4:2:0 (BT.601, limited range, chroma averaged over 2×2) for one area, written
    /// into the frame kept from the last picture. Converting only what changed is what makes a
    /// keystroke cheap: the whole 1080p frame costs 5-9 ms, one line of text microseconds.
    ///
    /// What `from` does not cover is black; [`H264Encoder::send_picture`] then encodes the
    /// picture. The caller may hold a lock on `from` for this call only, not for the encoding.
    pub fn convert_from(&mut self, from: &Pixels<'_>, r: Rect) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (sw, sh, src_stride) = (
            from.width as usize,
            from.height as usize,
            from.stride as usize,
        );
        let rgba = from.rgba;
        // Whole 2×2 chroma blocks, inside the frame.
        let x0 = (r.x as usize & !1).min(w);
        let y0 = (r.y as usize & !1).min(h);
        let x1 = ((r.x as usize + r.w as usize + 1) & !1).min(w);
        let y1 = ((r.y as usize + r.h as usize + 1) & !1).min(h);
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let px = |x: usize, y: usize| -> [i32; 3] {
            if x >= sw || y >= sh {
                return [0; 3];
            }
            let i = (y * src_stride + x) * 4;
            match rgba.get(i..i + 3) {
                Some(p) => [i32::from(p[0]), i32::from(p[1]), i32::from(p[2])],
                None => [0; 3],
            }
        };
        let stride = self.yuv.stride(0);
        let luma = self.yuv.data_mut(0);
        for y in y0..y1 {
            for x in x0..x1 {
                let [r, g, b] = px(x, y);
                if let Some(out) = luma.get_mut(y * stride + x) {
                    *out = clamp_u8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16);
                }
            }
        }
        for (plane, coef) in [(1, [-38, -74, 112]), (2, [112, -94, -18])] {
            let stride = self.yuv.stride(plane);
            let chroma = self.yuv.data_mut(plane);
            for cy in y0 / 2..y1 / 2 {
                for cx in x0 / 2..x1 / 2 {
                    let mut sum = [0i32; 3];
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let p = px(cx * 2 + dx, cy * 2 + dy);
                        for c in 0..3 {
                            sum[c] += p[c];
                        }
                    }
                    let v = (coef[0] * sum[0] + coef[1] * sum[1] + coef[2] * sum[2] + 512) >> 10;
                    if let Some(out) = chroma.get_mut(cy * stride + cx) {
                        *out = clamp_u8(v + 128);
                    }
                }
            }
        }
    }

    /// Encodes the last picture again (nothing changed on screen; the time moves on).
    pub fn repeat(&mut self, pts_ms: i64, key: bool) -> Result<Vec<Encoded>, EncoderError> {
        self.send(pts_ms, key)
    }

    fn send(&mut self, pts_ms: i64, key: bool) -> Result<Vec<Encoded>, EncoderError> {
        // x264 encodes the oldest frame it holds during this call: this one if it holds none.
        let oldest = self.held.front().copied().unwrap_or(self.crf);
        self.apply_crf(oldest);
        self.yuv.set_pts(Some(pts_ms));
        self.yuv.set_kind(if key {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.encoder
            .send_frame(&self.yuv)
            .map_err(ffe("send frame"))?;
        self.held.push_back(self.crf);
        self.last_pts = pts_ms;
        self.drain()
    }

    /// Finishes: returns any frame still inside the encoder.
    pub fn flush(&mut self) -> Result<Vec<Encoded>, EncoderError> {
        let real = self.held.len();
        let mut out = Vec::new();
        let oldest = self.held.front().copied();
        if oldest.is_some_and(|crf| crf != self.x264_crf && self.apply_crf(crf)) {
            // FFmpeg reconfigures x264 only when given a frame, never on a flush: a carrier
            // (the last picture again, 1 ms later) makes x264 encode the held frame at its
            // quality. The carrier is the stream's last frame, which no frame refers to: its
            // packet is dropped. (With a lookahead, the frames held behind the oldest are
            // encoded at the oldest one's quality.)
            self.yuv.set_pts(Some(self.last_pts.saturating_add(1)));
            self.yuv.set_kind(picture::Type::None);
            self.encoder
                .send_frame(&self.yuv)
                .map_err(ffe("send frame"))?;
            self.held.push_back(self.x264_crf);
            out.extend(self.drain()?);
        }
        // The rest is encoded in this call, at the quality x264 has now.
        self.encoder.send_eof().map_err(ffe("flush"))?;
        out.extend(self.drain()?);
        out.truncate(real);
        self.held.clear();
        Ok(out)
    }

    fn drain(&mut self) -> Result<Vec<Encoded>, EncoderError> {
        let mut out = Vec::new();
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    self.held.pop_front();
                    let unit = h264::access_unit(packet.data().unwrap_or_default());
                    out.push(Encoded {
                        pts_ms: packet.pts().unwrap_or(0),
                        key: packet.is_key(),
                        unit,
                    });
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(ffe("receive packet")(e)),
            }
        }
        Ok(out)
    }
}
