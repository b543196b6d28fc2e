//! Live sessions.
//!
//! The broker opens a session to a target through its protocol adapter, keeps the session's
//! desktop model (one [`Framebuffer`] per session) up to date, and serves any number of viewers.
//! Each viewer owns a [`DamageRegion`] and a [`FrameWindow`]: a slow viewer receives merged
//! frames, never a growing queue, and never slows the target or another viewer.
//!
//! The registry of sessions is what administrators list and close. A [`SessionRecorder`] given
//! to the broker gets a [`Tap`] on every session before it runs (no tap, no session).
//! [`Broker::shutdown`] ends every session and waits for their viewers and recorders.

mod live;
mod locks;
mod native;
mod session;
pub mod stats;
mod tap;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod viewer;

pub use native::denial_of;
pub use portcullis_rdp::{RdpCredentials, RdpOptions};
pub use session::{
    AuditFuture, Broker, OpenError, OpenRequest, SessionAudit, SessionHandle, SettledArea,
    TargetSpec, MAX_SESSIONS_PER_USER,
};
pub use tap::state::{TapEvent, MAX_TAP_EVENTS};
pub use tap::{SessionRecorder, Tap, TapBatch};
pub use viewer::{RawOutput, RawViewer, Viewer, ViewerOutput};
