//! `portcullis secrets rotate-key`: a new secret key, and everything sealed under the old one
//! (target credentials in the store, the recording signing key) sealed again under it.
//!
//! Crash-safe by construction: the new key is first written beside the old one
//! (`KEY_FILE.next`), then every sealed item is resealed (each one opened with the new key if it
//! already was resealed, else with the old), and only then does the new key replace the old
//! file. An interrupted rotation leaves both keys on disk; the gateway refuses to start until the
//! command is run again, which finishes it. Nothing is ever sealed under a key that is not on
//! disk.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use portcullis_secrets::SecretKey;
use portcullis_store::Store;

use crate::config::Config;
use crate::recording::SIGNING_KEY_AAD;

/// Where the key being rotated to waits until everything is sealed under it.
pub fn next_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// Stops a start in the middle of an unfinished rotation.
pub fn refuse_unfinished(config: &Config) -> Result<()> {
    let next = next_key_path(&config.key_file);
    if next.exists() {
        bail!(
            "a secret key rotation was interrupted ({} exists): run `portcullis secrets rotate-key` again to finish it",
            next.display()
        );
    }
    Ok(())
}

/// What a rotation did.
pub struct Rotated {
    pub targets: usize,
    pub signing_key: bool,
}

/// Rotates the key file's key. With the key given in the environment instead, the new key is
/// taken from `new_key` (the operator then puts it in the environment) and no file is written.
pub fn rotate(
    config: &Config,
    store: &dyn Store,
    old: &SecretKey,
    new_key: Option<SecretKey>,
) -> Result<Rotated> {
    let next_path = next_key_path(&config.key_file);
    let from_env = new_key.is_some();
    let new = match new_key {
        Some(k) => k,
        // Created once (0600, atomically); a resumed rotation reads the same key back.
        None => SecretKey::load_or_create(&next_path)
            .with_context(|| format!("cannot write the new key to {}", next_path.display()))?,
    };
    let mut targets = 0;
    for mut target in store.list_targets()? {
        if portcullis_web::ops::reseal_target(old, &new, &mut target)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
        {
            store.put_target(&target)?;
            targets += 1;
        }
    }
    // Users' TOTP secrets are sealed with the same key.
    for mut user in store.list_users()? {
        if portcullis_web::mfa::reseal_user_mfa(old, &new, &mut user).map_err(anyhow::Error::msg)? {
            store.put_user(&user)?;
        }
    }
    store.flush()?;
    let signing_key = reseal_file(&config.recording.signing_key_file, old, &new)?;
    if !from_env {
        std::fs::rename(&next_path, &config.key_file).with_context(|| {
            format!(
                "cannot move {} to {}",
                next_path.display(),
                config.key_file.display()
            )
        })?;
        sync_dir(&config.key_file)?;
    }
    Ok(Rotated {
        targets,
        signing_key,
    })
}

/// Reseals a sealed file (the recording signing key) in place, atomically. False when it does
/// not exist or was already resealed.
fn reseal_file(path: &Path, old: &SecretKey, new: &SecretKey) -> Result<bool> {
    let sealed = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if new.open(&sealed, SIGNING_KEY_AAD).is_ok() {
        return Ok(false);
    }
    let plain = zeroize::Zeroizing::new(
        old.open(&sealed, SIGNING_KEY_AAD)
            .with_context(|| format!("cannot open {} with the current key", path.display()))?,
    );
    let resealed = new.seal(&plain, SIGNING_KEY_AAD);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    crate::recording::write_private(&tmp, &resealed)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    sync_dir(path)?;
    Ok(true)
}

fn sync_dir(file: &Path) -> Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}
