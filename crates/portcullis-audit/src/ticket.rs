//! A one-shot reply from the writer thread, awaitable both blocking and as a future, without
//! an async runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::digest::Digest;
use crate::error::AuditError;

/// Where a record landed: returned once it is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its seq.
    pub seq: u64,
    /// Its time (Unix milliseconds), stamped by the writer.
    pub ts_ms: u64,
    /// Its hash.
    pub hash: Digest,
}

type Outcome = Result<Appended, AuditError>;

#[derive(Default)]
struct State {
    outcome: Option<Outcome>,
    /// The reply was sent (or dropped unsent), so waiting longer is pointless.
    sent: bool,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    sent: Condvar,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A submitted record's acknowledgement to come.
///
/// Either [`Ticket::wait`] for it (blocking the thread), or `.await` it: the future is woken by
/// the writer thread and works on any executor. Dropping a ticket does not withdraw the record.
#[must_use = "a record is only known to be on disk once its ticket says so"]
pub struct Ticket {
    slot: Arc<Slot>,
}

/// The writer's half: sends the outcome once. Dropped unsent (the writer is gone), it tells the
/// ticket [`AuditError::Closed`].
pub(crate) struct Reply {
    slot: Arc<Slot>,
}

/// A connected reply and ticket.
pub(crate) fn ticket() -> (Reply, Ticket) {
    let slot = Arc::new(Slot::default());
    (
        Reply {
            slot: Arc::clone(&slot),
        },
        Ticket { slot },
    )
}

impl Reply {
    /// Sends the outcome and wakes the ticket.
    pub(crate) fn send(self, outcome: Outcome) {
        self.finish(Some(outcome));
    }

    fn finish(&self, outcome: Option<Outcome>) {
        let waker = {
            let mut state = self.slot.lock();
            if state.sent {
                return;
            }
            state.sent = true;
            state.outcome = outcome;
            state.waker.take()
        };
        self.slot.sent.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.finish(Some(Err(AuditError::Closed)));
    }
}

impl Ticket {
    /// Blocks until the record is fsynced (or failed). Do not call it on an async executor's
    /// thread: `.await` the ticket there instead.
    pub fn wait(self) -> Outcome {
        let mut state = self.slot.lock();
        while !state.sent {
            state = self
                .slot
                .sent
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.outcome.take().unwrap_or(Err(AuditError::Closed))
    }
}

impl Future for Ticket {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = self.slot.lock();
        if state.sent {
            return Poll::Ready(state.outcome.take().unwrap_or(Err(AuditError::Closed)));
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(Mutex<bool>);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            *self.0.lock().unwrap() = true;
        }
    }

    fn appended(seq: u64) -> Appended {
        Appended {
            seq,
            ts_ms: 0,
            hash: crate::GENESIS,
        }
    }

    #[test]
    fn wait_gets_what_was_sent_from_another_thread() {
        let (reply, ticket) = ticket();
        let t = std::thread::spawn(move || reply.send(Ok(appended(3))));
        assert_eq!(ticket.wait().unwrap(), appended(3));
        t.join().unwrap();
    }

    #[test]
    fn future_is_woken_and_ready() {
        let (reply, mut ticket) = ticket();
        let flag = Arc::new(Flag(Mutex::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut ticket).poll(&mut cx).is_pending());
        reply.send(Ok(appended(9)));
        assert!(*flag.0.lock().unwrap());
        match Pin::new(&mut ticket).poll(&mut cx) {
            Poll::Ready(Ok(a)) => assert_eq!(a.seq, 9),
            _ => panic!("not ready"),
        }
    }

    #[test]
    fn dropped_reply_closes_the_ticket() {
        let (reply, ticket) = ticket();
        drop(reply);
        assert!(matches!(ticket.wait(), Err(AuditError::Closed)));
    }
}
