use super::oracles::{channel_frame, fast_path_frame};
use super::*;

const FIRST: u32 = CHANNEL_FLAG_FIRST;
const LAST: u32 = CHANNEL_FLAG_LAST;
const COMPRESSED: u32 = 0x0020_0000;
const CLIP: u16 = 1004;

fn chunk(declared: u32, flags: u32, data: &[u8]) -> Vec<u8> {
    let mut v = declared.to_le_bytes().to_vec();
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn gate() -> Reassembly {
    let mut g = Reassembly::new();
    g.add_channel(CLIP, "clipboard", 4096);
    g
}

#[test]
fn compressed_chunks_cannot_grow_past_the_declared_total() {
    // IronRDP skips its length check for compressed chunks: one first chunk declaring 100 bytes
    // and then compressed chunks without end would grow its buffer for ever.
    let mut g = gate();
    let data = [0u8; 50];
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(100, FIRST | COMPRESSED, &data)),
        Ok(Verdict::Pass)
    );
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(100, COMPRESSED, &data)),
        Ok(Verdict::Pass)
    );
    assert_eq!(g.held(), 100);
    let e = g
        .channel_chunk(CLIP, &chunk(100, COMPRESSED, &data[..1]))
        .unwrap_err();
    assert_eq!(
        e,
        BoundsError::ChannelOverrun {
            channel: "clipboard",
            declared: 100
        }
    );
    assert_eq!(
        e.to_string(),
        "the clipboard channel sent more than the 100 bytes its message announced"
    );
    assert_eq!(g.held(), 0);
}

#[test]
fn a_four_gib_message_ends_the_session_at_its_first_chunk() {
    let mut g = gate();
    let frame = channel_frame(true, CLIP, u32::MAX, FIRST, &[0; 16]);
    let e = g.frame(false, &frame).unwrap_err();
    assert!(
        matches!(e, BoundsError::ChannelDeclared { declared, .. } if declared == u64::from(u32::MAX))
    );
    assert_eq!(g.held(), 0);
}

#[test]
fn a_message_above_the_channel_limit_is_skipped_then_the_channel_goes_on() {
    let mut g = gate();
    let big = 10_000u32;
    let part = [7u8; 1600];
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(big, FIRST, &part)),
        Ok(Verdict::Skip)
    );
    for _ in 0..5 {
        assert_eq!(
            g.channel_chunk(CLIP, &chunk(big, 0, &part)),
            Ok(Verdict::Skip)
        );
    }
    assert_eq!(g.held(), 0, "nothing of a skipped message is held");
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(big, LAST, &part[..400])),
        Ok(Verdict::Skip)
    );
    // The next message is whole again.
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(3, FIRST | LAST, b"abc")),
        Ok(Verdict::Pass)
    );
    // A skipped message may not carry more than it declared either.
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(big, FIRST, &part)),
        Ok(Verdict::Skip)
    );
    let mut result = Ok(Verdict::Skip);
    for _ in 0..10 {
        result = g.channel_chunk(CLIP, &chunk(big, COMPRESSED, &part));
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(BoundsError::ChannelOverrun { .. })),
        "{result:?}"
    );
}

#[test]
fn whole_messages_and_ironrdps_own_resets_leave_nothing_held() {
    let mut g = gate();
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(3000, FIRST, &[1; 1600])),
        Ok(Verdict::Pass)
    );
    assert_eq!(g.held(), 1600);
    assert_eq!(
        g.channel_chunk(CLIP, &chunk(3000, LAST, &[1; 1400])),
        Ok(Verdict::Pass)
    );
    assert_eq!(g.held(), 0);
    // A first chunk while a message is open: IronRDP drops both (with an error).
    g.channel_chunk(CLIP, &chunk(3000, FIRST, &[1; 1600]))
        .unwrap();
    g.channel_chunk(CLIP, &chunk(3000, FIRST, &[1; 1600]))
        .unwrap();
    assert_eq!(g.held(), 0);
    // A chunk of another total while one is open: the same.
    g.channel_chunk(CLIP, &chunk(3000, FIRST, &[1; 1600]))
        .unwrap();
    g.channel_chunk(CLIP, &chunk(2000, 0, &[1; 100])).unwrap();
    assert_eq!(g.held(), 0);
    // Channels the gate does not follow, and short frames, pass.
    assert_eq!(
        g.channel_chunk(1010, &chunk(u32::MAX, FIRST, &[])),
        Ok(Verdict::Pass)
    );
    assert_eq!(g.channel_chunk(CLIP, &[1, 2, 3]), Ok(Verdict::Pass));
    assert_eq!(g.frame(false, b"\x03\x00\x00\x04"), Ok(Verdict::Pass));
}

#[test]
fn the_session_limit_counts_every_channel_and_the_fast_path() {
    let mut g = Reassembly::with_limits(MAX_FAST_PATH_UPDATE, 5000);
    g.add_channel(1004, "clipboard", 4096);
    g.add_channel(1005, "drive", 4096);
    g.channel_chunk(1004, &chunk(4000, FIRST, &[0; 2000]))
        .unwrap();
    g.channel_chunk(1005, &chunk(4000, FIRST, &[0; 2000]))
        .unwrap();
    g.frame(true, &fast_path_frame(0x24, &[0; 900])).unwrap();
    assert_eq!(g.held(), 4900);
    assert_eq!(
        g.channel_chunk(1004, &chunk(4000, 0, &[0; 200])),
        Err(BoundsError::Session { limit: 5000 })
    );
    // That channel's message is gone; the others stay counted.
    assert_eq!(g.held(), 2900);
}

#[test]
fn endless_fast_path_fragments_end_the_session_at_the_advertised_limit() {
    let mut g = gate();
    let data = vec![0u8; 16_000];
    // Surface commands (code 4), first fragment (2 << 4), then next fragments (3 << 4).
    g.frame(true, &fast_path_frame(0x24, &data)).unwrap();
    let mut sent = data.len();
    let error = loop {
        match g.frame(true, &fast_path_frame(0x34, &data)) {
            Ok(_) => sent += data.len(),
            Err(e) => break e,
        }
        assert!(sent <= MAX_FAST_PATH_UPDATE, "held {sent} bytes");
    };
    assert_eq!(
        error,
        BoundsError::FastPathUpdate {
            limit: MAX_FAST_PATH_UPDATE
        }
    );
    assert_eq!(g.held(), 0);
}

#[test]
fn fast_path_sequences_end_as_ironrdps_do() {
    let mut g = gate();
    g.frame(true, &fast_path_frame(0x24, &[0; 100])).unwrap();
    g.frame(true, &fast_path_frame(0x34, &[0; 100])).unwrap();
    assert_eq!(g.held(), 200);
    // The last fragment completes it.
    g.frame(true, &fast_path_frame(0x14, &[0; 100])).unwrap();
    assert_eq!(g.held(), 0);
    // A single update drops what was open; so does a new first fragment.
    g.frame(true, &fast_path_frame(0x24, &[0; 100])).unwrap();
    g.frame(true, &fast_path_frame(0x04, &[0; 100])).unwrap();
    assert_eq!(g.held(), 0);
    g.frame(true, &fast_path_frame(0x24, &[0; 100])).unwrap();
    g.frame(true, &fast_path_frame(0x24, &[0; 50])).unwrap();
    assert_eq!(g.held(), 50);
    // Garbage passes (IronRDP refuses it) and leaves nothing counted.
    assert_eq!(
        g.frame(true, &[0x00, 0x05, 0xff, 0xff, 0xff]),
        Ok(Verdict::Pass)
    );
    assert_eq!(g.held(), 0);
}

#[test]
fn the_oracles_survive_pseudo_random_input() {
    let mut x = 0x2545_F491u32;
    for n in 0..3000usize {
        let data: Vec<u8> = (0..n % 700)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect();
        super::oracles::client_channel_chunks(&data);
        super::oracles::server_channel_chunks(&data);
        super::oracles::fast_path_fragments(&data);
    }
}
