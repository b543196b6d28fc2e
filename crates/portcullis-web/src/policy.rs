//! The gateway's current policy (portcullis-policy): shared by the session WebSocket, the native
//! RDP gate and the policy API, swapped whole when an administrator changes it. `store` keeps the
//! edited document, `api` serves it, `session` is where both entry paths ask it.

pub(crate) mod api;
pub(crate) mod session;
pub mod store;

use std::sync::{Arc, RwLock};

use portcullis_policy::{Policy, PolicyDoc, Subject, TargetRef};
use portcullis_store::{TargetRecord, UserRecord};

/// An account as the policy sees it: name, role, and its identity provider's groups.
pub(crate) fn subject_of(u: &UserRecord) -> Subject<'_> {
    Subject {
        user: &u.name,
        role: u.role.as_str(),
        groups: &u.groups,
    }
}

/// A target as the policy sees it: name and labels.
pub(crate) fn target_of(t: &TargetRecord) -> TargetRef<'_, String> {
    TargetRef {
        name: &t.name,
        labels: &t.labels,
    }
}

/// The policy in force. Cheap to clone; a change is seen by the next decision.
#[derive(Clone, Debug)]
pub struct PolicyState {
    current: Arc<RwLock<Arc<Policy>>>,
}

impl PolicyState {
    /// A state holding `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(policy))),
        }
    }

    /// The shipped default (see [`PolicyDoc::default_policy`]); deny-all should it not compile.
    pub fn default_policy() -> Self {
        Self::new(
            Policy::compile(&PolicyDoc::default_policy()).unwrap_or_else(|_| Policy::deny_all()),
        )
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `policy` in force.
    pub fn replace(&self, policy: Policy) {
        let policy = Arc::new(policy);
        match self.current.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }
}
