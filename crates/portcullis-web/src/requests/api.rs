//! The access request routes.
//!
//! - `GET /requests/targets`: what the caller may ask for (targets whose first matching rule
//!   gives access by request), with who approves, how many, and the longest duration.
//! - `POST /requests {target, duration_secs, reason, ticket?}`: ask.
//! - `GET /requests`: the caller's own requests and those they may decide (administrators and
//!   the security team: all), newest first, each with `can_decide`, `can_revoke` and
//!   `remaining_secs`.
//! - `POST /requests/{id}/approve`, `/deny` `{comment}`: an approver's word (never the
//!   requester's; once per approver); `POST /requests/{id}/cancel`: the requester withdraws,
//!   or an administrator, the security team or an approver revokes (its sessions end).
//! - `GET/PUT /requests/settings` (administrators): the webhook (its secret write-only) and how
//!   long a request may wait for a decision.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_secrets::Secret;
use portcullis_store::{AccessRequest, RequestDecision, RequestState, Role, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::{now, record, Settings, DEFAULT_DECIDE_WITHIN_SECS, WEBHOOK_AAD};
use crate::audit::admin_change;
use crate::extract::{Admin, AuthUser, Body};
use crate::{AppState, WebError};

/// Longest reason.
const MAX_REASON: usize = 500;
/// Longest ticket reference.
const MAX_TICKET: usize = 64;
/// Longest comment on a decision.
const MAX_COMMENT: usize = 500;
/// Requests one user may have waiting at once.
const MAX_PENDING_PER_USER: usize = 10;
/// Requests one user may make in a day (the store keeps them all).
const MAX_PER_USER_PER_DAY: usize = 50;

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/requests", get(list).post(create))
        .route("/requests/targets", get(requestable))
        .route("/requests/settings", get(settings).put(put_settings))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/deny", post(deny))
        .route("/requests/{id}/cancel", post(cancel))
}

async fn requestable(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Value>, WebError> {
    let me = user.account(&state)?;
    let policy = state.policy.current();
    let list: Vec<Value> = state
        .store
        .list_targets()?
        .iter()
        .filter_map(|t| {
            let on = crate::policy::target_of(t);
            policy
                .requestable(&crate::policy::subject_of(&me), &on)
                .map(|r| {
                    json!({
                        "target": t.name, "rule": r.rule, "approvers": r.approvers,
                        "approvals": r.approvals, "max_duration_secs": r.max_duration_secs,
                    })
                })
        })
        .collect();
    Ok(Json(json!({ "targets": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    target: String,
    duration_secs: u64,
    reason: String,
    #[serde(default)]
    ticket: Option<String>,
}

fn text_ok(text: &str, max: usize) -> bool {
    text.chars().count() <= max && !text.chars().any(|c| c.is_control() && c != '\n')
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Body(body): Body<NewRequest>,
) -> Result<(axum::http::StatusCode, Json<Value>), WebError> {
    let me = user.account(&state)?;
    if me.locked {
        return Err(WebError::Forbidden(
            "your account is locked by the security team".into(),
        ));
    }
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || !text_ok(&reason, MAX_REASON) {
        return Err(WebError::BadRequest(format!(
            "reason: say why, in 1 to {MAX_REASON} characters"
        )));
    }
    let ticket = body
        .ticket
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    if ticket
        .as_deref()
        .is_some_and(|t| !text_ok(t, MAX_TICKET) || t.contains('\n'))
    {
        return Err(WebError::BadRequest(format!(
            "ticket: at most {MAX_TICKET} characters on one line"
        )));
    }
    let target = state
        .store
        .get_target(&body.target)?
        .ok_or_else(|| WebError::NotFound(format!("no target named {:?}", body.target)))?;
    let on = crate::policy::target_of(&target);
    let terms = state
        .policy
        .current()
        .requestable(&crate::policy::subject_of(&me), &on)
        .ok_or_else(|| {
            WebError::Forbidden(format!(
                "the policy lets nobody request {:?} for you: ask an administrator",
                target.name
            ))
        })?;
    if body.duration_secs == 0 || body.duration_secs > terms.max_duration_secs {
        return Err(WebError::BadRequest(format!(
            "duration_secs: 1 to {} (rule {:?})",
            terms.max_duration_secs, terms.rule
        )));
    }
    let settings = Settings::load(&*state.store)?;
    let now = now();
    let mine: Vec<AccessRequest> = state
        .store
        .list_requests()?
        .into_iter()
        .filter(|r| r.user_id == me.id)
        .collect();
    let open = |r: &AccessRequest| {
        r.state == RequestState::Pending
            || (r.state == RequestState::Approved && r.grant_until.is_some_and(|t| t > now))
    };
    if let Some(r) = mine.iter().find(|r| r.target == target.name && open(r)) {
        return Err(WebError::Conflict(format!(
            "you already have request {} for {:?} ({})",
            r.id,
            target.name,
            serde_json::to_value(r.state).unwrap_or_default()
        )));
    }
    if mine
        .iter()
        .filter(|r| r.state == RequestState::Pending)
        .count()
        >= MAX_PENDING_PER_USER
    {
        return Err(WebError::TooManyRequests(format!(
            "you have {MAX_PENDING_PER_USER} requests waiting already"
        )));
    }
    if mine.iter().filter(|r| r.created_at > now - 86_400).count() >= MAX_PER_USER_PER_DAY {
        return Err(WebError::TooManyRequests(format!(
            "you made {MAX_PER_USER_PER_DAY} requests in the last day: ask an administrator"
        )));
    }
    let decide_within = settings
        .decide_within_secs
        .unwrap_or(DEFAULT_DECIDE_WITHIN_SECS);
    let request = AccessRequest {
        id: format!("req_{}", portcullis_secrets::random_token(9)),
        user: me.name.clone(),
        user_id: me.id.clone(),
        target: target.name.clone(),
        reason,
        ticket,
        duration_secs: body.duration_secs,
        rule: terms.rule.clone(),
        approvals_needed: terms.approvals,
        created_at: now,
        decide_by: now.saturating_add(i64::try_from(decide_within).unwrap_or(i64::MAX)),
        state: RequestState::Pending,
        approvals: Vec::new(),
        denial: None,
        grant_until: None,
        ended: None,
    };
    state
        .audit
        .before(
            record(&me.name, "requested", &request).detail("reason", request.reason.clone()),
            || Ok(state.store.create_request(&request)?),
        )
        .await?;
    info!(request = %request.id, user = %me.name, target = %target.name, "access requested");
    state.webhook.announce(&state, "request.created", &request);
    Ok((
        axum::http::StatusCode::CREATED,
        Json(view(&state, &request, Some(&me))),
    ))
}

/// A request as the API shows it, with whether `viewer` may decide it and the time left.
fn view(state: &AppState, r: &AccessRequest, viewer: Option<&UserRecord>) -> Value {
    let now = now();
    let mut v = serde_json::to_value(r).unwrap_or_default();
    let remaining = match r.state {
        RequestState::Pending => Some(r.decide_by - now),
        RequestState::Approved => r.grant_until.map(|t| t - now),
        _ => None,
    };
    v["remaining_secs"] = json!(remaining.map(|s| s.max(0)));
    v["can_decide"] = json!(viewer.is_some_and(|u| may_decide(state, r, u).is_ok()));
    v["can_revoke"] = json!(viewer.is_some_and(|u| {
        u.id != r.user_id
            && may_revoke(state, r, u)
            && matches!(r.state, RequestState::Pending | RequestState::Approved)
    }));
    v
}

/// Whether `u` may take request `r` back (not their own): an administrator, the security team,
/// or one of its approvers, unless locked.
fn may_revoke(state: &AppState, r: &AccessRequest, u: &UserRecord) -> bool {
    !u.locked
        && (matches!(u.role, Role::Admin | Role::Soc)
            || state
                .policy
                .current()
                .may_approve(&r.rule, &crate::policy::subject_of(u)))
}

/// How many approvals `r` needs under the policy now: its rule must still be the one that makes
/// the target requestable for the requester (else 409: the policy changed, ask again).
fn current_terms(state: &AppState, r: &AccessRequest) -> Result<u32, WebError> {
    let requester = state
        .store
        .get_user(&r.user)?
        .filter(|u| u.id == r.user_id)
        .ok_or_else(|| WebError::Conflict("the requester's account is gone".into()))?;
    let target = state
        .store
        .get_target(&r.target)?
        .ok_or_else(|| WebError::Conflict(format!("target {:?} is gone", r.target)))?;
    let on = crate::policy::target_of(&target);
    match state
        .policy
        .current()
        .requestable(&crate::policy::subject_of(&requester), &on)
    {
        Some(now) if now.rule == r.rule => Ok(now.approvals.max(r.approvals_needed)),
        _ => Err(WebError::Conflict(format!(
            "the policy changed since request {} was made (rule {:?} no longer decides it): \
             the requester must ask again",
            r.id, r.rule
        ))),
    }
}

/// Whether `u` may approve or deny `r` now; `Err` says why not.
fn may_decide(state: &AppState, r: &AccessRequest, u: &UserRecord) -> Result<(), WebError> {
    if u.id == r.user_id || u.name == r.user {
        return Err(WebError::Forbidden(
            "you cannot decide your own request: another approver must".into(),
        ));
    }
    if u.locked {
        return Err(WebError::Forbidden("your account is locked".into()));
    }
    if !state
        .policy
        .current()
        .may_approve(&r.rule, &crate::policy::subject_of(u))
    {
        return Err(WebError::Forbidden(format!(
            "the policy's rule {:?} does not name you as an approver",
            r.rule
        )));
    }
    if r.state != RequestState::Pending {
        return Err(WebError::Conflict(format!(
            "request {} is {} already",
            r.id,
            serde_json::to_value(r.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )));
    }
    if r.decide_by <= now() {
        return Err(WebError::Conflict(format!(
            "request {} expired before this decision: nobody decided in time",
            r.id
        )));
    }
    if r.approvals.iter().any(|a| a.by == u.name) {
        return Err(WebError::Conflict(
            "you approved this request already: another approver must".into(),
        ));
    }
    Ok(())
}

async fn list(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>, WebError> {
    let me = user.account(&state)?;
    let sees_all = matches!(me.role, Role::Admin | Role::Soc);
    let policy = state.policy.current();
    let mut requests: Vec<AccessRequest> = state
        .store
        .list_requests()?
        .into_iter()
        .filter(|r| {
            sees_all
                || r.user_id == me.id
                || policy.may_approve(&r.rule, &crate::policy::subject_of(&me))
        })
        .collect();
    requests.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let list: Vec<Value> = requests
        .iter()
        .map(|r| view(&state, r, Some(&me)))
        .collect();
    Ok(Json(json!({ "requests": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    comment: String,
}

/// Approves (`approve`) or denies request `id` as `user`.
async fn decide(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    comment: String,
    approve: bool,
) -> Result<Json<Value>, WebError> {
    let me = user.account(state)?;
    let comment = comment.trim().to_owned();
    if !text_ok(&comment, MAX_COMMENT) {
        return Err(WebError::BadRequest(format!(
            "comment: at most {MAX_COMMENT} characters"
        )));
    }
    let r = state
        .store
        .get_request(id)?
        .ok_or_else(|| WebError::NotFound(format!("no access request {id:?}")))?;
    may_decide(state, &r, &me)?;
    // The policy now must still make this target requestable for the requester under the same
    // rule; its approvals now count (a rule made stricter since applies).
    let needed = current_terms(state, &r)?;
    let completes = approve && u32::try_from(r.approvals.len() + 1).unwrap_or(u32::MAX) >= needed;
    let action = match (approve, completes) {
        (true, true) => "approved",
        (true, false) => "approval",
        (false, _) => "denied",
    };
    let word = RequestDecision {
        by: me.name.clone(),
        at: now(),
        comment: comment.clone(),
    };
    let mut refused: Option<WebError> = None;
    let changed = state
        .audit
        .before(
            record(&me.name, action, &r).detail("comment", comment.clone()),
            || {
                let stored = state.store.update_request(id, &mut |stored| {
                    // Checked again on the stored request (another approver, the sweeper, a
                    // withdrawal may have come first).
                    refused = may_decide(state, stored, &me).err();
                    if refused.is_some() {
                        return false;
                    }
                    if approve {
                        stored.approvals.push(word.clone());
                        stored.approvals_needed = needed;
                        if u32::try_from(stored.approvals.len()).unwrap_or(u32::MAX) >= needed {
                            stored.state = RequestState::Approved;
                            let secs = i64::try_from(stored.duration_secs).unwrap_or(i64::MAX);
                            stored.grant_until = Some(word.at.saturating_add(secs));
                        }
                    } else {
                        stored.state = RequestState::Denied;
                        stored.denial = Some(word.clone());
                    }
                    true
                })?;
                match (refused.take(), stored) {
                    (Some(e), _) => Err(e),
                    (None, Some(s)) => Ok(s),
                    (None, None) => Err(WebError::NotFound(format!("no access request {id:?}"))),
                }
            },
        )
        .await?;
    if changed.state == RequestState::Approved && !completes {
        // Another approval came meanwhile and this one completed it after all: on record so.
        state
            .audit
            .record(
                record(&me.name, "approved", &changed)
                    .detail("until", changed.grant_until.unwrap_or_default()),
            )
            .await?;
    }
    let event = match changed.state {
        RequestState::Approved => "request.approved",
        RequestState::Denied => "request.denied",
        _ => "request.approval",
    };
    info!(request = %id, by = %me.name, event, "access request decided");
    state.webhook.announce(state, event, &changed);
    Ok(Json(view(state, &changed, Some(&me))))
}

async fn approve(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Body(body): Body<Decision>,
) -> Result<Json<Value>, WebError> {
    decide(&state, &user, &id, body.comment, true).await
}

async fn deny(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Body(body): Body<Decision>,
) -> Result<Json<Value>, WebError> {
    decide(&state, &user, &id, body.comment, false).await
}

/// The requester withdraws a request, or an administrator, the security team or one of its
/// approvers takes it back (waiting, or approved: its sessions end at once).
async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    let me = user.account(&state)?;
    let r = state
        .store
        .get_request(&id)?
        .ok_or_else(|| WebError::NotFound(format!("no access request {id:?}")))?;
    let own = r.user_id == me.id;
    if !own && !may_revoke(&state, &r, &me) {
        return Err(WebError::NotFound(format!(
            "no access request {id:?} of yours"
        )));
    }
    let (action, why) = if own {
        ("cancelled", "withdrawn by the requester".to_owned())
    } else {
        ("revoked", format!("revoked by {}", me.name))
    };
    let was = r.state;
    if !matches!(was, RequestState::Pending | RequestState::Approved) {
        return Err(WebError::Conflict(format!("request {id} is over already")));
    }
    let changed = state
        .audit
        .before(record(&me.name, action, &r), || {
            state
                .store
                .update_request(&id, &mut |stored| {
                    if stored.state != was {
                        return false;
                    }
                    stored.state = RequestState::Cancelled;
                    stored.ended = Some((now(), why.clone()));
                    true
                })?
                .filter(|s| s.state == RequestState::Cancelled)
                .ok_or_else(|| WebError::Conflict("the request changed meanwhile".into()))
        })
        .await?;
    if was == RequestState::Approved {
        let told = if own {
            "you withdrew the access request".to_owned()
        } else {
            format!("your access was {why}")
        };
        super::end_sessions(&state, &changed, &told);
    }
    state
        .webhook
        .announce(&state, "request.cancelled", &changed);
    Ok(Json(view(&state, &changed, Some(&me))))
}

async fn settings(State(state): State<AppState>, _admin: Admin) -> Result<Json<Value>, WebError> {
    Ok(Json(Settings::load(&*state.store)?.view()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    #[serde(default)]
    webhook_url: Option<String>,
    /// Left out: kept.
    #[serde(default)]
    webhook_secret: Option<Secret>,
    #[serde(default)]
    decide_within_secs: Option<u64>,
}

async fn put_settings(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(body): Body<SettingsBody>,
) -> Result<Json<Value>, WebError> {
    let before = Settings::load(&*state.store)?;
    let mut after = before.clone();
    after.webhook_url = body.webhook_url.filter(|u| !u.trim().is_empty());
    if let Some(url) = &after.webhook_url {
        let parsed =
            url::Url::parse(url).map_err(|e| WebError::BadRequest(format!("webhook_url: {e}")))?;
        if !crate::sso::allowed_url(&parsed) || url.len() > 2048 {
            return Err(WebError::BadRequest(
                "webhook_url: an https URL (or http on a loopback address)".into(),
            ));
        }
    }
    if let Some(secret) = &body.webhook_secret {
        let s = secret.expose();
        if s.len() < 16 || s.len() > 512 {
            return Err(WebError::BadRequest(
                "webhook_secret: 16 to 512 bytes".into(),
            ));
        }
        after.sealed_webhook_secret = state.key.seal(s.as_bytes(), WEBHOOK_AAD);
    }
    if after.webhook_url.is_some() && after.sealed_webhook_secret.is_empty() {
        return Err(WebError::BadRequest(
            "webhook_secret: required with a webhook (deliveries are signed with it)".into(),
        ));
    }
    if let Some(secs) = body.decide_within_secs {
        if !(1..=30 * 86_400).contains(&secs) {
            return Err(WebError::BadRequest(
                "decide_within_secs: 1 s to 30 days".into(),
            ));
        }
        after.decide_within_secs = Some(secs);
    }
    let mut shown_after = after.view();
    if body.webhook_secret.is_some() {
        shown_after["webhook_secret"] = json!("(changed)");
    }
    state
        .audit
        .before(
            admin_change(
                &admin.name,
                "access_request_settings",
                before.view(),
                shown_after,
            ),
            || after.save(&*state.store),
        )
        .await?;
    Ok(Json(after.view()))
}
