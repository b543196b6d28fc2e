#![allow(clippy::unwrap_used)]
//! `portcullis recording verify` as a user runs it: its verdicts and exit statuses (README,
//! "Recordings").

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use portcullis_recording::manifest::fingerprint;
use portcullis_recording::oracles::NoTrail;
use portcullis_recording::{
    generate_key, recover, LocalDisk, RecordingWriter, SegmentInfo, SessionMeta, SigningKey,
};

fn meta(id: &str) -> SessionMeta {
    SessionMeta {
        session: id.into(),
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "db1".into(),
        client_addr: "127.0.0.1".into(),
        // Now: a recording being written is one this run of the gateway started.
        started_at_ms: i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
        screen_search: None,
    }
}

/// A recording with `n` segments, its writer (still open unless `finish`).
fn write(
    disk: &LocalDisk,
    key: &Arc<SigningKey>,
    id: &str,
    n: u64,
    finish: bool,
) -> Option<RecordingWriter> {
    let mut w = RecordingWriter::create(disk, Arc::clone(key), meta(id)).unwrap();
    w.begin_part(1280, 800, "avc1.64001f", b"init-bytes")
        .unwrap();
    for i in 0..n {
        w.segment(
            SegmentInfo {
                start_ms: i * 1000,
                end_ms: (i + 1) * 1000,
                key: i == 0,
                frames: 2,
            },
            &[u8::try_from(i).unwrap(); 50],
            None,
        )
        .unwrap();
    }
    if finish {
        w.finish("the user closed the session", n * 1000, 1_700_000_100_000)
            .unwrap();
        None
    } else {
        Some(w)
    }
}

/// Opens `manifest` and takes its lock, as someone who can read it would. A writer just dropped
/// may still be holding it for a moment through a copy of its file in a child process another
/// test forked (the lock belongs to the open file, which `fork` shares until `exec`): the lock is
/// waited for, up to 10 s.
fn hold_lock(manifest: &Path) -> std::fs::File {
    let file = std::fs::File::open(manifest).unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("cannot lock {}: {e:?}", manifest.display()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Run {
    code: i32,
    out: String,
}

fn verify(data: &Path, dir: &Path, key: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.env_remove("PORTCULLIS_SECRET_KEY")
        .env_remove("PORTCULLIS_CONFIG")
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .args(["recording", "verify"])
        .arg(dir);
    if let Some(k) = key {
        cmd.args(["--public-key", k]);
    }
    let o = cmd.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn verdicts_and_exit_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let recs = tmp.path().join("recs");
    let disk = LocalDisk::open(&recs).unwrap();
    let key = Arc::new(generate_key());
    let hex_key = hex(key.verifying_key().as_bytes());
    let fp = fingerprint(&key.verifying_key());
    let trusted = tmp.path().join("gateway.pub");
    std::fs::write(&trusted, format!("{hex_key}\n")).unwrap();
    let trusted = trusted.to_str().unwrap();

    // Complete and intact, against a trusted key: 0, and the key's fingerprint is printed.
    write(&disk, &key, "whole", 3, true);
    let whole = recs.join("whole");
    let r = verify(&data, &whole, Some(trusted));
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("verdict:     INTACT"), "{}", r.out);
    assert!(
        r.out.contains(&format!("trusted key: fingerprint {fp}")),
        "{}",
        r.out
    );
    assert_eq!(verify(&data, &whole, Some(&hex_key)).code, 0);

    // The key that came inside the folder (an export's): not trusted, 4, and said plainly.
    std::fs::write(
        whole.join("gateway-signing-key.pub"),
        format!("{hex_key}\n"),
    )
    .unwrap();
    let shipped = whole.join("gateway-signing-key.pub");
    let r = verify(&data, &whole, Some(shipped.to_str().unwrap()));
    assert_eq!(r.code, 4, "{}", r.out);
    assert!(
        r.out.contains("NOT TRUSTED: it came with the recording"),
        "{}",
        r.out
    );
    assert!(r.out.contains("verdict:     NOT VERIFIED"), "{}", r.out);
    assert!(!r.out.contains("INTACT"), "{}", r.out);
    // No key given and no gateway key here: the shipped one is all there is: 4 too.
    let r = verify(&data, &whole, None);
    assert_eq!(r.code, 4, "{}", r.out);
    assert!(
        r.out.contains("this gateway's key is not available here"),
        "{}",
        r.out
    );
    // And no signing key was created by looking for one.
    assert!(!data.join("recording-signing.key").exists());

    // Another gateway's key: 1.
    let other = hex(generate_key().verifying_key().as_bytes());
    let r = verify(&data, &whole, Some(&other));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("ALTERED OR DAMAGED"), "{}", r.out);

    // Cut at the end line: 1, naming what is missing.
    let cut = recs.join("cut");
    copy_dir(&whole, &cut);
    let text = std::fs::read_to_string(cut.join("manifest.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(
        cut.join("manifest.jsonl"),
        lines[..lines.len() - 1].join("\n") + "\n",
    )
    .unwrap();
    let r = verify(&data, &cut, Some(trusted));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.out
            .contains("verdict:     CUT: missing the signed end line"),
        "{}",
        r.out
    );

    // One flipped byte: 1, naming the segment.
    let flipped = recs.join("flipped");
    copy_dir(&whole, &flipped);
    let mut video = std::fs::read(flipped.join("video-1.mp4")).unwrap();
    video[10 + 50 + 7] ^= 1; // in the second fragment: manifest line 3
    std::fs::write(flipped.join("video-1.mp4"), video).unwrap();
    let r = verify(&data, &flipped, Some(trusted));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.out
            .contains("ALTERED OR DAMAGED at segment 3: segment 3: video altered"),
        "{}",
        r.out
    );

    // Being written right now by this configuration's running gateway (this process holds
    // the gateway's audit trail lock, and the writer, in its recordings folder): live, 3.
    let gw_recs = data.join("recordings");
    let gw_disk = LocalDisk::open(&gw_recs).unwrap();
    std::fs::create_dir_all(data.join("audit")).unwrap();
    let trail = portcullis_audit::AuditLog::open(data.join("audit")).unwrap();
    let w = write(&gw_disk, &key, "open", 2, false);
    let open = gw_recs.join("open");
    let r = verify(&data, &open, Some(trusted));
    assert_eq!(r.code, 3, "{}", r.out);
    assert!(r.out.contains("verdict:     LIVE"), "{}", r.out);
    // A recording an earlier run left open (started before this run took the trail), its
    // manifest locked by whoever can read it: not live but cut, 1.
    drop(trail);
    let earlier = write(&gw_disk, &key, "earlier", 2, false);
    drop(earlier);
    let earlier_lock = hold_lock(&gw_recs.join("earlier/manifest.jsonl"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let trail = portcullis_audit::AuditLog::open(data.join("audit")).unwrap();
    let r = verify(&data, &gw_recs.join("earlier"), Some(trusted));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("verdict:     CUT"), "{}", r.out);
    drop(earlier_lock);
    // A copy outside the recordings folder, its manifest locked by whoever can read it: not
    // live but cut, 1.
    let held = recs.join("held");
    copy_dir(&open, &held);
    let lock = hold_lock(&held.join("manifest.jsonl"));
    let r = verify(&data, &held, Some(trusted));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("verdict:     CUT"), "{}", r.out);
    // The gateway stopped (its trail's lock is gone) while something still holds the writer
    // lock: cut, 1.
    drop(trail);
    let r = verify(&data, &open, Some(trusted));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("verdict:     CUT"), "{}", r.out);
    // Once the writer is gone without closing it (a crash): cut, 1. Closed by the next start
    // (the trail has no close of it on record): incomplete, 2. A held lock does not hold up
    // recovery.
    drop(w);
    let r = verify(&data, &open, Some(trusted));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("CUT"), "{}", r.out);
    let held_lock = hold_lock(&open.join("manifest.jsonl"));
    let done = recover(&gw_disk, &key, &NoTrail, 1_700_000_200_000).unwrap();
    assert!(done.iter().all(|d| d.failed.is_none()), "{done:?}");
    drop(held_lock);
    let r = verify(&data, &open, Some(trusted));
    assert_eq!(r.code, 2, "{}", r.out);
    assert!(r.out.contains("verdict:     INCOMPLETE"), "{}", r.out);
    assert!(r.out.contains("state:       incomplete"), "{}", r.out);
    assert!(!r.out.contains("INTACT"), "{}", r.out);
    drop(lock);
}

/// The trail of a gateway that closed every recording given.
struct ClosedAll(u64);

impl portcullis_recording::RecoveryTrail for ClosedAll {
    fn closed_on_record(
        &self,
        _: &str,
    ) -> Result<Option<portcullis_recording::ClosedOnRecord>, String> {
        Ok(Some(portcullis_recording::ClosedOnRecord {
            audit_seq: 7,
            lines: self.0,
            chain: None,
        }))
    }
    fn before(&self, _: &portcullis_recording::RecoveryAct) -> Result<(), String> {
        Ok(())
    }
    fn after(&self, _: &portcullis_recording::RecoveryAct) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn a_closed_recording_found_cut_at_a_start_verifies_as_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let recs = tmp.path().join("recs");
    let disk = LocalDisk::open(&recs).unwrap();
    let key = Arc::new(generate_key());
    let hex_key = hex(key.verifying_key().as_bytes());
    write(&disk, &key, "r1", 3, true);
    let m = recs.join("r1/manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    // The end line and the last segment removed, the video cut to match.
    std::fs::write(&m, lines[..4].join("\n") + "\n").unwrap();
    let video = recs.join("r1/video-1.mp4");
    let len = std::fs::metadata(&video).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&video)
        .unwrap()
        .set_len(len - 50)
        .unwrap();
    let done = recover(&disk, &key, &ClosedAll(6), 1_700_000_200_000).unwrap();
    assert!(done[0].found_cut.is_some(), "{done:?}");
    let r = verify(&data, &recs.join("r1"), Some(&hex_key));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.out
            .contains("verdict:     CUT: missing the end of the recording: found cut"),
        "{}",
        r.out
    );
    assert!(r.out.contains("state:       found cut"), "{}", r.out);
    assert!(
        r.out.contains("2 lines are missing after line 3"),
        "{}",
        r.out
    );
}

#[test]
fn another_sessions_recording_in_a_recordings_folder_is_altered_and_every_verdict_names_the_signed_session(
) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let recs = data.join("recordings");
    let disk = LocalDisk::open(&recs).unwrap();
    let key = Arc::new(generate_key());
    let trusted = tmp.path().join("gateway.pub");
    std::fs::write(
        &trusted,
        format!("{}\n", hex(key.verifying_key().as_bytes())),
    )
    .unwrap();
    let trusted = trusted.to_str().unwrap();
    write(&disk, &key, "r-one", 3, true);
    write(&disk, &key, "r-two", 2, true);

    // Someone with the disk puts r-two's files in r-one's place: each file checks out, but the
    // folder r-one no longer holds session r-one.
    std::fs::remove_dir_all(recs.join("r-one")).unwrap();
    copy_dir(&recs.join("r-two"), &recs.join("r-one"));
    let r = verify(&data, &recs.join("r-one"), Some(trusted));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.out
            .contains("the folder r-one holds the recording of another session (r-two)"),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("signed as:   session r-two, user alice, target db1"),
        "{}",
        r.out
    );

    // Nor through a link named after r-one pointing at r-two's folder.
    std::fs::remove_dir_all(recs.join("r-one")).unwrap();
    std::os::unix::fs::symlink(recs.join("r-two"), recs.join("r-one")).unwrap();
    let r = verify(&data, &recs.join("r-one"), Some(trusted));
    assert_ne!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("is a symbolic link"), "{}", r.out);

    // An export may sit in a folder of any name: intact, and the verdict says whose it is.
    copy_dir(&recs.join("r-two"), &tmp.path().join("evidence"));
    let r = verify(&data, &tmp.path().join("evidence"), Some(trusted));
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("signed as:   session r-two"), "{}", r.out);
}

/// A recording the trail says the gateway closed is never called live, whoever holds its lock
/// while the gateway runs: cut from its end, it is cut.
#[test]
fn a_recording_closed_on_record_is_not_live_whoever_holds_its_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let recs = data.join("recordings");
    let disk = LocalDisk::open(&recs).unwrap();
    let key = Arc::new(generate_key());
    let hex_key = hex(key.verifying_key().as_bytes());
    write(&disk, &key, "r1", 3, true);
    std::fs::create_dir_all(data.join("audit")).unwrap();
    // The running gateway: it holds its trail, which says it closed r1 with 6 lines.
    let trail = portcullis_audit::AuditLog::open(data.join("audit")).unwrap();
    trail
        .append(
            portcullis_audit::Record::new(portcullis_audit::Kind::RECORDING_CLOSED, "system")
                .session("r1")
                .detail("lines", 6),
        )
        .unwrap();
    // The end line removed; someone who can read the manifest holds its lock.
    let m = recs.join("r1/manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&m, lines[..5].join("\n") + "\n").unwrap();
    let lock = hold_lock(&m);
    let r = verify(&data, &recs.join("r1"), Some(&hex_key));
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("verdict:     CUT"), "{}", r.out);
    assert!(
        r.out
            .contains("on record:   the audit trail says the gateway closed it with 6 manifest lines (record 1)"),
        "{}",
        r.out
    );
    drop(lock);
    drop(trail);
}
