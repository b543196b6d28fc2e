#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn password_hash_round_trip() {
    let phc = hash_password("correct horse").unwrap();
    assert!(phc.starts_with("$argon2id$"));
    assert!(verify_password("correct horse", &phc));
    assert!(!verify_password("wrong horse", &phc));
    assert!(!verify_password("", &phc));
}

#[test]
fn password_hashes_are_salted() {
    let a = hash_password("same").unwrap();
    let b = hash_password("same").unwrap();
    assert_ne!(a, b);
    assert!(verify_password("same", &a));
    assert!(verify_password("same", &b));
}

#[test]
fn malformed_hashes_never_verify() {
    for phc in [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
        "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=19456,t=99999,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$md5$whatever",
        "\u{0}\u{ffff}",
    ] {
        assert!(!verify_password("x", phc), "{phc:?} verified");
    }
}

/// An unknown user's login costs what a known one's does: the dummy hash has the same
/// algorithm and cost parameters as every user's hash, and verifying against it runs argon2 to
/// the end (a malformed or empty dummy would return at once and reveal which names exist).
#[test]
fn burn_verify_time_costs_a_real_verification() {
    let cost = |phc: &str| {
        let h = PasswordHash::new(phc).unwrap();
        format!("{} {:?} {}", h.algorithm, h.version, h.params)
    };
    let dummy = dummy_hash();
    assert_eq!(
        cost(dummy),
        cost(&hash_password("a user's password").unwrap())
    );
    assert!(cost(dummy).contains("m=19456"), "{}", cost(dummy));
    assert!(verify_password(DUMMY_PASSWORD, dummy));
    assert!(!verify_password("anything", dummy));
    burn_verify_time("anything");
}

#[test]
fn seal_open_round_trip() {
    let key = SecretKey::generate();
    for plaintext in [&b""[..], b"p", b"a longer secret password \x00\xff"] {
        let sealed = key.seal(plaintext, b"target:web1");
        assert_eq!(sealed[0], SEAL_VERSION);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + plaintext.len() + 16);
        assert_eq!(key.open(&sealed, b"target:web1").unwrap(), plaintext);
    }
}

#[test]
fn seal_uses_fresh_nonces() {
    let key = SecretKey::generate();
    assert_ne!(key.seal(b"same", b""), key.seal(b"same", b""));
}

#[test]
fn wrong_aad_fails() {
    let key = SecretKey::generate();
    let sealed = key.seal(b"secret", b"target:a");
    assert!(matches!(
        key.open(&sealed, b"target:b"),
        Err(SecretsError::Decrypt)
    ));
}

#[test]
fn wrong_key_fails() {
    let sealed = SecretKey::generate().seal(b"secret", b"");
    assert!(matches!(
        SecretKey::generate().open(&sealed, b""),
        Err(SecretsError::Decrypt)
    ));
}

#[test]
fn flipped_byte_fails() {
    let key = SecretKey::generate();
    let sealed = key.seal(b"secret", b"aad");
    for i in 1..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(
            matches!(key.open(&bad, b"aad"), Err(SecretsError::Decrypt)),
            "flip at {i}"
        );
    }
    let mut bad = sealed.clone();
    bad[0] = 2;
    assert!(matches!(
        key.open(&bad, b"aad"),
        Err(SecretsError::UnsupportedVersion(2))
    ));
}

#[test]
fn truncated_input_fails() {
    let key = SecretKey::generate();
    let sealed = key.seal(b"secret", b"aad");
    for len in 0..sealed.len() {
        let err = key.open(&sealed[..len], b"aad").unwrap_err();
        if len < 1 + NONCE_LEN + 16 {
            assert!(
                matches!(err, SecretsError::SealedTooShort { .. }),
                "len {len}: {err}"
            );
        } else {
            assert!(matches!(err, SecretsError::Decrypt), "len {len}: {err}");
        }
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(key.open(&longer, b"aad").is_err());
}

#[test]
fn key_debug_is_redacted() {
    let key = SecretKey::from_bytes([7u8; 32]);
    assert_eq!(format!("{key:?}"), "SecretKey([redacted])");
}

#[test]
fn key_from_hex() {
    let hex_text = "00".repeat(31) + "ff";
    let key = SecretKey::from_hex(&format!("  {hex_text}\n")).unwrap();
    let other = SecretKey::from_bytes({
        let mut b = [0u8; 32];
        b[31] = 0xff;
        b
    });
    let sealed = key.seal(b"x", b"");
    assert_eq!(other.open(&sealed, b"").unwrap(), b"x");

    assert!(SecretKey::from_hex("").is_err());
    assert!(SecretKey::from_hex(&"0".repeat(63)).is_err());
    let bad = "zz".repeat(32);
    let err = SecretKey::from_hex(&bad).unwrap_err().to_string();
    assert!(!err.contains("zz"), "{err}");
}

#[cfg(unix)]
#[test]
fn load_or_create_creates_0600_and_reloads() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.key");
    let key = SecretKey::load_or_create(&path).unwrap();

    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let content = fs::read_to_string(&path).unwrap();
    assert_eq!(content.len(), 65);
    assert!(content.ends_with('\n'));
    assert!(content[..64].bytes().all(|b| b.is_ascii_hexdigit()));

    let again = SecretKey::load_or_create(&path).unwrap();
    let sealed = key.seal(b"secret", b"aad");
    assert_eq!(again.open(&sealed, b"aad").unwrap(), b"secret");

    // No temporary files are left behind.
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn load_accepts_file_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    fs::write(&path, "ab".repeat(32)).unwrap();
    let key = SecretKey::load_or_create(&path).unwrap();
    let expected = SecretKey::from_bytes([0xab; 32]);
    assert_eq!(expected.open(&key.seal(b"x", b""), b"").unwrap(), b"x");
}

#[test]
fn garbage_key_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.key");
    for content in [
        &b""[..],
        b"short\n",
        b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n",
        b"0000000000000000000000000000000000000000000000000000000000000000\n\n",
        b"\xff\xfe\x00garbage",
    ] {
        fs::write(&path, content).unwrap();
        let err = SecretKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, SecretsError::KeyFileInvalid { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // The existing file is left untouched.
        assert_eq!(fs::read(&path).unwrap(), content);
    }
}

#[test]
fn missing_parent_dir_errors_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("secret.key");
    let err = SecretKey::load_or_create(&path).unwrap_err();
    assert!(matches!(err, SecretsError::KeyFileIo { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn secret_is_redacted_and_deserializes() {
    let secret = Secret::new("hunter2".to_owned());
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(secret.expose(), "hunter2");

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        password: Secret,
    }
    let body: Body = serde_json::from_str(r#"{"password":"s3cret"}"#).unwrap();
    assert_eq!(body.password.expose(), "s3cret");
    assert!(!format!("{body:?}").contains("s3cret"));
}

#[test]
fn random_tokens() {
    let a = random_token(32);
    assert_eq!(a.len(), 43);
    assert!(a
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_ne!(a, random_token(32));
    assert_eq!(random_token(0), "");
}

#[test]
fn constant_time_comparison() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"", b"a"));
}
