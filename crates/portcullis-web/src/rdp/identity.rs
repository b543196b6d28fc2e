//! RDP targets' identities: what the adapter learns on first use (the certificate's SHA-256, that
//! the target does NLA) is stored in the target's record and audited; a refusal (another
//! certificate, TLS without NLA) is audited and kept for an administrator to accept.
//!
//! An administrator's routes over it are `crate::targets::identity`'s.

use std::sync::Arc;

use portcullis_audit::{Kind, Record};
use portcullis_rdp::identity::{BoxFuture, IdentityKeeper, Learned, Refusal};
use portcullis_store::{Store, TargetIdentity};
use serde_json::{json, Value};
use tracing::{error, info, warn};

use crate::audit::Audit;
use crate::AppState;

/// The audit record kind of what the gateway learns or refuses about a target's identity.
pub(crate) fn kind() -> Kind {
    // A constant name of the allowed shape: this cannot fail.
    Kind::new("target_identity").unwrap_or(Kind::ADMIN_CHANGE)
}

/// The identity as the API shows it (admins only).
pub(crate) fn identity_json(identity: &TargetIdentity) -> Value {
    json!({
        "tls_sha256": identity.tls_sha256,
        "nla_seen": identity.nla_seen,
        "require_nla": identity.require_nla,
        "refused_sha256": identity.refused_sha256,
        "refused_downgrade": identity.refused_downgrade,
        "tls_ca_file": identity.tls_ca_file,
    })
}

/// Hears what one connection to `target`, opened for `user`, learns or refuses.
pub(crate) fn keeper(state: &AppState, target: &str, user: &str) -> Arc<dyn IdentityKeeper> {
    Arc::new(Keeper {
        store: Arc::clone(&state.store),
        audit: state.audit.clone(),
        target: target.to_owned(),
        user: user.to_owned(),
    })
}

struct Keeper {
    store: Arc<dyn Store>,
    audit: Audit,
    target: String,
    user: String,
}

impl Keeper {
    /// Applies `change` to the identity of the record as stored now, in one atomic step (an
    /// admin may change it meanwhile).
    fn update(
        &self,
        mut change: impl FnMut(&mut TargetIdentity) -> Result<(), String>,
    ) -> Result<(), String> {
        // Atomically: an admin's change or another connection's lesson meanwhile is kept.
        let mut outcome = Ok(());
        let found = self
            .store
            .update_target(&self.target, &mut |record| {
                outcome = change(&mut record.identity);
                outcome.is_ok()
            })
            .map_err(|e| e.to_string())?;
        if found.is_none() {
            return Err(format!("target {} was deleted", self.target));
        }
        outcome
    }
}

impl IdentityKeeper for Keeper {
    fn learned<'a>(&'a self, learned: &'a Learned) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut record = Record::new(kind(), &self.user)
                .target(&self.target)
                .detail("decision", "allow")
                .detail("sha256", learned.sha256.as_str());
            if learned.first_certificate {
                record = record.detail("pinned", true);
            }
            if learned.first_nla {
                record = record.detail("nla_seen", true);
            }
            self.audit.record(record).await.map_err(|e| e.to_string())?;
            info!(target = %self.target, sha256 = %learned.sha256, pinned = learned.first_certificate,
                nla = learned.first_nla, "RDP target identity remembered");
            let updated = self.update(|id| {
                if learned.first_certificate {
                    match &id.tls_sha256 {
                        None => id.tls_sha256 = Some(learned.sha256.clone()),
                        // Another connection pinned a different certificate meanwhile: one of
                        // the two is not the target.
                        Some(other) if *other != learned.sha256 => {
                            return Err(format!(
                                "another certificate (SHA-256 {other}) was pinned meanwhile"
                            ))
                        }
                        Some(_) => {}
                    }
                }
                if learned.first_nla {
                    id.nla_seen = true;
                }
                id.refused_sha256 = None;
                id.refused_downgrade = false;
                Ok(())
            });
            if let Err(why) = &updated {
                // The allow on record did not hold (another connection pinned another
                // certificate first, say): the trail says so, and the connection is refused.
                let record = Record::new(kind(), &self.user)
                    .target(&self.target)
                    .detail("decision", "deny")
                    .detail("reason", "pin_failed")
                    .detail("sha256", learned.sha256.as_str())
                    .detail("message", why.as_str());
                if let Err(e) = self.audit.record(record).await {
                    warn!(target = %self.target, error = %e,
                        "the refusal of an RDP target identity is not in the audit trail");
                }
            }
            updated
        })
    }

    fn refused<'a>(&'a self, refusal: &'a Refusal) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut record = Record::new(kind(), &self.user)
                .target(&self.target)
                .detail("decision", "deny")
                .detail("reason", refusal.reason())
                .detail("message", refusal.to_string());
            match refusal {
                Refusal::CertificateChanged {
                    expected,
                    presented,
                } => {
                    record = record
                        .detail("expected_sha256", expected.as_str())
                        .detail("presented_sha256", presented.as_str());
                }
                Refusal::Downgrade {
                    required,
                    presented,
                } => {
                    record = record
                        .detail("require_nla", *required)
                        .detail("presented_sha256", presented.as_str());
                }
                Refusal::CaRejected { presented, reason } => {
                    record = record
                        .detail("presented_sha256", presented.as_str())
                        .detail("ca_error", reason.as_str());
                }
                Refusal::NotRemembered(_) => {}
            }
            // The connection is refused whatever happens here; the record is waited for so the
            // refusal is on file before the user hears of it.
            if let Err(e) = self.audit.record(record).await {
                error!(target = %self.target, error = %e, "the refusal of an RDP target could not be audited");
            }
            warn!(target = %self.target, user = %self.user, error = %refusal, "RDP target refused: identity");
            let outcome = self.update(|id| {
                match refusal {
                    Refusal::CertificateChanged { presented, .. } => {
                        id.refused_sha256 = Some(presented.clone());
                    }
                    Refusal::Downgrade { .. } => id.refused_downgrade = true,
                    Refusal::CaRejected { .. } | Refusal::NotRemembered(_) => {}
                }
                Ok(())
            });
            if let Err(e) = outcome {
                warn!(target = %self.target, error = %e, "the refused identity could not be kept for the admin");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::StatusCode;
    use portcullis_audit::{AuditLog, Filter};
    use portcullis_secrets::SecretKey;
    use portcullis_store::{MemoryStore, Role, TargetKind};

    use crate::ops;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    struct Fixture {
        state: AppState,
        log: Arc<AuditLog>,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let store = Arc::new(MemoryStore::new());
        let key = SecretKey::generate();
        ops::create_user(store.as_ref(), "root", "root-password-1", Role::Admin).unwrap();
        ops::create_user(store.as_ref(), "alice", "alice-password-1", Role::User).unwrap();
        ops::create_target(
            store.as_ref(),
            &key,
            ops::NewTarget {
                name: "win",
                kind: TargetKind::Rdp,
                address: "10.0.0.9:3389",
                account: "admin",
                password: "pw",
                description: "",
                labels: &[],
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path()).unwrap());
        let broker = portcullis_broker::Broker::new(Default::default());
        let mut state = AppState::new(store, Arc::new(key), broker);
        state.audit = Audit::new(Arc::clone(&log));
        Fixture {
            state,
            log,
            _dir: dir,
        }
    }

    fn records(log: &AuditLog) -> Vec<Value> {
        log.query(&Filter::new(100))
            .unwrap()
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    use crate::test_support::call_as as call;

    #[tokio::test]
    async fn first_use_pins_and_a_change_is_refused_audited_and_kept() {
        let f = fixture();
        let keeper = keeper(&f.state, "win", "alice");
        keeper
            .learned(&Learned {
                sha256: A.into(),
                first_certificate: true,
                first_nla: true,
            })
            .await
            .unwrap();
        let id = f.state.store.get_target("win").unwrap().unwrap().identity;
        assert_eq!(id.tls_sha256.as_deref(), Some(A));
        assert!(id.nla_seen);

        keeper
            .refused(&Refusal::CertificateChanged {
                expected: A.into(),
                presented: B.into(),
            })
            .await;
        let id = f.state.store.get_target("win").unwrap().unwrap().identity;
        assert_eq!(id.tls_sha256.as_deref(), Some(A), "the pin stays");
        assert_eq!(id.refused_sha256.as_deref(), Some(B));

        // A second first-use connection racing the first with another certificate is refused.
        let raced = keeper
            .learned(&Learned {
                sha256: B.into(),
                first_certificate: true,
                first_nla: false,
            })
            .await
            .unwrap_err();
        assert!(raced.contains(A), "{raced}");
        assert_eq!(
            f.state
                .store
                .get_target("win")
                .unwrap()
                .unwrap()
                .identity
                .tls_sha256
                .as_deref(),
            Some(A)
        );

        let recs: Vec<Value> = records(&f.log)
            .into_iter()
            .filter(|r| r["detail"]["sha256"] != B)
            .collect();
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(recs[0]["kind"], "target_identity");
        assert_eq!(recs[0]["detail"]["pinned"], true);
        assert_eq!(recs[1]["detail"]["decision"], "deny");
        assert_eq!(recs[1]["detail"]["expected_sha256"], A);
        assert_eq!(recs[1]["detail"]["presented_sha256"], B);
        assert_eq!(recs[1]["actor"], "alice");
        assert_eq!(recs[1]["target"], "win");
        // The raced connection's allow is followed by its refusal: the trail ends on the truth.
        let raced: Vec<Value> = records(&f.log)
            .into_iter()
            .filter(|r| r["detail"]["sha256"] == B)
            .collect();
        let decisions: Vec<&Value> = raced.iter().map(|r| &r["detail"]["decision"]).collect();
        assert_eq!(decisions, ["allow", "deny"], "{raced:?}");
        assert_eq!(raced[1]["detail"]["reason"], "pin_failed");
    }

    #[tokio::test]
    async fn admins_see_set_and_accept_identities_others_do_not() {
        let f = fixture();
        let s = &f.state;
        let (status, _) = call(s, "alice", "GET", "/targets/win", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(
            s,
            "alice",
            "PUT",
            "/targets/win/identity",
            Some(json!({"require_nla": true})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(
            s,
            "alice",
            "POST",
            "/targets/win/identity/accept",
            Some(json!({"sha256": B})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(records(&f.log).is_empty());
        assert!(f
            .state
            .store
            .get_target("win")
            .unwrap()
            .unwrap()
            .identity
            .is_unknown());

        let (status, v) = call(s, "root", "GET", "/targets/win", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["identity"]["tls_sha256"], Value::Null);

        let (status, v) = call(
            s,
            "root",
            "PUT",
            "/targets/win/identity",
            Some(json!({"tls_sha256": A, "require_nla": true})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["identity"]["tls_sha256"], A);
        assert_eq!(v["identity"]["require_nla"], true);
        let (status, _) = call(
            s,
            "root",
            "PUT",
            "/targets/win/identity",
            Some(json!({"bogus": 1})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let (status, v) = call(
            s,
            "root",
            "POST",
            "/targets/win/identity/accept",
            Some(json!({"sha256": B})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["identity"]["tls_sha256"], B);
        let recs = records(&f.log);
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(recs[1]["detail"]["action"], "target_identity_accept");
        assert_eq!(recs[1]["detail"]["before"]["tls_sha256"], A);
        assert_eq!(recs[1]["detail"]["after"]["tls_sha256"], B);
        assert_eq!(recs[1]["actor"], "root");

        // null forgets the pin.
        let (_, v) = call(
            s,
            "root",
            "PUT",
            "/targets/win/identity",
            Some(json!({"tls_sha256": null})),
        )
        .await;
        assert_eq!(v["identity"]["tls_sha256"], Value::Null);
        assert_eq!(v["identity"]["require_nla"], true);
    }
}
