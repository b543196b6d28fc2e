//! Lock-out with back-off after failed logins, for the browser login and the native RDP login
//! alike: after [`FREE_FAILURES`] failures in a row for an account (or [`FREE_ADDRESS_FAILURES`]
//! from one address: many people may share one behind a NAT), further
//! attempts are refused without checking the password for a while that doubles with each
//! further failure, up to [`MAX_BACKOFF`]. A success clears the account's count.
//!
//! Both the account and the address count: guessing one account's password from many addresses,
//! or many accounts' from one, is slowed either way. The counts are in the store's short-lived
//! state (see [`LoginThrottle`]); each is forgotten an hour after its last failure. What the
//! table can hold is bounded by that hour and by the cost of a failure (a password check, or a
//! throttled refusal that adds nothing new).
//!
//! The caller passes the time (Unix milliseconds).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_store::{Ephemeral, EphemeralChange, Store};
use serde::{Deserialize, Serialize};

/// Failures in a row allowed for an account before its first lock-out.
pub const FREE_FAILURES: u32 = 5;
/// Failures allowed from one address (over all accounts) before its first lock-out.
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// The first lock-out; each further failure doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest lock-out.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A count of failures is forgotten after this long without another (the store then drops it).
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// The store's space for failure counts.
const FAILURE_SPACE: &str = "login_failures";

/// Failures of one account or address, as the store keeps them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Failures {
    count: u32,
    /// Unix milliseconds.
    last_ms: i64,
    locked_until_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Account,
    Address,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The store's keys of an account and of an address's network (names never hold `:`; the
/// prefixes keep the two apart).
fn keys(account: &str, address: IpAddr) -> [(String, KeyKind); 2] {
    [
        // A NUL cannot be stored (PostgreSQL's text): it stands for itself as U+FFFD.
        (
            format!("account:{}", account.replace('\0', "\u{FFFD}")),
            KeyKind::Account,
        ),
        (
            format!("network:{}", client_network(address)),
            KeyKind::Address,
        ),
    ]
}

/// Failed logins, by account and by address, in the store's short-lived state: in memory with
/// the embedded store (a restart forgets them), shared by every gateway on a PostgreSQL store (a
/// lock-out on one holds on all). Each count is forgotten an hour after its last failure. Cheap
/// to clone. A store that cannot answer counts as a lock-out (logged): no password is checked
/// while the counts cannot be kept.
#[derive(Clone)]
pub struct LoginThrottle {
    store: Arc<dyn Store>,
    purge: crate::auth::Purge,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle").finish_non_exhaustive()
    }
}

/// How long a login refused because the store could not be asked waits.
const STORE_DOWN_WAIT: Duration = Duration::from_secs(5);

impl LoginThrottle {
    /// Failure counts kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            purge: crate::auth::Purge::default(),
        }
    }

    fn read(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Failures>, portcullis_store::StoreError> {
        let entry = self
            .store
            .ephemeral_update(FAILURE_SPACE, key, now_ms, &mut |_| EphemeralChange::Keep)?;
        Ok(entry.and_then(|e| serde_json::from_slice(&e.value).ok()))
    }

    /// `Err(wait)` when `account` or `address` is locked out at `now_ms` (Unix milliseconds):
    /// refuse without checking the password, and say when to try again.
    pub fn check(&self, account: &str, address: IpAddr, now_ms: i64) -> Result<(), Duration> {
        self.check_keys(keys(account, address), now_ms)
    }

    fn check_keys(
        &self,
        keys: impl IntoIterator<Item = (String, KeyKind)>,
        now_ms: i64,
    ) -> Result<(), Duration> {
        let mut wait_ms = 0i64;
        for (key, _) in keys {
            match self.read(&key, now_ms) {
                Ok(f) => {
                    if let Some(until) = f.and_then(|f| f.locked_until_ms) {
                        wait_ms = wait_ms.max(until - now_ms);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read failed-login counts: login refused");
                    return Err(STORE_DOWN_WAIT);
                }
            }
        }
        if wait_ms > 0 {
            Err(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
        } else {
            Ok(())
        }
    }

    /// A failed attempt at `now_ms`: counts against both, and locks them out once past the
    /// free failures.
    pub fn failed(&self, account: &str, address: IpAddr, now_ms: i64) {
        self.count(keys(account, address), now_ms);
    }

    /// A failed attempt whose account is not known (a single sign-on refused before the
    /// provider said who it was): counts against the address only.
    pub fn failed_from(&self, address: IpAddr, now_ms: i64) {
        self.count(keys("", address).into_iter().skip(1), now_ms);
    }

    /// Whether `address` is locked out (see [`LoginThrottle::check`]).
    pub fn check_from(&self, address: IpAddr, now_ms: i64) -> Result<(), Duration> {
        self.check_keys(keys("", address).into_iter().skip(1), now_ms)
    }

    fn count(&self, keys: impl IntoIterator<Item = (String, KeyKind)>, now_ms: i64) {
        portcullis_broker::stats::LOGIN_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.purge.maybe(&*self.store, now_ms);
        for (key, key_kind) in keys {
            let counted = self
                .store
                .ephemeral_update(FAILURE_SPACE, &key, now_ms, &mut |entry| {
                    let mut f = entry
                        .and_then(|e| serde_json::from_slice::<Failures>(&e.value).ok())
                        .unwrap_or(Failures {
                            count: 0,
                            last_ms: now_ms,
                            locked_until_ms: None,
                        });
                    if now_ms.saturating_sub(f.last_ms) >= ms(FORGET_AFTER) {
                        f.count = 0;
                    }
                    f.count = f.count.saturating_add(1);
                    f.last_ms = now_ms;
                    let free = match key_kind {
                        KeyKind::Account => FREE_FAILURES,
                        KeyKind::Address => FREE_ADDRESS_FAILURES,
                    };
                    if f.count >= free {
                        f.locked_until_ms =
                            Some(now_ms.saturating_add(ms(backoff(f.count - free))));
                    }
                    EphemeralChange::Put(Ephemeral {
                        owner: String::new(),
                        value: serde_json::to_vec(&f).unwrap_or_default(),
                        expires_at_ms: now_ms.saturating_add(ms(FORGET_AFTER)),
                    })
                });
            if let Err(e) = counted {
                tracing::error!(error = %e, "cannot count a failed login in the store");
            }
        }
    }

    /// A successful login: the account starts afresh (the address keeps its count, so one
    /// good account does not unlock guessing at others).
    pub fn succeeded(&self, account: &str) {
        let cleared = self.store.ephemeral_update(
            FAILURE_SPACE,
            &keys(account, std::net::Ipv4Addr::UNSPECIFIED.into())[0].0,
            crate::auth::now_ms(),
            &mut |_| EphemeralChange::Delete,
        );
        if let Err(e) = cleared {
            tracing::error!(error = %e, "cannot clear an account's failed logins in the store");
        }
    }
}

/// The network a client address stands for: an IPv4 address itself; an IPv6 address's /64, the
/// smallest block a site is given (one host commonly holds a whole /64 and can pick any address
/// in it, so counting single IPv6 addresses would let it dodge every per-address limit).
/// IPv4-mapped IPv6 addresses count as the IPv4 address.
pub fn client_network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
    }
}

/// The lock-out after `extra` failures beyond the free ones.
fn backoff(extra: u32) -> Duration {
    let factor = 1u32.checked_shl(extra.min(16)).unwrap_or(u32::MAX);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(Arc::new(portcullis_store::MemoryStore::new()))
    }

    #[test]
    fn gateways_on_one_store_share_the_counts() {
        let store: Arc<dyn Store> = Arc::new(portcullis_store::MemoryStore::new());
        let (a, b) = (
            LoginThrottle::new(Arc::clone(&store)),
            LoginThrottle::new(store),
        );
        let now = 1_800_000_000_000i64;
        for _ in 0..FREE_FAILURES {
            a.failed("alice", A, now);
        }
        assert_eq!(b.check("alice", B, now), Err(FIRST_BACKOFF));
        b.succeeded("alice");
        assert_eq!(a.check("alice", B, now), Ok(()));
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let t = throttle();
        let now = 1_800_000_000_000i64;
        let host =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        // One host walking through its /64: every attempt comes from a new address.
        for i in 0..FREE_ADDRESS_FAILURES {
            let account = format!("user{i}");
            assert_eq!(t.check(&account, host(i as u16), now), Ok(()));
            t.failed(&account, host(i as u16), now);
        }
        assert!(
            t.check("someone", host(999), now).is_err(),
            "the /64 is locked"
        );
        let other = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert_eq!(
            t.check("someone", other, now),
            Ok(()),
            "the next /64 is not"
        );
        // An IPv4-mapped address is the IPv4 client.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_network(mapped), A);
    }
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn five_failures_are_free_then_the_lock_out_doubles_up_to_the_cap() {
        let t = throttle();
        let mut now = 1_800_000_000_000i64;
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("alice", A, now);
            assert_eq!(t.check("alice", A, now), Ok(()));
        }
        t.failed("alice", A, now);
        assert_eq!(t.check("alice", A, now), Err(FIRST_BACKOFF));
        // Over: one more failure doubles it.
        now += ms(FIRST_BACKOFF);
        assert_eq!(t.check("alice", A, now), Ok(()));
        t.failed("alice", A, now);
        assert_eq!(t.check("alice", A, now), Err(FIRST_BACKOFF * 2));
        for _ in 0..20 {
            t.failed("alice", A, now);
        }
        assert_eq!(t.check("alice", A, now), Err(MAX_BACKOFF));
    }

    #[test]
    fn the_account_is_locked_from_every_address_and_the_address_for_every_account() {
        let t = throttle();
        let now = 1_800_000_000_000i64;
        for _ in 0..FREE_FAILURES {
            t.failed("alice", A, now);
        }
        assert!(
            t.check("alice", B, now).is_err(),
            "account locked from elsewhere"
        );
        assert_eq!(t.check("bob", A, now), Ok(()), "the address has more room");
        for i in 0..FREE_ADDRESS_FAILURES {
            t.failed(&format!("user{i}"), A, now);
        }
        assert!(
            t.check("bob", A, now).is_err(),
            "address locked for other accounts"
        );
        assert_eq!(t.check("bob", B, now), Ok(()));
    }

    #[test]
    fn a_success_clears_the_account_and_old_failures_are_forgotten() {
        let t = throttle();
        let now = 1_800_000_000_000i64;
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("alice", A, now);
        }
        t.succeeded("alice");
        t.failed("alice", B, now);
        assert_eq!(t.check("alice", B, now), Ok(()));
        // An hour later the count starts again.
        let later = now + ms(FORGET_AFTER);
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("carol", B, later);
        }
        assert_eq!(t.check("carol", B, later), Ok(()));
    }
}
