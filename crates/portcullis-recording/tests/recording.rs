#![allow(clippy::unwrap_used)]
//! Writing, verifying, tampering with and recovering recordings (no video codec involved: the
//! bytes are opaque here).

use std::sync::Arc;

use portcullis_core::session::SessionEvent;
use portcullis_recording::manifest::EndState;
use portcullis_recording::oracles::NoTrail;
use portcullis_recording::storage::RecordingStorage;
use portcullis_recording::{
    detail, expire, generate_key, recover, summary, verify, ListedState, LocalDisk,
    RecordingWriter, SegmentInfo, SessionMeta, Status,
};

fn meta(id: &str) -> SessionMeta {
    SessionMeta {
        session: id.into(),
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "db1".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms: 1_700_000_000_000,
        screen_search: None,
    }
}

/// Writes a recording with `n` segments; finishes it when asked.
fn write(
    disk: &LocalDisk,
    key: &Arc<portcullis_recording::SigningKey>,
    id: &str,
    n: u64,
    finish: bool,
) {
    let mut w = RecordingWriter::create(disk, Arc::clone(key), meta(id)).unwrap();
    w.event(
        0,
        &SessionEvent::ViewerJoined {
            user: "alice".into(),
        },
    );
    w.begin_part(1280, 800, "avc1.64001f", b"init-bytes")
        .unwrap();
    for i in 0..n {
        w.event(
            i * 1000 + 5,
            &SessionEvent::Keys {
                text: format!("k{i}"),
            },
        );
        let frag = vec![u8::try_from(i).unwrap(); 100];
        let thumb = (i % 2 == 0).then_some(&b"jpeg"[..]);
        w.segment(
            SegmentInfo {
                start_ms: i * 1000,
                end_ms: (i + 1) * 1000,
                key: i % 3 == 0,
                frames: 4,
            },
            &frag,
            thumb,
        )
        .unwrap();
    }
    if finish {
        w.finish("the target closed the session", n * 1000, 1_700_000_100_000)
            .unwrap();
    }
}

#[test]
fn an_intact_recording_verifies_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 5, true);
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert!(v.is_intact(), "{:?}", v.problem);
    assert_eq!(v.status(), Status::Intact);
    assert_eq!(v.missing(), None);
    assert_eq!(v.segments, 5);
    assert_eq!(v.duration_ms, 5000);
    let s = summary(&disk, "r1", false).unwrap();
    assert_eq!(s.state, ListedState::Complete);
    assert_eq!(s.duration_ms, 5000);
    assert_eq!(s.user, "alice");
    let d = detail(&disk, "r1").unwrap();
    assert_eq!(d.segments.len(), 5);
    assert_eq!(d.inits.len(), 1);
    assert_eq!(d.thumbnails.len(), 3);
    let events = std::fs::read_to_string(dir.path().join("r1/events.jsonl")).unwrap();
    assert!(
        events.starts_with(r#"{"t_ms":0,"type":"viewer_joined","user":"alice"}"#),
        "{events}"
    );
}

#[test]
fn one_flipped_byte_names_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 5, true);
    // Segment lines: 0 header, 1 init, 2.. segments; byte 10 + 3*100 is in the 4th fragment.
    let path = dir.path().join("r1/video-1.mp4");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10 + 3 * 100 + 7] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Altered);
    assert!(!v.is_intact());
    let named = v.missing().unwrap();
    assert!(
        named.starts_with("at segment 5: segment 5: video altered"),
        "{named}"
    );
    let p = v.problem.unwrap();
    assert_eq!(p.seq, 5, "{}", p.what);
    assert!(p.what.contains("video altered"), "{}", p.what);
    // The walk goes on: the segments after it are checked and counted.
    assert_eq!(v.segments, 5);
    assert_eq!(v.ended, Some(EndState::Complete));
}

#[test]
fn a_removed_line_or_a_foreign_key_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 5, true);
    let path = dir.path().join("r1/manifest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(3);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert_eq!(v.problem.unwrap().seq, 3);

    write(&disk, &key, "r2", 2, true);
    let other = generate_key();
    let v = verify(&disk, "r2", &other.verifying_key()).unwrap();
    assert!(v.problem.unwrap().what.contains("signature"));
}

#[test]
fn a_signed_walk_checks_every_line_but_reads_no_data() {
    use portcullis_recording::scan::{scan, Depth};
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 3, true);
    // Damaged data is not its business (the reader checks each piece it reads)…
    let video = dir.path().join("r1/video-1.mp4");
    let mut bytes = std::fs::read(&video).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&video, bytes).unwrap();
    let walk = scan(&disk, "r1", Depth::Signed(&key.verifying_key())).unwrap();
    assert!(walk.problem.is_none(), "{:?}", walk.problem);
    assert!(walk.is_ended());
    // …a line changed after it was signed is, and nothing after it is taken.
    let path = dir.path().join("r1/manifest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"end_ms\":2000"));
    std::fs::write(
        &path,
        text.replacen("\"end_ms\":2000", "\"end_ms\":2999", 1),
    )
    .unwrap();
    let walk = scan(&disk, "r1", Depth::Signed(&key.verifying_key())).unwrap();
    let bad = walk.problem.map(|p| p.seq);
    assert!(
        bad.is_some() || walk.untied_from.is_some() || !walk.damage.is_empty(),
        "a forged line passed"
    );
    let proven = walk
        .untied_from
        .unwrap_or(u64::MAX)
        .min(bad.unwrap_or(u64::MAX));
    assert!(walk
        .bodies
        .iter()
        .filter(|b| b.seq < proven)
        .all(|b| !matches!(
            &b.entry,
            portcullis_recording::manifest::Entry::Segment { end_ms: 2999, .. }
        )));
    // And another gateway's key proves nothing.
    let other = generate_key();
    let walk = scan(&disk, "r1", Depth::Signed(&other.verifying_key())).unwrap();
    assert!(walk.problem.is_some());
}

#[test]
fn an_unclosed_recording_is_recovered_as_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 3, false);
    // A torn fragment and a torn manifest line, as a kill -9 mid-write leaves them.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("r1/video-1.mp4"))
        .unwrap();
    std::io::Write::write_all(&mut f, &[9; 37]).unwrap();
    let mut m = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("r1/manifest.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut m, b"{\"body\":").unwrap();
    assert_eq!(
        summary(&disk, "r1", true).unwrap().state,
        ListedState::Recording
    );
    assert_eq!(
        summary(&disk, "r1", false).unwrap().state,
        ListedState::Incomplete
    );

    let trail = Trail::default();
    let done = recover(&disk, &key, &trail, 1_700_000_200_000).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].discarded_bytes, 37 + 8);
    // The torn bytes are set aside, not destroyed.
    assert_eq!(
        std::fs::read(dir.path().join("r1/quarantine-video-1.mp4-310")).unwrap(),
        [9; 37]
    );
    assert_eq!(done[0].quarantined.len(), 2, "{:?}", done[0].quarantined);
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert!(v.is_authentic_so_far(), "{:?}", v.problem);
    assert!(!v.is_intact(), "an incomplete recording is not intact");
    assert_eq!(v.status(), Status::Incomplete);
    assert_eq!(v.quarantine.len(), 2);
    assert!(
        v.end_reason
            .as_deref()
            .unwrap()
            .contains("37 bytes of video-1.mp4"),
        "{:?}",
        v.end_reason
    );
    assert_eq!(
        v.ended,
        Some(portcullis_recording::manifest::EndState::Incomplete)
    );
    assert_eq!(v.duration_ms, 3000);
    let s = summary(&disk, "r1", false).unwrap();
    assert_eq!(s.state, ListedState::Incomplete);
    // A second start finds nothing to do.
    assert!(recover(&disk, &key, &trail, 1_700_000_300_000)
        .unwrap()
        .is_empty());
}

#[test]
fn retention_deletes_only_old_closed_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "old", 1, true);
    write(&disk, &key, "live", 1, false);
    let deleted = expire(&disk, 1_700_000_100_001, |id| id == "live").unwrap();
    assert_eq!(deleted, vec!["old".to_owned()]);
    assert_eq!(disk.list().unwrap(), vec!["live".to_owned()]);
}

#[test]
fn a_recording_cut_before_its_header_is_removed_and_evidence_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    // kill -9 between creating the manifest and writing the header; or mid-header.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    std::fs::write(dir.path().join("empty/manifest.jsonl"), b"").unwrap();
    std::fs::create_dir(dir.path().join("torn")).unwrap();
    std::fs::write(dir.path().join("torn/manifest.jsonl"), b"{\"body\":{\"se").unwrap();
    // No header but video bytes: not what a crash leaves; kept, and verify says so.
    std::fs::create_dir(dir.path().join("odd")).unwrap();
    std::fs::write(dir.path().join("odd/manifest.jsonl"), b"{\"body\":").unwrap();
    std::fs::write(dir.path().join("odd/video-1.mp4"), [1u8; 64]).unwrap();
    // A header line that does not check out is evidence too.
    write(&disk, &key, "bad", 1, false);
    let m = dir.path().join("bad/manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let first = text.lines().next().unwrap().replace("alice", "alicf");
    std::fs::write(&m, format!("{first}\n")).unwrap();
    write(&disk, &key, "open", 2, false);

    let done = recover(&disk, &key, &NoTrail, 1_700_000_200_000).unwrap();
    assert_eq!(
        done.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["open"]
    );
    let mut left = disk.list().unwrap();
    left.sort();
    assert_eq!(left, ["bad", "odd", "open"]);
    assert_eq!(
        verify(&disk, "open", &key.verifying_key())
            .unwrap()
            .status(),
        Status::Incomplete
    );
    for kept in ["bad", "odd"] {
        assert!(!verify(&disk, kept, &key.verifying_key())
            .unwrap()
            .is_intact());
    }
}

/// A disk that fails in one chosen way and otherwise behaves as the local disk.
struct Faulty(LocalDisk, Fault);

enum Fault {
    /// Recordings cannot be appended to on reopening (a full disk at start-up).
    FullOnReopen,
    /// Reads of this file past its first byte fail with EIO (a failing sector).
    FailingReads(&'static str),
}

struct FullSink;

impl portcullis_recording::RecordingSink for FullSink {
    fn append(&mut self, file: &str, _: &[u8]) -> Result<u64, portcullis_recording::StorageError> {
        Err(portcullis_recording::StorageError::Io {
            op: "write",
            path: file.into(),
            source: std::io::Error::from_raw_os_error(28),
        })
    }
    fn sync(&mut self, _: &str) -> Result<(), portcullis_recording::StorageError> {
        Ok(())
    }
}

type Res<T> = Result<T, portcullis_recording::StorageError>;

impl RecordingStorage for Faulty {
    fn create(&self, id: &str) -> Res<Box<dyn portcullis_recording::RecordingSink>> {
        self.0.create(id)
    }
    fn reopen(&self, id: &str) -> Res<Box<dyn portcullis_recording::RecordingSink>> {
        match self.1 {
            Fault::FullOnReopen => Ok(Box::new(FullSink)),
            Fault::FailingReads(_) => self.0.reopen(id),
        }
    }
    fn list(&self) -> Res<Vec<String>> {
        self.0.list()
    }
    fn files(&self, id: &str) -> Res<Vec<(String, u64)>> {
        self.0.files(id)
    }
    fn len(&self, id: &str, file: &str) -> Res<Option<u64>> {
        self.0.len(id, file)
    }
    fn read(&self, id: &str, file: &str, offset: u64, len: u64) -> Res<Vec<u8>> {
        if matches!(self.1, Fault::FailingReads(f) if f == file) && offset > 0 {
            return Err(portcullis_recording::StorageError::Io {
                op: "read",
                path: file.into(),
                source: std::io::Error::from_raw_os_error(5),
            });
        }
        self.0.read(id, file, offset, len)
    }
    fn truncate(&self, id: &str, file: &str, len: u64) -> Res<()> {
        self.0.truncate(id, file, len)
    }
    fn delete(&self, id: &str) -> Res<()> {
        self.0.delete(id)
    }
}

#[test]
fn a_recording_that_cannot_be_closed_holds_up_neither_the_others_nor_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 2, false);
    write(&disk, &key, "r2", 3, false);
    let full = Faulty(disk.clone(), Fault::FullOnReopen);
    let mut done = recover(&full, &key, &NoTrail, 1_700_000_200_000).unwrap();
    done.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(done.len(), 2);
    for r in &done {
        assert!(r.failed.as_ref().is_some_and(|e| e.is_full()), "{r:?}");
    }
    // Still open and intact up to the last segment; the next start (space freed) closes them.
    for id in ["r1", "r2"] {
        let v = verify(&disk, id, &key.verifying_key()).unwrap();
        assert!(
            v.is_authentic_so_far() && v.ended.is_none(),
            "{:?}",
            v.problem
        );
        assert_eq!(v.status(), Status::Cut);
    }
    let done = recover(&disk, &key, &NoTrail, 1_700_000_300_000).unwrap();
    assert!(done.iter().all(|r| r.failed.is_none()) && done.len() == 2);
    for id in ["r1", "r2"] {
        let v = verify(&disk, id, &key.verifying_key()).unwrap();
        assert_eq!(v.status(), Status::Incomplete, "{:?}", v.problem);
        assert_eq!(
            v.ended,
            Some(portcullis_recording::manifest::EndState::Incomplete)
        );
    }
}

/// Copies recording `from` to `to` under `root`.
fn copy_recording(root: &std::path::Path, from: &str, to: &str) {
    std::fs::create_dir(root.join(to)).unwrap();
    for e in std::fs::read_dir(root.join(from)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), root.join(to).join(e.file_name())).unwrap();
    }
}

#[test]
fn a_recording_cut_at_any_line_boundary_is_never_intact() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "whole", 4, true);
    let manifest = std::fs::read(dir.path().join("whole/manifest.jsonl")).unwrap();
    let ends: Vec<usize> = manifest
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(ends.len(), 1 + 1 + 4 + 1, "header, init, 4 segments, end");
    // Keep the first k lines (k = 0 .. all but one), with and without the data they name.
    for (k, cut) in std::iter::once(0)
        .chain(ends[..ends.len() - 1].iter().copied())
        .enumerate()
    {
        for trim_data in [false, true] {
            let id = format!("cut-{k}-{trim_data}");
            copy_recording(dir.path(), "whole", &id);
            std::fs::write(
                dir.path().join(&id).join("manifest.jsonl"),
                &manifest[..cut],
            )
            .unwrap();
            if trim_data && k > 0 {
                let s = portcullis_recording::scan::scan(
                    &disk,
                    &id,
                    portcullis_recording::scan::Depth::Structure,
                )
                .unwrap();
                for (file, len) in disk.files(&id).unwrap() {
                    let keep = s.file_ends.get(&file).copied().unwrap_or(len);
                    if file != "manifest.jsonl" && keep < len {
                        disk.truncate(&id, &file, keep).unwrap();
                    }
                }
            }
            let v = verify(&disk, &id, &key.verifying_key()).unwrap();
            assert!(!v.is_intact(), "{id}: kept {k} lines and called intact");
            let expected = if k == 0 { Status::Altered } else { Status::Cut };
            assert_eq!(v.status(), expected, "{id}: {:?}", v.problem);
            let missing = v.missing().unwrap();
            if k > 0 {
                assert!(missing.contains("the signed end line"), "{id}: {missing}");
                assert!(
                    missing.contains(&format!("stops after line {}", k - 1)),
                    "{id}: {missing}"
                );
            }
        }
    }
    // The whole recording is intact.
    assert_eq!(
        verify(&disk, "whole", &key.verifying_key())
            .unwrap()
            .status(),
        Status::Intact
    );
}

#[test]
fn a_recording_not_closed_is_cut_whoever_holds_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    let mut w = RecordingWriter::create(&disk, Arc::clone(&key), meta("r1")).unwrap();
    w.begin_part(1280, 800, "avc1.64001f", b"init").unwrap();
    w.segment(
        SegmentInfo {
            start_ms: 0,
            end_ms: 1000,
            key: true,
            frames: 1,
        },
        b"frag",
        None,
    )
    .unwrap();
    // The writer holds the manifest's lock, and the storage says so; but that lock is no proof
    // (anyone who can read the manifest can take it): only the caller, who can tell that this
    // is its running gateway's recording, may call it live.
    assert!(disk.is_being_written("r1").unwrap());
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Cut, "{:?}", v.problem);
    assert!(!v.live);
    drop(w);
    assert!(!disk.is_being_written("r1").unwrap());
    // Someone else holds the lock: recovery still closes it, and at once.
    let lock = std::fs::File::open(dir.path().join("r1/manifest.jsonl")).unwrap();
    lock.try_lock().unwrap();
    assert!(disk.is_being_written("r1").unwrap());
    let t = std::time::Instant::now();
    let done = recover(&disk, &key, &NoTrail, 1_700_000_200_000).unwrap();
    assert!(done[0].failed.is_none(), "{:?}", done[0].failed);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        verify(&disk, "r1", &key.verifying_key()).unwrap().status(),
        Status::Incomplete
    );
}

/// Every file's original bytes are still there: the file was not shortened (it may have grown),
/// or the bytes cut from it are in a quarantine file byte for byte.
fn assert_all_bytes_kept(root: &std::path::Path, id: &str, before: &[(String, Vec<u8>)]) {
    for (file, old) in before {
        let now = std::fs::read(root.join(id).join(file)).unwrap();
        let same = old.iter().zip(&now).take_while(|(a, b)| a == b).count();
        if same == old.len() {
            continue;
        }
        // Cut at some n <= same: bytes n.. must be in quarantine-FILE-n.
        let kept = (0..=same).rev().any(|n| {
            std::fs::read(root.join(id).join(format!("quarantine-{file}-{n}")))
                .is_ok_and(|q| q == old[n..])
        });
        assert!(
            kept,
            "{file}: bytes after {same} are gone and not in quarantine"
        );
    }
}

fn snapshot(root: &std::path::Path, id: &str) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(root.join(id)).unwrap() {
        let e = e.unwrap();
        all.push((
            e.file_name().to_str().unwrap().to_owned(),
            std::fs::read(e.path()).unwrap(),
        ));
    }
    all
}

#[test]
fn recovery_keeps_the_signed_lines_after_a_damaged_middle_line() {
    // Two kinds of damage to manifest line 4 (a segment) of an open recording with 6 segments:
    // garbage (not JSON at all) and an altered body (valid JSON, chain no longer matches).
    for (case, damage) in [
        (
            "garbage",
            &(|l: &str| "#".repeat(l.len())) as &dyn Fn(&str) -> String,
        ),
        ("edited", &|l: &str| {
            l.replacen("\"frames\":4", "\"frames\":9", 1)
        }),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::open(dir.path()).unwrap();
        let key = Arc::new(generate_key());
        write(&disk, &key, "r1", 6, false);
        let path = dir.path().join("r1/manifest.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 8);
        let damaged = damage(&lines[4]);
        assert_ne!(damaged, lines[4], "{case}");
        lines[4] = damaged.clone();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let damaged_at = lines[..4].iter().map(|l| l.len() + 1).sum::<usize>();
        let before = snapshot(dir.path(), "r1");

        let trail = Trail::default();
        let done = recover(&disk, &key, &trail, 1_700_000_200_000).unwrap();
        assert_eq!(done.len(), 1, "{case}");
        assert!(done[0].failed.is_none(), "{case}: {:?}", done[0].failed);
        assert_eq!(done[0].problem.as_ref().unwrap().seq, 4, "{case}");
        // Nothing shortened: the manifest grew by one end line, the data stayed as it was.
        assert_all_bytes_kept(dir.path(), "r1", &before);
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(
            now.starts_with(&(lines.join("\n") + "\n")),
            "{case}: manifest rewritten"
        );
        assert_eq!(now.lines().count(), 9, "{case}");
        // The damaged line is set aside as well, byte for byte.
        let q = std::fs::read(
            dir.path()
                .join(format!("r1/quarantine-manifest.jsonl-{damaged_at}")),
        )
        .unwrap();
        assert_eq!(q, format!("{damaged}\n").as_bytes(), "{case}");

        let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
        assert_eq!(v.status(), Status::Altered, "{case}: {:?}", v.problem);
        assert!(!v.is_intact());
        assert_eq!(v.ended, Some(EndState::Incomplete), "{case}");
        let reason = v.end_reason.clone().unwrap();
        assert!(reason.contains("manifest line 4"), "{case}: {reason}");
        assert!(
            reason.contains("quarantine-manifest.jsonl-"),
            "{case}: {reason}"
        );
        assert_eq!(v.damage.len(), 1, "{case}: {:?}", v.damage);
        assert_eq!(v.damage[0].seq, 4, "{case}");
        assert!(
            v.problem.as_ref().unwrap().what.contains("manifest line 4"),
            "{case}"
        );
        // The lines after the damage are walked and kept (all 6 segments' time is there), but
        // only those before it are proven: nothing ties the ones after to them.
        assert_eq!(v.segments, 2, "{case}");
        assert_eq!(v.lines, 4, "{case}");
        assert!(v.unproven_lines >= 3, "{case}: {}", v.unproven_lines);
        assert!(!v.damage[0].tied, "{case}");
        assert!(
            v.damage[0].describe().contains("kept, not proven"),
            "{case}: {}",
            v.damage[0].describe()
        );
        assert_eq!(v.duration_ms, 6000, "{case}");
        assert!(v
            .quarantine
            .iter()
            .any(|(n, _)| n.starts_with("quarantine-manifest")));
        // Listing says incomplete with the reason; the player still gets the later segments.
        let s = summary(&disk, "r1", false).unwrap();
        assert_eq!(s.state, ListedState::Incomplete);
        let d = detail(&disk, "r1").unwrap();
        assert!(
            d.segments.iter().any(|g| g.seq == 7),
            "{case}: {:?}",
            d.segments
        );
        // The segments after the damage play: a run of them, and one by one.
        let run = portcullis_recording::read_run(&disk, "r1", &d, 6, 7).unwrap();
        assert_eq!(run, [[4u8; 100], [5u8; 100]].concat(), "{case}");
        let piece = portcullis_recording::read_piece(
            &disk,
            "r1",
            &d,
            portcullis_recording::Piece::Segment(7),
        )
        .unwrap();
        assert_eq!(piece, [5u8; 100], "{case}");
        // A run across the damage is not served (lines are missing from it).
        assert!(
            portcullis_recording::read_run(&disk, "r1", &d, 3, 6).is_err(),
            "{case}"
        );
        // A second start leaves it alone.
        assert!(recover(&disk, &key, &trail, 1_700_000_300_000)
            .unwrap()
            .is_empty());
    }
}

#[test]
fn recovery_sets_a_damaged_tail_aside_before_cutting_it() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 4, false);
    let path = dir.path().join("r1/manifest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last = lines.len() - 1;
    lines[last] = lines[last].replacen("\"frames\":4", "\"frames\":5", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let before = snapshot(dir.path(), "r1");
    let done = recover(&disk, &key, &NoTrail, 1_700_000_200_000).unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].discarded_bytes > 0);
    assert_all_bytes_kept(dir.path(), "r1", &before);
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    // Closed after the last line that checks out; the end line names what was set aside.
    assert_eq!(v.status(), Status::Incomplete, "{:?}", v.problem);
    let reason = v.end_reason.unwrap();
    assert!(reason.contains("damaged tail: manifest line 5"), "{reason}");
    assert!(
        reason.contains("set aside in quarantine-manifest.jsonl-"),
        "{reason}"
    );
}

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

#[test]
fn any_damage_to_the_manifest_is_never_intact_and_recovery_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "closed", 5, true);
    write(&disk, &key, "open", 5, false);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..200 {
        let base = if round % 2 == 0 { "closed" } else { "open" };
        let id = format!("m{round}");
        copy_recording(dir.path(), base, &id);
        let path = dir.path().join(&id).join("manifest.jsonl");
        let original = std::fs::read(&path).unwrap();
        let mut lines: Vec<Vec<u8>> = original
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        let what = rng.below(6);
        match what {
            0 => {
                // One bit of one byte (bit 0: never a mere change of hex case).
                let l = rng.below(lines.len());
                let b = rng.below(lines[l].len());
                lines[l][b] ^= 1;
            }
            1 if lines.len() > 1 => {
                lines.remove(rng.below(lines.len()));
            }
            2 => {
                let l = rng.below(lines.len());
                let copy = lines[l].clone();
                lines.insert(rng.below(lines.len() + 1), copy);
            }
            3 if lines.len() > 2 => {
                let a = rng.below(lines.len());
                let b = rng.below(lines.len());
                lines.swap(a, b);
            }
            4 => lines.insert(rng.below(lines.len() + 1), b"garbage\n".to_vec()),
            _ => {
                let all = lines.concat();
                let cut = rng.below(all.len());
                lines = vec![all[..cut].to_vec()];
            }
        }
        let damaged = lines.concat();
        std::fs::write(&path, &damaged).unwrap();
        if damaged == original {
            continue;
        }
        let v = verify(&disk, &id, &key.verifying_key()).unwrap();
        assert!(!v.is_intact(), "round {round} ({what}) called intact");
        let _ = detail(&disk, &id);
        let before = snapshot(dir.path(), &id);
        for r in recover(&disk, &key, &NoTrail, 1_700_000_200_000).unwrap() {
            assert!(r.failed.is_none(), "round {round}: {:?}", r.failed);
        }
        assert_all_bytes_kept(dir.path(), &id, &before);
        let v = verify(&disk, &id, &key.verifying_key()).unwrap();
        assert!(
            !v.is_intact(),
            "round {round} ({what}) called intact after recovery"
        );
        // Keep the next round's recover() to the new copy.
        disk.delete(&id).unwrap();
    }
}

#[test]
fn a_planted_quarantine_file_of_the_right_length_does_not_make_recovery_lose_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 3, false);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("r1/video-1.mp4"))
        .unwrap();
    std::io::Write::write_all(&mut f, &[9; 37]).unwrap();
    // Planted where recovery would copy the torn 37 bytes, with the same length.
    let planted = dir.path().join("r1/quarantine-video-1.mp4-310");
    std::fs::write(&planted, [0u8; 37]).unwrap();
    let before = snapshot(dir.path(), "r1");
    let done = recover(&disk, &key, &NoTrail, 1_700_000_200_000).unwrap();
    assert!(done[0].failed.is_none(), "{:?}", done[0].failed);
    // The planted file is left as it is; the torn bytes are kept under another name.
    assert_eq!(std::fs::read(&planted).unwrap(), [0u8; 37]);
    assert_eq!(
        std::fs::read(dir.path().join("r1/quarantine-video-1.mp4-310-1")).unwrap(),
        [9; 37]
    );
    let kept = done[0]
        .quarantined
        .iter()
        .any(|q| q == "quarantine-video-1.mp4-310-1");
    assert!(kept, "{:?}", done[0].quarantined);
    assert_all_bytes_kept_anywhere(dir.path(), "r1", &before);
}

/// Like [`assert_all_bytes_kept`], with the bytes cut from a file in any quarantine file.
fn assert_all_bytes_kept_anywhere(root: &std::path::Path, id: &str, before: &[(String, Vec<u8>)]) {
    let now = snapshot(root, id);
    for (file, old) in before {
        let cur = &now.iter().find(|(n, _)| n == file).unwrap().1;
        if cur.len() >= old.len() {
            assert_eq!(&cur[..old.len()], &old[..], "{file} rewritten");
            continue;
        }
        assert_eq!(&old[..cur.len()], &cur[..], "{file} rewritten");
        let rest = &old[cur.len()..];
        let found = now
            .iter()
            .any(|(n, b)| n.starts_with(&format!("quarantine-{file}-")) && b == rest);
        assert!(found, "{file}: {} cut bytes are nowhere", rest.len());
    }
}

#[test]
fn a_read_error_during_recovery_leaves_the_recording_untouched_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 4, false);
    let before = snapshot(dir.path(), "r1");
    let failing = Faulty(disk.clone(), Fault::FailingReads("video-1.mp4"));
    let done = recover(&failing, &key, &NoTrail, 1_700_000_200_000).unwrap();
    assert_eq!(done.len(), 1);
    let e = done[0].failed.as_ref().expect("recovery must not go on");
    assert!(e.to_string().contains("read"), "{e}");
    // Nothing set aside, nothing cut, no end line: still open.
    let mut now = snapshot(dir.path(), "r1");
    let mut was = before.clone();
    now.sort();
    was.sort();
    assert_eq!(now, was);
    // The disk is readable again: the next start closes it as incomplete, nothing lost.
    let done = recover(&disk, &key, &NoTrail, 1_700_000_300_000).unwrap();
    assert!(done[0].failed.is_none(), "{:?}", done[0].failed);
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Incomplete, "{:?}", v.problem);
    assert_eq!(v.segments, 4);
}

/// An audit trail that says which recordings the gateway closed, and keeps what recovery tells
/// it (or refuses it).
#[derive(Default)]
struct Trail {
    closed: std::collections::HashMap<String, portcullis_recording::ClosedOnRecord>,
    acts: std::sync::Mutex<Vec<portcullis_recording::RecoveryAct>>,
    /// Closes carried out (`after`), and `found_closed` acts.
    done: std::sync::Mutex<Vec<portcullis_recording::RecoveryAct>>,
    refuse: bool,
}

impl portcullis_recording::RecoveryTrail for Trail {
    /// What it was given, or the close of the latest act it recorded (as the gateway's trail
    /// does).
    fn closed_on_record(
        &self,
        id: &str,
    ) -> Result<Option<portcullis_recording::ClosedOnRecord>, String> {
        let done = self.done.lock().unwrap();
        let recorded = done.iter().enumerate().rev().find(|(_, a)| a.id == id);
        Ok(match recorded {
            Some((i, a)) => a.lines.map(|lines| portcullis_recording::ClosedOnRecord {
                audit_seq: 1000 + i as u64,
                lines,
                chain: a.chain.clone(),
            }),
            None => self.closed.get(id).cloned(),
        })
    }
    fn before(&self, act: &portcullis_recording::RecoveryAct) -> Result<(), String> {
        if self.refuse {
            return Err("the trail is stopped".into());
        }
        self.acts.lock().unwrap().push(act.clone());
        if act.action == "found_closed" {
            self.done.lock().unwrap().push(act.clone());
        }
        Ok(())
    }
    fn after(&self, act: &portcullis_recording::RecoveryAct) -> Result<(), String> {
        self.done.lock().unwrap().push(act.clone());
        Ok(())
    }
}

#[test]
fn a_closed_recording_cut_while_the_gateway_was_down_is_found_cut_not_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "r1", 5, true);
    assert_eq!(
        portcullis_recording::closed_lines(&disk, "r1").unwrap(),
        Some(8)
    );
    // Someone removes the end line and the last two segments at line boundaries, and cuts the
    // data files to match.
    let path = dir.path().join("r1/manifest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, lines[..5].join("\n") + "\n").unwrap();
    let s =
        portcullis_recording::scan::scan(&disk, "r1", portcullis_recording::scan::Depth::Structure)
            .unwrap();
    for (file, len) in disk.files("r1").unwrap() {
        let keep = s.file_ends.get(&file).copied().unwrap_or(len);
        if file != "manifest.jsonl" && keep < len {
            disk.truncate("r1", &file, keep).unwrap();
        }
    }
    // Also a recording a kill -9 left open: no close on record, plain incomplete.
    write(&disk, &key, "r2", 2, false);
    let mut trail = Trail::default();
    trail.closed.insert(
        "r1".into(),
        portcullis_recording::ClosedOnRecord {
            audit_seq: 42,
            lines: 8,
            chain: None,
        },
    );

    // The trail refuses the record of the act: nothing is done.
    let refusing = Trail {
        closed: trail.closed.clone(),
        refuse: true,
        ..Trail::default()
    };
    let before = snapshot(dir.path(), "r1");
    let done = recover(&disk, &key, &refusing, 1_700_000_200_000).unwrap();
    assert!(done.iter().all(|r| r.failed.is_some()), "{done:?}");
    let mut now = snapshot(dir.path(), "r1");
    let mut was = before;
    now.sort();
    was.sort();
    assert_eq!(now, was);

    let mut done = recover(&disk, &key, &trail, 1_700_000_200_000).unwrap();
    done.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|r| r.failed.is_none()), "{done:?}");
    assert_eq!(done[0].found_cut.as_ref().unwrap().audit_seq, 42);
    assert!(done[1].found_cut.is_none());
    // Each act was on record before it was done.
    let acts = trail.acts.lock().unwrap();
    let act = acts.iter().find(|a| a.id == "r1").unwrap();
    assert_eq!(act.action, "close");
    assert_eq!(act.state, Some(EndState::FoundCut));
    assert!(act.reason.contains("3 lines are missing"), "{}", act.reason);
    let other = acts.iter().find(|a| a.id == "r2").unwrap();
    assert_eq!(other.state, Some(EndState::Incomplete));

    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Cut, "{:?}", v.problem);
    assert!(!v.is_intact());
    assert_eq!(v.ended, Some(EndState::FoundCut));
    let missing = v.missing().unwrap();
    assert!(missing.contains("found cut"), "{missing}");
    assert!(missing.contains("record 42"), "{missing}");
    assert!(missing.contains("after line 4"), "{missing}");
    let v = verify(&disk, "r2", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Incomplete);
}

#[test]
fn a_planted_line_naming_another_recordings_chain_does_not_make_its_lines_checked() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "victim", 5, true);
    write(&disk, &key, "other", 5, true);
    let victim = std::fs::read_to_string(dir.path().join("victim/manifest.jsonl")).unwrap();
    let other = std::fs::read_to_string(dir.path().join("other/manifest.jsonl")).unwrap();
    let v_lines: Vec<&str> = victim.lines().collect();
    let o_lines: Vec<&str> = other.lines().collect();
    // Lines 0..4 of the victim, then a damaged line holding the other recording's chain value
    // after its line 3, then the other recording's signed lines 4.. (same key, other content).
    let o3: serde_json::Value = serde_json::from_str(o_lines[3]).unwrap();
    let planted = format!("garbage \"chain\":\"{}\"", o3["chain"].as_str().unwrap());
    let mut forged: Vec<String> = v_lines[..4].iter().map(|l| (*l).to_owned()).collect();
    forged.push(planted);
    forged.extend(o_lines[4..].iter().map(|l| (*l).to_owned()));
    std::fs::write(
        dir.path().join("victim/manifest.jsonl"),
        forged.join("\n") + "\n",
    )
    .unwrap();
    // The other recording's data after its line 3, so that its spans check out.
    for f in ["video-1.mp4", "events.jsonl", "thumbs.bin"] {
        std::fs::copy(
            dir.path().join("other").join(f),
            dir.path().join("victim").join(f),
        )
        .unwrap();
    }
    let v = verify(&disk, "victim", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Altered);
    // Only the victim's own lines 0..3 are counted as checked; the foreign ones are not.
    assert_eq!(v.lines, 4, "{:?}", v.damage);
    assert_eq!(v.segments, 2);
    assert!(v.unproven_lines >= 3, "{}", v.unproven_lines);
    assert!(!v.damage[0].tied);
}

/// Start-up skips a closed recording only when its last line is the signed end line the trail
/// has on record: an end line that merely parses (forged, or recorded by nobody) gets the full
/// check.
#[test]
fn start_up_skips_only_an_end_line_the_trail_has_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    for id in ["kept", "forged", "unrecorded"] {
        write(&disk, &key, id, 5, true);
    }
    let end_of = |id: &str| {
        portcullis_recording::closed_end(&disk, id)
            .unwrap()
            .unwrap()
            .1
    };
    let on_record = |seq, id: &str| portcullis_recording::ClosedOnRecord {
        audit_seq: seq,
        lines: 8,
        chain: Some(end_of(id)),
    };
    let mut trail = Trail::default();
    trail.closed.insert("kept".into(), on_record(10, "kept"));
    trail
        .closed
        .insert("forged".into(), on_record(11, "forged"));
    // "forged": the end line and the last segment cut, and an end line that parses but was
    // never signed put in their place (its reason rewritten).
    let path = dir.path().join("forged/manifest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let end = lines[7].replace("the target closed the session", "closed normally");
    assert_ne!(end, lines[7]);
    let mut forged: Vec<&str> = lines[..6].to_vec();
    forged.push(&end);
    std::fs::write(&path, forged.join("\n") + "\n").unwrap();
    assert!(portcullis_recording::summary(&disk, "forged", false)
        .unwrap()
        .ended_at_ms
        .is_some());

    let mut done = recover(&disk, &key, &trail, 1_700_000_200_000).unwrap();
    done.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = done.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["forged", "unrecorded"], "{done:?}");
    assert!(done.iter().all(|r| r.failed.is_none()), "{done:?}");
    // The forged end line (and the data only the cut segment named) were set aside and the
    // recording closed as found cut.
    assert_eq!(done[0].found_cut.as_ref().unwrap().audit_seq, 11);
    assert!(
        done[0]
            .quarantined
            .iter()
            .any(|q| q.starts_with("quarantine-manifest.jsonl")),
        "{done:?}"
    );
    let v = verify(&disk, "forged", &key.verifying_key()).unwrap();
    assert_eq!(v.ended, Some(EndState::FoundCut));
    assert_eq!(v.status(), Status::Cut, "{:?}", v.problem);
    // The recording closed without a record of it: its close recorded now, nothing touched.
    assert!(done[1].found_closed, "{done:?}");
    assert!(done[1].problem.is_none());
    let acts = trail.acts.lock().unwrap().clone();
    let act = acts.iter().find(|a| a.id == "unrecorded").unwrap();
    assert_eq!(act.action, "found_closed");
    assert_eq!(act.lines, Some(8));
    assert_eq!(act.state, Some(EndState::Complete));
    assert!(act.set_aside.is_empty() && act.cut.is_empty());
    let closed = acts.iter().find(|a| a.id == "forged").unwrap();
    assert_eq!(closed.lines, Some(7));
    assert!(verify(&disk, "unrecorded", &key.verifying_key())
        .unwrap()
        .is_intact());
    assert!(verify(&disk, "kept", &key.verifying_key())
        .unwrap()
        .is_intact());

    // With those closes on record (the close carried out, the close found), the next start
    // skips all three.
    assert!(
        closed.chain.is_none(),
        "the intent does not know the end yet"
    );
    let done_acts = trail.done.lock().unwrap().clone();
    assert!(done_acts.iter().all(|a| a.chain.is_some()), "{done_acts:?}");
    trail.acts.lock().unwrap().clear();
    let done = recover(&disk, &key, &trail, 1_700_000_300_000).unwrap();
    assert!(done.is_empty(), "{done:?}");
    assert!(trail.acts.lock().unwrap().is_empty());

    // A close on record with another line count than the file's end line: the full check, which
    // names the difference, records no close and leaves it for verify.
    trail.closed.insert(
        "kept".into(),
        portcullis_recording::ClosedOnRecord {
            audit_seq: 30,
            lines: 9,
            chain: Some(end_of("kept")),
        },
    );
    let done = recover(&disk, &key, &trail, 1_700_000_400_000).unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done[0].altered_end && !done[0].found_closed, "{done:?}");
    let what = &done[0].problem.as_ref().unwrap().what;
    assert!(
        what.contains("(record 30) says the gateway closed it with (9 manifest lines"),
        "{what}"
    );
    assert!(trail.acts.lock().unwrap().is_empty());
}

/// An end spliced in from another recording signed with the same key (after a damaged line, so
/// that the chain cannot tie it) is not taken for the recording's close: nothing is recorded as
/// closed, and every start checks it fully again.
#[test]
fn an_end_spliced_from_another_recording_is_not_recorded_as_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    write(&disk, &key, "victim", 5, true);
    write(&disk, &key, "other", 5, true);
    let end = |id| {
        portcullis_recording::closed_end(&disk, id)
            .unwrap()
            .unwrap()
            .1
    };
    let (victim_end, other_end) = (end("victim"), end("other"));
    let victim = std::fs::read_to_string(dir.path().join("victim/manifest.jsonl")).unwrap();
    let other = std::fs::read_to_string(dir.path().join("other/manifest.jsonl")).unwrap();
    let v: Vec<&str> = victim.lines().collect();
    let o: Vec<&str> = other.lines().collect();
    // The victim's end and last segment cut, a garbage line, then the other's last two lines.
    let mut forged: Vec<&str> = v[..6].to_vec();
    forged.push("garbage");
    forged.extend(&o[6..]);
    std::fs::write(
        dir.path().join("victim/manifest.jsonl"),
        forged.join("\n") + "\n",
    )
    .unwrap();
    let mut trail = Trail::default();
    for (id, chain) in [("victim", &victim_end), ("other", &other_end)] {
        trail.closed.insert(
            id.into(),
            portcullis_recording::ClosedOnRecord {
                audit_seq: 1,
                lines: 8,
                chain: Some(chain.clone()),
            },
        );
    }
    for start in 0..2 {
        let done = recover(&disk, &key, &trail, 1_700_000_200_000 + start).unwrap();
        let victim = done.iter().find(|r| r.id == "victim");
        assert!(
            victim.is_some_and(|r| !r.found_closed && r.failed.is_none()),
            "start {start}: {done:?}"
        );
        let acts = trail.acts.lock().unwrap();
        assert!(
            acts.iter().all(|a| a.action != "found_closed"),
            "start {start}: {acts:?}"
        );
    }
    let v = verify(&disk, "victim", &key.verifying_key()).unwrap();
    assert!(!v.is_intact());
}

/// One gateway per recordings folder: a second one (another process, or here another lock)
/// is refused, naming the folder, until the first lets go; the lock file is no recording.
#[test]
fn a_recordings_folder_is_one_gateways_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("recordings");
    let first = portcullis_recording::storage::lock_folder(&root).unwrap();
    let err = portcullis_recording::storage::lock_folder(&root).unwrap_err();
    assert!(
        matches!(&err, portcullis_recording::StorageError::Refused(m) if m.contains("recordings")),
        "{err}"
    );
    drop(first);
    let again = portcullis_recording::storage::lock_folder(&root).unwrap();
    let disk = LocalDisk::open(&root).unwrap();
    assert!(disk.list().unwrap().is_empty());
    drop(again);
    // A link planted in its place is not followed (nothing is created or locked through it).
    let lock = root.join(portcullis_recording::storage::FOLDER_LOCK);
    std::fs::remove_file(&lock).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
    assert!(portcullis_recording::storage::lock_folder(&root).is_err());
    assert!(!elsewhere.exists());
}

#[test]
fn a_recording_closed_by_recovery_keeps_its_risk_score_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    let mut w = RecordingWriter::create(&disk, Arc::clone(&key), meta("r1")).unwrap();
    w.begin_part(1280, 800, "avc1.64001f", b"init-bytes")
        .unwrap();
    for (i, (rule, score)) in [
        ("log_clearing", 40),
        ("account_creation", 30),
        ("log_clearing", 40),
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as u64;
        w.event(
            i * 1000 + 5,
            &SessionEvent::Risk {
                rule: rule.into(),
                description: "d".into(),
                source: "typed".into(),
                action: "alert".into(),
                score,
                excerpt: "x".into(),
            },
        );
        w.segment(
            SegmentInfo {
                start_ms: i * 1000,
                end_ms: (i + 1) * 1000,
                key: i == 0,
                frames: 1,
            },
            &[1; 10],
            None,
        )
        .unwrap();
    }
    // The gateway dies here: no end line.
    drop(w);
    let done = recover(&disk, &key, &Trail::default(), 1_700_000_200_000).unwrap();
    assert_eq!(done.len(), 1);
    let s = summary(&disk, "r1", false).unwrap();
    assert_eq!(s.state, ListedState::Incomplete);
    assert_eq!(s.risk_score, 70, "each rule counted once");
    assert_eq!(s.risk_rules, ["log_clearing", "account_creation"]);
}
