//! Live sessions.
//!
//! The broker opens a session to a target through its protocol adapter, keeps the session's
//! desktop model (one [`Framebuffer`] per session) up to date, and serves any number of viewers.
//! Each viewer owns a [`DamageRegion`] and a [`FrameWindow`]: a slow viewer receives merged
//! frames, never a growing queue, and never slows the target or another viewer.
//!
//! The registry of sessions is what administrators list and close.

mod session;
mod viewer;

pub use session::{Broker, OpenError, OpenRequest, SessionHandle, TargetSpec};
pub use viewer::{Viewer, ViewerOutput};
