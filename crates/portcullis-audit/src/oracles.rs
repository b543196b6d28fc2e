//! Entry points for fuzzing (cargo fuzz targets in `fuzz/`) and for replaying the inputs that
//! once broke something (`fuzz/regressions/`, by an ordinary test).

use crate::record::parse_line;
use crate::segment::Lines;

/// A segment file's bytes as a tamperer may leave them: read line by line (bounded) and each
/// line parsed and checked. Errors are fine; a panic, or a line past the limit, is not.
pub fn segment_bytes(data: &[u8]) {
    let mut lines = Lines::new(std::io::Cursor::new(data));
    while let Ok(Some(line)) = lines.next_line() {
        assert!(
            line.bytes.len() <= crate::MAX_RECORD_BYTES,
            "a line past the limit was read"
        );
        let _ = parse_line(line.bytes);
    }
}
