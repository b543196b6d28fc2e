//! What crossed of one open file in one direction: the byte count, and the SHA-256 of the
//! content as one run from offset 0, with parts that arrive early held within bounds.

use std::collections::BTreeMap;

use portcullis_core::desktop::{FileDirection, FileEvent};
use sha2::{Digest as _, Sha256};

use super::MAX_SESSION_HELD;

/// Bytes of one file held while an earlier part of it is still on its way (readahead keeps two
/// reads in flight, whose answers may come in either order). Beyond this the hash is given up.
pub(super) const MAX_AHEAD_BYTES: usize = 4 * 1024 * 1024;

/// What crossed of one open file, one direction.
#[derive(Debug, Default)]
pub(super) struct Flow {
    bytes: u64,
    /// Next offset of the contiguous run from 0 that the hash covers; `None` once broken.
    next: Option<u64>,
    hash: Sha256,
    /// Parts past `next`, by offset, until the gap before them fills.
    ahead: BTreeMap<u64, Vec<u8>>,
    pub(super) ahead_bytes: usize,
}

impl Flow {
    pub(super) fn fresh() -> Self {
        Self {
            next: Some(0),
            ..Self::default()
        }
    }

    /// `held` is what the session's relay holds in all; this flow's parts count in it.
    pub(super) fn add(&mut self, offset: u64, data: &[u8], held: &mut usize) {
        self.bytes = self.bytes.saturating_add(data.len() as u64);
        let Some(next) = self.next else { return };
        if offset > next {
            // Ahead of the run: kept until the gap fills, within the file's and the session's
            // bounds.
            if self.ahead_bytes + data.len() > MAX_AHEAD_BYTES
                || *held + data.len() > MAX_SESSION_HELD
            {
                *held -= self.give_up();
            } else {
                self.ahead_bytes += data.len();
                *held += data.len();
                if let Some(old) = self.ahead.insert(offset, data.to_vec()) {
                    self.ahead_bytes -= old.len();
                    *held -= old.len();
                }
            }
            return;
        }
        self.extend(offset, data);
        // Parts that were waiting for this one.
        while let Some(next) = self.next {
            let Some(entry) = self.ahead.first_entry() else {
                break;
            };
            if *entry.key() > next {
                break;
            }
            let (at, part) = entry.remove_entry();
            self.ahead_bytes -= part.len();
            *held -= part.len();
            self.extend(at, &part);
        }
    }

    /// Hashes what `data` at `offset` adds past the run (a re-read of a hashed range adds nothing).
    fn extend(&mut self, offset: u64, data: &[u8]) {
        let Some(next) = self.next else { return };
        let end = offset.saturating_add(data.len() as u64);
        if offset <= next && end > next {
            let skip = usize::try_from(next - offset).unwrap_or(usize::MAX);
            self.hash.update(&data[skip.min(data.len())..]);
            self.next = Some(end);
        }
    }

    /// Stops hashing; returns the bytes this frees.
    fn give_up(&mut self) -> usize {
        self.next = None;
        self.ahead.clear();
        std::mem::take(&mut self.ahead_bytes)
    }

    /// The record of what crossed. The parts it held must already be released from the
    /// session's count (see `OpenFile::held` in the relay).
    pub(super) fn finish(mut self, direction: FileDirection, path: &str) -> Option<FileEvent> {
        // Parts still waiting mean a hole that never filled: the content is not one run.
        if !self.ahead.is_empty() {
            self.give_up();
        }
        (self.bytes > 0).then(|| FileEvent::Transferred {
            direction,
            path: path.to_owned(),
            bytes: self.bytes,
            sha256: self.next.map(|_| hex::encode(self.hash.finalize())),
        })
    }
}
