//! The single sign-on routes.
//!
//! - `GET /auth/sso/providers` (public): the providers the sign-in page offers.
//! - `GET /auth/sso/{id}/start` (public, a browser navigation): a pending sign-in (its state,
//!   nonce and PKCE verifier sealed in the store's short-lived state for 10 minutes, bound to
//!   this browser by a cookie), then off to the provider.
//! - `GET /auth/sso/callback` (public, the provider sends the browser back here): the pending
//!   sign-in taken (once), the code exchanged, the ID token checked, the account made or
//!   brought up to date, then the same steps as after a password (second factor, lock-out,
//!   audit) and back to the UI.
//! - `GET/PUT /sso/settings`, `PUT/DELETE /sso/providers/{id}` (administrators): the settings,
//!   never a client secret.
//!
//! The browser-facing answers of `start` and `callback` are small HTML pages (the browser
//! arrived by a navigation, not through the UI's script).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use portcullis_secrets::Secret;
use portcullis_store::{Ephemeral, EphemeralChange, Role, SsoLink, StoreError, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::client::{Identity, SsoError};
use super::LoginSso;
use super::{ProviderSettings, RoleMapping, SsoSettings, StoredProvider};
use crate::audit::{admin_change, login_failed};
use crate::auth::api::{first_factor_passed, FirstFactor};
use crate::auth::{cookie_value, now_ms, set_cookie};
use crate::extract::{Admin, Body};
use crate::sessions::{close_sessions, SessionFilter};
use crate::{AppState, WebError};

use super::PENDING_SPACE;
/// The cookie binding a sign-in under way to the browser that started it.
const BINDING_COOKIE: &str = "__Host-pc_sso";
/// How long a sign-in may take at the provider.
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Most sign-ins under way from one network (see `throttle::client_network`).
const MAX_PENDING_PER_NETWORK: usize = 20;
/// Longest `state`, `code` or `error` parameter taken.
const MAX_PARAM: usize = 2048;

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/sso/providers", get(providers))
        .route("/auth/sso/{id}/start", get(start))
        .route("/auth/sso/callback", get(callback))
        .route("/sso/settings", get(settings).put(put_settings))
        .route(
            "/sso/providers/{id}",
            put(put_provider).delete(delete_provider),
        )
        .route("/sso/providers/{id}/test", get(test_provider))
}

/// A sign-in under way, as the store keeps it (sealed).
#[derive(Serialize, Deserialize)]
struct Pending {
    provider: String,
    nonce: String,
    pkce_verifier: String,
    /// SHA-256 (hex) of the binding cookie's value.
    binding: String,
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn pending_aad(key: &str) -> Vec<u8> {
    format!("portcullis sso pending v1:{key}").into_bytes()
}

/// A page for the browser: `title`, `message`, and a way on.
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let escape = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} - Portcullis</title></head>\
         <body><h1>{t}</h1><p id=\"message\">{m}</p><p><a href=\"/\">Back to sign-in</a></p></body></html>",
        t = escape(title),
        m = escape(message)
    );
    (status, Html(body)).into_response()
}

/// A refused sign-in, as the browser sees it.
fn refused(message: &str) -> Response {
    page(StatusCode::FORBIDDEN, "Sign-in refused", message)
}

/// The page that takes a signed-in browser on to the UI: a navigation of the gateway's own page,
/// so that the login cookie (SameSite=Strict) goes with it, which it would not on the
/// provider's redirect.
fn onward(cookie: String, to: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url={to}\"><title>Signed in - Portcullis</title></head>\
         <body><p>Signed in. <a href=\"{to}\">Continue</a></p></body></html>"
    );
    (
        StatusCode::OK,
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Html(body),
    )
        .into_response()
}

#[derive(Serialize)]
struct ProviderButton {
    id: String,
    display_name: String,
}

/// The providers the sign-in page offers.
async fn providers(State(state): State<AppState>) -> Result<Json<Value>, WebError> {
    let settings = SsoSettings::load(&*state.store)?;
    let list: Vec<ProviderButton> = settings
        .providers
        .iter()
        .map(|p| ProviderButton {
            id: p.settings.id.clone(),
            display_name: p.settings.display_name.clone(),
        })
        .collect();
    Ok(Json(json!({ "providers": list })))
}

/// Starts a sign-in at provider `id`.
async fn start(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Response {
    // Anyone may ask: an address locked out of logins, or with many sign-ins under way, is
    // turned away before anything is stored or fetched.
    let now = now_ms();
    if let Err(wait) = state.throttle.check_from(peer.ip(), now) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Sign-in refused",
            &format!(
                "too many failed sign-ins from your address: try again in {} s",
                wait.as_secs().max(1)
            ),
        );
    }
    let network = crate::throttle::client_network(peer.ip()).to_string();
    match state.store.ephemeral_count(PENDING_SPACE, &network, now) {
        Ok((_, mine)) if mine < MAX_PENDING_PER_NETWORK => {}
        Ok(_) => {
            return page(
                StatusCode::TOO_MANY_REQUESTS,
                "Sign-in refused",
                "too many sign-ins under way from your address: finish one, or try again in a few minutes",
            )
        }
        Err(e) => return WebError::from(e).into_response(),
    }
    let Ok(settings) = SsoSettings::load(&*state.store) else {
        return unavailable();
    };
    let Some(provider) = settings.provider(&id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Single sign-on unavailable",
            "no such identity provider",
        );
    };
    match start_inner(&state, &settings, provider, &network).await {
        Ok(response) => response,
        Err(message) => {
            // The details (addresses, the provider's words) for the log, not for anyone.
            warn!(provider = %id, error = %message, "single sign-on could not start");
            unavailable()
        }
    }
}

async fn start_inner(
    state: &AppState,
    settings: &SsoSettings,
    provider: &StoredProvider,
    network: &str,
) -> Result<Response, String> {
    let id = provider.settings.id.as_str();
    let redirect = settings.redirect_url()?;
    let secret = provider.client_secret(&state.key)?;
    let started = state
        .sso
        .start(provider, &secret, &redirect)
        .await
        .map_err(|e| e.to_string())?;
    let binding = portcullis_secrets::random_token(32);
    let key = sha256_hex(&started.state);
    let pending = Pending {
        provider: id.to_owned(),
        nonce: started.nonce,
        pkce_verifier: started.pkce_verifier,
        binding: sha256_hex(&binding),
    };
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&pending).map_err(|e| e.to_string())?);
    let entry = Ephemeral {
        owner: network.to_owned(),
        value: state.key.seal(&plain, &pending_aad(&key)),
        expires_at_ms: now_ms() + PENDING_TTL_MS,
    };
    state
        .store
        .ephemeral_update(PENDING_SPACE, &key, now_ms(), &mut |_| {
            EphemeralChange::Put(entry.clone())
        })
        .map_err(|e| e.to_string())?;
    // Lax: the provider's redirect back is a cross-site navigation. `__Host-`: only this host
    // sets it (no sibling domain plants one), which needs the path `/`.
    let cookie = format!(
        "{BINDING_COOKIE}={binding}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        PENDING_TTL_MS / 1000
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, started.url),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// What the return's `state` and the browser's binding cookie find.
enum Found {
    /// The pending sign-in, now used up.
    Pending(Pending),
    /// None such (unknown, expired, already used).
    Unknown,
    /// One exists, but this browser did not start it: left for its own browser.
    OtherBrowser,
}

/// Takes the pending sign-in `sign_in` if `binding` (this browser's cookie) is the one it was
/// started with: once (a replayed return finds nothing), and only by its own browser (a return
/// planted in another browser neither signs it in nor spoils the real one).
fn take_pending(state: &AppState, sign_in: &str, binding: &str) -> Result<Found, StoreError> {
    use subtle::ConstantTimeEq as _;
    let key = sha256_hex(sign_in);
    let bound = sha256_hex(binding);
    let mut found = Found::Unknown;
    state
        .store
        .ephemeral_update(PENDING_SPACE, &key, now_ms(), &mut |entry| {
            found = Found::Unknown;
            let Some(entry) = entry else {
                return EphemeralChange::Keep;
            };
            let pending = state
                .key
                .open(&entry.value, &pending_aad(&key))
                .ok()
                .map(zeroize::Zeroizing::new)
                .and_then(|plain| serde_json::from_slice::<Pending>(&plain).ok());
            let Some(pending) = pending else {
                return EphemeralChange::Delete;
            };
            if bool::from(bound.as_bytes().ct_eq(pending.binding.as_bytes())) {
                found = Found::Pending(pending);
                EphemeralChange::Delete
            } else {
                found = Found::OtherBrowser;
                EphemeralChange::Keep
            }
        })?;
    Ok(found)
}

/// A return refused before it is known to be a sign-in this browser started (no cookie, an
/// unknown state, another browser's): logged, neither recorded nor counted (anyone's page can
/// send a browser here; counting would let it lock the browser's network out).
fn refuse_unbound(peer: SocketAddr, why: &str) -> Response {
    warn!(client = %peer, reason = %why, "single sign-on return refused");
    refused(why)
}

/// A refused sign-in of this browser: on record, then told to the browser; `counted`: a
/// failure of the sign-in itself (a token refused), counted against the address.
async fn refuse(
    state: &AppState,
    peer: SocketAddr,
    provider: &str,
    user: Option<&str>,
    why: &str,
    counted: bool,
) -> Response {
    warn!(provider, user = ?user, client = %peer, reason = %why, "single sign-on refused");
    if counted {
        state.throttle.failed_from(peer.ip(), now_ms());
    }
    let record = login_failed(user.unwrap_or("?"), why)
        .detail("entry", "sso")
        .detail("provider", provider.to_owned())
        .detail("address", peer.to_string());
    if let Err(e) = state.audit.record(record).await {
        return e.into_response();
    }
    refused(why)
}

/// The provider sends the browser back here. The binding cookie is cleared whatever comes.
async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let mut response = returned(&state, peer, &headers, q).await;
    if let Ok(clear) = header::HeaderValue::from_str(&format!(
        "{BINDING_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

async fn returned(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    let too_long = [&q.state, &q.code, &q.error, &q.error_description]
        .into_iter()
        .flatten()
        .any(|p| p.len() > MAX_PARAM);
    if too_long {
        return refuse_unbound(peer, "a parameter of the return is too long");
    }
    if let Err(wait) = state.throttle.check_from(peer.ip(), now_ms()) {
        return refused(&format!(
            "too many failed sign-ins from your address: try again in {} s",
            wait.as_secs().max(1)
        ));
    }
    let (Some(sign_in), Some(binding)) =
        (q.state.as_deref(), cookie_value(headers, BINDING_COOKIE))
    else {
        return refuse_unbound(
            peer,
            "this sign-in was started in another browser, or this browser keeps no cookies: \
             sign in again",
        );
    };
    let pending = match take_pending(state, sign_in, &binding) {
        Ok(Found::Pending(p)) => p,
        Ok(Found::Unknown) => {
            return refuse_unbound(
                peer,
                "this sign-in is unknown, expired or already used: sign in again",
            )
        }
        Ok(Found::OtherBrowser) => {
            return refuse_unbound(peer, "this sign-in was started in another browser")
        }
        Err(e) => return WebError::from(e).into_response(),
    };
    let provider_id = pending.provider.clone();
    if let Some(error) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("");
        let why: String = format!("the identity provider refused: {error} {detail}")
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        return refuse(state, peer, &provider_id, None, why.trim_end(), false).await;
    }
    let Some(code) = q.code.as_deref() else {
        return refuse(
            state,
            peer,
            &provider_id,
            None,
            "the return carries no code",
            true,
        )
        .await;
    };
    let settings = match SsoSettings::load(&*state.store) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(provider) = settings.provider(&provider_id) else {
        return refuse(
            state,
            peer,
            &provider_id,
            None,
            "the identity provider was removed meanwhile",
            false,
        )
        .await;
    };
    let (redirect, secret) = match (settings.redirect_url(), provider.client_secret(&state.key)) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => {
            let why = format!("single sign-on is misconfigured: {e}");
            let _ = refuse(state, peer, &provider_id, None, &why, false).await;
            return unavailable();
        }
    };
    let identity = match state
        .sso
        .finish(
            provider,
            &secret,
            &redirect,
            code,
            &pending.nonce,
            &pending.pkce_verifier,
        )
        .await
    {
        Ok(identity) => identity,
        Err(e @ SsoError::Token(_)) => {
            return refuse(state, peer, &provider_id, None, &e.to_string(), true).await
        }
        Err(e @ SsoError::Provider(_)) => {
            // The details (addresses, the provider's words) go on record, not to the browser.
            let _ = refuse(state, peer, &provider_id, None, &e.to_string(), false).await;
            return unavailable();
        }
    };
    match signed_in(state, peer, provider, identity).await {
        Ok(response) => response,
        Err(Refusal { user, why }) => {
            refuse(state, peer, &provider_id, user.as_deref(), &why, false).await
        }
    }
}

/// The page of a provider that cannot be used now (the reason is in the log and the trail).
fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Single sign-on unavailable",
        "The identity provider cannot be used at the moment: try again later, or ask the \
         gateway's administrators (the reason is in its log).",
    )
}

/// Why a checked identity gets no login.
struct Refusal {
    user: Option<String>,
    why: String,
}

/// The account of a checked identity, made or brought up to date, then logged in.
async fn signed_in(
    state: &AppState,
    peer: SocketAddr,
    provider: &StoredProvider,
    identity: Identity,
) -> Result<Response, Refusal> {
    let p = &provider.settings;
    let no = |user: Option<&str>, why: String| Refusal {
        user: user.map(str::to_owned),
        why,
    };
    let name = identity.username.clone().ok_or_else(|| {
        no(
            None,
            format!(
                "the ID token has no {:?} claim (the user name)",
                p.username_claim
            ),
        )
    })?;
    portcullis_store::validate_name("user", &name).map_err(|e| no(None, e.to_string()))?;
    let link = SsoLink {
        provider: p.id.clone(),
        issuer: p.issuer.clone(),
        subject: identity.subject.clone(),
    };
    // The same provider id and subject under another issuer: another identity provider now
    // stands behind the id, whose subjects are not this one's.
    let same_account = |l: &SsoLink| l.provider == link.provider && l.subject == link.subject;
    let existing = state
        .store
        .get_user(&name)
        .map_err(|e| no(Some(&name), e.to_string()))?;
    if let Some(u) = &existing {
        if u.sso
            .as_ref()
            .is_some_and(|l| same_account(l) && l.issuer != link.issuer)
        {
            return Err(no(
                Some(&name),
                format!(
                    "the account {name:?} was linked to {} at another issuer: an administrator \
                     must remove it before it can sign in from {}",
                    p.id, p.issuer
                ),
            ));
        }
        if u.sso.as_ref() != Some(&link) {
            return Err(no(
                Some(&name),
                format!(
                    "an account named {name:?} already exists here and is not this provider's \
                     account: an administrator must resolve it"
                ),
            ));
        }
    } else {
        // The provider's account may be known here under another name (renamed there).
        let known = state
            .store
            .list_users()
            .map_err(|e| no(Some(&name), e.to_string()))?
            .into_iter()
            .find(|u| u.sso.as_ref().is_some_and(&same_account));
        if let Some(other) = known {
            return Err(no(
                Some(&name),
                format!(
                    "this provider account is known here as {:?}: an administrator must rename \
                     or remove that account",
                    other.name
                ),
            ));
        }
    }
    let role = p.role_for(&identity.groups);
    let Some(role) = role else {
        if let Some(u) = existing {
            revoke(
                state,
                &u,
                &identity.groups,
                "your access was withdrawn at your identity provider",
            )
            .await
            .map_err(|e| no(Some(&name), e))?;
        }
        return Err(no(
            Some(&name),
            format!(
                "none of your groups at {} gives access to this gateway",
                p.display_name
            ),
        ));
    };
    let user = match existing {
        None => {
            let record = UserRecord {
                id: crate::ops::new_user_id(),
                name: name.clone(),
                // No password: this account signs in only through its provider.
                password_hash: String::new(),
                role,
                created_at: crate::ops::now_unix(),
                locked: false,
                mfa: None,
                sso: Some(link.clone()),
                groups: identity.groups.clone(),
                passkeys: Vec::new(),
            };
            let shown = json!({
                "name": name, "role": role, "sso": p.id, "groups": identity.groups,
                "email": identity.email,
            });
            let made = state
                .audit
                .before(
                    admin_change(&name, "user_create_sso", Value::Null, shown),
                    || Ok(state.store.create_user(&record)?),
                )
                .await;
            made.map_err(|e| no(Some(&name), e.to_string()))?;
            info!(user = %name, provider = %p.id, %role, "account made by its first single sign-on");
            record
        }
        Some(u) if u.role != role || u.groups != identity.groups => {
            let before = json!({"role": u.role, "groups": u.groups});
            let after = json!({"role": role, "groups": identity.groups});
            let groups = identity.groups.clone();
            let updated = state
                .audit
                .before(
                    admin_change(&name, "user_update_sso", before, after),
                    || {
                        state
                            .store
                            .update_user(&name, &mut |u| {
                                if u.sso.as_ref() != Some(&link) {
                                    return false;
                                }
                                u.role = role;
                                u.groups.clone_from(&groups);
                                true
                            })?
                            .filter(|u| u.sso.as_ref() == Some(&link))
                            .ok_or_else(|| {
                                WebError::Conflict("the account changed meanwhile".into())
                            })
                    },
                )
                .await;
            updated.map_err(|e| no(Some(&name), e.to_string()))?
        }
        Some(u) => u,
    };
    if user.locked {
        return Err(no(Some(&name), "the account is locked".into()));
    }
    let sso = LoginSso {
        provider: p.id.clone(),
        id_token: identity.id_token,
    };
    match first_factor_passed(state, user, peer, Some(sso)).await {
        Ok(FirstFactor::SecondNeeded { pending }) => Ok(onward(
            crate::mfa::set_pending_cookie(&pending),
            "/?second_factor=1",
        )),
        Ok(FirstFactor::LoggedIn { token, .. }) => Ok(onward(set_cookie(&token), "/")),
        Err(e) => Err(no(Some(&name), e.to_string())),
    }
}

/// The provider no longer gives `user` access: the account is locked (its API tokens stop
/// working with it; an administrator or the security team unlocks it once the provider gives
/// access again), its groups emptied, its logins, tickets and sessions ended. On record first.
pub(crate) async fn revoke(
    state: &AppState,
    user: &UserRecord,
    groups: &[String],
    why: &str,
) -> Result<(), String> {
    let name = user.name.clone();
    let before = json!({"role": user.role, "groups": user.groups, "locked": user.locked});
    let after = json!({"role": user.role, "groups": groups, "locked": true, "reason": why});
    state
        .audit
        .before(
            admin_change(&name, "user_revoke_sso", before, after),
            || {
                state.store.update_user(&name, &mut |u| {
                    u.groups.clear();
                    u.locked = true;
                    true
                })?;
                close_sessions(state, &SessionFilter::user(&name), why);
                state.rdp_tickets.revoke_user(&name);
                state.logins.remove_user(&name)?;
                Ok(())
            },
        )
        .await
        .map_err(|e| e.to_string())
}

/// The settings as administrators see them: never a secret.
fn settings_view(s: &SsoSettings) -> Value {
    let providers: Vec<Value> = s
        .providers
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(&p.settings).unwrap_or_default();
            v["client_secret_set"] = json!(!p.sealed_client_secret.is_empty());
            v
        })
        .collect();
    json!({
        "public_url": s.public_url,
        "required_for_roles": s.required_for_roles,
        "passkey_required_for_roles": s.passkey_required_for_roles,
        "redirect_uri": s.redirect_url().ok(),
        "providers": providers,
    })
}

async fn settings(State(state): State<AppState>, _admin: Admin) -> Result<Json<Value>, WebError> {
    Ok(Json(settings_view(&SsoSettings::load(&*state.store)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    public_url: Option<String>,
    #[serde(default)]
    required_for_roles: Vec<Role>,
    /// Left out: kept.
    #[serde(default)]
    passkey_required_for_roles: Option<Vec<Role>>,
}

async fn put_settings(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(body): Body<SettingsBody>,
) -> Result<Json<Value>, WebError> {
    let _writing = state.sso_writes.lock().await;
    let before = SsoSettings::load(&*state.store)?;
    let mut after = before.clone();
    after.public_url = body.public_url.filter(|u| !u.is_empty());
    after.required_for_roles = body.required_for_roles;
    after.required_for_roles.sort_by_key(|r| r.as_str());
    after.required_for_roles.dedup();
    if let Some(mut roles) = body.passkey_required_for_roles {
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        after.passkey_required_for_roles = roles;
    }
    after.check().map_err(WebError::BadRequest)?;
    if !after.passkey_required_for_roles.is_empty() && after.public_url.is_none() {
        return Err(WebError::BadRequest(
            "passkeys need the public URL: set public_url before requiring passkeys".into(),
        ));
    }
    if after.passkey_required_for(admin.role)
        && !before.passkey_required_for(admin.role)
        && state
            .store
            .get_user(&admin.name)?
            .is_some_and(|u| u.passkeys.is_empty())
    {
        return Err(WebError::Conflict(format!(
            "your own role ({}) would need a passkey and you have none: register one first \
             (your account page)",
            admin.role
        )));
    }
    // Nobody locks themselves out: a password administrator cannot make their own role
    // sign in through a provider only (keep a break-glass role out of the list).
    let own = state.store.get_user(&admin.name)?;
    if after.required_for(admin.role) && own.is_some_and(|u| u.sso.is_none()) {
        return Err(WebError::Conflict(format!(
            "your own role ({}) would have to use single sign-on, and your account signs in with a \
             password: keep a break-glass role out of required_for_roles",
            admin.role
        )));
    }
    let shown = |s: &SsoSettings| {
        json!({
            "public_url": s.public_url, "required_for_roles": s.required_for_roles,
            "passkey_required_for_roles": s.passkey_required_for_roles,
        })
    };
    let (shown_before, shown_after) = (shown(&before), shown(&after));
    state
        .audit
        .before(
            admin_change(&admin.name, "sso_settings", shown_before, shown_after),
            || after.save(&*state.store),
        )
        .await?;
    Ok(Json(settings_view(&after)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    display_name: String,
    issuer: String,
    client_id: String,
    /// Required for a new provider; left out: the stored one is kept.
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    username_claim: Option<String>,
    #[serde(default)]
    groups_claim: Option<String>,
    #[serde(default)]
    role_mapping: Vec<RoleMapping>,
    #[serde(default)]
    default_role: Option<Role>,
}

async fn put_provider(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(body): Body<ProviderBody>,
) -> Result<Json<Value>, WebError> {
    let _writing = state.sso_writes.lock().await;
    let mut settings = SsoSettings::load(&*state.store)?;
    let before = settings
        .provider(&id)
        .map(|p| serde_json::to_value(&p.settings).unwrap_or_default())
        .unwrap_or(Value::Null);
    let defaults: ProviderSettings = serde_json::from_value(json!({
        "id": id, "display_name": "", "issuer": "", "client_id": ""
    }))
    .map_err(|e| WebError::Internal(e.to_string()))?;
    let new = ProviderSettings {
        id: id.clone(),
        display_name: body.display_name,
        issuer: body.issuer.trim_end_matches('/').to_owned(),
        client_id: body.client_id,
        scopes: body.scopes.unwrap_or(defaults.scopes),
        username_claim: body.username_claim.unwrap_or(defaults.username_claim),
        groups_claim: body.groups_claim.unwrap_or(defaults.groups_claim),
        role_mapping: body.role_mapping,
        default_role: body.default_role,
    };
    let mut after = serde_json::to_value(&new).unwrap_or_default();
    if body.client_secret.is_some() {
        after["client_secret"] = json!("(changed)");
    }
    settings
        .put_provider(new, body.client_secret.as_ref(), &state.key)
        .map_err(WebError::BadRequest)?;
    state
        .audit
        .before(
            admin_change(&admin.name, "sso_provider_put", before, after),
            || settings.save(&*state.store),
        )
        .await?;
    state.sso.forget(&id);
    info!(admin = %admin.name, provider = %id, "single sign-on provider saved");
    Ok(Json(settings_view(&settings)))
}

async fn delete_provider(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    let _writing = state.sso_writes.lock().await;
    let mut settings = SsoSettings::load(&*state.store)?;
    let Some(i) = settings.providers.iter().position(|p| p.settings.id == id) else {
        return Err(WebError::NotFound(format!("no identity provider {id:?}")));
    };
    let before = serde_json::to_value(&settings.providers[i].settings).unwrap_or_default();
    settings.providers.remove(i);
    state
        .audit
        .before(
            admin_change(&admin.name, "sso_provider_delete", before, Value::Null),
            || settings.save(&*state.store),
        )
        .await?;
    state.sso.forget(&id);
    // Nobody vouches for its accounts any more: locked, their logins, tokens' use and
    // sessions end (an administrator may unlock one, or the provider's return re-links none).
    let linked: Vec<UserRecord> = state
        .store
        .list_users()?
        .into_iter()
        .filter(|u| u.sso.as_ref().is_some_and(|l| l.provider == id) && !u.locked)
        .collect();
    for u in &linked {
        revoke(
            &state,
            u,
            &[],
            "your identity provider was removed from the gateway",
        )
        .await
        .map_err(WebError::Unavailable)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Fetches the provider's discovery document now: whether the settings reach it.
async fn test_provider(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    let settings = SsoSettings::load(&*state.store)?;
    let provider = settings
        .provider(&id)
        .ok_or_else(|| WebError::NotFound(format!("no identity provider {id:?}")))?;
    let secret = provider
        .client_secret(&state.key)
        .map_err(WebError::Internal)?;
    let redirect = settings.redirect_url().map_err(WebError::BadRequest)?;
    state.sso.forget(&id);
    match state.sso.start(provider, &secret, &redirect).await {
        Ok(_) => Ok(Json(json!({"ok": true}))),
        Err(e) => Ok(Json(json!({"ok": false, "error": e.to_string()}))),
    }
}
