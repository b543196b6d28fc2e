//! Bounds on native RDP connections that have not logged in yet, per client network.
//!
//! Before its login, a connection costs the gateway a TLS session and a task, and it may hold
//! them until the handshake deadline (`rdp.handshake_timeout_secs`). The listener's global cap
//! alone would let one address take every place with idle sockets and keep everyone else out,
//! so each network (an IPv4 address, an IPv6 /64: see [`crate::throttle::client_network`]) may
//! have at most a few connections waiting for their login at once. A connection leaves the count
//! when its login is admitted (it then holds a session: one account may hold at most
//! `portcullis_broker::MAX_SESSIONS_PER_USER`) or when it ends.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::throttle::client_network;

/// Connections from one network that may be between accept and login at once. A person opens
/// one or two at a time; a NAT shared by a team rarely more than a handful.
pub const MAX_PRE_AUTH_PER_NETWORK: usize = 8;

#[derive(Debug, Default)]
struct Waiting {
    per_network: HashMap<IpAddr, usize>,
    peers: HashSet<SocketAddr>,
}

/// The connections waiting for their login, by network. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct PreAuth {
    inner: Arc<Mutex<Waiting>>,
    limit: usize,
}

impl Default for PreAuth {
    fn default() -> Self {
        Self::new(MAX_PRE_AUTH_PER_NETWORK)
    }
}

/// A connection's place among those waiting to log in; given back when dropped.
#[derive(Debug)]
pub struct PreAuthSlot {
    owner: PreAuth,
    peer: SocketAddr,
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        self.owner.logged_in(self.peer);
    }
}

impl PreAuth {
    /// At most `limit` connections per network waiting for their login.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::default(),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `peer`; `None` when its network has too many waiting
    /// (the caller closes the connection).
    pub fn enter(&self, peer: SocketAddr) -> Option<PreAuthSlot> {
        let mut w = self.lock();
        if w.peers.contains(&peer) {
            return None;
        }
        let count = w.per_network.entry(client_network(peer.ip())).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        w.peers.insert(peer);
        Some(PreAuthSlot {
            owner: self.clone(),
            peer,
        })
    }

    /// The connection from `peer` logged in (or ended): it no longer counts. Idempotent.
    pub fn logged_in(&self, peer: SocketAddr) {
        let mut w = self.lock();
        if !w.peers.remove(&peer) {
            return;
        }
        let network = client_network(peer.ip());
        if let Some(count) = w.per_network.get_mut(&network) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                w.per_network.remove(&network);
            }
        }
    }

    /// How many connections from `address`'s network wait for their login.
    pub fn waiting(&self, address: IpAddr) -> usize {
        self.lock()
            .per_network
            .get(&client_network(address))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_network_gets_a_few_places_and_others_are_unaffected() {
        let p = PreAuth::new(3);
        let held: Vec<_> = (0..3)
            .map(|i| p.enter(peer(&format!("10.0.0.1:{}", 1000 + i))).unwrap())
            .collect();
        assert!(p.enter(peer("10.0.0.1:2000")).is_none());
        assert!(p.enter(peer("10.0.0.2:2000")).is_some());
        // IPv6: one /64 is one network.
        let v6: Vec<_> = (0..3)
            .map(|i| {
                p.enter(peer(&format!("[2001:db8:0:1::{i:x}]:1000")))
                    .unwrap()
            })
            .collect();
        assert!(p.enter(peer("[2001:db8:0:1::ffff]:1000")).is_none());
        assert!(p.enter(peer("[2001:db8:0:2::1]:1000")).is_some());
        drop(v6);
        assert_eq!(p.waiting("2001:db8:0:1::9".parse().unwrap()), 0);
        // A login frees the place at once; the slot dropping later changes nothing more.
        p.logged_in(peer("10.0.0.1:1000"));
        assert_eq!(p.waiting("10.0.0.1".parse().unwrap()), 2);
        let again = p.enter(peer("10.0.0.1:3000")).unwrap();
        drop(held);
        assert_eq!(p.waiting("10.0.0.1".parse().unwrap()), 1);
        drop(again);
        assert_eq!(p.waiting("10.0.0.1".parse().unwrap()), 0);
    }
}
