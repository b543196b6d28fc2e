//! Entry points for fuzzing (cargo fuzz targets in `fuzz/`) and for replaying the inputs that
//! once broke something (`fuzz/regressions/`, by an ordinary test).

/// What tesseract prints (the gateway trusts the program, not the pictures it reads: text on a
/// target's screen is the target's): parsed, bounded, never a panic.
pub fn tesseract_tsv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let words = crate::tsv::parse(&text);
    assert!(words.len() <= crate::tsv::MAX_WORDS);
    for w in &words {
        assert!(w.text.chars().count() <= crate::tsv::MAX_WORD_CHARS);
        assert!(!w.text.is_empty());
    }
    let _ = crate::tsv::lines(&words);
}
