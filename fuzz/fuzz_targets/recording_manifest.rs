//! A recording folder whose files are attacker-controlled (a tampered export): listing, reading
//! and verifying it returns results or errors, never panics.
#![no_main]
use std::collections::HashMap;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use portcullis_recording::storage::{RecordingSink, RecordingStorage, StorageError};

/// Files of one recording, in memory.
struct Memory(Mutex<HashMap<String, Vec<u8>>>);

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
        let m = self.0.lock().unwrap();
        Ok(m.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect())
    }
    fn len(&self, _id: &str, file: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.0.lock().unwrap().get(file).map(|v| v.len() as u64))
    }
    fn read(&self, _id: &str, file: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let m = self.0.lock().unwrap();
        let v = m.get(file).ok_or_else(|| StorageError::NotFound(file.into()))?;
        let end = offset.checked_add(len).ok_or_else(|| StorageError::NotFound(file.into()))?;
        v.get(offset as usize..end as usize)
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

fuzz_target!(|data: &[u8]| {
    // First half: the manifest; second half: every other file's bytes.
    let (manifest, rest) = data.split_at(data.len() / 2);
    let mut files = HashMap::new();
    files.insert("manifest.jsonl".to_owned(), manifest.to_vec());
    for f in ["video-1.mp4", "events.jsonl", "thumbs.bin"] {
        files.insert(f.to_owned(), rest.to_vec());
    }
    let storage = Memory(Mutex::new(files));
    let key = portcullis_recording::SigningKey::from_bytes(&[7; 32]);
    let _ = portcullis_recording::summary(&storage, "r", false);
    if let Ok(d) = portcullis_recording::detail(&storage, "r") {
        for seq in 0..4 {
            let _ = portcullis_recording::read_piece(&storage, "r", &d, portcullis_recording::Piece::Segment(seq));
        }
    }
    let _ = portcullis_recording::verify(&storage, "r", &key.verifying_key());
});
