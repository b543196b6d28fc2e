//! Where recordings live: a local disk here; `portcullis-objects` implements the same trait over
//! a local spool and an S3-compatible object store.
//!
//! A recording is a set of append-only files under its id. Names are checked here so that no
//! caller can escape the recording's folder.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Storage failure.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An id or file name with characters outside `[a-z0-9.-]`, or too long.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// The recording or file does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The recording already exists.
    #[error("recording {0} already exists")]
    Exists(String),
    /// A read larger than the caller allowed.
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// What.
        what: String,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Something outside the storage (the audit trail) refused: nothing was done.
    #[error("{0}")]
    Refused(String),
    /// The object store said no, or did not answer in time.
    #[error("object store: {op} {what}: {message}")]
    Remote {
        /// What we tried.
        op: &'static str,
        /// On what (a recording and file, never a credential).
        what: String,
        /// Why it failed.
        message: String,
    },
    /// The operating system said no.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we tried.
        op: &'static str,
        /// On what.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl StorageError {
    /// True when the storage is out of space (or over its quota): `ENOSPC`, `EDQUOT`.
    pub fn is_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

/// Checks a recording id or file name: 1-64 characters of `[a-z0-9.-]`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(name.chars().take(80).collect()))
    }
}

/// Writes one recording. Appends are not durable until [`RecordingSink::sync`] returns.
pub trait RecordingSink: Send {
    /// Appends to a file of the recording (created on first use) and returns the offset the
    /// bytes start at.
    fn append(&mut self, file: &str, bytes: &[u8]) -> Result<u64, StorageError>;
    /// Makes everything appended to `file` durable (a real fsync).
    fn sync(&mut self, file: &str) -> Result<(), StorageError>;
}

/// A store of recordings.
pub trait RecordingStorage: Send + Sync {
    /// Creates a new, empty recording.
    fn create(&self, id: &str) -> Result<Box<dyn RecordingSink>, StorageError>;
    /// Reopens an existing recording to append to it (recovery after a crash).
    fn reopen(&self, id: &str) -> Result<Box<dyn RecordingSink>, StorageError>;
    /// Every recording id, in no particular order.
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// The files of a recording and their sizes.
    fn files(&self, id: &str) -> Result<Vec<(String, u64)>, StorageError>;
    /// Size of one file, `None` if it does not exist.
    fn len(&self, id: &str, file: &str) -> Result<Option<u64>, StorageError>;
    /// Reads `len` bytes at `offset`; fails if the file is shorter.
    fn read(&self, id: &str, file: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError>;
    /// Cuts a file to `len` bytes, durably (recovery of a torn tail).
    fn truncate(&self, id: &str, file: &str, len: u64) -> Result<(), StorageError>;
    /// Deletes a recording and all its files.
    fn delete(&self, id: &str) -> Result<(), StorageError>;
    /// Bytes still free for new recordings, if the storage knows (a local disk does).
    fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }
    /// True when some process holds the recording's writer lock right now (a local disk: a
    /// writer holds a lock on the manifest while it writes; the lock dies with its process).
    /// `false` when it cannot tell. Only a hint: anyone who can read the manifest can hold that
    /// lock, so it says "live" only together with the gateway's own lock (see the CLI's
    /// `recording verify`).
    fn is_being_written(&self, _id: &str) -> Result<bool, StorageError> {
        Ok(false)
    }
    /// Where uploads to a remote store stand (`None`: nothing is uploaded, e.g. a local disk).
    fn uploads(&self) -> Option<UploadStatus> {
        None
    }
    /// Asks a remote store whether it answers now (a local disk: always).
    fn probe(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Where the uploads of a spooled storage stand (see `portcullis-objects`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadStatus {
    /// Bytes written and made durable locally, not yet in the remote store.
    pub pending_bytes: u64,
    /// Recordings with something not yet uploaded (or not yet closed there).
    pub pending_recordings: u64,
    /// How long the oldest bytes not yet uploaded have waited, in milliseconds.
    pub oldest_pending_ms: u64,
    /// Bytes uploaded since the gateway started.
    pub uploaded_bytes: u64,
    /// Failed upload attempts since the gateway started.
    pub failures: u64,
    /// Whether the last attempt to reach the remote store worked.
    pub reachable: bool,
    /// Upload lag (durable here → in the remote store) of the last uploads, in milliseconds:
    /// median and 99th percentile; `None` before the first.
    pub lag_ms: Option<(u64, u64)>,
}

/// Reads a whole file, refusing one larger than `max` bytes.
pub fn read_all(
    storage: &dyn RecordingStorage,
    id: &str,
    file: &str,
    max: u64,
) -> Result<Vec<u8>, StorageError> {
    let len = storage
        .len(id, file)?
        .ok_or_else(|| StorageError::NotFound(format!("{id}/{file}")))?;
    if len > max {
        return Err(StorageError::TooLarge {
            what: format!("{id}/{file}"),
            len,
            max,
        });
    }
    storage.read(id, file, 0, len)
}

/// Recordings as folders of files on a local disk.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

impl LocalDisk {
    /// Recordings under `root` (created if missing, mode 0700 on Unix).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io("create", &root))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                .map_err(io("chmod", &root))?;
        }
        // What a crash left of a deletion (out of every listing already) goes now.
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name
                    .to_str()
                    .is_some_and(|n| n.starts_with(DELETING_PREFIX))
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(Self { root })
    }

    /// Recordings under an existing `root`, as they are (for reading, e.g. an unpacked export
    /// checked offline).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, id: &str) -> Result<PathBuf, StorageError> {
        check_name(id)?;
        Ok(self.root.join(id))
    }

    fn path(&self, id: &str, file: &str) -> Result<PathBuf, StorageError> {
        check_name(file)?;
        Ok(self.dir(id)?.join(file))
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

impl RecordingStorage for LocalDisk {
    fn create(&self, id: &str) -> Result<Box<dyn RecordingSink>, StorageError> {
        let dir = self.dir(id)?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StorageError::Exists(id.to_owned()))
            }
            Err(e) => return Err(io("create", &dir)(e)),
        }
        sync_dir(&self.root)?;
        Ok(Box::new(DiskSink {
            dir,
            files: HashMap::new(),
        }))
    }

    fn reopen(&self, id: &str) -> Result<Box<dyn RecordingSink>, StorageError> {
        let dir = self.dir(id)?;
        if !dir.is_dir() {
            return Err(StorageError::NotFound(id.to_owned()));
        }
        Ok(Box::new(DiskSink {
            dir,
            files: HashMap::new(),
        }))
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io("list", &self.root))? {
            let entry = entry.map_err(io("list", &self.root))?;
            if let Some(name) = entry.file_name().to_str() {
                if check_name(name).is_ok() && entry.path().is_dir() {
                    ids.push(name.to_owned());
                }
            }
        }
        Ok(ids)
    }

    fn files(&self, id: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let dir = self.dir(id)?;
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(id.to_owned()))
            }
            Err(e) => return Err(io("list", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &dir))?;
            let meta = entry.metadata().map_err(io("stat", &dir))?;
            if let Some(name) = entry.file_name().to_str() {
                if meta.is_file() && check_name(name).is_ok() {
                    files.push((name.to_owned(), meta.len()));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    fn len(&self, id: &str, file: &str) -> Result<Option<u64>, StorageError> {
        let path = self.path(id, file)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("stat", &path)(e)),
        }
    }

    fn read(&self, id: &str, file: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let path = self.path(id, file)?;
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(format!("{id}/{file}")))
            }
            Err(e) => return Err(io("open", &path)(e)),
        };
        let size = f.metadata().map_err(io("stat", &path))?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(StorageError::NotFound(format!(
                "{id}/{file} bytes {offset}..+{len} (the file has {size})"
            )));
        }
        let len_usize = usize::try_from(len).map_err(|_| StorageError::TooLarge {
            what: format!("{id}/{file}"),
            len,
            max: usize::MAX as u64,
        })?;
        f.seek(SeekFrom::Start(offset)).map_err(io("seek", &path))?;
        let mut buf = vec![0; len_usize];
        f.read_exact(&mut buf).map_err(io("read", &path))?;
        Ok(buf)
    }

    fn truncate(&self, id: &str, file: &str, len: u64) -> Result<(), StorageError> {
        let path = self.path(id, file)?;
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        f.set_len(len).map_err(io("truncate", &path))?;
        f.sync_all().map_err(io("fsync", &path))
    }

    fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        let st = rustix::fs::statvfs(&self.root).map_err(|e| StorageError::Io {
            op: "statvfs",
            path: self.root.display().to_string(),
            source: e.into(),
        })?;
        Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
    }

    fn is_being_written(&self, id: &str) -> Result<bool, StorageError> {
        let path = self.path(id, crate::manifest::MANIFEST)?;
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("open", &path)(e)),
        };
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => Ok(false),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
            // No locks here (ENOLCK, EOPNOTSUPP): cannot tell.
            Err(_) => Ok(false),
        }
    }

    fn delete(&self, id: &str) -> Result<(), StorageError> {
        let dir = self.dir(id)?;
        // Out of sight first, in one step (a name no recording can have), then removed: a crash
        // in the middle of the removal leaves no half recording to be found and "recovered".
        let gone = self.root.join(format!("{DELETING_PREFIX}{id}"));
        match std::fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(id.to_owned()))
            }
            Err(e) => return Err(io("delete", &dir)(e)),
        }
        sync_dir(&self.root)?;
        std::fs::remove_dir_all(&gone).map_err(io("delete", &gone))?;
        sync_dir(&self.root)
    }
}

/// The file a gateway holds locked in its recordings folder ([`lock_folder`]).
pub const FOLDER_LOCK: &str = ".gateway.lock";

/// A recordings folder kept for one gateway: released when dropped (or when the process
/// ends, by the kernel).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// Keeps every other gateway off the recordings folder `root` (made if missing) while the lock
/// lives: two gateways on one folder (a data directory copied, a shared volume mounted twice)
/// would each recover, upload and delete the other's recordings in progress. Refused when
/// another process holds it; a filesystem without locks is taken as it is (logged).
pub fn lock_folder(root: &Path) -> Result<FolderLock, StorageError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    let path = root.join(FOLDER_LOCK);
    // Never through a link planted there; readable by the gateway's account only.
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(io("open", &path))?;
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod", &path))?;
    }
    // A gateway being replaced on the same volume may still be stopping: wait a little.
    let mut tries = 0;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) if tries < LOCK_TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StorageError::Refused(format!(
                    "another gateway (or portcullis command) uses the recordings folder {}: each \
                     gateway needs its own",
                    root.display()
                )))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "no lock on this filesystem: nothing keeps a second gateway off this recordings folder");
                break;
            }
        }
    }
    Ok(FolderLock { _file: file })
}

/// How many times (100 ms apart) [`lock_folder`] tries before it refuses.
const LOCK_TRIES: u32 = 50;

/// Where a recording being deleted goes first (`_` is in no recording's name).
const DELETING_PREFIX: &str = "_deleting-";

/// Takes the manifest's writer lock (held while the file stays open, i.e. until the recording's
/// writer is dropped, and released by the kernel if the process dies). The lock only tells a
/// verifier on this machine that a writer is here (see [`RecordingStorage::is_being_written`]);
/// it is not what keeps two writers apart (a new recording's folder is created exclusively, and
/// the gateway's audit trail lock keeps one gateway per data directory). So a lock that cannot
/// be had (held by a reader, say, or a filesystem without locks) never fails a recording: it is
/// written without.
fn lock_for_writing(f: &File, path: &Path) {
    for _ in 0..50 {
        match rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return,
            // A verifier's brief shared lock, or another holder.
            Err(rustix::io::Errno::WOULDBLOCK) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e,
                    "no writer lock on this filesystem; writing without");
                return;
            }
        }
    }
    tracing::warn!(path = %path.display(),
        "another process holds the manifest's lock; writing without it");
}

struct DiskSink {
    dir: PathBuf,
    files: HashMap<String, (File, u64)>,
}

impl RecordingSink for DiskSink {
    fn append(&mut self, file: &str, bytes: &[u8]) -> Result<u64, StorageError> {
        check_name(file)?;
        if !self.files.contains_key(file) {
            let path = self.dir.join(file);
            let existed = path.exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io("open", &path))?;
            if file == crate::manifest::MANIFEST {
                lock_for_writing(&f, &path);
            }
            let len = f.metadata().map_err(io("stat", &path))?.len();
            if !existed {
                // The new name must survive a crash too.
                sync_dir(&self.dir)?;
            }
            self.files.insert(file.to_owned(), (f, len));
        }
        let path = self.dir.join(file);
        let Some((f, len)) = self.files.get_mut(file) else {
            return Err(StorageError::NotFound(file.to_owned()));
        };
        let offset = *len;
        f.write_all(bytes).map_err(io("write", &path))?;
        *len += bytes.len() as u64;
        Ok(offset)
    }

    fn sync(&mut self, file: &str) -> Result<(), StorageError> {
        if let Some((f, _)) = self.files.get_mut(file) {
            let path = self.dir.join(file);
            f.sync_data().map_err(io("fsync", &path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_cannot_escape() {
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "A",
            "x".repeat(65).as_str(),
            "a b",
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("0f6c2a8e-1b2c-4d5e-8f90-123456789abc").unwrap();
        check_name("video-1.mp4").unwrap();
    }

    #[test]
    fn append_read_truncate_delete() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::open(dir.path().join("rec")).unwrap();
        let mut sink = disk.create("r1").unwrap();
        assert!(matches!(disk.create("r1"), Err(StorageError::Exists(_))));
        assert_eq!(sink.append("a.bin", b"hello").unwrap(), 0);
        assert_eq!(sink.append("a.bin", b" world").unwrap(), 5);
        sink.sync("a.bin").unwrap();
        assert_eq!(disk.read("r1", "a.bin", 6, 5).unwrap(), b"world");
        assert!(disk.read("r1", "a.bin", 6, 50).is_err());
        assert_eq!(disk.files("r1").unwrap(), vec![("a.bin".to_owned(), 11)]);
        disk.truncate("r1", "a.bin", 5).unwrap();
        assert_eq!(read_all(&disk, "r1", "a.bin", 100).unwrap(), b"hello");
        assert!(read_all(&disk, "r1", "a.bin", 2).is_err());
        let mut again = disk.reopen("r1").unwrap();
        assert_eq!(again.append("a.bin", b"!").unwrap(), 5);
        assert_eq!(disk.list().unwrap(), vec!["r1".to_owned()]);
        assert!(disk.available_bytes().unwrap().unwrap() > 0);
        disk.delete("r1").unwrap();
        assert!(disk.list().unwrap().is_empty());
        // A deletion a crash cut short is invisible, and gone at the next open.
        let half = dir.path().join("rec").join(format!("{DELETING_PREFIX}r9"));
        std::fs::create_dir_all(&half).unwrap();
        std::fs::write(half.join("manifest.jsonl"), b"x").unwrap();
        assert!(disk.list().unwrap().is_empty());
        let disk = LocalDisk::open(dir.path().join("rec")).unwrap();
        assert!(!half.exists());
        assert!(disk.read("../rec", "a.bin", 0, 1).is_err());
    }

    #[test]
    fn a_full_disk_is_told_apart() {
        let full = StorageError::Io {
            op: "write",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(28), // ENOSPC
        };
        assert!(full.is_full());
        let other = StorageError::Io {
            op: "write",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(5), // EIO
        };
        assert!(!other.is_full());
        assert!(!StorageError::NotFound("x".into()).is_full());
    }
}
