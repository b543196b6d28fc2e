//! The SIEM export across a crash that loses what was never fsynced.
//!
//! `kill -9` keeps the page cache, so it proves nothing about fsync: these tests put
//! `portcullis_audit::CrashFiles` under the audit log, which holds the writer between a batch's
//! write and its fsync (the lines are whole in the file, as a reader would see a real disk's
//! page cache) and then "cuts the power": every segment goes back to its fsynced length.
#![allow(clippy::unwrap_used)]

mod common;
use common::wait_for;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_audit::{
    AuditLog, CrashFiles, CrashLayer, Digest, Filter, Kind, OpenOptions, Record, Ticket,
};
use portcullis_siem::{cursor, Cursor, Forwarder, Handle, SiemConfig, SiemKind};

fn record(label: &str, i: u64) -> Record {
    Record::new(Kind::LOGIN, format!("user-{i}")).detail("run", label)
}

fn append(log: &AuditLog, label: &str, seqs: std::ops::RangeInclusive<u64>) {
    for i in seqs {
        assert_eq!(log.append(record(label, i)).unwrap().seq, i);
    }
}

struct Running {
    handle: Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn(config: &SiemConfig, audit: &Path, state: &Path, log: &AuditLog) -> Running {
    let forwarder = Forwarder::new(config, audit, state)
        .unwrap()
        .synced_by(log.watermark());
    let handle = forwarder.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(forwarder.run(async move {
        let _ = stopped.await;
    }));
    Running { handle, stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    audit: PathBuf,
    state: PathBuf,
    out: PathBuf,
    config: SiemConfig,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let state = tmp.path().join("state");
    let out = tmp.path().join("export.jsonl");
    let mut config = SiemConfig::new(SiemKind::Jsonl);
    config.file = Some(out.clone());
    config.poll_ms = 20;
    config.settle_ms = 0;
    Setup {
        audit,
        state,
        out,
        config,
        _tmp: tmp,
    }
}

/// (seq, hash, run label) of each exported line.
fn exported(out: &Path) -> Vec<(u64, String, String)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                v["hash"].as_str().unwrap().to_owned(),
                v["detail"]["run"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (seq, hash, run label) of every record the log has now.
fn in_log(log: &AuditLog) -> Vec<(u64, String, String)> {
    log.query(&Filter::new(1000))
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.seq,
                e.hash.to_hex(),
                e.record.detail["run"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The whole lines of the log's files, whatever was fsynced: what a reader of the files sees.
fn lines_in_files(audit: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(audit).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            n += std::fs::read_to_string(&p).unwrap().matches('\n').count();
        }
    }
    n
}

/// Lets held fsyncs go when a test fails half-way (dropping a log waits for its writer).
struct Release(Arc<CrashFiles>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.hold_syncs(false);
    }
}

/// An audit log on files whose fsyncs the test can hold and whose power it can cut.
fn crashable_log(audit: &Path) -> (AuditLog, Arc<CrashFiles>, Release) {
    let files = CrashFiles::new();
    let log = OpenOptions::new()
        .file_layer(Arc::new(CrashLayer(Arc::clone(&files))))
        .open(audit)
        .unwrap();
    let release = Release(Arc::clone(&files));
    (log, files, release)
}

/// Waits until the forwarder has delivered up to `seq`.
async fn delivered(run: &Running, seq: u64) {
    let h = run.handle.clone();
    wait_for(
        &format!("{seq} records delivered"),
        Duration::from_secs(10),
        || h.status().delivered_seq == seq,
    )
    .await;
}

/// Submits `seqs` while fsyncs are held: the lines are written, never fsynced.
fn write_unsynced(
    log: &AuditLog,
    files: &CrashFiles,
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<Ticket> {
    files.hold_syncs(true);
    // One batch: the writer writes all of them before it reaches the held fsync (submitted one
    // by one, a busy machine let the writer take the first alone and hold the rest back).
    let records: Vec<_> = seqs.map(|i| record("lost", i)).collect();
    let tickets: Vec<Ticket> = log.submit_all(&records).unwrap();
    assert!(
        files.wait_held(Duration::from_secs(10)),
        "the writer never reached its fsync"
    );
    tickets
}

/// The power cut: what was not fsynced is gone, and no held record was acknowledged.
fn crash(log: AuditLog, files: &CrashFiles, tickets: Vec<Ticket>) {
    files.crash().unwrap();
    for t in tickets {
        assert!(
            t.wait().is_err(),
            "a record lost in the crash was acknowledged"
        );
    }
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_fsynced_records_are_forwarded_and_a_crash_skips_nothing() {
    let s = setup();
    let (log, files, _release) = crashable_log(&s.audit);
    append(&log, "before", 1..=3);
    let run = spawn(&s.config, &s.audit, &s.state, &log);
    let h = run.handle.clone();
    wait_for("3 records delivered", Duration::from_secs(10), || {
        let st = h.status();
        st.delivered_seq == 3 && st.durable_seq == 3
    })
    .await;

    // Records 4 to 6 are whole lines in the segment, but their fsync has not returned.
    let tickets = write_unsynced(&log, &files, 4..=6);
    assert_eq!(
        lines_in_files(&s.audit),
        6,
        "the reader can see the unsynced lines"
    );
    // The forwarder looks at the log many times meanwhile: it must not send them.
    for _ in 0..20 {
        run.handle.wake();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = run.handle.status();
    assert_eq!(
        (st.sent_seq, st.delivered_seq),
        (3, 3),
        "records that were never fsynced were forwarded"
    );
    assert_eq!(exported(&s.out).len(), 3);

    crash(log, &files, tickets);
    run.stop().await;

    // After the restart, seqs 4.. go to new records: every one of them must reach the SIEM.
    let log = AuditLog::open(&s.audit).unwrap();
    assert_eq!(
        log.recovery().next_seq,
        4,
        "the crash kept unsynced records"
    );
    append(&log, "after", 4..=7);
    let run = spawn(&s.config, &s.audit, &s.state, &log);
    delivered(&run, 7).await;
    let st = run.handle.status();
    run.stop().await;
    assert_eq!(exported(&s.out), in_log(&log));
    assert_eq!(st.gaps, 0, "{:?}", st.last_gap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_ahead_of_the_log_delivers_again_from_where_the_log_ends() {
    let s = setup();
    let (log, files, _release) = crashable_log(&s.audit);
    append(&log, "before", 1..=3);
    let tickets = write_unsynced(&log, &files, 4..=6);
    // A forwarder that read whole lines (as before) delivered up to 6 and stored its cursor.
    let text = std::fs::read_to_string(
        std::fs::read_dir(&s.audit)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .unwrap(),
    )
    .unwrap();
    let line6: serde_json::Value = serde_json::from_str(text.lines().nth(5).unwrap()).unwrap();
    assert_eq!(line6["seq"], 6);
    let hash6: Digest = line6["hash"].as_str().unwrap().parse().unwrap();
    let cursor_path = s.state.join(format!(
        "siem-jsonl-{}.cursor",
        s.out.display().to_string().replace('/', "_")
    ));
    std::fs::create_dir_all(&s.state).unwrap();
    cursor::store(
        &cursor_path,
        &Cursor {
            seq: 6,
            hash: hash6,
        },
    )
    .unwrap();
    crash(log, &files, tickets);

    // The gateway restarts and writes past the old cursor before the forwarder looks.
    let log = AuditLog::open(&s.audit).unwrap();
    assert_eq!(log.recovery().next_seq, 4);
    append(&log, "after", 4..=8);
    let run = spawn(&s.config, &s.audit, &s.state, &log);
    delivered(&run, 8).await;
    let st = run.handle.status();
    run.stop().await;
    let log_now = in_log(&log);
    // Records 4 to 8 as the log has them now (the new ones), none skipped.
    assert_eq!(exported(&s.out), log_now[3..].to_vec());
    assert_eq!(st.gaps, 1);
    assert!(
        st.last_gap
            .as_deref()
            .unwrap()
            .contains("really ends at seq 3"),
        "{:?}",
        st.last_gap
    );
    assert_eq!(cursor::load(&cursor_path).unwrap().unwrap().seq, 8);
}

/// A sealing log (the gateway's) puts a seal on the last record of each write: the export reads
/// those lines and forwards them byte for byte, seal included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_records_are_forwarded_as_stored() {
    let s = setup();
    let log = OpenOptions::new()
        .sealing_key(ed25519_dalek::SigningKey::from_bytes(&[9; 32]))
        .open(&s.audit)
        .unwrap();
    append(&log, "sealed", 1..=4);
    let run = spawn(&s.config, &s.audit, &s.state, &log);
    delivered(&run, 4).await;
    run.stop().await;
    drop(log);
    let stored: String = std::fs::read_dir(&s.audit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(stored.matches(r#","seal":""#).count(), 4);
    assert_eq!(std::fs::read_to_string(&s.out).unwrap(), stored);
}
