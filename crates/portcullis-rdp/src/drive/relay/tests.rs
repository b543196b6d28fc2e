use super::*;
use sha2::{Digest as _, Sha256};

fn hdr(packet: u16) -> Vec<u8> {
    header(packet)
}

fn device(kind: u32, id: u32, name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    let mut dos = [0u8; 8];
    dos[..name.len()].copy_from_slice(name.as_bytes());
    v.extend_from_slice(&dos);
    let data = format!("{name}\0");
    v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    v.extend_from_slice(data.as_bytes());
    v
}

fn device_list(devices: &[Vec<u8>]) -> Vec<u8> {
    let mut v = hdr(PAKID_CORE_DEVICELIST_ANNOUNCE);
    v.extend_from_slice(&u32::try_from(devices.len()).unwrap().to_le_bytes());
    for d in devices {
        v.extend_from_slice(d);
    }
    v
}

fn io(device: u32, file: u32, completion: u32, major: u32, body: &[u8]) -> Vec<u8> {
    let mut v = hdr(PAKID_CORE_DEVICE_IOREQUEST);
    for x in [device, file, completion, major, 0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn create(completion: u32, path: &str, access: u32, disposition: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&access.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    for x in [0u32, 7, disposition, 0] {
        b.extend_from_slice(&x.to_le_bytes());
    }
    let raw: Vec<u8> = path
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    b.extend_from_slice(&u32::try_from(raw.len()).unwrap().to_le_bytes());
    b.extend_from_slice(&raw);
    io(1, 0, completion, IRP_MJ_CREATE, &b)
}

fn read(completion: u32, file: u32, offset: u64, length: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&length.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&[0; 20]);
    io(1, file, completion, IRP_MJ_READ, &b)
}

fn write(completion: u32, file: u32, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&[0; 20]);
    b.extend_from_slice(data);
    io(1, file, completion, IRP_MJ_WRITE, &b)
}

fn close(completion: u32, file: u32) -> Vec<u8> {
    io(1, file, completion, IRP_MJ_CLOSE, &[0; 32])
}

fn done(completion: u32, status: u32, body: &[u8]) -> Vec<u8> {
    let mut v = hdr(PAKID_CORE_DEVICE_IOCOMPLETION);
    for x in [1u32, completion, status] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn read_done(completion: u32, data: &[u8]) -> Vec<u8> {
    let mut b = u32::try_from(data.len()).unwrap().to_le_bytes().to_vec();
    b.extend_from_slice(data);
    done(completion, 0, &b)
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A relay whose client announced drive 1, `share`.
fn relay(upload: bool, download: bool) -> DriveRelay {
    let mut r = DriveRelay::new(DriveTerms { upload, download });
    let out = r.from_client(&device_list(&[device(RDPDR_DTYP_FILESYSTEM, 1, "share")]));
    assert!(matches!(out.as_slice(), [DriveOutput::ToTarget(_)]));
    r
}

/// Opens `path` as file 7 (the target asks, the client answers).
fn open(r: &mut DriveRelay, path: &str, access: u32, disposition: u32) {
    let out = r.from_target(&create(1, path, access, disposition));
    assert!(
        matches!(out.as_slice(), [DriveOutput::ToClient(_)]),
        "{out:?}"
    );
    let out = r.from_client(&done(1, 0, &[7, 0, 0, 0, 1]));
    assert!(
        matches!(out.as_slice(), [DriveOutput::ToTarget(_)]),
        "{out:?}"
    );
}

fn files(out: &[DriveOutput]) -> Vec<FileEvent> {
    out.iter()
        .filter_map(|o| match o {
            DriveOutput::File(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn to_target(out: &[DriveOutput]) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            DriveOutput::ToTarget(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn status_of(pdu: &[u8]) -> u32 {
    u32::from_le_bytes(pdu[12..16].try_into().unwrap())
}

const GENERIC_READ: u32 = 0x8000_0000;

#[test]
fn only_drives_reach_the_target() {
    let mut r = DriveRelay::new(DriveTerms {
        upload: true,
        download: true,
    });
    let printer = device(4, 2, "PRN1");
    let drive = device(RDPDR_DTYP_FILESYSTEM, 3, "share");
    let card = device(0x20, 4, "SCARD");
    let out = r.from_client(&device_list(&[printer, drive.clone(), card]));
    assert_eq!(out, vec![DriveOutput::ToTarget(device_list(&[drive]))]);
    // A list with no drive at all is not passed on.
    assert!(r
        .from_client(&device_list(&[device(4, 9, "PRN2")]))
        .is_empty());
}

#[test]
fn an_upload_is_relayed_and_recorded_with_its_hash() {
    let mut r = relay(true, false);
    open(&mut r, "\\dir\\notes.txt", GENERIC_READ, FILE_OPEN);
    assert!(matches!(
        r.from_target(&read(2, 7, 0, 5)).as_slice(),
        [DriveOutput::ToClient(_)]
    ));
    assert_eq!(to_target(&r.from_client(&read_done(2, b"hello"))).len(), 1);
    r.from_target(&read(3, 7, 5, 100));
    r.from_client(&read_done(3, b" world"));
    let out = r.from_target(&close(4, 7));
    assert_eq!(
        files(&out),
        vec![FileEvent::Transferred {
            direction: FileDirection::Upload,
            path: "share\\dir\\notes.txt".into(),
            bytes: 11,
            sha256: Some(sha(b"hello world")),
        }]
    );
}

#[test]
fn reads_answered_out_of_order_still_give_the_hash() {
    let mut r = relay(true, false);
    // xrdp opens with forward slashes.
    open(&mut r, "/dir/a.bin", GENERIC_READ, FILE_OPEN);
    r.from_target(&read(2, 7, 0, 4));
    r.from_target(&read(3, 7, 4, 4));
    r.from_client(&read_done(3, b"5678"));
    r.from_client(&read_done(2, b"1234"));
    let events = files(&r.from_target(&close(4, 7)));
    assert_eq!(
        events,
        vec![FileEvent::Transferred {
            direction: FileDirection::Upload,
            path: "share\\dir\\a.bin".into(),
            bytes: 8,
            sha256: Some(sha(b"12345678")),
        }]
    );
}

#[test]
fn a_hole_that_never_fills_gives_no_hash() {
    let mut r = relay(true, false);
    open(&mut r, "\\a.bin", GENERIC_READ, FILE_OPEN);
    r.from_target(&read(2, 7, 4, 4));
    r.from_client(&read_done(2, b"5678"));
    let events = files(&r.from_target(&close(3, 7)));
    assert!(
        matches!(
            &events[..],
            [FileEvent::Transferred {
                bytes: 4,
                sha256: None,
                ..
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn an_early_user_logged_on_waits_for_the_client_capabilities() {
    let mut r = DriveRelay::new(DriveTerms {
        upload: true,
        download: true,
    });
    let logon = hdr(PAKID_CORE_USER_LOGGEDON);
    assert!(r.from_target(&logon).is_empty());
    let caps = hdr(PAKID_CORE_SERVER_CAPABILITY);
    assert_eq!(
        r.from_target(&caps),
        vec![DriveOutput::ToClient(caps.clone())]
    );
    let reply = hdr(PAKID_CORE_CLIENT_CAPABILITY);
    assert_eq!(
        r.from_client(&reply),
        vec![
            DriveOutput::ToTarget(reply),
            DriveOutput::ToClient(logon.clone())
        ]
    );
    // Once the client is capable, it passes at once.
    assert_eq!(r.from_target(&logon), vec![DriveOutput::ToClient(logon)]);
}

#[test]
fn a_re_read_of_the_same_range_keeps_the_hash() {
    let mut r = relay(true, false);
    open(&mut r, "\\a.bin", GENERIC_READ, FILE_OPEN);
    r.from_target(&read(2, 7, 0, 4));
    r.from_client(&read_done(2, b"1234"));
    r.from_target(&read(3, 7, 2, 4));
    r.from_client(&read_done(3, b"3456"));
    let events = files(&r.from_target(&close(4, 7)));
    let FileEvent::Transferred { sha256, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(sha256.as_deref(), Some(sha(b"123456").as_str()));
}

#[test]
fn a_read_is_refused_when_uploads_are_not_allowed() {
    let mut r = relay(false, true);
    open(&mut r, "\\secret.txt", GENERIC_READ, FILE_OPEN);
    let out = r.from_target(&read(2, 7, 0, 4096));
    assert!(!out.iter().any(|o| matches!(o, DriveOutput::ToClient(_))));
    let answers = to_target(&out);
    assert_eq!(answers.len(), 1);
    assert_eq!(status_of(&answers[0]), STATUS_ACCESS_DENIED);
    assert_eq!(
        files(&out),
        vec![FileEvent::Refused {
            direction: FileDirection::Upload,
            path: "share\\secret.txt".into(),
            operation: "read".into(),
        }]
    );
    // Nothing crossed, so closing it records no transfer.
    assert!(files(&r.from_target(&close(3, 7))).is_empty());
}

#[test]
fn writing_is_refused_when_downloads_are_not_allowed() {
    let mut r = relay(true, false);
    // Creating a file.
    let out = r.from_target(&create(1, "\\new.txt", GENERIC_READ, 2));
    assert_eq!(status_of(&to_target(&out)[0]), STATUS_ACCESS_DENIED);
    assert!(
        matches!(&files(&out)[..], [FileEvent::Refused { direction: FileDirection::Download, operation, .. }] if operation == "open for writing")
    );
    // Opening an existing one for writing.
    let out = r.from_target(&create(2, "\\old.txt", 0x4000_0000, FILE_OPEN));
    assert_eq!(status_of(&to_target(&out)[0]), STATUS_ACCESS_DENIED);
    // A write on a handle it holds anyway.
    open(&mut r, "\\old.txt", GENERIC_READ, FILE_OPEN);
    let out = r.from_target(&write(3, 7, 0, b"evil"));
    assert!(!out.iter().any(|o| matches!(o, DriveOutput::ToClient(_))));
    assert_eq!(status_of(&to_target(&out)[0]), STATUS_ACCESS_DENIED);
    // Deleting it.
    let mut body = Vec::new();
    body.extend_from_slice(&FILE_DISPOSITION_INFORMATION.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&[0; 24]);
    body.push(1);
    let out = r.from_target(&io(1, 7, 4, IRP_MJ_SET_INFORMATION, &body));
    assert!(
        matches!(&files(&out)[..], [FileEvent::Refused { operation, .. }] if operation == "delete")
    );
}

#[test]
fn a_download_is_relayed_and_recorded_with_its_hash() {
    let mut r = relay(false, true);
    open(&mut r, "\\out\\report.csv", 0x4000_0000, 5);
    assert!(matches!(
        r.from_target(&write(2, 7, 0, b"a,b\n")).as_slice(),
        [DriveOutput::ToClient(_)]
    ));
    r.from_client(&done(2, 0, &[4, 0, 0, 0, 0]));
    r.from_target(&write(3, 7, 4, b"1,2\n"));
    r.from_client(&done(3, 0, &[4, 0, 0, 0, 0]));
    let events = files(&r.from_target(&close(4, 7)));
    assert_eq!(
        events,
        vec![FileEvent::Transferred {
            direction: FileDirection::Download,
            path: "share\\out\\report.csv".into(),
            bytes: 8,
            sha256: Some(sha(b"a,b\n1,2\n")),
        }]
    );
}

#[test]
fn a_rename_is_recorded_when_allowed() {
    let mut r = relay(false, true);
    open(&mut r, "\\a.txt", 0x0001_0000, FILE_OPEN);
    let name: Vec<u8> = "\\b.txt"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut info = vec![0u8, 0];
    info.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
    info.extend_from_slice(&name);
    let mut body = Vec::new();
    body.extend_from_slice(&FILE_RENAME_INFORMATION.to_le_bytes());
    body.extend_from_slice(&u32::try_from(info.len()).unwrap().to_le_bytes());
    body.extend_from_slice(&[0; 24]);
    body.extend_from_slice(&info);
    let out = r.from_target(&io(1, 7, 2, IRP_MJ_SET_INFORMATION, &body));
    assert_eq!(
        files(&out),
        vec![FileEvent::Changed {
            path: "share\\a.txt".into(),
            change: "renamed to share\\b.txt".into(),
        }]
    );
}

#[test]
fn the_client_cannot_answer_what_was_not_asked() {
    let mut r = relay(true, true);
    let out = r.from_client(&read_done(42, b"injected"));
    assert!(matches!(out.as_slice(), [DriveOutput::Dropped(_)]));
    // Nor answer a read with more than was asked.
    open(&mut r, "\\a", GENERIC_READ, FILE_OPEN);
    r.from_target(&read(2, 7, 0, 2));
    let out = r.from_client(&read_done(2, b"too long"));
    assert!(matches!(out.first(), Some(DriveOutput::Dropped(_))));
    assert_eq!(status_of(&to_target(&out)[0]), STATUS_ACCESS_DENIED);
}

#[test]
fn requests_for_devices_the_client_did_not_offer_are_refused() {
    let mut r = relay(true, true);
    let mut pdu = read(2, 7, 0, 10);
    pdu[4..8].copy_from_slice(&9u32.to_le_bytes());
    let out = r.from_target(&pdu);
    assert_eq!(status_of(&to_target(&out)[0]), STATUS_NO_SUCH_DEVICE);
}

#[test]
fn files_still_open_at_the_end_are_reported() {
    let mut r = relay(true, false);
    open(&mut r, "\\big.iso", GENERIC_READ, FILE_OPEN);
    r.from_target(&read(2, 7, 0, 3));
    r.from_client(&read_done(2, b"abc"));
    let events = files(&r.finish());
    assert_eq!(events.len(), 1);
}

#[test]
fn hostile_bytes_never_panic() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut r = relay(true, true);
    let samples = [
        create(1, "\\x", GENERIC_READ, FILE_OPEN),
        read(2, 7, 0, 10),
        write(3, 7, 0, b"abc"),
        done(1, 0, &[7, 0, 0, 0]),
        device_list(&[device(8, 1, "share")]),
    ];
    for i in 0..20_000 {
        let mut pdu = samples[i % samples.len()].clone();
        let n = usize::try_from(next() % 4).unwrap();
        for _ in 0..n {
            let at = usize::try_from(next()).unwrap() % pdu.len();
            pdu[at] = u8::try_from(next() & 0xff).unwrap();
        }
        let cut = usize::try_from(next()).unwrap() % (pdu.len() + 1);
        pdu.truncate(cut);
        let _ = r.from_target(&pdu);
        let _ = r.from_client(&pdu);
    }
    assert!(r.pending.len() <= MAX_PENDING);
}

#[test]
fn parts_held_ahead_are_capped_per_session_not_per_file() {
    // Eight files read in parallel, each with three 1 MiB answers ahead of a read still on its
    // way: 3 MiB per file is within the per-file cap, but 24 MiB for the session is not.
    const MIB: usize = 1024 * 1024;
    let mut r = relay(true, false);
    let part = vec![0x5a; MIB];
    let first = vec![0x11; MIB];
    let mut completion = 100;
    for f in 0..8u32 {
        let file_id = 10 + f;
        completion += 1;
        let out = r.from_target(&create(
            completion,
            &format!("\\f{f}.bin"),
            GENERIC_READ,
            FILE_OPEN,
        ));
        assert!(
            matches!(out.as_slice(), [DriveOutput::ToClient(_)]),
            "{out:?}"
        );
        r.from_client(&done(completion, 0, &[10 + f as u8, 0, 0, 0, 1]));
        for k in 1..=3u64 {
            completion += 1;
            r.from_target(&read(completion, file_id, k * MIB as u64, MIB as u32));
            r.from_client(&read_done(completion, &part));
        }
        let held: usize = r
            .open
            .values()
            .map(|f| f.read.ahead_bytes + f.written.ahead_bytes)
            .sum();
        assert!(
            held <= MAX_SESSION_HELD,
            "{held} bytes held after {} files",
            f + 1
        );
        r.check_bounds();
    }
    // The holes fill: the files whose parts were kept have their hash, the others say it is
    // unavailable; every byte count is exact.
    let whole = [first.clone(), part.clone(), part.clone(), part.clone()].concat();
    let (mut hashed, mut unhashed) = (0, 0);
    for f in 0..8u32 {
        let file_id = 10 + f;
        completion += 1;
        r.from_target(&read(completion, file_id, 0, MIB as u32));
        r.from_client(&read_done(completion, &first));
        completion += 1;
        let events = files(&r.from_target(&close(completion, file_id)));
        let [FileEvent::Transferred { bytes, sha256, .. }] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(*bytes, 4 * MIB as u64);
        match sha256 {
            Some(h) => {
                assert_eq!(*h, sha(&whole));
                hashed += 1;
            }
            None => unhashed += 1,
        }
    }
    assert!(
        hashed >= 4 && unhashed >= 1,
        "{hashed} hashed, {unhashed} not"
    );
    r.check_bounds();
    assert_eq!(r.held, 0);
}

#[test]
fn opens_past_the_session_budget_are_refused() {
    let mut r = relay(true, false);
    r.held = MAX_SESSION_HELD - 10;
    let out = r.from_target(&create(
        5,
        "\\a-rather-long-name.bin",
        GENERIC_READ,
        FILE_OPEN,
    ));
    let pdus = to_target(&out);
    assert_eq!(pdus.len(), 1, "{out:?}");
    assert_eq!(status_of(&pdus[0]), STATUS_INSUFFICIENT_RESOURCES);
}
