//! The on-disk [`Store`], on sled 0.34. Nothing outside this module knows about sled.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::{
    validate_name, AccessRequest, GrantRecord, LocalEphemeral, RecordingReview, Store, StoreError,
    TargetRecord, TokenRecord, UserRecord,
};

/// Separator between user and target in a grant key: `user \0 target`. Valid names never
/// contain it, so keys are unambiguous and sort by user, then target.
const GRANT_SEP: u8 = 0;

/// The beginning of the message sled 0.34 gives when another process holds the database's file
/// lock (sled wraps the lock failure in a generic I/O error; this text is all there is to tell
/// it apart).
const SLED_LOCK_MESSAGE: &str = "could not acquire lock on";

/// A [`Store`] in a sled database in a data directory.
///
/// Trees: `users` and `targets` (key: name, value: JSON record), `grants` (key: user `\0`
/// target, value: JSON [`GrantRecord`]), `tokens` (key: id, value: JSON [`TokenRecord`]) and
/// `meta` (raw bytes).
///
/// Only one process can open a data directory at a time: a second [`SledStore::open`] fails with
/// [`StoreError::Locked`]. Mutations are serialized by a mutex (they are rare admin changes), and
/// those touching several trees run in one sled transaction, so a crash never leaves grants of a
/// deleted user or target behind.
///
/// Every mutation is flushed before it returns. Note that sled's flush uses `sync_file_range`,
/// not `fsync`: a flushed change survives a killed process but is **not** guaranteed to survive
/// a power loss (measured in the project's stack notes). Records that must never be lost (the audit log) need
/// their own fsync-based storage; that is a separate, later concern.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    users: sled::Tree,
    targets: sled::Tree,
    grants: sled::Tree,
    meta: sled::Tree,
    tokens: sled::Tree,
    requests: sled::Tree,
    reviews: sled::Tree,
    /// Serializes mutations, so that a scan followed by a transaction sees no concurrent change.
    write_lock: Mutex<()>,
    /// Short-lived state, in memory: one gateway alone has this directory.
    ephemeral: LocalEphemeral,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// A missing directory is created (mode 0700 on Unix). Fails with [`StoreError::Locked`] if
    /// another process (or another `SledStore` in this process) has the directory open.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let cannot_open = |detail: String| {
            StoreError::Backend(format!(
                "cannot open data directory {}: {detail}",
                dir.display()
            ))
        };
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(dir)
                .map_err(|e| cannot_open(e.to_string()))?;
        }

        let db = sled::Config::new().path(dir).open().map_err(|e| {
            if is_lock_error(&e) {
                StoreError::Locked {
                    path: dir.to_owned(),
                }
            } else {
                cannot_open(e.to_string())
            }
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        Ok(SledStore {
            path: dir.to_owned(),
            users: tree("users")?,
            targets: tree("targets")?,
            grants: tree("grants")?,
            meta: tree("meta")?,
            tokens: tree("tokens")?,
            requests: tree("access_requests")?,
            reviews: tree("recording_reviews")?,
            db,
            write_lock: Mutex::new(()),
            ephemeral: LocalEphemeral::default(),
        })
    }

    /// The data directory this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, so a poisoned lock is harmless.
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Durable flush after a mutation; see the type documentation for what it guarantees.
    fn flush_db(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(backend)
    }

    fn create_record<T: Serialize>(
        &self,
        tree: &sled::Tree,
        kind: &'static str,
        name: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        validate_name(kind, name)?;
        let value = encode(record)?;
        let _guard = self.write_lock();
        let swapped = tree
            .compare_and_swap(name.as_bytes(), None as Option<&[u8]>, Some(value))
            .map_err(backend)?;
        if swapped.is_err() {
            return Err(StoreError::AlreadyExists {
                kind,
                name: name.to_owned(),
            });
        }
        self.flush_db()
    }

    fn put_record<T: Serialize>(
        &self,
        tree: &sled::Tree,
        kind: &'static str,
        name: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        validate_name(kind, name)?;
        let value = encode(record)?;
        let _guard = self.write_lock();
        tree.insert(name.as_bytes(), value).map_err(backend)?;
        self.flush_db()
    }

    /// Deletes the record `name` from `tree` together with the grants whose keys are selected by
    /// `grant_matches` and the API tokens of user `token_user`, in one transaction.
    fn delete_with_grants(
        &self,
        tree: &sled::Tree,
        name: &str,
        grant_matches: impl Fn(&str, &str) -> bool,
        token_user: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _guard = self.write_lock();
        let mut grant_keys = Vec::new();
        for entry in self.grants.iter().keys() {
            let key = entry.map_err(backend)?;
            // Keys that do not split are corrupt; they are left for list_grants to report.
            if let Some((user, target)) = split_grant_key(&key) {
                if grant_matches(user, target) {
                    grant_keys.push(key);
                }
            }
        }
        let mut token_keys = Vec::new();
        if let Some(user) = token_user {
            for token in list_records::<TokenRecord>(&self.tokens, "tokens")? {
                if token.user == user {
                    token_keys.push(token.id);
                }
            }
        }
        let existed = (tree, &self.grants, &self.tokens)
            .transaction(|(records, grants, tokens)| {
                let existed = records.remove(name.as_bytes())?.is_some();
                for key in &grant_keys {
                    grants.remove(key.clone())?;
                }
                for id in &token_keys {
                    tokens.remove(id.as_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(existed)
            })
            .map_err(from_transaction)?;
        self.flush_db()?;
        Ok(existed)
    }
}

impl Store for SledStore {
    fn update_review(
        &self,
        recording: &str,
        change: &mut dyn FnMut(&mut RecordingReview) -> bool,
    ) -> Result<RecordingReview, StoreError> {
        validate_name("recording review", recording)?;
        let _guard = self.write_lock();
        let mut record =
            get_record::<RecordingReview>(&self.reviews, "recording_reviews", recording)?
                .unwrap_or_default();
        if change(&mut record) {
            record.recording = recording.to_owned();
            self.reviews
                .insert(recording.as_bytes(), encode(&record)?)
                .map_err(backend)?;
            self.flush_db()?;
        }
        record.recording = recording.to_owned();
        Ok(record)
    }

    fn get_review(&self, recording: &str) -> Result<Option<RecordingReview>, StoreError> {
        get_record(&self.reviews, "recording_reviews", recording)
    }

    fn list_reviews(&self) -> Result<Vec<RecordingReview>, StoreError> {
        list_records(&self.reviews, "recording_reviews")
    }

    fn delete_review(&self, recording: &str) -> Result<bool, StoreError> {
        let _guard = self.write_lock();
        let existed = self
            .reviews
            .remove(recording.as_bytes())
            .map_err(backend)?
            .is_some();
        self.flush_db()?;
        Ok(existed)
    }

    fn create_request(&self, request: &AccessRequest) -> Result<(), StoreError> {
        self.create_record(&self.requests, "access request", &request.id, request)
    }

    fn update_request(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut AccessRequest) -> bool,
    ) -> Result<Option<AccessRequest>, StoreError> {
        let _guard = self.write_lock();
        let Some(mut record) = get_record::<AccessRequest>(&self.requests, "access_requests", id)?
        else {
            return Ok(None);
        };
        if change(&mut record) {
            record.id = id.to_owned();
            self.requests
                .insert(id.as_bytes(), encode(&record)?)
                .map_err(backend)?;
            self.flush_db()?;
        }
        Ok(Some(record))
    }

    fn get_request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        get_record(&self.requests, "access_requests", id)
    }

    fn list_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        list_records(&self.requests, "access_requests")
    }

    fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.create_record(&self.users, "user", &user.name, user)
    }

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.put_record(&self.users, "user", &user.name, user)
    }

    fn update_user(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut UserRecord) -> bool,
    ) -> Result<Option<UserRecord>, StoreError> {
        // Every write of this store holds the write lock, and sled's own file lock keeps other
        // processes out: read, change and write under it is one step for everyone else.
        let _guard = self.write_lock();
        let Some(mut record) = get_record::<UserRecord>(&self.users, "users", name)? else {
            return Ok(None);
        };
        if change(&mut record) {
            // INVARIANT: the key is the name; a change may not rename.
            record.name = name.to_owned();
            self.users
                .insert(name.as_bytes(), encode(&record)?)
                .map_err(backend)?;
            self.flush_db()?;
        }
        Ok(Some(record))
    }

    fn update_target(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut TargetRecord) -> bool,
    ) -> Result<Option<TargetRecord>, StoreError> {
        // As update_user: under the write lock, read, change and write are one step.
        let _guard = self.write_lock();
        let Some(mut record) = get_record::<TargetRecord>(&self.targets, "targets", name)? else {
            return Ok(None);
        };
        if change(&mut record) {
            // INVARIANT: the key is the name; a change may not rename.
            record.name = name.to_owned();
            self.targets
                .insert(name.as_bytes(), encode(&record)?)
                .map_err(backend)?;
            self.flush_db()?;
        }
        Ok(Some(record))
    }

    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        get_record(&self.users, "users", name)
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        list_records(&self.users, "users")
    }

    fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.delete_with_grants(&self.users, name, |user, _| user == name, Some(name))
    }

    fn create_target(&self, target: &TargetRecord) -> Result<(), StoreError> {
        self.create_record(&self.targets, "target", &target.name, target)
    }

    fn put_target(&self, target: &TargetRecord) -> Result<(), StoreError> {
        self.put_record(&self.targets, "target", &target.name, target)
    }

    fn get_target(&self, name: &str) -> Result<Option<TargetRecord>, StoreError> {
        get_record(&self.targets, "targets", name)
    }

    fn list_targets(&self) -> Result<Vec<TargetRecord>, StoreError> {
        list_records(&self.targets, "targets")
    }

    fn delete_target(&self, name: &str) -> Result<bool, StoreError> {
        self.delete_with_grants(&self.targets, name, |_, target| target == name, None)
    }

    fn create_grant(&self, user: &str, target: &str, created_at: i64) -> Result<(), StoreError> {
        let key = grant_key(user, target);
        let value = encode(&GrantRecord {
            user: user.to_owned(),
            target: target.to_owned(),
            created_at,
        })?;
        let _guard = self.write_lock();
        (&self.users, &self.targets, &self.grants)
            .transaction(|(users, targets, grants)| {
                if users.get(user.as_bytes())?.is_none() {
                    return Err(ConflictableTransactionError::Abort(StoreError::NotFound {
                        kind: "user",
                        name: user.to_owned(),
                    }));
                }
                if targets.get(target.as_bytes())?.is_none() {
                    return Err(ConflictableTransactionError::Abort(StoreError::NotFound {
                        kind: "target",
                        name: target.to_owned(),
                    }));
                }
                if grants.get(key.as_slice())?.is_none() {
                    grants.insert(key.as_slice(), value.as_slice())?;
                }
                Ok(())
            })
            .map_err(from_transaction)?;
        self.flush_db()
    }

    fn delete_grant(&self, user: &str, target: &str) -> Result<bool, StoreError> {
        let _guard = self.write_lock();
        let existed = self
            .grants
            .remove(grant_key(user, target))
            .map_err(backend)?
            .is_some();
        self.flush_db()?;
        Ok(existed)
    }

    fn list_grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        list_records(&self.grants, "grants")
    }

    fn has_grant(&self, user: &str, target: &str) -> Result<bool, StoreError> {
        self.grants
            .contains_key(grant_key(user, target))
            .map_err(backend)
    }

    fn granted_targets(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(GRANT_SEP);
        let mut targets = Vec::new();
        for entry in self.grants.scan_prefix(&prefix).keys() {
            let key = entry.map_err(backend)?;
            match split_grant_key(&key) {
                Some((u, target)) if u == user => targets.push(target.to_owned()),
                _ => {
                    return Err(StoreError::Corrupt {
                        detail: format!("grants: undecodable key {:?}", lossy(&key)),
                    })
                }
            }
        }
        Ok(targets)
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.put_record(&self.tokens, "token", &token.id, token)
    }

    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        get_record(&self.tokens, "tokens", id)
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        list_records(&self.tokens, "tokens")
    }

    fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        let _guard = self.write_lock();
        let existed = self
            .tokens
            .remove(id.as_bytes())
            .map_err(backend)?
            .is_some();
        self.flush_db()?;
        Ok(existed)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta
            .get(key.as_bytes())
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(backend)
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let _guard = self.write_lock();
        self.meta.insert(key.as_bytes(), value).map_err(backend)?;
        self.flush_db()
    }

    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let _guard = self.write_lock();
        let swapped = self
            .meta
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(value))
            .map_err(backend)?;
        self.flush_db()?;
        Ok(swapped.is_ok())
    }

    fn meta_keys(&self) -> Result<Vec<String>, StoreError> {
        self.meta
            .iter()
            .keys()
            .map(|key| {
                let key = key.map_err(backend)?;
                String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
                    detail: "a metadata key is not UTF-8".to_owned(),
                })
            })
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.flush_db()
    }

    crate::local_ephemeral_methods!(ephemeral);
}

/// Whether sled failed to open because another process holds the database's lock.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == io::ErrorKind::Other
        && io.to_string().starts_with(SLED_LOCK_MESSAGE))
}

fn backend(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            detail: e.to_string(),
        },
        other => StoreError::Backend(other.to_string()),
    }
}

fn from_transaction(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record)
        .map_err(|e| StoreError::Backend(format!("cannot encode record: {e}")))
}

fn decode<T: DeserializeOwned>(tree: &str, key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        detail: format!("{tree}: record {:?} cannot be decoded: {e}", lossy(key)),
    })
}

fn get_record<T: DeserializeOwned>(
    tree: &sled::Tree,
    tree_name: &str,
    name: &str,
) -> Result<Option<T>, StoreError> {
    match tree.get(name.as_bytes()).map_err(backend)? {
        Some(value) => decode(tree_name, name.as_bytes(), &value).map(Some),
        None => Ok(None),
    }
}

fn list_records<T: DeserializeOwned>(
    tree: &sled::Tree,
    tree_name: &str,
) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            decode(tree_name, &key, &value)
        })
        .collect()
}

fn grant_key(user: &str, target: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + 1 + target.len());
    key.extend_from_slice(user.as_bytes());
    key.push(GRANT_SEP);
    key.extend_from_slice(target.as_bytes());
    key
}

fn split_grant_key(key: &[u8]) -> Option<(&str, &str)> {
    let sep = key.iter().position(|&b| b == GRANT_SEP)?;
    let user = std::str::from_utf8(&key[..sep]).ok()?;
    let target = std::str::from_utf8(&key[sep + 1..]).ok()?;
    Some((user, target))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
