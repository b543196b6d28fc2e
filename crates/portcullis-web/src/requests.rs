//! Just-in-time access: a user without standing access asks for a target, for a while and for a
//! reason; the approvers the policy names (never the requester) approve or deny; an approved
//! request lets the user open the target until its time runs out, and then its sessions end.
//!
//! Requests live in the store ([`portcullis_store::AccessRequest`]); every step is in the audit
//! trail (`access_request`) before it takes effect, and announced by the webhook ([`webhook`]).
//! [`sweep`] ends what ran out (every second, on every gateway: the store's change is made once).
//! The routes are [`api`]'s.

pub(crate) mod api;
pub(crate) mod webhook;

use portcullis_audit::{Kind, Record};
use portcullis_store::{AccessRequest, RequestState, StoreError};
use serde_json::json;
use tracing::{info, warn};

use crate::sessions::{close_sessions, SessionFilter};
use crate::AppState;

/// The store's meta key of the settings (webhook, decision time).
pub(crate) const SETTINGS_META: &str = "access_request_settings";

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    crate::ops::now_unix()
}

/// The approved request under which `user` (account `user_id`, when known) may open `target`
/// now, if any.
pub(crate) fn active(
    state: &AppState,
    user: &str,
    user_id: Option<&str>,
    target: &str,
) -> Result<Option<AccessRequest>, StoreError> {
    let now = now();
    Ok(state.store.list_requests()?.into_iter().find(|r| {
        r.user == user
            && user_id.is_none_or(|id| r.user_id == id)
            && r.target == target
            && r.state == RequestState::Approved
            && r.grant_until.is_some_and(|until| until > now)
    }))
}

/// Whether `user` may reach `target` at all: a standing grant, or an approved request now. (The
/// policy then says whether the rule wants one or the other.)
pub(crate) fn has_access(state: &AppState, user: &str, target: &str) -> Result<bool, StoreError> {
    Ok(state.store.has_grant(user, target)? || active(state, user, None, target)?.is_some())
}

/// How a request reads in a session's record: its id, who approved, until when.
pub(crate) fn note(r: &AccessRequest) -> String {
    let by: Vec<&str> = r.approvals.iter().map(|a| a.by.as_str()).collect();
    let until = r
        .grant_until
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    format!(
        "under access request {} (reason: {:?}; approved by {}; until {until})",
        r.id,
        r.reason,
        by.join(", ")
    )
}

/// The audit record of `action` on request `r` by `actor`.
pub(crate) fn record(actor: &str, action: &str, r: &AccessRequest) -> Record {
    let mut rec = Record::new(Kind::ACCESS_REQUEST, actor)
        .target(&r.target)
        .detail("action", action)
        .detail("request", r.id.clone())
        .detail("user", r.user.clone())
        .detail("rule", r.rule.clone())
        .detail("duration_secs", r.duration_secs);
    if let Some(t) = &r.ticket {
        rec = rec.detail("ticket", t.clone());
    }
    rec
}

/// Ends what ran out: approved requests whose time is over (their sessions end, here and on
/// every gateway) and pending ones not decided in time. Each change is made once (the store's
/// compare-and-change), on record first, then announced.
pub(crate) async fn sweep(state: &AppState) {
    let now = now();
    let Ok(requests) = state.store.list_requests() else {
        warn!("cannot read the access requests to end those that ran out");
        return;
    };
    for r in requests {
        let (ran_out, why) = match r.state {
            RequestState::Approved if r.grant_until.is_some_and(|t| t <= now) => {
                (true, "the access it granted ran out")
            }
            RequestState::Pending if r.decide_by <= now => (true, "nobody decided in time"),
            _ => (false, ""),
        };
        if !ran_out {
            continue;
        }
        let was = r.state;
        // On record before the change: the record names the request as it was.
        if let Err(e) = state
            .audit
            .record(record("system", "expired", &r).detail("reason", why))
            .await
        {
            warn!(request = %r.id, error = %e, "cannot record an access request's end: retried");
            // Taking access away is never held back by the trail: its sessions end now, the
            // change waits for the record.
            if was == RequestState::Approved {
                end_sessions(state, &r, "the access granted by your request ended");
            }
            continue;
        }
        let changed = state.store.update_request(&r.id, &mut |stored| {
            if stored.state != was {
                return false;
            }
            stored.state = RequestState::Expired;
            stored.ended = Some((now, why.to_owned()));
            true
        });
        match changed {
            Ok(Some(stored)) if stored.state == RequestState::Expired => {
                if was == RequestState::Approved {
                    end_sessions(state, &stored, "the access granted by your request ended");
                }
                info!(request = %r.id, user = %r.user, target = %r.target, why, "access request ended");
                state.webhook.announce(state, "request.expired", &stored);
            }
            Ok(_) => {}
            Err(e) => warn!(request = %r.id, error = %e, "cannot end an access request"),
        }
    }
}

/// Ends the sessions of `r`'s user on its target (the access is over), telling them why.
pub(crate) fn end_sessions(state: &AppState, r: &AccessRequest, why: &str) {
    // A standing grant still lets them in where the policy allows it; sessions under a rule of
    // access by request only rest on this request.
    close_sessions(
        state,
        &SessionFilter::user_target(&r.user, &r.target),
        &format!("{why} (request {})", r.id),
    );
}

/// The sweeper: [`sweep`] every second until the gateway stops.
pub fn spawn_sweeper(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sweep(&state).await;
        }
    })
}

/// The settings of access requests, as stored.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Settings {
    /// Where requests and decisions are announced (JSON POST); none: not announced.
    #[serde(default)]
    pub(crate) webhook_url: Option<String>,
    /// The webhook's HMAC key, sealed under the gateway's key.
    #[serde(default)]
    pub(crate) sealed_webhook_secret: Vec<u8>,
    /// A request not decided within this many seconds expires (default one day).
    #[serde(default)]
    pub(crate) decide_within_secs: Option<u64>,
}

/// A day.
pub(crate) const DEFAULT_DECIDE_WITHIN_SECS: u64 = 86_400;

impl Settings {
    pub(crate) fn load(store: &dyn portcullis_store::Store) -> Result<Settings, crate::WebError> {
        let Some(bytes) = store.get_meta(SETTINGS_META)? else {
            return Ok(Settings::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            crate::WebError::Internal(format!(
                "the stored access request settings are unreadable: {e}"
            ))
        })
    }

    pub(crate) fn save(&self, store: &dyn portcullis_store::Store) -> Result<(), crate::WebError> {
        let bytes =
            serde_json::to_vec(self).map_err(|e| crate::WebError::Internal(e.to_string()))?;
        store.put_meta(SETTINGS_META, &bytes)?;
        Ok(())
    }

    pub(crate) fn view(&self) -> serde_json::Value {
        json!({
            "webhook_url": self.webhook_url,
            "webhook_secret_set": !self.sealed_webhook_secret.is_empty(),
            "decide_within_secs": self.decide_within_secs.unwrap_or(DEFAULT_DECIDE_WITHIN_SECS),
        })
    }
}

/// Additional data binding the sealed webhook secret.
pub(crate) const WEBHOOK_AAD: &[u8] = b"portcullis webhook secret v1";

/// The key rotation's step for the webhook secret: sealed again under `new`.
pub fn reseal_settings(
    store: &dyn portcullis_store::Store,
    old: &portcullis_secrets::SecretKey,
    new: &portcullis_secrets::SecretKey,
) -> Result<(), String> {
    let mut settings = Settings::load(store).map_err(|e| e.to_string())?;
    if settings.sealed_webhook_secret.is_empty()
        || new
            .open(&settings.sealed_webhook_secret, WEBHOOK_AAD)
            .is_ok()
    {
        return Ok(());
    }
    let plain = zeroize::Zeroizing::new(
        old.open(&settings.sealed_webhook_secret, WEBHOOK_AAD)
            .map_err(|e| format!("the webhook secret: {e}"))?,
    );
    settings.sealed_webhook_secret = new.seal(&plain, WEBHOOK_AAD);
    settings.save(store).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_secrets::SecretKey;
    use portcullis_store::{MemoryStore, Store};

    use super::*;

    /// A key rotation seals the webhook secret again under the new key (once: a rotation run
    /// again after an interruption leaves it), and it is never stored in the clear.
    #[test]
    fn a_key_rotation_reseals_the_webhook_secret() {
        let store = MemoryStore::new();
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let secret = b"webhook-secret-0123456789";
        let settings = Settings {
            webhook_url: Some("https://chat.example/hook".into()),
            sealed_webhook_secret: old.seal(secret, WEBHOOK_AAD),
            decide_within_secs: None,
        };
        settings.save(&store).unwrap();
        let stored = store.get_meta(SETTINGS_META).unwrap().unwrap();
        assert!(!stored.windows(secret.len()).any(|w| w == secret));

        reseal_settings(&store, &old, &new).unwrap();
        let after = Settings::load(&store).unwrap();
        assert_eq!(
            new.open(&after.sealed_webhook_secret, WEBHOOK_AAD).unwrap(),
            secret
        );
        assert!(old.open(&after.sealed_webhook_secret, WEBHOOK_AAD).is_err());
        reseal_settings(&store, &old, &new).unwrap();
        assert_eq!(
            Settings::load(&store).unwrap().sealed_webhook_secret,
            after.sealed_webhook_secret
        );
        // Sealed under neither key: the rotation stops with why.
        let third = SecretKey::generate();
        assert!(reseal_settings(&store, &third, &SecretKey::generate())
            .unwrap_err()
            .contains("webhook secret"));
    }
}
