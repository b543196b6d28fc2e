//! One-time tickets for native RDP clients: the web UI hands a user an `.rdp` file for a
//! target and a one-time password; together they let that client in once, within minutes.
//!
//! A ticket has two halves. Its id travels as the `.rdp` file's `loadbalanceinfo`, which
//! clients send as the X.224 routing token (`Cookie: msts=pct_…`) *before* TLS, so it is no
//! secret: it only tells the gateway which ticket is meant. The secret is the password: with NLA
//! it never crosses the wire (NTLM proves it inside TLS), without NLA it is sent inside TLS in the
//! Client Info PDU. A ticket is used up by its first attempt, right or wrong. Tickets live in the
//! store's short-lived state, sealed under the secret key (see [`RdpTickets`]).

use std::sync::Arc;
use std::time::Duration;

use portcullis_secrets::SecretKey;
use portcullis_store::{Ephemeral, EphemeralChange, Store};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::{now_ms, Purge};

/// What every ticket id starts with, so the gate knows a routing token is one of ours.
pub const TICKET_PREFIX: &str = "pct_";
/// Most tickets outstanding at once (expired ones are dropped first).
const MAX_TICKETS: usize = 10_000;
/// Most tickets one user may have outstanding: a native client needs one at a time, and a user
/// (or a stolen login) must not be able to take the whole table from everyone else.
pub const MAX_TICKETS_PER_USER: usize = 8;
/// The store's space for tickets.
const TICKET_SPACE: &str = "rdp_ticket";

/// A ticket as the store keeps it: sealed under the secret key (its secret is a password), and
/// bound to its id (a sealed ticket moved under another id does not open).
#[derive(Serialize, Deserialize)]
struct Ticket {
    user: String,
    /// The account's immutable id: the ticket is that account's, never a later one's.
    user_id: String,
    target: String,
    secret: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// A newly issued ticket.
#[derive(Clone)]
pub struct IssuedTicket {
    /// Goes into the `.rdp` file.
    pub id: String,
    /// The one-time password; shown to the user once.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for IssuedTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTicket")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The outstanding tickets, in the store's short-lived state: in memory with the embedded store
/// (a restart voids them), shared by every gateway on a PostgreSQL store (a ticket issued on one
/// works once on any). Cheap to clone.
#[derive(Clone)]
pub struct RdpTickets {
    store: Arc<dyn Store>,
    key: Arc<SecretKey>,
    ttl: Duration,
    purge: Purge,
}

impl std::fmt::Debug for RdpTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpTickets")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn aad(id: &str) -> Vec<u8> {
    format!("portcullis:rdp-ticket:{id}").into_bytes()
}

impl RdpTickets {
    /// Tickets kept in `store`, sealed under `key`, valid for `ttl` after they are issued.
    pub fn new(store: Arc<dyn Store>, key: Arc<SecretKey>, ttl: Duration) -> Self {
        Self {
            store,
            key,
            ttl,
            purge: Purge::default(),
        }
    }

    /// The same tickets, valid for `ttl` from now on.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a ticket stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new ticket for `user` to open `target`; `None` when too many are outstanding, in all
    /// or for this user (or the store cannot take it: logged).
    pub fn issue(&self, user: &str, user_id: &str, target: &str) -> Option<IssuedTicket> {
        let now = now_ms();
        self.purge.maybe(&*self.store, now);
        let (all, users) = self
            .store
            .ephemeral_count(TICKET_SPACE, user, now)
            .map_err(|e| tracing::error!(error = %e, "cannot count RDP tickets in the store"))
            .ok()?;
        if all >= MAX_TICKETS || users >= MAX_TICKETS_PER_USER {
            return None;
        }
        let id = format!("{TICKET_PREFIX}{}", portcullis_secrets::random_token(16));
        let secret = Zeroizing::new(portcullis_secrets::random_token(18));
        let ticket = Ticket {
            user: user.to_owned(),
            user_id: user_id.to_owned(),
            target: target.to_owned(),
            secret: secret.to_string(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&ticket).ok()?);
        let entry = Ephemeral {
            owner: user.to_owned(),
            value: self.key.seal(&plain, &aad(&id)),
            expires_at_ms: now
                .saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)),
        };
        self.store
            .ephemeral_update(TICKET_SPACE, &id, now, &mut |_| {
                EphemeralChange::Put(entry.clone())
            })
            .map_err(|e| tracing::error!(error = %e, "cannot store an RDP ticket"))
            .ok()?;
        Some(IssuedTicket { id, secret })
    }

    /// Voids every ticket of `user` (their account was deleted: a later account of the same name
    /// must not find them).
    pub fn revoke_user(&self, user: &str) {
        if let Err(e) = self.store.ephemeral_delete_owner(TICKET_SPACE, user) {
            tracing::error!(error = %e, user, "cannot void the RDP tickets of a user in the store");
        }
    }

    fn open(&self, id: &str, entry: &Ephemeral) -> Option<Ticket> {
        let plain = Zeroizing::new(self.key.open(&entry.value, &aad(id)).ok()?);
        serde_json::from_slice(&plain).ok()
    }

    /// The NTLM identity an NLA login with ticket `id` must prove: `user#target` and the
    /// secret. The ticket stays until [`RdpTickets::take`].
    pub fn nla_identity(&self, id: &str) -> Option<(String, Zeroizing<String>)> {
        let entry = self
            .store
            .ephemeral_update(TICKET_SPACE, id, now_ms(), &mut |_| EphemeralChange::Keep)
            .map_err(|e| tracing::error!(error = %e, "cannot read an RDP ticket from the store"))
            .ok()??;
        let t = self.open(id, &entry)?;
        Some((
            format!("{}#{}", t.user, t.target),
            Zeroizing::new(t.secret.clone()),
        ))
    }

    /// Uses ticket `id` up, whatever the outcome: its user, the user's id and the target if it
    /// has not expired and `secret` matches (`None`: the secret was already proven, by NLA).
    pub fn take(&self, id: &str, secret: Option<&str>) -> Option<(String, String, String)> {
        let entry = self
            .store
            .ephemeral_update(TICKET_SPACE, id, now_ms(), &mut |_| EphemeralChange::Delete)
            .map_err(|e| tracing::error!(error = %e, "cannot take an RDP ticket from the store"))
            .ok()??;
        let ticket = self.open(id, &entry)?;
        let proven = secret.is_none_or(|s| {
            portcullis_secrets::constant_time_eq(s.as_bytes(), ticket.secret.as_bytes())
        });
        proven.then(|| {
            (
                ticket.user.clone(),
                ticket.user_id.clone(),
                ticket.target.clone(),
            )
        })
    }
}

pub use portcullis_core::addr::parse_host_port;

/// Where an `.rdp` file sends the native client: `rdp.public_address` when it is set (behind a
/// proxy, or when users reach the RDP listener by another name); else the host the browser used
/// to reach the gateway, with the RDP listener's `port`. HTTP/2 has no `Host` header: its
/// `:authority` arrives as the request URI's authority, so that is asked first, then `Host`.
pub fn rdp_address(
    public: Option<&str>,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    port: u16,
) -> (String, u16) {
    if let Some((host, public_port)) = public.and_then(parse_host_port) {
        return (host, public_port.unwrap_or(port));
    }
    let from_request = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .and_then(|a| parse_host_port(&a));
    let host = from_request.map_or_else(|| "localhost".to_owned(), |(host, _)| host);
    (host, port)
}

/// The `.rdp` file for a ticket. `host` is how the user reaches the gateway, `port` its RDP
/// listener. The client asks for the password (the ticket's secret) when it connects.
pub fn rdp_file(host: &str, port: u16, user: &str, target: &str, ticket_id: &str) -> String {
    [
        format!("full address:s:{host}:{port}"),
        format!("username:s:{user}#{target}"),
        format!("loadbalanceinfo:s:Cookie: msts={ticket_id}"),
        "enablecredsspsupport:i:1".into(),
        "authentication level:i:2".into(),
        "prompt for credentials:i:1".into(),
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

    fn tickets(ttl: Duration) -> RdpTickets {
        RdpTickets::new(
            Arc::new(portcullis_store::MemoryStore::new()),
            Arc::new(SecretKey::generate()),
            ttl,
        )
    }

    #[test]
    fn the_store_holds_tickets_sealed_and_bound_to_their_id() {
        let store = Arc::new(portcullis_store::MemoryStore::new());
        let t = RdpTickets::new(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::new(SecretKey::generate()),
            Duration::from_secs(60),
        );
        let a = t.issue("alice", "u_alice", "web01").unwrap();
        let b = t.issue("alice", "u_alice", "web02").unwrap();
        let read = |id: &str| {
            store
                .ephemeral_update(TICKET_SPACE, id, now_ms(), &mut |_| EphemeralChange::Keep)
                .unwrap()
                .unwrap()
        };
        let sealed = read(&a.id);
        assert!(!sealed
            .value
            .windows(a.secret.len())
            .any(|w| w == a.secret.as_bytes()));
        // b's sealed ticket put under a's id does not open: a ticket cannot be swapped.
        let b_sealed = read(&b.id);
        store
            .ephemeral_update(TICKET_SPACE, &a.id, now_ms(), &mut |_| {
                EphemeralChange::Put(b_sealed.clone())
            })
            .unwrap();
        assert_eq!(t.nla_identity(&a.id), None);
        assert_eq!(t.take(&a.id, Some(&b.secret)), None);
        // Another gateway with the same key and store takes b once.
        let other = t.clone();
        assert!(other.take(&b.id, Some(&b.secret)).is_some());
        assert!(t.take(&b.id, Some(&b.secret)).is_none());
    }

    #[test]
    fn a_ticket_works_once_with_its_secret_and_expires() {
        let t = tickets(Duration::from_secs(60));
        let a = t.issue("alice", "u_alice", "web01").unwrap();
        assert!(a.id.starts_with(TICKET_PREFIX));
        let (who, secret) = t.nla_identity(&a.id).unwrap();
        assert_eq!(who, "alice#web01");
        assert_eq!(*secret, *a.secret);
        assert_eq!(
            t.take(&a.id, Some(&a.secret)),
            Some(("alice".into(), "u_alice".into(), "web01".into()))
        );
        assert_eq!(t.take(&a.id, Some(&a.secret)), None);
        assert_eq!(t.nla_identity(&a.id), None);
        // A wrong secret uses the ticket up too.
        let b = t.issue("alice", "u_alice", "web01").unwrap();
        assert_eq!(t.take(&b.id, Some("guess")), None);
        assert_eq!(t.take(&b.id, Some(&b.secret)), None);
        // Proven by NLA.
        let c = t.issue("alice", "u_alice", "web01").unwrap();
        assert!(t.take(&c.id, None).is_some());
        let short = t.clone().with_ttl(Duration::ZERO);
        let d = short.issue("alice", "u_alice", "web01").unwrap();
        assert_eq!(short.nla_identity(&d.id), None);
        assert_eq!(short.take(&d.id, Some(&d.secret)), None);
    }

    #[test]
    fn one_user_cannot_hold_more_than_their_share_of_tickets() {
        let t = tickets(Duration::from_secs(60));
        let mut alices = Vec::new();
        for _ in 0..MAX_TICKETS_PER_USER {
            alices.push(t.issue("alice", "u_alice", "web01").unwrap());
        }
        assert!(
            t.issue("alice", "u_alice", "web02").is_none(),
            "alice is over her cap"
        );
        assert!(
            t.issue("bob", "u_bob", "web01").is_some(),
            "bob still gets one"
        );
        // A used ticket frees its place.
        t.take(&alices[0].id, Some("wrong"));
        assert!(t.issue("alice", "u_alice", "web01").is_some());
        // Deleting alice voids hers, not bob's.
        let bobs = t.issue("bob", "u_bob", "web01").unwrap();
        t.revoke_user("alice");
        assert_eq!(t.nla_identity(&alices[1].id), None);
        assert!(t.take(&alices[2].id, Some(&alices[2].secret)).is_none());
        assert!(t.take(&bobs.id, Some(&bobs.secret)).is_some());
    }

    fn address(public: Option<&str>, uri: &str, host: Option<&str>) -> String {
        let uri: axum::http::Uri = uri.parse().unwrap();
        let mut headers = axum::http::HeaderMap::new();
        if let Some(h) = host {
            headers.insert(axum::http::header::HOST, h.parse().unwrap());
        }
        let (h, p) = rdp_address(public, &uri, &headers, 3389);
        format!("{h}:{p}")
    }

    #[test]
    fn the_file_names_the_host_the_user_reached() {
        // HTTP/1.1: origin-form URI, the Host header.
        assert_eq!(
            address(None, "/api/v1/x", Some("gw.example:8443")),
            "gw.example:3389"
        );
        assert_eq!(address(None, "/api/v1/x", Some("[::1]:8443")), "[::1]:3389");
        assert_eq!(
            address(None, "/api/v1/x", Some("10.0.0.5")),
            "10.0.0.5:3389"
        );
        // HTTP/2: no Host header, the :authority is the URI's.
        assert_eq!(
            address(None, "https://127.0.0.1:8443/api/v1/x", None),
            "127.0.0.1:3389"
        );
        assert_eq!(
            address(None, "https://gw.example:8443/x", Some("other")),
            "gw.example:3389"
        );
        // The configured public address wins, with or without its own port.
        assert_eq!(
            address(Some("rdp.example.com:13389"), "/x", Some("10.0.0.5:8443")),
            "rdp.example.com:13389"
        );
        assert_eq!(
            address(Some("rdp.example.com"), "/x", None),
            "rdp.example.com:3389"
        );
        // Nothing usable: localhost, never a header's junk.
        assert_eq!(address(None, "/x", None), "localhost:3389");
        assert_eq!(address(None, "/x", Some("evil\\r\\nx:1")), "localhost:3389");
        assert_eq!(address(None, "/x", Some("a b")), "localhost:3389");
    }

    #[test]
    fn the_file_names_the_gateway_the_user_and_the_ticket_but_not_the_secret() {
        let f = rdp_file("gw.example", 3389, "alice", "web01", "pct_x");
        assert!(f.contains("full address:s:gw.example:3389\r\n"));
        assert!(f.contains("username:s:alice#web01\r\n"));
        assert!(f.contains("loadbalanceinfo:s:Cookie: msts=pct_x\r\n"));
    }
}
