//! Logging in and out with a password (`/auth/login`, `/auth/logout`) and who is logged in
//! (`/me`). The second login step is `crate::mfa::api`'s.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_audit::{Kind, Record};
use portcullis_secrets::Secret;
use portcullis_store::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use crate::audit::login_failed;
use crate::auth::{clear_cookie, cookie_token, set_cookie};
use crate::extract::{AuthUser, Body};
use crate::login::{self, Refused, Verified};
use crate::{AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: Secret,
}

#[derive(Serialize)]
pub(crate) struct Me {
    name: String,
    role: Role,
    /// Two-factor authentication is on.
    mfa: bool,
    /// The user's role requires two-factor authentication (`[auth] mfa_required_roles`).
    mfa_required_by_role: bool,
    /// This login may only set up two-factor authentication (the role requires it).
    mfa_enrol_required: bool,
    /// TOTP (a code from an app) is on.
    totp: bool,
    /// Passkeys registered.
    passkeys: usize,
    /// The user's role requires a passkey (phishing-resistant second factor).
    passkey_required_by_role: bool,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Body(body): Body<LoginBody>,
) -> Result<Response, WebError> {
    let username = body.username.clone();
    let attempt = login::Attempt {
        user: &username,
        password: body.password.expose(),
        address: peer.ip(),
    };
    // The verification slot is held to the end, the audit records included.
    let Verified { user, slot: _slot } = match login::check_password(&state, attempt).await {
        Ok(verified) => verified,
        Err(Refused::Oversized) => return Err(WebError::BadCredentials),
        // Busy comes first: a locked-out attempt is recorded within the slots only.
        Err(Refused::Busy | Refused::LockedOut { slot: None, .. }) => {
            return Err(WebError::TooManyRequests(
                "too many logins in progress, try again shortly".into(),
            ))
        }
        Err(Refused::LockedOut {
            wait,
            slot: Some(_slot),
        }) => {
            warn!(user = %username, client = %peer, "login refused: too many failed attempts");
            let why = format!(
                "too many failed logins: try again in {} s",
                wait.as_secs().max(1)
            );
            state
                .audit
                .record(login_failed(&username, &why).detail("address", peer.to_string()))
                .await?;
            return Err(WebError::TooManyRequests(why));
        }
        Err(Refused::Store(e)) => return Err(e.into()),
        Err(Refused::Internal(e)) => return Err(WebError::Internal(e)),
        Err(Refused::SsoRequired(user)) => {
            let why = format!(
                "users of the {} role sign in through single sign-on, not with a password",
                user.role
            );
            warn!(user = %username, "password login refused: single sign-on required");
            state
                .audit
                .record(login_failed(&username, &why).detail("address", peer.to_string()))
                .await?;
            // Answered like a wrong password: the answer does not confirm the password (which
            // may be the one at the provider too). The sign-in page offers the providers.
            return Err(WebError::BadCredentials);
        }
        Err(Refused::WrongPassword) => {
            warn!(user = %username, "login failed");
            state
                .audit
                .record(
                    login_failed(&username, "wrong user name or password")
                        .detail("address", peer.to_string()),
                )
                .await?;
            return Err(WebError::BadCredentials);
        }
    };
    if user.locked {
        warn!(user = %username, "login refused: the account is locked");
        state
            .audit
            .record(
                login_failed(&username, "the account is locked")
                    .detail("address", peer.to_string()),
            )
            .await?;
        return Err(WebError::Forbidden(
            "your account is locked by the security team".into(),
        ));
    }
    match first_factor_passed(&state, user, peer, None).await? {
        FirstFactor::SecondNeeded { pending } => Ok((
            [(header::SET_COOKIE, crate::mfa::set_pending_cookie(&pending))],
            Json(json!({ "mfa_required": true })),
        )
            .into_response()),
        FirstFactor::LoggedIn {
            token,
            name,
            role,
            enrol_only,
        } => Ok((
            [(header::SET_COOKIE, set_cookie(&token))],
            Json(Me {
                passkey_required_by_role: crate::sso::passkey_required(&state, role),
                name,
                role,
                mfa: false,
                mfa_required_by_role: enrol_only,
                mfa_enrol_required: enrol_only,
                totp: false,
                passkeys: 0,
            }),
        )
            .into_response()),
    }
}

/// What follows a first factor (a password, or a single sign-on).
pub(crate) enum FirstFactor {
    /// The second factor must follow: the pending login's token (its cookie).
    SecondNeeded { pending: String },
    /// Logged in: the login's token (its cookie); `enrol_only`: the role requires a second
    /// factor the user has not set up, so the login may only set one up.
    LoggedIn {
        token: String,
        name: String,
        role: Role,
        enrol_only: bool,
    },
}

/// The login of `user`, whose first factor passed from `peer` (`sso`: through a provider): a
/// pending login when their second factor must follow, else a full (or enrol-only) login. On
/// record first.
pub(crate) async fn first_factor_passed(
    state: &AppState,
    user: portcullis_store::UserRecord,
    peer: std::net::SocketAddr,
    sso: Option<crate::sso::LoginSso>,
) -> Result<FirstFactor, WebError> {
    // A role that requires a phishing-resistant factor: a passkey, or an enrol-only login to
    // register one (a code from an app does not do).
    let passkey_required = crate::sso::passkey_required(state, user.role);
    let mfa_required = state.mfa_required_roles.contains(&user.role)
        || (passkey_required && user.passkeys.is_empty());
    let provider = sso.as_ref().map(|s| s.provider.clone());
    // Any second factor the account has must come next (a TOTP user whose role now requires a
    // passkey gives their code first, then may only register a passkey).
    if user.mfa_enabled() {
        // The first factor alone gives no session: the code must follow within two minutes.
        // The account's failure count is cleared only then, so the password does not buy more
        // guesses at the code.
        let mut record = Record::new(Kind::MFA, &user.name)
            .detail("step", if sso.is_some() { "sso" } else { "password" })
            .detail("outcome", "code_required")
            .detail("address", peer.to_string());
        if let Some(p) = &provider {
            record = record.detail("provider", p.clone());
        }
        state.audit.record(record).await?;
        let pending =
            state
                .pending
                .create_with(&user.name, &user.id, crate::auth::now_ms(), sso)?;
        info!(user = %user.name, "first factor accepted; second factor required");
        return Ok(FirstFactor::SecondNeeded { pending });
    }
    state.throttle.succeeded(&user.name);
    // On disk before the browser gets its cookie.
    let mut record = Record::new(Kind::LOGIN, &user.name)
        .detail("entry", "browser")
        .detail("address", peer.to_string());
    if let Some(p) = &provider {
        record = record.detail("sso", p.clone());
    }
    if mfa_required {
        record = record.detail("mfa", "enrol_only");
    }
    state.audit.record(record).await?;
    let token = state.logins.create_login(&user, mfa_required, sso)?;
    info!(user = %user.name, enrol_only = mfa_required, sso = ?provider, "login");
    Ok(FirstFactor::LoggedIn {
        token,
        name: user.name,
        role: user.role,
        enrol_only: mfa_required,
    })
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    req: Request,
) -> Result<Response, WebError> {
    let (parts, _) = req.into_parts();
    // On record before the login ends. A logout only takes privilege away: when the trail
    // cannot take it, the login ends all the same (a user on a shared machine must be able to
    // leave), and the failure is logged.
    if let Err(e) = state
        .audit
        .record(Record::new(Kind::LOGOUT, &user.name))
        .await
    {
        warn!(user = %user.name, error = %e,
            "the logout is not in the audit trail (it cannot be written); the login ends anyway");
    }
    let mut sso = None;
    if let Some(token) = cookie_token(&parts) {
        sso = state.logins.sso_of(&token);
        state.logins.remove(&token)?;
    }
    // Signed in through a provider: the browser goes on to the provider's sign-out, so that
    // the next sign-in there asks again.
    if let Some(url) = match sso {
        Some(sso) => crate::sso::logout_url(&state, &sso).await,
        None => None,
    } {
        return Ok((
            [(header::SET_COOKIE, clear_cookie())],
            Json(json!({ "logout_url": url })),
        )
            .into_response());
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie())],
    )
        .into_response())
}

pub(crate) async fn me(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Me>, WebError> {
    let record = state.store.get_user(&user.name)?;
    let mfa = record.as_ref().is_some_and(|u| u.mfa_enabled());
    let passkeys = record.as_ref().map_or(0, |u| u.passkeys.len());
    let passkey_required = crate::sso::passkey_required(&state, user.role);
    let mfa_required = state.mfa_required_roles.contains(&user.role) || passkey_required;
    Ok(Json(Me {
        name: user.name,
        role: user.role,
        mfa,
        mfa_required_by_role: mfa_required,
        mfa_enrol_required: (mfa_required && !mfa) || (passkey_required && passkeys == 0),
        totp: record.as_ref().is_some_and(|u| u.totp_enabled()),
        passkeys,
        passkey_required_by_role: passkey_required,
    }))
}
