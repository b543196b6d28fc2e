//! The cluster's merged trail as a source: every gateway's chain as mirrored in the shared
//! store, merged by time ([`Pump::on_chains`]), exported by one gateway at a time.
//!
//! Each gateway with the same `source = "cluster"` section runs a [`Forwarder`] over it; they
//! share one lease in the store, renewed every third of `lease_ms` by the gateway holding it.
//! That gateway exports, from the cursor kept with the lease ([`Chains`]: the last record
//! delivered of each gateway's chain), and stores the cursor only while it still holds the
//! lease. The others stand by and look again as often; when the exporting gateway stops it
//! gives the lease up, when it dies the lease runs out, and another goes on from the stored
//! cursor: the records delivered since it was stored come again (at least once, never lost).
//! A gateway that cannot reach the store stops exporting at once (it cannot renew the lease).

use std::sync::Arc;
use std::time::Duration;

use portcullis_audit::Entry;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::{SiemConfig, SiemSource};
use crate::cursor::Chains;
use crate::cursor::Cursor;
use crate::forwarder::{machine_hostname, sealed, target, wall_ms, Forwarder, SiemError, Source};
use crate::pump::{Batch, ChainRead, Pump};

/// How long a chain waits at a stored record that cannot be read (damaged, or altered so that
/// its hash does not check) before the export goes on past it, reporting the gap: long enough
/// for an operator to see the alert and repair the row, short enough not to hold a gateway's
/// records back for good.
const STALL_MAX: Duration = Duration::from_secs(300);

/// Records read of each chain at least (a read reads the export's batch spread over the chains).
const MIN_PAGE: usize = 16;

/// What a cluster export needs of the shared store (the gateway implements it over its
/// PostgreSQL store). Blocking calls: they run on tokio's blocking threads.
pub trait ClusterTrail: Send + Sync + 'static {
    /// The gateways whose chains the store holds.
    fn nodes(&self) -> Result<Vec<String>, TrailError>;
    /// `node`'s stored records after `after_seq`, in the order of its chain, at most `limit`:
    /// each one's seq (as stored beside it) and line.
    fn chain(
        &self,
        node: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, TrailError>;
    /// Takes export `export`'s lease for `holder` (or renews it) for `lease` by the store's
    /// clock, unless another gateway holds it and it has not run out.
    fn lease(&self, export: &str, holder: &str, lease: Duration) -> Result<Lease, TrailError>;
    /// Stores the export's cursor if `holder` still holds its lease: false when it does not.
    fn advance(&self, export: &str, holder: &str, cursor: &str) -> Result<bool, TrailError>;
    /// Gives the lease up (at the stop), if `holder` has it.
    fn release(&self, export: &str, holder: &str) -> Result<(), TrailError>;
}

/// What [`ClusterTrail::lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease; the export's cursor as stored (empty: none yet).
    Held {
        /// [`Chains::encode`]'s text.
        cursor: String,
    },
    /// Another gateway holds it.
    Other {
        /// Which.
        holder: String,
    },
}

/// The store did not answer or refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TrailError(pub String);

/// The cluster's merged trail (see the [module docs](self)).
pub struct Cluster {
    trail: Arc<dyn ClusterTrail>,
    export: String,
    node: String,
    lease: Duration,
    merge_delay: Duration,
    page: usize,
    held: bool,
    next_check: Option<Instant>,
    /// Chains held back at an unreadable record: since when. Once that ran out the chain
    /// passes over every unreadable record it reads, until a read of it finds none.
    stalled: std::collections::BTreeMap<String, Instant>,
    /// When the lease was last granted or renewed.
    renewed: Option<Instant>,
    /// Calls to the store one after the other, also one a stop abandoned: the lease is given
    /// up only after a grant still under way.
    serial: Arc<std::sync::Mutex<()>>,
}

impl Source for Cluster {
    type Position = Chains;
}

impl Forwarder<Cluster> {
    /// The forwarder of a `source = "cluster"` section on gateway `node`, over the shared
    /// store `trail`.
    pub fn cluster(
        config: &SiemConfig,
        trail: Arc<dyn ClusterTrail>,
        node: &str,
    ) -> Result<Self, SiemError> {
        let plan = config.plan(&machine_hostname())?;
        if plan.source != SiemSource::Cluster {
            return Err(SiemError::Config(crate::ConfigError(
                "not a cluster export (`source = \"cluster\"`)".into(),
            )));
        }
        let target = target(&plan)?;
        let pump = Pump::new(
            Chains::default(),
            plan.formatter.clone(),
            plan.settings,
            plan.sink.clone(),
        );
        let source = Cluster {
            trail,
            export: plan.name.clone(),
            node: node.to_owned(),
            lease: plan.lease,
            merge_delay: plan.merge_delay,
            page: plan.settings.batch,
            held: false,
            next_check: None,
            stalled: std::collections::BTreeMap::new(),
            renewed: None,
            serial: Arc::default(),
        };
        // A write or a connection that takes longer than a third of the lease would let it run
        // out meanwhile, and another gateway export at the same time.
        let mut plan = plan;
        let third = plan.lease / 3;
        plan.write_timeout = plan.write_timeout.min(third);
        plan.connect_timeout = plan.connect_timeout.min(third);
        Ok(Forwarder::assemble(plan, target, source, pump))
    }
}

impl Cluster {
    /// Checks each chain's place in a cursor read from the store against the store's copy of
    /// that chain (the record there, with that hash): one that does not match (a row changed,
    /// a cursor altered, a gateway's chain replaced) moves back to the chain's start and is
    /// reported — records come again, none is passed over.
    async fn check_cursor(&self, from: Chains) -> Result<(Chains, Vec<String>), TrailError> {
        self.blocking(move |t| {
            let mut checked = Chains::default();
            let mut problems = Vec::new();
            for (node, c) in from.0 {
                if c.seq == 0 {
                    continue;
                }
                let there = t.chain(&node, c.seq - 1, 1)?;
                let same = there.first().is_some_and(|(seq, line)| {
                    *seq == c.seq
                        && Entry::from_line(line.as_bytes()).is_ok_and(|e| e.hash == c.hash)
                });
                if same {
                    checked.0.insert(node, c);
                } else {
                    problems.push(format!(
                        "gateway {node:?}: the export's cursor (seq {}) is not a record of the \
                         store's copy of its chain: delivering that chain again from its start",
                        c.seq
                    ));
                    checked.0.insert(node, Cursor::START);
                }
            }
            Ok((checked, problems))
        })
        .await
    }

    /// How often the lease is renewed (by its holder) or looked at (by the others).
    fn period(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(300))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ClusterTrail) -> Result<T, TrailError> + Send + 'static,
    ) -> Result<T, TrailError> {
        let (trail, serial) = (Arc::clone(&self.trail), Arc::clone(&self.serial));
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = serial.lock().unwrap_or_else(|p| p.into_inner());
            f(trail.as_ref())
        })
        .await
        .unwrap_or_else(|e| Err(TrailError(e.to_string())))
    }
}

impl sealed::Sealed for Cluster {
    type Pos = Chains;

    async fn hold(&mut self, pump: &mut Pump<Chains>, sink: &str) -> bool {
        let now = Instant::now();
        if self.next_check.is_some_and(|t| now < t) {
            return self.held;
        }
        self.next_check = Some(now + self.period());
        let (export, node, lease) = (self.export.clone(), self.node.clone(), self.lease);
        match self.blocking(move |t| t.lease(&export, &node, lease)).await {
            Ok(Lease::Held { cursor }) => {
                self.renewed = Some(now);
                if !self.held {
                    let from = Chains::decode(&cursor).unwrap_or_else(|e| {
                        let message = format!(
                            "the cluster export's cursor in the store is unusable ({e}): \
                             delivering everything again"
                        );
                        error!(sink = %sink, "{message}");
                        pump.error(message, wall_ms());
                        Chains::default()
                    });
                    let from = match self.check_cursor(from.clone()).await {
                        Ok((checked, problems)) => {
                            for p in problems {
                                pump.report_gap(p);
                            }
                            checked
                        }
                        Err(e) => {
                            // Not checked: not taken, and given back (another may do better).
                            pump.error(
                                format!("checking the cluster export's cursor: {e}"),
                                wall_ms(),
                            );
                            self.give_up().await;
                            return false;
                        }
                    };
                    info!(sink = %sink, after = ?from, "this gateway exports the cluster's audit trail");
                    self.stalled.clear();
                    pump.restart(from);
                    pump.set_exporter(Some(self.node.clone()));
                    self.held = true;
                }
            }
            Ok(Lease::Other { holder }) => {
                self.renewed = None;
                if self.held {
                    warn!(sink = %sink, exporter = %holder, "another gateway exports the cluster's audit trail now");
                }
                self.held = false;
                pump.set_exporter(Some(holder));
            }
            Err(e) => {
                self.renewed = None;
                if self.held {
                    warn!(sink = %sink, error = %e, "cannot renew the cluster export's lease: this gateway stops exporting");
                }
                self.held = false;
                pump.set_exporter(None);
                pump.error(format!("the cluster export's lease: {e}"), wall_ms());
            }
        }
        self.held
    }

    fn next_check(&self) -> Option<Instant> {
        self.next_check
    }

    fn fresh(&self) -> bool {
        // A write or a connect (each at most a third of the lease) started within a third of
        // it from the last renewal ends before the lease could run out.
        self.held && self.renewed.is_some_and(|t| t.elapsed() < self.period())
    }

    async fn next_batch(&mut self, pump: &mut Pump<Chains>, sink: &str) -> Option<Batch<Chains>> {
        let sent = pump.sent().clone();
        let batch = self.page;
        let read = self
            .blocking(move |t| {
                let nodes = t.nodes()?;
                let page = (batch / nodes.len().max(1)).clamp(MIN_PAGE, batch.max(MIN_PAGE));
                let mut chains = Vec::with_capacity(nodes.len());
                for node in nodes {
                    let after = sent.get(&node).seq;
                    let rows = t.chain(&node, after, page)?;
                    let full = rows.len() >= page;
                    let parsed: Vec<(u64, Result<Entry, String>)> = rows
                        .into_iter()
                        .map(|(seq, line)| {
                            let entry = Entry::from_line(line.as_bytes())
                                .map_err(|e| e.to_string())
                                .and_then(|e| {
                                    if e.seq == seq {
                                        Ok(e)
                                    } else {
                                        Err(format!("its line says seq {}", e.seq))
                                    }
                                });
                            (seq, entry)
                        })
                        .collect();
                    chains.push((node, parsed, full));
                }
                Ok(chains)
            })
            .await;
        let chains = match read {
            Ok(chains) => chains,
            Err(e) => {
                let message = format!("reading the cluster's audit trail: {e}");
                warn!(sink = %sink, "{message}");
                pump.on_read_failed(message, Instant::now(), wall_ms());
                return None;
            }
        };
        let now = Instant::now();
        let mut reads = Vec::with_capacity(chains.len());
        for (node, rows, full) in chains {
            let mut entries = Vec::with_capacity(rows.len());
            let mut more = full;
            let mut damaged = false;
            for (seq, entry) in rows {
                let why = match entry {
                    Ok(e) => {
                        entries.push(e);
                        continue;
                    }
                    Err(why) => why,
                };
                damaged = true;
                let since = *self.stalled.entry(node.clone()).or_insert_with(|| {
                    let message = format!(
                        "gateway {node:?}: the stored copy of record {seq} is unreadable ({why}); \
                         its chain waits here for up to {} s (repair the row, or it is passed \
                         over and reported as a gap)",
                        STALL_MAX.as_secs()
                    );
                    error!(sink = %sink, "{message}");
                    pump.error(message, wall_ms());
                    now
                });
                if now.saturating_duration_since(since) < STALL_MAX {
                    // Held back here: the merge goes on with the other chains (this one's
                    // later records come later, as late ones).
                    more = false;
                    break;
                }
                // Passed over, as is every unreadable record until a read of this chain finds
                // none: the next record's link shows the gap.
            }
            if !damaged {
                self.stalled.remove(&node);
            }
            reads.push(ChainRead {
                node,
                entries,
                more,
            });
        }
        let horizon = wall_ms()
            .saturating_sub(u64::try_from(self.merge_delay.as_millis()).unwrap_or(u64::MAX));
        pump.on_chains(reads, horizon, self.merge_delay, now)
    }

    async fn store(&mut self, at: &Chains) -> Result<(), String> {
        let (export, node, text) = (self.export.clone(), self.node.clone(), at.encode());
        match self
            .blocking(move |t| t.advance(&export, &node, &text))
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                // Look at the lease again at once: the loop then stands by.
                self.held = false;
                self.next_check = None;
                Err("the cluster export's lease went to another gateway: it goes on from the stored cursor".into())
            }
            Err(e) => Err(format!("storing the cluster export's cursor: {e}")),
        }
    }

    async fn release(&mut self) {
        // Also when not known to hold it: a stop may have come between the store granting the
        // lease and this gateway hearing of it (releasing another's lease does nothing; the
        // calls go one after the other, so a grant still under way is released too).
        self.give_up().await;
    }
}

impl Cluster {
    /// Gives the lease up now, if this gateway has it.
    async fn give_up(&mut self) {
        let (export, node) = (self.export.clone(), self.node.clone());
        if let Err(e) = self.blocking(move |t| t.release(&export, &node)).await {
            warn!(error = %e, "cannot give the cluster export's lease up: another gateway takes over when it runs out");
        }
        self.held = false;
        self.renewed = None;
    }
}
