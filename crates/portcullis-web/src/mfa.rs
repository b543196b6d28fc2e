//! Two-factor authentication: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, one step of
//! clock drift either way), enrolment with a QR code, the second login step, and the admin's
//! reset. The TOTP arithmetic is `totp`, the routes `api`; here: the sealed secrets, spending
//! a code once, and the pending logins.
//!
//! - **Enrolment**: `POST /me/mfa/enrol` makes a fresh secret, stores it sealed with the
//!   gateway's key (AAD naming the user) and shows it once (base32, `otpauth://` URI, QR code as
//!   SVG); `POST /me/mfa/confirm {code}` turns MFA on once a code from it checks out. The secret
//!   is never shown again nor logged.
//! - **Replay**: the time step of the last accepted code is stored with the user; a code is only
//!   accepted for a later step, so each code works once.
//! - **Login**: when MFA is on, the password step gives no session, only a pending login
//!   ([`PendingLogins`]: 2 minutes, single use, in the `pc_mfa` cookie); `POST /auth/mfa {code}`
//!   completes it. Wrong codes count toward the lock-out like wrong passwords.
//! - **Required per role** (`[auth] mfa_required_roles`): a user of such a role without MFA gets,
//!   for the password alone, an *enrol-only* login: it may call `/me`, `/me/mfa/*` and
//!   `/auth/logout`, nothing else (see [`crate::auth`]). Confirming enrolment makes it a full
//!   login (the user has then shown the password and the second factor).
//! - **Recovery codes**: confirming enrolment issues [`RECOVERY_CODES`] codes (`xxxx-xxxx-xxxx-xxxx`,
//!   ~79 bits each), shown once; only their SHA-256 (salted with the account's id) is kept. Each replaces a code from the app
//!   once at the second login step (a lost phone); `POST /me/mfa/recovery-codes {code}` (a
//!   code from the app) issues a new set in place of the old.

pub(crate) mod api;
pub(crate) mod steps;
pub mod totp;

use std::sync::Arc;
use std::time::Duration;

use portcullis_secrets::SecretKey;
use portcullis_store::{Ephemeral, EphemeralChange, Store, StoreError, UserRecord};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::mfa::totp::verify;
use crate::{ops, AppState, WebError};

/// How long a pending (password checked, code not yet) login lives.
pub const PENDING_TTL: Duration = Duration::from_secs(120);
/// Wrong codes one pending login may take before it is dropped (the lock-out counts too).
const PENDING_MAX_FAILURES: u32 = 5;
/// The pending login's cookie.
pub(crate) const PENDING_COOKIE: &str = "pc_mfa";

fn now_unix() -> u64 {
    u64::try_from(ops::now_unix()).unwrap_or(0)
}

/// Additional data binding a sealed TOTP secret to its user.
pub(crate) fn secret_aad(user: &str) -> Vec<u8> {
    format!("portcullis mfa secret v1:{user}").into_bytes()
}

fn open_secret(key: &SecretKey, user: &UserRecord) -> Result<Zeroizing<Vec<u8>>, WebError> {
    let mfa = user
        .mfa
        .as_ref()
        .ok_or_else(|| WebError::Conflict("two-factor authentication is not set up".into()))?;
    key.open(&mfa.sealed_secret, &secret_aad(&user.name))
        .map(Zeroizing::new)
        .map_err(|e| WebError::Internal(format!("cannot open the TOTP secret of a user: {e}")))
}

/// Re-seals `user`'s TOTP secret from `old` to `new` (key rotation). `Ok(false)`: nothing to
/// do (no secret, or already under `new`).
pub fn reseal_user_mfa(
    old: &SecretKey,
    new: &SecretKey,
    user: &mut UserRecord,
) -> Result<bool, String> {
    let aad = secret_aad(&user.name);
    let Some(mfa) = user.mfa.as_mut() else {
        return Ok(false);
    };
    if new.open(&mfa.sealed_secret, &aad).is_ok() {
        return Ok(false);
    }
    let plain = Zeroizing::new(
        old.open(&mfa.sealed_secret, &aad)
            .map_err(|e| format!("cannot open the TOTP secret of {}: {e}", user.name))?,
    );
    mfa.sealed_secret = new.seal(&plain, &aad);
    Ok(true)
}

/// Whether `user` must use a second factor: MFA is on, or their role requires it.
pub(crate) fn needs_mfa(state: &AppState, user: &UserRecord) -> bool {
    user.mfa_enabled()
        || state.mfa_required_roles.contains(&user.role)
        || crate::sso::passkey_required(state, user.role)
}

/// What a code a user gave came to.
pub(crate) enum Attempt {
    /// The account or the address is locked out for this long: not checked.
    Locked(std::time::Duration),
    /// Wrong (counted toward the lock-out).
    Wrong,
    /// Right; a recovery code's: how many are left.
    Right { recovery_left: Option<usize> },
}

/// What a code is given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeUse {
    /// The second sign-in step: a code from the app or a recovery code.
    SignIn,
    /// Turning TOTP on: a code from the app being set up.
    Confirm,
    /// A logged-in user's act that asks for a code from the app now.
    App,
}

/// Checks `code` of `name` from `ip` for `what`, under the MFA lock from the lock-out check to
/// the count of a wrong code: guesses sent in parallel see each other's failures (the lock-out
/// cannot be outrun), and a code is spent once. Blocking.
pub(crate) fn attempt(
    state: &AppState,
    name: &str,
    ip: std::net::IpAddr,
    code: &str,
    what: CodeUse,
) -> Result<Attempt, WebError> {
    let _guard = state.mfa_lock.lock().unwrap_or_else(|p| p.into_inner());
    let now = crate::auth::now_ms();
    if let Err(wait) = state.throttle.check(name, ip, now) {
        return Ok(Attempt::Locked(wait));
    }
    let right = match what {
        CodeUse::SignIn if is_recovery_code(code) => {
            use_recovery_code(state, name, code)?.map(Some)
        }
        CodeUse::SignIn | CodeUse::App => check_code(state, name, code, false)?.then_some(None),
        CodeUse::Confirm => check_code(state, name, code, true)?.then_some(None),
    };
    match right {
        Some(recovery_left) => Ok(Attempt::Right { recovery_left }),
        None => {
            state.throttle.failed(name, ip, now);
            Ok(Attempt::Wrong)
        }
    }
}

/// Checks `code` for `name` and, when it is good, stores its step as used. `confirm`: the code
/// confirms enrolment. Only under the MFA lock ([`attempt`]).
fn check_code(state: &AppState, name: &str, code: &str, confirm: bool) -> Result<bool, WebError> {
    // Read, check and spend the step in one atomic change of the user's record: a lock, a
    // reset or a delete that comes meanwhile is neither lost nor undone.
    let mut outcome: Result<bool, WebError> = Err(WebError::Unauthorized);
    let now = now_unix();
    state.store.update_user(name, &mut |user| {
        let confirmed = user.totp_enabled();
        if confirm == confirmed {
            outcome = Err(WebError::Conflict(if confirm {
                "two-factor authentication is already on".into()
            } else {
                "two-factor authentication is not on for this user".into()
            }));
            return false;
        }
        let secret = match open_secret(&state.key, user) {
            Ok(s) => s,
            Err(e) => {
                outcome = Err(e);
                return false;
            }
        };
        let last = user.mfa.as_ref().map_or(0, |m| m.last_step);
        let Some(step) = verify(&secret, code, now, last) else {
            outcome = Ok(false);
            return false;
        };
        let Some(m) = user.mfa.as_mut() else {
            outcome = Ok(false);
            return false;
        };
        m.last_step = step;
        if confirm {
            m.confirmed = true;
            m.since = ops::now_unix();
        }
        outcome = Ok(true);
        true
    })?;
    outcome
}

// --- Recovery codes -----------------------------------------------------------------------

/// How many recovery codes a user gets (each works once).
pub const RECOVERY_CODES: usize = 10;

/// Their letters: none that looks like another (0/o, 1/l/i).
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Letters in one code (16 of 31: about 79 bits).
const RECOVERY_LEN: usize = 16;

/// A code as typed, made canonical (lower case, no dashes or spaces), if it can be one.
fn recovery_letters(code: &str) -> Option<String> {
    let letters: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (letters.len() == RECOVERY_LEN && letters.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
        .then_some(letters)
}

/// Whether `code` is shaped like a recovery code (a code from the app is 6 digits).
pub(crate) fn is_recovery_code(code: &str) -> bool {
    recovery_letters(code).is_some()
}

/// What is kept of a recovery code of the account `user_id` (salted with it: a copy of the store
/// gives no way to try a guess on every account at once; at 79 bits a guess per account is
/// hopeless).
fn recovery_hash(user_id: &str, letters: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"portcullis recovery code v1\0");
    h.update(user_id.as_bytes());
    h.update(b"\0");
    h.update(letters.as_bytes());
    hex::encode(h.finalize())
}

/// A fresh set: the codes (to show once) and their letters.
fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut all = Vec::with_capacity(RECOVERY_CODES);
    // 248 = 8 × 31: bytes at or above it are drawn again, so every letter is equally likely.
    let limit = 256 - 256 % RECOVERY_ALPHABET.len();
    while codes.len() < RECOVERY_CODES {
        let mut letters = String::with_capacity(RECOVERY_LEN);
        while letters.len() < RECOVERY_LEN {
            for &b in portcullis_secrets::random_bytes(RECOVERY_LEN).iter() {
                if usize::from(b) < limit && letters.len() < RECOVERY_LEN {
                    letters.push(char::from(
                        RECOVERY_ALPHABET[usize::from(b) % RECOVERY_ALPHABET.len()],
                    ));
                }
            }
        }
        codes.push(
            letters
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-"),
        );
        all.push(letters);
    }
    (codes, all)
}

/// Spends one of `name`'s recovery codes (in one atomic change of the user, under the MFA lock
/// ([`attempt`]): two requests cannot both spend it): `Some(left)` when `code` was one, now
/// used up.
fn use_recovery_code(state: &AppState, name: &str, code: &str) -> Result<Option<usize>, WebError> {
    let Some(letters) = recovery_letters(code) else {
        return Ok(None);
    };
    let mut left = None;
    state.store.update_user(name, &mut |user| {
        left = None;
        let hash = recovery_hash(&user.id, &letters);
        let Some(m) = user.mfa.as_mut().filter(|m| m.confirmed) else {
            return false;
        };
        let Some(i) = m
            .recovery
            .iter()
            .position(|h| portcullis_secrets::constant_time_eq(h.as_bytes(), hash.as_bytes()))
        else {
            return false;
        };
        m.recovery.remove(i);
        left = Some(m.recovery.len());
        true
    })?;
    Ok(left)
}

/// Gives `name` a fresh set of recovery codes in place of the old ones; returns the codes (to
/// show once).
pub(crate) fn renew_recovery_codes(state: &AppState, name: &str) -> Result<Vec<String>, WebError> {
    let (codes, letters) = new_recovery_codes();
    let _guard = state.mfa_lock.lock().unwrap_or_else(|p| p.into_inner());
    let mut done = false;
    state.store.update_user(name, &mut |user| {
        done = false;
        let kept: Vec<String> = letters.iter().map(|l| recovery_hash(&user.id, l)).collect();
        let Some(m) = user.mfa.as_mut().filter(|m| m.confirmed) else {
            return false;
        };
        m.recovery = kept;
        done = true;
        true
    })?;
    if done {
        Ok(codes)
    } else {
        Err(WebError::Conflict(
            "two-factor authentication is not on for this user".into(),
        ))
    }
}

// --- Pending logins -----------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    user: String,
    /// The account's immutable id: a pending login is that account's, not its name's.
    user_id: String,
    /// Unix milliseconds.
    created_ms: i64,
    failures: u32,
    /// The first factor was a single sign-on: the login keeps it (for the provider's sign-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sso: Option<crate::sso::LoginSso>,
}

/// The store's space for pending logins.
const PENDING_SPACE: &str = "mfa_pending";

/// Logins whose password was right and whose code is awaited: short-lived, single use, in the
/// store's short-lived state under the SHA-256 of their token (shared by every gateway on a
/// PostgreSQL store: the code may reach another gateway than the password did). Callers pass
/// the time (Unix milliseconds). A store that cannot answer loses the pending login (logged):
/// the user logs in again.
#[derive(Clone)]
pub struct PendingLogins {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for PendingLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogins").finish_non_exhaustive()
    }
}

fn pending_key(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn ttl_ms() -> i64 {
    i64::try_from(PENDING_TTL.as_millis()).unwrap_or(i64::MAX)
}

impl PendingLogins {
    /// Pending logins kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    fn entry(p: &Pending) -> Ephemeral {
        Ephemeral {
            owner: p.user.clone(),
            value: serde_json::to_vec(p).unwrap_or_default(),
            expires_at_ms: p.created_ms.saturating_add(ttl_ms()),
        }
    }

    /// A new pending login of the account `user` (id `user_id`); returns its token.
    pub fn create(&self, user: &str, user_id: &str, now_ms: i64) -> Result<String, StoreError> {
        self.create_with(user, user_id, now_ms, None)
    }

    /// [`PendingLogins::create`], the first factor having been `sso` when given.
    pub(crate) fn create_with(
        &self,
        user: &str,
        user_id: &str,
        now_ms: i64,
        sso: Option<crate::sso::LoginSso>,
    ) -> Result<String, StoreError> {
        let token = portcullis_secrets::random_token(32);
        let entry = Self::entry(&Pending {
            user: user.to_owned(),
            user_id: user_id.to_owned(),
            created_ms: now_ms,
            failures: 0,
            sso,
        });
        self.store
            .ephemeral_update(PENDING_SPACE, &pending_key(&token), now_ms, &mut |_| {
                EphemeralChange::Put(entry.clone())
            })?;
        Ok(token)
    }

    fn read(&self, token: &str, now_ms: i64, change: EphemeralChange) -> Option<Pending> {
        let entry = self
            .store
            .ephemeral_update(PENDING_SPACE, &pending_key(token), now_ms, &mut |_| {
                change.clone()
            })
            .map_err(|e| tracing::error!(error = %e, "cannot read a pending login from the store"))
            .ok()??;
        serde_json::from_slice(&entry.value).ok()
    }

    /// The user of a live pending login.
    pub fn user(&self, token: &str, now_ms: i64) -> Option<String> {
        self.read(token, now_ms, EphemeralChange::Keep)
            .map(|p| p.user)
    }

    /// Uses the pending login up (the code was right): it cannot be used again. Returns the
    /// account's name and id.
    pub fn take(&self, token: &str, now_ms: i64) -> Option<(String, String)> {
        self.take_with_sso(token, now_ms)
            .map(|(user, id, _)| (user, id))
    }

    /// [`PendingLogins::take`], with the single sign-on the first factor was, if it was one.
    pub(crate) fn take_with_sso(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Option<(String, String, Option<crate::sso::LoginSso>)> {
        self.read(token, now_ms, EphemeralChange::Delete)
            .map(|p| (p.user, p.user_id, p.sso))
    }

    /// A wrong code: after [`PENDING_MAX_FAILURES`] the pending login is gone.
    pub fn failed(&self, token: &str, now_ms: i64) {
        let counted =
            self.store
                .ephemeral_update(PENDING_SPACE, &pending_key(token), now_ms, &mut |entry| {
                    match entry.and_then(|e| serde_json::from_slice::<Pending>(&e.value).ok()) {
                        Some(mut p) => {
                            p.failures += 1;
                            if p.failures >= PENDING_MAX_FAILURES {
                                EphemeralChange::Delete
                            } else {
                                EphemeralChange::Put(Self::entry(&p))
                            }
                        }
                        None => EphemeralChange::Delete,
                    }
                });
        if let Err(e) = counted {
            tracing::error!(error = %e, "cannot count a wrong code in the store");
        }
    }
}

pub(crate) fn set_pending_cookie(token: &str) -> String {
    format!(
        "{PENDING_COOKIE}={token}; Path=/api/v1/auth; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        PENDING_TTL.as_secs()
    )
}

pub(crate) fn clear_pending_cookie() -> String {
    format!("{PENDING_COOKIE}=; Path=/api/v1/auth; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use portcullis_store::MfaRecord;

    #[test]
    fn pending_logins_expire_and_are_single_use() {
        let p = PendingLogins::new(Arc::new(portcullis_store::MemoryStore::new()));
        let t0 = 1_800_000_000_000i64;
        let ttl = ttl_ms();
        let token = p.create("alice", "u_alice", t0).unwrap();
        assert_eq!(p.user(&token, t0).as_deref(), Some("alice"));
        assert_eq!(p.user("forged", t0), None);
        assert_eq!(
            p.take(&token, t0 + 1000),
            Some(("alice".to_owned(), "u_alice".to_owned()))
        );
        assert_eq!(p.take(&token, t0), None, "single use");
        let late = p.create("bob", "u_bob", t0).unwrap();
        assert_eq!(p.user(&late, t0 + ttl), None, "expired");
        assert_eq!(p.take(&late, t0 + ttl), None);
        let guessed = p.create("carol", "u_carol", t0).unwrap();
        for _ in 0..PENDING_MAX_FAILURES {
            assert!(p.user(&guessed, t0).is_some());
            p.failed(&guessed, t0);
        }
        assert_eq!(
            p.user(&guessed, t0),
            None,
            "dropped after too many wrong codes"
        );
    }

    #[test]
    fn reseal_moves_the_secret_to_the_new_key() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let mut user = UserRecord {
            id: String::new(),
            name: "alice".into(),
            password_hash: String::new(),
            role: portcullis_store::Role::User,
            created_at: 0,
            locked: false,
            mfa: Some(MfaRecord {
                sealed_secret: old.seal(b"s3cret", &secret_aad("alice")),
                confirmed: true,
                last_step: 0,
                since: 0,
                recovery: Vec::new(),
            }),
            sso: None,
            groups: Vec::new(),
            passkeys: Vec::new(),
        };
        assert!(reseal_user_mfa(&old, &new, &mut user).unwrap());
        assert!(!reseal_user_mfa(&old, &new, &mut user).unwrap());
        assert_eq!(&*open_secret(&new, &user).unwrap(), b"s3cret");
    }

    #[test]
    fn recovery_codes_are_well_formed_distinct_and_read_as_typed() {
        let (codes, letters) = new_recovery_codes();
        assert_eq!(
            (codes.len(), letters.len()),
            (RECOVERY_CODES, RECOVERY_CODES)
        );
        let distinct: std::collections::HashSet<&String> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for (code, letters) in codes.iter().zip(&letters) {
            assert_eq!(code.len(), 19, "{code}");
            assert!(is_recovery_code(code));
            // Typed in capitals, without dashes, with spaces: the same code.
            let typed = code.to_uppercase().replace('-', " ");
            assert_eq!(recovery_letters(&typed).as_ref(), Some(letters));
            // Salted with the account: the same code is kept differently for another.
            assert_ne!(recovery_hash("u_1", letters), recovery_hash("u_2", letters));
        }
        assert!(!is_recovery_code("123456"));
        assert!(
            !is_recovery_code("abcd-efgh-jkmn-ijk0"),
            "0 and i are not in the alphabet"
        );
        assert!(!is_recovery_code("abcd-efgh-jkmn-pqr"));
    }
}
