//! The security team's controls (role `soc`, and administrators): watch any live session
//! view-only, see live thumbnails, kill a session with a reason the user sees, freeze and unfreeze
//! a session (input held, screen still shown and recorded), lock and unlock a user (their
//! sessions end, no new login or session until unlocked). Every action is logged with who did it
//! and lands in the session's event track.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use portcullis_audit::{Kind, Record};
use portcullis_broker::SessionHandle;
use portcullis_core::session::SessionEnd;
use portcullis_core::wire;
use portcullis_store::Role;
use serde::Deserialize;
use tracing::{info, warn};

use crate::audit::unavailable;
use crate::extract::{AuthUser, Body, Soc};
use crate::sessions::close_sessions;
use crate::{ws, AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions/{id}/kill", post(kill))
        .route("/sessions/{id}/freeze", post(freeze))
        .route("/sessions/{id}/unfreeze", post(unfreeze))
        .route("/sessions/{id}/thumbnail", get(thumbnail))
        .route("/sessions/{id}/watch", get(watch))
        .route("/cluster/watch/{id}", get(watch_for_peer))
        .route("/users/{name}/lock", post(lock_user))
        .route("/users/{name}/unlock", post(unlock_user))
}

/// Longest reason the security team may give (it is shown to the user and recorded).
const MAX_REASON: usize = 500;

/// Widest live thumbnail.
const THUMBNAIL_WIDTH: u32 = 320;

/// Why the security team acted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    #[serde(default)]
    reason: String,
}

impl ReasonBody {
    /// The reason, checked: required (`required`), at most [`MAX_REASON`] bytes, printable.
    fn checked(&self, required: bool) -> Result<&str, WebError> {
        let reason = self.reason.trim();
        if required && reason.is_empty() {
            return Err(WebError::BadRequest(
                "give a reason: the user sees it and the event track keeps it".into(),
            ));
        }
        if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(WebError::BadRequest(format!(
                "the reason must be printable text of at most {MAX_REASON} bytes"
            )));
        }
        Ok(reason)
    }
}

fn live(state: &AppState, id: &str) -> Result<SessionHandle, WebError> {
    state
        .broker
        .get(id)
        .filter(|s| !s.is_closed())
        .ok_or_else(|| WebError::NotFound(format!("no live session {id:?}")))
}

/// `POST /sessions/{id}/kill`: ends the session at once; the user is told the reason (browser
/// message; native RDP clients get the "disconnected by an administrator" code).
pub(crate) async fn kill(
    State(state): State<AppState>,
    Soc(soc): Soc,
    Path(id): Path<String>,
    Body(body): Body<ReasonBody>,
) -> Result<StatusCode, WebError> {
    let reason = body.checked(true)?;
    let asked = std::time::Instant::now();
    let session = match live(&state, &id) {
        Ok(session) => session,
        Err(not_here) => return kill_elsewhere(&state, &soc.name, &id, reason, not_here).await,
    };
    let info = session.info();
    state
        .audit
        .record(
            Record::new(Kind::SESSION_KILL, &soc.name)
                .session(&id)
                .target(info.target)
                .detail("user", info.user)
                .detail("reason", reason),
        )
        .await?;
    session.close(SessionEnd::ClosedByAdmin {
        message: format!("the security team ended this session: {reason}"),
    });
    let micros = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
    portcullis_broker::stats::KILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    portcullis_broker::stats::KILL_MICROS.fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
    info!(by = %soc.name, session = %id, %reason, "session killed");
    Ok(StatusCode::NO_CONTENT)
}

/// A kill of a session another gateway of the cluster holds: on record here (fsynced, naming
/// that gateway) before the command goes; that gateway ends it at once (woken by the store).
async fn kill_elsewhere(
    state: &AppState,
    soc: &str,
    id: &str,
    reason: &str,
    not_here: WebError,
) -> Result<StatusCode, WebError> {
    let (Some(link), Some(node)) = (state.cluster.clone(), holder(state, id).await?) else {
        return Err(not_here);
    };
    state
        .audit
        .record(
            Record::new(Kind::SESSION_KILL, soc)
                .session(id)
                .detail("held_by", node.as_str())
                .detail("reason", reason),
        )
        .await?;
    let (sent_link, node_c, id_c, soc_c, reason_c) = (
        link,
        node.clone(),
        id.to_owned(),
        soc.to_owned(),
        reason.to_owned(),
    );
    tokio::task::spawn_blocking(move || sent_link.kill(&node_c, &id_c, &soc_c, &reason_c))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))??;
    info!(by = %soc, session = %id, %node, %reason, "session killed on another gateway");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sessions/{id}/freeze`: the user's input is held until unfrozen. On record (fsynced)
/// before it takes effect; 503 and no freeze when the trail cannot take it. A session another
/// gateway of the cluster holds is frozen there (asked on record here first).
pub(crate) async fn freeze(
    State(state): State<AppState>,
    Soc(soc): Soc,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    set_frozen(&state, &soc.name, &id, true).await
}

/// `POST /sessions/{id}/unfreeze`, recorded like a freeze.
pub(crate) async fn unfreeze(
    State(state): State<AppState>,
    Soc(soc): Soc,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    set_frozen(&state, &soc.name, &id, false).await
}

async fn set_frozen(
    state: &AppState,
    soc: &str,
    id: &str,
    frozen: bool,
) -> Result<StatusCode, WebError> {
    let not_here = match live(state, id) {
        Ok(session) => {
            session
                .set_frozen(frozen, soc)
                .await
                .map_err(|e| unavailable(&e))?;
            return Ok(StatusCode::NO_CONTENT);
        }
        Err(not_here) => not_here,
    };
    let (Some(link), Some(node)) = (state.cluster.clone(), holder(state, id).await?) else {
        return Err(not_here);
    };
    let kind = if frozen {
        Kind::SESSION_FREEZE
    } else {
        Kind::SESSION_UNFREEZE
    };
    state
        .audit
        .record(
            Record::new(kind, soc)
                .session(id)
                .detail("held_by", node.as_str()),
        )
        .await?;
    let (id_c, soc_c) = (id.to_owned(), soc.to_owned());
    tokio::task::spawn_blocking(move || link.freeze(&node, &id_c, &soc_c, frozen))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

/// The other gateway of the cluster that holds session `id`, if one does.
async fn holder(state: &AppState, id: &str) -> Result<Option<String>, WebError> {
    let Some(link) = state.cluster.clone() else {
        return Ok(None);
    };
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || link.node_of(&id))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))
}

/// `GET /sessions/{id}/thumbnail`: the screen now, as a small JPEG.
pub(crate) async fn thumbnail(
    State(state): State<AppState>,
    _soc: Soc,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let session = live(&state, &id)?;
    let jpeg = tokio::task::spawn_blocking(move || session.thumbnail(THUMBNAIL_WIDTH))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .ok_or_else(|| WebError::NotFound(format!("session {id:?} has no picture yet")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// `GET /sessions/{id}/watch`: a view-only WebSocket onto a live session (same protocol as a
/// session's, input ignored); the event track notes the watcher. The watch is on record
/// (fsynced) before the upgrade: 503 and nothing shown when the trail cannot take it.
pub(crate) async fn watch(
    State(state): State<AppState>,
    Soc(soc): Soc,
    Path(id): Path<String>,
    Query(query): Query<ws::WatchQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, WebError> {
    if !ws::same_origin(&headers) {
        return Err(WebError::Forbidden(
            "cross-origin watch requests are refused".into(),
        ));
    }
    let session = match live(&state, &id) {
        Ok(session) => session,
        Err(not_here) => {
            return watch_elsewhere(&state, &soc.name, &id, upgrade, not_here, query.batch()).await
        }
    };
    // Listed before it begins, then checked: a lock coming meanwhile ends it either way.
    let open = watch_begins(&state, &soc.name).await?;
    let watcher = attach(&state, &session, &soc.name, &soc.name).await?;
    Ok(upgrade
        .max_message_size(wire::MAX_CLIENT_MESSAGE)
        .max_frame_size(wire::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            ws::watch(socket, session, watcher, soc.name, open, query.batch())
        }))
}

/// A watch of a session another gateway of the cluster holds: on record here (fsynced, naming
/// that gateway) before anything goes there; then relayed through this gateway (see
/// [`crate::relay`]). 502 when that gateway cannot be reached or refuses.
async fn watch_elsewhere(
    state: &AppState,
    soc: &str,
    id: &str,
    upgrade: WebSocketUpgrade,
    not_here: WebError,
    batch: bool,
) -> Result<Response, WebError> {
    let (Some(link), Some(node)) = (state.cluster.clone(), holder(state, id).await?) else {
        return Err(not_here);
    };
    state
        .audit
        .record(
            Record::new(Kind::WATCHER, soc)
                .session(id)
                .detail("held_by", node.as_str()),
        )
        .await?;
    let ticket = crate::relay::WatchTicket {
        session: id.to_owned(),
        watcher: soc.to_owned(),
        from: link.node().to_owned(),
        to: node.clone(),
    };
    let upstream = crate::relay::connect(
        Arc::clone(&state.store),
        Arc::clone(&state.key),
        &node,
        ticket,
        crate::auth::now_ms(),
        batch,
    )
    .await
    .map_err(|e| {
        tracing::warn!(session = %id, %node, error = %e, "cannot watch a session on another gateway");
        WebError::BadGateway(format!(
            "the gateway holding this session ({node}) cannot be reached to watch it"
        ))
    })?;
    info!(by = %soc, session = %id, %node, "watching a session on another gateway");
    let open = watch_begins(state, soc).await?;
    Ok(upgrade
        .max_message_size(wire::MAX_CLIENT_MESSAGE)
        .max_frame_size(wire::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| crate::relay::relay(socket, upstream, open)))
}

/// `GET /cluster/watch/{id}`: another gateway of the cluster relays a watch of a session held
/// here. No login: a one-time ticket that gateway left in the shared store (header
/// [`crate::relay::TICKET_HEADER`]), for this session. The watcher attaches as
/// `NAME via GATEWAY`, on record here as any watch.
pub(crate) async fn watch_for_peer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ws::WatchQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, WebError> {
    // A gateway's route: no API token reaches it (whatever its scope).
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(WebError::Forbidden(
            "API tokens cannot be used on this route".into(),
        ));
    }
    let token = headers
        .get(crate::relay::TICKET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if token.is_empty() {
        return Err(WebError::Unauthorized);
    }
    // Only gateways of a cluster relay watches.
    let Some(link) = state.cluster.clone() else {
        return Err(WebError::NotFound("not in a cluster".into()));
    };
    // Not a WebSocket request: refused before the ticket is used up.
    let upgrade = upgrade.map_err(|e| WebError::BadRequest(e.to_string()))?;
    let (store, key) = (Arc::clone(&state.store), Arc::clone(&state.key));
    let ticket = tokio::task::spawn_blocking(move || {
        crate::relay::take(store.as_ref(), &key, &token, crate::auth::now_ms())
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?
    .filter(|t| t.session == id && t.to == link.node())
    .ok_or(WebError::Unauthorized)?;
    let session = live(&state, &id)?;
    let name = format!("{} via {}", ticket.watcher, ticket.from);
    // Under the watcher's own name: a lock of that account, asked anywhere, ends it here too.
    let open = watch_begins(&state, &ticket.watcher).await?;
    let watcher = attach(&state, &session, &ticket.watcher, &name).await?;
    Ok(upgrade
        .max_message_size(wire::MAX_CLIENT_MESSAGE)
        .max_frame_size(wire::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| ws::watch(socket, session, watcher, name, open, query.batch())))
}

/// Attaches `account` (shown as `name`) as a watcher of `session`, or as its observer when the
/// session's rule requires one (four eyes) and names them, and they are not its user.
async fn attach(
    state: &AppState,
    session: &portcullis_broker::SessionHandle,
    account: &str,
    name: &str,
) -> Result<(portcullis_broker::Viewer, (u32, u32)), WebError> {
    let grant = session.grant();
    let observer = grant.observer_required()
        && session.info().user != account
        && state.store.get_user(account)?.is_some_and(|u| {
            state
                .policy
                .current()
                .may_observe(grant.rule(), &crate::policy::subject_of(&u))
        });
    let attached = if observer {
        session.attach_observer(name).await
    } else {
        session.attach_watcher(name).await
    };
    attached.map_err(|e| unavailable(&e))
}

/// Lists a watch by `user` as beginning, then checks the account in the store: a lock or a
/// deletion that came after the login was checked (and before the watch was listed, when
/// ending the user's watches could not see it) refuses it.
async fn watch_begins(state: &AppState, user: &str) -> Result<crate::watches::Watch, WebError> {
    let open = state.watches.begin(user);
    let (store, name) = (Arc::clone(&state.store), user.to_owned());
    let account = tokio::task::spawn_blocking(move || store.get_user(&name))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))??;
    match account {
        Some(u) if !u.locked => Ok(open),
        _ => Err(WebError::Forbidden(
            "this account is locked or removed".into(),
        )),
    }
}

/// `POST /users/{name}/lock`: ends the user's sessions and logins; no new ones until unlocked.
pub(crate) async fn lock_user(
    State(state): State<AppState>,
    Soc(soc): Soc,
    Path(name): Path<String>,
    Body(body): Body<ReasonBody>,
) -> Result<StatusCode, WebError> {
    let reason = body.checked(true)?;
    only_admins_touch_admins(&state, &soc, &name, Kind::USER_LOCK).await?;
    if name == soc.name {
        return Err(WebError::Conflict(
            "you cannot lock your own account".into(),
        ));
    }
    existing(&state, &name)?;
    state
        .audit
        .before(
            Record::new(Kind::USER_LOCK, &soc.name)
                .detail("user", name.as_str())
                .detail("reason", reason),
            || {
                set_locked(&state, &name, true)?;
                // Sessions first: whatever fails after, none outlives the lock.
                close_sessions(
                    &state,
                    &crate::sessions::SessionFilter::user(&name),
                    &format!("your account was locked by the security team: {reason}"),
                );
                state.logins.remove_user(&name)?;
                Ok(())
            },
        )
        .await?;
    info!(by = %soc.name, user = %name, %reason, "user locked");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /users/{name}/unlock`.
pub(crate) async fn unlock_user(
    State(state): State<AppState>,
    Soc(soc): Soc,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    only_admins_touch_admins(&state, &soc, &name, Kind::USER_UNLOCK).await?;
    existing(&state, &name)?;
    state
        .audit
        .before(
            Record::new(Kind::USER_UNLOCK, &soc.name).detail("user", name.as_str()),
            || set_locked(&state, &name, false),
        )
        .await?;
    info!(by = %soc.name, user = %name, "user unlocked");
    Ok(StatusCode::NO_CONTENT)
}

/// The security team locks and unlocks users, but an administrator's account only another
/// administrator may lock or unlock: a `soc` login (or token) must not be able to shut the
/// administrators out, nor let a locked one back in. A refused attempt is on record too (`kind`,
/// `outcome: "refused"`): the security team reads who tried.
async fn only_admins_touch_admins(
    state: &AppState,
    actor: &AuthUser,
    name: &str,
    kind: Kind,
) -> Result<(), WebError> {
    let target_is_admin = state
        .store
        .get_user(name)?
        .is_some_and(|u| u.role == Role::Admin);
    if target_is_admin && actor.role != Role::Admin {
        let refused = WebError::Forbidden(format!(
            "only an administrator may lock or unlock the administrator {name:?}"
        ));
        let record = Record::new(kind, &actor.name)
            .detail("user", name)
            .detail("outcome", "refused")
            .detail("why", refused.to_string());
        if let Err(e) = state.audit.record(record).await {
            warn!(by = %actor.name, user = %name, error = %e,
                "a refused lock or unlock of an administrator is not in the audit trail");
        }
        return Err(refused);
    }
    Ok(())
}

/// The user named `name`, or 404 (checked before an act is recorded).
fn existing(state: &AppState, name: &str) -> Result<portcullis_store::UserRecord, WebError> {
    state
        .store
        .get_user(name)?
        .ok_or_else(|| WebError::NotFound(format!("no user named {name:?}")))
}

fn set_locked(state: &AppState, name: &str, locked: bool) -> Result<(), WebError> {
    state
        .store
        .update_user(name, &mut |user| {
            let changed = user.locked != locked;
            user.locked = locked;
            changed
        })?
        .ok_or_else(|| WebError::NotFound(format!("no user named {name:?}")))?;
    Ok(())
}
