//! Entry points for fuzzing (cargo fuzz targets in `fuzz/`) and for replaying the inputs that
//! once broke something (`fuzz/regressions/`, by an ordinary test).

/// A recording's video bytes read back for catch-up OCR (a recording's files may have been
/// altered where they are stored): refused or read within the bytes, never a panic.
pub fn mp4_fragment(data: &[u8]) {
    if let Ok(samples) = crate::demux::fragment(data) {
        let total: usize = samples.iter().map(|s| s.data.len()).sum();
        assert!(total <= data.len());
        assert!(samples.len() <= crate::demux::MAX_SAMPLES);
        assert!(samples.iter().all(|s| !s.data.is_empty()));
    }
    if let Ok(avcc) = crate::demux::avcc(data) {
        if let Ok(sets) = crate::demux::parameter_sets(avcc) {
            assert!(sets.len() <= avcc.len() * 2 + 8);
        }
    }
    let _ = crate::demux::parameter_sets(data);
}
