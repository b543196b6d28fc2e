//! Entry points for fuzzing (cargo fuzz targets in `fuzz/`) and for replaying the inputs that
//! once broke something (`fuzz/regressions/`, by an ordinary test).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::storage::{RecordingSink, RecordingStorage, StorageError};

/// A read-only recording folder held in memory.
struct Memory(Mutex<HashMap<String, Vec<u8>>>);

impl Memory {
    fn files(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn len_of(v: &[u8]) -> u64 {
    u64::try_from(v.len()).unwrap_or(u64::MAX)
}

impl RecordingStorage for Memory {
    fn create(&self, _id: &str) -> Result<Box<dyn RecordingSink>, StorageError> {
        Err(StorageError::Exists("read only".into()))
    }
    fn reopen(&self, _id: &str) -> Result<Box<dyn RecordingSink>, StorageError> {
        Err(StorageError::NotFound("read only".into()))
    }
    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(vec!["r".into()])
    }
    fn files(&self, _id: &str) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self
            .files()
            .iter()
            .map(|(k, v)| (k.clone(), len_of(v)))
            .collect())
    }
    fn len(&self, _id: &str, file: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.files().get(file).map(|v| len_of(v)))
    }
    fn read(&self, _id: &str, file: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let files = self.files();
        let v = files
            .get(file)
            .ok_or_else(|| StorageError::NotFound(file.into()))?;
        let start = usize::try_from(offset).map_err(|_| StorageError::NotFound(file.into()))?;
        let end = offset
            .checked_add(len)
            .and_then(|e| usize::try_from(e).ok())
            .ok_or_else(|| StorageError::NotFound(file.into()))?;
        v.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| StorageError::NotFound(file.into()))
    }
    fn truncate(&self, _id: &str, _file: &str, _len: u64) -> Result<(), StorageError> {
        Ok(())
    }
    fn delete(&self, _id: &str) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A recording folder whose files are attacker-controlled (a tampered export): the first half
/// of `data` is the manifest, the second every other file. Listing, reading, verifying and
/// recovering it give results or errors, never a panic.
pub fn recording_folder(data: &[u8]) {
    let (manifest, rest) = data.split_at(data.len() / 2);
    let mut files = HashMap::new();
    files.insert("manifest.jsonl".to_owned(), manifest.to_vec());
    for f in ["video-1.mp4", "events.jsonl", "thumbs.bin"] {
        files.insert(f.to_owned(), rest.to_vec());
    }
    let storage = Memory(Mutex::new(files));
    let key = crate::SigningKey::from_bytes(&[7; 32]);
    let _ = crate::summary(&storage, "r", false);
    if let Ok(d) = crate::detail(&storage, "r") {
        for seq in 0..4 {
            let _ = crate::read_piece(&storage, "r", &d, crate::Piece::Segment(seq));
        }
    }
    let _ = crate::verify(&storage, "r", &key.verifying_key());
    // Start-up recovery walks it too (this storage refuses writes: it reports, never panics).
    let _ = crate::recover(&storage, &std::sync::Arc::new(key), &NoTrail, 0);
}

/// An audit trail with nothing on record that lets every recovery act go ahead (tests and
/// fuzzing only: the gateway passes its own trail).
#[derive(Debug, Default)]
pub struct NoTrail;

impl crate::RecoveryTrail for NoTrail {
    fn closed_on_record(&self, _: &str) -> Result<Option<crate::ClosedOnRecord>, String> {
        Ok(None)
    }
    fn before(&self, _: &crate::RecoveryAct) -> Result<(), String> {
        Ok(())
    }
    fn after(&self, _: &crate::RecoveryAct) -> Result<(), String> {
        Ok(())
    }
}

/// A session's metadata for tests: `id`, user alice (`u_alice`), target db1, from loopback,
/// started at `started_at_ms`.
pub fn test_meta(id: &str, started_at_ms: i64) -> crate::SessionMeta {
    crate::SessionMeta {
        session: id.into(),
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "db1".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms,
        screen_search: None,
    }
}
