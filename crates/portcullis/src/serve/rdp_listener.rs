//! The native RDP listener's accept loop: bounds the connections (in all, and per network
//! before login) and hands each one to `portcullis_rdp::server::serve`.

use std::sync::Arc;

use tracing::info;

use crate::shutdown::stopped;

/// Most native RDP connections at once (each holds a TLS session and, once in, a session).
const MAX_RDP_CONNECTIONS: usize = 256;

pub(super) async fn rdp_accept_loop(
    listener: tokio::net::TcpListener,
    server: Arc<portcullis_rdp::server::ServerConfig>,
    gate: Arc<dyn portcullis_rdp::server::Gate>,
    pre_auth: portcullis_web::rdp_preauth::PreAuth,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_RDP_CONNECTIONS));
    // A flood of refusals is logged once a second with a count, not line by line.
    let mut refused = 0u64;
    let mut last_warning: Option<std::time::Instant> = None;
    let stop = stopped(stop);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => {
                // Dropping the listener refuses new connections; live ones end with their
                // sessions (the broker's shutdown).
                info!("RDP listener closed");
                return;
            }
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "RDP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // One network may hold only a few connections that have not logged in yet, so idle
        // sockets from one address cannot take the places of everyone else.
        let admitted = pre_auth.enter(peer).and_then(|waiting| {
            let permit = Arc::clone(&slots).try_acquire_owned().ok()?;
            Some((waiting, permit))
        });
        let Some((waiting, permit)) = admitted else {
            drop(tcp);
            refused += 1;
            if last_warning.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                tracing::warn!(
                    client = %peer,
                    refused,
                    waiting = pre_auth.waiting(peer.ip()),
                    "RDP connection refused: too many connections from this network waiting to log in, or in all"
                );
                last_warning = Some(std::time::Instant::now());
                refused = 0;
            }
            continue;
        };
        let (server, gate) = (Arc::clone(&server), Arc::clone(&gate));
        tokio::spawn(async move {
            portcullis_rdp::server::serve(tcp, peer, server, gate).await;
            drop(waiting);
            drop(permit);
        });
    }
}
