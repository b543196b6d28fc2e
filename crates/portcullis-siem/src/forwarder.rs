//! The I/O loop: connects the sink, reads the audit directory, writes batches, watches the
//! connection, stores the cursor. Every decision is the [`Pump`]'s.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_audit::{Filter, Order, Watermark};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::{timeout, Instant};
use tracing::{error, info, warn};

use crate::config::{Destination, Plan, SiemConfig, SiemSource};
use crate::cursor::{self, Cursor};
use crate::pump::{Batch, Position, Pump, Status};
use crate::tail;

/// Why a forwarder cannot start. Everything after the start (a receiver down, a full disk,
/// an unreadable log) is retried and shown in the [`Status`] instead.
#[derive(Debug, thiserror::Error)]
pub enum SiemError {
    /// The section is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The CA file cannot be used.
    #[error("[[siem]] ca_file {path}: {why}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The state directory cannot be made.
    #[error("[[siem]] state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// What the gateway keeps of a running forwarder: its status, and a way to wake it when a
/// record was appended (otherwise it looks every `poll_ms`).
#[derive(Debug, Clone)]
pub struct Handle {
    status: watch::Receiver<Status>,
    wake: Arc<Notify>,
}

impl Handle {
    /// The status now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees each change of the status.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Tells the forwarder that new records may be there.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Where a forwarder connects.
pub(crate) enum Target {
    File(PathBuf),
    Tcp(String),
    Tls {
        address: String,
        connector: tokio_rustls::TlsConnector,
        server_name: ServerName<'static>,
    },
}

/// An open sink.
enum Conn {
    File(tokio::fs::File),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Target {
    async fn connect(&self) -> io::Result<Conn> {
        match self {
            Target::File(path) => {
                let existed = tokio::fs::try_exists(path).await.unwrap_or(false);
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?;
                if !existed {
                    // The new file's directory entry must survive a crash too.
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        tokio::fs::File::open(dir).await?.sync_all().await?;
                    }
                }
                Ok(Conn::File(file))
            }
            Target::Tcp(address) => {
                let tcp = TcpStream::connect(address).await?;
                tcp.set_nodelay(true)?;
                Ok(Conn::Tcp(tcp))
            }
            Target::Tls {
                address,
                connector,
                server_name,
            } => {
                let tcp = TcpStream::connect(address).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name.clone(), tcp).await?;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// Resolves when the peer closes or resets the connection (a syslog receiver sends nothing;
/// anything it does send is ignored).
async fn closed<S: AsyncRead + Unpin>(s: &mut S) -> io::Error {
    let mut scratch = [0u8; 512];
    loop {
        match s.read(&mut scratch).await {
            Ok(0) => {
                return io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the receiver closed the connection",
                )
            }
            Ok(_) => continue,
            Err(e) => return e,
        }
    }
}

impl Conn {
    /// Writes and flushes a batch (and fsyncs a file).
    async fn write_batch(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::File(file) => {
                write_flush(file, bytes).await?;
                file.sync_data().await
            }
            Conn::Tcp(tcp) => write_flush(tcp, bytes).await,
            Conn::Tls(tls) => write_flush(tls, bytes).await,
        }
    }

    /// Resolves when the connection is gone; never for a file.
    async fn closed(&mut self) -> io::Error {
        match self {
            Conn::File(_) => std::future::pending().await,
            Conn::Tcp(tcp) => closed(tcp).await,
            Conn::Tls(tls) => closed(tls).await,
        }
    }

    /// Whether the connection is known to be gone right now (without waiting).
    async fn check_closed(&mut self) -> Option<io::Error> {
        // Let the runtime's I/O driver run first, so that a reset that has arrived is seen.
        tokio::task::yield_now().await;
        timeout(Duration::ZERO, self.closed()).await.ok()
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::File(file) => file.flush().await,
            Conn::Tcp(tcp) => tcp.shutdown().await,
            Conn::Tls(tls) => tls.shutdown().await,
        };
    }
}

pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The machine's host name, for the syslog HOSTNAME (`-` when it cannot be read).
pub fn machine_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// A TLS 1.2/1.3 client (ring) that trusts the certificates of `ca_file` only.
fn tls_connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, SiemError> {
    let bad = |why: String| SiemError::CaFile {
        path: ca_file.to_owned(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Where a forwarder reads records and keeps its cursor: this gateway's trail ([`Local`]) or
/// the cluster's merged trail ([`Cluster`]).
pub trait Source: Send + 'static + sealed::Sealed {
    /// Where delivery stands.
    type Position: Position;
}

pub(crate) mod sealed {
    use super::*;

    /// What the loop asks of a source (not for use outside this crate).
    pub trait Sealed: Send {
        type Pos: Position;
        /// Whether to export now; may move the pump (a lease taken over). Quick when not due.
        fn hold(
            &mut self,
            pump: &mut Pump<Self::Pos>,
            sink: &str,
        ) -> impl Future<Output = bool> + Send;
        /// When [`Sealed::hold`] wants to look again.
        fn next_check(&self) -> Option<Instant>;
        /// Whether a connect or a write may start now (a cluster export's lease renewed
        /// recently enough that it cannot run out meanwhile).
        fn fresh(&self) -> bool;
        /// The next batch after the pump's sent position, if there is one.
        fn next_batch(
            &mut self,
            pump: &mut Pump<Self::Pos>,
            sink: &str,
        ) -> impl Future<Output = Option<Batch<Self::Pos>>> + Send;
        /// Stores the delivered position.
        fn store(&mut self, at: &Self::Pos) -> impl Future<Output = Result<(), String>> + Send;
        /// At the stop, after the last store.
        fn release(&mut self) -> impl Future<Output = ()> + Send;
    }
}

/// One `[[siem]]` section's forwarder: reads the audit trail forward from its cursor and
/// delivers every record at least once. Make it with [`Forwarder::new`] (this gateway's trail)
/// or [`Forwarder::cluster`] (the cluster's), keep its [`Forwarder::handle`], then
/// [`Forwarder::run`] it on a tokio runtime.
pub struct Forwarder<S: Source = Local> {
    plan: Plan,
    target: Target,
    source: S,
    pump: Pump<S::Position>,
    status: watch::Sender<Status>,
    wake: Arc<Notify>,
}

/// This gateway's own audit trail, read from its directory; the cursor in a file.
pub struct Local {
    audit_dir: PathBuf,
    cursor_path: PathBuf,
    /// The writer's fsynced end, when the log is open in this process.
    synced: Option<Watermark>,
}

impl Source for Local {
    type Position = Cursor;
}

pub(crate) fn target(plan: &Plan) -> Result<Target, SiemError> {
    Ok(match &plan.destination {
        Destination::File(path) => Target::File(path.clone()),
        Destination::Tcp(address) => Target::Tcp(address.clone()),
        Destination::Tls {
            address,
            ca_file,
            server_name,
        } => Target::Tls {
            address: address.clone(),
            connector: tls_connector(ca_file)?,
            server_name: server_name.clone(),
        },
    })
}

impl Forwarder<Local> {
    /// Checks the section, loads the CA file and the cursor (`siem-<name>.cursor` in the
    /// section's `state_dir`, or else in `default_state_dir`, made if missing).
    ///
    /// A cursor file that cannot be read is reported (log and status) and delivery starts
    /// again from the first record: duplicates, not losses.
    pub fn new(
        config: &SiemConfig,
        audit_dir: impl Into<PathBuf>,
        default_state_dir: impl Into<PathBuf>,
    ) -> Result<Self, SiemError> {
        let plan = config.plan(&machine_hostname())?;
        if plan.source != SiemSource::Local {
            return Err(SiemError::Config(crate::ConfigError(
                "a cluster export (`source = \"cluster\"`) needs the cluster's store".into(),
            )));
        }
        let target = target(&plan)?;
        let state_dir = plan
            .state_dir
            .clone()
            .unwrap_or_else(|| default_state_dir.into());
        std::fs::create_dir_all(&state_dir).map_err(|source| SiemError::StateDir {
            path: state_dir.clone(),
            source,
        })?;
        let cursor_path = state_dir.join(format!("siem-{}.cursor", plan.name));
        let (cursor, problem) = match cursor::load(&cursor_path) {
            Ok(cursor) => (cursor.unwrap_or(Cursor::START), None),
            Err(e) => {
                let message = format!(
                    "{}: {e}; sending again from the first record",
                    cursor_path.display()
                );
                error!(sink = %plan.sink, "{message}");
                (Cursor::START, Some(message))
            }
        };
        let mut pump = Pump::new(
            cursor,
            plan.formatter.clone(),
            plan.settings,
            plan.sink.clone(),
        );
        if let Some(message) = problem {
            pump.error(message, wall_ms());
        }
        let source = Local {
            audit_dir: audit_dir.into(),
            cursor_path,
            synced: None,
        };
        Ok(Self::assemble(plan, target, source, pump))
    }

    /// Forwards only what the log's writer has fsynced ([`AuditLog::watermark`]): a record
    /// whose line is whole but whose fsync has not returned may vanish in a crash and its seq go
    /// to another record, so it is not sent yet. The gateway always gives it; without one (a
    /// log written by another process), whole lines are read, which a crash may take back.
    ///
    /// [`AuditLog::watermark`]: portcullis_audit::AuditLog::watermark
    #[must_use]
    pub fn synced_by(mut self, watermark: Watermark) -> Self {
        self.source.synced = Some(watermark);
        self
    }

    /// Where the cursor is kept.
    pub fn cursor_path(&self) -> &Path {
        &self.source.cursor_path
    }
}

impl sealed::Sealed for Local {
    type Pos = Cursor;

    async fn hold(&mut self, _: &mut Pump<Cursor>, _: &str) -> bool {
        true
    }

    fn next_check(&self) -> Option<Instant> {
        None
    }

    fn fresh(&self) -> bool {
        true
    }

    /// One read of the log.
    async fn next_batch(&mut self, pump: &mut Pump<Cursor>, sink: &str) -> Option<Batch> {
        let dir_name = self.audit_dir.display().to_string();
        let failed = |pump: &mut Pump<Cursor>, e: String| {
            let message = format!("reading {dir_name}: {e}");
            warn!(sink = %sink, "{message}");
            pump.on_read_failed(message, Instant::now(), wall_ms());
        };
        if pump.needs_cursor_check() {
            if let Err(e) = self.check_cursor(pump, sink).await {
                failed(pump, e);
                return None;
            }
        }
        let synced = self.synced.as_ref().map(Watermark::synced_seq);
        let last = match synced {
            Some(seq) => Some(seq),
            None => {
                let dir = self.audit_dir.clone();
                tokio::task::spawn_blocking(move || tail::last_seq(&dir))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
            }
        };
        if !pump.on_log_end(last, Instant::now()) {
            return None;
        }
        let dir = self.audit_dir.clone();
        let filter = pump.read_filter(synced);
        let read = tokio::task::spawn_blocking(move || {
            portcullis_audit::read_only_query(&dir, &filter).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match read {
            Ok(entries) => pump.on_records(&entries, Instant::now()),
            Err(e) => {
                failed(pump, e);
                None
            }
        }
    }

    async fn store(&mut self, at: &Cursor) -> Result<(), String> {
        let (path, at) = (self.cursor_path.clone(), *at);
        tokio::task::spawn_blocking(move || cursor::store(&path, &at))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(|e| format!("storing {}: {e}", self.cursor_path.display()))
    }

    async fn release(&mut self) {}
}

impl Local {
    /// Checks the cursor against the log once, before the first read (see
    /// [`Pump::on_cursor_check`]).
    async fn check_cursor(&mut self, pump: &mut Pump<Cursor>, sink: &str) -> Result<(), String> {
        let cursor = pump.delivered();
        let dir = self.audit_dir.clone();
        let opened_at = self.synced.as_ref().map(Watermark::opened_at);
        let found = tokio::task::spawn_blocking(move || {
            let to_cursor = |e: &portcullis_audit::Entry| Cursor {
                seq: e.seq,
                hash: e.hash,
            };
            let end = match opened_at {
                Some((seq, hash)) => Cursor { seq, hash },
                None => {
                    let newest = Filter {
                        order: Order::NewestFirst,
                        ..Filter::new(1)
                    };
                    portcullis_audit::read_only_query(&dir, &newest)?
                        .first()
                        .map_or(Cursor::START, to_cursor)
                }
            };
            if end.seq < cursor.seq {
                return Ok((None, end));
            }
            let at = Filter {
                after_seq: Some(cursor.seq.saturating_sub(1)),
                before_seq: Some(cursor.seq.saturating_add(1)),
                ..Filter::new(1)
            };
            let found = portcullis_audit::read_only_query(&dir, &at)?;
            Ok::<_, portcullis_audit::AuditError>((found.first().map(to_cursor), end))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if pump.on_cursor_check(found.0, found.1) {
            let delivered = pump.delivered().seq;
            warn!(sink = %sink, from_seq = delivered + 1, "SIEM cursor moved back: delivering again");
        }
        Ok(())
    }
}

impl<S: Source + sealed::Sealed<Pos = <S as Source>::Position>> Forwarder<S> {
    pub(crate) fn assemble(plan: Plan, target: Target, source: S, pump: Pump<S::Position>) -> Self {
        let (status, _) = watch::channel(pump.status());
        Self {
            plan,
            target,
            source,
            pump,
            status,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The status and wake-up handle.
    pub fn handle(&self) -> Handle {
        Handle {
            status: self.status.subscribe(),
            wake: Arc::clone(&self.wake),
        }
    }

    fn publish(&self) {
        let now = self.pump.status();
        self.status.send_if_modified(|s| {
            if *s == now {
                false
            } else {
                *s = now;
                true
            }
        });
    }

    /// Forwards until `shutdown` resolves. Returns only then: failures are retried with
    /// back-off and shown in the status. Records sent but not yet delivered when it stops
    /// are sent again next time.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut conn: Option<Conn> = None;
        let sink = self.plan.sink.clone();
        info!(sink = %sink, after = ?self.pump.delivered(), "SIEM forwarder started");
        loop {
            let held = tokio::select! {
                biased;
                () = &mut shutdown => break,
                held = self.source.hold(&mut self.pump, &sink) => held,
            };
            if !held {
                if let Some(mut c) = conn.take() {
                    c.shutdown().await;
                }
                self.pump.on_standby();
            }
            let now = Instant::now();
            if held && conn.is_none() && self.pump.wants_connect(now) && self.source.fresh() {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    result = timeout(self.plan.connect_timeout, self.target.connect()) => {
                        match result {
                            Ok(Ok(c)) => {
                                info!(sink = %sink, after = ?self.pump.delivered(), "SIEM connected");
                                conn = Some(c);
                                self.pump.on_connected();
                            }
                            Ok(Err(e)) => self.connect_failed(e.to_string()),
                            Err(_) => self.connect_failed("connect timed out".into()),
                        }
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                if self.pump.wants_read(Instant::now()) {
                    // A stalled receiver must not hold up the shutdown: what was being written
                    // is sent again next time.
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        up = Self::read_and_send(&mut self.source, &mut self.pump, &self.plan, c) => if !up { conn = None },
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                if self.pump.settle_due(Instant::now()) {
                    if let Some(e) = c.check_closed().await {
                        self.lost(&e.to_string());
                        conn = None;
                    } else {
                        self.pump.settle(Instant::now());
                    }
                }
            }
            if held {
                self.store_cursor().await;
            }
            self.publish();

            let mut deadline = self.pump.deadline(Instant::now());
            if let Some(check) = self.source.next_check() {
                deadline = deadline.min(check);
            }
            let gone = async {
                match conn.as_mut() {
                    Some(c) => c.closed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                e = gone => {
                    self.lost(&e.to_string());
                    conn = None;
                }
                () = self.wake.notified() => self.pump.on_wake(),
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        if let Some(mut c) = conn {
            c.shutdown().await;
        }
        self.store_cursor().await;
        self.source.release().await;
        self.publish();
        info!(sink = %sink, delivered = ?self.pump.delivered(), "SIEM forwarder stopped");
    }

    fn connect_failed(&mut self, message: String) {
        warn!(sink = %self.plan.sink, "SIEM connect failed: {message}");
        self.pump
            .on_connect_failed(message, Instant::now(), wall_ms());
    }

    fn lost(&mut self, message: &str) {
        warn!(sink = %self.plan.sink, resend_after = ?self.pump.delivered(), "SIEM connection lost: {message}");
        self.pump
            .on_lost(message.to_owned(), Instant::now(), wall_ms());
    }

    /// One read and, if it gave records, one batch written. Returns false when the connection
    /// was lost.
    async fn read_and_send(
        source: &mut S,
        pump: &mut Pump<S::Position>,
        plan: &Plan,
        conn: &mut Conn,
    ) -> bool {
        let Some(batch) = source.next_batch(pump, &plan.sink).await else {
            return true;
        };
        if !source.fresh() {
            // The lease is due for renewal (the read took long): renewed first, written then.
            pump.on_wake();
            return true;
        }
        let lost = |pump: &mut Pump<S::Position>, message: String| {
            warn!(sink = %plan.sink, resend_after = ?pump.delivered(), "SIEM connection lost: {message}");
            pump.on_lost(message, Instant::now(), wall_ms());
            false
        };
        match timeout(plan.write_timeout, conn.write_batch(&batch.bytes)).await {
            Ok(Ok(())) => {
                pump.on_written(&batch, Instant::now());
                true
            }
            Ok(Err(e)) => lost(pump, format!("write: {e}")),
            Err(_) => lost(pump, "write timed out".into()),
        }
    }

    async fn store_cursor(&mut self) {
        let Some(cursor) = self.pump.to_store(Instant::now()) else {
            return;
        };
        match self.source.store(&cursor).await {
            Ok(()) => self.pump.on_stored(cursor),
            Err(message) => {
                error!(sink = %self.plan.sink, "{message}");
                self.pump
                    .on_store_failed(message, Instant::now(), wall_ms());
            }
        }
    }
}

/// Runs the forwarder of one `[[siem]]` section until `shutdown` resolves: the gateway's
/// entry point when it needs no status (see [`Forwarder`] for one with a [`Handle`]).
///
/// - `audit_dir`: the audit log's directory (read without its lock, while the gateway writes);
/// - `state_dir`: where the cursor lives unless the section names a `state_dir`.
pub async fn run(
    config: &SiemConfig,
    audit_dir: impl Into<PathBuf>,
    state_dir: impl Into<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SiemError> {
    Forwarder::new(config, audit_dir, state_dir)?
        .run(shutdown)
        .await;
    Ok(())
}
