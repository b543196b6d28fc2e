//! Entry points for fuzzing what a native client can send before and after it is logged in.
//! Each must return (never panic, never allocate without bound) whatever the bytes.

use ironrdp_core::decode;
use ironrdp_pdu::input::fast_path::FastPathInput;
use ironrdp_pdu::mcs::McsMessage;
use ironrdp_pdu::nego;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::x224::X224;
use portcullis_core::desktop::InputEvent;

use super::input::InputMapper;

/// Feeds `data` to every parser the server applies to client bytes: the connection request,
/// the Client Info PDU, fast-path and slow-path input (through the input mapper, whose output
/// must stay inside the desktop).
pub fn client_bytes(data: &[u8]) {
    let _ = decode::<X224<nego::ConnectionRequest>>(data);
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let _ = super::handshake::client_info(data, None, peer);
    let mut mapper = InputMapper::new(64, 48);
    let mut events = Vec::new();
    if !super::input::fast_path_input_sane(data) {
        // Refused before decoding, as the server does.
    } else if let Ok(input) = decode::<FastPathInput>(data) {
        events.extend(mapper.fast_path(input.input_events()));
    }
    if let Ok(X224(McsMessage::SendDataRequest(req))) = decode::<X224<McsMessage<'_>>>(data) {
        if let Ok(header) = decode::<ShareControlHeader>(req.user_data.as_ref()) {
            if let ShareControlPdu::Data(d) = header.share_control_pdu {
                if let ShareDataPdu::Input(input) = d.share_data_pdu {
                    events.extend(mapper.slow_path(&input.0));
                }
            }
        }
    }
    for e in events {
        if let InputEvent::Pointer { x, y, .. } = e {
            assert!(x < 64 && y < 48, "pointer outside the desktop: {x},{y}");
        }
    }
}

/// What a native client (or a hostile target) may send on the clipboard channel, to ready
/// CLIPRDR processors of both roles.
pub fn clipboard_bytes(data: &[u8]) {
    crate::clip::fuzz_channel_bytes(data);
}

/// Feeds `data` to the drive redirection relay as a conversation: the first byte picks the
/// terms, then each message is `[side][len lo][len hi][bytes]` (side even: the target, odd: the
/// client). Whatever comes, the relay must never panic, keep its state bounded, and pass to the
/// client only what the target sent (the client's bytes never come back to it).
pub fn drive_bytes(data: &[u8]) {
    use crate::drive::{DriveOutput, DriveRelay, DriveTerms};
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut relay = DriveRelay::new(DriveTerms {
        upload: first & 1 != 0,
        download: first & 2 != 0,
    });
    while let [side, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (pdu, next) = tail.split_at(len);
        rest = next;
        let outputs = if side % 2 == 0 {
            relay.from_target(pdu)
        } else {
            relay.from_client(pdu)
        };
        for out in outputs {
            if let DriveOutput::ToClient(bytes) = out {
                assert!(
                    side % 2 == 0 && bytes == pdu,
                    "the client got bytes the target did not send"
                );
            }
        }
        relay.check_bounds();
    }
    let _ = relay.finish();
}

#[cfg(test)]
mod tests {
    /// `count` inputs of growing length (up to `max_len`) from a fixed xorshift stream.
    fn pseudo_random_inputs(seed: u32, count: usize, max_len: usize) -> Vec<Vec<u8>> {
        let mut x = seed;
        (0..count)
            .map(|len| {
                (0..len % max_len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x.to_le_bytes()[0]
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn random_and_truncated_client_bytes_are_harmless() {
        // A fixed pseudo-random stream, and every prefix of a few real PDU shapes.
        for data in pseudo_random_inputs(0x1234_5678, 2000, 300) {
            super::client_bytes(&data);
        }
        let fast_path_mouse = [0x00, 0x08, 0x01, 0x20, 0x00, 0x08, 0xff, 0xff, 0xff, 0xff];
        for cut in 0..=fast_path_mouse.len() {
            super::client_bytes(&fast_path_mouse[..cut]);
        }
    }

    #[test]
    fn random_drive_conversations_are_harmless() {
        for data in pseudo_random_inputs(0x9E37_79B9, 3000, 400) {
            super::drive_bytes(&data);
        }
    }
}
