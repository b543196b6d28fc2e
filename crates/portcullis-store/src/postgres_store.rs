//! The shared [`Store`] on PostgreSQL: several gateways on one database. Nothing outside this
//! module knows about PostgreSQL.
//!
//! The [`Store`] trait is synchronous and is called from the gateway's async tasks as well as
//! from plain threads; the `postgres` client runs its own small runtime and must never be driven
//! from inside another. So each connection lives on a thread of its own (a pool of
//! [`PgOptions::connections`] threads); a call hands its query to the pool and waits for the answer
//! (at most [`PgOptions::timeout`]), as a sled call waits for its disk.
//!
//! Tables live in the `portcullis` schema and are created by numbered migrations when the store
//! opens, one gateway at a time (an advisory lock), so several nodes may start together. Records
//! are the same JSON as sled's, in `jsonb` columns; names are compared and sorted byte-wise
//! (`COLLATE "C"`), as in sled. Changes of one record ([`Store::update_user`]) are optimistic: read
//! with its version, change on the caller's thread, write if the version is unchanged, else again.
//! Every write is a committed transaction with `synchronous_commit` on: durable when the call
//! returns.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::config::{Host, SslMode};
use postgres::types::Json;
use postgres::{Client, NoTls};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{
    validate_name, AccessRequest, Cluster, Ephemeral, EphemeralChange, ExportLease, GrantRecord,
    MirrorQuery, MirroredRecord, RecordingReview, Store, StoreError, TargetRecord, TokenRecord,
    UserRecord,
};

/// The schema's migrations, in order: migration `i + 1` is `MIGRATIONS[i]`. Never edit one that
/// has shipped: add the next.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "users, targets, grants, API tokens and metadata",
        r#"
    -- Every row's version comes from this one sequence, never reused: a row deleted and made
    -- again never gets a version a change read before the delete could match.
    CREATE SEQUENCE portcullis.versions;
    CREATE TABLE portcullis.users (
        name text COLLATE "C" PRIMARY KEY,
        record jsonb NOT NULL,
        version bigint NOT NULL DEFAULT nextval('portcullis.versions')
    );
    CREATE TABLE portcullis.targets (
        name text COLLATE "C" PRIMARY KEY,
        record jsonb NOT NULL,
        version bigint NOT NULL DEFAULT nextval('portcullis.versions')
    );
    CREATE TABLE portcullis.grants (
        user_name text COLLATE "C" NOT NULL REFERENCES portcullis.users (name) ON DELETE CASCADE,
        target_name text COLLATE "C" NOT NULL REFERENCES portcullis.targets (name) ON DELETE CASCADE,
        created_at bigint NOT NULL,
        PRIMARY KEY (user_name, target_name)
    );
    CREATE INDEX grants_by_target ON portcullis.grants (target_name);
    CREATE TABLE portcullis.tokens (
        id text COLLATE "C" PRIMARY KEY,
        user_name text COLLATE "C" NOT NULL,
        record jsonb NOT NULL
    );
    CREATE INDEX tokens_by_user ON portcullis.tokens (user_name);
    CREATE TABLE portcullis.meta (
        key text COLLATE "C" PRIMARY KEY,
        value bytea NOT NULL
    );
    "#,
    ),
    (
        "short-lived state shared by the gateways (logins, RDP tickets, failed logins)",
        r#"
    CREATE TABLE portcullis.ephemeral (
        space text COLLATE "C" NOT NULL,
        key text COLLATE "C" NOT NULL,
        owner text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        expires_at_ms bigint NOT NULL,
        version bigint NOT NULL DEFAULT nextval('portcullis.versions'),
        PRIMARY KEY (space, key)
    );
    CREATE INDEX ephemeral_by_owner ON portcullis.ephemeral (space, owner);
    CREATE INDEX ephemeral_by_expiry ON portcullis.ephemeral (expires_at_ms);
    "#,
    ),
    (
        "the gateways' live sessions and the commands between them",
        r#"
    CREATE TABLE portcullis.nodes (
        node text COLLATE "C" PRIMARY KEY,
        heartbeat_ms bigint NOT NULL,
        sessions jsonb NOT NULL
    );
    CREATE TABLE portcullis.node_commands (
        id bigserial PRIMARY KEY,
        node text COLLATE "C" NOT NULL,
        command jsonb NOT NULL
    );
    CREATE INDEX node_commands_by_node ON portcullis.node_commands (node, id);
    "#,
    ),
    (
        "the gateways' audit chains, mirrored for the merged view",
        r#"
    CREATE TABLE portcullis.audit (
        node text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        ts_ms bigint NOT NULL,
        kind text COLLATE "C" NOT NULL,
        actor text NOT NULL,
        target text,
        session text,
        line text NOT NULL,
        PRIMARY KEY (node, seq)
    );
    CREATE INDEX audit_by_time ON portcullis.audit (ts_ms DESC, node DESC, seq DESC);
    CREATE INDEX audit_by_actor ON portcullis.audit (actor, ts_ms DESC);
    CREATE INDEX audit_by_session ON portcullis.audit (session, ts_ms DESC);
    CREATE INDEX audit_by_target ON portcullis.audit (target, ts_ms DESC);
    CREATE INDEX audit_by_kind ON portcullis.audit (kind, ts_ms DESC);
    "#,
    ),
    (
        "the exports one gateway at a time carries out, with their cursors",
        r#"
    CREATE TABLE portcullis.exports (
        name text COLLATE "C" PRIMARY KEY,
        holder text COLLATE "C" NOT NULL,
        lease_until_ms bigint NOT NULL,
        cursor text NOT NULL DEFAULT ''
    );
    "#,
    ),
    (
        "just-in-time access requests",
        r#"
    CREATE TABLE portcullis.access_requests (
        name text COLLATE "C" PRIMARY KEY,
        record jsonb NOT NULL,
        version bigint NOT NULL DEFAULT nextval('portcullis.versions')
    );
    "#,
    ),
    (
        "reviewers' marks and flagged moments of recordings",
        r#"
    CREATE TABLE portcullis.recording_reviews (
        name text COLLATE "C" PRIMARY KEY,
        record jsonb NOT NULL,
        version bigint NOT NULL DEFAULT nextval('portcullis.versions')
    );
    "#,
    ),
];

/// The channel `NOTIFY` wakes gateways on (the payload names the gateway).
const COMMAND_CHANNEL: &str = "portcullis_commands";

/// The advisory lock key that serialises migrations between gateways ("portcull" in ASCII).
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c6c;

/// One call in the pool's count; counted out when dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Calls that may wait for a connection at once; more fail at once (the database is not keeping
/// up, and a queue without end would only hold every caller longer).
const MAX_QUEUED: usize = 256;

/// How many times a change of one record is tried again when another writer came first.
const MAX_UPDATE_ATTEMPTS: usize = 1000;

/// How a [`PgStore`] connects.
#[derive(Clone)]
pub struct PgOptions {
    /// Connections (each on its own thread). At least 1.
    pub connections: usize,
    /// How long a call waits for the database before it fails.
    pub timeout: Duration,
    /// PEM file of the certificate authorities that may sign the server's certificate. Required
    /// for a server that is not on this machine (TLS is then mandatory and verified, host name
    /// included); optional for a loopback or Unix-socket server (TLS only if given).
    pub ca_file: Option<PathBuf>,
    /// The password, when it is not in the URL (e.g. read from a mounted secret).
    pub password: Option<String>,
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("connections", &self.connections)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .field("password", &self.password.as_ref().map(|_| "<not shown>"))
            .finish()
    }
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            connections: 4,
            timeout: Duration::from_secs(30),
            ca_file: None,
            password: None,
        }
    }
}

/// A [`Store`] in a PostgreSQL database, shared by any number of gateways.
pub struct PgStore {
    jobs: mpsc::Sender<Job>,
    /// How to connect (for the listening connection of [`Cluster::wait`]).
    connector: Arc<Connector>,
    /// The connection that listens for commands, once [`Cluster::wait`] made it.
    listener: Mutex<Option<Client>>,
    /// Calls handed to the pool and not answered yet.
    queued: Arc<AtomicUsize>,
    timeout: Duration,
    /// `postgres://user@host:port/db`: the URL without its password, for messages.
    shown: String,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &self.shown)
            .finish_non_exhaustive()
    }
}

/// What a connection thread needs to (re)connect.
struct Connector {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    shown: String,
}

impl Connector {
    fn connect(&self) -> Result<Client, StoreError> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        let mut client = connected.map_err(|e| {
            StoreError::Backend(format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.shown,
                describe(&e)
            ))
        })?;
        // Durable when the call returns, whatever the server's default; a stuck statement or
        // lock fails the call instead of holding a gateway thread.
        client
            .batch_execute(
                "SET synchronous_commit = on; SET statement_timeout = '20s'; SET lock_timeout = '15s'; \
                 SET idle_in_transaction_session_timeout = '60s'",
            )
            .map_err(|e| pg_error("set up the connection", &e))?;
        Ok(client)
    }
}

/// One pool thread's connection, made when first needed and made again after it broke.
struct Connection {
    connector: Arc<Connector>,
    client: Option<Client>,
    /// When the connection last answered: one idle longer than [`CHECK_IDLE_AFTER`] is checked
    /// before it is used (the server may have restarted meanwhile, and a write must not be the
    /// call that finds out).
    last_used: Instant,
}

/// See [`Connection::last_used`].
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(5);

impl Connection {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        let idle = self.last_used.elapsed() > CHECK_IDLE_AFTER;
        if let Some(client) = &mut self.client {
            if client.is_closed() || (idle && client.is_valid(Duration::from_secs(5)).is_err()) {
                self.client = None;
            }
        }
        self.last_used = Instant::now();
        match &mut self.client {
            Some(client) => Ok(client),
            slot => Ok(slot.insert(self.connector.connect()?)),
        }
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db?…` or
    /// `host=… user=…`), runs the migrations this version has and the database lacks, and
    /// returns the store. Fails with a clear message when the server cannot be reached, refuses
    /// the login, is not on this machine and no CA file is given, or holds a newer schema.
    pub fn open(url: &str, options: &PgOptions) -> Result<PgStore, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            StoreError::Backend(format!(
                "the PostgreSQL URL is not valid ({}); expected postgres://user:password@host:port/database",
                describe(&e)
            ))
        })?;
        if let Some(password) = &options.password {
            config.password(password);
        }
        let shown = shown_url(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("portcullis");
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let local = config.get_hosts().iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => is_loopback(name),
        }) && config.get_hostaddrs().iter().all(IpAddr::is_loopback);
        let tls = match &options.ca_file {
            Some(file) => {
                config.ssl_mode(SslMode::Require);
                Some(tls_from_ca_file(file)?)
            }
            None if local => {
                if config.get_ssl_mode() == SslMode::Require {
                    return Err(StoreError::Backend(format!(
                        "PostgreSQL at {shown}: sslmode=require needs the certificate authority that signed the \
                         server's certificate (the store's ca_file)"
                    )));
                }
                config.ssl_mode(SslMode::Disable);
                None
            }
            None => {
                return Err(StoreError::Backend(format!(
                    "PostgreSQL at {shown} is not on this machine: its connection must be TLS, verified against \
                     the certificate authority that signed the server's certificate (set the store's ca_file)"
                )))
            }
        };
        let connector = Arc::new(Connector {
            config,
            tls,
            shown: shown.clone(),
        });

        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..options.connections.max(1) {
            let queue = Arc::clone(&queue);
            let mut connection = Connection {
                connector: Arc::clone(&connector),
                client: None,
                last_used: Instant::now(),
            };
            std::thread::Builder::new()
                .name(format!("store-pg-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match job {
                        // A job that panics (a bug) drops its answer (the caller gets an
                        // error) and the connection; the thread goes on serving.
                        Ok(job) => {
                            let ran =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    job(&mut connection);
                                }));
                            if ran.is_err() {
                                connection.client = None;
                            }
                        }
                        Err(_) => return, // the store was dropped
                    }
                })
                .map_err(|e| {
                    StoreError::Backend(format!("cannot start a PostgreSQL thread: {e}"))
                })?;
        }
        let store = PgStore {
            jobs,
            connector: Arc::clone(&connector),
            listener: Mutex::new(None),
            queued: Arc::default(),
            timeout: options.timeout,
            shown,
        };
        store.run(migrate)?;
        Ok(store)
    }

    /// The server, without the password (for messages).
    pub fn server(&self) -> &str {
        &self.shown
    }

    /// Runs `op` on a pool connection and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Fail fast rather than queue without end behind a slow or unreachable database.
        let waiting = self.queued.fetch_add(1, Ordering::Relaxed);
        let queued = Arc::clone(&self.queued);
        if waiting >= MAX_QUEUED {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Backend(format!(
                "PostgreSQL at {} is not keeping up: {waiting} calls are waiting",
                self.shown
            )));
        }
        let (answer, answered) = mpsc::sync_channel(1);
        // Counted out when the job ends, however it ends (a panic included).
        let counted = Counted(queued);
        let job: Job = Box::new(move |connection: &mut Connection| {
            let _counted = counted;
            let result = connection.client().and_then(op);
            connection.last_used = Instant::now();
            let _ = answer.send(result);
        });
        if self.jobs.send(job).is_err() {
            // The job came back and was dropped: counted out.
            return Err(StoreError::Backend(
                "the PostgreSQL store is closed".to_owned(),
            ));
        }
        let wait = || answered.recv_timeout(self.timeout);
        // On a worker of the gateway's multi-threaded runtime, the wait is announced to it, so
        // that its other tasks move to other workers instead of stalling behind the database.
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        match answer {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(StoreError::Backend(format!(
                "PostgreSQL at {} did not answer within {} s",
                self.shown,
                self.timeout.as_secs()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::Backend(
                "a PostgreSQL connection thread ended without answering".to_owned(),
            )),
        }
    }

    fn create_record<T: Serialize>(
        &self,
        table: Table,
        name: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        validate_name(table.kind(), name)?;
        let value = encode(record)?;
        let name = name.to_owned();
        self.run(move |c| {
            let sql = format!(
                "INSERT INTO portcullis.{} (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                table.name()
            );
            let inserted = c
                .execute(&sql, &[&name, &Json(&value)])
                .map_err(|e| pg_error("insert", &e))?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists {
                    kind: table.kind(),
                    name,
                });
            }
            Ok(())
        })
    }

    fn put_record<T: Serialize>(
        &self,
        table: Table,
        name: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        validate_name(table.kind(), name)?;
        let value = encode(record)?;
        let name = name.to_owned();
        self.run(move |c| {
            let sql = format!(
                "INSERT INTO portcullis.{t} (name, record) VALUES ($1, $2) ON CONFLICT (name) \
                 DO UPDATE SET record = excluded.record, version = nextval('portcullis.versions')",
                t = table.name()
            );
            c.execute(&sql, &[&name, &Json(&value)])
                .map_err(|e| pg_error("write", &e))?;
            Ok(())
        })
    }

    fn get_record<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.get_versioned(table, name)?.map(|(record, _)| record))
    }

    fn get_versioned<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        name: &str,
    ) -> Result<Option<(T, i64)>, StoreError> {
        if !may_exist(name) {
            return Ok(None);
        }
        let name = name.to_owned();
        self.run(move |c| {
            let sql = format!(
                "SELECT record, version FROM portcullis.{} WHERE name = $1",
                table.name()
            );
            let row = c
                .query_opt(&sql, &[&name])
                .map_err(|e| pg_error("read", &e))?;
            row.map(|row| {
                let Json(value): Json<serde_json::Value> = row.get(0);
                Ok((decode(table.name(), &name, value)?, row.get::<_, i64>(1)))
            })
            .transpose()
        })
    }

    fn list_records<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
    ) -> Result<Vec<T>, StoreError> {
        self.run(move |c| {
            let sql = format!(
                "SELECT name, record FROM portcullis.{} ORDER BY name",
                table.name()
            );
            let rows = c.query(&sql, &[]).map_err(|e| pg_error("list", &e))?;
            rows.into_iter()
                .map(|row| {
                    let name: String = row.get(0);
                    let Json(value): Json<serde_json::Value> = row.get(1);
                    decode(table.name(), &name, value)
                })
                .collect()
        })
    }

    /// Changes one record with optimistic concurrency (see the module documentation).
    fn update_record<T>(
        &self,
        table: Table,
        name: &str,
        change: &mut dyn FnMut(&mut T) -> bool,
        rename_back: impl Fn(&mut T),
    ) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((mut record, version)) = self.get_versioned::<T>(table, name)? else {
                return Ok(None);
            };
            if !change(&mut record) {
                return Ok(Some(record));
            }
            // INVARIANT: the key is the name; a change may not rename.
            rename_back(&mut record);
            let value = encode(&record)?;
            let key = name.to_owned();
            let written = self.run(move |c| {
                let sql = format!(
                    "UPDATE portcullis.{} SET record = $2, version = nextval('portcullis.versions') WHERE name = $1 AND version = $3",
                    table.name()
                );
                c.execute(&sql, &[&key, &Json(&value), &version])
                    .map_err(|e| pg_error("update", &e))
            })?;
            if written == 1 {
                return Ok(Some(record));
            }
            // Changed or deleted meanwhile: read it again.
            std::thread::yield_now();
        }
        Err(StoreError::Backend(format!(
            "{} {name:?} changed {MAX_UPDATE_ATTEMPTS} times while this change was being made",
            table.kind()
        )))
    }
}

/// The tables holding one JSON record per name.
#[derive(Debug, Clone, Copy)]
enum Table {
    Users,
    Targets,
    Requests,
    Reviews,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Targets => "targets",
            Table::Requests => "access_requests",
            Table::Reviews => "recording_reviews",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Table::Users => "user",
            Table::Targets => "target",
            Table::Requests => "access request",
            Table::Reviews => "recording review",
        }
    }
}

impl Store for PgStore {
    fn update_review(
        &self,
        recording: &str,
        change: &mut dyn FnMut(&mut RecordingReview) -> bool,
    ) -> Result<RecordingReview, StoreError> {
        validate_name(Table::Reviews.kind(), recording)?;
        let back = |r: &mut RecordingReview| r.recording = recording.to_owned();
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            if let Some(mut done) = self.update_record(Table::Reviews, recording, change, back)? {
                back(&mut done);
                return Ok(done);
            }
            // None yet: the change made on an empty one is created (unless another gateway
            // created it first: then changed as stored).
            let mut fresh = RecordingReview::default();
            let changed = change(&mut fresh);
            back(&mut fresh);
            if !changed {
                return Ok(fresh);
            }
            match self.create_record(Table::Reviews, recording, &fresh) {
                Ok(()) => return Ok(fresh),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Backend(format!(
            "recording review {recording:?} kept disappearing while this change was being made"
        )))
    }

    fn get_review(&self, recording: &str) -> Result<Option<RecordingReview>, StoreError> {
        self.get_record(Table::Reviews, recording)
    }

    fn list_reviews(&self) -> Result<Vec<RecordingReview>, StoreError> {
        self.list_records(Table::Reviews)
    }

    fn delete_review(&self, recording: &str) -> Result<bool, StoreError> {
        if !may_exist(recording) {
            return Ok(false);
        }
        let name = recording.to_owned();
        self.run(move |c| {
            let existed = c
                .execute(
                    "DELETE FROM portcullis.recording_reviews WHERE name = $1",
                    &[&name],
                )
                .map_err(|e| pg_error("delete recording review", &e))?;
            Ok(existed == 1)
        })
    }

    fn create_request(&self, request: &AccessRequest) -> Result<(), StoreError> {
        self.create_record(Table::Requests, &request.id, request)
    }

    fn update_request(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut AccessRequest) -> bool,
    ) -> Result<Option<AccessRequest>, StoreError> {
        self.update_record(Table::Requests, id, change, |r: &mut AccessRequest| {
            r.id = id.to_owned()
        })
    }

    fn get_request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.get_record(Table::Requests, id)
    }

    fn list_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        self.list_records(Table::Requests)
    }

    fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.create_record(Table::Users, &user.name, user)
    }

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.put_record(Table::Users, &user.name, user)
    }

    fn update_user(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut UserRecord) -> bool,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.update_record(Table::Users, name, change, |u: &mut UserRecord| {
            u.name = name.to_owned()
        })
    }

    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get_record(Table::Users, name)
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.list_records(Table::Users)
    }

    fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        if !may_exist(name) {
            return Ok(false);
        }
        let name = name.to_owned();
        self.run(move |c| {
            let mut tx = c.transaction().map_err(|e| pg_error("begin", &e))?;
            // Grants go with the user (ON DELETE CASCADE); tokens name the user.
            let existed = tx
                .execute("DELETE FROM portcullis.users WHERE name = $1", &[&name])
                .map_err(|e| pg_error("delete user", &e))?;
            tx.execute(
                "DELETE FROM portcullis.tokens WHERE user_name = $1",
                &[&name],
            )
            .map_err(|e| pg_error("delete the user's tokens", &e))?;
            tx.commit().map_err(|e| pg_error("commit", &e))?;
            Ok(existed == 1)
        })
    }

    fn create_target(&self, target: &TargetRecord) -> Result<(), StoreError> {
        self.create_record(Table::Targets, &target.name, target)
    }

    fn put_target(&self, target: &TargetRecord) -> Result<(), StoreError> {
        self.put_record(Table::Targets, &target.name, target)
    }

    fn update_target(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut TargetRecord) -> bool,
    ) -> Result<Option<TargetRecord>, StoreError> {
        self.update_record(Table::Targets, name, change, |t: &mut TargetRecord| {
            t.name = name.to_owned()
        })
    }

    fn get_target(&self, name: &str) -> Result<Option<TargetRecord>, StoreError> {
        self.get_record(Table::Targets, name)
    }

    fn list_targets(&self) -> Result<Vec<TargetRecord>, StoreError> {
        self.list_records(Table::Targets)
    }

    fn delete_target(&self, name: &str) -> Result<bool, StoreError> {
        if !may_exist(name) {
            return Ok(false);
        }
        let name = name.to_owned();
        self.run(move |c| {
            // Grants go with the target (ON DELETE CASCADE), in the same statement.
            let existed = c
                .execute("DELETE FROM portcullis.targets WHERE name = $1", &[&name])
                .map_err(|e| pg_error("delete target", &e))?;
            Ok(existed == 1)
        })
    }

    fn create_grant(&self, user: &str, target: &str, created_at: i64) -> Result<(), StoreError> {
        for (kind, name) in [("user", user), ("target", target)] {
            if !may_exist(name) {
                return Err(StoreError::NotFound {
                    kind,
                    name: name.to_owned(),
                });
            }
        }
        let (user, target) = (user.to_owned(), target.to_owned());
        self.run(move |c| {
            let mut tx = c.transaction().map_err(|e| pg_error("begin", &e))?;
            // FOR KEY SHARE: neither may be deleted until the grant is in.
            let exists = |tx: &mut postgres::Transaction<'_>, table: &str, name: &str| {
                let sql = format!("SELECT 1 FROM portcullis.{table} WHERE name = $1 FOR KEY SHARE");
                tx.query_opt(&sql, &[&name])
                    .map(|row| row.is_some())
                    .map_err(|e| pg_error("check the grant's user and target", &e))
            };
            if !exists(&mut tx, "users", &user)? {
                return Err(StoreError::NotFound { kind: "user", name: user });
            }
            if !exists(&mut tx, "targets", &target)? {
                return Err(StoreError::NotFound { kind: "target", name: target });
            }
            tx.execute(
                "INSERT INTO portcullis.grants (user_name, target_name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&user, &target, &created_at],
            )
            .map_err(|e| pg_error("insert grant", &e))?;
            tx.commit().map_err(|e| pg_error("commit", &e))
        })
    }

    fn delete_grant(&self, user: &str, target: &str) -> Result<bool, StoreError> {
        if !may_exist(user) || !may_exist(target) {
            return Ok(false);
        }
        let (user, target) = (user.to_owned(), target.to_owned());
        self.run(move |c| {
            c.execute(
                "DELETE FROM portcullis.grants WHERE user_name = $1 AND target_name = $2",
                &[&user, &target],
            )
            .map(|n| n == 1)
            .map_err(|e| pg_error("delete grant", &e))
        })
    }

    fn list_grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        self.run(|c| {
            let rows = c
                .query(
                    "SELECT user_name, target_name, created_at FROM portcullis.grants \
                     ORDER BY user_name, target_name",
                    &[],
                )
                .map_err(|e| pg_error("list grants", &e))?;
            Ok(rows
                .into_iter()
                .map(|row| GrantRecord {
                    user: row.get(0),
                    target: row.get(1),
                    created_at: row.get(2),
                })
                .collect())
        })
    }

    fn has_grant(&self, user: &str, target: &str) -> Result<bool, StoreError> {
        if !may_exist(user) || !may_exist(target) {
            return Ok(false);
        }
        let (user, target) = (user.to_owned(), target.to_owned());
        self.run(move |c| {
            c.query_opt(
                "SELECT 1 FROM portcullis.grants WHERE user_name = $1 AND target_name = $2",
                &[&user, &target],
            )
            .map(|row| row.is_some())
            .map_err(|e| pg_error("read grant", &e))
        })
    }

    fn granted_targets(&self, user: &str) -> Result<Vec<String>, StoreError> {
        if !may_exist(user) {
            return Ok(Vec::new());
        }
        let user = user.to_owned();
        self.run(move |c| {
            let rows = c
                .query(
                    "SELECT target_name FROM portcullis.grants WHERE user_name = $1 ORDER BY target_name",
                    &[&user],
                )
                .map_err(|e| pg_error("list grants", &e))?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        })
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        validate_name("token", &token.id)?;
        let value = encode(token)?;
        let (id, user) = (token.id.clone(), token.user.clone());
        self.run(move |c| {
            c.execute(
                "INSERT INTO portcullis.tokens (id, user_name, record) VALUES ($1, $2, $3) ON CONFLICT (id) \
                 DO UPDATE SET user_name = excluded.user_name, record = excluded.record",
                &[&id, &user, &Json(&value)],
            )
            .map(drop)
            .map_err(|e| pg_error("write token", &e))
        })
    }

    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        if !may_exist(id) {
            return Ok(None);
        }
        let id = id.to_owned();
        self.run(move |c| {
            let row = c
                .query_opt("SELECT record FROM portcullis.tokens WHERE id = $1", &[&id])
                .map_err(|e| pg_error("read token", &e))?;
            row.map(|row| {
                let Json(value): Json<serde_json::Value> = row.get(0);
                decode("tokens", &id, value)
            })
            .transpose()
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.run(|c| {
            let rows = c
                .query("SELECT id, record FROM portcullis.tokens ORDER BY id", &[])
                .map_err(|e| pg_error("list tokens", &e))?;
            rows.into_iter()
                .map(|row| {
                    let id: String = row.get(0);
                    let Json(value): Json<serde_json::Value> = row.get(1);
                    decode("tokens", &id, value)
                })
                .collect()
        })
    }

    fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        if !may_exist(id) {
            return Ok(false);
        }
        let id = id.to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM portcullis.tokens WHERE id = $1", &[&id])
                .map(|n| n == 1)
                .map_err(|e| pg_error("delete token", &e))
        })
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !may_exist(key) {
            return Ok(None);
        }
        let key = key.to_owned();
        self.run(move |c| {
            c.query_opt("SELECT value FROM portcullis.meta WHERE key = $1", &[&key])
                .map(|row| row.map(|row| row.get(0)))
                .map_err(|e| pg_error("read metadata", &e))
        })
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(move |c| {
            c.execute(
                "INSERT INTO portcullis.meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .map(drop)
            .map_err(|e| pg_error("write metadata", &e))
        })
    }

    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(move |c| {
            c.execute(
                "INSERT INTO portcullis.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .map(|n| n == 1)
            .map_err(|e| pg_error("write metadata", &e))
        })
    }

    fn meta_keys(&self) -> Result<Vec<String>, StoreError> {
        self.run(|c| {
            let rows = c
                .query("SELECT key FROM portcullis.meta ORDER BY key", &[])
                .map_err(|e| pg_error("list metadata", &e))?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        })
    }

    fn ephemeral_update(
        &self,
        space: &str,
        key: &str,
        now_ms: i64,
        change: &mut dyn FnMut(Option<&Ephemeral>) -> EphemeralChange,
    ) -> Result<Option<Ephemeral>, StoreError> {
        if !may_exist(space) || !may_exist(key) {
            // Nothing can be stored under it; a change asked for fails below as any bad key.
            if let EphemeralChange::Keep | EphemeralChange::Delete = change(None) {
                return Ok(None);
            }
            return Err(StoreError::Backend(
                "an ephemeral key holds a NUL".to_owned(),
            ));
        }
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (s, k) = (space.to_owned(), key.to_owned());
            // The row as stored (expired or not) and its version.
            let row = self.run(move |c| {
                c.query_opt(
                    "SELECT owner, value, expires_at_ms, version FROM portcullis.ephemeral \
                     WHERE space = $1 AND key = $2",
                    &[&s, &k],
                )
                .map(|row| {
                    row.map(|row| {
                        let entry = Ephemeral {
                            owner: row.get(0),
                            value: row.get(1),
                            expires_at_ms: row.get(2),
                        };
                        (entry, row.get::<_, i64>(3))
                    })
                })
                .map_err(|e| pg_error("read short-lived state", &e))
            })?;
            let version = row.as_ref().map(|(_, v)| *v);
            let before = row.map(|(e, _)| e).filter(|e| e.expires_at_ms > now_ms);
            let (s, k) = (space.to_owned(), key.to_owned());
            let done = match (change(before.as_ref()), version) {
                (EphemeralChange::Keep, _) | (EphemeralChange::Delete, None) => true,
                (EphemeralChange::Delete, Some(v)) => self.run(move |c| {
                    c.execute(
                        "DELETE FROM portcullis.ephemeral WHERE space = $1 AND key = $2 AND version = $3",
                        &[&s, &k, &v],
                    )
                    .map(|n| n == 1)
                    .map_err(|e| pg_error("delete short-lived state", &e))
                })?,
                (EphemeralChange::Put(e), None) => self.run(move |c| {
                    c.execute(
                        "INSERT INTO portcullis.ephemeral (space, key, owner, value, expires_at_ms) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (space, key) DO NOTHING",
                        &[&s, &k, &e.owner, &e.value, &e.expires_at_ms],
                    )
                    .map(|n| n == 1)
                    .map_err(|e| pg_error("write short-lived state", &e))
                })?,
                (EphemeralChange::Put(e), Some(v)) => self.run(move |c| {
                    c.execute(
                        "UPDATE portcullis.ephemeral SET owner = $3, value = $4, expires_at_ms = $5, \
                         version = nextval('portcullis.versions') WHERE space = $1 AND key = $2 AND version = $6",
                        &[&s, &k, &e.owner, &e.value, &e.expires_at_ms, &v],
                    )
                    .map(|n| n == 1)
                    .map_err(|e| pg_error("write short-lived state", &e))
                })?,
            };
            if done {
                return Ok(before);
            }
            // Another gateway changed it meanwhile: read it again.
            std::thread::yield_now();
        }
        Err(StoreError::Backend(format!(
            "short-lived state {space}/{key} changed {MAX_UPDATE_ATTEMPTS} times while this change was being made"
        )))
    }

    fn ephemeral_delete_owner(&self, space: &str, owner: &str) -> Result<usize, StoreError> {
        if !may_exist(space) || !may_exist(owner) {
            return Ok(0);
        }
        let (space, owner) = (space.to_owned(), owner.to_owned());
        self.run(move |c| {
            c.execute(
                "DELETE FROM portcullis.ephemeral WHERE space = $1 AND owner = $2",
                &[&space, &owner],
            )
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(|e| pg_error("delete short-lived state", &e))
        })
    }

    fn ephemeral_count(
        &self,
        space: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<(usize, usize), StoreError> {
        if !may_exist(space) {
            return Ok((0, 0));
        }
        let (space, owner) = (space.to_owned(), owner.to_owned());
        self.run(move |c| {
            let row = c
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE owner = $2) FROM portcullis.ephemeral \
                     WHERE space = $1 AND expires_at_ms > $3",
                    &[&space, &owner, &now_ms],
                )
                .map_err(|e| pg_error("count short-lived state", &e))?;
            let count = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(usize::MAX);
            Ok((count(0), count(1)))
        })
    }

    fn ephemeral_purge(&self, now_ms: i64) -> Result<usize, StoreError> {
        // In batches: each statement stays short, however much expired.
        let mut purged = 0;
        loop {
            let n = self.run(move |c| {
                c.execute(
                    "DELETE FROM portcullis.ephemeral WHERE ctid IN (SELECT ctid FROM \
                     portcullis.ephemeral WHERE expires_at_ms <= $1 LIMIT 5000)",
                    &[&now_ms],
                )
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .map_err(|e| pg_error("purge short-lived state", &e))
            })?;
            purged += n;
            if n < 5000 {
                return Ok(purged);
            }
        }
    }

    fn ephemeral_trim(&self, space: &str, keep: usize) -> Result<usize, StoreError> {
        if !may_exist(space) {
            return Ok(0);
        }
        let space = space.to_owned();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.run(move |c| {
            let count: i64 = c
                .query_one(
                    "SELECT count(*) FROM portcullis.ephemeral WHERE space = $1",
                    &[&space],
                )
                .map_err(|e| pg_error("count short-lived state", &e))?
                .get(0);
            if count <= keep {
                return Ok(0);
            }
            c.execute(
                "DELETE FROM portcullis.ephemeral WHERE space = $1 AND key IN (SELECT key FROM \
                 portcullis.ephemeral WHERE space = $1 ORDER BY expires_at_ms LIMIT $2)",
                &[&space, &(count - keep)],
            )
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(|e| pg_error("trim short-lived state", &e))
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write was committed with synchronous_commit on before its call returned.
        Ok(())
    }
}

fn newer_schema(applied: i32, known: i32) -> StoreError {
    StoreError::Backend(format!(
        "the database's portcullis schema is at version {applied}, newer than this gateway knows ({known}): \
         upgrade this gateway"
    ))
}

/// The schema's version, `None` before the first migration (read without creating anything).
fn schema_version(c: &mut Client) -> Result<Option<i32>, StoreError> {
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('portcullis.schema_migrations') IS NOT NULL",
            &[],
        )
        .map_err(|e| pg_error("read the schema version", &e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let version: i32 = c
        .query_one(
            "SELECT coalesce(max(version), 0) FROM portcullis.schema_migrations",
            &[],
        )
        .map_err(|e| pg_error("read the schema version", &e))?
        .get(0);
    Ok(Some(version))
}

impl Cluster for PgStore {
    fn publish(&self, node: &str, sessions: &serde_json::Value) -> Result<(), StoreError> {
        let (node, sessions) = (node.to_owned(), sessions.clone());
        self.run(move |c| {
            c.execute(
                "INSERT INTO portcullis.nodes (node, heartbeat_ms, sessions) VALUES ($1, \
                 (extract(epoch from clock_timestamp()) * 1000)::bigint, $2) \
                 ON CONFLICT (node) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms, \
                 sessions = excluded.sessions",
                &[&node, &Json(&sessions)],
            )
            .map(drop)
            .map_err(|e| pg_error("publish this gateway's sessions", &e))
        })
    }

    fn published(&self, within: Duration) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let within_ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        self.run(move |c| {
            let rows = c
                .query(
                    "SELECT node, sessions FROM portcullis.nodes WHERE heartbeat_ms >= \
                     (extract(epoch from clock_timestamp()) * 1000)::bigint - $1 ORDER BY node",
                    &[&within_ms],
                )
                .map_err(|e| pg_error("read the gateways' sessions", &e))?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    let Json(sessions): Json<serde_json::Value> = row.get(1);
                    (row.get(0), sessions)
                })
                .collect())
        })
    }

    fn send(&self, node: &str, command: &serde_json::Value) -> Result<(), StoreError> {
        let (node, command) = (node.to_owned(), command.clone());
        self.run(move |c| {
            let mut tx = c.transaction().map_err(|e| pg_error("begin", &e))?;
            tx.execute(
                "INSERT INTO portcullis.node_commands (node, command) VALUES ($1, $2)",
                &[&node, &Json(&command)],
            )
            .map_err(|e| pg_error("send a command to a gateway", &e))?;
            // Delivered with the commit: the woken gateway finds the command.
            tx.execute("SELECT pg_notify($1, $2)", &[&COMMAND_CHANNEL, &node])
                .map_err(|e| pg_error("wake a gateway", &e))?;
            tx.commit().map_err(|e| pg_error("commit", &e))
        })
    }

    fn take(&self, node: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let node = node.to_owned();
        self.run(move |c| {
            let rows = c
                .query(
                    "DELETE FROM portcullis.node_commands WHERE node = $1 RETURNING id, command",
                    &[&node],
                )
                .map_err(|e| pg_error("take this gateway's commands", &e))?;
            let mut commands: Vec<(i64, serde_json::Value)> = rows
                .into_iter()
                .map(|row| {
                    let Json(command): Json<serde_json::Value> = row.get(1);
                    (row.get(0), command)
                })
                .collect();
            commands.sort_by_key(|(id, _)| *id);
            Ok(commands.into_iter().map(|(_, c)| c).collect())
        })
    }

    fn wait(&self, _node: &str, timeout: Duration) -> Result<(), StoreError> {
        let mut listener = match self.listener.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if listener.as_ref().is_none_or(Client::is_closed) {
            *listener = None;
            let listening = self.connector.connect().and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {COMMAND_CHANNEL}"))
                    .map_err(|e| pg_error("listen for commands", &e))?;
                Ok(c)
            });
            match listening {
                Ok(c) => *listener = Some(c),
                Err(e) => {
                    drop(listener);
                    std::thread::sleep(timeout);
                    return Err(e);
                }
            }
        }
        let Some(client) = listener.as_mut() else {
            return Ok(());
        };
        // Any wake-up ends the wait: the caller takes whatever is there for it.
        use postgres::fallible_iterator::FallibleIterator as _;
        let woken = client
            .notifications()
            .timeout_iter(timeout)
            .next()
            .map(drop);
        if let Err(e) = woken {
            *listener = None;
            return Err(pg_error("wait for commands", &e));
        }
        Ok(())
    }

    fn leave(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM portcullis.nodes WHERE node = $1", &[&node])
                .map(drop)
                .map_err(|e| pg_error("leave the cluster", &e))
        })
    }

    fn audit_mirrored_up_to(&self, node: &str) -> Result<u64, StoreError> {
        let node = node.to_owned();
        self.run(move |c| {
            let row = c
                .query_one(
                    "SELECT coalesce(max(seq), 0) FROM portcullis.audit WHERE node = $1",
                    &[&node],
                )
                .map_err(|e| pg_error("read how far the audit chain is mirrored", &e))?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn audit_mirror(&self, records: &[MirroredRecord]) -> Result<(), StoreError> {
        let records = records.to_vec();
        self.run(move |c| {
            let mut tx = c.transaction().map_err(|e| pg_error("begin", &e))?;
            for r in &records {
                let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
                let ts = i64::try_from(r.ts_ms).unwrap_or(i64::MAX);
                // PostgreSQL's text holds no NUL, which a record's fields may (a failed login's
                // name is what was typed): the filter columns get U+FFFD instead, so one record
                // can never stop the mirror. The line itself is JSON (NUL escaped), stored as is.
                let text = |v: &str| v.replace('\0', "\u{FFFD}");
                let (actor, kind) = (text(&r.actor), text(&r.kind));
                let (target, session) = (
                    r.target.as_deref().map(text),
                    r.session.as_deref().map(text),
                );
                let line = text(&r.line);
                let row = tx
                    .query_one(
                        "WITH put AS (INSERT INTO portcullis.audit \
                         (node, seq, ts_ms, kind, actor, target, session, line) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (node, seq) DO NOTHING RETURNING line) \
                         SELECT coalesce((SELECT line FROM put), \
                         (SELECT line FROM portcullis.audit WHERE node = $1 AND seq = $2))",
                        &[&r.node, &seq, &ts, &kind, &actor, &target, &session, &line],
                    )
                    .map_err(|e| pg_error("mirror the audit chain", &e))?;
                let mut there: Option<String> = row.get(0);
                if there.is_none() {
                    // Another transaction inserted it meanwhile (two copies of one gateway's
                    // mirror at its stop): the insert waited for it, but this statement's
                    // snapshot was taken before it committed. A new statement sees it.
                    there = tx
                        .query_opt(
                            "SELECT line FROM portcullis.audit WHERE node = $1 AND seq = $2",
                            &[&r.node, &seq],
                        )
                        .map_err(|e| pg_error("mirror the audit chain", &e))?
                        .map(|row| row.get(0));
                }
                if there.as_deref() != Some(line.as_str()) {
                    return Err(StoreError::Corrupt {
                        detail: format!(
                            "record {} of gateway {:?}'s audit chain is already mirrored with \
                             other bytes (two gateways with one name, or a chain rewritten): \
                             nothing mirrored",
                            r.seq, r.node
                        ),
                    });
                }
            }
            tx.commit().map_err(|e| pg_error("commit", &e))
        })
    }

    fn audit_mirrored(&self, q: &MirrorQuery) -> Result<Vec<MirroredRecord>, StoreError> {
        let q = q.clone();
        self.run(move |c| {
            let mut sql = String::from(
                "SELECT node, seq, ts_ms, kind, actor, target, session, line \
                 FROM portcullis.audit WHERE true",
            );
            let mut params: Vec<Box<dyn postgres::types::ToSql + Sync>> = Vec::new();
            let mut add =
                |sql: &mut String, clause: &str, p: Box<dyn postgres::types::ToSql + Sync>| {
                    params.push(p);
                    sql.push_str(&clause.replace('?', &format!("${}", params.len())));
                };
            let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            if let Some(a) = q.actor {
                add(&mut sql, " AND actor = ?", Box::new(a));
            }
            if let Some(t) = q.target {
                add(&mut sql, " AND target = ?", Box::new(t));
            }
            if let Some(s) = q.session {
                add(&mut sql, " AND session = ?", Box::new(s));
            }
            if let Some(n) = q.node {
                add(&mut sql, " AND node = ?", Box::new(n));
            }
            if !q.kinds.is_empty() {
                add(&mut sql, " AND kind = ANY(?)", Box::new(q.kinds));
            }
            if let Some(t) = q.since_ms {
                add(&mut sql, " AND ts_ms >= ?", Box::new(big(t)));
            }
            if let Some(t) = q.until_ms {
                add(&mut sql, " AND ts_ms < ?", Box::new(big(t)));
            }
            if let Some((ts, node, seq)) = q.before {
                add(&mut sql, " AND (ts_ms, node, seq) < (?", Box::new(big(ts)));
                add(&mut sql, ", ?", Box::new(node));
                add(&mut sql, ", ?)", Box::new(big(seq)));
            }
            let limit = i64::try_from(q.limit.min(1000)).unwrap_or(1000);
            add(
                &mut sql,
                " ORDER BY ts_ms DESC, node DESC, seq DESC LIMIT ?",
                Box::new(limit),
            );
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p.as_ref()).collect();
            let rows = c
                .query(sql.as_str(), &refs)
                .map_err(|e| pg_error("read the cluster's audit trail", &e))?;
            Ok(rows.iter().map(mirrored_row).collect())
        })
    }

    fn audit_chain(
        &self,
        node: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<MirroredRecord>, StoreError> {
        let node = node.to_owned();
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit.min(10_000)).unwrap_or(10_000);
        self.run(move |c| {
            let rows = c
                .query(
                    "SELECT node, seq, ts_ms, kind, actor, target, session, line \
                     FROM portcullis.audit WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&node, &after, &limit],
                )
                .map_err(|e| pg_error("read a mirrored audit chain", &e))?;
            Ok(rows.iter().map(mirrored_row).collect())
        })
    }

    fn audit_nodes(&self) -> Result<Vec<String>, StoreError> {
        self.run(|c| {
            // One index probe per gateway (a loose index scan), not a scan of every record.
            let rows = c
                .query(
                    "WITH RECURSIVE n(node) AS ( \
                       (SELECT node FROM portcullis.audit ORDER BY node LIMIT 1) \
                       UNION ALL \
                       SELECT (SELECT a.node FROM portcullis.audit a WHERE a.node > n.node \
                               ORDER BY a.node LIMIT 1) \
                       FROM n WHERE n.node IS NOT NULL) \
                     SELECT node FROM n WHERE node IS NOT NULL",
                    &[],
                )
                .map_err(|e| pg_error("list the mirrored audit chains", &e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn export_lease(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<ExportLease, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.run(move |c| {
            let taken = c
                .query_opt(
                    "INSERT INTO portcullis.exports AS e (name, holder, lease_until_ms) VALUES \
                     ($1, $2, (extract(epoch from clock_timestamp()) * 1000)::bigint + $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     lease_until_ms = excluded.lease_until_ms \
                     WHERE e.holder = excluded.holder OR e.lease_until_ms < \
                     (extract(epoch from clock_timestamp()) * 1000)::bigint \
                     RETURNING e.cursor",
                    &[&name, &holder, &lease_ms],
                )
                .map_err(|e| pg_error("take an export's lease", &e))?;
            if let Some(row) = taken {
                return Ok(ExportLease::Held { cursor: row.get(0) });
            }
            let row = c
                .query_opt(
                    "SELECT holder FROM portcullis.exports WHERE name = $1",
                    &[&name],
                )
                .map_err(|e| pg_error("read an export's lease", &e))?;
            Ok(ExportLease::Other {
                holder: row.map(|r| r.get(0)).unwrap_or_default(),
            })
        })
    }

    fn export_advance(&self, name: &str, holder: &str, cursor: &str) -> Result<bool, StoreError> {
        let (name, holder, cursor) = (name.to_owned(), holder.to_owned(), cursor.to_owned());
        self.run(move |c| {
            c.execute(
                "UPDATE portcullis.exports SET cursor = $3 WHERE name = $1 AND holder = $2",
                &[&name, &holder, &cursor],
            )
            .map(|n| n == 1)
            .map_err(|e| pg_error("store an export's cursor", &e))
        })
    }

    fn export_release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |c| {
            c.execute(
                "UPDATE portcullis.exports SET lease_until_ms = 0 WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .map(drop)
            .map_err(|e| pg_error("give an export's lease up", &e))
        })
    }
}

fn mirrored_row(row: &postgres::Row) -> MirroredRecord {
    MirroredRecord {
        node: row.get(0),
        seq: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        ts_ms: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
        kind: row.get(3),
        actor: row.get(4),
        target: row.get(5),
        session: row.get(6),
        line: row.get(7),
    }
}

/// Brings the schema up to [`MIGRATIONS`], one gateway at a time.
fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    // Up to date: nothing to create, so a role without the right to create may run gateways.
    match schema_version(c)? {
        Some(v) if v == known => return Ok(()),
        Some(v) if v > known => return Err(newer_schema(v, known)),
        _ => {}
    }
    let mut tx = c.transaction().map_err(|e| pg_error("begin", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| pg_error("wait for other gateways' migrations", &e))?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS portcullis; \
         CREATE TABLE IF NOT EXISTS portcullis.schema_migrations ( \
             version integer PRIMARY KEY, description text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .map_err(|e| pg_error("create the portcullis schema", &e))?;
    let applied: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM portcullis.schema_migrations",
            &[],
        )
        .map_err(|e| pg_error("read the schema version", &e))?
        .get(0);
    if applied > known {
        return Err(newer_schema(applied, known));
    }
    for (version, (description, sql)) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(applied).unwrap_or(0))
    {
        tx.batch_execute(sql)
            .map_err(|e| pg_error(&format!("apply migration {version} ({description})"), &e))?;
        tx.execute(
            "INSERT INTO portcullis.schema_migrations (version, description) VALUES ($1, $2)",
            &[&version, description],
        )
        .map_err(|e| pg_error("record the migration", &e))?;
    }
    tx.commit()
        .map_err(|e| pg_error("commit the migrations", &e))
}

/// Whether a record could have this name or key: PostgreSQL's text holds no NUL, and a name
/// that cannot be stored matches nothing (the store's lookups never fail on a bad name).
fn may_exist(name: &str) -> bool {
    !name.contains('\0')
}

fn encode<T: Serialize>(record: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(record)
        .map_err(|e| StoreError::Backend(format!("cannot encode record: {e}")))
}

fn decode<T: DeserializeOwned>(
    table: &str,
    key: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        detail: format!("{table} record {key:?}: {e}"),
    })
}

/// A PostgreSQL error as a store error, with the server's own message (never a query's
/// parameters: those may be records).
fn pg_error(doing: &str, error: &postgres::Error) -> StoreError {
    StoreError::Backend(format!("PostgreSQL: cannot {doing}: {}", describe(error)))
}

fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `postgres://user@host:port/db`, never the password.
fn shown_url(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

fn tls_from_ca_file(file: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |detail: String| {
        StoreError::Backend(format!(
            "the PostgreSQL CA file {}: {detail}",
            file.display()
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".to_owned()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_url_shown_has_no_password() {
        let config: postgres::Config = "postgres://alice:s3cret@db.example:6543/gw"
            .parse()
            .unwrap();
        let shown = shown_url(&config);
        assert_eq!(shown, "postgres://alice@db.example:6543/gw");
        let config: postgres::Config = "host=/run/pg user=bob password=s3cret dbname=x"
            .parse()
            .unwrap();
        assert!(!shown_url(&config).contains("s3cret"));
    }

    #[test]
    fn a_remote_server_without_a_ca_is_refused_before_any_connection() {
        let err = PgStore::open(
            "postgres://alice:s3cret@db.example:6543/gw",
            &PgOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not on this machine"), "{err}");
        assert!(err.contains("ca_file"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        // sslmode=disable does not lift it.
        let err = PgStore::open(
            "postgres://alice:s3cret@10.1.2.3/gw?sslmode=disable",
            &PgOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not on this machine"), "{err}");
    }

    #[test]
    fn loopback_names() {
        for local in [
            "localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in ["db", "10.0.0.1", "localhost.evil.example", "::2"] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }

    #[test]
    fn a_bad_url_says_what_is_expected() {
        let err = PgStore::open("postgres://[nope", &PgOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected postgres://"), "{err}");
    }

    #[test]
    fn an_unreachable_server_fails_with_its_address_and_without_the_password() {
        // Port 1 on loopback: nothing listens there.
        let options = PgOptions {
            timeout: Duration::from_secs(20),
            ..PgOptions::default()
        };
        let err = PgStore::open("postgres://alice:s3cret@127.0.0.1:1/gw", &options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot connect to PostgreSQL at postgres://alice@127.0.0.1:1/gw"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}
