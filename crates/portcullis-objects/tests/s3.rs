//! Recordings through a real S3 server (the test command starts SeaweedFS, fixtures/s3.sh, and
//! names it in `PORTCULLIS_TEST_S3_*`): upload order, reads from another gateway, an outage, a
//! crash mid-recording, retention. Skipped without the server unless `PORTCULLIS_REQUIRE_S3`.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::session::SessionEvent;
use portcullis_objects::{connect, ObjectConfig, Spooled};
use portcullis_recording::oracles::{test_meta, NoTrail};
use portcullis_recording::{
    generate_key, recover, verify, LocalDisk, RecordingStorage, RecordingWriter, SegmentInfo,
    SigningKey, Status,
};

struct Server {
    endpoint: String,
    bucket: String,
    access: String,
    secret: String,
}

fn server() -> Option<Server> {
    let var = |n: &str| std::env::var(format!("PORTCULLIS_TEST_S3_{n}")).ok();
    match (
        var("ENDPOINT"),
        var("BUCKET"),
        var("ACCESS_KEY"),
        var("SECRET_KEY"),
    ) {
        (Some(endpoint), Some(bucket), Some(access), Some(secret)) => Some(Server {
            endpoint,
            bucket,
            access,
            secret,
        }),
        _ => {
            assert!(
                std::env::var_os("PORTCULLIS_REQUIRE_S3").is_none(),
                "PORTCULLIS_REQUIRE_S3 is set but PORTCULLIS_TEST_S3_* name no server"
            );
            eprintln!("no S3 server (PORTCULLIS_TEST_S3_*): skipped");
            None
        }
    }
}

static PREFIXES: AtomicU64 = AtomicU64::new(0);

/// A prefix no other test (or earlier run) uses.
fn fresh_prefix(name: &str) -> String {
    let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test/{name}-{}-{t}-{n}", std::process::id())
}

fn config(s: &Server, endpoint: &str, prefix: &str) -> ObjectConfig {
    ObjectConfig {
        url: format!("s3://{}/{prefix}", s.bucket),
        endpoint: Some(endpoint.to_owned()),
        access_key_id: Some(s.access.clone()),
        secret_access_key: Some(s.secret.clone()),
        ..ObjectConfig::default()
    }
}

/// A gateway's recording storage: its own spool, the shared store.
fn node(cfg: &ObjectConfig, spool: &std::path::Path) -> Spooled {
    let s = Spooled::new(
        LocalDisk::open(spool).unwrap(),
        connect(cfg).unwrap(),
        Duration::from_millis(100),
    );
    s.start().unwrap();
    s
}

fn segments(w: &mut RecordingWriter, from: u64, to: u64) {
    for i in from..to {
        w.event(
            i * 1000 + 5,
            &SessionEvent::Keys {
                text: format!("k{i}"),
            },
        );
        w.segment(
            SegmentInfo {
                start_ms: i * 1000,
                end_ms: (i + 1) * 1000,
                key: i % 3 == 0,
                frames: 4,
            },
            &vec![u8::try_from(i % 251).unwrap(); 3000],
            (i % 2 == 0).then_some(&b"jpeg"[..]),
        )
        .unwrap();
    }
}

fn start(storage: &dyn RecordingStorage, key: &Arc<SigningKey>, id: &str) -> RecordingWriter {
    let mut w = RecordingWriter::create(storage, Arc::clone(key), test_meta(id, 1_700_000_000_000))
        .unwrap();
    w.begin_part(1280, 800, "avc1.64001f", b"init-bytes")
        .unwrap();
    w
}

/// Waits (on the uploader's own account) until `f` holds; fails naming `what`.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn settled(s: &Spooled) -> bool {
    s.uploads()
        .is_some_and(|u| u.pending_recordings == 0 && u.pending_bytes == 0)
}

#[test]
fn a_recording_is_uploaded_in_order_and_served_by_another_gateway() {
    let Some(srv) = server() else { return };
    let prefix = fresh_prefix("order");
    let cfg = config(&srv, &srv.endpoint, &prefix);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&cfg, a_dir.path());
    let b = node(&cfg, b_dir.path());
    let key = Arc::new(generate_key());

    let mut w = start(&a, &key, "r1");
    segments(&mut w, 0, 4);
    // While it is written: the other gateway reads what was uploaded, all of it checks out.
    wait_for("the first uploads", || settled(&a));
    let so_far = verify(&b, "r1", &key.verifying_key()).unwrap();
    assert!(so_far.is_authentic_so_far(), "{:?}", so_far.problem);
    assert_eq!(
        so_far.status(),
        Status::Cut,
        "no end line yet, not written there"
    );
    assert!(b.list().unwrap().contains(&"r1".to_owned()));

    segments(&mut w, 4, 9);
    w.finish("the user logged off", 9000, 1_700_000_009_000)
        .unwrap();
    wait_for("the spool to be emptied", || {
        a.spool().list().unwrap().is_empty()
    });
    let v = verify(&b, "r1", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Intact, "{:?}", v.problem);
    // The writer's own gateway reads it from the store now, the same bytes.
    let v = verify(&a, "r1", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Intact, "{:?}", v.problem);
    // Finished: one object per file, no parts left.
    let layout = connect(&cfg).unwrap().layout("r1").unwrap();
    assert!(
        layout
            .values()
            .all(|l| l.whole.is_some() && l.parts.is_empty()),
        "{layout:?}"
    );
    let u = a.uploads().unwrap();
    assert!(
        u.reachable && u.uploaded_bytes > 27_000 && u.lag_ms.is_some(),
        "{u:?}"
    );
}

/// A TCP relay to the store that can be cut (connections refused, open ones closed).
struct Switch {
    addr: String,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Switch {
    fn to(target: &str) -> Switch {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (up2, open2) = (Arc::clone(&up), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut kept = open2.lock().unwrap();
                kept.push(client.try_clone().unwrap());
                kept.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Switch { addr, up, open }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

#[test]
fn an_outage_holds_uploads_back_and_loses_nothing() {
    let Some(srv) = server() else { return };
    let prefix = fresh_prefix("outage");
    let switch = Switch::to(&srv.endpoint);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&config(&srv, &switch.addr, &prefix), a_dir.path());
    let b = node(&config(&srv, &srv.endpoint, &prefix), b_dir.path());
    let key = Arc::new(generate_key());

    let mut w = start(&a, &key, "r2");
    segments(&mut w, 0, 2);
    wait_for("the first uploads", || settled(&a));
    switch.set(false);
    // The session goes on: every write lands in the spool while the store is away.
    segments(&mut w, 2, 8);
    wait_for("the uploader to notice", || {
        a.uploads().is_some_and(|u| !u.reachable && u.failures > 0)
    });
    let u = a.uploads().unwrap();
    assert!(u.pending_bytes > 0 && u.pending_recordings == 1, "{u:?}");
    assert!(a.probe().is_err());
    w.finish("the user logged off", 8000, 1_700_000_008_000)
        .unwrap();
    // Locally it is whole and intact meanwhile.
    let v = verify(&a, "r2", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Intact, "{:?}", v.problem);
    switch.set(true);
    wait_for("the upload to catch up", || {
        a.spool().list().unwrap().is_empty()
    });
    let v = verify(&b, "r2", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Intact, "{:?}", v.problem);
    // A worker's attempt begun during the outage may report after the catch-up: the flag is
    // the next success's to set, waited for rather than read at once.
    wait_for("the store to be seen reachable again", || {
        a.uploads().is_some_and(|u| u.reachable)
    });
}

#[test]
fn a_gateway_that_died_mid_recording_finishes_the_upload_at_its_next_start() {
    let Some(srv) = server() else { return };
    let prefix = fresh_prefix("crash");
    let cfg = config(&srv, &srv.endpoint, &prefix);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key = Arc::new(generate_key());
    {
        let a = node(&cfg, a_dir.path());
        let mut w = start(&a, &key, "r3");
        segments(&mut w, 0, 5);
        wait_for("the first uploads", || settled(&a));
        // The process dies: the writer never finishes, the uploads stop where they are.
        std::mem::forget(w);
        a.finish(Instant::now());
    }
    let b = node(&cfg, b_dir.path());
    // Meanwhile another gateway already serves what was uploaded, authentic, not closed.
    let v = verify(&b, "r3", &key.verifying_key()).unwrap();
    assert!(
        v.is_authentic_so_far() && v.status() == Status::Cut,
        "{v:?}"
    );

    // The next start: recovery closes it in the spool, the uploads finish it in the store.
    let spool = LocalDisk::open(a_dir.path()).unwrap();
    let closed = recover(&spool, &key, &NoTrail, 1_700_000_100_000).unwrap();
    assert_eq!(closed.len(), 1);
    let a = node(&cfg, a_dir.path());
    wait_for("the spool to be emptied", || {
        a.spool().list().unwrap().is_empty()
    });
    let v = verify(&b, "r3", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Incomplete, "{:?}", v.problem);
}

#[test]
fn a_store_holding_more_than_the_spool_is_left_alone() {
    let Some(srv) = server() else { return };
    let prefix = fresh_prefix("more");
    let cfg = config(&srv, &srv.endpoint, &prefix);
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(generate_key());
    // Someone put more of the manifest there than this gateway's spool has.
    let remote = connect(&cfg).unwrap();
    remote
        .put_part("r4", "manifest.jsonl", 0, vec![b'x'; 1 << 20])
        .unwrap();
    let spool = LocalDisk::open(dir.path()).unwrap();
    let mut w = start(&spool, &key, "r4");
    segments(&mut w, 0, 2);
    w.finish("done", 2000, 1_700_000_002_000).unwrap();
    let a = node(&cfg, dir.path());
    wait_for("the upload to give up", || {
        a.uploads().is_some_and(|u| u.failures > 0)
    });
    // Nothing was overwritten or deleted, here or there.
    let v = verify(a.spool(), "r4", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Intact);
    assert_eq!(
        remote.layout("r4").unwrap()["manifest.jsonl"].len(),
        1 << 20
    );
}

#[test]
fn deleting_a_recording_removes_it_everywhere() {
    let Some(srv) = server() else { return };
    let prefix = fresh_prefix("delete");
    let cfg = config(&srv, &srv.endpoint, &prefix);
    let dir = tempfile::tempdir().unwrap();
    let a = node(&cfg, dir.path());
    let key = Arc::new(generate_key());
    let mut w = start(&a, &key, "r5");
    segments(&mut w, 0, 3);
    w.finish("done", 3000, 1_700_000_003_000).unwrap();
    wait_for("the upload", || a.spool().list().unwrap().is_empty());
    assert_eq!(a.list().unwrap(), vec!["r5".to_owned()]);
    a.delete("r5").unwrap();
    // (SeaweedFS may go on listing the emptied folder, which S3 would not: it holds nothing.)
    assert!(matches!(
        a.files("r5"),
        Err(portcullis_recording::StorageError::NotFound(_))
    ));
    assert!(connect(&cfg).unwrap().layout("r5").unwrap().is_empty());
    assert!(a.delete("r5").is_err());
    assert!(a.read("r5", "manifest.jsonl", 0, 1).is_err());
}

/// A recording written for a long time: each upload adds a part per file, but parts are
/// folded as they pile up, so a file stays a handful of objects (not one per upload: a day's
/// recording would pass what one listing may hold), and another gateway reads the same bytes
/// all along.
#[test]
fn a_long_recording_stays_a_few_parts_per_file_and_reads_the_same() {
    let Some(srv) = server() else { return };
    let prefix = fresh_prefix("fold");
    let cfg = config(&srv, &srv.endpoint, &prefix);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Folds after 3 parts instead of 64, so that 60 uploads show several levels of folds.
    let a = Spooled::new(
        LocalDisk::open(a_dir.path()).unwrap(),
        connect(&cfg).unwrap(),
        Duration::from_millis(10),
    )
    .fold_after(3);
    a.start().unwrap();
    let b = node(&cfg, b_dir.path());
    let key = Arc::new(generate_key());
    let mut w = start(&a, &key, "r6");
    let mut most = 0;
    for i in 0..60 {
        segments(&mut w, i, i + 1);
        wait_for("the segment's upload", || settled(&a));
        let layout = connect(&cfg).unwrap().layout("r6").unwrap();
        most = most.max(layout.values().map(|l| l.parts.len()).max().unwrap_or(0));
    }
    // 60 uploads of each file: at most 2 parts of each of 4 levels (and one being folded).
    assert!(most <= 9, "{most} parts of one file");
    let so_far = verify(&b, "r6", &key.verifying_key()).unwrap();
    assert!(so_far.is_authentic_so_far(), "{:?}", so_far.problem);
    for (file, len) in a.spool().files("r6").unwrap() {
        assert_eq!(
            b.read("r6", &file, 0, len).unwrap(),
            a.spool().read("r6", &file, 0, len).unwrap(),
            "{file}"
        );
    }
    w.finish("done", 60_000, 1_700_000_060_000).unwrap();
    wait_for("the spool to be emptied", || {
        a.spool().list().unwrap().is_empty()
    });
    let v = verify(&b, "r6", &key.verifying_key()).unwrap();
    assert_eq!(v.status(), Status::Intact, "{:?}", v.problem);
    let layout = connect(&cfg).unwrap().layout("r6").unwrap();
    assert!(
        layout
            .values()
            .all(|l| l.whole.is_some() && l.parts.is_empty()),
        "{layout:?}"
    );
}

#[test]
fn wrong_credentials_are_an_error_not_a_hang() {
    let Some(srv) = server() else { return };
    let mut cfg = config(&srv, &srv.endpoint, &fresh_prefix("creds"));
    cfg.secret_access_key = Some("not-the-secret".into());
    let started = Instant::now();
    let remote = connect(&cfg).unwrap();
    let err = remote.probe().unwrap_err().to_string();
    assert!(!err.contains("not-the-secret"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    cfg.secret_access_key = None;
    cfg.access_key_id = None;
    assert!(
        connect(&cfg).unwrap().probe().is_err(),
        "anonymous requests are refused"
    );
}
