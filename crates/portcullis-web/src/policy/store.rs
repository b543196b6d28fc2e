//! Where an edited policy lives: the store's metadata, key [`POLICY_META_KEY`], as the JSON of a
//! [`PolicyDoc`]. Shared by the policy API (which saves) and the binary (which loads at start).

use portcullis_policy::PolicyDoc;
use portcullis_store::{Store, StoreError};

/// The metadata key holding the policy document.
pub const POLICY_META_KEY: &str = "policy";

/// The policy document saved in `store`, if one was ever saved. A value that is not a policy
/// document is [`StoreError::Corrupt`]: it must not be silently replaced by a default.
pub fn load_policy_doc(store: &dyn Store) -> Result<Option<PolicyDoc>, StoreError> {
    let Some(bytes) = store.get_meta(POLICY_META_KEY)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            detail: format!("the stored policy (metadata {POLICY_META_KEY:?}): {e}"),
        })
}

/// Saves `doc` as the policy document of `store` (durable when it returns).
pub fn save_policy_doc(store: &dyn Store, doc: &PolicyDoc) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(doc)
        .map_err(|e| StoreError::Backend(format!("cannot encode the policy: {e}")))?;
    store.put_meta(POLICY_META_KEY, &bytes)?;
    store.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_store::MemoryStore;

    #[test]
    fn round_trip_and_corrupt_value() {
        let store = MemoryStore::new();
        assert_eq!(load_policy_doc(&store).unwrap(), None);
        let doc = PolicyDoc::default_policy();
        save_policy_doc(&store, &doc).unwrap();
        assert_eq!(load_policy_doc(&store).unwrap(), Some(doc));
        store.put_meta(POLICY_META_KEY, b"{\"rules\": 5}").unwrap();
        let err = load_policy_doc(&store).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("stored policy"), "{err}");
    }
}
