//! Process-wide counters of what sessions went through, for the gateway's `/metrics` (each
//! gateway process counts its own; Prometheus adds them up across a cluster).

use std::sync::atomic::AtomicU64;

/// Frames the recorders skipped because encoding fell behind (a frame slot passed while the
/// previous frame was encoding), every session's, since the process started.
pub static FRAMES_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Failed logins (a wrong password or second-factor code, browser or native RDP).
pub static LOGIN_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Policy denials (a session refused, a clipboard or file crossing blocked).
pub static POLICY_DENIALS: AtomicU64 = AtomicU64::new(0);
/// Sessions the security team ended.
pub static KILLS: AtomicU64 = AtomicU64::new(0);
/// Microseconds from a kill's request to the session told to end (its record fsynced first),
/// summed over [`KILLS`].
pub static KILL_MICROS: AtomicU64 = AtomicU64::new(0);
