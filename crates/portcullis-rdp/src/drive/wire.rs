//! The `rdpdr` messages the relay reads and writes (MS-RDPEFS): component, packet and I/O ids,
//! a little-endian reader that stops at the end, the core header, the completions the relay
//! answers with, and the lossy decoding of names and paths for the record.

use super::DriveOutput;

// Component and packet ids (MS-RDPEFS 2.2.1.1).
const RDPDR_CTYP_CORE: u16 = 0x4472;
pub(super) const PAKID_CORE_SERVER_ANNOUNCE: u16 = 0x496E;
pub(super) const PAKID_CORE_CLIENTID_CONFIRM: u16 = 0x4343;
pub(super) const PAKID_CORE_CLIENT_NAME: u16 = 0x434E;
pub(super) const PAKID_CORE_DEVICELIST_ANNOUNCE: u16 = 0x4441;
pub(super) const PAKID_CORE_DEVICE_REPLY: u16 = 0x6472;
pub(super) const PAKID_CORE_DEVICE_IOREQUEST: u16 = 0x4952;
pub(super) const PAKID_CORE_DEVICE_IOCOMPLETION: u16 = 0x4943;
pub(super) const PAKID_CORE_SERVER_CAPABILITY: u16 = 0x5350;
pub(super) const PAKID_CORE_CLIENT_CAPABILITY: u16 = 0x4350;
pub(super) const PAKID_CORE_DEVICELIST_REMOVE: u16 = 0x444D;
pub(super) const PAKID_CORE_USER_LOGGEDON: u16 = 0x554C;

pub(super) const RDPDR_DTYP_FILESYSTEM: u32 = 0x08;

// Major functions (MS-RDPEFS 2.2.1.4).
pub(super) const IRP_MJ_CREATE: u32 = 0x00;
pub(super) const IRP_MJ_CLOSE: u32 = 0x02;
pub(super) const IRP_MJ_READ: u32 = 0x03;
pub(super) const IRP_MJ_WRITE: u32 = 0x04;
pub(super) const IRP_MJ_SET_INFORMATION: u32 = 0x06;
pub(super) const IRP_MJ_SET_VOLUME_INFORMATION: u32 = 0x0B;

// Create dispositions: only FILE_OPEN leaves the user's drive as it was.
pub(super) const FILE_OPEN: u32 = 1;
pub(super) const FILE_DELETE_ON_CLOSE: u32 = 0x0000_1000;
// Access rights that let the handle change the file (MS-SMB2 2.2.13.1.1).
pub(super) const WRITE_ACCESS: u32 = 0x0000_0002 // FILE_WRITE_DATA
    | 0x0000_0004 // FILE_APPEND_DATA
    | 0x0000_0010 // FILE_WRITE_EA
    | 0x0000_0100 // FILE_WRITE_ATTRIBUTES
    | 0x0001_0000 // DELETE
    | 0x0004_0000 // WRITE_DAC
    | 0x0008_0000 // WRITE_OWNER
    | 0x1000_0000 // GENERIC_ALL
    | 0x4000_0000; // GENERIC_WRITE

// File information classes of IRP_MJ_SET_INFORMATION (MS-FSCC 2.4).
pub(super) const FILE_RENAME_INFORMATION: u32 = 10;
pub(super) const FILE_DISPOSITION_INFORMATION: u32 = 13;

pub(super) const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;
pub(super) const STATUS_NO_SUCH_DEVICE: u32 = 0xC000_000E;
pub(super) const STATUS_INSUFFICIENT_RESOURCES: u32 = 0xC000_009A;

/// Longest path kept for the record, in characters; longer ones are cut with an ellipsis.
const MAX_PATH_CHARS: usize = 1024;

/// The packet id of a core-component message, and a reader past its header. Other components
/// (the printer's: there is no printer on this channel) and truncated headers are dropped.
pub(super) fn core_header<'a>(pdu: &'a [u8], side: &str) -> Result<(u16, Reader<'a>), DriveOutput> {
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

pub(super) fn header(packet: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&RDPDR_CTYP_CORE.to_le_bytes());
    v.extend_from_slice(&packet.to_le_bytes());
    v
}

/// A Device I/O Completion with `status` and the smallest valid body for `major`.
pub(super) fn completion_pdu(device: u32, completion: u32, status: u32, major: u32) -> Vec<u8> {
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
pub(super) fn rename_target(buf: &[u8]) -> String {
    let mut r = Reader::new(buf);
    let (Some(_replace), Some(_root), Some(len)) = (r.take(1), r.take(1), r.u32()) else {
        return "?".into();
    };
    r.take(usize::try_from(len).unwrap_or(usize::MAX))
        .map_or_else(|| "?".into(), utf16)
}

/// The drive's name and a path on it, with Windows separators (xrdp sends `/` on opens and `\`
/// on lookups).
pub(super) fn join(drive: &str, path: &str) -> String {
    let path = path.replace('/', "\\");
    let path = path.trim_start_matches('\\');
    if path.is_empty() {
        drive.to_owned()
    } else {
        format!("{drive}\\{path}")
    }
}

/// UTF-16LE up to its terminator, bounded, lossy (a path is for the record, not for use).
pub(super) fn utf16(raw: &[u8]) -> String {
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
pub(super) fn dos_name(raw: &[u8]) -> String {
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
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
}
