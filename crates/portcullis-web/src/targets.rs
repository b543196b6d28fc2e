//! Targets (`/targets`): list them (a user sees the ones they are granted, admins all, with
//! addresses), create and delete them (admins), and a one-time `.rdp` file for native clients.
//! The identity routes of RDP targets are in `identity`; the session WebSocket is `crate::ws`.

pub(crate) mod identity;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_audit::{Kind, Record};
use portcullis_secrets::Secret;
use portcullis_store::{Role, TargetKind, TargetRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::audit::admin_change;
use crate::extract::{Admin, AuthUser, Body};
use crate::sessions::close_sessions;
use crate::{ops, AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/targets", get(list_targets).post(create_target))
        .route(
            "/targets/{name}",
            get(identity::get_target).delete(delete_target),
        )
        .route(
            "/targets/{name}/identity",
            axum::routing::put(identity::put_identity),
        )
        .route(
            "/targets/{name}/identity/accept",
            post(identity::accept_identity),
        )
        .route("/targets/{name}/connect", get(crate::ws::connect))
        .route("/targets/{name}/rdp-file", post(rdp_file))
}

/// A target as the API shows it: admins (`with_address`) also see address, account, labels and
/// an RDP target's identity (pinned certificate, NLA).
pub(crate) fn target_json(t: &TargetRecord, with_address: bool) -> serde_json::Value {
    let mut v = json!({ "name": t.name, "kind": t.kind, "description": t.description });
    if with_address {
        v["address"] = json!(t.address);
        v["account"] = json!(t.account);
        v["labels"] = json!(t.labels);
        if t.kind == TargetKind::Rdp {
            v["identity"] = crate::rdp::identity::identity_json(&t.identity);
        }
    }
    v
}

pub(crate) async fn list_targets(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<serde_json::Value>>, WebError> {
    let targets = state.store.list_targets()?;
    let list = if user.role == Role::Admin {
        targets.iter().map(|t| target_json(t, true)).collect()
    } else {
        let granted = state.store.granted_targets(&user.name)?;
        // And those an approved access request opens now, with when that access ends.
        let now = crate::requests::now();
        let requested: Vec<(String, i64)> = state
            .store
            .list_requests()?
            .into_iter()
            .filter(|r| r.user_id == user.id && r.state == portcullis_store::RequestState::Approved)
            .filter_map(|r| r.grant_until.filter(|t| *t > now).map(|t| (r.target, t)))
            .collect();
        targets
            .iter()
            .filter_map(|t| {
                let until = requested
                    .iter()
                    .find(|(name, _)| *name == t.name)
                    .map(|(_, u)| *u);
                if !granted.contains(&t.name) && until.is_none() {
                    return None;
                }
                let mut v = target_json(t, false);
                if let Some(until) = until {
                    v["access_until"] = json!(until);
                }
                Some(v)
            })
            .collect()
    };
    Ok(Json(list))
}

#[derive(Deserialize)]
pub(crate) struct NewTarget {
    name: String,
    #[serde(default = "default_kind")]
    kind: String,
    address: String,
    #[serde(default)]
    account: String,
    password: Secret,
    #[serde(default)]
    description: String,
    #[serde(default)]
    labels: Vec<String>,
}

fn default_kind() -> String {
    "vnc".into()
}

pub(crate) async fn create_target(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(body): Body<NewTarget>,
) -> Result<(StatusCode, Json<serde_json::Value>), WebError> {
    let kind = body
        .kind
        .parse::<TargetKind>()
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let t = ops::prepare_target(
        &state.key,
        ops::NewTarget {
            name: &body.name,
            kind,
            address: &body.address,
            account: &body.account,
            password: body.password.expose(),
            description: &body.description,
            labels: &body.labels,
        },
    )?;
    let shown = target_json(&t, true);
    state
        .audit
        .before(
            admin_change(&admin.name, "target_create", Value::Null, shown.clone()).target(&t.name),
            || Ok(state.store.create_target(&t)?),
        )
        .await?;
    info!(admin = %admin.name, target = %t.name, address = %t.address, "target created");
    Ok((StatusCode::CREATED, Json(shown)))
}

/// A one-time `.rdp` file for a target the user may open, and (in the
/// `x-portcullis-rdp-password` header) the one-time password that goes with it: together they
/// let a native RDP client in once, within the ticket lifetime.
pub(crate) async fn rdp_file(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Result<Response, WebError> {
    let Some(port) = state.rdp_port else {
        return Err(WebError::NotFound(
            "native RDP clients are not served by this gateway (rdp.enabled = false)".into(),
        ));
    };
    if !crate::requests::has_access(&state, &user.name, &name)?
        || state.store.get_target(&name)?.is_none()
    {
        return Err(WebError::NotFound(format!("no target named {name:?}")));
    }
    let (host, port) =
        crate::rdp::tickets::rdp_address(state.rdp_public_address.as_deref(), &uri, &headers, port);
    let ticket = state
        .audit
        .before(
            Record::new(
                Kind::new("rdp_ticket").map_err(|e| WebError::Internal(e.to_string()))?,
                &user.name,
            )
            .target(&name),
            || {
                state.rdp_tickets.issue(&user.name, &user.id, &name).ok_or_else(|| {
                    WebError::TooManyRequests(format!(
                        "too many RDP tickets outstanding (at most {} per user; unused ones expire after {} s)",
                        crate::rdp::tickets::MAX_TICKETS_PER_USER,
                        state.rdp_tickets.ttl().as_secs()
                    ))
                })
            },
        )
        .await?;
    info!(user = %user.name, target = %name, "RDP ticket issued");
    let body = crate::rdp::tickets::rdp_file(&host, port, &user.name, &name, &ticket.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-rdp".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.rdp\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            // The one-time password the client will ask for; the page shows it once.
            (
                header::HeaderName::from_static("x-portcullis-rdp-password"),
                ticket.secret.as_str().to_owned(),
            ),
        ],
        body,
    )
        .into_response())
}

pub(crate) async fn delete_target(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    let gone = || WebError::NotFound(format!("no target named {name:?}"));
    let before = target_json(&state.store.get_target(&name)?.ok_or_else(gone)?, true);
    state
        .audit
        .before(
            admin_change(&admin.name, "target_delete", before, Value::Null).target(&name),
            || {
                if !state.store.delete_target(&name)? {
                    return Err(gone());
                }
                close_sessions(
                    &state,
                    &crate::sessions::SessionFilter::target(&name),
                    "this target was removed by an administrator",
                );
                Ok(())
            },
        )
        .await?;
    info!(admin = %admin.name, target = %name, "target deleted");
    Ok(StatusCode::NO_CONTENT)
}
