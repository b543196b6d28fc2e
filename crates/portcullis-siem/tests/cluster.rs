//! A cluster export (`source = "cluster"`) run by two gateways over one shared store: one
//! exports at a time, the merged trail goes out in time order, and when the exporting gateway
//! stops or dies the other goes on from the stored cursor without losing a record. The store
//! here is an in-memory stand-in with the PostgreSQL store's lease rules (that store's own
//! lease is tested in `portcullis-store`'s conformance suite; the gateways end to end in
//! `web/e2e/cluster.test.mjs`); the records are real audit lines of two real trails.
#![allow(clippy::unwrap_used)]

mod common;
use common::wait_for;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_audit::{AuditLog, Kind, OpenOptions, Record};
use portcullis_siem::{
    ClusterTrail, Forwarder, Handle, Lease, SiemConfig, SiemKind, SiemSource, TrailError,
};

/// The shared store: each gateway's mirrored lines, one export lease and its cursor.
#[derive(Default)]
struct Shared {
    chains: Mutex<BTreeMap<String, Vec<String>>>,
    /// (holder, until, cursor)
    lease: Mutex<Option<(String, Instant, String)>>,
    down: AtomicBool,
}

impl Shared {
    fn up(&self) -> Result<(), TrailError> {
        if self.down.load(Ordering::SeqCst) {
            Err(TrailError("the store does not answer".into()))
        } else {
            Ok(())
        }
    }

    /// Copies what `log` holds after what is mirrored of `node` (as a gateway's mirror does).
    fn mirror(&self, node: &str, log: &AuditLog) {
        let mut chains = self.chains.lock().unwrap();
        let chain = chains.entry(node.to_owned()).or_default();
        let after = chain.len() as u64;
        for (_, line) in portcullis_audit::read_lines(log.dir(), after, 10_000).unwrap() {
            chain.push(String::from_utf8(line).unwrap());
        }
    }

    fn holder(&self) -> Option<String> {
        self.lease
            .lock()
            .unwrap()
            .as_ref()
            .filter(|l| l.1 > Instant::now())
            .map(|l| l.0.clone())
    }
}

impl ClusterTrail for Shared {
    fn nodes(&self) -> Result<Vec<String>, TrailError> {
        self.up()?;
        Ok(self.chains.lock().unwrap().keys().cloned().collect())
    }

    fn chain(
        &self,
        node: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, TrailError> {
        self.up()?;
        let chains = self.chains.lock().unwrap();
        Ok(chains
            .get(node)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .skip(usize::try_from(after_seq).unwrap())
                    .take(limit)
                    .map(|(i, line)| (i as u64 + 1, line.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn lease(&self, export: &str, holder: &str, lease: Duration) -> Result<Lease, TrailError> {
        self.up()?;
        assert!(!export.is_empty());
        let mut l = self.lease.lock().unwrap();
        let now = Instant::now();
        match l.as_mut() {
            Some((h, until, cursor)) if h == holder || *until < now => {
                *h = holder.to_owned();
                *until = now + lease;
                Ok(Lease::Held {
                    cursor: cursor.clone(),
                })
            }
            Some((h, _, _)) => Ok(Lease::Other { holder: h.clone() }),
            None => {
                *l = Some((holder.to_owned(), now + lease, String::new()));
                Ok(Lease::Held {
                    cursor: String::new(),
                })
            }
        }
    }

    fn advance(&self, _: &str, holder: &str, cursor: &str) -> Result<bool, TrailError> {
        self.up()?;
        let mut l = self.lease.lock().unwrap();
        match l.as_mut() {
            Some((h, _, c)) if h == holder => {
                *c = cursor.to_owned();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn release(&self, _: &str, holder: &str) -> Result<(), TrailError> {
        self.up()?;
        if let Some((h, until, _)) = self.lease.lock().unwrap().as_mut() {
            if h == holder {
                *until = Instant::now() - Duration::from_millis(1);
            }
        }
        Ok(())
    }
}

fn append(log: &AuditLog, n: usize, label: &str) {
    for i in 0..n {
        log.append(Record::new(Kind::LOGIN, format!("user-{i}")).detail("run", label))
            .unwrap();
    }
}

struct Gateway {
    handle: Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start(config: &SiemConfig, shared: &Arc<Shared>, node: &str) -> Gateway {
    let trail: Arc<dyn ClusterTrail> = Arc::clone(shared) as Arc<dyn ClusterTrail>;
    let forwarder = Forwarder::cluster(config, trail, node).unwrap();
    let handle = forwarder.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(forwarder.run(async move {
        let _ = stopped.await;
    }));
    Gateway { handle, stop, task }
}

/// Every (node, seq, ts) in the sink's file, in its order.
fn received(file: &Path) -> Vec<(String, u64, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["detail"]["node"].as_str().unwrap().to_owned(),
                v["seq"].as_u64().unwrap(),
                v["ts_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Whether the file holds records 1..=n of each of `nodes`.
fn has_all(file: &Path, nodes: &[(&str, u64)]) -> bool {
    let got: BTreeSet<(String, u64)> = received(file).into_iter().map(|(n, s, _)| (n, s)).collect();
    nodes
        .iter()
        .all(|(node, n)| (1..=*n).all(|s| got.contains(&((*node).to_owned(), s))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_exports_the_merged_trail_and_another_takes_over_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let a_log = OpenOptions::new()
        .node("gw-a")
        .open(dir.path().join("a"))
        .unwrap();
    let b_log = OpenOptions::new()
        .node("gw-b")
        .open(dir.path().join("b"))
        .unwrap();
    // Interleaved in time: the merged trail alternates.
    for i in 0..10 {
        append(&a_log, 2, &format!("a{i}"));
        append(&b_log, 2, &format!("b{i}"));
    }
    let shared = Arc::new(Shared::default());
    shared.mirror("gw-a", &a_log);
    shared.mirror("gw-b", &b_log);

    let file = dir.path().join("siem.jsonl");
    let mut config = SiemConfig::new(SiemKind::Jsonl);
    config.source = SiemSource::Cluster;
    config.file = Some(file.clone());
    config.lease_ms = 3000;
    config.merge_delay_ms = 0;
    config.poll_ms = 50;
    // Batches of 7: several batches, the lease renewed meanwhile.
    config.batch = 7;
    let a = start(&config, &shared, "gw-a");
    let b = start(&config, &shared, "gw-b");

    wait_for("the first 40 records", Duration::from_secs(20), || {
        has_all(&file, &[("gw-a", 20), ("gw-b", 20)])
    })
    .await;
    let exporter = shared.holder().expect("one gateway holds the lease");
    let got = received(&file);
    assert_eq!(
        got.len(),
        40,
        "each record once while nothing failed: {got:?}"
    );
    assert!(
        got.windows(2).all(|w| w[0].2 <= w[1].2),
        "merged by time: {got:?}"
    );
    let nodes: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert!(
        nodes.windows(2).filter(|w| w[0] != w[1]).count() >= 5,
        "the chains are interleaved, not one after the other: {nodes:?}"
    );
    for h in [&a.handle, &b.handle] {
        assert_eq!(h.status().exporter.as_deref(), Some(exporter.as_str()));
    }
    // Idle, the two gateways (one exporting, one standing by) wait, they do not spin.
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        fields[0] + fields[1]
    };
    let (before, ticks) = (cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = (cpu() - before) as f64 / 100.0;
    assert!(
        used < 0.5 * ticks.elapsed().as_secs_f64(),
        "idle forwarders used {used:.2} s of CPU in {:?}",
        ticks.elapsed()
    );

    // A stored copy that does not check (damaged, or altered): that chain waits there,
    // loudly; the other goes on; once the row is repaired, the chain goes on from it.
    append(&b_log, 2, "damaged");
    append(&a_log, 2, "beside");
    shared.mirror("gw-a", &a_log);
    shared.mirror("gw-b", &b_log);
    let real = {
        let mut chains = shared.chains.lock().unwrap();
        let line = &mut chains.get_mut("gw-b").unwrap()[20];
        let real = line.clone();
        *line = line.replacen("damaged", "DAMAGED", 1);
        real
    };
    let exporting = if exporter == "gw-a" { &a } else { &b };
    wait_for("the other chain's records", Duration::from_secs(20), || {
        has_all(&file, &[("gw-a", 22), ("gw-b", 20)])
    })
    .await;
    wait_for("the damaged row reported", Duration::from_secs(10), || {
        exporting
            .handle
            .status()
            .last_error
            .is_some_and(|e| e.contains("record 21 is unreadable"))
    })
    .await;
    assert!(!has_all(&file, &[("gw-b", 21)]), "nothing passed over");
    shared.chains.lock().unwrap().get_mut("gw-b").unwrap()[20] = real;
    wait_for("the repaired chain", Duration::from_secs(20), || {
        has_all(&file, &[("gw-a", 22), ("gw-b", 22)])
    })
    .await;
    assert_eq!(exporting.handle.status().gaps, 0);

    let (dying, other) = if exporter == "gw-a" { (a, b) } else { (b, a) };
    wait_for(
        "the exporter's cursor stored",
        Duration::from_secs(10),
        || dying.handle.status().durable_seq == 44,
    )
    .await;

    // The exporting gateway dies (no release): the other takes over once the lease runs out,
    // from the stored cursor.
    dying.task.abort();
    let _ = dying.task.await;
    drop(dying.stop);
    append(&a_log, 5, "after-a");
    append(&b_log, 5, "after-b");
    shared.mirror("gw-a", &a_log);
    shared.mirror("gw-b", &b_log);
    wait_for(
        "the records after the death",
        Duration::from_secs(20),
        || has_all(&file, &[("gw-a", 27), ("gw-b", 27)]),
    )
    .await;
    assert_ne!(shared.holder().as_deref(), Some(exporter.as_str()));
    let got = received(&file);
    assert!(got.len() >= 54, "{got:?}");
    assert!(got[44..].windows(2).all(|w| w[0].2 <= w[1].2), "{got:?}");

    // The store stops answering: the exporter cannot renew and stops exporting; once it is
    // back, export goes on.
    shared.down.store(true, Ordering::SeqCst);
    wait_for("the exporter to stand by", Duration::from_secs(10), || {
        !other.handle.status().connected
    })
    .await;
    append(&a_log, 3, "outage");
    shared.down.store(false, Ordering::SeqCst);
    shared.mirror("gw-a", &a_log);
    wait_for(
        "the records after the outage",
        Duration::from_secs(20),
        || has_all(&file, &[("gw-a", 30), ("gw-b", 27)]),
    )
    .await;

    // A clean stop gives the lease up at once.
    let _ = other.stop.send(());
    other.task.await.unwrap();
    assert_eq!(shared.holder(), None, "released at the stop");

    // A cursor altered in the store (gateway a's place moved on, with a hash of no record of
    // its chain): the next exporter finds it is not a record there and delivers that chain
    // again from its start — duplicates, nothing passed over.
    {
        let mut lease = shared.lease.lock().unwrap();
        let cursor = &mut lease.as_mut().unwrap().2;
        let mut v: serde_json::Value = serde_json::from_str(cursor).unwrap();
        v["gw-a"] = serde_json::json!({"seq": 29, "hash": "ab".repeat(32)});
        *cursor = v.to_string();
    }
    let lines_before = received(&file).len();
    let c = start(&config, &shared, "gw-c");
    wait_for(
        "gateway a's chain delivered again",
        Duration::from_secs(20),
        || {
            received(&file)[lines_before..]
                .iter()
                .filter(|(n, _, _)| n == "gw-a")
                .count()
                >= 30
        },
    )
    .await;
    let status = c.handle.status();
    assert!(status.gaps >= 1, "{status:?}");
    assert!(
        status
            .last_gap
            .as_deref()
            .is_some_and(|g| g.contains("not a record")),
        "{status:?}"
    );
    let _ = c.stop.send(());
    c.task.await.unwrap();
}

#[test]
fn a_cluster_section_needs_the_cluster() {
    let mut config = SiemConfig::new(SiemKind::Jsonl);
    config.file = Some("/tmp/x.jsonl".into());
    config.source = SiemSource::Cluster;
    let err = Forwarder::new(&config, "/tmp/audit", "/tmp/state")
        .err()
        .unwrap();
    assert!(err.to_string().contains("cluster"), "{err}");
    config.state_dir = Some("/tmp/state".into());
    let err = config.plan("h").unwrap_err();
    assert!(err.to_string().contains("state_dir"), "{err}");
    config.state_dir = None;
    config.lease_ms = 10;
    assert!(config
        .plan("h")
        .unwrap_err()
        .to_string()
        .contains("lease_ms"));
    config.lease_ms = 5000;
    assert_eq!(config.plan("h").unwrap().name, "cluster-jsonl-_tmp_x.jsonl");
}
