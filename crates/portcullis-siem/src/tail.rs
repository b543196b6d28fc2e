//! A cheap look at the audit log's end (the seq of the last whole line of the newest segment),
//! so that an idle forwarder does not run a query that scans the current segment every poll.
//! Only a hint: what is sent always comes from [`portcullis_audit::read_only_query`].

use std::fs;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use portcullis_audit::MAX_RECORD_BYTES;

/// The segments of a log directory (`audit-<20 digits>.jsonl`), newest first.
fn segments_newest_first(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name
            .strip_prefix("audit-")
            .and_then(|n| n.strip_suffix(".jsonl"))
        else {
            continue;
        };
        if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(first) = digits.parse::<u64>() {
                out.push((first, item.path()));
            }
        }
    }
    out.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    Ok(out)
}

/// The seq of the last whole (newline-terminated) line of a segment, if any.
fn last_line_seq(path: &Path) -> io::Result<Option<u64>> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    // Two records' worth: always holds the whole last line (a line is at most MAX_RECORD_BYTES).
    let window = u64::try_from(MAX_RECORD_BYTES.saturating_mul(2)).unwrap_or(u64::MAX);
    let start = len.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(window).read_to_end(&mut buf)?;
    Ok(last_seq_in(&buf))
}

/// The seq of the last newline-terminated line in `buf` (canonical lines start `{"seq":N,`).
fn last_seq_in(buf: &[u8]) -> Option<u64> {
    let end = buf.iter().rposition(|&b| b == b'\n')?;
    let begin = buf[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let rest = buf[begin..end].strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The seq of the log's last whole record, `None` when there is none or it cannot be told.
pub(crate) fn last_seq(dir: &Path) -> io::Result<Option<u64>> {
    // A segment just opened may not hold a whole line yet: then the one before tells.
    for (_, path) in segments_newest_first(dir)?.iter().take(2) {
        if let Some(seq) = last_line_seq(path)? {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_audit::{Kind, OpenOptions, Record};

    #[test]
    fn finds_the_last_whole_line() {
        assert_eq!(last_seq_in(b""), None);
        assert_eq!(last_seq_in(b"{\"seq\":3,"), None);
        assert_eq!(last_seq_in(b"{\"seq\":3,\"x\"}\n"), Some(3));
        assert_eq!(
            last_seq_in(b"{\"seq\":3,\"x\"}\n{\"seq\":14,\"y\"}\n{\"seq\":15,\"tor"),
            Some(14)
        );
        assert_eq!(last_seq_in(b"ial\"}\n{\"seq\":16,\"y\"}\n"), Some(16));
    }

    #[test]
    fn reads_a_real_log_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_seq(dir.path()).unwrap(), None);
        let log = OpenOptions::new()
            .max_segment_bytes(70_000)
            .open(dir.path())
            .unwrap();
        let tickets: Vec<_> = (0..200)
            .map(|i| {
                log.submit(
                    Record::new(Kind::LOGIN, "alice")
                        .detail("pad", "x".repeat(1000))
                        .detail("i", i),
                )
                .unwrap()
            })
            .collect();
        for t in tickets {
            t.wait().unwrap();
        }
        assert!(segments_newest_first(dir.path()).unwrap().len() > 2);
        assert_eq!(last_seq(dir.path()).unwrap(), Some(200));
    }
}
