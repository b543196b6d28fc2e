//! Secrets handling for Portcullis: password hashing, sealing of stored target secrets, random
//! tokens and small helpers.
//!
//! Nothing in this crate does I/O except [`SecretKey::load_or_create`], which reads or creates the
//! key file.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

/// Length in bytes of a [`SecretKey`].
pub const KEY_LEN: usize = 32;

/// Version byte at the start of every sealed secret produced by [`SecretKey::seal`].
pub const SEAL_VERSION: u8 = 1;

/// Length in bytes of the XChaCha20-Poly1305 nonce stored in a sealed secret.
pub const NONCE_LEN: usize = 24;

/// Length in bytes of the Poly1305 authentication tag.
const TAG_LEN: usize = 16;

/// Upper bound on the argon2 memory cost (in KiB) accepted when verifying a stored hash, so that a
/// tampered hash cannot make a login allocate gigabytes.
const MAX_VERIFY_M_COST_KIB: u32 = 1024 * 1024;

/// Upper bound on the argon2 time cost accepted when verifying a stored hash.
const MAX_VERIFY_T_COST: u32 = 64;

/// Upper bound on the argon2 parallelism accepted when verifying a stored hash.
const MAX_VERIFY_P_COST: u32 = 64;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The key file could not be read, created or written.
    #[error("key file {path}: {source}")]
    KeyFileIo {
        /// Path of the key file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The key file exists but does not hold a valid key.
    #[error("key file {path} is invalid: {detail}")]
    KeyFileInvalid {
        /// Path of the key file.
        path: PathBuf,
        /// What is wrong with it (never the file's content).
        detail: String,
    },
    /// A key given as hex text (e.g. from an environment variable) is invalid.
    #[error("invalid secret key: {0}")]
    InvalidKey(String),
    /// A sealed secret is shorter than the smallest possible sealed value.
    #[error("sealed secret is too short ({len} bytes)")]
    SealedTooShort {
        /// Length of the given input.
        len: usize,
    },
    /// A sealed secret starts with a version byte this build does not know.
    #[error("sealed secret has unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Authentication of a sealed secret failed: wrong key, wrong record (aad) or tampered data.
    #[error("sealed secret failed authentication (wrong key, wrong record or tampered data)")]
    Decrypt,
}

// ---------------------------------------------------------------------------------------------
// Passwords
// ---------------------------------------------------------------------------------------------

/// Hashes a password with argon2id (argon2 0.5 default parameters) and a random salt.
///
/// Returns the hash as a PHC string (`$argon2id$v=19$...`).
pub fn hash_password(password: &str) -> Result<String, SecretsError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| SecretsError::Hash(e.to_string()))
}

/// Checks a password against a PHC hash produced by [`hash_password`].
///
/// Returns `false` for a wrong password, a malformed hash, or a hash whose parameters are
/// unreasonably expensive. Never panics.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if !params_are_sane(&hash) {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

/// Rejects hashes whose cost parameters would make a verification absurdly expensive.
fn params_are_sane(hash: &PasswordHash<'_>) -> bool {
    let limits = [
        ("m", MAX_VERIFY_M_COST_KIB),
        ("t", MAX_VERIFY_T_COST),
        ("p", MAX_VERIFY_P_COST),
    ];
    limits.into_iter().all(|(name, max)| {
        match hash.params.get_decimal(name) {
            Some(value) => value <= max,
            // Absent parameters fall back to the defaults, which are sane.
            None => hash.params.get(name).is_none(),
        }
    })
}

/// Spends the same time as one [`verify_password`] call, against a fixed dummy hash.
///
/// Call this when a login names a user that does not exist, so that the response time does not
/// reveal which user names exist. The dummy hash is computed once, on first use.
pub fn burn_verify_time(password: &str) {
    let _ = verify_password(password, dummy_hash());
}

/// The password behind [`dummy_hash`].
const DUMMY_PASSWORD: &str = "portcullis-dummy-password-for-timing";

/// A real hash, made like every user's, so that verifying against it costs what a user's does.
fn dummy_hash() -> &'static str {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    DUMMY_HASH.get_or_init(|| hash_password(DUMMY_PASSWORD).unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Secret key and sealing
// ---------------------------------------------------------------------------------------------

/// A 32-byte XChaCha20-Poly1305 key used to seal stored secrets (e.g. target passwords).
///
/// `Debug` never shows the key, and the bytes are zeroized when the key is dropped.
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
}

impl SecretKey {
    /// Generates a new random key from the operating system's random source.
    pub fn generate() -> SecretKey {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        SecretKey { bytes }
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey { bytes }
    }

    /// Parses a key written as 64 hex characters (surrounding whitespace is ignored), e.g. from an
    /// environment variable.
    ///
    /// The error message never contains the given text.
    pub fn from_hex(text: &str) -> Result<SecretKey, SecretsError> {
        let text = text.trim();
        if text.len() != KEY_LEN * 2 {
            return Err(SecretsError::InvalidKey(format!(
                "expected {} hex characters, got {}",
                KEY_LEN * 2,
                text.chars().count()
            )));
        }
        let mut bytes = [0u8; KEY_LEN];
        if hex::decode_to_slice(text, &mut bytes).is_err() {
            bytes.zeroize();
            return Err(SecretsError::InvalidKey(
                "expected only hex characters (0-9, a-f)".to_owned(),
            ));
        }
        Ok(SecretKey { bytes })
    }

    /// Loads the key from `path`, or creates the file with a new random key if it does not exist.
    ///
    /// The file holds 64 lowercase hex characters and a newline. A new file is written to a
    /// temporary file with mode 0600 in the same directory and then moved into place, so a crash
    /// never leaves a partial key file. If two processes race to create it, both end up with the
    /// key that was linked first. An existing file with any other content is an error naming the
    /// path. The parent directory must exist.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretsError> {
        match fs::read(path) {
            Ok(content) => Self::parse_key_file(path, Zeroizing::new(content)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create_key_file(path),
            Err(source) => Err(SecretsError::KeyFileIo {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn parse_key_file(path: &Path, content: Zeroizing<Vec<u8>>) -> Result<SecretKey, SecretsError> {
        let invalid = |detail: &str| SecretsError::KeyFileInvalid {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let text = std::str::from_utf8(&content)
            .map_err(|_| invalid("expected 64 hex characters and a newline"))?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text);
        if text.len() != KEY_LEN * 2 {
            return Err(invalid(&format!(
                "expected 64 hex characters and a newline, found {} bytes",
                content.len()
            )));
        }
        let mut bytes = [0u8; KEY_LEN];
        if hex::decode_to_slice(text, &mut bytes).is_err() {
            bytes.zeroize();
            return Err(invalid("expected only hex characters (0-9, a-f)"));
        }
        Ok(SecretKey { bytes })
    }

    fn create_key_file(path: &Path) -> Result<SecretKey, SecretsError> {
        let io_err = |source: io::Error| SecretsError::KeyFileIo {
            path: path.to_owned(),
            source,
        };
        let key = SecretKey::generate();
        let mut content = Zeroizing::new(hex::encode(key.bytes));
        content.push('\n');

        let file_name = path
            .file_name()
            .ok_or_else(|| SecretsError::KeyFileInvalid {
                path: path.to_owned(),
                detail: "the path has no file name".to_owned(),
            })?
            .to_string_lossy()
            .into_owned();
        let tmp_path = path.with_file_name(format!(".{file_name}.tmp-{}", random_token(8)));

        let result = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp_path)?;
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
            drop(file);
            // A hard link fails if the key file appeared meanwhile (another process created it),
            // unlike a rename, which would silently replace a key that may already be in use.
            match fs::hard_link(&tmp_path, path) {
                Ok(()) => {
                    fs::remove_file(&tmp_path)?;
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    fs::remove_file(&tmp_path)?;
                    Ok(false)
                }
                // File systems without hard links: fall back to an atomic rename.
                Err(_) => fs::rename(&tmp_path, path).map(|()| true),
            }
        })();

        match result {
            Ok(true) => {
                sync_parent_dir(path);
                Ok(key)
            }
            Ok(false) => {
                let content = fs::read(path).map_err(io_err)?;
                Self::parse_key_file(path, Zeroizing::new(content))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp_path);
                Err(io_err(e))
            }
        }
    }

    /// Encrypts and authenticates `plaintext`, binding it to `aad` (e.g. the name of the record
    /// that holds the secret, so sealed values cannot be swapped between records).
    ///
    /// Output format: 1 version byte ([`SEAL_VERSION`]), a 24-byte random nonce, then the
    /// ciphertext followed by the 16-byte tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = self.cipher();
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        match cipher.encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            aad,
            &mut out[1 + NONCE_LEN..],
        ) {
            Ok(tag) => out.extend_from_slice(&tag),
            // XChaCha20-Poly1305 only refuses messages longer than 256 GiB, which cannot be built
            // in memory here. Rather than panic, return a value that fails to open.
            Err(_) => out.zeroize(),
        }
        out
    }

    /// Decrypts a value produced by [`SecretKey::seal`] with the same `aad`.
    ///
    /// Fails with a clear error for an unknown version, a too short input, or an authentication
    /// failure (wrong key, wrong aad, or modified data). Never panics.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(SecretsError::SealedTooShort { len: 0 });
        };
        if version != SEAL_VERSION {
            return Err(SecretsError::UnsupportedVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretsError::SealedTooShort { len: sealed.len() });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| SecretsError::Decrypt)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// Best-effort fsync of the directory holding `path`, so a newly created file survives a crash.
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

// ---------------------------------------------------------------------------------------------
// Plaintext secrets
// ---------------------------------------------------------------------------------------------

/// A plaintext secret (a password, a token) held in memory.
///
/// `Debug` and `Display` print `[redacted]`; the text is zeroized on drop. It can be deserialized
/// (e.g. from an API body) but deliberately does not implement `Serialize`: call
/// [`Secret::expose`] where the plaintext is really needed.
pub struct Secret(String);

impl Secret {
    /// Wraps a plaintext secret.
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// Returns the plaintext.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret(secret)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Returns `n_bytes` bytes of operating-system randomness encoded as URL-safe base64 without
/// padding (e.g. 32 bytes give 43 characters).
pub fn random_token(n_bytes: usize) -> String {
    let mut bytes = Zeroizing::new(vec![0u8; n_bytes]);
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(&*bytes)
}

/// Returns `n_bytes` bytes of operating-system randomness (wiped when dropped).
pub fn random_bytes(n_bytes: usize) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; n_bytes]);
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Compares two byte strings in time that depends only on their lengths, not their contents.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests;
