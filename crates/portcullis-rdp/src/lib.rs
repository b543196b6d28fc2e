//! RDP adapters. Only this crate knows IronRDP.
//!
//! - [`client`]: towards targets. Connects to an RDP server (TLS, or NLA/CredSSP with NTLM),
//!   logs in with the target's stored credentials and translates between RDP and the
//!   protocol-neutral desktop model of `portcullis-core`, like `portcullis-vnc` does for RFB.
//! - [`server`]: towards native clients (mstsc, FreeRDP). Terminates RDP with the gateway's
//!   certificate, checks the login through a [`server::Gate`] and shows a session's desktop.
//!
//! IronRDP traps handled here: xrdp pads bitmap widths to a multiple of 4, which older
//! `ironrdp-session` releases drew sheared (we use the 0.13 family); RemoteFX is only used when
//! asked for (it is lossy); the pointer is drawn into the picture so viewers and recordings see it.
//! IronRDP's channel and fast-path reassembly has no memory bound of its own: [`reassembly`]
//! gates every frame on both sides before IronRDP sees it.

pub mod client;
mod clip;
pub mod drive;
pub mod identity;
pub mod reassembly;
pub mod server;

pub use client::tls::pinned as tls_pinned;
pub use client::{connect, RdpCredentials, RdpOptions, RdpTarget, RdpTargetError};
pub use identity::IdentityCheck;
