use super::oracles::update_ends;
use super::{Framer, FOLLOWED_ENCODINGS};

fn update(rects: &[Vec<u8>]) -> Vec<u8> {
    let count = u16::try_from(rects.len()).unwrap();
    let mut m = vec![0, 0];
    m.extend_from_slice(&count.to_be_bytes());
    for r in rects {
        m.extend_from_slice(r);
    }
    m
}

fn rect_header(width: u16, height: u16, encoding: i32) -> Vec<u8> {
    let mut h = vec![0, 1, 0, 2];
    h.extend_from_slice(&width.to_be_bytes());
    h.extend_from_slice(&height.to_be_bytes());
    h.extend_from_slice(&encoding.to_be_bytes());
    h
}

fn raw(width: u16, height: u16) -> Vec<u8> {
    let mut r = rect_header(width, height, 0);
    r.extend(std::iter::repeat_n(
        0xab,
        usize::from(width) * usize::from(height) * 4,
    ));
    r
}

fn copy_rect() -> Vec<u8> {
    let mut r = rect_header(8, 8, 1);
    r.extend_from_slice(&[0, 3, 0, 4]);
    r
}

fn zrle(payload: &[u8]) -> Vec<u8> {
    let mut r = rect_header(16, 16, 16);
    r.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    r.extend_from_slice(payload);
    r
}

fn desktop_size() -> Vec<u8> {
    rect_header(800, 600, -223)
}

fn bell() -> Vec<u8> {
    vec![2]
}

fn cut_text(text: &[u8]) -> Vec<u8> {
    let mut m = vec![3, 0, 0, 0];
    m.extend_from_slice(&u32::try_from(text.len()).unwrap().to_be_bytes());
    m.extend_from_slice(text);
    m
}

fn colour_map(colours: u16) -> Vec<u8> {
    let mut m = vec![1, 0, 0, 5];
    m.extend_from_slice(&colours.to_be_bytes());
    m.extend(std::iter::repeat_n(7, usize::from(colours) * 6));
    m
}

/// A stream with every message kind, and the offsets where its updates end.
fn every_kind() -> (Vec<u8>, Vec<usize>) {
    let messages = [
        (update(&[raw(3, 2), copy_rect()]), true),
        (bell(), false),
        (update(&[]), true),
        (cut_text(b"hello"), false),
        (colour_map(3), false),
        (
            update(&[zrle(&[1, 2, 3, 4, 5]), desktop_size(), raw(1, 1)]),
            true,
        ),
        (cut_text(b""), false),
        (colour_map(0), false),
        (update(&[zrle(&[])]), true),
        (update(&[]), true),
    ];
    let mut stream = Vec::new();
    let mut ends = Vec::new();
    for (m, is_update) in messages {
        stream.extend_from_slice(&m);
        if is_update {
            ends.push(stream.len());
        }
    }
    (stream, ends)
}

#[test]
fn finds_the_end_of_every_update_among_every_message_kind() {
    let (stream, ends) = every_kind();
    assert_eq!(update_ends(&stream, stream.len()), ends);
}

#[test]
fn the_same_ends_whatever_the_split() {
    let (stream, ends) = every_kind();
    for piece in 1..=stream.len() {
        assert_eq!(update_ends(&stream, piece), ends, "pieces of {piece}");
    }
    // One cut at every byte boundary.
    for cut in 0..=stream.len() {
        let mut framer = Framer::new(4);
        let mut found = Vec::new();
        let mut base = 0;
        for part in [&stream[..cut], &stream[cut..]] {
            let mut at = 0;
            while at < part.len() {
                let fed = framer.feed(&part[at..]);
                at += fed.consumed;
                if fed.update_end {
                    found.push(base + at);
                }
            }
            base += part.len();
        }
        assert_eq!(found, ends, "cut at {cut}");
    }
}

#[test]
fn an_empty_update_ends_with_its_header() {
    let mut framer = Framer::new(4);
    let fed = framer.feed(&[0, 0, 0, 0, 2]);
    assert_eq!(fed.consumed, 4);
    assert!(fed.update_end);
    assert!(!framer.feed(&[2]).update_end);
    assert!(!framer.is_lost());
}

#[test]
fn stops_right_after_an_update_so_the_caller_can_insert_there() {
    let mut stream = update(&[copy_rect()]);
    let first = stream.len();
    stream.extend(bell());
    stream.extend(update(&[]));
    let mut framer = Framer::new(4);
    let fed = framer.feed(&stream);
    assert_eq!((fed.consumed, fed.update_end), (first, true));
    let fed = framer.feed(&stream[first..]);
    assert_eq!((fed.consumed, fed.update_end), (stream.len() - first, true));
}

#[test]
fn a_lying_length_only_counts() {
    // A ZRLE rectangle announcing 4 GiB, a cut text announcing 4 GiB, a raw 65535×65535 rectangle:
    // nothing is allocated, and the update does not end before the announced bytes came.
    for message in [
        {
            let mut m = update(&[rect_header(16, 16, 16)]);
            m.extend_from_slice(&u32::MAX.to_be_bytes());
            m
        },
        {
            let mut m = vec![3, 0, 0, 0];
            m.extend_from_slice(&u32::MAX.to_be_bytes());
            m
        },
        update(&[rect_header(u16::MAX, u16::MAX, 0)]),
        {
            let mut m = colour_map(0);
            m[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
            m
        },
    ] {
        let mut framer = Framer::new(4);
        let fed = framer.feed(&message);
        assert_eq!((fed.consumed, fed.update_end), (message.len(), false));
        // 256 KiB of filler later, still waiting for the rest: it never ends early.
        let filler = vec![0_u8; 256 << 10];
        let fed = framer.feed(&filler);
        assert_eq!((fed.consumed, fed.update_end), (filler.len(), false));
        assert!(!framer.is_lost());
        // And its memory is what it was.
        assert_eq!(
            std::mem::size_of_val(&framer),
            std::mem::size_of::<Framer>()
        );
    }
}

#[test]
fn a_raw_rectangle_of_the_largest_size_is_counted_in_64_bits() {
    let mut framer = Framer::new(4);
    let mut header = update(&[rect_header(u16::MAX, u16::MAX, 0)]);
    header.truncate(16);
    let _ = framer.feed(&header);
    assert_eq!(
        framer.state,
        super::State::Skip {
            left: 65535 * 65535 * 4,
            then: super::Then::Rects { left: 0 },
        }
    );
}

#[test]
fn an_unknown_message_or_encoding_loses_sync_for_good() {
    let unknown_message = [250_u8, 0, 0, 0];
    let mut trle = update(&[rect_header(4, 4, 15)]);
    trle.extend_from_slice(&[0; 64]);
    let tight = update(&[rect_header(4, 4, 7)]);
    let cursor = update(&[rect_header(4, 4, -239)]);
    for bad in [&unknown_message[..], &trle, &tight, &cursor] {
        let mut framer = Framer::new(4);
        let fed = framer.feed(bad);
        assert_eq!((fed.consumed, fed.update_end), (bad.len(), false));
        assert!(framer.is_lost());
        // Whatever follows passes uncounted: no false update end.
        let later = update(&[]);
        assert!(!framer.feed(&later).update_end);
        assert!(framer.is_lost());
    }
}

#[test]
fn follows_exactly_the_encodings_it_can_measure() {
    for encoding in FOLLOWED_ENCODINGS {
        let mut framer = Framer::new(4);
        let _ = framer.feed(&update(&[rect_header(1, 1, encoding)]));
        assert!(!framer.is_lost(), "encoding {encoding}");
    }
}

#[test]
fn bytes_per_pixel_sizes_raw_rectangles() {
    let mut framer = Framer::new(1);
    let mut m = update(&[rect_header(3, 2, 0)]);
    m.extend_from_slice(&[0; 6]);
    let fed = framer.feed(&m);
    assert_eq!((fed.consumed, fed.update_end), (m.len(), true));
}

#[test]
fn the_fuzz_oracle_accepts_garbage() {
    let (stream, _) = every_kind();
    for seed in [&[][..], &[0], &[3, 0, 0, 0, 0, 0], &[1, 250, 1, 2], &stream] {
        super::oracles::server_stream(seed);
    }
}

#[test]
fn random_streams_of_real_and_garbage_messages_keep_the_oracle_happy() {
    // A poor man's fuzz run (cargo fuzz runs the same oracle): pieces of real messages and
    // random bytes, cut at random sizes.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let parts: Vec<Vec<u8>> = vec![
        update(&[raw(2, 2)]),
        update(&[copy_rect(), zrle(&[1, 2])]),
        update(&[]),
        update(&[desktop_size()]),
        bell(),
        cut_text(b"abc"),
        colour_map(2),
        rect_header(1, 1, 16),
    ];
    for _ in 0..3000 {
        let mut data = vec![u8::try_from(next() % 17).unwrap()];
        for _ in 0..(next() % 8) {
            if next() % 4 == 0 {
                data.extend((0..next() % 12).map(|_| u8::try_from(next() & 0xff).unwrap()));
            } else {
                let i = usize::try_from(next() % 8).unwrap();
                data.extend_from_slice(&parts[i]);
            }
        }
        super::oracles::server_stream(&data);
    }
}

fn rewrite(
    stream: &[u8],
) -> (
    Vec<u8>,
    Vec<super::Gathered>,
    Result<(), super::FramerError>,
) {
    let mut framer = Framer::rewriting();
    let (mut out, mut gathered) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at < stream.len() {
        match framer.feed_into(&stream[at..], &mut out, &mut gathered) {
            Ok(fed) => at += fed.consumed,
            Err(e) => return (out, gathered, Err(e)),
        }
    }
    (out, gathered, Ok(()))
}

#[test]
fn rewriting_hands_vnc_rs_a_copy_onto_itself_for_each_zrle_rectangle() {
    use super::Gathered;
    let self_copy = {
        let mut r = rect_header(8, 8, 1);
        r.extend_from_slice(&[0, 1, 0, 2]); // the header's own position
        r
    };
    let stream = [
        update(&[zrle(&[1, 2, 3]), copy_rect(), self_copy.clone(), raw(1, 1)]),
        bell(),
    ]
    .concat();
    let (out, gathered, done) = rewrite(&stream);
    done.unwrap();
    // vnc-rs reads the ZRLE rectangle as a copy of it onto itself; everything else as sent.
    let mut as_copy = rect_header(16, 16, 1);
    as_copy.extend_from_slice(&[0, 1, 0, 2]);
    let want = [
        update(&[as_copy, copy_rect(), self_copy, raw(1, 1)]),
        bell(),
    ]
    .concat();
    assert_eq!(out, want);
    // The adapter gets the ZRLE data to decode, then a no-op for the server's own self-copy
    // (the copy from elsewhere is a real copy: nothing for it).
    assert_eq!(
        gathered,
        vec![
            Gathered::Zrle {
                rect: portcullis_core::desktop::Rect::new(1, 2, 16, 16),
                zlib: vec![1, 2, 3],
            },
            Gathered::NoOp {
                rect: portcullis_core::desktop::Rect::new(1, 2, 8, 8),
            },
        ]
    );
}

#[test]
fn rewriting_refuses_what_no_rectangle_can_take_and_losing_sync_after_zrle() {
    // 16×16 can take at most a few kB: 4 GiB announced is refused before any is kept.
    let mut lying = rect_header(16, 16, 16);
    lying.extend_from_slice(&u32::MAX.to_be_bytes());
    let (_, _, done) = rewrite(&update(&[lying]));
    assert!(
        matches!(done, Err(super::FramerError::ZrleLength(..))),
        "{done:?}"
    );
    // Larger than any rectangle taken.
    let mut huge = rect_header(8192, 8192, 16);
    huge.extend_from_slice(&4_u32.to_be_bytes());
    let (_, _, done) = rewrite(&update(&[huge]));
    assert!(
        matches!(done, Err(super::FramerError::ZrleSize(8192, 8192))),
        "{done:?}"
    );
    // An unknown message after a ZRLE rectangle: vnc-rs could not go on with ZRLE.
    let (_, _, done) = rewrite(&[update(&[zrle(&[1])]), vec![9, 0, 0]].concat());
    assert!(matches!(done, Err(super::FramerError::Lost)), "{done:?}");
    // Before any ZRLE, losing sync only stops the framing (the counting behaviour).
    let (out, _, done) = rewrite(&[update(&[raw(1, 1)]), vec![9, 0, 0]].concat());
    done.unwrap();
    assert_eq!(out.len(), update(&[raw(1, 1)]).len() + 3);
}
