//! Stored recordings as the API reads them: the storage, which recordings are being written,
//! the public key shipped in exports, and a cache of parsed manifests. The routes (`/recordings`)
//! are `api`'s.

pub(crate) mod api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_recording::catalog::{self, Detail, Summary};
use portcullis_recording::manifest::MANIFEST;
use portcullis_recording::{LiveRecordings, RecordingStorage, StorageError, VerifyingKey};

/// Manifests kept parsed (players poll their recording about once a second).
const DETAIL_CACHE: usize = 32;

/// Parsed manifests by recording id, with the manifest length they were read at.
type DetailCache = HashMap<String, (u64, Arc<Detail>)>;

/// Access to stored recordings.
#[derive(Clone)]
pub struct Recordings {
    /// Where they are.
    pub storage: Arc<dyn RecordingStorage>,
    /// Which are being written.
    pub live: LiveRecordings,
    /// The gateway's signing key (public half), shipped in exports.
    pub public_key: VerifyingKey,
    cache: Arc<Mutex<DetailCache>>,
    /// Sessions other gateways of the cluster hold (so, recordings being written there), as
    /// last read from the cluster.
    elsewhere: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Recordings {
    /// Access over `storage`.
    pub fn new(
        storage: Arc<dyn RecordingStorage>,
        live: LiveRecordings,
        public_key: VerifyingKey,
    ) -> Self {
        Self {
            storage,
            live,
            public_key,
            cache: Arc::default(),
            elsewhere: Arc::default(),
        }
    }

    fn summary(&self, id: &str) -> Result<Summary, StorageError> {
        let elsewhere = self
            .elsewhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id);
        catalog::summary(
            self.storage.as_ref(),
            id,
            self.live.contains(id) || elsewhere,
        )
    }

    /// The sessions other gateways hold now (their recordings are being written).
    pub(crate) fn set_elsewhere(&self, ids: std::collections::HashSet<String>) {
        *self.elsewhere.lock().unwrap_or_else(|p| p.into_inner()) = ids;
    }

    /// The parsed manifest, re-read only when it grew.
    fn detail(&self, id: &str) -> Result<Arc<Detail>, StorageError> {
        let len = self
            .storage
            .len(id, MANIFEST)?
            .ok_or_else(|| StorageError::NotFound(id.to_owned()))?;
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_len, d)) = cache.get(id) {
            if *cached_len == len {
                return Ok(Arc::clone(d));
            }
        }
        drop(cache);
        let d = Arc::new(catalog::detail(self.storage.as_ref(), id)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= DETAIL_CACHE {
            cache.clear();
        }
        cache.insert(id.to_owned(), (len, Arc::clone(&d)));
        Ok(d)
    }
}
