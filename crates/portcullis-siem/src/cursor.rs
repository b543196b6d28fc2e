//! The durable cursor: the seq and hash of the last record the SIEM has, in a small file
//! replaced atomically (temp file, fsync, rename, fsync of the directory).
//!
//! ```text
//! {"seq":412337,"hash":"9f2c…"}
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::str::FromStr;

use portcullis_audit::{Digest, GENESIS};
use serde::Deserialize;

/// Where delivery stands: the last record delivered (`seq` 0 and [`GENESIS`] before the
/// first), so the next one to send is `seq + 1`, whose `prev` must be `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last delivered seq.
    pub seq: u64,
    /// Its hash.
    pub hash: Digest,
}

impl Cursor {
    /// Before the first record.
    pub const START: Cursor = Cursor {
        seq: 0,
        hash: GENESIS,
    };

    /// The file's contents.
    pub fn encode(&self) -> String {
        format!("{{\"seq\":{},\"hash\":\"{}\"}}\n", self.seq, self.hash)
    }

    /// Reads the file's contents.
    pub fn decode(text: &str) -> Result<Cursor, CursorError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            seq: u64,
            hash: String,
        }
        let file: File =
            serde_json::from_str(text).map_err(|e| CursorError::Invalid(e.to_string()))?;
        let hash =
            Digest::from_str(&file.hash).map_err(|e| CursorError::Invalid(format!("hash: {e}")))?;
        Ok(Cursor {
            seq: file.seq,
            hash,
        })
    }
}

impl Default for Cursor {
    fn default() -> Self {
        Self::START
    }
}

/// Where a cluster export stands: the last record delivered of each gateway's chain (a gateway
/// not named: none yet). Kept in the shared store as JSON,
/// `{"gw-a":{"seq":41,"hash":"…"},"gw-b":{"seq":7,"hash":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chains(pub BTreeMap<String, Cursor>);

impl Chains {
    /// Where `node`'s chain stands ([`Cursor::START`] when nothing of it was delivered).
    pub fn get(&self, node: &str) -> Cursor {
        self.0.get(node).copied().unwrap_or(Cursor::START)
    }

    /// As kept in the store.
    pub fn encode(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(node, c)| {
                (
                    node.clone(),
                    serde_json::json!({ "seq": c.seq, "hash": c.hash.to_hex() }),
                )
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// Reads what [`Chains::encode`] wrote; empty text is the start (no gateway's record yet).
    pub fn decode(text: &str) -> Result<Chains, CursorError> {
        if text.trim().is_empty() {
            return Ok(Chains::default());
        }
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| CursorError::Invalid(e.to_string()))?;
        map.into_iter()
            .map(|(node, v)| {
                let c = Cursor::decode(&v.to_string())
                    .map_err(|e| CursorError::Invalid(format!("{node}: {e}")))?;
                Ok((node, c))
            })
            .collect::<Result<_, _>>()
            .map(Chains)
    }
}

/// Why a cursor file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// It could not be read or written.
    #[error("cursor file: {0}")]
    Io(#[from] io::Error),
    /// It holds something else than a cursor.
    #[error("cursor file is invalid: {0}")]
    Invalid(String),
}

/// Loads the cursor at `path`; a missing file is `Ok(None)` (nothing delivered yet).
pub fn load(path: &Path) -> Result<Option<Cursor>, CursorError> {
    match fs::read_to_string(path) {
        Ok(text) => Cursor::decode(&text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the cursor at `path` atomically and durably: once this returns, a crash leaves
/// either the old or the new cursor, and the new one survives power loss.
pub fn store(path: &Path, cursor: &Cursor) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(cursor.encode().as_bytes())?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siem-x.cursor");
        assert_eq!(load(&path).unwrap(), None);
        let c = Cursor {
            seq: 41,
            hash: Digest([7; 32]),
        };
        store(&path, &c).unwrap();
        assert_eq!(load(&path).unwrap(), Some(c));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{{\"seq\":41,\"hash\":\"{}\"}}\n", "07".repeat(32))
        );
        let d = Cursor { seq: 42, ..c };
        store(&path, &d).unwrap();
        assert_eq!(load(&path).unwrap(), Some(d));
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_cursor() {
        assert!(matches!(
            Cursor::decode("{\"seq\":1}"),
            Err(CursorError::Invalid(_))
        ));
        assert!(matches!(
            Cursor::decode(&format!("{{\"seq\":1,\"hash\":\"{}\"}}", "A".repeat(64))),
            Err(CursorError::Invalid(_))
        ));
        assert!(matches!(
            Cursor::decode(&format!(
                "{{\"seq\":1,\"hash\":\"{}\",\"x\":1}}",
                "a".repeat(64)
            )),
            Err(CursorError::Invalid(_))
        ));
        assert_eq!(
            Cursor::decode(&Cursor::START.encode()).unwrap(),
            Cursor::START
        );
    }
}
