//! `portcullis user|target|grant`: the directory as the command line edits it, each change
//! recorded in the audit trail (actor `cli:<OS user>`) before it is made.

use std::io::BufRead as _;

use anyhow::{bail, Context, Result};
use portcullis_store::Store;
use portcullis_web::ops;
use serde_json::{json, Value};

use crate::cli::{GrantCmd, TargetCmd, UserCmd};
use crate::cli_audit::CliAudit;
use crate::config::Config;
use crate::data::{check_key_against_store, load_key, open_store};

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

pub(super) fn user_cmd(config: &Config, cmd: UserCmd) -> Result<()> {
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

pub(super) fn target_cmd(config: &Config, cmd: TargetCmd) -> Result<()> {
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
            // Never seal a credential under another key than the store's.
            check_key_against_store(&*store, &key)?;
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
            store_identity(config, &*store, t, "target_identity_set", identity)?;
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
            store_identity(config, &*store, t, "target_identity_accept", identity)?;
            println!("target {name}: accepted");
        }
    }
    Ok(())
}

/// Records (fsynced) and then stores a change of `t`'s identity made from the command line.
fn store_identity(
    config: &Config,
    store: &dyn Store,
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

pub(super) fn grant_cmd(config: &Config, cmd: GrantCmd) -> Result<()> {
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
