//! What the commands open in the data directory: the store (refused while a gateway holds it)
//! and the secret key (from the environment, else the key file, created on first use: never
//! while a recording signing key or a sealed audit trail shows that one existed).

use anyhow::{bail, Context, Result};
use portcullis_secrets::SecretKey;
use std::sync::Arc;

use portcullis_store::{PgOptions, PgStore, SledStore, Store};

use crate::config::{Config, PostgresStore, StoreConfig};

/// Environment variable holding the secret key as 64 hex characters (else the key file is used).
pub(crate) const SECRET_KEY_ENV: &str = "PORTCULLIS_SECRET_KEY";
/// The key to rotate to, when the current one comes from [`SECRET_KEY_ENV`].
pub(crate) const NEW_SECRET_KEY_ENV: &str = "PORTCULLIS_NEW_SECRET_KEY";

/// Opens the configured store: PostgreSQL when `[store] url` (or `PORTCULLIS_STORE_URL`) names
/// one, else the embedded sled store in the data directory.
pub(crate) fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    match &config.store {
        StoreConfig::Embedded => Ok(Arc::new(open_sled(config)?)),
        StoreConfig::Postgres(pg) => Ok(Arc::new(open_postgres(pg)?)),
    }
}

/// The store, and the cluster it is shared by (PostgreSQL only).
pub(crate) type StoreAndCluster = (Arc<dyn Store>, Option<Arc<dyn portcullis_store::Cluster>>);

/// [`open_store`], and the cluster the store is shared by (PostgreSQL only).
pub(crate) fn open_store_with_cluster(config: &Config) -> Result<StoreAndCluster> {
    match &config.store {
        StoreConfig::Embedded => Ok((Arc::new(open_sled(config)?), None)),
        StoreConfig::Postgres(pg) => {
            let store = Arc::new(open_postgres(pg)?);
            Ok((
                Arc::clone(&store) as Arc<dyn Store>,
                Some(store as Arc<dyn portcullis_store::Cluster>),
            ))
        }
    }
}

/// Opens (and migrates) the PostgreSQL store `pg`.
pub(crate) fn open_postgres(pg: &PostgresStore) -> Result<PgStore> {
    let password = match &pg.password_file {
        Some(file) => Some(read_password(file)?),
        None => None,
    };
    let options = PgOptions {
        connections: pg.connections,
        ca_file: pg.ca_file.clone(),
        password,
        ..PgOptions::default()
    };
    Ok(PgStore::open(&pg.url, &options)?)
}

/// A password file's first line (a mounted secret may end with a newline).
fn read_password(file: &std::path::Path) -> Result<String> {
    let password = first_line(file, "store.password_file")?;
    if password.is_empty() {
        bail!("store.password_file {} is empty", file.display());
    }
    Ok(password.to_string())
}

/// The first line of a secret file (a mounted secret may end with a newline); `field` names the
/// setting in messages.
pub(crate) fn first_line(
    file: &std::path::Path,
    field: &str,
) -> Result<zeroize::Zeroizing<String>> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file)
            .with_context(|| format!("{field}: cannot read {}", file.display()))?,
    );
    Ok(zeroize::Zeroizing::new(
        text.lines().next().unwrap_or("").to_owned(),
    ))
}

/// The embedded store in the data directory.
pub(crate) fn open_sled(config: &Config) -> Result<SledStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = SledStore::open(&config.data_dir.join("store"));
    match store {
        Err(portcullis_store::StoreError::Locked { .. }) => bail!(
            "the data directory {} is in use by a running gateway: stop it, or use the web UI or API",
            config.data_dir.display()
        ),
        other => Ok(other?),
    }
}

/// The store's metadata key holding a known text sealed under the secret key: a gateway whose
/// key cannot open it would seal and open target credentials nobody else can (several gateways
/// on one PostgreSQL store need one key).
pub(crate) const KEY_CHECK_META: &str = "secret_key_check";
const KEY_CHECK_TEXT: &[u8] = b"portcullis: the secret key of this store";
const KEY_CHECK_AAD: &[u8] = b"portcullis:key-check";

/// The store's metadata key marking a secret key rotation under way (non-empty while it runs):
/// the store's secrets are then sealed partly under the old key, partly under the new.
pub(crate) const ROTATION_META: &str = "secret_key_rotation";

/// Checks that `key` is the key the store's secrets are sealed under, and that no rotation is
/// half done; refuses with what to do otherwise. The first check on a store makes sure `key`
/// opens the target credentials already there, then leaves the check value (of gateways doing
/// so at once, one wins and the others are checked against it).
pub(crate) fn check_key_against_store(store: &dyn Store, key: &SecretKey) -> Result<()> {
    if store
        .get_meta(ROTATION_META)?
        .is_some_and(|v| !v.is_empty())
    {
        bail!(
            "a secret key rotation of this store is under way or was interrupted: finish it with \
             `portcullis secrets rotate-key` (every gateway of the store stopped), then give every \
             gateway the new key; nothing was started"
        );
    }
    if store.get_meta(KEY_CHECK_META)?.is_none() {
        for target in store.list_targets()? {
            if portcullis_web::ops::open_target_secret(key, &target).is_err() {
                bail!(
                    "this gateway's secret key does not open the credential of target {:?} already in \
                     the store: every gateway on one store needs the key it was sealed under (give it \
                     in {SECRET_KEY_ENV}, or copy the key file); nothing was started",
                    target.name
                );
            }
        }
        store.put_meta_if_absent(KEY_CHECK_META, &seal_key_check(key))?;
    }
    let sealed = store
        .get_meta(KEY_CHECK_META)?
        .context("the store's key check vanished")?;
    match key.open(&sealed, KEY_CHECK_AAD) {
        Ok(text) if text == KEY_CHECK_TEXT => Ok(()),
        _ => bail!(
            "this gateway's secret key is not the one the store's secrets are sealed under: \
             every gateway on one store needs the same key (give it in {SECRET_KEY_ENV}, or \
             copy the key file); nothing was started"
        ),
    }
}

/// The key check sealed under `key` (what a rotation writes for its new key).
pub(crate) fn seal_key_check(key: &SecretKey) -> Vec<u8> {
    key.seal(KEY_CHECK_TEXT, KEY_CHECK_AAD)
}

pub(crate) fn load_key(config: &Config) -> Result<SecretKey> {
    if let Ok(hex) = std::env::var(SECRET_KEY_ENV) {
        return SecretKey::from_hex(&hex)
            .with_context(|| format!("{SECRET_KEY_ENV} is not a valid key"));
    }
    if !config.key_file.exists() {
        // A new key could open nothing sealed under the lost one: never make it over them.
        let signing = &config.recording.signing_key_file;
        if signing.exists() || portcullis_audit::has_seal(&config.audit.dir).unwrap_or(true) {
            bail!(
                "the secret key {} is missing, but the recording signing key {} (which seals the \
                 audit trail) was sealed under it: restore the secret key from a backup (or set \
                 {SECRET_KEY_ENV}); a new one is not created, since it could open nothing sealed \
                 under the old one",
                config.key_file.display(),
                signing.display()
            );
        }
    }
    if let Some(dir) = config.key_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(SecretKey::load_or_create(&config.key_file)?)
}

/// This gateway's name in a cluster, the same at every start on this data directory
/// (`DATA_DIR/node-name`, made at the first start: the host's name and a random part, so that two
/// gateways on one host are told apart).
pub(crate) fn node_name(config: &Config) -> Result<String> {
    let file = config.data_dir.join("node-name");
    match std::fs::read_to_string(&file) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
    let host: String = portcullis_siem::machine_hostname()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(48)
        .collect();
    let name = format!("{host}-{}", portcullis_secrets::random_token(6));
    std::fs::write(&file, format!("{name}\n"))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_store::MemoryStore;

    use super::*;

    #[test]
    fn a_gateway_with_another_key_than_the_stores_is_refused() {
        let store = MemoryStore::new();
        let first = SecretKey::from_bytes([7; 32]);
        // The first gateway on a store leaves the check; it and any with its key pass.
        check_key_against_store(&store, &first).unwrap();
        assert!(store.get_meta(KEY_CHECK_META).unwrap().is_some());
        check_key_against_store(&store, &first).unwrap();
        // Another gateway given the same key (e.g. in PORTCULLIS_SECRET_KEY) passes too.
        check_key_against_store(&store, &SecretKey::from_bytes([7; 32])).unwrap();
        // Another key is refused, and the check is left as it was.
        let before = store.get_meta(KEY_CHECK_META).unwrap();
        let err = check_key_against_store(&store, &SecretKey::generate())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is not the one the store's secrets are sealed under"),
            "{err}"
        );
        assert_eq!(store.get_meta(KEY_CHECK_META).unwrap(), before);
        // A check sealed under a rotated-to key passes that key only.
        let new = SecretKey::generate();
        store
            .put_meta(KEY_CHECK_META, &seal_key_check(&new))
            .unwrap();
        check_key_against_store(&store, &new).unwrap();
        assert!(check_key_against_store(&store, &first).is_err());
        // A rotation under way stops every start, whichever key.
        store.put_meta(ROTATION_META, b"under way").unwrap();
        let err = check_key_against_store(&store, &new)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rotation of this store is under way"), "{err}");
        store.put_meta(ROTATION_META, b"").unwrap();
        check_key_against_store(&store, &new).unwrap();
    }

    #[test]
    fn the_first_check_needs_a_key_that_opens_the_credentials_already_stored() {
        let store = MemoryStore::new();
        let key = SecretKey::from_bytes([1; 32]);
        portcullis_web::ops::create_target(
            &store,
            &key,
            portcullis_web::ops::NewTarget {
                name: "web01",
                kind: portcullis_store::TargetKind::Vnc,
                address: "10.0.0.5:5900",
                account: "",
                password: "target-password",
                description: "",
                labels: &[],
            },
        )
        .unwrap();
        // An installation from before the check: another key leaves no check behind.
        let err = check_key_against_store(&store, &SecretKey::from_bytes([2; 32]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not open the credential of target \"web01\""),
            "{err}"
        );
        assert_eq!(store.get_meta(KEY_CHECK_META).unwrap(), None);
        check_key_against_store(&store, &key).unwrap();
        assert!(check_key_against_store(&store, &SecretKey::from_bytes([2; 32])).is_err());
    }
}
