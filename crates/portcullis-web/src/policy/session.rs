//! The policy's word on opening a session, for both entry paths (the session WebSocket and the
//! native RDP gate): the user's role and the target's labels come from the store, the time from
//! the clock, the verdict from portcullis-policy.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_policy::{Entry, SessionGrant};
use portcullis_store::TargetRecord;
use tracing::warn;

use crate::AppState;

/// Decides whether `user` may open `target` through `entry` now. `Err` is the explanation to
/// show: the rule that refused (or that none matched), or a locked account. A store failure
/// refuses too (fail closed).
pub(crate) fn decide_open(
    state: &AppState,
    user: &str,
    target: &TargetRecord,
    entry: Entry,
) -> Result<SessionGrant, String> {
    // A draining gateway takes no new session (those running go on); the load balancer sends
    // the next attempt to another gateway, since this one no longer answers ready.
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(
            "this gateway is draining for maintenance and takes no new session: connect again"
                .into(),
        );
    }
    let account = match state.store.get_user(user) {
        Ok(Some(u)) if u.locked => {
            warn!(%user, target = %target.name, "session refused: the account is locked");
            return Err("your account is locked by the security team".into());
        }
        Ok(Some(u)) => u,
        Ok(None) => return Err(format!("no user {user:?}")),
        Err(e) => {
            warn!(%user, error = %e, "cannot read the user for a policy decision");
            return Err("the policy could not be checked, so the session was refused".into());
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let who = super::subject_of(&account);
    let target_ref = super::target_of(target);
    let policy = state.policy.current();
    let grant = policy
        .session(&who, &target_ref, entry, now)
        .into_result()
        .map_err(|denial| {
            let why = format!("refused by the policy: {}", denial.explain());
            warn!(%user, target = %target.name, ?entry, reason = %why, "session refused by the policy");
            why
        })?
        // The risk rules watching sessions on this target ride with the grant.
        .with_risk(policy.risk_for(&target_ref));
    // The rule gives access by approved request only: a standing grant does not count.
    if grant.request_only() {
        return match crate::requests::active(state, user, Some(&account.id), &target.name) {
            // Approved under this very rule (the policy may have changed since). The sweeper
            // ends the session when the access runs out (telling why); should it not, the
            // session ends by itself 2 s later.
            Ok(Some(r)) if r.rule == grant.rule() => {
                let until = r.grant_until.unwrap_or(0).saturating_add(2);
                Ok(grant.with_note(&crate::requests::note(&r)).until(until))
            }
            Ok(Some(r)) => {
                warn!(%user, target = %target.name, request = %r.id, "session refused: the request was approved under another rule");
                Err(format!(
                    "your access request {} was approved under rule {:?}, and the policy now \
                     asks for rule {:?}: request access again",
                    r.id,
                    r.rule,
                    grant.rule()
                ))
            }
            Ok(None) => {
                warn!(%user, target = %target.name, rule = grant.rule(), "session refused: no approved access request");
                Err(format!(
                    "access to {:?} is by approved request only (rule {:?}): ask for it on the \
                     Requests page",
                    target.name,
                    grant.rule()
                ))
            }
            Err(e) => {
                warn!(%user, error = %e, "cannot read the access requests for a policy decision");
                Err("the policy could not be checked, so the session was refused".into())
            }
        };
    }
    match state.store.has_grant(user, &target.name) {
        Ok(true) => Ok(grant),
        Ok(false) => Err(format!("you have no grant for target {:?}", target.name)),
        Err(e) => {
            warn!(%user, error = %e, "cannot read the grants for a policy decision");
            Err("the policy could not be checked, so the session was refused".into())
        }
    }
}
