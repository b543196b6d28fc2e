//! Configuration: a TOML file mirrored by plain `dto` structs, then checked into [`Config`].
//! Every field has a default, so no file at all is a valid configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Certificate and key files; `None` means a self-signed pair kept in the data directory.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub key_file: PathBuf,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
}

mod dto {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub data_dir: Option<PathBuf>,
        #[serde(default)]
        pub http: Http,
        #[serde(default)]
        pub secrets: Secrets,
        #[serde(default)]
        pub targets: Targets,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Http {
        pub listen: Option<String>,
        pub cert: Option<PathBuf>,
        pub key: Option<PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Secrets {
        pub key_file: Option<PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Targets {
        pub connect_timeout_secs: Option<u64>,
        pub handshake_timeout_secs: Option<u64>,
    }
}

/// Default data directory when neither the command line nor the file names one.
pub const DEFAULT_DATA_DIR: &str = "portcullis-data";
/// Default HTTPS listener: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

fn timeout(field: &str, v: Option<u64>, default: u64) -> Result<Duration> {
    let v = v.unwrap_or(default);
    if v == 0 || v > 300 {
        bail!("{field}: must be between 1 and 300 seconds, got {v}");
    }
    Ok(Duration::from_secs(v))
}

impl Config {
    /// Parses TOML text; `data_dir_override` (from the command line) wins over the file.
    pub fn parse(text: &str, data_dir_override: Option<&Path>) -> Result<Config> {
        let file: dto::File =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        let data_dir = data_dir_override
            .map(Path::to_path_buf)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = file.http.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("http.listen: {listen_text:?} is not an address like 127.0.0.1:8443")
        })?;
        let tls = match (file.http.cert, file.http.key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => bail!("http.key: must be set when http.cert is"),
            (None, Some(_)) => bail!("http.cert: must be set when http.key is"),
        };
        let key_file = file
            .secrets
            .key_file
            .unwrap_or_else(|| data_dir.join("secret.key"));
        Ok(Config {
            listen,
            tls,
            key_file,
            connect_timeout: timeout(
                "targets.connect_timeout_secs",
                file.targets.connect_timeout_secs,
                5,
            )?,
            handshake_timeout: timeout(
                "targets.handshake_timeout_secs",
                file.targets.handshake_timeout_secs,
                10,
            )?,
            data_dir,
        })
    }

    /// Loads the file if given (it must exist), else the defaults.
    pub fn load(path: Option<&Path>, data_dir_override: Option<&Path>) -> Result<Config> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                Config::parse(&text, data_dir_override)
                    .with_context(|| format!("invalid config file {}", p.display()))
            }
            None => Config::parse("", data_dir_override),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", None).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            c.key_file,
            PathBuf::from(DEFAULT_DATA_DIR).join("secret.key")
        );
        assert!(c.tls.is_none());
    }

    #[test]
    fn file_overrides_and_command_line_wins() {
        let c = Config::parse(
            "data_dir = \"/srv/pc\"\n[http]\nlisten = \"0.0.0.0:443\"\n[targets]\nconnect_timeout_secs = 3\n",
            None,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 443);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.data_dir, PathBuf::from("/srv/pc"));
        let c = Config::parse("data_dir = \"/srv/pc\"", Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[http]\nlisten = \"nowhere\"", "http.listen"),
            ("[http]\nlisten = 5", "listen"),
            ("[http]\ncert = \"/c.pem\"", "http.key"),
            (
                "[targets]\nconnect_timeout_secs = 0",
                "targets.connect_timeout_secs",
            ),
            ("[http]\nlisen = \"x\"", "lisen"),
            ("bogus = 1", "bogus"),
        ];
        for (text, field) in cases {
            let e = format!("{:#}", Config::parse(text, None).unwrap_err());
            assert!(e.contains(field), "{text:?} gave {e:?}");
        }
    }
}
