//! The few file operations the writer thread does (append, fsync, create a segment, fsync the
//! directory), behind a trait so that tests can put faults under the log: a disk that fails
//! writes (the trail becomes unwritable) or a crash that forgets what was never fsynced.
//!
//! Reading (recovery, queries, `verify`) always uses the real files: a fault layer changes the
//! files themselves (see [`CrashFiles`]), so readers see what a reader of a real disk would.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How segment files are created: only the gateway's user reads the audit trail.
#[cfg(unix)]
const SEGMENT_MODE: u32 = 0o600;

/// A segment open for appending.
pub trait AppendFile: Send {
    /// Appends all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes what was appended durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The file operations of the writer thread. [`OsFiles`] is the real thing.
pub trait FileLayer: Send + Sync + fmt::Debug + 'static {
    /// Opens an existing segment for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Creates a new, empty segment (an existing file is an error).
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Makes the directory's entries (a segment just created) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's files.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFiles;

impl AppendFile for File {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::Write::write_all(self, buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

impl FileLayer for OsFiles {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(fs::OpenOptions::new().append(true).open(path)?))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(create_segment(path)?))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }
}

pub(crate) fn create_segment(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.append(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, SEGMENT_MODE);
    options.open(path)
}

/// Cuts a file back to `len` bytes, durably (a torn tail, records set aside).
pub(crate) fn cut(path: &Path, len: u64) -> Result<(), crate::error::AuditError> {
    use crate::error::AuditError;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(AuditError::io("open", path))?;
    file.set_len(len)
        .map_err(AuditError::io("truncate", path))?;
    file.sync_all().map_err(AuditError::io("fsync", path))
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A fault-injecting [`FileLayer`] for tests, over real files.
///
/// Writes go to the real file at once (so a reader sees them, as it would see a real disk's
/// page cache), but a file's *durable* length only moves at `sync_data`, and a new segment's
/// name only becomes durable at `sync_dir`. Then:
///
/// - [`CrashFiles::fail_with`] makes every later write and sync fail (a full or broken disk:
///   the log stops and refuses records);
/// - [`CrashFiles::hold_syncs`] makes `sync_data` wait (the window between a record's write
///   and its fsync, held open), [`CrashFiles::wait_held`] waits until the writer is in it;
/// - [`CrashFiles::crash`] is the power cut: every file goes back to its durable length,
///   segments whose name was never made durable disappear, held syncs fail, and nothing more
///   can be written through this layer. What was never fsynced is really gone from the files.
#[derive(Debug, Default)]
pub struct CrashFiles {
    state: Mutex<CrashState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct CrashState {
    /// Durable length of each file written through this layer.
    durable: HashMap<PathBuf, u64>,
    /// Created segments whose directory entry is not durable yet.
    new_names: Vec<PathBuf>,
    fail: Option<io::ErrorKind>,
    hold: bool,
    /// Syncs waiting while held.
    held: usize,
    crashed: bool,
}

impl CrashFiles {
    /// A layer with no fault yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, CrashState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, every write and sync fails with `kind` (`None`: they work again).
    pub fn fail_with(&self, kind: Option<io::ErrorKind>) {
        self.lock().fail = kind;
        self.changed.notify_all();
    }

    /// Holds every `sync_data` until released (`false`) or a crash.
    pub fn hold_syncs(&self, hold: bool) {
        self.lock().hold = hold;
        self.changed.notify_all();
    }

    /// Waits (at most `limit`) until a sync is being held; says whether one is.
    pub fn wait_held(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while state.held == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// The power cut: files back to their durable length, names never made durable removed,
    /// held syncs failed, and every later operation through this layer failed.
    pub fn crash(&self) -> io::Result<()> {
        let mut state = self.lock();
        state.crashed = true;
        for path in std::mem::take(&mut state.new_names) {
            state.durable.remove(&path);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for (path, len) in &state.durable {
            fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(*len)?;
        }
        drop(state);
        self.changed.notify_all();
        Ok(())
    }

    /// The error of a failing or crashed layer, if it is one now.
    fn fault(state: &CrashState) -> Option<io::Error> {
        if state.crashed {
            return Some(io::Error::other("simulated crash"));
        }
        state.fail.map(io::Error::from)
    }

    fn open(self: &Arc<Self>, path: &Path, file: File, new: bool) -> Box<dyn AppendFile> {
        let mut state = self.lock();
        let len = if new {
            state.new_names.push(path.to_owned());
            0
        } else {
            file.metadata().map_or(0, |m| m.len())
        };
        state.durable.insert(path.to_owned(), len);
        Box::new(CrashFile {
            layer: Arc::clone(self),
            path: path.to_owned(),
            file,
            written: len,
        })
    }
}

/// A [`FileLayer`] over a shared [`CrashFiles`] (the test keeps the other `Arc`).
#[derive(Debug, Clone)]
pub struct CrashLayer(pub Arc<CrashFiles>);

impl FileLayer for CrashLayer {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        if let Some(e) = CrashFiles::fault(&self.0.lock()) {
            return Err(e);
        }
        let file = fs::OpenOptions::new().append(true).open(path)?;
        Ok(self.0.open(path, file, false))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        if let Some(e) = CrashFiles::fault(&self.0.lock()) {
            return Err(e);
        }
        let file = create_segment(path)?;
        Ok(self.0.open(path, file, true))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.0.lock();
        if let Some(e) = CrashFiles::fault(&state) {
            return Err(e);
        }
        state.new_names.retain(|p| p.parent() != Some(dir));
        Ok(())
    }
}

struct CrashFile {
    layer: Arc<CrashFiles>,
    path: PathBuf,
    file: File,
    written: u64,
}

impl AppendFile for CrashFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Some(e) = CrashFiles::fault(&self.layer.lock()) {
            return Err(e);
        }
        io::Write::write_all(&mut self.file, buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let layer = &self.layer;
        let mut state = layer.lock();
        if state.hold && !state.crashed && state.fail.is_none() {
            state.held += 1;
            layer.changed.notify_all();
            while state.hold && !state.crashed && state.fail.is_none() {
                state = layer
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.held -= 1;
        }
        if let Some(e) = CrashFiles::fault(&state) {
            return Err(e);
        }
        state.durable.insert(self.path.clone(), self.written);
        Ok(())
    }
}
