//! The password step of a login, one for both entries: the browser (`auth::api::login`) and
//! native RDP clients (`rdp::gate`). Size limits, the lock-out, the verification slots, argon2
//! off the async workers, a failure counted; the typed outcome leaves to each entry what it
//! answers, records and checks next (a locked account, the second factor).

use std::net::IpAddr;
use std::time::Duration;

use portcullis_store::{StoreError, UserRecord};
use tokio::sync::OwnedSemaphorePermit;
use zeroize::Zeroizing;

use crate::{ops, AppState};

/// Longest user name a login may give.
const MAX_NAME_LEN: usize = 256;

/// A user name and password, from `address`.
pub(crate) struct Attempt<'a> {
    pub(crate) user: &'a str,
    pub(crate) password: &'a str,
    pub(crate) address: IpAddr,
}

/// The password is the account's.
pub(crate) struct Verified {
    /// The account, as read for the check (whether it is locked is the caller's to judge).
    pub(crate) user: UserRecord,
    /// The verification slot, taken until the caller drops it.
    pub(crate) slot: OwnedSemaphorePermit,
}

/// Why no password was accepted.
pub(crate) enum Refused {
    /// A name or password longer than any real one: nothing checked, nothing counted.
    Oversized,
    /// Every verification slot is taken (and the attempt is not locked out).
    Busy,
    /// The account or the address is locked out for `wait`; the password was not checked.
    /// `slot`: the verification slot, when one was free (so a caller that records the refusal
    /// can do it within the slots, as the browser entry does).
    LockedOut {
        wait: Duration,
        slot: Option<OwnedSemaphorePermit>,
    },
    /// No such user, or the wrong password (counted toward the lock-out).
    WrongPassword,
    /// The password is right, but the user's role signs in through an identity provider only
    /// (`required_for_roles` of the single sign-on settings).
    SsoRequired(Box<UserRecord>),
    /// The store could not be read.
    Store(StoreError),
    /// The verification task failed.
    Internal(String),
}

/// Checks `attempt`'s password. Never waits for a slot: queued attempts would hold the slots
/// and keep other logins out.
pub(crate) async fn check_password(
    state: &AppState,
    attempt: Attempt<'_>,
) -> Result<Verified, Refused> {
    let Attempt {
        user,
        password,
        address,
    } = attempt;
    if user.len() > MAX_NAME_LEN || password.len() > ops::MAX_SECRET_LEN {
        return Err(Refused::Oversized);
    }
    // Each verification takes ~19 MiB and tens of ms of CPU: a few at a time, never a pile-up.
    let slot = std::sync::Arc::clone(&state.login_slots)
        .try_acquire_owned()
        .ok();
    if let Err(wait) = state.throttle.check(user, address, crate::auth::now_ms()) {
        return Err(Refused::LockedOut { wait, slot });
    }
    let slot = slot.ok_or(Refused::Busy)?;
    let record = state.store.get_user(user).map_err(Refused::Store)?;
    // An account of an identity provider has no password to guess: a failure counts against
    // the address only (counting it against the account would let anyone lock its owner out
    // of single sign-on).
    let guessable = record.as_ref().is_none_or(|u| u.sso.is_none());
    let password = Zeroizing::new(password.to_owned());
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let verified = tokio::task::spawn_blocking(move || match record {
        Some(u) if u.sso.is_none() => {
            portcullis_secrets::verify_password(&password, &u.password_hash).then_some(u)
        }
        _ => {
            portcullis_secrets::burn_verify_time(&password);
            None
        }
    })
    .await
    .map_err(|e| Refused::Internal(e.to_string()))?;
    let Some(user_record) = verified else {
        if guessable {
            state.throttle.failed(user, address, crate::auth::now_ms());
        } else {
            state.throttle.failed_from(address, crate::auth::now_ms());
        }
        return Err(Refused::WrongPassword);
    };
    // Known only to whoever has the password: the role signs in through a provider.
    let settings = crate::sso::SsoSettings::load(&*state.store)
        .map_err(|e| Refused::Internal(e.to_string()))?;
    if settings.required_for(user_record.role) && !settings.providers.is_empty() {
        return Err(Refused::SsoRequired(Box::new(user_record)));
    }
    Ok(Verified {
        user: user_record,
        slot,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use portcullis_secrets::SecretKey;
    use portcullis_store::{MemoryStore, Role};

    use super::*;

    fn attempt<'a>(user: &'a str, password: &'a str) -> Attempt<'a> {
        Attempt {
            user,
            password,
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        }
    }

    /// The outcomes both entries map, in the order they are decided.
    #[tokio::test]
    async fn outcomes() {
        let store = Arc::new(MemoryStore::new());
        ops::create_user(&*store, "alice", "alice-password-1", Role::User).unwrap();
        let broker = portcullis_broker::Broker::new(Default::default());
        let state = AppState::new(store, Arc::new(SecretKey::generate()), broker);
        let ok = check_password(&state, attempt("alice", "alice-password-1")).await;
        assert!(ok.is_ok_and(|v| v.user.name == "alice"));
        let long = "x".repeat(ops::MAX_SECRET_LEN + 1);
        assert!(matches!(
            check_password(&state, attempt("alice", &long)).await,
            Err(Refused::Oversized)
        ));
        for who in ["alice", "nobody"] {
            assert!(matches!(
                check_password(&state, attempt(who, "wrong password")).await,
                Err(Refused::WrongPassword)
            ));
        }
        // Every slot taken: busy, or locked out without a slot when the lock-out applies.
        let taken = std::sync::Arc::clone(&state.login_slots)
            .acquire_many_owned(u32::try_from(crate::LOGIN_SLOTS).unwrap())
            .await
            .unwrap();
        assert!(matches!(
            check_password(&state, attempt("alice", "alice-password-1")).await,
            Err(Refused::Busy)
        ));
        for _ in 0..crate::throttle::FREE_FAILURES {
            state.throttle.failed(
                "alice",
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                crate::auth::now_ms(),
            );
        }
        assert!(matches!(
            check_password(&state, attempt("alice", "alice-password-1")).await,
            Err(Refused::LockedOut { slot: None, .. })
        ));
        drop(taken);
        assert!(matches!(
            check_password(&state, attempt("alice", "alice-password-1")).await,
            Err(Refused::LockedOut { slot: Some(_), .. })
        ));
    }
}
