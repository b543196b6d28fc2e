//! Entry point for fuzzing the framer with what a hostile VNC server sends: it must return,
//! never panic, always make progress, and find the same update ends however the bytes are cut.

use super::{Framer, Gathered};

/// Update-end offsets found in `stream` when it arrives in pieces of at most `piece` bytes.
pub fn update_ends(stream: &[u8], piece: usize) -> Vec<usize> {
    let mut framer = Framer::new(4);
    let mut ends = Vec::new();
    let mut offset = 0;
    for chunk in stream.chunks(piece.max(1)) {
        let mut at = 0;
        while at < chunk.len() {
            let fed = framer.feed(&chunk[at..]);
            assert!(fed.consumed <= chunk.len() - at, "consumed more than given");
            assert!(fed.consumed > 0, "no progress");
            at += fed.consumed;
            if fed.update_end {
                ends.push(offset + at);
            }
        }
        offset += chunk.len();
    }
    ends
}

/// What the rewriting framer makes of `stream` in pieces of at most `piece` bytes: the bytes
/// for vnc-rs, what it took over, the update ends, and whether it stopped with an error.
fn rewritten(stream: &[u8], piece: usize) -> (Vec<u8>, Vec<Gathered>, Vec<usize>, bool) {
    let mut framer = Framer::rewriting();
    let (mut out, mut decoded, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0;
    for chunk in stream.chunks(piece.max(1)) {
        let mut at = 0;
        while at < chunk.len() {
            let before = out.len();
            match framer.feed_into(&chunk[at..], &mut out, &mut decoded) {
                Ok(fed) => {
                    assert!(fed.consumed <= chunk.len() - at, "consumed more than given");
                    assert!(fed.consumed > 0, "no progress");
                    assert!(
                        out.len() - before <= fed.consumed + 16,
                        "more out than in beyond a rewritten header"
                    );
                    at += fed.consumed;
                    if fed.update_end {
                        ends.push(offset + at);
                    }
                }
                Err(_) => return (out, decoded, ends, true),
            }
        }
        offset += chunk.len();
    }
    (out, decoded, ends, false)
}

/// The first byte picks a piece size; the rest is the server's stream, framed whole and in
/// pieces, counting and rewriting: each must agree with itself however the bytes were cut.
pub fn server_stream(data: &[u8]) {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let whole = update_ends(stream, stream.len());
    let pieces = update_ends(stream, usize::from(piece));
    assert_eq!(
        whole, pieces,
        "update ends depend on how the bytes were cut"
    );
    let whole = rewritten(stream, stream.len());
    let pieces = rewritten(stream, usize::from(piece));
    assert!(
        whole == pieces,
        "the rewritten stream depends on how the bytes were cut"
    );
    // What vnc-rs reads holds no ZRLE, and its copies onto themselves are exactly the entries
    // the adapter will pop for them, rectangle for rectangle, in order: rewriting it again
    // changes nothing and finds one no-op per entry.
    let (out, gathered, _, _) = whole;
    let (again, noops, _, _) = rewritten(&out, out.len());
    assert_eq!(again, out, "vnc-rs was handed ZRLE");
    let rects = |g: &[Gathered]| -> Vec<_> {
        g.iter()
            .map(|e| match e {
                Gathered::Zrle { rect, .. } | Gathered::NoOp { rect } => *rect,
            })
            .collect()
    };
    assert!(
        noops.iter().all(|e| matches!(e, Gathered::NoOp { .. })),
        "ZRLE left in what vnc-rs reads"
    );
    assert_eq!(
        rects(&noops),
        rects(&gathered),
        "the copies vnc-rs reads and the entries for them differ"
    );
}

/// ZRLE decoding of what a hostile server sends: the first 4 bytes give the rectangle's size
/// (each side 1-256), the next one which half of the rest is tile data to compress ourselves
/// (reaching the tile parser) and which is fed as zlib data unchanged (the inflater and its
/// bound). Either must return a picture of exactly the rectangle's size or an error.
pub fn zrle_rect(data: &[u8]) {
    use crate::zrle::Zrle;
    use portcullis_core::desktop::Rect;

    let Some((head, rest)) = data.split_first_chunk::<5>() else {
        return;
    };
    let w = u32::from(u16::from_le_bytes([head[0], head[1]]) % 256) + 1;
    let h = u32::from(u16::from_le_bytes([head[2], head[3]]) % 256) + 1;
    let rect = Rect::new(0, 0, w, h);
    let (tiles, zlib) = rest.split_at(usize::from(head[4]) * rest.len() / 255);
    let mut compress = flate2::Compress::new(flate2::Compression::fast(), true);
    let mut packed = Vec::with_capacity(tiles.len() + 64);
    loop {
        let done = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        packed.reserve(256);
        if compress
            .compress_vec(
                tiles.get(done..).unwrap_or_default(),
                &mut packed,
                flate2::FlushCompress::Sync,
            )
            .is_err()
        {
            return;
        }
        if usize::try_from(compress.total_in()).unwrap_or(0) == tiles.len()
            && packed.len() < packed.capacity()
        {
            break;
        }
    }
    let mut zrle = Zrle::new();
    for bytes in [&packed[..], zlib] {
        if let Ok(px) = zrle.decode(rect, bytes) {
            assert_eq!(
                px.len(),
                (w * h * 4) as usize,
                "a picture of the wrong size"
            );
        }
    }
}
