//! `/tokens` (admins only): create a token for a user (its text shown once), list them (never
//! their secrets), revoke one.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use portcullis_store::TokenRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::audit::admin_change;
use crate::extract::{Admin, Body};
use crate::tokens::{secret_hash, SCOPES, SCOPE_INFO, TOKEN_PREFIX};
use crate::{ops, AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/scopes", get(scopes))
        .route("/tokens/{id}", delete(revoke))
}

/// Longest token lifetime.
const MAX_DAYS: u64 = 366;
/// Most tokens at once (over all users).
const MAX_TOKENS: usize = 1000;

/// A token as the API lists it: never its secret or hash.
fn token_json(t: &TokenRecord) -> Value {
    json!({
        "id": t.id, "user": t.user, "name": t.name, "scopes": t.scopes,
        "created_at": t.created_at, "expires_at": t.expires_at, "created_by": t.created_by,
        "expired": ops::now_unix() >= t.expires_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    user: String,
    name: String,
    scopes: Vec<String>,
    #[serde(default = "default_days")]
    expires_in_days: u64,
}

fn default_days() -> u64 {
    30
}

/// Checks a new token's fields; returns its scopes, deduplicated, in table order.
fn checked(body: &NewToken) -> Result<Vec<String>, WebError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(WebError::BadRequest(
            "name: 1 to 64 printable characters".into(),
        ));
    }
    if body.scopes.is_empty() {
        return Err(WebError::BadRequest(format!(
            "scopes: give at least one of {}",
            SCOPES.join(", ")
        )));
    }
    if let Some(bad) = body.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(WebError::BadRequest(format!(
            "scopes: unknown scope {:?}: expected one of {}",
            bad.chars().take(40).collect::<String>(),
            SCOPES.join(", ")
        )));
    }
    if body.expires_in_days == 0 || body.expires_in_days > MAX_DAYS {
        return Err(WebError::BadRequest(format!(
            "expires_in_days: between 1 and {MAX_DAYS}"
        )));
    }
    Ok(SCOPES
        .iter()
        .filter(|s| body.scopes.iter().any(|b| b == *s))
        .map(|s| (*s).to_owned())
        .collect())
}

/// `POST /tokens`: a new token; its text is in this answer only.
pub(crate) async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(body): Body<NewToken>,
) -> Result<(StatusCode, Json<Value>), WebError> {
    let scopes = checked(&body)?;
    let Some(owner) = state.store.get_user(&body.user)? else {
        return Err(WebError::NotFound(format!("no user named {:?}", body.user)));
    };
    if state.store.list_tokens()?.len() >= MAX_TOKENS {
        return Err(WebError::Conflict(format!(
            "at most {MAX_TOKENS} API tokens: revoke some first"
        )));
    }
    let id = hex_id();
    let secret = zeroize::Zeroizing::new(portcullis_secrets::random_token(32));
    let now = ops::now_unix();
    let days = Duration::from_secs(body.expires_in_days * 86_400).as_secs();
    let record = TokenRecord {
        id: id.clone(),
        user: body.user.clone(),
        user_id: owner.id,
        name: body.name.trim().to_owned(),
        scopes,
        secret_hash: secret_hash(&secret),
        created_at: now,
        expires_at: now.saturating_add(i64::try_from(days).unwrap_or(i64::MAX)),
        created_by: admin.name.clone(),
    };
    let shown = token_json(&record);
    state
        .audit
        .before(
            admin_change(&admin.name, "token_create", Value::Null, shown.clone()),
            || Ok(state.store.put_token(&record)?),
        )
        .await?;
    info!(admin = %admin.name, user = %record.user, token = %record.name, "API token created");
    let mut answer = shown;
    answer["token"] = json!(format!("{TOKEN_PREFIX}{id}_{}", secret.as_str()));
    Ok((StatusCode::CREATED, Json(answer)))
}

fn hex_id() -> String {
    portcullis_secrets::random_bytes(8)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET /tokens`: every token, without secrets.
pub(crate) async fn list(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<Value>>, WebError> {
    Ok(Json(
        state.store.list_tokens()?.iter().map(token_json).collect(),
    ))
}

/// `GET /tokens/scopes`: every scope a token may have, with what it allows.
pub(crate) async fn scopes(_admin: Admin) -> Json<Value> {
    let scopes: Vec<Value> = SCOPE_INFO
        .iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    Json(json!({ "scopes": scopes }))
}

/// `DELETE /tokens/{id}`: the token stops working at once.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    let before = state
        .store
        .get_token(&id)?
        .ok_or_else(|| WebError::NotFound(format!("no API token {id:?}")))?;
    state
        .audit
        .before(
            admin_change(
                &admin.name,
                "token_revoke",
                token_json(&before),
                Value::Null,
            ),
            || Ok(state.store.delete_token(&id)?),
        )
        .await?;
    info!(admin = %admin.name, token = %before.name, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tokens::{AUDIT_READ, SESSIONS_READ};

    #[test]
    fn new_tokens_are_checked() {
        let body = |name: &str, scopes: &[&str], days: u64| NewToken {
            user: "alice".into(),
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_in_days: days,
        };
        assert_eq!(
            checked(&body("ci", &[AUDIT_READ, SESSIONS_READ, AUDIT_READ], 7)).unwrap(),
            [SESSIONS_READ, AUDIT_READ]
        );
        assert!(checked(&body("", &[AUDIT_READ], 7)).is_err());
        assert!(checked(&body("ci", &[], 7)).is_err());
        assert!(checked(&body("ci", &["root"], 7)).is_err());
        assert!(checked(&body("ci", &[AUDIT_READ], 0)).is_err());
        assert!(checked(&body("ci", &[AUDIT_READ], 400)).is_err());
    }
}
