//! The graceful stop of `serve`, after SIGTERM or SIGINT: the listeners have stopped accepting
//! (the stop signal passed down); here every session ends with its viewers told why, every
//! recording is closed as complete, the audit trail is flushed and the SIEM exports get their
//! chance to deliver, all within `shutdown_grace_secs`. The sessions never take the trail's share
//! of it: the stop is on record even when a session outlived the grace.

use std::sync::Arc;
use std::time::Duration;

use portcullis_audit::{AuditError, AuditLog, Kind, Record};
use portcullis_broker::Broker;
use portcullis_core::session::SessionEnd;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// What browsers are shown and what recordings and the audit trail give as the end reason.
pub(crate) const REASON: &str = "the gateway is shutting down";

/// Kept out of the grace for the last steps (forwarders storing their cursors, the runtime
/// stopping).
pub(crate) const LAST_STEPS: Duration = Duration::from_millis(500);

/// The end of the grace kept for the audit trail's stop record and the SIEM exports, however
/// long the sessions take: at most 3 s, half of a short grace.
pub(crate) fn trail_margin(grace: Duration) -> Duration {
    (grace / 2).min(Duration::from_secs(3))
}

/// The whole graceful stop, within `grace` from `start`: ends every session and waits for their
/// viewers and recordings until the grace less [`trail_margin`]; then, whatever became of them,
/// writes the stop in the audit trail and waits for its fsync (the writer acknowledges in order,
/// so every session's end record queued before it is on disk too) and gives the SIEM exports
/// the rest of the grace to deliver up to it. True when all of it finished.
pub(crate) async fn run(
    broker: &Broker,
    audit: &Arc<AuditLog>,
    exports: &[portcullis_siem::Handle],
    signal: &str,
    start: Instant,
    grace: Duration,
) -> bool {
    let deadline = start + grace;
    let sessions_until = deadline.checked_sub(trail_margin(grace)).unwrap_or(start);
    let ended = tokio::time::timeout_at(sessions_until, broker.shutdown(SessionEnd::Shutdown))
        .await
        .is_ok();
    let still_open = broker.still_open();
    if ended {
        info!("every session ended and its recording closed");
    } else {
        error!(
            grace_secs = grace.as_secs(),
            still_open,
            "the shutdown grace passed with sessions or recordings still open: writing the stop \
             to the audit trail and exiting; recordings left open are closed as incomplete at \
             the next start"
        );
    }
    // The last steps may not eat all of a short grace's margin.
    let until = deadline
        .checked_sub(LAST_STEPS.min(trail_margin(grace) / 2))
        .unwrap_or(deadline);
    let seq = match tokio::time::timeout_at(until, trail(audit, signal, still_open)).await {
        Ok(seq) => seq,
        Err(_) => {
            error!("the audit trail did not take the stop record before the end of the grace");
            None
        }
    };
    if let Some(seq) = seq {
        siem(exports, seq, deadline).await;
    }
    ended && seq.is_some()
}

/// Writes the stop in the audit trail and waits for its fsync. Returns that record's seq, or
/// `None` when the trail could not take it. Never blocks the runtime: a full queue (a stuck
/// disk) is waited for on a blocking thread, so the caller's deadline still fires.
async fn trail(audit: &Arc<AuditLog>, signal: &str, still_open: usize) -> Option<u64> {
    let record = Kind::new("gateway_stop").map(|kind| {
        let record = Record::new(kind, "system")
            .detail("reason", REASON)
            .detail("signal", signal);
        if still_open > 0 {
            // What was not finished when the grace ran out (recovered at the next start).
            record.detail("still_open", still_open as u64)
        } else {
            record
        }
    });
    let ticket = match record {
        Ok(record) => match audit.try_submit(record.clone()) {
            Err(AuditError::QueueFull) => {
                let audit = Arc::clone(audit);
                match tokio::task::spawn_blocking(move || audit.submit(record)).await {
                    Ok(ticket) => ticket,
                    Err(e) => {
                        error!(error = %e, "cannot flush the audit trail on shutdown");
                        return None;
                    }
                }
            }
            other => other,
        },
        Err(e) => Err(e),
    };
    let outcome = match ticket {
        Ok(ticket) => ticket.await,
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
pub(crate) async fn siem(exports: &[portcullis_siem::Handle], seq: u64, deadline: Instant) {
    let until = deadline.checked_sub(LAST_STEPS).unwrap_or(deadline);
    for export in exports {
        export.wake();
    }
    for export in exports {
        // The cluster's export is the cluster's: another gateway goes on with it (this one's
        // last records reach it through the mirror, flushed at the stop).
        if export.status().cluster {
            continue;
        }
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

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM (systemd, `kill`) and SIGINT (Ctrl-C).
pub(crate) struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name.
    pub(crate) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_audit::Filter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn sessions_end_with_the_reason_the_stop_record_gives() {
        assert_eq!(SessionEnd::Shutdown.to_string(), REASON);
    }

    /// A minimal RFB 3.8 server without authentication: a still 64x32 desktop.
    async fn still_desktop() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    s.write_all(b"RFB 003.008\n").await?;
                    let mut version = [0u8; 12];
                    s.read_exact(&mut version).await?;
                    s.write_all(&[1, 1]).await?;
                    let mut byte = [0u8; 1];
                    s.read_exact(&mut byte).await?;
                    s.write_all(&0u32.to_be_bytes()).await?;
                    s.read_exact(&mut byte).await?;
                    let mut init = vec![0, 64, 0, 32, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255];
                    init.extend_from_slice(&[0, 8, 16, 0, 0, 0, 0, 0, 0, 1, b'd']);
                    s.write_all(&init).await?;
                    let mut buf = [0u8; 4096];
                    while s.read(&mut buf).await? > 0 {}
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stop_is_on_record_even_when_a_session_outlives_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditLog::open(dir.path()).unwrap());
        let broker =
            Broker::default().with_recorder(portcullis_broker::testing::HoldingRecorder::shared());
        let session = broker
            .open(portcullis_broker::testing::browser_request(
                still_desktop().await,
            ))
            .await
            .unwrap();
        // A viewer that is never let go (a stuck client): the shutdown cannot finish.
        let (_stuck, _) = session.attach_viewer("alice");
        let grace = Duration::from_secs(2);
        let start = Instant::now();
        let clean = run(&broker, &audit, &[], "SIGTERM", start, grace).await;
        assert!(!clean, "a viewer was still open");
        assert!(start.elapsed() < grace, "took {:?}", start.elapsed());
        let stops = audit
            .query(&Filter {
                kinds: vec![Kind::new("gateway_stop").unwrap()],
                ..Filter::new(10)
            })
            .unwrap();
        assert_eq!(stops.len(), 1, "the stop is on record: {stops:?}");
        let detail = &stops[0].record.detail;
        assert_eq!(detail["still_open"], serde_json::json!(1));
        assert_eq!(detail["signal"], serde_json::json!("SIGTERM"));
    }
}
