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
use super::SessionShared;
use crate::locks::lock;
use crate::tap::state::TapEvent;

/// The policy's answer to a crossing, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
}

/// A decision about one crossing, as the event track records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Crossing {
    /// What crossed: `clipboard_to_target`, `file_upload`...
    action: &'static str,
    decision: Decision,
    /// Why, naming the rule.
    reason: String,
}

impl Crossing {
    fn allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// The event-track name of a clipboard crossing.
fn clipboard_action(direction: Direction) -> &'static str {
    match direction {
        Direction::ClientToTarget => "clipboard_to_target",
        Direction::TargetToClient => "clipboard_to_client",
    }
}

/// The policy's direction and the event-track name of a file crossing the redirected drive.
fn file_action(direction: FileDirection) -> (Direction, &'static str) {
    match direction {
        FileDirection::Upload => (Direction::ClientToTarget, "file_upload"),
        FileDirection::Download => (Direction::TargetToClient, "file_download"),
    }
}

/// May `bytes` of clipboard text cross in `direction`?
fn clipboard_text(grant: &SessionGrant, direction: Direction, bytes: usize) -> Crossing {
    let verdict = grant.clipboard(direction, ClipKind::Text, bytes);
    let action = clipboard_action(direction);
    match verdict.denial() {
        None => Crossing {
            action,
            decision: Decision::Allow,
            reason: format!("{bytes} bytes allowed by rule {:?}", grant.rule()),
        },
        Some(denial) => Crossing {
            action,
            decision: Decision::Deny,
            reason: denial.explain(),
        },
    }
}

/// May these clipboard files (RDP) cross in `direction`? Files that were not fetched (the terms
/// refused them, or they exceed the gateway's limit) never cross.
fn clipboard_files(grant: &SessionGrant, direction: Direction, files: &[ClipFile]) -> Crossing {
    let total = files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
    let bytes = usize::try_from(total).unwrap_or(usize::MAX);
    let names = files
        .iter()
        .map(|f| format!("{} ({} bytes)", f.name, f.size))
        .collect::<Vec<_>>()
        .join(", ");
    let verdict = grant.clipboard(direction, ClipKind::Files, bytes);
    let action = clipboard_action(direction);
    let denial = match verdict.denial() {
        Some(denial) => Some(denial.explain()),
        None if files.is_empty() || files.iter().any(|f| f.content.is_none()) => Some(format!(
            "more than the gateway carries for one copy ({MAX_CLIPBOARD_FILES_BYTES} bytes, {MAX_CLIPBOARD_FILES} files)"
        )),
        None => None,
    };
    match denial {
        None => Crossing {
            action,
            decision: Decision::Allow,
            reason: format!("files {names}: allowed by rule {:?}", grant.rule()),
        },
        Some(why) => Crossing {
            action,
            decision: Decision::Deny,
            reason: format!("files {names}: {why}"),
        },
    }
}

/// The policy's verdict on a file the redirected drive carried at `path`.
fn file_transferred(grant: &SessionGrant, direction: FileDirection, path: &str) -> Crossing {
    let (dir, action) = file_action(direction);
    match grant.file_transfer(dir).denial() {
        None => Crossing {
            action,
            decision: Decision::Allow,
            reason: format!("{path}: allowed by rule {:?}", grant.rule()),
        },
        // The adapter applies the same terms, so this does not happen; if it did, the record
        // says so.
        Some(denial) => Crossing {
            action,
            decision: Decision::Deny,
            reason: format!("{path}: {}", denial.explain()),
        },
    }
}

/// Why the redirected drive refused `operation` on `path` (the adapter applied the grant).
fn file_refused(
    grant: &SessionGrant,
    direction: FileDirection,
    path: &str,
    operation: &str,
) -> Crossing {
    let (dir, action) = file_action(direction);
    let why = grant
        .file_transfer(dir)
        .denial()
        .map_or_else(|| "not allowed".to_owned(), |d| d.explain());
    Crossing {
        action,
        decision: Decision::Deny,
        reason: format!("{operation} {path}: {why}"),
    }
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
    let note = grant.note().map(|n| format!("; {n}")).unwrap_or_default();
    format!(
        "{entry} session allowed by rule {:?}{terms}{note}",
        grant.rule()
    )
}

impl SessionShared {
    /// Decides a clipboard crossing with the session's grant and records the decision.
    pub(crate) fn clipboard_allowed(&self, direction: Direction, bytes: usize) -> bool {
        let crossing = clipboard_text(&self.grant, direction, bytes);
        let allowed = crossing.allowed();
        self.record_decision(crossing);
        allowed
    }

    /// Records a policy decision about a crossing in the event track (and so the audit trail);
    /// a refusal is also logged and told to every viewer, so the user learns why.
    fn record_decision(&self, crossing: Crossing) {
        let Crossing {
            action,
            decision,
            reason,
        } = crossing;
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
    /// decision, and each file that crossed (name, size, SHA-256) as a file transfer.
    pub(crate) fn clipboard_files_allowed(&self, direction: Direction, files: &[ClipFile]) -> bool {
        let crossing = clipboard_files(&self.grant, direction, files);
        let allowed = crossing.allowed();
        self.record_decision(crossing);
        if !allowed {
            return false;
        }
        let file_direction = match direction {
            Direction::ClientToTarget => FileDirection::Upload,
            Direction::TargetToClient => FileDirection::Download,
        };
        for f in files {
            self.file_event(FileEvent::Transferred {
                direction: file_direction,
                path: format!("clipboard\\{}", f.name),
                bytes: f.size,
                sha256: f.content.as_ref().map(|(_, sha)| sha.clone()),
            });
        }
        true
    }

    /// Records what happened to a file on the redirected drive, with the policy's verdict.
    pub(super) fn file_event(&self, event: FileEvent) {
        match event {
            FileEvent::Transferred {
                direction,
                path,
                bytes,
                sha256,
            } => {
                self.record_decision(file_transferred(&self.grant, direction, &path));
                {
                    let mut info = super::lock(&self.info);
                    info.file_bytes = info.file_bytes.saturating_add(bytes);
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
            } => self.record_decision(file_refused(&self.grant, direction, &path, &operation)),
            FileEvent::Changed { path, change } => {
                self.tap_event(TapEvent::Session(SessionEvent::FileChange { path, change }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Pin the decisions and the words the event track records for each crossing.
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use portcullis_policy::{ClipboardFlow, Entry, Policy, PolicyDoc, RuleDoc, Subject, TargetRef};
    use portcullis_rdp::{IdentityCheck, RdpCredentials, RdpOptions};

    use super::*;

    /// A rule `r` for anyone on any target, shaped by `edit`.
    fn grant_with(entry: Entry, edit: impl FnOnce(&mut RuleDoc)) -> SessionGrant {
        let mut rule = RuleDoc::new("r", &["*"], &["*"]);
        edit(&mut rule);
        let doc = PolicyDoc {
            groups: Default::default(),
            rules: vec![rule],
            risk: Vec::new(),
            retention: Vec::new(),
        };
        let who = Subject {
            user: "alice",
            role: "user",
            groups: &[],
        };
        Policy::compile(&doc)
            .unwrap()
            .session(&who, &TargetRef::new("t", &[]), entry, 0)
            .into_result()
            .unwrap()
    }

    fn grant(edit: impl FnOnce(&mut RuleDoc)) -> SessionGrant {
        grant_with(Entry::Browser, edit)
    }

    fn allow(action: &'static str, reason: &str) -> Crossing {
        Crossing {
            action,
            decision: Decision::Allow,
            reason: reason.to_owned(),
        }
    }

    fn deny(action: &'static str, reason: &str) -> Crossing {
        Crossing {
            action,
            decision: Decision::Deny,
            reason: reason.to_owned(),
        }
    }

    fn fetched(name: &str, content: &[u8]) -> ClipFile {
        ClipFile {
            name: name.to_owned(),
            size: content.len() as u64,
            content: Some((Arc::from(content), "ab12".to_owned())),
        }
    }

    #[test]
    fn clipboard_text() {
        let to_target = grant(|r| r.clipboard.direction = ClipboardFlow::ClientToTarget);
        assert_eq!(
            super::clipboard_text(&to_target, Direction::ClientToTarget, 5),
            allow("clipboard_to_target", "5 bytes allowed by rule \"r\"")
        );
        assert_eq!(
            super::clipboard_text(&to_target, Direction::TargetToClient, 5),
            deny(
                "clipboard_to_client",
                "clipboard target→client denied by rule \"r\" (client→target only)"
            )
        );
        let small = grant(|r| {
            r.clipboard.direction = ClipboardFlow::Both;
            r.clipboard.max_bytes = 4;
        });
        assert_eq!(
            super::clipboard_text(&small, Direction::TargetToClient, 4),
            allow("clipboard_to_client", "4 bytes allowed by rule \"r\"")
        );
        assert_eq!(
            super::clipboard_text(&small, Direction::TargetToClient, 5),
            deny(
                "clipboard_to_client",
                "clipboard of 5 bytes exceeds the limit of 4 bytes of rule \"r\""
            )
        );
        let off = grant(|_| {});
        assert_eq!(
            super::clipboard_text(&off, Direction::ClientToTarget, 1),
            deny(
                "clipboard_to_target",
                "clipboard client→target denied by rule \"r\" (clipboard off)"
            )
        );
    }

    #[test]
    fn clipboard_files() {
        let text_only = grant(|r| r.clipboard.direction = ClipboardFlow::Both);
        let files = [fetched("a.txt", b"abc")];
        assert_eq!(
            super::clipboard_files(&text_only, Direction::ClientToTarget, &files),
            deny(
                "clipboard_to_target",
                "files a.txt (3 bytes): files on the clipboard denied by rule \"r\" (text only)"
            )
        );
        let with_files = grant(|r| {
            r.clipboard.direction = ClipboardFlow::TargetToClient;
            r.clipboard.files = true;
            r.file_transfer = FileTransferMode::Both;
        });
        let two = [fetched("a.txt", b"abc"), fetched("b.bin", b"")];
        assert_eq!(
            super::clipboard_files(&with_files, Direction::TargetToClient, &two),
            allow(
                "clipboard_to_client",
                "files a.txt (3 bytes), b.bin (0 bytes): allowed by rule \"r\""
            )
        );
        assert_eq!(
            super::clipboard_files(&with_files, Direction::ClientToTarget, &files),
            deny(
                "clipboard_to_target",
                "files a.txt (3 bytes): clipboard client→target denied by rule \"r\" (target→client only)"
            )
        );
        // Allowed by the policy, but not fetched (over the gateway's limit), or nothing at all.
        let unfetched = [ClipFile {
            name: "big.iso".to_owned(),
            size: 10,
            content: None,
        }];
        assert_eq!(
            super::clipboard_files(&with_files, Direction::TargetToClient, &unfetched),
            deny(
                "clipboard_to_client",
                "files big.iso (10 bytes): more than the gateway carries for one copy (67108864 bytes, 256 files)"
            )
        );
        assert_eq!(
            super::clipboard_files(&with_files, Direction::TargetToClient, &[]),
            deny(
                "clipboard_to_client",
                "files : more than the gateway carries for one copy (67108864 bytes, 256 files)"
            )
        );
    }

    #[test]
    fn files_on_the_redirected_drive() {
        let upload = grant(|r| r.file_transfer = FileTransferMode::Upload);
        assert_eq!(
            file_transferred(&upload, FileDirection::Upload, "C:\\a.txt"),
            allow("file_upload", "C:\\a.txt: allowed by rule \"r\"")
        );
        assert_eq!(
            file_transferred(&upload, FileDirection::Download, "C:\\a.txt"),
            deny(
                "file_download",
                "C:\\a.txt: file download (target→client) denied by rule \"r\" (upload only)"
            )
        );
        assert_eq!(
            file_refused(&upload, FileDirection::Download, "C:\\a.txt", "write"),
            deny(
                "file_download",
                "write C:\\a.txt: file download (target→client) denied by rule \"r\" (upload only)"
            )
        );
        // The adapter refused what the grant allows: the record still says no.
        assert_eq!(
            file_refused(&upload, FileDirection::Upload, "C:\\a.txt", "read"),
            deny("file_upload", "read C:\\a.txt: not allowed")
        );
    }

    #[test]
    fn clip_file_terms_follow_the_grant_and_the_gateway_limit() {
        let terms = clip_file_terms(&grant(|r| {
            r.clipboard.direction = ClipboardFlow::ClientToTarget;
            r.clipboard.files = true;
            r.clipboard.max_bytes = 1000;
            r.file_transfer = FileTransferMode::Both;
        }));
        assert!(terms.to_target);
        assert!(!terms.to_client);
        assert_eq!(terms.max_bytes, 1000);
        let terms = clip_file_terms(&grant(|r| {
            r.clipboard.direction = ClipboardFlow::Both;
            r.clipboard.max_bytes = u32::MAX;
        }));
        assert!(!terms.to_target && !terms.to_client, "text only");
        assert_eq!(
            terms.max_bytes,
            MAX_CLIPBOARD_FILES_BYTES.min(u64::from(u32::MAX))
        );
    }

    fn rdp() -> TargetSpec {
        TargetSpec::Rdp {
            address: "t:3389".into(),
            credentials: RdpCredentials {
                username: "u".into(),
                domain: None,
                password: "p".into(),
            },
            options: RdpOptions::default(),
            identity: IdentityCheck::default(),
        }
    }

    fn drive_of(spec: TargetSpec) -> Option<DriveTerms> {
        match spec {
            TargetSpec::Rdp { options, .. } => options.drive,
            TargetSpec::Vnc { .. } => None,
        }
    }

    #[test]
    fn the_drive_is_offered_to_native_clients_when_files_may_cross() {
        let download = grant_with(Entry::Native, |r| {
            r.file_transfer = FileTransferMode::Download
        });
        assert_eq!(
            drive_of(offer_drive(rdp(), &download, EntryPath::Rdp)),
            Some(DriveTerms {
                upload: false,
                download: true
            })
        );
        assert_eq!(
            drive_of(offer_drive(rdp(), &download, EntryPath::Browser)),
            None
        );
        let off = grant_with(Entry::Native, |_| {});
        assert_eq!(drive_of(offer_drive(rdp(), &off, EntryPath::Rdp)), None);
    }

    #[test]
    fn the_open_reason_names_the_rule_and_its_terms() {
        assert_eq!(
            open_reason(&grant(|_| {}), EntryPath::Browser),
            "browser session allowed by rule \"r\""
        );
        let terms = grant_with(Entry::Native, |r| {
            r.max_duration_secs = Some(3600);
            r.idle_timeout_secs = Some(300);
            r.file_transfer = FileTransferMode::Both;
        });
        assert_eq!(
            open_reason(&terms, EntryPath::Rdp),
            "native client session allowed by rule \"r\" (at most 3600 s, idle timeout 300 s, drive redirection: upload and download)"
        );
        // A browser has no drive: its terms do not mention one.
        assert_eq!(
            open_reason(&terms, EntryPath::Browser),
            "browser session allowed by rule \"r\" (at most 3600 s, idle timeout 300 s)"
        );
    }
}
