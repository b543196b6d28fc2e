//! Two-factor authentication: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, one step of
//! clock drift either way), enrolment with a QR code, the second login step, and the admin's
//! reset.
//!
//! - **Enrolment**: `POST /me/mfa/enrol` makes a fresh secret, stores it sealed with the
//!   gateway's key (AAD naming the user) and shows it once (base32, `otpauth://` URI, QR code as
//!   SVG); `POST /me/mfa/confirm {code}` turns MFA on once a code from it checks out. The secret
//!   is never shown again nor logged.
//! - **Replay**: the time step of the last accepted code is stored with the user; a code is only
//!   accepted for a later step, so each code works once.
//! - **Login**: when MFA is on, the password step gives no session, only a pending login
//!   ([`PendingLogins`]: 2 minutes, single use, in the `pc_mfa` cookie); `POST /auth/mfa {code}`
//!   completes it. Wrong codes count toward the lock-out like wrong passwords.
//! - **Required per role** (`[auth] mfa_required_roles`): a user of such a role without MFA gets,
//!   for the password alone, an *enrol-only* login: it may call `/me`, `/me/mfa/*` and
//!   `/auth/logout`, nothing else (see [`crate::auth`]). Confirming enrolment makes it a full
//!   login (the user has then shown the password and the second factor).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use portcullis_audit::{Kind, Record};
use portcullis_secrets::SecretKey;
use portcullis_store::{MfaRecord, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::Sha1;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::api::admin_change;
use crate::auth::{cookie_value, set_cookie, Admin, AuthUser, COOKIE};
use crate::{ops, AppState, WebError};

/// Length of a TOTP step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps of clock drift accepted either way.
pub const DRIFT_STEPS: u64 = 1;
/// Bytes of a TOTP secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;
/// How long a pending (password checked, code not yet) login lives.
pub const PENDING_TTL: Duration = Duration::from_secs(120);
/// Wrong codes one pending login may take before it is dropped (the lock-out counts too).
const PENDING_MAX_FAILURES: u32 = 5;
/// Pending logins kept at once.
const PENDING_MAX: usize = 10_000;
/// The pending login's cookie.
pub(crate) const PENDING_COOKIE: &str = "pc_mfa";
/// The issuer shown in authenticator apps.
const ISSUER: &str = "Portcullis";

// --- TOTP ---------------------------------------------------------------------------------

/// The HOTP value (RFC 4226) of `counter` under `secret`, `digits` long.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = (u32::from(digest[offset]) & 0x7f) << 24
        | u32::from(digest[offset + 1]) << 16
        | u32::from(digest[offset + 2]) << 8
        | u32::from(digest[offset + 3]);
    bin % 10u32.pow(digits)
}

/// The TOTP code of `secret` at Unix time `unix_secs`, as text with leading zeros.
pub fn totp(secret: &[u8], unix_secs: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, unix_secs / STEP_SECS, DIGITS),
        width = DIGITS as usize
    )
}

/// The time step `code` is valid for at `unix_secs` (±[`DRIFT_STEPS`]), if it is later than
/// `last_step` (a step already used is refused: no replay). Constant time per candidate.
pub fn verify(secret: &[u8], code: &str, unix_secs: u64, last_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_secs / STEP_SECS;
    let mut found = None;
    for step in now.saturating_sub(DRIFT_STEPS)..=now + DRIFT_STEPS {
        let want = format!(
            "{:0width$}",
            hotp(secret, step, DIGITS),
            width = DIGITS as usize
        );
        if portcullis_secrets::constant_time_eq(want.as_bytes(), code.as_bytes())
            && step > last_step
        {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding (what authenticator apps expect).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app reads from the QR code.
pub fn otpauth_uri(user: &str, secret_b32: &str) -> String {
    // User names are [A-Za-z0-9._-] (store rule): nothing to escape.
    format!(
        "otpauth://totp/{ISSUER}:{user}?secret={secret_b32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
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

fn now_unix() -> u64 {
    u64::try_from(ops::now_unix()).unwrap_or(0)
}

/// Additional data binding a sealed TOTP secret to its user.
fn secret_aad(user: &str) -> Vec<u8> {
    format!("portcullis mfa secret v1:{user}").into_bytes()
}

fn open_secret(key: &SecretKey, user: &UserRecord) -> Result<Zeroizing<Vec<u8>>, WebError> {
    let mfa = user
        .mfa
        .as_ref()
        .ok_or_else(|| WebError::Conflict("two-factor authentication is not set up".into()))?;
    key.open(&mfa.sealed_secret, &secret_aad(&user.name))
        .map(Zeroizing::new)
        .map_err(|e| WebError::Internal(format!("cannot open the TOTP secret of a user: {e}")))
}

/// Re-seals `user`'s TOTP secret from `old` to `new` (key rotation). `Ok(false)`: nothing to
/// do (no secret, or already under `new`).
pub fn reseal_user_mfa(
    old: &SecretKey,
    new: &SecretKey,
    user: &mut UserRecord,
) -> Result<bool, String> {
    let aad = secret_aad(&user.name);
    let Some(mfa) = user.mfa.as_mut() else {
        return Ok(false);
    };
    if new.open(&mfa.sealed_secret, &aad).is_ok() {
        return Ok(false);
    }
    let plain = Zeroizing::new(
        old.open(&mfa.sealed_secret, &aad)
            .map_err(|e| format!("cannot open the TOTP secret of {}: {e}", user.name))?,
    );
    mfa.sealed_secret = new.seal(&plain, &aad);
    Ok(true)
}

/// Whether `user` must use a second factor: MFA is on, or their role requires it.
pub(crate) fn needs_mfa(state: &AppState, user: &UserRecord) -> bool {
    user.mfa_enabled() || state.mfa_required_roles.contains(&user.role)
}

/// Checks `code` for `name` and, when it is good, stores its step as used (under the MFA lock,
/// so two requests cannot both spend the same code). `confirm`: the code confirms enrolment.
fn check_code(state: &AppState, name: &str, code: &str, confirm: bool) -> Result<bool, WebError> {
    let _guard = state.mfa_lock.lock().unwrap_or_else(|p| p.into_inner());
    // Read, check and spend the step in one atomic change of the user's record: a lock, a
    // reset or a delete that comes meanwhile is neither lost nor undone.
    let mut outcome: Result<bool, WebError> = Err(WebError::Unauthorized);
    let now = now_unix();
    state.store.update_user(name, &mut |user| {
        let confirmed = user.mfa_enabled();
        if confirm == confirmed {
            outcome = Err(WebError::Conflict(if confirm {
                "two-factor authentication is already on".into()
            } else {
                "two-factor authentication is not on for this user".into()
            }));
            return false;
        }
        let secret = match open_secret(&state.key, user) {
            Ok(s) => s,
            Err(e) => {
                outcome = Err(e);
                return false;
            }
        };
        let last = user.mfa.as_ref().map_or(0, |m| m.last_step);
        let Some(step) = verify(&secret, code, now, last) else {
            outcome = Ok(false);
            return false;
        };
        let Some(m) = user.mfa.as_mut() else {
            outcome = Ok(false);
            return false;
        };
        m.last_step = step;
        if confirm {
            m.confirmed = true;
            m.since = ops::now_unix();
        }
        outcome = Ok(true);
        true
    })?;
    outcome
}

fn mfa_record(user: &str, step: &str, outcome: &str) -> Record {
    Record::new(Kind::MFA, user)
        .detail("step", step)
        .detail("outcome", outcome)
}

fn wrong_code() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "wrong or already used code" })),
    )
        .into_response()
}

// --- Pending logins -----------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Pending {
    user: String,
    created: Instant,
    failures: u32,
}

/// Logins whose password was right and whose code is awaited: short-lived, single use. Pure
/// apart from the map: callers pass the time.
#[derive(Clone, Default)]
pub struct PendingLogins {
    inner: Arc<Mutex<HashMap<String, Pending>>>,
}

impl std::fmt::Debug for PendingLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogins").finish_non_exhaustive()
    }
}

impl PendingLogins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new pending login of `user`; returns its token.
    pub fn create(&self, user: &str, now: Instant) -> String {
        let token = portcullis_secrets::random_token(32);
        let mut map = self.lock();
        map.retain(|_, p| now.saturating_duration_since(p.created) < PENDING_TTL);
        if map.len() >= PENDING_MAX {
            // Full of fresh ones: the oldest goes.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            token.clone(),
            Pending {
                user: user.to_owned(),
                created: now,
                failures: 0,
            },
        );
        token
    }

    /// The user of a live pending login.
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let mut map = self.lock();
        let p = map.get(token)?;
        if now.saturating_duration_since(p.created) >= PENDING_TTL {
            map.remove(token);
            return None;
        }
        Some(p.user.clone())
    }

    /// Uses the pending login up (the code was right): it cannot be used again.
    pub fn take(&self, token: &str, now: Instant) -> Option<String> {
        let p = self.lock().remove(token)?;
        (now.saturating_duration_since(p.created) < PENDING_TTL).then_some(p.user)
    }

    /// A wrong code: after [`PENDING_MAX_FAILURES`] the pending login is gone.
    pub fn failed(&self, token: &str) {
        let mut map = self.lock();
        if let Some(p) = map.get_mut(token) {
            p.failures += 1;
            if p.failures >= PENDING_MAX_FAILURES {
                map.remove(token);
            }
        }
    }
}

pub(crate) fn set_pending_cookie(token: &str) -> String {
    format!(
        "{PENDING_COOKIE}={token}; Path=/api/v1/auth; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        PENDING_TTL.as_secs()
    )
}

fn clear_pending_cookie() -> String {
    format!("{PENDING_COOKIE}=; Path=/api/v1/auth; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

// --- Handlers -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

/// `POST /auth/mfa {code}`: the second step of a login whose password was right.
pub(crate) async fn login_code(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, WebError> {
    let (parts, body) = req.into_parts();
    let pending = cookie_value(&parts, PENDING_COOKIE);
    let now = Instant::now();
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
    if let Err(wait) = state.throttle.check(&name, peer.ip(), now) {
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
    let ok = {
        let (state, name, code) = (state.clone(), name.clone(), code.clone());
        tokio::task::spawn_blocking(move || check_code(&state, &name, &code, false))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))??
    };
    if !ok {
        warn!(user = %name, "second factor: wrong code");
        state.throttle.failed(&name, peer.ip(), Instant::now());
        state.pending.failed(&token);
        state
            .audit
            .record(mfa_record(&name, "login", "failed").detail("address", address))
            .await?;
        return Ok(wrong_code());
    }
    if state.pending.take(&token, Instant::now()).is_none() {
        return Err(WebError::Unauthorized);
    }
    let user = state.store.get_user(&name)?.ok_or(WebError::Unauthorized)?;
    if user.locked {
        return Err(WebError::Forbidden(
            "your account is locked by the security team".into(),
        ));
    }
    state.throttle.succeeded(&name);
    state
        .audit
        .record(mfa_record(&name, "login", "ok").detail("address", address.as_str()))
        .await?;
    state
        .audit
        .record(
            Record::new(Kind::LOGIN, &name)
                .detail("entry", "browser")
                .detail("mfa", true)
                .detail("address", address),
        )
        .await?;
    let session = state.logins.create(&user);
    info!(user = %name, "login with second factor");
    let mut res = Json(json!({
        "name": user.name,
        "role": user.role,
        "mfa": true,
        "mfa_required_by_role": state.mfa_required_roles.contains(&user.role),
        "mfa_enrol_required": false,
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
    if current.mfa_enabled() {
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
                on = record.mfa_enabled();
                if on {
                    return false;
                }
                record.mfa = Some(MfaRecord {
                    sealed_secret: sealed_secret.clone(),
                    confirmed: false,
                    last_step: 0,
                    since: ops::now_unix(),
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

/// `POST /me/mfa/confirm {code}`: turns MFA on when the code is right; an enrol-only login
/// becomes a full one.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    req: Request,
) -> Result<Response, WebError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 4096)
        .await
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let CodeBody { code } =
        serde_json::from_slice(&body).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let now = Instant::now();
    if let Err(wait) = state.throttle.check(&user.name, peer.ip(), now) {
        return Err(WebError::TooManyRequests(format!(
            "too many wrong codes: try again in {} s",
            wait.as_secs().max(1)
        )));
    }
    let ok = {
        let (state, name) = (state.clone(), user.name.clone());
        tokio::task::spawn_blocking(move || check_code(&state, &name, &code, true))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))??
    };
    if !ok {
        state.throttle.failed(&user.name, peer.ip(), now);
        state
            .audit
            .record(mfa_record(&user.name, "confirm", "failed"))
            .await?;
        // 400, not 401: the user is logged in, only the code is wrong.
        return Err(WebError::BadRequest(
            "wrong code: enter the code your app shows now".into(),
        ));
    }
    state
        .audit
        .record(mfa_record(&user.name, "confirm", "ok"))
        .await?;
    if let Some(token) = cookie_value(&parts, COOKIE) {
        state.logins.upgrade(&token);
    }
    info!(user = %user.name, "two-factor authentication on");
    Ok(Json(json!({ "mfa": true })).into_response())
}

/// `DELETE /users/{name}/mfa`: the user's second factor is removed (lost phone); their logins
/// end, and a role that requires MFA makes them enrol again at the next login.
pub(crate) async fn reset(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, WebError> {
    let gone = || WebError::NotFound(format!("no user named {name:?}"));
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
                    .update_user(&name, &mut |user| user.mfa.take().is_some())?
                    .ok_or_else(gone)?;
                Ok(())
            },
        )
        .await?;
    if name != admin.name {
        state.logins.remove_user(&name);
    }
    info!(admin = %admin.name, user = %name, "two-factor authentication reset");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8 digits; the 6-digit codes are their last 6).
    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                format!("{:08}", hotp(secret, t / STEP_SECS, 8)),
                want,
                "t = {t}"
            );
            assert_eq!(totp(secret, t), want[2..], "t = {t}");
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let secret = b"12345678901234567890";
        let want = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in want.iter().enumerate() {
            assert_eq!(hotp(secret, counter as u64, 6), *want);
        }
    }

    #[test]
    fn codes_are_accepted_one_step_either_way_and_only_once() {
        let secret = b"12345678901234567890";
        let t = 1_700_000_000;
        let step = t / STEP_SECS;
        let code = totp(secret, t);
        assert_eq!(verify(secret, &code, t, 0), Some(step));
        assert_eq!(verify(secret, &code, t + STEP_SECS, 0), Some(step));
        assert_eq!(verify(secret, &code, t - STEP_SECS, 0), Some(step));
        assert_eq!(verify(secret, &code, t + 2 * STEP_SECS, 0), None);
        assert_eq!(verify(secret, &code, t, step), None, "replay refused");
        let previous = totp(secret, t - STEP_SECS);
        assert_eq!(
            verify(secret, &previous, t, step),
            None,
            "older step refused"
        );
        assert_eq!(verify(secret, "12345", t, 0), None);
        assert_eq!(verify(secret, "abcdef", t, 0), None);
        assert_eq!(verify(b"another secret", &code, t, 0), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), want);
        }
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
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

    #[test]
    fn pending_logins_expire_and_are_single_use() {
        let p = PendingLogins::default();
        let t0 = Instant::now();
        let token = p.create("alice", t0);
        assert_eq!(p.user(&token, t0).as_deref(), Some("alice"));
        assert_eq!(p.user("forged", t0), None);
        assert_eq!(
            p.take(&token, t0 + Duration::from_secs(1)).as_deref(),
            Some("alice")
        );
        assert_eq!(p.take(&token, t0), None, "single use");
        let late = p.create("bob", t0);
        assert_eq!(p.user(&late, t0 + PENDING_TTL), None, "expired");
        assert_eq!(p.take(&late, t0 + PENDING_TTL), None);
        let guessed = p.create("carol", t0);
        for _ in 0..PENDING_MAX_FAILURES {
            assert!(p.user(&guessed, t0).is_some());
            p.failed(&guessed);
        }
        assert_eq!(
            p.user(&guessed, t0),
            None,
            "dropped after too many wrong codes"
        );
    }

    #[test]
    fn reseal_moves_the_secret_to_the_new_key() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let mut user = UserRecord {
            id: String::new(),
            name: "alice".into(),
            password_hash: String::new(),
            role: portcullis_store::Role::User,
            created_at: 0,
            locked: false,
            mfa: Some(MfaRecord {
                sealed_secret: old.seal(b"s3cret", &secret_aad("alice")),
                confirmed: true,
                last_step: 0,
                since: 0,
            }),
        };
        assert!(reseal_user_mfa(&old, &new, &mut user).unwrap());
        assert!(!reseal_user_mfa(&old, &new, &mut user).unwrap());
        assert_eq!(&*open_secret(&new, &user).unwrap(), b"s3cret");
    }
}
