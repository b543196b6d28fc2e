//! The graceful stop of `serve`, after SIGTERM or SIGINT: the listeners have stopped accepting
//! (the stop signal passed down); here every session ends with its viewers told why, every
//! recording is closed as complete, the audit trail is flushed and the SIEM exports get their
//! chance to deliver. `serve` bounds all of it by `shutdown_grace_secs`.

use std::time::Duration;

use portcullis_audit::{AuditLog, Kind, Record};
use portcullis_broker::Broker;
use portcullis_core::wire::ServerMessage;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// What browsers are shown and what recordings and the audit trail give as the end reason.
pub const REASON: &str = "the gateway is shutting down";

/// Kept out of the grace for the last steps (forwarders storing their cursors, the runtime
/// stopping).
pub const LAST_STEPS: Duration = Duration::from_millis(500);

/// Ends every session and waits for their viewers and recordings, then writes the stop in the
/// audit trail and waits for its fsync: the trail's writer acknowledges in order, so every
/// session's end record before it is on disk too. Returns that record's seq, or `None` when the
/// trail could not take it.
pub async fn sessions_and_trail(broker: &Broker, audit: &AuditLog, signal: &str) -> Option<u64> {
    broker
        .shutdown(ServerMessage::Closed {
            reason: REASON.into(),
        })
        .await;
    info!("every session ended and its recording closed");
    let record = Kind::new("gateway_stop").map(|kind| {
        Record::new(kind, "system")
            .detail("reason", REASON)
            .detail("signal", signal)
    });
    let outcome = match record {
        Ok(record) => match audit.submit(record) {
            Ok(ticket) => ticket.await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match outcome {
        Ok(appended) => {
            info!(seq = appended.seq, "audit trail flushed");
            Some(appended.seq)
        }
        Err(e) => {
            error!(error = %e, "cannot flush the audit trail on shutdown");
            None
        }
    }
}

/// Wakes the SIEM forwarders and waits until each has delivered the trail up to `seq`, or
/// until `deadline` (less the last steps). What is not delivered then goes at the next start
/// (each forwarder keeps a durable cursor).
pub async fn siem(exports: &[portcullis_siem::Handle], seq: u64, deadline: Instant) {
    let until = deadline.checked_sub(LAST_STEPS).unwrap_or(deadline);
    for export in exports {
        export.wake();
    }
    for export in exports {
        let mut status = export.subscribe();
        let delivered = tokio::time::timeout_at(
            until,
            status.wait_for(|s| s.delivered_seq >= seq && s.durable_seq >= seq),
        )
        .await;
        if !matches!(delivered, Ok(Ok(_))) {
            let s = export.status();
            warn!(sink = %s.sink, delivered_seq = s.delivered_seq, last_seq = seq,
                "SIEM export not delivered up to the end of the trail before the shutdown; the rest goes at the next start");
        }
    }
}
