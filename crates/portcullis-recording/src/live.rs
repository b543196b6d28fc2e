//! Which recordings are being written right now.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The ids of recordings in progress. Cheap to clone; clones share the set.
#[derive(Debug, Default, Clone)]
pub struct LiveRecordings(Arc<Mutex<HashSet<String>>>);

impl LiveRecordings {
    /// True while `id` is being written.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    /// Marks `id` as being written.
    pub fn insert(&self, id: &str) {
        self.lock().insert(id.to_owned());
    }

    /// Marks `id` as closed.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
