//! The cost of a decision with a 50-rule policy, worst case (the last rule matches, through a
//! group and the last of three labels, with a time window):
//! `cargo bench -p portcullis-policy [-- DECISIONS]`. Prints the median of 5 runs in ns/decision.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use portcullis_policy::{
    ClipKind, Direction, Entry, Policy, PolicyDoc, RuleDoc, Subject, TargetRef, WindowDoc,
};

const RULES: usize = 50;
const RUNS: usize = 5;

fn policy() -> Policy {
    let mut doc = PolicyDoc::default();
    for i in 0..RULES {
        let members = (0..20).map(|j| format!("member{i}-{j}")).collect();
        doc.groups.insert(format!("g{i}"), members);
    }
    doc.groups.get_mut("g49").unwrap().push("alice".to_owned());
    for i in 0..RULES {
        let mut rule = RuleDoc::new(
            &format!("rule{i}"),
            &[
                &format!("user:u{i}"),
                &format!("role:r{i}"),
                &format!("group:g{i}"),
            ],
            &[&format!("name:t{i}"), &format!("label:l{i}")],
        );
        rule.windows = vec![WindowDoc {
            days: portcullis_policy::Weekday::all(),
            from: "06:00".to_owned(),
            to: "22:00".to_owned(),
            utc_offset_minutes: 60,
        }];
        doc.rules.push(rule);
    }
    Policy::compile(&doc).unwrap()
}

/// Runs `f` `n` times, `RUNS` times over, and returns the median ns per call.
fn measure(n: u64, mut f: impl FnMut() -> bool) -> f64 {
    let mut results: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let mut allowed = 0u64;
            for _ in 0..n {
                allowed += u64::from(black_box(f()));
            }
            black_box(allowed);
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    results.sort_by(f64::total_cmp);
    results[RUNS / 2]
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let policy = policy();
    let now = 4 * 86_400 + 10 * 3600; // Monday 10:00 UTC.
    let alice = Subject {
        user: "alice",
        role: "user",
        groups: &[],
    };
    let labels = ["env:test", "team:ops", "l49"];
    let target = TargetRef {
        name: "web01",
        labels: &labels,
    };
    let nobody = Subject {
        user: "mallory",
        role: "user",
        groups: &[],
    };
    assert_eq!(
        policy
            .session(&alice, &target, Entry::Browser, now)
            .grant()
            .map(|g| g.rule()),
        Some("rule49")
    );

    let session = measure(n, || {
        policy
            .session(
                black_box(&alice),
                black_box(&target),
                Entry::Browser,
                black_box(now),
            )
            .is_allowed()
    });
    println!("session, allowed by rule 50 of {RULES}:   {session:6.1} ns/decision");

    let denied = measure(n / 4, || {
        policy
            .session(
                black_box(&nobody),
                black_box(&target),
                Entry::Browser,
                black_box(now),
            )
            .is_allowed()
    });
    println!("session, no rule matches (allocates): {denied:6.1} ns/decision");

    let grant = policy
        .session(&alice, &target, Entry::Browser, now)
        .into_result()
        .unwrap();
    let clipboard = measure(n, || {
        black_box(&grant)
            .clipboard(Direction::ClientToTarget, ClipKind::Text, black_box(100))
            .is_allowed()
    });
    println!("clipboard crossing (clipboard off):   {clipboard:6.1} ns/decision");
}
