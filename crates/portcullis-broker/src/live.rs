//! What a shutdown waits for: every session thread, every viewer still attached (a browser
//! socket or a native client being told why its session ended) and every recorder's tap (a
//! recording being closed) holds a [`Live`] until it is done.

use std::sync::Arc;

use tokio::sync::watch;

/// Counts the [`Live`] guards handed out. Cheap to clone (one shared count).
#[derive(Clone)]
pub(crate) struct Tracker(Arc<watch::Sender<usize>>);

impl Default for Tracker {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Tracker {
    /// One more thing to wait for, until the guard is dropped.
    pub(crate) fn enter(&self) -> Live {
        self.0.send_modify(|n| *n += 1);
        Live(Arc::clone(&self.0))
    }

    /// How many guards are alive.
    pub(crate) fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until no guard is alive.
    pub(crate) async fn idle(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Something a shutdown waits for, until dropped.
pub(crate) struct Live(Arc<watch::Sender<usize>>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

/// A count bumped on every change worth telling watchers of (see `Broker::changes`).
#[derive(Clone)]
pub(crate) struct Changes(Arc<watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Changes {
    /// Something changed.
    pub(crate) fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver of the count.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
