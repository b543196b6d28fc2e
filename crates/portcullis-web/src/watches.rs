//! The security team's watches open on this gateway, by whose they are, so that locking or
//! deleting an account ends its watches at once — those opened here, those relayed to another
//! gateway from here, and those relayed here from another (registered under the watcher's own
//! name) — as it ends the account's sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Each open watch: whose, and how to end it.
type Entries = HashMap<u64, (String, watch::Sender<Option<String>>)>;
type Open = Arc<Mutex<Entries>>;

/// The open watches. Cheap to clone; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Watches {
    open: Open,
    next: Arc<AtomicU64>,
}

/// One open watch: [`Watch::revoked`] resolves when its watcher's account is locked or
/// deleted; dropping it takes it off the list.
#[derive(Debug)]
pub struct Watch {
    id: u64,
    open: Open,
    ended: watch::Receiver<Option<String>>,
}

impl Watches {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A watch by `user` begins.
    pub fn begin(&self, user: &str) -> Watch {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, ended) = watch::channel(None);
        self.lock().insert(id, (user.to_owned(), tx));
        Watch {
            id,
            open: Arc::clone(&self.open),
            ended,
        }
    }

    /// Ends every watch of `user`, telling why. Returns how many.
    pub fn end_user(&self, user: &str, why: &str) -> usize {
        let open = self.lock();
        let mut n = 0;
        for (who, tx) in open.values() {
            if who == user {
                tx.send_replace(Some(why.to_owned()));
                n += 1;
            }
        }
        n
    }

    /// Whose watches are open (each once).
    pub fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.lock().values().map(|(u, _)| u.clone()).collect();
        users.sort();
        users.dedup();
        users
    }
}

impl Watch {
    /// Resolves with why once the watcher's account was locked or deleted.
    pub async fn revoked(&mut self) -> String {
        let why = match self.ended.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            // The list is gone with the gateway: never.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ending_a_users_watches_ends_only_theirs() {
        let w = Watches::default();
        let mut a1 = w.begin("alice");
        let mut a2 = w.begin("alice");
        let mut b = w.begin("bob");
        assert_eq!(w.users(), ["alice", "bob"]);
        assert_eq!(w.end_user("alice", "locked"), 2);
        assert_eq!(a1.revoked().await, "locked");
        assert_eq!(a2.revoked().await, "locked");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), b.revoked())
                .await
                .is_err(),
            "bob's watch goes on"
        );
        drop((a1, a2));
        assert_eq!(w.users(), ["bob"]);
        assert_eq!(w.end_user("alice", "again"), 0);
    }
}
