//! Decodes a recording's video again, picture by picture, with FFmpeg's H.264 decoder: for
//! reading the screen of moments nobody read while the session ran (catch-up OCR). Only what
//! the recording's manifest lists is read, and each piece is checked against the SHA-256 the
//! manifest gives it (the manifest's signatures are `catalog::verify`'s); a piece that does not
//! match, cannot be demuxed or decoded is passed over up to the next keyframe, said in
//! [`RecordingVideo::passed_over`], never a panic.

use std::collections::VecDeque;

use ffmpeg_next as ff;
use portcullis_recording::manifest::{Entry, Span};
use portcullis_recording::scan::Scan;
use portcullis_recording::RecordingStorage;
use thiserror::Error;

use crate::demux;
use crate::mp4::Sample;

/// The largest piece (init segment or fragment) read at once.
const MAX_PIECE: u64 = 64 * 1024 * 1024;
/// The largest picture decoded (pixels): 8K.
const MAX_PICTURE: u64 = 7680 * 4320;

/// Why a recording's video cannot be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// FFmpeg has no H.264 decoder, or refused to open it.
    #[error("ffmpeg: {context}: {source}")]
    Ffmpeg {
        /// What we were doing.
        context: &'static str,
        /// FFmpeg's error.
        source: ff::Error,
    },
    /// The recording's files cannot be read.
    #[error("cannot read the recording: {0}")]
    Storage(#[from] portcullis_recording::StorageError),
}

/// One decoded picture: its luma (brightness) plane, full range, `width` bytes a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// When it was shown, ms on the recording's clock.
    pub time_ms: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height` bytes, 0 = black, 255 = white.
    pub luma: Vec<u8>,
}

/// FFmpeg's H.264 decoder fed with our samples (length-prefixed NAL units): each keyframe is
/// given the part's parameter sets first (the samples carry none).
pub struct H264Decoder {
    decoder: ff::decoder::Video,
    sets: Vec<u8>,
    frame: ff::frame::Video,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

fn ffe(context: &'static str) -> impl FnOnce(ff::Error) -> DecodeError {
    move |source| DecodeError::Ffmpeg { context, source }
}

impl H264Decoder {
    /// A decoder for the part whose `avcC` record is `avcc` (one thread: this is background
    /// work under a CPU share).
    pub fn new(avcc: &[u8]) -> Result<Self, DecodeError> {
        crate::encoder::init_ffmpeg();
        let sets = demux::parameter_sets(avcc).map_err(|_| DecodeError::Ffmpeg {
            context: "the part's parameter sets",
            source: ff::Error::InvalidData,
        })?;
        let codec = ff::decoder::find(ff::codec::Id::H264).ok_or(DecodeError::Ffmpeg {
            context: "find the H.264 decoder",
            source: ff::Error::DecoderNotFound,
        })?;
        let mut context = ff::codec::context::Context::new_with_codec(codec);
        context.set_threading(ff::threading::Config {
            kind: ff::threading::Type::None,
            count: 1,
            ..Default::default()
        });
        // FFmpeg refuses pictures larger than ours before it allocates them (a hostile
        // parameter set cannot ask for gigabytes).
        let mut options = ff::Dictionary::new();
        options.set("max_pixels", &MAX_PICTURE.to_string());
        let decoder = context
            .decoder()
            .open_as_with(codec, options)
            .and_then(|opened| opened.video())
            .map_err(ffe("open the H.264 decoder"))?;
        Ok(Self {
            decoder,
            sets,
            frame: ff::frame::Video::empty(),
        })
    }

    /// Decodes one sample; the pictures it completes go to `out`.
    pub fn decode(&mut self, sample: &Sample, out: &mut Vec<Picture>) -> Result<(), DecodeError> {
        let mut annex_b = Vec::with_capacity(sample.data.len() + self.sets.len() + 16);
        if sample.key {
            annex_b.extend_from_slice(&self.sets);
        }
        let mut rest = sample.data.as_slice();
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(nal) = rest.get(4..4 + len) else {
                break;
            };
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(nal);
            rest = &rest[4 + len..];
        }
        let mut packet = ff::Packet::copy(&annex_b);
        packet.set_pts(Some(i64::try_from(sample.time_ms).unwrap_or(i64::MAX)));
        packet.set_dts(packet.pts());
        self.decoder
            .send_packet(&packet)
            .map_err(ffe("decode a picture"))?;
        self.receive(out);
        Ok(())
    }

    /// The pictures still held (at the end of a part).
    pub fn finish(&mut self, out: &mut Vec<Picture>) {
        if self.decoder.send_eof().is_ok() {
            self.receive(out);
        }
    }

    fn receive(&mut self, out: &mut Vec<Picture>) {
        while self.decoder.receive_frame(&mut self.frame).is_ok() {
            if let Some(picture) = luma_of(&self.frame) {
                out.push(picture);
            }
        }
    }
}

/// The frame's luma plane, limited range (16–235, how the recorder encodes) stretched to full.
fn luma_of(frame: &ff::frame::Video) -> Option<Picture> {
    let (width, height) = (frame.width(), frame.height());
    let pixels = u64::from(width) * u64::from(height);
    // 8-bit 4:2:0, as the recorder encodes: another format's first plane is not luma bytes.
    let eight_bit = matches!(
        frame.format(),
        ff::format::Pixel::YUV420P | ff::format::Pixel::YUVJ420P
    );
    if pixels == 0 || pixels > MAX_PICTURE || frame.planes() == 0 || !eight_bit {
        return None;
    }
    let stride = frame.stride(0);
    let data = frame.data(0);
    let (w, h) = (width as usize, height as usize);
    let mut luma = Vec::with_capacity(w * h);
    for row in 0..h {
        let line = data.get(row * stride..row * stride + w)?;
        luma.extend(line.iter().map(|&y| {
            let v = (i32::from(y) - 16) * 255 / 219;
            v.clamp(0, 255) as u8
        }));
    }
    Some(Picture {
        time_ms: u64::try_from(frame.pts().unwrap_or(0)).unwrap_or(0),
        width,
        height,
        luma,
    })
}

/// What one [`RecordingVideo::step`] did.
#[derive(Debug)]
pub enum Step {
    /// The next picture.
    Picture(Picture),
    /// Some work (a piece read, a sample decoded) and no picture yet: call again.
    Working,
    /// The end of the video.
    End,
}

/// A recording's pictures in order, read a fragment at a time from its storage, a step at a
/// time (the caller paces itself between steps and can stop at any).
pub struct RecordingVideo<'a> {
    storage: &'a dyn RecordingStorage,
    id: String,
    /// The manifest's init segments and fragments, in order: (part, is init, span).
    pieces: VecDeque<(u32, bool, Span)>,
    decoder: Option<(u32, H264Decoder)>,
    /// Pictures decoded and not yet handed out.
    ready: VecDeque<Picture>,
    samples: VecDeque<Sample>,
    /// Waiting for a keyframe after a piece was passed over.
    lost: bool,
    passed_over: u64,
    end_ms: u64,
}

impl std::fmt::Debug for RecordingVideo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingVideo")
            .field("id", &self.id)
            .field("pieces", &self.pieces.len())
            .finish_non_exhaustive()
    }
}

impl<'a> RecordingVideo<'a> {
    /// The video of the recording `id` as its manifest walk `scan` found it: only the lines it
    /// proved to belong to the recording (none after an untied damaged stretch). With a walk
    /// that checked signatures (`Depth::Signed`), what is decoded is what the gateway signed.
    pub fn new(storage: &'a dyn RecordingStorage, id: &str, scan: &Scan) -> Self {
        let proven = scan.untied_from.unwrap_or(u64::MAX);
        let mut end_ms = 0;
        let pieces = scan
            .bodies
            .iter()
            .filter(|b| b.seq < proven)
            .filter_map(|b| match &b.entry {
                Entry::Init { part, video, .. } => Some((*part, true, video.clone())),
                Entry::Segment {
                    part,
                    video,
                    end_ms: end,
                    ..
                } => {
                    end_ms = end_ms.max(*end);
                    Some((*part, false, video.clone()))
                }
                _ => None,
            })
            .collect();
        Self {
            storage,
            id: id.to_owned(),
            pieces,
            decoder: None,
            ready: VecDeque::new(),
            samples: VecDeque::new(),
            lost: false,
            passed_over: 0,
            end_ms,
        }
    }

    /// Where the video ends (the last proven segment's end), ms on the recording's clock.
    pub fn end_ms(&self) -> u64 {
        self.end_ms
    }

    /// How many pieces could not be read or decoded and were passed over.
    pub fn passed_over(&self) -> u64 {
        self.passed_over
    }

    /// One step: a picture decoded before, or one sample decoded, or one piece read.
    pub fn step(&mut self) -> Result<Step, DecodeError> {
        if let Some(picture) = self.ready.pop_front() {
            return Ok(Step::Picture(picture));
        }
        if let Some(sample) = self.samples.pop_front() {
            self.decode(&sample);
            return Ok(Step::Working);
        }
        let Some((part, init, span)) = self.pieces.pop_front() else {
            // The end: what the decoder still holds.
            if let Some((_, mut decoder)) = self.decoder.take() {
                let mut out = Vec::new();
                decoder.finish(&mut out);
                self.ready.extend(out);
                return Ok(Step::Working);
            }
            return Ok(Step::End);
        };
        if !init && self.decoder.as_ref().map(|(p, _)| *p) != Some(part) {
            // A fragment of a part whose start could not be read: not even read.
            self.pass_over();
            return Ok(Step::Working);
        }
        let Some(bytes) = self.read(&span)? else {
            self.pass_over();
            return Ok(Step::Working);
        };
        if init {
            // A new part: what the last one holds first.
            if let Some((_, mut old)) = self.decoder.take() {
                let mut out = Vec::new();
                old.finish(&mut out);
                self.ready.extend(out);
            }
            let Ok(avcc) = demux::avcc(&bytes) else {
                self.pass_over();
                return Ok(Step::Working);
            };
            match H264Decoder::new(avcc) {
                Ok(decoder) => {
                    self.decoder = Some((part, decoder));
                    self.lost = false;
                }
                // No decoder at all: nothing of any recording can be read.
                Err(
                    e @ DecodeError::Ffmpeg {
                        source: ff::Error::DecoderNotFound,
                        ..
                    },
                ) => return Err(e),
                Err(_) => self.pass_over(),
            }
            return Ok(Step::Working);
        }
        match demux::fragment(&bytes) {
            Ok(samples) => self.samples.extend(samples),
            Err(_) => self.pass_over(),
        }
        Ok(Step::Working)
    }

    /// The piece's bytes if the manifest's hash vouches for them.
    fn read(&self, span: &Span) -> Result<Option<Vec<u8>>, DecodeError> {
        if span.len > MAX_PIECE {
            return Ok(None);
        }
        let bytes = match self
            .storage
            .read(&self.id, &span.file, span.offset, span.len)
        {
            Ok(bytes) => bytes,
            // A missing or short file is damage in this recording, not a failure of the store.
            Err(portcullis_recording::StorageError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let matches = Span::of(&span.file, span.offset, &bytes).sha256 == span.sha256;
        Ok(matches.then_some(bytes))
    }

    fn pass_over(&mut self) {
        self.passed_over += 1;
        self.lost = true;
        self.samples.clear();
    }

    fn decode(&mut self, sample: &Sample) {
        if self.lost && !sample.key {
            return;
        }
        self.lost = false;
        let Some((_, decoder)) = self.decoder.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        if decoder.decode(sample, &mut out).is_err() {
            self.passed_over += 1;
            self.lost = true;
        }
        self.ready.extend(out);
    }
}
