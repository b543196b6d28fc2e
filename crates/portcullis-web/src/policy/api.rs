//! The policy API: read and replace the policy document, and explain a decision (issue 5).
//!
//! - `GET /policy` → `{"policy": PolicyDoc, "managed_by_file": "/etc/…" | null}`
//! - `PUT /policy` with a `PolicyDoc` → the same shape; 400 naming rule and field when it does
//!   not compile, 409 when the policy is managed by a file (`[policy] file` in the config)
//! - `POST /policy/explain` with `{"user", "target", "action": Action, "at"?: unix secs}` →
//!   the [`portcullis_policy::Explanation`] plus `"has_grant"` (whether the store grants the
//!   target to the user); 404 for an unknown user or target

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_policy::{Action, Policy, PolicyDoc};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::audit::admin_change;
use crate::extract::{Admin, Body};
use crate::policy::store as policy_store;
use crate::{ops, AppState, WebError};

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/policy", get(get_policy).put(put_policy))
        .route("/policy/explain", post(explain))
}

/// The policy document and where it comes from.
fn policy_json(state: &AppState, doc: &PolicyDoc) -> Value {
    json!({
        "policy": doc,
        "managed_by_file": state.policy_file.as_ref().map(|p| p.display().to_string()),
        "warnings": warnings(state, doc),
    })
}

/// What in a valid policy will not work as meant with the accounts there are now: a four-eyes
/// rule whose observers include no one who can open the watch view (an administrator or the
/// security team, not locked) holds its sessions' input for good.
fn warnings(state: &AppState, doc: &PolicyDoc) -> Vec<String> {
    let policy = state.policy.current();
    let users = match state.store.list_users() {
        Ok(users) => users,
        Err(e) => {
            return vec![format!(
                "the accounts could not be read to check the policy: {e}"
            )]
        }
    };
    doc.rules
        .iter()
        .filter(|r| r.observer_required && !r.deny)
        .filter(|r| {
            !users.iter().any(|u| {
                !u.locked
                    && matches!(
                        u.role,
                        portcullis_store::Role::Admin | portcullis_store::Role::Soc
                    )
                    && policy.may_observe(&r.name, &super::subject_of(u))
            })
        })
        .map(|r| {
            format!(
                "rule {:?} requires an observer, but none of its observers can watch now (only \
                 administrators and the security team open the watch view): its sessions' input \
                 stays held",
                r.name
            )
        })
        .collect()
}

pub(crate) async fn get_policy(State(state): State<AppState>, _admin: Admin) -> Json<Value> {
    let policy = state.policy.current();
    Json(policy_json(&state, policy.doc()))
}

pub(crate) async fn put_policy(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(doc): Body<PolicyDoc>,
) -> Result<Json<Value>, WebError> {
    if let Some(file) = &state.policy_file {
        return Err(WebError::Conflict(format!(
            "the policy is managed by the file {} ([policy] file in the configuration): edit it \
             there and restart the gateway",
            file.display()
        )));
    }
    let policy = Policy::compile(&doc).map_err(|e| WebError::BadRequest(e.to_string()))?;
    // Recorded, saved and put in force under one lock, so two administrators saving at once
    // cannot leave one policy in the store and the other in force, and each record's "before"
    // is the policy it replaced.
    let _writing = state.policy_writes.lock().await;
    let before = serde_json::to_value(policy_store::load_policy_doc(state.store.as_ref())?)
        .unwrap_or(Value::Null);
    let after = serde_json::to_value(&doc).unwrap_or(Value::Null);
    // The new policy is on record before it is in force.
    state
        .audit
        .before(
            admin_change(&admin.name, "policy_change", before, after),
            || {
                policy_store::save_policy_doc(state.store.as_ref(), &doc)?;
                state.policy.replace(policy);
                Ok(())
            },
        )
        .await?;
    info!(admin = %admin.name, rules = doc.rules.len(), "policy changed");
    Ok(Json(policy_json(&state, &doc)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainBody {
    user: String,
    target: String,
    action: Action,
    /// Unix seconds; now when absent.
    #[serde(default)]
    at: Option<i64>,
}

pub(crate) async fn explain(
    State(state): State<AppState>,
    _admin: Admin,
    Body(body): Body<ExplainBody>,
) -> Result<Json<Value>, WebError> {
    let user = state
        .store
        .get_user(&body.user)?
        .ok_or_else(|| WebError::NotFound(format!("no user named {:?}", body.user)))?;
    let target = state
        .store
        .get_target(&body.target)?
        .ok_or_else(|| WebError::NotFound(format!("no target named {:?}", body.target)))?;
    let has_grant = state.store.has_grant(&user.name, &target.name)?;
    let who = super::subject_of(&user);
    let on = super::target_of(&target);
    let at = body.at.unwrap_or_else(ops::now_unix);
    let explanation = state.policy.current().explain(&who, &on, body.action, at);
    // What access the user holds for it: a rule that gives access by approved request only
    // does not count a standing grant; the request approved now under that rule does.
    let access = if explanation.request.is_some() {
        // Approved under the deciding rule, and in force at the time asked about.
        let approved = state.store.list_requests()?.into_iter().find(|r| {
            r.user_id == user.id
                && r.target == target.name
                && r.state == portcullis_store::RequestState::Approved
                && explanation.rule.as_deref() == Some(r.rule.as_str())
                && r.grant_until.is_some_and(|until| until > at)
        });
        json!({
            "by": "request",
            "standing_grant_counts": false,
            "request": approved.as_ref().map(|r| json!({
                "id": r.id,
                "approved_by": r.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(),
                "until": r.grant_until,
            })),
            "opens": explanation.allowed && approved.is_some(),
        })
    } else {
        json!({
            "by": "grant",
            "has_grant": has_grant,
            "opens": explanation.allowed && has_grant,
        })
    };
    let mut v =
        serde_json::to_value(&explanation).map_err(|e| WebError::Internal(e.to_string()))?;
    v["has_grant"] = json!(has_grant);
    v["access"] = access;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use portcullis_policy::{Entry, RuleDoc};
    use portcullis_secrets::SecretKey;
    use portcullis_store::{MemoryStore, Store, TargetKind, TargetRecord, UserRecord};

    use super::*;
    use crate::policy::PolicyState;

    fn store() -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::new());
        for (name, role) in [("root", "admin"), ("alice", "user"), ("vic", "user")] {
            // From JSON, so fields added to the record later keep their defaults.
            let user: UserRecord = serde_json::from_value(
                json!({"name": name, "password_hash": "x", "role": role, "created_at": 0}),
            )
            .unwrap();
            store.create_user(&user).unwrap();
        }
        store
            .create_target(&TargetRecord {
                name: "db1".into(),
                kind: TargetKind::Vnc,
                address: "h:5900".into(),
                account: String::new(),
                sealed_secret: vec![],
                description: String::new(),
                created_at: 0,
                labels: vec!["prod".into(), "db".into()],
                identity: Default::default(),
            })
            .unwrap();
        store.create_grant("alice", "db1", 0).unwrap();
        store
    }

    fn state(store: Arc<MemoryStore>) -> AppState {
        let broker = portcullis_broker::Broker::new(Default::default());
        AppState::new(store, Arc::new(SecretKey::generate()), broker)
    }

    use crate::test_support::call_as as call;

    fn vendor_policy() -> PolicyDoc {
        let mut doc = PolicyDoc::default();
        doc.groups.insert("vendors".into(), vec!["vic".into()]);
        doc.rules.push(RuleDoc::new(
            "no-vendors-on-prod",
            &["group:vendors"],
            &["label:prod"],
        ));
        doc.rules[0].deny = true;
        let mut users = RuleDoc::new("users-on-db", &["role:user"], &["label:db"]);
        users.entry = vec![Entry::Browser];
        doc.rules.push(users);
        doc
    }

    #[tokio::test]
    async fn put_checks_saves_and_puts_in_force() {
        let store = store();
        let state = state(std::sync::Arc::clone(&store));
        let (status, v) = call(&state, "root", "GET", "/policy", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["policy"], json!(PolicyDoc::default_policy()));
        assert_eq!(v["managed_by_file"], Value::Null);

        let mut bad = vendor_policy();
        bad.rules[1].targets = vec!["lable:db".into()];
        let (status, v) = call(&state, "root", "PUT", "/policy", Some(json!(bad))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains("rule \"users-on-db\"") && msg.contains("targets[0]"),
            "{msg}"
        );
        assert_eq!(policy_store::load_policy_doc(store.as_ref()).unwrap(), None);
        assert_eq!(state.policy.current().doc(), &PolicyDoc::default_policy());

        let (status, v) = call(
            &state,
            "root",
            "PUT",
            "/policy",
            Some(json!({"rules": [{"name": "x"}]})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

        let (status, _) = call(
            &state,
            "alice",
            "PUT",
            "/policy",
            Some(json!(vendor_policy())),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&state, "alice", "GET", "/policy", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, v) = call(
            &state,
            "root",
            "PUT",
            "/policy",
            Some(json!(vendor_policy())),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["policy"], json!(vendor_policy()));
        assert_eq!(state.policy.current().doc(), &vendor_policy());
        assert_eq!(
            policy_store::load_policy_doc(store.as_ref()).unwrap(),
            Some(vendor_policy())
        );
        let (_, v) = call(&state, "root", "GET", "/policy", None).await;
        assert_eq!(v["policy"], json!(vendor_policy()));
    }

    #[tokio::test]
    async fn a_file_managed_policy_cannot_be_changed() {
        let state = state(store()).with_policy(
            PolicyState::default_policy(),
            Some("/etc/portcullis/policy.toml".into()),
        );
        let (status, v) = call(
            &state,
            "root",
            "PUT",
            "/policy",
            Some(json!(vendor_policy())),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("/etc/portcullis/policy.toml"),
            "{v}"
        );
        let (_, v) = call(&state, "root", "GET", "/policy", None).await;
        assert_eq!(v["managed_by_file"], "/etc/portcullis/policy.toml");
        assert_eq!(state.policy.current().doc(), &PolicyDoc::default_policy());
    }

    #[tokio::test]
    async fn explain_uses_the_role_and_labels_from_the_store() {
        let state = state(store());
        let (status, _) = call(
            &state,
            "root",
            "PUT",
            "/policy",
            Some(json!(vendor_policy())),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let open = json!({"action": "open", "entry": "browser"});
        let (status, v) = call(
            &state,
            "root",
            "POST",
            "/policy/explain",
            Some(json!({"user": "alice", "target": "db1", "action": open, "at": 0})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["allowed"], true);
        assert_eq!(v["rule"], "users-on-db");
        assert_eq!(v["role"], "user");
        assert_eq!(v["labels"], json!(["prod", "db"]));
        assert_eq!(v["has_grant"], true);
        assert_eq!(v["considered"].as_array().unwrap().len(), 2);

        let (_, v) = call(
            &state,
            "root",
            "POST",
            "/policy/explain",
            Some(json!({"user": "vic", "target": "db1", "action": open})),
        )
        .await;
        assert_eq!(v["allowed"], false);
        assert_eq!(v["rule"], "no-vendors-on-prod");
        assert_eq!(v["groups"], json!(["vendors"]));
        assert_eq!(v["has_grant"], false);

        let native = json!({"action": "open", "entry": "native"});
        let (_, v) = call(
            &state,
            "root",
            "POST",
            "/policy/explain",
            Some(json!({"user": "alice", "target": "db1", "action": native})),
        )
        .await;
        assert_eq!(v["allowed"], false);
        assert_eq!(v["rule"], "users-on-db");

        let clip = json!({"action": "clipboard", "direction": "target_to_client", "kind": "text", "bytes": 10});
        let (_, v) = call(
            &state,
            "root",
            "POST",
            "/policy/explain",
            Some(json!({"user": "alice", "target": "db1", "action": clip})),
        )
        .await;
        assert_eq!(v["allowed"], false, "{v}");

        for (user, target) in [("nobody", "db1"), ("alice", "nowhere")] {
            let (status, v) = call(
                &state,
                "root",
                "POST",
                "/policy/explain",
                Some(json!({"user": user, "target": target, "action": open})),
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
        }
        let (status, _) = call(
            &state,
            "root",
            "POST",
            "/policy/explain",
            Some(json!({"user": "alice", "target": "db1", "action": {"action": "teleport"}})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call(
            &state,
            "alice",
            "POST",
            "/policy/explain",
            Some(json!({"user": "alice", "target": "db1", "action": open})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn targets_show_labels_to_admins_only() {
        let state = state(store());
        let (_, v) = call(&state, "root", "GET", "/targets", None).await;
        assert_eq!(v[0]["labels"], json!(["prod", "db"]));
        let (_, v) = call(&state, "alice", "GET", "/targets", None).await;
        assert_eq!(v[0]["name"], "db1");
        assert!(
            v[0].get("labels").is_none() && v[0].get("account").is_none(),
            "{v}"
        );
        let new = json!({"name": "web", "address": "h:5901", "password": "pw", "labels": ["prod", "web"]});
        let (status, v) = call(&state, "root", "POST", "/targets", Some(new)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["labels"], json!(["prod", "web"]));
        assert_eq!(
            state.store.get_target("web").unwrap().unwrap().labels,
            ["prod", "web"]
        );
        let dup =
            json!({"name": "web2", "address": "h:5901", "password": "pw", "labels": ["a", "a"]});
        let (status, v) = call(&state, "root", "POST", "/targets", Some(dup)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().contains("given twice"), "{v}");
        let plain = json!({"name": "web3", "address": "h:5901", "password": "pw"});
        let (_, v) = call(&state, "root", "POST", "/targets", Some(plain)).await;
        assert_eq!(v["labels"], json!([]));
    }
}
