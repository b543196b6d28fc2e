//! An in-memory [`Store`], for tests.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::{
    validate_name, AccessRequest, GrantRecord, LocalEphemeral, RecordingReview, Store, StoreError,
    TargetRecord, TokenRecord, UserRecord,
};

/// A [`Store`] kept in memory (a mutex around ordered maps). Behaves like [`crate::SledStore`]
/// but forgets everything when dropped. Meant for tests of other crates.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    ephemeral: LocalEphemeral,
}

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<String, UserRecord>,
    targets: BTreeMap<String, TargetRecord>,
    /// Keyed by (user, target).
    grants: BTreeMap<(String, String), GrantRecord>,
    meta: BTreeMap<String, Vec<u8>>,
    tokens: BTreeMap<String, TokenRecord>,
    requests: BTreeMap<String, AccessRequest>,
    reviews: BTreeMap<String, RecordingReview>,
}

impl MemoryStore {
    /// Creates an empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below completes without panicking, so a poisoned lock still guards
        // consistent data.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn update_review(
        &self,
        recording: &str,
        change: &mut dyn FnMut(&mut RecordingReview) -> bool,
    ) -> Result<RecordingReview, StoreError> {
        validate_name("recording review", recording)?;
        let mut inner = self.lock();
        let mut record = inner.reviews.get(recording).cloned().unwrap_or_default();
        if change(&mut record) {
            record.recording = recording.to_owned();
            inner.reviews.insert(recording.to_owned(), record.clone());
        }
        record.recording = recording.to_owned();
        Ok(record)
    }

    fn get_review(&self, recording: &str) -> Result<Option<RecordingReview>, StoreError> {
        Ok(self.lock().reviews.get(recording).cloned())
    }

    fn list_reviews(&self) -> Result<Vec<RecordingReview>, StoreError> {
        Ok(self.lock().reviews.values().cloned().collect())
    }

    fn delete_review(&self, recording: &str) -> Result<bool, StoreError> {
        Ok(self.lock().reviews.remove(recording).is_some())
    }

    fn create_request(&self, request: &AccessRequest) -> Result<(), StoreError> {
        validate_name("access request", &request.id)?;
        let mut inner = self.lock();
        if inner.requests.contains_key(&request.id) {
            return Err(StoreError::AlreadyExists {
                kind: "access request",
                name: request.id.clone(),
            });
        }
        inner.requests.insert(request.id.clone(), request.clone());
        Ok(())
    }

    fn update_request(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut AccessRequest) -> bool,
    ) -> Result<Option<AccessRequest>, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.requests.get_mut(id) else {
            return Ok(None);
        };
        let mut record = stored.clone();
        if change(&mut record) {
            record.id = id.to_owned();
            *stored = record.clone();
        }
        Ok(Some(record))
    }

    fn get_request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        Ok(self.lock().requests.get(id).cloned())
    }

    fn list_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        Ok(self.lock().requests.values().cloned().collect())
    }

    fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        validate_name("user", &user.name)?;
        let mut inner = self.lock();
        if inner.users.contains_key(&user.name) {
            return Err(StoreError::AlreadyExists {
                kind: "user",
                name: user.name.clone(),
            });
        }
        inner.users.insert(user.name.clone(), user.clone());
        Ok(())
    }

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        validate_name("user", &user.name)?;
        self.lock().users.insert(user.name.clone(), user.clone());
        Ok(())
    }

    fn update_user(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut UserRecord) -> bool,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.users.get_mut(name) else {
            return Ok(None);
        };
        let mut record = stored.clone();
        if change(&mut record) {
            // INVARIANT: the key is the name; a change may not rename.
            record.name = name.to_owned();
            *stored = record.clone();
        }
        Ok(Some(record))
    }

    fn update_target(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut TargetRecord) -> bool,
    ) -> Result<Option<TargetRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.targets.get_mut(name) else {
            return Ok(None);
        };
        let mut record = stored.clone();
        if change(&mut record) {
            // INVARIANT: the key is the name; a change may not rename.
            record.name = name.to_owned();
            *stored = record.clone();
        }
        Ok(Some(record))
    }

    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock().users.get(name).cloned())
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self.lock().users.values().cloned().collect())
    }

    fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let existed = inner.users.remove(name).is_some();
        inner.grants.retain(|(user, _), _| user != name);
        inner.tokens.retain(|_, t| t.user != name);
        Ok(existed)
    }

    fn create_target(&self, target: &TargetRecord) -> Result<(), StoreError> {
        validate_name("target", &target.name)?;
        let mut inner = self.lock();
        if inner.targets.contains_key(&target.name) {
            return Err(StoreError::AlreadyExists {
                kind: "target",
                name: target.name.clone(),
            });
        }
        inner.targets.insert(target.name.clone(), target.clone());
        Ok(())
    }

    fn put_target(&self, target: &TargetRecord) -> Result<(), StoreError> {
        validate_name("target", &target.name)?;
        self.lock()
            .targets
            .insert(target.name.clone(), target.clone());
        Ok(())
    }

    fn get_target(&self, name: &str) -> Result<Option<TargetRecord>, StoreError> {
        Ok(self.lock().targets.get(name).cloned())
    }

    fn list_targets(&self) -> Result<Vec<TargetRecord>, StoreError> {
        Ok(self.lock().targets.values().cloned().collect())
    }

    fn delete_target(&self, name: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let existed = inner.targets.remove(name).is_some();
        inner.grants.retain(|(_, target), _| target != name);
        Ok(existed)
    }

    fn create_grant(&self, user: &str, target: &str, created_at: i64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.users.contains_key(user) {
            return Err(StoreError::NotFound {
                kind: "user",
                name: user.to_owned(),
            });
        }
        if !inner.targets.contains_key(target) {
            return Err(StoreError::NotFound {
                kind: "target",
                name: target.to_owned(),
            });
        }
        inner
            .grants
            .entry((user.to_owned(), target.to_owned()))
            .or_insert_with(|| GrantRecord {
                user: user.to_owned(),
                target: target.to_owned(),
                created_at,
            });
        Ok(())
    }

    fn delete_grant(&self, user: &str, target: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .grants
            .remove(&(user.to_owned(), target.to_owned()))
            .is_some())
    }

    fn list_grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        Ok(self.lock().grants.values().cloned().collect())
    }

    fn has_grant(&self, user: &str, target: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .grants
            .contains_key(&(user.to_owned(), target.to_owned())))
    }

    fn granted_targets(&self, user: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .lock()
            .grants
            .keys()
            .filter(|(u, _)| u == user)
            .map(|(_, t)| t.clone())
            .collect())
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        validate_name("token", &token.id)?;
        self.lock().tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }

    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.lock().tokens.get(id).cloned())
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.lock().tokens.values().cloned().collect())
    }

    fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().tokens.remove(id).is_some())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().meta.get(key).cloned())
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock().meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.meta.contains_key(key) {
            return Ok(false);
        }
        inner.meta.insert(key.to_owned(), value.to_vec());
        Ok(true)
    }

    fn meta_keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().meta.keys().cloned().collect())
    }

    crate::local_ephemeral_methods!(ephemeral);

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
