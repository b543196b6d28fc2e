use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_store::StoreError;

use thiserror::Error;
use tracing::error;

use crate::ops::OpsError;

/// An error of the web layer, mapped to an HTTP status.
#[derive(Debug, Error)]
pub enum WebError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("not logged in")]
    Unauthorized,
    /// 401 on the login call.
    #[error("wrong user name or password")]
    BadCredentials,
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 429.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: a dependency the action needs (the audit trail) cannot take it right now.
    #[error("{0}")]
    Unavailable(String),
    /// 502: another gateway of the cluster, which the action needs, cannot be reached.
    #[error("{0}")]
    BadGateway(String),
    /// 500: details are logged, not shown.
    #[error("internal error")]
    Internal(String),
    /// The server could not start.
    #[error("{0}")]
    Startup(String),
}

impl WebError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized | WebError::BadCredentials => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            WebError::Internal(_) | WebError::Startup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { .. } => WebError::Conflict(e.to_string()),
            StoreError::NotFound { .. } => WebError::NotFound(e.to_string()),
            StoreError::InvalidName(_) => WebError::BadRequest(e.to_string()),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(detail) | WebError::Startup(detail) = &self {
            error!(error = %detail, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

impl From<OpsError> for WebError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Invalid(m) => WebError::BadRequest(m),
            OpsError::Store(s) => s.into(),
            OpsError::Crypto(m) => WebError::Internal(m),
            e @ OpsError::Unaudited(_) => WebError::Unavailable(e.to_string()),
        }
    }
}
