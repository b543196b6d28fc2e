//! Browser login sessions (the cookie, who is logged in) and [`AuthUser`], the caller as the
//! extractors in `crate::extract` find them.
//!
//! A login gives the browser a random token in an HttpOnly, Secure, SameSite=Strict cookie.
//! Every request re-reads the user from the store, so deleting a user or changing their role
//! takes effect at once.
//!
//! A request may instead carry `Authorization: Bearer <API token>` (see [`crate::tokens`]): then
//! the cookie is ignored, and the token's scopes limit the routes it reaches.
//!
//! A user whose role requires MFA and who has not enrolled gets an *enrol-only* login from the
//! password step: it reaches [`ENROL_ONLY_ROUTES`] and nothing else (403 naming the reason), and
//! becomes a full login when enrolment is confirmed (see [`crate::mfa`]).

pub(crate) mod api;

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::http::request::Parts;
use portcullis_store::{Ephemeral, EphemeralChange, Role, Store, StoreError, UserRecord};
use serde::{Deserialize, Serialize};

/// Name of the login cookie.
pub(crate) const COOKIE: &str = "pc_session";

/// A login as the store keeps it (under the SHA-256 of its token: whoever reads the store
/// cannot log in with what they find).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Login {
    user: String,
    /// The account's immutable id: the login is that account's, never a later one's of the
    /// same name (a login that completed while its account was being deleted must not pass to
    /// a new account created under the name).
    user_id: String,
    /// Unix milliseconds.
    created_ms: i64,
    /// Unix milliseconds of the last request seen (written at most every [`TOUCH_EVERY_MS`]).
    last_seen_ms: i64,
    /// Password only, MFA required but not set up: enrolment routes only.
    enrol_only: bool,
    /// Signed in through an identity provider: signing out ends the provider's session too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sso: Option<LoginSso>,
}

pub(crate) use crate::sso::LoginSso;

/// The routes (under `/api/v1`) an enrol-only login may call.
pub(crate) const ENROL_ONLY_ROUTES: &[&str] = &[
    "/me",
    "/me/mfa/enrol",
    "/me/mfa/confirm",
    "/me/passkeys",
    "/me/passkeys/options",
    "/auth/logout",
];

/// The store's space for logins.
const LOGIN_SPACE: &str = "login";
/// A login's last request is written down at most this often (each request would be a write
/// otherwise): its idle timeout is this much coarser.
const TOUCH_EVERY_MS: i64 = 30_000;

/// Logged-in browsers, by token, in the store's short-lived state: in memory with the embedded
/// store (a restart logs everyone out), shared by every gateway on a PostgreSQL store (a login
/// on one works on all). Cheap to clone.
#[derive(Clone)]
pub struct LoginSessions {
    store: Arc<dyn Store>,
    absolute: Duration,
    idle: Duration,
    purge: Purge,
}

impl std::fmt::Debug for LoginSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSessions").finish_non_exhaustive()
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The most entries each space of short-lived state keeps (checked with each purge): what an
/// unauthenticated flood of failed logins (one count per account name and per network) or a
/// burst of logins and tickets can make the store hold.
const EPHEMERAL_BOUNDS: &[(&str, usize)] = &[
    ("login_failures", 100_000),
    ("mfa_pending", 10_000),
    ("rdp_ticket", 10_000),
    (crate::sso::PENDING_SPACE, 10_000),
    (LOGIN_SPACE, 200_000),
];

/// Drops the store's expired short-lived entries now and then (at most once a minute per
/// gateway), so that what nobody comes back for does not pile up.
#[derive(Clone, Default)]
pub(crate) struct Purge {
    last_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Purge {
    pub(crate) fn maybe(&self, store: &dyn Store, now_ms: i64) {
        use std::sync::atomic::Ordering;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms - last < 60_000
            || self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = store.ephemeral_purge(now_ms) {
            tracing::warn!(error = %e, "cannot purge expired logins, tickets and failure counts");
        }
        for (space, keep) in EPHEMERAL_BOUNDS {
            match store.ephemeral_trim(space, *keep) {
                Ok(0) => {}
                Ok(dropped) => {
                    tracing::warn!(
                        space,
                        dropped,
                        keep,
                        "short-lived state over its bound: those expiring first dropped"
                    );
                }
                Err(e) => tracing::warn!(error = %e, space, "cannot bound short-lived state"),
            }
        }
    }
}

/// The store's key of a login token: its SHA-256, in hex.
fn login_key(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl LoginSessions {
    /// Logins kept in `store`, which expire `absolute` after creation or `idle` after the last
    /// request.
    pub fn new(store: Arc<dyn Store>, absolute: Duration, idle: Duration) -> Self {
        Self {
            store,
            absolute,
            idle,
            purge: Purge::default(),
        }
    }

    /// A new full login of `user`.
    #[cfg(test)]
    pub(crate) fn create(&self, user: &UserRecord) -> Result<String, StoreError> {
        self.create_login(user, false, None)
    }

    /// When `login` is over: `absolute` after creation or `idle` after its last request.
    fn expires_ms(&self, login: &Login) -> i64 {
        login
            .created_ms
            .saturating_add(ms(self.absolute))
            .min(login.last_seen_ms.saturating_add(ms(self.idle)))
    }

    fn entry(&self, login: &Login) -> Ephemeral {
        Ephemeral {
            owner: login.user.clone(),
            value: serde_json::to_vec(login).unwrap_or_default(),
            expires_at_ms: self.expires_ms(login),
        }
    }

    /// A new login of `user`; `enrol_only`: it may only enrol in MFA (and log out); `sso`: it
    /// came through an identity provider.
    pub(crate) fn create_login(
        &self,
        user: &UserRecord,
        enrol_only: bool,
        sso: Option<LoginSso>,
    ) -> Result<String, StoreError> {
        let token = portcullis_secrets::random_token(32);
        let now = now_ms();
        self.purge.maybe(&*self.store, now);
        let login = Login {
            user: user.name.clone(),
            user_id: user.id.clone(),
            created_ms: now,
            last_seen_ms: now,
            enrol_only,
            sso,
        };
        let entry = self.entry(&login);
        self.store
            .ephemeral_update(LOGIN_SPACE, &login_key(&token), now, &mut |_| {
                EphemeralChange::Put(entry.clone())
            })?;
        Ok(token)
    }

    /// An enrol-only login becomes a full one (the user confirmed their second factor).
    pub(crate) fn upgrade(&self, token: &str) -> Result<(), StoreError> {
        self.store
            .ephemeral_update(
                LOGIN_SPACE,
                &login_key(token),
                now_ms(),
                &mut |entry| match entry
                    .and_then(|e| serde_json::from_slice::<Login>(&e.value).ok())
                {
                    Some(mut login) => {
                        login.enrol_only = false;
                        EphemeralChange::Put(self.entry(&login))
                    }
                    None => EphemeralChange::Keep,
                },
            )
            .map(drop)
    }

    /// The user name, account id and whether the login is enrol-only, of a live login (its
    /// idle time starts again). `None` also when the store cannot say (logged: deny).
    pub(crate) fn lookup(&self, token: &str) -> Option<(String, String, bool)> {
        let now = now_ms();
        let mut live = None;
        let looked =
            self.store
                .ephemeral_update(LOGIN_SPACE, &login_key(token), now, &mut |entry| {
                    live = None;
                    let Some(entry) = entry else {
                        return EphemeralChange::Keep;
                    };
                    let Ok(mut login) = serde_json::from_slice::<Login>(&entry.value) else {
                        return EphemeralChange::Delete;
                    };
                    if self.expires_ms(&login) <= now {
                        return EphemeralChange::Delete;
                    }
                    live = Some((login.user.clone(), login.user_id.clone(), login.enrol_only));
                    if now - login.last_seen_ms < TOUCH_EVERY_MS {
                        return EphemeralChange::Keep;
                    }
                    login.last_seen_ms = now;
                    EphemeralChange::Put(self.entry(&login))
                });
        match looked {
            Ok(_) => live,
            Err(e) => {
                tracing::error!(error = %e, "cannot look up a login in the store: refused");
                None
            }
        }
    }

    /// How the login `token` signed in through an identity provider, if it did.
    pub(crate) fn sso_of(&self, token: &str) -> Option<LoginSso> {
        let mut found = None;
        let looked =
            self.store
                .ephemeral_update(LOGIN_SPACE, &login_key(token), now_ms(), &mut |entry| {
                    found = entry
                        .and_then(|e| serde_json::from_slice::<Login>(&e.value).ok())
                        .and_then(|l| l.sso);
                    EphemeralChange::Keep
                });
        looked.ok().and(found)
    }

    /// Ends every login of `user` (deleted, locked, second factor reset). A failure is the
    /// caller's to report: the act is then not done.
    pub(crate) fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.store
            .ephemeral_delete_owner(LOGIN_SPACE, user)
            .map(drop)
    }

    /// Ends one login (a logout). A failure is the caller's to report: the login still works.
    pub(crate) fn remove(&self, token: &str) -> Result<(), StoreError> {
        self.store
            .ephemeral_update(LOGIN_SPACE, &login_key(token), now_ms(), &mut |_| {
                EphemeralChange::Delete
            })
            .map(drop)
    }
}

pub(crate) fn cookie_token(parts: &Parts) -> Option<String> {
    cookie_value(&parts.headers, COOKIE)
}

/// The value of the cookie `name`, if the request has a non-empty one.
pub(crate) fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name && !v.is_empty() {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

pub(crate) fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A logged-in user, as the store knows them now.
#[derive(Debug, Clone)]
pub(crate) struct AuthUser {
    /// The account's immutable id.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// When the account was created, Unix seconds.
    pub created_at: i64,
}

impl AuthUser {
    /// The caller's whole account record as the store has it now (its groups, passkeys...),
    /// only if it is still the account the login is for (401 otherwise).
    pub(crate) fn account(&self, state: &crate::AppState) -> Result<UserRecord, crate::WebError> {
        state
            .store
            .get_user(&self.name)?
            .filter(|u| u.id == self.id)
            .ok_or(crate::WebError::Unauthorized)
    }
}
