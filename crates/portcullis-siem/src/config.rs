//! The `[[siem]]` sections of the gateway's configuration.
//!
//! ```toml
//! [[siem]]
//! kind = "syslog"              # "syslog" (RFC 5424), "cef" or "jsonl"
//! address = "siem.example.org:6514"
//! tls = true
//! ca_file = "/etc/portcullis/siem-ca.pem"
//! facility = "authpriv"
//!
//! [[siem]]
//! kind = "jsonl"
//! file = "/var/log/portcullis/audit.jsonl"
//! ```
//!
//! Each section is one forwarder with its own cursor (`<state_dir>/siem-<name>.cursor`).

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::Deserialize;

use crate::format::{Facility, Formatter, Framing, Message, SyslogHeader};
use crate::pump::Settings;

/// The message format of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiemKind {
    /// RFC 5424 syslog whose MSG is the record's JSON line; octet-counted over TCP/TLS.
    Syslog,
    /// CEF events, in syslog or as lines (see [`CefFraming`]).
    Cef,
    /// The records' JSON lines, newline-delimited.
    Jsonl,
}

impl SiemKind {
    fn as_str(self) -> &'static str {
        match self {
            SiemKind::Syslog => "syslog",
            SiemKind::Cef => "cef",
            SiemKind::Jsonl => "jsonl",
        }
    }
}

/// Which trail a section exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiemSource {
    /// This gateway's own trail, from a cursor file in its state directory: the default.
    #[default]
    Local,
    /// The cluster's merged trail: every gateway's records as mirrored in the PostgreSQL
    /// store, merged by time; one gateway at a time exports it (a lease in the store), from a
    /// cursor kept in the store, and another takes over when it stops or dies. Give every
    /// gateway the same section.
    Cluster,
}

/// How CEF events travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CefFraming {
    /// As the MSG of RFC 5424 syslog messages (octet-counted over TCP/TLS): the default.
    #[default]
    Syslog,
    /// Bare CEF lines, each ended by a newline.
    Lines,
}

/// One `[[siem]]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemConfig {
    /// The message format.
    pub kind: SiemKind,
    /// Which trail: this gateway's (default) or the cluster's merged one.
    #[serde(default)]
    pub source: SiemSource,
    /// A cluster export: how long the exporting gateway's lease lasts without renewal (ms): a
    /// gateway that dies is taken over after at most this long. Connects and writes are cut
    /// off after a third of it (whatever `connect_timeout_ms` and `write_timeout_ms` say), so
    /// the lease cannot run out under one.
    #[serde(default = "defaults::lease_ms")]
    pub lease_ms: u64,
    /// A cluster export: how long records wait for older ones of other gateways (ms), whose
    /// copies reach the store about every second; a record that comes later still is sent,
    /// out of order, never dropped.
    #[serde(default = "defaults::merge_delay_ms")]
    pub merge_delay_ms: u64,
    /// Names the cursor file (letters, digits, `.`, `_`, `-`; at most 64). By default it comes
    /// from the kind and the destination, so a new destination starts from the first record.
    pub name: Option<String>,
    /// `host:port` of a TCP (or TLS) receiver. Exactly one of `address` and `file`.
    pub address: Option<String>,
    /// A local file appended to (and fsynced) instead.
    pub file: Option<PathBuf>,
    /// TLS (1.2 or 1.3) towards `address`; needs `ca_file`.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA certificate(s) the receiver's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// The name the receiver's certificate must carry; by default the host of `address`.
    pub server_name: Option<String>,
    /// The syslog facility (default `auth`).
    #[serde(default)]
    pub facility: Facility,
    /// The syslog HOSTNAME; by default the machine's host name.
    pub hostname: Option<String>,
    /// How CEF travels (`kind = "cef"` only).
    pub cef_framing: Option<CefFraming>,
    /// Where the cursor lives; by default the gateway's state directory.
    pub state_dir: Option<PathBuf>,
    /// Records per batch, 1 to 1000.
    #[serde(default = "defaults::batch")]
    pub batch: usize,
    /// How often to look for new records when not woken (ms).
    #[serde(default = "defaults::poll_ms")]
    pub poll_ms: u64,
    /// How long a written batch must stay on a live connection to count as delivered (ms).
    #[serde(default = "defaults::settle_ms")]
    pub settle_ms: u64,
    /// First reconnect delay (ms), doubled after each failure...
    #[serde(default = "defaults::backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// ... up to this (ms).
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Limit for connecting (TLS handshake included), ms.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Limit for writing one batch, ms: a receiver that stops reading counts as lost.
    #[serde(default = "defaults::write_timeout_ms")]
    pub write_timeout_ms: u64,
}

mod defaults {
    pub(super) fn batch() -> usize {
        portcullis_audit::MAX_QUERY_LIMIT
    }
    pub(super) fn poll_ms() -> u64 {
        500
    }
    pub(super) fn settle_ms() -> u64 {
        1000
    }
    pub(super) fn backoff_min_ms() -> u64 {
        100
    }
    pub(super) fn backoff_max_ms() -> u64 {
        30_000
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn write_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn lease_ms() -> u64 {
        15_000
    }
    pub(super) fn merge_delay_ms() -> u64 {
        5_000
    }
}

impl SiemConfig {
    /// A section with every default: set `address` or `file` (and the rest) on it.
    pub fn new(kind: SiemKind) -> Self {
        Self {
            kind,
            source: SiemSource::default(),
            lease_ms: defaults::lease_ms(),
            merge_delay_ms: defaults::merge_delay_ms(),
            name: None,
            address: None,
            file: None,
            tls: false,
            ca_file: None,
            server_name: None,
            facility: Facility::default(),
            hostname: None,
            cef_framing: None,
            state_dir: None,
            batch: defaults::batch(),
            poll_ms: defaults::poll_ms(),
            settle_ms: defaults::settle_ms(),
            backoff_min_ms: defaults::backoff_min_ms(),
            backoff_max_ms: defaults::backoff_max_ms(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            write_timeout_ms: defaults::write_timeout_ms(),
        }
    }

    /// Checks the section and works out what it means. `hostname` is the machine's, used when
    /// the section names none.
    pub fn plan(&self, hostname: &str) -> Result<Plan, ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        let destination = match (&self.address, &self.file) {
            (Some(_), Some(_)) | (None, None) => {
                return bad("give exactly one of `address` and `file`".into())
            }
            (None, Some(file)) => {
                if self.tls || self.ca_file.is_some() || self.server_name.is_some() {
                    return bad("`tls`, `ca_file` and `server_name` need `address`".into());
                }
                Destination::File(file.clone())
            }
            (Some(address), None) => {
                let host = split_host(address)
                    .ok_or_else(|| ConfigError(format!("address {address:?} is not host:port")))?;
                if self.tls {
                    let ca_file = self
                        .ca_file
                        .clone()
                        .ok_or_else(|| ConfigError("`tls = true` needs `ca_file`".into()))?;
                    let name = self.server_name.as_deref().unwrap_or(host);
                    let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
                        ConfigError(format!("{name:?} is not a DNS name or IP address"))
                    })?;
                    Destination::Tls {
                        address: address.clone(),
                        ca_file,
                        server_name,
                    }
                } else {
                    if self.ca_file.is_some() || self.server_name.is_some() {
                        return bad("`ca_file` and `server_name` need `tls = true`".into());
                    }
                    Destination::Tcp(address.clone())
                }
            }
        };
        if self.cef_framing.is_some() && self.kind != SiemKind::Cef {
            return bad("`cef_framing` is for `kind = \"cef\"`".into());
        }
        if !(1..=portcullis_audit::MAX_QUERY_LIMIT).contains(&self.batch) {
            return bad(format!(
                "`batch` must be 1 to {}",
                portcullis_audit::MAX_QUERY_LIMIT
            ));
        }
        if self.poll_ms == 0
            || self.backoff_min_ms == 0
            || self.backoff_min_ms > self.backoff_max_ms
        {
            return bad("`poll_ms` and `backoff_min_ms` must be > 0 and `backoff_min_ms` <= `backoff_max_ms`".into());
        }
        if self.connect_timeout_ms == 0 || self.write_timeout_ms == 0 {
            return bad("timeouts must be > 0".into());
        }
        if !(3_000..=600_000).contains(&self.lease_ms) {
            return bad("`lease_ms` must be 3000 to 600000".into());
        }
        if self.merge_delay_ms > 3_600_000 {
            return bad("`merge_delay_ms` must be at most 3600000".into());
        }
        if self.source == SiemSource::Cluster && self.state_dir.is_some() {
            return bad("a cluster export keeps its cursor in the store: no `state_dir`".into());
        }
        let name = match &self.name {
            Some(name) => {
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    return bad(format!("name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ -"));
                }
                name.clone()
            }
            None if self.source == SiemSource::Cluster => {
                format!("cluster-{}", default_name(self.kind, &destination))
            }
            None => default_name(self.kind, &destination),
        };
        let header = SyslogHeader::new(self.facility, self.hostname.as_deref().unwrap_or(hostname));
        let stream = !matches!(destination, Destination::File(_));
        let syslog_framing = if stream {
            Framing::OctetCounted
        } else {
            Framing::Newline
        };
        let version = env!("CARGO_PKG_VERSION").to_owned();
        let formatter = match self.kind {
            SiemKind::Jsonl => Formatter {
                message: Message::JsonLine,
                framing: Framing::Newline,
            },
            SiemKind::Syslog => Formatter {
                message: Message::Syslog(header),
                framing: syslog_framing,
            },
            SiemKind::Cef => match self.cef_framing.unwrap_or_default() {
                CefFraming::Syslog => Formatter {
                    message: Message::CefInSyslog { header, version },
                    framing: syslog_framing,
                },
                CefFraming::Lines => Formatter {
                    message: Message::Cef { version },
                    framing: Framing::Newline,
                },
            },
        };
        let ms = Duration::from_millis;
        Ok(Plan {
            sink: match self.source {
                SiemSource::Local => format!("{} {}", self.kind.as_str(), destination),
                SiemSource::Cluster => format!("{} {} (cluster)", self.kind.as_str(), destination),
            },
            source: self.source,
            lease: ms(self.lease_ms),
            merge_delay: ms(self.merge_delay_ms),
            name,
            destination,
            formatter,
            settings: Settings {
                batch: self.batch,
                poll: ms(self.poll_ms),
                settle: if stream {
                    ms(self.settle_ms)
                } else {
                    Duration::ZERO
                },
                backoff_min: ms(self.backoff_min_ms),
                backoff_max: ms(self.backoff_max_ms),
            },
            connect_timeout: ms(self.connect_timeout_ms),
            write_timeout: ms(self.write_timeout_ms),
            state_dir: self.state_dir.clone(),
        })
    }
}

/// The host of `host:port` (`[v6]:port` too), if the port is a number.
fn split_host(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && !host.contains(char::is_whitespace)).then_some(host)
}

fn default_name(kind: SiemKind, destination: &Destination) -> String {
    let place = match destination {
        Destination::File(path) => path.display().to_string(),
        Destination::Tcp(address) => address.clone(),
        Destination::Tls { address, .. } => format!("tls-{address}"),
    };
    let mut name = format!("{}-", kind.as_str());
    name.extend(place.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '_'
        }
    }));
    name.truncate(120);
    name
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Appended to a local file.
    File(PathBuf),
    /// A TCP receiver.
    Tcp(String),
    /// A TLS receiver.
    Tls {
        /// `host:port`.
        address: String,
        /// The CA certificates (PEM).
        ca_file: PathBuf,
        /// The name its certificate must carry.
        server_name: ServerName<'static>,
    },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::File(path) => write!(f, "file {}", path.display()),
            Destination::Tcp(address) => write!(f, "tcp {address}"),
            Destination::Tls { address, .. } => write!(f, "tls {address}"),
        }
    }
}

/// A checked section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `kind destination`, for logs and the status.
    pub sink: String,
    /// The cursor's name (a cluster export's name in the store).
    pub name: String,
    /// Which trail.
    pub source: SiemSource,
    /// A cluster export's lease.
    pub lease: Duration,
    /// How long a cluster export's merge waits for older records.
    pub merge_delay: Duration,
    /// Where to.
    pub destination: Destination,
    /// What the records become.
    pub formatter: Formatter,
    /// Timing.
    pub settings: Settings,
    /// Connect limit.
    pub connect_timeout: Duration,
    /// Write limit.
    pub write_timeout: Duration,
    /// The section's own state directory, if it names one.
    pub state_dir: Option<PathBuf>,
}

/// A section that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[[siem]]: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        siem: Vec<SiemConfig>,
    }

    fn parse(text: &str) -> Vec<SiemConfig> {
        toml::from_str::<Doc>(text).unwrap().siem
    }

    #[test]
    fn parses_siem_sections() {
        let sections = parse(
            r#"
            [[siem]]
            kind = "syslog"
            address = "siem.example.org:6514"
            tls = true
            ca_file = "/etc/portcullis/siem-ca.pem"
            facility = "authpriv"

            [[siem]]
            kind = "cef"
            address = "10.0.0.9:514"
            cef_framing = "lines"
            name = "arcsight"

            [[siem]]
            kind = "jsonl"
            file = "/var/log/portcullis/audit.jsonl"
            state_dir = "/var/lib/portcullis/siem"
            "#,
        );
        assert_eq!(sections.len(), 3);

        let tls = sections[0].plan("gw").unwrap();
        assert_eq!(tls.sink, "syslog tls siem.example.org:6514");
        assert_eq!(tls.name, "syslog-tls-siem.example.org_6514");
        assert_eq!(tls.settings.settle, Duration::from_secs(1));
        assert_eq!(tls.formatter.framing, Framing::OctetCounted);
        assert_eq!(
            tls.formatter.message,
            Message::Syslog(SyslogHeader::new(Facility::Authpriv, "gw"))
        );
        assert!(matches!(
            &tls.destination,
            Destination::Tls { server_name, .. } if server_name.to_str() == "siem.example.org"
        ));

        let cef = sections[1].plan("gw").unwrap();
        assert_eq!(cef.name, "arcsight");
        assert_eq!(cef.formatter.framing, Framing::Newline);
        assert!(matches!(cef.formatter.message, Message::Cef { .. }));

        let file = sections[2].plan("gw").unwrap();
        assert_eq!(file.settings.settle, Duration::ZERO);
        assert_eq!(
            file.state_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/portcullis/siem"))
        );
        assert_eq!(file.name, "jsonl-_var_log_portcullis_audit.jsonl");
        assert_eq!(file.settings.batch, 1000);
        assert_eq!(file.settings.poll, Duration::from_millis(500));
    }

    #[test]
    fn refuses_sections_that_do_not_make_sense() {
        let err = |text: &str| {
            let doc = format!("[[siem]]\n{text}");
            match toml::from_str::<Doc>(&doc) {
                Err(e) => e.to_string(),
                Ok(d) => d.siem[0].plan("gw").unwrap_err().to_string(),
            }
        };
        assert!(err("kind = \"syslog\"\naddres = \"a:1\"").contains("unknown field"));
        assert!(err("kind = \"gelf\"\naddress = \"a:1\"").contains("unknown variant"));
        assert!(err("kind = \"syslog\"").contains("exactly one"));
        assert!(err("kind = \"syslog\"\naddress = \"a:1\"\nfile = \"/x\"").contains("exactly one"));
        assert!(err("kind = \"syslog\"\naddress = \"a\"").contains("host:port"));
        assert!(err("kind = \"syslog\"\naddress = \"a:1\"\ntls = true").contains("ca_file"));
        assert!(err("kind = \"syslog\"\naddress = \"a:1\"\nca_file = \"/c\"").contains("tls"));
        assert!(err("kind = \"syslog\"\nfile = \"/x\"\ntls = true").contains("need `address`"));
        assert!(err("kind = \"jsonl\"\nfile = \"/x\"\ncef_framing = \"lines\"").contains("cef"));
        assert!(err("kind = \"jsonl\"\nfile = \"/x\"\nbatch = 5000").contains("batch"));
        assert!(err("kind = \"jsonl\"\nfile = \"/x\"\nname = \"a/b\"").contains("name"));
        assert!(
            err("kind = \"syslog\"\naddress = \"a:1\"\nfacility = \"local9\"")
                .contains("unknown variant")
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(split_host("siem:514"), Some("siem"));
        assert_eq!(split_host("[::1]:6514"), Some("::1"));
        assert_eq!(split_host("127.0.0.1:6514"), Some("127.0.0.1"));
        assert_eq!(split_host("siem:99999"), None);
        assert_eq!(split_host(":514"), None);
        let mut c = SiemConfig::new(SiemKind::Syslog);
        c.address = Some("[::1]:6514".into());
        c.tls = true;
        c.ca_file = Some("/ca.pem".into());
        let plan = c.plan("gw").unwrap();
        assert!(matches!(
            &plan.destination,
            Destination::Tls {
                server_name: ServerName::IpAddress(_),
                ..
            }
        ));
    }
}
