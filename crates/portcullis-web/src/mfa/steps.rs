//! The steps of two-factor authentication shared by the code and passkey routes (`mfa::api`,
//! `passkeys`): finishing a login whose second factor was right, and checking a logged-in
//! user's code from their app. Names neither of those modules (no import circle).

use std::net::SocketAddr;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_audit::{Kind, Record};
use serde_json::json;
use tracing::{info, warn};

use crate::auth::set_cookie;
use crate::extract::AuthUser;
use crate::mfa::{attempt, clear_pending_cookie, Attempt, CodeUse};
use crate::{AppState, WebError};

/// The audit record of an MFA `step` of `user` and its `outcome`.
pub(crate) fn mfa_record(user: &str, step: &str, outcome: &str) -> Record {
    Record::new(Kind::MFA, user)
        .detail("step", step)
        .detail("outcome", outcome)
}

/// The second factor (`factor`: `totp` or `passkey`) of the pending login `token` of `name`
/// from `peer` was right: the pending login is used up and the full login made, on record
/// first. `recovery_left`: a recovery code was used, and how many are left.
pub(crate) async fn second_factor_passed(
    state: &AppState,
    token: &str,
    name: &str,
    peer: SocketAddr,
    factor: &str,
    recovery_left: Option<usize>,
) -> Result<Response, WebError> {
    let address = peer.to_string();
    let name = name.to_owned();
    let Some((_, user_id, sso)) = state.pending.take_with_sso(token, crate::auth::now_ms()) else {
        return Err(WebError::Unauthorized);
    };
    let user = state.store.get_user(&name)?.ok_or(WebError::Unauthorized)?;
    // The account whose password was right, not a new one given its name since.
    if user.id != user_id {
        warn!(user = %name, "second factor: the account was replaced since its password step");
        return Err(WebError::Unauthorized);
    }
    if user.locked {
        return Err(WebError::Forbidden(
            "your account is locked by the security team".into(),
        ));
    }
    state.throttle.succeeded(&name);
    let mut ok_record = mfa_record(&name, "login", "ok")
        .detail("address", address.as_str())
        .detail("factor", factor);
    if let Some(left) = recovery_left {
        ok_record = ok_record
            .detail("recovery_code", true)
            .detail("recovery_codes_left", left);
    }
    state.audit.record(ok_record).await?;
    state
        .audit
        .record(
            Record::new(Kind::LOGIN, &name)
                .detail("entry", "browser")
                .detail("mfa", true)
                .detail("address", address),
        )
        .await?;
    // A role that requires a passkey, and none yet (a TOTP user): this login may only
    // register one.
    let enrol_only = crate::sso::passkey_required(state, user.role) && user.passkeys.is_empty();
    let session = state.logins.create_login(&user, enrol_only, sso)?;
    info!(user = %name, "login with second factor");
    let mut res = Json(json!({
        "name": user.name,
        "role": user.role,
        "mfa": true,
        "mfa_required_by_role": state.mfa_required_roles.contains(&user.role),
        "mfa_enrol_required": enrol_only,
        "totp": user.totp_enabled(),
        "passkeys": user.passkeys.len(),
        "passkey_required_by_role": crate::sso::passkey_required(state, user.role),
        "recovery_codes_left": recovery_left,
    }))
    .into_response();
    let headers = res.headers_mut();
    for cookie in [set_cookie(&session), clear_pending_cookie()] {
        if let Ok(v) = header::HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// A code from the app given by a logged-in user for `step` (`confirm`: it turns the app on).
pub(crate) async fn check_app_code(
    state: &AppState,
    peer: SocketAddr,
    user: &AuthUser,
    code: String,
    step: &str,
) -> Result<(), WebError> {
    let what = if step == "confirm" {
        CodeUse::Confirm
    } else {
        CodeUse::App
    };
    let verdict = {
        let (state, name, ip) = (state.clone(), user.name.clone(), peer.ip());
        tokio::task::spawn_blocking(move || attempt(&state, &name, ip, &code, what))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))??
    };
    match verdict {
        Attempt::Locked(wait) => Err(WebError::TooManyRequests(format!(
            "too many wrong codes: try again in {} s",
            wait.as_secs().max(1)
        ))),
        Attempt::Wrong => {
            state
                .audit
                .record(
                    mfa_record(&user.name, step, "failed")
                        .detail("factor", "app")
                        .detail("address", peer.to_string()),
                )
                .await?;
            Err(WebError::BadRequest(
                "wrong code: enter the code your app shows now".into(),
            ))
        }
        Attempt::Right { .. } => Ok(()),
    }
}
