//! SIEM export of the Portcullis audit trail ([`portcullis_audit`]): every record is delivered
//! **at least once**, from a durable cursor, so nothing is lost while the SIEM is down.
//!
//! # Formats ([`mod@format`])
//!
//! - **JSON lines** (`kind = "jsonl"`): the record exactly as the audit log stores it
//!   (so the SIEM can check its `hash` and `prev`), newline-delimited;
//! - **RFC 5424 syslog** (`kind = "syslog"`): `<PRI>1 TIMESTAMP HOSTNAME portcullis - KIND
//!   [portcullis@32473 seq="…" hash="…" actor="…" target="…" session="…"] JSON`, PRI from the
//!   configured facility and a severity from the kind ([`format::severity`]: warning for
//!   failed logins, kills, lock-outs and denials; notice for admin changes, freezes, exports,
//!   MFA, policy; info otherwise);
//! - **CEF** (`kind = "cef"`): `CEF:0|Portcullis|Portcullis|<version>|<kind>|<name>|<0-10>|rt=…
//!   cn1=<seq> suser=<actor> cs1=<target> cs2=<session> act=<decision> cs3=<hash> cs4=<prev>
//!   msg=<detail JSON>`, inside syslog (default) or as bare lines (`cef_framing = "lines"`).
//!
//! Over TCP and TLS, syslog (and CEF in syslog) is framed by RFC 6587 octet counting
//! (`LEN SP MSG`); JSON and CEF lines end with a newline; files always hold one message a line.
//!
//! # Sinks
//!
//! A local file (appended, fsynced after each batch), TCP, or TLS 1.2/1.3 (rustls with ring,
//! the receiver's certificate checked against `ca_file` and `server_name` or the address's
//! host).
//!
//! # Delivery
//!
//! A [`Forwarder`] pages forward through the audit directory with
//! [`portcullis_audit::read_only_query`] (no lock: the gateway keeps writing) after its cursor,
//! writes a batch (up to 1000 records), and moves the cursor once the batch is delivered:
//! for a file, after fsync; over TCP/TLS, which has no acknowledgement, once the batch has been
//! written, flushed, and the connection stayed up for `settle_ms` (default 1 s) after that. A
//! receiver that is stopped or killed closes or resets the connection, which the forwarder sees
//! at once: it then reconnects with exponential back-off (`backoff_min_ms` 100 ms doubling to
//! `backoff_max_ms` 30 s) and sends again everything after the cursor. Duplicates are possible,
//! losses are not, within these limits:
//!
//! - a receiver that takes a message off the socket and then loses it more than `settle_ms`
//!   later (an in-memory queue), or a receiving host that vanishes without a reset for longer,
//!   can lose what it had: only an application-level acknowledgement (RELP) closes that;
//! - a forwarder given the writer's [`Watermark`](portcullis_audit::Watermark)
//!   ([`Forwarder::synced_by`], as the gateway does) reads no record past the last fsync: a
//!   whole line whose fsync had not returned may vanish in a crash, and its seq then goes to
//!   another record. Without one (a log written by another process) it reads whole lines and a
//!   crash of that writer can take back a record the SIEM already has.
//!
//! At start, the cursor is checked against the log ([`Pump::on_cursor_check`]): a cursor ahead of
//! where the log really ends (after a crash, records an older forwarder had sent before their
//! fsync are gone, and their seqs belong to new records) moves back to that end, and a cursor
//! whose seq carries another hash in the log (a replaced log) moves back to the start; both are
//! reported as gaps. Duplicates, never skipped records.
//!
//! The cursor (`<state_dir>/siem-<name>.cursor`, `{"seq":…,"hash":"…"}`) is replaced
//! atomically (temp file, fsync, rename, fsync of the directory) ([`cursor`]).
//!
//! Each record's `prev` is checked against the hash of the record before it (from the cursor
//! on): a break (a missing seq, a changed record, a log replaced) is logged as an error and
//! counted in [`Status::gaps`] / [`Status::last_gap`], and forwarding goes on.
//!
//! The decisions are made by the sans-I/O [`Pump`] ([`pump`]); the tokio loop around it only
//! does the I/O.
//!
//! # Use
//!
//! ```no_run
//! # async fn gateway(sections: Vec<portcullis_siem::SiemConfig>) -> Result<(), portcullis_siem::SiemError> {
//! use portcullis_siem::Forwarder;
//! let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
//! let mut handles = Vec::new();
//! for section in &sections {
//!     let forwarder = Forwarder::new(section, "/var/lib/portcullis/audit", "/var/lib/portcullis/siem")?;
//!     handles.push(forwarder.handle()); // .status() for the API, .wake() after appends
//!     let mut stop = stop_rx.clone();
//!     tokio::spawn(forwarder.run(async move {
//!         let _ = stop.wait_for(|stop| *stop).await;
//!     }));
//! }
//! // ... at shutdown:
//! let _ = stop_tx.send(true);
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod config;
pub mod cursor;
pub mod format;
mod forwarder;
pub mod pump;
mod tail;

pub use cluster::{Cluster, ClusterTrail, Lease, TrailError};
pub use config::{CefFraming, ConfigError, Destination, Plan, SiemConfig, SiemKind, SiemSource};
pub use cursor::Chains;
pub use cursor::Cursor;
pub use format::{Facility, Formatter, Framing, Message, Severity, SyslogHeader};
pub use forwarder::{machine_hostname, run, Forwarder, Handle, Local, SiemError, Source};
pub use pump::{Backoff, Batch, Position, Pump, Settings, Status};
