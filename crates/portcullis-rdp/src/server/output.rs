//! What the server sends: bitmap updates, capability sets, error codes, disconnects.

use std::borrow::Cow;

use ironrdp_core::{encode_vec, Encode as _, WriteCursor};
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
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

/// Tiles of at most this many pixels wide and high: 64x32x4 = 8 KiB of pixels, comfortably
/// under the 16 374-byte payload of one unfragmented fast-path update.
const TILE_W: u32 = 64;
const TILE_H: u32 = 32;

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

/// Appends fast-path bitmap updates for `rect` (pixels RGBX, top-down, `rect.w * 4` per row),
/// clipped to a `width` x `height` desktop.
pub(crate) fn bitmap_updates(rect: Rect, rgbx: &[u8], width: u32, height: u32, out: &mut Vec<u8>) {
    let clip = rect.intersection(&Rect::new(0, 0, width, height));
    if clip.is_empty() || rgbx.len() < rect.area() as usize * 4 {
        return;
    }
    let stride = rect.w as usize * 4;
    let mut tile = Vec::with_capacity((TILE_W * TILE_H * 4) as usize);
    let mut y = clip.y;
    while u64::from(y) < clip.bottom() {
        let th = TILE_H.min(u32::try_from(clip.bottom()).unwrap_or(u32::MAX) - y);
        let mut x = clip.x;
        while u64::from(x) < clip.right() {
            let tw = TILE_W.min(u32::try_from(clip.right()).unwrap_or(u32::MAX) - x);
            tile.clear();
            // Bitmap rows go bottom-up, as BGRX.
            for row in (0..th).rev() {
                let sy = (y + row - rect.y) as usize;
                let sx = (x - rect.x) as usize;
                let src = &rgbx[sy * stride + sx * 4..sy * stride + (sx + tw as usize) * 4];
                for px in src.chunks_exact(4) {
                    tile.extend_from_slice(&[px[2], px[1], px[0], 0xff]);
                }
            }
            push_bitmap(x, y, tw, th, &tile, out);
            x += tw;
        }
        y += th;
    }
}

fn push_bitmap(x: u32, y: u32, w: u32, h: u32, data: &[u8], out: &mut Vec<u8>) {
    let to16 = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
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
        compression_flags: Compression::empty(),
        compressed_data_header: None,
        bitmap_data: data,
    };
    let update = BitmapUpdateData {
        rectangles: vec![bitmap],
    };
    if let Ok(payload) = encode_vec(&update) {
        fast_path(UpdateCode::Bitmap, &payload, out);
    }
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
    use super::*;

    #[test]
    fn bitmaps_are_tiled_clipped_and_bottom_up() {
        let rect = Rect::new(0, 0, 70, 40);
        let mut px = vec![0u8; 70 * 40 * 4];
        // Top-left pixel red.
        px[0] = 255;
        let mut out = Vec::new();
        bitmap_updates(rect, &px, 100, 100, &mut out);
        // 2 x 2 tiles.
        let mut n = 0;
        let mut rest = &out[..];
        while !rest.is_empty() {
            let len = if rest[1] & 0x80 != 0 {
                usize::from(u16::from_be_bytes([rest[1] & 0x7f, rest[2]]))
            } else {
                usize::from(rest[1])
            };
            rest = &rest[len..];
            n += 1;
        }
        assert_eq!(n, 4);
        // Clipped away entirely.
        let mut out = Vec::new();
        bitmap_updates(Rect::new(200, 200, 10, 10), &[0; 400], 100, 100, &mut out);
        assert!(out.is_empty());
        // Short pixel data is ignored, not a panic.
        bitmap_updates(rect, &[0; 16], 100, 100, &mut out);
        assert!(out.is_empty());
    }
}
