//! One-time tickets for native RDP clients: the web UI hands a user an `.rdp` file for a
//! target, and the ticket in it lets that client in once, within minutes, without the user
//! typing a password into the RDP client.
//!
//! The ticket travels as the `.rdp` file's `loadbalanceinfo`, which clients send as the
//! X.224 routing token (`Cookie: msts=...`) before TLS; it is only checked after TLS, with
//! the Client Info PDU. Only its SHA-256 is kept, in memory: a restart voids every ticket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// What every ticket starts with, so the gate knows a routing token is one of ours.
pub const TICKET_PREFIX: &str = "pct_";
/// Most tickets outstanding at once (expired ones are dropped first).
const MAX_TICKETS: usize = 10_000;

#[derive(Debug, Clone)]
struct Ticket {
    user: String,
    target: String,
    expires: Instant,
}

/// The outstanding tickets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RdpTickets {
    inner: Arc<Mutex<HashMap<[u8; 32], Ticket>>>,
    ttl: Duration,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl RdpTickets {
    /// Tickets valid for `ttl` after they are issued.
    pub fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::default(),
            ttl,
        }
    }

    /// How long a ticket stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new ticket for `user` to open `target`; `None` when too many are outstanding.
    pub fn issue(&self, user: &str, target: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| t.expires > now);
        if map.len() >= MAX_TICKETS {
            return None;
        }
        let token = format!("{TICKET_PREFIX}{}", portcullis_secrets::random_token(32));
        map.insert(
            digest(&token),
            Ticket {
                user: user.to_owned(),
                target: target.to_owned(),
                expires: now + self.ttl,
            },
        );
        Some(token)
    }

    /// Uses a ticket up: its user and target if it exists and has not expired. A ticket works
    /// once, whatever the outcome.
    pub fn redeem(&self, token: &str) -> Option<(String, String)> {
        let ticket = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest(token))?;
        (ticket.expires > Instant::now()).then_some((ticket.user, ticket.target))
    }
}

/// The `.rdp` file for a ticket. `host` is how the user reaches the gateway, `port` its RDP
/// listener.
pub fn rdp_file(host: &str, port: u16, user: &str, target: &str, ticket: &str) -> String {
    [
        format!("full address:s:{host}:{port}"),
        format!("username:s:{user}#{target}"),
        format!("loadbalanceinfo:s:Cookie: msts={ticket}"),
        // TLS with the ticket, no NLA (the ticket is not a password CredSSP could check).
        "enablecredsspsupport:i:0".into(),
        "authentication level:i:2".into(),
        "prompt for credentials:i:0".into(),
        "promptcredentialonce:i:0".into(),
        "screen mode id:i:1".into(),
        "redirectclipboard:i:0".into(),
        "redirectprinters:i:0".into(),
        "redirectdrives:i:0".into(),
        "audiomode:i:2".into(),
        String::new(),
    ]
    .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_works_once_and_expires() {
        let t = RdpTickets::new(Duration::from_secs(60));
        let a = t.issue("alice", "web01").unwrap();
        assert!(a.starts_with(TICKET_PREFIX));
        assert_eq!(t.redeem(&a), Some(("alice".into(), "web01".into())));
        assert_eq!(t.redeem(&a), None);
        assert_eq!(t.redeem("pct_forged"), None);
        let short = RdpTickets::new(Duration::ZERO);
        let b = short.issue("alice", "web01").unwrap();
        assert_eq!(short.redeem(&b), None);
    }

    #[test]
    fn the_file_names_the_gateway_the_user_and_the_ticket() {
        let f = rdp_file("gw.example", 3389, "alice", "web01", "pct_x");
        assert!(f.contains("full address:s:gw.example:3389\r\n"));
        assert!(f.contains("username:s:alice#web01\r\n"));
        assert!(f.contains("loadbalanceinfo:s:Cookie: msts=pct_x\r\n"));
    }
}
