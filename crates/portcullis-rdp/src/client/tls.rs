//! TLS towards targets.
//!
//! RDP servers almost always present self-signed certificates, so the certificate is not checked
//! against a CA here: the handshake accepts it, and its SHA-256 is checked against the target's
//! pin (`crate::identity`) before anything is sent inside the TLS channel. CredSSP binds the NLA
//! exchange to the server's public key, which is what we hand to the connector.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use x509_cert::der::Decode as _;

use super::RdpTargetError;

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Upgrades `tcp` to TLS. Returns the stream, the server's public key (the SubjectPublicKey bits,
/// as CredSSP wants them) and the certificate's SHA-256 in hex.
pub(crate) async fn connect(
    tcp: TcpStream,
    host: &str,
) -> Result<(TlsStream<TcpStream>, Vec<u8>, String), RdpTargetError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::<
        rustls::crypto::CryptoProvider,
    >::clone(&provider))
    .with_safe_default_protocol_versions()
    .map_err(|e| RdpTargetError::Protocol(format!("TLS set-up: {e}")))?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    .with_no_client_auth();
    // CredSSP does not support TLS session resumption.
    config.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("target").expect("static name is valid"));
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| RdpTargetError::Protocol(format!("TLS handshake with the target: {e}")))?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| RdpTargetError::Protocol("the target sent no TLS certificate".into()))?;
    let fingerprint = hex::encode(Sha256::digest(cert.as_ref()));
    let parsed = x509_cert::Certificate::from_der(cert.as_ref()).map_err(|e| {
        RdpTargetError::Protocol(format!("the target's TLS certificate is unreadable: {e}"))
    })?;
    let key = parsed
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| {
            RdpTargetError::Protocol("the target's public key is not whole bytes".into())
        })?
        .to_vec();
    Ok((tls, key, fingerprint))
}

/// TLS to a peer known by its certificate's SHA-256 (`pin`, lowercase hex), e.g. another
/// gateway of a cluster: the handshake takes any certificate, then the one received must be the
/// pinned one before the caller sends anything inside. Not for RDP targets only.
pub async fn pinned(tcp: TcpStream, host: &str, pin: &str) -> Result<TlsStream<TcpStream>, String> {
    let (tls, _, fingerprint) = connect(tcp, host).await.map_err(|e| e.to_string())?;
    // Both are public fingerprints: no timing to hide.
    if fingerprint != pin {
        return Err(format!(
            "the peer's TLS certificate (SHA-256 {fingerprint}) is not the one it published"
        ));
    }
    Ok(tls)
}

/// Whether the certificate chain `tls` received verifies against the CA bundle in `ca_file` (PEM)
/// for the name `host` (a DNS name or an IP address), at the current time. `Err`: why not.
pub(crate) fn verify_chain(
    tls: &TlsStream<TcpStream>,
    ca_file: &std::path::Path,
    host: &str,
) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(ca_file)
        .map_err(|e| format!("cannot read the CA bundle {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| format!("the CA bundle {} is unreadable: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("a CA in {} is unusable: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "the CA bundle {} holds no certificate",
            ca_file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("the CA bundle {} is unusable: {e}", ca_file.display()))?;
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| "the target sent no certificate".to_owned())?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a host name to verify: {e}"))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}
