//! The object store, called synchronously (the `RecordingStorage` trait is synchronous): every
//! call runs on this module's own small runtime and the caller waits for its answer, at most
//! [`CALL_TIMEOUT`].
//!
//! Layout under the configured prefix: a closed recording's file is one object,
//! `ID/FILE`; while a recording is being written (or its closing upload has not finished) its
//! files are parts, `ID/_parts/FILE/OFFSET` (the offset as 20 digits, so names sort by it), each
//! the bytes from that offset on. `_` is in no recording or file name, so the two never meet.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use portcullis_recording::storage::check_name;
use portcullis_recording::StorageError;

/// The longest one call to the object store may take (a big object is moved in many calls).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many objects make one recording (a listing that goes on is refused).
pub const MAX_OBJECTS_PER_RECORDING: usize = 200_000;
/// At most this many recordings are listed.
pub const MAX_RECORDINGS: usize = 10_000_000;
/// The most one read asks of the store (what a manifest names is far smaller: a segment).
pub const MAX_READ: u64 = 256 * 1024 * 1024;
/// Objects larger than this are uploaded in parts of this size (multipart upload).
pub const MULTIPART_CHUNK: usize = 16 * 1024 * 1024;
const PARTS: &str = "_parts";

/// How one file of a recording is laid out in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The whole file as one object, with its size.
    pub whole: Option<u64>,
    /// Parts: offset → size.
    pub parts: BTreeMap<u64, u64>,
}

impl Layout {
    /// The file's length: the whole object's, else how far the parts reach from 0 without a
    /// gap (a gap, from an upload cut short, ends what is readable).
    pub fn len(&self) -> u64 {
        if let Some(n) = self.whole {
            return n;
        }
        let mut end = 0;
        for (&offset, &size) in &self.parts {
            if offset > end {
                break;
            }
            end = end.max(offset.saturating_add(size));
        }
        end
    }

    /// True when nothing of the file is readable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The object store and the runtime its calls run on.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Never blocks (a runtime dropped inside another one would panic).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn remote_error(op: &'static str, what: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(what.to_owned()),
        other => StorageError::Remote {
            op,
            what: what.to_owned(),
            message: other.to_string(),
        },
    }
}

impl Remote {
    /// Over `store`, with every key under `prefix` (no leading or trailing `/`; may be empty).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, StorageError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("objects")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Io {
                op: "start",
                path: "the object store's threads".to_owned(),
                source: e,
            })?;
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            store,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            rt: Some(rt),
        })
    }

    /// Runs `fut` on the store's runtime and waits for it (announcing the wait to a caller's
    /// multi-threaded runtime, whose other tasks go on meanwhile).
    fn call<T: Send + 'static>(
        &self,
        op: &'static str,
        what: &str,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T, StorageError> {
        let Some(rt) = &self.rt else {
            return Err(StorageError::Refused(
                "the object store is closed".to_owned(),
            ));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = rt.spawn(async move {
            let out = tokio::time::timeout(CALL_TIMEOUT, fut).await;
            let _ = tx.send(out);
        });
        let wait = || rx.recv_timeout(CALL_TIMEOUT + Duration::from_secs(1));
        let got = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        match got {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(remote_error(op, what, e)),
            Ok(Err(_)) | Err(_) => {
                task.abort();
                Err(StorageError::Remote {
                    op,
                    what: what.to_owned(),
                    message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                })
            }
        }
    }

    fn whole_key(&self, id: &str, file: &str) -> Path {
        Path::from(format!("{}{id}/{file}", self.prefix))
    }

    fn part_key(&self, id: &str, file: &str, offset: u64) -> Path {
        Path::from(format!("{}{id}/{PARTS}/{file}/{offset:020}", self.prefix))
    }

    fn dir(&self, id: &str) -> Path {
        Path::from(format!("{}{id}", self.prefix))
    }

    /// Every recording id in the store.
    pub fn list(&self) -> Result<Vec<String>, StorageError> {
        let store = Arc::clone(&self.store);
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let listed = self.call("list", "recordings", async move {
            store.list_with_delimiter(prefix.as_ref()).await
        })?;
        let mut ids: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .filter(|id| check_name(id).is_ok())
            .take(MAX_RECORDINGS)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every file of recording `id`, as laid out in the store (empty: no such recording).
    pub fn layout(&self, id: &str) -> Result<BTreeMap<String, Layout>, StorageError> {
        check_name(id)?;
        let store = Arc::clone(&self.store);
        let dir = self.dir(id);
        let depth = dir.parts().count();
        let objects = self.call("list", id, async move {
            let mut listing = store.list(Some(&dir));
            let mut out = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                if out.len() >= MAX_OBJECTS_PER_RECORDING {
                    return Err(object_store::Error::Generic {
                        store: "recordings",
                        source: format!(
                            "more than {MAX_OBJECTS_PER_RECORDING} objects in one recording"
                        )
                        .into(),
                    });
                }
                out.push(meta);
            }
            Ok(out)
        })?;
        let mut files: BTreeMap<String, Layout> = BTreeMap::new();
        for meta in objects {
            let parts: Vec<String> = meta
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_owned())
                .collect();
            match parts.as_slice() {
                [file] if check_name(file).is_ok() => {
                    files.entry(file.clone()).or_default().whole = Some(meta.size);
                }
                [p, file, offset] if p == PARTS && check_name(file).is_ok() => {
                    if let Ok(offset) = offset.parse::<u64>() {
                        files
                            .entry(file.clone())
                            .or_default()
                            .parts
                            .insert(offset, meta.size);
                    }
                }
                // Anything else is not ours: left alone, never served.
                _ => {}
            }
        }
        Ok(files)
    }

    /// Reads `range` of `file` as laid out in `layout`.
    pub fn read(
        &self,
        id: &str,
        file: &str,
        layout: &Layout,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StorageError> {
        let what = format!("{id}/{file}");
        if range.end > layout.len() {
            return Err(StorageError::NotFound(format!(
                "{what} bytes {}..{} (the file has {})",
                range.start,
                range.end,
                layout.len()
            )));
        }
        let len = range.end - range.start;
        let want = usize::try_from(len)
            .ok()
            .filter(|_| len <= MAX_READ)
            .ok_or_else(|| StorageError::TooLarge {
                what: what.clone(),
                len,
                max: MAX_READ,
            })?;
        if want == 0 {
            return Ok(Vec::new());
        }
        if layout.whole.is_some() {
            let store = Arc::clone(&self.store);
            let key = self.whole_key(id, file);
            let bytes = self.call(
                "read",
                &what,
                async move { store.get_range(&key, range).await },
            )?;
            return Self::exact(bytes.to_vec(), want, &what);
        }
        let mut out = Vec::with_capacity(want);
        // Parts in order of offset; each gives what comes next from it (parts may overlap when
        // an upload was retried from another offset), and a gap ends the read.
        for (&offset, &size) in layout.parts.range(..range.end) {
            let next = range.start + out.len() as u64;
            let to = range.end.min(offset.saturating_add(size));
            if offset > next {
                break;
            }
            if next < to {
                out.extend(self.read_part(id, file, offset, next - offset..to - offset)?);
            }
        }
        Self::exact(out, want, &what)
    }

    fn exact(bytes: Vec<u8>, want: usize, what: &str) -> Result<Vec<u8>, StorageError> {
        if bytes.len() == want {
            Ok(bytes)
        } else {
            Err(StorageError::Remote {
                op: "read",
                what: what.to_owned(),
                message: format!("got {} bytes, asked for {want}", bytes.len()),
            })
        }
    }

    fn read_part(
        &self,
        id: &str,
        file: &str,
        offset: u64,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StorageError> {
        let store = Arc::clone(&self.store);
        let key = self.part_key(id, file, offset);
        let bytes = self.call("read", &format!("{id}/{file}"), async move {
            store.get_range(&key, range).await
        })?;
        Ok(bytes.to_vec())
    }

    /// Stores `bytes` as the part of `file` that starts at `offset`.
    pub fn put_part(
        &self,
        id: &str,
        file: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError> {
        let store = Arc::clone(&self.store);
        let key = self.part_key(id, file, offset);
        self.call("upload", &format!("{id}/{file}"), async move {
            store.put(&key, PutPayload::from(Bytes::from(bytes))).await
        })
        .map(|_| ())
    }

    /// Stores a whole file, read from `read(offset, len)` a chunk at a time (one object; a
    /// multipart upload when it is larger than a chunk).
    pub fn put_whole(
        &self,
        id: &str,
        file: &str,
        len: u64,
        read: &dyn Fn(u64, u64) -> Result<Vec<u8>, StorageError>,
    ) -> Result<(), StorageError> {
        let what = format!("{id}/{file}");
        let key = self.whole_key(id, file);
        let store = Arc::clone(&self.store);
        if len <= MULTIPART_CHUNK as u64 {
            let bytes = read(0, len)?;
            return self
                .call("upload", &what, async move {
                    store.put(&key, PutPayload::from(Bytes::from(bytes))).await
                })
                .map(|_| ());
        }
        let mut upload = self.call(
            "upload",
            &what,
            async move { store.put_multipart(&key).await },
        )?;
        let mut offset = 0;
        let mut sent = Ok(());
        while offset < len {
            let n = (len - offset).min(MULTIPART_CHUNK as u64);
            sent = read(offset, n).and_then(|bytes| {
                let part = upload.put_part(PutPayload::from(Bytes::from(bytes)));
                self.call("upload", &what, part)
            });
            if sent.is_err() {
                break;
            }
            offset += n;
        }
        // `complete` and `abort` borrow the upload: it goes to the runtime and comes back.
        if sent.is_ok() {
            let (back, done) = self.call("upload", &what, async move {
                let done = upload.complete().await;
                Ok((upload, done))
            })?;
            upload = back;
            match done {
                Ok(_) => return Ok(()),
                Err(e) => sent = Err(remote_error("upload", &what, e)),
            }
        }
        let _ = self.call("abort", &what, async move { upload.abort().await });
        sent
    }

    /// Deletes the parts of `file` (after its whole object was stored).
    pub fn delete_parts(&self, id: &str, file: &str, layout: &Layout) -> Result<(), StorageError> {
        for &offset in layout.parts.keys() {
            let store = Arc::clone(&self.store);
            let key = self.part_key(id, file, offset);
            match self.call("delete", &format!("{id}/{file}"), async move {
                store.delete(&key).await
            }) {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes every object of recording `id`; `false` when there was none.
    pub fn delete(&self, id: &str) -> Result<bool, StorageError> {
        check_name(id)?;
        let layout = self.layout(id)?;
        for (file, l) in &layout {
            if l.whole.is_some() {
                let store = Arc::clone(&self.store);
                let key = self.whole_key(id, file);
                match self.call("delete", &format!("{id}/{file}"), async move {
                    store.delete(&key).await
                }) {
                    Ok(()) | Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            self.delete_parts(id, file, l)?;
        }
        Ok(!layout.is_empty())
    }

    /// Asks the store for one listing: it answers, with our credentials.
    pub fn probe(&self) -> Result<(), StorageError> {
        let store = Arc::clone(&self.store);
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        self.call("probe", "the bucket", async move {
            let mut listing = store.list(prefix.as_ref());
            match listing.next().await {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_ends_what_is_readable() {
        let mut l = Layout::default();
        assert_eq!(l.len(), 0);
        l.parts.insert(0, 10);
        l.parts.insert(10, 5);
        assert_eq!(l.len(), 15);
        l.parts.insert(20, 5);
        assert_eq!(l.len(), 15);
        l.parts.insert(15, 5);
        assert_eq!(l.len(), 25);
        l.whole = Some(7);
        assert_eq!(l.len(), 7);
    }
}
