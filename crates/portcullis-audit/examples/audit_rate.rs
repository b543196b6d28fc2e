//! Appends N records from K threads to a fresh log and prints the rate and the fsyncs it took:
//! `cargo run --release -p portcullis-audit --example audit_rate -- [N] [K] [DIR]`
//! (defaults: 20000 records, 8 threads, a temporary directory under the system's temp dir).
//! The log seals each write with an Ed25519 key, as the gateway's does (`PORTCULLIS_AUDIT_NO_SEAL`
//! set: without, to compare).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use portcullis_audit::{verify, Kind, OpenOptions, Record};

fn main() {
    let mut args = std::env::args().skip(1);
    let records: usize = args.next().map_or(20_000, |a| a.parse().unwrap());
    let threads: usize = args.next().map_or(8, |a| a.parse().unwrap());
    let dir = match args.next() {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };

    let key = SigningKey::from_bytes(&[7; 32]);
    let sealing = std::env::var_os("PORTCULLIS_AUDIT_NO_SEAL").is_none();
    let options = if sealing {
        OpenOptions::new().sealing_key(key.clone())
    } else {
        OpenOptions::new()
    };
    let log = Arc::new(options.open(dir.path()).unwrap());
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            let mine = records / threads + usize::from(t < records % threads);
            std::thread::spawn(move || {
                for i in 0..mine {
                    let record = Record::new(Kind::CLIPBOARD, format!("user{t}"))
                        .target("web01")
                        .session(format!("session-{t}"))
                        .detail("direction", "client_to_target")
                        .detail("bytes", i)
                        .detail("allowed", true);
                    log.append(record).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let elapsed = started.elapsed();
    let stats = log.stats();
    drop(log);

    let verify_started = Instant::now();
    let public = key.verifying_key();
    let report = verify(dir.path(), sealing.then_some(&public)).unwrap();
    let verify_elapsed = verify_started.elapsed();
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    let secs = elapsed.as_secs_f64();
    println!(
        "{records} records from {threads} threads in {:.3} s: {:.0} records/s",
        secs,
        records as f64 / secs
    );
    println!(
        "{} fsyncs ({:.0}/s), {:.1} records per fsync, {:.0} bytes per record",
        stats.fsyncs,
        stats.fsyncs as f64 / secs,
        stats.appended as f64 / stats.fsyncs.max(1) as f64,
        bytes as f64 / records.max(1) as f64
    );
    println!(
        "verify: {} records in {} files, {} seals checked, {:.3} s",
        report.records,
        report.files,
        report.sealed,
        verify_elapsed.as_secs_f64()
    );
}
