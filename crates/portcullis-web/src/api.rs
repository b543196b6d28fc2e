//! JSON API handlers. Every handler names who may call it through its extractor
//! ([`AuthUser`] or [`Admin`]); nothing here is reachable without one, except login.

use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_audit::{Kind, Record};
use portcullis_core::session::{SessionEnd, SessionInfo};
use portcullis_secrets::Secret;
use portcullis_store::{Role, TargetKind, TargetRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::auth::{clear_cookie, cookie_token, set_cookie, Admin, AuthUser, Soc};
use crate::ops::{self, OpsError};
use crate::{AppState, WebError};

/// `Json` whose rejections are JSON errors like every other.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(WebError::TooLarge(format!(
                    "the request body is larger than the {} KiB allowed",
                    crate::MAX_BODY / 1024
                )))
            }
            Err(e) => Err(WebError::BadRequest(e.body_text())),
        }
    }
}

impl From<OpsError> for WebError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Invalid(m) => WebError::BadRequest(m),
            OpsError::Store(s) => s.into(),
            OpsError::Crypto(m) => WebError::Internal(m),
        }
    }
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
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Body(body): Body<LoginBody>,
) -> Result<Response, WebError> {
    if body.username.len() > 256 || body.password.expose().len() > ops::MAX_SECRET_LEN {
        return Err(WebError::BadCredentials);
    }
    // Each verification takes ~19 MiB and tens of ms of CPU: a few at a time, never a pile-up.
    let Ok(_permit) = state.login_slots.clone().try_acquire_owned() else {
        return Err(WebError::TooManyRequests(
            "too many logins in progress, try again shortly".into(),
        ));
    };
    let username = body.username.clone();
    if let Err(wait) = state
        .throttle
        .check(&username, peer.ip(), std::time::Instant::now())
    {
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
    let user = state.store.get_user(&body.username)?;
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let verified = tokio::task::spawn_blocking(move || match &user {
        Some(u) => portcullis_secrets::verify_password(body.password.expose(), &u.password_hash)
            .then(|| u.clone()),
        None => {
            portcullis_secrets::burn_verify_time(body.password.expose());
            None
        }
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?;
    let Some(user) = verified else {
        warn!(user = %username, "login failed");
        state
            .throttle
            .failed(&username, peer.ip(), std::time::Instant::now());
        state
            .audit
            .record(
                login_failed(&username, "wrong user name or password")
                    .detail("address", peer.to_string()),
            )
            .await?;
        return Err(WebError::BadCredentials);
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
    let mfa_required = state.mfa_required_roles.contains(&user.role);
    if user.mfa_enabled() {
        // The password alone gives no session: the code must follow within two minutes. The
        // account's failure count is cleared only then, so the password does not buy more
        // guesses at the code.
        state
            .audit
            .record(
                Record::new(Kind::MFA, &user.name)
                    .detail("step", "password")
                    .detail("outcome", "code_required")
                    .detail("address", peer.to_string()),
            )
            .await?;
        let pending = state.pending.create(&user.name, std::time::Instant::now());
        info!(user = %user.name, "password accepted; second factor required");
        return Ok((
            [(header::SET_COOKIE, crate::mfa::set_pending_cookie(&pending))],
            Json(json!({ "mfa_required": true })),
        )
            .into_response());
    }
    state.throttle.succeeded(&user.name);
    // On disk before the browser gets its cookie.
    let mut record = Record::new(Kind::LOGIN, &user.name)
        .detail("entry", "browser")
        .detail("address", peer.to_string());
    if mfa_required {
        record = record.detail("mfa", "enrol_only");
    }
    state.audit.record(record).await?;
    let token = state.logins.create_login(&user, mfa_required);
    info!(user = %user.name, enrol_only = mfa_required, "login");
    Ok((
        [(header::SET_COOKIE, set_cookie(&token))],
        Json(Me {
            name: user.name,
            role: user.role,
            mfa: false,
            mfa_required_by_role: mfa_required,
            mfa_enrol_required: mfa_required,
        }),
    )
        .into_response())
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    req: Request,
) -> Result<Response, WebError> {
    let (parts, _) = req.into_parts();
    if let Some(token) = cookie_token(&parts) {
        state.logins.remove(&token);
    }
    state
        .audit
        .record(Record::new(Kind::LOGOUT, &user.name))
        .await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie())],
    )
        .into_response())
}

/// A failed login attempt, for the audit trail (`name` as typed: it may be no user at all).
pub(crate) fn login_failed(name: &str, why: &str) -> Record {
    // A password typed into the user name field must not end up in the trail whole.
    let shown: String = name.chars().take(64).collect();
    Record::new(Kind::LOGIN_FAILED, shown)
        .detail("entry", "browser")
        .detail("reason", why)
}

/// An administrator's change, for the audit trail: what changed, and its state before and after
/// (never a secret).
pub(crate) fn admin_change(admin: &str, action: &str, before: Value, after: Value) -> Record {
    Record::new(Kind::ADMIN_CHANGE, admin)
        .detail("action", action)
        .detail("before", before)
        .detail("after", after)
}

pub(crate) async fn me(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Me>, WebError> {
    let mfa = state
        .store
        .get_user(&user.name)?
        .is_some_and(|u| u.mfa_enabled());
    let mfa_required = state.mfa_required_roles.contains(&user.role);
    Ok(Json(Me {
        name: user.name,
        role: user.role,
        mfa,
        mfa_required_by_role: mfa_required,
        mfa_enrol_required: mfa_required && !mfa,
    }))
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
            v["identity"] = crate::target_identity::identity_json(&t.identity);
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
        targets
            .iter()
            .filter(|t| granted.contains(&t.name))
            .map(|t| target_json(t, false))
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
    if !state.store.has_grant(&user.name, &name)? || state.store.get_target(&name)?.is_none() {
        return Err(WebError::NotFound(format!("no target named {name:?}")));
    }
    let (host, port) =
        crate::rdp_tickets::rdp_address(state.rdp_public_address.as_deref(), &uri, &headers, port);
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
                        crate::rdp_tickets::MAX_TICKETS_PER_USER,
                        state.rdp_tickets.ttl().as_secs()
                    ))
                })
            },
        )
        .await?;
    info!(user = %user.name, target = %name, "RDP ticket issued");
    let body = crate::rdp_tickets::rdp_file(&host, port, &user.name, &name, &ticket.id);
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
                    |s| s.target == name,
                    "this target was removed by an administrator",
                );
                Ok(())
            },
        )
        .await?;
    info!(admin = %admin.name, target = %name, "target deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<serde_json::Value>>, WebError> {
    let users = state.store.list_users()?;
    Ok(Json(
        users
            .iter()
            .map(|u| json!({"name": u.name, "role": u.role, "locked": u.locked, "mfa": u.mfa_enabled()}))
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
                state.logins.remove_user(&name);
                // The store took the user's grants and API tokens with them; the in-memory RDP
                // tickets go here, so that an account created later under the same name
                // inherits nothing, nor the failed-login count of the old one.
                state.rdp_tickets.revoke_user(&name);
                state.throttle.succeeded(&name);
                close_sessions(
                    &state,
                    |s| s.user == name,
                    "your account was removed by an administrator",
                );
                Ok(())
            },
        )
        .await?;
    info!(admin = %admin.name, user = %name, "user deleted");
    Ok(StatusCode::NO_CONTENT)
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
                    |s| s.user == user && s.target == target,
                    "your access to this target was revoked by an administrator",
                );
                Ok(())
            },
        )
        .await?;
    info!(admin = %admin.name, %user, %target, "grant deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Closes the live sessions that `pick` selects: revocations take effect at once.
pub(crate) fn close_sessions(state: &AppState, pick: impl Fn(&SessionInfo) -> bool, message: &str) {
    for s in state.broker.list().into_iter().filter(|s| pick(s)) {
        state.broker.close(
            &s.id,
            SessionEnd::ClosedByAdmin {
                message: message.to_owned(),
            },
        );
    }
}

fn session_json(s: &SessionInfo) -> serde_json::Value {
    let started =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(s.started_at_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    json!({
        "id": s.id, "user": s.user, "target": s.target, "client_addr": s.client_addr,
        "started_at": started, "state": s.state, "entry": s.entry, "frozen": s.frozen,
    })
}

pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    _soc: Soc,
) -> Json<Vec<serde_json::Value>> {
    Json(state.broker.list().iter().map(session_json).collect())
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

pub(crate) async fn not_found() -> WebError {
    WebError::NotFound("no such API route".into())
}
