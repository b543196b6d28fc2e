//! A minimal fragmented-MP4 writer for one H.264 video track (ISO/IEC 14496-12 and -15).
//!
//! We write the boxes ourselves instead of using FFmpeg's muxer because the recorder must know
//! exactly where each fragment starts and ends (to hash, fsync and list it) and must cut
//! fragments by time, not only at keyframes. Timescale is 1000: times are milliseconds.

/// Milliseconds per second: the track and movie timescale.
pub const TIMESCALE: u32 = 1000;

/// One encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Length-prefixed NAL units (4-byte lengths).
    pub data: Vec<u8>,
    /// Decode time (= presentation time: no B-frames), ms.
    pub time_ms: u64,
    /// How long it shows, ms (at least 1).
    pub duration_ms: u32,
    /// A keyframe (IDR).
    pub key: bool,
}

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(
        &u32::try_from(body.len() + 8)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 4);
    b.push(version);
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    boxed(kind, &b)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn matrix() -> Vec<u8> {
    UNITY_MATRIX.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// The initialisation segment (ftyp + moov) of a track of `width` × `height` with the given
/// `avcC` payload.
pub fn init_segment(width: u32, height: u32, avcc: &[u8]) -> Vec<u8> {
    let ftyp = boxed(
        b"ftyp",
        &cat(&[b"isom", &0x200u32.to_be_bytes(), b"isomiso6avc1mp41"]),
    );

    let mut mvhd = Vec::new();
    mvhd.extend_from_slice(&[0; 8]); // creation, modification
    mvhd.extend_from_slice(&TIMESCALE.to_be_bytes());
    mvhd.extend_from_slice(&0u32.to_be_bytes()); // duration: unknown (fragmented)
    mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
    mvhd.extend_from_slice(&[0; 10]);
    mvhd.extend_from_slice(&matrix());
    mvhd.extend_from_slice(&[0; 24]); // pre_defined
    mvhd.extend_from_slice(&2u32.to_be_bytes()); // next track id
    let mvhd = full_box(b"mvhd", 0, 0, &mvhd);

    let mut tkhd = Vec::new();
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&1u32.to_be_bytes()); // track id
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&0u32.to_be_bytes()); // duration
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&[0; 4]); // layer, alternate group
    tkhd.extend_from_slice(&[0; 4]); // volume 0, reserved
    tkhd.extend_from_slice(&matrix());
    tkhd.extend_from_slice(&(width << 16).to_be_bytes());
    tkhd.extend_from_slice(&(height << 16).to_be_bytes());
    let tkhd = full_box(b"tkhd", 0, 3, &tkhd); // enabled, in movie

    let mut mdhd = Vec::new();
    mdhd.extend_from_slice(&[0; 8]);
    mdhd.extend_from_slice(&TIMESCALE.to_be_bytes());
    mdhd.extend_from_slice(&0u32.to_be_bytes());
    mdhd.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
    mdhd.extend_from_slice(&[0; 2]);
    let mdhd = full_box(b"mdhd", 0, 0, &mdhd);

    let hdlr = full_box(
        b"hdlr",
        0,
        0,
        &cat(&[&[0; 4], b"vide", &[0; 12], b"Portcullis video\0"]),
    );
    let vmhd = full_box(b"vmhd", 0, 1, &[0; 8]);
    let dref = full_box(
        b"dref",
        0,
        0,
        &cat(&[&1u32.to_be_bytes(), &full_box(b"url ", 0, 1, &[])]),
    );
    let dinf = boxed(b"dinf", &dref);

    let mut avc1 = Vec::new();
    avc1.extend_from_slice(&[0; 6]);
    avc1.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend_from_slice(&u16::try_from(width).unwrap_or(u16::MAX).to_be_bytes());
    avc1.extend_from_slice(&u16::try_from(height).unwrap_or(u16::MAX).to_be_bytes());
    avc1.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
    avc1.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    avc1.extend_from_slice(&[0; 4]);
    avc1.extend_from_slice(&1u16.to_be_bytes()); // frame count
    avc1.extend_from_slice(&[0; 32]); // compressor name
    avc1.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
    avc1.extend_from_slice(&(-1i16).to_be_bytes());
    avc1.extend_from_slice(&boxed(b"avcC", avcc));
    let avc1 = boxed(b"avc1", &avc1);
    let stsd = full_box(b"stsd", 0, 0, &cat(&[&1u32.to_be_bytes(), &avc1]));
    let empty = 0u32.to_be_bytes();
    let stbl = boxed(
        b"stbl",
        &cat(&[
            &stsd,
            &full_box(b"stts", 0, 0, &empty),
            &full_box(b"stsc", 0, 0, &empty),
            &full_box(b"stsz", 0, 0, &[0; 8]),
            &full_box(b"stco", 0, 0, &empty),
        ]),
    );
    let minf = boxed(b"minf", &cat(&[&vmhd, &dinf, &stbl]));
    let mdia = boxed(b"mdia", &cat(&[&mdhd, &hdlr, &minf]));
    let trak = boxed(b"trak", &cat(&[&tkhd, &mdia]));

    let mut trex = Vec::new();
    trex.extend_from_slice(&1u32.to_be_bytes()); // track id
    trex.extend_from_slice(&1u32.to_be_bytes()); // sample description index
    trex.extend_from_slice(&[0; 12]);
    let mvex = boxed(b"mvex", &full_box(b"trex", 0, 0, &trex));
    let moov = boxed(b"moov", &cat(&[&mvhd, &trak, &mvex]));
    cat(&[&ftyp, &moov])
}

const SAMPLE_FLAGS_KEY: u32 = 0x0200_0000; // depends on no other sample
const SAMPLE_FLAGS_DELTA: u32 = 0x0101_0000; // depends on others, not a sync sample

/// One media segment (moof + mdat) holding `samples`, which must be consecutive in time.
/// `sequence` counts fragments from 1 within the file.
pub fn fragment(sequence: u32, samples: &[Sample]) -> Vec<u8> {
    let base = samples.first().map_or(0, |s| s.time_ms);
    let mfhd = full_box(b"mfhd", 0, 0, &sequence.to_be_bytes());
    let tfhd = full_box(b"tfhd", 0, 0x02_0000, &1u32.to_be_bytes()); // default-base-is-moof
    let tfdt = full_box(b"tfdt", 1, 0, &base.to_be_bytes());
    // data-offset, sample duration, size and flags present.
    let trun_flags = 0x000001 | 0x000100 | 0x000200 | 0x000400;
    let trun_len = 8 + 4 + 4 + 4 + samples.len() * 12;
    let traf_len = 8 + tfhd.len() + tfdt.len() + trun_len;
    let moof_len = 8 + mfhd.len() + traf_len;
    let mut trun = Vec::with_capacity(trun_len);
    trun.extend_from_slice(&u32::try_from(samples.len()).unwrap_or(0).to_be_bytes());
    let data_offset = moof_len + 8; // past the moof and the mdat header
    trun.extend_from_slice(&i32::try_from(data_offset).unwrap_or(0).to_be_bytes());
    for s in samples {
        trun.extend_from_slice(&s.duration_ms.max(1).to_be_bytes());
        trun.extend_from_slice(&u32::try_from(s.data.len()).unwrap_or(0).to_be_bytes());
        let flags = if s.key {
            SAMPLE_FLAGS_KEY
        } else {
            SAMPLE_FLAGS_DELTA
        };
        trun.extend_from_slice(&flags.to_be_bytes());
    }
    let trun = full_box(b"trun", 0, trun_flags, &trun);
    let traf = boxed(b"traf", &cat(&[&tfhd, &tfdt, &trun]));
    let moof = boxed(b"moof", &cat(&[&mfhd, &traf]));
    debug_assert_eq!(moof.len(), moof_len);
    let mdat_len: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = moof;
    out.reserve(mdat_len + 8);
    out.extend_from_slice(
        &u32::try_from(mdat_len + 8)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(b"mdat");
    for s in samples {
        out.extend_from_slice(&s.data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks top-level boxes: (type, size).
    fn boxes(mut b: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            out.push((String::from_utf8_lossy(&b[4..8]).into_owned(), len));
            b = &b[len.min(b.len())..];
        }
        out
    }

    #[test]
    fn init_and_fragment_are_well_formed_box_sequences() {
        let init = init_segment(1280, 800, &[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]);
        let kinds: Vec<String> = boxes(&init).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, ["ftyp", "moov"]);
        let samples = vec![
            Sample {
                data: vec![0, 0, 0, 1, 0x65],
                time_ms: 500,
                duration_ms: 200,
                key: true,
            },
            Sample {
                data: vec![0, 0, 0, 2, 0x41, 0],
                time_ms: 700,
                duration_ms: 300,
                key: false,
            },
        ];
        let frag = fragment(3, &samples);
        let b = boxes(&frag);
        assert_eq!(
            b.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["moof", "mdat"]
        );
        assert_eq!(b[0].1 + b[1].1, frag.len());
        // The data offset in trun points at the first sample.
        let moof_len = b[0].1;
        assert_eq!(&frag[moof_len + 8..moof_len + 13], &[0, 0, 0, 1, 0x65]);
    }
}
