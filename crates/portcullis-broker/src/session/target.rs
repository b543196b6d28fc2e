//! How to reach a target and the open connection of either protocol: the adapter enum over
//! VNC and RDP, and their failures as the user is told them.

use portcullis_core::desktop::{TargetCommand, TargetUpdate, Timeouts};
use portcullis_core::session::TargetFault;
use portcullis_core::wire::ErrorCode;
use portcullis_rdp::{IdentityCheck, RdpCredentials, RdpOptions, RdpTargetError};
use portcullis_vnc::VncTargetError;
use thiserror::Error;
use tokio::sync::mpsc;

use super::registry::OpenError;

/// How to reach a target.
#[derive(Clone)]
pub enum TargetSpec {
    /// A VNC server.
    Vnc {
        /// host:port
        address: String,
        /// The VNC password (decrypted just for this connection).
        password: String,
    },
    /// An RDP server.
    Rdp {
        /// host:port
        address: String,
        /// The account the gateway logs in with (decrypted just for this connection).
        credentials: RdpCredentials,
        /// Desktop size and codecs.
        options: RdpOptions,
        /// The target's pinned identity, checked before the credentials are sent.
        identity: IdentityCheck,
    },
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Vnc { address, .. } => f
                .debug_struct("Vnc")
                .field("address", address)
                .field("password", &"[redacted]")
                .finish(),
            TargetSpec::Rdp {
                address,
                options,
                identity,
                ..
            } => f
                .debug_struct("Rdp")
                .field("address", address)
                .field("credentials", &"[redacted]")
                .field("options", options)
                .field("identity", identity)
                .finish(),
        }
    }
}

/// A target adapter's failure, whatever the protocol.
#[derive(Debug, Error)]
pub(crate) enum TargetError {
    #[error(transparent)]
    Vnc(#[from] VncTargetError),
    #[error(transparent)]
    Rdp(#[from] RdpTargetError),
}

impl TargetError {
    /// True when the target just went away (a normal end, not worth an error message).
    pub(super) fn is_closed(&self) -> bool {
        match self {
            TargetError::Vnc(e) => matches!(e, VncTargetError::Closed),
            TargetError::Rdp(e) => matches!(e, RdpTargetError::Closed),
        }
    }

    /// What kind of failure this is, and what the user is told: never the target's address
    /// (users do not see addresses); the full error is logged by the caller.
    pub(super) fn fault(&self) -> (TargetFault, String) {
        let unreachable = |source: &dyn std::fmt::Display| {
            (
                TargetFault::Unreachable,
                format!("cannot reach the target: {source}"),
            )
        };
        let timeout = |seconds: u64| {
            (
                TargetFault::Unreachable,
                format!("cannot reach the target: no answer within {seconds} s"),
            )
        };
        match self {
            TargetError::Vnc(v) => match v {
                VncTargetError::Unreachable { source, .. } => unreachable(source),
                VncTargetError::Timeout { seconds, .. } => timeout(*seconds),
                VncTargetError::AuthFailed(_) => (TargetFault::AuthFailed, v.to_string()),
                VncTargetError::Protocol(_) | VncTargetError::Closed => {
                    (TargetFault::Protocol, v.to_string())
                }
            },
            TargetError::Rdp(r) => match r {
                RdpTargetError::Unreachable { source, .. } => unreachable(source),
                RdpTargetError::Timeout { seconds, .. } => timeout(*seconds),
                RdpTargetError::AuthFailed(_) => (
                    TargetFault::AuthFailed,
                    "the RDP target refused the stored credentials".into(),
                ),
                RdpTargetError::Protocol(_)
                | RdpTargetError::Ended(_)
                | RdpTargetError::Closed
                | RdpTargetError::Bounds(_)
                | RdpTargetError::Untrusted(_) => (TargetFault::Protocol, r.to_string()),
            },
        }
    }
}

impl From<TargetError> for OpenError {
    fn from(e: TargetError) -> Self {
        let (fault, message) = e.fault();
        let code = match fault {
            TargetFault::Unreachable => ErrorCode::TargetUnreachable,
            TargetFault::AuthFailed => ErrorCode::TargetAuthFailed,
            TargetFault::Protocol => ErrorCode::TargetProtocol,
        };
        OpenError { code, message }
    }
}

/// An open target connection of either protocol.
pub(super) enum Target {
    Vnc(portcullis_vnc::VncTarget),
    // Boxed: an RDP connection's state is a few KiB.
    Rdp(Box<portcullis_rdp::RdpTarget>),
}

impl Target {
    pub(super) async fn connect(
        spec: TargetSpec,
        timeouts: Timeouts,
    ) -> Result<Target, TargetError> {
        Ok(match spec {
            TargetSpec::Vnc { address, password } => {
                Target::Vnc(portcullis_vnc::connect(&address, password, timeouts).await?)
            }
            TargetSpec::Rdp {
                address,
                credentials,
                options,
                identity,
            } => Target::Rdp(Box::new(
                portcullis_rdp::connect(&address, credentials, options, identity, timeouts).await?,
            )),
        })
    }

    pub(super) fn size(&self) -> (u32, u32) {
        match self {
            Target::Vnc(t) => t.size(),
            Target::Rdp(t) => t.size(),
        }
    }

    pub(super) async fn run(
        self,
        updates: mpsc::Sender<TargetUpdate>,
        commands: mpsc::Receiver<TargetCommand>,
    ) -> Result<(), TargetError> {
        match self {
            Target::Vnc(t) => Ok(t.run(updates, commands).await?),
            Target::Rdp(t) => Ok(t.run(updates, commands).await?),
        }
    }
}
