//! The sans-I/O core of Portcullis.
//!
//! Everything here is plain data and state machines: no sockets, no async runtime, no clocks
//! (time is passed in). That keeps it testable and fuzzable.
//!
//! - [`desktop`]: the protocol-neutral desktop model (framebuffer, rectangles, input, clipboard)
//!   that RDP and VNC adapters feed and that viewers and the recorder read.
//! - [`damage`]: bounded accumulation of changed rectangles, so a slow consumer gets merged updates.
//! - [`flow`]: the per-viewer frame window (how many frames may be unacknowledged).
//! - [`session`]: the session model shown to admins, and the events a recording keeps.
//! - [`keytext`]: key presses as readable text for the event track.
//! - [`scancode`]: X11 keysyms as PC scancodes (RDP keyboard input), and back.
//! - [`wire`]: the browser WebSocket format (see `docs/browser-protocol.md`).
// Untrusted sizes and counts pass through here: a cast that could cut a number is a bug.
#![warn(clippy::cast_possible_truncation)]

pub mod addr;
pub mod damage;
pub mod desktop;
pub mod flow;
pub mod keytext;
pub mod notice;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;
pub mod scancode;
pub mod session;
pub mod wire;

pub use damage::DamageRegion;
pub use desktop::{
    Applied, DesktopError, Framebuffer, InputEvent, PixelLayout, Rect, TargetCommand, TargetUpdate,
};
