//! Passkeys (WebAuthn, `webauthn-rs`) as a second factor beside TOTP: phishing-resistant (the
//! browser binds each assertion to the gateway's origin), and required for the roles of the
//! sign-on settings' `passkey_required_for_roles`.
//!
//! - `GET /me/passkeys`, `POST /me/passkeys/options` (registration options),
//!   `POST /me/passkeys {name, credential, proof}` (register),
//!   `DELETE /me/passkeys/{id} {proof}`, `POST /me/passkeys/proof` (assertion options for a
//!   proof). A user who has a second factor proves one to change their passkeys (`proof`: a
//!   code from the app, or an assertion of one of their passkeys): whoever holds only a login
//!   (a stolen cookie) can neither add their own passkey nor remove the user's;
//! - `POST /auth/mfa/passkey/options` and `POST /auth/mfa/passkey {credential}`: the second
//!   login step with a passkey, for the pending login of the `pc_mfa` cookie.
//!
//! The relying party is the gateway's public URL (`SsoSettings::public_url`): its host is the
//! RP id, the URL the only origin accepted. A ceremony's state waits in the short-lived store
//! (sealed, 5 minutes, one at a time per account or pending login).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use portcullis_audit::{Kind, Record};
use portcullis_store::{Ephemeral, EphemeralChange, PasskeyRecord, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::auth::{cookie_value, now_ms};
use crate::extract::{Admin, AuthUser, Body};
use crate::sso::SsoSettings;
use crate::{AppState, WebError};

/// The audit record of a passkey registered or removed (`outcome`) by `user`.
fn passkey_record(user: &str, outcome: &str, passkey: String) -> Record {
    Record::new(Kind::MFA, user)
        .detail("step", "passkey")
        .detail("outcome", outcome)
        .detail("passkey", passkey)
}

/// The store's space for ceremonies under way.
pub(crate) const CEREMONY_SPACE: &str = "passkey_ceremony";
/// How long a ceremony may take.
const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;
/// Most passkeys one account keeps.
const MAX_PASSKEYS: usize = 10;
/// Longest passkey name.
const MAX_NAME: usize = 64;

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/me/passkeys", get(list).post(register))
        .route("/me/passkeys/options", post(register_options))
        .route("/me/passkeys/{id}", delete(remove))
        .route("/me/passkeys/proof", post(proof_options))
        .route("/auth/mfa/passkey/options", post(login_options))
        .route("/auth/mfa/passkey", post(login))
        .route("/users/{name}/passkeys", get(list_of))
}

/// The relying party of the gateway's public URL; `Err` when none is set.
fn relying_party(state: &AppState) -> Result<(Webauthn, SsoSettings), WebError> {
    let settings = SsoSettings::load(&*state.store)?;
    let url = settings.public_url.clone().ok_or_else(|| {
        WebError::Conflict(
            "passkeys need the gateway's public URL (Admin › Sign-on): it is not set".into(),
        )
    })?;
    let origin = Url::parse(&url).map_err(|e| WebError::Internal(e.to_string()))?;
    let rp_id = origin
        .host_str()
        .ok_or_else(|| WebError::Internal("the public URL has no host".into()))?
        .to_owned();
    let webauthn = WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| b.rp_name("Portcullis").build())
        .map_err(|e| {
            WebError::Conflict(format!(
                "passkeys cannot use the public URL {url:?} (its host must be a domain name): {e}"
            ))
        })?;
    Ok((webauthn, settings))
}

/// The WebAuthn user handle of an account: derived from its immutable id (never its name).
fn user_handle(user: &UserRecord) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("portcullis user handle v1:{}", user.id));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

fn passkeys_of(user: &UserRecord) -> Vec<Passkey> {
    user.passkeys
        .iter()
        .filter_map(|p| serde_json::from_value(p.credential.clone()).ok())
        .collect()
}

/// A credential id as kept and listed: base64url without padding (as the browser names it).
fn credential_id(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ceremony_aad(key: &str) -> Vec<u8> {
    format!("portcullis passkey ceremony v1:{key}").into_bytes()
}

/// Keeps a ceremony's state under `key` (replacing any earlier one of the same key).
fn keep<T: serde::Serialize>(
    state: &AppState,
    key: &str,
    owner: &str,
    value: &T,
) -> Result<(), WebError> {
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(value).map_err(|e| WebError::Internal(e.to_string()))?,
    );
    let entry = Ephemeral {
        owner: owner.to_owned(),
        value: state.key.seal(&plain, &ceremony_aad(key)),
        expires_at_ms: now_ms() + CEREMONY_TTL_MS,
    };
    state
        .store
        .ephemeral_update(CEREMONY_SPACE, key, now_ms(), &mut |_| {
            EphemeralChange::Put(entry.clone())
        })?;
    Ok(())
}

/// Takes (once) the ceremony state under `key`.
fn take<T: serde::de::DeserializeOwned>(
    state: &AppState,
    key: &str,
) -> Result<Option<T>, WebError> {
    let mut taken = None;
    state
        .store
        .ephemeral_update(CEREMONY_SPACE, key, now_ms(), &mut |entry| {
            taken = entry.map(|e| e.value.clone());
            EphemeralChange::Delete
        })?;
    Ok(taken.and_then(|sealed| {
        let plain = zeroize::Zeroizing::new(state.key.open(&sealed, &ceremony_aad(key)).ok()?);
        serde_json::from_slice(&plain).ok()
    }))
}

fn listed(user: &UserRecord) -> Value {
    json!(user
        .passkeys
        .iter()
        .map(|p| json!({"id": p.id, "name": p.name, "created_at": p.created_at, "last_used_at": p.last_used_at}))
        .collect::<Vec<_>>())
}

async fn list(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>, WebError> {
    let me = user.account(&state)?;
    let settings = SsoSettings::load(&*state.store)?;
    Ok(Json(json!({
        "passkeys": listed(&me),
        "required_by_role": settings.passkey_required_for(me.role),
        "available": settings.public_url.is_some(),
    })))
}

/// An administrator's view of a user's passkeys (names and dates only).
async fn list_of(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, WebError> {
    let u = state
        .store
        .get_user(&name)?
        .ok_or_else(|| WebError::NotFound(format!("no user named {name:?}")))?;
    Ok(Json(json!({ "passkeys": listed(&u) })))
}

async fn register_options(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Value>, WebError> {
    let me = user.account(&state)?;
    if me.passkeys.len() >= MAX_PASSKEYS {
        return Err(WebError::Conflict(format!(
            "at most {MAX_PASSKEYS} passkeys: remove one first"
        )));
    }
    let (webauthn, _) = relying_party(&state)?;
    let exclude = passkeys_of(&me)
        .iter()
        .map(|p| p.cred_id().clone())
        .collect::<Vec<_>>();
    let (options, registration) = webauthn
        .start_passkey_registration(user_handle(&me), &me.name, &me.name, Some(exclude))
        .map_err(|e| WebError::Internal(format!("passkey registration: {e}")))?;
    keep(&state, &format!("reg:{}", me.id), &me.name, &registration)?;
    Ok(Json(
        serde_json::to_value(options).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPasskey {
    name: String,
    credential: RegisterPublicKeyCredential,
    #[serde(default)]
    proof: Option<Proof>,
}

/// Proof of a second factor the caller has: a code from their app, or an assertion of one of
/// their passkeys (options from `POST /me/passkeys/proof`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Proof {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    credential: Option<PublicKeyCredential>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Removal {
    #[serde(default)]
    proof: Option<Proof>,
}

/// The short-lived store's key of a proof ceremony of account `id`.
fn proof_key(id: &str) -> String {
    format!("proof:{id}")
}

/// `POST /me/passkeys/proof`: assertion options for proving one of the caller's passkeys
/// before changing them.
async fn proof_options(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Value>, WebError> {
    let me = user.account(&state)?;
    let keys = passkeys_of(&me);
    if keys.is_empty() {
        return Err(WebError::Conflict("you have no passkey".into()));
    }
    let (webauthn, _) = relying_party(&state)?;
    let (options, authentication) = webauthn
        .start_passkey_authentication(&keys)
        .map_err(|e| WebError::Internal(format!("passkey proof: {e}")))?;
    keep(&state, &proof_key(&me.id), &me.name, &authentication)?;
    Ok(Json(
        serde_json::to_value(options).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

/// What [`prove`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proved {
    /// A second factor was proved.
    Yes,
    /// Nothing to prove: the account has no second factor (the change must find it so still).
    NoFactor,
    /// Nothing to prove: an enrol-only login of an account that has no passkey yet, whose
    /// second step (its app's code, if any) was just passed (the change must find no passkey).
    EnrolOnly,
}

impl Proved {
    /// Whether the stored account `u` still needs no proof (checked inside the change, so a
    /// factor added meanwhile is not passed over).
    pub(crate) fn still_holds(self, u: &UserRecord) -> bool {
        match self {
            Proved::Yes => true,
            Proved::NoFactor => !u.mfa_enabled(),
            Proved::EnrolOnly => u.passkeys.is_empty(),
        }
    }
}

/// Checks that the caller proved a second factor they have before `step` (`passkey_add`,
/// `passkey_remove`, `totp_add`) changes their factors. Nothing to prove without any second
/// factor, nor for an enrol-only login (of this account) while the account has no passkey. A
/// failed proof counts toward the lock-out and is on record. The caller's change checks
/// [`Proved::still_holds`] on the stored account.
pub(crate) async fn prove(
    state: &AppState,
    peer: SocketAddr,
    user: &AuthUser,
    me: &UserRecord,
    headers: &axum::http::HeaderMap,
    proof: Option<Proof>,
    step: &str,
) -> Result<Proved, WebError> {
    let enrol_only = cookie_value(headers, crate::auth::COOKIE)
        .and_then(|token| state.logins.lookup(&token))
        .is_some_and(|(name, id, enrol_only)| enrol_only && name == me.name && id == me.id);
    if !me.mfa_enabled() {
        return Ok(Proved::NoFactor);
    }
    if enrol_only && me.passkeys.is_empty() {
        return Ok(Proved::EnrolOnly);
    }
    let missing = || {
        WebError::BadRequest(
            "prove a second factor first (proof): a code from your app or one of your passkeys"
                .into(),
        )
    };
    let proof = proof.ok_or_else(missing)?;
    if let Some(code) = proof.code {
        if !me.totp_enabled() {
            return Err(WebError::BadRequest(
                "you have no authenticator app: prove one of your passkeys".into(),
            ));
        }
        crate::mfa::steps::check_app_code(state, peer, user, code, step).await?;
        return Ok(Proved::Yes);
    }
    let credential = proof.credential.ok_or_else(missing)?;
    if let Err(wait) = state.throttle.check(&me.name, peer.ip(), now_ms()) {
        return Err(WebError::TooManyRequests(format!(
            "too many failed attempts: try again in {} s",
            wait.as_secs().max(1)
        )));
    }
    let authentication: Option<PasskeyAuthentication> = take(state, &proof_key(&me.id))?;
    let verified = authentication
        .ok_or_else(|| "no passkey proof under way (or it expired)".to_owned())
        .and_then(|a| verify_assertion(state, &me.name, &credential, &a));
    if let Err(why) = verified {
        warn!(user = %me.name, reason = %why, "passkey proof refused");
        assertion_failed(state, &me.name, step, &why, peer).await?;
        return Err(WebError::BadRequest(
            "the passkey proof was refused: try again".into(),
        ));
    }
    Ok(Proved::Yes)
}

/// A refused passkey assertion of `name` for `step` (`login`, or a proof): counted toward the
/// lock-out like a wrong password, and on record with why and from where.
async fn assertion_failed(
    state: &AppState,
    name: &str,
    step: &str,
    why: &str,
    peer: SocketAddr,
) -> Result<(), WebError> {
    state.throttle.failed(name, peer.ip(), now_ms());
    state
        .audit
        .record(
            crate::mfa::steps::mfa_record(name, step, "failed")
                .detail("factor", "passkey")
                .detail("reason", why)
                .detail("address", peer.to_string()),
        )
        .await
}

/// Finishes a passkey assertion of `name` against `authentication` and keeps the passkey's
/// counter and flags up to date (a cloned authenticator shows as a counter that goes back,
/// which the library refuses). Refused too when the passkey was removed meanwhile.
fn verify_assertion(
    state: &AppState,
    name: &str,
    credential: &PublicKeyCredential,
    authentication: &PasskeyAuthentication,
) -> Result<(), String> {
    let (webauthn, _) = relying_party(state).map_err(|e| e.to_string())?;
    let result = webauthn
        .finish_passkey_authentication(credential, authentication)
        .map_err(|e| e.to_string())?;
    let used = credential_id(result.cred_id().as_ref());
    let now = crate::ops::now_unix();
    let mut still_there = false;
    state
        .store
        .update_user(name, &mut |u| {
            still_there = false;
            let mut changed = false;
            for p in &mut u.passkeys {
                if p.id != used {
                    continue;
                }
                if let Ok(mut key) = serde_json::from_value::<Passkey>(p.credential.clone()) {
                    let _ = key.update_credential(&result);
                    if let Ok(v) = serde_json::to_value(&key) {
                        p.credential = v;
                    }
                }
                p.last_used_at = now;
                changed = true;
                still_there = true;
            }
            changed
        })
        .map_err(|e| e.to_string())?;
    if still_there {
        Ok(())
    } else {
        Err("the passkey was removed meanwhile".into())
    }
}

async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    headers: axum::http::HeaderMap,
    Body(body): Body<NewPasskey>,
) -> Result<(StatusCode, Json<Value>), WebError> {
    let me = user.account(&state)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(WebError::BadRequest(format!(
            "name: 1 to {MAX_NAME} characters"
        )));
    }
    let proved = prove(
        &state,
        peer,
        &user,
        &me,
        &headers,
        body.proof,
        "passkey_add",
    )
    .await?;
    let registration: PasskeyRegistration =
        take(&state, &format!("reg:{}", me.id))?.ok_or_else(|| {
            WebError::Conflict(
                "no passkey registration under way (or it expired): start again".into(),
            )
        })?;
    let (webauthn, _) = relying_party(&state)?;
    let passkey = webauthn
        .finish_passkey_registration(&body.credential, &registration)
        .map_err(|e| {
            warn!(user = %me.name, error = %e, "passkey registration refused");
            WebError::BadRequest(format!("the passkey was refused: {e}"))
        })?;
    let id = credential_id(passkey.cred_id().as_ref());
    let record = PasskeyRecord {
        id: id.clone(),
        name: name.clone(),
        created_at: crate::ops::now_unix(),
        last_used_at: 0,
        credential: serde_json::to_value(&passkey)
            .map_err(|e| WebError::Internal(e.to_string()))?,
    };
    let user_id = me.id.clone();
    state
        .audit
        .before(passkey_record(&me.name, "registered", name.clone()), || {
            let mut refused = None;
            state.store.update_user(&me.name, &mut |u| {
                refused = None;
                if u.id != user_id {
                    refused = Some(WebError::Unauthorized);
                    return false;
                }
                if !proved.still_holds(u) {
                    refused = Some(WebError::Conflict(
                        "a second factor was added meanwhile: prove it and try again".into(),
                    ));
                    return false;
                }
                if u.passkeys.iter().any(|p| p.id == id) {
                    refused = Some(WebError::Conflict(
                        "this passkey is registered already".into(),
                    ));
                    return false;
                }
                if u.passkeys.len() >= MAX_PASSKEYS {
                    refused = Some(WebError::Conflict(format!(
                        "at most {MAX_PASSKEYS} passkeys"
                    )));
                    return false;
                }
                u.passkeys.push(record.clone());
                true
            })?;
            refused.map_or(Ok(()), Err)
        })
        .await?;
    info!(user = %me.name, passkey = %name, "passkey registered");
    // An enrol-only login (the role requires a second factor) is a full one now.
    if let Some(token) = cookie_value(&headers, crate::auth::COOKIE) {
        state.logins.upgrade(&token)?;
    }
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name }))))
}

async fn remove(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    Path(id): Path<String>,
    req: Request,
) -> Result<StatusCode, WebError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, crate::MAX_BODY)
        .await
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let Removal { proof } = if body.is_empty() {
        Removal::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| WebError::BadRequest(e.to_string()))?
    };
    let me = user.account(&state)?;
    let Some(pk) = me.passkeys.iter().find(|p| p.id == id) else {
        return Err(WebError::NotFound("no such passkey of yours".into()));
    };
    let pk = pk.clone();
    // The last second factor of a role that requires one stays (a passkey role: a passkey).
    let required = crate::sso::passkey_required(&state, me.role)
        || (state.mfa_required_roles.contains(&me.role) && !me.totp_enabled());
    let last_one = || {
        WebError::Conflict(
            "your role requires a second factor: add another passkey (or an authenticator app) before removing this one"
                .into(),
        )
    };
    if required && me.passkeys.len() == 1 {
        return Err(last_one());
    }
    let proved = prove(
        &state,
        peer,
        &user,
        &me,
        &parts.headers,
        proof,
        "passkey_remove",
    )
    .await?;
    let passkey_role = crate::sso::passkey_required(&state, me.role);
    let mfa_role = state.mfa_required_roles.contains(&me.role);
    let user_id = me.id.clone();
    state
        .audit
        .before(passkey_record(&me.name, "removed", pk.name.clone()), || {
            let mut refused = None;
            state.store.update_user(&me.name, &mut |u| {
                refused = None;
                if u.id != user_id {
                    refused = Some(WebError::Unauthorized);
                    return false;
                }
                if !proved.still_holds(u) {
                    refused = Some(WebError::Conflict(
                        "a second factor was added meanwhile: prove it and try again".into(),
                    ));
                    return false;
                }
                // Checked on the stored record: two removals at once leave one.
                let required = passkey_role || (mfa_role && !u.totp_enabled());
                if required && u.passkeys.len() <= 1 {
                    refused = Some(last_one());
                    return false;
                }
                let before = u.passkeys.len();
                u.passkeys.retain(|p| p.id != id);
                if u.passkeys.len() == before {
                    refused = Some(WebError::NotFound("no such passkey of yours".into()));
                    return false;
                }
                true
            })?;
            refused.map_or(Ok(()), Err)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The pending login of the request's `pc_mfa` cookie: its token and account name.
fn pending_of(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(String, String), WebError> {
    let token = cookie_value(headers, crate::mfa::PENDING_COOKIE).ok_or(WebError::Unauthorized)?;
    let name = state
        .pending
        .user(&token, now_ms())
        .ok_or(WebError::Unauthorized)?;
    Ok((token, name))
}

fn pending_key(token: &str) -> String {
    use sha2::Digest;
    format!(
        "auth:{}",
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    )
}

/// `POST /auth/mfa/passkey/options`: the assertion options for the pending login's account.
async fn login_options(
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<Value>, WebError> {
    let (token, name) = pending_of(&state, req.headers())?;
    let user = state.store.get_user(&name)?.ok_or(WebError::Unauthorized)?;
    let keys = passkeys_of(&user);
    if keys.is_empty() {
        return Err(WebError::Conflict("this account has no passkey".into()));
    }
    let (webauthn, _) = relying_party(&state)?;
    let (options, authentication) = webauthn
        .start_passkey_authentication(&keys)
        .map_err(|e| WebError::Internal(format!("passkey sign-in: {e}")))?;
    keep(&state, &pending_key(&token), &name, &authentication)?;
    Ok(Json(
        serde_json::to_value(options).map_err(|e| WebError::Internal(e.to_string()))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assertion {
    credential: PublicKeyCredential,
}

/// `POST /auth/mfa/passkey {credential}`: the second login step with a passkey.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, WebError> {
    let (parts, body) = req.into_parts();
    let (token, name) = pending_of(&state, &parts.headers)?;
    let body = axum::body::to_bytes(body, crate::MAX_BODY)
        .await
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let Assertion { credential } =
        serde_json::from_slice(&body).map_err(|e| WebError::BadRequest(e.to_string()))?;
    if let Err(wait) = state.throttle.check(&name, peer.ip(), now_ms()) {
        return Err(WebError::TooManyRequests(format!(
            "too many failed logins: try again in {} s",
            wait.as_secs().max(1)
        )));
    }
    let authentication: Option<PasskeyAuthentication> = take(&state, &pending_key(&token))?;
    let verified = authentication
        .ok_or_else(|| "no passkey sign-in under way (or it expired)".to_owned())
        .and_then(|a| verify_assertion(&state, &name, &credential, &a));
    if let Err(why) = verified {
        warn!(user = %name, reason = %why, "passkey sign-in refused");
        state.pending.failed(&token, now_ms());
        assertion_failed(&state, &name, "login", &why, peer).await?;
        return Err(WebError::BadCredentials);
    }
    crate::mfa::steps::second_factor_passed(&state, &token, &name, peer, "passkey", None).await
}
