//! Stored recordings as the API reads them: the storage, which recordings are being written,
//! the public key shipped in exports, and a cache of parsed manifests. The routes (`/recordings`)
//! are `api`'s.

pub(crate) mod api;
mod report;
pub mod retention;
pub(crate) mod review;
pub(crate) mod search;

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
    /// Summaries of closed recordings (an end line: they change no more), for lists: in an
    /// object store each summary is several requests, a list of thousands would be thousands.
    closed: Arc<Mutex<HashMap<String, Summary>>>,
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
            closed: Arc::default(),
            elsewhere: Arc::default(),
        }
    }

    /// The summaries of every recording `storage` lists, those of closed recordings from the
    /// cache (kept to what was listed: bounded by the recordings there are); unreadable ones
    /// are skipped (and logged).
    pub(crate) fn listed(&self) -> Result<Vec<Summary>, StorageError> {
        let ids = self.storage.list()?;
        let cached = |id: &str| {
            self.closed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .cloned()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            let s = match cached(id) {
                Some(s) => s,
                None => match self.summary(id) {
                    Ok(s) => {
                        if s.ended_at_ms.is_some() {
                            self.closed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(id.clone(), s.clone());
                        }
                        s
                    }
                    Err(e) => {
                        tracing::warn!(recording = %id, error = %e, "unreadable recording skipped");
                        continue;
                    }
                },
            };
            out.push(s);
        }
        // Only what is there: the cache stays as big as the recordings are many.
        let listed: std::collections::HashSet<&String> = ids.iter().collect();
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| listed.contains(id));
        Ok(out)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_recording::oracles::test_meta;
    use portcullis_recording::{LocalDisk, RecordingWriter};

    use super::*;

    #[test]
    fn lists_read_a_closed_recording_once_and_an_open_one_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn RecordingStorage> = Arc::new(LocalDisk::open(dir.path()).unwrap());
        let key = Arc::new(portcullis_recording::generate_key());
        RecordingWriter::create(
            disk.as_ref(),
            Arc::clone(&key),
            test_meta("closed1", 1_700_000_000_000),
        )
        .unwrap()
        .finish("done", 1000, 1_700_000_001_000)
        .unwrap();
        let open = RecordingWriter::create(
            disk.as_ref(),
            Arc::clone(&key),
            test_meta("open1", 1_700_000_000_000),
        )
        .unwrap();
        let recs = Recordings::new(
            Arc::clone(&disk),
            LiveRecordings::default(),
            key.verifying_key(),
        );
        let ids = |l: Vec<Summary>| {
            let mut ids: Vec<String> = l.into_iter().map(|s| s.id).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(recs.listed().unwrap()), ["closed1", "open1"]);
        // Both manifests made unreadable behind its back: the closed one's summary is the one
        // read before (it cannot change), the open one is read again (and skipped).
        for id in ["closed1", "open1"] {
            std::fs::write(dir.path().join(id).join(MANIFEST), b"").unwrap();
        }
        assert_eq!(ids(recs.listed().unwrap()), ["closed1"]);
        // Gone from the storage: gone from lists, and from the cache.
        std::fs::remove_dir_all(dir.path().join("closed1")).unwrap();
        assert!(recs.listed().unwrap().is_empty());
        assert!(recs.closed.lock().unwrap().is_empty());
        drop(open);
    }
}
