//! What each command does, once the configuration is loaded: `serve` (in [`crate::serve`]),
//! the audit trail, the policy, recordings, key rotation, and the directory of users, targets
//! and grants (`directory`). Every change is recorded in the audit trail before it is made.

mod directory;

use anyhow::{bail, Context, Result};
use portcullis_policy::PolicyDoc;
use portcullis_secrets::SecretKey;
use portcullis_web::policy_store;
use serde_json::json;

use crate::cli::{AuditCmd, Cli, Command, PolicyCmd, RecordingCmd, SecretsCmd, StoreCmd};
use crate::cli_audit::{self, CliAudit};
use crate::config::{self, Config, StoreConfig};
use crate::data::{
    check_key_against_store, load_key, open_postgres, open_sled, open_store, NEW_SECRET_KEY_ENV,
    SECRET_KEY_ENV,
};
use crate::{recording, rotate, serve};

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref(), cli.data_dir.as_deref())?;
    match cli.command {
        Command::Serve => serve::serve(config),
        Command::User(cmd) => directory::user_cmd(&config, cmd),
        Command::Target(cmd) => directory::target_cmd(&config, cmd),
        Command::Grant(cmd) => directory::grant_cmd(&config, cmd),
        Command::Recording(cmd) => recording_cmd(&config, cmd),
        Command::Policy(cmd) => policy_cmd(&config, cmd),
        Command::Audit(cmd) => audit_cmd(&config, cmd),
        Command::Secrets(SecretsCmd::RotateKey) => rotate_key_cmd(&config),
        Command::Store(StoreCmd::Migrate { from, to }) => store_migrate_cmd(&config, &from, &to),
    }
}

/// `portcullis store migrate --from sled --to URL|postgres`: the embedded store copied whole into
/// an empty PostgreSQL store, on record before it is done.
fn store_migrate_cmd(config: &Config, from: &str, to: &str) -> Result<()> {
    if from != "sled" {
        bail!(
            "--from {from:?}: only `sled` (the data directory's embedded store) can be copied from"
        );
    }
    let destination = match (to, &config.store) {
        ("postgres", StoreConfig::Postgres(pg)) => pg.clone(),
        ("postgres", StoreConfig::Embedded) => bail!(
            "--to postgres: the configuration names no PostgreSQL store ([store] url or {})",
            config::STORE_URL_ENV
        ),
        // A server named here gets nothing of the configured one's (its password file could
        // be another server's).
        (url, _) => config::PostgresStore::from_url(url)?,
    };
    let source = open_sled(config)?;
    // The key must be the one the installation's secrets are sealed under; its check value is
    // copied with the rest, so every gateway on the new store is checked against it.
    check_key_against_store(&source, &load_key(config)?)?;
    let target = open_postgres(&destination)?;
    let audit = CliAudit::open(config)?;
    let counts = audit.before(
        audit.change(
            "store_migrate",
            json!({"store": "sled", "dir": source.path()}),
            json!({"store": "postgres", "server": target.server()}),
        ),
        || Ok(portcullis_store::copy_all(&source, &target)?),
    )?;
    println!(
        "copied {} users, {} targets, {} grants, {} API tokens, {} metadata values, {} access \
         requests and {} recording reviews from {} to {}",
        counts.users,
        counts.targets,
        counts.grants,
        counts.tokens,
        counts.meta,
        counts.requests,
        counts.reviews,
        source.path().display(),
        target.server()
    );
    Ok(())
}

fn audit_cmd(config: &Config, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify {
            cluster: true,
            public_key,
            ..
        } => cli_audit::verify_cluster_cmd(config, public_key.as_deref()),
        AuditCmd::Verify {
            dir, public_key, ..
        } => cli_audit::verify_cmd(config, dir, public_key.as_deref()),
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
                    policy_store::load_policy_doc(&*store)
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
            let before = serde_json::to_value(policy_store::load_policy_doc(&*store)?)?;
            audit.before(
                audit.change("policy_change", before, serde_json::to_value(&doc)?),
                || Ok(policy_store::save_policy_doc(&*store, &doc)?),
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
        || rotate::rotate(config, &*store, &old, new),
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
