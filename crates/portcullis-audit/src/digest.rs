//! The digest that links the records of the chain (a record's `hash` and `prev`). A leaf: it
//! names no other module of the crate.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The `prev` of the very first record of a log: 32 zero bytes.
pub const GENESIS: Digest = Digest([0; 32]);

/// A SHA-256 digest: a record's `hash` or `prev`. Shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// SHA-256 of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not 64 lowercase hex digits")]
pub struct BadDigest;

impl FromStr for Digest {
    type Err = BadDigest;

    /// Parses 64 **lowercase** hex digits (the only form the log writes).
    fn from_str(s: &str) -> Result<Self, BadDigest> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadDigest);
        }
        let mut out = [0; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadDigest)?;
        Ok(Self(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
