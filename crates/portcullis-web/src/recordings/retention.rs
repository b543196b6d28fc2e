//! Retention: how long each recording is kept, and deleting it when that time is over.
//!
//! A closed recording is kept for the days of the first `[[retention]]` entry of the policy
//! matching its target (name and labels) and its session's risk score (so high-risk sessions can
//! be kept longer); none matching, for the gateway's `[recording] retention_days` (none: for
//! ever), which is also the floor: the policy (changed through the API) only keeps longer. Once over, the recording goes whole (video, event track, thumbnails, manifest), its
//! review (marks and flags) with it, and the search indexer takes its words out of the index and
//! its files. Each deletion is in the audit trail before it happens, naming the deciding entry.

use std::collections::HashMap;
use std::time::Duration;

use portcullis_audit::{Kind, Record};
use portcullis_policy::Policy;
use portcullis_recording::catalog::{ListedState, Summary};
use portcullis_recording::StorageError;
use serde::Serialize;
use tracing::{info, warn};

use crate::{AppState, WebError};

/// How often retention looks for recordings past their time.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// A day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// How long one recording is kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keep {
    /// Deleted after this moment (Unix ms); `None`: kept for ever (or still being recorded).
    pub until_ms: Option<i64>,
    /// The deciding `[[retention]]` entry; `None`: the gateway's default.
    pub rule: Option<String>,
    /// Its days (0: for ever).
    pub days: u32,
}

/// How long `s` (whose target has `labels`) is kept under `policy`, with `default` (the
/// configuration's `[recording] retention_days`) as the floor: an entry of the policy — which an
/// administrator changes through the API — can keep a recording longer, never shorter; deleting
/// evidence sooner takes the host's configuration. With no default (kept for ever) nothing is
/// deleted, whatever the policy says.
pub fn keep(policy: &Policy, default: Option<Duration>, s: &Summary, labels: &[String]) -> Keep {
    // 0: for ever.
    let floor = default.map_or(0, |d| {
        u32::try_from(d.as_secs().div_ceil(86_400))
            .unwrap_or(u32::MAX)
            .max(1)
    });
    let (rule, days) = match policy.retention_for(&s.target, labels, s.risk_score) {
        Some(choice) if floor != 0 && (choice.days == 0 || choice.days > floor) => {
            (Some(choice.rule.to_string()), choice.days)
        }
        // Shorter than the floor, or the floor keeps for ever: the configuration's.
        _ => (None, floor),
    };
    let until_ms = match (s.ended_at_ms, days) {
        (_, 0) => None,
        (Some(ended), days) => Some(ended.saturating_add(i64::from(days).saturating_mul(DAY_MS))),
        (None, _) => None,
    };
    Keep {
        until_ms,
        rule,
        days,
    }
}

/// The labels of every target the store knows, by name (a deleted target's recordings match by
/// name only).
fn labels(state: &AppState) -> Result<HashMap<String, Vec<String>>, WebError> {
    Ok(state
        .store
        .list_targets()?
        .into_iter()
        .map(|t| (t.name, t.labels))
        .collect())
}

/// How long recording `s` is kept (for the API).
pub(crate) fn keep_of(state: &AppState, s: &Summary) -> Result<Keep, WebError> {
    let labels = state
        .store
        .get_target(&s.target)?
        .map(|t| t.labels)
        .unwrap_or_default();
    Ok(keep(
        &state.policy.current(),
        state.retention_default,
        s,
        &labels,
    ))
}

/// One pass at `now_ms`: every closed recording past its time is deleted (on record first) with
/// its review. Returns the ids deleted. One that cannot be deleted holds no other back.
pub async fn pass(state: &AppState, now_ms: i64) -> Result<Vec<String>, WebError> {
    let Some(rec) = state.recordings.clone() else {
        return Ok(Vec::new());
    };
    let policy = state.policy.current();
    let default = state.retention_default;
    let labels = labels(state)?;
    let listed = {
        let rec = rec.clone();
        tokio::task::spawn_blocking(move || rec.listed())
            .await
            .map_err(|e| WebError::Internal(format!("retention task failed: {e}")))?
            .map_err(|e| WebError::Internal(e.to_string()))?
    };
    let mut deleted = Vec::new();
    for s in listed {
        // Only closed recordings: never one being written (here or on another gateway).
        if s.state == ListedState::Recording || rec.live.contains(&s.id) {
            continue;
        }
        let no_labels = Vec::new();
        let k = keep(
            &policy,
            default,
            &s,
            labels.get(&s.target).unwrap_or(&no_labels),
        );
        if k.until_ms.is_none_or(|until| until >= now_ms) {
            continue;
        }
        let record = Record::new(Kind::RECORDING_EXPIRED, "retention")
            .session(&s.id)
            .target(s.target.clone())
            .detail("user", s.user.clone())
            .detail(
                "rule",
                k.rule.clone().unwrap_or_else(|| "default".to_owned()),
            )
            .detail("days", k.days)
            .detail("risk_score", s.risk_score)
            .detail("ended_at_ms", s.ended_at_ms.unwrap_or(0));
        let storage = std::sync::Arc::clone(&rec.storage);
        let id = s.id.clone();
        let done = state
            .audit
            .before(record, || {
                blocking_here(|| {
                    match storage.delete(&id) {
                        // Another gateway of the cluster deleted it first.
                        Ok(()) | Err(StorageError::NotFound(_)) => {}
                        Err(e) => return Err(WebError::Internal(e.to_string())),
                    }
                    state.store.delete_review(&id)?;
                    Ok(())
                })
            })
            .await;
        match done {
            Ok(()) => deleted.push(s.id),
            Err(e) => {
                warn!(recording = %s.id, error = %e, "retention could not delete a recording")
            }
        }
    }
    if !deleted.is_empty() {
        info!(
            count = deleted.len(),
            "deleted recordings past their retention"
        );
    }
    Ok(deleted)
}

/// Runs blocking work (files, the store) from the runtime: announced to a multi-threaded one so
/// its other tasks move on (a single-threaded one, in tests, just runs it).
fn blocking_here<T>(f: impl FnOnce() -> Result<T, WebError>) -> Result<T, WebError> {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs [`pass`] every [`RETENTION_EVERY`] (the first at once) for as long as the runtime runs.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RETENTION_EVERY);
        loop {
            every.tick().await;
            if let Err(e) = pass(&state, crate::auth::now_ms()).await {
                warn!(error = %e, "retention failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use portcullis_audit::AuditLog;
    use portcullis_core::session::SessionEvent;
    use portcullis_policy::{PolicyDoc, RetentionDoc};
    use portcullis_recording::oracles::test_meta;
    use portcullis_recording::{LiveRecordings, LocalDisk, RecordingStorage, RecordingWriter};
    use portcullis_secrets::SecretKey;
    use portcullis_store::{MemoryStore, ReviewFlag, Store};

    use super::*;
    use crate::audit::Audit;
    use crate::Recordings;

    const ENDED: i64 = 1_700_000_000_000;

    /// A closed recording of `target` that ended at [`ENDED`], with a risk event of `score`.
    fn record(
        disk: &dyn RecordingStorage,
        key: &Arc<portcullis_recording::SigningKey>,
        id: &str,
        target: &str,
        score: u32,
    ) {
        let mut meta = test_meta(id, ENDED - 60_000);
        meta.target = target.into();
        let mut w = RecordingWriter::create(disk, Arc::clone(key), meta).unwrap();
        if score > 0 {
            w.event(
                1000,
                &SessionEvent::Risk {
                    rule: "log_clearing".into(),
                    description: "clears logs".into(),
                    source: "typed".into(),
                    action: "alert".into(),
                    score,
                    excerpt: "wevtutil cl".into(),
                },
            );
        }
        w.finish("closed", 60_000, ENDED).unwrap();
    }

    fn entry(name: &str, targets: Option<&str>, min_risk: u32, days: u32) -> RetentionDoc {
        RetentionDoc {
            name: name.into(),
            description: None,
            targets: targets.map(|t| vec![t.to_owned()]),
            min_risk,
            days,
        }
    }

    #[tokio::test]
    async fn recordings_go_when_their_entry_says_and_take_their_review_along() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn RecordingStorage> = Arc::new(LocalDisk::open(dir.path()).unwrap());
        let key = Arc::new(portcullis_recording::generate_key());
        record(disk.as_ref(), &key, "calm", "db1", 0);
        record(disk.as_ref(), &key, "risky", "db1", 80);
        record(disk.as_ref(), &key, "lab", "lab1", 0);
        record(disk.as_ref(), &key, "kept", "vault", 0);
        // Still being written: never deleted, whatever its age.
        let open =
            RecordingWriter::create(disk.as_ref(), Arc::clone(&key), test_meta("open", 0)).unwrap();
        let live = LiveRecordings::default();

        let store = Arc::new(MemoryStore::new());
        store
            .update_review("calm", &mut |r| {
                r.flags.push(ReviewFlag {
                    id: "flag_1".into(),
                    t_ms: 1,
                    note: "n".into(),
                    by: "rita".into(),
                    by_id: "u_rita".into(),
                    at_ms: 1,
                });
                true
            })
            .unwrap();
        let mut doc = PolicyDoc::default_policy();
        doc.retention = vec![
            entry("high-risk", None, 50, 730),
            entry("lab", Some("name:lab1"), 0, 1),
            entry("vault", Some("name:vault"), 0, 0),
        ];
        let audit_dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(audit_dir.path()).unwrap());
        let state = AppState::new(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::new(SecretKey::generate()),
            portcullis_broker::Broker::new(Default::default()),
        )
        .with_audit(Audit::new(Arc::clone(&log)))
        .with_policy(
            crate::policy::PolicyState::new(Policy::compile(&doc).unwrap()),
            None,
        )
        .with_recordings(Recordings::new(
            Arc::clone(&disk),
            live,
            key.verifying_key(),
        ))
        .with_retention_default(Some(Duration::from_secs(30 * 86_400)));

        let day = DAY_MS;
        let ids = |v: Vec<String>| {
            let mut v = v;
            v.sort();
            v
        };
        // The lab's entry says one day, but the configuration's 30 days are the floor (the
        // policy, changed through the API, never deletes sooner).
        assert!(pass(&state, ENDED + 2 * day).await.unwrap().is_empty());
        assert!(
            store.get_review("calm").unwrap().is_some(),
            "its recording is there"
        );
        // The default 30 days: the calm one goes with its review, the lab one with it; the risky
        // one stays (730 days).
        assert_eq!(
            ids(pass(&state, ENDED + 31 * day).await.unwrap()),
            ["calm", "lab"]
        );
        assert_eq!(store.get_review("calm").unwrap(), None);
        assert_eq!(
            ids(pass(&state, ENDED + 729 * day).await.unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(pass(&state, ENDED + 731 * day).await.unwrap()),
            ["risky"]
        );
        // `days = 0` keeps for ever; an open recording is never touched.
        assert!(pass(&state, i64::MAX / 2).await.unwrap().is_empty());
        let mut left = disk.list().unwrap();
        left.sort();
        assert_eq!(left, ["kept", "open"]);
        // Each deletion on record, naming its entry.
        let trail = std::fs::read_dir(audit_dir.path())
            .unwrap()
            .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap_or_default())
            .collect::<String>();
        for (id, rule) in [
            ("lab", "default"),
            ("calm", "default"),
            ("risky", "high-risk"),
        ] {
            let line = trail
                .lines()
                .find(|l| {
                    l.contains("\"recording_expired\"")
                        && l.contains(&format!("\"session\":\"{id}\""))
                })
                .unwrap_or_else(|| panic!("no record of {id}'s deletion in {trail}"));
            assert!(line.contains(&format!("\"rule\":\"{rule}\"")), "{line}");
        }
        drop(open);
    }

    #[test]
    fn keep_says_until_when_and_why() {
        let mut doc = PolicyDoc::default_policy();
        doc.retention = vec![entry("prod", Some("label:prod"), 0, 365)];
        let policy = Policy::compile(&doc).unwrap();
        let mut s = portcullis_recording::catalog::Summary {
            id: "r".into(),
            user: "alice".into(),
            user_id: String::new(),
            target: "db1".into(),
            client_addr: String::new(),
            started_at_ms: 0,
            ended_at_ms: Some(ENDED),
            duration_ms: 1,
            state: ListedState::Complete,
            bytes: 1,
            end_reason: None,
            risk_score: 0,
            risk_rules: Vec::new(),
        };
        let week = Some(Duration::from_secs(86_400 * 7));
        let prod = keep(&policy, week, &s, &["prod".to_owned()]);
        assert_eq!(prod.rule.as_deref(), Some("prod"));
        assert_eq!(prod.until_ms, Some(ENDED + 365 * DAY_MS));
        // Never shorter than the configuration's.
        let year = Some(Duration::from_secs(86_400 * 400));
        let floored = keep(&policy, year, &s, &["prod".to_owned()]);
        assert_eq!((floored.rule, floored.days), (None, 400));
        // No configured retention: the policy deletes nothing.
        assert_eq!(keep(&policy, None, &s, &["prod".to_owned()]).until_ms, None);
        let default = keep(&policy, week, &s, &[]);
        assert_eq!(
            (default.rule, default.days, default.until_ms),
            (None, 7, Some(ENDED + 7 * DAY_MS))
        );
        assert_eq!(
            keep(&policy, None, &s, &[]).until_ms,
            None,
            "no default: for ever"
        );
        s.ended_at_ms = None;
        assert_eq!(
            keep(&policy, week, &s, &["prod".to_owned()]).until_ms,
            None,
            "still recording"
        );
    }
}
