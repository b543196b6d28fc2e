//! The gateway's HTTPS face: the JSON API under `/api/v1`, the session WebSocket and the
//! embedded browser UI. This is the only crate that knows axum; it maps every error to an HTTP
//! status here and nowhere else. The wire contract is `docs/browser-protocol.md`.

pub mod audit;
mod auth;
mod behaviour;
pub mod cluster;
mod error;
mod extract;
mod grants;
pub mod health;
mod login;
pub mod mfa;
mod openapi;
pub mod ops;
mod passkeys;
pub mod policy;
pub mod rdp;
mod recordings;
pub mod relay;
pub mod requests;
mod session_end;
mod sessions;
pub mod sso;
mod targets;
#[cfg(test)]
mod test_support;
pub mod throttle;
mod tls;
pub mod tokens;
mod ui;
mod users;
pub mod watches;
mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use portcullis_broker::Broker;
use portcullis_secrets::SecretKey;
use portcullis_store::{Role, Store};

pub use auth::LoginSessions;
// The paths the binary has used since before the modules were grouped.
pub use error::WebError;
pub use policy::store as policy_store;
pub use rdp::{gate as rdp_gate, preauth as rdp_preauth, tickets as rdp_tickets};
pub use recordings::retention;
pub use recordings::search::{index_dir as search_index_dir, CatchUpJob, CaughtUp, Search};
pub use recordings::Recordings;
pub use tls::{load_or_create_self_signed, server_config, TlsFiles};

/// Password verifications that may run at once; more get 429 (see `login`).
const LOGIN_SLOTS: usize = 4;

/// Longest a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest JSON body the API accepts.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Everything the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Users, targets, grants.
    pub store: Arc<dyn Store>,
    /// Seals and opens target secrets.
    pub key: Arc<SecretKey>,
    /// Live sessions.
    pub broker: Broker,
    /// Logged-in browsers.
    pub logins: LoginSessions,
    /// Password verifications allowed at once (argon2 is memory- and CPU-hungry).
    pub login_slots: Arc<tokio::sync::Semaphore>,
    /// Stored recordings; `None` when recording is off.
    pub recordings: Option<Recordings>,
    /// Search across the recordings; `None` when recording is off.
    pub search: Option<recordings::search::Search>,
    /// Offer RemoteFX (lossy, less bandwidth) to RDP targets; off: lossless bitmaps.
    pub rdp_remotefx: bool,
    /// The RDP listener's port, when native clients are served.
    pub rdp_port: Option<u16>,
    /// `rdp.public_address`: the host (and maybe port) `.rdp` files name, when users reach the
    /// gateway through a proxy or another name than the one they browse to.
    pub rdp_public_address: Option<String>,
    /// One-time tickets of `.rdp` files.
    pub rdp_tickets: rdp::tickets::RdpTickets,
    /// The security team's open watches (ended when the watcher's account is revoked).
    pub watches: watches::Watches,
    /// The policy in force (who may open what, how, when; what may cross).
    pub policy: policy::PolicyState,
    /// The file the policy comes from (`[policy] file`): then the API refuses to change it.
    pub policy_file: Option<PathBuf>,
    /// Held while a new policy is recorded, saved and put in force.
    pub(crate) policy_writes: Arc<tokio::sync::Mutex<()>>,
    /// The audit trail (none only in tests of the HTTP layer).
    pub audit: audit::Audit,
    /// Failed logins, for lock-out with back-off (browser and native alike).
    pub throttle: throttle::LoginThrottle,
    /// Logins waiting for their second factor.
    pub pending: mfa::PendingLogins,
    /// Roles whose users must use two-factor authentication (`[auth] mfa_required_roles`).
    pub mfa_required_roles: Vec<Role>,
    /// Held while a user's TOTP state is read and written (a code is spent once).
    pub(crate) mfa_lock: Arc<Mutex<()>>,
    /// Draining: no new sessions (running ones go on); `/readyz` answers not ready.
    pub draining: health::Draining,
    /// The other gateways of a cluster (a PostgreSQL store), if any.
    pub cluster: Option<cluster::ClusterLink>,
    /// When this gateway last published its sessions to the cluster (Unix ms; 0: never).
    pub(crate) cluster_published: Arc<std::sync::atomic::AtomicI64>,
    /// Where the other gateways of a cluster reach this one (to watch its sessions).
    pub advertise: Option<relay::NodeAddress>,
    /// The identity providers' discovery documents and keys, cached.
    pub(crate) sso: sso::client::Discovery,
    /// Held while the single sign-on settings are read, changed and saved.
    pub(crate) sso_writes: Arc<tokio::sync::Mutex<()>>,
    /// Announces access requests and decisions (started by [`serve_https`]).
    pub(crate) webhook: requests::webhook::Webhook,
    /// How long a recording no `[[retention]]` entry of the policy matches is kept after its
    /// session ended (`[recording] retention_days`); `None`: for ever.
    pub retention_default: Option<std::time::Duration>,
}

impl AppState {
    /// State over the given parts, with default login lifetimes.
    pub fn new(store: Arc<dyn Store>, key: Arc<SecretKey>, broker: Broker) -> Self {
        Self {
            store: Arc::clone(&store),
            key: Arc::clone(&key),
            broker,
            logins: LoginSessions::new(
                Arc::clone(&store),
                Duration::from_secs(12 * 3600),
                Duration::from_secs(3600),
            ),
            login_slots: Arc::new(tokio::sync::Semaphore::new(LOGIN_SLOTS)),
            recordings: None,
            search: None,
            rdp_remotefx: false,
            rdp_port: None,
            rdp_public_address: None,
            rdp_tickets: rdp::tickets::RdpTickets::new(
                Arc::clone(&store),
                Arc::clone(&key),
                Duration::from_secs(300),
            ),
            watches: watches::Watches::default(),
            policy: policy::PolicyState::default_policy(),
            policy_file: None,
            policy_writes: Arc::default(),
            audit: audit::Audit::default(),
            throttle: throttle::LoginThrottle::new(Arc::clone(&store)),
            pending: mfa::PendingLogins::new(Arc::clone(&store)),
            mfa_required_roles: Vec::new(),
            mfa_lock: Arc::default(),
            draining: Arc::default(),
            cluster: None,
            cluster_published: Arc::default(),
            advertise: None,
            sso: sso::client::Discovery::new().unwrap_or_else(|e| {
                tracing::error!(error = %e, "single sign-on unavailable");
                sso::client::Discovery::default()
            }),
            sso_writes: Arc::default(),
            webhook: requests::webhook::Webhook::default(),
            retention_default: None,
        }
    }

    /// Users of `roles` must use two-factor authentication.
    pub fn with_mfa_required_roles(mut self, roles: Vec<Role>) -> Self {
        self.mfa_required_roles = roles;
        self
    }

    /// Writes the audit trail to `audit` (the broker should send it session events too).
    pub fn with_audit(mut self, audit: audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Decides with `policy`; `managed_by_file` names the file it was loaded from, if any
    /// (the API then refuses changes, naming the file).
    pub fn with_policy(
        mut self,
        policy: policy::PolicyState,
        managed_by_file: Option<PathBuf>,
    ) -> Self {
        self.policy = policy;
        self.policy_file = managed_by_file;
        self
    }

    /// Serves stored recordings too.
    pub fn with_recordings(mut self, recordings: Recordings) -> Self {
        self.recordings = Some(recordings);
        self
    }

    /// Keeps recordings no `[[retention]]` entry matches for `default` after their end (`None`:
    /// for ever); [`retention::spawn`] deletes them after.
    pub fn with_retention_default(mut self, default: Option<std::time::Duration>) -> Self {
        self.retention_default = default;
        self
    }

    /// Searches the recordings with `search` (its indexer is started apart).
    pub fn with_search(mut self, search: recordings::search::Search) -> Self {
        self.search = Some(search);
        self
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // Each resource's routes; `openapi::tests::every_route_is_documented_and_scoped` checks them against
    // the OpenAPI document and the token table.
    let api = api_routes()
        .fallback(not_found)
        .layer(middleware::from_fn(csrf_guard))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    Router::new()
        .nest("/api/v1", api)
        .fallback(ui::serve)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Every route under `/api/v1`, resource by resource.
fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(auth::api::routes())
        .merge(mfa::api::routes())
        .merge(sso::api::routes())
        .merge(requests::api::routes())
        .merge(passkeys::routes())
        .merge(tokens::api::routes())
        .merge(targets::routes())
        .merge(users::routes())
        .merge(grants::routes())
        .merge(policy::api::routes())
        .merge(sessions::routes())
        .merge(sessions::soc::routes())
        .merge(recordings::api::routes())
        .merge(recordings::search::routes())
        .merge(recordings::review::routes())
        .merge(audit::api::routes())
        .merge(openapi::routes())
}

async fn not_found() -> WebError {
    WebError::NotFound("no such API route".into())
}

/// A state-changing request must carry `x-portcullis-csrf: 1`, which a cross-site form or
/// image cannot set. Together with the SameSite=Strict cookie this stops CSRF.
///
/// Requests with an `Authorization` header (API tokens) need no such header: a cross-site page
/// cannot set `Authorization` either, and such a request is judged by its token alone (the
/// cookie is then ignored, see `auth`).
async fn csrf_guard(req: Request<axum::body::Body>, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.headers().contains_key(header::AUTHORIZATION);
    let ok = req
        .headers()
        .get("x-portcullis-csrf")
        .is_some_and(|v| v.as_bytes() == b"1");
    if !safe && !ok {
        return error::WebError::Forbidden("missing x-portcullis-csrf header".into())
            .into_response();
    }
    next.run(req).await
}

async fn security_headers(req: Request<axum::body::Body>, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    // A handler's own policy stands (the session report: stricter, no script at all).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; style-src 'self'; \
         script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    }
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    // API answers are private and not stored, unless a handler said otherwise (recording
    // segments never change once listed, and seeking back should not fetch them again).
    if is_api && !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}

/// Serves `app` over HTTPS on `listen` until `shutdown` resolves.
pub async fn serve_https(
    listen: SocketAddr,
    tls: &TlsFiles,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The same TLS policy as the RDP listener (TLS 1.2 and 1.3 only, AEAD suites with forward
    // secrecy: rustls's safe defaults), plus HTTP/2 and HTTP/1.1 by ALPN.
    let (mut server_tls, _) = server_config(tls)?;
    if let Some(c) = std::sync::Arc::get_mut(&mut server_tls) {
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    let config = axum_server::tls_rustls::RustlsConfig::from_config(server_tls);
    let handle = axum_server::Handle::new();
    let h2 = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h2.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    // Access requests: the webhook's deliveries, and the sweeper ending what ran out.
    state.webhook.start();
    let sweeper = requests::spawn_sweeper(state.clone());
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let mut server = axum_server::bind_rustls(listen, config).handle(handle);
    // A client that opens a connection and sends its request headers slowly (or never) is cut
    // off: the TLS handshake has axum-server's 10 s, the headers HEADER_READ_TIMEOUT.
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let served = server
        .serve(app)
        .await
        .map_err(|e| WebError::Startup(format!("cannot serve on {listen}: {e}")));
    sweeper.abort();
    served
}

/// Where the TLS files of a data directory live.
pub fn default_tls_files(data_dir: &Path) -> TlsFiles {
    TlsFiles {
        cert: data_dir.join("tls").join("cert.pem"),
        key: data_dir.join("tls").join("key.pem"),
    }
}
