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

    /// The sessions the other gateways hold, as they published them (each with its `node`).
    pub(crate) fn remote_sessions(&self) -> Vec<serde_json::Value> {
        let since =
            crate::auth::now_ms() - i64::try_from(ALIVE_WITHIN.as_millis()).unwrap_or(i64::MAX);
        match self.store.published(since) {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|(node, _)| **node != *self.node)
                .filter_map(|(_, sessions)| match sessions {
                    serde_json::Value::Array(list) => Some(list),
                    _ => None,
                })
                .flatten()
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
        let since =
            crate::auth::now_ms() - i64::try_from(ALIVE_WITHIN.as_millis()).unwrap_or(i64::MAX);
        match self.store.published(since) {
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
                        carry_out(&runner, &runtime, command);
                    }
                }
                Err(e) => warn!(error = %e, "cannot take other gateways' commands"),
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the cluster's command thread: kills asked on other gateways do not reach this one");
    }
}

/// Publishes `state`'s live sessions now.
pub async fn publish(state: &AppState) {
    let Some(link) = state.cluster.clone() else {
        return;
    };
    let sessions: Vec<serde_json::Value> = state
        .broker
        .list()
        .iter()
        .map(|s| crate::sessions::session_json(s, Some(&link.node)))
        .collect();
    let now = crate::auth::now_ms();
    let published = tokio::task::spawn_blocking(move || {
        link.store
            .publish(&link.node, &serde_json::Value::Array(sessions), now)
    })
    .await;
    if let Ok(Err(e)) = published {
        warn!(error = %e, "cannot publish this gateway's sessions");
    }
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
        }) => match state.broker.get(&session).filter(|s| !s.is_closed()) {
            Some(live) => {
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
