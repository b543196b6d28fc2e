//! Live sessions (`/sessions`): the list (security team and admins) and an administrator's
//! close; [`close_sessions`] ends the sessions a revocation takes away. The security team's
//! controls (kill, freeze, watch, lock users) are in `soc`.

pub(crate) mod soc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use portcullis_audit::{Kind, Record};
use portcullis_core::session::{SessionEnd, SessionInfo};
use serde_json::json;
use tracing::info;

use crate::extract::{Admin, Soc};
use crate::{AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list_sessions))
        .route("/sessions/events", get(session_changes))
        .route("/sessions/{id}", delete(close_session))
}

/// Streams told of session changes at once (several SOC consoles, a few tabs each).
static CHANGE_STREAMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(256);
/// A stream ends after this (the browser reconnects, and its login is checked again).
const CHANGE_STREAM_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// Changes closer together than this are one event (a console re-reads the list on each).
const CHANGE_MERGE: std::time::Duration = std::time::Duration::from_millis(250);

/// `GET /sessions/events`: with `Accept: text/event-stream` (a browser's `EventSource`), a
/// server-sent event `changed` each time a session of this gateway opens, ends, changes state,
/// is frozen or scores a new risk rule (bursts within 250 ms are one), so the security team's
/// console refreshes at once instead of at its next poll; the stream ends after a minute (the
/// browser reconnects, its login checked again) or at once when the user's access is revoked; otherwise the change count as JSON. The events carry no
/// session data: the console reads the list (`GET /sessions`) as ever.
async fn session_changes(
    State(state): State<AppState>,
    Soc(user): Soc,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, WebError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use axum::response::IntoResponse;
    let mut rx = state.broker.changes();
    let wants_stream = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_stream {
        let n = *rx.borrow();
        return Ok(Json(json!({ "changes": n })).into_response());
    }
    let permit = CHANGE_STREAMS.try_acquire().map_err(|_| {
        WebError::TooManyRequests("too many consoles follow the sessions at once".into())
    })?;
    // Ended at once when the user's access is revoked (locked, deleted, logged out everywhere),
    // like their watches.
    let watch = state.watches.begin(&user.name);
    let deadline = tokio::time::Instant::now() + CHANGE_STREAM_FOR;
    let first = Event::default()
        .event("changed")
        .retry(std::time::Duration::from_secs(2))
        .data(rx.borrow_and_update().to_string());
    let rest = futures_util::stream::unfold(
        (rx, permit, watch),
        move |(mut rx, permit, mut watch)| async move {
            tokio::select! {
                changed = rx.changed() => changed.ok()?,
                () = tokio::time::sleep_until(deadline) => return None,
                _ = watch.revoked() => return None,
            }
            // A burst of changes (a session opening: connecting, active) is one refresh.
            tokio::time::sleep(CHANGE_MERGE).await;
            let n = *rx.borrow_and_update();
            let event = Event::default().event("changed").data(n.to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (rx, permit, watch),
            ))
        },
    );
    let stream =
        futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Which live sessions a revocation ends: those of `user`, to `target`, or both (each given
/// narrows it; neither: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionFilter {
    pub user: Option<String>,
    pub target: Option<String>,
}

impl SessionFilter {
    /// Every session of `user`.
    pub(crate) fn user(user: &str) -> Self {
        Self {
            user: Some(user.to_owned()),
            target: None,
        }
    }

    /// Every session of `user` to `target`.
    pub(crate) fn user_target(user: &str, target: &str) -> Self {
        Self {
            user: Some(user.to_owned()),
            target: Some(target.to_owned()),
        }
    }

    /// Every session to `target`.
    pub(crate) fn target(target: &str) -> Self {
        Self {
            user: None,
            target: Some(target.to_owned()),
        }
    }

    pub(crate) fn picks(&self, s: &SessionInfo) -> bool {
        (self.user.is_some() || self.target.is_some())
            && self.user.as_ref().is_none_or(|u| *u == s.user)
            && self.target.as_ref().is_none_or(|t| *t == s.target)
    }
}

/// Closes the live sessions `filter` picks on this gateway; in a cluster every other gateway is
/// told to do the same at once: revocations take effect everywhere.
pub(crate) fn close_sessions(state: &AppState, filter: &SessionFilter, message: &str) {
    close_local_sessions(state, filter, message);
    if let Some(link) = &state.cluster {
        link.close_everywhere(filter, message);
    }
}

/// [`close_sessions`] on this gateway only (what another gateway's command asks). Closing every
/// session of a user (the account locked or deleted) ends their watches here too.
pub(crate) fn close_local_sessions(state: &AppState, filter: &SessionFilter, message: &str) {
    if let (Some(user), None) = (&filter.user, &filter.target) {
        let n = state.watches.end_user(user, message);
        if n > 0 {
            tracing::info!(%user, watches = n, "watches ended: the watcher's account was revoked");
        }
    }
    for s in state.broker.list().into_iter().filter(|s| filter.picks(s)) {
        state.broker.close(
            &s.id,
            SessionEnd::ClosedByAdmin {
                message: message.to_owned(),
            },
        );
    }
}

/// A live session as the API lists it; `node`: the gateway holding it, in a cluster.
pub(crate) fn session_json(s: &SessionInfo, node: Option<&str>) -> serde_json::Value {
    let started =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(s.started_at_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    let mut listed = json!({
        "id": s.id, "user": s.user, "target": s.target, "client_addr": s.client_addr,
        "started_at": started, "state": s.state, "entry": s.entry, "frozen": s.frozen,
        "risk_score": s.risk_score, "risk_rules": s.risk_rules,
        "clipboard_bytes": s.clipboard_bytes, "file_bytes": s.file_bytes,
    });
    if let Some(node) = node {
        listed["node"] = json!(node);
    }
    listed
}

/// Every live session: this gateway's, and in a cluster every other gateway's (as they last
/// published them, within seconds), each naming its `node`.
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    _soc: Soc,
) -> Json<Vec<serde_json::Value>> {
    let node = state.cluster.as_ref().map(|c| c.node().to_owned());
    let mut listed: Vec<serde_json::Value> = state
        .broker
        .list()
        .iter()
        .map(|s| session_json(s, node.as_deref()))
        .collect();
    if let Some(link) = state.cluster.clone() {
        if let Ok(remote) = tokio::task::spawn_blocking(move || link.remote_sessions()).await {
            listed.extend(remote);
        }
    }
    Json(listed)
}

pub(crate) async fn close_session(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    let gone = || WebError::NotFound(format!("no live session {id:?}"));
    let session = state.broker.get(&id).ok_or_else(gone)?;
    let info = session.info();
    state
        .audit
        .before(
            Record::new(Kind::SESSION_KILL, &admin.name)
                .session(&id)
                .target(info.target)
                .detail("user", info.user)
                .detail("reason", "closed by an administrator"),
            || {
                let closed = state.broker.close(
                    &id,
                    SessionEnd::ClosedByAdmin {
                        message: "the session was closed by an administrator".into(),
                    },
                );
                closed.then_some(()).ok_or_else(gone)
            },
        )
        .await?;
    info!(admin = %admin.name, session = %id, "session closed by admin");
    Ok(StatusCode::NO_CONTENT)
}
