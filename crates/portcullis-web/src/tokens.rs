//! API tokens for automation, and the table of what each route needs from one. The routes that
//! create, list and revoke tokens are `api`'s.
//!
//! An administrator creates a token for a user with scopes; the token's text
//! (`pcat_<id>_<secret>`) is shown once and only the SHA-256 of its secret is stored. A request
//! with `Authorization: Bearer <token>` acts as that user, limited to the intersection of the
//! user's role (the handlers' extractors, as for a browser) and the token's scopes ([`ROUTES`],
//! checked in [`authenticate`]). Deny by default: a route missing from the table, or marked
//! [`Need::Browser`], refuses every token. Expired, revoked or unknown tokens get 401; a locked
//! user's tokens 403. Calls that change something are audit-recorded (`token_use`, actor the
//! user, detail the token's name) before they are carried out.

pub(crate) mod api;

use axum::extract::MatchedPath;
use axum::http::request::Parts;
use axum::http::Method;
use portcullis_audit::{Kind, Record};
use sha2::{Digest as _, Sha256};
use tracing::warn;

use crate::auth::AuthUser;
use crate::{ops, AppState, WebError};

/// Everything the token's user's role allows.
pub const ADMIN: &str = "admin";
/// List live sessions and see their thumbnails.
pub const SESSIONS_READ: &str = "sessions:read";
/// Kill, close, freeze and unfreeze live sessions.
pub const SESSIONS_KILL: &str = "sessions:kill";
/// Lock and unlock users.
pub const USERS_LOCK: &str = "users:lock";
/// Query and verify the audit trail.
pub const AUDIT_READ: &str = "audit:read";
/// List, play and export recordings.
pub const RECORDINGS_READ: &str = "recordings:read";
/// Mark recordings reviewed, flag moments, take reports (with the role to: admin, reviewer, soc).
pub const RECORDINGS_REVIEW: &str = "recordings:review";

/// Every scope a token may have and what it allows, as the admin page offers them
/// (`GET /tokens/scopes`), in this order.
pub const SCOPE_INFO: [(&str, &str); 7] = [
    (SESSIONS_READ, "List live sessions and thumbnails"),
    (SESSIONS_KILL, "Kill, freeze and unfreeze sessions"),
    (USERS_LOCK, "Lock and unlock users"),
    (AUDIT_READ, "Read the audit trail and its exports"),
    (RECORDINGS_READ, "Read and export recordings"),
    (
        RECORDINGS_REVIEW,
        "Review recordings: marks, flagged moments, reports",
    ),
    (ADMIN, "Everything the user's role allows"),
];

/// Every scope a token may have (the names of [`SCOPE_INFO`]).
pub const SCOPES: &[&str] = &{
    let mut names = [""; SCOPE_INFO.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = SCOPE_INFO[i].0;
        i += 1;
    }
    names
};

/// What a bearer token needs to call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No login at all (the login steps, the OpenAPI document).
    Public,
    /// Any valid token (who am I, log out).
    AnyToken,
    /// A token with this scope, or with [`ADMIN`].
    Scope(&'static str),
    /// People only: opening or watching sessions, RDP tickets, MFA enrolment. No token.
    Browser,
    /// Another gateway of the cluster, with a one-time ticket it left in the shared store (a
    /// watch it relays). No token, no login.
    Gateway,
}

impl Need {
    /// As the OpenAPI document shows it (`x-portcullis-scope`).
    pub fn label(self) -> &'static str {
        match self {
            Need::Public => "public",
            Need::AnyToken => "any",
            Need::Scope(s) => s,
            Need::Browser => "browser",
            Need::Gateway => "gateway",
        }
    }
}

/// Every route (method, path under `/api/v1`) and what a token needs for it: the one place.
/// A unit test checks it against the OpenAPI document, route by route.
pub const ROUTES: &[(&str, &str, Need)] = {
    use Need::*;
    &[
        ("post", "/auth/login", Public),
        ("post", "/auth/mfa", Public),
        ("get", "/openapi.json", Public),
        ("get", "/auth/sso/providers", Public),
        ("get", "/auth/sso/{id}/start", Public),
        ("get", "/auth/sso/callback", Public),
        ("post", "/auth/logout", AnyToken),
        ("get", "/me", AnyToken),
        ("post", "/me/mfa/enrol", Browser),
        ("post", "/me/mfa/confirm", Browser),
        ("post", "/me/mfa/recovery-codes", Browser),
        ("get", "/me/passkeys", Browser),
        ("post", "/me/passkeys", Browser),
        ("post", "/me/passkeys/options", Browser),
        ("delete", "/me/passkeys/{id}", Browser),
        ("post", "/me/passkeys/proof", Browser),
        ("post", "/auth/mfa/passkey/options", Public),
        ("post", "/auth/mfa/passkey", Public),
        ("get", "/users/{name}/passkeys", Scope(ADMIN)),
        ("get", "/targets/{name}/connect", Browser),
        ("post", "/targets/{name}/rdp-file", Browser),
        ("get", "/sessions/{id}/watch", Browser),
        // People ask for access and decide on it; no token does.
        ("get", "/requests", Browser),
        ("post", "/requests", Browser),
        ("get", "/requests/targets", Browser),
        ("post", "/requests/{id}/approve", Browser),
        ("post", "/requests/{id}/deny", Browser),
        ("post", "/requests/{id}/cancel", Browser),
        ("get", "/requests/settings", Scope(ADMIN)),
        ("put", "/requests/settings", Scope(ADMIN)),
        ("get", "/cluster/watch/{id}", Gateway),
        ("get", "/targets", Scope(ADMIN)),
        ("post", "/targets", Scope(ADMIN)),
        ("delete", "/targets/{name}", Scope(ADMIN)),
        ("get", "/targets/{name}", Scope(ADMIN)),
        ("put", "/targets/{name}/identity", Scope(ADMIN)),
        ("post", "/targets/{name}/identity/accept", Scope(ADMIN)),
        ("get", "/users", Scope(ADMIN)),
        ("post", "/users", Scope(ADMIN)),
        ("delete", "/users/{name}", Scope(ADMIN)),
        ("delete", "/users/{name}/mfa", Scope(ADMIN)),
        ("get", "/grants", Scope(ADMIN)),
        ("post", "/grants", Scope(ADMIN)),
        ("delete", "/grants/{user}/{target}", Scope(ADMIN)),
        ("get", "/sso/settings", Scope(ADMIN)),
        ("put", "/sso/settings", Scope(ADMIN)),
        ("put", "/sso/providers/{id}", Scope(ADMIN)),
        ("delete", "/sso/providers/{id}", Scope(ADMIN)),
        ("get", "/sso/providers/{id}/test", Scope(ADMIN)),
        ("get", "/policy", Scope(ADMIN)),
        ("put", "/policy", Scope(ADMIN)),
        ("post", "/policy/explain", Scope(ADMIN)),
        ("get", "/tokens", Scope(ADMIN)),
        ("get", "/tokens/scopes", Scope(ADMIN)),
        ("post", "/tokens", Scope(ADMIN)),
        ("delete", "/tokens/{id}", Scope(ADMIN)),
        ("get", "/sessions", Scope(SESSIONS_READ)),
        ("get", "/sessions/events", Scope(SESSIONS_READ)),
        ("get", "/sessions/{id}/thumbnail", Scope(SESSIONS_READ)),
        ("delete", "/sessions/{id}", Scope(SESSIONS_KILL)),
        ("post", "/sessions/{id}/kill", Scope(SESSIONS_KILL)),
        ("post", "/sessions/{id}/freeze", Scope(SESSIONS_KILL)),
        ("post", "/sessions/{id}/unfreeze", Scope(SESSIONS_KILL)),
        ("post", "/users/{name}/lock", Scope(USERS_LOCK)),
        ("post", "/users/{name}/unlock", Scope(USERS_LOCK)),
        ("get", "/audit", Scope(AUDIT_READ)),
        ("get", "/audit/verify", Scope(AUDIT_READ)),
        ("get", "/audit/exports", Scope(AUDIT_READ)),
        ("get", "/recordings", Scope(RECORDINGS_READ)),
        ("get", "/search", Scope(RECORDINGS_READ)),
        ("get", "/recordings/{id}", Scope(RECORDINGS_READ)),
        (
            "get",
            "/recordings/{id}/init/{part}",
            Scope(RECORDINGS_READ),
        ),
        (
            "get",
            "/recordings/{id}/segments/{seq}",
            Scope(RECORDINGS_READ),
        ),
        (
            "get",
            "/recordings/{id}/run/{from}/{to}",
            Scope(RECORDINGS_READ),
        ),
        (
            "get",
            "/recordings/{id}/thumbnails/{seq}",
            Scope(RECORDINGS_READ),
        ),
        ("get", "/recordings/{id}/events", Scope(RECORDINGS_READ)),
        ("get", "/recordings/{id}/export", Scope(RECORDINGS_READ)),
        ("get", "/recordings/{id}/review", Scope(RECORDINGS_REVIEW)),
        ("post", "/recordings/{id}/review", Scope(RECORDINGS_REVIEW)),
        ("post", "/recordings/{id}/flags", Scope(RECORDINGS_REVIEW)),
        (
            "delete",
            "/recordings/{id}/flags/{flag}",
            Scope(RECORDINGS_REVIEW),
        ),
        // The report holds what was typed and shown: the content scope (and a reviewing role).
        ("get", "/recordings/{id}/report", Scope(RECORDINGS_READ)),
    ]
};

/// What a token needs for `method` on `path` (a route template under `/api/v1`); `None`: the
/// route is not in the table, so no token may call it.
pub fn need(method: &str, path: &str) -> Option<Need> {
    ROUTES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, n)| *n)
}

/// Whether a token with `scopes` may call a route that needs `need`.
pub fn allows(scopes: &[String], need: Option<Need>) -> bool {
    match need {
        Some(Need::Public | Need::AnyToken) => true,
        Some(Need::Scope(s)) => scopes.iter().any(|have| have == s || have == ADMIN),
        Some(Need::Browser | Need::Gateway) | None => false,
    }
}

/// The beginning of every token's text.
pub const TOKEN_PREFIX: &str = "pcat_";
pub(crate) fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The route template of a request under `/api/v1`, as the table names it.
fn route_of(parts: &Parts) -> Option<String> {
    let matched = parts.extensions.get::<MatchedPath>()?.as_str();
    Some(
        matched
            .strip_prefix("/api/v1")
            .unwrap_or(matched)
            .to_owned(),
    )
}

/// The user a bearer token acts as, if the token is good and its scopes allow this route.
pub(crate) async fn authenticate(
    parts: &Parts,
    state: &AppState,
    text: &str,
) -> Result<AuthUser, WebError> {
    let (id, secret) = text
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .ok_or(WebError::Unauthorized)?;
    let token = state.store.get_token(id)?.ok_or(WebError::Unauthorized)?;
    if !portcullis_secrets::constant_time_eq(&secret_hash(secret), &token.secret_hash) {
        return Err(WebError::Unauthorized);
    }
    if ops::now_unix() >= token.expires_at {
        return Err(WebError::Unauthorized);
    }
    let user = state
        .store
        .get_user(&token.user)?
        // The very account the token was made for: never a later one of the same name.
        .filter(|u| !u.id.is_empty() && u.id == token.user_id)
        .ok_or(WebError::Unauthorized)?;
    if user.locked {
        return Err(WebError::Forbidden(
            "the token's user is locked by the security team".into(),
        ));
    }
    let route = route_of(parts).unwrap_or_default();
    let method = parts.method.as_str().to_ascii_lowercase();
    let need = need(&method, &route);
    if !allows(&token.scopes, need) {
        warn!(user = %user.name, token = %token.name, %method, %route, "token refused: scope");
        return Err(WebError::Forbidden(match need {
            Some(Need::Scope(s)) => format!(
                "this API token's scopes ({}) do not include {s}",
                token.scopes.join(", ")
            ),
            _ => "API tokens cannot call this route: it needs a browser login".into(),
        }));
    }
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        state
            .audit
            .record(
                Record::new(
                    Kind::new("token_use").map_err(|e| WebError::Internal(e.to_string()))?,
                    &user.name,
                )
                .detail("token", token.name.as_str())
                .detail("token_id", token.id.as_str())
                .detail("method", method.as_str())
                .detail("route", route.as_str()),
            )
            .await?;
    }
    Ok(AuthUser {
        id: user.id,
        name: user.name,
        role: user.role,
        created_at: user.created_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scopes_deny_by_default() {
        let reader = scopes(&[SESSIONS_READ]);
        assert!(allows(&reader, need("get", "/sessions")));
        assert!(allows(&reader, need("GET", "/sessions/{id}/thumbnail")));
        assert!(!allows(&reader, need("post", "/sessions/{id}/kill")));
        assert!(!allows(&reader, need("get", "/audit")));
        assert!(
            allows(&reader, need("get", "/me")),
            "any token may ask who it is"
        );
        assert!(
            !allows(&reader, need("get", "/no/such/route")),
            "unlisted: denied"
        );
        assert!(
            !allows(&reader, need("put", "/sessions")),
            "wrong method: denied"
        );
        let killer = scopes(&[SESSIONS_KILL]);
        for route in [
            "/sessions/{id}/kill",
            "/sessions/{id}/freeze",
            "/sessions/{id}/unfreeze",
        ] {
            assert!(allows(&killer, need("post", route)), "{route}");
        }
        assert!(!allows(&killer, need("get", "/sessions")));
        let admin = scopes(&[ADMIN]);
        for (m, p, n) in ROUTES {
            assert_eq!(
                allows(&admin, Some(*n)),
                !matches!(n, Need::Browser | Need::Gateway),
                "{m} {p}"
            );
        }
        assert!(!allows(&admin, need("get", "/targets/{name}/connect")));
        assert!(!allows(&admin, need("post", "/me/mfa/enrol")));
        assert!(!allows(&[], need("get", "/sessions")));
    }

    #[test]
    fn every_scope_is_used_and_the_table_has_no_duplicates() {
        for s in SCOPES {
            assert!(
                ROUTES.iter().any(|(_, _, n)| *n == Need::Scope(s)),
                "{s} guards nothing"
            );
        }
        for (i, (m, p, _)) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[..i].iter().any(|(m2, p2, _)| m2 == m && p2 == p),
                "{m} {p} twice"
            );
        }
    }

    use std::sync::Arc;

    use axum::body::Body as HttpBody;
    use axum::http::Request;
    use axum::http::StatusCode;
    use portcullis_secrets::SecretKey;
    use portcullis_store::TokenRecord;
    use portcullis_store::{MemoryStore, Role, Store, UserRecord};
    use tower::ServiceExt as _;

    fn state() -> AppState {
        let store = Arc::new(MemoryStore::new());
        for (name, role) in [("sam", Role::Soc), ("ursula", Role::User)] {
            store
                .create_user(&UserRecord {
                    id: format!("u_{name}"),
                    name: name.into(),
                    password_hash: String::new(),
                    role,
                    created_at: 0,
                    locked: false,
                    mfa: None,
                    sso: None,
                    groups: Vec::new(),
                    passkeys: Vec::new(),
                })
                .unwrap();
        }
        let broker = portcullis_broker::Broker::new(Default::default());
        AppState::new(store, Arc::new(SecretKey::generate()), broker)
    }

    /// Stores a token for `user`; returns its text.
    fn put(state: &AppState, id: &str, user: &str, scopes: &[&str], expires_at: i64) -> String {
        state
            .store
            .put_token(&TokenRecord {
                id: id.into(),
                user: user.into(),
                user_id: format!("u_{user}"),
                name: format!("{id}-name"),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                secret_hash: secret_hash("s3cret"),
                created_at: 0,
                expires_at,
                created_by: "admin".into(),
            })
            .unwrap();
        format!("{TOKEN_PREFIX}{id}_s3cret")
    }

    async fn call(state: &AppState, method: &str, path: &str, auth: &str) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(HttpBody::from("{}"))
            .unwrap();
        crate::router(state.clone())
            .oneshot(req)
            .await
            .unwrap()
            .status()
    }

    /// A token belongs to the account it was made for, not to its name: once that account is
    /// gone, a new account of the same name gets nothing from it (also when the token was left
    /// behind, e.g. by an older version that did not delete it with its user).
    #[tokio::test]
    async fn a_token_never_acts_for_a_later_account_of_the_same_name() {
        let state = state();
        let later = ops::now_unix() + 3600;
        let token = format!(
            "Bearer {}",
            put(&state, "t1", "sam", &[SESSIONS_READ], later)
        );
        assert_eq!(
            call(&state, "GET", "/sessions", &token).await,
            StatusCode::OK
        );
        // sam is deleted (the store takes the token too) and the token put back as if left
        // behind; a new sam is created.
        let kept = state.store.get_token("t1").unwrap().unwrap();
        assert!(state.store.delete_user("sam").unwrap());
        assert_eq!(state.store.get_token("t1").unwrap(), None);
        state.store.put_token(&kept).unwrap();
        ops::create_user(&*state.store, "sam", "a new sam's password", Role::Soc).unwrap();
        assert_eq!(
            call(&state, "GET", "/sessions", &token).await,
            StatusCode::UNAUTHORIZED
        );
    }

    /// A browser login is the account's too: a login that outlived its account (it completed
    /// while the account was being deleted) does not pass to a new account of the same name.
    #[tokio::test]
    async fn a_login_never_acts_for_a_later_account_of_the_same_name() {
        let state = state();
        let sam = state.store.get_user("sam").unwrap().unwrap();
        let cookie = format!("pc_session={}", state.logins.create(&sam).unwrap());
        let me = |cookie: String| {
            let state = state.clone();
            async move {
                let req = Request::builder()
                    .uri("/api/v1/me")
                    .header("cookie", cookie)
                    .body(HttpBody::empty())
                    .unwrap();
                crate::router(state).oneshot(req).await.unwrap().status()
            }
        };
        assert_eq!(me(cookie.clone()).await, StatusCode::OK);
        assert!(state.store.delete_user("sam").unwrap());
        ops::create_user(&*state.store, "sam", "a new sam's password", Role::Soc).unwrap();
        assert_eq!(me(cookie).await, StatusCode::UNAUTHORIZED);
    }

    /// Records from before ids existed get them at start; tokens follow their user, and a token
    /// whose user is gone goes.
    #[test]
    fn user_ids_are_given_once_at_start() {
        let store = MemoryStore::new();
        for name in ["old", "older"] {
            store
                .create_user(&UserRecord {
                    id: String::new(),
                    name: name.into(),
                    password_hash: String::new(),
                    role: Role::User,
                    created_at: 0,
                    locked: false,
                    mfa: None,
                    sso: None,
                    groups: Vec::new(),
                    passkeys: Vec::new(),
                })
                .unwrap();
        }
        for (id, user) in [("t1", "old"), ("t2", "gone")] {
            store
                .put_token(&portcullis_store::TokenRecord {
                    id: id.into(),
                    user: user.into(),
                    user_id: String::new(),
                    name: id.into(),
                    scopes: vec![],
                    secret_hash: vec![],
                    created_at: 0,
                    expires_at: 0,
                    created_by: String::new(),
                })
                .unwrap();
        }
        assert_eq!(
            ops::migrate_user_ids(&store, &mut |_, _| Ok(())).unwrap(),
            4
        );
        let old = store.get_user("old").unwrap().unwrap();
        assert!(old.id.starts_with("u_"));
        assert_ne!(old.id, store.get_user("older").unwrap().unwrap().id);
        assert_eq!(store.get_token("t1").unwrap().unwrap().user_id, old.id);
        assert_eq!(store.get_token("t2").unwrap(), None);
        // Idempotent: nothing changes the second time, ids stay.
        assert_eq!(
            ops::migrate_user_ids(&store, &mut |_, _| Ok(())).unwrap(),
            0
        );
        assert_eq!(store.get_user("old").unwrap().unwrap().id, old.id);
    }

    #[tokio::test]
    async fn bearer_tokens_through_the_router() {
        let state = state();
        let later = ops::now_unix() + 3600;
        let reader = put(&state, "t1", "sam", &[SESSIONS_READ], later);
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(
            call(&state, "GET", "/sessions", &bearer(&reader)).await,
            StatusCode::OK
        );
        assert_eq!(
            call(&state, "GET", "/me", &bearer(&reader)).await,
            StatusCode::OK
        );
        assert_eq!(
            call(&state, "GET", "/audit", &bearer(&reader)).await,
            StatusCode::FORBIDDEN
        );
        // No CSRF header needed; the scope decides: 403 before the handler's 404.
        assert_eq!(
            call(&state, "POST", "/sessions/x/freeze", &bearer(&reader)).await,
            StatusCode::FORBIDDEN
        );
        let killer = put(&state, "t2", "sam", &[SESSIONS_KILL], later);
        assert_eq!(
            call(&state, "POST", "/sessions/x/freeze", &bearer(&killer)).await,
            StatusCode::NOT_FOUND
        );
        // The role still decides: a user's token with every scope lists no sessions.
        let user_all = put(&state, "t3", "ursula", &[ADMIN], later);
        assert_eq!(
            call(&state, "GET", "/sessions", &bearer(&user_all)).await,
            StatusCode::FORBIDDEN
        );
        // Expired, wrong secret, malformed, unknown: 401.
        let expired = put(&state, "t4", "sam", &[SESSIONS_READ], ops::now_unix() - 1);
        for bad in [
            bearer(&expired),
            bearer("pcat_t1_wrong"),
            bearer("pcat_nosuch_s3cret"),
            bearer("garbage"),
            "Basic abc".to_owned(),
        ] {
            assert_eq!(
                call(&state, "GET", "/sessions", &bad).await,
                StatusCode::UNAUTHORIZED,
                "{bad}"
            );
        }
        // Revoked: 401.
        state.store.delete_token("t1").unwrap();
        assert_eq!(
            call(&state, "GET", "/sessions", &bearer(&reader)).await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn an_enrol_only_login_reaches_the_enrolment_routes_only() {
        let state = state();
        let login = state
            .logins
            .create_login(&state.store.get_user("sam").unwrap().unwrap(), true, None)
            .unwrap();
        let send = |method: &str, path: &str| {
            Request::builder()
                .method(method)
                .uri(format!("/api/v1{path}"))
                .header("cookie", format!("pc_session={login}"))
                .header("x-portcullis-csrf", "1")
                .body(HttpBody::empty())
                .unwrap()
        };
        let status = |req: Request<HttpBody>| {
            let app = crate::router(state.clone());
            async move { app.oneshot(req).await.unwrap().status() }
        };
        assert_eq!(status(send("GET", "/me")).await, StatusCode::OK);
        assert_eq!(status(send("POST", "/me/mfa/enrol")).await, StatusCode::OK);
        for (m, p) in [("GET", "/sessions"), ("GET", "/targets"), ("GET", "/audit")] {
            assert_eq!(status(send(m, p)).await, StatusCode::FORBIDDEN, "{m} {p}");
        }
        state.logins.upgrade(&login).unwrap();
        assert_eq!(status(send("GET", "/sessions")).await, StatusCode::OK);
    }

    /// The admin page's scope list comes from here: every scope, in table order, described.
    #[tokio::test]
    async fn the_scope_list_is_served_to_admins_only() {
        use crate::test_support::call_as;
        let state = state();
        state
            .store
            .create_user(&UserRecord {
                id: "u_ada".into(),
                name: "ada".into(),
                password_hash: String::new(),
                role: Role::Admin,
                created_at: 0,
                locked: false,
                mfa: None,
                sso: None,
                groups: Vec::new(),
                passkeys: Vec::new(),
            })
            .unwrap();
        let (status, body) = call_as(&state, "ada", "GET", "/tokens/scopes", None).await;
        assert_eq!(status, StatusCode::OK);
        let listed = body["scopes"].as_array().unwrap();
        let names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, SCOPES);
        for s in listed {
            assert!(!s["description"].as_str().unwrap().is_empty(), "{s}");
        }
        for user in ["sam", "ursula"] {
            let (status, _) = call_as(&state, user, "GET", "/tokens/scopes", None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{user}");
        }
        // An admin's token needs the admin scope, as for the other token routes.
        let later = ops::now_unix() + 3600;
        let reader = put(&state, "t1", "ada", &[AUDIT_READ], later);
        let admin = put(&state, "t2", "ada", &[ADMIN], later);
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(
            call(&state, "GET", "/tokens/scopes", &bearer(&reader)).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&state, "GET", "/tokens/scopes", &bearer(&admin)).await,
            StatusCode::OK
        );
    }
}
