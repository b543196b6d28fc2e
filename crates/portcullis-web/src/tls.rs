use std::path::{Path, PathBuf};

use crate::WebError;

/// PEM files of the HTTPS certificate and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Makes a self-signed certificate for `localhost`/127.0.0.1 (plus `extra_names`) on first use
/// and keeps it, so browsers that were told to trust it keep trusting it.
pub fn load_or_create_self_signed(
    files: &TlsFiles,
    extra_names: &[String],
) -> Result<bool, WebError> {
    if files.cert.is_file() && files.key.is_file() {
        return Ok(false);
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(extra_names.iter().cloned());
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| WebError::Startup(format!("cannot generate a TLS certificate: {e}")))?;
    write_private(&files.key, cert.key_pair.serialize_pem().as_bytes())?;
    write_private(&files.cert, cert.cert.pem().as_bytes())?;
    Ok(true)
}

/// A rustls server configuration from the PEM files (the RDP listener uses the same identity as
/// HTTPS), and the leaf certificate's DER.
pub fn server_config(
    files: &TlsFiles,
) -> Result<(std::sync::Arc<rustls::ServerConfig>, Vec<u8>), WebError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |what: &Path, e: &dyn std::fmt::Display| {
        WebError::Startup(format!("cannot load {}: {e}", what.display()))
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(&files.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| fail(&files.key, &e))?;
    let leaf = certs
        .first()
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| fail(&files.cert, &"no certificate in the file"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebError::Startup(format!("TLS set-up: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(&files.cert, &e))?;
    Ok((std::sync::Arc::new(config), leaf))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WebError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail =
        |e: std::io::Error| WebError::Startup(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
