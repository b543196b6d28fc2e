//! Reads back the fragmented MP4 that [`crate::mp4`] writes: the `avcC` of an init segment and
//! the samples of a media fragment, for decoding a recording again (catch-up OCR). Only the
//! boxes our writer makes are understood; anything else is refused with the reason, never a
//! panic. Bounded by its input: no count read from the bytes allocates more than the bytes
//! could hold (fuzzed: `mp4_fragment`).

use thiserror::Error;

use crate::mp4::Sample;

/// Why bytes are not a fragment (or init segment) this crate wrote.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DemuxError {
    /// A box's size is not within the bytes around it.
    #[error("a {0:?} box's size does not fit")]
    BadBox(String),
    /// A box that must be there is not.
    #[error("no {0} box")]
    Missing(&'static str),
    /// A box is shorter than its fields.
    #[error("a {0} box is too short")]
    Short(&'static str),
    /// The samples do not lie within the fragment's media data.
    #[error("sample {0} lies outside the media data")]
    OutsideData(usize),
    /// A sample of no bytes, or more samples than a fragment of ours ever holds.
    #[error("sample {0} is empty or one too many")]
    BadSample(usize),
    /// The `avcC` record cannot be read.
    #[error("the decoder configuration cannot be read: {0}")]
    BadConfig(&'static str),
}

/// A box: its kind, where it starts, its body.
type Boxed<'a> = ([u8; 4], usize, &'a [u8]);

/// The boxes directly inside `bytes`, each with its start offset within `bytes`.
fn boxes(bytes: &[u8]) -> Result<Vec<Boxed<'_>>, DemuxError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 8)
            .ok_or_else(|| DemuxError::BadBox("(truncated)".into()))?;
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        // No 64-bit sizes and no "to the end" boxes: the writer makes neither.
        let body = (size >= 8)
            .then(|| bytes.get(at + 8..at.checked_add(size)?))
            .flatten()
            .ok_or_else(|| DemuxError::BadBox(String::from_utf8_lossy(&kind).into_owned()))?;
        out.push((kind, at, body));
        at += size;
    }
    Ok(out)
}

fn child<'a>(bytes: &'a [u8], kind: &[u8; 4], name: &'static str) -> Result<&'a [u8], DemuxError> {
    boxes(bytes)?
        .into_iter()
        .find(|(k, _, _)| k == kind)
        .map(|(_, _, body)| body)
        .ok_or(DemuxError::Missing(name))
}

fn u32_at(b: &[u8], at: usize, name: &'static str) -> Result<u32, DemuxError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(DemuxError::Short(name))
}

/// The `avcC` record of an init segment (its body: what [`crate::h264::avcc`] made).
pub fn avcc(init: &[u8]) -> Result<&[u8], DemuxError> {
    let moov = child(init, b"moov", "moov")?;
    let trak = child(moov, b"trak", "trak")?;
    let mdia = child(trak, b"mdia", "mdia")?;
    let minf = child(mdia, b"minf", "minf")?;
    let stbl = child(minf, b"stbl", "stbl")?;
    let stsd = child(stbl, b"stsd", "stsd")?;
    // Full box header (4) and the entry count (4).
    let entries = stsd.get(8..).ok_or(DemuxError::Short("stsd"))?;
    let avc1 = child(entries, b"avc1", "avc1")?;
    // The visual sample entry's fixed fields come before its child boxes.
    let children = avc1.get(78..).ok_or(DemuxError::Short("avc1"))?;
    child(children, b"avcC", "avcC")
}

/// The sequence and picture parameter sets an `avcC` record carries, as Annex B (each after a
/// start code): what a decoder must see before the first picture.
pub fn parameter_sets(avcc: &[u8]) -> Result<Vec<u8>, DemuxError> {
    let mut out = Vec::new();
    let mut at = 5usize;
    let sps_count = avcc.get(at).ok_or(DemuxError::BadConfig("too short"))? & 0x1f;
    at += 1;
    let take = |at: &mut usize, out: &mut Vec<u8>| -> Result<(), DemuxError> {
        let len = avcc
            .get(*at..*at + 2)
            .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
            .ok_or(DemuxError::BadConfig("a parameter set's length is missing"))?;
        let set = avcc
            .get(*at + 2..*at + 2 + len)
            .ok_or(DemuxError::BadConfig("a parameter set is cut short"))?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(set);
        *at += 2 + len;
        Ok(())
    };
    for _ in 0..sps_count {
        take(&mut at, &mut out)?;
    }
    let pps_count = *avcc
        .get(at)
        .ok_or(DemuxError::BadConfig("no picture set count"))?;
    at += 1;
    for _ in 0..pps_count {
        take(&mut at, &mut out)?;
    }
    if sps_count == 0 || pps_count == 0 {
        return Err(DemuxError::BadConfig("no parameter sets"));
    }
    Ok(out)
}

const TRUN_DATA_OFFSET: u32 = 0x000001;
const TRUN_FIRST_FLAGS: u32 = 0x000004;
const TRUN_DURATION: u32 = 0x000100;
const TRUN_SIZE: u32 = 0x000200;
const TRUN_FLAGS: u32 = 0x000400;
const TRUN_CTO: u32 = 0x000800;
/// A sample's flags say "depends on others" (not a sync sample).
const NON_SYNC: u32 = 0x0001_0000;
/// The most samples a fragment holds: the recorder cuts one every second at most 60 frames a
/// second (with repeats of a still picture, a few more).
pub const MAX_SAMPLES: usize = 1024;

/// The samples of one media fragment (a `moof` with one `traf`, then its `mdat`), with their
/// times from the fragment's decode time and their data (length-prefixed NAL units).
pub fn fragment(bytes: &[u8]) -> Result<Vec<Sample>, DemuxError> {
    let top = boxes(bytes)?;
    let (_, moof_at, moof) = top
        .iter()
        .find(|(k, _, _)| k == b"moof")
        .copied()
        .ok_or(DemuxError::Missing("moof"))?;
    let (_, mdat_at, mdat) = top
        .iter()
        .find(|(k, _, _)| k == b"mdat")
        .copied()
        .ok_or(DemuxError::Missing("mdat"))?;
    let traf = child(moof, b"traf", "traf")?;
    let tfdt = child(traf, b"tfdt", "tfdt")?;
    let base = match tfdt.first() {
        Some(1) => tfdt
            .get(4..12)
            .map(|s| u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
            .ok_or(DemuxError::Short("tfdt"))?,
        _ => u64::from(u32_at(tfdt, 4, "tfdt")?),
    };
    let trun = child(traf, b"trun", "trun")?;
    let flags = u32_at(trun, 0, "trun")? & 0x00ff_ffff;
    let count = u32_at(trun, 4, "trun")? as usize;
    let mut at = 8usize;
    let mut data_offset = None;
    if flags & TRUN_DATA_OFFSET != 0 {
        data_offset = Some(u32_at(trun, at, "trun")? as i32);
        at += 4;
    }
    if flags & TRUN_FIRST_FLAGS != 0 {
        at += 4;
    }
    let per_sample = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO]
        .iter()
        .filter(|f| flags & **f != 0)
        .count()
        * 4;
    if flags & TRUN_SIZE == 0 || per_sample == 0 {
        return Err(DemuxError::Short("trun (no sample sizes)"));
    }
    // The count cannot ask for more entries than the box holds.
    let room = trun.len().saturating_sub(at) / per_sample;
    if count > room {
        return Err(DemuxError::Short("trun"));
    }
    if count > MAX_SAMPLES {
        return Err(DemuxError::BadSample(MAX_SAMPLES));
    }
    let mdat_data = mdat_at + 8;
    let mut data = match data_offset {
        Some(off) => usize::try_from(i64::try_from(moof_at).unwrap_or(0) + i64::from(off))
            .map_err(|_| DemuxError::OutsideData(0))?,
        None => mdat_data,
    };
    let data_end = mdat_data + mdat.len();
    let mut time = base;
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let mut field = |on: u32| -> Result<Option<u32>, DemuxError> {
            if flags & on == 0 {
                return Ok(None);
            }
            let v = u32_at(trun, at, "trun")?;
            at += 4;
            Ok(Some(v))
        };
        let duration = field(TRUN_DURATION)?.unwrap_or(0);
        let size = field(TRUN_SIZE)?.unwrap_or(0) as usize;
        let sample_flags = field(TRUN_FLAGS)?.unwrap_or(0);
        let _cto = field(TRUN_CTO)?;
        if size == 0 {
            return Err(DemuxError::BadSample(n));
        }
        let end = data
            .checked_add(size)
            .filter(|&end| data >= mdat_data && end <= data_end)
            .ok_or(DemuxError::OutsideData(n))?;
        samples.push(Sample {
            data: bytes[data..end].to_vec(),
            time_ms: time,
            duration_ms: duration,
            key: sample_flags & NON_SYNC == 0,
        });
        data = end;
        time = time.saturating_add(u64::from(duration));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::mp4;

    fn sample(data: &[u8], time_ms: u64, duration_ms: u32, key: bool) -> Sample {
        Sample {
            data: data.to_vec(),
            time_ms,
            duration_ms,
            key,
        }
    }

    #[test]
    fn what_the_writer_wrote_is_read_back() {
        let sps = [0x67, 0x64, 0x00, 0x1f, 0xac];
        let pps = [0x68, 0xee, 0x3c];
        let config = crate::h264::avcc(&sps, &pps).unwrap();
        let init = mp4::init_segment(1280, 800, &config);
        assert_eq!(avcc(&init).unwrap(), config.as_slice());
        assert_eq!(
            parameter_sets(&config).unwrap(),
            [&[0, 0, 0, 1][..], &sps, &[0, 0, 0, 1], &pps].concat()
        );
        let samples = vec![
            sample(&[0, 0, 0, 1, 0x65], 500, 200, true),
            sample(&[0, 0, 0, 2, 0x41, 0], 700, 300, false),
            sample(&[0, 0, 0, 1, 0x41], 1000, 40, false),
        ];
        let frag = mp4::fragment(9, &samples);
        assert_eq!(fragment(&frag).unwrap(), samples);
    }

    #[test]
    fn damaged_bytes_are_refused_not_panicked_on() {
        let samples = vec![sample(&[0, 0, 0, 1, 0x65], 0, 100, true)];
        let frag = mp4::fragment(1, &samples);
        for cut in 0..frag.len() {
            let _ = fragment(&frag[..cut]);
        }
        for at in 0..frag.len() {
            let mut bad = frag.clone();
            bad[at] ^= 0xff;
            let _ = fragment(&bad);
        }
        assert_eq!(fragment(&[]).unwrap_err(), DemuxError::Missing("moof"));
        // A sample count far beyond what the box holds.
        let mut huge = frag.clone();
        let trun = frag.windows(4).position(|w| w == b"trun").unwrap();
        huge[trun + 8..trun + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(fragment(&huge).is_err());
        assert!(parameter_sets(&[1, 2, 3]).is_err());
        assert!(parameter_sets(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 9, 1]).is_err());
        assert!(avcc(b"not an mp4").is_err());
    }
}
