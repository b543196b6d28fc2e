//! One conformance suite, run against every `Store` implementation.

#![allow(clippy::unwrap_used)]

use std::any::Any;

use portcullis_store::testing::TestDatabase;
use portcullis_store::{
    Ephemeral, EphemeralChange, GrantRecord, MemoryStore, MfaRecord, PgOptions, PgStore,
    RecordingReview, ReviewFlag, ReviewMark, ReviewState, Role, SledStore, Store, StoreError,
    TargetIdentity, TargetKind, TargetRecord, TokenRecord, UserRecord,
};

fn user(name: &str, role: Role) -> UserRecord {
    UserRecord {
        id: format!("u_{name}"),
        name: name.to_owned(),
        password_hash: format!("$argon2id$hash-of-{name}"),
        role,
        created_at: 1_700_000_000,
        locked: false,
        mfa: None,
        sso: None,
        groups: Vec::new(),
        passkeys: Vec::new(),
    }
}

fn target(name: &str) -> TargetRecord {
    TargetRecord {
        name: name.to_owned(),
        kind: TargetKind::Vnc,
        address: format!("{name}.example:5900"),
        account: String::new(),
        sealed_secret: vec![1, 2, 3, 0, 255],
        description: format!("the {name} box"),
        created_at: 1_700_000_001,
        labels: vec!["prod".to_owned(), format!("{name}-label")],
        identity: Default::default(),
    }
}

fn names<T>(records: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    records.iter().map(|r| name(r).to_owned()).collect()
}

fn grant_pairs(store: &dyn Store) -> Vec<(String, String)> {
    store
        .list_grants()
        .unwrap()
        .into_iter()
        .map(|g| (g.user, g.target))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(u, t)| ((*u).to_owned(), (*t).to_owned()))
        .collect()
}

/// The checks, each taking a fresh, empty store.
mod checks {
    use super::*;

    pub(crate) fn users(store: &dyn Store) {
        assert_eq!(store.get_user("alice").unwrap(), None);
        assert!(store.list_users().unwrap().is_empty());

        let alice = user("alice", Role::Admin);
        store.create_user(&alice).unwrap();
        store.create_user(&user("bob", Role::User)).unwrap();
        store.create_user(&user("Al_1.x-y", Role::User)).unwrap();
        assert_eq!(store.get_user("alice").unwrap(), Some(alice.clone()));
        assert_eq!(store.get_user("ALICE").unwrap(), None);
        assert_eq!(
            names(&store.list_users().unwrap(), |u| &u.name),
            ["Al_1.x-y", "alice", "bob"]
        );

        // put_user replaces (a password or role change) ...
        let mut changed = alice.clone();
        changed.password_hash = "$argon2id$new".to_owned();
        changed.role = Role::User;
        store.put_user(&changed).unwrap();
        assert_eq!(store.get_user("alice").unwrap(), Some(changed));
        // ... and inserts.
        store.put_user(&user("carol", Role::User)).unwrap();
        assert!(store.get_user("carol").unwrap().is_some());
        assert_eq!(store.list_users().unwrap().len(), 4);
    }

    pub(crate) fn user_already_exists(store: &dyn Store) {
        store.create_user(&user("alice", Role::Admin)).unwrap();
        let mut other = user("alice", Role::User);
        other.password_hash = "other".to_owned();
        let err = store.create_user(&other).unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists { kind: "user", name } if name == "alice"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"user "alice" already exists"#);
        // The original is untouched.
        assert_eq!(store.get_user("alice").unwrap().unwrap().role, Role::Admin);
    }

    pub(crate) fn targets(store: &dyn Store) {
        assert_eq!(store.get_target("web").unwrap(), None);
        assert!(store.list_targets().unwrap().is_empty());

        let web = target("web");
        store.create_target(&web).unwrap();
        store.create_target(&target("db-1")).unwrap();
        store.create_target(&target("app.prod")).unwrap();
        assert_eq!(store.get_target("web").unwrap(), Some(web.clone()));
        assert_eq!(
            names(&store.list_targets().unwrap(), |t| &t.name),
            ["app.prod", "db-1", "web"]
        );

        let mut changed = web.clone();
        changed.address = "10.0.0.1:5901".to_owned();
        changed.sealed_secret = vec![9; 57];
        store.put_target(&changed).unwrap();
        assert_eq!(store.get_target("web").unwrap(), Some(changed.clone()));

        // The pinned identity of an RDP target is kept as written.
        changed.kind = TargetKind::Rdp;
        changed.identity = TargetIdentity {
            tls_sha256: Some("0f".repeat(32)),
            nla_seen: true,
            require_nla: true,
            refused_sha256: Some("e1".repeat(32)),
            refused_downgrade: true,
            tls_ca_file: Some("/etc/portcullis/ca.pem".to_owned()),
        };
        store.put_target(&changed).unwrap();
        assert_eq!(store.get_target("web").unwrap(), Some(changed));
        store.put_target(&target("new")).unwrap();
        assert_eq!(store.list_targets().unwrap().len(), 4);

        let err = store.create_target(&target("web")).unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists { kind: "target", name } if name == "web"),
            "{err:?}"
        );
    }

    pub(crate) fn invalid_names(store: &dyn Store) {
        for bad in [
            "",
            ".hidden",
            "-opt",
            "a b",
            "alice#web",
            "a@b",
            "a\\b",
            "a/b",
            "a\0b",
        ] {
            let err = store.create_user(&user(bad, Role::User)).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidName(_)),
                "{bad:?}: {err:?}"
            );
            let err = store.put_user(&user(bad, Role::User)).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidName(_)),
                "{bad:?}: {err:?}"
            );
            let err = store.create_target(&target(bad)).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidName(_)),
                "{bad:?}: {err:?}"
            );
            let err = store.put_target(&target(bad)).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidName(_)),
                "{bad:?}: {err:?}"
            );
            // Lookups with invalid names match nothing and do not fail.
            assert_eq!(store.get_user(bad).unwrap(), None);
            assert_eq!(store.get_target(bad).unwrap(), None);
            assert!(!store.has_grant(bad, bad).unwrap());
            assert!(store.granted_targets(bad).unwrap().is_empty());
            assert!(!store.delete_user(bad).unwrap());
            assert!(!store.delete_target(bad).unwrap());
            assert!(!store.delete_grant(bad, bad).unwrap());
        }
        let err = store.create_user(&user("x y", Role::User)).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid user name "x y": use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"#
        );
        let long = "a".repeat(65);
        assert!(store.create_user(&user(&long, Role::User)).is_err());
        store.create_user(&user(&long[..64], Role::User)).unwrap();
        assert!(store.list_users().unwrap().len() == 1);
        assert!(store.list_targets().unwrap().is_empty());
    }

    pub(crate) fn grants(store: &dyn Store) {
        store.create_user(&user("alice", Role::User)).unwrap();
        store.create_user(&user("al", Role::User)).unwrap();
        store.create_user(&user("al-b", Role::User)).unwrap();
        store.create_target(&target("web")).unwrap();
        store.create_target(&target("db")).unwrap();
        store.create_target(&target("app")).unwrap();

        assert!(!store.has_grant("alice", "web").unwrap());
        store.create_grant("alice", "web", 10).unwrap();
        store.create_grant("alice", "db", 11).unwrap();
        store.create_grant("al-b", "web", 12).unwrap();
        store.create_grant("al", "app", 13).unwrap();

        assert!(store.has_grant("alice", "web").unwrap());
        assert!(!store.has_grant("alice", "app").unwrap());
        assert!(!store.has_grant("al", "web").unwrap());
        assert_eq!(store.granted_targets("alice").unwrap(), ["db", "web"]);
        assert_eq!(store.granted_targets("al").unwrap(), ["app"]);
        assert!(store.granted_targets("nobody").unwrap().is_empty());
        assert_eq!(
            grant_pairs(store),
            pairs(&[
                ("al", "app"),
                ("al-b", "web"),
                ("alice", "db"),
                ("alice", "web")
            ])
        );
        assert!(store.list_grants().unwrap().contains(&GrantRecord {
            user: "alice".to_owned(),
            target: "db".to_owned(),
            created_at: 11,
        }));

        // Idempotent, and the original creation time stays.
        store.create_grant("alice", "web", 99).unwrap();
        let web_grant = store
            .list_grants()
            .unwrap()
            .into_iter()
            .find(|g| g.user == "alice" && g.target == "web")
            .unwrap();
        assert_eq!(web_grant.created_at, 10);
        assert_eq!(store.list_grants().unwrap().len(), 4);

        assert!(store.delete_grant("alice", "web").unwrap());
        assert!(!store.delete_grant("alice", "web").unwrap());
        assert!(!store.has_grant("alice", "web").unwrap());
        assert_eq!(store.granted_targets("alice").unwrap(), ["db"]);
        assert!(!store.delete_grant("nobody", "web").unwrap());
    }

    pub(crate) fn grant_not_found(store: &dyn Store) {
        store.create_user(&user("alice", Role::User)).unwrap();
        store.create_target(&target("web")).unwrap();

        let err = store.create_grant("bob", "web", 1).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "user", name } if name == "bob"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"user "bob" not found"#);
        let err = store.create_grant("alice", "db", 1).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "target", name } if name == "db"),
            "{err:?}"
        );
        // Both missing: the user is reported.
        let err = store.create_grant("bob", "db", 1).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "user", .. }),
            "{err:?}"
        );
        let err = store.create_grant("a\0b", "web", 1).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "user", .. }),
            "{err:?}"
        );
        assert!(store.list_grants().unwrap().is_empty());
    }

    pub(crate) fn delete_user_cascades(store: &dyn Store) {
        store.create_user(&user("alice", Role::User)).unwrap();
        store.create_user(&user("al", Role::User)).unwrap();
        store.create_user(&user("bob", Role::User)).unwrap();
        store.create_target(&target("web")).unwrap();
        store.create_target(&target("db")).unwrap();
        store.create_grant("alice", "web", 1).unwrap();
        store.create_grant("alice", "db", 1).unwrap();
        store.create_grant("al", "web", 1).unwrap();
        store.create_grant("bob", "db", 1).unwrap();
        let token = |id: &str, user: &str| TokenRecord {
            id: id.to_owned(),
            user: user.to_owned(),
            user_id: format!("u_{user}"),
            name: format!("token {id}"),
            scopes: vec!["sessions:read".to_owned()],
            secret_hash: vec![1; 32],
            created_at: 10,
            expires_at: 20,
            created_by: "admin".to_owned(),
        };
        store.put_token(&token("t-alice", "alice")).unwrap();
        store.put_token(&token("t-bob", "bob")).unwrap();

        assert!(store.delete_user("alice").unwrap());
        // Her API tokens went with her; bob's stay.
        assert_eq!(store.get_token("t-alice").unwrap(), None);
        assert!(store.get_token("t-bob").unwrap().is_some());
        assert!(!store.delete_user("alice").unwrap());
        assert_eq!(store.get_user("alice").unwrap(), None);
        assert_eq!(
            names(&store.list_users().unwrap(), |u| &u.name),
            ["al", "bob"]
        );
        assert_eq!(grant_pairs(store), pairs(&[("al", "web"), ("bob", "db")]));
        assert!(!store.has_grant("alice", "web").unwrap());
        assert!(store.granted_targets("alice").unwrap().is_empty());

        // A new user of the same name starts without grants.
        store.create_user(&user("alice", Role::User)).unwrap();
        assert!(store.granted_targets("alice").unwrap().is_empty());
        // Targets are untouched.
        assert_eq!(store.list_targets().unwrap().len(), 2);
    }

    pub(crate) fn delete_target_cascades(store: &dyn Store) {
        store.create_user(&user("alice", Role::User)).unwrap();
        store.create_user(&user("bob", Role::User)).unwrap();
        store.create_target(&target("web")).unwrap();
        store.create_target(&target("web2")).unwrap();
        store.create_target(&target("db")).unwrap();
        store.create_grant("alice", "web", 1).unwrap();
        store.create_grant("alice", "web2", 1).unwrap();
        store.create_grant("bob", "web", 1).unwrap();
        store.create_grant("bob", "db", 1).unwrap();

        assert!(store.delete_target("web").unwrap());
        assert!(!store.delete_target("web").unwrap());
        assert_eq!(store.get_target("web").unwrap(), None);
        assert_eq!(
            grant_pairs(store),
            pairs(&[("alice", "web2"), ("bob", "db")])
        );
        assert_eq!(store.granted_targets("bob").unwrap(), ["db"]);
        assert_eq!(store.list_users().unwrap().len(), 2);

        store.create_target(&target("web")).unwrap();
        assert!(!store.has_grant("alice", "web").unwrap());
        let err = store.create_grant("alice", "gone", 1).unwrap_err();
        assert!(matches!(err, StoreError::NotFound { kind: "target", .. }));
    }

    pub(crate) fn meta(store: &dyn Store) {
        assert_eq!(store.get_meta("schema").unwrap(), None);
        store.put_meta("schema", b"1").unwrap();
        store.put_meta("binary", &[0, 255, 10]).unwrap();
        store.put_meta("empty", b"").unwrap();
        assert_eq!(
            store.get_meta("schema").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            store.get_meta("binary").unwrap().as_deref(),
            Some(&[0, 255, 10][..])
        );
        assert_eq!(store.get_meta("empty").unwrap().as_deref(), Some(&b""[..]));
        store.put_meta("schema", b"2").unwrap();
        assert_eq!(
            store.get_meta("schema").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(store.meta_keys().unwrap(), ["binary", "empty", "schema"]);
        // Written once: the first writer wins.
        assert!(store.put_meta_if_absent("once", b"first").unwrap());
        assert!(!store.put_meta_if_absent("once", b"second").unwrap());
        assert_eq!(
            store.get_meta("once").unwrap().as_deref(),
            Some(&b"first"[..])
        );
        assert!(!store.put_meta_if_absent("schema", b"3").unwrap());
        assert_eq!(
            store.get_meta("schema").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            store.meta_keys().unwrap(),
            ["binary", "empty", "once", "schema"]
        );
        // Meta keys live apart from users.
        assert_eq!(store.get_user("schema").unwrap(), None);
        assert_eq!(store.get_meta("a\0b").unwrap(), None);
        store.flush().unwrap();
    }

    /// A whole installation copied into this store (`portcullis store migrate`).
    pub(crate) fn copied_into(store: &dyn Store) {
        // Text that cannot be stored everywhere is found before anything is written.
        let bad = MemoryStore::new();
        bad.create_user(&user("zoe", Role::User)).unwrap();
        let mut t = target("nul");
        t.description = "before\0after".to_owned();
        bad.create_target(&t).unwrap();
        let err = portcullis_store::copy_all(&bad, store)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target \"nul\" holds a NUL character"),
            "{err}"
        );
        assert!(store.list_users().unwrap().is_empty(), "nothing was copied");

        let source = MemoryStore::new();
        let mut alice = user("alice", Role::Admin);
        alice.mfa = Some(MfaRecord {
            sealed_secret: vec![9, 9],
            confirmed: true,
            last_step: 123,
            since: 77,
            recovery: Vec::new(),
        });
        alice.locked = true;
        source.create_user(&alice).unwrap();
        source.create_user(&user("bob", Role::User)).unwrap();
        let mut pinned = target("win");
        pinned.kind = TargetKind::Rdp;
        pinned.account = "CORP\\svc".to_owned();
        pinned.identity = TargetIdentity {
            tls_sha256: Some("ab".repeat(32)),
            nla_seen: true,
            ..TargetIdentity::default()
        };
        source.create_target(&pinned).unwrap();
        source.create_target(&target("web")).unwrap();
        source.create_grant("bob", "win", 11).unwrap();
        source.create_grant("bob", "web", 12).unwrap();
        source
            .put_token(&TokenRecord {
                id: "tok1".to_owned(),
                user: "alice".to_owned(),
                user_id: "u_alice".to_owned(),
                name: "ci".to_owned(),
                scopes: vec!["sessions:read".to_owned()],
                secret_hash: vec![7; 32],
                created_at: 1,
                expires_at: 2,
                created_by: "alice".to_owned(),
            })
            .unwrap();
        source.put_meta("policy", b"{\"rules\":[]}").unwrap();
        source.create_request(&request("req_1")).unwrap();
        let review = review_with_flag(&source, "rec-1");

        let counts = portcullis_store::copy_all(&source, store).unwrap();
        assert_eq!(
            (
                counts.users,
                counts.targets,
                counts.grants,
                counts.tokens,
                counts.meta,
                counts.requests,
                counts.reviews
            ),
            (2, 2, 2, 1, 1, 1, 1)
        );
        assert_eq!(store.get_request("req_1").unwrap(), Some(request("req_1")));
        assert_eq!(store.get_review("rec-1").unwrap(), Some(review));
        assert_eq!(store.get_user("alice").unwrap(), Some(alice));
        assert_eq!(store.get_target("win").unwrap(), Some(pinned));
        assert_eq!(store.list_grants().unwrap(), source.list_grants().unwrap());
        assert_eq!(
            store.get_token("tok1").unwrap(),
            source.get_token("tok1").unwrap()
        );
        assert_eq!(
            store.get_meta("policy").unwrap(),
            source.get_meta("policy").unwrap()
        );
        // Never into a store that holds anything: the second copy is refused and changes nothing.
        let again = MemoryStore::new();
        again.create_user(&user("mallory", Role::Admin)).unwrap();
        let err = portcullis_store::copy_all(&again, store)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already holds"), "{err}");
        assert_eq!(store.get_user("mallory").unwrap(), None);
    }

    pub(crate) fn tokens_and_mfa(store: &dyn Store) {
        let mut alice = user("alice", Role::User);
        alice.mfa = Some(MfaRecord {
            sealed_secret: vec![9, 8, 7],
            confirmed: true,
            last_step: 42,
            since: 5,
            recovery: Vec::new(),
        });
        store.create_user(&alice).unwrap();
        let back = store.get_user("alice").unwrap().unwrap();
        assert_eq!(back, alice);
        assert!(back.mfa_enabled());
        let token = |id: &str| TokenRecord {
            id: id.to_owned(),
            user: "alice".to_owned(),
            user_id: "u_alice".to_owned(),
            name: format!("token {id}"),
            scopes: vec!["sessions:read".to_owned()],
            secret_hash: vec![1; 32],
            created_at: 10,
            expires_at: 20,
            created_by: "admin".to_owned(),
        };
        assert_eq!(store.get_token("t2").unwrap(), None);
        store.put_token(&token("t2")).unwrap();
        store.put_token(&token("t1")).unwrap();
        assert_eq!(store.get_token("t2").unwrap(), Some(token("t2")));
        let ids: Vec<String> = store
            .list_tokens()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert!(store.delete_token("t1").unwrap());
        assert!(!store.delete_token("t1").unwrap());
        assert_eq!(store.list_tokens().unwrap().len(), 1);
        assert!(store.put_token(&token("bad id")).is_err());
    }
}

/// Short-lived state: expiry, one-time take, owners, counts and purge.
pub fn ephemeral(store: &dyn Store) {
    let now = 1_800_000_000_000i64;
    let entry = |owner: &str, value: &[u8], expires: i64| Ephemeral {
        owner: owner.to_owned(),
        value: value.to_vec(),
        expires_at_ms: expires,
    };
    let put = |space: &str, key: &str, e: Ephemeral| {
        store
            .ephemeral_update(space, key, now, &mut |_| EphemeralChange::Put(e.clone()))
            .unwrap()
    };
    let get = |space: &str, key: &str, at: i64| {
        store
            .ephemeral_update(space, key, at, &mut |_| EphemeralChange::Keep)
            .unwrap()
    };
    assert_eq!(put("logins", "a", entry("alice", b"1", now + 1000)), None);
    put("logins", "b", entry("alice", b"2", now + 5000));
    put("logins", "c", entry("bob", b"3", now + 5000));
    put("tickets", "a", entry("alice", b"t", now + 5000));
    assert_eq!(
        get("logins", "a", now),
        Some(entry("alice", b"1", now + 1000))
    );
    // Spaces are apart; an expired entry is gone.
    assert_eq!(get("tickets", "a", now).unwrap().value, b"t");
    assert_eq!(get("logins", "a", now + 1000), None);
    assert_eq!(get("logins", "nothing", now), None);
    assert_eq!(
        store.ephemeral_count("logins", "alice", now).unwrap(),
        (3, 2)
    );
    assert_eq!(
        store
            .ephemeral_count("logins", "alice", now + 1000)
            .unwrap(),
        (2, 1)
    );
    // The change sees the entry; replacing keeps the key.
    store
        .ephemeral_update("logins", "b", now, &mut |e| {
            let mut e = e.unwrap().clone();
            e.value = b"2b".to_vec();
            EphemeralChange::Put(e)
        })
        .unwrap();
    assert_eq!(get("logins", "b", now).unwrap().value, b"2b");
    // Taken once.
    let take = |space: &str, key: &str| {
        store
            .ephemeral_update(space, key, now, &mut |_| EphemeralChange::Delete)
            .unwrap()
    };
    assert_eq!(take("tickets", "a").unwrap().value, b"t");
    assert_eq!(take("tickets", "a"), None);
    // An owner's entries go at once, others' stay.
    assert_eq!(store.ephemeral_delete_owner("logins", "alice").unwrap(), 2);
    assert_eq!(get("logins", "b", now), None);
    assert!(get("logins", "c", now).is_some());
    // Purge drops what expired.
    put("logins", "d", entry("", b"4", now + 10));
    assert_eq!(store.ephemeral_purge(now + 10).unwrap(), 1);
    assert!(get("logins", "c", now).is_some());
    // Keys that cannot be stored match nothing.
    assert_eq!(get("logins", "a\0b", now), None);
    // A space trimmed to its bound keeps the entries that expire last.
    for i in 0..5 {
        put("bounded", &format!("k{i}"), entry("", b"b", now + 1000 + i));
    }
    assert_eq!(store.ephemeral_trim("bounded", 2).unwrap(), 3);
    assert_eq!(store.ephemeral_trim("bounded", 2).unwrap(), 0);
    assert_eq!(store.ephemeral_count("bounded", "", now).unwrap(), (2, 2));
    assert!(get("bounded", "k4", now).is_some() && get("bounded", "k3", now).is_some());
    assert!(get("bounded", "k2", now).is_none());

    // Concurrent: one taker of a ticket; no lost increments.
    put("tickets", "once", entry("bob", b"x", now + 60_000));
    let winners = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                if take("tickets", "once").is_some() {
                    winners.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..40 {
                    store
                        .ephemeral_update("counts", "k", now, &mut |e| {
                            let n = e.map_or(0, |e| e.value[0]);
                            std::thread::yield_now();
                            EphemeralChange::Put(Ephemeral {
                                owner: String::new(),
                                value: vec![n + 1],
                                expires_at_ms: now + 60_000,
                            })
                        })
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(winners.into_inner(), 1);
    assert_eq!(get("counts", "k", now).unwrap().value, [160]);
}

/// Concurrent changes to one target (a pin learned while an admin edits): none is lost, and a
/// deleted target never comes back.
pub fn concurrent_target_updates(store: &dyn Store) {
    const THREADS: usize = 4;
    const ROUNDS: usize = 50;
    store.create_target(&target("win")).unwrap();
    let before = target("win").labels.len();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                for r in 0..ROUNDS {
                    store
                        .update_target("win", &mut |rec| {
                            let mut labels = rec.labels.clone();
                            std::thread::yield_now();
                            labels.push(format!("t{t}-{r}"));
                            rec.labels = labels;
                            true
                        })
                        .unwrap()
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        store.get_target("win").unwrap().unwrap().labels.len(),
        before + THREADS * ROUNDS
    );
    assert_eq!(store.update_target("nowhere", &mut |_| true).unwrap(), None);
    assert_eq!(store.get_target("nowhere").unwrap(), None);
    assert!(store.delete_target("win").unwrap());
    assert_eq!(store.update_target("win", &mut |_| true).unwrap(), None);
    assert_eq!(
        store.get_target("win").unwrap(),
        None,
        "a deleted target came back"
    );
}

/// Concurrent changes to one user: none is lost, and a delete is never undone by a change that
/// read the record before it.
pub fn concurrent_user_updates(store: &dyn Store) {
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 100;
    let mut carol = user("carol", Role::User);
    carol.mfa = Some(MfaRecord {
        sealed_secret: vec![1],
        confirmed: false,
        last_step: 0,
        since: 0,
        recovery: Vec::new(),
    });
    store.create_user(&carol).unwrap();
    std::thread::scope(|scope| {
        // Counters in the MFA record: each thread adds one, many times, with a yield between
        // the read and the write so that a read-modify-write without atomicity loses updates.
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..ROUNDS {
                    let changed = store
                        .update_user("carol", &mut |u| {
                            let m = u.mfa.as_mut().unwrap();
                            let seen = m.last_step;
                            std::thread::yield_now();
                            m.last_step = seen + 1;
                            true
                        })
                        .unwrap();
                    assert!(changed.is_some());
                }
            });
        }
        // And a lock flipping meanwhile, which must not undo or be undone by the counters.
        scope.spawn(|| {
            for i in 0..ROUNDS {
                store
                    .update_user("carol", &mut |u| {
                        u.locked = i % 2 == 0;
                        true
                    })
                    .unwrap();
            }
        });
    });
    let carol = store.get_user("carol").unwrap().unwrap();
    assert_eq!(carol.mfa.unwrap().last_step, THREADS * ROUNDS);
    assert!(
        !carol.locked,
        "the last lock change (odd round: unlock) stands"
    );

    // A change that finds nothing writes nothing; returning false writes nothing.
    assert_eq!(store.update_user("nobody", &mut |_| true).unwrap(), None);
    assert_eq!(store.get_user("nobody").unwrap(), None);
    let before = store.get_user("carol").unwrap();
    let unchanged = store
        .update_user("carol", &mut |u| {
            u.locked = true;
            false
        })
        .unwrap();
    assert_eq!(store.get_user("carol").unwrap(), before);
    assert!(unchanged.is_some());

    // Deletes racing changes: once deleted, the user stays deleted.
    for round in 0..20 {
        let name = format!("dora{round}");
        store.create_user(&user(&name, Role::User)).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..20 {
                    let _ = store
                        .update_user(&name, &mut |u| {
                            std::thread::yield_now();
                            u.locked = !u.locked;
                            true
                        })
                        .unwrap();
                }
            });
            scope.spawn(|| {
                std::thread::yield_now();
                assert!(store.delete_user(&name).unwrap());
            });
        });
        assert_eq!(store.get_user(&name).unwrap(), None, "{name} came back");
    }
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            fn with_store(check: fn(&dyn Store)) {
                #[allow(clippy::redundant_closure_call)]
                let Some((store, guard)) = ($make)() else {
                    return;
                };
                check(&*store);
                store.flush().unwrap();
                drop(store);
                drop(guard);
            }

            #[test]
            fn users() {
                with_store(checks::users);
            }
            #[test]
            fn concurrent_target_updates() {
                with_store(super::concurrent_target_updates);
            }
            #[test]
            fn user_already_exists() {
                with_store(checks::user_already_exists);
            }
            #[test]
            fn targets() {
                with_store(checks::targets);
            }
            #[test]
            fn invalid_names() {
                with_store(checks::invalid_names);
            }
            #[test]
            fn grants() {
                with_store(checks::grants);
            }
            #[test]
            fn grant_not_found() {
                with_store(checks::grant_not_found);
            }
            #[test]
            fn delete_user_cascades() {
                with_store(checks::delete_user_cascades);
            }
            #[test]
            fn delete_target_cascades() {
                with_store(checks::delete_target_cascades);
            }
            #[test]
            fn meta() {
                with_store(checks::meta);
            }
            #[test]
            fn ephemeral() {
                with_store(super::ephemeral);
            }
            #[test]
            fn copied_into() {
                with_store(checks::copied_into);
            }
            #[test]
            fn tokens_and_mfa() {
                with_store(checks::tokens_and_mfa);
            }
            #[test]
            fn concurrent_user_updates() {
                with_store(super::concurrent_user_updates);
            }
            #[test]
            fn access_requests() {
                with_store(super::access_requests);
            }
            #[test]
            fn recording_reviews() {
                with_store(super::recording_reviews);
            }
        }
    };
}

/// An access request as the checks below make them.
fn request(id: &str) -> portcullis_store::AccessRequest {
    portcullis_store::AccessRequest {
        id: id.to_owned(),
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "db1".into(),
        reason: "INC-42: disk full".into(),
        ticket: Some("INC-42".into()),
        duration_secs: 3600,
        rule: "dba-on-request".into(),
        approvals_needed: 2,
        created_at: 1_700_000_000,
        decide_by: 1_700_086_400,
        state: portcullis_store::RequestState::Pending,
        approvals: Vec::new(),
        denial: None,
        grant_until: None,
        ended: None,
    }
}

/// Flags a moment of recording `id` in `store` (made by it); the review as stored.
fn review_with_flag(store: &dyn Store, id: &str) -> RecordingReview {
    store
        .update_review(id, &mut |r| {
            r.flags.push(ReviewFlag {
                id: "flag_1".into(),
                t_ms: 12_000,
                note: "net user /add".into(),
                by: "rita".into(),
                by_id: "u_rita".into(),
                at_ms: 1_700_000_000_000,
            });
            true
        })
        .unwrap()
}

/// Access requests: made once per id, changed in one step (two approvers at once both count),
/// listed by id, kept as written.
fn access_requests(store: &dyn Store) {
    use portcullis_store::{RequestDecision, RequestState};
    store.create_request(&request("req_b")).unwrap();
    store.create_request(&request("req_a")).unwrap();
    assert!(matches!(
        store.create_request(&request("req_a")),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(store.create_request(&request("bad/id")).is_err());
    assert_eq!(
        names(&store.list_requests().unwrap(), |r| &r.id),
        ["req_a", "req_b"]
    );
    assert_eq!(store.get_request("req_a").unwrap(), Some(request("req_a")));
    assert_eq!(store.get_request("nope").unwrap(), None);
    assert_eq!(store.update_request("nope", &mut |_| true).unwrap(), None);
    // Two approvers at once: each change applies to the other's result.
    std::thread::scope(|scope| {
        for by in ["bob", "carol"] {
            scope.spawn(move || {
                store
                    .update_request("req_a", &mut |r| {
                        r.approvals.push(RequestDecision {
                            by: by.into(),
                            at: 1_700_000_100,
                            comment: String::new(),
                        });
                        if r.approvals.len() >= 2 {
                            r.state = RequestState::Approved;
                            r.grant_until = Some(1_700_003_700);
                        }
                        true
                    })
                    .unwrap();
            });
        }
    });
    let done = store.get_request("req_a").unwrap().unwrap();
    assert_eq!(done.approvals.len(), 2);
    assert_eq!(done.state, RequestState::Approved);
    // A change that changes nothing writes nothing; an id is never renamed.
    let same = store
        .update_request("req_b", &mut |r| {
            r.id = "req_z".into();
            false
        })
        .unwrap()
        .unwrap();
    assert_eq!(same.id, "req_z", "the closure's copy");
    assert_eq!(store.get_request("req_b").unwrap(), Some(request("req_b")));
    let renamed = store
        .update_request("req_b", &mut |r| {
            r.id = "req_z".into();
            r.state = RequestState::Cancelled;
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(renamed.id, "req_b");
    assert_eq!(store.get_request("req_z").unwrap(), None);
}

/// Recording reviews: made by the first change, changed in one step (two reviewers flagging at
/// once both count), never renamed, listed by recording, deleted with the recording.
fn recording_reviews(store: &dyn Store) {
    assert_eq!(store.get_review("rec-a").unwrap(), None);
    assert!(store.update_review("bad/id", &mut |_| true).is_err());
    // A change that changes nothing makes nothing.
    let nothing = store.update_review("rec-a", &mut |_| false).unwrap();
    assert_eq!(nothing.recording, "rec-a");
    assert_eq!(store.get_review("rec-a").unwrap(), None);
    let first = review_with_flag(store, "rec-b");
    assert_eq!(first.recording, "rec-b");
    assert_eq!(store.get_review("rec-b").unwrap(), Some(first));
    std::thread::scope(|scope| {
        for by in ["rita", "sam", "tom", "uma"] {
            scope.spawn(move || {
                store
                    .update_review("rec-a", &mut |r| {
                        r.flags.push(ReviewFlag {
                            id: format!("flag_{by}"),
                            t_ms: 1,
                            note: String::new(),
                            by: by.into(),
                            by_id: String::new(),
                            at_ms: 1,
                        });
                        r.recording = "rec-z".into();
                        true
                    })
                    .unwrap();
            });
        }
    });
    let both = store.get_review("rec-a").unwrap().unwrap();
    assert_eq!(both.flags.len(), 4, "{both:?}");
    assert_eq!(both.recording, "rec-a", "never renamed");
    assert_eq!(store.get_review("rec-z").unwrap(), None);
    store
        .update_review("rec-a", &mut |r| {
            r.marks.push(ReviewMark {
                state: ReviewState::Reviewed,
                by: "rita".into(),
                by_id: "u_rita".into(),
                at_ms: 2,
                comment: "ok".into(),
            });
            true
        })
        .unwrap();
    let listed = store.list_reviews().unwrap();
    assert_eq!(names(&listed, |r| &r.recording), ["rec-a", "rec-b"]);
    assert_eq!(listed[0].reviewed().map(|m| m.by.as_str()), Some("rita"));
    assert!(store.delete_review("rec-a").unwrap());
    assert!(!store.delete_review("rec-a").unwrap());
    assert!(!store.delete_review("bad/id").unwrap());
    assert_eq!(store.get_review("rec-a").unwrap(), None);
}

/// A store for one check, and what must outlive it (a directory, a database); `None` when this
/// backend cannot run here (PostgreSQL without `PORTCULLIS_TEST_POSTGRES`).
type Made = Option<(Box<dyn Store>, Box<dyn Any>)>;

fn memory_store() -> Made {
    Some((Box::new(MemoryStore::new()), Box::new(())))
}

fn sled_store() -> Made {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    Some((Box::new(store), Box::new(dir)))
}

fn postgres_store() -> Made {
    let db = TestDatabase::create()?;
    let store = PgStore::open(&db.url, &PgOptions::default()).unwrap();
    Some((Box::new(store), Box::new(db)))
}

conformance!(memory, memory_store);
conformance!(sled, sled_store);
conformance!(postgres, postgres_store);

/// Tests only the on-disk store can pass.
mod sled_only {
    use super::*;

    /// Opens the store at `path`, which a store just dropped may still hold for a moment (sled's
    /// background flusher lets go of the directory's lock when it ends): waited for, up to 10 s.
    fn reopen(path: &std::path::Path) -> SledStore {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledStore::open(path) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                opened => return opened.unwrap(),
            }
        }
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        {
            let store = reopen(&path);
            store.create_user(&user("alice", Role::Admin)).unwrap();
            store.create_user(&user("bob", Role::User)).unwrap();
            store.create_target(&target("web")).unwrap();
            store.create_target(&target("db")).unwrap();
            store.create_grant("alice", "web", 5).unwrap();
            store.create_grant("bob", "db", 6).unwrap();
            store.put_meta("schema", b"1").unwrap();
            assert!(store.delete_target("db").unwrap());
        }
        let store = reopen(&path);
        assert_eq!(store.path(), path);
        assert_eq!(
            store.get_user("alice").unwrap(),
            Some(user("alice", Role::Admin))
        );
        assert_eq!(store.list_users().unwrap().len(), 2);
        assert_eq!(store.get_target("web").unwrap(), Some(target("web")));
        assert_eq!(store.get_target("db").unwrap(), None);
        assert_eq!(
            store.list_grants().unwrap(),
            [GrantRecord {
                user: "alice".to_owned(),
                target: "web".to_owned(),
                created_at: 5
            }]
        );
        assert_eq!(
            store.get_meta("schema").unwrap().as_deref(),
            Some(&b"1"[..])
        );
    }

    #[cfg(unix)]
    #[test]
    fn creates_private_data_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let _store = reopen(&path);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let first = reopen(&path);
        let err = SledStore::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::Locked { path: p } if *p == path),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "data directory {} is in use by another portcullis process",
                path.display()
            )
        );
        drop(first);
        // Released on drop.
        let again = reopen(&path);
        again.flush().unwrap();
    }

    #[test]
    fn undecodable_records_are_corrupt_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        {
            let store = reopen(&path);
            store.create_user(&user("alice", Role::User)).unwrap();
            store.create_target(&target("web")).unwrap();
        }
        {
            let db = ::sled::open(&path).unwrap();
            db.open_tree("users")
                .unwrap()
                .insert("mallory", &b"{not json"[..])
                .unwrap();
            db.open_tree("targets")
                .unwrap()
                .insert("web", &br#"{"name":"web","kind":"telnet"}"#[..])
                .unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&path);
        assert!(store.get_user("alice").unwrap().is_some());
        let err = store.get_user("mallory").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("mallory"), "{err}");
        assert!(matches!(
            store.list_users().unwrap_err(),
            StoreError::Corrupt { .. }
        ));
        assert!(matches!(
            store.get_target("web").unwrap_err(),
            StoreError::Corrupt { .. }
        ));
        // Deleting a corrupt record still works.
        assert!(store.delete_user("mallory").unwrap());
        assert_eq!(store.list_users().unwrap().len(), 1);
    }

    #[test]
    fn targets_stored_before_labels_load_without_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        {
            let db = ::sled::open(&path).unwrap();
            db.open_tree("targets")
                .unwrap()
                .insert(
                    "old",
                    &br#"{"name":"old","kind":"vnc","address":"h:5900","sealed_secret":[1,2],"description":"","created_at":5}"#[..],
                )
                .unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&path);
        let old = store.get_target("old").unwrap().unwrap();
        assert!(old.labels.is_empty() && old.account.is_empty(), "{old:?}");
        let mut labelled = old.clone();
        labelled.labels = vec!["prod".to_owned()];
        store.put_target(&labelled).unwrap();
        assert_eq!(store.get_target("old").unwrap(), Some(labelled));
    }

    #[test]
    fn targets_stored_before_pinning_load_unpinned_and_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        {
            let db = ::sled::open(&path).unwrap();
            db.open_tree("targets")
                .unwrap()
                .insert(
                    "old",
                    &br#"{"name":"old","kind":"rdp","address":"h:3389","account":"u","sealed_secret":[1],"description":"","created_at":5,"labels":[]}"#[..],
                )
                .unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&path);
        let mut old = store.get_target("old").unwrap().unwrap();
        assert!(old.identity.is_unknown(), "{old:?}");
        old.identity.tls_sha256 = Some("aa".repeat(32));
        store.put_target(&old).unwrap();
        drop(store);
        let store = reopen(&path);
        assert_eq!(store.get_target("old").unwrap(), Some(old));
    }

    #[test]
    fn open_on_a_file_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, b"not a directory").unwrap();
        let err = SledStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn store_is_shareable_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
        store.create_target(&target("web")).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    let name = format!("user{i}");
                    store.create_user(&user(&name, Role::User)).unwrap();
                    store.create_grant(&name, "web", i).unwrap();
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(store.list_grants().unwrap().len(), 8);
        assert!(store.delete_target("web").unwrap());
        assert!(store.list_grants().unwrap().is_empty());
    }
}

/// What only the shared store does: several gateways on one database.
mod postgres_only {
    use super::*;
    use std::time::Duration;

    fn open(url: &str) -> PgStore {
        PgStore::open(url, &PgOptions::default()).unwrap()
    }

    #[test]
    fn two_gateways_on_one_database_see_each_others_changes() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let (a, b) = (open(&db.url), open(&db.url));
        a.create_user(&user("alice", Role::Admin)).unwrap();
        a.create_target(&target("web")).unwrap();
        b.create_grant("alice", "web", 7).unwrap();
        assert!(a.has_grant("alice", "web").unwrap());
        assert_eq!(
            b.get_user("alice").unwrap(),
            Some(user("alice", Role::Admin))
        );
        assert!(matches!(
            b.create_user(&user("alice", Role::User)),
            Err(StoreError::AlreadyExists { kind: "user", .. })
        ));
        assert!(b.delete_user("alice").unwrap());
        assert_eq!(a.get_user("alice").unwrap(), None);
        assert!(!a.has_grant("alice", "web").unwrap());
        // What was written is there for a gateway that starts later (nothing needs a flush).
        let c = open(&db.url);
        assert_eq!(c.get_target("web").unwrap(), Some(target("web")));
    }

    #[test]
    fn concurrent_changes_from_two_gateways_are_none_lost() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let stores = [open(&db.url), open(&db.url)];
        let mut carol = user("carol", Role::User);
        carol.mfa = Some(MfaRecord {
            sealed_secret: vec![1],
            confirmed: true,
            last_step: 0,
            since: 0,
            recovery: Vec::new(),
        });
        stores[0].create_user(&carol).unwrap();
        const ROUNDS: u64 = 60;
        std::thread::scope(|scope| {
            for t in 0..4 {
                let store = &stores[t % 2];
                scope.spawn(move || {
                    for _ in 0..ROUNDS {
                        store
                            .update_user("carol", &mut |u| {
                                let m = u.mfa.as_mut().unwrap();
                                let seen = m.last_step;
                                std::thread::sleep(Duration::from_micros(200));
                                m.last_step = seen + 1;
                                true
                            })
                            .unwrap()
                            .unwrap();
                    }
                });
            }
        });
        let carol = stores[1].get_user("carol").unwrap().unwrap();
        assert_eq!(carol.mfa.unwrap().last_step, 4 * ROUNDS);
    }

    #[test]
    fn gateways_starting_together_migrate_once() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let stores: Vec<PgStore> = std::thread::scope(|scope| {
            let opening: Vec<_> = (0..4).map(|_| scope.spawn(|| open(&db.url))).collect();
            opening.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(stores.len(), 4);
        let mut admin = db.admin();
        let versions: Vec<i32> = admin
            .query(
                "SELECT version FROM portcullis.schema_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let all: Vec<i32> = (1..=7).collect();
        assert_eq!(versions, all);
        // Opening again changes nothing.
        drop(open(&db.url));
        let count: i64 = admin
            .query_one("SELECT count(*) FROM portcullis.schema_migrations", &[])
            .unwrap()
            .get(0);
        assert_eq!(count, i64::try_from(all.len()).unwrap());
    }

    #[test]
    fn a_schema_newer_than_the_gateway_is_refused() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        drop(open(&db.url));
        db.admin()
            .batch_execute("INSERT INTO portcullis.schema_migrations (version, description) VALUES (999, 'future')")
            .unwrap();
        let err = PgStore::open(&db.url, &PgOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version 999, newer than this gateway knows"),
            "{err}"
        );
    }

    #[test]
    fn undecodable_records_are_corrupt_errors() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let store = open(&db.url);
        store.create_user(&user("alice", Role::Admin)).unwrap();
        db.admin()
            .batch_execute(
                r#"UPDATE portcullis.users SET record = '{"name": 5}' WHERE name = 'alice'"#,
            )
            .unwrap();
        let err = store.get_user("alice").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("users record \"alice\""), "{err}");
        assert!(matches!(
            store.list_users(),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_wrong_password_is_a_clear_error_that_does_not_show_it() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        // Replace the password of the URL (postgres://user:password@…).
        let (scheme_user, rest) = db.url.split_once('@').unwrap();
        let user_part = scheme_user.rsplit_once(':').unwrap().0;
        let wrong = format!("{user_part}:Wr0ngPassw0rd@{rest}");
        let err = PgStore::open(&wrong, &PgOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("password authentication failed"), "{err}");
        assert!(
            err.contains("cannot connect to PostgreSQL at postgres://"),
            "{err}"
        );
        assert!(!err.contains("Wr0ngPassw0rd"), "{err}");
    }

    #[test]
    fn connections_the_server_dropped_are_made_again() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let options = PgOptions {
            connections: 1,
            ..PgOptions::default()
        };
        let store = PgStore::open(&db.url, &options).unwrap();
        store.create_user(&user("alice", Role::Admin)).unwrap();
        // The server ends every connection of the store (as a restart or a failover would).
        let ended: i64 = db
            .admin()
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = 'portcullis') t",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(ended, 1);
        // The first call after it may fail (and says so); the store then connects again.
        let first = store.get_user("alice");
        if let Err(e) = &first {
            assert!(e.to_string().contains("PostgreSQL"), "{e}");
        }
        assert_eq!(
            store.get_user("alice").unwrap(),
            Some(user("alice", Role::Admin))
        );
    }
}

/// TLS to PostgreSQL: the server's certificate is checked against the configured CA and the
/// host name before the password goes to it (the test server's certificate names `localhost`).
mod postgres_tls {
    use super::*;

    fn with_ca(ca: std::path::PathBuf) -> PgOptions {
        PgOptions {
            ca_file: Some(ca),
            connections: 1,
            ..PgOptions::default()
        }
    }

    /// Whether every connection of the store to `db` is TLS (the server's own view).
    fn all_tls(db: &TestDatabase) -> bool {
        db.admin()
            .query_one(
                "SELECT count(*) > 0 AND bool_and(s.ssl) FROM pg_stat_ssl s \
                 JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = current_database() AND a.application_name = 'portcullis'",
                &[],
            )
            .unwrap()
            .get(0)
    }

    #[test]
    fn the_servers_certificate_and_name_are_verified_before_the_password_is_sent() {
        let (Some(db), Some(ca)) = (
            TestDatabase::create(),
            portcullis_store::testing::server_ca(),
        ) else {
            return;
        };
        let by_name = db.url.replace("@127.0.0.1:", "@localhost:");
        assert_ne!(by_name, db.url);

        // The right CA and the certificate's name: TLS, and it works.
        let store = PgStore::open(&by_name, &with_ca(ca.clone())).unwrap();
        store.create_user(&user("alice", Role::Admin)).unwrap();
        assert!(all_tls(&db), "the store's connection is not TLS");
        drop(store);

        // The right CA but another name than the certificate's: refused.
        let err = PgStore::open(&db.url, &with_ca(ca))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
        assert!(err.to_lowercase().contains("certificate"), "{err}");

        // A CA that did not sign the server's certificate: refused.
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other-ca.pem");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&other, params.self_signed(&key).unwrap().pem()).unwrap();
        let err = PgStore::open(&by_name, &with_ca(other))
            .unwrap_err()
            .to_string();
        assert!(err.to_lowercase().contains("certificate"), "{err}");

        // Not a CA file at all: says so.
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let err = PgStore::open(&by_name, &with_ca(junk))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        let err = PgStore::open(&by_name, &with_ca(dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}

/// A change that read a record before it was deleted and made again never writes over the new
/// one (versions are never reused).
#[test]
fn postgres_a_stale_change_never_lands_on_a_record_made_again() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = PgStore::open(&db.url, &PgOptions::default()).unwrap();
    store.create_user(&user("alice", Role::User)).unwrap();
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let store = &store;
        let stale = scope.spawn(move || {
            let mut calls = 0;
            store
                .update_user("alice", &mut |u| {
                    calls += 1;
                    if calls == 1 {
                        // Read the first alice; wait while she is replaced.
                        read_tx.send(u.id.clone()).unwrap();
                        go_rx.recv().unwrap();
                    }
                    u.locked = true;
                    true
                })
                .unwrap()
        });
        assert_eq!(read_rx.recv().unwrap(), "u_alice");
        assert!(store.delete_user("alice").unwrap());
        let mut second = user("alice", Role::User);
        second.id = "u_alice_2".to_owned();
        second.password_hash = "$argon2id$second".to_owned();
        store.create_user(&second).unwrap();
        go_tx.send(()).unwrap();
        let written = stale.join().unwrap().unwrap();
        assert_eq!(
            written.id, "u_alice_2",
            "the change was made again on the new record"
        );
    });
    let alice = store.get_user("alice").unwrap().unwrap();
    assert_eq!(alice.id, "u_alice_2");
    assert_eq!(alice.password_hash, "$argon2id$second");
    assert!(alice.locked);
}

/// A database that does not answer neither stalls the gateway's runtime (its other tasks go on)
/// nor queues callers without end (past the bound they fail at once, saying why).
#[test]
fn postgres_a_stuck_database_stalls_nothing_else() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = std::sync::Arc::new(PgStore::open(&db.url, &PgOptions::default()).unwrap());
    store.create_user(&user("alice", Role::User)).unwrap();
    // Another session holds the users table: every read of it waits.
    let mut holder = db.admin();
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE portcullis.users IN ACCESS EXCLUSIVE MODE")
        .unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ticked = runtime.block_on(async {
        let asked = std::time::Instant::now();
        // More stuck calls than workers, each on a task of its own.
        for _ in 0..4 {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { store.get_user("alice") });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // Timers and tasks on the same runtime still run, long before the database's lock
        // timeout (15 s) would free the workers (wall time: a stalled runtime's timers stall
        // too).
        tokio::spawn(async {}).await.unwrap();
        asked.elapsed()
    });
    assert!(
        ticked < std::time::Duration::from_secs(5),
        "the runtime stalled behind the database for {ticked:?}"
    );

    // Past the bound, callers fail at once instead of queueing.
    let overloaded = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..300)
            .map(|_| scope.spawn(|| store.get_user("alice")))
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(500));
        tx.rollback().unwrap();
        calls
            .into_iter()
            .filter_map(|c| c.join().unwrap().err())
            .filter(|e| e.to_string().contains("is not keeping up"))
            .count()
    });
    assert!(overloaded > 0, "no call was refused past the bound");
    runtime.shutdown_background();
    // And the store works again once the database does.
    assert!(store.get_user("alice").unwrap().is_some());
}

/// The gateways' registry of live sessions and the commands between them.
#[test]
fn postgres_gateways_publish_their_sessions_and_wake_each_other() {
    use portcullis_store::Cluster;
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (a, b) = (
        PgStore::open(&db.url, &PgOptions::default()).unwrap(),
        PgStore::open(&db.url, &PgOptions::default()).unwrap(),
    );
    a.publish("gw-a", &serde_json::json!([{"id": "s1"}]))
        .unwrap();
    b.publish("gw-b", &serde_json::json!([])).unwrap();
    let lately = std::time::Duration::from_secs(60);
    assert_eq!(
        b.published(lately).unwrap(),
        [
            ("gw-a".to_owned(), serde_json::json!([{"id": "s1"}])),
            ("gw-b".to_owned(), serde_json::json!([]))
        ]
    );
    // Only gateways heard from lately (by the database's clock).
    db.admin()
        .batch_execute(
            "UPDATE portcullis.nodes SET heartbeat_ms = heartbeat_ms - 30000 WHERE node = 'gw-b'",
        )
        .unwrap();
    assert_eq!(
        b.published(std::time::Duration::from_secs(10))
            .unwrap()
            .len(),
        1
    );
    a.publish("gw-a", &serde_json::json!([])).unwrap();
    assert_eq!(b.published(lately).unwrap()[0].1, serde_json::json!([]));

    // A command wakes its gateway long before the wait's end, and is taken once, in order.
    let waiting = std::thread::spawn(move || {
        // The listening connection is made by the first wait: make it, then wait for real.
        a.wait("gw-a", std::time::Duration::from_millis(10))
            .unwrap();
        let started = std::time::Instant::now();
        a.wait("gw-a", std::time::Duration::from_secs(20)).unwrap();
        (a, started.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    b.send("gw-a", &serde_json::json!({"kill": "s1"})).unwrap();
    b.send("gw-a", &serde_json::json!({"kill": "s2"})).unwrap();
    b.send("gw-b", &serde_json::json!({"kill": "s3"})).unwrap();
    let (a, waited) = waiting.join().unwrap();
    assert!(
        waited < std::time::Duration::from_secs(10),
        "not woken: {waited:?}"
    );
    assert_eq!(
        a.take("gw-a").unwrap(),
        [
            serde_json::json!({"kill": "s1"}),
            serde_json::json!({"kill": "s2"})
        ]
    );
    assert!(a.take("gw-a").unwrap().is_empty());
    assert_eq!(b.take("gw-b").unwrap().len(), 1);
    a.leave("gw-a").unwrap();
    assert_eq!(b.published(lately).unwrap().len(), 1);
}

/// The mirror of the gateways' audit chains: at least once (a record mirrored twice is one),
/// never two versions of a record, the merged view by time and filters, each chain in order.
#[test]
fn postgres_mirrors_each_gateways_audit_chain_and_merges_them() {
    use portcullis_store::{Cluster, MirrorQuery, MirroredRecord};
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = PgStore::open(&db.url, &PgOptions::default()).unwrap();
    let rec = |node: &str, seq: u64, ts_ms: u64, kind: &str| MirroredRecord {
        node: node.into(),
        seq,
        ts_ms,
        kind: kind.into(),
        actor: if seq.is_multiple_of(2) {
            "alice"
        } else {
            "system"
        }
        .into(),
        target: None,
        session: (kind == "session_start").then(|| format!("s-{node}")),
        line: format!("{{\"seq\":{seq},\"node\":\"{node}\"}}"),
    };
    assert_eq!(store.audit_mirrored_up_to("gw-a").unwrap(), 0);
    let a: Vec<_> = (1..=4)
        .map(|s| rec("gw-a", s, 1000 + s * 10, "login"))
        .collect();
    let b: Vec<_> = (1..=3)
        .map(|s| rec("gw-b", s, 1005 + s * 10, "session_start"))
        .collect();
    store.audit_mirror(&a[..2]).unwrap();
    // Again from the start (a mirror that lost its place): the same records are one.
    store.audit_mirror(&a).unwrap();
    store.audit_mirror(&b).unwrap();
    assert_eq!(store.audit_mirrored_up_to("gw-a").unwrap(), 4);
    assert_eq!(store.audit_nodes().unwrap(), ["gw-a", "gw-b"]);

    // Another version of a record already mirrored: refused, nothing of the call stored.
    let mut forged = rec("gw-a", 3, 1030, "login");
    forged.line.push(' ');
    let err = store
        .audit_mirror(&[rec("gw-a", 5, 1050, "login"), forged])
        .unwrap_err();
    assert!(err.to_string().contains("other bytes"), "{err}");
    assert_eq!(store.audit_mirrored_up_to("gw-a").unwrap(), 4);

    // A record whose fields hold a NUL (a failed login's typed name) is mirrored all the same.
    let mut nul = rec("gw-c", 1, 900, "login_failed");
    nul.actor = "a\0b".into();
    nul.session = Some("s\0".into());
    store.audit_mirror(&[nul.clone()]).unwrap();
    store.audit_mirror(&[nul]).unwrap();
    assert_eq!(store.audit_mirrored_up_to("gw-c").unwrap(), 1);
    let c = store.audit_chain("gw-c", 0, 10).unwrap();
    assert_eq!(c[0].actor, "a\u{FFFD}b");
    let all = store
        .audit_mirrored(&MirrorQuery {
            node: None,
            since_ms: Some(1000),
            limit: 100,
            ..MirrorQuery::default()
        })
        .unwrap();
    let order: Vec<(String, u64)> = all.iter().map(|r| (r.node.clone(), r.seq)).collect();
    assert_eq!(
        order,
        [
            ("gw-a", 4),
            ("gw-b", 3),
            ("gw-a", 3),
            ("gw-b", 2),
            ("gw-a", 2),
            ("gw-b", 1),
            ("gw-a", 1)
        ]
        .map(|(n, s)| (n.to_owned(), s))
    );
    // Paging on from the last of a page, and the filters.
    let page = store
        .audit_mirrored(&MirrorQuery {
            before: Some((all[2].ts_ms, all[2].node.clone(), all[2].seq)),
            limit: 2,
            ..MirrorQuery::default()
        })
        .unwrap();
    assert_eq!(page, all[3..5]);
    let sessions = store
        .audit_mirrored(&MirrorQuery {
            kinds: vec!["session_start".into()],
            actor: Some("system".into()),
            limit: 100,
            ..MirrorQuery::default()
        })
        .unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions
        .iter()
        .all(|r| r.node == "gw-b" && !r.seq.is_multiple_of(2)));
    let chain = store.audit_chain("gw-a", 1, 2).unwrap();
    assert_eq!(chain.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(chain[0], a[1]);
}

/// An export of the merged trail is carried out by one gateway at a time: its lease goes to
/// another only once run out or given up, by the database's clock, and only its holder moves
/// its cursor, which the next holder gets.
#[test]
fn postgres_export_lease_is_held_by_one_gateway_at_a_time() {
    use portcullis_store::{Cluster, ExportLease};
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (a, b) = (
        PgStore::open(&db.url, &PgOptions::default()).unwrap(),
        PgStore::open(&db.url, &PgOptions::default()).unwrap(),
    );
    let long = std::time::Duration::from_secs(60);
    let held = |cursor: &str| ExportLease::Held {
        cursor: cursor.into(),
    };
    let other = |holder: &str| ExportLease::Other {
        holder: holder.into(),
    };
    assert_eq!(a.export_lease("siem", "gw-a", long).unwrap(), held(""));
    assert_eq!(b.export_lease("siem", "gw-b", long).unwrap(), other("gw-a"));
    // Another export is another lease.
    assert_eq!(b.export_lease("other", "gw-b", long).unwrap(), held(""));
    assert!(a.export_advance("siem", "gw-a", "{\"gw-a\":1}").unwrap());
    assert!(
        !b.export_advance("siem", "gw-b", "{}").unwrap(),
        "not its lease"
    );
    assert_eq!(
        a.export_lease("siem", "gw-a", long).unwrap(),
        held("{\"gw-a\":1}"),
        "renewed, with its cursor"
    );
    // Run out (by the database's clock): the other takes it, with the cursor; the first can
    // no longer store one.
    db.admin()
        .batch_execute("UPDATE portcullis.exports SET lease_until_ms = lease_until_ms - 120000 WHERE name = 'siem'")
        .unwrap();
    assert_eq!(
        b.export_lease("siem", "gw-b", long).unwrap(),
        held("{\"gw-a\":1}")
    );
    assert!(!a.export_advance("siem", "gw-a", "{\"stale\":1}").unwrap());
    assert_eq!(a.export_lease("siem", "gw-a", long).unwrap(), other("gw-b"));
    // Given up: taken at once; giving up another's lease does nothing.
    a.export_release("siem", "gw-a").unwrap();
    assert_eq!(a.export_lease("siem", "gw-a", long).unwrap(), other("gw-b"));
    b.export_release("siem", "gw-b").unwrap();
    assert_eq!(
        a.export_lease("siem", "gw-a", long).unwrap(),
        held("{\"gw-a\":1}")
    );

    // Many gateways asking at once: exactly one holds it.
    db.admin()
        .batch_execute("UPDATE portcullis.exports SET lease_until_ms = 0")
        .unwrap();
    let url = db.url.clone();
    let winners: usize = (0..6)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let s = PgStore::open(&url, &PgOptions::default()).unwrap();
                matches!(
                    s.export_lease("race", &format!("gw-{i}"), long).unwrap(),
                    ExportLease::Held { .. }
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().unwrap()))
        .sum();
    assert_eq!(winners, 1);
}

/// Two copies of one gateway's mirror (the running one and the one its stop flushes) putting
/// the same records at once: both succeed, none reports the other's copy as another version.
#[test]
fn postgres_the_same_records_mirrored_at_once_are_no_conflict() {
    use portcullis_store::{Cluster, MirroredRecord};
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let records: Vec<MirroredRecord> = (1..=300)
        .map(|seq| MirroredRecord {
            node: "gw-a".into(),
            seq,
            ts_ms: 1_700_000_000_000 + seq,
            kind: "login".into(),
            actor: "alice".into(),
            target: None,
            session: None,
            line: format!("{{\"seq\":{seq}}}"),
        })
        .collect();
    for round in 0..5 {
        let chunk: Vec<MirroredRecord> = records[round * 60..(round + 1) * 60].to_vec();
        let results: Vec<_> = (0..3)
            .map(|_| {
                let (url, chunk) = (db.url.clone(), chunk.clone());
                std::thread::spawn(move || {
                    PgStore::open(&url, &PgOptions::default())
                        .unwrap()
                        .audit_mirror(&chunk)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        for r in results {
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
    }
    let store = PgStore::open(&db.url, &PgOptions::default()).unwrap();
    assert_eq!(store.audit_mirrored_up_to("gw-a").unwrap(), 300);
}
