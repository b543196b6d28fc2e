//! H.264 bitstream plumbing: Annex B (what libx264 emits) to MP4's length-prefixed form, and the
//! `avcC` decoder configuration built from the SPS and PPS.

/// NAL unit types we look at.
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Splits an Annex B byte stream into NAL units (without start codes).
pub fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(stream.len(), |&next| next - 3);
        // A 4-byte start code leaves a zero behind the previous unit.
        while end > s && stream[end - 1] == 0 && starts.get(n + 1).is_some() {
            end -= 1;
        }
        if end > s {
            units.push(&stream[s..end]);
        }
    }
    units
}

/// What one encoded access unit holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Slice NAL units, each prefixed by its 4-byte length.
    pub sample: Vec<u8>,
    /// The sequence parameter set, if the unit carried one.
    pub sps: Option<Vec<u8>>,
    /// The picture parameter set, if the unit carried one.
    pub pps: Option<Vec<u8>>,
}

/// Converts one access unit from Annex B: parameter sets are taken out (they go in `avcC`),
/// delimiters and SEI dropped, slices length-prefixed.
pub fn access_unit(annex_b: &[u8]) -> AccessUnit {
    let mut au = AccessUnit::default();
    for nal in nal_units(annex_b) {
        match nal.first().map(|b| b & 0x1f) {
            Some(NAL_SPS) => au.sps = Some(nal.to_vec()),
            Some(NAL_PPS) => au.pps = Some(nal.to_vec()),
            Some(NAL_AUD) | Some(NAL_SEI) | None => {}
            Some(_) => {
                au.sample
                    .extend_from_slice(&u32::try_from(nal.len()).unwrap_or(0).to_be_bytes());
                au.sample.extend_from_slice(nal);
            }
        }
    }
    au
}

/// The `avcC` box payload for one SPS and one PPS. `None` if the SPS is too short.
pub fn avcc(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    if sps.len() < 4 {
        return None;
    }
    let (profile, compat, level) = (sps[1], sps[2], sps[3]);
    let mut b = vec![1, profile, compat, level, 0xff, 0xe1];
    b.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    b.extend_from_slice(sps);
    b.push(1);
    b.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    b.extend_from_slice(pps);
    if matches!(profile, 100 | 110 | 122 | 144) {
        // High profiles: chroma 4:2:0, 8-bit, no SPS extensions.
        b.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]);
    }
    Some(b)
}

/// The RFC 6381 codec string (`avc1.PPCCLL`) of an SPS.
pub fn codec_string(sps: &[u8]) -> String {
    match sps.get(1..4) {
        Some(p) => format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2]),
        None => "avc1.42e01e".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_becomes_length_prefixed_without_parameter_sets() {
        let stream = [
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, // SPS
            0, 0, 1, 0x68, 0xee, 0x3c, // PPS
            0, 0, 1, 0x06, 0x05, 0x01, // SEI
            0, 0, 1, 0x65, 0x88, 0x84, 0x00, // IDR slice (ends with a zero byte)
        ];
        let au = access_unit(&stream);
        assert_eq!(au.sps.as_deref(), Some(&[0x67, 0x64, 0x00, 0x1f, 0xac][..]));
        assert_eq!(au.pps.as_deref(), Some(&[0x68, 0xee, 0x3c][..]));
        assert_eq!(au.sample, [0, 0, 0, 4, 0x65, 0x88, 0x84, 0x00]);
        assert_eq!(
            codec_string(au.sps.as_deref().unwrap_or_default()),
            "avc1.64001f"
        );
        let c = avcc(&au.sps.unwrap_or_default(), &au.pps.unwrap_or_default()).unwrap_or_default();
        assert_eq!(&c[..6], &[1, 0x64, 0, 0x1f, 0xff, 0xe1]);
        assert_eq!(c.len(), 6 + 2 + 5 + 1 + 2 + 3 + 4);
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [&[][..], &[0], &[0, 0, 1], &[0, 0, 0, 1], &[1, 2, 3]] {
            let _ = access_unit(s);
        }
        assert!(avcc(&[0x67], &[]).is_none());
    }
}
