//! Replicas on one PostgreSQL database: outcomes decided once in log order, the same graph on
//! every replica, the change feed of others' commits, and migration between the two stores.

use super::*;

/// Two replicas on one database, writing at once: every mutation's outcome is decided once, in log
/// order (exactly one of two concurrent adds of a user succeeds), and both end with the same graph,
/// the one a third replica loads from the database.
#[test]
fn replicas_on_one_database_agree_on_every_outcome_and_the_graph() {
    if !postgres_here("replicas_on_one_database_agree_on_every_outcome_and_the_graph") {
        return;
    }
    let place = Place::new(On::Postgres, "replicas_agree");
    let ((a, wa), (b, wb)) = (place.open_with(4_000), place.open_with(4_000));
    let run = |h: StoreHandle, seed: u64| {
        std::thread::spawn(move || {
            let mut s = SplitMix64::new(seed);
            let mut added = 0;
            for i in 0..300u64 {
                let u = |s: &mut SplitMix64| format!("u{}", s.next_u64() % 30);
                let m = match s.next_u64() % 5 {
                    0 => Mutation::AddUser { key: format!("shared{}", i % 50), handle: None, name: None },
                    1 => Mutation::RemoveTie { from: u(&mut s), to: u(&mut s) },
                    2 => Mutation::RemoveUser { key: u(&mut s) },
                    _ => Mutation::ApplyPost(post_on(
                        Platform::Mastodon,
                        &format!("{}", s.next_u64() % 400),
                        &u(&mut s),
                        &[(Kind::Repost, &u(&mut s)), (Kind::Mention, &u(&mut s))],
                    )),
                };
                let adds = matches!(m, Mutation::AddUser { .. });
                let out = h.submit_blocking(vec![m]).unwrap();
                if adds && out[0] == Ok(Outcome::UserAdded) {
                    added += 1;
                }
            }
            (h, added)
        })
    };
    let (ta, tb) = (run(a, 1), run(b, 2));
    let ((a, added_a), (b, added_b)) = (ta.join().unwrap(), tb.join().unwrap());
    // Each `sharedN` user was added by whichever replica committed first; later adds were refused,
    // unless a removal came between (only `uN` users are removed, so never).
    let shared = dump(&a).0.iter().filter(|u| u.id.starts_with("shared")).count();
    assert_eq!(added_a + added_b, shared, "one success per user, across replicas");
    // Both have applied everything once each has committed again (which catches it up).
    one(&a, Mutation::SetCursor { name: "sync".into(), value: b"a".to_vec() }).unwrap();
    one(&b, Mutation::SetCursor { name: "sync".into(), value: b"b".to_vec() }).unwrap();
    one(&a, Mutation::SetCursor { name: "sync".into(), value: b"a".to_vec() }).unwrap();
    let (da, db) = (dump(&a), dump(&b));
    assert!(da.1.len() > 20, "a real graph: {} edges", da.1.len());
    assert_eq!(da, db, "the replicas serve the same graph");
    assert_eq!(stamps(&a), stamps(&b), "and the same timeline");
    assert_eq!(b.cursor("sync").unwrap(), Some(b"a".to_vec()), "cursors are shared");
    let third = place.open();
    assert_eq!(dump(&third.0), da, "a replica loading from the database gets the same graph");
    close(third.0, third.1);
    close(a, wa);
    close(b, wb);
}

/// A replica whose database session ended no longer holds its source's lock, and its next check
/// says so (another replica took the source over), instead of failing on the ended session.
#[test]
fn a_replica_whose_session_ended_learns_at_its_next_check_that_another_leads() {
    if !postgres_here("a_replica_whose_session_ended_learns_at_its_next_check_that_another_leads") {
        return;
    }
    let place = Place::new(On::Postgres, "lock_lost");
    let ((a, wa), (b, wb)) = (place.open(), place.open());
    let name = "source:test";
    assert!(a.lead(name).unwrap(), "A takes the source");
    assert!(a.lead(name).unwrap(), "asking again while holding it is harmless");
    assert!(!b.lead(name).unwrap(), "B stands by");
    // The server ends A's session holding the lock (as a dropped network does).
    let key = pg::source_lock_key(name);
    let (high, low) = (i64::from((key >> 32) as u32), i64::from(key as u32));
    let mut admin = place.database.as_ref().unwrap().connect().unwrap();
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            &[&high, &low],
        )
        .unwrap();
    assert_eq!(cut.len(), 1, "one session held the lock");
    // Wait for the server to release it, then B takes the source over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !b.lead(name).unwrap() {
        assert!(std::time::Instant::now() < deadline, "the lock went with A's session");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!a.lead(name).unwrap(), "A's first check after the cut: B leads");
    close(a, wa);
    close(b, wb);
}

/// A replica's change feed (what `/stream/gephi` follows) carries what other replicas commit.
#[test]
fn a_replica_feeds_its_consumers_the_commits_of_others() {
    if !postgres_here("a_replica_feeds_its_consumers_the_commits_of_others") {
        return;
    }
    let place = Place::new(On::Postgres, "replica_feed");
    let ((a, wa), (b, wb)) = (place.open(), place.open());
    one(&a, Mutation::ApplyPost(post("1", "ana", &[(Kind::Repost, "bob")]))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.graph().read().tie("ana", "bob").is_none() {
        assert!(std::time::Instant::now() < deadline, "B follows A's first commit");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // B has committed nothing: what held its graph for writing was applying A's commit, and that
    // is timed too (what B's readers waited for).
    assert!(b.stats().graph_held_seconds.get_sample_count() >= 1, "B's apply of A's commit is timed");
    let mut feed = b.subscribe().expect("the feed is open");
    one(&a, Mutation::ApplyPost(post("2", "ana", &[(Kind::Reply, "bob"), (Kind::Mention, "cy")]))).unwrap();
    one(&a, Mutation::RemoveUser { key: "cy".into() }).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut ties = Vec::new();
    let mut users = Vec::new();
    while ties.len() < 3 {
        let changes = runtime
            .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), feed.recv()).await })
            .expect("B hears of A's commits within 10 s")
            .unwrap();
        users.extend(changes.users.iter().map(|(k, _)| k.to_string()));
        ties.extend(changes.ties.iter().map(|t| {
            let count = |t: Option<Tie>| t.map_or(0, |t| t.total());
            (t.from.to_string(), t.to.to_string(), count(t.before), count(t.after))
        }));
    }
    assert_eq!(
        ties,
        [
            ("ana".into(), "bob".into(), 1, 2),
            ("ana".into(), "cy".into(), 0, 1),
            ("ana".into(), "cy".into(), 1, 0)
        ],
        "each edge before and after, in commit order: {ties:?}"
    );
    assert!(users.contains(&"cy".to_string()), "{users:?}");
    drop(feed);
    close(a, wa);
    close(b, wb);
}

/// A data directory migrated into a database and back gives the same store: graph, timeline, seen
/// posts, post records (an edit after the move still replaces the right interactions) and cursors.
#[test]
fn migrating_to_a_database_and_back_keeps_the_store_exactly() {
    if !postgres_here("migrating_to_a_database_and_back_keeps_the_store_exactly") {
        return;
    }
    let from = Place::new(On::Sled, "migrate_from");
    let (h, w) = from.open_with(2_000);
    for i in 0..300u32 {
        let p = post_on(
            Platform::Mastodon,
            &i.to_string(),
            &format!("m:{}", i % 17),
            &[(Kind::Mention, &format!("m:{}", (i * 7 + 1) % 23)), (Kind::Repost, &format!("m:{}", i % 5))],
        );
        one(&h, Mutation::ApplyPost(p)).unwrap();
    }
    one(&h, Mutation::RetractPost { platform: Platform::Mastodon, id: "3".into() }).unwrap();
    one(&h, Mutation::SetCursor { name: "mastodon".into(), value: b"299".to_vec() }).unwrap();
    let before = (dump(&h), stamps(&h));
    close(h, w);

    let to = Place::new(On::Postgres, "migrate_to");
    let db = to.database.clone().unwrap();
    let counts = migrate_to_database(from.dir.path(), &db).unwrap();
    assert_eq!(counts.records, 301, "300 post records (one marks the deletion) and a cursor: {counts:?}");
    let err = migrate_to_database(from.dir.path(), &db).unwrap_err();
    assert!(err.to_string().contains("already holds a graph"), "{err}");
    let (h, w) = to.open();
    assert_eq!((dump(&h), stamps(&h)), before, "the database serves the directory's graph");
    assert_eq!(h.cursor("mastodon").unwrap(), Some(b"299".to_vec()));
    // Seen posts and post records came along: a repeat is a duplicate, a deleted post stays deleted,
    // an edit replaces what the post had.
    let again = post_on(Platform::Mastodon, "5", "m:5", &[(Kind::Mention, "m:13"), (Kind::Repost, "m:0")]);
    assert_eq!(one(&h, Mutation::ApplyPost(again)), Ok(Outcome::Duplicate));
    let late = post_on(Platform::Mastodon, "3", "m:3", &[(Kind::Mention, "m:22")]);
    assert_eq!(one(&h, Mutation::ApplyPost(late)), Ok(Outcome::Duplicate));
    let mentions = |h: &StoreHandle| h.graph().read().tie("m:7", "m:4").map_or(0, |t| t.count(Kind::Mention));
    let had = mentions(&h);
    let edit = post_on(Platform::Mastodon, "7", "m:7", &[(Kind::Quote, "m:1")]);
    one(&h, Mutation::EditPost(edit)).unwrap();
    assert_eq!(mentions(&h), had - 1, "post 7's mention of m:4 was replaced");
    let edited = (dump(&h), stamps(&h));
    close(h, w);

    let back = tempfile::tempdir().unwrap();
    let dir = back.path().join("store");
    migrate_to_dir(&db, &dir).unwrap();
    let (h, w) = open_dir(&dir);
    assert_eq!((dump(&h), stamps(&h)), edited, "and back into a directory");
    assert_eq!(h.cursor("mastodon").unwrap(), Some(b"299".to_vec()));
    close(h, w);
}
