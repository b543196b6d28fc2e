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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::http::request::Parts;
use portcullis_store::{Role, UserRecord};

/// Name of the login cookie.
pub(crate) const COOKIE: &str = "pc_session";

#[derive(Debug, Clone)]
struct Login {
    user: String,
    /// The account's immutable id: the login is that account's, never a later one's of the
    /// same name (a login that completed while its account was being deleted must not pass to
    /// a new account created under the name).
    user_id: String,
    created: Instant,
    last_seen: Instant,
    /// Password only, MFA required but not set up: enrolment routes only.
    enrol_only: bool,
}

/// The routes (under `/api/v1`) an enrol-only login may call.
pub(crate) const ENROL_ONLY_ROUTES: &[&str] =
    &["/me", "/me/mfa/enrol", "/me/mfa/confirm", "/auth/logout"];

/// Logged-in browsers, by token. In memory: a restart logs everyone out.
#[derive(Clone)]
pub struct LoginSessions {
    inner: Arc<Mutex<HashMap<String, Login>>>,
    absolute: Duration,
    idle: Duration,
}

impl std::fmt::Debug for LoginSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSessions").finish_non_exhaustive()
    }
}

impl LoginSessions {
    /// Logins expire `absolute` after creation or `idle` after the last request.
    pub fn new(absolute: Duration, idle: Duration) -> Self {
        Self {
            inner: Arc::default(),
            absolute,
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Login>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new full login of `user`.
    pub(crate) fn create(&self, user: &UserRecord) -> String {
        self.create_login(user, false)
    }

    /// A new login of `user`; `enrol_only`: it may only enrol in MFA (and log out).
    pub(crate) fn create_login(&self, user: &UserRecord, enrol_only: bool) -> String {
        let token = portcullis_secrets::random_token(32);
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, l| !self.expired(l, now));
        map.insert(
            token.clone(),
            Login {
                user: user.name.clone(),
                user_id: user.id.clone(),
                created: now,
                last_seen: now,
                enrol_only,
            },
        );
        token
    }

    /// An enrol-only login becomes a full one (the user confirmed their second factor).
    pub(crate) fn upgrade(&self, token: &str) {
        if let Some(l) = self.lock().get_mut(token) {
            l.enrol_only = false;
        }
    }

    fn expired(&self, l: &Login, now: Instant) -> bool {
        now.duration_since(l.created) > self.absolute || now.duration_since(l.last_seen) > self.idle
    }

    /// The user name, account id and whether the login is enrol-only, of a live login (its
    /// idle time starts again).
    pub(crate) fn lookup(&self, token: &str) -> Option<(String, String, bool)> {
        let now = Instant::now();
        let mut map = self.lock();
        let login = map.get_mut(token)?;
        if self.expired(login, now) {
            map.remove(token);
            return None;
        }
        login.last_seen = now;
        Some((login.user.clone(), login.user_id.clone(), login.enrol_only))
    }

    /// Ends every login of `user` (deleted or locked).
    pub(crate) fn remove_user(&self, user: &str) {
        self.lock().retain(|_, l| l.user != user);
    }

    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(token);
    }
}

pub(crate) fn cookie_token(parts: &Parts) -> Option<String> {
    cookie_value(parts, COOKIE)
}

/// The value of the cookie `name`, if the request has a non-empty one.
pub(crate) fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    for value in parts.headers.get_all(header::COOKIE) {
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
