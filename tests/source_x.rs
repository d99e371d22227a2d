//! The X API v2 filtered-stream source against a mock X on 127.0.0.1 (`common::mock_x`): rules sync,
//! stream framing (keep-alives, lines cut anywhere, over-long lines), in-band disconnects, stalls,
//! rate limits, the reconnect schedule (paused tokio time), recent-search backfill, and a `kill -9` of
//! the real binary in the middle of a stream.
//!
//! Graphs are compared exactly with expectations worked out without the decoder: by hand for the
//! hand-written payloads (these tests always run), and from `tests/expected/x/*.json`
//! (`tests/reference/x_expected.py`) for the recorded fixtures (these print SKIPPED without
//! `../shared`). Every test also checks that the bearer token appears neither in `/status` nor in any
//! log line captured from the source, reqwest and hyper.

mod common;

use common::app::{spawn_app_with, TestApp};
use common::fixtures::fixtures;
use common::mock_x::{self, MockX, Reply, Request, Step};
use common::process;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use tagflow::config::Config;
use tagflow::graph::{Kind, Mutation, UserOrder};
use tagflow::ingest::source::x;
use tagflow::ingest::source::x::XSettings;
use tagflow::ingest::status::{SourceState, SourceStatus};
use tagflow::ingest::SourceKind;
use tagflow::store::{self, StoreConfig, StoreHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "AAAAAAAAAAAAAAAAAAAAAtagflowTestToken%2Fnot-a-real-one-5e0d7c";
const RULES: &str = "GET /2/tweets/search/stream/rules";
const RULES_POST: &str = "POST /2/tweets/search/stream/rules";
const STREAM: &str = "GET /2/tweets/search/stream";
const SEARCH: &str = "GET /2/tweets/search/recent";
/// The longest any condition is waited for.
const WAIT: Duration = Duration::from_secs(15);

// ---- captured logs ----

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The captured lines; a test that panicked elsewhere does not hide them (poisoning is ignored).
fn logs() -> std::sync::MutexGuard<'static, Vec<String>> {
    LOGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps every log line of tagflow, reqwest and hyper (debug and up; `TAGFLOW_TEST_LOG=1` also prints
/// them), so that tests can check what the source said and that the token is never in it.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        let t = m.target();
        m.level() <= log::Level::Info
            || (m.level() <= log::Level::Trace
                && ["tagflow", "reqwest", "hyper"].iter().any(|p| t.starts_with(p)))
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {} {}", r.level(), r.target(), r.args());
            if std::env::var_os("TAGFLOW_TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            logs().push(line);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn capture_logs() {
    static ONCE: Once = Once::new();
    // Installed before spawn_app's env_logger, whose try_init then does nothing.
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn logs_matching(needle: &str) -> Vec<String> {
    logs().iter().filter(|l| l.contains(needle)).cloned().collect()
}

#[track_caller]
fn assert_token_absent(what: &str, text: &str) {
    assert!(!text.contains(TOKEN), "the bearer token leaked into {what}");
    assert!(!text.contains(&TOKEN[..24]), "a prefix of the bearer token leaked into {what}");
}

#[track_caller]
fn assert_no_token_in_logs() {
    let logs = logs().clone();
    assert!(logs.iter().any(|l| l.contains("source x:")), "the source's log lines were captured");
    assert_token_absent("the logs", &logs.join("\n"));
}

// ---- payloads written by hand, in the shapes of the recorded ones ----

fn user(id: &str, username: &str) -> Value {
    json!({ "id": id, "username": username, "name": format!("{username} (test)"),
            "created_at": "2020-01-01T00:00:00.000Z", "verified": false,
            "public_metrics": { "followers_count": 1, "following_count": 2, "tweet_count": 3, "listed_count": 0 } })
}

fn stream_line(data: Value, users: Value, tweets: Value) -> Vec<u8> {
    // `matching_rules[].id` as a JSON number, as real captures have it.
    serde_json::to_vec(&json!({
        "data": data,
        "includes": { "users": users, "tweets": tweets },
        "matching_rules": [{ "id": 1501234567890123456u64, "tag": "tagflow:#rustlang" }]
    }))
    .unwrap()
}

/// Four tweets; worked out by hand:
/// - 100 alice(1): "#rustlang with @bob"            -> mention 1->2
/// - 101 bob(2): "RT @alice: ..." retweet of 100    -> repost 2->1 (the RT mention is not counted)
/// - 1000 carol(3): "@alice ..." reply to 100, quoting 101 -> reply 3->1, mention 3->1, quote 3->2
/// - 999 dave(4): "@carol" (999 < 1000 as numbers, > as text) -> mention 4->3
fn hand_lines() -> Vec<Vec<u8>> {
    let (alice, bob, carol, dave) =
        (user("1", "alice"), user("2", "bob"), user("3", "carol"), user("4", "dave"));
    vec![
        stream_line(
            json!({ "id": "100", "author_id": "1", "text": "#rustlang with @bob", "created_at": "2024-05-01T10:00:00.000Z",
                    "conversation_id": "100", "lang": "en",
                    "entities": { "hashtags": [{ "start": 0, "end": 9, "tag": "rustlang" }],
                                  "mentions": [{ "start": 15, "end": 19, "username": "bob", "id": "2" }] } }),
            json!([alice, bob]),
            json!([]),
        ),
        stream_line(
            json!({ "id": "101", "author_id": "2", "text": "RT @alice: #rustlang with @bob", "created_at": "2024-05-01T10:01:00.000Z",
                    "referenced_tweets": [{ "type": "retweeted", "id": "100" }],
                    "entities": { "mentions": [{ "start": 3, "end": 9, "username": "alice", "id": "1" },
                                               { "start": 26, "end": 30, "username": "bob", "id": "2" }] } }),
            json!([bob, alice]),
            json!([{ "id": "100", "author_id": "1", "text": "#rustlang with @bob" }]),
        ),
        stream_line(
            json!({ "id": "1000", "author_id": "3", "text": "@alice agreed #rustlang", "created_at": "2024-05-01T10:02:00.000Z",
                    "in_reply_to_user_id": "1",
                    "referenced_tweets": [{ "type": "replied_to", "id": "100" }, { "type": "quoted", "id": "101" }],
                    "entities": { "mentions": [{ "start": 0, "end": 6, "username": "alice", "id": "1" }] } }),
            json!([carol, alice, bob]),
            json!([{ "id": "100", "author_id": "1" }, { "id": "101", "author_id": "2" }]),
        ),
        stream_line(
            json!({ "id": "999", "author_id": "4", "text": "hi @carol #rustlang", "created_at": "2024-05-01T09:59:00.000Z",
                    "entities": { "mentions": [{ "start": 3, "end": 9, "username": "carol", "id": "3" }] } }),
            json!([dave, carol]),
            json!([]),
        ),
    ]
}

type Edges = BTreeMap<(String, String, String), u64>;

fn edges_of(list: &[(&str, &str, &str, u64)]) -> Edges {
    list.iter().map(|(a, b, k, n)| ((a.to_string(), b.to_string(), k.to_string()), *n)).collect()
}

fn hand_edges() -> Edges {
    edges_of(&[
        ("x:1", "x:2", "mention", 1),
        ("x:2", "x:1", "repost", 1),
        ("x:3", "x:1", "mention", 1),
        ("x:3", "x:1", "reply", 1),
        ("x:3", "x:2", "quote", 1),
        ("x:4", "x:3", "mention", 1),
    ])
}

fn hand_users() -> BTreeSet<String> {
    ["x:1", "x:2", "x:3", "x:4"].map(String::from).into()
}

// ---- graph and expectations ----

/// Users and per-kind edge counts of a live store.
fn graph(store: &StoreHandle) -> (BTreeSet<String>, Edges) {
    let g = store.graph().read();
    let users = g.users_page(UserOrder::Key, None, usize::MAX).items.into_iter().map(|u| u.id).collect();
    let mut edges = Edges::new();
    for t in g.ties_page(None, usize::MAX).items {
        let tie = g.tie(&t.from, &t.to).expect("a listed edge exists");
        for k in Kind::ALL {
            if tie.count(k) > 0 {
                edges.insert((t.from.clone(), t.to.clone(), k.as_str().to_string()), u64::from(tie.count(k)));
            }
        }
    }
    (users, edges)
}

/// Users, edges and post count of the union of expected files (their posts do not overlap).
fn expected(names: &[&str]) -> (BTreeSet<String>, Edges, u64) {
    let mut users = BTreeSet::new();
    let mut edges = Edges::new();
    let mut posts = 0;
    for name in names {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/x").join(format!("{name}.json"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("expected file")).unwrap();
        for e in v["edges"].as_array().expect("edges") {
            let (a, b, k) = (
                e[0].as_str().unwrap().to_string(),
                e[1].as_str().unwrap().to_string(),
                e[2].as_str().unwrap(),
            );
            users.insert(a.clone());
            users.insert(b.clone());
            *edges.entry((a, b, k.to_string())).or_default() += e[3].as_u64().unwrap();
        }
        // Every post's author is a user, even without interactions.
        for p in v["posts"].as_object().expect("posts").values() {
            users.insert(p["author"].as_str().unwrap().to_string());
        }
        posts += v["posts"].as_object().unwrap().len() as u64;
    }
    (users, edges, posts)
}

fn fixture_lines(fx: &Path, name: &str) -> Vec<Vec<u8>> {
    mock_x::lines_of(&std::fs::read(fx.join("x-v2").join(name)).expect("fixture"))
}

fn cursor(store: &StoreHandle) -> Option<String> {
    store.cursor(x::CURSOR).unwrap().map(|v| String::from_utf8(v).unwrap())
}

// ---- the service under test ----

fn config(dir: &Path, mock: &MockX, track: &[&str]) -> Config {
    let mut c = Config::for_tests(dir);
    c.sources.kinds = vec![SourceKind::X];
    c.sources.track = track.iter().map(|t| t.to_string()).collect();
    c.sources.x = XSettings {
        api_url: mock.url.clone(),
        bearer_token: Some(TOKEN.into()),
        stall_timeout: Duration::from_secs(5),
    };
    c
}

async fn start(dir: &Path, mock: &MockX, track: &[&str]) -> TestApp {
    capture_logs();
    spawn_app_with(config(dir, mock, track)).await
}

/// The `x` entry of `/status`, once `ok` holds for it (bounded by [`WAIT`]).
async fn x_status(app: &TestApp, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, body) = app.get("/status").await;
        assert!(code.is_success(), "/status answers while the source works");
        assert_token_absent("/status", &body.to_string());
        let x = body["sources"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "x")).cloned();
        if let Some(x) = x {
            if ok(&x) {
                return x;
            }
            if Instant::now() > deadline {
                panic!("waited {WAIT:?} for {what}; x status: {x:#}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} in {v}"))
}

/// What a data directory holds: users, per-kind edges and the X cursor.
struct Stored {
    users: BTreeSet<String>,
    edges: Edges,
    cursor: Option<String>,
}

/// Opens a data directory that no process holds and reads what it kept.
///
/// A stopped [`TestApp`] can hold sled's lock for a few milliseconds more: actix's worker threads
/// drop their copies of the app state (and its store handle) after the server's stop has returned.
/// Opening is retried for a while on [`store::StoreError::Locked`] only.
async fn stored(dir: &Path) -> Stored {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let (store, writer, _) = loop {
            match store::open(&StoreConfig::new(&dir)) {
                Err(store::StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => break other.expect("open the data directory"),
            }
        };
        let (users, edges) = graph(&store);
        let cursor = cursor(&store);
        drop(store);
        writer.join().expect("the store stops cleanly");
        Stored { users, edges, cursor }
    })
    .await
    .expect("read the data directory")
}

/// Stops gracefully, checks that a held stream or a long back-off did not delay the stop, and
/// returns what the data directory kept.
async fn stop(app: TestApp) -> Stored {
    let dir = app.dir.clone();
    let started = Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(3), "stopped in {:?}", started.elapsed());
    stored(&dir).await
}

fn rules_with_rustlang() -> Value {
    mock_x::rules_list(&[("1501234567890123456", "#rustlang", "tagflow:#rustlang")])
}

/// The stream request asks for the expansions and fields of PROTOCOLS.md, with the token in a header.
#[track_caller]
fn assert_stream_request(r: &Request) {
    assert_eq!(
        r.param("expansions"),
        Some(
            "author_id,referenced_tweets.id,referenced_tweets.id.author_id,entities.mentions.username,in_reply_to_user_id"
        )
    );
    assert_eq!(
        r.param("tweet.fields"),
        Some("author_id,created_at,conversation_id,entities,in_reply_to_user_id,referenced_tweets,lang")
    );
    assert_eq!(r.param("user.fields"), Some("id,name,username,created_at,public_metrics,verified"));
    assert_eq!(r.query.len(), 3, "no other parameter: {:?}", r.query);
}

#[track_caller]
fn assert_authorized(requests: &[Request]) {
    for r in requests {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()), "{}", r.route());
        assert!(!r.path.contains(TOKEN) && !r.query.iter().any(|(_, v)| v.contains(TOKEN)), "token in a URL");
    }
}

/// The `x` entry of a child process's `/status`, once `ok` holds for it (bounded by [`WAIT`]).
async fn process_status(
    client: &reqwest::Client,
    server: &process::ServerProcess,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body: Value = client.get(server.url("/status")).send().await.unwrap().json().await.unwrap();
        assert_token_absent("/status", &body.to_string());
        let x = body["sources"].as_array().unwrap().iter().find(|s| s["name"] == "x").cloned().unwrap();
        if ok(&x) {
            return x;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}; x status: {x:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- tests that always run (hand-written payloads) ----

#[tokio::test]
async fn hand_written_stream_cut_anywhere_with_keepalives_gives_the_exact_graph_and_cursor() {
    for seed in [1u64, 7, 42] {
        let tmp = tempfile::tempdir().unwrap();
        let mut body = b"\r\n".to_vec(); // a keep-alive before anything
        body.extend(mock_x::framed(&hand_lines(), 1));
        let mut steps = mock_x::cut(&body, 60, seed);
        steps.push(Step::Hold);
        let mock = MockX::start(move |r| match r.route().as_str() {
            RULES => Reply::json(200, rules_with_rustlang()),
            STREAM => Reply::Stream(steps.clone()),
            _ => Reply::json(404, json!({ "title": "Not Found" })),
        })
        .await;
        let app = start(tmp.path(), &mock, &["#rustlang"]).await;
        let x = x_status(&app, "4 posts", |x| x["posts"] == 4).await;
        assert_eq!(x["state"], "streaming", "seed {seed}: {x}");
        assert_eq!(
            (n(&x, "skipped"), n(&x, "reconnects"), n(&x, "duplicates")),
            (0, 0, 0),
            "seed {seed}: {x}"
        );
        assert_eq!(n(&x, "interactions"), 6, "seed {seed}");
        let requests = mock.requests();
        assert_eq!(requests.iter().map(Request::route).collect::<Vec<_>>(), [RULES, STREAM], "seed {seed}");
        assert_stream_request(&requests[1]);
        assert_authorized(&requests);
        let kept = stop(app).await;
        assert_eq!(kept.edges, hand_edges(), "seed {seed}");
        assert_eq!(kept.users, hand_users(), "seed {seed}");
        assert_eq!(kept.cursor.as_deref(), Some("1000"), "seed {seed}: the newest id by number, not text");
    }
    assert_no_token_in_logs();
}

#[tokio::test]
async fn rules_sync_adds_the_missing_keeps_duplicates_and_foreign_rules_and_deletes_only_stale_own_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = hand_lines();
    let first = mock_x::framed(&lines[..1], 0);
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(
            200,
            mock_x::rules_list(&[
                ("11", "#rust", "tagflow:#rust"),     // ours, still tracked: kept
                ("12", "#old", "tagflow:#old"),       // ours, no longer tracked: deleted
                ("13", "#rustlang", "dashboard"),     // another tool's: kept
                ("14", "from:someone", "tagflowish"), // another tool's, prefix lookalike: kept
            ]),
        ),
        RULES_POST if r.json().get("delete").is_some() => Reply::json(
            200,
            json!({ "meta": { "sent": "2024-05-01T10:00:00.000Z",
                              "summary": { "deleted": 1, "not_deleted": 0 } } }),
        ),
        RULES_POST => Reply::json(
            200,
            json!({
                "data": [{ "value": "rust lang", "tag": "tagflow:rust lang", "id": "15" }],
                "errors": [{ "value": "#rustlang", "id": "13", "title": "DuplicateRule",
                             "type": "https://api.twitter.com/2/problems/duplicate-rules" }],
                "meta": { "sent": "2024-05-01T10:00:00.000Z",
                          "summary": { "created": 1, "not_created": 1, "valid": 1, "invalid": 1 } }
            }),
        ),
        // The first connection delivers one tweet and ends cleanly; the second stays open.
        STREAM if r.nth == 0 => Reply::Stream(vec![Step::Send(first.clone()), Step::End]),
        STREAM => Reply::Stream(vec![Step::Hold]),
        SEARCH => Reply::json(200, mock_x::empty_page()),
        _ => Reply::json(404, json!({ "title": "Not Found" })),
    })
    .await;
    let app = start(tmp.path(), &mock, &["#rust", "#rustlang", "rust lang"]).await;
    let x = x_status(&app, "the reconnect after a clean close", |x| {
        x["reconnects"] == 1 && x["state"] == "streaming"
    })
    .await;
    assert!(mock.wait_for(SEARCH, 1, WAIT).await, "a backfill after the reconnect");
    let requests = mock.requests();
    let routes: Vec<String> = requests.iter().map(Request::route).collect();
    // Rules are synced once; the reconnect goes straight to the stream, then fills the gap.
    assert_eq!(routes, [RULES, RULES_POST, RULES_POST, STREAM, STREAM, SEARCH]);
    assert_eq!(requests[1].json(), json!({ "delete": { "ids": ["12"] } }), "only the stale rule of ours");
    assert_eq!(
        requests[2].json(),
        json!({ "add": [{ "value": "#rustlang", "tag": "tagflow:#rustlang" },
                        { "value": "rust lang", "tag": "tagflow:rust lang" }] }),
        "every tracked term that no tagflow rule holds"
    );
    assert_eq!(requests[5].param("since_id"), Some("100"), "backfill from the newest id seen");
    assert_eq!(requests[5].param("query"), Some("#rust OR #rustlang OR (rust lang)"));
    assert_eq!(requests[5].param("max_results"), Some("100"));
    assert_authorized(&requests);
    assert!(x["last_error"].is_null(), "a DuplicateRule is no error: {x}");
    assert_eq!(n(&x, "posts"), 1);
    assert!(!logs_matching("already exists").is_empty(), "the duplicate is logged as present");
    stop(app).await;
    assert_no_token_in_logs();
}

#[tokio::test]
async fn an_over_long_line_ends_the_connection_not_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = hand_lines();
    let second = mock_x::framed(&lines[..1], 0);
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        // 2 MiB without a newline: past the 1 MiB cap.
        STREAM if r.nth == 0 => {
            let mut steps: Vec<Step> = (0..32).map(|_| Step::Send(vec![b'x'; 64 << 10])).collect();
            steps.push(Step::Hold);
            Reply::Stream(steps)
        }
        STREAM => Reply::Stream(vec![Step::Send(second.clone()), Step::Hold]),
        SEARCH => Reply::json(200, mock_x::empty_page()),
        _ => Reply::json(404, json!({})),
    })
    .await;
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let x = x_status(&app, "the post of the second connection", |x| x["posts"] == 1).await;
    assert_eq!((n(&x, "skipped"), n(&x, "reconnects")), (1, 1), "{x}");
    assert!(x["last_error"].as_str().is_some_and(|e| e.contains("without a newline")), "{x}");
    assert_eq!(stop(app).await.edges, edges_of(&[("x:1", "x:2", "mention", 1)]));
    assert_no_token_in_logs();
}

#[tokio::test]
async fn rate_limited_stream_shows_backing_off_until_the_announced_reset_while_the_api_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let reset = chrono::Utc::now().timestamp() + 900;
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        STREAM => Reply::json(
            429,
            json!({ "title": "ConnectionException", "connection_issue": "TooManyConnections",
                    "detail": "This stream is currently at the maximum allowed connection limit.",
                    "type": "https://api.twitter.com/2/problems/streaming-connection" }),
        )
        .with_header("x-rate-limit-limit", "50")
        .with_header("x-rate-limit-remaining", "0")
        .with_header("x-rate-limit-reset", &reset.to_string()),
        _ => Reply::json(404, json!({})),
    })
    .await;
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let x = x_status(&app, "backing_off", |x| x["state"] == "backing_off").await;
    assert!(x["reason"].as_str().unwrap().contains("TooManyConnections"), "{x}");
    assert!(x["last_error"].as_str().unwrap().contains("429"), "{x}");
    assert_eq!(x["rate_limit_reset"], tagflow::graph::rfc3339(reset), "{x}");
    // 900 s to the reset is later than the first 60 s step: wait until the reset.
    let until = chrono::DateTime::parse_from_rfc3339(x["until"].as_str().unwrap()).unwrap().timestamp();
    assert!((until - reset).abs() <= 2, "until {until} vs reset {reset}");
    // The API keeps answering while the source waits.
    let (code, count) = app.get("/vertices/count").await;
    assert!(code.is_success() && count["count"] == 0, "{code} {count}");
    assert_eq!(mock.requests_to(STREAM).len(), 1, "no retry before the reset");
    stop(app).await;

    // A plain 429 without a reset header: the first step of the schedule, 60 s.
    let tmp = tempfile::tempdir().unwrap();
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        _ => Reply::json(
            429,
            json!({ "title": "Too Many Requests", "detail": "Too Many Requests",
                                      "type": "about:blank", "status": 429 }),
        ),
    })
    .await;
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let x = x_status(&app, "backing_off", |x| x["state"] == "backing_off").await;
    let until = chrono::DateTime::parse_from_rfc3339(x["until"].as_str().unwrap()).unwrap().timestamp();
    let left = until - chrono::Utc::now().timestamp();
    assert!((58..=61).contains(&left), "{left} s left: {x}");
    assert!(x["rate_limit_reset"].is_null(), "no reset announced: {x}");
    stop(app).await;
    assert_no_token_in_logs();
}

#[tokio::test]
async fn keepalives_keep_a_quiet_stream_open_and_silence_is_a_stall() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = hand_lines();
    let (a, b) = (mock_x::framed(&lines[..1], 0), mock_x::framed(&lines[2..3], 0));
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        STREAM if r.nth == 0 => {
            // 1.2 s of keep-alives only (twice the stall timeout), then silence.
            let mut steps = vec![Step::Send(a.clone())];
            for _ in 0..12 {
                steps.push(Step::Pause(Duration::from_millis(100)));
                steps.push(Step::Send(b"\r\n".to_vec()));
            }
            steps.push(Step::Hold);
            Reply::Stream(steps)
        }
        STREAM => Reply::Stream(vec![Step::Send(b.clone()), Step::Hold]),
        SEARCH => Reply::json(200, mock_x::empty_page()),
        _ => Reply::json(404, json!({})),
    })
    .await;
    let mut config = config(tmp.path(), &mock, &["#rustlang"]);
    config.sources.x.stall_timeout = Duration::from_millis(600);
    capture_logs();
    let app = spawn_app_with(config).await;
    let x = x_status(&app, "the post of the second connection", |x| x["posts"] == 2).await;
    let streams = mock.requests_to(STREAM);
    assert_eq!(streams.len(), 2, "one reconnect, none while keep-alives flowed");
    let gap = streams[1].at - streams[0].at;
    // 1.2 s of keep-alives + 0.6 s of silence + 0.25 s (first network step after a healthy stream).
    assert!(gap >= Duration::from_millis(1_800) && gap < Duration::from_secs(5), "reconnected after {gap:?}");
    assert_eq!(n(&x, "reconnects"), 1);
    assert!(x["last_error"].as_str().is_some_and(|e| e.contains("stalled")), "{x}");
    let search = mock.requests_to(SEARCH);
    assert_eq!(search.len(), 1);
    assert_eq!(search[0].param("since_id"), Some("100"));
    assert_eq!(stop(app).await.cursor.as_deref(), Some("1000"));
    assert_no_token_in_logs();
}

/// Drives `x::run` directly on a paused clock: the schedule's delays pass instantly and exactly.
async fn run_paused(
    mock: &MockX,
    dir: &Path,
) -> (Arc<SourceStatus>, CancellationToken, tokio::task::JoinHandle<()>, StoreHandle, store::Writer) {
    capture_logs();
    let (store, writer, _) = store::open(&StoreConfig::new(dir)).expect("open store");
    let status = SourceStatus::new("x");
    let cancel = CancellationToken::new();
    let settings = XSettings {
        api_url: mock.url.clone(),
        bearer_token: Some(TOKEN.into()),
        stall_timeout: Duration::from_secs(21),
    };
    let task = tokio::spawn(x::run(
        settings,
        vec!["#rustlang".into()],
        store.clone(),
        status.clone(),
        cancel.clone(),
    ));
    (status, cancel, task, store, writer)
}

#[tokio::test(start_paused = true)]
async fn http_errors_back_off_5_10_20_40_seconds_and_a_healthy_stream_starts_the_schedule_over() {
    let tmp = tempfile::tempdir().unwrap();
    let mock = MockX::start(|r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        // Four refusals; then a stream that delivers a keep-alive and closes (healthy, dropped);
        // then refusals again.
        STREAM if r.nth == 4 => Reply::Stream(vec![Step::Send(b"\r\n".to_vec()), Step::End]),
        _ => Reply::json(503, json!({ "title": "Service Unavailable", "detail": "Service Unavailable" })),
    })
    .await;
    let (status, cancel, task, store, writer) = run_paused(&mock, tmp.path()).await;
    assert!(mock.wait_for(STREAM, 7, Duration::from_secs(300)).await, "seven attempts");
    match status.state() {
        SourceState::BackingOff { reason, .. } => assert!(reason.contains("503"), "{reason}"),
        other => panic!("backing off after a 503, not {other:?}"),
    }
    let at: Vec<Instant> = mock.requests_to(STREAM).iter().map(|r| r.at).collect();
    let gaps: Vec<u128> = at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    // The test polls every 10 ms of the paused clock, so an interval may read a few polls long.
    let want = [5_000u128, 10_000, 20_000, 40_000, 0, 5_000];
    assert!(gaps.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 100), "gaps {gaps:?} ms, want {want:?}");
    assert_eq!(mock.requests_to(RULES).len(), 1, "rules are synced once");
    assert_eq!(status.reconnects.load(std::sync::atomic::Ordering::Relaxed), 6);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(1), task).await.expect("stops at once when cancelled").unwrap();
    assert_eq!(status.state(), SourceState::Stopped);
    drop(store);
    writer.join().expect("the store stops cleanly");
    assert_no_token_in_logs();
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_stops_the_source_after_a_few_attempts_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let mock = MockX::start(|_| {
        Reply::json(401, json!({ "title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized" }))
    })
    .await;
    let (status, _cancel, task, store, writer) = run_paused(&mock, tmp.path()).await;
    tokio::time::timeout(Duration::from_secs(600), task).await.expect("gives up by itself").unwrap();
    let SourceState::Failed { reason } = status.state() else { panic!("failed, not {:?}", status.state()) };
    assert!(reason.contains("401") && reason.contains("TAGFLOW_X_BEARER_TOKEN"), "{reason}");
    assert_token_absent("the failure reason", &reason);
    assert_token_absent("the status", &serde_json::to_string(&status.report()).unwrap());
    let at: Vec<Instant> = mock.requests_to(RULES).iter().map(|r| r.at).collect();
    assert_eq!(at.len(), x::AUTH_ATTEMPTS as usize);
    assert_eq!((at[2] - at[0]).as_secs(), 15, "5 s then 10 s between the attempts");
    drop(store);
    writer.join().expect("the store stops cleanly");
    assert_no_token_in_logs();
}

#[tokio::test]
async fn an_interrupted_backfill_keeps_the_cursor_and_is_retried_from_the_same_since_id() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (store, writer, _) = store::open(&StoreConfig::new(tmp.path())).unwrap();
        let set = Mutation::SetCursor { name: x::CURSOR.into(), value: b"50".to_vec() };
        store.submit(vec![set]).await.unwrap();
        drop(store);
        tokio::task::spawn_blocking(move || writer.join()).await.unwrap().expect("the store stops cleanly");
    }
    let lines = hand_lines();
    let mut first_page = mock_x::page_of_stream_lines(&lines[..2]);
    first_page["meta"]["next_token"] = json!("p2");
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        // The first connection closes after a keep-alive, so that the source reconnects once.
        STREAM if r.nth == 0 => Reply::Stream(vec![Step::Send(b"\r\n".to_vec()), Step::End]),
        STREAM => Reply::Stream(vec![Step::Hold]),
        SEARCH if r.param("next_token").is_none() => Reply::json(200, first_page.clone()),
        SEARCH => Reply::json(503, json!({ "title": "Service Unavailable" })),
        _ => Reply::json(404, json!({})),
    })
    .await;
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let x = x_status(&app, "the retried backfill", |x| x["duplicates"] == 2 && x["reconnects"] == 1).await;
    assert!(mock.wait_for(SEARCH, 4, WAIT).await);
    let search: Vec<(Option<String>, Option<String>)> = mock
        .requests_to(SEARCH)
        .iter()
        .map(|r| (r.param("since_id").map(String::from), r.param("next_token").map(String::from)))
        .collect();
    let from_50 = |t: Option<&str>| (Some("50".to_string()), t.map(String::from));
    assert_eq!(search, [from_50(None), from_50(Some("p2")), from_50(None), from_50(Some("p2"))]);
    // The first page is in, but the gap is not filled: the cursor must not claim it is.
    assert_eq!(n(&x, "posts"), 2);
    assert!(
        x["last_error"].as_str().is_some_and(|e| e.contains("backfill since_id=50") && e.contains("503")),
        "{x}"
    );
    assert_eq!(x["state"], "streaming", "a failed backfill does not drop the stream");
    assert_eq!(stop(app).await.cursor.as_deref(), Some("50"));
    assert_no_token_in_logs();
}

// ---- tests on the recorded fixtures ----

#[tokio::test]
async fn recorded_stream_with_keepalives_cuts_and_an_operational_disconnect_gives_the_expected_graph() {
    let Some(fx) = fixtures("recorded_stream_with_keepalives_cuts_and_an_operational_disconnect") else {
        return;
    };
    let lines = fixture_lines(&fx, "streaming_output.jsonl");
    assert_eq!(lines.len(), 9);
    assert!(String::from_utf8_lossy(&lines[4]).contains("operational-disconnect"));
    // The server holds the first connection open after the disconnect line: only the line can explain
    // a reconnect sooner than the 5 s stall timeout.
    let mut first = mock_x::cut(&mock_x::framed(&lines[..5], 2), 25, 3);
    first.push(Step::Hold);
    let mut second = mock_x::cut(&mock_x::framed(&lines[5..], 1), 25, 4);
    second.push(Step::Hold);
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        STREAM if r.nth == 0 => Reply::Stream(first.clone()),
        STREAM => Reply::Stream(second.clone()),
        SEARCH => Reply::json(200, mock_x::empty_page()),
        _ => Reply::json(404, json!({})),
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let (want_users, want_edges, want_posts) = expected(&["streaming_output"]);
    let x = x_status(&app, "every post", |x| x["posts"] == want_posts && x["duplicates"] == 1).await;
    let streams = mock.requests_to(STREAM);
    assert_eq!(streams.len(), 2);
    assert!(
        streams[1].at - streams[0].at < Duration::from_secs(2),
        "reconnected at once on the disconnect line"
    );
    assert_eq!((n(&x, "reconnects"), n(&x, "skipped")), (1, 0), "{x}");
    let search = mock.requests_to(SEARCH);
    assert_eq!(search.len(), 1);
    assert_eq!(
        search[0].param("since_id"),
        Some("1377650387579248643"),
        "the newest id before the disconnect"
    );
    assert_eq!(search[0].param("query"), Some("#rustlang"));
    assert!(search[0].at > streams[1].at, "the gap is searched once the stream is back");
    assert!(!logs_matching("operational-disconnect").is_empty());
    let kept = stop(app).await;
    assert_eq!(kept.edges, want_edges);
    assert_eq!(kept.users, want_users);
    assert_eq!(kept.cursor.as_deref(), Some("1377650529766154240"));
    assert_no_token_in_logs();
}

#[tokio::test]
async fn recorded_truncated_line_is_counted_as_skipped_and_the_rest_applied() {
    let Some(fx) = fixtures("recorded_truncated_line_is_counted_as_skipped_and_the_rest_applied") else {
        return;
    };
    let lines = fixture_lines(&fx, "streaming_output_with_error.jsonl");
    assert_eq!(lines.len(), 8);
    let mut steps = mock_x::cut(&mock_x::framed(&lines, 3), 30, 5);
    steps.push(Step::Hold);
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        STREAM => Reply::Stream(steps.clone()),
        _ => Reply::json(404, json!({})),
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let (want_users, want_edges, want_posts) = expected(&["streaming_output_with_error"]);
    let x =
        x_status(&app, "every post and the skip", |x| x["posts"] == want_posts && x["skipped"] == 1).await;
    assert_eq!((n(&x, "reconnects"), n(&x, "duplicates")), (0, 0), "a bad line does not end the stream: {x}");
    assert_eq!(x["state"], "streaming");
    let samples = logs_matching("malformed line");
    assert!(
        samples.iter().any(|l| l.starts_with("WARN") && l.contains("1021159080151404544")),
        "{samples:?}"
    );
    let kept = stop(app).await;
    assert_eq!(kept.edges, want_edges);
    assert_eq!(kept.users, want_users);
    assert_no_token_in_logs();
}

#[tokio::test]
async fn recorded_search_pages_backfill_from_the_persisted_cursor_following_next_token() {
    let Some(fx) = fixtures("recorded_search_pages_backfill_from_the_persisted_cursor_following_next_token")
    else {
        return;
    };
    let page = |name: &str| std::fs::read(fx.join("x-v2").join(name)).expect("fixture");
    let (noflat, brexit, kpop) = (page("noflat.jsonl"), page("brexit.jsonl"), page("kpop.jsonl"));
    const SINCE: &str = "1377650529766154240";
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        STREAM => Reply::Stream(vec![Step::Hold]),
        SEARCH => match (r.param("since_id"), r.param("next_token")) {
            (Some(SINCE), None) => Reply::json(200, mock_x::rechained(&noflat, Some("page-2"))),
            (Some(SINCE), Some("page-2")) => Reply::json(200, mock_x::rechained(&brexit, Some("page-3"))),
            (Some(SINCE), Some("page-3")) => Reply::json(200, mock_x::rechained(&kpop, None)),
            // After the restart: the search index still has the newest page.
            (Some(_), None) => Reply::json(200, mock_x::rechained(&kpop, None)),
            _ => Reply::json(400, json!({ "title": "Invalid Request" })),
        },
        _ => Reply::json(404, json!({})),
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    {
        // An earlier run stopped with this cursor.
        let (store, writer, _) = store::open(&StoreConfig::new(tmp.path())).unwrap();
        let set = Mutation::SetCursor { name: x::CURSOR.into(), value: SINCE.as_bytes().to_vec() };
        store.submit(vec![set]).await.unwrap();
        drop(store);
        tokio::task::spawn_blocking(move || writer.join()).await.unwrap().expect("the store stops cleanly");
    }
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let (want_users, want_edges, want_posts) = expected(&["noflat", "brexit", "kpop"]);
    let x = x_status(&app, "three pages", |x| x["posts"] == want_posts).await;
    let search = mock.requests_to(SEARCH);
    assert_eq!(search.len(), 3);
    let tokens: Vec<Option<&str>> = search.iter().map(|r| r.param("next_token")).collect();
    assert_eq!(tokens, [None, Some("page-2"), Some("page-3")]);
    for r in &search {
        assert_eq!(r.param("since_id"), Some(SINCE), "every page from the same since_id");
        assert_eq!(r.param("query"), Some("#rustlang"));
        assert_eq!(r.param("max_results"), Some("100"));
        assert_eq!(r.param("expansions"), mock.requests_to(STREAM)[0].param("expansions"));
        assert_eq!(r.param("tweet.fields"), mock.requests_to(STREAM)[0].param("tweet.fields"));
        assert_eq!(r.param("user.fields"), mock.requests_to(STREAM)[0].param("user.fields"));
    }
    assert_eq!(mock.requests()[1].route(), STREAM, "the stream is connected before the gap is searched");
    assert_eq!(n(&x, "skipped"), 0);
    let kept = stop(app).await;
    assert_eq!(kept.edges, want_edges);
    assert_eq!(kept.users, want_users);
    assert_eq!(kept.cursor.as_deref(), Some("1440717170493689866"), "the newest id of all pages");

    // A restart backfills from the new cursor; a page seen before changes nothing. (`stop` returned
    // once the directory could be opened again, so the restart finds it free.)
    let app = start(tmp.path(), &mock, &["#rustlang"]).await;
    let x = x_status(&app, "the page again", |x| x["duplicates"] == 100).await;
    assert_eq!(n(&x, "posts"), 0);
    assert_eq!(mock.requests_to(SEARCH)[3].param("since_id"), Some("1440717170493689866"));
    assert_eq!(stop(app).await.edges, want_edges);
    assert_no_token_in_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_no_post_and_counts_none_twice() {
    let Some(fx) = fixtures("kill_9_mid_stream_then_restart_loses_no_post_and_counts_none_twice") else {
        return;
    };
    capture_logs();
    // The 8 tweet lines (7 distinct tweets: the capture repeats its last one).
    let lines: Vec<Vec<u8>> = fixture_lines(&fx, "streaming_output.jsonl")
        .into_iter()
        .filter(|l| !String::from_utf8_lossy(l).contains("operational-disconnect"))
        .collect();
    assert_eq!(lines.len(), 8);
    let id_of =
        |l: &[u8]| serde_json::from_slice::<Value>(l).unwrap()["data"]["id"].as_str().unwrap().to_string();
    let ids: Vec<String> = lines.iter().map(|l| id_of(l)).collect();
    // Before the kill: 4 tweets and half of the fifth, then the connection stays open.
    let mut before = mock_x::framed(&lines[..4], 1);
    before.extend_from_slice(&lines[4][..lines[4].len() / 2]);
    // After the restart: the stream replays from the third tweet (overlapping what was kept).
    let after = mock_x::framed(&lines[2..], 2);
    let all = Arc::new(lines.clone());
    let mock = MockX::start(move |r| match r.route().as_str() {
        RULES => Reply::json(200, rules_with_rustlang()),
        STREAM if r.nth == 0 => Reply::Stream(vec![Step::Send(before.clone()), Step::Hold]),
        STREAM => Reply::Stream(vec![Step::Send(after.clone()), Step::Hold]),
        SEARCH => {
            // The search index holds every tweet newer than since_id (once each).
            let since: u128 = r.param("since_id").and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut seen = BTreeSet::new();
            let newer: Vec<Vec<u8>> = all
                .iter()
                .filter(|l| {
                    let id = id_of(l);
                    id.parse::<u128>().unwrap() > since && seen.insert(id)
                })
                .cloned()
                .collect();
            Reply::json(200, mock_x::page_of_stream_lines(&newer))
        }
        _ => Reply::json(404, json!({})),
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let url = mock.url.clone();
    let spawn = move || {
        let (dir, url) = (dir.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let args = [
                "--sources",
                "x",
                "--track",
                "#rustlang",
                "--x-api-url",
                &url,
                "--x-stall-timeout-ms",
                "20000",
            ];
            process::start(&dir, &args, &[("TAGFLOW_X_BEARER_TOKEN", TOKEN), ("RUST_LOG", "debug")])
        })
    };
    let client = reqwest::Client::new();

    let server = spawn().await.unwrap();
    let x1 = process_status(&client, &server, "4 posts", |x| x["posts"] == 4).await;
    assert_eq!(n(&x1, "duplicates"), 0);
    let log1 = server.log.lock().unwrap().join("\n");
    tokio::task::spawn_blocking(move || server.kill9()).await.unwrap();
    {
        // What survived the kill: the 4 posts and, committed with them, the cursor of the 4th.
        let (store, writer, _) = store::open(&StoreConfig::new(tmp.path())).unwrap();
        assert_eq!(cursor(&store).as_deref(), Some(ids[3].as_str()));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(store.has_post(tagflow::graph::Platform::X, id).unwrap(), i < 4, "post {id}");
        }
        drop(store);
        tokio::task::spawn_blocking(move || writer.join()).await.unwrap().expect("the store stops cleanly");
    }

    let server = spawn().await.unwrap();
    // Backfill brings tweets 5..7; the replayed stream repeats 3..8, all seen by then.
    let x2 = process_status(&client, &server, "the rest", |x| x["posts"] == 3 && x["duplicates"] == 6).await;
    let search = mock.requests_to(SEARCH);
    assert_eq!(search.len(), 1);
    assert_eq!(search[0].param("since_id"), Some(ids[3].as_str()), "backfill from the persisted cursor");
    let (want_users, want_edges, want_posts) = expected(&["streaming_output"]);
    assert_eq!(n(&x1, "posts") + n(&x2, "posts"), want_posts, "every post counted exactly once");
    let log2 = server.log.lock().unwrap().join("\n");
    let (exit, _) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10))).await.unwrap();
    assert!(exit.success(), "SIGTERM stops it cleanly");
    let kept = stored(tmp.path()).await;
    assert_eq!(kept.edges, want_edges);
    assert_eq!(kept.users, want_users);
    assert_eq!(kept.cursor.as_deref(), Some("1377650529766154240"));
    for (what, log) in [("the first run's log", &log1), ("the second run's log", &log2)] {
        assert!(log.contains("source x:"), "{what} was captured");
        assert_token_absent(what, log);
    }
}
