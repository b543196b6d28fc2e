//! Entry point for fuzzing the framer with what a hostile VNC server sends: it must return,
//! never panic, always make progress, and find the same update ends however the bytes are cut.

use super::Framer;

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

/// The first byte picks a piece size; the rest is the server's stream, framed whole and in
/// pieces: both must agree.
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
}
