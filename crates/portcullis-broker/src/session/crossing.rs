//! The policy at the crossings: clipboard text and files, drive redirection and the open
//! itself. Each decision is a pure function of the session's grant (unit-tested below); the
//! session records what it returns.

use portcullis_core::desktop::{
    ClipFile, ClipFileTerms, FileDirection, FileEvent, MAX_CLIPBOARD_FILES,
    MAX_CLIPBOARD_FILES_BYTES,
};
use portcullis_core::session::{EntryPath, SessionEvent};
use portcullis_core::wire::ServerMessage;
use portcullis_policy::{ClipKind, Direction, FileTransferMode, SessionGrant};
use portcullis_rdp::drive::DriveTerms;
use tracing::info;

use super::target::TargetSpec;
use super::{lock, SessionShared};
use crate::tap::TapEvent;

/// The policy's answer to a crossing, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
}

/// Which clipboard files may be fetched from the side that copies them, from the grant: the
/// policy's own decision for each direction, up to its size limit (and the gateway's).
pub(super) fn clip_file_terms(grant: &SessionGrant) -> ClipFileTerms {
    ClipFileTerms {
        to_target: grant
            .clipboard(Direction::ClientToTarget, ClipKind::Files, 0)
            .is_allowed(),
        to_client: grant
            .clipboard(Direction::TargetToClient, ClipKind::Files, 0)
            .is_allowed(),
        max_bytes: u64::from(grant.clipboard_max_bytes()).min(MAX_CLIPBOARD_FILES_BYTES),
    }
}

/// An RDP target is offered drive redirection only for a native client (a browser has no drive
/// to share) and only when the policy lets files cross at least one way.
pub(super) fn offer_drive(spec: TargetSpec, grant: &SessionGrant, entry: EntryPath) -> TargetSpec {
    match spec {
        TargetSpec::Rdp {
            address,
            credentials,
            mut options,
            identity,
        } => {
            let upload = grant.file_transfer(Direction::ClientToTarget).is_allowed();
            let download = grant.file_transfer(Direction::TargetToClient).is_allowed();
            options.drive = (entry == EntryPath::Rdp && (upload || download))
                .then_some(DriveTerms { upload, download });
            TargetSpec::Rdp {
                address,
                credentials,
                options,
                identity,
            }
        }
        vnc => vnc,
    }
}

/// Why the session was let open, and on what terms, for the event track.
pub(super) fn open_reason(grant: &SessionGrant, entry_path: EntryPath) -> String {
    let entry = match entry_path {
        EntryPath::Browser => "browser",
        EntryPath::Rdp => "native client",
    };
    let mut terms = Vec::new();
    if let Some(s) = grant.max_duration_secs() {
        terms.push(format!("at most {s} s"));
    }
    if grant.window_ends_at_unix_secs().is_some() {
        terms.push("until its time window closes".to_owned());
    }
    if let Some(s) = grant.idle_timeout_secs() {
        terms.push(format!("idle timeout {s} s"));
    }
    if entry_path == EntryPath::Rdp && grant.file_transfer_mode() != FileTransferMode::Off {
        terms.push(format!("drive redirection: {}", grant.file_transfer_mode()));
    }
    let terms = if terms.is_empty() {
        String::new()
    } else {
        format!(" ({})", terms.join(", "))
    };
    format!("{entry} session allowed by rule {:?}{terms}", grant.rule())
}

impl SessionShared {
    /// Decides a clipboard crossing with the session's grant and records the decision.
    pub(crate) fn clipboard_allowed(&self, direction: Direction, bytes: usize) -> bool {
        let verdict = self.grant.clipboard(direction, ClipKind::Text, bytes);
        let action = match direction {
            Direction::ClientToTarget => "clipboard_to_target",
            Direction::TargetToClient => "clipboard_to_client",
        };
        match verdict.denial() {
            None => self.record_decision(
                action,
                Decision::Allow,
                format!("{bytes} bytes allowed by rule {:?}", self.grant.rule()),
            ),
            Some(denial) => self.record_decision(action, Decision::Deny, denial.explain()),
        }
        verdict.is_allowed()
    }

    /// Records a policy decision about a crossing in the event track (and so the audit trail);
    /// a refusal is also logged and told to every viewer, so the user learns why.
    fn record_decision(&self, action: &str, decision: Decision, reason: String) {
        if decision == Decision::Deny {
            let id = lock(&self.info).id.clone();
            info!(session = %id, action, %reason, "policy denied a crossing");
            let notice = ServerMessage::Denied {
                action: action.into(),
                reason: reason.clone(),
            };
            self.for_each_viewer(|v| {
                v.push_event(notice.clone());
                v.wake();
            });
        }
        self.tap_event(TapEvent::Session(SessionEvent::Policy {
            action: action.into(),
            decision: match decision {
                Decision::Allow => "allow",
                Decision::Deny => "deny",
            }
            .into(),
            reason,
        }));
    }

    /// Which files a native client copies may be fetched for this session (RDP clipboard).
    pub(crate) fn clip_file_terms(&self) -> ClipFileTerms {
        clip_file_terms(&self.grant)
    }

    /// Decides a crossing of clipboard files (RDP) with the session's grant and records it: the
    /// decision, and each file that crossed (name, size, SHA-256) as a file transfer. Files that
    /// were not fetched (the terms refused them, or they exceed the gateway's limit) never cross.
    pub(crate) fn clipboard_files_allowed(&self, direction: Direction, files: &[ClipFile]) -> bool {
        let total = files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
        let bytes = usize::try_from(total).unwrap_or(usize::MAX);
        let names = files
            .iter()
            .map(|f| format!("{} ({} bytes)", f.name, f.size))
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = self.grant.clipboard(direction, ClipKind::Files, bytes);
        let (action, file_direction) = match direction {
            Direction::ClientToTarget => ("clipboard_to_target", FileDirection::Upload),
            Direction::TargetToClient => ("clipboard_to_client", FileDirection::Download),
        };
        let denial = match verdict.denial() {
            Some(denial) => Some(denial.explain()),
            None if files.is_empty() || files.iter().any(|f| f.content.is_none()) => Some(format!(
                "more than the gateway carries for one copy ({MAX_CLIPBOARD_FILES_BYTES} bytes, {MAX_CLIPBOARD_FILES} files)"
            )),
            None => None,
        };
        let Some(why) = denial else {
            self.record_decision(
                action,
                Decision::Allow,
                format!("files {names}: allowed by rule {:?}", self.grant.rule()),
            );
            for f in files {
                self.file_event(FileEvent::Transferred {
                    direction: file_direction,
                    path: format!("clipboard\\{}", f.name),
                    bytes: f.size,
                    sha256: f.content.as_ref().map(|(_, sha)| sha.clone()),
                });
            }
            return true;
        };
        self.record_decision(action, Decision::Deny, format!("files {names}: {why}"));
        false
    }

    /// Records what happened to a file on the redirected drive, with the policy's verdict.
    pub(super) fn file_event(&self, event: FileEvent) {
        let direction_of = |d: FileDirection| match d {
            FileDirection::Upload => (Direction::ClientToTarget, "file_upload"),
            FileDirection::Download => (Direction::TargetToClient, "file_download"),
        };
        match event {
            FileEvent::Transferred {
                direction,
                path,
                bytes,
                sha256,
            } => {
                let (dir, action) = direction_of(direction);
                let verdict = self.grant.file_transfer(dir);
                match verdict.denial() {
                    None => self.record_decision(
                        action,
                        Decision::Allow,
                        format!("{path}: allowed by rule {:?}", self.grant.rule()),
                    ),
                    // The adapter applies the same terms, so this does not happen; if it
                    // did, the record says so.
                    Some(denial) => self.record_decision(
                        action,
                        Decision::Deny,
                        format!("{path}: {}", denial.explain()),
                    ),
                }
                self.tap_event(TapEvent::Session(SessionEvent::FileTransfer {
                    direction,
                    path,
                    bytes,
                    sha256,
                }));
            }
            FileEvent::Refused {
                direction,
                path,
                operation,
            } => {
                let (dir, action) = direction_of(direction);
                let why = self
                    .grant
                    .file_transfer(dir)
                    .denial()
                    .map_or_else(|| "not allowed".to_owned(), |d| d.explain());
                self.record_decision(action, Decision::Deny, format!("{operation} {path}: {why}"));
            }
            FileEvent::Changed { path, change } => {
                self.tap_event(TapEvent::Session(SessionEvent::FileChange { path, change }))
            }
        }
    }
}
