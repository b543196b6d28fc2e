//! The editable form of a policy, shared by the TOML config, the API (JSON) and the web UI.
//!
//! Everything here is plain data with serde defaults, so a minimal rule is just a name, its
//! subjects and its targets; everything a rule does not name is off (deny by default) and
//! recording is required. [`Policy::compile`](crate::Policy::compile) validates a document and
//! turns it into the form decisions are made with.
//!
//! ```toml
//! [groups]
//! vendors = ["victor", "vera"]
//!
//! [[rules]]
//! name = "vendors"
//! subjects = ["group:vendors"]
//! targets = ["label:vendor"]
//! entry = ["browser"]
//! max_duration_secs = 7200
//!
//! [rules.clipboard]
//! direction = "client_to_target"
//!
//! [[rules.windows]]
//! days = ["mon", "tue", "wed", "thu", "fri"]
//! from = "08:00"
//! to = "18:00"
//! utc_offset_minutes = 60
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The clipboard limit a rule gets when it does not name one: 128 KiB.
pub const DEFAULT_CLIPBOARD_MAX_BYTES: u32 = 128 * 1024;

/// A whole policy as an administrator writes it: groups of users and an ordered list of rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Groups defined by the policy itself: group name → user names. Rules refer to them as
    /// `group:<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Vec<String>>,
    /// The rules, in order: for a user and a target, the first rule matching both decides.
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
    /// Risk rules: tune or turn off the built-in ones (by name), add others (see
    /// [`crate::risk`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk: Vec<crate::risk::RiskRuleDoc>,
    /// How long recordings are kept, by target and risk (see [`crate::retention`]); none
    /// matching: the gateway's `[recording] retention_days`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<crate::retention::RetentionDoc>,
}

impl PolicyDoc {
    /// The policy a fresh gateway ships with: one rule, `default`, letting anyone open any
    /// target through the browser or a native client, with text on the clipboard both ways up to
    /// 128 KiB, no files, no file transfer, no printing, no audio, recording required and no time
    /// limits.
    ///
    /// The engine itself still denies by default: an empty document denies everything.
    pub fn default_policy() -> Self {
        let mut rule = RuleDoc::new("default", &["*"], &["*"]);
        rule.description = Some("shipped default: anyone, any target, text clipboard".to_owned());
        rule.clipboard.direction = ClipboardFlow::Both;
        Self {
            groups: BTreeMap::new(),
            rules: vec![rule],
            risk: Vec::new(),
            retention: Vec::new(),
        }
    }
}

/// One rule: which subjects on which targets, and what their sessions may do.
///
/// Field order is the order in TOML (plain values first, then the `clipboard` table and the
/// `windows` array of tables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// A unique, non-empty name: explanations and session records name the rule that decided.
    pub name: String,
    /// Free text for administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who the rule is for: `user:<name>`, `role:<name>`, `group:<name>` or `*` (anyone).
    pub subjects: Vec<String>,
    /// Which targets: `name:<target name>`, `label:<label>` or `*` (any target).
    pub targets: Vec<String>,
    /// Refuses the sessions the rule matches, through any entry path at any time (so `entry`
    /// and `windows` must be left out; the other settings are unused). Useful before a broader
    /// rule, e.g. "vendors never on production" before "vendors on their machines".
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny: bool,
    /// The entry paths a session may come through. Both by default.
    #[serde(default = "Entry::all")]
    pub entry: Vec<Entry>,
    /// Files may be transferred (RDP drive redirection, files on the clipboard): off by default.
    #[serde(default)]
    pub file_transfer: FileTransferMode,
    /// Printer redirection: off unless allowed.
    #[serde(default)]
    pub printing: bool,
    /// Audio redirection: off unless allowed.
    #[serde(default)]
    pub audio: bool,
    /// The longest a session may last, in seconds. No limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<u64>,
    /// A session without input for this long, in seconds, is ended. No limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Whether a session must be recorded: required by default (fail closed: if the recorder
    /// cannot start, the session is refused).
    #[serde(default)]
    pub recording: Recording,
    /// What may cross the clipboard: off by default.
    #[serde(default)]
    pub clipboard: ClipboardDoc,
    /// When sessions may be open. Any time when empty; otherwise the session must start inside
    /// one of them and is ended when the windows close.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowDoc>,
    /// Four eyes: the user's input is held until an observer watches (through the security
    /// team's watch view) and whenever none does; the observer can end the session.
    #[serde(default, skip_serializing_if = "is_false")]
    pub observer_required: bool,
    /// Who counts as an observer (subjects like a rule's); anyone who may watch sessions (the
    /// security team, administrators) when empty. Never the session's own user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<String>,
    /// Access by request only (just in time): the rule's subjects have no standing access to its
    /// targets; they ask for a while, and the approvers named here approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestDoc>,
}

/// Who approves access requests under a rule, how many must, and for how long at most.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDoc {
    /// Who may approve: subjects like a rule's (`user:`, `role:`, `group:`, `sso_group:`, `*`).
    /// Never the requester, whatever this says.
    pub approvers: Vec<String>,
    /// How many different approvers must approve (1 to 10). One by default.
    #[serde(default = "one")]
    pub approvals: u32,
    /// The longest access a request may ask for, in seconds (60 s to 30 days). Four hours by
    /// default.
    #[serde(default = "four_hours")]
    pub max_duration_secs: u64,
}

fn one() -> u32 {
    1
}

fn four_hours() -> u64 {
    4 * 3600
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl RuleDoc {
    /// A rule for `subjects` on `targets` with every other setting at its default: both entry
    /// paths, nothing crosses, recording required, no time limits.
    pub fn new(name: &str, subjects: &[&str], targets: &[&str]) -> Self {
        Self {
            request: None,
            observer_required: false,
            observers: Vec::new(),
            name: name.to_owned(),
            description: None,
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            targets: targets.iter().map(|s| (*s).to_owned()).collect(),
            deny: false,
            entry: Entry::all(),
            file_transfer: FileTransferMode::Off,
            printing: false,
            audio: false,
            max_duration_secs: None,
            idle_timeout_secs: None,
            recording: Recording::Required,
            clipboard: ClipboardDoc::default(),
            windows: Vec::new(),
        }
    }
}

/// The clipboard settings of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipboardDoc {
    /// Which way the clipboard may cross: off by default.
    pub direction: ClipboardFlow,
    /// The largest clipboard content that may cross, in bytes (for files: their total size).
    pub max_bytes: u32,
    /// Files may cross on the clipboard too, not only text. Files are a file transfer as well, so
    /// `file_transfer` must also allow their direction.
    pub files: bool,
}

impl Default for ClipboardDoc {
    fn default() -> Self {
        Self {
            direction: ClipboardFlow::Off,
            max_bytes: DEFAULT_CLIPBOARD_MAX_BYTES,
            files: false,
        }
    }
}

/// A weekly time window in a fixed UTC offset (no daylight saving: adjust the offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDoc {
    /// The days the window opens on (for a window crossing midnight: the day it starts). Every
    /// day by default.
    #[serde(default = "Weekday::all")]
    pub days: Vec<Weekday>,
    /// Opening time, `HH:MM` local (00:00 to 23:59).
    pub from: String,
    /// Closing time, `HH:MM` local (00:00 to 24:00). At or before `from`, the window crosses
    /// midnight and closes the next day (`from` = `to` is 24 hours).
    pub to: String,
    /// The local time's offset from UTC in minutes (-840 to 840). UTC by default.
    #[serde(default)]
    pub utc_offset_minutes: i16,
}

/// How a session reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// The web viewer.
    Browser,
    /// A native client (mstsc, FreeRDP) on the gateway's RDP listener.
    Native,
}

impl Entry {
    /// Both entry paths.
    pub fn all() -> Vec<Entry> {
        vec![Entry::Browser, Entry::Native]
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entry::Browser => "the browser",
            Entry::Native => "a native client",
        })
    }
}

/// Which way a rule lets the clipboard cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipboardFlow {
    /// Nothing crosses.
    #[default]
    Off,
    /// Only from the user's machine into the target (paste into the target).
    ClientToTarget,
    /// Only from the target to the user's machine (copy out of the target).
    TargetToClient,
    /// Both ways.
    Both,
}

impl ClipboardFlow {
    /// True when content may cross in `direction`.
    pub fn allows(self, direction: Direction) -> bool {
        match self {
            ClipboardFlow::Off => false,
            ClipboardFlow::ClientToTarget => direction == Direction::ClientToTarget,
            ClipboardFlow::TargetToClient => direction == Direction::TargetToClient,
            ClipboardFlow::Both => true,
        }
    }
}

impl fmt::Display for ClipboardFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClipboardFlow::Off => "clipboard off",
            ClipboardFlow::ClientToTarget => "client→target only",
            ClipboardFlow::TargetToClient => "target→client only",
            ClipboardFlow::Both => "both ways",
        })
    }
}

/// Which way a rule lets files cross (RDP drive redirection, files on the clipboard).
///
/// VNC file-transfer extensions are refused by the gateway whatever the policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileTransferMode {
    /// No files cross.
    #[default]
    Off,
    /// Only from the user's machine to the target.
    Upload,
    /// Only from the target to the user's machine.
    Download,
    /// Both ways.
    Both,
}

impl FileTransferMode {
    /// True when files may cross in `direction`.
    pub fn allows(self, direction: Direction) -> bool {
        match self {
            FileTransferMode::Off => false,
            FileTransferMode::Upload => direction == Direction::ClientToTarget,
            FileTransferMode::Download => direction == Direction::TargetToClient,
            FileTransferMode::Both => true,
        }
    }
}

impl fmt::Display for FileTransferMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileTransferMode::Off => "file transfer off",
            FileTransferMode::Upload => "upload only",
            FileTransferMode::Download => "download only",
            FileTransferMode::Both => "upload and download",
        })
    }
}

/// Whether sessions under a rule must be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recording {
    /// The session is refused when it cannot be recorded.
    #[default]
    Required,
    /// The session goes on unrecorded when the recorder cannot start.
    Optional,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Monday to Sunday.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Every day, Monday to Sunday (the default of [`WindowDoc::days`]).
    pub fn all() -> Vec<Weekday> {
        Self::ALL.to_vec()
    }

    /// Monday = 0 … Sunday = 6.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The three-letter name used in documents (`mon`).
    pub fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way something crosses between the user's machine and the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the user's machine into the target (paste, upload).
    ClientToTarget,
    /// From the target to the user's machine (copy, download).
    TargetToClient,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ClientToTarget => "client→target",
            Direction::TargetToClient => "target→client",
        })
    }
}
