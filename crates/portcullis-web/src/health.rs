//! The operations listener: `/healthz` (the process answers), `/readyz` (it may be sent users: the
//! store and the audit trail answer and it is not draining) and `/metrics` (Prometheus text
//! format). Plain HTTP on an address of its own (`[ops] listen`), never on the public HTTPS
//! listener: what a load balancer, Kubernetes and Prometheus ask, not users. `/healthz` and
//! `/readyz` say nothing but ready or not and which part is not; `/metrics` needs `Authorization:
//! Bearer TOKEN` when a token is configured.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use portcullis_broker::stats;
use zeroize::Zeroizing;

use crate::{AppState, WebError};

/// How long recordings may wait for an object store that does not answer before `/readyz`
/// says not ready (the metrics say it at once).
const UPLOADS_BEHIND_MS: u64 = 5 * 60 * 1000;

/// How long `/readyz` waits for the store.
const STORE_CHECK: Duration = Duration::from_secs(5);

/// What the operations listener serves from.
#[derive(Clone)]
pub struct OpsState {
    app: AppState,
    metrics_token: Option<Arc<Zeroizing<String>>>,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl OpsState {
    /// Over the gateway's state; `metrics_token`: what `/metrics` requires as a bearer token.
    pub fn new(app: AppState, metrics_token: Option<Zeroizing<String>>) -> Self {
        Self {
            app,
            metrics_token: metrics_token.map(Arc::new),
        }
    }
}

/// The operations routes.
pub fn ops_router(ops: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(ops)
}

/// Serves `router` (plain HTTP) on `listener` until `shutdown` resolves.
pub async fn serve_ops(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| WebError::Startup(format!("ops listener: {e}")))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// What keeps this gateway from taking users now; empty: ready.
async fn not_ready(app: &AppState) -> Vec<String> {
    let mut why = Vec::new();
    if app.draining.load(Ordering::Relaxed) {
        why.push("draining: no new sessions".to_owned());
    }
    // What is wrong is said in general terms (the listener needs no login); the details are
    // logged.
    if let Some(failure) = app.audit.failure() {
        tracing::warn!(%failure, "not ready: the audit trail");
        why.push("the audit trail takes no records".to_owned());
    }
    let store = Arc::clone(&app.store);
    let asked = tokio::task::spawn_blocking(move || store.get_meta("secret_key_check"));
    match tokio::time::timeout(STORE_CHECK, asked).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "not ready: the store");
            why.push("the store does not answer".to_owned());
        }
        Ok(Err(_)) | Err(_) => why.push("the store does not answer".to_owned()),
    }
    // Recordings uploaded to an object store: a store that does not answer is not a reason to
    // send users elsewhere at once (every gateway shares it: all would go unready together,
    // while the spool keeps every recording safe); once recordings have waited
    // `UPLOADS_BEHIND` for it, it is.
    if let Some(storage) = app
        .recordings
        .as_ref()
        .map(|r| Arc::clone(&r.storage))
        .filter(|s| {
            s.uploads()
                .is_some_and(|u| u.oldest_pending_ms > UPLOADS_BEHIND_MS)
        })
    {
        let asked = tokio::task::spawn_blocking(move || storage.probe());
        match tokio::time::timeout(STORE_CHECK, asked).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "not ready: the object store");
                why.push("the object store does not answer and recordings wait for it".to_owned());
            }
            Ok(Err(_)) | Err(_) => {
                why.push("the object store does not answer and recordings wait for it".to_owned())
            }
        }
    }
    // In a cluster: the others must see this gateway's sessions to act on them.
    if app.cluster.is_some() {
        let last = app.cluster_published.load(Ordering::Relaxed);
        let stale = crate::cluster::PUBLISH_EVERY * 3;
        if crate::auth::now_ms() - last > i64::try_from(stale.as_millis()).unwrap_or(i64::MAX) {
            why.push("the cluster has not heard from this gateway lately".to_owned());
        }
    }
    why
}

async fn readyz(State(ops): State<OpsState>) -> Response {
    let why = not_ready(&ops.app).await;
    if why.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
            .into_response()
    }
}

fn authorised(ops: &OpsState, headers: &HeaderMap) -> bool {
    let Some(token) = &ops.metrics_token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    portcullis_secrets::constant_time_eq(given.as_bytes(), token.as_bytes())
}

async fn metrics(State(ops): State<OpsState>, headers: HeaderMap) -> Response {
    if !authorised(&ops, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    let ready = not_ready(&ops.app).await.is_empty();
    let store = Arc::clone(&ops.app.store);
    let targets = tokio::task::spawn_blocking(move || store.list_targets())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let sessions = ops.app.broker.list();
    let mut counts = std::collections::BTreeMap::<(String, &str), u64>::new();
    for s in &sessions {
        let entry = serde_json::to_value(s.entry)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let protocol = targets
            .iter()
            .find(|t| t.name == s.target)
            .map_or("unknown", |t| t.kind.as_str());
        *counts.entry((entry, protocol)).or_default() += 1;
    }
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        name.to_owned()
    };
    let mut lines = Vec::new();
    let name = family(
        "portcullis_sessions",
        "gauge",
        "Live sessions on this gateway.",
    );
    for ((entry, protocol), n) in &counts {
        lines.push(format!(
            "{name}{{entry=\"{entry}\",protocol=\"{protocol}\"}} {n}"
        ));
    }
    out.push_str(&lines.join("\n"));
    if !lines.is_empty() {
        out.push('\n');
    }
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    counter(
        &mut out,
        "portcullis_login_failures_total",
        "Failed logins (wrong password or second-factor code, browser or native RDP).",
        load(&stats::LOGIN_FAILURES),
    );
    counter(
        &mut out,
        "portcullis_policy_denials_total",
        "Policy denials (sessions refused, clipboard or file crossings blocked).",
        load(&stats::POLICY_DENIALS),
    );
    counter(
        &mut out,
        "portcullis_recorder_frames_dropped_total",
        "Screen updates the recorders merged away because encoding fell behind.",
        load(&stats::FRAMES_DROPPED),
    );
    let kills = load(&stats::KILLS);
    #[allow(clippy::cast_precision_loss)]
    let kill_seconds = load(&stats::KILL_MICROS) as f64 / 1e6;
    let _ = writeln!(
        out,
        "# HELP portcullis_kill_seconds From a kill's request to the session told to end (its audit record fsynced first).\n\
         # TYPE portcullis_kill_seconds summary\nportcullis_kill_seconds_sum {kill_seconds}\nportcullis_kill_seconds_count {kills}"
    );
    if let Some(appended) = ops.app.audit.appended() {
        counter(
            &mut out,
            "portcullis_audit_records_total",
            "Audit records written and fsynced since this gateway started.",
            appended,
        );
    }
    if let Some(u) = ops
        .app
        .recordings
        .as_ref()
        .and_then(|r| r.storage.uploads())
    {
        upload_metrics(&mut out, &u);
    }
    let gauge = |out: &mut String, name: &str, help: &str, value: bool| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
            u8::from(value)
        );
    };
    gauge(
        &mut out,
        "portcullis_ready",
        "1 when /readyz answers ready.",
        ready,
    );
    gauge(
        &mut out,
        "portcullis_draining",
        "1 while the gateway drains (no new sessions).",
        ops.app.draining.load(Ordering::Relaxed),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// The uploads of recordings to the object store.
fn upload_metrics(out: &mut String, u: &portcullis_recording::UploadStatus) {
    let mut one = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    #[allow(clippy::cast_precision_loss)]
    let secs = |ms: u64| format!("{}", ms as f64 / 1000.0);
    one(
        "portcullis_recording_uploaded_bytes_total",
        "counter",
        "Recording bytes uploaded to the object store since this gateway started.",
        u.uploaded_bytes.to_string(),
    );
    one(
        "portcullis_recording_upload_pending_bytes",
        "gauge",
        "Recording bytes durable in the local spool, not yet in the object store.",
        u.pending_bytes.to_string(),
    );
    one(
        "portcullis_recording_upload_pending_recordings",
        "gauge",
        "Recordings with something not yet in the object store.",
        u.pending_recordings.to_string(),
    );
    one(
        "portcullis_recording_upload_oldest_pending_seconds",
        "gauge",
        "How long the oldest bytes not yet uploaded have waited.",
        secs(u.oldest_pending_ms),
    );
    one(
        "portcullis_recording_upload_failures_total",
        "counter",
        "Failed upload attempts (retried).",
        u.failures.to_string(),
    );
    one(
        "portcullis_object_store_reachable",
        "gauge",
        "1 when the last request to the object store worked.",
        u8::from(u.reachable).to_string(),
    );
    if let Some((p50, p99)) = u.lag_ms {
        let _ = writeln!(
            out,
            "# HELP portcullis_recording_upload_lag_seconds From durable in the spool to stored in the object store (recent uploads).\n\
             # TYPE portcullis_recording_upload_lag_seconds summary\n\
             portcullis_recording_upload_lag_seconds{{quantile=\"0.5\"}} {}\n\
             portcullis_recording_upload_lag_seconds{{quantile=\"0.99\"}} {}",
            secs(p50),
            secs(p99)
        );
    }
}

/// Starts draining `app`: `/readyz` answers not ready and new sessions are refused; running
/// ones go on.
pub fn start_draining(app: &AppState) {
    app.draining.store(true, Ordering::Relaxed);
}

/// A draining flag, shared by everything that must refuse new sessions.
pub type Draining = Arc<AtomicBool>;
