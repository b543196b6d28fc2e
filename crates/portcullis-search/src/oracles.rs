//! Entry points for fuzzing (cargo fuzz targets in `fuzz/`) and for replaying the inputs that
//! once broke something (`fuzz/regressions/`, by an ordinary test).

use crate::track::{read_track, Resume, MAX_ENTRY_TEXT};

/// An event track as the indexer reads it (recordings may come from a shared bucket): read in
/// one piece and in two pieces at a byte the input chooses, resumed from the first reading's
/// point; never a panic, entries bounded, and every byte read once (the two readings give what
/// the one gives).
pub fn search_track(data: &[u8]) {
    let (cut, track) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c) * rest.len() / 256, rest),
        None => (0, data),
    };
    // The live reads a catch-up takes from it: never a panic, at most one a line.
    let mut reads = Vec::new();
    let _ = crate::track::screen_reads(track, &mut reads);
    assert!(reads.len() <= track.iter().filter(|&&b| b == b'\n').count() + 1);
    let whole = read_track(track, &Resume::default(), true);
    for e in &whole.entries {
        assert!(e.text.len() <= MAX_ENTRY_TEXT);
        assert!(!e.text.is_empty());
    }
    assert!(whole.resume.offset <= track.len() as u64);
    // In two pieces: the first at a line end, as the indexer only reads what is listed.
    let Some(end) = track[..cut].iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let first = read_track(&track[..=end], &Resume::default(), false);
    let Ok(from) = usize::try_from(first.resume.offset) else {
        return;
    };
    let second = read_track(&track[from..], &first.resume, true);
    let mut pieces: Vec<_> = first.entries.iter().map(|e| (&e.text, e.t_ms)).collect();
    pieces.extend(second.entries.iter().map(|e| (&e.text, e.t_ms)));
    let whole: Vec<_> = whole.entries.iter().map(|e| (&e.text, e.t_ms)).collect();
    assert_eq!(pieces, whole);
}
