//! The audit trail as the command line writes it: every change the CLI makes (users, targets,
//! grants, policy import, key rotation) is recorded, fsynced, before it is made, with the
//! operating-system user as the actor (`cli:root`).
//!
//! The CLI opens the trail itself, with its lock. A running gateway holds that lock (as it
//! holds the store's): the CLI then refuses with a clear message rather than change anything
//! unaudited: changes while the gateway runs go through the web UI or the API, which record
//! them with the administrator's name.

use std::path::Path;

use anyhow::{bail, Context, Result};
use portcullis_audit::{AuditError, AuditLog, Kind, OpenOptions, Record};
use serde_json::Value;

use crate::config::Config;

/// An open trail and who acts.
pub(crate) struct CliAudit {
    log: AuditLog,
    actor: String,
    uid: Option<u32>,
}

impl CliAudit {
    /// Opens the trail of `config` (created on first use).
    pub(crate) fn open(config: &Config) -> Result<Self> {
        let dir = &config.audit.dir;
        let log = OpenOptions::new()
            .max_segment_bytes(config.audit.segment_bytes)
            .open(dir);
        let log = match log {
            Err(AuditError::Locked(_)) => bail!(
                "the audit trail {} is held by a running gateway: stop it, or make the change in \
                 the web UI or the API (nothing was changed: the CLI does not change anything it \
                 cannot audit)",
                dir.display()
            ),
            other => other.with_context(|| {
                format!(
                    "cannot open the audit trail in {} (nothing was changed)",
                    dir.display()
                )
            })?,
        };
        let (actor, uid) = os_user();
        Ok(Self { log, actor, uid })
    }

    /// An administrative change by the CLI's user: what, before and after (never a secret).
    pub(crate) fn change(&self, action: &str, before: Value, after: Value) -> Record {
        let mut record = Record::new(Kind::ADMIN_CHANGE, &self.actor)
            .detail("action", action)
            .detail("before", before)
            .detail("after", after)
            .detail("via", "cli");
        if let Some(uid) = self.uid {
            record = record.detail("uid", uid);
        }
        record
    }

    /// Records `record` (fsynced) and only then runs `act`; if `act` fails, a follow-up record
    /// says so (`outcome: "failed"`, the error, `intent_seq`). Nothing is done when the record
    /// cannot be written.
    pub(crate) fn before<T>(&self, record: Record, act: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut follow_up = Record::new(record.kind.clone(), record.actor.clone());
        if let Some(target) = &record.target {
            follow_up = follow_up.target(target.clone());
        }
        for key in ["action", "via", "uid"] {
            if let Some(v) = record.detail.get(key) {
                follow_up = follow_up.detail(key, v.clone());
            }
        }
        let intent = self
            .log
            .append(record)
            .context("cannot write the audit trail, so nothing was changed")?;
        act().map_err(|e| {
            let failed = follow_up
                .detail("outcome", "failed")
                .detail("error", format!("{e:#}"))
                .detail("intent_seq", intent.seq);
            if let Err(not_recorded) = self.log.append(failed) {
                eprintln!("warning: the failure is not in the audit trail: {not_recorded}");
            }
            e
        })
    }
}

/// `cli:NAME` for the process's real user (its uid, named from /etc/passwd, else `USER`).
fn os_user() -> (String, Option<u32>) {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
    let named = uid.and_then(|uid| passwd_name(Path::new("/etc/passwd"), uid));
    let name = named
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| uid.map(|u| format!("uid{u}")))
        .unwrap_or_else(|| "unknown".into());
    (format!("cli:{name}"), uid)
}

/// The name of `uid` in a passwd file.
fn passwd_name(path: &Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_uid_from_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(
            &path,
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(passwd_name(&path, 1000).as_deref(), Some("alice"));
        assert_eq!(passwd_name(&path, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(&path, 7), None);
    }
}
