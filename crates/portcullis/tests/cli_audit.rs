//! The CLI's changes are in the audit trail before they are made, with the OS user as actor, and
//! a CLI that cannot take the trail's lock (a running gateway holds it) changes nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use portcullis_audit::{read_only_query, AuditLog, Filter};
use serde_json::json;

mod common;
use common::portcullis;

fn users(data: &Path) -> String {
    let out = portcullis(data, &["user", "list"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_changes_are_audited_first_and_refused_without_the_trail() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let out = portcullis(data, &["user", "add", "bob", "--password-env", "PW"]);
    assert!(out.status.success(), "{out:?}");
    let out = portcullis(data, &["user", "add", "eve", "--password-env", "PW"]);
    assert!(out.status.success(), "{out:?}");

    let entries = read_only_query(&data.join("audit"), &Filter::new(10)).unwrap();
    assert_eq!(entries.len(), 2);
    let r = &entries[0].record;
    assert_eq!(r.kind.as_str(), "admin_change");
    assert!(
        r.actor.starts_with("cli:") && r.actor.len() > 4,
        "{}",
        r.actor
    );
    assert_eq!(r.detail["action"], json!("user_create"));
    assert_eq!(r.detail["after"], json!({"name": "bob", "role": "user"}));
    assert!(!serde_json::to_string(r)
        .unwrap()
        .contains("enough password"));

    // A gateway holds the trail: the CLI refuses, and the user stays.
    let held = AuditLog::open(data.join("audit")).unwrap();
    let out = portcullis(data, &["user", "delete", "bob"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("held by a running gateway"), "{stderr}");
    drop(held);
    assert!(users(data).contains("bob"));

    // Free again: the deletion is recorded (with the state before) and made.
    let out = portcullis(data, &["user", "delete", "bob"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!users(data).contains("bob"));
    let entries = read_only_query(&data.join("audit"), &Filter::new(10)).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2].record.detail["action"], json!("user_delete"));
    assert_eq!(entries[2].record.detail["before"]["name"], json!("bob"));
}
