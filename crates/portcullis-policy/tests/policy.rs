//! Table-driven tests of the policy engine through its public API.
//!
//! Times are fixed Unix seconds: 1970-01-01 was a Thursday, so [`MON`] (1970-01-05 00:00 UTC) is
//! the start of a week and `at(day, h, m)` counts from it.
#![allow(clippy::unwrap_used)]

use portcullis_policy::{
    Action, ClipKind, Denial, Direction, Entry, Policy, PolicyDoc, RuleDoc, SessionDecision,
    Subject, TargetRef, Weekday, WindowDoc,
};

const DAY: i64 = 86_400;
const MON: i64 = 4 * DAY;

/// Day 0 = Monday 1970-01-05, times in UTC.
fn at(day: i64, h: i64, m: i64) -> i64 {
    MON + day * DAY + h * 3600 + m * 60
}

/// The sample policy: one of each feature, in TOML as an administrator writes it.
const SAMPLE: &str = r#"
# Vendors never reach production, whatever later rules say.
[groups]
vendors = ["victor", "vera"]
night = ["nina"]

[[rules]]
name = "no-vendors-on-prod"
description = "vendors never reach production"
subjects = ["group:vendors"]
targets = ["label:prod"]
deny = true

[[rules]]
name = "admins"
subjects = ["role:admin"]
targets = ["*"]
file_transfer = "both"
printing = true
audio = true
recording = "optional"

[rules.clipboard]
direction = "both"
max_bytes = 1048576
files = true

[[rules]]
name = "vendors"
subjects = ["group:vendors", "user:carol"]
targets = ["label:vendor", "name:web01"]
entry = ["browser"]
file_transfer = "upload"
max_duration_secs = 7200
idle_timeout_secs = 900

[rules.clipboard]
direction = "client_to_target"

[[rules.windows]]
days = ["mon", "tue", "wed", "thu", "fri"]
from = "08:00"
to = "18:00"
utc_offset_minutes = 60

[[rules]]
name = "night-shift"
subjects = ["group:night"]
targets = ["label:ops"]
entry = ["native"]
file_transfer = "download"

[rules.clipboard]
direction = "target_to_client"
max_bytes = 1024

[[rules.windows]]
from = "22:00"
to = "06:00"

[[rules]]
name = "operators"
subjects = ["role:operator", "user:olga"]
targets = ["label:ops", "label:web"]

[rules.clipboard]
direction = "both"
"#;

fn sample() -> Policy {
    Policy::compile(&parse(SAMPLE)).unwrap()
}

fn parse(toml_text: &str) -> PolicyDoc {
    toml::from_str(toml_text).unwrap()
}

/// The targets of the tests and their labels.
fn labels_of(target: &str) -> &'static [&'static str] {
    match target {
        "web01" => &["web"],
        "db01" => &["prod", "ops"],
        "vend01" => &["vendor"],
        "app02" => &["prod", "web"],
        _ => &[],
    }
}

const BROWSER: Action = Action::Open {
    entry: Entry::Browser,
};
const NATIVE: Action = Action::Open {
    entry: Entry::Native,
};
const C2T: Direction = Direction::ClientToTarget;
const T2C: Direction = Direction::TargetToClient;
const UPLOAD: Action = Action::FileTransfer { direction: C2T };
const DOWNLOAD: Action = Action::FileTransfer { direction: T2C };
const PRINT: Action = Action::Printing;
const AUDIO: Action = Action::Audio;

fn text(direction: Direction, bytes: usize) -> Action {
    Action::Clipboard {
        direction,
        kind: ClipKind::Text,
        bytes,
    }
}

fn files(direction: Direction, bytes: usize) -> Action {
    Action::Clipboard {
        direction,
        kind: ClipKind::Files,
        bytes,
    }
}

/// What a decision should say: allowed by a rule, or denied by a rule (or none) with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Allow(&'static str),
    Deny(Option<&'static str>, &'static str),
}

fn allow(rule: &'static str) -> Expect {
    Expect::Allow(rule)
}

fn deny(rule: &'static str, code: &'static str) -> Expect {
    Expect::Deny(Some(rule), code)
}

fn no_rule() -> Expect {
    Expect::Deny(None, "no_rule")
}

/// What the gateway's path says: [`Policy::session`], then the grant's method for a crossing.
/// A crossing happens in an open session, so it is asked of whichever entry path opens one.
fn gateway_path(
    policy: &Policy,
    who: &Subject<'_>,
    target: &TargetRef<'_>,
    action: Action,
    now: i64,
) -> Result<String, (Option<String>, &'static str, String)> {
    let denied = |d: Denial| {
        Err((
            d.rule.as_deref().map(str::to_owned),
            d.reason.code(),
            d.explain(),
        ))
    };
    let grant = match action {
        Action::Open { entry } => match policy.session(who, target, entry, now) {
            SessionDecision::Allowed(grant) => return Ok(grant.rule().to_owned()),
            SessionDecision::Denied(d) => return denied(d),
        },
        _ => {
            let browser = policy.session(who, target, Entry::Browser, now);
            let native = policy.session(who, target, Entry::Native, now);
            match (browser, native) {
                (SessionDecision::Allowed(g), _) | (_, SessionDecision::Allowed(g)) => g,
                (SessionDecision::Denied(b), SessionDecision::Denied(n)) => {
                    if b.reason.code() == "entry_not_allowed" {
                        return denied(n);
                    }
                    return denied(b);
                }
            }
        }
    };
    let verdict = match action {
        Action::Open { .. } => unreachable!(),
        Action::Clipboard {
            direction,
            kind,
            bytes,
        } => grant.clipboard(direction, kind, bytes),
        Action::FileTransfer { direction } => grant.file_transfer(direction),
        Action::Printing => grant.printing(),
        Action::Audio => grant.audio(),
    };
    match verdict.into_result() {
        Ok(()) => Ok(grant.rule().to_owned()),
        Err(d) => denied(d),
    }
}

/// Checks one case both ways: the gateway's path and [`Policy::explain`] must agree with the
/// expectation and with each other.
fn check(
    policy: &Policy,
    (user, role, target, action, now, expect): (&str, &str, &str, Action, i64, Expect),
) {
    let who = Subject {
        user,
        role,
        groups: &[],
    };
    let target_ref = TargetRef {
        name: target,
        labels: labels_of(target),
    };
    let case = format!("{user} ({role}) on {target}: {action} at {now}");
    let path = gateway_path(policy, &who, &target_ref, action, now);
    let explanation = policy.explain(&who, &target_ref, action, now);
    match expect {
        Expect::Allow(rule) => {
            assert_eq!(path, Ok(rule.to_owned()), "{case}");
            assert!(explanation.allowed, "{case}: {explanation:?}");
            assert_eq!(explanation.rule.as_deref(), Some(rule), "{case}");
            assert_eq!(explanation.reason, None, "{case}");
        }
        Expect::Deny(rule, code) => {
            let (path_rule, path_code, path_message) = path.expect_err(&case);
            assert_eq!(
                (path_rule.as_deref(), path_code),
                (rule, code),
                "{case}: {path_message}"
            );
            assert!(!explanation.allowed, "{case}");
            assert_eq!(explanation.rule.as_deref(), rule, "{case}");
            let reason = explanation.reason.as_ref().expect(&case);
            assert_eq!(reason.code(), code, "{case}");
            assert!(
                explanation.message.starts_with(&path_message),
                "{case}: {} vs {path_message}",
                explanation.message
            );
        }
    }
}

#[test]
fn sample_policy_decisions() {
    let policy = sample();
    let weekday = at(0, 10, 0); // Monday 10:00 UTC, 11:00 in UTC+1.
    #[rustfmt::skip]
    let cases = [
        // Deny by default: nothing matches bob, whatever he tries.
        ("bob", "user", "web01", BROWSER, weekday, no_rule()),
        ("bob", "user", "web01", text(C2T, 1), weekday, no_rule()),
        ("bob", "user", "nowhere", NATIVE, weekday, no_rule()),
        // Roles, and `*` targets.
        ("alice", "admin", "db01", BROWSER, weekday, allow("admins")),
        ("alice", "admin", "db01", NATIVE, at(5, 3, 0), allow("admins")),
        ("alice", "admin", "unknown", BROWSER, weekday, allow("admins")),
        // First match: the deny rule comes before admins, and labels match.
        ("victor", "user", "db01", BROWSER, weekday, deny("no-vendors-on-prod", "deny_rule")),
        ("victor", "admin", "app02", BROWSER, weekday, deny("no-vendors-on-prod", "deny_rule")),
        ("vera", "user", "app02", PRINT, weekday, deny("no-vendors-on-prod", "deny_rule")),
        // ...and an admin who is not a vendor gets through on prod.
        ("alice", "admin", "app02", BROWSER, weekday, allow("admins")),
        // A vendor with the admin role on a non-prod target: admins comes first.
        ("victor", "admin", "vend01", NATIVE, weekday, allow("admins")),
        // Groups and labels; users and names.
        ("victor", "user", "vend01", BROWSER, weekday, allow("vendors")),
        ("vera", "user", "web01", BROWSER, weekday, allow("vendors")),
        ("carol", "user", "web01", BROWSER, weekday, allow("vendors")),
        ("carol", "user", "db01", BROWSER, weekday, no_rule()),
        ("carol", "user", "app02", BROWSER, weekday, no_rule()),
        // Entry paths.
        ("victor", "user", "vend01", NATIVE, weekday, deny("vendors", "entry_not_allowed")),
        ("nina", "user", "db01", BROWSER, at(0, 23, 0), deny("night-shift", "entry_not_allowed")),
        ("nina", "user", "db01", NATIVE, at(0, 23, 0), allow("night-shift")),
        // Time windows with a UTC offset: mon-fri 08:00-18:00 at UTC+1 is 07:00-17:00 UTC.
        ("victor", "user", "vend01", BROWSER, at(0, 6, 59), deny("vendors", "outside_window")),
        ("victor", "user", "vend01", BROWSER, at(0, 7, 0), allow("vendors")),
        ("victor", "user", "vend01", BROWSER, at(0, 16, 59), allow("vendors")),
        ("victor", "user", "vend01", BROWSER, at(0, 17, 0), deny("vendors", "outside_window")),
        ("victor", "user", "vend01", BROWSER, at(4, 16, 30), allow("vendors")),
        ("victor", "user", "vend01", BROWSER, at(5, 10, 0), deny("vendors", "outside_window")),
        // Sunday 23:30 UTC is Monday 00:30 local: Monday, but before 08:00.
        ("victor", "user", "vend01", BROWSER, at(6, 23, 30), deny("vendors", "outside_window")),
        // A crossing outside the window is denied too.
        ("victor", "user", "vend01", text(C2T, 1), at(5, 10, 0), deny("vendors", "outside_window")),
        // Crossing midnight: every day 22:00-06:00 UTC.
        ("nina", "user", "db01", NATIVE, at(1, 5, 59), allow("night-shift")),
        ("nina", "user", "db01", NATIVE, at(1, 6, 0), deny("night-shift", "outside_window")),
        ("nina", "user", "db01", NATIVE, at(1, 21, 59), deny("night-shift", "outside_window")),
        ("nina", "user", "db01", NATIVE, at(1, 22, 0), allow("night-shift")),
        ("nina", "user", "db01", NATIVE, at(6, 23, 59), allow("night-shift")),
        // Clipboard: client→target only, text only, 128 KiB.
        ("victor", "user", "vend01", text(C2T, 100), weekday, allow("vendors")),
        ("victor", "user", "vend01", text(C2T, 131_072), weekday, allow("vendors")),
        ("victor", "user", "vend01", text(C2T, 131_073), weekday, deny("vendors", "clipboard_too_large")),
        ("victor", "user", "vend01", text(T2C, 1), weekday, deny("vendors", "clipboard_direction")),
        ("victor", "user", "vend01", files(C2T, 1), weekday, deny("vendors", "clipboard_files")),
        // Clipboard: target→client only, 1 KiB.
        ("nina", "user", "db01", text(T2C, 1024), at(0, 23, 0), allow("night-shift")),
        ("nina", "user", "db01", text(T2C, 1025), at(0, 23, 0), deny("night-shift", "clipboard_too_large")),
        ("nina", "user", "db01", text(C2T, 1), at(0, 23, 0), deny("night-shift", "clipboard_direction")),
        // Clipboard: both ways, files too, 1 MiB (files are a file transfer: both allowed).
        ("alice", "admin", "web01", text(C2T, 1_048_576), weekday, allow("admins")),
        ("alice", "admin", "web01", text(T2C, 1_048_577), weekday, deny("admins", "clipboard_too_large")),
        ("alice", "admin", "web01", files(T2C, 10), weekday, allow("admins")),
        ("alice", "admin", "web01", files(C2T, 10), weekday, allow("admins")),
        ("alice", "admin", "web01", files(C2T, 2_000_000), weekday, deny("admins", "clipboard_too_large")),
        // Clipboard: both ways, text only, default limit; clipboard off elsewhere.
        ("oscar", "operator", "web01", text(T2C, 5), weekday, allow("operators")),
        ("oscar", "operator", "db01", text(C2T, 5), weekday, allow("operators")),
        ("olga", "user", "app02", text(C2T, 131_073), weekday, deny("operators", "clipboard_too_large")),
        ("olga", "user", "app02", files(C2T, 5), weekday, deny("operators", "clipboard_files")),
        ("oscar", "operator", "vend01", text(C2T, 5), weekday, no_rule()),
        // File transfer modes.
        ("alice", "admin", "web01", UPLOAD, weekday, allow("admins")),
        ("alice", "admin", "web01", DOWNLOAD, weekday, allow("admins")),
        ("victor", "user", "vend01", UPLOAD, weekday, allow("vendors")),
        ("victor", "user", "vend01", DOWNLOAD, weekday, deny("vendors", "file_transfer")),
        ("nina", "user", "db01", DOWNLOAD, at(0, 23, 0), allow("night-shift")),
        ("nina", "user", "db01", UPLOAD, at(0, 23, 0), deny("night-shift", "file_transfer")),
        ("oscar", "operator", "web01", UPLOAD, weekday, deny("operators", "file_transfer")),
        ("oscar", "operator", "web01", DOWNLOAD, weekday, deny("operators", "file_transfer")),
        // Printing and audio: off unless allowed.
        ("alice", "admin", "web01", PRINT, weekday, allow("admins")),
        ("alice", "admin", "web01", AUDIO, weekday, allow("admins")),
        ("victor", "user", "vend01", PRINT, weekday, deny("vendors", "printing_off")),
        ("victor", "user", "vend01", AUDIO, weekday, deny("vendors", "audio_off")),
        ("oscar", "operator", "db01", PRINT, weekday, deny("operators", "printing_off")),
        ("oscar", "operator", "db01", AUDIO, weekday, deny("operators", "audio_off")),
    ];
    for case in cases {
        check(&policy, case);
    }
}

#[test]
fn default_policy_decisions() {
    let policy = Policy::compile(&PolicyDoc::default_policy()).unwrap();
    let t = at(2, 3, 33);
    #[rustfmt::skip]
    let cases = [
        ("anyone", "user", "web01", BROWSER, t, allow("default")),
        ("anyone", "reviewer", "db01", NATIVE, t, allow("default")),
        ("anyone", "user", "web01", text(C2T, 131_072), t, allow("default")),
        ("anyone", "user", "web01", text(T2C, 131_072), t, allow("default")),
        ("anyone", "user", "web01", text(T2C, 131_073), t, deny("default", "clipboard_too_large")),
        ("anyone", "user", "web01", files(C2T, 1), t, deny("default", "clipboard_files")),
        ("anyone", "user", "web01", UPLOAD, t, deny("default", "file_transfer")),
        ("anyone", "user", "web01", DOWNLOAD, t, deny("default", "file_transfer")),
        ("anyone", "user", "web01", PRINT, t, deny("default", "printing_off")),
        ("anyone", "user", "web01", AUDIO, t, deny("default", "audio_off")),
    ];
    for case in cases {
        check(&policy, case);
    }
    let who = Subject {
        user: "anyone",
        role: "user",
        groups: &[],
    };
    let target = TargetRef::new("web01", &[]);
    let grant = policy
        .session(&who, &target, Entry::Browser, t)
        .into_result()
        .unwrap();
    assert!(grant.recording_required());
    assert_eq!(grant.max_duration_secs(), None);
    assert_eq!(grant.idle_timeout_secs(), None);
    assert_eq!(grant.window_ends_at_unix_secs(), None);
    assert_eq!(grant.ends_at_unix_secs(t), None);
}

#[test]
fn an_empty_policy_denies_everything() {
    let policy = Policy::compile(&PolicyDoc::default()).unwrap();
    assert!(policy.is_empty());
    for action in [BROWSER, NATIVE, text(C2T, 1), UPLOAD, PRINT, AUDIO] {
        check(&policy, ("root", "admin", "web01", action, 0, no_rule()));
    }
    let decision = policy.session(
        &Subject {
            user: "alice",
            role: "admin",
            groups: &[],
        },
        &TargetRef {
            name: "web01",
            labels: &["prod"],
        },
        Entry::Browser,
        0,
    );
    assert_eq!(
        decision.denial().unwrap().to_string(),
        "no rule matches user alice on target web01"
    );
}

/// The message of each kind of denial.
#[test]
fn denial_messages() {
    let policy = sample();
    let weekday = at(0, 10, 0);
    let message = |user: &str, role: &str, target: &str, action: Action, now: i64| {
        let who = Subject {
            user,
            role,
            groups: &[],
        };
        let target = TargetRef {
            name: target,
            labels: labels_of(target),
        };
        policy.explain(&who, &target, action, now).message
    };
    #[rustfmt::skip]
    let cases = [
        ("bob", "user", "web01", BROWSER, weekday, "no rule matches user bob on target web01"),
        ("victor", "user", "db01", BROWSER, weekday, r#"denied by rule "no-vendors-on-prod""#),
        ("victor", "user", "vend01", NATIVE, weekday, r#"entry through a native client not allowed by rule "vendors""#),
        ("victor", "user", "vend01", BROWSER, at(5, 10, 0), r#"outside the time windows of rule "vendors" (open mon-fri 08:00-18:00 UTC+01:00; now 1970-01-10 sat 10:00:00 UTC)"#),
        ("victor", "user", "vend01", text(T2C, 1), weekday, r#"clipboard target→client denied by rule "vendors" (client→target only)"#),
        ("nina", "user", "db01", text(C2T, 1), at(0, 23, 0), r#"clipboard client→target denied by rule "night-shift" (target→client only)"#),
        ("victor", "user", "vend01", text(C2T, 200_000), weekday, r#"clipboard of 200000 bytes exceeds the limit of 131072 bytes of rule "vendors""#),
        ("victor", "user", "vend01", files(C2T, 1), weekday, r#"files on the clipboard denied by rule "vendors" (text only)"#),
        ("victor", "user", "vend01", DOWNLOAD, weekday, r#"file download (target→client) denied by rule "vendors" (upload only)"#),
        ("oscar", "operator", "web01", UPLOAD, weekday, r#"file upload (client→target) denied by rule "operators" (file transfer off)"#),
        ("oscar", "operator", "web01", PRINT, weekday, r#"printing denied by rule "operators""#),
        ("oscar", "operator", "web01", AUDIO, weekday, r#"audio redirection denied by rule "operators""#),
        ("victor", "user", "vend01", BROWSER, weekday, r#"session through the browser allowed by rule "vendors""#),
        ("victor", "user", "vend01", text(C2T, 100), weekday, r#"clipboard client→target (text, 100 bytes) allowed by rule "vendors""#),
        ("alice", "admin", "web01", DOWNLOAD, weekday, r#"file download (target→client) allowed by rule "admins""#),
    ];
    for (user, role, target, action, now, expected) in cases {
        assert_eq!(message(user, role, target, action, now), expected);
    }
}

#[test]
fn recording_fails_closed() {
    let policy = sample();
    let target = TargetRef {
        name: "vend01",
        labels: labels_of("vend01"),
    };
    let vendor = Subject {
        user: "victor",
        role: "user",
        groups: &[],
    };
    let grant = policy
        .session(&vendor, &target, Entry::Browser, at(0, 10, 0))
        .into_result()
        .unwrap();
    assert!(grant.recording_required());
    assert!(grant.recording(true).is_allowed());
    let denial = grant.recording(false).into_result().unwrap_err();
    assert_eq!(denial.reason.code(), "recording_unavailable");
    assert_eq!(
        denial.to_string(),
        r#"recording is required by rule "vendors" and the recorder is unavailable"#
    );

    let admin = Subject {
        user: "alice",
        role: "admin",
        groups: &[],
    };
    let grant = policy
        .session(&admin, &target, Entry::Native, 0)
        .into_result()
        .unwrap();
    assert!(!grant.recording_required());
    assert!(grant.recording(false).is_allowed());
}

#[test]
fn grants_carry_the_rule_terms() {
    let policy = sample();
    let vendor = Subject {
        user: "vera",
        role: "user",
        groups: &[],
    };
    let target = TargetRef {
        name: "web01",
        labels: labels_of("web01"),
    };
    let start = at(0, 10, 0);
    let grant = policy
        .session(&vendor, &target, Entry::Browser, start)
        .into_result()
        .unwrap();
    assert_eq!(grant.rule(), "vendors");
    assert_eq!(grant.rule_index(), 2);
    assert_eq!(grant.max_duration_secs(), Some(7200));
    assert_eq!(grant.idle_timeout_secs(), Some(900));
    assert_eq!(grant.clipboard_max_bytes(), 131_072);
    assert!(!grant.clipboard_files());
    assert_eq!(
        grant.clipboard_flow(),
        portcullis_policy::ClipboardFlow::ClientToTarget
    );
    assert_eq!(
        grant.file_transfer_mode(),
        portcullis_policy::FileTransferMode::Upload
    );
    // The window closes at 18:00 UTC+1; the maximum duration ends the session earlier.
    assert_eq!(grant.window_ends_at_unix_secs(), Some(at(0, 17, 0)));
    assert_eq!(grant.ends_at_unix_secs(start), Some(start + 7200));
    // Late in the day the window ends it first.
    let late = at(0, 16, 0);
    let grant = policy
        .session(&vendor, &target, Entry::Browser, late)
        .into_result()
        .unwrap();
    assert_eq!(grant.ends_at_unix_secs(late), Some(at(0, 17, 0)));
    assert_eq!(grant.ends_at_unix_secs(i64::MAX), Some(at(0, 17, 0)));
}

/// A policy with one rule for everyone on everything, with these windows.
fn windowed(windows: Vec<WindowDoc>) -> Policy {
    let mut rule = RuleDoc::new("w", &["*"], &["*"]);
    rule.windows = windows;
    Policy::compile(&PolicyDoc {
        groups: Default::default(),
        rules: vec![rule],
        risk: Vec::new(),
        retention: Vec::new(),
    })
    .unwrap()
}

fn win(days: &[Weekday], from: &str, to: &str, offset: i16) -> WindowDoc {
    WindowDoc {
        days: days.to_vec(),
        from: from.to_owned(),
        to: to.to_owned(),
        utc_offset_minutes: offset,
    }
}

/// Whether the rule's windows are open at `now`, and until when: `None` closed, `Some(None)` open
/// for good.
fn window_end(policy: &Policy, now: i64) -> Option<Option<i64>> {
    let who = Subject {
        user: "u",
        role: "user",
        groups: &[],
    };
    let target = TargetRef::new("t", &[]);
    match policy.session(&who, &target, Entry::Browser, now) {
        SessionDecision::Allowed(grant) => Some(grant.window_ends_at_unix_secs()),
        SessionDecision::Denied(denial) => {
            assert_eq!(denial.reason.code(), "outside_window");
            None
        }
    }
}

#[test]
fn time_windows() {
    use Weekday::*;
    let all = &Weekday::ALL;
    let weekdays = &[Mon, Tue, Wed, Thu, Fri];
    // (windows, time, expected: None closed, Some(end))
    #[rustfmt::skip]
    let cases: Vec<(Vec<WindowDoc>, i64, Option<Option<i64>>)> = vec![
        // Plain office hours in UTC.
        (vec![win(weekdays, "08:00", "18:00", 0)], at(0, 8, 0), Some(Some(at(0, 18, 0)))),
        (vec![win(weekdays, "08:00", "18:00", 0)], at(0, 7, 59), None),
        (vec![win(weekdays, "08:00", "18:00", 0)], at(0, 18, 0), None),
        (vec![win(weekdays, "08:00", "18:00", 0)], at(6, 12, 0), None),
        // A negative offset moves Friday evening local into Saturday UTC.
        (vec![win(&[Fri], "20:00", "23:00", -300)], at(5, 1, 0), Some(Some(at(5, 4, 0)))),
        (vec![win(&[Fri], "20:00", "23:00", -300)], at(4, 20, 0), None),
        // A positive offset moves Monday morning local into Sunday UTC.
        (vec![win(&[Mon], "00:00", "02:00", 180)], at(6, 21, 0), Some(Some(at(6, 23, 0)))),
        (vec![win(&[Mon], "00:00", "02:00", 180)], at(0, 0, 30), None),
        (vec![win(&[Mon], "00:00", "02:00", 840)], at(6, 10, 0), Some(Some(at(6, 12, 0)))),
        // Crossing midnight belongs to the day it starts on.
        (vec![win(&[Fri], "22:00", "02:00", 0)], at(4, 23, 0), Some(Some(at(5, 2, 0)))),
        (vec![win(&[Fri], "22:00", "02:00", 0)], at(5, 1, 59), Some(Some(at(5, 2, 0)))),
        (vec![win(&[Fri], "22:00", "02:00", 0)], at(5, 2, 0), None),
        (vec![win(&[Fri], "22:00", "02:00", 0)], at(5, 23, 0), None),
        (vec![win(&[Fri], "22:00", "02:00", 0)], at(4, 1, 0), None),
        (vec![win(&[Sun], "22:00", "02:00", 0)], at(7, 1, 0), Some(Some(at(7, 2, 0)))),
        // from = to: 24 hours from `from`.
        (vec![win(&[Mon], "08:00", "08:00", 0)], at(0, 9, 0), Some(Some(at(1, 8, 0)))),
        (vec![win(&[Mon], "08:00", "08:00", 0)], at(1, 7, 59), Some(Some(at(1, 8, 0)))),
        (vec![win(&[Mon], "08:00", "08:00", 0)], at(1, 8, 0), None),
        // 24:00 ends at midnight.
        (vec![win(&[Wed], "23:00", "24:00", 0)], at(2, 23, 30), Some(Some(at(3, 0, 0)))),
        // Before 1970: 1969-12-31 was a Wednesday.
        (vec![win(&[Wed], "23:00", "24:00", 0)], -1, Some(Some(0))),
        (vec![win(&[Thu], "00:00", "01:00", 0)], -1, None),
        // Windows that touch or overlap form one period.
        (vec![win(&[Mon], "08:00", "12:00", 0), win(&[Mon], "12:00", "18:00", 0)], at(0, 9, 0), Some(Some(at(0, 18, 0)))),
        (vec![win(&[Mon], "10:00", "14:00", 0), win(&[Mon], "08:00", "12:00", 0)], at(0, 9, 0), Some(Some(at(0, 14, 0)))),
        (vec![win(all, "20:00", "24:00", 0), win(all, "00:00", "02:00", 0)], at(0, 21, 0), Some(Some(at(1, 2, 0)))),
        // Windows touching across different offsets: 17:00-18:00 UTC+1 then 17:00-19:00 UTC.
        (vec![win(&[Mon], "17:00", "18:00", 60), win(&[Mon], "17:00", "19:00", 0)], at(0, 16, 30), Some(Some(at(0, 19, 0)))),
        // A chain of almost a week ends where the gap is.
        (vec![win(&[Mon, Tue, Wed, Thu, Fri, Sat], "00:00", "24:00", 0), win(&[Sun], "00:00", "23:00", 0)], at(0, 10, 0), Some(Some(at(6, 23, 0)))),
        (vec![win(&[Mon, Tue, Wed, Thu, Fri, Sat], "00:00", "24:00", 0), win(&[Sun], "00:00", "23:00", 0)], at(6, 23, 30), None),
        // Windows covering the whole week never end.
        (vec![win(all, "00:00", "24:00", 0)], at(3, 3, 3), Some(None)),
        (vec![win(all, "22:00", "22:00", 0)], at(3, 3, 3), Some(None)),
        (vec![win(all, "00:00", "24:00", 0)], i64::MAX, Some(None)),
        // No windows: any time.
        (vec![], at(3, 3, 3), Some(None)),
        (vec![], i64::MIN, Some(None)),
    ];
    for (windows, now, expected) in cases {
        let description = format!("{windows:?} at {now}");
        assert_eq!(
            window_end(&windowed(windows), now),
            expected,
            "{description}"
        );
    }
}

/// One compile error per document, with its exact message.
#[test]
fn compile_errors() {
    let rule = |body: &str| format!("[[rules]]\nname = \"r\"\n{body}");
    let any = "subjects = [\"*\"]\ntargets = [\"*\"]\n";
    #[rustfmt::skip]
    let cases: Vec<(String, &str)> = vec![
        ("[[rules]]\nname = \"vendors\"\nsubjects = [\"user:a\", \"usr:b\"]\ntargets = [\"*\"]".to_owned(), r#"rule "vendors": subjects[1]: unknown prefix "usr" (expected user:, role:, group:, sso_group: or *)"#),
        (rule("subjects = [\"alice\"]\ntargets = [\"*\"]"), r#"rule "r": subjects[0]: "alice" has no prefix (expected user:, role:, group:, sso_group: or *)"#),
        (rule("subjects = [\"*\"]\ntargets = [\"host:web01\"]"), r#"rule "r": targets[0]: unknown prefix "host" (expected name:, label: or *)"#),
        (rule("subjects = [\"*\"]\ntargets = [\"label:a\", \"web01\"]"), r#"rule "r": targets[1]: "web01" has no prefix (expected name:, label: or *)"#),
        (rule("subjects = [\"user:\"]\ntargets = [\"*\"]"), r#"rule "r": subjects[0]: nothing after "user:""#),
        (rule("subjects = [\"*\"]\ntargets = [\"name:\"]"), r#"rule "r": targets[0]: nothing after "name:""#),
        (rule("subjects = [\"user: alice\"]\ntargets = [\"*\"]"), r#"rule "r": subjects[0]: " alice" has leading or trailing white space"#),
        (rule("subjects = [\"group:vendors\"]\ntargets = [\"*\"]"), r#"rule "r": subjects[0]: undefined group "vendors""#),
        (rule("subjects = []\ntargets = [\"*\"]"), r#"rule "r": subjects: empty (use "*" for anyone)"#),
        (rule("subjects = [\"*\"]\ntargets = []"), r#"rule "r": targets: empty (use "*" for any target)"#),
        (format!("{}entry = []", rule(any)), r#"rule "r": entry: empty (use deny = true for a rule that refuses)"#),
        (format!("[[rules]]\nname = \"\"\n{any}"), "rules[0]: name: must not be empty"),
        (format!("{}{}", rule(any), rule(any)), r#"rule "r": name: already used by rules[0]"#),
        (format!("{}[[rules.windows]]\nfrom = \"8:00\"\nto = \"18:00\"", rule(any)), r#"rule "r": windows[0].from: invalid time "8:00" (expected HH:MM from 00:00 to 23:59, or 24:00 as the end)"#),
        (format!("{}[[rules.windows]]\nfrom = \"24:00\"\nto = \"18:00\"", rule(any)), r#"rule "r": windows[0].from: invalid time "24:00" (expected HH:MM from 00:00 to 23:59, or 24:00 as the end)"#),
        (format!("{}[[rules.windows]]\nfrom = \"08:00\"\nto = \"18:00\"\n[[rules.windows]]\nfrom = \"08:00\"\nto = \"18:60\"", rule(any)), r#"rule "r": windows[1].to: invalid time "18:60" (expected HH:MM from 00:00 to 23:59, or 24:00 as the end)"#),
        (format!("{}[[rules.windows]]\nfrom = \"08:00\"\nto = \"18:00\"\nutc_offset_minutes = -900", rule(any)), r#"rule "r": windows[0].utc_offset_minutes: -900 minutes is out of range (-840 to 840)"#),
        (format!("{}[[rules.windows]]\ndays = []\nfrom = \"08:00\"\nto = \"18:00\"", rule(any)), r#"rule "r": windows[0].days: empty (leave days out for every day)"#),
        (format!("{}[rules.clipboard]\ndirection = \"both\"\nmax_bytes = 0", rule(any)), r#"rule "r": clipboard.max_bytes: must be more than 0 while the clipboard is on"#),
        (format!("{}[rules.clipboard]\ndirection = \"both\"\nfiles = true", rule(any)), r#"rule "r": clipboard.files: files on the clipboard need file_transfer to allow a direction"#),
        (format!("{}max_duration_secs = 0", rule(any)), r#"rule "r": max_duration_secs: must be more than 0"#),
        (format!("{}idle_timeout_secs = 0", rule(any)), r#"rule "r": idle_timeout_secs: must be more than 0"#),
        (format!("{}deny = true\nentry = [\"native\"]", rule(any)), r#"rule "r": entry: not allowed in a deny rule (it refuses through any entry path at any time)"#),
        (format!("{}deny = true\n[[rules.windows]]\nfrom = \"08:00\"\nto = \"18:00\"", rule(any)), r#"rule "r": windows: not allowed in a deny rule (it refuses through any entry path at any time)"#),
        (format!("[groups]\ng = [\"a\", \"\"]\n{}", rule(any)), r#"group "g": members[1]: must not be empty"#),
        (format!("[groups]\n\"g \" = [\"a\"]\n{}", rule(any)), r#"group "g ": name: "g " has leading or trailing white space"#),
    ];
    for (text, expected) in cases {
        let doc = parse(&text);
        let error = Policy::compile(&doc).expect_err(&text);
        assert_eq!(error.to_string(), expected, "{text}");
    }
}

#[test]
fn harmless_settings_compile() {
    // The clipboard's limit and files do not matter while it is off; groups may be empty.
    let text = "[groups]\nnobody = []\n[[rules]]\nname = \"r\"\nsubjects = [\"group:nobody\"]\n\
                targets = [\"*\"]\n[rules.clipboard]\nmax_bytes = 0\nfiles = true";
    let policy = Policy::compile(&parse(text)).unwrap();
    assert_eq!(policy.len(), 1);
}

#[test]
fn problems_lists_every_error() {
    let text = r#"
        [groups]
        g = [""]
        [[rules]]
        name = "a"
        subjects = ["usr:x", "group:missing"]
        targets = []
        max_duration_secs = 0
        [[rules]]
        name = "a"
        subjects = ["*"]
        targets = ["*"]
    "#;
    let doc = parse(text);
    let messages: Vec<String> = doc.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            r#"group "g": members[0]: must not be empty"#,
            r#"rule "a": subjects[0]: unknown prefix "usr" (expected user:, role:, group:, sso_group: or *)"#,
            r#"rule "a": subjects[1]: undefined group "missing""#,
            r#"rule "a": targets: empty (use "*" for any target)"#,
            r#"rule "a": max_duration_secs: must be more than 0"#,
            r#"rule "a": name: already used by rules[0]"#,
        ]
    );
    assert_eq!(Policy::compile(&doc).unwrap_err().to_string(), messages[0]);
    assert!(parse(SAMPLE).problems().is_empty());
}

#[test]
fn unknown_fields_and_values_are_refused() {
    #[rustfmt::skip]
    let cases = [
        ("[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\ncolour = \"red\"", "unknown field `colour`"),
        ("[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\n[rules.clipboard]\nsize = 1", "unknown field `size`"),
        ("[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\nfile_transfer = \"sideways\"", "unknown variant `sideways`"),
        ("[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\nentry = [\"telnet\"]", "unknown variant `telnet`"),
        ("[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\n[[rules.windows]]\ndays = [\"monday\"]\nfrom = \"08:00\"\nto = \"09:00\"", "unknown variant `monday`"),
        ("[[rules]]\nname = \"r\"\ntargets = [\"*\"]", "missing field `subjects`"),
        ("[settings]\nx = 1", "unknown field `settings`"),
    ];
    for (text, needle) in cases {
        let error = toml::from_str::<PolicyDoc>(text).unwrap_err().to_string();
        assert!(error.contains(needle), "{text}: {error}");
    }
}

#[test]
fn toml_and_json_round_trips() {
    let doc = parse(SAMPLE);
    assert_eq!(doc.rules.len(), 5);
    assert_eq!(doc.groups["vendors"], ["victor", "vera"]);

    let toml_text = toml::to_string(&doc).unwrap();
    assert_eq!(parse(&toml_text), doc, "{toml_text}");
    let json = serde_json::to_string_pretty(&doc).unwrap();
    assert_eq!(
        serde_json::from_str::<PolicyDoc>(&json).unwrap(),
        doc,
        "{json}"
    );

    let default = PolicyDoc::default_policy();
    assert_eq!(parse(&toml::to_string(&default).unwrap()), default);
    let json = serde_json::to_string(&default).unwrap();
    assert_eq!(serde_json::from_str::<PolicyDoc>(&json).unwrap(), default);
    assert!(Policy::compile(&default).is_ok());
}

#[test]
fn a_minimal_rule_takes_the_defaults() {
    let expected = PolicyDoc {
        groups: Default::default(),
        rules: vec![RuleDoc::new("r", &["*"], &["label:prod"])],
        risk: Vec::new(),
        retention: Vec::new(),
    };
    let toml_doc = parse("[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"label:prod\"]");
    assert_eq!(toml_doc, expected);
    let json_doc: PolicyDoc = serde_json::from_str(
        r#"{"rules":[{"name":"r","subjects":["*"],"targets":["label:prod"]}]}"#,
    )
    .unwrap();
    assert_eq!(json_doc, expected);
    // What the API shows for it: every default spelled out.
    assert_eq!(
        serde_json::to_value(&expected).unwrap(),
        serde_json::json!({"rules": [{
            "name": "r",
            "subjects": ["*"],
            "targets": ["label:prod"],
            "entry": ["browser", "native"],
            "file_transfer": "off",
            "printing": false,
            "audio": false,
            "recording": "required",
            "clipboard": {"direction": "off", "max_bytes": 131072, "files": false},
        }]})
    );
}

#[test]
fn explanations_list_the_rules_considered() {
    let policy = sample();
    let bob = Subject {
        user: "bob",
        role: "user",
        groups: &[],
    };
    let web01 = TargetRef {
        name: "web01",
        labels: labels_of("web01"),
    };
    let explanation = policy.explain(&bob, &web01, BROWSER, 0);
    assert!(!explanation.allowed);
    assert_eq!(explanation.rule, None);
    assert_eq!(explanation.grant, None);
    let notes: Vec<(&str, bool, &str)> = explanation
        .considered
        .iter()
        .map(|c| (c.rule.as_str(), c.matched, c.note.as_str()))
        .collect();
    assert_eq!(
        notes,
        [
            (
                "no-vendors-on-prod",
                false,
                "neither user nor target matches (rule is for group:vendors on label:prod)"
            ),
            (
                "admins",
                false,
                "the user does not match (rule is for role:admin)"
            ),
            (
                "vendors",
                false,
                "the user does not match (rule is for group:vendors, user:carol)"
            ),
            (
                "night-shift",
                false,
                "neither user nor target matches (rule is for group:night on label:ops)"
            ),
            (
                "operators",
                false,
                "the user does not match (rule is for role:operator, user:olga)"
            ),
        ]
    );
    let json = serde_json::to_value(&explanation).unwrap();
    assert_eq!(
        json["reason"],
        serde_json::json!({"code": "no_rule", "user": "bob", "target": "web01"})
    );
    assert_eq!(
        json["action"],
        serde_json::json!({"action": "open", "entry": "browser"})
    );
    assert_eq!(json["at"], "1970-01-01 thu 00:00:00 UTC");
    assert_eq!(json["considered"][2]["target"], "name:web01");
    assert_eq!(json["considered"][2]["subject"], serde_json::Value::Null);

    // A match stops the list; the grant is shown with its terms.
    let vera = Subject {
        user: "vera",
        role: "user",
        groups: &[],
    };
    let vend01 = TargetRef {
        name: "vend01",
        labels: labels_of("vend01"),
    };
    let now = at(0, 10, 0);
    let explanation = policy.explain(&vera, &vend01, text(T2C, 10), now);
    assert_eq!(explanation.groups, ["vendors"]);
    assert_eq!(explanation.considered.len(), 3);
    let last = &explanation.considered[2];
    assert!(last.matched);
    assert_eq!(
        last.note,
        "matches the user by group:vendors and the target by label:vendor"
    );
    assert_eq!(
        explanation.considered[0].note,
        "the target does not match (rule is for label:prod)"
    );
    let json = serde_json::to_value(&explanation).unwrap();
    assert_eq!(json["allowed"], false);
    assert_eq!(json["rule"], "vendors");
    assert_eq!(
        json["reason"],
        serde_json::json!({
            "code": "clipboard_direction",
            "direction": "target_to_client",
            "allowed": "client_to_target",
        })
    );
    assert_eq!(
        json["grant"],
        serde_json::json!({
            "rule": "vendors",
            "rule_index": 2,
            "max_duration_secs": 7200,
            "idle_timeout_secs": 900,
            "recording_required": true,
            "window_ends_at_unix_secs": at(0, 17, 0),
            "clipboard": "client_to_target",
            "clipboard_max_bytes": 131072,
            "clipboard_files": false,
            "file_transfer": "upload",
            "printing": false,
            "audio": false,
        })
    );
}

#[test]
fn actions_parse_from_the_api() {
    for (json, action) in [
        (r#"{"action":"open","entry":"native"}"#, NATIVE),
        (
            r#"{"action":"clipboard","direction":"target_to_client","kind":"files","bytes":5}"#,
            files(T2C, 5),
        ),
        (
            r#"{"action":"file_transfer","direction":"client_to_target"}"#,
            UPLOAD,
        ),
        (r#"{"action":"printing"}"#, PRINT),
        (r#"{"action":"audio"}"#, AUDIO),
    ] {
        assert_eq!(
            serde_json::from_str::<Action>(json).unwrap(),
            action,
            "{json}"
        );
        let back = serde_json::to_string(&action).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&back).unwrap(), action);
    }
    assert!(serde_json::from_str::<Action>(r#"{"action":"teleport"}"#).is_err());
}

#[test]
fn labels_may_be_owned_strings() {
    let policy = sample();
    let labels: Vec<String> = vec!["ops".to_owned()];
    let target = TargetRef {
        name: "db42",
        labels: &labels,
    };
    let who = Subject {
        user: "olga",
        role: "user",
        groups: &[],
    };
    let decision = policy.session(&who, &target, Entry::Browser, 0);
    assert_eq!(decision.grant().map(|g| g.rule()), Some("operators"));
    assert!(policy.explain(&who, &target, BROWSER, 0).allowed);
}

/// More than 64 rules: the bitsets span several words.
#[test]
fn many_rules() {
    let mut rules: Vec<RuleDoc> = (0..150)
        .map(|i| {
            RuleDoc::new(
                &format!("r{i}"),
                &[&format!("user:u{i}")],
                &[&format!("name:t{i}")],
            )
        })
        .collect();
    rules[99] = RuleDoc::new("deep", &["user:u100"], &["label:deep"]);
    rules[149] = RuleDoc::new("catch-all", &["*"], &["*"]);
    let policy = Policy::compile(&PolicyDoc {
        groups: Default::default(),
        rules,
        risk: Vec::new(),
        retention: Vec::new(),
    })
    .unwrap();
    let rule_of = |user: &str, name: &str, labels: &[&str]| {
        let who = Subject {
            user,
            role: "user",
            groups: &[],
        };
        let target = TargetRef { name, labels };
        let decision = policy.session(&who, &target, Entry::Browser, 0);
        let explained = policy.explain(&who, &target, BROWSER, 0);
        let rule = decision.grant().map(|g| g.rule().to_owned());
        assert_eq!(rule, explained.rule);
        rule.unwrap()
    };
    assert_eq!(rule_of("u5", "t5", &[]), "r5");
    assert_eq!(rule_of("u70", "t70", &[]), "r70");
    assert_eq!(rule_of("u100", "t100", &[]), "r100");
    assert_eq!(rule_of("u100", "t100", &["deep"]), "deep");
    assert_eq!(rule_of("u100", "t5", &[]), "catch-all");
    assert_eq!(rule_of("u128", "t128", &[]), "r128");
    assert_eq!(rule_of("u148", "t148", &[]), "r148");
    assert_eq!(rule_of("nobody", "t1", &[]), "catch-all");
}

/// A small deterministic generator (xorshift64*), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The first matching rule by reading the document directly: the oracle for the lookup tables.
fn naive_first_match(doc: &PolicyDoc, who: &Subject<'_>, target: &TargetRef<'_>) -> Option<usize> {
    doc.rules.iter().position(|rule| {
        let subject = rule.subjects.iter().any(|s| {
            s == "*"
                || s.strip_prefix("user:") == Some(who.user)
                || s.strip_prefix("role:") == Some(who.role)
                || s.strip_prefix("group:")
                    .and_then(|g| doc.groups.get(g))
                    .is_some_and(|members| members.iter().any(|m| m == who.user))
        });
        let target_ok = rule.targets.iter().any(|t| {
            t == "*"
                || t.strip_prefix("name:") == Some(target.name)
                || t.strip_prefix("label:")
                    .is_some_and(|l| target.labels.contains(&l))
        });
        subject && target_ok
    })
}

#[test]
fn lookup_tables_agree_with_a_naive_reading() {
    const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
    const ROLES: [&str; 3] = ["admin", "user", "reviewer"];
    const NAMES: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];
    const LABELS: [&str; 4] = ["l0", "l1", "l2", "l3"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..200 {
        let mut doc = PolicyDoc::default();
        for g in 0..3 {
            let members = (0..rng.below(4))
                .map(|_| USERS[rng.below(USERS.len())].to_owned())
                .collect();
            doc.groups.insert(format!("g{g}"), members);
        }
        let rule_count = 1 + rng.below(if round % 10 == 0 { 140 } else { 12 });
        for i in 0..rule_count {
            let subjects: Vec<String> = (0..1 + rng.below(3))
                .map(|_| match rng.below(9) {
                    0 => "*".to_owned(),
                    1..=3 => format!("user:{}", USERS[rng.below(USERS.len())]),
                    4 | 5 => format!("role:{}", ROLES[rng.below(ROLES.len())]),
                    _ => format!("group:g{}", rng.below(3)),
                })
                .collect();
            let targets: Vec<String> = (0..1 + rng.below(3))
                .map(|_| match rng.below(7) {
                    0 => "*".to_owned(),
                    1..=3 => format!("name:{}", NAMES[rng.below(NAMES.len())]),
                    _ => format!("label:{}", LABELS[rng.below(LABELS.len())]),
                })
                .collect();
            let mut rule = RuleDoc::new(&format!("r{i}"), &[], &[]);
            rule.subjects = subjects;
            rule.targets = targets;
            doc.rules.push(rule);
        }
        let policy = Policy::compile(&doc).unwrap();
        for _ in 0..50 {
            let who = Subject {
                user: USERS[rng.below(USERS.len())],
                role: ROLES[rng.below(ROLES.len())],
                groups: &[],
            };
            let labels: Vec<&str> = (0..rng.below(3))
                .map(|_| LABELS[rng.below(LABELS.len())])
                .collect();
            let target = TargetRef {
                name: NAMES[rng.below(NAMES.len())],
                labels: &labels,
            };
            let expected = naive_first_match(&doc, &who, &target);
            let got = policy
                .session(&who, &target, Entry::Browser, 0)
                .grant()
                .map(|g| g.rule_index());
            assert_eq!(got, expected, "round {round}: {who:?} on {target:?}");
            let explained = policy.explain(&who, &target, BROWSER, 0);
            let considered = explained.considered.len();
            assert_eq!(considered, expected.map_or(doc.rules.len(), |i| i + 1));
        }
    }
}

#[test]
fn denials_are_errors() {
    fn open(policy: &Policy) -> Result<String, Box<dyn std::error::Error>> {
        let who = Subject {
            user: "victor",
            role: "user",
            groups: &[],
        };
        let target = TargetRef {
            name: "vend01",
            labels: labels_of("vend01"),
        };
        let grant = policy
            .session(&who, &target, Entry::Browser, at(0, 10, 0))
            .into_result()?;
        grant
            .file_transfer(Direction::TargetToClient)
            .into_result()?;
        Ok(grant.rule().to_owned())
    }
    let error = open(&sample()).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"file download (target→client) denied by rule "vendors" (upload only)"#
    );
}

/// `sso_group:` subjects match the identity provider's groups a user is in (any of them), and
/// nothing else: not a local user of that name, not a policy group, not a user without groups.
#[test]
fn sso_groups_are_subjects() {
    let policy = Policy::compile(&parse(
        "[groups]\nops = [\"olga\"]\n\n\
         [[rules]]\nname = \"sso-ops\"\nsubjects = [\"sso_group:ops\", \"sso_group:dba\"]\ntargets = [\"label:prod\"]\n\n\
         [[rules]]\nname = \"local-ops\"\nsubjects = [\"group:ops\"]\ntargets = [\"*\"]\ndeny = true",
    ))
    .unwrap();
    let target = TargetRef {
        name: "db01",
        labels: &["prod"],
    };
    let in_groups = ["finance".to_owned(), "dba".to_owned()];
    let sso = Subject {
        user: "sam",
        role: "user",
        groups: &in_groups,
    };
    let grant = policy
        .session(&sso, &target, Entry::Browser, 0)
        .into_result()
        .unwrap();
    assert_eq!(grant.rule(), "sso-ops");
    let explained = policy.explain(
        &sso,
        &target,
        Action::Open {
            entry: Entry::Browser,
        },
        0,
    );
    assert_eq!(explained.sso_groups, in_groups);
    assert!(explained.allowed);
    // A local member of the policy's own `ops` group is not in the provider's.
    let local = Subject {
        user: "olga",
        role: "user",
        groups: &[],
    };
    let denial = policy
        .session(&local, &target, Entry::Browser, 0)
        .into_result()
        .unwrap_err();
    assert_eq!(denial.rule.as_deref(), Some("local-ops"));
    let other = ["ops-readonly".to_owned()];
    let outsider = Subject {
        user: "sam",
        role: "user",
        groups: &other,
    };
    assert_eq!(
        policy
            .session(&outsider, &target, Entry::Browser, 0)
            .into_result()
            .unwrap_err()
            .reason
            .code(),
        "no_rule"
    );
    // An empty group name is refused like any empty subject value.
    assert!(Policy::compile(&parse(
        "[[rules]]\nname = \"r\"\nsubjects = [\"sso_group:\"]\ntargets = [\"*\"]"
    ))
    .is_err());
}

/// A rule with `request` gives access by approved request only: its sessions say so, it names
/// who approves and how many, and its settings are checked.
#[test]
fn request_rules_name_their_approvers() {
    let policy = Policy::compile(&parse(
        "[groups]\nleads = [\"lena\"]\n\n\
         [[rules]]\nname = \"dba-jit\"\nsubjects = [\"role:user\"]\ntargets = [\"label:db\"]\n\
         [rules.request]\napprovers = [\"group:leads\", \"role:admin\", \"sso_group:dba-leads\"]\napprovals = 2\nmax_duration_secs = 3600\n\n\
         [[rules]]\nname = \"standing\"\nsubjects = [\"role:user\"]\ntargets = [\"*\"]",
    ))
    .unwrap();
    let alice = Subject {
        user: "alice",
        role: "user",
        groups: &[],
    };
    let db = TargetRef {
        name: "db1",
        labels: &["db"],
    };
    let web: TargetRef<'_, &str> = TargetRef {
        name: "web1",
        labels: &[],
    };
    let asked = policy.requestable(&alice, &db).unwrap();
    assert_eq!(
        (
            asked.rule.as_str(),
            asked.approvals,
            asked.max_duration_secs
        ),
        ("dba-jit", 2, 3600)
    );
    assert_eq!(
        asked.approvers,
        ["group:leads", "role:admin", "sso_group:dba-leads"]
    );
    assert!(
        policy.requestable(&alice, &web).is_none(),
        "standing access"
    );
    let grant = policy
        .session(&alice, &db, Entry::Browser, 0)
        .into_result()
        .unwrap();
    assert!(grant.request_only());
    assert!(!policy
        .session(&alice, &web, Entry::Browser, 0)
        .into_result()
        .unwrap()
        .request_only());
    let explained = policy.explain(
        &alice,
        &db,
        Action::Open {
            entry: Entry::Browser,
        },
        0,
    );
    assert_eq!(
        explained.request.map(|r| r.rule),
        Some("dba-jit".to_owned())
    );
    let lead_groups = ["dba-leads".to_owned()];
    for (user, role, groups, may) in [
        ("lena", "user", &[][..], true),
        ("root", "admin", &[][..], true),
        ("sam", "user", &lead_groups[..], true),
        ("bob", "user", &[][..], false),
    ] {
        let who = Subject { user, role, groups };
        assert_eq!(policy.may_approve("dba-jit", &who), may, "{user}");
    }
    assert!(!policy.may_approve(
        "standing",
        &Subject {
            user: "root",
            role: "admin",
            groups: &[]
        }
    ));
    assert!(!policy.may_approve(
        "nope",
        &Subject {
            user: "root",
            role: "admin",
            groups: &[]
        }
    ));
    for (bad, field) in [
        ("approvers = []", "request.approvers"),
        (
            "approvers = [\"role:admin\"]\napprovals = 0",
            "request.approvals",
        ),
        (
            "approvers = [\"role:admin\"]\nmax_duration_secs = 10",
            "request.max_duration_secs",
        ),
        ("approvers = [\"group:nope\"]", "request.approvers[0]"),
    ] {
        let e = Policy::compile(&parse(&format!(
            "[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\n[rules.request]\n{bad}"
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains(field), "{e}");
    }
}

/// Four eyes: a rule may require an observer, optionally naming who counts as one.
#[test]
fn four_eyes_rules_name_their_observers() {
    let policy = Policy::compile(&parse(
        "[[rules]]\nname = \"watched\"\nsubjects = [\"role:user\"]\ntargets = [\"label:prod\"]\nobserver_required = true\nobservers = [\"user:olga\", \"sso_group:soc-t2\"]\n\n\
         [[rules]]\nname = \"any-watcher\"\nsubjects = [\"role:user\"]\ntargets = [\"label:dev\"]\nobserver_required = true\n\n\
         [[rules]]\nname = \"plain\"\nsubjects = [\"*\"]\ntargets = [\"*\"]",
    ))
    .unwrap();
    let alice = Subject {
        user: "alice",
        role: "user",
        groups: &[],
    };
    for (labels, rule, required) in [
        (&["prod"][..], "watched", true),
        (&["dev"][..], "any-watcher", true),
        (&[][..], "plain", false),
    ] {
        let grant = policy
            .session(&alice, &TargetRef { name: "t", labels }, Entry::Native, 0)
            .into_result()
            .unwrap();
        assert_eq!((grant.rule(), grant.observer_required()), (rule, required));
    }
    let t2 = ["soc-t2".to_owned()];
    let who = |user, groups| Subject {
        user,
        role: "soc",
        groups,
    };
    assert!(policy.may_observe("watched", &who("olga", &[])));
    assert!(policy.may_observe("watched", &who("sam", &t2)));
    assert!(!policy.may_observe("watched", &who("sam", &[])));
    assert!(policy.may_observe("any-watcher", &who("sam", &[])));
    assert!(!policy.may_observe("plain", &who("olga", &[])));
    let e = Policy::compile(&parse(
        "[[rules]]\nname = \"r\"\nsubjects = [\"*\"]\ntargets = [\"*\"]\nobservers = [\"user:olga\"]",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("observer_required is not set"), "{e}");
}
