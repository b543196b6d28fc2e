#![allow(clippy::unwrap_used)]
//! Writing, verifying, tampering with and recovering recordings (no video codec involved: the
//! bytes are opaque here).

use std::sync::Arc;

use portcullis_core::session::SessionEvent;
use portcullis_recording::storage::RecordingStorage;
use portcullis_recording::{
    detail, expire, generate_key, recover, summary, verify, ListedState, LocalDisk,
    RecordingWriter, SegmentInfo, SessionMeta,
};

fn meta(id: &str) -> SessionMeta {
    SessionMeta {
        session: id.into(),
        user: "alice".into(),
        target: "db1".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms: 1_700_000_000_000,
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
    let mut w = RecordingWriter::create(disk, key.clone(), meta(id)).unwrap();
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
    let p = v.problem.unwrap();
    assert_eq!(p.seq, 5, "{}", p.what);
    assert!(p.what.contains("video altered"), "{}", p.what);
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

    let done = recover(&disk, &key, 1_700_000_200_000).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].discarded_bytes, 37 + 8);
    let v = verify(&disk, "r1", &key.verifying_key()).unwrap();
    assert!(v.is_intact(), "{:?}", v.problem);
    assert_eq!(
        v.ended,
        Some(portcullis_recording::manifest::EndState::Incomplete)
    );
    assert_eq!(v.duration_ms, 3000);
    let s = summary(&disk, "r1", false).unwrap();
    assert_eq!(s.state, ListedState::Incomplete);
    // A second start finds nothing to do.
    assert!(recover(&disk, &key, 1_700_000_300_000).unwrap().is_empty());
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

    let done = recover(&disk, &key, 1_700_000_200_000).unwrap();
    assert_eq!(
        done.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["open"]
    );
    let mut left = disk.list().unwrap();
    left.sort();
    assert_eq!(left, ["bad", "odd", "open"]);
    assert!(verify(&disk, "open", &key.verifying_key())
        .unwrap()
        .is_intact());
    for kept in ["bad", "odd"] {
        assert!(!verify(&disk, kept, &key.verifying_key())
            .unwrap()
            .is_intact());
    }
}

/// A disk whose recordings cannot be appended to on reopening (a full disk at start-up).
struct FullOnReopen(LocalDisk);

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

impl RecordingStorage for FullOnReopen {
    fn create(&self, id: &str) -> Res<Box<dyn portcullis_recording::RecordingSink>> {
        self.0.create(id)
    }
    fn reopen(&self, _: &str) -> Res<Box<dyn portcullis_recording::RecordingSink>> {
        Ok(Box::new(FullSink))
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
    let full = FullOnReopen(disk.clone());
    let mut done = recover(&full, &key, 1_700_000_200_000).unwrap();
    done.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(done.len(), 2);
    for r in &done {
        assert!(r.failed.as_ref().is_some_and(|e| e.is_full()), "{r:?}");
    }
    // Still open and intact up to the last segment; the next start (space freed) closes them.
    for id in ["r1", "r2"] {
        let v = verify(&disk, id, &key.verifying_key()).unwrap();
        assert!(v.is_intact() && v.ended.is_none(), "{:?}", v.problem);
    }
    let done = recover(&disk, &key, 1_700_000_300_000).unwrap();
    assert!(done.iter().all(|r| r.failed.is_none()) && done.len() == 2);
    for id in ["r1", "r2"] {
        let v = verify(&disk, id, &key.verifying_key()).unwrap();
        assert!(v.is_intact(), "{:?}", v.problem);
        assert_eq!(
            v.ended,
            Some(portcullis_recording::manifest::EndState::Incomplete)
        );
    }
}
