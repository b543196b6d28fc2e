//! Entry points for fuzzing the reassembly bounds with what a hostile target or native client
//! sends: static channel chunks (both sides) and fast-path fragments. Each must return, never
//! panic, and keep IronRDP's partial messages within the bounds, whatever the bytes.

use std::borrow::Cow;

use ironrdp_pdu::mcs::{McsMessage, SendDataIndication, SendDataRequest};
use ironrdp_pdu::x224::X224;
use ironrdp_svc::{StaticVirtualChannel, SvcMessage};

use super::{Reassembly, Verdict};

/// An MCS Send Data Indication (from a target, `indication`) or Request (from a client) on
/// `channel_id`, carrying one channel chunk: its header (`declared`, `flags`) and `data`.
pub fn channel_frame(
    indication: bool,
    channel_id: u16,
    declared: u32,
    flags: u32,
    data: &[u8],
) -> Vec<u8> {
    let mut user_data = Vec::with_capacity(8 + data.len());
    user_data.extend_from_slice(&declared.to_le_bytes());
    user_data.extend_from_slice(&flags.to_le_bytes());
    user_data.extend_from_slice(data);
    let user_data = Cow::Owned(user_data);
    let message = if indication {
        McsMessage::SendDataIndication(SendDataIndication {
            initiator_id: 1007,
            channel_id,
            user_data,
        })
    } else {
        McsMessage::SendDataRequest(SendDataRequest {
            initiator_id: 1007,
            channel_id,
            user_data,
        })
    };
    ironrdp_core::encode_vec(&X224(message)).unwrap_or_default()
}

/// A fast-path output frame with one update: `header` is the update header byte (update code,
/// fragmentation << 4, compression << 6), then `data` (MS-RDPBCGR 2.2.9.1.2).
pub fn fast_path_frame(header: u8, data: &[u8]) -> Vec<u8> {
    let mut update = vec![header];
    if header >> 6 == 2 {
        // FASTPATH_OUTPUT_COMPRESSION_USED: a compression flags byte follows.
        update.push(0);
    }
    let size = u16::try_from(data.len()).unwrap_or(u16::MAX);
    update.extend_from_slice(&size.to_le_bytes());
    update.extend_from_slice(&data[..usize::from(size)]);
    let total = u16::try_from(update.len() + 3).unwrap_or(u16::MAX) & 0x7fff;
    let mut frame = vec![0x00, 0x80 | (total >> 8) as u8, (total & 0xff) as u8];
    frame.extend_from_slice(&update);
    frame
}

/// Records the size of every message IronRDP's chunk processor completes.
#[derive(Debug, Default)]
struct Completed {
    sizes: Vec<usize>,
}

ironrdp_core::impl_as_any!(Completed);

impl ironrdp_svc::SvcProcessor for Completed {
    fn channel_name(&self) -> ironrdp_pdu::gcc::ChannelName {
        ironrdp_pdu::gcc::ChannelName::from_static(b"fuzz\0\0\0\0")
    }

    fn process(&mut self, payload: &[u8]) -> ironrdp_pdu::PduResult<Vec<SvcMessage>> {
        self.sizes.push(payload.len());
        Ok(Vec::new())
    }
}

impl ironrdp_svc::SvcClientProcessor for Completed {}
impl ironrdp_svc::SvcServerProcessor for Completed {}

/// Channel limits of the oracles: small, so short inputs reach them.
const LIMITS: [usize; 2] = [300, 600];

/// One chunk per record: `[selector][declared lo][declared hi][flags][len][len bytes]`. The
/// selector picks the channel (bit 0) and shifts the declared total left (bits 1-5, so that
/// 4 GiB is reachable); flags bit 0 is FIRST, bit 1 LAST, bit 2 PACKET_COMPRESSED.
fn channel_conversation(data: &[u8], from_target: bool) {
    let ids = [1004u16, 1005];
    // A session's gate and IronRDP's two channels, from nothing.
    let fresh = || {
        let mut gate = Reassembly::with_limits(4096, 800);
        for (id, limit) in ids.iter().zip(LIMITS) {
            gate.add_channel(*id, "fuzz", limit);
        }
        let channels = [
            StaticVirtualChannel::new(Completed::default()),
            StaticVirtualChannel::new(Completed::default()),
        ];
        (gate, channels)
    };
    let (mut gate, mut channels) = fresh();
    let mut rest = data;
    while let [sel, lo, hi, flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        let which = usize::from(sel & 1);
        let declared = u32::from(u16::from_le_bytes([*lo, *hi])) << ((sel >> 1) & 0x1f);
        let flags = u32::from(flags & 3) | if flags & 4 != 0 { 0x0020_0000 } else { 0 };
        let frame = channel_frame(from_target, ids[which], declared, flags, chunk);
        let verdict = if from_target {
            // The adapter hands the whole frame to the gate.
            gate.frame(false, &frame)
        } else {
            // The listener decodes the MCS message itself and hands over the channel data.
            let mut user_data = declared.to_le_bytes().to_vec();
            user_data.extend_from_slice(&flags.to_le_bytes());
            user_data.extend_from_slice(chunk);
            gate.channel_chunk(ids[which], &user_data)
        };
        gate.check_bounds();
        match verdict {
            Ok(Verdict::Pass) => {
                let Ok(X224(message)) = ironrdp_core::decode::<X224<McsMessage<'_>>>(&frame) else {
                    continue;
                };
                let user_data = match &message {
                    McsMessage::SendDataIndication(d) => d.user_data.as_ref(),
                    McsMessage::SendDataRequest(d) => d.user_data.as_ref(),
                    _ => continue,
                };
                let _ = channels[which].process(user_data);
                let completed = channels[which]
                    .channel_processor_downcast_mut::<Completed>()
                    .map(|c| std::mem::take(&mut c.sizes))
                    .unwrap_or_default();
                for size in completed {
                    // A whole message is within the channel's limit, or one lone chunk.
                    assert!(
                        size <= LIMITS[which] || size == chunk.len(),
                        "IronRDP completed a {size}-byte message past the limit"
                    );
                }
            }
            Ok(Verdict::Skip) => {}
            // The session ends; a new one starts from nothing.
            Err(_) => (gate, channels) = fresh(),
        }
    }
}

/// Chunks a hostile target sends on the adapter's static channels.
pub fn client_channel_chunks(data: &[u8]) {
    channel_conversation(data, true);
}

/// Chunks a hostile native client sends on the listener's static channels.
pub fn server_channel_chunks(data: &[u8]) {
    channel_conversation(data, false);
}

/// Frames [`fast_path_fragments`] feeds the gate at most per input.
const MAX_FAST_PATH_FRAMES: usize = 64;

/// Fast-path frames from a hostile target: per record `[update header][len lo][len hi]` and
/// that many zero bytes (at most 8000, so few input bytes make big updates), or, for header
/// 0xff, `len` bytes of the input as a raw frame.
pub fn fast_path_fragments(data: &[u8]) {
    let mut gate = Reassembly::with_limits(16 * 1024, 24 * 1024);
    gate.add_channel(1004, "fuzz", 8 * 1024);
    let zeros = [0u8; 8000];
    let mut rest = data;
    // At most this many frames per input: a few times what the caps allow (16 KiB over frames
    // of up to 8000 bytes) is enough to cross every cap, and it keeps one run cheap (an input of
    // 4 KiB could otherwise ask for 1365 frames of 8000 bytes: 350 runs/s instead of thousands).
    let mut frames = 0;
    while let [header, lo, hi, tail @ ..] = rest {
        frames += 1;
        if frames > MAX_FAST_PATH_FRAMES {
            break;
        }
        let len = usize::from(u16::from_le_bytes([*lo, *hi]));
        let frame = if *header == 0xff {
            let len = len.min(tail.len());
            let (raw, next) = tail.split_at(len);
            rest = next;
            raw.to_vec()
        } else {
            rest = tail;
            fast_path_frame(*header, &zeros[..len.min(zeros.len())])
        };
        let result = gate.frame(true, &frame);
        gate.check_bounds();
        if result.is_err() {
            gate = Reassembly::with_limits(16 * 1024, 24 * 1024);
        }
    }
}
