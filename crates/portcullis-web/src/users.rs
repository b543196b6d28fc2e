//! Users (`/users`, admins only): list, create (the password hashed off the async workers) and
//! delete (their logins, tickets and sessions end with them). Locking is the security team's
//! (`crate::sessions::soc`), the second factor's reset is in `crate::mfa::api`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use portcullis_secrets::Secret;
use portcullis_store::Role;
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
        .route("/users", get(list_users).post(create_user))
        .route("/users/{name}", delete(delete_user))
}

pub(crate) async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<serde_json::Value>>, WebError> {
    let users = state.store.list_users()?;
    Ok(Json(
        users
            .iter()
            .map(|u| {
                let mut v = json!({"name": u.name, "role": u.role, "locked": u.locked, "mfa": u.mfa_enabled()});
                if let Some(link) = &u.sso {
                    v["sso"] = json!(link.provider);
                    v["groups"] = json!(u.groups);
                }
                v
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
pub(crate) struct NewUser {
    name: String,
    password: Secret,
    role: Role,
}

pub(crate) async fn create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(body): Body<NewUser>,
) -> Result<(StatusCode, Json<serde_json::Value>), WebError> {
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let u = tokio::task::spawn_blocking(move || {
        ops::prepare_user(&body.name, body.password.expose(), body.role)
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))??;
    let shown = json!({"name": u.name, "role": u.role});
    state
        .audit
        .before(
            admin_change(&admin.name, "user_create", Value::Null, shown.clone()),
            || Ok(state.store.create_user(&u)?),
        )
        .await?;
    info!(admin = %admin.name, user = %u.name, role = %u.role, "user created");
    Ok((StatusCode::CREATED, Json(shown)))
}

pub(crate) async fn delete_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    if name == admin.name {
        return Err(WebError::Conflict(
            "you cannot delete your own account".into(),
        ));
    }
    let gone = || WebError::NotFound(format!("no user named {name:?}"));
    let u = state.store.get_user(&name)?.ok_or_else(gone)?;
    let before = json!({"name": u.name, "role": u.role, "locked": u.locked});
    state
        .audit
        .before(
            admin_change(&admin.name, "user_delete", before, Value::Null),
            || {
                if !state.store.delete_user(&name)? {
                    return Err(gone());
                }
                // Sessions first: whatever fails after, none outlives the account.
                close_sessions(
                    &state,
                    &crate::sessions::SessionFilter::user(&name),
                    "your account was removed by an administrator",
                );
                // The store took the user's grants and API tokens with them; the RDP tickets go
                // here, so that an account created later under the same name inherits nothing,
                // nor the failed-login count of the old one.
                state.rdp_tickets.revoke_user(&name);
                state.throttle.succeeded(&name);
                state.logins.remove_user(&name)?;
                Ok(())
            },
        )
        .await?;
    info!(admin = %admin.name, user = %name, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}
