//! Lock-out with back-off after failed logins, for the browser login and the native RDP login
//! alike: after [`FREE_FAILURES`] failures in a row for an account (or [`FREE_ADDRESS_FAILURES`]
//! from one address: many people may share one behind a NAT), further
//! attempts are refused without checking the password for a while that doubles with each
//! further failure, up to [`MAX_BACKOFF`]. A success clears the account's count.
//!
//! Both the account and the address count: guessing one account's password from many addresses,
//! or many accounts' from one, is slowed either way. The state is in memory (a restart forgets
//! it) and bounded: the oldest entries go first when it is full.
//!
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures in a row allowed for an account before its first lock-out.
pub const FREE_FAILURES: u32 = 5;
/// Failures allowed from one address (over all accounts) before its first lock-out.
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// The first lock-out; each further failure doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest lock-out.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A count of failures is forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Accounts and addresses tracked at once; beyond, the stalest are dropped.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Account,
    Address,
}

/// Failed logins, by account and by address. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct LoginThrottle {
    inner: Arc<Mutex<HashMap<Key, Failures>>>,
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` when `account` or `address` is locked out at `now`: refuse without checking
    /// the password, and say when to try again.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.lock();
        let wait = [
            Key::Account(account.to_owned()),
            Key::Address(client_network(address)),
        ]
        .iter()
        .filter_map(|k| map.get(k).and_then(|f| f.locked_until))
        .filter(|until| *until > now)
        .map(|until| until - now)
        .max();
        wait.map_or(Ok(()), Err)
    }

    /// A failed attempt: counts against both, and locks them out once past the free failures.
    pub fn failed(&self, account: &str, address: IpAddr, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED {
            map.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_TRACKED {
                // Still full of fresh entries: drop the stalest half.
                let mut ages: Vec<Instant> = map.values().map(|f| f.last).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, f| f.last > cut);
            }
        }
        for (key, key_kind) in [
            (Key::Account(account.to_owned()), KeyKind::Account),
            (Key::Address(client_network(address)), KeyKind::Address),
        ] {
            let f = map.entry(key).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
            if now.saturating_duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
            let free = match key_kind {
                KeyKind::Account => FREE_FAILURES,
                KeyKind::Address => FREE_ADDRESS_FAILURES,
            };
            if f.count >= free {
                f.locked_until = Some(now + backoff(f.count - free));
            }
        }
    }

    /// A successful login: the account starts afresh (the address keeps its count, so one
    /// good account does not unlock guessing at others).
    pub fn succeeded(&self, account: &str) {
        self.lock().remove(&Key::Account(account.to_owned()));
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

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let t = LoginThrottle::default();
        let now = Instant::now();
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
        let t = LoginThrottle::default();
        let mut now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("alice", A, now);
            assert_eq!(t.check("alice", A, now), Ok(()));
        }
        t.failed("alice", A, now);
        assert_eq!(t.check("alice", A, now), Err(FIRST_BACKOFF));
        // Over: one more failure doubles it.
        now += FIRST_BACKOFF;
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
        let t = LoginThrottle::default();
        let now = Instant::now();
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
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("alice", A, now);
        }
        t.succeeded("alice");
        t.failed("alice", B, now);
        assert_eq!(t.check("alice", B, now), Ok(()));
        // An hour later the count starts again.
        let later = now + FORGET_AFTER;
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("carol", B, later);
        }
        assert_eq!(t.check("carol", B, later), Ok(()));
    }
}
