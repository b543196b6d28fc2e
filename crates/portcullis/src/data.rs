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
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read store.password_file {}", file.display()))?;
    let password = text.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        bail!("store.password_file {} is empty", file.display());
    }
    Ok(password)
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
