//! What handlers take from a request: the caller ([`AuthUser`], [`Admin`], [`Soc`]: a browser
//! login or an API token, checked against the store on every request) and a JSON body
//! ([`Body`]) whose rejections are JSON errors like every other. A handler names who may call
//! it through one of these; nothing is reachable without one, except the login steps.

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use portcullis_store::Role;
use serde::de::DeserializeOwned;

pub(crate) use crate::auth::AuthUser;
use crate::auth::{cookie_token, ENROL_ONLY_ROUTES};
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

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            // A bearer request is judged by its token alone, never by a cookie beside it.
            let bearer = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(WebError::Unauthorized)?;
            return crate::tokens::authenticate(parts, state, bearer.trim()).await;
        }
        let token = cookie_token(parts).ok_or(WebError::Unauthorized)?;
        let (name, user_id, enrol_only) =
            state.logins.lookup(&token).ok_or(WebError::Unauthorized)?;
        if enrol_only {
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map(|m| m.as_str().strip_prefix("/api/v1").unwrap_or(m.as_str()));
            if !route.is_some_and(|r| ENROL_ONLY_ROUTES.contains(&r)) {
                return Err(WebError::Forbidden(
                    "your role requires two-factor authentication: set it up first (your account page, #/me)"
                        .into(),
                ));
            }
        }
        let user = state
            .store
            .get_user(&name)?
            .filter(|u| u.id == user_id)
            .ok_or_else(|| {
                // Refused whatever becomes of it: ended if the store can.
                let _ = state.logins.remove(&token);
                WebError::Unauthorized
            })?;
        if user.locked {
            let _ = state.logins.remove(&token);
            return Err(WebError::Forbidden(
                "your account is locked by the security team".into(),
            ));
        }
        Ok(AuthUser {
            id: user.id,
            name: user.name,
            role: user.role,
            created_at: user.created_at,
        })
    }
}

/// A logged-in administrator.
#[derive(Debug, Clone)]
pub(crate) struct Admin(#[allow(dead_code)] pub AuthUser);

impl FromRequestParts<AppState> for Admin {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        with_role(parts, state, &[Role::Admin], "administrators only")
            .await
            .map(Admin)
    }
}

/// The logged-in user, if their role is one of `roles`; else 403 with `refusal`.
async fn with_role(
    parts: &mut Parts,
    state: &AppState,
    roles: &[Role],
    refusal: &str,
) -> Result<AuthUser, WebError> {
    let user = AuthUser::from_request_parts(parts, state).await?;
    if !roles.contains(&user.role) {
        return Err(WebError::Forbidden(refusal.into()));
    }
    Ok(user)
}

/// A logged-in member of the security team (role `soc`) or administrator: may watch, freeze and
/// kill any live session and lock users.
#[derive(Debug, Clone)]
pub(crate) struct Soc(pub AuthUser);

/// The logged-in user, if they review recordings: an administrator, a reviewer or the security
/// team (a plain user never reviews, not even their own sessions).
pub(crate) struct Reviewing(pub AuthUser);

impl FromRequestParts<AppState> for Reviewing {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        with_role(
            parts,
            state,
            &[Role::Admin, Role::Reviewer, Role::Soc],
            "reviews are for administrators, reviewers and the security team",
        )
        .await
        .map(Reviewing)
    }
}

impl FromRequestParts<AppState> for Soc {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        with_role(
            parts,
            state,
            &[Role::Soc, Role::Admin],
            "the security team and administrators only",
        )
        .await
        .map(Soc)
    }
}
