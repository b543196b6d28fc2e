//! The audit log end to end, on real files: chain, tampering, torn tails, rotation, concurrency.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use portcullis_audit::{
    verify, AuditError, AuditLog, Filter, Kind, OpenOptions, Order, Problem, Record, VerifyError,
    GENESIS, MAX_QUERY_LIMIT,
};

fn record(i: usize) -> Record {
    Record::new(Kind::SESSION_START, format!("user-{i:02}"))
        .target("web01")
        .session(format!("s{i}"))
        .detail("n", i)
        .detail("note", "abcdefgh")
}

fn fill(log: &AuditLog, n: usize) {
    for i in 1..=n {
        assert_eq!(log.append(record(i)).unwrap().seq, i as u64);
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

/// Rewrites line `n` (from 1) of a file.
fn edit_line(path: &Path, n: usize, edit: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let edited = edit(&lines[n - 1]);
    lines[n - 1] = edited;
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(path, out).unwrap();
}

fn remove_line(path: &Path, n: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i + 1 != n {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(path, out).unwrap();
}

fn broken(dir: &Path) -> portcullis_audit::BadRecord {
    match verify(dir, None) {
        Err(VerifyError::Broken(bad)) => *bad,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn chain_verifies_and_continues_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.recovery().next_seq, 1);
    fill(&log, 30);
    let last = log.append(record(31)).unwrap();
    drop(log);

    let report = verify(dir.path(), None).unwrap();
    assert_eq!(report.records, 31);
    assert_eq!(report.files, 1);
    assert_eq!(report.last_seq, 31);
    assert_eq!(report.last_hash, last.hash);
    assert_eq!(report.torn_tail, None);

    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.recovery().next_seq, 32);
    assert_eq!(log.recovery().torn_tail, None);
    let next = log.append(record(32)).unwrap();
    assert_eq!(next.seq, 32);
    let entries = log.query(&Filter::new(MAX_QUERY_LIMIT)).unwrap();
    assert_eq!(entries.len(), 32);
    assert_eq!(entries[0].prev, GENESIS);
    assert_eq!(entries[31].prev, last.hash);
    assert_eq!(entries[31].hash, next.hash);
    log.close().unwrap();
    assert_eq!(verify(dir.path(), None).unwrap().records, 32);
}

#[test]
fn an_empty_log_verifies_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    drop(AuditLog::open(dir.path()).unwrap());
    let report = verify(dir.path(), None).unwrap();
    assert_eq!((report.records, report.files, report.last_seq), (0, 1, 0));
    assert_eq!(report.last_hash, GENESIS);
}

#[test]
fn one_changed_byte_is_named_and_blocks_opening() {
    let dir = tempfile::tempdir().unwrap();
    fill(&AuditLog::open(dir.path()).unwrap(), 20);
    let file = &segments(dir.path())[0];
    edit_line(file, 10, |l| l.replacen("abcdefgh", "abcdefgX", 1));

    let bad = broken(dir.path());
    assert_eq!(&bad.file, file);
    assert_eq!((bad.line, bad.seq), (10, Some(10)));
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }), "{bad}");
    assert!(
        bad.to_string().contains("line 10 (seq 10): hash mismatch"),
        "{bad}"
    );

    // Not repaired, not appended to, unless asked.
    match AuditLog::open(dir.path()) {
        Err(AuditError::BrokenChain(b)) => assert_eq!(*b, bad),
        other => panic!("expected BrokenChain, got {other:?}"),
    }
    let log = OpenOptions::new()
        .allow_broken_chain()
        .open(dir.path())
        .unwrap();
    assert_eq!(log.recovery().broken_chain.as_ref(), Some(&bad));
    assert_eq!(log.append(record(21)).unwrap().seq, 21);
    drop(log);
    assert_eq!(broken(dir.path()), bad);
}

#[test]
fn a_change_that_breaks_the_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fill(&AuditLog::open(dir.path()).unwrap(), 20);
    edit_line(&segments(dir.path())[0], 7, |l| {
        l.replacen("\"actor\"", "\"actor", 1)
    });
    let bad = broken(dir.path());
    assert_eq!(bad.line, 7);
    assert!(matches!(bad.problem, Problem::Unparseable(_)), "{bad}");
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::BrokenChain(_))
    ));
}

#[test]
fn a_deleted_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    fill(&AuditLog::open(dir.path()).unwrap(), 20);
    remove_line(&segments(dir.path())[0], 10);
    let bad = broken(dir.path());
    assert_eq!((bad.line, bad.seq), (10, Some(11)));
    assert_eq!(
        bad.problem,
        Problem::SeqGap {
            expected: 10,
            found: 11
        }
    );
}

#[test]
fn a_renumbered_record_is_detected() {
    // Deleting a record and renumbering the next one to hide the gap breaks its hash.
    let dir = tempfile::tempdir().unwrap();
    fill(&AuditLog::open(dir.path()).unwrap(), 20);
    let file = &segments(dir.path())[0];
    remove_line(file, 10);
    edit_line(file, 10, |l| l.replacen("\"seq\":11,", "\"seq\":10,", 1));
    let bad = broken(dir.path());
    assert_eq!(bad.line, 10);
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }), "{bad}");
}

#[test]
fn a_torn_tail_is_cut_on_open_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    fill(&AuditLog::open(dir.path()).unwrap(), 10);
    let file = segments(dir.path())[0].clone();
    let valid_len = std::fs::metadata(&file).unwrap().len();
    // A complete unreadable line and a half-written one: a crash before their fsync.
    let torn = b"{\"seq\":11,\"ts_ms\":1\0\0\0\0\n{\"seq\":12,\"ts";
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(torn);
    std::fs::write(&file, bytes).unwrap();

    let report = verify(dir.path(), None).unwrap();
    assert_eq!(report.records, 10);
    let tail = report.torn_tail.unwrap();
    assert_eq!((tail.line, tail.offset), (11, valid_len));
    assert_eq!(tail.bytes, torn.len() as u64);

    let log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.recovery().torn_tail.as_ref(), Some(&tail));
    assert_eq!(log.recovery().next_seq, 11);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), valid_len);
    assert_eq!(log.append(record(11)).unwrap().seq, 11);
    drop(log);
    let report = verify(dir.path(), None).unwrap();
    assert_eq!((report.records, report.torn_tail), (11, None));
}

#[test]
fn a_readable_but_changed_last_record_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    fill(&AuditLog::open(dir.path()).unwrap(), 5);
    edit_line(&segments(dir.path())[0], 5, |l| {
        l.replacen("user-05", "user-06", 1)
    });
    let bad = broken(dir.path());
    assert_eq!((bad.line, bad.seq), (5, Some(5)));
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::BrokenChain(_))
    ));
}

/// Records of ~4 KiB, so 64 KiB segments hold about 15.
fn big(i: usize) -> Record {
    record(i).detail("pad", "p".repeat(4000))
}

fn small_segments() -> OpenOptions {
    OpenOptions::new().max_segment_bytes(64 * 1024)
}

#[test]
fn rotation_chains_across_files_and_tampering_in_the_second_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_segments().open(dir.path()).unwrap();
    for i in 1..=40 {
        log.append(big(i)).unwrap();
    }
    drop(log);
    // Sequence numbers continue across a restart and further rotations.
    let log = small_segments().open(dir.path()).unwrap();
    assert_eq!(log.recovery().next_seq, 41);
    for i in 41..=60 {
        assert_eq!(log.append(big(i)).unwrap().seq, i as u64);
    }
    drop(log);

    let files = segments(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() <= 64 * 1024);
    }
    let report = verify(dir.path(), None).unwrap();
    assert_eq!((report.records, report.files), (60, files.len()));

    // The second file's name is the seq of its first record.
    let second = &files[1];
    let name = second.file_name().unwrap().to_str().unwrap();
    let first_seq: u64 = name
        .trim_start_matches("audit-")
        .trim_end_matches(".jsonl")
        .parse()
        .unwrap();
    edit_line(second, 3, |l| l.replacen("ppp", "ppq", 1));
    let bad = broken(dir.path());
    assert_eq!(&bad.file, second);
    assert_eq!((bad.line, bad.seq), (3, Some(first_seq + 2)));
    assert!(matches!(bad.problem, Problem::HashMismatch { .. }), "{bad}");
}

#[test]
fn a_missing_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_segments().open(dir.path()).unwrap();
    for i in 1..=50 {
        log.append(big(i)).unwrap();
    }
    drop(log);
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1]).unwrap();
    let bad = broken(dir.path());
    assert_eq!(&bad.file, &files[2]);
    assert!(
        matches!(bad.problem, Problem::MisnamedSegment { .. }),
        "{bad}"
    );

    // Removing the first segment is seen too: the chain must start at seq 1.
    std::fs::remove_file(&files[0]).unwrap();
    let bad = broken(dir.path());
    assert_eq!(&bad.file, &files[2]);
    assert!(
        matches!(bad.problem, Problem::MisnamedSegment { expected: 1, .. }),
        "{bad}"
    );
}

#[test]
fn concurrent_appends_are_all_acknowledged_in_shared_fsyncs() {
    const THREADS: usize = 8;
    const EACH: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path()).unwrap());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let r = Record::new(Kind::CLIPBOARD, format!("t{t}")).detail("i", i);
                        log.append(r).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for worker in workers {
        let acks = worker.join().unwrap();
        assert!(acks.windows(2).all(|w| w[0].seq < w[1].seq));
        for ack in acks {
            assert!(seen.insert(ack.seq), "seq {} twice", ack.seq);
        }
    }
    let total = (THREADS * EACH) as u64;
    assert_eq!(seen, (1..=total).collect());
    let stats = log.stats();
    assert_eq!(stats.appended, total);
    assert!(stats.fsyncs < total, "no batching: {stats:?}");
    assert_eq!(stats.fsyncs, stats.batches);
    drop(log);

    let report = verify(dir.path(), None).unwrap();
    assert_eq!(report.records, total);
    let log = AuditLog::open(dir.path()).unwrap();
    for t in 0..THREADS {
        let mut filter = Filter {
            actor: Some(format!("t{t}")),
            ..Filter::new(100)
        };
        let mut mine = Vec::new();
        loop {
            let page = log.query(&filter).unwrap();
            let Some(last) = page.last() else { break };
            filter.after_seq = Some(last.seq);
            mine.extend(
                page.into_iter()
                    .map(|e| e.record.detail["i"].as_u64().unwrap()),
            );
        }
        assert_eq!(mine, (0..EACH as u64).collect::<Vec<_>>());
    }
}

#[test]
fn a_full_queue_refuses_without_blocking_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = OpenOptions::new().queue_depth(1).open(dir.path()).unwrap();
    let mut tickets = Vec::new();
    let mut refused = 0;
    while refused == 0 && tickets.len() < 100_000 {
        match log.try_submit(record(1)) {
            Ok(t) => tickets.push(t),
            Err(AuditError::QueueFull) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 1, "the queue never filled");
    let n = tickets.len() as u64;
    let seqs: Vec<_> = tickets.into_iter().map(|t| t.wait().unwrap().seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
}

#[test]
fn oversize_and_invalid_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let huge = record(1).detail("blob", "x".repeat(70 * 1024));
    assert!(matches!(
        log.append(huge),
        Err(AuditError::RecordTooLarge { .. })
    ));
    assert!(matches!(
        log.append(Record::new(Kind::LOGIN, "")),
        Err(AuditError::InvalidRecord(_))
    ));
    // The largest record that fits is written whole.
    let fits = record(1).detail("blob", "x".repeat(63 * 1024));
    assert_eq!(log.append(fits).unwrap().seq, 1);
    drop(log);
    assert_eq!(verify(dir.path(), None).unwrap().records, 1);
}

#[test]
fn a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = AuditLog::open(dir.path()).unwrap();
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Locked(_))
    ));
}

#[test]
fn options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for options in [
        OpenOptions::new().max_segment_bytes(1000),
        OpenOptions::new().queue_depth(0),
    ] {
        assert!(matches!(
            options.open(dir.path()),
            Err(AuditError::InvalidOptions(_))
        ));
    }
}

/// Polls a future to completion on this thread, parking between wake-ups.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn a_ticket_can_be_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let appended = block_on(async {
        let first = log.try_submit(record(1)).unwrap().await.unwrap();
        let second = log.try_submit(record(2)).unwrap().await.unwrap();
        assert_eq!(second.seq, first.seq + 1);
        second
    });
    assert_eq!(log.query(&Filter::new(10)).unwrap()[1].hash, appended.hash);
}

/// A clock the test moves.
fn manual_clock() -> (Arc<AtomicU64>, OpenOptions) {
    let now = Arc::new(AtomicU64::new(1_000));
    let clock = Arc::clone(&now);
    let options = small_segments().clock(move || clock.load(Ordering::SeqCst));
    (now, options)
}

#[test]
fn time_never_goes_back_along_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (now, options) = manual_clock();
    let log = options.open(dir.path()).unwrap();
    now.store(5_000, Ordering::SeqCst);
    assert_eq!(log.append(record(1)).unwrap().ts_ms, 5_000);
    now.store(4_000, Ordering::SeqCst);
    assert_eq!(log.append(record(2)).unwrap().ts_ms, 5_000);
    drop(log);
    verify(dir.path(), None).unwrap();
}

#[test]
fn queries_filter_order_page_and_skip_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (now, options) = manual_clock();
    let log = options.open(dir.path()).unwrap();
    // 90 records over several segments, one per second; every third is alice's login.
    for i in 1..=90u64 {
        now.store(i * 1_000, Ordering::SeqCst);
        let r = if i % 3 == 0 {
            Record::new(Kind::LOGIN, "alice")
        } else {
            Record::new(Kind::SESSION_END, "bob").target(format!("t{}", i % 2))
        };
        log.append(r.detail("pad", "p".repeat(3000))).unwrap();
    }
    assert!(segments(dir.path()).len() >= 4);
    let seqs = |filter: Filter| -> Vec<u64> {
        log.query(&filter).unwrap().iter().map(|e| e.seq).collect()
    };

    let logins = Filter {
        actor: Some("alice".into()),
        ..Filter::new(5)
    };
    assert_eq!(seqs(logins.clone()), [3, 6, 9, 12, 15]);
    assert_eq!(
        seqs(Filter {
            after_seq: Some(15),
            ..logins.clone()
        }),
        [18, 21, 24, 27, 30]
    );
    let newest = Filter {
        order: Order::NewestFirst,
        ..logins.clone()
    };
    assert_eq!(seqs(newest.clone()), [90, 87, 84, 81, 78]);
    assert_eq!(
        seqs(Filter {
            before_seq: Some(78),
            ..newest.clone()
        }),
        [75, 72, 69, 66, 63]
    );
    // A time window: [40 s, 50 s).
    let window = Filter {
        since_ms: Some(40_000),
        until_ms: Some(50_000),
        ..Filter::new(100)
    };
    assert_eq!(seqs(window.clone()), (40..50).collect::<Vec<_>>());
    assert_eq!(
        seqs(Filter {
            order: Order::NewestFirst,
            ..window
        }),
        (40..50).rev().collect::<Vec<_>>()
    );
    // Kind and target together.
    let ends_t1 = Filter {
        kinds: vec![Kind::SESSION_END],
        target: Some("t1".into()),
        until_ms: Some(12_000),
        ..Filter::new(100)
    };
    assert_eq!(seqs(ends_t1), [1, 5, 7, 11]);
    assert!(seqs(Filter {
        kinds: vec![Kind::EXPORT],
        ..Filter::new(100)
    })
    .is_empty());
    // The limit is capped, and zero returns nothing.
    assert_eq!(seqs(Filter::new(usize::MAX)).len(), 90);
    assert!(seqs(Filter::new(0)).is_empty());
    let entry = &log.query(&Filter::new(1)).unwrap()[0];
    assert_eq!(entry.ts_ms, 1_000);
    assert_eq!(entry.record.actor, "bob");

    // Segments outside the range asked are not even opened: with the first one gone, queries
    // of later records still work, and one that needs it fails.
    std::fs::remove_file(&segments(dir.path())[0]).unwrap();
    let late = (80..=90).collect::<Vec<_>>();
    assert_eq!(
        seqs(Filter {
            since_ms: Some(80_000),
            ..Filter::new(100)
        }),
        late
    );
    assert_eq!(
        seqs(Filter {
            after_seq: Some(79),
            ..Filter::new(100)
        }),
        late
    );
    assert_eq!(seqs(newest), [90, 87, 84, 81, 78]);
    assert!(matches!(
        log.query(&Filter::new(1)),
        Err(AuditError::Io { .. })
    ));
}

/// What the cluster's mirror copies: every record names its gateway, and the stored lines, read
/// back across segments from any point, make a trail that verifies like the original.
#[test]
fn named_records_read_back_as_stored_lines_verify_as_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = OpenOptions::new()
        .max_segment_bytes(64 * 1024)
        .node("gw-a")
        .open(dir.path())
        .unwrap();
    for i in 1..=300 {
        log.append(record(i)).unwrap();
    }
    // A record that names its gateway itself keeps its own words.
    log.append(Record::new(Kind::SESSION_END, "system").detail("node", "elsewhere"))
        .unwrap();
    assert!(segments(dir.path()).len() > 1, "several segments");
    let lines = portcullis_audit::read_lines(dir.path(), 0, usize::MAX).unwrap();
    assert_eq!(lines.len(), 301);
    assert!(lines[..300]
        .iter()
        .all(|(e, _)| e.record.detail["node"] == "gw-a"));
    assert_eq!(lines[300].0.record.detail["node"], "elsewhere");
    // From the middle, bounded.
    let some = portcullis_audit::read_lines(dir.path(), 150, 20).unwrap();
    assert_eq!(
        some.iter().map(|(e, _)| e.seq).collect::<Vec<_>>(),
        (151..=170).collect::<Vec<_>>()
    );
    // The lines, written as one segment elsewhere, are the same trail.
    let copy = tempfile::tempdir().unwrap();
    let mut text = Vec::new();
    for (_, line) in &lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    std::fs::write(copy.path().join("audit-00000000000000000001.jsonl"), text).unwrap();
    let report = verify(copy.path(), None).unwrap();
    assert_eq!(report.last_seq, 301);
    assert_eq!(report.last_hash, log.verify().unwrap().last_hash);
}
