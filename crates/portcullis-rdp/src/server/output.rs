//! What the server sends: bitmap updates, capability sets, error codes, disconnects.

use std::borrow::Cow;

use ironrdp_core::{encode_vec, Encode as _, WriteCursor};
use ironrdp_graphics::rdp6::BitmapStreamEncoder;
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, CompressedDataHeader, Compression};
use ironrdp_pdu::fast_path::{
    EncryptionFlags, FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason, SendDataIndication};
use ironrdp_pdu::rdp::capability_sets::{self as caps, CapabilitySet};
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ServerDeactivateAll, ShareControlHeader, ShareControlPdu, ShareDataHeader,
    ShareDataPdu, StreamPriority,
};
use ironrdp_pdu::rdp::server_error_info::{ErrorInfo, ServerSetErrorInfoPdu};
use ironrdp_pdu::x224::X224;
use portcullis_core::desktop::Rect;

/// Tiles of at most 64x64 pixels: 16 KiB uncompressed, well under a bitmap's 16-bit length, and
/// the tile size RDP servers commonly use (clients are tuned for it).
const TILE: u32 = 64;

/// The largest logical update we send, whatever the client accepts: bounds our buffers.
const MAX_UPDATE: usize = 8 * 1024 * 1024;

/// The server's capability sets for a desktop of `width` x `height`: fast-path output, plain
/// 32-bit bitmaps (no drawing orders, no codecs yet), fast-path and Unicode input.
pub(crate) fn capabilities(width: u16, height: u16) -> Vec<CapabilitySet> {
    vec![
        CapabilitySet::General(caps::General {
            extra_flags: caps::GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED,
            refresh_rect_support: true,
            suppress_output_support: true,
            ..Default::default()
        }),
        CapabilitySet::Bitmap(caps::Bitmap {
            pref_bits_per_pix: 32,
            desktop_width: width,
            desktop_height: height,
            desktop_resize_flag: true,
            drawing_flags: caps::BitmapDrawingFlags::empty(),
        }),
        CapabilitySet::Order(caps::Order::new(
            caps::OrderFlags::empty(),
            caps::OrderSupportExFlags::empty(),
            2048,
            224,
        )),
        CapabilitySet::Pointer(caps::Pointer {
            color_pointer_cache_size: 0,
            pointer_cache_size: 0,
        }),
        CapabilitySet::Input(caps::Input {
            input_flags: caps::InputFlags::SCANCODES
                | caps::InputFlags::MOUSEX
                | caps::InputFlags::FASTPATH_INPUT
                | caps::InputFlags::UNICODE
                | caps::InputFlags::FASTPATH_INPUT_2,
            keyboard_layout: 0,
            keyboard_type: None,
            keyboard_subtype: 0,
            keyboard_function_key: 128,
            keyboard_ime_filename: String::new(),
        }),
        CapabilitySet::VirtualChannel(caps::VirtualChannel {
            flags: caps::VirtualChannelFlags::NO_COMPRESSION,
            chunk_size: None,
        }),
        CapabilitySet::MultiFragmentUpdate(caps::MultifragmentUpdate {
            max_request_size: 16 * 1024 * 1024,
        }),
    ]
}

/// How the client takes bitmap updates, from its capability sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BitmapCaps {
    /// Largest reassembled fast-path update the client accepts (its Multifragment Update
    /// capability; one fragment when it has none).
    max_update: usize,
    /// Whether compressed bitmaps must carry the `TS_CD_HEADER` (the client did not announce
    /// `NO_BITMAP_COMPRESSION_HDR`).
    cd_header: bool,
}

impl BitmapCaps {
    /// Reads the client's Confirm Active capability sets.
    pub(crate) fn from_client(caps: &[CapabilitySet]) -> Self {
        let mut out = Self {
            max_update: MAX_FRAGMENT,
            cd_header: true,
        };
        for c in caps {
            match c {
                CapabilitySet::MultiFragmentUpdate(m) => {
                    let max = usize::try_from(m.max_request_size).unwrap_or(MAX_UPDATE);
                    out.max_update = max.clamp(MAX_FRAGMENT, MAX_UPDATE);
                }
                CapabilitySet::General(g) => {
                    out.cd_header = !g
                        .extra_flags
                        .contains(caps::GeneralExtraFlags::NO_BITMAP_COMPRESSION_HDR);
                }
                _ => {}
            }
        }
        out
    }
}

/// Turns damage into bitmap updates: 64x64 tiles, each RDP 6.0 planar-compressed (lossless) when
/// that is smaller, else plain 32-bit; a whole batch of damage goes out as one logical update
/// (fragmented as the client allows), so the client paints it at once instead of tile by tile.
pub(crate) struct BitmapWriter {
    caps: BitmapCaps,
    /// The update being built: its 4-byte header, then `rects` bitmaps.
    payload: Vec<u8>,
    rects: u16,
    /// Scratch for one tile: uncompressed BGRX rows, and the planar stream.
    raw: Vec<u8>,
    planar: Vec<u8>,
}

/// Bytes of a `TS_BITMAP_DATA` before its pixels (and `TS_CD_HEADER`).
const BITMAP_HEADER: usize = 18;
/// Bytes of a `TS_CD_HEADER`.
const CD_HEADER: usize = 8;
/// Bytes of a bitmap update's header (update type, rectangle count).
const UPDATE_HEADER: usize = 4;

impl BitmapWriter {
    pub(crate) fn new(caps: BitmapCaps) -> Self {
        let tile = (TILE * TILE * 4) as usize;
        Self {
            caps,
            payload: Vec::new(),
            rects: 0,
            raw: Vec::with_capacity(tile),
            planar: vec![0; tile + 64],
        }
    }

    /// Appends the fast-path updates for one batch of damage (`(rect, pixels)`: RGBX, top-down,
    /// `rect.w * 4` per row), clipped to a `width` x `height` desktop.
    pub(crate) fn frame(
        &mut self,
        damage: &[(Rect, Vec<u8>)],
        width: u32,
        height: u32,
        out: &mut Vec<u8>,
    ) {
        for (rect, px) in damage {
            self.rect(*rect, px, width, height, out);
        }
        self.flush(out);
    }

    fn rect(&mut self, rect: Rect, rgbx: &[u8], width: u32, height: u32, out: &mut Vec<u8>) {
        let clip = rect.intersection(&Rect::new(0, 0, width, height));
        if clip.is_empty() || rgbx.len() < rect.area() as usize * 4 {
            return;
        }
        let stride = rect.w as usize * 4;
        let bottom = u32::try_from(clip.bottom()).unwrap_or(u32::MAX);
        let right = u32::try_from(clip.right()).unwrap_or(u32::MAX);
        let mut y = clip.y;
        while y < bottom {
            let th = TILE.min(bottom - y);
            let mut x = clip.x;
            while x < right {
                let tw = TILE.min(right - x);
                // Rows of the tile in the source, bottom-up (as bitmaps go).
                let sx = (x - rect.x) as usize * 4;
                let row = |r: u32| {
                    let sy = (y + r - rect.y) as usize;
                    &rgbx[sy * stride + sx..sy * stride + sx + tw as usize * 4]
                };
                self.tile(x, y, tw, th, &row, out);
                x += tw;
            }
            y += th;
        }
    }

    /// Adds one tile to the update, compressed when that is smaller.
    fn tile<'a>(
        &mut self,
        x: u32,
        y: u32,
        w: u32,
        h: u32,
        row: &dyn Fn(u32) -> &'a [u8],
        out: &mut Vec<u8>,
    ) {
        let plane = |c: usize| {
            (0..h)
                .rev()
                .flat_map(move |r| row(r).iter().skip(c).step_by(4).copied())
        };
        let raw_len = (w * h * 4) as usize;
        let compressed = BitmapStreamEncoder::new(w as usize, h as usize)
            .encode_channels_stream((plane(0), plane(1), plane(2)), &mut self.planar, true)
            .ok()
            .filter(|&n| n + if self.caps.cd_header { CD_HEADER } else { 0 } < raw_len);
        if compressed.is_none() {
            self.raw.clear();
            for r in (0..h).rev() {
                for px in row(r).chunks_exact(4) {
                    self.raw.extend_from_slice(&[px[2], px[1], px[0], 0xff]);
                }
            }
        }
        let (compression_flags, compressed_data_header) = match (compressed, self.caps.cd_header) {
            (None, _) => (Compression::empty(), None),
            (Some(_), false) => (
                Compression::BITMAP_COMPRESSION | Compression::NO_BITMAP_COMPRESSION_HDR,
                None,
            ),
            (Some(n), true) => (
                Compression::BITMAP_COMPRESSION,
                Some(CompressedDataHeader {
                    main_body_size: to16(n),
                    scan_width: to16(w),
                    uncompressed_size: to16(raw_len),
                }),
            ),
        };
        let data_len = compressed.unwrap_or(raw_len);
        let size =
            BITMAP_HEADER + compressed_data_header.as_ref().map_or(0, |_| CD_HEADER) + data_len;
        if self.rects == u16::MAX || self.payload.len() + size > self.caps.max_update {
            self.flush(out);
        }
        let bitmap = BitmapData {
            rectangle: InclusiveRectangle {
                left: to16(x),
                top: to16(y),
                right: to16(x + w - 1),
                bottom: to16(y + h - 1),
            },
            width: to16(w),
            height: to16(h),
            bits_per_pixel: 32,
            compression_flags,
            compressed_data_header,
            bitmap_data: match compressed {
                Some(n) => &self.planar[..n],
                None => &self.raw,
            },
        };
        if self.payload.is_empty() {
            self.payload.resize(UPDATE_HEADER, 0);
        }
        let start = self.payload.len();
        self.payload.resize(start + bitmap.size(), 0);
        if bitmap
            .encode(&mut WriteCursor::new(&mut self.payload[start..]))
            .is_ok()
        {
            self.rects += 1;
        } else {
            self.payload.truncate(start);
        }
    }

    /// Sends the update built so far.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.rects > 0 {
            let mut header = WriteCursor::new(&mut self.payload[..UPDATE_HEADER]);
            if BitmapUpdateData::encode_header(self.rects, &mut header).is_ok() {
                fast_path(UpdateCode::Bitmap, &self.payload, out);
            }
        }
        self.payload.clear();
        self.rects = 0;
    }
}

fn to16(v: impl TryInto<u16>) -> u16 {
    v.try_into().unwrap_or(u16::MAX)
}

/// Largest payload of one fast-path update fragment.
const MAX_FRAGMENT: usize = 16_374;

/// Appends one fast-path update, fragmented when it is large.
fn fast_path(code: UpdateCode, payload: &[u8], out: &mut Vec<u8>) {
    let chunks: Vec<&[u8]> = payload.chunks(MAX_FRAGMENT).collect();
    let n = chunks.len();
    for (i, data) in chunks.into_iter().enumerate() {
        let fragmentation = match (i, n) {
            (_, 1) => Fragmentation::Single,
            (0, _) => Fragmentation::First,
            (i, n) if i + 1 == n => Fragmentation::Last,
            _ => Fragmentation::Next,
        };
        let update = FastPathUpdatePdu {
            fragmentation,
            update_code: code,
            compression_flags: None,
            compression_type: None,
            data,
        };
        let header = FastPathHeader::new(EncryptionFlags::empty(), update.size());
        let start = out.len();
        out.resize(start + header.size() + update.size(), 0);
        let mut cursor = WriteCursor::new(&mut out[start..]);
        if header.encode(&mut cursor).is_err() || update.encode(&mut cursor).is_err() {
            out.truncate(start);
            return;
        }
        let written = cursor.pos();
        out.truncate(start + written);
    }
}

/// The default pointer (the client draws its own arrow; the target's pointer is in the picture).
pub(crate) fn hidden_pointer(out: &mut Vec<u8>) {
    fast_path(UpdateCode::HiddenPointer, &[], out);
}

fn io_channel_pdu(pdu: ShareControlPdu, user_channel: u16, io_channel: u16) -> Vec<u8> {
    let header = ShareControlHeader {
        share_id: 0,
        pdu_source: io_channel,
        share_control_pdu: pdu,
    };
    let Ok(user_data) = encode_vec(&header) else {
        return Vec::new();
    };
    encode_vec(&X224(SendDataIndication {
        initiator_id: user_channel,
        channel_id: io_channel,
        user_data: Cow::Owned(user_data),
    }))
    .unwrap_or_default()
}

/// A Set Error Info PDU: the code the client shows when it is disconnected.
pub(crate) fn error_info(info: ErrorInfo, user_channel: u16, io_channel: u16) -> Vec<u8> {
    io_channel_pdu(
        ShareControlPdu::Data(ShareDataHeader {
            share_data_pdu: ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(info)),
            stream_priority: StreamPriority::Undefined,
            compression_flags: CompressionFlags::empty(),
            compression_type: CompressionType::K8,
        }),
        user_channel,
        io_channel,
    )
}

/// Deactivate All: the start of a reactivation at a new desktop size.
pub(crate) fn deactivate_all(user_channel: u16, io_channel: u16) -> Vec<u8> {
    io_channel_pdu(
        ShareControlPdu::ServerDeactivateAll(ServerDeactivateAll),
        user_channel,
        io_channel,
    )
}

/// The MCS Disconnect Provider Ultimatum: the connection is over.
pub(crate) fn ultimatum() -> Vec<u8> {
    encode_vec(&X224(DisconnectProviderUltimatum::from_reason(
        DisconnectReason::ProviderInitiated,
    )))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use ironrdp_core::{decode, ReadCursor};
    use ironrdp_graphics::rdp6::BitmapStreamDecoder;

    use super::*;

    /// What a client makes of our output: the fast-path PDUs, their updates reassembled, and the
    /// bitmaps painted into an RGB picture of `width` x `height`.
    struct Client {
        pdus: usize,
        updates: usize,
        compressed: usize,
        raw: usize,
        rgb: Vec<u8>,
    }

    fn client(bytes: &[u8], width: usize, height: usize) -> Client {
        let mut c = Client {
            pdus: 0,
            updates: 0,
            compressed: 0,
            raw: 0,
            rgb: vec![0; width * height * 3],
        };
        let mut rest = bytes;
        let mut assembling = Vec::new();
        while !rest.is_empty() {
            let mut cursor = ReadCursor::new(rest);
            let header: FastPathHeader = ironrdp_core::decode_cursor(&mut cursor).unwrap();
            let body = &rest[cursor.pos()..cursor.pos() + header.data_length];
            rest = &rest[cursor.pos() + header.data_length..];
            c.pdus += 1;
            let update: FastPathUpdatePdu<'_> = decode(body).unwrap();
            assert_eq!(update.update_code, UpdateCode::Bitmap);
            assembling.extend_from_slice(update.data);
            if matches!(
                update.fragmentation,
                Fragmentation::First | Fragmentation::Next
            ) {
                continue;
            }
            c.updates += 1;
            let bitmaps: BitmapUpdateData<'_> = decode(&assembling[..]).unwrap();
            for b in &bitmaps.rectangles {
                let (w, h) = (usize::from(b.width), usize::from(b.height));
                // Bottom-up RGB rows.
                let rows: Vec<u8> = if b
                    .compression_flags
                    .contains(Compression::BITMAP_COMPRESSION)
                {
                    c.compressed += 1;
                    let mut out = Vec::new();
                    BitmapStreamDecoder::default()
                        .decode_bitmap_stream_to_rgb24(b.bitmap_data, &mut out, w, h)
                        .unwrap();
                    out
                } else {
                    c.raw += 1;
                    b.bitmap_data
                        .chunks_exact(4)
                        .flat_map(|p| [p[2], p[1], p[0]])
                        .collect()
                };
                for r in 0..h {
                    let y = usize::from(b.rectangle.top) + (h - 1 - r);
                    let x = usize::from(b.rectangle.left);
                    let dst = (y * width + x) * 3;
                    c.rgb[dst..dst + w * 3].copy_from_slice(&rows[r * w * 3..(r + 1) * w * 3]);
                }
            }
            assembling.clear();
        }
        c
    }

    /// A picture with flat areas (compress well) and noise (does not).
    fn picture(w: u32, h: u32) -> Vec<u8> {
        let mut seed = 7u32;
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let noise = seed.to_le_bytes();
                if x < w / 2 {
                    px.extend_from_slice(&[(x / 16) as u8 * 9, (y / 8) as u8 * 3, 200, 0]);
                } else {
                    px.extend_from_slice(&[noise[1], noise[2], noise[3], 0]);
                }
            }
        }
        px
    }

    fn rgb_of(rgbx: &[u8]) -> Vec<u8> {
        rgbx.chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()
    }

    fn caps(max_update: usize, cd_header: bool) -> BitmapCaps {
        BitmapCaps {
            max_update,
            cd_header,
        }
    }

    #[test]
    fn a_frame_arrives_whole_and_pixel_exact() {
        let (w, h) = (200u32, 150u32);
        let px = picture(w, h);
        for cd_header in [false, true] {
            let mut out = Vec::new();
            BitmapWriter::new(caps(1 << 20, cd_header)).frame(
                &[(Rect::new(0, 0, w, h), px.clone())],
                w,
                h,
                &mut out,
            );
            let c = client(&out, w as usize, h as usize);
            assert_eq!(c.rgb, rgb_of(&px), "cd_header {cd_header}");
            // One logical update for the whole frame, in several fragments.
            assert_eq!(c.updates, 1);
            assert!(c.pdus > 1);
            // 4 x 3 tiles, all planar: even noise loses the fourth byte of each pixel; the flat
            // half shrinks to almost nothing.
            assert_eq!((c.compressed, c.raw), (12, 0));
            let noise = (w / 2 * h * 3) as usize;
            assert!(out.len() < noise * 5 / 4, "{} bytes", out.len());
        }
    }

    #[test]
    fn updates_stay_within_what_the_client_takes() {
        let (w, h) = (200u32, 150u32);
        let px = picture(w, h);
        let mut out = Vec::new();
        BitmapWriter::new(caps(MAX_FRAGMENT, false)).frame(
            &[(Rect::new(0, 0, w, h), px.clone())],
            w,
            h,
            &mut out,
        );
        let c = client(&out, w as usize, h as usize);
        assert_eq!(c.rgb, rgb_of(&px));
        // Nothing fragmented: one fragment per update.
        assert_eq!(c.updates, c.pdus);
    }

    #[test]
    fn damage_is_clipped_to_the_desktop() {
        let px = picture(70, 40);
        let mut out = Vec::new();
        let mut writer = BitmapWriter::new(caps(1 << 20, false));
        // Partly outside a 50 x 30 desktop: only the inside is sent.
        writer.frame(&[(Rect::new(0, 0, 70, 40), px.clone())], 50, 30, &mut out);
        let c = client(&out, 50, 30);
        let inside: Vec<u8> = (0..30)
            .flat_map(|y| rgb_of(&px[y * 70 * 4..(y * 70 + 50) * 4]))
            .collect();
        assert_eq!(c.rgb, inside);
        // Entirely outside, or short pixel data: nothing, and no panic.
        out.clear();
        writer.frame(
            &[(Rect::new(200, 200, 10, 10), vec![0; 400])],
            100,
            100,
            &mut out,
        );
        writer.frame(
            &[(Rect::new(0, 0, 70, 40), vec![0; 16])],
            100,
            100,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn client_capabilities_bound_the_updates() {
        let client_caps = [
            CapabilitySet::MultiFragmentUpdate(caps::MultifragmentUpdate {
                max_request_size: 600_000,
            }),
            CapabilitySet::General(caps::General {
                extra_flags: caps::GeneralExtraFlags::NO_BITMAP_COMPRESSION_HDR,
                ..Default::default()
            }),
        ];
        assert_eq!(BitmapCaps::from_client(&client_caps), caps(600_000, false));
        assert_eq!(BitmapCaps::from_client(&[]), caps(MAX_FRAGMENT, true));
        let huge = [CapabilitySet::MultiFragmentUpdate(
            caps::MultifragmentUpdate {
                max_request_size: u32::MAX,
            },
        )];
        assert_eq!(BitmapCaps::from_client(&huge).max_update, MAX_UPDATE);
    }
}
