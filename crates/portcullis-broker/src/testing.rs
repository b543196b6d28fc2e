//! Stand-ins for the other crates' tests (behind the `testing` feature, never in a release
//! build): a recorder that records nothing but keeps its tap as a real one does, and the
//! request that opens a plain browser session to a VNC address.

use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::{Entry, Policy, PolicyDoc, SessionGrant, Subject, TargetRef};

use portcullis_core::session::EntryPath;

use crate::{OpenRequest, SessionRecorder, Tap, TargetSpec};

/// Records nothing, and holds the tap until the session ends, as a recorder does (letting go
/// of it earlier ends the session: it would run unrecorded).
#[derive(Debug, Default)]
pub struct HoldingRecorder;

impl SessionRecorder for HoldingRecorder {
    fn start(&self, tap: Tap) -> Result<(), String> {
        std::thread::spawn(move || while tap.wait(Duration::from_millis(20)).ended.is_none() {});
        Ok(())
    }
}

impl HoldingRecorder {
    /// One to give to `Broker::with_recorder`.
    pub fn shared() -> Arc<dyn SessionRecorder> {
        Arc::new(Self)
    }
}

/// Alice (`u_alice`, role user) opening target `t` at the VNC `address` from a browser, as the
/// default policy allows it.
pub fn browser_request(address: String) -> OpenRequest {
    let grant = Policy::compile(&PolicyDoc::default_policy())
        .expect("the default policy compiles")
        .session(
            &Subject {
                user: "alice",
                role: "user",
                groups: &[],
            },
            &TargetRef::new("t", &[]),
            Entry::Browser,
            0,
        )
        .into_result()
        .expect("the default policy lets a user open a target");
    browser_request_with(address, grant)
}

/// As [`browser_request`], with the grant a test's own policy gave.
pub fn browser_request_with(address: String, grant: SessionGrant) -> OpenRequest {
    OpenRequest {
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "t".into(),
        spec: TargetSpec::Vnc {
            address,
            password: String::new(),
        },
        client_addr: "test".into(),
        entry: EntryPath::Browser,
        grant,
    }
}
