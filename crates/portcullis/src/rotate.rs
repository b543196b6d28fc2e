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
pub(crate) fn next_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// Where a rotation to a key from the environment marks itself as under way (the new key is
/// not on disk then, so its `.next` file cannot be the mark). It holds a short text sealed
/// under the new key, so a resumed run can tell it is given the same new key.
pub(crate) fn env_rotation_marker(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".rotating");
    PathBuf::from(name)
}

const MARKER_TEXT: &[u8] = b"portcullis secret key rotation under way";
const MARKER_AAD: &[u8] = b"portcullis:rotation-marker";

/// Stops a start in the middle of an unfinished rotation.
pub(crate) fn refuse_unfinished(config: &Config) -> Result<()> {
    let next = next_key_path(&config.key_file);
    if next.exists() {
        bail!(
            "a secret key rotation was interrupted ({} exists): run `portcullis secrets rotate-key` again to finish it",
            next.display()
        );
    }
    let marker = env_rotation_marker(&config.key_file);
    if marker.exists() {
        bail!(
            "a secret key rotation to a key from the environment was interrupted ({} exists): some secrets are sealed under the old key, some under the new; run `portcullis secrets rotate-key` again with the same old and new keys in the environment to finish it",
            marker.display()
        );
    }
    Ok(())
}

/// What a rotation did.
#[derive(Debug)]
pub(crate) struct Rotated {
    pub targets: usize,
    pub signing_key: bool,
}

/// Rotates the key file's key. With the key given in the environment instead, the new key is
/// taken from `new_key` (the operator then puts it in the environment) and no file is written.
pub(crate) fn rotate(
    config: &Config,
    store: &dyn Store,
    old: &SecretKey,
    new_key: Option<SecretKey>,
) -> Result<Rotated> {
    let next_path = next_key_path(&config.key_file);
    let marker = env_rotation_marker(&config.key_file);
    let from_env = new_key.is_some();
    if !from_env && marker.exists() {
        bail!(
            "a rotation to a key from the environment was interrupted ({} exists): finish it with the key in the environment (old and new), not with the key file",
            marker.display()
        );
    }
    let new = match new_key {
        Some(k) => {
            // Marked before anything is sealed under the new key, so that an interruption stops
            // the next start instead of leaving secrets the key in use cannot open.
            match std::fs::read(&marker) {
                Ok(sealed) => {
                    if k.open(&sealed, MARKER_AAD).is_err() {
                        bail!(
                            "the interrupted rotation ({}) was to another key than the one in the environment's new key: give that same key to finish it",
                            marker.display()
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Whole or absent: written aside, then renamed.
                    let mut tmp = marker.as_os_str().to_owned();
                    tmp.push(".tmp");
                    let tmp = PathBuf::from(tmp);
                    let _ = std::fs::remove_file(&tmp);
                    crate::recording::write_private(&tmp, &k.seal(MARKER_TEXT, MARKER_AAD))?;
                    std::fs::rename(&tmp, &marker)
                        .with_context(|| format!("cannot write {}", marker.display()))?;
                    sync_dir(&marker)?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read {}", marker.display()))
                }
            }
            k
        }
        // Created once (0600, atomically); a resumed rotation reads the same key back.
        None => SecretKey::load_or_create(&next_path)
            .with_context(|| format!("cannot write the new key to {}", next_path.display()))?,
    };
    // Gateways that start from now on refuse until the rotation is done (they would find
    // secrets sealed under either key).
    store.put_meta(crate::data::ROTATION_META, b"under way")?;
    let mut targets = 0;
    for name in store.list_targets()?.into_iter().map(|t| t.name) {
        let mut failed = None;
        let mut resealed = false;
        // Changed in place: an edit made meanwhile is kept, a target deleted meanwhile stays so.
        store.update_target(&name, &mut |target| {
            failed = None;
            resealed = false;
            match portcullis_web::ops::reseal_target(old, &new, target) {
                Ok(changed) => {
                    resealed = changed;
                    changed
                }
                Err(e) => {
                    failed = Some(format!("{e:?}"));
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            bail!("cannot reseal target {name:?}: {e}");
        }
        targets += usize::from(resealed);
    }
    // Users' TOTP secrets are sealed with the same key.
    for user in store.list_users()? {
        let mut failed = None;
        store.update_user(
            &user.name,
            &mut |record| match portcullis_web::mfa::reseal_user_mfa(old, &new, record) {
                Ok(changed) => changed,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = failed {
            return Err(anyhow::Error::msg(e));
        }
    }
    // So are the identity providers' client secrets.
    portcullis_web::sso::reseal_settings(store, old, &new).map_err(anyhow::Error::msg)?;
    // And the access request webhook's.
    portcullis_web::requests::reseal_settings(store, old, &new).map_err(anyhow::Error::msg)?;
    // Gateways started after this check the new key against the store.
    store.put_meta(
        crate::data::KEY_CHECK_META,
        &crate::data::seal_key_check(&new),
    )?;
    store.put_meta(crate::data::ROTATION_META, b"")?;
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
    } else {
        std::fs::remove_file(&marker)
            .with_context(|| format!("cannot remove {}", marker.display()))?;
        sync_dir(&marker)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_store::{MemoryStore, TargetKind};

    /// A rotation to a key from the environment that stops half-way stops the next start, can
    /// only be finished with the same new key, and then leaves every secret under that key.
    #[test]
    fn an_interrupted_rotation_with_the_key_in_the_environment_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            &format!("data_dir = {:?}\n", dir.path().display().to_string()),
            None,
        )
        .unwrap();
        let store = MemoryStore::new();
        let old = SecretKey::generate();
        crate::data::check_key_against_store(&store, &old).unwrap();
        portcullis_web::ops::create_target(
            &store,
            &old,
            portcullis_web::ops::NewTarget {
                name: "web01",
                kind: TargetKind::Vnc,
                address: "10.0.0.5:5900",
                account: "",
                password: "target-password",
                description: "",
                labels: &[],
            },
        )
        .unwrap();
        // The signing key cannot be read (a folder in its place): the run stops after the
        // targets were resealed, as a crash would.
        std::fs::create_dir_all(&config.recording.signing_key_file).unwrap();
        let new = SecretKey::from_bytes([7; 32]);
        assert!(rotate(&config, &store, &old, Some(SecretKey::from_bytes([7; 32]))).is_err());
        let target = store.get_target("web01").unwrap().unwrap();
        assert!(portcullis_web::ops::open_target_secret(&old, &target).is_err());
        let e = format!("{:#}", refuse_unfinished(&config).unwrap_err());
        assert!(
            e.contains("interrupted") && e.contains("environment"),
            "{e}"
        );
        // Another new key cannot finish it, nor can the key-file mode.
        let e = format!(
            "{:#}",
            rotate(&config, &store, &old, Some(SecretKey::from_bytes([8; 32]))).unwrap_err()
        );
        assert!(e.contains("another key"), "{e}");
        assert!(rotate(&config, &store, &old, None).is_err());
        // The same one does.
        std::fs::remove_dir(&config.recording.signing_key_file).unwrap();
        rotate(&config, &store, &old, Some(SecretKey::from_bytes([7; 32]))).unwrap();
        refuse_unfinished(&config).unwrap();
        let target = store.get_target("web01").unwrap().unwrap();
        assert_eq!(
            portcullis_web::ops::open_target_secret(&new, &target).unwrap(),
            "target-password"
        );
        assert!(!env_rotation_marker(&config.key_file).exists());
        // Gateways now start with the new key only.
        crate::data::check_key_against_store(&store, &new).unwrap();
        assert!(crate::data::check_key_against_store(&store, &old).is_err());
    }
}
