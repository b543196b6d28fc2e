//! `portcullis store migrate`: an installation's embedded store copied into PostgreSQL (a real
//! server: `PORTCULLIS_TEST_POSTGRES`, started by `cargo xtask test`), on record first, and the
//! CLI then working on the PostgreSQL store.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use portcullis_audit::{read_only_query, Filter};
use portcullis_store::testing::TestDatabase;
use serde_json::json;

mod common;
use common::{portcullis, portcullis_with};

/// The CLI on the PostgreSQL store at `url` (named by the environment, as a deployment would).
fn portcullis_on(url: &str, data: &Path, args: &[&str]) -> Output {
    portcullis_with(data, args, &[("PORTCULLIS_STORE_URL", url)])
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn an_embedded_store_moves_to_postgres_whole_and_only_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    ok(&portcullis(
        data,
        &["user", "add", "bob", "--password-env", "PW"],
    ));
    ok(&portcullis(
        data,
        &[
            "user",
            "add",
            "ada",
            "--role",
            "admin",
            "--password-env",
            "PW",
        ],
    ));
    ok(&portcullis(
        data,
        &[
            "target",
            "add",
            "web",
            "--address",
            "127.0.0.1:5901",
            "--label",
            "prod",
            "--password-env",
            "PW",
        ],
    ));
    ok(&portcullis(data, &["grant", "add", "bob", "web"]));
    let users_before = ok(&portcullis(data, &["user", "list"]));
    let targets_before = ok(&portcullis(data, &["target", "list"]));

    // Only sled can be copied from, and only into PostgreSQL.
    let out = portcullis(
        data,
        &["store", "migrate", "--from", "redis", "--to", &db.url],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only `sled`"),
        "{out:?}"
    );
    let out = portcullis(
        data,
        &["store", "migrate", "--from", "sled", "--to", "mysql://x"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only PostgreSQL"),
        "{out:?}"
    );

    let out = ok(&portcullis(
        data,
        &["store", "migrate", "--from", "sled", "--to", &db.url],
    ));
    assert!(
        out.contains("copied 2 users, 1 targets, 1 grants, 0 API tokens"),
        "{out}"
    );
    assert!(
        !out.contains(&db.url),
        "the URL (and its password) is not echoed: {out}"
    );

    // On record before it was done, naming the server without its password.
    let entries = read_only_query(&data.join("audit"), &Filter::new(100)).unwrap();
    let record = &entries.last().unwrap().record;
    assert_eq!(record.detail["action"], json!("store_migrate"));
    let server = record.detail["after"]["server"].as_str().unwrap();
    assert!(
        server.starts_with("postgres://") && server.ends_with(&db.name),
        "{server}"
    );
    let password = db
        .url
        .split_once("://")
        .unwrap()
        .1
        .split_once('@')
        .unwrap()
        .0;
    let password = password.split_once(':').unwrap().1;
    assert!(!serde_json::to_string(record).unwrap().contains(password));

    // The CLI on the PostgreSQL store sees the same installation, and changes it there.
    assert_eq!(
        ok(&portcullis_on(&db.url, data, &["user", "list"])),
        users_before
    );
    assert_eq!(
        ok(&portcullis_on(&db.url, data, &["target", "list"])),
        targets_before
    );
    ok(&portcullis_on(
        &db.url,
        data,
        &["grant", "delete", "bob", "web"],
    ));
    assert!(ok(&portcullis_on(&db.url, data, &["grant", "list"]))
        .trim()
        .is_empty());
    // ... while the embedded store is left as it was.
    assert!(ok(&portcullis(data, &["grant", "list"])).contains("web"));

    // A second copy into a store that holds an installation is refused and changes nothing.
    let out = portcullis(
        data,
        &["store", "migrate", "--from", "sled", "--to", &db.url],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds"),
        "{out:?}"
    );
    assert!(ok(&portcullis_on(&db.url, data, &["grant", "list"]))
        .trim()
        .is_empty());
}
