//! Real-peer tests: the forwarder against a real `rsyslogd` (Debian's `rsyslog`, and
//! `rsyslog-gnutls` for TLS), killed and restarted mid-stream, and the JSON-lines file sink.
//!
//! rsyslogd runs in the foreground with its own config, pid file and work directory, listens on
//! a free loopback port with imtcp and writes each message's raw text (`%rawmsg%`) to a file.
//! If rsyslogd is missing, the tests try `apt-get install rsyslog rsyslog-gnutls` and fail with a
//! clear message if that does not work: nothing is skipped.
#![allow(clippy::unwrap_used)]

mod common;
use common::wait_for;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use portcullis_audit::{AuditLog, Kind, Record};
use portcullis_siem::{cursor, Forwarder, Handle, SiemConfig, SiemKind};

fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "portcullis_siem=info".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// rsyslogd's path, installing the packages if it is missing.
fn rsyslogd() -> PathBuf {
    static INSTALL: Once = Once::new();
    let find = || {
        [
            "/usr/sbin/rsyslogd",
            "/sbin/rsyslogd",
            "/usr/local/sbin/rsyslogd",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    };
    let gnutls = || {
        Command::new("dpkg")
            .args(["-s", "rsyslog-gnutls"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    INSTALL.call_once(|| {
        if find().is_some() && gnutls() {
            return;
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let apt = |args: &[&str]| {
            let mut cmd = if root {
                Command::new("apt-get")
            } else {
                let mut c = Command::new("sudo");
                c.arg("-n").arg("apt-get");
                c
            };
            cmd.env("DEBIAN_FRONTEND", "noninteractive")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = apt(&["update", "-qq"]);
        let ok = apt(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "rsyslog",
            "rsyslog-gnutls",
        ]);
        eprintln!(
            "apt-get install rsyslog rsyslog-gnutls: {}",
            if ok { "ok" } else { "FAILED" }
        );
    });
    let path = find().unwrap_or_else(|| {
        panic!(
            "rsyslogd is not installed and `apt-get install rsyslog rsyslog-gnutls` did not \
             install it: these tests need a real syslog receiver"
        )
    });
    assert!(
        gnutls(),
        "rsyslog-gnutls (rsyslog's TLS driver) is not installed and could not be installed"
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// TLS material for rsyslog: a CA, and a server certificate for localhost/127.0.0.1 signed by it.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// One rsyslogd, stopped and started at will on the same port.
struct Rsyslog {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    conf: PathBuf,
    pid: PathBuf,
    out: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Rsyslog {
    fn new(dir: &Path, tls: Option<&Pki>) -> Self {
        let bin = rsyslogd();
        let port = free_port();
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join("received.log");
        let (global_tls, module_tls) = match tls {
            Some(pki) => (
                format!(
                    "\n  DefaultNetstreamDriver=\"gtls\"\n  DefaultNetstreamDriverCAFile=\"{}\"\n  \
                     DefaultNetstreamDriverCertFile=\"{}\"\n  DefaultNetstreamDriverKeyFile=\"{}\"",
                    pki.ca.display(),
                    pki.cert.display(),
                    pki.key.display()
                ),
                " StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\"",
            ),
            None => (String::new(), ""),
        };
        // Direct queues: a message goes to the file before imtcp reads on, so killing rsyslogd
        // loses only what was still in its socket or being parsed.
        let conf_text = format!(
            r#"global(workDirectory="{work}" maxMessageSize="256k"{global_tls})
main_queue(queue.type="Direct")
module(load="imtcp"{module_tls})
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="siem" queue.type="Direct") {{
  action(type="omfile" file="{out}" template="raw" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="siem")
"#,
            work = work.display(),
            out = out.display(),
        );
        let conf = dir.join("rsyslog.conf");
        std::fs::write(&conf, conf_text).unwrap();
        Self {
            bin,
            dir: dir.to_owned(),
            port,
            conf,
            pid: dir.join("rsyslog.pid"),
            out,
            child: None,
            starts: 0,
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let _ = std::fs::remove_file(&self.pid);
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("rsyslogd-{}.stderr", self.starts)))
            .unwrap();
        let mut child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(&self.pid)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "rsyslogd exited at start ({status}): {}",
                    std::fs::read_to_string(
                        self.dir.join(format!("rsyslogd-{}.stderr", self.starts))
                    )
                    .unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect(self.address()).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "rsyslogd did not listen in 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// SIGSTOP: it stops reading, so what the forwarder writes stays in the socket buffers.
    fn pause(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
    }

    /// SIGKILL: no chance to drain anything.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The seq of a received syslog line (from its structured data).
fn sd_seq(line: &str) -> Option<u64> {
    let rest = &line[line.find("[portcullis@32473 seq=\"")? + 23..];
    rest[..rest.find('"')?].parse().ok()
}

/// Received seqs with how often each came.
fn counts(seqs: impl Iterator<Item = u64>) -> BTreeMap<u64, u32> {
    let mut m = BTreeMap::new();
    for s in seqs {
        *m.entry(s).or_insert(0) += 1;
    }
    m
}

/// The stored lines of an audit directory, by seq.
fn stored_lines(dir: &Path) -> BTreeMap<u64, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = BTreeMap::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let seq: u64 = line["{\"seq\":".len()..line.find(',').unwrap()]
                .parse()
                .unwrap();
            out.insert(seq, line.to_owned());
        }
    }
    out
}

/// A varied record: kinds of every severity, names that need escaping in SD-PARAMs and CEF.
fn record(i: u64) -> Record {
    let actors = [
        "alice",
        r#"bob "the" admin"#,
        r"c:\users\eve]",
        "soc=team|x",
    ];
    let kinds = [
        Kind::LOGIN,
        Kind::LOGIN_FAILED,
        Kind::SESSION_START,
        Kind::POLICY,
        Kind::SESSION_KILL,
        Kind::ADMIN_CHANGE,
    ];
    let n = usize::try_from(i).unwrap();
    let mut r = Record::new(kinds[n % kinds.len()].clone(), actors[n % actors.len()])
        .detail("i", i)
        .detail("note", "line one\nline two]\"");
    if i.is_multiple_of(2) {
        r = r.target(format!("web{}", i % 7));
    }
    if i.is_multiple_of(3) {
        r = r.session(format!("s-{i}"));
    }
    if i.is_multiple_of(5) {
        r = r.detail("decision", "deny");
    }
    r
}

/// Appends `count` records from `first`, `per_tick` at a time every `tick`.
fn append(log: &AuditLog, first: u64, count: u64, per_tick: u64, tick: Duration) {
    let mut i = first;
    while i < first + count {
        let end = (i + per_tick).min(first + count);
        let tickets: Vec<_> = (i..end).map(|j| log.submit(record(j)).unwrap()).collect();
        for t in tickets {
            t.wait().unwrap();
        }
        i = end;
        std::thread::sleep(tick);
    }
}

struct Running {
    handle: Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    cursor: PathBuf,
}

fn spawn(config: &SiemConfig, audit: &Path, state: &Path) -> Running {
    let forwarder = Forwarder::new(config, audit, state).unwrap();
    let handle = forwarder.handle();
    let cursor = forwarder.cursor_path().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(forwarder.run(async move {
        let _ = stopped.await;
    }));
    Running {
        handle,
        stop,
        task,
        cursor,
    }
}

impl Running {
    async fn stop(self) -> PathBuf {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        self.cursor
    }
}

/// Appends records while forwarding to rsyslog, SIGKILLs rsyslog mid-stream, keeps appending
/// while it is down, restarts it on the same port, and checks that every record arrived.
async fn kill_and_restart(label: &str, tls: bool, before: u64, total: u64) {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let state = tmp.path().join("state");
    let pki = tls.then(|| make_pki(tmp.path(), "rsyslog"));
    let mut rs = Rsyslog::new(tmp.path(), pki.as_ref());
    let log = Arc::new(AuditLog::open(&audit).unwrap());

    // A backlog before the forwarder starts, so that rsyslogd is killed while it is busy.
    append(&log, 0, before, 500, Duration::ZERO);
    rs.start();

    let mut config = SiemConfig::new(SiemKind::Syslog);
    config.address = Some(rs.address());
    config.hostname = Some("gw-test".into());
    // SIEM_TEST_SETTLE_MS=0 shows what the settle window is for: with it, records written into
    // the socket buffers of the hung, then killed, rsyslogd are lost (thousands here).
    if let Ok(ms) = std::env::var("SIEM_TEST_SETTLE_MS") {
        config.settle_ms = ms.parse().unwrap();
    }
    if let Some(pki) = &pki {
        config.tls = true;
        config.ca_file = Some(pki.ca.clone());
        config.server_name = Some("localhost".into());
    }
    let run = spawn(&config, &audit, &state);
    let started = Instant::now();

    // The rest arrives over ~4 s while the forwarder runs.
    let producer = {
        let log = Arc::clone(&log);
        let rest = total - before;
        std::thread::spawn(move || {
            append(
                &log,
                before,
                rest,
                rest / 200 + 1,
                Duration::from_millis(20),
            )
        })
    };

    // Mid-stream: rsyslogd has written part of the backlog, and is busy with the rest.
    wait_for(
        "rsyslogd to receive a part of the backlog",
        Duration::from_secs(30),
        || rs.received().lines().count() > usize::try_from(before / 5).unwrap(),
    )
    .await;
    let at_kill = run.handle.status();
    // It hangs for a moment (the forwarder's last writes stay in the socket buffers), then
    // dies: those writes completed, yet never reached the file.
    rs.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written_at_kill = run.handle.status().sent_seq;
    rs.kill();
    let received_at_kill = rs.received().lines().count();
    let killed = Instant::now();
    assert!(
        at_kill.delivered_seq < total,
        "killed after the end: not mid-stream"
    );

    // Down for a while, records still being appended.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let down_status = run.handle.status();
    assert!(!down_status.connected, "connected to a dead rsyslogd");
    assert!(down_status.last_error.is_some());
    rs.start();
    let down_for = killed.elapsed();

    tokio::task::spawn_blocking(move || producer.join().unwrap())
        .await
        .unwrap();
    let h = run.handle.clone();
    wait_for(
        "every record to be delivered",
        Duration::from_secs(90),
        || h.status().delivered_seq == total,
    )
    .await;
    let elapsed = started.elapsed();
    // rsyslog has written what it received once the batch settled; give the file a moment.
    let lines = rs.received();
    let status = run.handle.status();
    let cursor_path = run.stop().await;
    rs.kill();

    let seen = counts(lines.lines().filter_map(sd_seq));
    let missing: Vec<u64> = (1..=total).filter(|s| !seen.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{label}: {} of {total} records never arrived, first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(
        seen.keys().next_back(),
        Some(&total),
        "nothing unexpected arrived"
    );
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();

    // Each message carries the stored line, byte for byte, after its structured data.
    let stored = stored_lines(&audit);
    for line in lines.lines() {
        let seq = sd_seq(line).unwrap();
        let json = &line[line.find(" {\"seq\":").unwrap() + 1..];
        assert_eq!(json, stored[&seq], "{label}: message of seq {seq}");
        assert!(line.contains(" gw-test portcullis - "), "{line}");
    }

    let stored_cursor = cursor::load(&cursor_path).unwrap().unwrap();
    let last = log.stats();
    assert_eq!(stored_cursor.seq, total, "the cursor ends at the last seq");
    assert_eq!(stored_cursor.hash.to_hex(), status.delivered_hash);
    assert_eq!(status.gaps, 0, "{:?}", status.last_gap);
    assert!(status.connects >= 2, "{status:?}");
    eprintln!(
        "{label}: {total} records ({before} before start), rsyslogd SIGSTOPped at delivered seq {}, \
         SIGKILLed 0.3 s later at sent seq {written_at_kill} ({received_at_kill} lines in its file), down {:.1} s, all {total} delivered in {:.1} s; \
         {} lines received, {duplicates} duplicates, {} connects, {} records written; log {last:?}",
        at_kill.delivered_seq,
        down_for.as_secs_f64(),
        elapsed.as_secs_f64(),
        lines.lines().count(),
        status.connects,
        status.records_written,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_survives_rsyslog_killed_mid_stream() {
    kill_and_restart("syslog/tcp", false, 20_000, 30_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_survives_rsyslog_killed_mid_stream() {
    kill_and_restart("syslog/tls (rsyslog gtls)", true, 10_000, 15_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_receiver_outside_the_ca() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let pki = make_pki(tmp.path(), "rsyslog");
    let other = make_pki(tmp.path(), "other");
    let mut rs = Rsyslog::new(tmp.path(), Some(&pki));
    let log = AuditLog::open(&audit).unwrap();
    append(&log, 0, 10, 10, Duration::ZERO);
    rs.start();
    let mut config = SiemConfig::new(SiemKind::Syslog);
    config.address = Some(rs.address());
    config.tls = true;
    config.ca_file = Some(other.ca.clone());
    let run = spawn(&config, &audit, &tmp.path().join("state"));
    let h = run.handle.clone();
    wait_for("a refused handshake", Duration::from_secs(10), || {
        h.status().last_error.is_some()
    })
    .await;
    let status = run.handle.status();
    run.stop().await;
    assert!(!status.connected);
    assert_eq!(status.delivered_seq, 0);
    let error = status.last_error.unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(rs.received(), "", "nothing reached rsyslog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cef_in_syslog_to_rsyslog() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let mut rs = Rsyslog::new(tmp.path(), None);
    let log = AuditLog::open(&audit).unwrap();
    append(&log, 0, 300, 100, Duration::ZERO);
    rs.start();
    let mut config = SiemConfig::new(SiemKind::Cef);
    config.address = Some(rs.address());
    config.facility = portcullis_siem::Facility::Local4;
    config.settle_ms = 200;
    let run = spawn(&config, &audit, &tmp.path().join("state"));
    let h = run.handle.clone();
    wait_for("300 records", Duration::from_secs(30), || {
        h.status().delivered_seq == 300
    })
    .await;
    run.stop().await;
    let lines = rs.received();
    let seen = counts(lines.lines().filter_map(sd_seq));
    assert_eq!(seen.len(), 300);
    for line in lines.lines() {
        let seq = sd_seq(line).unwrap();
        let cef = &line[line.find("] CEF:0|").unwrap() + 2..];
        assert!(cef.starts_with("CEF:0|Portcullis|Portcullis|"), "{cef}");
        assert!(cef.contains(&format!(" cn1={seq} cn1Label=seq ")), "{cef}");
        // local4 (20) * 8 + warning/notice/info.
        assert!(
            ["<164>1 ", "<165>1 ", "<166>1 "]
                .iter()
                .any(|p| line.starts_with(p)),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_file_holds_the_stored_lines_and_resumes_from_its_cursor() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let out = tmp.path().join("export").join("audit.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let log = AuditLog::open(&audit).unwrap();
    append(&log, 0, 2500, 500, Duration::ZERO);
    let mut config = SiemConfig::new(SiemKind::Jsonl);
    config.file = Some(out.clone());
    let state = tmp.path().join("state");

    let run = spawn(&config, &audit, &state);
    let h = run.handle.clone();
    wait_for("2500 records", Duration::from_secs(30), || {
        h.status().delivered_seq == 2500
    })
    .await;
    // New records are picked up when woken.
    append(&log, 2500, 10, 10, Duration::ZERO);
    run.handle.wake();
    wait_for("2510 records", Duration::from_secs(10), || {
        h.status().delivered_seq == 2510
    })
    .await;
    run.stop().await;

    // A restart goes on from the cursor: no duplicates in a file.
    append(&log, 2510, 90, 90, Duration::ZERO);
    let run = spawn(&config, &audit, &state);
    let h = run.handle.clone();
    wait_for("2600 records", Duration::from_secs(10), || {
        h.status().delivered_seq == 2600
    })
    .await;
    let status = run.handle.status();
    let cursor_path = run.stop().await;

    let expected: String = stored_lines(&audit)
        .values()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    assert_eq!(cursor::load(&cursor_path).unwrap().unwrap().seq, 2600);
    assert_eq!((status.pending, status.gaps), (0, 0));
    assert_eq!(
        cursor_path.file_name().unwrap().to_str().unwrap(),
        format!(
            "siem-jsonl-{}.cursor",
            out.display().to_string().replace('/', "_")
        )
    );
}
