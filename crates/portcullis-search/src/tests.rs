#![allow(clippy::unwrap_used)]

use super::*;

fn rec(id: &str, user: &str, target: &str, started: i64) -> Recording {
    Recording {
        id: id.into(),
        user: user.into(),
        user_id: format!("u_{user}"),
        target: target.into(),
        entry: "browser".into(),
        started_at_ms: started,
    }
}

fn typed(t_ms: u64, text: &str) -> Entry {
    Entry {
        kind: Kind::Typed,
        t_ms,
        text: text.into(),
        words: Vec::new(),
    }
}

fn screen(t_ms: u64, words: &[(&str, u32)]) -> Entry {
    let words: Vec<WordBox> = words
        .iter()
        .map(|(w, x)| WordBox {
            word: (*w).into(),
            x: *x,
            y: 10,
            w: 40,
            h: 12,
        })
        .collect();
    Entry {
        kind: Kind::Screen,
        t_ms,
        text: words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        words,
    }
}

fn q(text: &str) -> Query {
    Query {
        text: text.into(),
        limit: 50,
        ..Query::default()
    }
}

#[test]
fn finds_typed_lines_and_screen_words_with_their_moment_and_box() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path()).unwrap();
    index
        .add(
            &rec("r1", "alice", "db1", 1_000_000),
            &[
                typed(500, "net user eve P4ss /add"),
                screen(900, &[("inet", 5), ("10.1.2.3/24", 50), ("brd", 90)]),
            ],
        )
        .unwrap();
    index
        .add(
            &rec("r2", "bob", "web1", 2_000_000),
            &[typed(100, "ls -la")],
        )
        .unwrap();
    index.commit(&Progress::default()).unwrap();
    assert_eq!(index.len(), 3);

    let hits = index.search(&q("net user")).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].recording, "r1");
    assert_eq!(hits[0].at_ms, 1_000_500);
    assert_eq!(hits[0].t_ms, 500);
    assert!(!hits[0].highlights.is_empty());

    let hits = index.search(&q("10.1.2.3")).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, Kind::Screen);
    assert_eq!(hits[0].boxes.len(), 1);
    assert_eq!(hits[0].boxes[0].x, 50);
    // A phrase in order only; every word must be there.
    assert!(index.search(&q("\"user net\"")).unwrap().is_empty());
    assert!(index.search(&q("net nothing")).unwrap().is_empty());
}

#[test]
fn filters_hold_and_a_user_finds_only_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path()).unwrap();
    index
        .add(
            &rec("r1", "alice", "db1", 1_000),
            &[typed(0, "shutdown now")],
        )
        .unwrap();
    index
        .add(&rec("r2", "bob", "db1", 5_000), &[typed(0, "shutdown now")])
        .unwrap();
    index.commit(&Progress::default()).unwrap();
    let mut mine = q("shutdown");
    mine.only_user_id = Some("u_alice".into());
    let hits = index.search(&mine).unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| h.recording.as_str())
            .collect::<Vec<_>>(),
        ["r1"]
    );
    let mut later = q("shutdown");
    later.from_ms = Some(2_000);
    assert_eq!(index.search(&later).unwrap()[0].recording, "r2");
    let mut before = q("shutdown");
    before.to_ms = Some(5_000);
    assert_eq!(index.search(&before).unwrap()[0].recording, "r1");
    let mut by_target = q("shutdown");
    by_target.target = Some("db2".into());
    assert!(index.search(&by_target).unwrap().is_empty());
    let mut kind = q("shutdown");
    kind.kind = Some(Kind::Screen);
    assert!(index.search(&kind).unwrap().is_empty());
    // Query syntax is no way around a filter, and what the user did not mean is no error.
    let mut sneaky = q("user_id:u_bob shutdown");
    sneaky.only_user_id = Some("u_alice".into());
    assert!(index
        .search(&sneaky)
        .unwrap()
        .iter()
        .all(|h| h.recording == "r1"));
    for odd in [
        "curl x | sh",
        "a:b shutdown",
        "(( shutdown",
        "\"shutdown",
        "[a TO z] shutdown",
        "shutdown -now",
    ] {
        index.search(&q(odd)).unwrap();
    }
    assert!(index.search(&q("shutdown -now")).unwrap().is_empty());
    assert_eq!(
        index.search(&q("shutdown -\"now please\"")).unwrap().len(),
        2
    );
    for nothing in ["  ", "-shutdown", "\"\"", "::"] {
        assert!(
            matches!(index.search(&q(nothing)), Err(SearchError::BadQuery(_))),
            "{nothing:?}"
        );
    }
    // Newest first: no score shown.
    let mut newest = q("shutdown");
    newest.newest_first = true;
    let hits = index.search(&newest).unwrap();
    assert_eq!(hits[0].recording, "r2");
    assert!(hits.iter().all(|h| h.score.is_none()));
    assert!(matches!(
        index.search(&q(&"x".repeat(MAX_QUERY + 1))),
        Err(SearchError::BadQuery(_))
    ));
}

#[test]
fn progress_survives_a_reopen_and_forget_takes_a_recording_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut progress = Progress::default();
    progress.recordings.insert(
        "r1".into(),
        Done {
            resume: Resume {
                offset: 42,
                mid_line: false,
                open: Some((7, "ls -".into())),
            },
            complete: false,
            entry: "rdp".into(),
            screen_caught_up_ms: 61_000,
            screen_caught_up: false,
        },
    );
    {
        let index = SearchIndex::open(dir.path()).unwrap();
        index
            .add(&rec("r1", "alice", "db1", 0), &[typed(0, "whoami")])
            .unwrap();
        // In the same segment as r1's (a segment all taken out goes at the commit).
        index
            .add(&rec("r2", "bob", "db1", 0), &[typed(0, "uptime")])
            .unwrap();
        index.commit(&progress).unwrap();
    }
    let index = SearchIndex::open(dir.path()).unwrap();
    assert_eq!(index.progress().unwrap(), progress);
    assert_eq!(index.search(&q("whoami")).unwrap().len(), 1);
    index.forget("r1");
    index.commit(&Progress::default()).unwrap();
    assert!(index.search(&q("whoami")).unwrap().is_empty());
    // Taken out of the results at once, out of the files by a purge (retention); the rest stays.
    assert_eq!(index.taken_out_still_stored(), 1);
    assert_eq!(index.purge().unwrap(), 1);
    assert_eq!(index.taken_out_still_stored(), 0);
    assert_eq!(index.purge().unwrap(), 0);
    assert_eq!(index.search(&q("uptime")).unwrap().len(), 1);
    let bytes: Vec<u8> = std::fs::read_dir(dir.path())
        .unwrap()
        .flat_map(|f| std::fs::read(f.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(
        !bytes.windows(6).any(|w| w == b"whoami"),
        "the forgotten text is still in a file"
    );
    drop(index);
    let index = SearchIndex::rebuild(dir.path()).unwrap();
    assert!(index.is_empty());
}
