//! `portcullis audit verify` checks the seals of the trail with the gateway's key: a trail edited
//! and re-hashed while the gateway was down (which a chain alone cannot show) is refused.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use sha2::{Digest as _, Sha256};

mod common;
use common::portcullis;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn segment(data: &Path) -> PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 1);
    files.remove(0)
}

/// Changes `from` to `to` in the record `seq`, then rewrites every `prev` and `hash` after it so
/// that the chain checks out again, keeping the seals (which cannot be remade without the key).
fn edit_and_rehash(path: &Path, seq: u64, from: &str, to: &str) {
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for (i, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
        let mut line = line.to_owned();
        if i as u64 + 1 == seq {
            assert!(line.contains(from), "{line}");
            line = line.replacen(from, to, 1);
        }
        let at = line.find(r#","prev":""#).unwrap();
        let header = format!(r#"{},"prev":"{prev}","#, &line[..at]);
        let rest = &line[at + 9 + 64 + 2..];
        let rest = rest.strip_prefix(r#""hash":""#).unwrap();
        let rest = &rest[64 + 2..];
        let (seal, rest) = match rest.strip_prefix(r#""seal":""#) {
            Some(r) => (format!(r#""seal":"{}","#, &r[..128]), &r[130..]),
            None => (String::new(), rest),
        };
        let hash = hex::encode(Sha256::digest(format!("{header}{rest}").as_bytes()));
        out.push_str(&format!(r#"{header}"hash":"{hash}",{seal}{rest}"#));
        out.push('\n');
        prev = hash;
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_trail_edited_and_rehashed_fails_audit_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    for name in ["bob", "carol", "dave"] {
        let out = portcullis(data, &["user", "add", name, "--password-env", "PW"]);
        assert!(out.status.success(), "{out:?}");
    }
    // The CLI seals its records with the gateway's key, as the gateway does.
    let out = portcullis(data, &["audit", "verify"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("3 records in 1 files, intact"), "{stdout}");
    assert!(
        stdout.contains("sealed: 3 records carry a seal, the last at seq 3; every seal checks out"),
        "{stdout}"
    );

    // Carol's creation now says bob made eve, with every later hash recomputed.
    edit_and_rehash(&segment(data), 2, r#""name":"carol""#, r#""name":"eve""#);
    let out = portcullis(data, &["audit", "verify"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("NOT intact") && stderr.contains("(seq 2): seal does not verify"),
        "{stderr}"
    );

    // The public key given by hand does the same; another key fails even the untouched trail.
    let key = portcullis(data, &["recording", "public-key"]);
    let hex_key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let out = portcullis(data, &["audit", "verify", "--public-key", &hex_key]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    edit_and_rehash(&segment(data), 2, r#""name":"eve""#, r#""name":"carol""#);
    let out = portcullis(data, &["audit", "verify", "--public-key", &hex_key]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("(given: --public-key)"), "{stdout}");
    let other = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    let out = portcullis(data, &["audit", "verify", "--public-key", other]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));

    // Seals stripped: the last record has none.
    let path = segment(data);
    let stripped: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let at = l.find(r#""seal":""#).unwrap();
            format!("{}{}\n", &l[..at], &l[at + 138..])
        })
        .collect();
    std::fs::write(&path, stripped).unwrap();
    let out = portcullis(data, &["audit", "verify"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("(seq 3): the last record carries no seal"),
        "{stderr}"
    );
}

#[test]
fn without_a_key_verify_says_it_checked_the_chain_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let out = portcullis(data, &["user", "add", "bob", "--password-env", "PW"]);
    assert!(out.status.success(), "{out:?}");
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(segment(data), copy.join(segment(data).file_name().unwrap())).unwrap();
    // Another data directory: no gateway key there.
    let elsewhere = tmp.path().join("elsewhere");
    let out = portcullis(&elsewhere, &["audit", "verify", copy.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("chain only, seals NOT checked") && stdout.contains("proves nothing"),
        "{stdout}"
    );
}

/// Every seal stripped while the gateway was down (records edited, hashes recomputed): the next
/// change seals the trail as found, and from then on `audit verify` says plainly that the
/// records before it are not vouched for, with exit status 2 (never 0 "intact").
#[test]
fn a_trail_sealed_as_found_is_not_called_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    for name in ["bob", "carol"] {
        let out = portcullis(data, &["user", "add", name, "--password-env", "PW"]);
        assert!(out.status.success(), "{out:?}");
    }
    edit_and_rehash(&segment(data), 2, r#""name":"carol""#, r#""name":"eve""#);
    let path = segment(data);
    let stripped: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| match l.find(r#""seal":""#) {
            Some(at) => format!("{}{}\n", &l[..at], &l[at + 138..]),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&path, stripped).unwrap();
    // The next change (the CLI, or a gateway start) seals it as found.
    let out = portcullis(data, &["user", "add", "dave", "--password-env", "PW"]);
    assert!(out.status.success(), "{out:?}");
    let out = portcullis(data, &["audit", "verify"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(!stdout.contains(", intact;"), "{stdout}");
    assert!(
        stdout.contains(
            "NOT VOUCHED FOR: records 1 to 2 carry no seal made when they were written; they were trusted as found at seq 3"
        ),
        "{stdout}"
    );
}

/// The signing key file gone while the trail is sealed: neither the CLI nor the gateway makes
/// a new key (which could never verify the trail's seals); both refuse, naming the cause.
#[test]
fn a_missing_key_of_a_sealed_trail_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let out = portcullis(data, &["user", "add", "bob", "--password-env", "PW"]);
    assert!(out.status.success(), "{out:?}");
    let key = data.join("recording-signing.key");
    std::fs::remove_file(&key).unwrap();
    let trail = std::fs::read(segment(data)).unwrap();
    for args in [
        &["user", "add", "carol", "--password-env", "PW"][..],
        &["recording", "public-key"],
        &["serve"],
    ] {
        let out = portcullis(data, args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("the key that sealed the trail is missing"),
            "{args:?}: {stderr}"
        );
        assert!(!key.exists(), "{args:?} created a new key");
        assert_eq!(std::fs::read(segment(data)).unwrap(), trail, "{args:?}");
    }
}

/// A forged tail whose last record carries a seal the key did not make: the gateway refuses
/// to start (and to add anything) rather than take it for sealed.
#[test]
fn the_gateway_refuses_a_trail_whose_last_seal_does_not_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    for name in ["bob", "carol"] {
        let out = portcullis(data, &["user", "add", name, "--password-env", "PW"]);
        assert!(out.status.success(), "{out:?}");
    }
    edit_and_rehash(&segment(data), 1, r#""name":"bob""#, r#""name":"eve""#);
    let trail = std::fs::read(segment(data)).unwrap();
    for args in [
        &["serve"][..],
        &["user", "add", "dave", "--password-env", "PW"],
    ] {
        let out = portcullis(data, args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("the seal of record 2 does not verify with this gateway's key"),
            "{args:?}: {stderr}"
        );
        assert_eq!(std::fs::read(segment(data)).unwrap(), trail, "{args:?}");
    }
}

/// The secret key file gone (the signing key is sealed under it): no command makes a new one,
/// which could open nothing; each refuses, naming the missing key.
#[test]
fn a_missing_secret_key_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let out = portcullis(data, &["user", "add", "bob", "--password-env", "PW"]);
    assert!(out.status.success(), "{out:?}");
    let secret = data.join("secret.key");
    std::fs::remove_file(&secret).unwrap();
    let trail = std::fs::read(segment(data)).unwrap();
    for args in [
        &["user", "add", "carol", "--password-env", "PW"][..],
        &["audit", "verify"],
        &["serve"],
    ] {
        let out = portcullis(data, args);
        let (stdout, stderr) = text(&out);
        if args == ["audit", "verify"] {
            // Verify still checks the chain, and says why the seals were not.
            assert!(
                stdout.contains("seals NOT checked") && stdout.contains("is missing"),
                "{stdout}{stderr}"
            );
        } else {
            assert!(!out.status.success(), "{args:?}: {stdout}{stderr}");
            assert!(
                stderr.contains("the secret key") && stderr.contains("is missing"),
                "{args:?}: {stderr}"
            );
        }
        assert!(!secret.exists(), "{args:?} created a new secret key");
        assert_eq!(std::fs::read(segment(data)).unwrap(), trail, "{args:?}");
    }
}
