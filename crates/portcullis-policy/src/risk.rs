//! Risk rules: patterns in what a session's user types, pastes and sees that deserve attention,
//! each with a score and what the gateway does when it fires (nothing more than scoring, an alert
//! to the security team, a freeze, or the session's end).
//!
//! The policy document lists them under `[[risk]]`. A built-in set ([`builtin`]: account
//! creation, log clearing, disabling defences, download-and-run, mass deletion) applies unless
//! the document turns a rule off; a document entry with a built-in rule's name tunes it (any
//! field it gives replaces the built-in's), any other name adds a rule.
//!
//! ```toml
//! [[risk]]
//! name = "account_creation"   # built-in: now freezes the session
//! action = "freeze"
//!
//! [[risk]]
//! name = "log_clearing"       # built-in: off
//! enabled = false
//!
//! [[risk]]
//! name = "prod_db_dump"       # a rule of our own, on production machines only
//! pattern = '(?i)\bpg_dumpall\b'
//! on = ["typed"]
//! score = 60
//! action = "kill"
//! targets = ["label:prod"]
//! ```
//!
//! Patterns are regular expressions (the `regex` crate: linear time in the text, no
//! backtracking), bounded in length and compiled size; the whole text is checked (a command
//! after padding is found), and its size is bounded by the caller (a typed line by the line
//! editor, pasted text by the policy's clipboard limit, the screen by what OCR reads).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{PolicyError, Problem};
use crate::target::{parse_target, TargetPattern};

/// The most risk rules a document may have (built-ins included).
pub const MAX_RISK_RULES: usize = 64;
/// The longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The longest excerpt of a match kept with a hit, in characters.
pub const MAX_EXCERPT: usize = 200;
/// A compiled pattern's size limit (the regex crate's), in bytes.
const COMPILED_LIMIT: usize = 1 << 20;

/// Where text seen in a session comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// A command line the user typed (checked when it is submitted with Enter).
    Typed,
    /// Text on the screen (read by OCR).
    Screen,
    /// Text the user pasted into the target.
    Clipboard,
    /// What the user does compared with their own history (behaviour rules: no text).
    Behaviour,
}

impl TextSource {
    /// Every source.
    pub fn all() -> Vec<TextSource> {
        vec![TextSource::Typed, TextSource::Screen, TextSource::Clipboard]
    }

    /// The name used in documents and records.
    pub fn as_str(self) -> &'static str {
        match self {
            TextSource::Typed => "typed",
            TextSource::Screen => "screen",
            TextSource::Clipboard => "clipboard",
            TextSource::Behaviour => "behaviour",
        }
    }
}

impl fmt::Display for TextSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway does when a risk rule fires on a live session. Ordered by severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskAction {
    /// Adds to the session's risk score, nothing else.
    Score,
    /// Also tells the security team at once (console, audit trail, SIEM).
    #[default]
    Alert,
    /// Also holds the user's input (as a security team freeze) until the security team lets
    /// it go; a typed command line is not submitted.
    Freeze,
    /// Also ends the session; a typed command line is not submitted.
    Kill,
}

impl RiskAction {
    /// The name used in documents and records.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskAction::Score => "score",
            RiskAction::Alert => "alert",
            RiskAction::Freeze => "freeze",
            RiskAction::Kill => "kill",
        }
    }

    /// True when the action stops what fired it (the command line is not submitted).
    pub fn stops(self) -> bool {
        self >= RiskAction::Freeze
    }
}

impl fmt::Display for RiskAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One risk rule as the policy document writes it. For a built-in rule's name every field is
/// optional (what is given replaces the built-in's); a new rule needs a `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskRuleDoc {
    /// A unique name (letters, digits, `_`, `-`), named in alerts and reasons.
    pub name: String,
    /// Free text for administrators and reviewers: what the rule is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A regular expression (`(?i)` for case-insensitive), searched anywhere in the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Which texts it is checked against. All by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<TextSource>>,
    /// What a hit adds to the session's risk score (0 to 100). 20 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u32>,
    /// What the gateway does on a hit in a live session. `alert` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RiskAction>,
    /// Which targets it applies to (`name:`, `label:`, `*`). Any by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// The volume rules (`clipboard_volume`, `file_volume`) only: how many bytes one session
    /// may move before the rule fires (1 MiB and 100 MiB by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// False turns the rule (a built-in one, typically) off.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
}

/// The volume rules and their default limits (bytes in one session).
pub const VOLUME: &[(&str, u64)] = &[("clipboard_volume", 1 << 20), ("file_volume", 100 << 20)];

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl RiskRuleDoc {
    /// A rule named `name` with nothing else said (for a built-in: as shipped).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: None,
            pattern: None,
            on: None,
            score: None,
            action: None,
            targets: None,
            limit_bytes: None,
            enabled: true,
        }
    }
}

/// The built-in rules: name, description, pattern, score. Each is checked against typed and
/// pasted text (the screen shows documentation and logs that mention such commands: a document
/// adds `screen` where that is wanted), on any target, and alerts.
const BUILTIN: &[(&str, &str, &str, u32)] = &[
    (
        "account_creation",
        "a local account created or added to the administrators",
        r"(?i)\bnet(\.exe)?\s+(user|localgroup\s+administrators)\b.*\s/add\b|\buseradd\b|\badduser\b|\bNew-LocalUser\b|\busermod\s+.*-a?G\s*\S*\b(sudo|wheel|admin)\b",
        40,
    ),
    (
        "log_clearing",
        "event logs or shell history cleared",
        r"(?i)\bwevtutil(\.exe)?\s+(cl|clear-log)\b|\bClear-EventLog\b|\bhistory\s+-c\b|\bunset\s+HISTFILE\b|\bjournalctl\b.*--vacuum|\brm\s+(-\S+\s+)*/var/log\b|\bshred\b.*/var/log\b|>\s*/var/log/\S+",
        50,
    ),
    (
        "defence_disabling",
        "antivirus, firewall, audit or SELinux turned off",
        r"(?i)\bSet-MpPreference\b.*-Disable\w+\s+(\$true|1)\b|\bsetenforce\s+0\b|\bsystemctl\s+(stop|disable|mask)\s+(auditd|firewalld|apparmor|ufw|falcon-sensor)\b|\bufw\s+disable\b|\bnetsh\s+(adv)?firewall\s+set\s+\S+\s+state\s+off\b|\bauditctl\s+-D\b|\biptables\s+-F\b",
        50,
    ),
    (
        "download_and_run",
        "a script downloaded and run at once",
        r"(?i)\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b|\b(iex|Invoke-Expression)\b.*\b(DownloadString|iwr|Invoke-WebRequest)\b|\b(DownloadString|iwr|Invoke-WebRequest)\b.*\|\s*(iex|Invoke-Expression)\b",
        40,
    ),
    (
        "mass_deletion",
        "a whole file system, home or drive deleted or formatted",
        r#"(?i)\brm\s+(-[a-z]*r[a-z]*f[a-z]*|-[a-z]*f[a-z]*r[a-z]*|(-r\s+-f|-f\s+-r))\s+(--no-preserve-root\s+)?(/|/\*|~/?|\*)(\s|$)|\bdel\s+(/[sqf]\s+)+[a-z]:\\|\bRemove-Item\b.*-Recurse\b.*\s[a-z]:\\?\s*$|\bformat(\.com)?\s+[a-z]:|\bmkfs(\.\w+)?\s"#,
        60,
    ),
];

/// The built-in behaviour rules: what the gateway compares with the user's own history (their
/// sessions' targets, addresses, hours and lengths, learned as sessions end). Name,
/// description, score; each only scores (tune `action` to alert), on any target. They fire once
/// the user has a history of at least a few sessions.
pub const BEHAVIOUR: &[(&str, &str, u32)] = &[
    (
        "first_time_target",
        "the user's first session on this target",
        15,
    ),
    (
        "new_source_address",
        "the user connects from an address not seen before",
        15,
    ),
    (
        "off_hours",
        "the session starts at an hour the user rarely works",
        10,
    ),
    (
        "long_session",
        "the session runs far longer than the user's usual",
        20,
    ),
    (
        "clipboard_volume",
        "more than 1 MiB of clipboard text crossed in one session",
        15,
    ),
    (
        "file_volume",
        "more than 100 MiB of files crossed in one session",
        20,
    ),
];

/// The built-in rules as documents (what a document's entries of the same name tune): the
/// pattern rules, then the behaviour rules.
pub fn builtin() -> Vec<RiskRuleDoc> {
    let patterns = BUILTIN
        .iter()
        .map(|(name, description, pattern, score)| RiskRuleDoc {
            name: (*name).to_owned(),
            description: Some((*description).to_owned()),
            pattern: Some((*pattern).to_owned()),
            on: Some(vec![TextSource::Typed, TextSource::Clipboard]),
            score: Some(*score),
            action: Some(RiskAction::Alert),
            targets: Some(vec!["*".to_owned()]),
            limit_bytes: None,
            enabled: true,
        });
    let behaviour = BEHAVIOUR
        .iter()
        .map(|(name, description, score)| RiskRuleDoc {
            name: (*name).to_owned(),
            description: Some((*description).to_owned()),
            pattern: None,
            on: Some(vec![TextSource::Behaviour]),
            score: Some(*score),
            action: Some(RiskAction::Score),
            targets: Some(vec!["*".to_owned()]),
            limit_bytes: VOLUME
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, limit)| *limit),
            enabled: true,
        });
    patterns.chain(behaviour).collect()
}

fn is_behaviour(name: &str) -> bool {
    BEHAVIOUR.iter().any(|(n, _, _)| *n == name)
}

/// A compiled risk rule.
#[derive(Debug)]
pub struct RiskRule {
    name: Arc<str>,
    description: String,
    /// `None` for a behaviour rule.
    pattern: Option<regex::Regex>,
    on: Vec<TextSource>,
    score: u32,
    action: RiskAction,
    targets: Vec<TargetPattern>,
    /// A volume rule's limit (bytes in one session).
    limit_bytes: Option<u64>,
}

impl RiskRule {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it is about.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// What a hit adds to the score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// What the gateway does on a hit.
    pub fn action(&self) -> RiskAction {
        self.action
    }

    fn applies_to<L: AsRef<str>>(&self, name: &str, labels: &[L]) -> bool {
        self.targets.iter().any(|p| p.matches(name, labels))
    }
}

/// A rule that fired: which, on what text, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskHit {
    /// The rule's name.
    pub rule: String,
    /// What it is about.
    pub description: String,
    /// The text's source.
    pub source: TextSource,
    /// What a hit adds to the score.
    pub score: u32,
    /// What the gateway does.
    pub action: RiskAction,
    /// The matching text (at most [`MAX_EXCERPT`] characters).
    pub excerpt: String,
}

/// The risk rules that apply to one session (its target's): what a grant carries.
#[derive(Debug, Clone, Default)]
pub struct RiskSet {
    rules: Vec<Arc<RiskRule>>,
}

impl PartialEq for RiskSet {
    fn eq(&self, other: &Self) -> bool {
        self.rules.len() == other.rules.len()
            && self.rules.iter().zip(&other.rules).all(|(a, b)| {
                a.name == b.name
                    && a.pattern.as_ref().map(regex::Regex::as_str)
                        == b.pattern.as_ref().map(regex::Regex::as_str)
                    && a.on == b.on
                    && a.score == b.score
                    && a.action == b.action
            })
    }
}

impl Eq for RiskSet {}

impl RiskSet {
    /// True when no rule applies.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in document order.
    pub fn rules(&self) -> impl Iterator<Item = &RiskRule> {
        self.rules.iter().map(AsRef::as_ref)
    }

    /// True when some rule looks at text from `source` (so the caller need not gather it).
    pub fn watches(&self, source: TextSource) -> bool {
        self.rules
            .iter()
            .any(|r| r.pattern.is_some() && r.on.contains(&source))
    }

    /// The hit of behaviour rule `rule` (see [`BEHAVIOUR`]), with `detail` as its excerpt;
    /// `None` when it is off or does not apply to this session's target.
    pub fn behaviour(&self, rule: &str, detail: &str) -> Option<RiskHit> {
        let r = self
            .rules
            .iter()
            .find(|r| r.pattern.is_none() && *r.name == *rule)?;
        Some(RiskHit {
            rule: r.name.to_string(),
            description: r.description.clone(),
            source: TextSource::Behaviour,
            score: r.score,
            action: r.action,
            excerpt: detail.chars().take(MAX_EXCERPT).collect(),
        })
    }

    /// The limit (bytes in one session) of volume rule `rule` (see [`VOLUME`]); `None` when it
    /// is off or does not apply to this session's target.
    pub fn volume_limit(&self, rule: &str) -> Option<u64> {
        self.rules
            .iter()
            .find(|r| r.pattern.is_none() && *r.name == *rule)
            .and_then(|r| r.limit_bytes)
    }

    /// The rules that fire on `text` from `source`, most severe action first.
    pub fn check(&self, source: TextSource, text: &str) -> Vec<RiskHit> {
        let mut hits: Vec<RiskHit> = self
            .rules
            .iter()
            .filter(|r| r.on.contains(&source))
            .filter_map(|r| {
                let m = r.pattern.as_ref()?.find(text)?;
                Some(RiskHit {
                    rule: r.name.to_string(),
                    description: r.description.clone(),
                    source,
                    score: r.score,
                    action: r.action,
                    excerpt: m.as_str().chars().take(MAX_EXCERPT).collect(),
                })
            })
            .collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.action));
        hits
    }
}

/// A rule's name: 1 to 64 of letters, digits, `_` and `-`.
pub(crate) fn check_rule_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::EmptyName);
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Problem::BadRiskName(name.to_owned()));
    }
    Ok(())
}

/// The document's risk rules merged over the built-ins, compiled; each problem is added to
/// `problems` and its rule left out.
pub(crate) fn compile(docs: &[RiskRuleDoc], problems: &mut Vec<PolicyError>) -> Vec<Arc<RiskRule>> {
    let mut merged = builtin();
    let builtins = merged.len();
    for (i, doc) in docs.iter().enumerate() {
        let mut report = |field: &str, problem: Problem| {
            problems.push(PolicyError::Risk {
                index: i,
                name: doc.name.clone(),
                field: field.to_owned(),
                problem,
            });
        };
        if let Err(problem) = check_rule_name(&doc.name) {
            report("name", problem);
            continue;
        }
        if docs[..i].iter().any(|d| d.name == doc.name) {
            report("name", Problem::DuplicateRiskName);
            continue;
        }
        if is_behaviour(&doc.name) && (doc.pattern.is_some() || doc.on.is_some()) {
            report(
                if doc.pattern.is_some() {
                    "pattern"
                } else {
                    "on"
                },
                Problem::BehaviourRule,
            );
            continue;
        }
        if doc.limit_bytes.is_some() && !VOLUME.iter().any(|(n, _)| *n == doc.name) {
            report("limit_bytes", Problem::NotAVolumeRule);
            continue;
        }
        if doc.limit_bytes == Some(0) {
            report(
                "limit_bytes",
                Problem::OutOfRange {
                    min: 1,
                    max: u64::MAX,
                },
            );
            continue;
        }
        match merged[..builtins].iter_mut().find(|b| b.name == doc.name) {
            Some(base) => {
                let base_doc = base.clone();
                *base = RiskRuleDoc {
                    name: doc.name.clone(),
                    description: doc.description.clone().or(base_doc.description),
                    pattern: doc.pattern.clone().or(base_doc.pattern),
                    on: doc.on.clone().or(base_doc.on),
                    score: doc.score.or(base_doc.score),
                    action: doc.action.or(base_doc.action),
                    targets: doc.targets.clone().or(base_doc.targets),
                    limit_bytes: doc.limit_bytes.or(base_doc.limit_bytes),
                    enabled: doc.enabled,
                };
            }
            None if doc.pattern.is_none() => {
                report("pattern", Problem::MissingPattern);
            }
            None => merged.push(doc.clone()),
        }
    }
    if merged.len() > MAX_RISK_RULES {
        problems.push(PolicyError::Risk {
            index: docs.len().saturating_sub(1),
            name: String::new(),
            field: "risk".to_owned(),
            problem: Problem::OutOfRange {
                min: 0,
                max: MAX_RISK_RULES as u64,
            },
        });
        merged.truncate(MAX_RISK_RULES);
    }
    merged
        .iter()
        .filter(|d| d.enabled)
        .filter_map(|d| {
            let index = docs.iter().position(|x| x.name == d.name).unwrap_or(0);
            compile_one(d)
                .map_err(|(field, problem)| {
                    problems.push(PolicyError::Risk {
                        index,
                        name: d.name.clone(),
                        field: field.to_owned(),
                        problem,
                    });
                })
                .ok()
        })
        .map(Arc::new)
        .collect()
}

fn compile_one(doc: &RiskRuleDoc) -> Result<RiskRule, (&'static str, Problem)> {
    let pattern = if is_behaviour(&doc.name) {
        None
    } else {
        Some(compile_pattern(doc)?)
    };
    let on = doc.on.clone().unwrap_or_else(TextSource::all);
    if on.is_empty() {
        return Err(("on", Problem::NoSources));
    }
    if pattern.is_some() && on.contains(&TextSource::Behaviour) {
        return Err(("on", Problem::BehaviourRule));
    }
    let score = doc.score.unwrap_or(20);
    if score > 100 {
        return Err(("score", Problem::OutOfRange { min: 0, max: 100 }));
    }
    let target_strings = doc.targets.clone().unwrap_or_else(|| vec!["*".to_owned()]);
    if target_strings.is_empty() {
        return Err(("targets", Problem::NoTargets));
    }
    let mut targets = Vec::with_capacity(target_strings.len());
    for t in &target_strings {
        targets.push(parse_target(t).map_err(|p| ("targets", p))?);
    }
    Ok(RiskRule {
        name: doc.name.as_str().into(),
        description: doc.description.clone().unwrap_or_default(),
        pattern,
        on,
        score,
        action: doc.action.unwrap_or_default(),
        targets,
        limit_bytes: doc.limit_bytes,
    })
}

fn compile_pattern(doc: &RiskRuleDoc) -> Result<regex::Regex, (&'static str, Problem)> {
    let source = doc.pattern.as_deref().unwrap_or_default();
    if source.is_empty() {
        return Err(("pattern", Problem::MissingPattern));
    }
    if source.len() > MAX_PATTERN_LEN {
        return Err((
            "pattern",
            Problem::OutOfRange {
                min: 1,
                max: MAX_PATTERN_LEN as u64,
            },
        ));
    }
    regex::RegexBuilder::new(source)
        .size_limit(COMPILED_LIMIT)
        .dfa_size_limit(COMPILED_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| ("pattern", Problem::BadPattern(first_line(&e.to_string()))))
}

/// The regex crate's message without its pointer lines, at most 300 characters.
fn first_line(message: &str) -> String {
    let line = message
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("error:"))
        .unwrap_or_else(|| message.lines().next().unwrap_or(""));
    line.trim().chars().take(300).collect()
}

/// The rules of `all` that apply to the target called `name` with `labels`.
pub(crate) fn for_target<L: AsRef<str>>(
    all: &[Arc<RiskRule>],
    name: &str,
    labels: &[L],
) -> RiskSet {
    RiskSet {
        rules: all
            .iter()
            .filter(|r| r.applies_to(name, labels))
            .cloned()
            .collect(),
    }
}
