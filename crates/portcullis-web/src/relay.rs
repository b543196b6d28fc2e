//! Watching a session another gateway of the cluster holds. The security team's browser reached
//! gateway B; the session lives on A. B puts the watch on record, leaves a one-time ticket in
//! the shared store (sealed under the cluster's secret key, bound to its own key, 30 s), and
//! connects to A at the address A published (`[http] advertise`), over TLS to the certificate A
//! published alongside (SHA-256 pin, checked before anything is sent), presenting the ticket on
//! A's internal route. A takes the ticket (once), attaches a watcher named after the watcher and
//! B, on A's record too, and serves the watch as it serves its own; B relays the WebSocket
//! messages both ways (the watcher's input is ignored by A, as for any watch).

use std::time::Duration;

use axum::extract::ws::{Message as AxMessage, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_secrets::SecretKey;
use portcullis_store::{Ephemeral, EphemeralChange, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use zeroize::Zeroizing;

/// Where gateways publish their address for the others.
const ADDRESS_SPACE: &str = "node_address";
/// One-time watch tickets.
const TICKET_SPACE: &str = "watch_ticket";
/// How long a published address stays (it is published again every round).
const ADDRESS_TTL_MS: i64 = 30_000;
/// How long a ticket may wait to be taken.
const TICKET_TTL_MS: i64 = 30_000;
/// The header a ticket travels in.
pub(crate) const TICKET_HEADER: &str = "x-portcullis-watch-ticket";
/// How long connecting to the other gateway may take (TCP, TLS, WebSocket).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest message relayed (frames of a 4K screen fit; what the browser's own socket
/// accepts from the gateway is no larger).
const MAX_RELAYED: usize = 64 * 1024 * 1024;

/// A gateway's address for the others, published in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeAddress {
    /// `https://host:port`.
    pub url: String,
    /// SHA-256 of its TLS certificate (DER), lowercase hex.
    pub cert_sha256: String,
}

impl NodeAddress {
    /// `url`, serving the certificate `cert_der`.
    pub fn new(url: &str, cert_der: &[u8]) -> Self {
        Self {
            url: url.to_owned(),
            cert_sha256: hex::encode(Sha256::digest(cert_der)),
        }
    }
}

fn address_aad(node: &str) -> Vec<u8> {
    format!("portcullis:node-address:{node}").into_bytes()
}

/// Publishes `node`'s address (again), for [`ADDRESS_TTL_MS`]; sealed under the cluster's
/// secret key (bound to the node's name), so only a gateway of the cluster can say where a
/// gateway is and which certificate it shows.
pub(crate) fn publish_address(
    store: &dyn Store,
    secret: &SecretKey,
    node: &str,
    address: &NodeAddress,
    now_ms: i64,
) {
    let Ok(plain) = serde_json::to_vec(address) else {
        return;
    };
    let entry = Ephemeral {
        owner: String::new(),
        value: secret.seal(&plain, &address_aad(node)),
        expires_at_ms: now_ms.saturating_add(ADDRESS_TTL_MS),
    };
    if let Err(e) = store.ephemeral_update(ADDRESS_SPACE, node, now_ms, &mut |_| {
        EphemeralChange::Put(entry.clone())
    }) {
        tracing::warn!(error = %e, "cannot publish this gateway's address");
    }
}

/// The address `node` published lately.
fn address_of(
    store: &dyn Store,
    secret: &SecretKey,
    node: &str,
    now_ms: i64,
) -> Option<NodeAddress> {
    let entry = store
        .ephemeral_update(ADDRESS_SPACE, node, now_ms, &mut |_| EphemeralChange::Keep)
        .ok()??;
    let plain = secret.open(&entry.value, &address_aad(node)).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// What a watch ticket allows: `watcher` (asking on gateway `from`) to watch `session`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct WatchTicket {
    pub(crate) session: String,
    pub(crate) watcher: String,
    pub(crate) from: String,
    /// The gateway it is for (which checks it is the one).
    pub(crate) to: String,
}

fn ticket_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn ticket_aad(key: &str) -> Vec<u8> {
    format!("portcullis:watch-ticket:{key}").into_bytes()
}

/// Leaves a one-time ticket for `ticket`; returns the token that takes it.
fn issue(
    store: &dyn Store,
    secret: &SecretKey,
    ticket: &WatchTicket,
    now_ms: i64,
) -> Result<Zeroizing<String>, String> {
    let token = Zeroizing::new(portcullis_secrets::random_token(24));
    let key = ticket_key(&token);
    let plain = Zeroizing::new(serde_json::to_vec(ticket).map_err(|e| e.to_string())?);
    let entry = Ephemeral {
        owner: ticket.watcher.clone(),
        value: secret.seal(&plain, &ticket_aad(&key)),
        expires_at_ms: now_ms.saturating_add(TICKET_TTL_MS),
    };
    store
        .ephemeral_update(TICKET_SPACE, &key, now_ms, &mut |_| {
            EphemeralChange::Put(entry.clone())
        })
        .map_err(|e| format!("cannot leave the watch ticket in the store: {e}"))?;
    Ok(token)
}

/// Takes the ticket `token` names (once, whatever follows), if it is there and not expired.
pub(crate) fn take(
    store: &dyn Store,
    secret: &SecretKey,
    token: &str,
    now_ms: i64,
) -> Option<WatchTicket> {
    // Tokens are what `random_token(24)` makes: 32 URL-safe characters.
    if token.len() != 32
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let key = ticket_key(token);
    let entry = store
        .ephemeral_update(TICKET_SPACE, &key, now_ms, &mut |_| EphemeralChange::Delete)
        .ok()??;
    let plain = Zeroizing::new(secret.open(&entry.value, &ticket_aad(&key)).ok()?);
    serde_json::from_slice(&plain).ok()
}

/// A WebSocket to the gateway holding the session.
type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Connects to `node` for `ticket`'s watch: its published address, TLS to its published
/// certificate, the ticket on its internal route. `Err`: what went wrong, for the log.
pub(crate) async fn connect(
    store: std::sync::Arc<dyn Store>,
    secret: std::sync::Arc<SecretKey>,
    node: &str,
    ticket: WatchTicket,
    now_ms: i64,
    batch: bool,
) -> Result<Upstream, String> {
    let node_c = node.to_owned();
    let session = ticket.session.clone();
    let (address, token) = tokio::task::spawn_blocking(move || {
        let address = address_of(store.as_ref(), &secret, &node_c, now_ms)
            .ok_or_else(|| format!("gateway {node_c:?} published no address ([http] advertise)"))?;
        let token = issue(store.as_ref(), &secret, &ticket, now_ms)?;
        Ok::<_, String>((address, token))
    })
    .await
    .map_err(|e| e.to_string())??;
    let authority = address
        .url
        .strip_prefix("https://")
        .ok_or("the published address is not https")?
        .to_owned();
    let (host, port) = portcullis_core::addr::parse_host_port(&authority)
        .and_then(|(h, p)| Some((h, p?)))
        .ok_or("the published address has no host and port")?;
    let connecting = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot reach {authority}: {e}"))?;
        let tls = portcullis_rdp::tls_pinned(tcp, &host, &address.cert_sha256).await?;
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                // Batches only when the watching page asked for them: it gets the messages as
                // the holder sends them.
                format!(
                    "wss://{authority}/api/v1/cluster/watch/{session}{}",
                    if batch { "?batch=1" } else { "" }
                ),
            )
            .map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            TICKET_HEADER,
            token.parse().map_err(|_| "unusable ticket".to_owned())?,
        );
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_RELAYED))
            .max_frame_size(Some(MAX_RELAYED));
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, tls, Some(config))
            .await
            .map_err(|e| format!("the watch was refused there: {e}"))?;
        Ok::<_, String>(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            format!(
                "no answer from {authority} within {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
}

/// How long one relayed message may take to be sent on.
const RELAY_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the browser is pinged; one silent for [`BROWSER_SILENT`] is gone.
const BROWSER_PING: Duration = Duration::from_secs(20);
const BROWSER_SILENT: Duration = Duration::from_secs(60);

/// Relays messages between the watcher's browser and the gateway holding the session until
/// either side ends; a close from one side is passed to the other. Every send is bounded, and
/// the browser is pinged here (the holder's pings are answered by this gateway's socket, so it
/// cannot tell a vanished browser): one that stops answering ends the relay, and so the watch
/// on the holder.
pub(crate) async fn relay(browser: WebSocket, upstream: Upstream, mut open: crate::watches::Watch) {
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    let mut ping = tokio::time::interval(BROWSER_PING);
    ping.reset();
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            why = open.revoked() => {
                tracing::info!(%why, "relayed watch ended: the watcher's account was revoked");
                break;
            }
            m = from_upstream.next() => {
                let Some(Ok(m)) = m else { break };
                let closing = matches!(m, WsMessage::Close(_));
                let Some(m) = to_axum(m) else { continue };
                let sent = tokio::time::timeout(RELAY_SEND_TIMEOUT, to_browser.send(m)).await;
                if !matches!(sent, Ok(Ok(()))) || closing {
                    break;
                }
            }
            m = from_browser.next() => {
                let Some(Ok(m)) = m else { break };
                heard = tokio::time::Instant::now();
                if matches!(m, AxMessage::Pong(_)) {
                    continue;
                }
                let closing = matches!(m, AxMessage::Close(_));
                let sent = tokio::time::timeout(RELAY_SEND_TIMEOUT, to_upstream.send(from_axum(m))).await;
                if !matches!(sent, Ok(Ok(()))) || closing {
                    break;
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > BROWSER_SILENT {
                    break;
                }
                let sent = tokio::time::timeout(
                    RELAY_SEND_TIMEOUT,
                    to_browser.send(AxMessage::Ping(axum::body::Bytes::new())),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), to_browser.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), to_upstream.close()).await;
}

fn to_axum(m: WsMessage) -> Option<AxMessage> {
    use axum::extract::ws::CloseFrame;
    Some(match m {
        WsMessage::Text(t) => AxMessage::Text(t.as_str().into()),
        WsMessage::Binary(b) => AxMessage::Binary(b),
        WsMessage::Ping(b) => AxMessage::Ping(b),
        WsMessage::Pong(b) => AxMessage::Pong(b),
        WsMessage::Close(c) => AxMessage::Close(c.map(|c| CloseFrame {
            code: c.code.into(),
            reason: c.reason.as_str().into(),
        })),
        WsMessage::Frame(_) => return None,
    })
}

fn from_axum(m: AxMessage) -> WsMessage {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    match m {
        AxMessage::Text(t) => WsMessage::Text(t.as_str().into()),
        AxMessage::Binary(b) => WsMessage::Binary(b),
        AxMessage::Ping(b) => WsMessage::Ping(b),
        AxMessage::Pong(b) => WsMessage::Pong(b),
        AxMessage::Close(c) => WsMessage::Close(c.map(|c| CloseFrame {
            code: c.code.into(),
            reason: c.reason.as_str().into(),
        })),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portcullis_store::MemoryStore;

    #[test]
    fn a_ticket_is_taken_once_sealed_and_bound_to_its_key() {
        let store = MemoryStore::new();
        let secret = SecretKey::generate();
        let ticket = WatchTicket {
            session: "s1".into(),
            watcher: "sam".into(),
            from: "gw-b".into(),
            to: "gw-a".into(),
        };
        let token = issue(&store, &secret, &ticket, 1000).unwrap();
        // Sealed: the store holds neither the token nor the ticket in the clear.
        let key = ticket_key(&token);
        let entry = store
            .ephemeral_update(TICKET_SPACE, &key, 1000, &mut |_| EphemeralChange::Keep)
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&entry.value).contains("sam"));
        // Another key's entry moved under this key does not open.
        let other = issue(&store, &secret, &ticket, 1000).unwrap();
        let moved = store
            .ephemeral_update(TICKET_SPACE, &ticket_key(&other), 1000, &mut |_| {
                EphemeralChange::Keep
            })
            .unwrap()
            .unwrap();
        store
            .ephemeral_update(TICKET_SPACE, &key, 1000, &mut |_| {
                EphemeralChange::Put(moved.clone())
            })
            .unwrap();
        assert_eq!(take(&store, &secret, &token, 1000), None);
        // Once, and not after it expired.
        assert_eq!(take(&store, &secret, &other, 1000), Some(ticket.clone()));
        assert_eq!(take(&store, &secret, &other, 1000), None);
        let late = issue(&store, &secret, &ticket, 1000).unwrap();
        assert_eq!(take(&store, &secret, &late, 1000 + TICKET_TTL_MS + 1), None);
        assert_eq!(take(&store, &secret, "", 1000), None);
        assert_eq!(take(&store, &secret, &"x".repeat(500), 1000), None);
        // Another cluster's key opens nothing.
        let foreign = issue(&store, &SecretKey::generate(), &ticket, 1000).unwrap();
        assert_eq!(take(&store, &secret, &foreign, 1000), None);
    }

    #[test]
    fn addresses_are_published_for_a_while() {
        let store = MemoryStore::new();
        let a = NodeAddress {
            url: "https://10.0.0.5:8443".into(),
            cert_sha256: "ab".repeat(32),
        };
        let secret = SecretKey::generate();
        publish_address(&store, &secret, "gw-a", &a, 1000);
        assert_eq!(address_of(&store, &secret, "gw-a", 2000), Some(a.clone()));
        assert_eq!(
            address_of(&store, &secret, "gw-a", 1000 + ADDRESS_TTL_MS + 1),
            None
        );
        assert_eq!(address_of(&store, &secret, "gw-b", 2000), None);
        // Written by someone without the cluster's key, or moved from another gateway's name:
        // not taken.
        publish_address(&store, &SecretKey::generate(), "gw-c", &a, 1000);
        assert_eq!(address_of(&store, &secret, "gw-c", 2000), None);
        let moved = store
            .ephemeral_update(ADDRESS_SPACE, "gw-a", 2000, &mut |_| EphemeralChange::Keep)
            .unwrap()
            .unwrap();
        store
            .ephemeral_update(ADDRESS_SPACE, "gw-d", 2000, &mut |_| {
                EphemeralChange::Put(moved.clone())
            })
            .unwrap();
        assert_eq!(address_of(&store, &secret, "gw-d", 2000), None);
    }
}
