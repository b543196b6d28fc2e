//! Drive redirection routing: the target's drive messages go to the one native client that
//! owns the session's redirected drive (the first to attach); those that come before it are
//! kept, up to a bound.

use std::sync::{Arc, Weak};

use tracing::warn;

use super::SessionShared;
use crate::locks::lock;
use crate::viewer::state::ViewerShared;

/// Drive-redirection messages of the target that arrived before a native client claimed the
/// drive: the target's greeting, a few hundred bytes. More is not a real target.
const MAX_EARLY_DEVICE_BYTES: usize = 256 * 1024;

/// The native client that owns the session's redirected drive: the first one to attach (the one
/// that opened the session). Others, and browsers, have none.
#[derive(Default)]
pub(super) struct DriveRoute {
    owner: Option<Weak<ViewerShared>>,
    claimed: bool,
    early: Vec<Vec<u8>>,
    early_bytes: usize,
}

impl SessionShared {
    /// Makes `viewer` the owner of the session's redirected drive, if it has none yet.
    pub(crate) fn claim_drive(&self, viewer: &Arc<ViewerShared>) {
        let mut route = lock(&self.drive);
        if route.claimed {
            return;
        }
        route.claimed = true;
        route.owner = Some(Arc::downgrade(viewer));
        for pdu in std::mem::take(&mut route.early) {
            viewer.push_device(pdu);
        }
        route.early_bytes = 0;
        viewer.wake();
    }

    /// True when `viewer` owns the session's redirected drive.
    pub(crate) fn owns_drive(&self, viewer: &Arc<ViewerShared>) -> bool {
        let route = lock(&self.drive);
        route
            .owner
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(viewer)))
    }

    /// A drive redirection message from the target, for the drive's owner.
    pub(super) fn device_to_client(&self, pdu: Vec<u8>) {
        let mut route = lock(&self.drive);
        match route.owner.as_ref().map(Weak::upgrade) {
            Some(Some(owner)) => {
                drop(route);
                owner.push_device(pdu);
                owner.wake();
            }
            // Its client left: nobody answers the target any more.
            Some(None) => {}
            None if route.early_bytes + pdu.len() <= MAX_EARLY_DEVICE_BYTES => {
                route.early_bytes += pdu.len();
                route.early.push(pdu);
            }
            None => warn!("drive redirection messages before any client: dropped"),
        }
    }
}
