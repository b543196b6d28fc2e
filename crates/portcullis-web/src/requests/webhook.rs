//! The webhook announcing access requests and decisions, for a chat or ticketing system to
//! relay: a JSON POST to the configured URL (https, or http on loopback), signed with
//! HMAC-SHA256 under the configured secret:
//!
//! - `X-Portcullis-Event`: `request.created`, `request.approval`, `request.approved`,
//!   `request.denied`, `request.cancelled`, `request.expired`;
//! - `X-Portcullis-Timestamp`: Unix seconds;
//! - `X-Portcullis-Signature`: `sha256=` and the hex HMAC of `<timestamp>.<body>` (a receiver
//!   checks it, and refuses old timestamps against replays).
//!
//! The body: `{"event", "id" (unique per delivery), "at", "request": {…}}`. Deliveries are queued
//! (at most [`QUEUE`]; more are dropped, logged) and tried up to three times (1 s, 5 s apart); a
//! failure is logged, never blocks a decision.

use std::time::Duration;

use hmac::{Hmac, Mac};
use portcullis_store::AccessRequest;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Settings, WEBHOOK_AAD};
use crate::AppState;

/// Deliveries waiting at most.
const QUEUE: usize = 1000;

/// One delivery.
struct Delivery {
    url: String,
    secret: zeroize::Zeroizing<Vec<u8>>,
    event: &'static str,
    body: String,
}

/// The webhook's sender: drops everything until [`Webhook::start`] (every clone shares the
/// queue). Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Webhook {
    queue: std::sync::Arc<std::sync::OnceLock<mpsc::Sender<Delivery>>>,
}

/// The signature header's value for `body` sent at `timestamp`.
pub(crate) fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    /// Starts the delivery task (on the current runtime), once.
    pub(crate) fn start(&self) {
        if self.queue.get().is_some() {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE);
        if self.queue.set(tx).is_err() {
            return;
        }
        tokio::spawn(async move {
            let client = match crate::sso::client::Http::new() {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "webhook disabled: no HTTP client");
                    return;
                }
            };
            while let Some(d) = rx.recv().await {
                let mut delays = [Duration::from_secs(1), Duration::from_secs(5)].into_iter();
                loop {
                    let ts = crate::ops::now_unix();
                    let sent = client
                        .post_json(
                            &d.url,
                            &d.body,
                            &[
                                ("x-portcullis-event", d.event.to_owned()),
                                ("x-portcullis-timestamp", ts.to_string()),
                                ("x-portcullis-signature", signature(&d.secret, ts, &d.body)),
                            ],
                        )
                        .await;
                    match sent {
                        Ok(status) if (200..300).contains(&status) => {
                            info!(event = d.event, "webhook delivered");
                            break;
                        }
                        other => {
                            let why = match other {
                                Ok(status) => format!("answered {status}"),
                                Err(e) => e,
                            };
                            match delays.next() {
                                Some(delay) => tokio::time::sleep(delay).await,
                                None => {
                                    warn!(event = d.event, reason = %why, "webhook not delivered after 3 tries");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    /// Announces `event` about `request`, when a webhook is set up. Never waits.
    pub(crate) fn announce(&self, state: &AppState, event: &'static str, request: &AccessRequest) {
        let Some(queue) = self.queue.get() else {
            return;
        };
        let settings = match Settings::load(&*state.store) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "webhook skipped: settings unreadable");
                return;
            }
        };
        let Some(url) = settings.webhook_url.filter(|u| !u.is_empty()) else {
            return;
        };
        let secret = match state.key.open(&settings.sealed_webhook_secret, WEBHOOK_AAD) {
            Ok(s) => zeroize::Zeroizing::new(s),
            Err(e) => {
                warn!(error = %e, "webhook skipped: its secret cannot be opened");
                return;
            }
        };
        let body = json!({
            "event": event,
            "id": portcullis_secrets::random_token(12),
            "at": crate::ops::now_unix(),
            "request": request,
        })
        .to_string();
        if queue
            .try_send(Delivery {
                url,
                secret,
                event,
                body,
            })
            .is_err()
        {
            warn!(event, "webhook queue full: announcement dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let a = signature(b"k", 100, "{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature(b"k", 101, "{}"));
        assert_ne!(a, signature(b"k", 100, "{ }"));
        assert_ne!(a, signature(b"j", 100, "{}"));
        // RFC 4231 test case 2's key and data, as `<ts>.<body>` would frame them.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
