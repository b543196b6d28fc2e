//! The relay's state machine for one session: which drives the target knows of, the requests
//! it has outstanding, the files it holds open, and what the terms refuse on the client's behalf.

use std::collections::HashMap;

use portcullis_core::desktop::{FileDirection, FileEvent};

use super::flow::Flow;
use super::wire::*; // the protocol's ids and the message reader and builders
use super::{DriveOutput, DriveTerms, MAX_SESSION_HELD};

/// Requests the target may have outstanding at once; more are refused (a well-behaved target
/// keeps a few dozen).
const MAX_PENDING: usize = 1024;
/// Files the target may hold open on the user's drives at once.
const MAX_OPEN_FILES: usize = 4096;
/// Devices the client may announce in one list (more is not a real client).
const MAX_DEVICES: usize = 32;
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

#[cfg(test)]
mod tests;
