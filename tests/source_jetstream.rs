//! The Bluesky Jetstream source against a mock Jetstream on 127.0.0.1 (tests/common/mock_jetstream.rs):
//! hashtag matching and attribution of follow-ups, deletes and handles, resuming from the cursor after
//! a dropped connection, a stall, and a `kill -9` of the real binary, each checked against the exact
//! graph expected. No test reaches the internet.
//!
//! Two streams are replayed:
//!
//! - [`scenario`]: hand-written events in the real Jetstream v1 shape (the layout of the recorded
//!   events in `shared/fixtures/bluesky`), always run. Its expected graph is worked out by hand in
//!   [`scenario_graph`], event by event.
//! - the recorded events of `bluesky/jetstream__subscribe_golden_v1.jsonl` and
//!   `jetstream__corpus_expected_v1.jsonl`, followed by hand-written follow-ups of the two real
//!   posts that carry tags; skipped (with SKIPPED printed) when `../shared` is absent. The matching
//!   real posts are taken from the independent reference (`tests/expected/social/`), not from our
//!   decoder.

mod common;

use common::app::{spawn_app_with, TestApp};
use common::mock_jetstream::{Event, First, MockJetstream};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tagflow::config::Config;
use tagflow::ingest::SourceKind;

const POST: &str = "app.bsky.feed.post";
const REPOST: &str = "app.bsky.feed.repost";

/// The hand-written events start here (2 s after the last recorded corpus event) and are 1 s apart,
/// so that the source's 5 s rewind on reconnect excludes some of them.
const T0: i64 = 1_783_175_890_000_000;
const SECOND: i64 = 1_000_000;

fn t(k: i64) -> i64 {
    T0 + k * SECOND
}

// ---- events in the real Jetstream v1 shape ----

fn did(name: &str) -> String {
    // did:plc identifiers are 24 base32 characters.
    format!("did:plc:{name:a<24}")
}

fn key(name: &str) -> String {
    format!("bsky:{}", did(name))
}

fn uri(author_did: &str, collection: &str, rkey: &str) -> String {
    format!("at://{author_did}/{collection}/{rkey}")
}

fn strong_ref(uri: &str) -> Value {
    json!({"cid": "bafyreiainko5un5pbcdosvxpbisjnjzemojnry6nsgtdftdgslbu37kxai", "uri": uri})
}

fn created_at(time_us: i64) -> String {
    // Jetstream stamps events a little after the client's createdAt; the exact value does not matter.
    let secs = time_us / SECOND - 1;
    let days = secs / 86_400;
    assert_eq!(days, 20_638, "the hand-written events are all on 2026-07-04");
    let s = secs % 86_400;
    format!("2026-07-04T{:02}:{:02}:{:02}.000Z", s / 3600, s / 60 % 60, s % 60)
}

fn commit(
    author_did: &str,
    time_us: i64,
    operation: &str,
    collection: &str,
    rkey: &str,
    record: Option<Value>,
) -> Event {
    let mut commit =
        json!({"rev": "3mptbyp7lu223", "operation": operation, "collection": collection, "rkey": rkey});
    if let Some(record) = record {
        commit["record"] = record;
        commit["cid"] = json!("bafyreifzanogmt75wega3mdkjqiv5rg6usowy6hr3nrlvioezvu7jur3cq");
    }
    let event = json!({"did": author_did, "time_us": time_us, "kind": "commit", "commit": commit});
    Event { time_us, text: event.to_string() }
}

/// What a hand-written post says besides its text.
#[derive(Default)]
struct Body<'a> {
    /// `#tag` facets, as written (the facet value carries no `#`).
    tag_facets: &'a [&'a str],
    /// `record.tags` (tags outside the text).
    tags: &'a [&'a str],
    mentions: &'a [&'a str],
    /// Reply (parent, root) at-URIs.
    reply: Option<(&'a str, &'a str)>,
    /// A quoted post, and whether it comes with media (`recordWithMedia`).
    quote: Option<(&'a str, bool)>,
}

fn post(author: &str, time_us: i64, rkey: &str, body: Body) -> Event {
    let mut facets = Vec::new();
    for (i, tag) in body.tag_facets.iter().enumerate() {
        facets.push(json!({"features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
                           "index": {"byteStart": i * 10, "byteEnd": i * 10 + 8}}));
    }
    for (i, m) in body.mentions.iter().enumerate() {
        facets.push(json!({"features": [{"$type": "app.bsky.richtext.facet#mention", "did": did(m)}],
                           "index": {"byteStart": 100 + i * 10, "byteEnd": 108 + i * 10}}));
    }
    let mut record = json!({"$type": POST, "createdAt": created_at(time_us), "langs": ["en"], "text": format!("post {rkey}")});
    if !facets.is_empty() {
        record["facets"] = json!(facets);
    }
    if !body.tags.is_empty() {
        record["tags"] = json!(body.tags);
    }
    if let Some((parent, root)) = body.reply {
        record["reply"] = json!({"parent": strong_ref(parent), "root": strong_ref(root)});
    }
    match body.quote {
        Some((quoted, false)) => {
            record["embed"] = json!({"$type": "app.bsky.embed.record", "record": strong_ref(quoted)})
        }
        Some((quoted, true)) => {
            record["embed"] = json!({"$type": "app.bsky.embed.recordWithMedia",
                "media": {"$type": "app.bsky.embed.images", "images": []},
                "record": {"$type": "app.bsky.embed.record", "record": strong_ref(quoted)}})
        }
        None => {}
    }
    commit(&did(author), time_us, "create", POST, rkey, Some(record))
}

fn repost(author: &str, time_us: i64, rkey: &str, subject: &str) -> Event {
    let record = json!({"$type": REPOST, "createdAt": created_at(time_us), "subject": strong_ref(subject)});
    commit(&did(author), time_us, "create", REPOST, rkey, Some(record))
}

fn like(author: &str, time_us: i64, rkey: &str, subject: &str) -> Event {
    let record = json!({"$type": "app.bsky.feed.like", "createdAt": created_at(time_us), "subject": strong_ref(subject)});
    commit(&did(author), time_us, "create", "app.bsky.feed.like", rkey, Some(record))
}

fn delete(author: &str, time_us: i64, collection: &str, rkey: &str) -> Event {
    commit(&did(author), time_us, "delete", collection, rkey, None)
}

fn identity(author_did: &str, time_us: i64, handle: &str) -> Event {
    let event = json!({"did": author_did, "time_us": time_us, "kind": "identity",
        "identity": {"did": author_did, "handle": handle, "seq": 31_527_015_470_i64, "time": "2026-07-04T14:38:07.877Z"}});
    Event { time_us, text: event.to_string() }
}

// ---- the hand-written scenario ----

/// Terms of the scenario: one with `#` and mixed case, one bare word.
const SCENARIO_TRACK: &str = "#RustLang,tokio";

/// Twenty events, one per second from `t(1)`. Comments say what each must do to the graph.
fn scenario() -> Vec<Event> {
    let p1 = uri(&did("ana"), POST, "3p1");
    let r4 = uri(&did("dev"), POST, "3r4");
    let p2 = uri(&did("fox"), POST, "3p2");
    let gus_q = uri(&did("gus"), POST, "3q0");
    let ben_q = uri(&did("ben"), POST, "3q1");
    vec![
        // 1: matches (#RustLang facet); ana mentions ben.
        post("ana", t(1), "3p1", Body { tag_facets: &["RustLang"], mentions: &["ben"], ..Body::default() }),
        // 2: a like is nothing.
        like("cai", t(2), "3l2", &p1),
        // 3: a repost of a matching post is attributed: cai reposts ana.
        repost("cai", t(3), "3r3", &p1),
        // 4: a reply to it, with no tag, is applied in full: dev replies to ana and mentions eve.
        post("dev", t(4), "3r4", Body { reply: Some((&p1, &p1)), mentions: &["eve"], ..Body::default() }),
        // 5: a quote of it: eve quotes ana (deleted at 12).
        post("eve", t(5), "3q5", Body { quote: Some((&p1, false)), ..Body::default() }),
        // 6: matches through record.tags (TOKIO, no facet); fox replies to gus's untagged post.
        post("fox", t(6), "3p2", Body { tags: &["TOKIO"], reply: Some((&gus_q, &gus_q)), ..Body::default() }),
        // 7: a repost of gus's untagged post is not attributed, although gus is in the graph.
        repost("hal", t(7), "3r7", &gus_q),
        // 8: a reply to dev's reply in the thread of a matching post (root p1): hal replies to dev.
        post("hal", t(8), "3r8", Body { reply: Some((&r4, &p1)), ..Body::default() }),
        // 9: a repost of dev's reply (a follow-up, not a matching post) is not attributed.
        repost("gus", t(9), "3r9", &r4),
        // 10: a tag that is not tracked: nothing, although it mentions ana.
        post("gus", t(10), "3p10", Body { tag_facets: &["python"], mentions: &["ana"], ..Body::default() }),
        // 11: a malformed frame: skipped and counted.
        Event {
            time_us: t(11),
            text: r#"{"did":"did:plc:broken","time_us":"#.to_string()
                + &t(11).to_string()
                + r#","kind":"commit","commit":{"operation":"create""#,
        },
        // 12: eve deletes her quote: the quote eve -> ana is retracted.
        delete("eve", t(12), POST, "3q5"),
        // 13: the delete of a post never applied changes nothing.
        delete("ben", t(13), POST, "3unknown"),
        // 14: a handle for a known user.
        identity(&did("ana"), t(14), "ana.example.com"),
        // 15: a handle for an unknown user creates nobody.
        identity(&did("zed"), t(15), "zed.example.com"),
        // 16-17: ben reposts fox's matching post, then deletes the repost: nothing left of it.
        repost("ben", t(16), "3r16", &p2),
        delete("ben", t(17), REPOST, "3r16"),
        // 18: dev quotes fox's matching post with media.
        post("dev", t(18), "3q18", Body { quote: Some((&p2, true)), ..Body::default() }),
        // 19: gus quotes ana's p1, long after it (after a restart, only p1's persisted marker knows it).
        post("gus", t(19), "3q19", Body { quote: Some((&p1, false)), ..Body::default() }),
        // 20: matches (lowercase facet); ana replies to ben's untagged post.
        post(
            "ana",
            t(20),
            "3p20",
            Body { tag_facets: &["rustlang"], reply: Some((&ben_q, &ben_q)), ..Body::default() },
        ),
    ]
}

/// (from, to) -> kind -> count.
type Edges = BTreeMap<(String, String), BTreeMap<String, u64>>;

/// The graph after [`scenario`], by hand from the comments above.
fn scenario_graph() -> (BTreeMap<String, Option<String>>, Edges) {
    let users = ["ana", "ben", "cai", "dev", "eve", "fox", "gus", "hal"]
        .iter()
        .map(|u| (key(u), (*u == "ana").then(|| "ana.example.com".to_string())))
        .collect();
    let edges = edges(&[
        ("ana", "ben", "mention", 1), // 1
        ("ana", "ben", "reply", 1),   // 20
        ("cai", "ana", "repost", 1),  // 3
        ("dev", "ana", "reply", 1),   // 4
        ("dev", "eve", "mention", 1), // 4
        ("fox", "gus", "reply", 1),   // 6
        ("hal", "dev", "reply", 1),   // 8
        ("dev", "fox", "quote", 1),   // 18
        ("gus", "ana", "quote", 1),   // 19
    ]);
    (users, edges)
}

/// Posts applied by the scenario (1, 3, 4, 5, 6, 8, 16, 18, 19, 20), their interactions
/// (1+1+2+1+1+1+1+1+1+1) and the posts deleted (12, 17).
const SCENARIO_POSTS: u64 = 10;
const SCENARIO_INTERACTIONS: u64 = 11;
const SCENARIO_DELETED: u64 = 2;

fn edges(list: &[(&str, &str, &str, u64)]) -> Edges {
    let mut out = Edges::new();
    for (from, to, kind, n) in list {
        *out.entry((key(from), key(to))).or_default().entry(kind.to_string()).or_default() += n;
    }
    out
}

// ---- reading the graph and the source's status ----

async fn graph_at(client: &reqwest::Client, base: &str) -> (BTreeMap<String, Option<String>>, Edges) {
    let get = |path: String| async move {
        let resp = client.get(format!("{base}{path}")).send().await.expect("request sent");
        resp.json::<Value>().await.expect("JSON body")
    };
    let users = get("/vertices?limit=1000".into()).await;
    let users = users["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .map(|u| (u["id"].as_str().unwrap().to_string(), u["handle"].as_str().map(String::from)))
        .collect();
    let ties = get("/aristas?limit=1000".into()).await;
    let mut edges = Edges::new();
    for e in ties["edges"].as_array().expect("edges") {
        let kinds =
            e["kinds"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
        edges.insert((e["from"].as_str().unwrap().to_string(), e["to"].as_str().unwrap().to_string()), kinds);
    }
    (users, edges)
}

async fn source_status(client: &reqwest::Client, base: &str) -> Value {
    let status: Value = client.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "bluesky")
        .cloned()
        .expect("bluesky in /status")
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the graph is exactly `expected`, then says how it differs if it never gets there.
async fn assert_graph_becomes(
    app: &TestApp,
    expected: &(BTreeMap<String, Option<String>>, Edges),
    within: Duration,
) {
    assert_graph_at(&app.client, &app.addr, expected, within).await;
}

/// Waits until the service at `base` serves `expected` (users with handles, and edges), or fails
/// showing the difference after `within`.
async fn assert_graph_at(
    client: &reqwest::Client,
    base: &str,
    expected: &(BTreeMap<String, Option<String>>, Edges),
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = graph_at(client, base).await;
        if &got == expected {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            assert_eq!(got.1, expected.1, "edges at {base}");
            assert_eq!(got.0, expected.0, "users and handles at {base}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn spawn_source(dir: &Path, mock: &MockJetstream, track: &str, idle_ms: Option<u64>) -> TestApp {
    let mut config = Config::for_tests(dir);
    config.sources.kinds = vec![SourceKind::Bluesky];
    config.sources.jetstream.url = mock.url();
    config.sources.track = track.split(',').map(String::from).collect();
    if let Some(ms) = idle_ms {
        config.sources.jetstream.idle_timeout = Duration::from_millis(ms);
    }
    spawn_app_with(config).await
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_stream_gives_the_exact_graph_across_a_dropped_connection() {
    let tmp = tempfile::tempdir().unwrap();
    // The server drops the first connection after event 12 (before 13 is sent).
    let mock = MockJetstream::start(scenario(), First::DropAfter(12), Duration::ZERO).await;
    let app = spawn_source(tmp.path(), &mock, SCENARIO_TRACK, None).await;
    assert_graph_becomes(&app, &scenario_graph(), Duration::from_secs(15)).await;

    let subs = mock.subscriptions();
    assert_eq!(subs.len(), 2, "one reconnect: {subs:?}");
    assert_eq!(subs[0].wanted_collections, [POST, REPOST], "{subs:?}");
    assert_eq!(subs[0].cursor, None, "a fresh data directory streams live");
    // The newest event seen before the drop was 12: resume 5 s before it, at 7.
    assert_eq!(subs[1].cursor, Some(t(12) - 5 * SECOND), "{subs:?}");
    assert_eq!(subs[1].wanted_collections, [POST, REPOST]);

    let base = app.addr.clone();
    let client = app.client.clone();
    // Events 7-20 were replayed: the reply of 8 is the one post seen twice, the delete of 12 is not
    // retracted twice, and the malformed 11 is skipped both times.
    eventually(Duration::from_secs(5), "the final counters", || {
        let (client, base) = (client.clone(), base.clone());
        async move { source_status(&client, &base).await["posts"] == SCENARIO_POSTS }
    })
    .await;
    let s = source_status(&client, &base).await;
    assert_eq!(s["state"], "streaming", "{s}");
    assert_eq!(s["posts"], SCENARIO_POSTS, "{s}");
    assert_eq!(s["interactions"], SCENARIO_INTERACTIONS, "{s}");
    assert_eq!(s["deleted"], SCENARIO_DELETED, "{s}");
    assert_eq!(s["duplicates"], 1, "{s}");
    assert_eq!(s["skipped"], 2, "{s}");
    assert_eq!(s["reconnects"], 1, "{s}");
    app.stop().await;

    // The cursor was committed with the posts it covers, and stopping committed the rest.
    let (store, writer, _) =
        tagflow::store::open(&tagflow::store::StoreConfig::new(tmp.path())).expect("reopen the store");
    let cursor = store.cursor("bluesky:cursor").unwrap().map(|v| String::from_utf8(v).unwrap());
    assert_eq!(cursor, Some(t(20).to_string()));
    store.close().await;
    drop(store);
    writer.join().expect("the store stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_a_stall_and_the_source_reconnects_from_its_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    // After event 6 the first connection goes silent: no frames, no pongs.
    let mock = MockJetstream::start(scenario(), First::SilentAfter(6), Duration::ZERO).await;
    let app = spawn_source(tmp.path(), &mock, SCENARIO_TRACK, Some(600)).await;
    assert_graph_becomes(&app, &scenario_graph(), Duration::from_secs(15)).await;

    let subs = mock.subscriptions();
    assert!(subs.len() >= 2, "reconnected after the stall: {subs:?}");
    assert_eq!(subs[1].cursor, Some(t(6) - 5 * SECOND), "{subs:?}");
    let s = source_status(&app.client, &app.addr).await;
    assert!(s["reconnects"].as_u64().unwrap() >= 1, "{s}");
    // The later connections go quiet after their replay and stall too: every replay is dropped as
    // duplicates, which the exact graph above (counts included) already shows.
    let error = s["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("stalled: no event for 600ms"), "{s}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_corpus_and_follow_ups_of_its_tagged_posts_give_the_exact_graph() {
    let Some(fixtures) =
        common::fixtures::fixtures("recorded_corpus_and_follow_ups_of_its_tagged_posts_give_the_exact_graph")
    else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The independent reference (tests/reference/social_expected.py) lists every recorded post with
    // its tags: the posts our terms match, and their authors, come from there.
    let track = "#HowToTellAiToShutUp,TalesAtWonderworld,rustlang";
    let terms = ["howtotellaitoshutup", "talesatwonderworld", "rustlang"];
    let mut matching: BTreeMap<String, String> = BTreeMap::new();
    for name in
        ["bluesky__jetstream__subscribe_golden_v1.json", "bluesky__jetstream__corpus_expected_v1.json"]
    {
        let text =
            std::fs::read_to_string(root.join("tests/expected/social").join(name)).expect("reference file");
        let reference: Value = serde_json::from_str(&text).unwrap();
        for (id, p) in reference["posts"].as_object().unwrap() {
            let tags = p["tags"].as_array().unwrap();
            if tags.iter().any(|t| terms.contains(&t.as_str().unwrap().to_lowercase().as_str())) {
                matching.insert(id.clone(), p["author"].as_str().unwrap().to_string());
            }
        }
        // The matching recorded posts carry no interactions (no edge leaves their authors), so they
        // add their authors to the graph and nothing else.
        for e in reference["edges"].as_array().unwrap() {
            assert!(!matching.values().any(|a| e[0] == a.as_str()), "unexpected edge of a tagged post: {e}");
        }
    }
    let how = "at://did:plc:tn3hni2jpphsgl6amfbb7ja6/app.bsky.feed.post/3mptbypfywk2v";
    let tales = "at://did:plc:ynfp6wddjqpl44gordpsqkuw/app.bsky.feed.post/3mptbyo7tas2u";
    assert_eq!(
        matching.keys().map(String::as_str).collect::<Vec<_>>(),
        [how, tales],
        "the tagged recorded posts"
    );
    let (how_author, tales_author) = (matching[how].clone(), matching[tales].clone());

    let bluesky = fixtures.join("bluesky");
    let mut events = Event::from_jsonl(&bluesky.join("jetstream__subscribe_golden_v1.jsonl"));
    events.extend(Event::from_jsonl(&bluesky.join("jetstream__corpus_expected_v1.jsonl")));
    let recorded = events.len();
    assert_eq!(recorded, 162);
    let tn3_did = "did:plc:tn3hni2jpphsgl6amfbb7ja6";
    let f2 = uri(&did("ben"), POST, "3f2");
    let untagged_recorded = "at://did:plc:lthsfxxeghkgg44eummxtvbe/app.bsky.feed.post/3mpt6c57uy22u";
    events.extend([
        // 1: ana reposts the #HowToTellAiToShutUp post.
        repost("ana", t(1), "3f1", how),
        // 2: ben replies to the #talesatwonderworld post and mentions cai.
        post("ben", t(2), "3f2", Body { reply: Some((tales, tales)), mentions: &["cai"], ..Body::default() }),
        // 3: cai quotes the #HowToTellAiToShutUp post (deleted at 8).
        post("cai", t(3), "3f3", Body { quote: Some((how, false)), ..Body::default() }),
        // 4: a repost of a recorded untagged post: nothing.
        repost("dev", t(4), "3f4", untagged_recorded),
        // 5: a handle for the author of the #HowToTellAiToShutUp post (in the graph).
        identity(tn3_did, t(5), "tn3.example.com"),
        // 6: a handle for a recorded user who never entered the graph: nothing.
        identity("did:plc:5er4dj3kkwyj4cy5gdnzn56w", t(6), "not.in.graph.example.com"),
        // 7: eve replies to ben's reply, in the thread of the #talesatwonderworld post.
        post("eve", t(7), "3f7", Body { reply: Some((&f2, tales)), ..Body::default() }),
        // 8: cai deletes her quote.
        delete("cai", t(8), POST, "3f3"),
        // 9: ana quotes the #talesatwonderworld post with media.
        post("ana", t(9), "3f9", Body { quote: Some((tales, true)), ..Body::default() }),
        // 10: fox reposts it.
        repost("fox", t(10), "3f10", tales),
    ]);
    let mut users: BTreeMap<String, Option<String>> =
        ["ana", "ben", "cai", "eve", "fox"].iter().map(|u| (key(u), None)).collect();
    users.insert(how_author.clone(), Some("tn3.example.com".into()));
    users.insert(tales_author.clone(), None);
    let mut expected_edges = edges(&[
        ("ben", "cai", "mention", 1), // 2
        ("eve", "ben", "reply", 1),   // 7
    ]);
    for (from, to, kind) in [
        (key("ana"), how_author.clone(), "repost"),   // 1
        (key("ben"), tales_author.clone(), "reply"),  // 2
        (key("ana"), tales_author.clone(), "quote"),  // 9
        (key("fox"), tales_author.clone(), "repost"), // 10
    ] {
        expected_edges.entry((from, to)).or_default().insert(kind.into(), 1);
    }

    // Drop the first connection after follow-up 6: the source resumes 5 s before it, at follow-up 1,
    // so no recorded event is sent twice.
    let mock = MockJetstream::start(events, First::DropAfter(recorded + 6), Duration::ZERO).await;
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_source(tmp.path(), &mock, track, None).await;
    assert_graph_becomes(&app, &(users, expected_edges), Duration::from_secs(15)).await;
    let subs = mock.subscriptions();
    assert_eq!(subs.len(), 2, "{subs:?}");
    assert_eq!(subs[1].cursor, Some(t(6) - 5 * SECOND), "{subs:?}");
    let s = source_status(&app.client, &app.addr).await;
    assert_eq!(s["skipped"], 0, "every recorded event decodes: {s}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_then_restart_loses_no_post_and_counts_none_twice() {
    let tmp = tempfile::tempdir().unwrap();
    // 250 ms between frames, so that the kill lands in the middle of the stream.
    let mock = MockJetstream::start(scenario(), First::Full, Duration::from_millis(250)).await;
    let url = mock.url();
    let args = ["--sources", "bluesky", "--jetstream-url", url.as_str(), "--track", SCENARIO_TRACK];
    let client = reqwest::Client::new();

    let server = common::process::start(tmp.path(), &args, &[]);
    let base = server.url("");
    // Kill once the reply of event 8 is in the graph: the committed cursor is then at 8 or later, so
    // the restart resumes after event 1 and only the persisted marker of p1 attributes event 19.
    let hal_dev = (key("hal"), key("dev"));
    eventually(Duration::from_secs(20), "event 8 in the graph", || {
        let (client, base, hal_dev) = (client.clone(), base.clone(), hal_dev.clone());
        async move { graph_at(&client, &base).await.1.contains_key(&hal_dev) }
    })
    .await;
    server.kill9();
    let sent_before_kill = mock.sent();
    assert!(sent_before_kill < 20, "the kill came before the end of the stream ({sent_before_kill} sent)");

    let server = common::process::start(tmp.path(), &args, &[]);
    let base = server.url("");
    assert_graph_at(&client, &base, &scenario_graph(), Duration::from_secs(20)).await;
    let subs = mock.subscriptions();
    assert_eq!(subs.len(), 2, "{subs:?}");
    let resumed = subs[1].cursor.expect("the restart resumed from the persisted cursor");
    assert!(resumed >= t(8) - 5 * SECOND && resumed > t(1), "resumed at {resumed}, after event 1: {subs:?}");
    let s = source_status(&client, &base).await;
    assert_eq!((&s["state"], &s["reconnects"]), (&json!("streaming"), &json!(0)), "{s}");
    drop(server);
}

/// Two replicas on one database, both configured with the Jetstream source: one runs it, the other
/// stands by; `kill -9` of the first hands the source to the second, which resumes from the cursor
/// committed with the posts: the graph is exact, no post lost or counted twice. The killed replica,
/// restarted, catches up to the same graph and stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_fails_over_to_another_replica_and_the_graph_stays_exact() {
    let Some(db) = common::pg::database("jetstream_failover") else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mock = MockJetstream::start(scenario(), First::Full, Duration::from_millis(250)).await;
    let url = mock.url();
    let args = ["--sources", "bluesky", "--jetstream-url", url.as_str(), "--track", SCENARIO_TRACK];
    let env = [("DATABASE_URL", db.as_str())];
    let client = reqwest::Client::new();
    let a = common::process::start(dir_a.path(), &args, &env);
    // A holds the source's lock before B starts.
    eventually(Duration::from_secs(10), "A runs the source", || {
        let (client, base) = (client.clone(), a.url(""));
        async move { source_status(&client, &base).await["state"] == "streaming" }
    })
    .await;
    let b = common::process::start(dir_b.path(), &args, &env);
    let base_b = b.url("");
    let s = source_status(&client, &base_b).await;
    assert_eq!(s["state"], "standby", "B waits while A runs the source: {s}");
    // B follows what A commits: event 8's reply shows on B, then A dies mid-stream.
    let hal_dev = (key("hal"), key("dev"));
    eventually(Duration::from_secs(20), "event 8 on B", || {
        let (client, base, hal_dev) = (client.clone(), base_b.clone(), hal_dev.clone());
        async move { graph_at(&client, &base).await.1.contains_key(&hal_dev) }
    })
    .await;
    a.kill9();
    assert!(mock.sent() < 20, "the kill came before the end of the stream ({} sent)", mock.sent());
    assert_graph_at(&client, &base_b, &scenario_graph(), Duration::from_secs(30)).await;
    let subs = mock.subscriptions();
    assert_eq!(subs.len(), 2, "A's connection, then B's: {subs:?}");
    let resumed = subs[1].cursor.expect("B resumed from the cursor A committed");
    assert!(resumed >= t(8) - 5 * SECOND, "resumed at {resumed}: {subs:?}");
    assert_eq!(source_status(&client, &base_b).await["state"], "streaming");

    let a = common::process::start(dir_a.path(), &args, &env);
    let base_a = a.url("");
    eventually(Duration::from_secs(10), "A catches up", || {
        let (client, base) = (client.clone(), base_a.clone());
        async move { graph_at(&client, &base).await == scenario_graph() }
    })
    .await;
    assert_eq!(source_status(&client, &base_a).await["state"], "standby", "B keeps the source");
    drop((a, b));
}

/// A replica whose database session is cut loses the source's lock: finding it held elsewhere, it
/// stops its run (committing what it holds) and stands by; once the lock is free, one replica takes
/// the source over from the committed cursor, and the graph is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_loses_its_lock_stops_the_source_and_stands_by() {
    let Some(db) = common::pg::database("jetstream_lock_lost") else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mock = MockJetstream::start(scenario(), First::Full, Duration::from_millis(400)).await;
    let url = mock.url();
    let args = ["--sources", "bluesky", "--jetstream-url", url.as_str(), "--track", SCENARIO_TRACK];
    let env = [("DATABASE_URL", db.as_str())];
    let client = reqwest::Client::new();
    let a = common::process::start(dir_a.path(), &args, &env);
    let (base_a, state) = (a.url(""), |s: &Value| s["state"].as_str().unwrap_or_default().to_string());
    eventually(Duration::from_secs(10), "A runs the source", || {
        let (client, base) = (client.clone(), base_a.clone());
        async move { source_status(&client, &base).await["state"] == "streaming" }
    })
    .await;
    let b = common::process::start(dir_b.path(), &args, &env);
    let base_b = b.url("");
    // The session holding the source's lock (A's) ends, as when a network drops it, and another
    // session (this test's) takes the lock before either replica can.
    let key: i64 = 0x7461_6766_1000_0000 + i64::from(crc32fast::hash(b"source:bluesky"));
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel::<usize>();
    let holder = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&db, postgres::NoTls).expect("connect");
            // A replica may take the lock again between the cut and this session's try: cut again
            // until this session holds it.
            let (mut cut, deadline) = (0, std::time::Instant::now() + Duration::from_secs(20));
            loop {
                // Only the session holding the source's lock: a writer mid-append holds an advisory
                // lock too, and cutting it is not this test's case. A bigint key is the lock's
                // classid (high half) and objid (low half).
                let (high, low) = (i64::from((key >> 32) as u32), i64::from(key as u32));
                cut += c
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks \
                         WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() \
                         AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1 \
                         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        &[&high, &low],
                    )
                    .expect("terminate")
                    .len();
                if c.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).expect("lock").get::<_, bool>(0) {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "this session never got the source's lock");
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = held_tx.send(cut);
            let _ = released.recv();
        })
    };
    assert!(held.await.unwrap() >= 1, "A's session held the lock");
    eventually(Duration::from_secs(30), "A stops the source: neither replica runs it", || {
        let (client, a, b) = (client.clone(), base_a.clone(), base_b.clone());
        async move {
            let (sa, sb) = (source_status(&client, &a).await, source_status(&client, &b).await);
            state(&sa) == "standby" && state(&sb) == "standby"
        }
    })
    .await;
    // The lock is free again: one replica, either, takes the source over.
    release.send(()).unwrap();
    holder.join().unwrap();
    eventually(Duration::from_secs(30), "one replica runs the source", || {
        let (client, a, b) = (client.clone(), base_a.clone(), base_b.clone());
        async move {
            let (sa, sb) = (source_status(&client, &a).await, source_status(&client, &b).await);
            let states = [state(&sa), state(&sb)];
            states.contains(&"streaming".to_string()) && states.contains(&"standby".to_string())
        }
    })
    .await;
    for base in [&base_b, &base_a] {
        assert_graph_at(&client, base, &scenario_graph(), Duration::from_secs(30)).await;
    }
    let states =
        [state(&source_status(&client, &base_a).await), state(&source_status(&client, &base_b).await)];
    assert_eq!(
        states.iter().filter(|s| *s == "streaming").count(),
        1,
        "one replica runs the source: {states:?}"
    );
    drop((a, b));
}
