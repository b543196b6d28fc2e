//! Grants (`/grants`, admins only): which user may open which target. Revoking one closes the
//! user's live sessions on that target at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::audit::admin_change;
use crate::extract::{Admin, Body};
use crate::sessions::close_sessions;
use crate::{ops, AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/grants", get(list_grants).post(create_grant))
        .route("/grants/{user}/{target}", delete(delete_grant))
}

pub(crate) async fn list_grants(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<serde_json::Value>>, WebError> {
    let grants = state.store.list_grants()?;
    Ok(Json(
        grants
            .iter()
            .map(|g| json!({"user": g.user, "target": g.target}))
            .collect(),
    ))
}

#[derive(Deserialize)]
pub(crate) struct NewGrant {
    user: String,
    target: String,
}

pub(crate) async fn create_grant(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(body): Body<NewGrant>,
) -> Result<(StatusCode, Json<serde_json::Value>), WebError> {
    let shown = json!({"user": body.user, "target": body.target});
    state
        .audit
        .before(
            admin_change(&admin.name, "grant_create", Value::Null, shown.clone())
                .target(&body.target),
            || {
                Ok(state
                    .store
                    .create_grant(&body.user, &body.target, ops::now_unix())?)
            },
        )
        .await?;
    info!(admin = %admin.name, user = %body.user, target = %body.target, "grant created");
    Ok((StatusCode::CREATED, Json(shown)))
}

pub(crate) async fn delete_grant(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((user, target)): Path<(String, String)>,
) -> Result<StatusCode, WebError> {
    let gone = || WebError::NotFound(format!("no grant of {target:?} to {user:?}"));
    if !state.store.has_grant(&user, &target)? {
        return Err(gone());
    }
    state
        .audit
        .before(
            admin_change(
                &admin.name,
                "grant_delete",
                json!({"user": user, "target": target}),
                Value::Null,
            )
            .target(&target),
            || {
                if !state.store.delete_grant(&user, &target)? {
                    return Err(gone());
                }
                close_sessions(
                    &state,
                    &crate::sessions::SessionFilter {
                        user: Some(user.clone()),
                        target: Some(target.clone()),
                    },
                    "your access to this target was revoked by an administrator",
                );
                Ok(())
            },
        )
        .await?;
    info!(admin = %admin.name, %user, %target, "grant deleted");
    Ok(StatusCode::NO_CONTENT)
}
