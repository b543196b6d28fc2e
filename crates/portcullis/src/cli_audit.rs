//! The audit trail as the command line writes and checks it: every change the CLI makes (users,
//! targets, grants, policy import, key rotation) is recorded, fsynced, before it is made, with the
//! operating-system user as the actor (`cli:root`), sealed with the gateway's signing key as the
//! gateway seals its own records; `portcullis audit verify` checks the chain and the seals.
//!
//! The CLI opens the trail itself, with its lock. A running gateway holds that lock (as it
//! holds the store's): the CLI then refuses with a clear message rather than change anything
//! unaudited: changes while the gateway runs go through the web UI or the API, which record
//! them with the administrator's name.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use portcullis_audit::{AuditError, AuditLog, Kind, OpenOptions, Problem, Record, VerifyError};
use portcullis_recording::manifest::fingerprint;
use portcullis_recording::{SigningKey, VerifyingKey};
use portcullis_secrets::SecretKey;
use serde_json::Value;

use crate::config::Config;

/// The key the audit trail is sealed with: the gateway's recording signing key (created on
/// first use, like the gateway does, but never for a trail that already carries a seal), whose
/// public half `portcullis recording public-key` prints and exports carry.
pub(crate) fn sealing_key(config: &Config, secret: &SecretKey) -> Result<SigningKey> {
    crate::recording::load_signing_key(config, secret)
        .context("the audit trail is sealed with the recording signing key")
}

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
        let mut options = OpenOptions::new().max_segment_bytes(config.audit.segment_bytes);
        // In a cluster every record names its gateway, the command line's too.
        if matches!(config.store, crate::config::StoreConfig::Postgres(_)) {
            options = options.node(&crate::data::node_name(config)?);
        }
        match crate::data::load_key(config).and_then(|secret| sealing_key(config, &secret)) {
            Ok(key) => options = options.sealing_key(key),
            // A sealed trail gets no unsealed record: it would only be vouched for as found.
            Err(e) if portcullis_audit::has_seal(dir).unwrap_or(true) => {
                return Err(e.context(format!(
                    "the audit trail in {} is sealed and cannot be sealed now (nothing was \
                     changed)",
                    dir.display()
                )))
            }
            // Say so, but still record the change: the gateway seals what it finds unsealed at
            // its next start (an `audit_sealed` record), and verify names those records.
            Err(e) => eprintln!(
                "warning: {e:#}: the CLI's audit records are not sealed (the gateway seals them \
                 as found at its next start)"
            ),
        }
        let log = options.open(dir);
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

/// Where the key the trail's seals are checked with comes from.
enum KeySource {
    /// `--public-key`: a file, or hex digits.
    Given(String),
    /// This gateway's signing key, from its data directory.
    Gateway(PathBuf),
}

/// `portcullis audit verify`: checks the chain and, with the gateway's key (or `--public-key`),
/// every seal and that the last record is sealed. Exit status 1 naming the first bad record; 2
/// when the chain is whole but records were sealed as found (not vouched for by a seal made when
/// they were written).
pub(crate) fn verify_cmd(
    config: &Config,
    dir: Option<PathBuf>,
    public_key: Option<&str>,
) -> Result<()> {
    let dir = dir.unwrap_or_else(|| config.audit.dir.clone());
    let mut why_no_key = None;
    let key: Option<(VerifyingKey, KeySource)> = match public_key {
        Some(k) => {
            let (key, path) = crate::recording::read_key_arg(k)?;
            let from = path.map_or_else(|| "--public-key".to_owned(), |p| p.display().to_string());
            Some((key, KeySource::Given(from)))
        }
        None => {
            let path = &config.recording.signing_key_file;
            // Never create a key here: load only one that exists.
            let gateway = if path.is_file() {
                crate::data::load_key(config).and_then(|s| sealing_key(config, &s))
            } else {
                Err(anyhow::anyhow!("{} does not exist", path.display()))
            };
            match gateway {
                Ok(k) => Some((k.verifying_key(), KeySource::Gateway(path.clone()))),
                Err(e) => {
                    why_no_key = Some(format!("{e:#}"));
                    None
                }
            }
        }
    };
    let report = match verify_settled(&dir, key.as_ref().map(|(k, _)| k)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("{}: NOT intact: {e}", dir.display());
            if let VerifyError::Broken(bad) = &e {
                match bad.problem {
                    portcullis_audit::Problem::Unsealed { .. } => eprintln!(
                        "nothing vouches for the records after the last seal: they were added or \
                         changed outside the gateway (while it was down, or while it runs: a \
                         write in progress is sealed within moments, and these stayed unsealed), \
                         or the gateway crashed in the middle of a write (never acknowledged: its \
                         next start sets them aside in a quarantine file, and verify then names \
                         them)"
                    ),
                    portcullis_audit::Problem::BadSeal => eprintln!(
                        "the seal is not this key's seal of the record: the record, or one before \
                         it, was changed and the hashes recomputed (or the key is not the one the \
                         trail was sealed with)"
                    ),
                    _ => {}
                }
            }
            std::process::exit(1);
        }
    };
    println!(
        "{}: {} records in {} files, {}; last seq {}, last hash {}",
        dir.display(),
        report.records,
        report.files,
        if report.sealed_as_found.is_empty() {
            "intact"
        } else {
            "chain whole but NOT every record vouched for"
        },
        report.last_seq,
        report.last_hash
    );
    match &key {
        Some((key, source)) => {
            let source = match source {
                KeySource::Given(from) => format!("given: {from}"),
                KeySource::Gateway(path) => {
                    format!("this gateway's signing key, {}", path.display())
                }
            };
            let last = report
                .last_sealed_seq
                .map_or_else(|| "none".to_owned(), |s| s.to_string());
            println!(
                "sealed: {} records carry a seal, the last at seq {last}; every seal checks out with key fingerprint {} ({source})",
                report.sealed,
                fingerprint(key)
            );
            if report.unsealed_tail > 0 {
                println!(
                    "write in progress: the last {} records are not sealed yet (a running gateway holds the trail; their seal comes with their write)",
                    report.unsealed_tail
                );
            }
            println!(
                "the end of the trail cannot be checked from the files (a shorter trail ending at an earlier seal verifies): compare the last seq and hash with the SIEM copy or an export"
            );
        }
        None => println!(
            "chain only, seals NOT checked ({}): anyone who can write the files can recompute a chain, so this proves nothing against them; give the gateway's public key with --public-key FILE|HEX (portcullis recording public-key prints it)",
            why_no_key.as_deref().unwrap_or("no key")
        ),
    }
    if let Some(torn) = report.torn_tail {
        println!(
            "an unfinished last line ({} bytes at {} line {}) was never acknowledged; the gateway cuts it when it opens the trail",
            torn.bytes,
            torn.file.display(),
            torn.line
        );
    }
    for aside in &report.set_aside {
        println!(
            "set aside at seq {}: records {} to {} came after the trail's last seal (a write a crash left unfinished, or records added or stripped of their seals while the gateway was down); kept in {}, out of the chain, vouched for by nothing{}",
            aside.by_seq,
            aside.from_seq,
            aside.to_seq,
            dir.join(&aside.file).display(),
            if aside.file_intact {
                ""
            } else {
                " — NOT VOUCHED FOR: that file is missing or does not hold what the record says (its length and SHA-256)"
            }
        );
    }
    let lost_copies = report.set_aside.iter().any(|a| !a.file_intact);
    if lost_copies && report.sealed_as_found.is_empty() {
        std::process::exit(NOT_VOUCHED_EXIT);
    }
    if !report.sealed_as_found.is_empty() {
        for line in not_vouched(&report.sealed_as_found) {
            println!("{line}");
        }
        std::process::exit(NOT_VOUCHED_EXIT);
    }
    Ok(())
}

/// `audit verify --cluster`: every gateway's chain as mirrored in the cluster's store, each
/// checked as `audit verify` checks a trail (hash chain, seals with the cluster's key), and
/// every record naming the gateway whose chain holds it. Exit 1 if any is not intact.
pub(crate) fn verify_cluster_cmd(config: &Config, public_key: Option<&str>) -> Result<()> {
    let (_store, cluster) = crate::data::open_store_with_cluster(config)?;
    let cluster = cluster.context(
        "--cluster: this gateway is not in a cluster ([store] url names no PostgreSQL store)",
    )?;
    let key = match public_key {
        Some(k) => crate::recording::read_key_arg(k)?.0,
        None => {
            let secret = crate::data::load_key(config)?;
            sealing_key(config, &secret)?.verifying_key()
        }
    };
    let nodes = cluster.audit_nodes()?;
    if nodes.is_empty() {
        bail!("the cluster's store holds no mirrored audit chain yet");
    }
    let mut bad = 0;
    for node in &nodes {
        let scratch = tempfile::tempdir().context("cannot make a scratch folder")?;
        let (count, misnamed) = copy_chain(cluster.as_ref(), node, scratch.path())?;
        let verdict = portcullis_audit::verify(scratch.path(), Some(&key));
        match (&verdict, misnamed) {
            (Ok(r), None) if r.sealed_as_found.is_empty() => println!(
                "{node}: intact: {count} records, last seq {}, last hash {}, sealed up to seq {} (key fingerprint {})",
                r.last_seq,
                r.last_hash,
                r.last_sealed_seq.unwrap_or(0),
                fingerprint(&key)
            ),
            (Ok(r), None) => {
                bad += 1;
                println!(
                    "{node}: chain whole but NOT every record vouched for: {}",
                    not_vouched(&r.sealed_as_found).join("; ")
                );
            }
            (Ok(_), Some(seq)) => {
                bad += 1;
                println!(
                    "{node}: NOT intact: record {seq} does not name this gateway, or the copy's columns (time, kind, actor, target, session) are not its line's"
                );
            }
            (Err(e), _) => {
                bad += 1;
                println!("{node}: NOT intact: {e}");
            }
        }
    }
    if bad > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Writes `node`'s mirrored chain into `dir` as one segment; returns the record count and the
/// first record naming another gateway, if one does.
fn copy_chain(
    cluster: &dyn portcullis_store::Cluster,
    node: &str,
    dir: &Path,
) -> Result<(u64, Option<u64>)> {
    use std::io::Write as _;
    let mut after = 0;
    let mut count = 0;
    let mut misnamed = None;
    let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
    loop {
        let page = cluster.audit_chain(node, after, 5000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            let file = match &mut out {
                Some(f) => f,
                None => {
                    let path = dir.join(format!("audit-{:020}.jsonl", r.seq));
                    out.insert(std::io::BufWriter::new(std::fs::File::create(&path)?))
                }
            };
            file.write_all(r.line.as_bytes())?;
            file.write_all(b"\n")?;
            count += 1;
            if misnamed.is_none() && !agrees(r, node) {
                misnamed = Some(r.seq);
            }
        }
    }
    if let Some(mut f) = out {
        f.flush()?;
    }
    Ok((count, misnamed))
}

/// Whether a mirrored record is what its line says: the filter columns the merged view uses
/// (seq, time, kind, actor, target, session) as in the line, and the line naming `node`.
fn agrees(r: &portcullis_store::MirroredRecord, node: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(&r.line) else {
        return false;
    };
    // The mirror stores U+FFFD for a NUL (PostgreSQL's text holds none).
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(|t| t.replace('\0', "\u{FFFD}"))
    };
    v.get("seq").and_then(Value::as_u64) == Some(r.seq)
        && v.get("ts_ms").and_then(Value::as_u64) == Some(r.ts_ms)
        && text("kind").as_deref() == Some(r.kind.as_str())
        && text("actor").as_deref() == Some(r.actor.as_str())
        && text("target") == r.target
        && text("session") == r.session
        && v.pointer("/detail/node").and_then(Value::as_str) == Some(node)
}

/// How long records after the last seal may stay unsealed while the trail is held before
/// they are not taken for a write in progress: a write and its seal go to disk in one `write`,
/// which takes far less.
const WRITE_IN_PROGRESS: std::time::Duration = std::time::Duration::from_secs(3);

/// [`portcullis_audit::verify`], checked again while records after the last seal are taken for
/// a write in progress (the trail's lock is held: by the gateway, or by anyone who can open the
/// lock file): once that write is done, its seal covers them. Records still unsealed after
/// [`WRITE_IN_PROGRESS`] were not written by a gateway's write: [`Problem::Unsealed`].
fn verify_settled(
    dir: &Path,
    key: Option<&VerifyingKey>,
) -> Result<portcullis_audit::VerifyReport, VerifyError> {
    let first = portcullis_audit::verify(dir, key)?;
    if first.unsealed_tail == 0 {
        return Ok(first);
    }
    let deadline = std::time::Instant::now() + WRITE_IN_PROGRESS;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = portcullis_audit::verify(dir, key)?;
        // Sealed since: the records seen unsealed are covered by a seal now.
        if now.last_sealed_seq.unwrap_or(0) >= first.last_seq {
            return Ok(now);
        }
        if std::time::Instant::now() >= deadline {
            return Err(VerifyError::Broken(Box::new(portcullis_audit::BadRecord {
                file: dir.to_owned(),
                line: 0,
                seq: Some(first.last_seq),
                problem: Problem::Unsealed {
                    last_sealed: first.last_sealed_seq,
                },
            })));
        }
    }
}

/// `audit verify`'s exit status when the chain is whole (and every seal checks out) but some
/// records were sealed as found: no seal made when they were written vouches for them.
const NOT_VOUCHED_EXIT: i32 = 2;

/// What `audit verify` says of records sealed as found: plainly, that nothing made when they were
/// written vouches for them.
fn not_vouched(found: &[portcullis_audit::SealedAsFound]) -> Vec<String> {
    let mut lines: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "NOT VOUCHED FOR: records {} to {} carry no seal made when they were written; they were trusted as found at seq {} (an audit_sealed record written when the trail was next opened)",
                f.from_seq, f.to_seq, f.by_seq
            )
        })
        .collect();
    lines.push(
        "a trail from before sealing, a crash in the middle of a write, or records added, changed or stripped of their seals while the gateway was down look the same: only the records before each stretch, and from its audit_sealed record on, are vouched for by a seal made when they were written; check the others against the SIEM copy or an export (exit status 2)"
            .to_owned(),
    );
    lines
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
