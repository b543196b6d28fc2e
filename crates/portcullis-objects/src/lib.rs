//! Recordings in an S3-compatible object store. The only crate with `object_store`.
//!
//! [`Spooled`] is a `RecordingStorage`: recordings are written to a local spool first (fsynced:
//! the recording's durability promise does not wait for the network) and uploaded in order, the
//! data before the manifest line that names it; readers take the spool's copy while there is one
//! and the store's otherwise, so every gateway of a cluster serves every recording. See `spool`
//! for the protocol and `remote` for the layout in the bucket.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, RetryConfig};
use thiserror::Error;

pub mod remote;
pub mod spool;

pub use remote::Remote;
pub use spool::Spooled;

/// A configuration the store cannot be reached with.
#[derive(Debug, Error)]
pub enum ObjectConfigError {
    /// What is wrong, in words for the operator.
    #[error("{0}")]
    Invalid(String),
}

/// Where recordings go.
#[derive(Clone, Default)]
pub struct ObjectConfig {
    /// `s3://bucket[/prefix]`.
    pub url: String,
    /// The S3 endpoint (`https://…`; `http://` only on this machine's loopback); `None`: AWS.
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    pub region: Option<String>,
    /// Credentials; none: anonymous requests.
    pub access_key_id: Option<String>,
    /// The secret access key (never logged).
    pub secret_access_key: Option<String>,
    /// PEM file of the CA that signed the endpoint's certificate (besides the system's).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for ObjectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "[redacted]"),
            )
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `s3://bucket[/prefix]` → (bucket, prefix).
pub fn parse_url(url: &str) -> Result<(String, String), ObjectConfigError> {
    let bad = |why: &str| {
        ObjectConfigError::Invalid(format!(
            "recording.object_store.url: {why} (expected s3://bucket or s3://bucket/prefix)"
        ))
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(bad("the bucket name is not a valid S3 bucket name"));
    }
    let prefix = prefix.trim_matches('/');
    let prefix_ok = prefix.len() <= 256
        && prefix.split('/').all(|seg| {
            prefix.is_empty()
                || (!seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
        });
    if !prefix_ok {
        return Err(bad(
            "the prefix may hold letters, digits, '-', '_', '.' and '/'",
        ));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// True when `endpoint`'s host is this machine's loopback (plain HTTP is allowed only there).
fn loopback(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // `http://127.0.0.1@elsewhere`: the host is after the user part.
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `https://…`, or `http://…` on this machine's loopback (then true).
fn check_endpoint(endpoint: &str) -> Result<bool, ObjectConfigError> {
    if endpoint.starts_with("http://") {
        if !loopback(endpoint) {
            return Err(ObjectConfigError::Invalid(
                "recording.object_store.endpoint: plain http:// only for a store on this \
                 machine's loopback; use https:// (and ca_file for a private CA)"
                    .to_owned(),
            ));
        }
        return Ok(true);
    }
    if !endpoint.starts_with("https://") {
        return Err(ObjectConfigError::Invalid(
            "recording.object_store.endpoint: expected https://host[:port]".to_owned(),
        ));
    }
    Ok(false)
}

/// Checks `config` as [`connect`] would, without connecting: the URL and the endpoint.
pub fn check(config: &ObjectConfig) -> Result<(), ObjectConfigError> {
    parse_url(&config.url)?;
    if let Some(endpoint) = &config.endpoint {
        check_endpoint(endpoint)?;
    }
    Ok(())
}

/// Connects (lazily: nothing is asked before the first call) to the store `config` names.
pub fn connect(config: &ObjectConfig) -> Result<Remote, ObjectConfigError> {
    let (bucket, prefix) = parse_url(&config.url)?;
    let mut options = ClientOptions::new()
        .with_timeout(Duration::from_secs(30))
        .with_connect_timeout(Duration::from_secs(5));
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(
            config
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_owned()),
        )
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &config.endpoint {
        if check_endpoint(endpoint)? {
            options = options.with_allow_http(true);
        }
        builder = builder
            .with_endpoint(endpoint.clone())
            .with_virtual_hosted_style_request(false);
    }
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            ObjectConfigError::Invalid(format!(
                "recording.object_store.ca_file: cannot read {}: {e}",
                ca.display()
            ))
        })?;
        let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ObjectConfigError::Invalid(format!(
                "recording.object_store.ca_file: {} holds no PEM certificate: {e}",
                ca.display()
            ))
        })?;
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    match (&config.access_key_id, &config.secret_access_key) {
        (Some(id), Some(secret)) => {
            builder = builder
                .with_access_key_id(id.clone())
                .with_secret_access_key(secret.clone());
        }
        // Unsigned requests only to a store on this machine (a bucket anyone on the network
        // could write to would hold the evidence).
        (None, None) if config.endpoint.as_deref().is_some_and(loopback) => {
            builder = builder.with_skip_signature(true);
        }
        (None, None) => {
            return Err(ObjectConfigError::Invalid(
                "recording.object_store: access_key_id and secret_access_key_file are required \
                 (unsigned requests only to a store on this machine's loopback)"
                    .to_owned(),
            ))
        }
        _ => {
            return Err(ObjectConfigError::Invalid(
                "recording.object_store: access_key_id and secret_access_key_file go together"
                    .to_owned(),
            ))
        }
    }
    let store = builder
        .with_client_options(options)
        .build()
        .map_err(|e| ObjectConfigError::Invalid(format!("recording.object_store: {e}")))?;
    Remote::new(Arc::new(store), &prefix)
        .map_err(|e| ObjectConfigError::Invalid(format!("recording.object_store: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            parse_url("s3://recs").unwrap(),
            ("recs".to_owned(), String::new())
        );
        assert_eq!(
            parse_url("s3://recs/gw/eu-1/").unwrap(),
            ("recs".to_owned(), "gw/eu-1".to_owned())
        );
        for bad in [
            "http://recs",
            "s3://",
            "s3://ab",
            "s3://UPPER",
            "s3://recs/../x",
            "s3://recs/a//b",
            "s3://recs/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(loopback("http://127.0.0.1:8333"));
        assert!(loopback("http://localhost:8333/"));
        assert!(loopback("http://[::1]:9000"));
        assert!(!loopback("http://s3.example.com"));
        assert!(!loopback("http://127.0.0.1.example.com"));
        assert!(!loopback("https://127.0.0.1"));
        assert!(!loopback("http://127.0.0.1:80@evil.example"));
        assert!(!loopback("http://[::1]@evil.example/"));
        assert!(!loopback("http://localhost@evil.example"));
        let config = ObjectConfig {
            url: "s3://recs".into(),
            endpoint: Some("http://10.0.0.5:8333".into()),
            ..ObjectConfig::default()
        };
        assert!(connect(&config).is_err());
        // No credentials: refused unless the store is on loopback.
        let anonymous = ObjectConfig {
            url: "s3://recs".into(),
            endpoint: Some("https://s3.example.org".into()),
            ..ObjectConfig::default()
        };
        assert!(connect(&anonymous).is_err());
    }

    #[test]
    fn the_secret_is_never_shown() {
        let config = ObjectConfig {
            url: "s3://recs".into(),
            access_key_id: Some("AKIA".into()),
            secret_access_key: Some("hunter2-secret".into()),
            ..ObjectConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
