//! The compiled policy and its decisions.
//!
//! Compiling maps every user, role, target name and label that a rule mentions to a bitset of
//! the rules mentioning it (groups are expanded to their users), plus one bitset each for the
//! rules with `*` subjects and `*` targets. The first rule matching a user on a target is then the
//! lowest bit of `(any subject | user's rules | role's rules | SSO groups' rules) & (any target |
//! name's rules | labels' rules)`: a handful of hash lookups and bit operations, whatever the
//! number of rules, and no allocation (but one bitset for a subject in identity provider groups).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::decision::{
    Denial, DenyReason, Requestable, SessionDecision, SessionGrant, Subject, TargetRef, Terms,
};
use crate::doc::{ClipboardFlow, Entry, FileTransferMode, PolicyDoc, Recording, RuleDoc};
use crate::error::{PolicyError, Problem};
use crate::target::{check_name, check_value, parse_target, TargetPattern};
use crate::window::{self, Window, WindowState};

/// A validated policy, ready to decide. Cheap to share (`Arc<Policy>`) and immutable: to change
/// the policy, compile a new one and swap it in.
#[derive(Debug, Clone)]
pub struct Policy {
    doc: PolicyDoc,
    pub(crate) rules: Vec<Rule>,
    /// Words per bitset: one bit per rule.
    words: usize,
    any_subject: Vec<u64>,
    any_target: Vec<u64>,
    users: Index,
    roles: Index,
    /// Identity provider groups (`sso_group:`).
    sso_groups: Index,
    names: Index,
    labels: Index,
    /// The risk rules (built-ins as tuned, and the document's own), enabled ones only.
    risk: Vec<Arc<crate::risk::RiskRule>>,
    /// The retention entries, in order.
    retention: Vec<crate::retention::Retention>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    pub(crate) subjects: Vec<SubjectPattern>,
    pub(crate) targets: Vec<TargetPattern>,
    pub(crate) deny: bool,
    pub(crate) browser: bool,
    pub(crate) native: bool,
    pub(crate) terms: Terms,
    pub(crate) windows: Vec<Window>,
    /// Access by request only: who approves.
    pub(crate) request: Option<RequestTerms>,
    /// Four eyes: an observer must watch; who counts as one (anyone who may watch when empty).
    pub(crate) observers: Option<Vec<SubjectPattern>>,
}

/// A rule's terms for access requests, compiled.
#[derive(Debug, Clone)]
pub(crate) struct RequestTerms {
    pub(crate) approvers: Vec<SubjectPattern>,
    pub(crate) approvals: u32,
    pub(crate) max_duration_secs: u64,
}

/// A parsed subject string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubjectPattern {
    Any,
    User(String),
    Role(String),
    Group(String),
    /// A group of the identity provider (single sign-on users).
    SsoGroup(String),
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectPattern::Any => f.write_str("*"),
            SubjectPattern::User(u) => write!(f, "user:{u}"),
            SubjectPattern::Role(r) => write!(f, "role:{r}"),
            SubjectPattern::Group(g) => write!(f, "group:{g}"),
            SubjectPattern::SsoGroup(g) => write!(f, "sso_group:{g}"),
        }
    }
}

/// Keys (user names, roles, target names or labels) → bitset of the rules mentioning them.
#[derive(Debug, Clone, Default)]
struct Index {
    rows: HashMap<Box<str>, usize>,
    /// Row-major: row `r` is `bits[r * words..(r + 1) * words]`.
    bits: Vec<u64>,
}

impl Index {
    fn insert(&mut self, key: &str, rule: usize, words: usize) {
        let next = self.rows.len();
        let row = *self.rows.entry(key.into()).or_insert(next);
        if row == next {
            self.bits.resize((row + 1) * words, 0);
        }
        set_bit(&mut self.bits[row * words..(row + 1) * words], rule);
    }

    fn row(&self, key: &str, words: usize) -> Option<&[u64]> {
        let row = *self.rows.get(key)?;
        self.bits.get(row * words..(row + 1) * words)
    }
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

/// The rows one decision reads, looked up once.
pub(crate) struct Lookup<'p, 'a, L> {
    policy: &'p Policy,
    user: Option<&'p [u64]>,
    role: Option<&'p [u64]>,
    /// The rules of the subject's identity provider groups, OR-ed (none without groups).
    groups: Option<Vec<u64>>,
    name: Option<&'p [u64]>,
    labels: &'a [L],
}

impl<L: AsRef<str>> Lookup<'_, '_, L> {
    /// Bit `i` set: rule `64 * word + i` matches the subject.
    fn subject_word(&self, word: usize) -> u64 {
        let mut bits = self.policy.any_subject[word];
        if let Some(row) = self.user {
            bits |= row[word];
        }
        if let Some(row) = self.role {
            bits |= row[word];
        }
        if let Some(row) = &self.groups {
            bits |= row[word];
        }
        bits
    }

    /// Bit `i` set: rule `64 * word + i` matches the target.
    fn target_word(&self, word: usize) -> u64 {
        let p = self.policy;
        let mut bits = p.any_target[word];
        if let Some(row) = self.name {
            bits |= row[word];
        }
        for label in self.labels {
            if let Some(row) = p.labels.row(label.as_ref(), p.words) {
                bits |= row[word];
            }
        }
        bits
    }

    /// The first rule matching both, if any.
    pub(crate) fn first_match(&self) -> Option<usize> {
        (0..self.policy.words).find_map(|word| {
            let subject = self.subject_word(word);
            if subject == 0 {
                return None;
            }
            let both = subject & self.target_word(word);
            // trailing_zeros of a non-zero u64 is below 64.
            (both != 0).then(|| word * 64 + both.trailing_zeros() as usize)
        })
    }

    /// Whether rule `i` matches the subject, and the target.
    pub(crate) fn matches(&self, i: usize) -> (bool, bool) {
        let bit = 1 << (i % 64);
        (
            self.subject_word(i / 64) & bit != 0,
            self.target_word(i / 64) & bit != 0,
        )
    }
}

impl Policy {
    /// Validates `doc` and compiles it. The error is the first problem found; use
    /// [`PolicyDoc::problems`] to list them all.
    pub fn compile(doc: &PolicyDoc) -> Result<Policy, PolicyError> {
        let mut problems = Vec::new();
        let policy = build(doc, &mut problems);
        match problems.into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(policy),
        }
    }

    /// The empty policy: no rules, so every session is denied. What a gateway falls back to when
    /// it has no valid policy (fail closed).
    pub fn deny_all() -> Policy {
        build(&PolicyDoc::default(), &mut Vec::new())
    }

    /// How long a recording of `target` (with `labels`) whose session scored `risk_score` is
    /// kept: the first `[[retention]]` entry matching both; `None`: the gateway's default.
    pub fn retention_for<L: AsRef<str>>(
        &self,
        target: &str,
        labels: &[L],
        risk_score: u32,
    ) -> Option<crate::retention::RetentionChoice> {
        crate::retention::choose(&self.retention, target, labels, risk_score)
    }

    /// The document this policy was compiled from.
    pub fn doc(&self) -> &PolicyDoc {
        &self.doc
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the policy has no rules (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// May `who` open a session on `target` through `entry` at `now_unix_secs`?
    ///
    /// The first rule matching both the user and the target decides: a `deny` rule refuses, then
    /// the entry path and the time windows are checked. No matching rule: denied. Allowed
    /// decisions and denials by a rule do not allocate.
    pub fn session<L: AsRef<str>>(
        &self,
        who: &Subject<'_>,
        target: &TargetRef<'_, L>,
        entry: Entry,
        now_unix_secs: i64,
    ) -> SessionDecision {
        match self.lookup(who, target).first_match() {
            Some(i) => self.decide(i, Some(entry), now_unix_secs),
            None => SessionDecision::Denied(no_rule(who, target)),
        }
    }

    pub(crate) fn lookup<'p, 'a, L>(
        &'p self,
        who: &Subject<'_>,
        target: &TargetRef<'a, L>,
    ) -> Lookup<'p, 'a, L> {
        Lookup {
            policy: self,
            user: self.users.row(who.user, self.words),
            role: self.roles.row(who.role, self.words),
            groups: self.sso_group_rows(who.groups),
            name: self.names.row(target.name, self.words),
            labels: target.labels,
        }
    }

    /// The rules mentioning any of `groups`, OR-ed; `None` when none does.
    fn sso_group_rows(&self, groups: &[String]) -> Option<Vec<u64>> {
        let mut rows = groups
            .iter()
            .filter_map(|g| self.sso_groups.row(g, self.words))
            .peekable();
        rows.peek()?;
        let mut bits = vec![0; self.words];
        for row in rows {
            for (b, r) in bits.iter_mut().zip(row) {
                *b |= r;
            }
        }
        Some(bits)
    }

    /// Rule `i`'s decision; `entry` is `None` for a crossing inside a session, where the entry
    /// path was checked at the opening.
    pub(crate) fn decide(&self, i: usize, entry: Option<Entry>, now: i64) -> SessionDecision {
        let rule = &self.rules[i];
        let deny = |reason| {
            SessionDecision::Denied(Denial {
                rule: Some(Arc::clone(&rule.name)),
                reason,
            })
        };
        if rule.deny {
            return deny(DenyReason::DenyRule);
        }
        if let Some(entry) = entry {
            let allowed = match entry {
                Entry::Browser => rule.browser,
                Entry::Native => rule.native,
            };
            if !allowed {
                return deny(DenyReason::EntryNotAllowed { entry });
            }
        }
        let window_ends_at_unix_secs = match window::state(&rule.windows, window::clamp_time(now)) {
            WindowState::Closed => return deny(DenyReason::OutsideWindow),
            WindowState::Open { ends_at } => ends_at,
        };
        SessionDecision::Allowed(SessionGrant {
            rule: Arc::clone(&rule.name),
            rule_index: i,
            window_ends_at_unix_secs,
            request_only: rule.request.is_some(),
            observer_required: rule.observers.is_some(),
            note: None,
            risk: crate::risk::RiskSet::default(),
            terms: rule.terms.clone(),
        })
    }

    /// The risk rules that apply to sessions on `target` (for [`SessionGrant::with_risk`]).
    pub fn risk_for<L: AsRef<str>>(&self, target: &TargetRef<'_, L>) -> crate::risk::RiskSet {
        crate::risk::for_target(&self.risk, target.name, target.labels)
    }

    /// What `who` may request on `target`: the first rule matching both, when it gives access by
    /// request (`None`: no rule, a deny rule, or a rule of standing access).
    pub fn requestable<L: AsRef<str>>(
        &self,
        who: &Subject<'_>,
        target: &TargetRef<'_, L>,
    ) -> Option<Requestable> {
        let i = self.lookup(who, target).first_match()?;
        let rule = &self.rules[i];
        let terms = rule.request.as_ref().filter(|_| !rule.deny)?;
        Some(Requestable {
            rule: rule.name.to_string(),
            approvers: terms.approvers.iter().map(ToString::to_string).collect(),
            approvals: terms.approvals,
            max_duration_secs: terms.max_duration_secs,
        })
    }

    /// Whether `approver` is one of the approvers of rule `rule` (by name). Whether they are the
    /// requester is the caller's to refuse.
    pub fn may_approve(&self, rule: &str, approver: &Subject<'_>) -> bool {
        let Some(terms) = self
            .rules
            .iter()
            .find(|r| &*r.name == rule)
            .and_then(|r| r.request.as_ref())
        else {
            return false;
        };
        self.names_subject(&terms.approvers, approver)
    }

    /// Whether `watcher` counts as an observer of sessions under rule `rule` (by name): the
    /// rule requires one and names them (or names none: anyone who may watch counts). Whether
    /// they may watch at all, and are not the session's user, is the caller's to check.
    pub fn may_observe(&self, rule: &str, watcher: &Subject<'_>) -> bool {
        match self
            .rules
            .iter()
            .find(|r| &*r.name == rule)
            .and_then(|r| r.observers.as_ref())
        {
            Some(named) if named.is_empty() => true,
            Some(named) => self.names_subject(named, watcher),
            None => false,
        }
    }

    /// Whether any of `patterns` matches `who`.
    fn names_subject(&self, patterns: &[SubjectPattern], who: &Subject<'_>) -> bool {
        let approver = who;
        patterns.iter().any(|p| match p {
            SubjectPattern::Any => true,
            SubjectPattern::User(u) => u == approver.user,
            SubjectPattern::Role(r) => r == approver.role,
            SubjectPattern::Group(g) => self
                .doc
                .groups
                .get(g)
                .is_some_and(|members| members.iter().any(|m| m == approver.user)),
            SubjectPattern::SsoGroup(g) => approver.groups.iter().any(|m| m == g),
        })
    }

    /// The groups (defined in the policy) that `user` belongs to, in name order.
    pub fn groups_of(&self, user: &str) -> Vec<&str> {
        self.doc
            .groups
            .iter()
            .filter(|(_, members)| members.iter().any(|m| m == user))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The first pattern of rule `i` that matches `who`, for explanations.
    pub(crate) fn subject_pattern(&self, i: usize, who: &Subject<'_>) -> Option<String> {
        self.rules[i]
            .subjects
            .iter()
            .find(|p| match p {
                SubjectPattern::Any => true,
                SubjectPattern::User(u) => u == who.user,
                SubjectPattern::Role(r) => r == who.role,
                SubjectPattern::Group(g) => self
                    .doc
                    .groups
                    .get(g)
                    .is_some_and(|members| members.iter().any(|m| m == who.user)),
                SubjectPattern::SsoGroup(g) => who.groups.iter().any(|m| m == g),
            })
            .map(ToString::to_string)
    }

    /// The first pattern of rule `i` that matches `target`, for explanations.
    pub(crate) fn target_pattern<L: AsRef<str>>(
        &self,
        i: usize,
        target: &TargetRef<'_, L>,
    ) -> Option<String> {
        self.rules[i]
            .targets
            .iter()
            .find(|p| p.matches(target.name, target.labels))
            .map(ToString::to_string)
    }
}

/// The denial when no rule matches. The only decision that allocates: it names the user and the
/// target.
pub(crate) fn no_rule<L>(who: &Subject<'_>, target: &TargetRef<'_, L>) -> Denial {
    Denial {
        rule: None,
        reason: DenyReason::NoRule {
            user: who.user.to_owned(),
            target: target.name.to_owned(),
        },
    }
}

impl PolicyDoc {
    /// Every problem in the document (empty when it compiles).
    pub fn problems(&self) -> Vec<PolicyError> {
        let mut problems = Vec::new();
        build(self, &mut problems);
        problems
    }
}

/// Compiles `doc`, adding each problem to `problems` and leaving out what is invalid.
fn build(doc: &PolicyDoc, problems: &mut Vec<PolicyError>) -> Policy {
    check_groups(&doc.groups, problems);
    let words = doc.rules.len().div_ceil(64);
    let mut policy = Policy {
        doc: doc.clone(),
        rules: Vec::with_capacity(doc.rules.len()),
        words,
        any_subject: vec![0; words],
        any_target: vec![0; words],
        users: Index::default(),
        roles: Index::default(),
        sso_groups: Index::default(),
        names: Index::default(),
        labels: Index::default(),
        risk: Vec::new(),
        retention: Vec::new(),
    };
    let mut first_with_name: HashMap<&str, usize> = HashMap::new();
    for (i, rule_doc) in doc.rules.iter().enumerate() {
        let mut report = |field: String, problem: Problem| {
            problems.push(PolicyError::Rule {
                index: i,
                name: rule_doc.name.clone(),
                field,
                problem,
            });
        };
        if rule_doc.name.is_empty() {
            report("name".to_owned(), Problem::EmptyName);
        } else if let Some(&first) = first_with_name.get(rule_doc.name.as_str()) {
            report("name".to_owned(), Problem::DuplicateName { first });
        } else {
            first_with_name.insert(&rule_doc.name, i);
        }
        let rule = compile_rule(rule_doc, &doc.groups, &mut report);
        policy.index_rule(i, &rule, &doc.groups);
        policy.rules.push(rule);
    }
    policy.risk = crate::risk::compile(&doc.risk, problems);
    policy.retention = crate::retention::compile(&doc.retention, problems);
    policy
}

fn check_groups(groups: &BTreeMap<String, Vec<String>>, problems: &mut Vec<PolicyError>) {
    for (group, members) in groups {
        let mut report = |field: String, problem| {
            problems.push(PolicyError::Group {
                group: group.clone(),
                field,
                problem,
            });
        };
        if let Err(problem) = check_name(group) {
            report("name".to_owned(), problem);
        }
        for (j, member) in members.iter().enumerate() {
            if let Err(problem) = check_name(member) {
                report(format!("members[{j}]"), problem);
            }
        }
    }
}

fn compile_rule(
    doc: &RuleDoc,
    groups: &BTreeMap<String, Vec<String>>,
    report: &mut impl FnMut(String, Problem),
) -> Rule {
    if doc.subjects.is_empty() {
        report("subjects".to_owned(), Problem::NoSubjects);
    }
    let mut subjects = Vec::with_capacity(doc.subjects.len());
    for (j, s) in doc.subjects.iter().enumerate() {
        match parse_subject(s, groups) {
            Ok(pattern) => subjects.push(pattern),
            Err(problem) => report(format!("subjects[{j}]"), problem),
        }
    }
    if doc.targets.is_empty() {
        report("targets".to_owned(), Problem::NoTargets);
    }
    let mut targets = Vec::with_capacity(doc.targets.len());
    for (j, t) in doc.targets.iter().enumerate() {
        match parse_target(t) {
            Ok(pattern) => targets.push(pattern),
            Err(problem) => report(format!("targets[{j}]"), problem),
        }
    }
    let browser = doc.entry.contains(&Entry::Browser);
    let native = doc.entry.contains(&Entry::Native);
    if doc.entry.is_empty() {
        report("entry".to_owned(), Problem::NoEntry);
    } else if doc.deny && !(browser && native) {
        report("entry".to_owned(), Problem::UnusedByDenyRule);
    }
    if doc.deny && !doc.windows.is_empty() {
        report("windows".to_owned(), Problem::UnusedByDenyRule);
    }
    let clipboard = &doc.clipboard;
    if clipboard.direction != ClipboardFlow::Off {
        if clipboard.max_bytes == 0 {
            report(
                "clipboard.max_bytes".to_owned(),
                Problem::ZeroClipboardLimit,
            );
        }
        if clipboard.files && doc.file_transfer == FileTransferMode::Off {
            report(
                "clipboard.files".to_owned(),
                Problem::FilesWithoutFileTransfer,
            );
        }
    }
    for (field, value) in [
        ("max_duration_secs", doc.max_duration_secs),
        ("idle_timeout_secs", doc.idle_timeout_secs),
    ] {
        if value == Some(0) {
            report(field.to_owned(), Problem::Zero);
        }
    }
    let mut windows = Vec::with_capacity(doc.windows.len());
    for (j, w) in doc.windows.iter().enumerate() {
        match Window::compile(w) {
            Ok(window) => windows.push(window),
            Err(problems) => {
                for (field, problem) in problems {
                    report(format!("windows[{j}].{field}"), problem);
                }
            }
        }
    }
    let request = doc.request.as_ref().map(|r| {
        if doc.deny {
            report("request".to_owned(), Problem::UnusedByDenyRule);
        }
        if r.approvers.is_empty() {
            report("request.approvers".to_owned(), Problem::NoSubjects);
        }
        let mut approvers = Vec::with_capacity(r.approvers.len());
        for (j, s) in r.approvers.iter().enumerate() {
            match parse_subject(s, groups) {
                Ok(pattern) => approvers.push(pattern),
                Err(problem) => report(format!("request.approvers[{j}]"), problem),
            }
        }
        if !(1..=10).contains(&r.approvals) {
            report(
                "request.approvals".to_owned(),
                Problem::OutOfRange { min: 1, max: 10 },
            );
        }
        if !(60..=30 * 86_400).contains(&r.max_duration_secs) {
            report(
                "request.max_duration_secs".to_owned(),
                Problem::OutOfRange {
                    min: 60,
                    max: 30 * 86_400,
                },
            );
        }
        RequestTerms {
            approvers,
            approvals: r.approvals,
            max_duration_secs: r.max_duration_secs,
        }
    });
    if !doc.observer_required && !doc.observers.is_empty() {
        report("observers".to_owned(), Problem::ObserversWithoutFourEyes);
    }
    if doc.deny && doc.observer_required {
        report("observer_required".to_owned(), Problem::UnusedByDenyRule);
    }
    let mut observers = Vec::with_capacity(doc.observers.len());
    for (j, s) in doc.observers.iter().enumerate() {
        match parse_subject(s, groups) {
            Ok(pattern) => observers.push(pattern),
            Err(problem) => report(format!("observers[{j}]"), problem),
        }
    }
    Rule {
        observers: doc.observer_required.then_some(observers),
        request,
        name: Arc::from(doc.name.as_str()),
        subjects,
        targets,
        deny: doc.deny,
        browser,
        native,
        terms: Terms {
            clipboard: clipboard.direction,
            clipboard_max_bytes: clipboard.max_bytes,
            clipboard_files: clipboard.files,
            file_transfer: doc.file_transfer,
            printing: doc.printing,
            audio: doc.audio,
            max_duration_secs: doc.max_duration_secs,
            idle_timeout_secs: doc.idle_timeout_secs,
            recording_required: doc.recording == Recording::Required,
        },
        windows,
    }
}

/// `user:alice`, `role:admin`, `group:vendors`, `sso_group:ops` or `*`.
fn parse_subject(
    s: &str,
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<SubjectPattern, Problem> {
    if s == "*" {
        return Ok(SubjectPattern::Any);
    }
    let (prefix, value) = s
        .split_once(':')
        .ok_or_else(|| Problem::SubjectWithoutPrefix(s.to_owned()))?;
    let make = match prefix {
        "user" => SubjectPattern::User,
        "role" => SubjectPattern::Role,
        "group" => SubjectPattern::Group,
        "sso_group" => SubjectPattern::SsoGroup,
        _ => return Err(Problem::UnknownSubjectPrefix(prefix.to_owned())),
    };
    check_value(prefix, value)?;
    if prefix == "group" && !groups.contains_key(value) {
        return Err(Problem::UndefinedGroup(value.to_owned()));
    }
    Ok(make(value.to_owned()))
}

impl Policy {
    /// Adds rule `i`'s subjects and targets to the lookup tables.
    fn index_rule(&mut self, i: usize, rule: &Rule, groups: &BTreeMap<String, Vec<String>>) {
        let words = self.words;
        for pattern in &rule.subjects {
            match pattern {
                SubjectPattern::Any => set_bit(&mut self.any_subject, i),
                SubjectPattern::User(u) => self.users.insert(u, i, words),
                SubjectPattern::Role(r) => self.roles.insert(r, i, words),
                SubjectPattern::Group(g) => {
                    for member in groups.get(g).into_iter().flatten() {
                        self.users.insert(member, i, words);
                    }
                }
                SubjectPattern::SsoGroup(g) => self.sso_groups.insert(g, i, words),
            }
        }
        for pattern in &rule.targets {
            match pattern {
                TargetPattern::Any => set_bit(&mut self.any_target, i),
                TargetPattern::Name(n) => self.names.insert(n, i, words),
                TargetPattern::Label(l) => self.labels.insert(l, i, words),
            }
        }
    }
}
