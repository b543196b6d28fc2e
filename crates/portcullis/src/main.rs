//! `portcullis`: the gateway binary.
#![allow(clippy::print_stdout)]

mod cli_audit;
mod config;
mod recording;
mod rotate;
mod shutdown;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use portcullis_policy::{Policy, PolicyDoc};
use portcullis_secrets::SecretKey;
use portcullis_store::{Role, SledStore, Store};
use portcullis_web::{ops, policy_store};
use tracing::{error, info, warn};

use crate::cli_audit::CliAudit;
use crate::config::Config;
use serde_json::{json, Value};

/// Environment variable holding the first admin's password (else a random one is printed once).
const ADMIN_PASSWORD_ENV: &str = "PORTCULLIS_ADMIN_PASSWORD";
/// Environment variable holding the secret key as 64 hex characters (else the key file is used).
const SECRET_KEY_ENV: &str = "PORTCULLIS_SECRET_KEY";
/// The key to rotate to, when the current one comes from [`SECRET_KEY_ENV`].
const NEW_SECRET_KEY_ENV: &str = "PORTCULLIS_NEW_SECRET_KEY";

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Privileged session management gateway for RDP and VNC"
)]
struct Cli {
    /// TOML configuration file (optional: every setting has a default).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration file).
    #[arg(long, global = true, env = "PORTCULLIS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Manage gateway users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage targets.
    #[command(subcommand)]
    Target(TargetCmd),
    /// Manage grants (which user may open which target).
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Session recordings: list, verify, the signing key.
    #[command(subcommand)]
    Recording(RecordingCmd),
    /// The policy saved in the data directory (what the web UI and the API edit).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The audit trail: check its hash chain offline, or print it.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The secret key that seals target credentials and the recording signing key.
    #[command(subcommand)]
    Secrets(SecretsCmd),
}

#[derive(Subcommand)]
enum SecretsCmd {
    /// Replace the secret key with a new random one and seal everything again under it (the
    /// gateway must be stopped). With the key in PORTCULLIS_SECRET_KEY, the new key is read from
    /// PORTCULLIS_NEW_SECRET_KEY instead; put it in PORTCULLIS_SECRET_KEY afterwards.
    RotateKey,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the whole hash chain and its seals; exit status 1 naming the first bad record.
    Verify {
        /// The audit directory (default: `[audit] dir` of the configuration).
        dir: Option<PathBuf>,
        /// The gateway's public key (a file, or 64 hex digits) to check the seals with
        /// (default: this gateway's signing key).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print the newest records as JSON lines (the gateway may be running).
    Show {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only this actor's records.
        #[arg(long)]
        actor: Option<String>,
        /// Only records of these kinds (comma-separated).
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Print the policy the gateway would start with, as TOML.
    Show,
    /// Check a TOML policy file: exit status 1 naming the rule and field at fault.
    Check { file: PathBuf },
    /// Save a TOML policy file as the policy (replaces the one edited in the web UI).
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum RecordingCmd {
    /// Check a recording folder offline (an unpacked export, or one under the data directory):
    /// every byte against the signed hash chain, and that it is closed. Exit status: 0 complete
    /// and intact; 1 altered, damaged or cut (names what); 2 incomplete (the gateway stopped
    /// while recording); 3 live (still being written); 4 the only key at hand came with the
    /// recording (nothing proven).
    Verify {
        /// The recording's folder (holds manifest.jsonl).
        dir: PathBuf,
        /// The gateway's public key you trust: 64 hex digits, or a file holding them (obtained
        /// from the gateway, not from the export). Default: this gateway's own key; without
        /// either, the key shipped with the recording is used and the result is not trusted.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// List the recordings in the data directory.
    List,
    /// Print the public half of the key that signs recordings.
    PublicKey,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is read from standard input (one line) or --password-env.
    Add {
        name: String,
        #[arg(long, default_value = "user")]
        role: Role,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// List users.
    List,
    /// Delete a user and their grants.
    Delete { name: String },
}

#[derive(Subcommand)]
enum TargetCmd {
    /// Add a target; its password is read from standard input (one line) or --password-env.
    Add {
        name: String,
        /// host:port of the VNC or RDP server.
        #[arg(long)]
        address: String,
        /// Protocol: vnc or rdp.
        #[arg(long, default_value = "vnc")]
        kind: portcullis_store::TargetKind,
        /// RDP: the account the gateway logs in with, `user` or `DOMAIN\\user`.
        #[arg(long, default_value = "")]
        account: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A label the policy can refer to (`label:NAME`); repeat for several.
        #[arg(long = "label", value_name = "NAME")]
        labels: Vec<String>,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// List targets (never their secrets).
    List,
    /// Delete a target and its grants.
    Delete { name: String },
    /// Show one target, with an RDP target's identity (pinned certificate, NLA).
    Show { name: String },
    /// Set an RDP target's identity ahead of time (audited): the certificate's SHA-256 it must
    /// present, and whether it must select NLA.
    Identity {
        name: String,
        /// SHA-256 of the target's TLS certificate (64 hex digits, ':' separators allowed).
        #[arg(long, conflicts_with = "forget_certificate")]
        tls_sha256: Option<String>,
        /// Forget the pinned certificate: the next connection pins what the target presents.
        #[arg(long)]
        forget_certificate: bool,
        /// Refuse the target unless it selects NLA (CredSSP): true or false.
        #[arg(long)]
        require_nla: Option<bool>,
        /// Verify the target against this CA bundle (absolute path of a PEM file) and the host
        /// name of its address, instead of the pinned certificate.
        #[arg(long, conflicts_with = "no_tls_ca_file")]
        tls_ca_file: Option<String>,
        /// Stop verifying against a CA bundle: back to the pinned certificate.
        #[arg(long)]
        no_tls_ca_file: bool,
    },
    /// After a refusal, accept an RDP target's new certificate and/or its answering without NLA
    /// (audited).
    Accept {
        name: String,
        /// The certificate to accept, as the refusal named it (`presented`).
        #[arg(long)]
        sha256: Option<String>,
        /// Accept the target without NLA although it did NLA before.
        #[arg(long)]
        allow_without_nla: bool,
    },
}

#[derive(Subcommand)]
enum GrantCmd {
    /// Allow a user to open a target.
    Add { user: String, target: String },
    /// List grants.
    List,
    /// Revoke a grant.
    Delete { user: String, target: String },
}

/// jemalloc instead of glibc's malloc: sessions allocate and free frame-sized buffers on several
/// threads, and glibc keeps such memory in per-thread arenas long after it is freed. Measured with
/// `cargo xtask bench rdp` (1080p native session, recording off): +42 MiB with glibc, +25 with
/// jemalloc, and back to 36 MiB instead of 123 once the sessions are over. Background threads
/// purge freed pages while the gateway is idle. (mimalloc kept them resident: 109 MiB at idle.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), cli.data_dir.as_deref())?;
    match cli.command {
        Command::Serve => serve(config),
        Command::User(cmd) => user_cmd(&config, cmd),
        Command::Target(cmd) => target_cmd(&config, cmd),
        Command::Grant(cmd) => grant_cmd(&config, cmd),
        Command::Recording(cmd) => recording_cmd(&config, cmd),
        Command::Policy(cmd) => policy_cmd(&config, cmd),
        Command::Audit(cmd) => audit_cmd(&config, cmd),
        Command::Secrets(SecretsCmd::RotateKey) => rotate_key_cmd(&config),
    }
}

/// Opens the audit trail (created on first start). A broken chain stops the start, naming the
/// record: the evidence must be looked at before anything is added to it.
fn open_audit(
    config: &Config,
    secret: &SecretKey,
) -> Result<(
    portcullis_web::audit::Audit,
    Arc<portcullis_audit::AuditLog>,
)> {
    let dir = &config.audit.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("audit.dir: cannot create {}", dir.display()))?;
    let log = portcullis_audit::OpenOptions::new()
        .max_segment_bytes(config.audit.segment_bytes)
        .sealing_key(cli_audit::sealing_key(config, secret)?)
        .open(dir)
        .with_context(|| {
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
    Ok((portcullis_web::audit::Audit::new(log.clone()), log))
}

fn audit_cmd(config: &Config, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { dir, public_key } => {
            cli_audit::verify_cmd(config, dir, public_key.as_deref())
        }
        AuditCmd::Show { limit, actor, kind } => {
            // Read-only, without the writer's lock: the segments' fsynced lines are read as they
            // are (the gateway may be appending).
            let mut kinds = Vec::new();
            for k in kind.iter().flat_map(|k| k.split(',')) {
                kinds.push(portcullis_audit::Kind::new(k.trim())?);
            }
            // Pages of at most MAX_QUERY_LIMIT, newest first, until `limit` are shown.
            let mut before_seq = None;
            let mut left = limit;
            while left > 0 {
                let filter = portcullis_audit::Filter {
                    actor: actor.clone(),
                    kinds: kinds.clone(),
                    before_seq,
                    order: portcullis_audit::Order::NewestFirst,
                    ..portcullis_audit::Filter::new(left.min(portcullis_audit::MAX_QUERY_LIMIT))
                };
                let page = portcullis_audit::read_only_query(&config.audit.dir, &filter)?;
                let Some(last) = page.last() else { break };
                before_seq = Some(last.seq);
                left = left.saturating_sub(page.len());
                for entry in &page {
                    println!("{}", serde_json::to_string(entry)?);
                }
            }
            Ok(())
        }
    }
}

fn policy_cmd(config: &Config, cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Check { file } => {
            let (doc, _) = config::load_policy_file(&file)?;
            println!("{}: {} rules, valid", file.display(), doc.rules.len());
        }
        PolicyCmd::Show => {
            let doc = match &config.policy_file {
                Some(file) => config::load_policy_file(file)?.0,
                None => {
                    let store = open_store(config)?;
                    policy_store::load_policy_doc(&store)
                        .context("cannot read the policy saved in the store")?
                        .unwrap_or_else(PolicyDoc::default_policy)
                }
            };
            print!(
                "{}",
                toml::to_string(&doc).context("cannot write the policy as TOML")?
            );
        }
        PolicyCmd::Import { file } => {
            if let Some(managed) = &config.policy_file {
                bail!(
                    "the policy is managed by the file {} ([policy] file in the configuration): edit that file instead",
                    managed.display()
                );
            }
            let (doc, _) = config::load_policy_file(&file)?;
            let store = open_store(config)?;
            let audit = CliAudit::open(config)?;
            let before = serde_json::to_value(policy_store::load_policy_doc(&store)?)?;
            audit.before(
                audit.change("policy_change", before, serde_json::to_value(&doc)?),
                || Ok(policy_store::save_policy_doc(&store, &doc)?),
            )?;
            println!(
                "policy from {} saved ({} rules)",
                file.display(),
                doc.rules.len()
            );
        }
    }
    Ok(())
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

fn recording_cmd(config: &Config, cmd: RecordingCmd) -> Result<()> {
    match cmd {
        RecordingCmd::Verify { dir, public_key } => {
            let code =
                recording::verify_cmd(config, || load_key(config), &dir, public_key.as_deref())?;
            if code != recording::verify_exit::INTACT {
                std::process::exit(code);
            }
            Ok(())
        }
        RecordingCmd::List => recording::list_cmd(config),
        RecordingCmd::PublicKey => recording::public_key_cmd(config, &load_key(config)?),
    }
}

fn open_store(config: &Config) -> Result<SledStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = SledStore::open(&config.data_dir.join("store"));
    match store {
        Err(portcullis_store::StoreError::Locked { .. }) => bail!(
            "the data directory {} is in use by a running gateway: stop it, or use the web UI or API",
            config.data_dir.display()
        ),
        other => Ok(other?),
    }
}

fn rotate_key_cmd(config: &Config) -> Result<()> {
    let store = open_store(config)?;
    let old = load_key(config)?;
    let new = match std::env::var(SECRET_KEY_ENV) {
        Ok(_) => Some(
            SecretKey::from_hex(&std::env::var(NEW_SECRET_KEY_ENV).with_context(|| {
                format!(
                    "the key comes from {SECRET_KEY_ENV}: give the new one in {NEW_SECRET_KEY_ENV}"
                )
            })?)
            .with_context(|| format!("{NEW_SECRET_KEY_ENV} is not a valid key"))?,
        ),
        Err(_) => None,
    };
    let from_env = new.is_some();
    let audit = CliAudit::open(config)?;
    // Which key, never the key: its source and the public fingerprint of nothing secret.
    let source = json!({ "key_source": if from_env { "environment" } else { "key file" } });
    let done = audit.before(
        audit.change("secret_key_rotate", source.clone(), source),
        || rotate::rotate(config, &store, &old, new),
    )?;
    println!(
        "secret key rotated: {} target secrets and {} signing key sealed under the new key",
        done.targets,
        if done.signing_key {
            "the recording"
        } else {
            "no"
        }
    );
    if from_env {
        println!("now set {SECRET_KEY_ENV} to the value of {NEW_SECRET_KEY_ENV} before starting the gateway");
    } else {
        println!("the new key is in {}", config.key_file.display());
    }
    Ok(())
}

fn load_key(config: &Config) -> Result<SecretKey> {
    if let Ok(hex) = std::env::var(SECRET_KEY_ENV) {
        return SecretKey::from_hex(&hex)
            .with_context(|| format!("{SECRET_KEY_ENV} is not a valid key"));
    }
    if let Some(dir) = config.key_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(SecretKey::load_or_create(&config.key_file)?)
}

fn read_secret(env: Option<&str>, what: &str) -> Result<String> {
    if let Some(var) = env {
        return std::env::var(var)
            .with_context(|| format!("environment variable {var} is not set"));
    }
    eprintln!("{what} (one line on standard input):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn user_cmd(config: &Config, cmd: UserCmd) -> Result<()> {
    let store = open_store(config)?;
    match cmd {
        UserCmd::Add {
            name,
            role,
            password_env,
        } => {
            let password = read_secret(password_env.as_deref(), "password")?;
            let user = ops::prepare_user(&name, &password, role)?;
            let audit = CliAudit::open(config)?;
            audit.before(
                audit.change(
                    "user_create",
                    Value::Null,
                    json!({"name": user.name, "role": user.role}),
                ),
                || Ok(store.create_user(&user)?),
            )?;
            println!("user {name} added with role {role}");
        }
        UserCmd::List => {
            for u in store.list_users()? {
                println!("{}\t{}", u.name, u.role);
            }
        }
        UserCmd::Delete { name } => {
            let Some(u) = store.get_user(&name)? else {
                bail!("no user named {name:?}");
            };
            let audit = CliAudit::open(config)?;
            audit.before(
                audit.change(
                    "user_delete",
                    json!({"name": u.name, "role": u.role, "locked": u.locked}),
                    Value::Null,
                ),
                || {
                    if !store.delete_user(&name)? {
                        bail!("no user named {name:?}");
                    }
                    Ok(())
                },
            )?;
            println!("user {name} deleted");
        }
    }
    Ok(())
}

fn target_cmd(config: &Config, cmd: TargetCmd) -> Result<()> {
    let store = open_store(config)?;
    match cmd {
        TargetCmd::Add {
            name,
            address,
            kind,
            account,
            description,
            labels,
            password_env,
        } => {
            let key = load_key(config)?;
            let password = read_secret(password_env.as_deref(), "target password")?;
            let target = ops::prepare_target(
                &key,
                ops::NewTarget {
                    name: &name,
                    kind,
                    address: &address,
                    account: &account,
                    password: &password,
                    description: &description,
                    labels: &labels,
                },
            )?;
            let audit = CliAudit::open(config)?;
            audit.before(
                audit
                    .change("target_create", Value::Null, target_shown(&target))
                    .target(&name),
                || Ok(store.create_target(&target)?),
            )?;
            println!("target {name} added ({kind} at {address})");
        }
        TargetCmd::List => {
            for t in store.list_targets()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.name,
                    t.kind,
                    t.address,
                    t.labels.join(","),
                    t.description
                );
            }
        }
        TargetCmd::Delete { name } => {
            let Some(t) = store.get_target(&name)? else {
                bail!("no target named {name:?}");
            };
            let audit = CliAudit::open(config)?;
            audit.before(
                audit
                    .change("target_delete", target_shown(&t), Value::Null)
                    .target(&name),
                || {
                    if !store.delete_target(&name)? {
                        bail!("no target named {name:?}");
                    }
                    Ok(())
                },
            )?;
            println!("target {name} deleted");
        }
        TargetCmd::Show { name } => {
            let t = store
                .get_target(&name)?
                .with_context(|| format!("no target named {name:?}"))?;
            println!("name\t{}\nkind\t{}\naddress\t{}", t.name, t.kind, t.address);
            println!("account\t{}\nlabels\t{}", t.account, t.labels.join(","));
            if t.kind == portcullis_store::TargetKind::Rdp {
                let id = &t.identity;
                let none = || "(none: pinned at the next connection)".to_owned();
                println!("tls_sha256\t{}", id.tls_sha256.clone().unwrap_or_else(none));
                println!("nla_seen\t{}\nrequire_nla\t{}", id.nla_seen, id.require_nla);
                if let Some(refused) = &id.refused_sha256 {
                    println!("refused_sha256\t{refused}");
                }
                if id.refused_downgrade {
                    println!("refused_downgrade\ttrue");
                }
                if let Some(ca) = &id.tls_ca_file {
                    println!("tls_ca_file\t{ca}");
                }
            }
        }
        TargetCmd::Identity {
            name,
            tls_sha256,
            forget_certificate,
            require_nla,
            tls_ca_file,
            no_tls_ca_file,
        } => {
            let t = store
                .get_target(&name)?
                .with_context(|| format!("no target named {name:?}"))?;
            let pin = if forget_certificate {
                Some(None)
            } else {
                tls_sha256.as_deref().map(Some)
            };
            let ca = if no_tls_ca_file {
                Some(None)
            } else {
                tls_ca_file.as_deref().map(Some)
            };
            let identity = ops::set_identity(&t, pin, require_nla, ca)?;
            store_identity(config, &store, t, "target_identity_set", identity)?;
            println!("identity of target {name} set");
        }
        TargetCmd::Accept {
            name,
            sha256,
            allow_without_nla,
        } => {
            let t = store
                .get_target(&name)?
                .with_context(|| format!("no target named {name:?}"))?;
            let identity = ops::accept_identity(&t, sha256.as_deref(), allow_without_nla)?;
            store_identity(config, &store, t, "target_identity_accept", identity)?;
            println!("target {name}: accepted");
        }
    }
    Ok(())
}

/// Records (fsynced) and then stores a change of `t`'s identity made from the command line.
fn store_identity(
    config: &Config,
    store: &SledStore,
    mut t: portcullis_store::TargetRecord,
    action: &str,
    identity: portcullis_store::TargetIdentity,
) -> Result<()> {
    let audit = CliAudit::open(config)?;
    audit.before(
        audit
            .change(action, identity_json(&t.identity), identity_json(&identity))
            .target(&t.name),
        || {
            t.identity = identity;
            store.put_target(&t)?;
            Ok(store.flush()?)
        },
    )
}

/// A target's identity as the audit trail shows it (fingerprints, never a secret).
fn identity_json(identity: &portcullis_store::TargetIdentity) -> Value {
    serde_json::to_value(identity).unwrap_or_default()
}

fn grant_cmd(config: &Config, cmd: GrantCmd) -> Result<()> {
    let store = open_store(config)?;
    match cmd {
        GrantCmd::Add { user, target } => {
            let audit = CliAudit::open(config)?;
            audit.before(
                audit
                    .change(
                        "grant_create",
                        Value::Null,
                        json!({"user": user, "target": target}),
                    )
                    .target(&target),
                || Ok(store.create_grant(&user, &target, ops::now_unix())?),
            )?;
            println!("{user} may now open {target}");
        }
        GrantCmd::List => {
            for g in store.list_grants()? {
                println!("{}\t{}", g.user, g.target);
            }
        }
        GrantCmd::Delete { user, target } => {
            if !store.has_grant(&user, &target)? {
                bail!("no grant of {target:?} to {user:?}");
            }
            let audit = CliAudit::open(config)?;
            audit.before(
                audit
                    .change(
                        "grant_delete",
                        json!({"user": user, "target": target}),
                        Value::Null,
                    )
                    .target(&target),
                || {
                    if !store.delete_grant(&user, &target)? {
                        bail!("no grant of {target:?} to {user:?}");
                    }
                    Ok(())
                },
            )?;
            println!("grant of {target} to {user} revoked");
        }
    }
    Ok(())
}

/// A target as the audit trail shows it (never its secret).
fn target_shown(t: &portcullis_store::TargetRecord) -> Value {
    json!({
        "name": t.name, "kind": t.kind, "address": t.address, "account": t.account,
        "description": t.description, "labels": t.labels,
    })
}

/// Creates the first administrator when there is no user at all.
fn bootstrap_admin(store: &dyn Store) -> Result<()> {
    if !store.list_users()?.is_empty() {
        return Ok(());
    }
    let (password, generated) = match std::env::var(ADMIN_PASSWORD_ENV) {
        Ok(p) => (p, false),
        Err(_) => (portcullis_secrets::random_token(18), true),
    };
    ops::create_user(store, "admin", &password, Role::Admin)
        .with_context(|| format!("cannot create the first admin (check {ADMIN_PASSWORD_ENV})"))?;
    if generated {
        println!("first administrator created: user \"admin\", one-time password: {password}");
        println!("(it is shown only now; set {ADMIN_PASSWORD_ENV} to choose it instead)");
    } else {
        println!("first administrator created: user \"admin\" with the password from {ADMIN_PASSWORD_ENV}");
    }
    Ok(())
}

fn serve(config: Config) -> Result<()> {
    rotate::refuse_unfinished(&config)?;
    let store = open_store(&config)?;
    let key = load_key(&config)?;
    bootstrap_admin(&store)?;
    // Users and tokens stored before users had immutable ids get theirs before anything is
    // served.
    let migrated = ops::migrate_user_ids(&store).context("cannot give users their ids")?;
    if migrated > 0 {
        info!(
            records = migrated,
            "users and API tokens given immutable user ids"
        );
    }
    let policy = load_policy(&config, &store)?;
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
    // The trail first: start-up recovery looks up which recordings were closed, and records
    // what it does to those left open before it does it.
    let (audit, audit_log) = open_audit(&config, &key)?;
    let recording = recording::set_up(&config, &key, &audit_log)?;
    let mut broker = portcullis_broker::Broker::new(portcullis_core::desktop::Timeouts {
        connect: config.connect_timeout,
        handshake: config.handshake_timeout,
    });
    if let Some(sink) = audit.session_sink() {
        broker = broker.with_audit(sink);
    }
    if let Some(r) = &recording {
        broker = broker.with_recorder(r.recorder.clone());
    }
    let mut state = portcullis_web::AppState::new(Arc::new(store), Arc::new(key), broker)
        .with_audit(audit)
        .with_mfa_required_roles(config.auth.mfa_required_roles.clone());
    if let Some(r) = &recording {
        state = state.with_recordings(r.web.clone());
    }
    state = state.with_policy(
        portcullis_web::policy::PolicyState::new(policy),
        config.policy_file.clone(),
    );
    state.rdp_remotefx = config.rdp.remotefx;
    state.rdp_tickets = portcullis_web::rdp_tickets::RdpTickets::new(config.rdp.ticket_ttl);
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
                portcullis_siem::Forwarder::new(s, &config.audit.dir, config.data_dir.join("siem"))
                    .map(|f| match &synced {
                        // Only what the trail has fsynced is exported.
                        Some(w) => f.synced_by(w.clone()),
                        None => f,
                    })
                    .with_context(|| format!("siem[{i}]"))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let exports: Vec<portcullis_siem::Handle> = siem
        .iter()
        .map(portcullis_siem::Forwarder::handle)
        .collect();
    state.audit = state.audit.clone().with_exports(exports.clone());
    let broker = state.broker.clone();
    let grace = config.shutdown_grace;
    // The stop signal, passed down: listeners stop accepting once it turns true.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The SIEM forwarders stop later, once they had their chance to deliver the last records.
    let (siem_stop_tx, siem_stop_rx) = tokio::sync::watch::channel(false);
    let clean = runtime.block_on(async move {
        // First thing: from now on SIGTERM and SIGINT start the graceful shutdown.
        let mut signals = StopSignals::new().context("cannot install the signal handlers")?;
        let mut forwarders = Vec::new();
        for forwarder in siem {
            // They run until the gateway stops; what was not delivered yet goes next time.
            forwarders.push(tokio::spawn(forwarder.run(stopped(siem_stop_rx.clone()))));
        }
        if let (Some(r), Some(retention)) = (&recording, config.recording.retention) {
            recording::spawn_retention(r.storage.clone(), r.live.clone(), retention);
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
            tokio::spawn(rdp_accept_loop(
                listener,
                server,
                gate,
                pre_auth,
                stop_rx.clone(),
            ));
        }
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
        let clean = shutdown::run(&broker, &audit_log, &exports, signal, start, grace).await;
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

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM (systemd, `kill`) and SIGINT (Ctrl-C).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Most native RDP connections at once (each holds a TLS session and, once in, a session).
const MAX_RDP_CONNECTIONS: usize = 256;

async fn rdp_accept_loop(
    listener: tokio::net::TcpListener,
    server: Arc<portcullis_rdp::server::ServerConfig>,
    gate: Arc<dyn portcullis_rdp::server::Gate>,
    pre_auth: portcullis_web::rdp_preauth::PreAuth,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_RDP_CONNECTIONS));
    // A flood of refusals is logged once a second with a count, not line by line.
    let mut refused = 0u64;
    let mut last_warning: Option<std::time::Instant> = None;
    let stop = stopped(stop);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => {
                // Dropping the listener refuses new connections; live ones end with their
                // sessions (the broker's shutdown).
                info!("RDP listener closed");
                return;
            }
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "RDP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // One network may hold only a few connections that have not logged in yet, so idle
        // sockets from one address cannot take the places of everyone else.
        let admitted = pre_auth.enter(peer).and_then(|waiting| {
            let permit = slots.clone().try_acquire_owned().ok()?;
            Some((waiting, permit))
        });
        let Some((waiting, permit)) = admitted else {
            drop(tcp);
            refused += 1;
            if last_warning.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                tracing::warn!(
                    client = %peer,
                    refused,
                    waiting = pre_auth.waiting(peer.ip()),
                    "RDP connection refused: too many connections from this network waiting to log in, or in all"
                );
                last_warning = Some(std::time::Instant::now());
                refused = 0;
            }
            continue;
        };
        let (server, gate) = (server.clone(), gate.clone());
        tokio::spawn(async move {
            portcullis_rdp::server::serve(tcp, peer, server, gate).await;
            drop(waiting);
            drop(permit);
        });
    }
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
