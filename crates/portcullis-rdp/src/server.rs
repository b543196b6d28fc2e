//! Towards native clients: an RDP server on `ironrdp-acceptor` 0.12 (the same IronRDP family as
//! the client side; `ironrdp-server` 0.13 belongs to an older one that cannot share a build with
//! it). mstsc, FreeRDP or Remmina connect to the gateway, log in with gateway credentials and are
//! shown the desktop of the target they picked, which the gateway reaches on its own.
//!
//! One connection, in order:
//! 1. X.224 negotiation and TLS with the gateway's certificate (no NLA yet: the client sends the
//!    typed credentials in the Client Info PDU, over TLS);
//! 2. the Client Info PDU is read by us before the acceptor sees it: the [`Gate`] checks the
//!    login and the grant, and a refusal ends the connection with an RDP error code there and
//!    then, before licensing, capabilities or any contact with a target;
//! 3. activation at the client's desktop size; the gate opens the target session and attaches
//!    this connection as a viewer ([`Display`]);
//! 4. the active loop: damage becomes 32-bit bitmap updates, client input goes back as
//!    protocol-neutral input; the session's end becomes an RDP error code and a disconnect.
//!
//! Every step before activation runs under one deadline and a byte budget, so a slow or
//! flooding client is cut off; each write has its own deadline.
//!
//! Laid out like `client`: `handshake` runs steps 1–3 up to activation, `active` opens the
//! session and runs step 4; `input` and `output` translate both ways; `oracles` are fuzz entries.

mod active;
mod handshake;
mod input;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;
mod output;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ironrdp_pdu::rdp::server_error_info::ProtocolIndependentConnectionBrokerCode;
use ironrdp_pdu::rdp::server_error_info::{ErrorInfo, ProtocolIndependentCode};
use portcullis_core::desktop::{ClipFile, ClipFileTerms, InputEvent, Rect};
use thiserror::Error;
use tokio::net::TcpStream;
use tracing::{info, warn};

/// A boxed future, so that [`Gate`] and [`Display`] can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Limits for one client connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the TCP accept to the end of activation (TLS, login, capabilities).
    pub handshake: Duration,
    /// Most bytes a client may send before it is activated.
    pub handshake_bytes: usize,
    /// Longest a single write to the client may take before it is cut off.
    pub write_stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(20),
            handshake_bytes: 1024 * 1024,
            write_stall: Duration::from_secs(30),
        }
    }
}

/// The listener's settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// The gateway's TLS identity.
    pub tls: Arc<rustls::ServerConfig>,
    /// The SubjectPublicKey of that certificate: NLA binds the login to it ([`public_key_of`]).
    pub public_key: Vec<u8>,
    /// Limits per connection.
    pub limits: Limits,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What a client presented to log in.
#[derive(Clone)]
pub struct Login {
    /// The user name field as typed (e.g. `alice#web01`).
    pub username: String,
    /// The domain field as typed (often empty).
    pub domain: String,
    /// The password as typed.
    pub password: String,
    /// The load-balancing info of an `.rdp` file (`Cookie: msts=...`), where ticket ids travel.
    pub routing_token: Option<String>,
    /// True when the client proved, with NLA, the identity [`Gate::nla_identity`] gave for its
    /// routing token (then `password` is empty or meaningless).
    pub nla: bool,
    /// The client's address.
    pub client_addr: SocketAddr,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .field("password", &"[redacted]")
            .field(
                "routing_token",
                &self.routing_token.as_ref().map(|_| "[redacted]"),
            )
            .field("client_addr", &self.client_addr)
            .finish()
    }
}

/// Why a client is refused or cut off; each maps to an RDP error code the client shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong user name, password or ticket.
    BadCredentials,
    /// Right credentials, but no grant for the target (or no target named).
    NotAllowed,
    /// The target could not be reached or refused the gateway.
    TargetFailed,
    /// An administrator closed the session.
    ClosedByAdmin,
    /// The session ended for another reason (target gone, policy).
    Ended,
    /// The gateway is too busy to check a login now (every login slot taken); try again.
    Busy,
    /// The gateway is shutting down: every session ends.
    Shutdown,
}

impl Refusal {
    fn error_info(self) -> ErrorInfo {
        match self {
            Refusal::BadCredentials | Refusal::NotAllowed => ErrorInfo::ProtocolIndependentCode(
                ProtocolIndependentCode::ServerInsufficientPrivileges,
            ),
            Refusal::TargetFailed => ErrorInfo::ProtocolIndependentConnectionBrokerCode(
                ProtocolIndependentConnectionBrokerCode::DestinationNotFound,
            ),
            Refusal::ClosedByAdmin => {
                ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::RpcInitiatedDisconnect)
            }
            Refusal::Ended | Refusal::Busy => {
                ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::ServerDeniedConnection)
            }
            // ERRINFO_SERVER_SHUTDOWN (0x19): clients that know it say the server is shutting
            // down; older ones show the code.
            Refusal::Shutdown => {
                ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::ServerShutdown)
            }
        }
    }
}

/// A refusal with words for the log (never sent to the client: RDP has only codes).
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct Denial {
    /// The kind, which picks the RDP error code.
    pub refusal: Refusal,
    /// Why, for the gateway's log.
    pub message: String,
}

/// Who was let in, and to what. Made by the [`Gate`], handed back to it to open the session.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Gateway user.
    pub user: String,
    /// The account's immutable id as it was when the login was checked (the session must open
    /// for that account, not for a later one of the same name).
    pub user_id: String,
    /// Target name.
    pub target: String,
}

/// The account an NLA client must prove (NTLM needs the password in clear on our side).
pub struct NlaIdentity {
    /// User name as the client types it.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for NlaIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NlaIdentity")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// The gateway's side of a native connection: checks logins and opens sessions.
pub trait Gate: Send + Sync + 'static {
    /// For a connection whose X.224 request carried `routing_token`: the identity NLA may check,
    /// if any (a one-time ticket). `None`: the connection uses TLS logon only.
    fn nla_identity(&self, routing_token: &str) -> Option<NlaIdentity>;
    /// Checks a login (password or ticket, and the grant). Must not contact any target.
    fn admit(&self, login: Login) -> BoxFuture<'_, Result<Admission, Denial>>;
    /// Opens (or joins) the session and attaches this connection as its viewer. `size` is
    /// the desktop size the client asked for.
    fn open(
        &self,
        admission: Admission,
        client_addr: SocketAddr,
        size: (u16, u16),
    ) -> BoxFuture<'_, Result<Box<dyn Display>, Denial>>;
}

/// What a [`Display`] reports.
#[derive(Debug)]
pub enum DisplayEvent {
    /// Changed areas with their RGBX pixels.
    Damage(Vec<(Rect, Vec<u8>)>),
    /// The desktop has a new size (its content follows as damage).
    Resize(u32, u32),
    /// Clipboard text from the target that the policy lets the client have.
    Clipboard(String),
    /// Files copied on the target that the policy lets the client have (with their content).
    ClipboardFiles(Vec<ClipFile>),
    /// Which files the client copies the gateway may fetch for the session (from its policy;
    /// reported first). Until then they are only named.
    ClipboardTerms(ClipFileTerms),
    /// A drive redirection (`rdpdr`) message from the session's target, already filtered.
    Device(Vec<u8>),
    /// The session ended.
    End(Denial),
}

/// A live session as one native client sees it.
pub trait Display: Send {
    /// The desktop size.
    fn size(&self) -> (u32, u32);
    /// The next change. Cancel-safe: nothing is lost when the future is dropped.
    fn next(&mut self) -> BoxFuture<'_, DisplayEvent>;
    /// Relays the client's input to the target (waits when the target is slow).
    fn input(&mut self, input: InputEvent) -> BoxFuture<'_, ()>;
    /// The client asked for (part of) the screen again.
    fn refresh(&mut self);
    /// Relays a drive redirection (`rdpdr`) message of the client to the session's target,
    /// whose adapter decides on it (dropped when the session has no redirected drive).
    fn device(&mut self, pdu: Vec<u8>) -> BoxFuture<'_, ()>;
    /// Resolves once the session ended ([`Display::next`] then reports it). The connection
    /// awaits it alongside every write to the client and every wait on the target, so a client
    /// that stopped reading never holds the session's viewer long past its end. By default
    /// never.
    fn ended(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
    /// The connection is cut off for `reason` (the client broke a bound): the session should
    /// end with it as its recorded reason. By default nothing: the session ends when the
    /// display is dropped, for a generic reason.
    fn cut_off(&mut self, reason: String) {
        let _ = reason;
    }
}

/// The SubjectPublicKey bits of a DER certificate, as CredSSP wants them.
pub fn public_key_of(cert_der: &[u8]) -> Result<Vec<u8>, String> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "the public key is not whole bytes".to_owned())
}

/// Why a connection ended early; logged by [`serve`].
#[derive(Debug, Error)]
pub(crate) enum ServeError {
    #[error("the client took longer than {0:?} to connect")]
    Timeout(Duration),
    #[error("the client sent more than {0} bytes before it was activated")]
    TooMuch(usize),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("RDP: {0}")]
    Protocol(String),
    #[error("refused: {0}")]
    Refused(Denial),
    #[error("the client sent too much: {0}")]
    Bounds(#[from] crate::reassembly::BoundsError),
    #[error("the session ended and the client was still not taking its last writes after {0:?}")]
    Stalled(Duration),
}

/// Serves one client connection to its end. Never panics on what the client sends; every
/// failure is logged with the client's address.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    gate: Arc<dyn Gate>,
) {
    let _ = tcp.set_nodelay(true);
    match active::open(tcp, peer, &config, gate.as_ref()).await {
        Ok(active) => {
            let user = active.admission.user.clone();
            let target = active.admission.target.clone();
            info!(client = %peer, %user, %target, "native RDP session started");
            match active.run(&config).await {
                Ok(reason) => {
                    info!(client = %peer, %user, %target, %reason, "native RDP session ended")
                }
                Err(error) => {
                    warn!(client = %peer, %user, %target, %error, "native RDP session cut off")
                }
            }
        }
        Err(ServeError::Refused(denial)) => {
            warn!(client = %peer, reason = %denial.message, "native RDP login refused")
        }
        Err(error) => warn!(client = %peer, %error, "native RDP connection failed"),
    }
}
