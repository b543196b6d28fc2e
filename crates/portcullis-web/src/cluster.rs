//! This gateway's part in a cluster (several gateways on one PostgreSQL store): it publishes its
//! live sessions every [`PUBLISH_EVERY`] with a heartbeat, lists every gateway's (those heard
//! from within [`ALIVE_WITHIN`]), and carries out the commands other gateways leave for it (a
//! kill asked on one of them), woken at once by the store.
//!
//! What each gateway does is recorded in its own audit trail: the security team's act where it
//! was asked (before it is sent), the session's end where the session was.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::session::SessionEnd;
use portcullis_store::Cluster;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::AppState;

/// How often a gateway publishes its sessions (and so says it is alive).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);
/// A gateway not heard from for this long is taken as gone: its sessions are not listed.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(10);
/// How long the command thread waits for a wake-up before it looks anyway.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// The cluster as this gateway sees it. Cheap to clone.
#[derive(Clone)]
pub struct ClusterLink {
    store: Arc<dyn Cluster>,
    node: Arc<str>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A command from one gateway to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    /// End a session: the security team asked on another gateway (already on record there).
    Kill {
        session: String,
        by: String,
        reason: String,
        /// The gateway it was asked on.
        #[serde(default)]
        from: String,
    },
    /// End the sessions a revocation takes away (a user deleted or locked, a grant or a target
    /// removed on another gateway: already on record there).
    Close {
        filter: crate::sessions::SessionFilter,
        message: String,
    },
    /// Freeze or unfreeze a session: the security team asked on another gateway.
    Freeze {
        session: String,
        by: String,
        frozen: bool,
    },
}

impl ClusterLink {
    /// This gateway, `node`, on `store`.
    pub fn new(store: Arc<dyn Cluster>, node: String) -> Self {
        Self {
            store,
            node: node.into(),
        }
    }

    /// This gateway's name in the cluster.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The shared store as a cluster SIEM export (`source = "cluster"`) reads it.
    pub fn siem_trail(&self) -> Arc<dyn portcullis_siem::ClusterTrail> {
        Arc::new(SiemTrail(Arc::clone(&self.store)))
    }

    /// The cluster's merged audit view (see [`Cluster::audit_mirrored`]).
    pub(crate) fn audit_mirrored(
        &self,
        query: &portcullis_store::MirrorQuery,
    ) -> Result<Vec<portcullis_store::MirroredRecord>, portcullis_store::StoreError> {
        self.store.audit_mirrored(query)
    }

    /// The sessions the other gateways hold, as they published them (each with its `node`).
    pub(crate) fn remote_sessions(&self) -> Vec<serde_json::Value> {
        match self.store.published(ALIVE_WITHIN) {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|(node, _)| **node != *self.node)
                .flat_map(|(node, sessions)| listed(&node, sessions))
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot read the other gateways' sessions");
                Vec::new()
            }
        }
    }

    /// Which gateway holds session `id`, if another one does.
    pub(crate) fn node_of(&self, id: &str) -> Option<String> {
        self.remote_sessions().into_iter().find_map(|s| {
            (s.get("id").and_then(|v| v.as_str()) == Some(id))
                .then(|| s.get("node").and_then(|v| v.as_str()).map(str::to_owned))
                .flatten()
        })
    }

    /// The other gateways heard from lately.
    fn others(&self) -> Vec<String> {
        match self.store.published(ALIVE_WITHIN) {
            Ok(nodes) => nodes
                .into_iter()
                .map(|(node, _)| node)
                .filter(|node| **node != *self.node)
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot read which other gateways are alive");
                Vec::new()
            }
        }
    }

    /// Tells every other gateway to end the sessions `filter` picks (a revocation).
    pub(crate) fn close_everywhere(&self, filter: &crate::sessions::SessionFilter, message: &str) {
        let command = serde_json::to_value(Command::Close {
            filter: filter.clone(),
            message: message.to_owned(),
        })
        .unwrap_or_default();
        for node in self.others() {
            if let Err(e) = self.store.send(&node, &command) {
                warn!(error = %e, %node, "cannot tell another gateway to end revoked sessions");
            }
        }
    }

    /// Asks `node` to freeze or unfreeze session `id`.
    pub(crate) fn freeze(
        &self,
        node: &str,
        id: &str,
        by: &str,
        frozen: bool,
    ) -> Result<(), portcullis_store::StoreError> {
        let command = Command::Freeze {
            session: id.to_owned(),
            by: by.to_owned(),
            frozen,
        };
        self.store
            .send(node, &serde_json::to_value(command).unwrap_or_default())
    }

    /// Asks `node` to end session `id` (woken at once).
    pub(crate) fn kill(
        &self,
        node: &str,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<(), portcullis_store::StoreError> {
        let command = Command::Kill {
            session: id.to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
            from: self.node.to_string(),
        };
        self.store
            .send(node, &serde_json::to_value(command).unwrap_or_default())
    }
}

/// Starts publishing `state`'s sessions and carrying out the commands left for it, until the
/// process ends. Nothing without a cluster.
pub fn start(state: &AppState) {
    let Some(link) = state.cluster.clone() else {
        return;
    };
    info!(node = %link.node, "in a cluster: publishing this gateway's sessions");
    let publisher = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        loop {
            tick.tick().await;
            publish(&publisher).await;
        }
    });
    if let Some(log) = state.audit.trail() {
        let (store, node) = (Arc::clone(&link.store), link.node.to_string());
        let spawned = std::thread::Builder::new()
            .name("audit-mirror".into())
            .spawn(move || mirror_audit(store.as_ref(), &node, &log));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start mirroring the audit trail: the cluster's merged view lacks this gateway");
        }
    }
    let runner = state.clone();
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("cluster-commands".into())
        .spawn(move || loop {
            if let Err(e) = link.store.wait(&link.node, LOOK_EVERY) {
                warn!(error = %e, "cannot wait for other gateways' commands");
            }
            match link.store.take(&link.node) {
                Ok(commands) => {
                    for command in commands {
                        // A bug in one command must not stop the others, nor later ones.
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            carry_out(&runner, &runtime, command);
                        }));
                        if ran.is_err() {
                            warn!("a command from another gateway failed (panicked)");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot take other gateways' commands"),
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the cluster's command thread: kills asked on other gateways do not reach this one");
    }
}

/// How often the audit mirror looks for new records.
const MIRROR_EVERY: Duration = Duration::from_secs(1);
/// At most this many records go to the mirror in one transaction.
const MIRROR_BATCH: usize = 500;

/// The largest write the audit trail makes (its records are sealed per write): a batch is read
/// this far when it must reach the write's seal.
const MIRROR_BATCH_MAX: usize = 20_000;

/// Where the mirror of this gateway's chain stands.
struct Mirror<'a> {
    store: &'a dyn Cluster,
    node: &'a str,
    log: &'a portcullis_audit::AuditLog,
    /// The last seq mirrored, once checked against the trail here.
    up_to: Option<u64>,
}

/// Why a round of the mirror stopped.
enum MirrorError {
    /// The store did not answer or refused: tried again soon.
    Store(String),
    /// The mirror does not continue this trail (a restored data directory, two gateways with
    /// one name, a row that is not ours): nothing more is mirrored, said loudly, until it is
    /// sorted out (a restart checks again).
    Diverged(String),
}

impl Mirror<'_> {
    /// Mirrors what is fsynced and sealed, a batch at a time; `Ok(true)`: nothing left.
    fn round(&mut self) -> Result<bool, MirrorError> {
        let synced = self.log.watermark().synced_seq();
        let from = match self.up_to {
            Some(n) => n,
            None => {
                let n = self
                    .store
                    .audit_mirrored_up_to(self.node)
                    .map_err(|e| MirrorError::Store(e.to_string()))?;
                self.check_continues(n, synced)?;
                self.up_to = Some(n);
                n
            }
        };
        if synced <= from {
            return Ok(true);
        }
        let mut max = MIRROR_BATCH;
        let lines = loop {
            let mut lines = portcullis_audit::read_lines(self.log.dir(), from, max)
                .map_err(|e| MirrorError::Store(e.to_string()))?;
            lines.retain(|(e, _)| e.seq <= synced);
            // Up to the last seal: a copy never ends in the middle of a write (its seal, on
            // its last record, vouches for the rest).
            match lines.iter().rposition(|(e, _)| e.seal.is_some()) {
                Some(last) => {
                    lines.truncate(last + 1);
                    break lines;
                }
                None if lines.len() == max && max < MIRROR_BATCH_MAX => max = MIRROR_BATCH_MAX,
                // An unsealed trail (none yet) goes as it is.
                None => break lines,
            }
        };
        let records: Vec<portcullis_store::MirroredRecord> = lines
            .into_iter()
            .filter_map(|(e, line)| {
                Some(portcullis_store::MirroredRecord {
                    node: self.node.to_owned(),
                    seq: e.seq,
                    ts_ms: e.ts_ms,
                    kind: e.record.kind.as_str().to_owned(),
                    actor: e.record.actor,
                    target: e.record.target,
                    session: e.record.session,
                    line: String::from_utf8(line).ok()?,
                })
            })
            .collect();
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(true);
        };
        self.store.audit_mirror(&records).map_err(|e| match e {
            portcullis_store::StoreError::Corrupt { detail } => MirrorError::Diverged(detail),
            other => MirrorError::Store(other.to_string()),
        })?;
        self.up_to = Some(last);
        Ok(records.len() < MIRROR_BATCH)
    }

    /// The mirror's last record (`seq`) must be this trail's record `seq`, byte for byte.
    fn check_continues(&self, seq: u64, synced: u64) -> Result<(), MirrorError> {
        if seq == 0 {
            return Ok(());
        }
        let diverged = |why: String| {
            MirrorError::Diverged(format!(
                "the store's copy of gateway {:?}'s audit chain does not continue the trail \
                 here: {why}",
                self.node
            ))
        };
        if seq > synced {
            return Err(diverged(format!(
                "it goes to record {seq}, the trail here only to {synced}"
            )));
        }
        let theirs = self
            .store
            .audit_chain(self.node, seq - 1, 1)
            .map_err(|e| MirrorError::Store(e.to_string()))?;
        let ours = portcullis_audit::read_lines(self.log.dir(), seq - 1, 1)
            .map_err(|e| MirrorError::Store(e.to_string()))?;
        let same = match (theirs.first(), ours.first()) {
            (Some(t), Some((e, line))) => e.seq == seq && t.line.as_bytes() == line.as_slice(),
            _ => false,
        };
        if same {
            Ok(())
        } else {
            Err(diverged(format!("its record {seq} is not this trail's")))
        }
    }
}

/// Copies this gateway's audit records, once fsynced and sealed, into the store's mirror of
/// every gateway's chain (byte for byte, so the copy verifies as the trail does), for the
/// cluster's merged view. At least once, in order, for as long as the process runs; after an
/// outage of the store it picks up where the mirror stands, once it checked that the mirror
/// continues this trail.
fn mirror_audit(store: &dyn Cluster, node: &str, log: &portcullis_audit::AuditLog) {
    let mut mirror = Mirror {
        store,
        node,
        log,
        up_to: None,
    };
    loop {
        match mirror.round() {
            Ok(true) => std::thread::sleep(MIRROR_EVERY),
            Ok(false) => {}
            Err(MirrorError::Store(e)) => {
                warn!(error = %e, "cannot mirror the audit trail to the cluster (retried)");
                // Ask the store again where the mirror stands.
                mirror.up_to = None;
                std::thread::sleep(MIRROR_EVERY * 5);
            }
            Err(MirrorError::Diverged(e)) => {
                tracing::error!(error = %e,
                    "the audit trail is no longer mirrored to the cluster: the copy there is not this trail's (the trail here is intact and goes on; check `portcullis audit verify --cluster`)");
                mirror.up_to = None;
                std::thread::sleep(MIRROR_EVERY * 60);
            }
        }
    }
}

/// Mirrors what is left of this gateway's trail now (at its stop: the `gateway_stop` record
/// and the sessions' ends), until `until`. Blocking.
pub fn flush_audit_mirror(state: &AppState, until: std::time::Instant) {
    let (Some(link), Some(log)) = (state.cluster.as_ref(), state.audit.trail()) else {
        return;
    };
    let mut mirror = Mirror {
        store: link.store.as_ref(),
        node: &link.node,
        log: &log,
        up_to: None,
    };
    while std::time::Instant::now() < until {
        match mirror.round() {
            Ok(true) => return,
            Ok(false) => {}
            Err(MirrorError::Store(e) | MirrorError::Diverged(e)) => {
                warn!(error = %e, "the audit trail's last records are not mirrored to the cluster (the next start mirrors them)");
                return;
            }
        }
    }
}

/// Publishes `state`'s live sessions now, after ending those the store no longer allows: a
/// revocation made on another gateway (or by the command line) whose command did not arrive
/// takes effect here within one round.
pub async fn publish(state: &AppState) {
    let Some(link) = state.cluster.clone() else {
        return;
    };
    let checker = state.clone();
    let _ = tokio::task::spawn_blocking(move || end_revoked(&checker)).await;
    if let Some(address) = state.advertise.clone() {
        let (store, key, node) = (
            std::sync::Arc::clone(&state.store),
            std::sync::Arc::clone(&state.key),
            link.node.to_string(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            crate::relay::publish_address(
                store.as_ref(),
                &key,
                &node,
                &address,
                crate::auth::now_ms(),
            );
        })
        .await;
    }
    let sessions: Vec<serde_json::Value> = state
        .broker
        .list()
        .iter()
        .map(|s| crate::sessions::session_json(s, Some(&link.node)))
        .collect();
    let published = tokio::task::spawn_blocking(move || {
        link.store
            .publish(&link.node, &serde_json::Value::Array(sessions))
    })
    .await;
    if let Some(recordings) = state.recordings.clone() {
        // Recordings another gateway is writing are listed as being recorded here too.
        let link = state.cluster.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let ids = link
                .map(|l| l.remote_sessions())
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.get("id").and_then(|v| v.as_str()).map(str::to_owned))
                .collect();
            recordings.set_elsewhere(ids);
        })
        .await;
    }
    match published {
        Ok(Ok(())) => state
            .cluster_published
            .store(crate::auth::now_ms(), std::sync::atomic::Ordering::Relaxed),
        Ok(Err(e)) => warn!(error = %e, "cannot publish this gateway's sessions"),
        Err(e) => warn!(error = %e, "cannot publish this gateway's sessions"),
    }
}

/// Ends this gateway's sessions whose user, grant or target the store no longer has (or whose
/// user is locked now). A store that cannot answer ends nothing (logged).
fn end_revoked(state: &AppState) {
    // Watches of accounts locked or deleted meanwhile (the command line, a lost command).
    for user in state.watches.users() {
        let why = match state.store.get_user(&user) {
            Ok(None) => "your account was removed by an administrator",
            Ok(Some(u)) if u.locked => "your account was locked by the security team",
            Ok(Some(_)) => continue,
            Err(e) => {
                warn!(error = %e, "cannot check open watches against the store");
                break;
            }
        };
        state.watches.end_user(&user, why);
    }
    for s in state.broker.list() {
        let user = match state.store.get_user(&s.user) {
            Ok(user) => user,
            Err(e) => {
                warn!(error = %e, "cannot check live sessions against the store");
                return;
            }
        };
        let why = match user {
            None => Some("your account was removed by an administrator"),
            Some(u) if !s.user_id.is_empty() && u.id != s.user_id => {
                Some("your account was removed by an administrator")
            }
            Some(u) if u.locked => Some("your account was locked by the security team"),
            Some(_) => match crate::requests::has_access(state, &s.user, &s.target) {
                Ok(true) => None,
                Ok(false) => Some("your access to this target was revoked by an administrator"),
                Err(e) => {
                    warn!(error = %e, "cannot check live sessions against the store");
                    return;
                }
            },
        };
        if let Some(why) = why {
            info!(session = %s.id, user = %s.user, target = %s.target, why, "session ended: revoked in the store");
            state.broker.close(
                &s.id,
                SessionEnd::ClosedByAdmin {
                    message: why.to_owned(),
                },
            );
        }
    }
}

/// What another gateway published, as this API lists it: the fields the UI shows, typed and
/// bounded, with `node` the gateway's own name (not what the entry says).
fn listed(node: &str, sessions: serde_json::Value) -> Vec<serde_json::Value> {
    let serde_json::Value::Array(list) = sessions else {
        return Vec::new();
    };
    let text = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(|x| x.as_str())
            .map(|x| x.chars().take(256).collect::<String>())
    };
    list.into_iter()
        .take(10_000)
        .filter_map(|s| {
            Some(serde_json::json!({
                "id": text(&s, "id")?,
                "user": text(&s, "user").unwrap_or_default(),
                "target": text(&s, "target").unwrap_or_default(),
                "client_addr": text(&s, "client_addr").unwrap_or_default(),
                "started_at": text(&s, "started_at").unwrap_or_default(),
                "state": text(&s, "state").unwrap_or_default(),
                "entry": text(&s, "entry").unwrap_or_default(),
                "frozen": s.get("frozen").and_then(serde_json::Value::as_bool).unwrap_or(false),
                "node": node,
            }))
        })
        .collect()
}

/// Says the gateway left (it stops): its sessions are no longer listed.
pub fn leave(state: &AppState) {
    if let Some(link) = &state.cluster {
        if let Err(e) = link.store.leave(&link.node) {
            warn!(error = %e, "cannot take this gateway out of the cluster's list");
        }
    }
}

fn carry_out(state: &AppState, runtime: &tokio::runtime::Handle, command: serde_json::Value) {
    match serde_json::from_value::<Command>(command) {
        Ok(Command::Kill {
            session,
            by,
            reason,
            from,
        }) => match state.broker.get(&session).filter(|s| !s.is_closed()) {
            Some(live) => {
                // On record here too, beside the session (its trail and recording), before it
                // takes effect: who asked, where.
                let info = live.info();
                let record =
                    portcullis_audit::Record::new(portcullis_audit::Kind::SESSION_KILL, &by)
                        .session(&session)
                        .target(info.target)
                        .detail("user", info.user)
                        .detail("reason", reason.as_str())
                        .detail("from_node", from.as_str());
                if let Err(e) = runtime.block_on(state.audit.record(record)) {
                    warn!(error = %e, %session, "a kill from another gateway could not be recorded here; ending the session anyway");
                }
                live.close(SessionEnd::ClosedByAdmin {
                    message: format!("the security team ended this session: {reason}"),
                });
                info!(%by, %session, %reason, "session killed from another gateway");
            }
            None => info!(%session, "a kill from another gateway found the session already gone"),
        },
        Ok(Command::Close { filter, message }) => {
            crate::sessions::close_local_sessions(state, &filter, &message);
        }
        Ok(Command::Freeze {
            session,
            by,
            frozen,
        }) => match state.broker.get(&session).filter(|s| !s.is_closed()) {
            Some(live) => {
                // On record here too (the session's own trail), before it takes effect.
                if let Err(e) = runtime.block_on(live.set_frozen(frozen, &by)) {
                    warn!(error = %e, %session, "a freeze from another gateway could not be recorded: not applied");
                }
            }
            None => info!(%session, "a freeze from another gateway found the session already gone"),
        },
        Err(e) => warn!(error = %e, "an unknown command from another gateway was ignored"),
    }
}

/// The cluster's merged trail for a SIEM export: the mirrored chains and the export's lease.
struct SiemTrail(Arc<dyn Cluster>);

fn trail_error(e: portcullis_store::StoreError) -> portcullis_siem::TrailError {
    portcullis_siem::TrailError(e.to_string())
}

impl portcullis_siem::ClusterTrail for SiemTrail {
    fn nodes(&self) -> Result<Vec<String>, portcullis_siem::TrailError> {
        self.0.audit_nodes().map_err(trail_error)
    }

    fn chain(
        &self,
        node: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, portcullis_siem::TrailError> {
        self.0
            .audit_chain(node, after_seq, limit)
            .map(|records| records.into_iter().map(|r| (r.seq, r.line)).collect())
            .map_err(trail_error)
    }

    fn lease(
        &self,
        export: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<portcullis_siem::Lease, portcullis_siem::TrailError> {
        Ok(
            match self
                .0
                .export_lease(export, holder, lease)
                .map_err(trail_error)?
            {
                portcullis_store::ExportLease::Held { cursor } => {
                    portcullis_siem::Lease::Held { cursor }
                }
                portcullis_store::ExportLease::Other { holder } => {
                    portcullis_siem::Lease::Other { holder }
                }
            },
        )
    }

    fn advance(
        &self,
        export: &str,
        holder: &str,
        cursor: &str,
    ) -> Result<bool, portcullis_siem::TrailError> {
        self.0
            .export_advance(export, holder, cursor)
            .map_err(trail_error)
    }

    fn release(&self, export: &str, holder: &str) -> Result<(), portcullis_siem::TrailError> {
        self.0.export_release(export, holder).map_err(trail_error)
    }
}
