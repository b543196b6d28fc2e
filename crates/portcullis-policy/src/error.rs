//! Why a policy document does not compile.

use std::fmt;

use thiserror::Error;

/// A problem in a policy document, located by rule (or group) and field, e.g.
/// `rule "vendors": subjects[1]: unknown prefix "usr" (expected user:, role:, group:, sso_group: or *)`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// A field of a rule is invalid.
    #[error("{}: {field}: {problem}", RuleLabel(*.index, .name))]
    Rule {
        /// The rule's position in the document.
        index: usize,
        /// The rule's name (possibly the empty name that is the problem).
        name: String,
        /// The field, as a path inside the rule: `subjects[1]`, `windows[0].from`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A risk rule is invalid.
    #[error("risk rule \"{name}\": {field}: {problem}")]
    Risk {
        /// Its position in the document's `risk` list.
        index: usize,
        /// Its name.
        name: String,
        /// The field: `pattern`, `score`, `targets`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A retention entry is invalid.
    #[error("retention \"{name}\": {field}: {problem}")]
    Retention {
        /// Its position in the document's `retention` list.
        index: usize,
        /// Its name.
        name: String,
        /// The field: `name`, `days`, `min_risk`, `targets[1]`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A group definition is invalid.
    #[error("group \"{group}\": {field}: {problem}")]
    Group {
        /// The group's name.
        group: String,
        /// The field: `name` or `members[2]`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// Names a rule in a message: by name, or by position when it has none.
struct RuleLabel<'a>(usize, &'a str);

impl fmt::Display for RuleLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_empty() {
            write!(f, "rules[{}]", self.0)
        } else {
            write!(f, "rule \"{}\"", self.1)
        }
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// A name that must be given is empty.
    #[error("must not be empty")]
    EmptyName,
    /// Another rule already has this name.
    #[error("already used by rules[{first}]")]
    DuplicateName {
        /// The position of the first rule with the name.
        first: usize,
    },
    /// A rule without subjects would match nobody.
    #[error("empty (use \"*\" for anyone)")]
    NoSubjects,
    /// A rule without targets would match nothing.
    #[error("empty (use \"*\" for any target)")]
    NoTargets,
    /// A rule allowing no entry path could never open a session.
    #[error("empty (use deny = true for a rule that refuses)")]
    NoEntry,
    /// Entry paths or windows on a `deny` rule, which refuses whatever the entry path and time
    /// (it cannot let the decision fall through to a later rule).
    #[error("not allowed in a deny rule (it refuses through any entry path at any time)")]
    UnusedByDenyRule,
    /// A time window on no day would never open.
    #[error("empty (leave days out for every day)")]
    NoDays,
    /// A subject without a `prefix:`.
    #[error("\"{0}\" has no prefix (expected user:, role:, group:, sso_group: or *)")]
    SubjectWithoutPrefix(String),
    /// A subject with a prefix other than `user:`, `role:` or `group:`.
    #[error("unknown prefix \"{0}\" (expected user:, role:, group:, sso_group: or *)")]
    UnknownSubjectPrefix(String),
    /// A target without a `prefix:`.
    #[error("\"{0}\" has no prefix (expected name:, label: or *)")]
    TargetWithoutPrefix(String),
    /// A target with a prefix other than `name:` or `label:`.
    #[error("unknown prefix \"{0}\" (expected name:, label: or *)")]
    UnknownTargetPrefix(String),
    /// Nothing after a prefix (`user:`).
    #[error("nothing after \"{0}:\"")]
    EmptyValue(String),
    /// A name with leading or trailing white space, which would never match.
    #[error("\"{0}\" has leading or trailing white space")]
    WhiteSpace(String),
    /// A `group:` naming a group the policy does not define.
    #[error("undefined group \"{0}\"")]
    UndefinedGroup(String),
    /// A time that is not `HH:MM` in range.
    #[error("invalid time \"{0}\" (expected HH:MM from 00:00 to 23:59, or 24:00 as the end)")]
    BadTime(String),
    /// A UTC offset beyond ±14 hours.
    #[error("{0} minutes is out of range (-840 to 840)")]
    OffsetOutOfRange(i16),
    /// Observers named by a rule that requires none.
    #[error("names observers, but observer_required is not set")]
    ObserversWithoutFourEyes,
    /// A number outside what the field allows.
    #[error("must be from {min} to {max}")]
    OutOfRange {
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A limit of zero, which would deny everything it limits.
    #[error("must be more than 0")]
    Zero,
    /// A clipboard limit of zero while the clipboard is on.
    #[error("must be more than 0 while the clipboard is on")]
    ZeroClipboardLimit,
    /// A risk rule's name with other characters than letters, digits, `_` and `-`, or too long.
    #[error("\"{0}\" must be 1 to 64 letters, digits, _ or -")]
    BadRiskName(String),
    /// Another risk rule of the document has this name.
    #[error("already used by another risk rule")]
    DuplicateRiskName,
    /// Another retention entry of the document has this name.
    #[error("already used by another retention entry")]
    DuplicateRetentionName,
    /// A retention longer than [`crate::retention::MAX_RETENTION_DAYS`].
    #[error("{0} days is more than the 36500 allowed")]
    RetentionTooLong(u32),
    /// A risk score outside 0 to 100.
    #[error("{0} is out of range (0 to 100)")]
    RiskOutOfRange(u32),
    /// A risk rule that is not a built-in one without a pattern.
    #[error("a rule of its own needs a pattern")]
    MissingPattern,
    /// A pattern the regular expression engine refuses (or too large once compiled).
    #[error("not a valid regular expression: {0}")]
    BadPattern(String),
    /// A behaviour rule given a pattern or sources, or a pattern rule given `behaviour`.
    #[error("behaviour rules (first_time_target, new_source_address, off_hours, long_session, clipboard_volume, file_volume) take no pattern and no sources; pattern rules do not look at behaviour")]
    BehaviourRule,
    /// `limit_bytes` on a rule that counts no bytes.
    #[error("only the volume rules (clipboard_volume, file_volume) take a limit")]
    NotAVolumeRule,
    /// A risk rule checked against no text.
    #[error("empty (leave it out for every source)")]
    NoSources,
    /// Files allowed on the clipboard while no file transfer is allowed.
    #[error("files on the clipboard need file_transfer to allow a direction")]
    FilesWithoutFileTransfer,
}
