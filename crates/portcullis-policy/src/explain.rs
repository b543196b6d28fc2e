//! Explanations for the API and the admin page: why a user may or may not do something on a
//! target, rule by rule.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::{
    ClipKind, Denial, DenyReason, Direction, SessionDecision, SessionGrant, Subject, TargetRef,
    Verdict,
};
use crate::doc::Entry;
use crate::policy::{no_rule, Policy};
use crate::window::describe_utc;

/// Something a user may try, as the API asks about it, e.g.
/// `{"action":"clipboard","direction":"target_to_client","kind":"text","bytes":10}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Opening a session.
    Open {
        /// Through which entry path.
        entry: Entry,
    },
    /// Clipboard content crossing.
    Clipboard {
        /// Which way.
        direction: Direction,
        /// Text or files.
        kind: ClipKind,
        /// Its size (for files: their total size).
        bytes: usize,
    },
    /// Files crossing (drive redirection).
    FileTransfer {
        /// Which way.
        direction: Direction,
    },
    /// Printing to the user's printers.
    Printing,
    /// Audio from the target.
    Audio,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Open { entry } => write!(f, "session through {entry}"),
            Action::Clipboard {
                direction,
                kind,
                bytes,
            } => write!(f, "clipboard {direction} ({kind}, {bytes} bytes)"),
            Action::FileTransfer { direction } => match direction {
                Direction::ClientToTarget => write!(f, "file upload ({direction})"),
                Direction::TargetToClient => write!(f, "file download ({direction})"),
            },
            Action::Printing => f.write_str("printing"),
            Action::Audio => f.write_str("audio redirection"),
        }
    }
}

/// Why an action is allowed or denied: what [`Policy::explain`] returns, serialisable for the
/// API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The user asked about.
    pub user: String,
    /// The user's role.
    pub role: String,
    /// The policy's groups the user is in.
    pub groups: Vec<String>,
    /// The identity provider's groups the user is in (single sign-on users).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sso_groups: Vec<String>,
    /// The target asked about.
    pub target: String,
    /// The target's labels.
    pub labels: Vec<String>,
    /// The action asked about.
    pub action: Action,
    /// The time asked about, Unix seconds.
    pub at_unix_secs: i64,
    /// The same time, readable (`1970-01-01 thu 00:00:00 UTC`).
    pub at: String,
    /// The verdict.
    pub allowed: bool,
    /// The rule that decided; `None` when no rule matched.
    pub rule: Option<String>,
    /// Why it is denied; `None` when allowed.
    pub reason: Option<DenyReason>,
    /// The verdict in words, naming the rule.
    pub message: String,
    /// The rules looked at, in order, up to the one that decided (all of them when none did).
    pub considered: Vec<RuleCheck>,
    /// The session's terms under the deciding rule, when a session would be allowed (for a
    /// crossing: whatever the crossing's verdict).
    pub grant: Option<SessionGrant>,
    /// The deciding rule gives access by approved request only: who approves, how many, for
    /// how long at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::Requestable>,
}

/// How one rule fared against the user and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCheck {
    /// The rule's position.
    pub index: usize,
    /// The rule's name.
    pub rule: String,
    /// The subject pattern that matched the user, if any (`group:vendors`).
    pub subject: Option<String>,
    /// The target pattern that matched the target, if any (`label:prod`).
    pub target: Option<String>,
    /// True when both matched: this rule decides.
    pub matched: bool,
    /// The outcome in words.
    pub note: String,
}

impl Policy {
    /// Explains whether `who` may do `action` on `target` at `now_unix_secs`, for the API and the
    /// admin page. The verdict is the one the gateway gets from [`Policy::session`] and the
    /// [`SessionGrant`] methods; for a crossing, the session's entry path is not asked (it was
    /// checked at the opening) but its time windows are.
    pub fn explain<L: AsRef<str>>(
        &self,
        who: &Subject<'_>,
        target: &TargetRef<'_, L>,
        action: Action,
        now_unix_secs: i64,
    ) -> Explanation {
        let lookup = self.lookup(who, target);
        let mut considered = Vec::new();
        let mut decided = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let (subject_ok, target_ok) = lookup.matches(i);
            let subject = subject_ok.then(|| self.subject_pattern(i, who)).flatten();
            let target_pattern = target_ok.then(|| self.target_pattern(i, target)).flatten();
            let note = match (&subject, &target_pattern) {
                (Some(s), Some(t)) => format!("matches the user by {s} and the target by {t}"),
                (Some(_), None) => format!(
                    "the target does not match (rule is for {})",
                    list(&rule.targets)
                ),
                (None, Some(_)) => format!(
                    "the user does not match (rule is for {})",
                    list(&rule.subjects)
                ),
                (None, None) => format!(
                    "neither user nor target matches (rule is for {} on {})",
                    list(&rule.subjects),
                    list(&rule.targets)
                ),
            };
            let matched = subject_ok && target_ok;
            considered.push(RuleCheck {
                index: i,
                rule: rule.name.to_string(),
                subject,
                target: target_pattern,
                matched,
                note,
            });
            if matched {
                decided = Some(i);
                break;
            }
        }
        debug_assert_eq!(decided, lookup.first_match());

        let (verdict, grant) = match decided {
            None => (Err(no_rule(who, target)), None),
            Some(i) => {
                let entry = match action {
                    Action::Open { entry } => Some(entry),
                    _ => None,
                };
                match self.decide(i, entry, now_unix_secs) {
                    SessionDecision::Denied(denial) => (Err(denial), None),
                    SessionDecision::Allowed(grant) => {
                        let verdict = match action {
                            Action::Open { .. } => Verdict::Allowed,
                            Action::Clipboard {
                                direction,
                                kind,
                                bytes,
                            } => grant.clipboard(direction, kind, bytes),
                            Action::FileTransfer { direction } => grant.file_transfer(direction),
                            Action::Printing => grant.printing(),
                            Action::Audio => grant.audio(),
                        };
                        (verdict.into_result(), Some(grant))
                    }
                }
            }
        };

        let rule = decided.map(|i| self.rules[i].name.to_string());
        let message = match &verdict {
            Ok(()) => format!(
                "{action} allowed by rule \"{}\"",
                rule.as_deref().unwrap_or("")
            ),
            Err(denial) => self.denial_message(denial, decided, now_unix_secs),
        };
        Explanation {
            user: who.user.to_owned(),
            role: who.role.to_owned(),
            groups: self
                .groups_of(who.user)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            sso_groups: who.groups.to_vec(),
            target: target.name.to_owned(),
            labels: target
                .labels
                .iter()
                .map(|l| l.as_ref().to_owned())
                .collect(),
            action,
            at_unix_secs: now_unix_secs,
            at: describe_utc(now_unix_secs),
            allowed: verdict.is_ok(),
            rule,
            reason: verdict.err().map(|denial| denial.reason),
            message,
            considered,
            grant,
            request: decided.and_then(|_| self.requestable(who, target)),
        }
    }

    /// The denial's text, with the windows and the time when it is about windows.
    fn denial_message(&self, denial: &Denial, decided: Option<usize>, now: i64) -> String {
        match (&denial.reason, decided) {
            (DenyReason::OutsideWindow, Some(i)) => format!(
                "{denial} (open {}; now {})",
                list_with(&self.rules[i].windows, "; "),
                describe_utc(now)
            ),
            _ => denial.to_string(),
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    list_with(items, ", ")
}

fn list_with<T: fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}
