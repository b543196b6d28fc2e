//! What a decision is about and what it says: subjects, targets, grants, verdicts and denials.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

pub use crate::doc::Direction;
use crate::doc::{ClipboardFlow, Entry, FileTransferMode};

/// The user a decision is about. Groups are not passed in: the policy defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The user's login name, compared exactly.
    pub user: &'a str,
    /// The user's role as the gateway names it (`admin`, `reviewer`, `user`), compared exactly.
    pub role: &'a str,
    /// The identity provider's groups the user is in (single sign-on users; empty for local
    /// accounts), matched by `sso_group:<name>` subjects, compared exactly.
    pub groups: &'a [String],
}

/// The target a decision is about.
///
/// `labels` may be `&[&str]` or `&[String]` (anything `AsRef<str>`), so the gateway passes its
/// own target record without building a new list.
#[derive(Debug)]
pub struct TargetRef<'a, L = &'a str> {
    /// The target's name, compared exactly.
    pub name: &'a str,
    /// The target's labels, compared exactly.
    pub labels: &'a [L],
}

impl<'a> TargetRef<'a> {
    /// A target with `&str` labels. Prefer it to a struct literal when the labels may be an empty
    /// literal (`&[]`), whose element type cannot be inferred.
    pub fn new(name: &'a str, labels: &'a [&'a str]) -> Self {
        Self { name, labels }
    }
}

impl<L> Clone for TargetRef<'_, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L> Copy for TargetRef<'_, L> {}

/// What is on the clipboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipKind {
    /// Text (any text format).
    Text,
    /// A file list (the files' contents follow on request).
    Files,
}

impl fmt::Display for ClipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClipKind::Text => "text",
            ClipKind::Files => "files",
        })
    }
}

/// The outcome of [`Policy::session`](crate::Policy::session).
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionDecision {
    /// The session may open, under the grant's terms.
    Allowed(SessionGrant),
    /// The session is refused.
    Denied(Denial),
}

impl SessionDecision {
    /// True when the session may open.
    pub fn is_allowed(&self) -> bool {
        matches!(self, SessionDecision::Allowed(_))
    }

    /// The grant, if allowed.
    pub fn grant(&self) -> Option<&SessionGrant> {
        match self {
            SessionDecision::Allowed(grant) => Some(grant),
            SessionDecision::Denied(_) => None,
        }
    }

    /// The denial, if denied.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            SessionDecision::Allowed(_) => None,
            SessionDecision::Denied(denial) => Some(denial),
        }
    }

    /// The grant or the denial as a `Result`, for `?`.
    pub fn into_result(self) -> Result<SessionGrant, Denial> {
        match self {
            SessionDecision::Allowed(grant) => Ok(grant),
            SessionDecision::Denied(denial) => Err(denial),
        }
    }
}

/// The terms of an allowed session, from the rule that decided. The gateway keeps it for the
/// session's life and asks it at each crossing.
///
/// Only a [`Policy`](crate::Policy) makes one, so holding a grant proves the session was allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionGrant {
    #[serde(serialize_with = "arc_str")]
    pub(crate) rule: Arc<str>,
    pub(crate) rule_index: usize,
    pub(crate) window_ends_at_unix_secs: Option<i64>,
    /// The rule gives access by approved request only (no standing grant counts).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) request_only: bool,
    /// Four eyes: an observer must watch for the user's input to go through.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) observer_required: bool,
    /// What the gateway adds about the access (the approved request it was opened under).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    /// The risk rules watching the session (its target's).
    #[serde(skip)]
    pub(crate) risk: crate::risk::RiskSet,
    #[serde(flatten)]
    pub(crate) terms: Terms,
}

/// What a user may ask for on a target under the policy: the rule giving access by request, who
/// approves, how many, and for how long at most.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requestable {
    /// The rule.
    pub rule: String,
    /// Who may approve (the rule's `request.approvers`), never the requester.
    pub approvers: Vec<String>,
    /// How many different approvers must approve.
    pub approvals: u32,
    /// The longest access a request may ask for, in seconds.
    pub max_duration_secs: u64,
}

/// What a rule allows a session: the compiled rule holds it, and a grant carries a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Terms {
    pub(crate) max_duration_secs: Option<u64>,
    pub(crate) idle_timeout_secs: Option<u64>,
    pub(crate) recording_required: bool,
    pub(crate) clipboard: ClipboardFlow,
    pub(crate) clipboard_max_bytes: u32,
    pub(crate) clipboard_files: bool,
    pub(crate) file_transfer: FileTransferMode,
    pub(crate) printing: bool,
    pub(crate) audio: bool,
}

impl SessionGrant {
    /// Whether the rule gives access by approved request only: a standing grant does not
    /// count, an approved access request for the user and target must.
    pub fn request_only(&self) -> bool {
        self.request_only
    }

    /// Whether the rule requires an observer (four eyes): the user's input is held while nobody
    /// who counts as one watches.
    pub fn observer_required(&self) -> bool {
        self.observer_required
    }

    /// The grant, with `note` on what the access rests on (the approved request), for the
    /// session's record.
    pub fn with_note(mut self, note: &str) -> SessionGrant {
        self.note = Some(note.to_owned());
        self
    }

    /// The grant, ending at `unix_secs` at the latest (the access it rests on runs out then):
    /// the session ends by itself then, like at the close of a time window.
    pub fn until(mut self, unix_secs: i64) -> SessionGrant {
        self.window_ends_at_unix_secs = Some(
            self.window_ends_at_unix_secs
                .map_or(unix_secs, |w| w.min(unix_secs)),
        );
        self
    }

    /// The grant, with the risk rules that watch the session ([`crate::Policy::risk_for`] its
    /// target).
    pub fn with_risk(mut self, risk: crate::risk::RiskSet) -> SessionGrant {
        self.risk = risk;
        self
    }

    /// The risk rules watching the session.
    pub fn risk(&self) -> &crate::risk::RiskSet {
        &self.risk
    }

    /// What the gateway added about the access, if anything.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The name of the rule that allowed the session.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The rule's position in the policy.
    pub fn rule_index(&self) -> usize {
        self.rule_index
    }

    /// The longest the session may last, in seconds.
    pub fn max_duration_secs(&self) -> Option<u64> {
        self.terms.max_duration_secs
    }

    /// How long the session may go without input, in seconds.
    pub fn idle_timeout_secs(&self) -> Option<u64> {
        self.terms.idle_timeout_secs
    }

    /// True when the session must be recorded (see [`SessionGrant::recording`]).
    pub fn recording_required(&self) -> bool {
        self.terms.recording_required
    }

    /// When the rule's time window closes (Unix seconds): the gateway ends the session then.
    /// `None` when the rule has no windows (or they cover the whole week).
    pub fn window_ends_at_unix_secs(&self) -> Option<i64> {
        self.window_ends_at_unix_secs
    }

    /// When a session started at `started_at_unix_secs` must end: the earlier of its maximum
    /// duration and the end of its time window. `None` when neither limits it.
    pub fn ends_at_unix_secs(&self, started_at_unix_secs: i64) -> Option<i64> {
        let by_duration = self.terms.max_duration_secs.map(|secs| {
            started_at_unix_secs.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
        });
        match (by_duration, self.window_ends_at_unix_secs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Which way the clipboard may cross (for setting up the clipboard channel).
    pub fn clipboard_flow(&self) -> ClipboardFlow {
        self.terms.clipboard
    }

    /// The largest clipboard content that may cross, in bytes.
    pub fn clipboard_max_bytes(&self) -> u32 {
        self.terms.clipboard_max_bytes
    }

    /// True when files may be on the clipboard (in the directions file transfer allows).
    pub fn clipboard_files(&self) -> bool {
        self.terms.clipboard_files
    }

    /// Which way files may cross (for offering drive redirection).
    pub fn file_transfer_mode(&self) -> FileTransferMode {
        self.terms.file_transfer
    }

    /// May clipboard content of `kind` and `bytes` cross in `direction`? Files are a file
    /// transfer too: they need the clipboard to allow files and file transfer to allow the
    /// direction. The size limit applies to text and to the total size of files.
    pub fn clipboard(&self, direction: Direction, kind: ClipKind, bytes: usize) -> Verdict {
        if !self.terms.clipboard.allows(direction) {
            return self.deny(DenyReason::ClipboardDirection {
                direction,
                allowed: self.terms.clipboard,
            });
        }
        if kind == ClipKind::Files {
            if !self.terms.clipboard_files {
                return self.deny(DenyReason::ClipboardFiles);
            }
            if !self.terms.file_transfer.allows(direction) {
                return self.deny(DenyReason::FileTransfer {
                    direction,
                    allowed: self.terms.file_transfer,
                });
            }
        }
        // u32 always fits usize on the platforms the gateway runs on; saturate otherwise.
        let limit = usize::try_from(self.terms.clipboard_max_bytes).unwrap_or(usize::MAX);
        if bytes > limit {
            return self.deny(DenyReason::ClipboardTooLarge {
                bytes,
                limit: self.terms.clipboard_max_bytes,
            });
        }
        Verdict::Allowed
    }

    /// May files cross in `direction` (RDP drive redirection)?
    pub fn file_transfer(&self, direction: Direction) -> Verdict {
        if self.terms.file_transfer.allows(direction) {
            Verdict::Allowed
        } else {
            self.deny(DenyReason::FileTransfer {
                direction,
                allowed: self.terms.file_transfer,
            })
        }
    }

    /// May the target print to the user's printers?
    pub fn printing(&self) -> Verdict {
        if self.terms.printing {
            Verdict::Allowed
        } else {
            self.deny(DenyReason::PrintingOff)
        }
    }

    /// May the target's audio play on the user's machine?
    pub fn audio(&self) -> Verdict {
        if self.terms.audio {
            Verdict::Allowed
        } else {
            self.deny(DenyReason::AudioOff)
        }
    }

    /// May the session go on given whether the recorder could start? Fails closed: a rule
    /// requiring recording refuses a session the recorder cannot take.
    pub fn recording(&self, recorder_available: bool) -> Verdict {
        if recorder_available || !self.terms.recording_required {
            Verdict::Allowed
        } else {
            self.deny(DenyReason::RecordingUnavailable)
        }
    }

    fn deny(&self, reason: DenyReason) -> Verdict {
        Verdict::Denied(Denial {
            rule: Some(Arc::clone(&self.rule)),
            reason,
        })
    }
}

/// The answer for one crossing during a session.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may cross.
    Allowed,
    /// It may not, and why.
    Denied(Denial),
}

impl Verdict {
    /// True when allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }

    /// The denial, if denied.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Verdict::Allowed => None,
            Verdict::Denied(denial) => Some(denial),
        }
    }

    /// The verdict as a `Result`, for `?`.
    pub fn into_result(self) -> Result<(), Denial> {
        match self {
            Verdict::Allowed => Ok(()),
            Verdict::Denied(denial) => Err(denial),
        }
    }
}

/// Why something was denied, and by which rule.
///
/// Displays as the human explanation, e.g.
/// `clipboard target→client denied by rule "vendors" (client→target only)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The rule that decided; `None` when no rule matched.
    #[serde(serialize_with = "opt_arc_str")]
    pub rule: Option<Arc<str>>,
    /// The machine-readable reason.
    pub reason: DenyReason,
}

impl Denial {
    /// The human explanation (the same as `to_string()`).
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = self.rule.as_deref().unwrap_or("");
        match &self.reason {
            DenyReason::NoRule { user, target } => {
                write!(f, "no rule matches user {user} on target {target}")
            }
            DenyReason::DenyRule => write!(f, "denied by rule \"{rule}\""),
            DenyReason::EntryNotAllowed { entry } => {
                write!(f, "entry through {entry} not allowed by rule \"{rule}\"")
            }
            DenyReason::OutsideWindow => {
                write!(f, "outside the time windows of rule \"{rule}\"")
            }
            DenyReason::ClipboardDirection { direction, allowed } => {
                write!(
                    f,
                    "clipboard {direction} denied by rule \"{rule}\" ({allowed})"
                )
            }
            DenyReason::ClipboardFiles => {
                write!(
                    f,
                    "files on the clipboard denied by rule \"{rule}\" (text only)"
                )
            }
            DenyReason::ClipboardTooLarge { bytes, limit } => write!(
                f,
                "clipboard of {bytes} bytes exceeds the limit of {limit} bytes of rule \"{rule}\""
            ),
            DenyReason::FileTransfer { direction, allowed } => {
                let what = match direction {
                    Direction::ClientToTarget => "upload",
                    Direction::TargetToClient => "download",
                };
                write!(
                    f,
                    "file {what} ({direction}) denied by rule \"{rule}\" ({allowed})"
                )
            }
            DenyReason::PrintingOff => write!(f, "printing denied by rule \"{rule}\""),
            DenyReason::AudioOff => write!(f, "audio redirection denied by rule \"{rule}\""),
            DenyReason::RecordingUnavailable => write!(
                f,
                "recording is required by rule \"{rule}\" and the recorder is unavailable"
            ),
        }
    }
}

impl std::error::Error for Denial {}

/// The machine-readable reason of a [`Denial`]. Serialises with a `code` tag, e.g.
/// `{"code":"clipboard_too_large","bytes":200000,"limit":131072}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum DenyReason {
    /// No rule matches the user on the target (deny by default).
    NoRule {
        /// The user.
        user: String,
        /// The target.
        target: String,
    },
    /// The matching rule is a `deny = true` rule.
    DenyRule,
    /// The matching rule does not allow this entry path.
    EntryNotAllowed {
        /// The entry path tried.
        entry: Entry,
    },
    /// The matching rule's time windows are closed now.
    OutsideWindow,
    /// The clipboard may not cross this way.
    ClipboardDirection {
        /// The direction tried.
        direction: Direction,
        /// What the rule allows.
        allowed: ClipboardFlow,
    },
    /// Only text may be on the clipboard.
    ClipboardFiles,
    /// The clipboard content is larger than the rule's limit.
    ClipboardTooLarge {
        /// The content's size.
        bytes: usize,
        /// The rule's limit.
        limit: u32,
    },
    /// Files may not cross this way.
    FileTransfer {
        /// The direction tried.
        direction: Direction,
        /// What the rule allows.
        allowed: FileTransferMode,
    },
    /// Printing is off.
    PrintingOff,
    /// Audio redirection is off.
    AudioOff,
    /// The rule requires recording and the recorder could not start.
    RecordingUnavailable,
}

impl DenyReason {
    /// The reason's code, as in its serialised `code` field (`no_rule`, `outside_window`, …).
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::NoRule { .. } => "no_rule",
            DenyReason::DenyRule => "deny_rule",
            DenyReason::EntryNotAllowed { .. } => "entry_not_allowed",
            DenyReason::OutsideWindow => "outside_window",
            DenyReason::ClipboardDirection { .. } => "clipboard_direction",
            DenyReason::ClipboardFiles => "clipboard_files",
            DenyReason::ClipboardTooLarge { .. } => "clipboard_too_large",
            DenyReason::FileTransfer { .. } => "file_transfer",
            DenyReason::PrintingOff => "printing_off",
            DenyReason::AudioOff => "audio_off",
            DenyReason::RecordingUnavailable => "recording_unavailable",
        }
    }
}

fn arc_str<S: Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

fn opt_arc_str<S: Serializer>(value: &Option<Arc<str>>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.serialize_some(&**value),
        None => serializer.serialize_none(),
    }
}
