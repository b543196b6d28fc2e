//! H.264 encoding of RGBA frames through FFmpeg's libx264 (the only FFmpeg user in Portcullis).

use std::sync::Once;

use ff::format::Pixel;
use ff::software::scaling;
use ff::util::frame::video::Video as VideoFrame;
use ff::{codec, picture, Dictionary, Packet};
use ffmpeg_next as ff;
use thiserror::Error;

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

/// Encoder settings.
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    /// x264 preset (`ultrafast` … `veryslow`).
    pub preset: String,
    /// Constant rate factor (0-51, lower is better quality).
    pub crf: u8,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            preset: "veryfast".into(),
            crf: 28,
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

/// An H.264 encoder for frames of one size. Even sizes only (4:2:0): the recorder pads.
pub struct H264Encoder {
    encoder: ff::encoder::Video,
    scaler: scaling::Context,
    rgba: VideoFrame,
    yuv: VideoFrame,
    width: u32,
    height: u32,
}

static INIT: Once = Once::new();

impl H264Encoder {
    /// Opens libx264 for `width` × `height` (both even).
    pub fn new(width: u32, height: u32, settings: &EncoderSettings) -> Result<Self, EncoderError> {
        INIT.call_once(|| {
            let _ = ff::init();
            ff::util::log::set_level(ff::util::log::Level::Error);
        });
        let codec = ff::encoder::find_by_name("libx264").ok_or(EncoderError::NoX264)?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ffe("video encoder"))?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base((1, 1000));
        // Keyframes are placed by the recorder (forced IDR), never by x264 on its own.
        enc.set_gop(100_000);
        enc.set_max_b_frames(0);
        enc.set_colorspace(ff::color::Space::SMPTE170M);
        enc.set_color_range(ff::color::Range::MPEG);
        let mut opts = Dictionary::new();
        opts.set("preset", &settings.preset);
        opts.set("tune", "stillimage,zerolatency");
        opts.set("crf", &settings.crf.to_string());
        opts.set("forced-idr", "1");
        opts.set("threads", "1");
        // Uneven multi-hexagon search over ±64 pixels finds scrolled text (xterm, pagers): 25%
        // fewer bytes than the preset's ±16 hexagon on a scrolling admin workload, for ~15%
        // more encoding time (measured by re-encoding a recorded session with ffmpeg).
        opts.set(
            "x264-params",
            "scenecut=0:repeat-headers=1:aud=0:me=umh:merange=64",
        );
        let encoder = enc.open_with(opts).map_err(ffe("open libx264"))?;
        let scaler = scaling::Context::get(
            Pixel::RGBA,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            scaling::Flags::POINT,
        )
        .map_err(ffe("colour converter"))?;
        Ok(Self {
            encoder,
            scaler,
            rgba: VideoFrame::new(Pixel::RGBA, width, height),
            yuv: VideoFrame::new(Pixel::YUV420P, width, height),
            width,
            height,
        })
    }

    /// Frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Encodes a new picture (`rgba`: width × height × 4 bytes, rows back to back).
    pub fn encode(
        &mut self,
        rgba: &[u8],
        pts_ms: i64,
        key: bool,
    ) -> Result<Vec<Encoded>, EncoderError> {
        let row = self.width as usize * 4;
        if rgba.len() != row * self.height as usize {
            return Err(EncoderError::BadFrame {
                width: self.width,
                height: self.height,
                got: rgba.len(),
            });
        }
        let stride = self.rgba.stride(0);
        let plane = self.rgba.data_mut(0);
        for (y, src) in rgba.chunks_exact(row).enumerate() {
            if let Some(dst) = plane.get_mut(y * stride..y * stride + row) {
                dst.copy_from_slice(src);
            }
        }
        self.scaler
            .run(&self.rgba, &mut self.yuv)
            .map_err(ffe("colour conversion"))?;
        self.send(pts_ms, key)
    }

    /// Encodes the last picture again (nothing changed on screen; the time moves on).
    pub fn repeat(&mut self, pts_ms: i64, key: bool) -> Result<Vec<Encoded>, EncoderError> {
        self.send(pts_ms, key)
    }

    fn send(&mut self, pts_ms: i64, key: bool) -> Result<Vec<Encoded>, EncoderError> {
        self.yuv.set_pts(Some(pts_ms));
        self.yuv.set_kind(if key {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.encoder
            .send_frame(&self.yuv)
            .map_err(ffe("send frame"))?;
        self.drain()
    }

    /// Finishes: returns any frame still inside the encoder.
    pub fn flush(&mut self) -> Result<Vec<Encoded>, EncoderError> {
        self.encoder.send_eof().map_err(ffe("flush"))?;
        self.drain()
    }

    fn drain(&mut self) -> Result<Vec<Encoded>, EncoderError> {
        let mut out = Vec::new();
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
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
