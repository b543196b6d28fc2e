//! Target patterns (`name:`, `label:`, `*`) and the checks on names, shared by the rules and
//! the risk rules.

use std::fmt;

use crate::error::Problem;

/// A parsed target string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetPattern {
    Any,
    Name(String),
    Label(String),
}

impl TargetPattern {
    /// True when the target called `name` with `labels` is one this pattern names.
    pub(crate) fn matches<L: AsRef<str>>(&self, name: &str, labels: &[L]) -> bool {
        match self {
            TargetPattern::Any => true,
            TargetPattern::Name(n) => n == name,
            TargetPattern::Label(l) => labels.iter().any(|t| t.as_ref() == l),
        }
    }
}

impl fmt::Display for TargetPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPattern::Any => f.write_str("*"),
            TargetPattern::Name(n) => write!(f, "name:{n}"),
            TargetPattern::Label(l) => write!(f, "label:{l}"),
        }
    }
}

/// `name:web01`, `label:prod` or `*`.
pub(crate) fn parse_target(s: &str) -> Result<TargetPattern, Problem> {
    if s == "*" {
        return Ok(TargetPattern::Any);
    }
    let (prefix, value) = s
        .split_once(':')
        .ok_or_else(|| Problem::TargetWithoutPrefix(s.to_owned()))?;
    let make = match prefix {
        "name" => TargetPattern::Name,
        "label" => TargetPattern::Label,
        _ => return Err(Problem::UnknownTargetPrefix(prefix.to_owned())),
    };
    check_value(prefix, value)?;
    Ok(make(value.to_owned()))
}

pub(crate) fn check_value(prefix: &str, value: &str) -> Result<(), Problem> {
    match check_name(value) {
        Err(Problem::EmptyName) => Err(Problem::EmptyValue(prefix.to_owned())),
        other => other,
    }
}

/// A name must be non-empty and without surrounding white space (it would never match).
pub(crate) fn check_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        Err(Problem::EmptyName)
    } else if name.trim() != name {
        Err(Problem::WhiteSpace(name.to_owned()))
    } else {
        Ok(())
    }
}
