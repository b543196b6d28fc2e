//! Entry points for fuzzing (cargo fuzz targets in `fuzz/`) and for replaying the inputs that
//! once broke something (`fuzz/regressions/`, by an ordinary test).

use crate::{
    Action, ClipKind, Direction, Entry, Policy, PolicyDoc, Subject, TargetRef, TextSource,
};

/// A policy document as an administrator may PUT it (JSON): parsed, compiled, and asked about a
/// few users, targets and times. Errors are fine; a panic is not. A compiled policy must decide
/// the same way for the session and for its explanation.
pub fn policy_document(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<PolicyDoc>(data) else {
        return;
    };
    let Ok(policy) = Policy::compile(&doc) else {
        return;
    };
    let labels = ["prod", "vendor"];
    for (user, role) in [("alice", "user"), ("root", "admin"), ("", "soc")] {
        let who = Subject {
            user,
            role,
            groups: &[],
        };
        for name in ["web01", "db", ""] {
            let target = TargetRef {
                name,
                labels: &labels,
            };
            // The document's own text through its risk rules: bounded, whatever the patterns.
            let text = String::from_utf8_lossy(data);
            for source in [TextSource::Typed, TextSource::Screen] {
                for hit in policy.risk_for(&target).check(source, &text) {
                    assert!(hit.excerpt.chars().count() <= crate::risk::MAX_EXCERPT);
                }
            }
            for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
                for entry in [Entry::Browser, Entry::Native] {
                    let session = policy.session(&who, &target, entry, now);
                    let explained = policy.explain(&who, &target, Action::Open { entry }, now);
                    assert_eq!(
                        session.is_allowed(),
                        explained.allowed,
                        "the explanation and the decision differ"
                    );
                    if let Some(grant) = session.grant() {
                        let _ =
                            grant.clipboard(Direction::ClientToTarget, ClipKind::Files, usize::MAX);
                        let _ = grant.ends_at_unix_secs(now);
                        let _ = grant.file_transfer(Direction::TargetToClient);
                    }
                }
            }
        }
    }
}
