//! What the crate's tests share.

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::AppState;

/// Sends a request through the whole router as `user` (a fresh browser login of that account,
/// with the CSRF header); returns the status and the JSON answer (`Null` when there is none).
pub(crate) async fn call_as(
    state: &AppState,
    user: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let account = state
        .store
        .get_user(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {user:?} in the test's store"));
    let token = state.logins.create(&account).unwrap();
    let req = Request::builder()
        .method(method)
        .uri(format!("/api/v1{path}"))
        .header("cookie", format!("pc_session={token}"))
        .header("x-portcullis-csrf", "1")
        .header("content-type", "application/json")
        .body(body.map_or_else(HttpBody::empty, |b| HttpBody::from(b.to_string())))
        .unwrap_or_else(|e| panic!("bad test request: {e}"));
    let res = crate::router(state.clone())
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {});
    let status = res.status();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
