//! The trail's routes (security team and administrators): `GET /audit` (filtered, newest first),
//! `GET /audit/verify` (the whole hash chain now) and `GET /audit/exports` (the SIEM exports'
//! status).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_audit::{Entry, Filter, Kind, Order};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use crate::extract::Soc;
use crate::{AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(query))
        .route("/audit/verify", get(verify))
        .route("/audit/exports", get(exports))
}

/// Most entries one query returns.
const MAX_PAGE: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Who acted (exact).
    actor: Option<String>,
    /// Which target (exact).
    target: Option<String>,
    /// Which session (exact).
    session: Option<String>,
    /// Record kinds, comma-separated.
    kind: Option<String>,
    /// From this time (Unix ms, inclusive).
    since_ms: Option<u64>,
    /// Until this time (Unix ms, exclusive).
    until_ms: Option<u64>,
    /// Newest first, older than this sequence number (paging backwards).
    before_seq: Option<u64>,
    /// At most this many (default 100, at most 500).
    limit: Option<usize>,
    /// `true`: every gateway of the cluster, merged by time (from the store's mirror of each
    /// gateway's chain); then `node` picks one, and paging goes on with `before_ts_ms`,
    /// `before_node` and `before_seq` (the last entry of the page before).
    cluster: Option<bool>,
    /// With `cluster`: only this gateway's records.
    node: Option<String>,
    /// With `cluster`: paging.
    before_ts_ms: Option<u64>,
    /// With `cluster`: paging.
    before_node: Option<String>,
}

/// `GET /audit`: the trail, newest first, filtered (security team and administrators).
pub(crate) async fn query(
    State(state): State<AppState>,
    Soc(_who): Soc,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, WebError> {
    let Some(log) = state.audit.log.clone() else {
        return Err(WebError::NotFound(
            "this gateway keeps no audit trail".into(),
        ));
    };
    let mut kinds = Vec::new();
    for name in q.kind.iter().flat_map(|k| k.split(',')).map(str::trim) {
        if !name.is_empty() {
            kinds.push(Kind::new(name).map_err(|e| WebError::BadRequest(e.to_string()))?);
        }
    }
    let limit = q.limit.unwrap_or(100).min(MAX_PAGE);
    if q.cluster == Some(true) {
        return merged(&state, q, kinds, limit).await;
    }
    let filter = Filter {
        actor: q.actor,
        target: q.target,
        session: q.session,
        kinds,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before_seq: q.before_seq,
        order: Order::NewestFirst,
        ..Filter::new(limit)
    };
    let entries: Vec<Entry> = tokio::task::spawn_blocking(move || log.query(&filter))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next_before_seq": next })))
}

/// The merged view of every gateway's chain, newest first; each entry names its `node`.
async fn merged(
    state: &AppState,
    q: AuditQuery,
    kinds: Vec<Kind>,
    limit: usize,
) -> Result<Json<Value>, WebError> {
    let Some(link) = state.cluster.clone() else {
        return Err(WebError::BadRequest(
            "cluster: this gateway is not in a cluster (its trail is the whole trail)".into(),
        ));
    };
    let before = match (q.before_ts_ms, q.before_node, q.before_seq) {
        (Some(ts), Some(node), Some(seq)) => Some((ts, node, seq)),
        (None, None, None) => None,
        _ => {
            return Err(WebError::BadRequest(
                "before_ts_ms, before_node and before_seq go together".into(),
            ))
        }
    };
    let query = portcullis_store::MirrorQuery {
        actor: q.actor,
        target: q.target,
        session: q.session,
        kinds: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
        node: q.node,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before,
        limit,
    };
    let rows = tokio::task::spawn_blocking(move || link.audit_mirrored(&query))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        // The mirrored line as its gateway wrote it; one that does not parse is shown as such.
        let mut entry = match serde_json::from_str::<Value>(&row.line) {
            Ok(e) => e,
            Err(e) => {
                warn!(node = %row.node, seq = row.seq, error = %e, "an unreadable mirrored audit record");
                json!({ "seq": row.seq, "ts_ms": row.ts_ms, "unreadable": e.to_string() })
            }
        };
        if let Some(obj) = entry.as_object_mut() {
            obj.insert("node".into(), Value::from(row.node.clone()));
        }
        entries.push(entry);
    }
    let next = (rows.len() == limit)
        .then(|| rows.last())
        .flatten()
        .map(|r| json!({ "before_ts_ms": r.ts_ms, "before_node": r.node, "before_seq": r.seq }));
    Ok(Json(json!({ "entries": entries, "next": next })))
}

/// `GET /audit/exports`: each SIEM export's status (connected, last delivered record, pending,
/// last error), so the security team sees a SIEM falling behind.
pub(crate) async fn exports(State(state): State<AppState>, Soc(_who): Soc) -> Json<Value> {
    let last = state.audit.log.as_ref().map(|l| l.recovery().next_seq);
    let list: Vec<Value> = state
        .audit
        .exports
        .iter()
        .map(|h| serde_json::to_value(h.status()).unwrap_or(Value::Null))
        .collect();
    Json(json!({ "exports": list, "next_seq_at_start": last }))
}

/// `GET /audit/verify`: checks the whole chain now, and its seals with the gateway's key when
/// the trail is sealed, and says where it breaks, if it does.
pub(crate) async fn verify(
    State(state): State<AppState>,
    Soc(_who): Soc,
) -> Result<Json<Value>, WebError> {
    let Some(log) = state.audit.log.clone() else {
        return Err(WebError::NotFound(
            "this gateway keeps no audit trail".into(),
        ));
    };
    // The writer's own check: it knows which records it acknowledged, so only a write still
    // in progress may lack its seal; once that write is done (moments later) its seal covers it.
    let check = |log: std::sync::Arc<portcullis_audit::AuditLog>| async move {
        tokio::task::spawn_blocking(move || log.verify())
            .await
            .map_err(|e| WebError::Internal(e.to_string()))
    };
    let mut report = check(std::sync::Arc::clone(&log)).await?;
    for _ in 0..10 {
        let Ok(first) = &report else { break };
        if first.unsealed_tail == 0 {
            break;
        }
        let seen = first.last_seq;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let again = check(std::sync::Arc::clone(&log)).await?;
        let covered = matches!(&again, Ok(r) if r.last_sealed_seq.unwrap_or(0) >= seen);
        report = again;
        if covered {
            break;
        }
    }
    Ok(Json(verify_json(report)))
}

/// The answer of `GET /audit/verify`. `ok` says whether the chain (and every seal) checks out;
/// `vouched` whether every record is vouched for by a seal made when it was written: not when
/// records were sealed as found (a trail from before sealing, a crash, or a change while the
/// gateway was down look the same), nor when seals were not checked. Then `warning` says why.
fn verify_json(
    report: Result<portcullis_audit::VerifyReport, portcullis_audit::VerifyError>,
) -> Value {
    match report {
        Ok(r) => {
            let lost: Vec<String> = r
                .set_aside
                .iter()
                .filter(|a| !a.file_intact)
                .map(|a| a.file.clone())
                .collect();
            let warning = if !r.key_checked {
                Some(
                    "the seals were not checked (no key): a chain alone can be recomputed by \
                     anyone who can write the files"
                        .to_owned(),
                )
            } else if !lost.is_empty() {
                Some(format!(
                    "records set aside at a start are kept in {}, which no longer holds what the \
                     trail says (missing or changed)",
                    lost.join(", ")
                ))
            } else if r.unsealed_tail > 0 {
                Some(format!(
                    "the last {} records are a write in progress, not sealed yet: check again",
                    r.unsealed_tail
                ))
            } else if r.sealed_as_found.is_empty() {
                None
            } else {
                let stretches: Vec<String> = r
                    .sealed_as_found
                    .iter()
                    .map(|f| {
                        format!(
                            "records {} to {} (trusted as found at seq {})",
                            f.from_seq, f.to_seq, f.by_seq
                        )
                    })
                    .collect();
                Some(format!(
                    "not vouched for by any seal made when they were written: {}; a trail from \
                     before sealing, a crash, or records changed while the gateway was down look \
                     the same: check them against the SIEM copy or an export",
                    stretches.join(", ")
                ))
            };
            json!({
            "ok": true,
            "vouched": warning.is_none(),
            "warning": warning,
            "records": r.records,
            "files": r.files,
            "last_seq": r.last_seq,
            "last_hash": r.last_hash.to_hex(),
            "seals_checked": r.key_checked,
            "sealed": r.sealed,
            "last_sealed_seq": r.last_sealed_seq,
            "unsealed_tail": r.unsealed_tail,
            "set_aside": r.set_aside.iter().map(|a| json!({
                "by_seq": a.by_seq,
                "from_seq": a.from_seq,
                "to_seq": a.to_seq,
                "file": a.file,
                "file_intact": a.file_intact,
            })).collect::<Vec<_>>(),
            "sealed_as_found": r.sealed_as_found.iter().map(|f| json!({
                "from_seq": f.from_seq,
                "to_seq": f.to_seq,
                "by_seq": f.by_seq,
            })).collect::<Vec<_>>(),
            })
        }
        Err(e) => {
            warn!(error = %e, "the audit trail does not verify");
            json!({ "ok": false, "error": e.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_audit::{AuditLog, Kind, OpenOptions, Record};
    use portcullis_recording::SigningKey;

    use super::*;

    fn fill(log: &AuditLog) {
        for i in 0..3 {
            log.append(Record::new(Kind::LOGIN, format!("user{i}")))
                .unwrap();
        }
    }

    #[test]
    fn a_trail_sealed_from_its_first_record_is_vouched_for() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = OpenOptions::new()
            .sealing_key(key.clone())
            .open(dir.path())
            .unwrap();
        fill(&log);
        drop(log);
        let v = verify_json(portcullis_audit::verify(
            dir.path(),
            Some(&key.verifying_key()),
        ));
        assert_eq!(
            (&v["ok"], &v["vouched"], &v["warning"]),
            (&json!(true), &json!(true), &Value::Null),
            "{v}"
        );
    }

    /// A trail sealed as found (here: from before sealing) still has a whole chain (`ok`), but is
    /// not called vouched for: the warning names the records.
    #[test]
    fn records_sealed_as_found_are_not_vouched_for() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        fill(&log);
        drop(log);
        let key = SigningKey::from_bytes(&[5; 32]);
        drop(
            OpenOptions::new()
                .sealing_key(key.clone())
                .open(dir.path())
                .unwrap(),
        );
        let v = verify_json(portcullis_audit::verify(
            dir.path(),
            Some(&key.verifying_key()),
        ));
        assert_eq!(
            (&v["ok"], &v["vouched"]),
            (&json!(true), &json!(false)),
            "{v}"
        );
        let warning = v["warning"].as_str().unwrap();
        assert!(
            warning.contains("not vouched for by any seal made when they were written: records 1 to 3 (trusted as found at seq 4)"),
            "{warning}"
        );
        let unchecked = verify_json(portcullis_audit::verify(dir.path(), None));
        assert_eq!(
            (&unchecked["ok"], &unchecked["vouched"]),
            (&json!(true), &json!(false))
        );
        assert!(unchecked["warning"]
            .as_str()
            .unwrap()
            .contains("seals were not checked"));
    }
}
