//! Sealed logs: someone who can write the files while the gateway is down can recompute every
//! hash of the chain, but not the gateway's seal; what the seals catch, and what they cannot.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use portcullis_audit::{
    verify, AuditError, AuditLog, BadRecord, CrashFiles, CrashLayer, Filter, Kind, OpenOptions,
    Order, Problem, Record, SealedAsFound, VerifyError, MAX_BATCH_RECORDS,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn public() -> VerifyingKey {
    key().verifying_key()
}

fn sealing() -> OpenOptions {
    OpenOptions::new().sealing_key(key())
}

fn record(i: usize) -> Record {
    Record::new(Kind::SESSION_START, format!("user-{i:02}"))
        .target("web01")
        .detail("n", i)
}

/// `batches` writes of `per_batch` records each (one write and one seal per batch).
fn fill_batches(log: &AuditLog, batches: usize, per_batch: usize) {
    for b in 0..batches {
        let records: Vec<_> = (0..per_batch).map(|i| record(b * per_batch + i)).collect();
        for ticket in log.submit_all(&records).unwrap() {
            ticket.wait().unwrap();
        }
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

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(path, out).unwrap();
}

/// A line split into its header (`{"seq":…,"prev":"…",`), hash, seal and the rest.
fn split(line: &str) -> (String, String, Option<String>, String) {
    let at = line.find(r#""hash":""#).unwrap();
    let header = line[..at].to_owned();
    let hash = line[at + 8..at + 72].to_owned();
    let rest = &line[at + 74..];
    match rest.strip_prefix(r#""seal":""#) {
        Some(sealed) => (
            header,
            hash,
            Some(sealed[..128].to_owned()),
            sealed[130..].to_owned(),
        ),
        None => (header, hash, None, rest.to_owned()),
    }
}

/// What an attacker with the files does: applies `edit` to every line (in chain order), then
/// rewrites every `prev` and `hash` so the chain checks out again. `keep_seal` decides, per seq,
/// whether a line keeps its seal (the attacker cannot make a new one).
fn tamper_and_rehash(
    dir: &Path,
    mut edit: impl FnMut(u64, String) -> String,
    keep_seal: impl Fn(u64) -> bool,
) {
    let mut prev = "0".repeat(64);
    for path in segments(dir) {
        let mut out = Vec::new();
        for line in lines(&path) {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            let seq = value["seq"].as_u64().unwrap();
            let line = edit(seq, line);
            let (header, _, seal, rest) = split(&line);
            let header = header.replacen(
                &header[header.find(r#""prev":""#).unwrap()..],
                &format!(r#""prev":"{prev}","#),
                1,
            );
            let canonical = format!("{header}{rest}");
            let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
            let seal = match seal.filter(|_| keep_seal(seq)) {
                Some(s) => format!(r#""seal":"{s}","#),
                None => String::new(),
            };
            out.push(format!(r#"{header}"hash":"{hash}",{seal}{rest}"#));
            prev = hash;
        }
        write_lines(&path, &out);
    }
}

fn broken(dir: &Path, key: Option<&VerifyingKey>) -> BadRecord {
    match verify(dir, key) {
        Err(VerifyError::Broken(bad)) => *bad,
        other => panic!("expected a broken trail, got {other:?}"),
    }
}

#[test]
fn the_last_record_of_each_write_is_sealed_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(log.verifying_key(), Some(public()));
    fill_batches(&log, 4, 5);
    drop(log);
    let sealed: Vec<u64> = lines(&segments(dir.path())[0])
        .iter()
        .filter(|l| split(l).2.is_some())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(sealed, vec![5, 10, 15, 20]);
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert!(report.key_checked);
    assert_eq!((report.records, report.sealed), (20, 4));
    assert_eq!(report.last_sealed_seq, Some(20));
    assert!(report.sealed_as_found.is_empty());
    // The seal is not part of the hashed bytes: a chain-only check agrees.
    let plain = verify(dir.path(), None).unwrap();
    assert!(!plain.key_checked);
    assert_eq!(plain.last_hash, report.last_hash);
}

#[test]
fn a_middle_record_edited_and_every_later_hash_recomputed_fails_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 4, 5);
    drop(log);
    // Record 7 (in the second write, sealed at 10) now says someone else did it.
    tamper_and_rehash(
        dir.path(),
        |seq, line| {
            if seq == 7 {
                line.replacen("user-06", "user-99", 1)
            } else {
                line
            }
        },
        |_| true,
    );
    // The chain alone is fooled: that is the finding.
    assert_eq!(verify(dir.path(), None).unwrap().records, 20);
    let bad = broken(dir.path(), Some(&public()));
    assert_eq!(
        (bad.seq, bad.line, &bad.problem),
        (Some(10), 10, &Problem::BadSeal)
    );
    assert!(bad.to_string().contains("seal does not verify"), "{bad}");

    // Nor does stripping the seals after the edit help: the last record then has none.
    tamper_and_rehash(dir.path(), |_, line| line, |seq| seq < 7);
    let bad = broken(dir.path(), Some(&public()));
    assert_eq!(bad.seq, Some(20));
    assert_eq!(
        bad.problem,
        Problem::Unsealed {
            last_sealed: Some(5)
        }
    );
}

#[test]
fn a_deleted_middle_record_with_the_chain_rebuilt_fails_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 3, 4);
    drop(log);
    // Remove record 6 and renumber the rest, as someone hiding it would.
    let path = &segments(dir.path())[0];
    let mut kept = lines(path);
    kept.remove(5);
    write_lines(path, &kept);
    tamper_and_rehash(
        dir.path(),
        |seq, line| {
            if seq > 6 {
                line.replacen(
                    &format!(r#""seq":{seq},"#),
                    &format!(r#""seq":{},"#, seq - 1),
                    1,
                )
            } else {
                line
            }
        },
        |_| true,
    );
    assert_eq!(verify(dir.path(), None).unwrap().records, 11);
    let bad = broken(dir.path(), Some(&public()));
    assert_eq!((bad.seq, &bad.problem), (Some(7), &Problem::BadSeal));
}

#[test]
fn stripping_every_seal_fails_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 3, 3);
    drop(log);
    tamper_and_rehash(dir.path(), |_, line| line, |_| false);
    assert_eq!(verify(dir.path(), None).unwrap().sealed, 0);
    let bad = broken(dir.path(), Some(&public()));
    assert_eq!(
        (bad.seq, &bad.problem),
        (Some(9), &Problem::Unsealed { last_sealed: None })
    );
    assert!(
        bad.to_string().contains("the last record carries no seal"),
        "{bad}"
    );
}

#[test]
fn a_seal_made_with_another_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = OpenOptions::new()
        .sealing_key(SigningKey::from_bytes(&[1; 32]))
        .open(dir.path())
        .unwrap();
    fill_batches(&log, 2, 2);
    drop(log);
    let bad = broken(dir.path(), Some(&public()));
    assert_eq!((bad.seq, &bad.problem), (Some(2), &Problem::BadSeal));
}

#[test]
fn a_log_from_before_sealing_is_sealed_as_found_when_opened_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // Written as today's gateway writes: no key, no seal.
    let log = AuditLog::open(dir.path()).unwrap();
    fill_batches(&log, 2, 3);
    drop(log);
    assert!(lines(&segments(dir.path())[0])
        .iter()
        .all(|l| !l.contains(r#""seal""#)));
    let bad = broken(dir.path(), Some(&public()));
    assert_eq!(bad.problem, Problem::Unsealed { last_sealed: None });

    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(log.recovery().sealed_as_found, Some(7));
    assert_eq!(log.recovery().next_seq, 8);
    let found = log
        .query(&Filter {
            kinds: vec![Kind::AUDIT_SEALED],
            order: Order::NewestFirst,
            ..Filter::new(10)
        })
        .unwrap();
    assert_eq!(found.len(), 1);
    let sealed = &found[0];
    assert_eq!(sealed.seq, 7);
    assert_eq!(sealed.record.actor, "system");
    assert_eq!(sealed.record.detail["seq"], json!(6));
    assert_eq!(sealed.record.detail["hash"], json!(sealed.prev.to_hex()));
    assert_eq!(sealed.record.detail["last_sealed_seq"], json!(null));
    assert_eq!(sealed.record.detail["earlier_records_sealed"], json!(false));
    assert!(sealed.seal.is_some());
    log.append(record(99)).unwrap();
    drop(log);

    let report = verify(dir.path(), Some(&public())).unwrap();
    assert_eq!((report.records, report.sealed), (8, 2));
    assert_eq!(
        report.sealed_as_found,
        vec![SealedAsFound {
            from_seq: 1,
            to_seq: 6,
            by_seq: 7
        }]
    );
    // Opening a sealed log again adds nothing.
    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(log.recovery().sealed_as_found, None);
    assert_eq!(log.recovery().next_seq, 9);
}

#[test]
fn a_crash_in_the_middle_of_a_write_verifies_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 2, 4);
    drop(log);
    // The crash wrote the first two lines of the second write, not the two after them (the
    // last carrying the seal): records 5 and 6 were never acknowledged.
    let path = &segments(dir.path())[0];
    let mut kept = lines(path);
    kept.truncate(6);
    write_lines(path, &kept);
    let bad = broken(dir.path(), Some(&public()));
    assert_eq!(
        (bad.seq, &bad.problem),
        (
            Some(6),
            &Problem::Unsealed {
                last_sealed: Some(4)
            }
        )
    );

    // Opening sets the two unacknowledged records aside, byte for byte, and says so first.
    let log = sealing().open(dir.path()).unwrap();
    let set_aside = log.recovery().set_aside.clone().unwrap();
    assert_eq!(log.recovery().sealed_as_found, None);
    assert_eq!(
        (set_aside.by_seq, set_aside.from_seq, set_aside.to_seq),
        (5, 5, 6)
    );
    let all = lines(&segments(dir.path())[0]);
    drop(log);
    let kept_aside = std::fs::read_to_string(dir.path().join(&set_aside.file)).unwrap();
    assert_eq!(kept_aside, kept[4..].join("\n") + "\n");
    assert!(all[4].contains("\"audit_set_aside\""), "{}", all[4]);
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert_eq!(report.records, 5);
    assert!(report.sealed_as_found.is_empty());
    assert_eq!(report.set_aside, vec![set_aside]);
    // Opening again adds nothing.
    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(log.recovery().set_aside, None);
    assert_eq!(log.recovery().next_seq, 6);
}

/// A start that stopped between cutting the records set aside and recording it records it at
/// the next start, from the quarantine file.
#[test]
fn a_set_aside_not_yet_recorded_is_recorded_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 2, 2);
    drop(log);
    let name = format!("quarantine-{:020}-{:020}.jsonl", 5, 6);
    std::fs::write(dir.path().join(&name), "two records\n").unwrap();
    let log = sealing().open(dir.path()).unwrap();
    let set_aside = log.recovery().set_aside.clone().unwrap();
    assert_eq!((set_aside.by_seq, set_aside.from_seq), (5, 5));
    assert_eq!(set_aside.file, name);
    drop(log);
    assert_eq!(
        sealing().open(dir.path()).unwrap().recovery().set_aside,
        None
    );
}

#[test]
fn a_crash_that_forgets_unsynced_writes_leaves_a_sealed_log() {
    let dir = tempfile::tempdir().unwrap();
    let files = CrashFiles::new();
    let log = sealing()
        .file_layer(std::sync::Arc::new(CrashLayer(std::sync::Arc::clone(
            &files,
        ))))
        .open(dir.path())
        .unwrap();
    fill_batches(&log, 2, 3);
    files.hold_syncs(true);
    let tickets = log.submit_all(&[record(50), record(51)]).unwrap();
    assert!(files.wait_held(Duration::from_secs(10)));
    files.crash().unwrap();
    for ticket in tickets {
        assert!(ticket.wait().is_err(), "never acknowledged");
    }
    drop(log);

    let report = verify(dir.path(), Some(&public())).unwrap();
    assert_eq!((report.records, report.last_sealed_seq), (6, Some(6)));
    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(
        log.recovery().sealed_as_found,
        None,
        "the last durable write was sealed"
    );
    log.append(record(7)).unwrap();
    drop(log);
    assert_eq!(verify(dir.path(), Some(&public())).unwrap().records, 7);
}

#[test]
fn every_segment_ends_sealed_and_within_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let log = sealing().max_segment_bytes(max).open(dir.path()).unwrap();
    let big: Vec<Record> = (0..40)
        .map(|i| record(i).detail("pad", "p".repeat(4000)))
        .collect();
    for ticket in log.submit_all(&big).unwrap() {
        ticket.wait().unwrap();
    }
    drop(log);
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    for path in &files {
        assert!(std::fs::metadata(path).unwrap().len() <= max);
        assert!(
            split(lines(path).last().unwrap()).2.is_some(),
            "{}",
            path.display()
        );
    }
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert_eq!(report.records, 40);
    assert_eq!(report.sealed, files.len() as u64);
}

/// The honest limit, pinned down: records added (or changed, seals after them stripped) while
/// the gateway is down look like a crash's unacknowledged write, and the next start sets them
/// aside (kept in a quarantine file, out of the chain). Verifying before that start catches it;
/// after it, the report names the stretch set aside.
#[test]
fn records_changed_after_the_last_seal_are_set_aside_and_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 2, 2);
    drop(log);
    tamper_and_rehash(
        dir.path(),
        |seq, line| {
            if seq == 4 {
                line.replacen("user-03", "nobody", 1)
            } else {
                line
            }
        },
        |seq| seq < 3,
    );
    assert_eq!(
        broken(dir.path(), Some(&public())).problem,
        Problem::Unsealed {
            last_sealed: Some(2)
        }
    );
    drop(sealing().open(dir.path()).unwrap());
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert!(report.sealed_as_found.is_empty());
    assert_eq!(report.set_aside.len(), 1);
    let aside = &report.set_aside[0];
    assert_eq!((aside.by_seq, aside.from_seq, aside.to_seq), (3, 3, 4));
    let kept = std::fs::read_to_string(dir.path().join(&aside.file)).unwrap();
    assert!(kept.contains("nobody"), "{kept}");
}

/// While a writer holds the log, records after the last seal are a write in progress: counted,
/// not refused. Once nobody holds it, the same files are refused.
#[test]
fn an_unsealed_tail_is_a_write_in_progress_only_while_the_log_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 2, 2);
    drop(log);
    // Two more records from a writer without the key.
    let log = AuditLog::open(dir.path()).unwrap();
    fill_batches(&log, 1, 2);
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert_eq!((report.records, report.unsealed_tail), (6, 2));
    assert_eq!(report.last_sealed_seq, Some(4));
    drop(log);
    assert_eq!(
        broken(dir.path(), Some(&public())).problem,
        Problem::Unsealed {
            last_sealed: Some(4)
        }
    );
}

fn open_error(dir: &Path) -> AuditError {
    match sealing().open(dir) {
        Err(e) => e,
        Ok(log) => panic!("expected a refusal, opened with {:?}", log.recovery()),
    }
}

/// A forged tail ending in any seal (here: a middle record edited and every hash recomputed,
/// the old seals kept) is not taken for sealed: opening checks the last seal and refuses,
/// naming it, and appends nothing.
#[test]
fn opening_refuses_a_last_seal_that_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 3, 3);
    drop(log);
    tamper_and_rehash(
        dir.path(),
        |seq, line| {
            if seq == 2 {
                line.replacen("user-01", "nobody", 1)
            } else {
                line
            }
        },
        |_| true,
    );
    let before = std::fs::read(&segments(dir.path())[0]).unwrap();
    let e = open_error(dir.path());
    assert!(matches!(e, AuditError::SealMismatch { seq: 9 }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains("the seal of record 9 does not verify"),
        "{message}"
    );
    assert!(message.contains("portcullis audit verify"), "{message}");
    assert_eq!(std::fs::read(&segments(dir.path())[0]).unwrap(), before);
    // Another key's seals are refused the same way.
    let other = OpenOptions::new()
        .sealing_key(SigningKey::from_bytes(&[1; 32]))
        .open(dir.path());
    assert!(matches!(other, Err(AuditError::SealMismatch { seq: 9 })));
}

/// Seals stripped from the end of a multi-segment trail: the last seal left (in an earlier
/// segment) is found and checked, not taken for a trail from before sealing.
#[test]
fn opening_finds_the_last_seal_in_an_earlier_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing()
        .max_segment_bytes(64 * 1024)
        .open(dir.path())
        .unwrap();
    let big: Vec<Record> = (0..40)
        .map(|i| record(i).detail("pad", "p".repeat(4000)))
        .collect();
    for ticket in log.submit_all(&big).unwrap() {
        ticket.wait().unwrap();
    }
    drop(log);
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    let first_end = lines(&files[0]).len() as u64;
    // Record 1 changed; only the first segment keeps its (now wrong) seal.
    tamper_and_rehash(
        dir.path(),
        |seq, line| {
            if seq == 1 {
                line.replacen("user-00", "nobody", 1)
            } else {
                line
            }
        },
        |seq| seq <= first_end,
    );
    let e = open_error(dir.path());
    assert!(
        matches!(e, AuditError::SealMismatch { seq } if seq == first_end),
        "{e:?}"
    );
    assert!(portcullis_audit::has_seal(dir.path()).unwrap());
}

/// More records after the last seal than one write holds cannot be a crash's unacknowledged
/// write: refused, naming the count and the last sealed record. Up to one write's worth is set
/// aside.
#[test]
fn opening_refuses_more_unsealed_records_than_one_write_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 1, 2);
    drop(log);
    // Records from a writer without the key (what someone adding records would leave).
    let log = OpenOptions::new()
        .queue_depth(MAX_BATCH_RECORDS)
        .open(dir.path())
        .unwrap();
    let records: Vec<Record> = (0..MAX_BATCH_RECORDS).map(record).collect();
    for ticket in log.submit_all(&records).unwrap() {
        ticket.wait().unwrap();
    }
    drop(log);
    let copy = tempfile::tempdir().unwrap();
    for path in segments(dir.path()) {
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    // One write's worth: set aside, as after a crash.
    let log = sealing().open(copy.path()).unwrap();
    let aside = log.recovery().set_aside.clone().unwrap();
    assert_eq!(
        (aside.from_seq, aside.to_seq),
        (3, MAX_BATCH_RECORDS as u64 + 2)
    );
    drop(log);

    let log = AuditLog::open(dir.path()).unwrap();
    log.append(record(0)).unwrap();
    drop(log);
    let e = open_error(dir.path());
    let count = MAX_BATCH_RECORDS as u64 + 1;
    assert!(
        matches!(e, AuditError::UnsealedTail { count: c, last_sealed_seq: 2 } if c == count),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .contains(&format!("{count} records follow the last seal (record 2)")));
}

#[test]
fn has_seal_tells_a_sealed_trail_from_one_before_sealing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!portcullis_audit::has_seal(dir.path()).unwrap());
    let log = AuditLog::open(dir.path()).unwrap();
    fill_batches(&log, 1, 2);
    drop(log);
    assert!(!portcullis_audit::has_seal(dir.path()).unwrap());
    drop(sealing().open(dir.path()).unwrap());
    assert!(portcullis_audit::has_seal(dir.path()).unwrap());
}

/// Records after the last seal, added while the gateway runs (the lock held, by it or by anyone
/// who can open the lock file), are a write in progress for an outside check only while they
/// could be one write; the gateway's own check knows which records it acknowledged and refuses
/// any of them unsealed.
#[test]
fn an_unsealed_tail_is_a_write_in_progress_only_if_it_could_be_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 2, 2);
    // The seals of records 3 and 4 stripped while the gateway runs.
    tamper_and_rehash(dir.path(), |_, line| line, |seq| seq < 3);
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert_eq!(report.unsealed_tail, 2);
    match log.verify() {
        Err(VerifyError::Broken(bad)) => assert_eq!(
            bad.problem,
            Problem::Unsealed {
                last_sealed: Some(2)
            }
        ),
        other => panic!("the writer's check took acknowledged records unsealed: {other:?}"),
    }
    drop(log);

    // More unsealed records than one write holds, the lock held: not a write in progress.
    let log = OpenOptions::new()
        .queue_depth(MAX_BATCH_RECORDS)
        .open(dir.path())
        .unwrap();
    let records: Vec<Record> = (0..MAX_BATCH_RECORDS).map(record).collect();
    for ticket in log.submit_all(&records).unwrap() {
        ticket.wait().unwrap();
    }
    assert!(portcullis_audit::is_held(dir.path()));
    assert_eq!(
        broken(dir.path(), Some(&public())).problem,
        Problem::Unsealed {
            last_sealed: Some(2)
        }
    );
    drop(log);
}

/// Records appended by someone else after the gateway's last write (chained, unsealed) are not
/// the gateway's write in progress, however few: its own check refuses them, while an outside
/// check, which cannot tell, takes them for one (and the CLI checks again a moment later).
#[test]
fn the_writers_own_check_refuses_records_it_did_not_write() {
    let fixed = || sealing().clock(|| 1_700_000_000_000);
    // The same records, sealed the same way (deterministic signatures), with two more whose
    // seals are stripped: the lines someone would append.
    let other = tempfile::tempdir().unwrap();
    let log = fixed().open(other.path()).unwrap();
    fill_batches(&log, 3, 2);
    drop(log);
    tamper_and_rehash(other.path(), |_, line| line, |seq| seq < 5);
    let extra = lines(&segments(other.path())[0])[4..].join("\n") + "\n";

    let dir = tempfile::tempdir().unwrap();
    let log = fixed().open(dir.path()).unwrap();
    fill_batches(&log, 2, 2);
    let segment = &segments(dir.path())[0];
    let mut text = std::fs::read_to_string(segment).unwrap();
    text.push_str(&extra);
    std::fs::write(segment, text).unwrap();
    assert_eq!(
        verify(dir.path(), Some(&public())).unwrap().unsealed_tail,
        2
    );
    match log.verify() {
        Err(VerifyError::Broken(bad)) => assert_eq!(
            bad.problem,
            Problem::Unsealed {
                last_sealed: Some(4)
            }
        ),
        other => panic!("the writer's check took appended records for its own: {other:?}"),
    }
}

/// The gateway's own check of a sealed log it is writing: intact.
#[test]
fn the_writers_own_check_passes_on_its_sealed_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = sealing().open(dir.path()).unwrap();
    fill_batches(&log, 3, 3);
    let report = log.verify().unwrap();
    assert_eq!((report.records, report.unsealed_tail), (9, 0));
    assert!(report.key_checked);
}

/// A log whose second write a crash left half done: records 5 and 6 after the last seal.
fn half_written(dir: &Path) -> Vec<String> {
    let log = sealing().open(dir).unwrap();
    fill_batches(&log, 2, 4);
    drop(log);
    let path = &segments(dir)[0];
    let mut kept = lines(path);
    kept.truncate(6);
    write_lines(path, &kept);
    kept
}

/// A start stopped in the middle of setting records aside (the copy half written, or whole but
/// not yet cut) does it again at the next start, whatever it left; a file planted under the
/// quarantine name is left alone; and deleting or changing the copy afterwards shows in verify.
#[test]
fn an_interrupted_set_aside_is_done_again_and_its_copy_is_checked() {
    let name = |n: &str| format!("quarantine-{:020}-{:020}{n}.jsonl", 5, 6);
    // The copy half written under its temporary name.
    let dir = tempfile::tempdir().unwrap();
    let kept = half_written(dir.path());
    let tail = kept[4..].join("\n") + "\n";
    std::fs::write(
        dir.path()
            .join(format!("quarantine-{:020}-{:020}.partial", 5, 6)),
        &tail[..10],
    )
    .unwrap();
    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(log.recovery().set_aside.as_ref().unwrap().file, name(""));
    drop(log);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(name(""))).unwrap(),
        tail
    );

    // The copy whole under its name, the records not yet cut.
    let dir = tempfile::tempdir().unwrap();
    let kept = half_written(dir.path());
    std::fs::write(dir.path().join(name("")), kept[4..].join("\n") + "\n").unwrap();
    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(log.recovery().set_aside.as_ref().unwrap().file, name(""));
    drop(log);
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert!(report.set_aside[0].file_intact);

    // Something else under that name: kept, and the copy goes to the next name.
    let dir = tempfile::tempdir().unwrap();
    half_written(dir.path());
    std::fs::write(dir.path().join(name("")), "planted\n").unwrap();
    let log = sealing().open(dir.path()).unwrap();
    assert_eq!(log.recovery().set_aside.as_ref().unwrap().file, name("-1"));
    drop(log);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(name(""))).unwrap(),
        "planted\n"
    );
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert!(report.set_aside[0].file_intact);
    // The only copy changed: verify says so.
    std::fs::write(dir.path().join(name("-1")), "changed\n").unwrap();
    let report = verify(dir.path(), Some(&public())).unwrap();
    assert!(!report.set_aside[0].file_intact);
}
