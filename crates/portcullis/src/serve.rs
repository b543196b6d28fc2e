//! `portcullis serve`: the gateway's wiring. Opens the store, the key, the audit trail and the
//! recordings (recovering what a crash left open), builds the broker and the web state, binds
//! the listeners, starts the SIEM exports and retention, and runs until a stop signal, then the
//! graceful stop (`shutdown`).

mod catch_up;
mod rdp_listener;
mod screen_reader;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use portcullis_audit::{AuditLog, Kind, Record};
use portcullis_policy::{Policy, PolicyDoc};
use portcullis_secrets::SecretKey;
use portcullis_store::{Role, Store};
use portcullis_web::{ops, policy_store};
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::data::{check_key_against_store, load_key, open_store_with_cluster};
use crate::shutdown::{self, stopped, StopSignals};
use crate::{cli_audit, recording, rotate};

/// Environment variable holding the first admin's password (else a random one is printed once).
const ADMIN_PASSWORD_ENV: &str = "PORTCULLIS_ADMIN_PASSWORD";

/// Opens the audit trail (created on first start). A broken chain stops the start, naming the
/// record: the evidence must be looked at before anything is added to it.
fn open_audit(
    config: &Config,
    secret: &SecretKey,
    node: Option<&str>,
) -> Result<(
    portcullis_web::audit::Audit,
    Arc<portcullis_audit::AuditLog>,
)> {
    let dir = &config.audit.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("audit.dir: cannot create {}", dir.display()))?;
    let mut options = portcullis_audit::OpenOptions::new()
        .max_segment_bytes(config.audit.segment_bytes)
        .sealing_key(cli_audit::sealing_key(config, secret)?);
    if let Some(node) = node {
        options = options.node(node);
    }
    let log = options.open(dir).with_context(|| {
        format!(
            "cannot open the audit trail in {} (check it with `portcullis audit verify`)",
            dir.display()
        )
    })?;
    let recovery = log.recovery();
    if recovery.torn_tail.is_some() {
        warn!(dir = %dir.display(), "the audit trail ended in an unfinished record (never acknowledged): cut");
    }
    info!(dir = %dir.display(), next_seq = recovery.next_seq, "audit trail open");
    let log = Arc::new(log);
    Ok((portcullis_web::audit::Audit::new(Arc::clone(&log)), log))
}

/// The policy to start with: the `[policy] file`, else the one saved in the store, else the
/// shipped default. A saved policy that no longer compiles stops the start (never silently
/// replaced by the default).
fn load_policy(config: &Config, store: &dyn Store) -> Result<Policy> {
    if let Some(file) = &config.policy_file {
        let (doc, policy) = config::load_policy_file(file)?;
        info!(file = %file.display(), rules = doc.rules.len(), "policy loaded from file");
        return Ok(policy);
    }
    let stored = policy_store::load_policy_doc(store).context(
        "cannot read the policy saved in the store (repair it with `portcullis policy import FILE`)",
    )?;
    let Some(doc) = stored else {
        info!("no policy saved yet: the shipped default policy is in force");
        return Policy::compile(&PolicyDoc::default_policy())
            .map_err(|e| anyhow::anyhow!("the default policy does not compile: {e}"));
    };
    let policy = Policy::compile(&doc).map_err(|e| {
        anyhow::anyhow!(
            "the policy saved in the store (through the web UI or the API) does not compile: {e}; \
             see it with `portcullis policy show` and replace it with `portcullis policy import FILE`, \
             or set [policy] file in the configuration"
        )
    })?;
    info!(rules = doc.rules.len(), "policy loaded from the store");
    Ok(policy)
}

/// Creates the first administrator when there is no user at all, on record in the audit trail
/// first (actor `system`).
fn bootstrap_admin(store: &dyn Store, audit: &AuditLog) -> Result<()> {
    if !store.list_users()?.is_empty() {
        return Ok(());
    }
    let (password, generated) = match std::env::var(ADMIN_PASSWORD_ENV) {
        Ok(p) => (p, false),
        Err(_) => (portcullis_secrets::random_token(18), true),
    };
    let check = || format!("cannot create the first admin (check {ADMIN_PASSWORD_ENV})");
    let admin = ops::prepare_user("admin", &password, Role::Admin).with_context(check)?;
    audit
        .append(
            Record::new(Kind::ADMIN_CHANGE, "system")
                .target("admin")
                .detail("action", "user_create")
                .detail("before", serde_json::Value::Null)
                .detail(
                    "after",
                    serde_json::json!({"name": admin.name, "id": admin.id, "role": "admin"}),
                )
                .detail(
                    "reason",
                    "no user exists: the first administrator is created at start",
                ),
        )
        .context(
            "cannot record the first admin's creation in the audit trail, so it was not created",
        )?;
    match store.create_user(&admin) {
        Ok(()) => {}
        // Another gateway on the same (PostgreSQL) store created it first, and showed its
        // password; this one's was never valid.
        Err(e @ portcullis_store::StoreError::AlreadyExists { .. }) => {
            failed_after_record(audit, "user_create", "admin", &e);
            info!("another gateway on this store created the first administrator");
            return Ok(());
        }
        Err(e) => {
            failed_after_record(audit, "user_create", "admin", &e);
            return Err(e).with_context(check);
        }
    }
    if generated {
        println!("first administrator created: user \"admin\", one-time password: {password}");
        println!("(it is shown only now; set {ADMIN_PASSWORD_ENV} to choose it instead)");
    } else {
        println!("first administrator created: user \"admin\" with the password from {ADMIN_PASSWORD_ENV}");
    }
    Ok(())
}

/// A change recorded at start that then failed: the trail says so (`outcome: "failed"`).
fn failed_after_record(audit: &AuditLog, action: &str, target: &str, e: &dyn std::fmt::Display) {
    let record = Record::new(Kind::ADMIN_CHANGE, "system")
        .target(target)
        .detail("action", action)
        .detail("outcome", "failed")
        .detail("error", e.to_string());
    if let Err(not_recorded) = audit.append(record) {
        error!(error = %not_recorded, %action, "the failure of a recorded change is not in the audit trail");
    }
}

/// [`ops::migrate_user_ids`] on record: what it will change first (users given ids, tokens
/// bound to their account's id), each token it deletes, and a failure after those.
fn migrate_user_ids(store: &dyn Store, audit: &AuditLog) -> Result<usize> {
    let users: Vec<String> = store
        .list_users()?
        .into_iter()
        .filter(|u| u.id.is_empty())
        .map(|u| u.name)
        .collect();
    let tokens: Vec<String> = store
        .list_tokens()?
        .into_iter()
        .filter(|t| t.user_id.is_empty())
        .map(|t| t.id)
        .collect();
    if users.is_empty() && tokens.is_empty() {
        return Ok(0);
    }
    audit
        .append(
            Record::new(Kind::ADMIN_CHANGE, "system")
                .detail("action", "user_id_migration")
                .detail("users", users)
                .detail("tokens", tokens)
                .detail(
                    "reason",
                    "users and API tokens stored before users had immutable ids get theirs",
                ),
        )
        .context("cannot record the user id migration in the audit trail, so it was not done")?;
    let migrated = ops::migrate_user_ids(store, &mut |token, why| {
        audit
            .append(
                Record::new(Kind::ADMIN_CHANGE, "system")
                    .target(token.user.clone())
                    .detail("action", "token_delete")
                    .detail(
                        "before",
                        serde_json::json!({"id": token.id, "name": token.name, "user": token.user}),
                    )
                    .detail("after", serde_json::Value::Null)
                    .detail("reason", why),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    if let Err(e) = &migrated {
        failed_after_record(audit, "user_id_migration", "users", e);
    }
    migrated.context("cannot give users their ids")
}

pub(crate) fn serve(config: Config) -> Result<()> {
    rotate::refuse_unfinished(&config)?;
    let (store, cluster) = open_store_with_cluster(&config)?;
    let key = load_key(&config)?;
    check_key_against_store(&*store, &key)?;
    if cluster.is_some() {
        // One signing key for the cluster: any gateway verifies any recording and seal.
        recording::share_signing_key(&config, &key, &*store)?;
    }
    // The trail first: the first admin and the id migration change accounts and tokens, and
    // start-up recovery looks up which recordings were closed; each records what it does
    // before it does it.
    // In a cluster, every audit record names the gateway that wrote it.
    let node = cluster
        .as_ref()
        .map(|_| crate::data::node_name(&config))
        .transpose()?;
    let (audit, audit_log) = open_audit(&config, &key, node.as_deref())?;
    bootstrap_admin(&*store, &audit_log)?;
    // Users and tokens stored before users had immutable ids get theirs before anything is
    // served; a token deleted by it is on record first.
    let migrated = migrate_user_ids(&*store, &audit_log)?;
    if migrated > 0 {
        info!(
            records = migrated,
            "users and API tokens given immutable user ids"
        );
    }
    let policy = load_policy(&config, &*store)?;
    let tls = match &config.tls {
        Some((cert, key)) => portcullis_web::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        None => {
            let files = portcullis_web::default_tls_files(&config.data_dir);
            if portcullis_web::load_or_create_self_signed(&files, &[])? {
                info!(cert = %files.cert.display(), "generated a self-signed TLS certificate");
            }
            files
        }
    };
    let recording = recording::set_up(&config, &key, &audit_log)?;
    let mut broker = portcullis_broker::Broker::new(portcullis_core::desktop::Timeouts {
        connect: config.connect_timeout,
        handshake: config.handshake_timeout,
    });
    if let Some(sink) = audit.session_sink() {
        broker = broker.with_audit(sink);
    }
    if let Some(r) = &recording {
        broker = broker.with_recorder(Arc::<portcullis_recorder::GatewayRecorder>::clone(
            &r.recorder,
        ));
    }
    let mut state = portcullis_web::AppState::new(store, Arc::new(key), broker)
        .with_audit(audit)
        .with_mfa_required_roles(config.auth.mfa_required_roles.clone())
        .with_retention_default(config.recording.retention);
    if let Some(r) = &recording {
        state = state.with_recordings(r.web.clone());
        // Search across the recordings: an index under the data directory, derived from them.
        match portcullis_web::Search::open(&portcullis_web::search_index_dir(&config.data_dir)) {
            Ok(search) => state = state.with_search(search),
            Err(e) => {
                warn!(error = %e, "search across recordings is off: its index cannot be opened")
            }
        }
    }
    state = state.with_policy(
        portcullis_web::policy::PolicyState::new(policy),
        config.policy_file.clone(),
    );
    if let (Some(cluster), Some(node)) = (cluster, node) {
        info!(%node, "this gateway's name in the cluster");
        // Where the others reach this gateway to watch its sessions, and the certificate they
        // must find there.
        match &config.advertise {
            Some(url) => {
                let (_, leaf) = portcullis_web::server_config(&tls)?;
                state.advertise = Some(portcullis_web::relay::NodeAddress::new(url, &leaf));
            }
            None => warn!(
                "http.listen is a wildcard address and http.advertise is not set: the security \
                 team cannot watch this gateway's sessions from other gateways (set \
                 [http] advertise or PORTCULLIS_ADVERTISE_URL)"
            ),
        }
        state.cluster = Some(portcullis_web::cluster::ClusterLink::new(cluster, node));
    }
    state.rdp_remotefx = config.rdp.remotefx;
    state.rdp_tickets = state.rdp_tickets.clone().with_ttl(config.rdp.ticket_ttl);
    if config.rdp.enabled {
        state.rdp_port = Some(config.rdp.listen.port());
        state.rdp_public_address = config.rdp.public_address.clone();
    }
    // Bound before anything starts, so a taken port fails the start with the field's name.
    let rdp = if config.rdp.enabled {
        let (tls, leaf) = portcullis_web::server_config(&tls)?;
        let public_key = portcullis_rdp::server::public_key_of(&leaf)
            .map_err(|e| anyhow::anyhow!("the TLS certificate's public key: {e}"))?;
        let listener = std::net::TcpListener::bind(config.rdp.listen)
            .with_context(|| format!("rdp.listen: cannot listen on {}", config.rdp.listen))?;
        listener.set_nonblocking(true)?;
        Some((tls, public_key, listener))
    } else {
        None
    };
    // The operations listener, bound before anything starts too.
    let ops = match config.ops.listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("ops.listen: cannot listen on {addr}"))?;
            listener.set_nonblocking(true)?;
            let token = match &config.ops.metrics_token_file {
                Some(file) => Some(read_token(file)?),
                None => None,
            };
            Some((listener, token))
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("portcullis")
        .build()
        .context("cannot start the async runtime")?;
    // The SIEM exporters: a bad section (CA file, state directory) stops the start.
    let siem = {
        let _in_runtime = runtime.enter();
        let synced = state.audit.watermark();
        config
            .siem
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let export = match s.source {
                    portcullis_siem::SiemSource::Local => {
                        portcullis_siem::Forwarder::new(s, &config.audit.dir, config.data_dir.join("siem"))
                            .map(|f| match &synced {
                                // Only what the trail has fsynced is exported.
                                Some(w) => Export::Local(f.synced_by(w.clone())),
                                None => Export::Local(f),
                            })
                            .map_err(anyhow::Error::from)
                    }
                    portcullis_siem::SiemSource::Cluster => match &state.cluster {
                        Some(link) => portcullis_siem::Forwarder::cluster(s, link.siem_trail(), link.node())
                            .map(Export::Cluster)
                            .map_err(anyhow::Error::from),
                        None => Err(anyhow::anyhow!(
                            "`source = \"cluster\"` exports the merged trail of gateways sharing a PostgreSQL store: set [store] url"
                        )),
                    },
                };
                export.with_context(|| format!("siem[{i}]"))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let exports: Vec<portcullis_siem::Handle> = siem.iter().map(Export::handle).collect();
    state.audit = state.audit.clone().with_exports(exports.clone());
    let broker = state.broker.clone();
    let reader_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let (Some(search), Some(recordings)) = (&state.search, &state.recordings) {
        if let Err(e) = search.start_indexer(recordings.clone(), Arc::clone(&reader_stop)) {
            warn!(error = %e, "recordings are not indexed for search");
        }
    }
    screen_reader::start(
        broker.clone(),
        config.ocr,
        runtime.handle().clone(),
        Arc::clone(&reader_stop),
        state.search.clone().zip(state.recordings.clone()),
    );
    let grace = config.shutdown_grace;
    // The stop signal, passed down: listeners stop accepting once it turns true.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The SIEM forwarders stop later, once they had their chance to deliver the last records.
    let (siem_stop_tx, siem_stop_rx) = tokio::sync::watch::channel(false);
    let clean = runtime.block_on(async move {
        // First thing: from now on SIGTERM and SIGINT start the graceful shutdown.
        let mut signals = StopSignals::new().context("cannot install the signal handlers")?;
        // And SIGUSR1 drains (its default would end the process at once).
        let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            .context("cannot install the SIGUSR1 (drain) handler")?;
        let mut forwarders = Vec::new();
        for forwarder in siem {
            // They run until the gateway stops; what was not delivered yet goes next time.
            forwarders.push(forwarder.spawn(stopped(siem_stop_rx.clone())));
        }
        // Retention by the policy's [[retention]] entries, else [recording] retention_days.
        if recording.is_some() {
            portcullis_web::retention::spawn(state.clone());
        }
        if let Some((tls, public_key, listener)) = rdp {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| portcullis_web::WebError::Startup(format!("rdp.listen: {e}")))?;
            info!(listen = %config.rdp.listen, "RDP listener started");
            let server = Arc::new(portcullis_rdp::server::ServerConfig {
                tls,
                public_key,
                limits: portcullis_rdp::server::Limits {
                    handshake: config.rdp.handshake_timeout,
                    ..portcullis_rdp::server::Limits::default()
                },
            });
            let gate = portcullis_web::rdp_gate::RdpGate::new(state.clone());
            let pre_auth = gate.pre_auth();
            let gate: Arc<dyn portcullis_rdp::server::Gate> = Arc::new(gate);
            tokio::spawn(rdp_listener::rdp_accept_loop(
                listener,
                server,
                gate,
                pre_auth,
                stop_rx.clone(),
            ));
        }
        if let Some((listener, token)) = ops {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| portcullis_web::WebError::Startup(format!("ops.listen: {e}")))?;
            info!(listen = %listener.local_addr()?, "operations listener started (/healthz, /readyz, /metrics)");
            let router = portcullis_web::health::ops_router(portcullis_web::health::OpsState::new(
                state.clone(),
                token,
            ));
            tokio::spawn(portcullis_web::health::serve_ops(
                listener,
                router,
                stopped(stop_rx.clone()),
            ));
        }
        portcullis_web::cluster::start(&state);
        let cluster_state = state.clone();
        let drained = drain(usr1, state.clone(), Arc::clone(&audit_log), config.ops.drain_deadline);
        let mut https = tokio::spawn({
            let stop = stopped(stop_rx.clone());
            async move { portcullis_web::serve_https(config.listen, &tls, state, stop).await }
        });
        println!(
            "Portcullis is listening on https://{}/",
            display_addr(&config.listen)
        );
        info!(listen = %config.listen, data_dir = %config.data_dir.display(), "gateway started");
        let signal = tokio::select! {
            signal = signals.next() => signal,
            signal = drained => signal,
            served = &mut https => {
                // The server stopped by itself: it could not serve (the error says why).
                served.context("the HTTPS server failed")??;
                bail!("the HTTPS server stopped unexpectedly");
            }
        };
        info!(signal, grace_secs = grace.as_secs(), "shutting down: no new connections; ending every session");
        let start = tokio::time::Instant::now();
        let _ = stop_tx.send(true);
        // A second signal does not wait.
        tokio::spawn(async move {
            let again = signals.next().await;
            error!(signal = again, "second signal: exiting now; recordings still open are closed as incomplete at the next start");
            std::process::exit(1);
        });
        reader_stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let clean = shutdown::run(&broker, &audit_log, &exports, signal, start, grace).await;
        if let Some(spooled) = recording.as_ref().and_then(|r| r.uploads.clone()) {
            // The last recordings' uploads get what is left of the grace; whatever does not
            // make it waits in the spool for the next start.
            let until = (start + grace).max(tokio::time::Instant::now() + shutdown::LAST_STEPS);
            let until = until.into_std();
            let done = tokio::task::spawn_blocking(move || spooled.finish(until)).await;
            if !matches!(done, Ok(true)) {
                warn!("recordings not yet uploaded stay in the spool; the next start uploads them");
            }
        }
        // Its sessions are over: the other gateways stop listing them at once.
        portcullis_web::cluster::leave(&cluster_state);
        // The trail's last records (the sessions' ends, gateway_stop) reach the cluster's copy.
        let mirrored = cluster_state.clone();
        let until = (start + grace).max(tokio::time::Instant::now() + shutdown::LAST_STEPS);
        let until = until.into_std();
        let _ = tokio::task::spawn_blocking(move || {
            portcullis_web::cluster::flush_audit_mirror(&mirrored, until);
        })
        .await;
        let _ = siem_stop_tx.send(true);
        let last = tokio::time::Instant::now() + shutdown::LAST_STEPS;
        for forwarder in forwarders {
            let _ = tokio::time::timeout_at(last, forwarder).await;
        }
        let _ = tokio::time::timeout_at(last, https).await;
        anyhow::Ok(clean)
    })?;
    runtime.shutdown_timeout(shutdown::LAST_STEPS);
    if !clean {
        std::process::exit(1);
    }
    info!("gateway stopped");
    Ok(())
}

/// `SIGUSR1`: drain. Recorded first; then no new session (`/readyz` answers not ready, so a load
/// balancer sends users elsewhere) while running ones go on. Resolves once the last one ended,
/// or at `deadline` (the shutdown then ends what is left, as for SIGTERM). Never resolves when
/// the signal cannot be watched.
async fn drain(
    mut usr1: tokio::signal::unix::Signal,
    state: portcullis_web::AppState,
    audit: Arc<AuditLog>,
    deadline: Duration,
) -> &'static str {
    if usr1.recv().await.is_none() {
        return std::future::pending().await;
    }
    let open = state.broker.list().len();
    let record = Kind::new("gateway_drain").map(|kind| {
        Record::new(kind, "system")
            .detail("signal", "SIGUSR1")
            .detail("sessions", open as u64)
            .detail("deadline_secs", deadline.as_secs())
    });
    let recorded = match record {
        Ok(record) => match audit.try_submit(record) {
            Ok(ticket) => ticket.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = recorded {
        // Refusing new sessions is safe either way; the stop that follows is recorded too.
        error!(error = %e, "the drain could not be recorded in the audit trail");
    }
    portcullis_web::health::start_draining(&state);
    info!(
        sessions = open,
        deadline_secs = deadline.as_secs(),
        "draining: no new sessions; stopping once the last one ends"
    );
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if state.broker.list().is_empty() {
            info!("drained: no session left");
            return "SIGUSR1 (drained)";
        }
        if tokio::time::Instant::now() >= end {
            warn!(
                sessions = state.broker.list().len(),
                "drain deadline reached: ending the sessions left"
            );
            return "SIGUSR1 (drain deadline)";
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A token file's first line (e.g. a mounted secret); never empty.
fn read_token(file: &std::path::Path) -> Result<zeroize::Zeroizing<String>> {
    let line = crate::data::first_line(file, "ops.metrics_token_file")?;
    let token = line.trim();
    if token.len() < 16 {
        bail!(
            "ops.metrics_token_file {}: the token must be at least 16 characters",
            file.display()
        );
    }
    Ok(zeroize::Zeroizing::new(token.to_owned()))
}

fn display_addr(addr: &std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::RuleDoc;
    use portcullis_store::MemoryStore;

    fn config(extra: &str) -> Config {
        Config::parse(extra, None).unwrap()
    }

    #[test]
    fn policy_at_start_default_stored_or_refused() {
        let store = MemoryStore::new();
        let p = load_policy(&config(""), &store).unwrap();
        assert_eq!(p.doc(), &PolicyDoc::default_policy());

        let mut doc = PolicyDoc::default();
        doc.rules
            .push(RuleDoc::new("ops", &["role:admin"], &["label:prod"]));
        policy_store::save_policy_doc(&store, &doc).unwrap();
        assert_eq!(load_policy(&config(""), &store).unwrap().doc(), &doc);

        // A stored policy that no longer compiles stops the start; it is not replaced.
        doc.rules[0].subjects = vec!["usr:bob".into()];
        policy_store::save_policy_doc(&store, &doc).unwrap();
        let e = format!("{:#}", load_policy(&config(""), &store).unwrap_err());
        assert!(
            e.contains("does not compile") && e.contains("rule \"ops\": subjects[0]"),
            "{e}"
        );

        store
            .put_meta(policy_store::POLICY_META_KEY, b"not json")
            .unwrap();
        let e = format!("{:#}", load_policy(&config(""), &store).unwrap_err());
        assert!(e.contains("stored policy"), "{e}");
    }

    #[test]
    fn a_policy_file_wins_over_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.toml");
        std::fs::write(
            &file,
            "[[rules]]\nname = \"from-file\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\n",
        )
        .unwrap();
        let store = MemoryStore::new();
        store
            .put_meta(policy_store::POLICY_META_KEY, b"not json")
            .unwrap();
        let c = config(&format!(
            "[policy]\nfile = {:?}\n",
            file.display().to_string()
        ));
        let p = load_policy(&c, &store).unwrap();
        assert_eq!(p.doc().rules[0].name, "from-file");
    }
}

#[cfg(test)]
mod start_records {
    //! What the start changes in accounts is on record first.
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use portcullis_audit::{CrashFiles, CrashLayer, Filter, OpenOptions};
    use portcullis_store::{MemoryStore, TokenRecord};

    use super::*;

    fn trail(dir: &std::path::Path) -> (AuditLog, Arc<CrashFiles>) {
        let files = CrashFiles::new();
        let log = OpenOptions::new()
            .file_layer(Arc::new(CrashLayer(Arc::clone(&files))))
            .open(dir)
            .unwrap();
        (log, files)
    }

    fn records(log: &AuditLog) -> Vec<portcullis_audit::Entry> {
        log.query(&Filter::new(100)).unwrap()
    }

    #[test]
    fn the_first_admin_is_on_record_before_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let (log, files) = trail(dir.path());
        let store = MemoryStore::new();
        // A trail that cannot be written: no admin.
        files.fail_with(Some(std::io::ErrorKind::Other));
        let e = bootstrap_admin(&store, &log).unwrap_err();
        assert!(format!("{e:#}").contains("so it was not created"), "{e:#}");
        assert!(store.list_users().unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = trail(dir.path());
        bootstrap_admin(&store, &log).unwrap();
        let admin = store.get_user("admin").unwrap().unwrap();
        let found = records(&log);
        assert_eq!(found.len(), 1);
        let r = &found[0].record;
        assert_eq!(r.actor, "system");
        assert_eq!(r.target.as_deref(), Some("admin"));
        assert_eq!(r.detail["action"], "user_create");
        assert_eq!(r.detail["after"]["id"], admin.id.as_str());
        // Only when there is no user at all.
        bootstrap_admin(&store, &log).unwrap();
        assert_eq!(records(&log).len(), 1);
    }

    #[test]
    fn a_token_the_id_migration_deletes_is_on_record_first() {
        let store = MemoryStore::new();
        let token = TokenRecord {
            id: "t1".into(),
            user: "gone".into(),
            user_id: String::new(),
            name: "ci".into(),
            scopes: vec![],
            secret_hash: vec![],
            created_at: 0,
            expires_at: i64::MAX,
            created_by: "admin".into(),
        };
        store.put_token(&token).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (log, files) = trail(dir.path());
        files.fail_with(Some(std::io::ErrorKind::Other));
        assert!(migrate_user_ids(&store, &log).is_err());
        assert!(
            store.get_token("t1").unwrap().is_some(),
            "kept: not on record"
        );
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = trail(dir.path());
        assert_eq!(migrate_user_ids(&store, &log).unwrap(), 1);
        assert_eq!(store.get_token("t1").unwrap(), None);
        let found = records(&log);
        assert_eq!(found.len(), 2);
        // What the migration will change, then each token deletion.
        assert_eq!(found[0].record.detail["action"], "user_id_migration");
        assert_eq!(found[0].record.detail["tokens"], serde_json::json!(["t1"]));
        let r = &found[1].record;
        assert_eq!(r.detail["action"], "token_delete");
        assert_eq!(r.detail["before"]["id"], "t1");
        assert!(
            r.detail["reason"]
                .as_str()
                .unwrap()
                .contains("no longer exists"),
            "{:?}",
            r.detail
        );
    }
}

/// One `[[siem]]` section's forwarder: of this gateway's trail or of the cluster's.
enum Export {
    Local(portcullis_siem::Forwarder<portcullis_siem::Local>),
    Cluster(portcullis_siem::Forwarder<portcullis_siem::Cluster>),
}

impl Export {
    fn handle(&self) -> portcullis_siem::Handle {
        match self {
            Export::Local(f) => f.handle(),
            Export::Cluster(f) => f.handle(),
        }
    }

    fn spawn(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        match self {
            Export::Local(f) => tokio::spawn(f.run(stop)),
            Export::Cluster(f) => tokio::spawn(f.run(stop)),
        }
    }
}
