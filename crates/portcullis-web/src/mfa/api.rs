//! The two-factor routes: the second login step (`POST /auth/mfa`), enrolment
//! (`POST /me/mfa/enrol`, `POST /me/mfa/confirm`) and an administrator's reset
//! (`DELETE /users/{name}/mfa`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use portcullis_store::MfaRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::audit::admin_change;
use crate::auth::{cookie_value, COOKIE};
use crate::extract::{Admin, AuthUser};
use crate::mfa::steps::{check_app_code, mfa_record, second_factor_passed};
use crate::mfa::totp::{base32, otpauth_uri, DIGITS, STEP_SECS};
use crate::mfa::{attempt, renew_recovery_codes, secret_aad, Attempt, CodeUse, PENDING_COOKIE};
use crate::{ops, AppState, WebError};

/// Bytes of a TOTP secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/mfa", post(login_code))
        .route("/me/mfa/enrol", post(enrol))
        .route("/me/mfa/confirm", post(confirm))
        .route("/me/mfa/recovery-codes", post(recovery_codes))
        .route("/users/{name}/mfa", delete(reset))
}

/// The QR code of `text` as a standalone SVG document.
fn qr_svg(text: &str) -> Result<String, WebError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| WebError::Internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

fn wrong_code() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "wrong or already used code" })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

/// `POST /me/mfa/confirm`'s body: the app's code, and proof of a passkey the account has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    code: String,
    #[serde(default)]
    proof: Option<crate::passkeys::Proof>,
}

/// `POST /auth/mfa {code}`: the second step of a login whose password was right.
pub(crate) async fn login_code(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, WebError> {
    let (parts, body) = req.into_parts();
    let pending = cookie_value(&parts.headers, PENDING_COOKIE);
    let now = crate::auth::now_ms();
    let Some((token, name)) = pending.and_then(|t| state.pending.user(&t, now).map(|u| (t, u)))
    else {
        return Err(WebError::Unauthorized);
    };
    let body = axum::body::to_bytes(body, 4096)
        .await
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let CodeBody { code } =
        serde_json::from_slice(&body).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let address = peer.to_string();
    // A role that requires a phishing-resistant factor: no code from an app will do once the
    // account has a passkey (before, the code leads to a login that may only register one).
    if let Some(u) = state.store.get_user(&name)? {
        if crate::sso::passkey_required(&state, u.role) && !u.passkeys.is_empty() {
            return Err(WebError::Forbidden(
                "your role requires a passkey: sign in with your passkey".into(),
            ));
        }
    }
    // A code from the app, or one of the recovery codes (each works once).
    let verdict = {
        let (state, name, ip) = (state.clone(), name.clone(), peer.ip());
        tokio::task::spawn_blocking(move || attempt(&state, &name, ip, &code, CodeUse::SignIn))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))??
    };
    let recovery_left = match verdict {
        Attempt::Locked(wait) => {
            let why = format!(
                "too many failed logins: try again in {} s",
                wait.as_secs().max(1)
            );
            state
                .audit
                .record(mfa_record(&name, "login", "failed").detail("reason", why.as_str()))
                .await?;
            return Err(WebError::TooManyRequests(why));
        }
        Attempt::Wrong => {
            warn!(user = %name, "second factor: wrong code");
            state.pending.failed(&token, crate::auth::now_ms());
            state
                .audit
                .record(mfa_record(&name, "login", "failed").detail("address", address))
                .await?;
            return Ok(wrong_code());
        }
        Attempt::Right { recovery_left } => recovery_left,
    };
    second_factor_passed(&state, &token, &name, peer, "totp", recovery_left).await
}

/// `POST /me/mfa/enrol`: a fresh secret, shown this once (not yet in force).
pub(crate) async fn enrol(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Value>, WebError> {
    let secret = portcullis_secrets::random_bytes(SECRET_BYTES);
    let already_on = || {
        WebError::Conflict(
            "two-factor authentication is already on; an administrator can reset it".into(),
        )
    };
    let current = state
        .store
        .get_user(&user.name)?
        .ok_or(WebError::Unauthorized)?;
    if current.totp_enabled() {
        return Err(already_on());
    }
    // On record before the new secret is stored.
    state
        .audit
        .before(mfa_record(&user.name, "enrol", "started"), || {
            let _guard = state.mfa_lock.lock().unwrap_or_else(|p| p.into_inner());
            let sealed_secret = state.key.seal(&secret, &secret_aad(&user.name));
            let mut on = false;
            let found = state.store.update_user(&user.name, &mut |record| {
                on = record.totp_enabled();
                if on {
                    return false;
                }
                record.mfa = Some(MfaRecord {
                    sealed_secret: sealed_secret.clone(),
                    confirmed: false,
                    last_step: 0,
                    since: ops::now_unix(),
                    recovery: Vec::new(),
                });
                true
            })?;
            if found.is_none() {
                return Err(WebError::Unauthorized);
            }
            if on {
                return Err(already_on());
            }
            Ok(())
        })
        .await?;
    let b32 = Zeroizing::new(base32(&secret));
    let uri = Zeroizing::new(otpauth_uri(&user.name, &b32));
    let svg = qr_svg(&uri)?;
    info!(user = %user.name, "two-factor enrolment started");
    Ok(Json(json!({
        "secret": b32.as_str(),
        "otpauth_uri": uri.as_str(),
        "qr_svg": svg,
        "digits": DIGITS,
        "period": STEP_SECS,
        "algorithm": "SHA1",
    })))
}

/// A code from the app in the body of a logged-in user's request (`{code}`), checked for `step`
/// (`confirm`: it turns MFA on): throttled and counted like a login's, a wrong one on record
/// and answered 400 (the user is logged in, only the code is wrong).
async fn code_from_app(
    state: &AppState,
    peer: SocketAddr,
    user: &AuthUser,
    body: axum::body::Body,
    step: &str,
) -> Result<(), WebError> {
    let body = axum::body::to_bytes(body, 4096)
        .await
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let CodeBody { code } =
        serde_json::from_slice(&body).map_err(|e| WebError::BadRequest(e.to_string()))?;
    check_app_code(state, peer, user, code, step).await
}

/// `POST /me/mfa/confirm {code}`: turns MFA on when the code is right; an enrol-only login
/// becomes a full one. Answers the recovery codes, shown this once.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    req: Request,
) -> Result<Response, WebError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, crate::MAX_BODY)
        .await
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let ConfirmBody { code, proof } =
        serde_json::from_slice(&body).map_err(|e| WebError::BadRequest(e.to_string()))?;
    // An account with a passkey proves it first: whoever holds only its login (a stolen
    // cookie) cannot give it an app of their own (and then pass every other proof with it).
    let me = user.account(&state)?;
    crate::passkeys::prove(&state, peer, &user, &me, &parts.headers, proof, "totp_add").await?;
    // On record before a right code turns the app on (the outcome follows: ok or failed).
    state
        .audit
        .record(mfa_record(&user.name, "confirm", "requested").detail("address", peer.to_string()))
        .await?;
    check_app_code(&state, peer, &user, code, "confirm").await?;
    state
        .audit
        .record(mfa_record(&user.name, "confirm", "ok"))
        .await?;
    // A role that requires a passkey: the app's code does not make the login a full one.
    let passkey_missing = crate::sso::passkey_required(&state, user.role)
        && state
            .store
            .get_user(&user.name)?
            .is_none_or(|u| u.passkeys.is_empty());
    if !passkey_missing {
        if let Some(token) = cookie_value(&parts.headers, COOKIE) {
            state.logins.upgrade(&token)?;
        }
    }
    info!(user = %user.name, "two-factor authentication on");
    let codes = issue_recovery_codes(&state, &user.name).await?;
    Ok(Json(json!({ "mfa": true, "recovery_codes": codes })).into_response())
}

/// On record first, then a fresh set of recovery codes in place of the old ones.
async fn issue_recovery_codes(state: &AppState, name: &str) -> Result<Vec<String>, WebError> {
    state
        .audit
        .record(
            mfa_record(name, "recovery_codes", "issued")
                .detail("count", crate::mfa::RECOVERY_CODES),
        )
        .await?;
    let (state, name) = (state.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || renew_recovery_codes(&state, &name))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
}

/// `POST /me/mfa/recovery-codes {code}`: a new set of recovery codes (shown this once) in place
/// of the old ones, for a code from the app now (whoever holds only the login cannot).
pub(crate) async fn recovery_codes(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    req: Request,
) -> Result<Response, WebError> {
    code_from_app(&state, peer, &user, req.into_body(), "recovery_codes").await?;
    let codes = issue_recovery_codes(&state, &user.name).await?;
    info!(user = %user.name, "new recovery codes issued");
    Ok(Json(json!({ "recovery_codes": codes })).into_response())
}

/// `DELETE /users/{name}/mfa`: the user's second factor is removed (lost phone); their logins
/// end, and a role that requires MFA makes them enrol again at the next login.
pub(crate) async fn reset(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    let gone = || WebError::NotFound(format!("no user named {name:?}"));
    // Not one's own: a stolen administrator's login could otherwise drop every second factor
    // of the account and enrol its own without any proof (the account page changes one's own,
    // proving a factor first; another administrator resets a lost one).
    if name == admin.name {
        return Err(WebError::Forbidden(
            "you cannot reset your own second factor here: change it on your account page, or ask another administrator".into(),
        ));
    }
    let before = state.store.get_user(&name)?.ok_or_else(gone)?.mfa_enabled();
    state
        .audit
        .before(
            admin_change(
                &admin.name,
                "mfa_reset",
                json!({ "user": name, "mfa": before }),
                json!({ "user": name, "mfa": false }),
            ),
            || {
                let _guard = state.mfa_lock.lock().unwrap_or_else(|p| p.into_inner());
                state
                    .store
                    .update_user(&name, &mut |user| {
                        // Every second factor: the app's secret and recovery codes, and passkeys.
                        let had = user.mfa.take().is_some() || !user.passkeys.is_empty();
                        user.passkeys.clear();
                        had
                    })?
                    .ok_or_else(gone)?;
                Ok(())
            },
        )
        .await?;
    state.logins.remove_user(&name)?;
    info!(admin = %admin.name, user = %name, "two-factor authentication reset");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::header;

    use super::*;

    /// The second step completes the login of the account whose password was right, not of a
    /// new account given its name meanwhile (whose code someone may have).
    #[tokio::test]
    async fn a_pending_login_is_its_accounts_not_its_names() {
        use std::sync::Arc;

        use axum::body::Body as HttpBody;
        use axum::extract::ConnectInfo;
        use portcullis_secrets::SecretKey;
        use portcullis_store::{MemoryStore, MfaRecord, Store, UserRecord};
        use tower::ServiceExt;

        let key = SecretKey::generate();
        let secret = b"12345678901234567890";
        let mut carol: UserRecord = serde_json::from_value(json!({
            "name": "carol", "password_hash": "x", "role": "user", "created_at": 0, "locked": false,
        }))
        .unwrap();
        carol.id = "u_new".into();
        carol.mfa = Some(MfaRecord {
            sealed_secret: key.seal(secret, &secret_aad("carol")),
            confirmed: true,
            last_step: 0,
            since: 0,
            recovery: Vec::new(),
        });
        let store = Arc::new(MemoryStore::new());
        store.create_user(&carol).unwrap();
        let state = AppState::new(store, Arc::new(key), portcullis_broker::Broker::default());
        let second_step = |token: String, at: u64| {
            let code = crate::mfa::totp::totp(secret, at);
            let mut req = axum::http::Request::builder()
                .method("POST")
                .uri("/api/v1/auth/mfa")
                .header("cookie", format!("{PENDING_COOKIE}={token}"))
                .header("x-portcullis-csrf", "1")
                .header("content-type", "application/json")
                .body(HttpBody::from(json!({ "code": code }).to_string()))
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
            crate::router(state.clone()).oneshot(req)
        };
        let now = u64::try_from(crate::ops::now_unix()).unwrap();
        // The password step was passed by the account carol was before (another id).
        let stale = state
            .pending
            .create("carol", "u_old", crate::auth::now_ms())
            .unwrap();
        let res = second_step(stale, now).await.unwrap();
        assert_eq!(res.status(), axum::http::StatusCode::UNAUTHORIZED);
        assert!(res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("pc_session=")));
        // The account's own pending login gets in (with the next code: the last one is spent).
        let own = state
            .pending
            .create("carol", "u_new", crate::auth::now_ms())
            .unwrap();
        let res = second_step(own, now + STEP_SECS).await.unwrap();
        assert_eq!(res.status(), axum::http::StatusCode::OK);
    }

    #[test]
    fn the_uri_and_qr_code() {
        let uri = otpauth_uri("alice", "GEZDGNBV");
        assert!(
            uri.starts_with("otpauth://totp/Portcullis:alice?secret=GEZDGNBV&issuer=Portcullis")
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(!svg.contains("<script"));
    }
}
