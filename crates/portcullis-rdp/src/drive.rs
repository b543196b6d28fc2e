//! Drive redirection (MS-RDPEFS, the `rdpdr` static channel) relayed between a native client and
//! an RDP target, under the session's file-transfer terms.
//!
//! The gateway speaks `rdpdr` to neither side itself: the target's messages go to the client and
//! the client's answers go back, through [`DriveRelay`], which reads enough of each to
//! - offer the target only the client's **drives** (printers, ports and smart cards are dropped
//!   from the device list, so the target never learns of them);
//! - refuse, on the client's behalf, what the terms do not allow: reading a file's content
//!   (an upload) or writing, creating, truncating, renaming or deleting (a download). The target
//!   is answered "access denied" and the client never sees the request;
//! - note every file whose content crossed, with its size and SHA-256, when the target closes it.
//!
//! It also mends one ordering fault: xrdp 0.9.21 sends "user logged on" before its capabilities,
//! and FreeRDP 2.11 then ignores it and never announces its drives (xrdp issues 2834, 2971). The
//! relay holds that message until the client has answered the capabilities, so drives work
//! through the gateway where a direct connection has none.
//!
//! When the terms allow no file transfer at all the channel is not offered to the target (see
//! `client`), so this relay only exists for sessions that may move files one way or both.
//!
//! Sans-I/O: bytes in, bytes and events out. Every length is checked against the message, and
//! the relay keeps bounded state (pending requests, open files); a malformed message from either
//! side is dropped and reported, never trusted.

use std::collections::{BTreeMap, HashMap};

use portcullis_core::desktop::{FileDirection, FileEvent};
use sha2::{Digest as _, Sha256};

/// Which file-transfer directions the session's terms allow. Decided by the policy (in the
/// broker); the relay only applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriveTerms {
    /// The target may read files of the user's drive.
    pub upload: bool,
    /// The target may write files to the user's drive (and create, rename, delete them).
    pub download: bool,
}

/// What the relay wants done with a message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveOutput {
    /// Send these bytes to the target on its `rdpdr` channel.
    ToTarget(Vec<u8>),
    /// Send these bytes to the client on its `rdpdr` channel.
    ToClient(Vec<u8>),
    /// Record this.
    File(FileEvent),
    /// A message was dropped as malformed or out of place (for the log).
    Dropped(String),
}

// Component and packet ids (MS-RDPEFS 2.2.1.1).
const RDPDR_CTYP_CORE: u16 = 0x4472;
const PAKID_CORE_SERVER_ANNOUNCE: u16 = 0x496E;
const PAKID_CORE_CLIENTID_CONFIRM: u16 = 0x4343;
const PAKID_CORE_CLIENT_NAME: u16 = 0x434E;
const PAKID_CORE_DEVICELIST_ANNOUNCE: u16 = 0x4441;
const PAKID_CORE_DEVICE_REPLY: u16 = 0x6472;
const PAKID_CORE_DEVICE_IOREQUEST: u16 = 0x4952;
const PAKID_CORE_DEVICE_IOCOMPLETION: u16 = 0x4943;
const PAKID_CORE_SERVER_CAPABILITY: u16 = 0x5350;
const PAKID_CORE_CLIENT_CAPABILITY: u16 = 0x4350;
const PAKID_CORE_DEVICELIST_REMOVE: u16 = 0x444D;
const PAKID_CORE_USER_LOGGEDON: u16 = 0x554C;

const RDPDR_DTYP_FILESYSTEM: u32 = 0x08;

// Major functions (MS-RDPEFS 2.2.1.4).
const IRP_MJ_CREATE: u32 = 0x00;
const IRP_MJ_CLOSE: u32 = 0x02;
const IRP_MJ_READ: u32 = 0x03;
const IRP_MJ_WRITE: u32 = 0x04;
const IRP_MJ_SET_INFORMATION: u32 = 0x06;
const IRP_MJ_SET_VOLUME_INFORMATION: u32 = 0x0B;

// Create dispositions: only FILE_OPEN leaves the user's drive as it was.
const FILE_OPEN: u32 = 1;
const FILE_DELETE_ON_CLOSE: u32 = 0x0000_1000;
// Access rights that let the handle change the file (MS-SMB2 2.2.13.1.1).
const WRITE_ACCESS: u32 = 0x0000_0002 // FILE_WRITE_DATA
    | 0x0000_0004 // FILE_APPEND_DATA
    | 0x0000_0010 // FILE_WRITE_EA
    | 0x0000_0100 // FILE_WRITE_ATTRIBUTES
    | 0x0001_0000 // DELETE
    | 0x0004_0000 // WRITE_DAC
    | 0x0008_0000 // WRITE_OWNER
    | 0x1000_0000 // GENERIC_ALL
    | 0x4000_0000; // GENERIC_WRITE

// File information classes of IRP_MJ_SET_INFORMATION (MS-FSCC 2.4).
const FILE_RENAME_INFORMATION: u32 = 10;
const FILE_DISPOSITION_INFORMATION: u32 = 13;

const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;
const STATUS_NO_SUCH_DEVICE: u32 = 0xC000_000E;
const STATUS_INSUFFICIENT_RESOURCES: u32 = 0xC000_009A;

/// Requests the target may have outstanding at once; more are refused (a well-behaved target
/// keeps a few dozen).
const MAX_PENDING: usize = 1024;
/// Files the target may hold open on the user's drives at once.
const MAX_OPEN_FILES: usize = 4096;
/// Devices the client may announce in one list (more is not a real client).
const MAX_DEVICES: usize = 32;
/// Longest path kept for the record, in characters; longer ones are cut with an ellipsis.
const MAX_PATH_CHARS: usize = 1024;

/// A request the target sent and the client has not answered yet.
#[derive(Debug)]
enum Pending {
    Create {
        path: String,
    },
    Read {
        file: FileKey,
        offset: u64,
        length: u32,
    },
    Write,
    Other,
}

type FileKey = (u32, u32);

/// Bytes of one file held while an earlier part of it is still on its way (readahead keeps two
/// reads in flight, whose answers may come in either order). Beyond this the hash is given up.
const MAX_AHEAD_BYTES: usize = 4 * 1024 * 1024;

/// Bytes the relay of one session may hold at once, whatever the number of files: the parts
/// every open file keeps ahead (both directions) and the paths of open files and of opens still
/// pending. Without it [`MAX_AHEAD_BYTES`] × [`MAX_OPEN_FILES`] × 2 directions (32 GiB) would be
/// within bounds. A few files copied in parallel with readahead stay far below it. Past it the
/// relay degrades without ending the session: the file whose part does not fit loses its hash
/// (its record says the hash is unavailable, its byte count stays exact) and a new open is
/// refused to the target as "insufficient resources", as when too many files are open. Ending
/// the session instead would let a slow drive or a busy copy cut a user off for no fault.
pub(crate) const MAX_SESSION_HELD: usize = 16 * 1024 * 1024;

/// What crossed of one open file, one direction.
#[derive(Debug, Default)]
struct Flow {
    bytes: u64,
    /// Next offset of the contiguous run from 0 that the hash covers; `None` once broken.
    next: Option<u64>,
    hash: Sha256,
    /// Parts past `next`, by offset, until the gap before them fills.
    ahead: BTreeMap<u64, Vec<u8>>,
    ahead_bytes: usize,
}

impl Flow {
    fn fresh() -> Self {
        Self {
            next: Some(0),
            ..Self::default()
        }
    }

    /// `held` is what the session's relay holds in all; this flow's parts count in it.
    fn add(&mut self, offset: u64, data: &[u8], held: &mut usize) {
        self.bytes = self.bytes.saturating_add(data.len() as u64);
        let Some(next) = self.next else { return };
        if offset > next {
            // Ahead of the run: kept until the gap fills, within the file's and the session's
            // bounds.
            if self.ahead_bytes + data.len() > MAX_AHEAD_BYTES
                || *held + data.len() > MAX_SESSION_HELD
            {
                *held -= self.give_up();
            } else {
                self.ahead_bytes += data.len();
                *held += data.len();
                if let Some(old) = self.ahead.insert(offset, data.to_vec()) {
                    self.ahead_bytes -= old.len();
                    *held -= old.len();
                }
            }
            return;
        }
        self.extend(offset, data);
        // Parts that were waiting for this one.
        while let Some(next) = self.next {
            let Some(entry) = self.ahead.first_entry() else {
                break;
            };
            if *entry.key() > next {
                break;
            }
            let (at, part) = entry.remove_entry();
            self.ahead_bytes -= part.len();
            *held -= part.len();
            self.extend(at, &part);
        }
    }

    /// Hashes what `data` at `offset` adds past the run (a re-read of a hashed range adds nothing).
    fn extend(&mut self, offset: u64, data: &[u8]) {
        let Some(next) = self.next else { return };
        let end = offset.saturating_add(data.len() as u64);
        if offset <= next && end > next {
            let skip = usize::try_from(next - offset).unwrap_or(usize::MAX);
            self.hash.update(&data[skip.min(data.len())..]);
            self.next = Some(end);
        }
    }

    /// Stops hashing; returns the bytes this frees.
    fn give_up(&mut self) -> usize {
        self.next = None;
        self.ahead.clear();
        std::mem::take(&mut self.ahead_bytes)
    }

    /// The record of what crossed. The parts it held must already be released from the
    /// session's count (see [`OpenFile::held`]).
    fn finish(mut self, direction: FileDirection, path: &str) -> Option<FileEvent> {
        // Parts still waiting mean a hole that never filled: the content is not one run.
        if !self.ahead.is_empty() {
            self.give_up();
        }
        (self.bytes > 0).then(|| FileEvent::Transferred {
            direction,
            path: path.to_owned(),
            bytes: self.bytes,
            sha256: self.next.map(|_| hex::encode(self.hash.finalize())),
        })
    }
}

#[derive(Debug)]
struct OpenFile {
    path: String,
    read: Flow,
    written: Flow,
}

impl OpenFile {
    /// What this file counts in the session's [`MAX_SESSION_HELD`].
    fn held(&self) -> usize {
        self.path.len() + self.read.ahead_bytes + self.written.ahead_bytes
    }
}

impl Pending {
    /// What this request counts in the session's [`MAX_SESSION_HELD`].
    fn held(&self) -> usize {
        match self {
            Pending::Create { path } => path.len(),
            _ => 0,
        }
    }
}

/// The relay's state for one session.
#[derive(Debug)]
pub struct DriveRelay {
    terms: DriveTerms,
    /// Drives the client announced and the target was told of: id → DOS name.
    drives: HashMap<u32, String>,
    pending: HashMap<(u32, u32), Pending>,
    open: HashMap<FileKey, OpenFile>,
    /// The client answered the target's capabilities.
    client_capable: bool,
    /// A "user logged on" that came before that, held back.
    held_logon: Option<Vec<u8>>,
    /// What the open files and pending requests hold, within [`MAX_SESSION_HELD`].
    held: usize,
}

impl DriveRelay {
    /// A relay applying `terms`.
    pub fn new(terms: DriveTerms) -> Self {
        Self {
            terms,
            drives: HashMap::new(),
            pending: HashMap::new(),
            open: HashMap::new(),
            client_capable: false,
            held_logon: None,
            held: 0,
        }
    }

    /// A whole (reassembled) `rdpdr` message from the target.
    pub fn from_target(&mut self, pdu: &[u8]) -> Vec<DriveOutput> {
        let (packet, r) = match core_header(pdu, "target") {
            Ok(h) => h,
            Err(dropped) => return vec![dropped],
        };
        match packet {
            PAKID_CORE_DEVICE_IOREQUEST => self.io_request(pdu, r),
            PAKID_CORE_USER_LOGGEDON if !self.client_capable => {
                self.held_logon = Some(pdu.to_vec());
                Vec::new()
            }
            PAKID_CORE_SERVER_ANNOUNCE
            | PAKID_CORE_CLIENTID_CONFIRM
            | PAKID_CORE_SERVER_CAPABILITY
            | PAKID_CORE_DEVICE_REPLY
            | PAKID_CORE_USER_LOGGEDON => vec![DriveOutput::ToClient(pdu.to_vec())],
            other => vec![DriveOutput::Dropped(format!(
                "a target drive message of type {other:#06x}"
            ))],
        }
    }

    /// A whole (reassembled) `rdpdr` message from the client.
    pub fn from_client(&mut self, pdu: &[u8]) -> Vec<DriveOutput> {
        let (packet, r) = match core_header(pdu, "client") {
            Ok(h) => h,
            Err(dropped) => return vec![dropped],
        };
        match packet {
            PAKID_CORE_DEVICE_IOCOMPLETION => self.io_completion(pdu, r),
            PAKID_CORE_DEVICELIST_ANNOUNCE => self.device_list(r),
            PAKID_CORE_DEVICELIST_REMOVE => self.device_remove(r),
            PAKID_CORE_CLIENT_CAPABILITY => {
                self.client_capable = true;
                let mut out = vec![DriveOutput::ToTarget(pdu.to_vec())];
                out.extend(self.held_logon.take().map(DriveOutput::ToClient));
                out
            }
            PAKID_CORE_CLIENTID_CONFIRM | PAKID_CORE_CLIENT_NAME => {
                vec![DriveOutput::ToTarget(pdu.to_vec())]
            }
            other => vec![DriveOutput::Dropped(format!(
                "a client drive message of type {other:#06x}"
            ))],
        }
    }

    /// The session ends: files still open are reported with what crossed so far.
    pub fn finish(&mut self) -> Vec<DriveOutput> {
        let mut out = Vec::new();
        self.close_files(|_| true, &mut out);
        self.pending.clear();
        self.held = 0;
        out
    }

    /// Forgets the open files `pick` selects, reporting what crossed of each (in key order, so
    /// the record does not depend on a hash map's order).
    fn close_files(&mut self, pick: impl Fn(&FileKey) -> bool, out: &mut Vec<DriveOutput>) {
        let mut keys: Vec<FileKey> = self.open.keys().filter(|k| pick(k)).copied().collect();
        keys.sort_unstable();
        for key in keys {
            if let Some(file) = self.open.remove(&key) {
                self.held -= file.held();
                report(file, out);
            }
        }
    }

    /// Panics when the relay's state outgrew its bounds (for the fuzzer).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check_bounds(&self) {
        assert!(
            self.pending.len() <= MAX_PENDING,
            "pending requests unbounded"
        );
        assert!(self.open.len() <= MAX_OPEN_FILES, "open files unbounded");
        assert!(self.drives.len() <= MAX_DEVICES, "devices unbounded");
        let held = self.open.values().map(OpenFile::held).sum::<usize>()
            + self.pending.values().map(Pending::held).sum::<usize>();
        assert_eq!(held, self.held, "held bytes miscounted");
        assert!(self.held <= MAX_SESSION_HELD, "held bytes unbounded");
    }

    /// Keeps only the drives of a Client Device List Announce.
    fn device_list(&mut self, mut r: Reader<'_>) -> Vec<DriveOutput> {
        let Some(count) = r.u32() else {
            return vec![DriveOutput::Dropped("a device list without count".into())];
        };
        let mut kept = Vec::new();
        let mut n = 0u32;
        for _ in 0..count.min(u32::try_from(MAX_DEVICES).unwrap_or(u32::MAX)) {
            let start = r.pos;
            let (Some(kind), Some(id), Some(name), Some(len)) =
                (r.u32(), r.u32(), r.take(8), r.u32())
            else {
                return vec![DriveOutput::Dropped("a truncated device list".into())];
            };
            let Some(_data) = r.take(usize::try_from(len).unwrap_or(usize::MAX)) else {
                return vec![DriveOutput::Dropped("a truncated device list".into())];
            };
            if kind != RDPDR_DTYP_FILESYSTEM || self.drives.len() >= MAX_DEVICES {
                continue;
            }
            let name = dos_name(name);
            self.drives.insert(id, name);
            kept.extend_from_slice(&r.buf[start..r.pos]);
            n += 1;
        }
        if n == 0 {
            return Vec::new();
        }
        let mut pdu = header(PAKID_CORE_DEVICELIST_ANNOUNCE);
        pdu.extend_from_slice(&n.to_le_bytes());
        pdu.extend_from_slice(&kept);
        vec![DriveOutput::ToTarget(pdu)]
    }

    /// Passes on the removal of drives the target knows of.
    fn device_remove(&mut self, mut r: Reader<'_>) -> Vec<DriveOutput> {
        let Some(count) = r.u32() else {
            return vec![DriveOutput::Dropped(
                "a device removal without count".into(),
            )];
        };
        let mut ids = Vec::new();
        for _ in 0..count.min(u32::try_from(MAX_DEVICES).unwrap_or(u32::MAX)) {
            let Some(id) = r.u32() else { break };
            if self.drives.remove(&id).is_some() {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // Files open on a removed drive end there.
        self.close_files(|(device, _)| ids.contains(device), &mut out);
        let mut pdu = header(PAKID_CORE_DEVICELIST_REMOVE);
        pdu.extend_from_slice(&u32::try_from(ids.len()).unwrap_or(0).to_le_bytes());
        for id in ids {
            pdu.extend_from_slice(&id.to_le_bytes());
        }
        out.push(DriveOutput::ToTarget(pdu));
        out
    }

    fn io_request(&mut self, pdu: &[u8], mut r: Reader<'_>) -> Vec<DriveOutput> {
        let (Some(device), Some(file_id), Some(completion), Some(major), Some(_minor)) =
            (r.u32(), r.u32(), r.u32(), r.u32(), r.u32())
        else {
            return vec![DriveOutput::Dropped("a truncated I/O request".into())];
        };
        let refuse = |status: u32| {
            vec![DriveOutput::ToTarget(completion_pdu(
                device, completion, status, major,
            ))]
        };
        let Some(drive) = self.drives.get(&device).cloned() else {
            return refuse(STATUS_NO_SUCH_DEVICE);
        };
        if self.pending.len() >= MAX_PENDING {
            return refuse(STATUS_INSUFFICIENT_RESOURCES);
        }
        let file = (device, file_id);
        let path_of = |open: &HashMap<FileKey, OpenFile>| {
            open.get(&file)
                .map_or_else(|| format!("{drive}\\?"), |f| f.path.clone())
        };
        let mut out = Vec::new();
        let pending = match major {
            IRP_MJ_CREATE => {
                let (
                    Some(access),
                    Some(_alloc),
                    Some(_attrs),
                    Some(_share),
                    Some(disposition),
                    Some(options),
                    Some(len),
                ) = (
                    r.u32(),
                    r.u64(),
                    r.u32(),
                    r.u32(),
                    r.u32(),
                    r.u32(),
                    r.u32(),
                )
                else {
                    return vec![DriveOutput::Dropped("a truncated create request".into())];
                };
                let Some(raw) = r.take(usize::try_from(len).unwrap_or(usize::MAX)) else {
                    return vec![DriveOutput::Dropped(
                        "a create request with a truncated path".into(),
                    )];
                };
                let path = join(&drive, &utf16(raw));
                let changes = disposition != FILE_OPEN
                    || access & WRITE_ACCESS != 0
                    || options & FILE_DELETE_ON_CLOSE != 0;
                if changes && !self.terms.download {
                    return refused(
                        device,
                        completion,
                        major,
                        FileDirection::Download,
                        path,
                        "open for writing",
                    );
                }
                if self.open.len() >= MAX_OPEN_FILES || self.held + path.len() > MAX_SESSION_HELD {
                    return refuse(STATUS_INSUFFICIENT_RESOURCES);
                }
                Pending::Create { path }
            }
            IRP_MJ_READ => {
                let (Some(length), Some(offset)) = (r.u32(), r.u64()) else {
                    return vec![DriveOutput::Dropped("a truncated read request".into())];
                };
                if !self.terms.upload {
                    let path = path_of(&self.open);
                    return refused(
                        device,
                        completion,
                        major,
                        FileDirection::Upload,
                        path,
                        "read",
                    );
                }
                Pending::Read {
                    file,
                    offset,
                    length,
                }
            }
            IRP_MJ_WRITE => {
                let (Some(length), Some(offset), Some(_pad)) = (r.u32(), r.u64(), r.take(20))
                else {
                    return vec![DriveOutput::Dropped("a truncated write request".into())];
                };
                let Some(data) = r.take(usize::try_from(length).unwrap_or(usize::MAX)) else {
                    return vec![DriveOutput::Dropped(
                        "a write request with truncated data".into(),
                    )];
                };
                if !self.terms.download {
                    let path = path_of(&self.open);
                    return refused(
                        device,
                        completion,
                        major,
                        FileDirection::Download,
                        path,
                        "write",
                    );
                }
                if let Some(f) = self.open.get_mut(&file) {
                    f.written.add(offset, data, &mut self.held);
                }
                Pending::Write
            }
            IRP_MJ_SET_INFORMATION | IRP_MJ_SET_VOLUME_INFORMATION => {
                let (Some(class), Some(len), Some(_pad)) = (r.u32(), r.u32(), r.take(24)) else {
                    return vec![DriveOutput::Dropped(
                        "a truncated set-information request".into(),
                    )];
                };
                let path = path_of(&self.open);
                let what = match class {
                    FILE_RENAME_INFORMATION => "rename",
                    FILE_DISPOSITION_INFORMATION => "delete",
                    _ => "change",
                };
                if !self.terms.download {
                    return refused(
                        device,
                        completion,
                        major,
                        FileDirection::Download,
                        path,
                        what,
                    );
                }
                let buf = r
                    .take(usize::try_from(len).unwrap_or(usize::MAX))
                    .unwrap_or_default();
                match class {
                    FILE_RENAME_INFORMATION => out.push(DriveOutput::File(FileEvent::Changed {
                        change: format!("renamed to {}", join(&drive, &rename_target(buf))),
                        path,
                    })),
                    FILE_DISPOSITION_INFORMATION => {
                        out.push(DriveOutput::File(FileEvent::Changed {
                            path,
                            change: "deleted".into(),
                        }))
                    }
                    _ => {}
                }
                Pending::Other
            }
            IRP_MJ_CLOSE => {
                if let Some(f) = self.open.remove(&file) {
                    self.held -= f.held();
                    report(f, &mut out);
                }
                Pending::Other
            }
            _ => Pending::Other,
        };
        self.held += pending.held();
        if let Some(old) = self.pending.insert((device, completion), pending) {
            self.held -= old.held();
        }
        out.push(DriveOutput::ToClient(pdu.to_vec()));
        out
    }

    fn io_completion(&mut self, pdu: &[u8], mut r: Reader<'_>) -> Vec<DriveOutput> {
        let (Some(device), Some(completion), Some(status)) = (r.u32(), r.u32(), r.u32()) else {
            return vec![DriveOutput::Dropped("a truncated I/O completion".into())];
        };
        // Only answers to what the target asked cross: nothing can be slipped in.
        let Some(pending) = self.pending.remove(&(device, completion)) else {
            return vec![DriveOutput::Dropped(format!(
                "an I/O completion for no request (device {device}, id {completion})"
            ))];
        };
        self.held -= pending.held();
        let ok = status & 0xC000_0000 != 0xC000_0000;
        match pending {
            Pending::Create { path } => {
                if let (true, Some(file_id)) = (ok, r.u32()) {
                    self.held += path.len();
                    let replaced = self.open.insert(
                        (device, file_id),
                        OpenFile {
                            path,
                            read: Flow::fresh(),
                            written: Flow::fresh(),
                        },
                    );
                    if let Some(old) = replaced {
                        self.held -= old.held();
                    }
                }
            }
            Pending::Read {
                file,
                offset,
                length,
            } => {
                let Some(len) = r.u32() else {
                    return self.broken(device, completion, IRP_MJ_READ, "a truncated read answer");
                };
                let data = match r.take(usize::try_from(len).unwrap_or(usize::MAX)) {
                    Some(d) if len <= length => d,
                    _ => {
                        return self.broken(
                            device,
                            completion,
                            IRP_MJ_READ,
                            "a read answer longer than asked or than its message",
                        )
                    }
                };
                if let Some(f) = self.open.get_mut(&file) {
                    f.read.add(offset, data, &mut self.held);
                }
            }
            Pending::Write | Pending::Other => {}
        }
        vec![DriveOutput::ToTarget(pdu.to_vec())]
    }

    /// The client's answer was malformed: the target hears of a failure instead, so it does
    /// not wait forever.
    fn broken(&self, device: u32, completion: u32, major: u32, why: &str) -> Vec<DriveOutput> {
        vec![
            DriveOutput::Dropped(format!("the client sent {why}")),
            DriveOutput::ToTarget(completion_pdu(
                device,
                completion,
                STATUS_ACCESS_DENIED,
                major,
            )),
        ]
    }
}

fn refused(
    device: u32,
    completion: u32,
    major: u32,
    direction: FileDirection,
    path: String,
    operation: &str,
) -> Vec<DriveOutput> {
    vec![
        DriveOutput::File(FileEvent::Refused {
            direction,
            path,
            operation: operation.to_owned(),
        }),
        DriveOutput::ToTarget(completion_pdu(
            device,
            completion,
            STATUS_ACCESS_DENIED,
            major,
        )),
    ]
}

fn report(file: OpenFile, out: &mut Vec<DriveOutput>) {
    let OpenFile {
        path,
        read,
        written,
    } = file;
    for event in [
        read.finish(FileDirection::Upload, &path),
        written.finish(FileDirection::Download, &path),
    ]
    .into_iter()
    .flatten()
    {
        out.push(DriveOutput::File(event));
    }
}

/// The packet id of a core-component message, and a reader past its header. Other components
/// (the printer's: there is no printer on this channel) and truncated headers are dropped.
fn core_header<'a>(pdu: &'a [u8], side: &str) -> Result<(u16, Reader<'a>), DriveOutput> {
    let mut r = Reader::new(pdu);
    let (Some(component), Some(packet)) = (r.u16(), r.u16()) else {
        return Err(DriveOutput::Dropped(format!(
            "a {side} drive message without header"
        )));
    };
    if component != RDPDR_CTYP_CORE {
        return Err(DriveOutput::Dropped(format!(
            "a {side} drive message of component {component:#06x}"
        )));
    }
    Ok((packet, r))
}

fn header(packet: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&RDPDR_CTYP_CORE.to_le_bytes());
    v.extend_from_slice(&packet.to_le_bytes());
    v
}

/// A Device I/O Completion with `status` and the smallest valid body for `major`.
fn completion_pdu(device: u32, completion: u32, status: u32, major: u32) -> Vec<u8> {
    let mut v = header(PAKID_CORE_DEVICE_IOCOMPLETION);
    v.extend_from_slice(&device.to_le_bytes());
    v.extend_from_slice(&completion.to_le_bytes());
    v.extend_from_slice(&status.to_le_bytes());
    match major {
        // FileId 0, Information 0.
        IRP_MJ_CREATE => v.extend_from_slice(&[0, 0, 0, 0, 0]),
        // Length 0.
        IRP_MJ_READ => v.extend_from_slice(&[0, 0, 0, 0]),
        // Length 0, Padding.
        IRP_MJ_WRITE | IRP_MJ_SET_INFORMATION | IRP_MJ_SET_VOLUME_INFORMATION => {
            v.extend_from_slice(&[0, 0, 0, 0, 0])
        }
        // Close: Padding (4 bytes); the others carry a length-prefixed buffer, empty.
        _ => v.extend_from_slice(&[0, 0, 0, 0]),
    }
    v
}

/// The path a rename names (FILE_RENAME_INFORMATION as MS-RDPEFS carries it).
fn rename_target(buf: &[u8]) -> String {
    let mut r = Reader::new(buf);
    let (Some(_replace), Some(_root), Some(len)) = (r.take(1), r.take(1), r.u32()) else {
        return "?".into();
    };
    r.take(usize::try_from(len).unwrap_or(usize::MAX))
        .map_or_else(|| "?".into(), utf16)
}

/// The drive's name and a path on it, with Windows separators (xrdp sends `/` on opens and `\`
/// on lookups).
fn join(drive: &str, path: &str) -> String {
    let path = path.replace('/', "\\");
    let path = path.trim_start_matches('\\');
    if path.is_empty() {
        drive.to_owned()
    } else {
        format!("{drive}\\{path}")
    }
}

/// UTF-16LE up to its terminator, bounded, lossy (a path is for the record, not for use).
fn utf16(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let mut s: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .filter(|c| !c.is_control())
        .take(MAX_PATH_CHARS + 1)
        .collect();
    if s.chars().count() > MAX_PATH_CHARS {
        s = s.chars().take(MAX_PATH_CHARS).collect();
        s.push('…');
    }
    s
}

/// The 8-byte ASCII DOS name of a device, without its padding.
fn dos_name(raw: &[u8]) -> String {
    let name: String = raw
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if name.is_empty() {
        "drive".into()
    } else {
        name
    }
}

/// A little-endian reader that answers `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
}

/// Largest `rdpdr` message (reassembled) taken from either side: a read or write of 1 MiB (more
/// than FreeRDP or Windows ask for at once) plus headers. Larger ones are dropped unread.
pub(crate) const MAX_RDPDR_PDU: usize = 1024 * 1024 + 4096;

/// The `rdpdr` static channel on either of the gateway's sides: it only collects what arrives,
/// for the session loop to hand to the [`DriveRelay`] (the channel's callback cannot send).
#[derive(Debug, Default)]
pub(crate) struct RdpdrChannel {
    received: Vec<Vec<u8>>,
}

ironrdp_core::impl_as_any!(RdpdrChannel);

impl RdpdrChannel {
    /// The messages that arrived since the last call.
    pub(crate) fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.received)
    }
}

impl ironrdp_svc::SvcProcessor for RdpdrChannel {
    fn channel_name(&self) -> ironrdp_pdu::gcc::ChannelName {
        ironrdp_pdu::gcc::ChannelName::from_static(b"rdpdr\0\0\0")
    }

    fn compression_condition(&self) -> ironrdp_svc::CompressionCondition {
        ironrdp_svc::CompressionCondition::WhenRdpDataIsCompressed
    }

    fn process(&mut self, payload: &[u8]) -> ironrdp_pdu::PduResult<Vec<ironrdp_svc::SvcMessage>> {
        if payload.len() <= MAX_RDPDR_PDU {
            self.received.push(payload.to_vec());
        } else {
            tracing::debug!(
                bytes = payload.len(),
                "oversized drive redirection message dropped"
            );
        }
        Ok(Vec::new())
    }
}

impl ironrdp_svc::SvcClientProcessor for RdpdrChannel {}
impl ironrdp_svc::SvcServerProcessor for RdpdrChannel {}

#[cfg(test)]
mod tests;
