//! How long recordings are kept, by target and risk: the document's `[[retention]]` entries, in
//! order; the first whose targets match a recording's target and whose `min_risk` its session's
//! risk score reaches decides. None matching: the gateway's own default
//! (`[recording] retention_days`). So "keep high-risk sessions two years, production one year"
//! is:
//!
//! ```toml
//! [[retention]]
//! name = "high-risk"
//! min_risk = 50
//! days = 730
//!
//! [[retention]]
//! name = "production"
//! targets = ["label:prod"]
//! days = 365
//! ```
//!
//! `days = 0` keeps what the entry matches for ever.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{PolicyError, Problem};
use crate::target::{parse_target, TargetPattern};

/// Longest retention an entry may give, in days (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// One `[[retention]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionDoc {
    /// A unique name (1 to 64 letters, digits, `_` or `-`): deletions name the entry.
    pub name: String,
    /// What it is for (shown to administrators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which targets (`name:`, `label:`, `*`). Any by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// Only sessions whose risk score is at least this (0 to 100; 0 by default: every session).
    #[serde(default)]
    pub min_risk: u32,
    /// How many days after the session ended its recording is kept (0: for ever).
    pub days: u32,
}

/// A compiled entry.
#[derive(Debug, Clone)]
pub(crate) struct Retention {
    pub(crate) name: Arc<str>,
    targets: Vec<TargetPattern>,
    min_risk: u32,
    days: u32,
}

/// What decides how long one recording is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionChoice {
    /// The deciding entry's name.
    pub rule: Arc<str>,
    /// Days after the session's end (0: for ever).
    pub days: u32,
}

impl Retention {
    fn matches<L: AsRef<str>>(&self, target: &str, labels: &[L], risk_score: u32) -> bool {
        risk_score >= self.min_risk && self.targets.iter().any(|p| p.matches(target, labels))
    }
}

/// The first entry of `entries` for a recording of `target` (with `labels`) whose session scored
/// `risk_score`.
pub(crate) fn choose<L: AsRef<str>>(
    entries: &[Retention],
    target: &str,
    labels: &[L],
    risk_score: u32,
) -> Option<RetentionChoice> {
    entries
        .iter()
        .find(|e| e.matches(target, labels, risk_score))
        .map(|e| RetentionChoice {
            rule: Arc::clone(&e.name),
            days: e.days,
        })
}

/// Compiles the document's entries; each problem goes to `problems` (the entry is left out).
pub(crate) fn compile(docs: &[RetentionDoc], problems: &mut Vec<PolicyError>) -> Vec<Retention> {
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let mut report = |field: &str, problem| {
            problems.push(PolicyError::Retention {
                index: i,
                name: doc.name.clone(),
                field: field.to_owned(),
                problem,
            });
        };
        if let Err(problem) = crate::risk::check_rule_name(&doc.name) {
            report("name", problem);
            continue;
        }
        if docs[..i].iter().any(|d| d.name == doc.name) {
            report("name", Problem::DuplicateRetentionName);
            continue;
        }
        if doc.min_risk > 100 {
            report("min_risk", Problem::RiskOutOfRange(doc.min_risk));
            continue;
        }
        if doc.days > MAX_RETENTION_DAYS {
            report("days", Problem::RetentionTooLong(doc.days));
            continue;
        }
        let strings = doc.targets.clone().unwrap_or_else(|| vec!["*".to_owned()]);
        if strings.is_empty() {
            report("targets", Problem::NoTargets);
            continue;
        }
        let mut targets = Vec::with_capacity(strings.len());
        let mut bad = false;
        for (j, t) in strings.iter().enumerate() {
            match parse_target(t) {
                Ok(p) => targets.push(p),
                Err(problem) => {
                    report(&format!("targets[{j}]"), problem);
                    bad = true;
                }
            }
        }
        if bad {
            continue;
        }
        out.push(Retention {
            name: Arc::from(doc.name.as_str()),
            targets,
            min_risk: doc.min_risk,
            days: doc.days,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Policy, PolicyDoc};

    fn entry(name: &str, targets: &[&str], min_risk: u32, days: u32) -> RetentionDoc {
        RetentionDoc {
            name: name.to_owned(),
            description: None,
            targets: (!targets.is_empty())
                .then(|| targets.iter().map(|t| (*t).to_owned()).collect()),
            min_risk,
            days,
        }
    }

    fn policy(entries: Vec<RetentionDoc>) -> Result<Policy, PolicyError> {
        let mut doc = PolicyDoc::default_policy();
        doc.retention = entries;
        Policy::compile(&doc)
    }

    #[test]
    fn the_first_matching_entry_decides() {
        let p = policy(vec![
            entry("high-risk", &[], 50, 730),
            entry("production", &["label:prod"], 0, 365),
            entry("lab", &["name:lab1"], 0, 7),
        ])
        .unwrap();
        let days = |target: &str, labels: &[&str], risk| {
            p.retention_for(target, labels, risk)
                .map(|c| (c.rule.to_string(), c.days))
        };
        assert_eq!(days("db1", &["prod"], 80), Some(("high-risk".into(), 730)));
        assert_eq!(days("db1", &["prod"], 49), Some(("production".into(), 365)));
        assert_eq!(days("lab1", &[], 0), Some(("lab".into(), 7)));
        assert_eq!(days("lab1", &[], 50), Some(("high-risk".into(), 730)));
        assert_eq!(days("web", &["test"], 10), None, "the gateway's default");
    }

    #[test]
    fn bad_entries_are_named() {
        let err = |e: RetentionDoc| policy(vec![e]).unwrap_err().to_string();
        assert_eq!(
            err(entry("", &[], 0, 1)),
            "retention \"\": name: must not be empty"
        );
        assert_eq!(
            err(entry("long", &[], 0, 40_000)),
            "retention \"long\": days: 40000 days is more than the 36500 allowed"
        );
        assert_eq!(
            err(entry("risky", &[], 101, 1)),
            "retention \"risky\": min_risk: 101 is out of range (0 to 100)"
        );
        assert!(err(entry("t", &["prod"], 0, 1)).starts_with("retention \"t\": targets[0]:"));
        let dup = policy(vec![entry("a", &[], 0, 1), entry("a", &[], 0, 2)]).unwrap_err();
        assert_eq!(
            dup.to_string(),
            "retention \"a\": name: already used by another retention entry"
        );
        let empty = RetentionDoc {
            targets: Some(Vec::new()),
            ..entry("none", &[], 0, 1)
        };
        assert!(err(empty).contains("targets"));
    }

    #[test]
    fn it_reads_from_toml_and_round_trips() {
        let doc: PolicyDoc = toml::from_str(
            "[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\n\n\
             [[retention]]\nname = \"high-risk\"\nmin_risk = 50\ndays = 730\n",
        )
        .unwrap();
        assert_eq!(doc.retention, vec![entry("high-risk", &[], 50, 730)]);
        let again: PolicyDoc = serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(again, doc);
        assert!(
            toml::from_str::<PolicyDoc>("[[retention]]\nname = \"x\"\ndays = 1\nweeks = 2\n")
                .is_err()
        );
    }
}
