//! Configuration: a TOML file mirrored by plain `dto` structs, then checked into [`Config`].
//! Every field has a default, so no file at all is a valid configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use portcullis_policy::{Policy, PolicyDoc};
use serde::Deserialize;

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `[http] advertise` (or [`ADVERTISE_ENV`]): the `https://host:port` other gateways of a
    /// cluster reach this one at (to watch its sessions); `None`: the listen address when it is
    /// a specific one.
    pub advertise: Option<String>,
    /// Certificate and key files; `None` means a self-signed pair kept in the data directory.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub key_file: PathBuf,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub recording: Recording,
    pub rdp: Rdp,
    /// `[policy] file`: the policy comes from this TOML file (and the API may not change it);
    /// `None`: the policy saved in the store, or the shipped default.
    pub policy_file: Option<PathBuf>,
    /// `[audit]`: where the audit trail lives and how big a segment grows.
    pub audit: Audit,
    /// `[auth]`: login settings.
    pub auth: Auth,
    /// `[[siem]]`: where the audit trail is exported to (checked at load).
    pub siem: Vec<portcullis_siem::SiemConfig>,
    /// `shutdown_grace_secs`: how long a SIGTERM or SIGINT gives the gateway to end its
    /// sessions, close their recordings and flush the audit trail before it exits anyway.
    pub shutdown_grace: Duration,
    /// `[store]`: where users, targets, grants and tokens live.
    pub store: StoreConfig,
    /// `[ops]`: the operations listener (health, readiness, metrics) and draining.
    pub ops: Ops,
    /// `[ocr]`: reading text off live sessions' screens for the risk rules.
    pub ocr: Ocr,
}

/// The checked `[ocr]` section.
#[derive(Debug, Clone, Copy)]
pub struct Ocr {
    /// `[ocr] enabled` (default true; off when tesseract is missing, with a warning).
    pub enabled: bool,
    /// `[ocr] cpu_share`: the most of one core reading takes, for the whole gateway (0.01–1,
    /// default 0.25).
    pub cpu_share: f64,
    /// `[ocr] settle_ms`: how long a change must stay unchanged before it is read (default
    /// 500 ms).
    pub settle: Duration,
    /// `[ocr] recordings`: also read recorded sessions no screen rule watches, and keep the
    /// words (with their boxes) in the recording for search (default true). Sessions a screen
    /// rule watches are read first.
    pub recordings: bool,
    /// `[ocr] catch_up`: with `recordings`, read closed recordings' video again for the
    /// moments the live reader did not read (busy, off, or the gateway stopped), for search
    /// only (default true); within the same CPU share, after the live reading.
    pub catch_up: bool,
}

/// The checked `[ops]` section.
#[derive(Debug, Clone)]
pub struct Ops {
    /// `[ops] listen`: plain HTTP for `/healthz`, `/readyz` and `/metrics`; `None`: off.
    pub listen: Option<SocketAddr>,
    /// `[ops] metrics_token_file`: `/metrics` then needs this bearer token.
    pub metrics_token_file: Option<PathBuf>,
    /// `[ops] drain_deadline_secs`: after SIGUSR1 (drain), sessions still open this long after
    /// are ended as a graceful shutdown ends them.
    pub drain_deadline: Duration,
}

/// Environment variable giving `[http] advertise` (e.g. a pod's address on Kubernetes).
pub const ADVERTISE_ENV: &str = "PORTCULLIS_ADVERTISE_URL";

/// `[http] advertise`: an `https://host:port` URL, nothing else.
fn advertise(text: Option<String>, listen: SocketAddr) -> Result<Option<String>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok((!listen.ip().is_unspecified()).then(|| format!("https://{listen}")));
    };
    let ok = text.strip_prefix("https://").is_some_and(|rest| {
        portcullis_core::addr::parse_host_port(rest.trim_end_matches('/'))
            .is_some_and(|(_, port)| port.is_some())
    });
    if !ok {
        bail!("http.advertise: {text:?} is not like https://10.0.0.5:8443");
    }
    Ok(Some(text.trim_end_matches('/').to_owned()))
}

/// Environment variable naming the PostgreSQL store (wins over `[store] url`), so that the URL
/// and its password can come from a secret rather than the configuration file.
pub const STORE_URL_ENV: &str = "PORTCULLIS_STORE_URL";

/// The checked `[store]` section.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded default: sled in `DATA_DIR/store`, one gateway.
    Embedded,
    /// PostgreSQL, shared by any number of gateways.
    Postgres(PostgresStore),
}

/// `[store] url = "postgres://…"` and its settings.
#[derive(Clone)]
pub struct PostgresStore {
    /// `postgres://user[:password]@host:port/database` (may hold a password: never shown).
    pub url: String,
    /// `[store] password_file`: the password, kept out of the URL (e.g. a mounted secret).
    pub password_file: Option<PathBuf>,
    /// `[store] ca_file`: the CA that signed the server's certificate (TLS, required for a
    /// server not on this machine).
    pub ca_file: Option<PathBuf>,
    /// `[store] connections` (default 4).
    pub connections: usize,
}

impl PostgresStore {
    /// A server named by URL alone (default settings), checked as `[store] url` is.
    pub fn from_url(url: &str) -> Result<PostgresStore> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("store.url: only PostgreSQL is supported (postgres://user@host:port/database)");
        }
        Ok(PostgresStore {
            url: url.to_owned(),
            password_file: None,
            ca_file: None,
            connections: DEFAULT_STORE_CONNECTIONS,
        })
    }
}

/// `[store] connections` when not set.
const DEFAULT_STORE_CONNECTIONS: usize = 4;

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &"<not shown: may hold a password>")
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("connections", &self.connections)
            .finish()
    }
}

/// The `[auth]` section.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// `[auth] mfa_required_roles`: users of these roles must use TOTP two-factor
    /// authentication (without it they may only enrol; native RDP needs a browser ticket).
    pub mfa_required_roles: Vec<portcullis_store::Role>,
}

/// The audit trail's settings.
#[derive(Debug, Clone)]
pub struct Audit {
    /// `[audit] dir` (default: `DATA_DIR/audit`).
    pub dir: PathBuf,
    /// `[audit] segment_mib`: a segment file is closed and a new one begun past this size.
    pub segment_bytes: u64,
}

/// The RDP listener for native clients, and RDP target settings.
#[derive(Debug, Clone)]
pub struct Rdp {
    /// Off: no listener (browser sessions to RDP targets still work).
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Offer RemoteFX to RDP targets (lossy, less bandwidth).
    pub remotefx: bool,
    /// How long the ticket of an `.rdp` file stays valid.
    pub ticket_ttl: Duration,
    /// How long a native client may take from connecting to being in its session.
    pub handshake_timeout: Duration,
    /// `rdp.public_address`: what `.rdp` files name (`host` or `host:port`) instead of the host
    /// the browser used, e.g. behind a proxy or NAT.
    pub public_address: Option<String>,
}

/// The checked `[recording]` section.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Off means sessions run unrecorded (not recommended).
    pub enabled: bool,
    pub dir: PathBuf,
    pub signing_key_file: PathBuf,
    pub max_fps: u32,
    pub keyframe_max_secs: u64,
    pub crf: u8,
    /// The quality of a picture replaced before `refine_after_ms` (`None`: every picture at
    /// `crf`).
    pub draft_crf: Option<u8>,
    pub refine_after_ms: u64,
    /// A still screen lets go of its encoder after this long (0: never).
    pub release_encoder_after_secs: u64,
    pub preset: String,
    pub keystrokes: bool,
    pub min_free_mb: u64,
    /// Closed recordings older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// `[recording.object_store]`: recordings go to an S3-compatible store, `dir` is the
    /// local spool; `None`: recordings stay in `dir`.
    pub object_store: Option<ObjectStore>,
}

/// The checked `[recording.object_store]` section.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    /// Everything but the secret access key, which is read from its file at start.
    pub config: portcullis_objects::ObjectConfig,
    pub secret_access_key_file: Option<PathBuf>,
    /// A recording being written is uploaded at most this often.
    pub upload_every: Duration,
}

const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

mod dto {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct File {
        pub data_dir: Option<PathBuf>,
        pub shutdown_grace_secs: Option<u64>,
        #[serde(default)]
        pub http: Http,
        #[serde(default)]
        pub secrets: Secrets,
        #[serde(default)]
        pub targets: Targets,
        #[serde(default)]
        pub recording: Recording,
        #[serde(default)]
        pub rdp: Rdp,
        #[serde(default)]
        pub policy: Policy,
        #[serde(default)]
        pub audit: Audit,
        #[serde(default)]
        pub auth: Auth,
        #[serde(default)]
        pub siem: Vec<portcullis_siem::SiemConfig>,
        #[serde(default)]
        pub store: Store,
        #[serde(default)]
        pub ops: Ops,
        #[serde(default)]
        pub ocr: Ocr,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Ocr {
        pub enabled: Option<bool>,
        pub cpu_share: Option<f64>,
        pub settle_ms: Option<u64>,
        pub recordings: Option<bool>,
        pub catch_up: Option<bool>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Ops {
        pub listen: Option<String>,
        pub metrics_token_file: Option<PathBuf>,
        pub drain_deadline_secs: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Store {
        pub url: Option<String>,
        pub password_file: Option<PathBuf>,
        pub ca_file: Option<PathBuf>,
        pub connections: Option<usize>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Audit {
        pub dir: Option<PathBuf>,
        pub segment_mib: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Auth {
        #[serde(default)]
        pub mfa_required_roles: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Policy {
        pub file: Option<PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Recording {
        pub enabled: Option<bool>,
        pub dir: Option<PathBuf>,
        pub signing_key_file: Option<PathBuf>,
        pub max_fps: Option<u32>,
        pub keyframe_max_secs: Option<u64>,
        /// Accepted from older configurations and ignored: keyframes are placed by time only.
        pub keyframe_max_frames: Option<u32>,
        pub crf: Option<u8>,
        pub draft_crf: Option<u8>,
        pub refine_after_ms: Option<u64>,
        pub release_encoder_after_secs: Option<u64>,
        pub preset: Option<String>,
        pub keystrokes: Option<String>,
        pub retention_days: Option<u64>,
        pub min_free_mb: Option<u64>,
        pub object_store: Option<ObjectStore>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct ObjectStore {
        pub url: Option<String>,
        pub endpoint: Option<String>,
        pub region: Option<String>,
        pub access_key_id: Option<String>,
        pub secret_access_key_file: Option<PathBuf>,
        pub ca_file: Option<PathBuf>,
        pub upload_every_secs: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Http {
        pub listen: Option<String>,
        pub advertise: Option<String>,
        pub cert: Option<PathBuf>,
        pub key: Option<PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Secrets {
        pub key_file: Option<PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Rdp {
        pub enabled: Option<bool>,
        pub listen: Option<String>,
        pub remotefx: Option<bool>,
        pub ticket_ttl_secs: Option<u64>,
        pub handshake_timeout_secs: Option<u64>,
        pub public_address: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Targets {
        pub connect_timeout_secs: Option<u64>,
        pub handshake_timeout_secs: Option<u64>,
    }
}

/// Default data directory when neither the command line nor the file names one.
pub const DEFAULT_DATA_DIR: &str = "portcullis-data";
/// Default HTTPS listener: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default RDP listener for native clients: the standard port, loopback only like HTTPS.
pub const DEFAULT_RDP_LISTEN: &str = "127.0.0.1:3389";

fn timeout(field: &str, v: Option<u64>, default: u64) -> Result<Duration> {
    let v = v.unwrap_or(default);
    if v == 0 || v > 300 {
        bail!("{field}: must be between 1 and 300 seconds, got {v}");
    }
    Ok(Duration::from_secs(v))
}

/// The longest `shutdown_grace_secs`: systemd kills the gateway `TimeoutStopSec` (30 s in
/// `deploy/portcullis.service`) after SIGTERM, and the runtime needs a moment after the grace.
pub const MAX_SHUTDOWN_GRACE_SECS: u64 = 25;

fn shutdown_grace(v: Option<u64>) -> Result<Duration> {
    let v = v.unwrap_or(10);
    if v == 0 || v > MAX_SHUTDOWN_GRACE_SECS {
        bail!(
            "shutdown_grace_secs: must be between 1 and {MAX_SHUTDOWN_GRACE_SECS} seconds (the \
             service unit's TimeoutStopSec of 30 s must outlast it; raise both together), got {v}"
        );
    }
    Ok(Duration::from_secs(v))
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    v: Option<T>,
    default: T,
    (lo, hi): (T, T),
) -> Result<T> {
    let v = v.unwrap_or(default);
    if v < lo || v > hi {
        bail!("{field}: must be between {lo} and {hi}, got {v}");
    }
    Ok(v)
}

/// Longest time between two keyframes: a seek decodes from the keyframe before it, and ten
/// minutes of frames is already slow.
const MAX_KEYFRAME_SECS: u64 = 600;

/// `recording.keyframe_max_secs`: 1 and up; a longer time than [`MAX_KEYFRAME_SECS`] (accepted
/// up to 3600 before) is lowered to it with a warning, so such a configuration still starts.
fn keyframe_max_secs(v: Option<u64>) -> Result<u64> {
    let default = portcullis_recorder::RecorderConfig::default().keyframe_max_ms / 1000;
    let v = in_range("recording.keyframe_max_secs", v, default, (1, u64::MAX))?;
    if v > MAX_KEYFRAME_SECS {
        tracing::warn!(
            asked = v,
            used = MAX_KEYFRAME_SECS,
            "recording.keyframe_max_secs is above its limit: the limit is used"
        );
    }
    Ok(v.min(MAX_KEYFRAME_SECS))
}

fn recording(r: dto::Recording, data_dir: &Path) -> Result<Recording> {
    let defaults = portcullis_recorder::encoder::EncoderSettings::default();
    // Keyframes are placed by time only now: an old `keyframe_max_frames` still loads (a
    // configuration that worked keeps working), and the log says it does nothing.
    if let Some(frames) = r.keyframe_max_frames {
        tracing::warn!(
            frames,
            "recording.keyframe_max_frames is no longer used: keyframes are placed by time only \
             (recording.keyframe_max_secs)"
        );
    }
    let preset = r.preset.unwrap_or(defaults.preset);
    if !PRESETS.contains(&preset.as_str()) {
        bail!(
            "recording.preset: expected one of {}, got {preset:?}",
            PRESETS.join(", ")
        );
    }
    let keystrokes = match r.keystrokes.as_deref().unwrap_or("text") {
        "text" => true,
        "off" => false,
        other => bail!("recording.keystrokes: expected \"text\" or \"off\", got {other:?}"),
    };
    let retention = match r.retention_days {
        None | Some(0) => None,
        Some(d) if d > 36_500 => bail!("recording.retention_days: at most 36500, got {d}"),
        Some(d) => Some(Duration::from_secs(d * 86_400)),
    };
    let crf = in_range("recording.crf", r.crf, defaults.crf, (10, 45))?;
    // 0 turns drafts off; a draft is never finer than the picture it is refined to.
    // Unset: the default, unless `crf` is already as coarse (a configuration that worked
    // keeps working).
    let draft_crf = match r.draft_crf {
        None => defaults.draft_crf.filter(|&d| d > crf),
        Some(0) => None,
        Some(d) if d < crf || d > 51 => {
            bail!("recording.draft_crf: 0 (off) or between recording.crf ({crf}) and 51, got {d}")
        }
        Some(d) => Some(d),
    };
    let refine_after_ms = in_range(
        "recording.refine_after_ms",
        r.refine_after_ms,
        portcullis_recorder::RecorderConfig::default().refine_after_ms,
        (100, 60_000),
    )?;
    let keyframe_max_secs = keyframe_max_secs(r.keyframe_max_secs)?;
    // Unset: a minute, or the keyframe interval if longer (the first change after the encoder
    // was let go is a keyframe; after the interval it is one anyway). Shorter saves memory for
    // a keyframe more per resumption.
    let release_encoder_after_secs = match r.release_encoder_after_secs {
        None => (portcullis_recorder::RecorderConfig::default().release_after_ms / 1000)
            .max(keyframe_max_secs),
        Some(s) if s > 86_400 => {
            bail!("recording.release_encoder_after_secs: 0 (never) to 86400, got {s}")
        }
        Some(s) => s,
    };
    Ok(Recording {
        enabled: r.enabled.unwrap_or(true),
        dir: r.dir.unwrap_or_else(|| data_dir.join("recordings")),
        signing_key_file: r
            .signing_key_file
            .unwrap_or_else(|| data_dir.join("recording-signing.key")),
        max_fps: in_range("recording.max_fps", r.max_fps, 5, (1, 30))?,
        keyframe_max_secs,
        crf,
        draft_crf,
        refine_after_ms,
        release_encoder_after_secs,
        preset,
        keystrokes,
        retention,
        min_free_mb: in_range(
            "recording.min_free_mb",
            r.min_free_mb,
            512,
            (0, 100_000_000),
        )?,
        object_store: r.object_store.map(object_store).transpose()?,
    })
}

fn object_store(o: dto::ObjectStore) -> Result<ObjectStore> {
    let url = o.url.ok_or_else(|| {
        anyhow::anyhow!("recording.object_store.url: missing (s3://bucket/prefix)")
    })?;
    if o.access_key_id.is_some() != o.secret_access_key_file.is_some() {
        bail!(
            "recording.object_store: access_key_id and secret_access_key_file go together \
             (neither: anonymous requests)"
        );
    }
    let config = portcullis_objects::ObjectConfig {
        url,
        endpoint: o.endpoint,
        region: o.region,
        access_key_id: o.access_key_id,
        secret_access_key: None,
        ca_file: o.ca_file,
    };
    // The endpoint's rules (https, or http on loopback) are checked here, not at first use.
    portcullis_objects::check(&config)?;
    Ok(ObjectStore {
        config,
        secret_access_key_file: o.secret_access_key_file,
        upload_every: Duration::from_secs(in_range(
            "recording.object_store.upload_every_secs",
            o.upload_every_secs,
            2,
            (1, 3600),
        )?),
    })
}

fn ops(o: dto::Ops) -> Result<Ops> {
    let listen = match &o.listen {
        Some(text) => Some(text.parse::<SocketAddr>().with_context(|| {
            format!("ops.listen: {text:?} is not an address like 127.0.0.1:9090")
        })?),
        None => None,
    };
    let secs = o.drain_deadline_secs.unwrap_or(3600);
    if !(1..=7 * 24 * 3600).contains(&secs) {
        bail!("ops.drain_deadline_secs: {secs} is not between 1 and 604800 (a week)");
    }
    Ok(Ops {
        listen,
        metrics_token_file: o.metrics_token_file,
        drain_deadline: Duration::from_secs(secs),
    })
}

fn ocr(o: dto::Ocr) -> Result<Ocr> {
    let cpu_share = o.cpu_share.unwrap_or(0.25);
    if !(0.01..=1.0).contains(&cpu_share) {
        bail!("ocr.cpu_share: {cpu_share} is not between 0.01 and 1 (a share of one core)");
    }
    let settle_ms = o.settle_ms.unwrap_or(500);
    if !(100..=60_000).contains(&settle_ms) {
        bail!("ocr.settle_ms: {settle_ms} is not between 100 and 60000");
    }
    Ok(Ocr {
        enabled: o.enabled.unwrap_or(true),
        cpu_share,
        settle: Duration::from_millis(settle_ms),
        recordings: o.recordings.unwrap_or(true),
        catch_up: o.catch_up.unwrap_or(true),
    })
}

/// `[store]`, with the URL from [`STORE_URL_ENV`] when that is set (and not empty).
fn store(s: dto::Store, env_url: Option<String>) -> Result<StoreConfig> {
    let url = env_url.filter(|u| !u.is_empty()).or(s.url);
    let Some(url) = url else {
        if s.password_file.is_some() || s.ca_file.is_some() || s.connections.is_some() {
            bail!(
                "store: password_file, ca_file and connections need store.url (or {STORE_URL_ENV})"
            );
        }
        return Ok(StoreConfig::Embedded);
    };
    let connections = s.connections.unwrap_or(DEFAULT_STORE_CONNECTIONS);
    if !(1..=64).contains(&connections) {
        bail!("store.connections: {connections} is not between 1 and 64");
    }
    Ok(StoreConfig::Postgres(PostgresStore {
        password_file: s.password_file,
        ca_file: s.ca_file,
        connections,
        ..PostgresStore::from_url(&url)?
    }))
}

fn auth(a: dto::Auth) -> Result<Auth> {
    let mut roles = Vec::new();
    for name in &a.mfa_required_roles {
        let role: portcullis_store::Role = name
            .parse()
            .map_err(|e| anyhow::anyhow!("auth.mfa_required_roles: {e}"))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(Auth {
        mfa_required_roles: roles,
    })
}

fn rdp(r: dto::Rdp) -> Result<Rdp> {
    let text = r.listen.as_deref().unwrap_or(DEFAULT_RDP_LISTEN);
    let listen: SocketAddr = text
        .parse()
        .with_context(|| format!("rdp.listen: {text:?} is not an address like 0.0.0.0:3389"))?;
    Ok(Rdp {
        enabled: r.enabled.unwrap_or(true),
        listen,
        remotefx: r.remotefx.unwrap_or(false),
        ticket_ttl: Duration::from_secs(in_range(
            "rdp.ticket_ttl_secs",
            r.ticket_ttl_secs,
            300,
            (1, 86_400),
        )?),
        handshake_timeout: timeout("rdp.handshake_timeout_secs", r.handshake_timeout_secs, 20)?,
        public_address: match r.public_address {
            None => None,
            Some(text) => {
                if portcullis_core::addr::parse_host_port(&text).is_none() {
                    bail!(
                        "rdp.public_address: {text:?} is not a host name or address, optionally with a port (like rdp.example.com:3389)"
                    );
                }
                Some(text)
            }
        },
    })
}

impl Config {
    /// Parses TOML text; `data_dir_override` (from the command line) wins over the file.
    pub fn parse(text: &str, data_dir_override: Option<&Path>) -> Result<Config> {
        let file: dto::File =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        let data_dir = data_dir_override
            .map(Path::to_path_buf)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = file.http.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("http.listen: {listen_text:?} is not an address like 127.0.0.1:8443")
        })?;
        let tls = match (file.http.cert, file.http.key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => bail!("http.key: must be set when http.cert is"),
            (None, Some(_)) => bail!("http.cert: must be set when http.key is"),
        };
        let key_file = file
            .secrets
            .key_file
            .unwrap_or_else(|| data_dir.join("secret.key"));
        Ok(Config {
            advertise: advertise(
                std::env::var(ADVERTISE_ENV).ok().or(file.http.advertise),
                listen,
            )?,
            listen,
            tls,
            key_file,
            connect_timeout: timeout(
                "targets.connect_timeout_secs",
                file.targets.connect_timeout_secs,
                5,
            )?,
            handshake_timeout: timeout(
                "targets.handshake_timeout_secs",
                file.targets.handshake_timeout_secs,
                10,
            )?,
            recording: recording(file.recording, &data_dir)?,
            rdp: rdp(file.rdp)?,
            policy_file: file.policy.file,
            audit: audit(file.audit, &data_dir)?,
            auth: auth(file.auth)?,
            siem: siem(file.siem)?,
            shutdown_grace: shutdown_grace(file.shutdown_grace_secs)?,
            store: store(file.store, std::env::var(STORE_URL_ENV).ok())?,
            ops: ops(file.ops)?,
            ocr: ocr(file.ocr)?,
            data_dir,
        })
    }

    /// Loads the file if given (it must exist), else the defaults.
    pub fn load(path: Option<&Path>, data_dir_override: Option<&Path>) -> Result<Config> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                Config::parse(&text, data_dir_override)
                    .with_context(|| format!("invalid config file {}", p.display()))
            }
            None => Config::parse("", data_dir_override),
        }
    }
}

fn siem(sections: Vec<portcullis_siem::SiemConfig>) -> Result<Vec<portcullis_siem::SiemConfig>> {
    let host = portcullis_siem::machine_hostname();
    let mut names = std::collections::HashMap::new();
    for (i, s) in sections.iter().enumerate() {
        let plan = s
            .plan(&host)
            .map_err(|e| anyhow::anyhow!("siem[{i}]: {e}"))?;
        // One cursor (file, or lease in the store) per name: two sections sharing one would
        // move each other's and skip records.
        if let Some(j) = names.insert(plan.name.clone(), i) {
            bail!(
                "siem[{i}] and siem[{j}] are both named {:?}: give each its own `name` (or destination)",
                plan.name
            );
        }
    }
    Ok(sections)
}

fn audit(file: dto::Audit, data_dir: &Path) -> Result<Audit> {
    let mib = file.segment_mib.unwrap_or(64);
    if !(1..=4096).contains(&mib) {
        bail!("audit.segment_mib: must be between 1 and 4096 (got {mib})");
    }
    Ok(Audit {
        dir: file.dir.unwrap_or_else(|| data_dir.join("audit")),
        segment_bytes: mib * 1024 * 1024,
    })
}

/// Reads and compiles a policy file (TOML, a `PolicyDoc`). Errors name the file, and the rule
/// and field (or the TOML line) at fault.
pub fn load_policy_file(path: &Path) -> Result<(PolicyDoc, Policy)> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "policy.file: cannot read the policy file {}",
            path.display()
        )
    })?;
    parse_policy(&text).with_context(|| format!("invalid policy file {}", path.display()))
}

/// Parses and compiles a policy document in TOML.
pub fn parse_policy(text: &str) -> Result<(PolicyDoc, Policy)> {
    let doc: PolicyDoc =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let policy = Policy::compile(&doc).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((doc, policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", None).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.rdp.listen.to_string(), DEFAULT_RDP_LISTEN);
        assert!(c.rdp.enabled && !c.rdp.remotefx);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            c.key_file,
            PathBuf::from(DEFAULT_DATA_DIR).join("secret.key")
        );
        assert!(c.tls.is_none());
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn the_ops_listener_is_off_unless_asked_for() {
        let c = Config::parse("", None).unwrap();
        assert!(c.ops.listen.is_none());
        assert_eq!(c.ops.drain_deadline, Duration::from_secs(3600));
        let c = Config::parse(
            "[ops]\nlisten = \"0.0.0.0:9090\"\nmetrics_token_file = \"/t\"\ndrain_deadline_secs = 60",
            None,
        )
        .unwrap();
        assert_eq!(c.ops.listen.unwrap().port(), 9090);
        assert_eq!(c.ops.metrics_token_file.as_deref(), Some(Path::new("/t")));
        assert_eq!(c.ops.drain_deadline, Duration::from_secs(60));
        for (text, says) in [
            ("[ops]\nlisten = \"nowhere\"", "ops.listen"),
            ("[ops]\ndrain_deadline_secs = 0", "ops.drain_deadline_secs"),
            ("[ops]\nport = 9090", "unknown field"),
        ] {
            let e = format!("{:#}", Config::parse(text, None).unwrap_err());
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_store_is_embedded_unless_a_postgres_url_is_given() {
        let parse = |text: &str, env: Option<&str>| {
            let file: dto::File = toml::from_str(text).unwrap();
            store(file.store, env.map(str::to_owned))
        };
        assert!(matches!(parse("", None).unwrap(), StoreConfig::Embedded));
        let StoreConfig::Postgres(pg) = parse(
            "[store]\nurl = \"postgres://gw:s3cret@db:5432/p\"\nca_file = \"/ca.pem\"\nconnections = 8",
            None,
        )
        .unwrap() else {
            panic!("not PostgreSQL")
        };
        assert_eq!(pg.connections, 8);
        assert_eq!(pg.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        // The URL may hold a password: never in a debug print.
        assert!(!format!("{pg:?}").contains("s3cret"));
        // The environment wins over the file (an empty one does not count).
        let StoreConfig::Postgres(pg) = parse(
            "[store]\nurl = \"postgres://file/db\"",
            Some("postgres://env/db"),
        )
        .unwrap() else {
            panic!("not PostgreSQL")
        };
        assert_eq!(pg.url, "postgres://env/db");
        assert!(matches!(
            parse("", Some("")).unwrap(),
            StoreConfig::Embedded
        ));
        for (text, says) in [
            ("[store]\nurl = \"mysql://db/x\"", "only PostgreSQL"),
            (
                "[store]\nurl = \"postgres://db/x\"\nconnections = 0",
                "store.connections",
            ),
            (
                "[store]\nurl = \"postgres://db/x\"\nconnections = 65",
                "store.connections",
            ),
            ("[store]\nca_file = \"/ca.pem\"", "need store.url"),
        ] {
            let e = parse(text, None).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let e = Config::parse("[store]\nhost = \"db\"", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn drafts_are_on_by_default_can_be_turned_off_and_are_never_finer_than_crf() {
        let defaults = portcullis_recorder::encoder::EncoderSettings::default();
        let c = Config::parse("", None).unwrap();
        assert_eq!(c.recording.draft_crf, defaults.draft_crf);
        assert!(c.recording.draft_crf.is_some());
        assert_eq!(c.recording.refine_after_ms, 1000);
        let c = Config::parse("[recording]\ndraft_crf = 0\n", None).unwrap();
        assert_eq!(c.recording.draft_crf, None);
        let c = Config::parse(
            "[recording]\ncrf = 22\ndraft_crf = 36\nrefine_after_ms = 500\n",
            None,
        )
        .unwrap();
        assert_eq!(
            (
                c.recording.crf,
                c.recording.draft_crf,
                c.recording.refine_after_ms
            ),
            (22, Some(36), 500)
        );
        // A crf as coarse as the default draft, without draft_crf: no drafts, no error.
        let c = Config::parse("[recording]\ncrf = 40\n", None).unwrap();
        assert_eq!((c.recording.crf, c.recording.draft_crf), (40, None));
        for bad in [
            "[recording]\ncrf = 30\ndraft_crf = 28\n",
            "[recording]\ndraft_crf = 52\n",
            "[recording]\nrefine_after_ms = 50\n",
        ] {
            let e = format!("{:#}", Config::parse(bad, None).unwrap_err());
            assert!(e.contains("recording."), "{bad}: {e}");
        }
    }

    #[test]
    fn a_still_screen_lets_go_of_its_encoder_after_a_minute_unless_told_otherwise() {
        let c = Config::parse("", None).unwrap();
        assert_eq!(c.recording.release_encoder_after_secs, 60);
        // Not before a keyframe is due anyway, unless told.
        let c = Config::parse("[recording]\nkeyframe_max_secs = 300\n", None).unwrap();
        assert_eq!(c.recording.release_encoder_after_secs, 300);
        let c = Config::parse(
            "[recording]\nkeyframe_max_secs = 300\nrelease_encoder_after_secs = 30\n",
            None,
        )
        .unwrap();
        assert_eq!(c.recording.release_encoder_after_secs, 30);
        let c = Config::parse(
            "[recording]
release_encoder_after_secs = 0
",
            None,
        )
        .unwrap();
        assert_eq!(c.recording.release_encoder_after_secs, 0);
        let e = Config::parse(
            "[recording]
release_encoder_after_secs = 90000
",
            None,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("recording.release_encoder_after_secs"),
            "{e:#}"
        );
    }

    #[test]
    fn shutdown_grace_is_read_and_bounded() {
        let c = Config::parse("shutdown_grace_secs = 25\n[http]\n", None).unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(25));
        let e = Config::parse("shutdown_grace_secs = 0", None).unwrap_err();
        assert!(e.to_string().contains("shutdown_grace_secs"), "{e}");
        // Beyond systemd's TimeoutStopSec (30 s), the grace would be cut by a SIGKILL.
        let e = format!(
            "{:#}",
            Config::parse("shutdown_grace_secs = 26", None).unwrap_err()
        );
        assert!(
            e.contains("shutdown_grace_secs") && e.contains("TimeoutStopSec"),
            "{e}"
        );
    }

    #[test]
    fn the_grace_fits_in_the_service_units_stop_timeout() {
        let unit = include_str!("../../../deploy/portcullis.service");
        let stop: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim().parse().ok())
            .expect("the unit sets TimeoutStopSec");
        assert!(MAX_SHUTDOWN_GRACE_SECS + 2 <= stop, "TimeoutStopSec={stop}");
    }

    #[test]
    fn file_overrides_and_command_line_wins() {
        let c = Config::parse(
            "data_dir = \"/srv/pc\"\n[http]\nlisten = \"0.0.0.0:443\"\n[targets]\nconnect_timeout_secs = 3\n",
            None,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 443);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.data_dir, PathBuf::from("/srv/pc"));
        let c = Config::parse("data_dir = \"/srv/pc\"", Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn keyframe_bounds_are_by_time_and_bounded() {
        let c = Config::parse("[recording]\nkeyframe_max_secs = 600\n", None).unwrap();
        assert_eq!(c.recording.keyframe_max_secs, 600);
        // Accepted up to 3600 before: still starts, with the limit.
        let c = Config::parse("[recording]\nkeyframe_max_secs = 3600\n", None).unwrap();
        assert_eq!(c.recording.keyframe_max_secs, 600);
        let e = Config::parse("[recording]\nkeyframe_max_secs = 0\n", None).unwrap_err();
        assert!(e.to_string().contains("recording.keyframe_max_secs"), "{e}");
        // The old frame bound still loads (and is logged as unused).
        let c = Config::parse("[recording]\nkeyframe_max_frames = 300\n", None).unwrap();
        assert_eq!(c.recording.keyframe_max_secs, 30);
    }

    #[test]
    fn rdp_public_address() {
        let c = Config::parse("", None).unwrap();
        assert_eq!(c.rdp.public_address, None);
        let c = Config::parse("[rdp]\npublic_address = \"rdp.example.com:13389\"", None).unwrap();
        assert_eq!(
            c.rdp.public_address.as_deref(),
            Some("rdp.example.com:13389")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[http]\nlisten = \"nowhere\"", "http.listen"),
            ("[rdp]\nlisten = \"3389\"", "rdp.listen"),
            ("[rdp]\nport = 3389", "port"),
            ("[http]\nlisten = 5", "listen"),
            ("[http]\ncert = \"/c.pem\"", "http.key"),
            (
                "[targets]\nconnect_timeout_secs = 0",
                "targets.connect_timeout_secs",
            ),
            ("[http]\nlisen = \"x\"", "lisen"),
            ("[recording]\nmax_fps = 0", "recording.max_fps"),
            ("[recording]\npreset = \"turbo\"", "recording.preset"),
            ("[recording]\nkeystrokes = \"all\"", "recording.keystrokes"),
            (
                "[recording]\nretention_days = 99999",
                "recording.retention_days",
            ),
            ("bogus = 1", "bogus"),
            ("[policy]\nfiles = \"/p.toml\"", "files"),
            (
                "[rdp]\npublic_address = \"gw\\r\\nusername:s:x\"",
                "rdp.public_address",
            ),
            ("[rdp]\npublic_address = \"gw:0\"", "rdp.public_address"),
        ];
        for (text, field) in cases {
            let e = format!("{:#}", Config::parse(text, None).unwrap_err());
            assert!(e.contains(field), "{text:?} gave {e:?}");
        }
    }

    #[test]
    fn auth_section_names_roles_and_refuses_unknown_ones() {
        let c = Config::parse("", None).unwrap();
        assert!(c.auth.mfa_required_roles.is_empty());
        let c = Config::parse(
            "[auth]\nmfa_required_roles = [\"admin\", \"soc\", \"admin\"]",
            None,
        )
        .unwrap();
        assert_eq!(
            c.auth.mfa_required_roles,
            [portcullis_store::Role::Admin, portcullis_store::Role::Soc]
        );
        let err = Config::parse("[auth]\nmfa_required_roles = [\"root\"]", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.mfa_required_roles"), "{err}");
        assert!(err.contains("root"), "{err}");
        assert!(Config::parse("[auth]\nmfa = true", None).is_err());
    }

    #[test]
    fn policy_section() {
        let e = format!(
            "{:#}",
            Config::parse("[[siem]]\nkind = \"syslog\"\n", None).unwrap_err()
        );
        assert!(e.contains("siem[0]"), "{e}");
        let ok = Config::parse(
            "[[siem]]\nkind = \"jsonl\"\nfile = \"/var/log/portcullis-audit.jsonl\"\n",
            None,
        )
        .unwrap();
        assert_eq!(ok.siem.len(), 1);
        let twice = "[[siem]]\nkind = \"jsonl\"\nfile = \"/var/log/a.jsonl\"\n\n[[siem]]\nkind = \"syslog\"\naddress = \"siem:514\"\nname = \"jsonl-_var_log_a.jsonl\"\n";
        let e = Config::parse(twice, None).unwrap_err().to_string();
        assert!(e.contains("siem[1] and siem[0]"), "{e}");
        assert_eq!(Config::parse("", None).unwrap().policy_file, None);
        let c = Config::parse("[policy]\nfile = \"/etc/portcullis/policy.toml\"", None).unwrap();
        assert_eq!(
            c.policy_file,
            Some(PathBuf::from("/etc/portcullis/policy.toml"))
        );
    }

    #[test]
    fn policy_files_load_and_errors_name_file_rule_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "[groups]\nvendors = [\"vic\"]\n\n[[rules]]\nname = \"vendors\"\nsubjects = [\"group:vendors\"]\ntargets = [\"label:vendor\"]\n[rules.clipboard]\ndirection = \"client_to_target\"\n",
        )
        .unwrap();
        let (doc, _) = load_policy_file(&path).unwrap();
        assert_eq!(doc.rules[0].name, "vendors");

        std::fs::write(
            &path,
            "[[rules]]\nname = \"ops\"\nsubjects = [\"usr:bob\"]\ntargets = [\"*\"]\n",
        )
        .unwrap();
        let e = format!("{:#}", load_policy_file(&path).unwrap_err());
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(
            e.contains("rule \"ops\"") && e.contains("subjects[0]"),
            "{e}"
        );

        std::fs::write(
            &path,
            "[[rules]]\nname = \"ops\"\nsubjcts = [\"*\"]\ntargets = [\"*\"]\n",
        )
        .unwrap();
        let e = format!("{:#}", load_policy_file(&path).unwrap_err());
        assert!(e.contains("subjcts") && e.contains("line 3"), "{e}");

        let missing = dir.path().join("nope.toml");
        let e = format!("{:#}", load_policy_file(&missing).unwrap_err());
        assert!(e.contains("nope.toml"), "{e}");
    }

    /// Replays the inputs kept for the `config_file` fuzz target (`fuzz/regressions/`).
    #[test]
    fn kept_fuzz_inputs_are_harmless() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/config_file");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(text) = std::str::from_utf8(&data) {
                let _ = Config::parse(text, None);
                let _ = parse_policy(text);
            }
            n += 1;
        }
        assert!(n > 0, "no inputs in {}", dir.display());
    }
}
