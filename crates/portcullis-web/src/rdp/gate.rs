//! The gateway's side of native RDP connections: who may log in, to which target, and opening
//! the session through the broker (the same path as a browser session).
//!
//! Target selection, in the user name a native client sends:
//! - `alice#web01`: gateway user `alice`, target `web01`;
//! - `alice`: the only target `alice` has a grant for (refused when there are several);
//! - the domain field is ignored (clients fill it in on their own).
//!
//! The password is the gateway password of that user (TLS logon only: NLA would need the
//! password's NT hash on our side, which we do not keep). Or the client presents a one-time
//! ticket from an `.rdp` file with its one-time password (see [`crate::rdp::tickets`]), with NLA
//! when the client offers it.
//!
//! A user with two-factor authentication on, or of a role that requires it, cannot log in with
//! the password: only with a ticket, which their browser gets after the full (code) login.

use std::net::SocketAddr;

use portcullis_audit::{Kind, Record};
use portcullis_broker::{OpenRequest, RawViewer};
use portcullis_core::desktop::InputEvent;
use portcullis_core::session::{EntryPath, SessionEnd};
use portcullis_policy::{Entry, SessionGrant};
use portcullis_rdp::server::{
    Admission, BoxFuture, Denial, Display, DisplayEvent, Gate, Login, NlaIdentity, Refusal,
};
use portcullis_store::TargetRecord;
use tracing::{info, warn};

use crate::login::{Refused, Verified};
use crate::policy::session as session_policy;
use crate::rdp::tickets::TICKET_PREFIX;
use crate::{ops, AppState};

/// The [`Gate`] of the gateway's RDP listener.
#[derive(Clone)]
pub struct RdpGate {
    state: AppState,
    pre_auth: crate::rdp::preauth::PreAuth,
}

impl std::fmt::Debug for RdpGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpGate").finish_non_exhaustive()
    }
}

fn deny(refusal: Refusal, message: impl Into<String>) -> Denial {
    Denial {
        refusal,
        message: message.into(),
    }
}

/// Splits `alice#web01` into the user and the target, if one is named.
pub fn parse_username(username: &str) -> (&str, Option<&str>) {
    match username.split_once('#') {
        Some((user, target)) => (user, Some(target)),
        None => (username, None),
    }
}

impl RdpGate {
    /// A gate over the gateway's state.
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            pre_auth: crate::rdp::preauth::PreAuth::default(),
        }
    }

    /// The connections waiting for their login: the listener takes a place for each new one,
    /// and an admitted login gives it back.
    pub fn pre_auth(&self) -> crate::rdp::preauth::PreAuth {
        self.pre_auth.clone()
    }

    async fn check(&self, login: Login) -> Result<Admission, Denial> {
        if let Some(token) = login
            .routing_token
            .as_deref()
            .filter(|t| t.starts_with(TICKET_PREFIX))
        {
            return self.redeem(token, &login);
        }
        let (user, target) = parse_username(&login.username);
        let bad = || {
            deny(
                Refusal::BadCredentials,
                format!("wrong password for {user:?}"),
            )
        };
        let address = login.client_addr.ip();
        let attempt = crate::login::Attempt {
            user,
            password: &login.password,
            address,
        };
        // The verification slot is held until the grant is checked.
        let Verified {
            user: record,
            slot: _permit,
        } = match crate::login::check_password(&self.state, attempt).await {
            Ok(verified) => verified,
            Err(Refused::Oversized | Refused::WrongPassword) => return Err(bad()),
            // The lock-out comes first: a native client is told it is locked out even when
            // the slots are busy.
            Err(Refused::LockedOut { wait, .. }) => {
                return Err(deny(
                    Refusal::BadCredentials,
                    format!(
                    "too many failed logins for {user:?} or from {address}: locked out for {} s",
                    wait.as_secs().max(1)
                ),
                ))
            }
            // The same slots as the web's logins, and like them never waiting for one: queued
            // native attempts would hold the slots and keep browser logins at 429.
            Err(Refused::SsoRequired(_)) => {
                return Err(deny(
                    Refusal::BadCredentials,
                    format!(
                        "{user:?} signs in through single sign-on: the password does not open \
                         native RDP sessions; use a one-time .rdp file from the browser"
                    ),
                ))
            }
            Err(Refused::Busy) => {
                return Err(deny(
                    Refusal::Busy,
                    "too many logins at once; the client should try again shortly",
                ))
            }
            Err(Refused::Store(e)) => return Err(deny(Refusal::BadCredentials, e.to_string())),
            // A failed verification counts as a wrong password here.
            Err(Refused::Internal(_)) => {
                self.state
                    .throttle
                    .failed(user, address, crate::auth::now_ms());
                return Err(bad());
            }
        };
        // Two-factor users (or roles that require it) never get in with the password alone:
        // they use a one-time ticket from the browser, which needs the full login.
        if crate::mfa::needs_mfa(&self.state, &record) {
            warn!(user = %user, "native RDP password login refused: two-factor authentication is required");
            return Err(deny(
                Refusal::BadCredentials,
                format!(
                    "two-factor authentication is required for {user:?}: the password alone does not \
                     open native RDP sessions; use a one-time .rdp file from the browser"
                ),
            ));
        }
        self.state.throttle.succeeded(user);
        let user_id = record.id;
        let target = match target {
            Some(t) => t.to_owned(),
            None => {
                let grants: Vec<String> = self
                    .state
                    .store
                    .list_grants()
                    .map_err(|e| deny(Refusal::NotAllowed, e.to_string()))?
                    .into_iter()
                    .filter(|g| g.user == user)
                    .map(|g| g.target)
                    .collect();
                match grants.as_slice() {
                    [only] => only.clone(),
                    [] => return Err(deny(Refusal::NotAllowed, format!("{user} has no grant"))),
                    _ => {
                        return Err(deny(
                            Refusal::NotAllowed,
                            format!(
                                "{user} has several grants and named no target (use user#target)"
                            ),
                        ))
                    }
                }
            }
        };
        let granted = crate::requests::has_access(&self.state, user, &target)
            .map_err(|e| deny(Refusal::NotAllowed, e.to_string()))?;
        if !granted {
            return Err(deny(
                Refusal::NotAllowed,
                format!("{user} has no grant for target {target:?}"),
            ));
        }
        Ok(Admission {
            user: user.to_owned(),
            user_id,
            target,
        })
    }

    /// A ticket from an `.rdp` file: valid once, before it expires, for the user it was issued
    /// to (the client may leave the user name empty, but not name someone else).
    fn redeem(&self, token: &str, login: &Login) -> Result<Admission, Denial> {
        let secret = (!login.nla).then_some(login.password.as_str());
        let (user, user_id, target) =
            self.state.rdp_tickets.take(token, secret).ok_or_else(|| {
                deny(
                    Refusal::BadCredentials,
                    "unknown, used or expired RDP ticket, or wrong ticket password",
                )
            })?;
        let (named, named_target) = parse_username(&login.username);
        if !(named.is_empty() || named == user) || named_target.is_some_and(|t| t != target) {
            return Err(deny(
                Refusal::BadCredentials,
                format!("RDP ticket of {user} presented as {:?}", login.username),
            ));
        }
        // The grant may have been revoked since the ticket was issued.
        let granted = crate::requests::has_access(&self.state, &user, &target)
            .map_err(|e| deny(Refusal::NotAllowed, e.to_string()))?;
        if !granted {
            return Err(deny(
                Refusal::NotAllowed,
                format!("{user} has no grant for {target:?}"),
            ));
        }
        Ok(Admission {
            user,
            user_id,
            target,
        })
    }

    /// The target record and what the policy allows the admitted user on it (asked again when
    /// the session opens: the policy may have changed since the login).
    fn grant(&self, admission: &Admission) -> Result<(TargetRecord, SessionGrant), Denial> {
        let target = self
            .state
            .store
            .get_target(&admission.target)
            .map_err(|e| deny(Refusal::TargetFailed, e.to_string()))?
            .ok_or_else(|| {
                deny(
                    Refusal::NotAllowed,
                    format!("no target {:?}", admission.target),
                )
            })?;
        let grant =
            session_policy::decide_open(&self.state, &admission.user, &target, Entry::Native)
                .map_err(|why| deny(Refusal::NotAllowed, why))?;
        Ok((target, grant))
    }

    async fn open_session(
        &self,
        admission: Admission,
        client_addr: SocketAddr,
        size: (u16, u16),
    ) -> Result<Box<dyn Display>, Denial> {
        let (target, grant) = self.grant(&admission)?;
        let keeper = crate::rdp::identity::keeper(&self.state, &target.name, &admission.user);
        let spec = ops::target_spec(
            &self.state.key,
            &target,
            Some(size),
            self.state.rdp_remotefx,
            Some(keeper),
        )
        .map_err(|e| deny(Refusal::TargetFailed, e.to_string()))?;
        // The account that logged in, still there: if the name was given to a new account
        // since the login (or the ticket was issued), the open is refused rather than made for
        // the wrong one.
        let user_id = self
            .state
            .store
            .get_user(&admission.user)
            .map_err(|e| deny(Refusal::TargetFailed, e.to_string()))?
            .map(|u| u.id)
            .filter(|id| *id == admission.user_id)
            .ok_or_else(|| {
                deny(
                    Refusal::NotAllowed,
                    format!("the account {:?} that logged in is gone", admission.user),
                )
            })?;
        let req = OpenRequest {
            user_id,
            user: admission.user.clone(),
            target: admission.target.clone(),
            spec,
            client_addr: client_addr.to_string(),
            entry: EntryPath::Rdp,
            grant,
        };
        let handle = self.state.broker.open(req).await.map_err(|e| {
            warn!(user = %admission.user, target = %admission.target, error = %e.message, "native session failed to open");
            deny(Refusal::TargetFailed, e.message)
        })?;
        crate::behaviour::watch(&self.state, handle.clone());
        info!(session = %handle.id(), user = %admission.user, target = %admission.target, "native RDP viewer attached");
        let viewer = handle.attach_raw_viewer(&admission.user);
        Ok(Box::new(NativeView { viewer }))
    }
}

/// The session a native client opened: it lives as long as the client's connection.
struct NativeView {
    viewer: RawViewer,
}

impl Drop for NativeView {
    fn drop(&mut self) {
        // The leave goes in the event track before the end.
        self.viewer
            .leave_and_end(SessionEnd::NativeClientDisconnected);
    }
}

impl Display for NativeView {
    fn size(&self) -> (u32, u32) {
        Display::size(&self.viewer)
    }

    fn next(&mut self) -> BoxFuture<'_, DisplayEvent> {
        Display::next(&mut self.viewer)
    }

    fn input(&mut self, input: InputEvent) -> BoxFuture<'_, ()> {
        Display::input(&mut self.viewer, input)
    }

    fn refresh(&mut self) {
        Display::refresh(&mut self.viewer);
    }

    fn device(&mut self, pdu: Vec<u8>) -> BoxFuture<'_, ()> {
        Display::device(&mut self.viewer, pdu)
    }

    /// The session ends with the listener's reason, which the session's end record keeps (the
    /// first ending wins over the generic one of `Drop`).
    fn cut_off(&mut self, reason: String) {
        self.viewer
            .leave_and_end(SessionEnd::ClientFault { message: reason });
    }
}

impl Gate for RdpGate {
    fn nla_identity(&self, routing_token: &str) -> Option<NlaIdentity> {
        if !routing_token.starts_with(TICKET_PREFIX) {
            return None;
        }
        let (username, password) = self.state.rdp_tickets.nla_identity(routing_token)?;
        Some(NlaIdentity {
            username,
            password: password.as_str().to_owned(),
        })
    }

    fn admit(&self, login: Login) -> BoxFuture<'_, Result<Admission, Denial>> {
        Box::pin(async move {
            let typed: String = parse_username(&login.username).0.chars().take(64).collect();
            let address = login.client_addr.to_string();
            let peer = login.client_addr;
            let outcome = match self.check(login).await {
                // The policy's refusal, like a missing grant, comes before any target is contacted.
                Ok(admission) => self.grant(&admission).map(|_| admission),
                Err(denial) => Err(denial),
            };
            let record = match &outcome {
                Ok(a) => Record::new(Kind::LOGIN, &a.user).target(&a.target),
                Err(d) => {
                    Record::new(Kind::LOGIN_FAILED, typed).detail("reason", d.message.as_str())
                }
            }
            .detail("entry", "rdp")
            .detail("address", address);
            // Nobody is let in unrecorded.
            if let Err(e) = self.state.audit.record(record).await {
                return Err(deny(Refusal::TargetFailed, e.to_string()));
            }
            if outcome.is_ok() {
                self.pre_auth.logged_in(peer);
            }
            outcome
        })
    }

    fn open(
        &self,
        admission: Admission,
        client_addr: SocketAddr,
        size: (u16, u16),
    ) -> BoxFuture<'_, Result<Box<dyn Display>, Denial>> {
        Box::pin(self.open_session(admission, client_addr, size))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_username;

    #[test]
    fn user_and_target_forms() {
        assert_eq!(parse_username("alice#web01"), ("alice", Some("web01")));
        assert_eq!(parse_username("alice"), ("alice", None));
        assert_eq!(parse_username("alice#"), ("alice", Some("")));
    }
}
