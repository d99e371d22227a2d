//! The Mastodon hashtag source against a mock instance on 127.0.0.1 (tests/common/mock_mastodon.rs):
//! the stream, the backfill of the tag timeline, edits, deletes translated from instance-local ids,
//! boosts from `reblogged_by`, rate limits, a refused token, stalls, and a `kill -9` of the real
//! binary mid-stream, each checked against the exact graph expected. No test reaches the internet.
//!
//! Two kinds of payload are replayed:
//!
//! - hand-written statuses in the real `Status` shape, always run; their expected graphs are worked
//!   out by hand beside each test;
//! - the recorded ones of `shared/fixtures/mastodon` (SSE bodies as recorded; cassette responses with
//!   their real status, headers and bodies, `http://localhost:3000` pointed at the mock), checked
//!   against the independent reference in `tests/expected/social/` (tests/reference/social_expected.py)
//!   where it covers the case. These print SKIPPED when `../shared` is absent.

mod common;

use common::app::{spawn_app_with, TestApp};
use common::fixtures::fixtures;
use common::mock_mastodon::{awkward_chunks, sse_event, with_heartbeats, After, MockMastodon, Reply};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tagflow::config::Config;
use tagflow::ingest::source::mastodon::MastodonSettings;
use tagflow::ingest::source::mastodon::{self, Options};
use tagflow::ingest::status::Registry;
use tagflow::ingest::SourceKind;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "secret-test-token";
const BEARER: &str = "Bearer secret-test-token";
const WAIT: Duration = Duration::from_secs(20);
const HEARTBEAT: Duration = Duration::from_millis(50);

// ---- the service, its status and its graph ----

fn config(dir: &Path, mock: &MockMastodon, track: &[&str]) -> Config {
    let mut config = Config::for_tests(dir);
    config.sources.kinds = vec![SourceKind::Mastodon];
    config.sources.mastodon =
        MastodonSettings { url: Some(mock.url()), streaming_url: None, token: Some(TOKEN.into()) };
    config.sources.track = track.iter().map(|t| t.to_string()).collect();
    config
}

/// The whole `/status` body.
async fn status(client: &reqwest::Client, base: &str) -> Value {
    let resp = client.get(format!("{base}/status")).send().await.expect("GET /status");
    resp.json().await.expect("status is JSON")
}

/// The `mastodon` entry of `/status`.
fn source(status: &Value) -> Value {
    status["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "mastodon"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Polls `/status` until `done` holds for the mastodon source; panics with the last status after
/// [`WAIT`].
async fn wait_for(client: &reqwest::Client, base: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = source(&status(client, base).await);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; mastodon source: {s:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_app(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(&app.client, &app.addr, what, done).await
}

/// Waits (bounded) until no handle of a stopped in-process server holds the data directory any more:
/// its HTTP workers may drop their copy of the store a moment after `stop` returns.
async fn wait_unlocked(dir: &Path) {
    let deadline = Instant::now() + WAIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let d = dir.to_path_buf();
        let opened =
            tokio::task::spawn_blocking(move || tagflow::store::open(&tagflow::store::StoreConfig::new(d)))
                .await
                .expect("open task");
        match opened {
            Ok((handle, writer, _)) => {
                handle.close().await;
                drop(handle);
                tokio::task::spawn_blocking(move || writer.join())
                    .await
                    .expect("writer")
                    .expect("the store stops cleanly");
                if attempts > 1 {
                    eprintln!("the data directory was still locked {} times after stop", attempts - 1);
                }
                return;
            }
            Err(tagflow::store::StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopening {}: {e}", dir.display()),
        }
    }
}

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Users (key -> handle, name) and edges ((from, to, kind) -> count), as the API shows them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Graph {
    users: BTreeMap<String, (Option<String>, Option<String>)>,
    edges: BTreeMap<(String, String, String), u64>,
}

async fn graph(client: &reqwest::Client, base: &str) -> Graph {
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { client.get(url).send().await.expect("GET").json::<Value>().await.expect("JSON") }
    };
    let users = get("/vertices?limit=1000").await;
    let edges = get("/aristas?limit=1000").await;
    let mut g = Graph::default();
    for u in users["vertices"].as_array().expect("vertices") {
        let text = |v: &Value| v.as_str().map(str::to_string);
        g.users.insert(text(&u["id"]).expect("id"), (text(&u["handle"]), text(&u["name"])));
    }
    for e in edges["edges"].as_array().expect("edges") {
        for (kind, n) in e["kinds"].as_object().expect("kinds") {
            let key = (
                e["from"].as_str().expect("from").into(),
                e["to"].as_str().expect("to").into(),
                kind.clone(),
            );
            g.edges.insert(key, n.as_u64().expect("count"));
        }
    }
    g
}

async fn app_graph(app: &TestApp) -> Graph {
    graph(&app.client, &app.addr).await
}

fn user(handle: &str, name: Option<&str>) -> (String, (Option<String>, Option<String>)) {
    (format!("mastodon:{handle}"), (Some(handle.to_string()), name.map(str::to_string)))
}

fn edge(from: &str, to: &str, kind: &str, n: u64) -> ((String, String, String), u64) {
    ((format!("mastodon:{from}"), format!("mastodon:{to}"), kind.to_string()), n)
}

/// Every request carried the token, as a bearer header and nowhere else.
#[track_caller]
fn assert_token_sent_only_as_bearer(mock: &MockMastodon) {
    for r in mock.requests() {
        assert_eq!(r.authorization.as_deref(), Some(BEARER), "{} {}", r.method, r.target);
        assert!(!r.target.contains(TOKEN), "the token is never in a URL: {}", r.target);
    }
}

#[track_caller]
fn assert_no_token(what: &str, text: &str) {
    assert!(!text.contains(TOKEN), "{what} shows the token: {text}");
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---- hand-written payloads in the real shape ----

fn account(id: &str, acct: &str, url: &str, name: &str) -> Value {
    let username = acct.split('@').next().unwrap_or(acct);
    json!({"id": id, "username": username, "acct": acct, "display_name": name, "url": url,
           "uri": url.replace("/@", "/users/"), "locked": false, "bot": false, "emojis": [], "fields": []})
}

/// A status mention: Mastodon's `Mention` has no display name.
fn mention(account: &Value) -> Value {
    json!({"id": account["id"], "username": account["username"], "acct": account["acct"], "url": account["url"]})
}

fn a_status(id: u64, author: &Value, mentions: &[&Value], reply_to: Option<&Value>, reblogs: u64) -> Value {
    let user = author["username"].as_str().expect("username");
    json!({
        "id": id.to_string(),
        "uri": format!("https://example.social/users/{user}/statuses/{id}"),
        "url": format!("https://web.example.social/@{user}/{id}"),
        "created_at": "2026-11-20T10:00:00.000Z",
        "visibility": "public", "language": "en", "content": "<p>#rustlang</p>",
        "in_reply_to_id": reply_to.map(|_| "100"),
        "in_reply_to_account_id": reply_to.map(|a| a["id"].clone()),
        "reblog": null, "reblogs_count": reblogs, "favourites_count": 0, "replies_count": 0,
        "account": author,
        "mentions": mentions.iter().map(|m| mention(m)).collect::<Vec<_>>(),
        "tags": [{"name": "rustlang", "url": "https://web.example.social/tags/rustlang"}],
        "emojis": [], "media_attachments": [], "card": null, "poll": null
    })
}

fn compact(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json serialises")
}

fn instance_v2(domain: &str, streaming: &str) -> Value {
    json!({"domain": domain, "title": "Example", "version": "4.3.0",
           "configuration": {"urls": {"streaming": streaming, "status": null}}})
}

/// `ws://127.0.0.1:<port>`: how `/api/v2/instance` names a streaming host.
fn ws_url(mock: &MockMastodon) -> String {
    mock.url().replacen("http://", "ws://", 1)
}

fn empty_page() -> Reply {
    Reply::json(200, &json!([]))
}

/// A stream that only greets and keeps the connection alive.
fn quiet_stream() -> Reply {
    Reply::sse(vec![b":)\n".to_vec()], After::Heartbeats(HEARTBEAT))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hand_written_backfill_stream_edit_delete_and_boosts_build_the_exact_graph() {
    let mock = MockMastodon::start().await;
    let base = mock.url();
    // Local accounts (acct without a domain) live on example.social, whose web pages are on
    // web.example.social: only the instance's `domain` qualifies them right.
    let alice = account("1", "alice", "https://web.example.social/@alice", "Alice");
    let bob = account("2", "bob", "https://web.example.social/@bob", "Bob");
    let carol = account("3", "carol@other.example", "https://other.example/@carol", "Carol");
    let dave = account("4", "dave@remote.example", "https://remote.example/@dave", "Dave");
    let erin = account("5", "erin@else.example", "https://else.example/@erin", "");

    let p1 = a_status(101, &carol, &[], None, 0);
    let p2 = a_status(102, &alice, &[&carol], Some(&carol), 0);
    let p3 = a_status(103, &bob, &[&alice], None, 2);
    let p4 = a_status(104, &carol, &[&bob], None, 0);
    let p2_edited = a_status(102, &alice, &[&erin], None, 0);

    mock.route(
        "GET",
        "/api/v2/instance",
        vec![Reply::json(200, &instance_v2("example.social", &ws_url(&mock)))],
    );
    let tag = "/api/v1/timelines/tag/rustlang";
    let link = |next: u64, prev: u64| {
        format!("<{base}{tag}?limit=40&max_id={next}>; rel=\"next\", <{base}{tag}?limit=40&min_id={prev}>; rel=\"prev\"")
    };
    mock.route(
        "GET",
        &format!("{tag}?limit=40&max_id=102"),
        vec![Reply::json(200, &json!([p1])).with_header("link", &link(101, 101))],
    );
    mock.route("GET", &format!("{tag}?limit=40&max_id=101"), vec![empty_page()]);
    mock.route("GET", tag, vec![Reply::json(200, &json!([p3, p2])).with_header("link", &link(102, 103))]);
    mock.route("GET", "/api/v1/statuses/103/reblogged_by", vec![Reply::json(200, &json!([dave, bob]))]);

    let mut body = b":)\n:thump\n".to_vec();
    body.extend(sse_event("update", &compact(&p4)));
    body.extend(b"event: update\ndata: {\"id\":\"105\",\"uri\":\n\n"); // malformed: skipped
    body.extend(sse_event("notification", br#"{"id":"9","type":"mention"}"#)); // not ours: ignored
    body.extend(sse_event("status.update", &compact(&p2_edited)));
    body.extend(b":thump\n");
    body.extend(sse_event("delete", b"104"));
    body.extend(sse_event("delete", b"999")); // never seen: nothing to retract
    body.extend(b"event: update\ndata: {\"id\":\"106\""); // a partial last line, never completed
    mock.route(
        "GET",
        "/api/v1/streaming/hashtag",
        vec![Reply::sse(awkward_chunks(&body), After::Heartbeats(HEARTBEAT))],
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(config(tmp.path(), &mock, &["#RustLang"])).await;
    let s = wait_app(&app, "the delete and the boost", |s| {
        s["state"] == "streaming" && s["deleted"] == 1 && s["posts"] == 6
    })
    .await;

    // By hand: P1 has no interaction; P3 is bob -> alice (mention); P2 was alice -> carol (reply and
    // mention), its edit replaces them with alice -> erin (mention); P4 (carol -> bob) is deleted; of
    // P3's boosters, dave is a repost of bob and bob's own boost is a self-loop. carol stays a user.
    let want = Graph {
        users: [
            user("alice@example.social", Some("Alice")),
            user("bob@example.social", Some("Bob")),
            user("carol@other.example", Some("Carol")),
            user("dave@remote.example", Some("Dave")),
            user("erin@else.example", None),
        ]
        .into(),
        edges: [
            edge("alice@example.social", "erin@else.example", "mention", 1),
            edge("bob@example.social", "alice@example.social", "mention", 1),
            edge("dave@remote.example", "bob@example.social", "repost", 1),
        ]
        .into(),
    };
    assert_eq!(app_graph(&app).await, want);
    // Posts: P1-P4, the edit (applied again) and dave's boost (a post of its own).
    assert_eq!(
        (s["skipped"].as_u64(), s["duplicates"].as_u64(), s["reconnects"].as_u64()),
        (Some(1), Some(0), Some(0))
    );
    assert_eq!(
        sorted(mock.targets()),
        sorted(vec![
            "GET /api/v2/instance".into(),
            "GET /api/v1/streaming/hashtag?tag=rustlang".into(),
            format!("GET {tag}?limit=40"),
            format!("GET {tag}?limit=40&max_id=102"),
            format!("GET {tag}?limit=40&max_id=101"),
            "GET /api/v1/statuses/103/reblogged_by?limit=80".into(),
        ])
    );
    assert_token_sent_only_as_bearer(&mock);
    assert_no_token("/status", &status(&app.client, &app.addr).await.to_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_with_a_reset_shows_backing_off_until_the_reset() {
    let mock = MockMastodon::start().await;
    mock.route("GET", "/api/v2/instance", vec![Reply::json(404, &json!({"error": "Record not found"}))]);
    mock.route("GET", "/api/v1/streaming/hashtag", vec![quiet_stream()]);
    let now = chrono::Utc::now();
    let reset = now + chrono::Duration::seconds(600);
    let limited = Reply::json(429, &json!({"error": "Too many requests"}))
        .with_header("x-ratelimit-limit", "300")
        .with_header("x-ratelimit-remaining", "0")
        .with_header("x-ratelimit-reset", &reset.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .with_header("date", &now.to_rfc2822());
    mock.route("GET", "/api/v1/timelines/tag/rustlang", vec![limited]);

    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(config(tmp.path(), &mock, &["rustlang"])).await;
    let s = wait_app(&app, "backing off", |s| s["state"] == "backing_off").await;
    let at = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("rfc 3339").to_utc()
    };
    let until = at(&s["until"]);
    assert!((until - reset).num_seconds().abs() <= 5, "waits until the announced reset: {s}");
    assert!((at(&s["rate_limit_reset"]) - reset).num_seconds().abs() <= 5, "{s}");
    assert!(s["reason"].as_str().is_some_and(|r| r.contains("429")), "{s}");
    assert_eq!(
        mock.targets(),
        [
            "GET /api/v2/instance",
            "GET /api/v1/streaming/hashtag?tag=rustlang",
            "GET /api/v1/timelines/tag/rustlang?limit=40"
        ],
        "nothing is retried before the reset"
    );
    assert_no_token("/status", &status(&app.client, &app.addr).await.to_string());
    // A stop during a 10-minute wait is immediate.
    let stopping = Instant::now();
    app.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_token_fails_the_source_with_a_clear_reason() {
    let mock = MockMastodon::start().await;
    mock.route("GET", "/api/v2/instance", vec![Reply::json(404, &json!({"error": "Record not found"}))]);
    mock.route(
        "GET",
        "/api/v1/streaming/hashtag",
        vec![Reply::json(401, &json!({"error": "The access token is invalid"}))],
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(config(tmp.path(), &mock, &["rustlang"])).await;
    let s = wait_app(&app, "failed", |s| s["state"] == "failed").await;
    let reason = s["reason"].as_str().expect("a reason");
    assert!(reason.contains("401") && reason.contains("TAGFLOW_MASTODON_TOKEN"), "{reason}");
    assert_no_token("/status", &s.to_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.targets(),
        ["GET /api/v2/instance", "GET /api/v1/streaming/hashtag?tag=rustlang"],
        "no retry, no backfill with a refused token"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_over_long_line_and_a_stall_reconnect_and_are_counted() {
    let mock = MockMastodon::start().await;
    mock.route("GET", "/api/v2/instance", vec![Reply::json(404, &json!({"error": "Record not found"}))]);
    mock.route("GET", "/api/v1/timelines/tag/rustlang", vec![empty_page()]);
    let alice = account("1", "alice@example.social", "https://example.social/@alice", "Alice");
    let bob = account("2", "bob@example.social", "https://example.social/@bob", "Bob");
    let mut long = b"event: update\ndata: ".to_vec();
    long.extend(vec![b'a'; 5_000]);
    mock.route(
        "GET",
        "/api/v1/streaming/hashtag",
        vec![
            // 1: a line over the 4 KiB cap given below ends the connection.
            Reply::sse(vec![b":)\n".to_vec(), long], After::Silence),
            // 2: greets, then nothing at all: a stall after the 300 ms idle timeout.
            Reply::sse(vec![b":)\n".to_vec()], After::Silence),
            // 3: healthy.
            Reply::sse(
                vec![sse_event("update", &compact(&a_status(7, &alice, &[&bob], None, 0)))],
                After::Heartbeats(HEARTBEAT),
            ),
        ],
    );

    // The library entry point, with production settings except the timeouts and the cap.
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(Config::for_tests(tmp.path())).await;
    let settings = MastodonSettings { url: Some(mock.url()), streaming_url: None, token: Some(TOKEN.into()) };
    let mut options = Options::from_config(&settings, &["#rustlang".into()]).expect("options");
    options.idle_timeout = Duration::from_millis(300);
    options.max_event_bytes = 4096;
    let registry = Registry::default();
    let cancel = CancellationToken::new();
    let tasks =
        mastodon::start(options, &app.store, registry.register(mastodon::NAME), &cancel).expect("starts");
    let report = || serde_json::to_value(&registry.reports()[0]).expect("report serialises");

    let mut saw_stalled = false;
    let deadline = Instant::now() + WAIT;
    loop {
        let r = report();
        saw_stalled |= r["state"] == "stalled";
        if r["state"] == "streaming" && r["posts"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {r}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = report();
    assert!(saw_stalled, "the stall was shown while waiting to reconnect");
    assert_eq!((r["reconnects"].as_u64(), r["skipped"].as_u64()), (Some(2), Some(1)), "{r}");
    assert!(r["last_error"].as_str().is_some_and(|e| e.contains("stalled")), "{r}");
    assert_eq!(
        app_graph(&app).await.edges,
        [edge("alice@example.social", "bob@example.social", "mention", 1)].into()
    );

    cancel.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(5), t).await.expect("stops promptly").expect("task");
    }
    assert_eq!(report()["state"], "stopped");
    app.stop().await;
}

// ---- recorded payloads ----

/// The mastodon fixtures folder, or `None` (SKIPPED printed).
fn recorded(test: &str) -> Option<PathBuf> {
    fixtures(test).map(|d| d.join("mastodon"))
}

fn load(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join("api").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The graph of `tests/expected/social/<name>.json` (users, and edges over distinct posts).
fn expected(name: &str) -> Graph {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/social").join(format!("{name}.json"));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("expected file")).expect("JSON");
    let mut g = Graph::default();
    for (key, u) in v["users"].as_object().expect("users") {
        let text = |v: &Value| v.as_str().map(str::to_string);
        g.users.insert(key.clone(), (text(&u["handle"]), text(&u["name"])));
    }
    for e in v["edges"].as_array().expect("edges") {
        let s = |i: usize| e[i].as_str().expect("text").to_string();
        g.edges.insert((s(0), s(1), s(2)), e[3].as_u64().expect("count"));
    }
    g
}

/// Several expectations together (their users and posts do not overlap in kind: edges add up).
fn union(names: &[&str]) -> Graph {
    let mut all = Graph::default();
    for name in names {
        let g = expected(name);
        for (k, u) in g.users {
            let prior = all.users.insert(k.clone(), u.clone());
            assert!(prior.is_none_or(|p| p == u), "{k}: expectations disagree");
        }
        for (k, n) in g.edges {
            *all.edges.entry(k).or_default() += n;
        }
    }
    all
}

/// The recorded `/api/v2/instance` of the Mastodon 4.6 test server, its streaming host pointed at the
/// mock (the one field changed; `domain` stays `localhost:3000`, as the recorded accounts have it).
fn recorded_instance(dir: &Path, mock: &MockMastodon) -> Reply {
    let mut doc = load(dir, "cassettes__test_hashtag_tl__1.json");
    assert_eq!(
        doc["body"]["configuration"]["urls"]["streaming"], "ws://localhost:4000",
        "the recorded value"
    );
    doc["body"]["configuration"]["urls"]["streaming"] = json!(ws_url(mock));
    Reply::recorded(&doc, &mock.url())
}

/// The `data` of each `update` event of a recorded SSE body, in order (a plain split on blank lines,
/// independent of the source's parser).
fn recorded_updates(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut lines = block.lines().filter(|l| !l.starts_with(':'));
            (lines.next()? == "event: update")
                .then(|| lines.next()?.strip_prefix("data: ").map(str::to_string))?
        })
        .map(|d| serde_json::from_str(&d).expect("an update is a status"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorded_streams_in_awkward_chunks_build_the_reference_graph() {
    let Some(dir) = recorded("recorded_streams_in_awkward_chunks_build_the_reference_graph") else { return };
    let docs = std::fs::read(dir.join("docs_streaming_examples.sse")).expect("docs body");
    let user_direct =
        std::fs::read(dir.join("cassettes__test_stream_user_direct__12.sse")).expect("recorded body");
    assert!(user_direct.ends_with(b"\n:"), "the recorded body ends in a partial line");
    let mock = MockMastodon::start().await;
    // No /api/v2/instance: accounts are qualified by their own url hosts, as the reference does for
    // these bodies (the docs examples come from several servers).
    mock.route("GET", "/api/v2/instance", vec![Reply::json(404, &json!({"error": "Record not found"}))]);
    mock.route("GET", "/api/v1/timelines/tag/rustlang", vec![empty_page()]);
    mock.route(
        "GET",
        "/api/v1/streaming/hashtag",
        vec![
            // The docs examples with heartbeats between events, then the server closes: reconnect at once.
            Reply::sse(awkward_chunks(&with_heartbeats(&docs)), After::Close),
            // The recorded Mastodon 4.6 body as sent (greeting, partial last line), then kept alive.
            Reply::sse(awkward_chunks(&user_direct), After::Heartbeats(HEARTBEAT)),
        ],
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(config(tmp.path(), &mock, &["rustlang"])).await;
    // Deletes translated to uris: two trwnh posts of the docs (each deleted twice, and one re-sent
    // after its delete), one of the recorded body; the delete of 107214471804101576 names a status
    // never sent.
    let s = wait_app(&app, "both bodies", |s| s["state"] == "streaming" && s["deleted"] == 3).await;
    let want =
        union(&["mastodon__docs_streaming_examples", "mastodon__cassettes__test_stream_user_direct__12"]);
    assert_eq!(app_graph(&app).await, want);
    assert_eq!((s["skipped"].as_u64(), s["reconnects"].as_u64()), (Some(0), Some(1)), "{s}");
    assert_eq!(
        mock.targets(),
        [
            "GET /api/v2/instance",
            "GET /api/v1/streaming/hashtag?tag=rustlang",
            "GET /api/v1/timelines/tag/rustlang?limit=40",
            "GET /api/v1/streaming/hashtag?tag=rustlang",
            "GET /api/v1/timelines/tag/rustlang?limit=40",
        ]
    );
    assert_token_sent_only_as_bearer(&mock);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorded_pages_are_backfilled_and_a_restart_stops_at_the_newest_post_seen() {
    let Some(dir) = recorded("recorded_pages_are_backfilled_and_a_restart_stops_at_the_newest_post_seen")
    else {
        return;
    };
    let mock = MockMastodon::start().await;
    let base = mock.url();
    let statuses = "/api/v1/accounts/117020565966271181/statuses";
    mock.route("GET", "/api/v2/instance", vec![recorded_instance(&dir, &mock)]);
    // The recorded pages of test_fetch_next_previous (5 statuses each, real Link headers) stand for
    // the tag timeline: the source follows whatever `next` the server gives.
    let page = |n: u32| {
        Reply::recorded(&load(&dir, &format!("cassettes__test_fetch_next_previous__{n}.json")), &base)
    };
    mock.route("GET", &format!("{statuses}?limit=5&max_id=117020580489281910"), vec![page(12)]);
    mock.route("GET", &format!("{statuses}?limit=5&max_id=117020580452511285"), vec![empty_page()]);
    mock.route("GET", "/api/v1/timelines/tag/rustlang", vec![page(11)]);
    mock.route("GET", "/api/v1/streaming/hashtag", vec![quiet_stream()]);

    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(config(tmp.path(), &mock, &["rustlang"])).await;
    let s = wait_app(&app, "the backfill", |s| s["state"] == "streaming").await;
    // The reference has the 10 distinct statuses of these pages and their one author.
    let reference = expected("mastodon-api__cassettes__test_fetch_next_previous");
    assert_eq!(s["posts"], 10);
    assert_eq!(app_graph(&app).await, reference);
    assert_eq!(
        mock.targets(),
        [
            "GET /api/v2/instance".to_string(),
            "GET /api/v1/streaming/hashtag?tag=rustlang".into(),
            "GET /api/v1/timelines/tag/rustlang?limit=40".into(),
            format!("GET {statuses}?limit=5&max_id=117020580489281910"),
            format!("GET {statuses}?limit=5&max_id=117020580452511285"),
        ],
        "the stream on the discovered streaming host, then every page back to the empty one"
    );
    assert_token_sent_only_as_bearer(&mock);
    app.stop().await;

    mock.clear_requests();
    wait_unlocked(tmp.path()).await;
    let app = spawn_app_with(config(tmp.path(), &mock, &["rustlang"])).await;
    let s = wait_app(&app, "the second backfill", |s| s["state"] == "streaming").await;
    assert_eq!((s["posts"].as_u64(), s["duplicates"].as_u64()), (Some(0), Some(0)), "{s}");
    assert_eq!(
        mock.targets(),
        [
            "GET /api/v2/instance",
            "GET /api/v1/streaming/hashtag?tag=rustlang",
            "GET /api/v1/timelines/tag/rustlang?limit=40",
        ],
        "the first page starts with the newest post seen: the walk stops there"
    );
    assert_eq!(app_graph(&app).await, reference);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorded_boosts_count_once_however_often_fetched_and_go_with_their_post() {
    let Some(dir) = recorded("recorded_boosts_count_once_however_often_fetched_and_go_with_their_post")
    else {
        return;
    };
    let mock = MockMastodon::start().await;
    let base = mock.url();
    // The two boosted statuses as the reblog responses carry them (reblogs_count 1): 117020585505579935
    // by mastodonpy_test_2 and 117020585724931720 by mastodonpy_test, newest first.
    let by_2 = load(&dir, "cassettes__test_status_reblogged_by__1.json")["body"]["reblog"].clone();
    let by_1 = load(&dir, "cassettes__test_status_reblogged_by__4.json")["body"]["reblog"].clone();
    assert_eq!((by_2["reblogs_count"].as_u64(), by_1["reblogs_count"].as_u64()), (Some(1), Some(1)));
    mock.route("GET", "/api/v2/instance", vec![recorded_instance(&dir, &mock)]);
    mock.route("GET", "/api/v1/timelines/tag/rustlang", vec![Reply::json(200, &json!([by_1, by_2]))]);
    // The recorded boosts are all self-boosts (no edge: a self-loop). The recorded booster list of
    // 117020585505579935 ([mastodonpy_test_2]) also answers for mastodonpy_test's status, which gives
    // one real cross-user boost: mastodonpy_test_2 -> mastodonpy_test.
    let boosters = Reply::recorded(&load(&dir, "cassettes__test_status_reblogged_by__2.json"), &base);
    mock.route("GET", "/api/v1/statuses/117020585505579935/reblogged_by", vec![boosters.clone()]);
    mock.route("GET", "/api/v1/statuses/117020585724931720/reblogged_by", vec![boosters]);
    let gate = Arc::new(Notify::new());
    mock.route(
        "GET",
        "/api/v1/streaming/hashtag",
        vec![
            quiet_stream(),
            // After the restart: mastodonpy_test's status again (its boosters are fetched again), then,
            // once the test opens the gate, its delete.
            Reply::sse(vec![sse_event("update", &compact(&by_1))], After::Heartbeats(HEARTBEAT))
                .then_gated(&gate, vec![sse_event("delete", b"117020585724931720")]),
        ],
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with(config(tmp.path(), &mock, &["rustlang"])).await;
    let boosted = [edge("mastodonpy_test_2@localhost:3000", "mastodonpy_test@localhost:3000", "repost", 1)];
    let reference = expected("mastodon-api__cassettes__test_status_reblogged_by");
    wait_until("the boost", || mock.targets().iter().filter(|t| t.contains("reblogged_by")).count() == 2)
        .await;
    let s = wait_app(&app, "the boost committed", |s| s["posts"] == 3).await;
    let g = app_graph(&app).await;
    assert_eq!((g.users, g.edges), (reference.users.clone(), boosted.clone().into()), "{s}");
    app.stop().await;

    mock.clear_requests();
    wait_unlocked(tmp.path()).await;
    let app = spawn_app_with(config(tmp.path(), &mock, &["rustlang"])).await;
    // The post (a duplicate) and its booster's post (a duplicate) again: counted nowhere.
    let s = wait_app(&app, "the boost fetched again", |s| s["duplicates"] == 2).await;
    assert_eq!(s["posts"], 0);
    assert_eq!(app_graph(&app).await.edges, boosted.into());
    gate.notify_one();
    // The delete's local id is translated through the alias persisted before the restart, and the
    // boost of the deleted post goes with it.
    wait_app(&app, "the delete", |s| s["deleted"] == 2).await;
    let g = app_graph(&app).await;
    assert_eq!((g.users, g.edges), (reference.users, BTreeMap::new()));
    assert_eq!(
        sorted(mock.targets()),
        sorted(vec![
            "GET /api/v2/instance".into(),
            "GET /api/v1/streaming/hashtag?tag=rustlang".into(),
            "GET /api/v1/timelines/tag/rustlang?limit=40".into(),
            "GET /api/v1/statuses/117020585724931720/reblogged_by?limit=80".into(),
        ]),
        "after the restart the backfill stops at once and only the re-sent post is asked again"
    );
    assert_token_sent_only_as_bearer(&mock);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_loses_no_post_and_counts_none_twice() {
    let Some(dir) = recorded("kill_9_mid_stream_loses_no_post_and_counts_none_twice") else { return };
    let body = |name: &str| load(&dir, name)["body"].clone();
    // Six recorded statuses of the Mastodon 4.6 test server, in id order: A admin mentions
    // mastodonpy_test; B a post of mastodonpy_test_2; C admin's reply to it (reply and mention);
    // D a #hoot post of mastodonpy_test_2; E and F, mastodonpy_test's posts of the recorded user
    // stream (F mentions mastodonpy_test_2), whose recorded body also edits and deletes E.
    let a = body("cassettes__test_notifications_mentions_only__0.json");
    let b = body("cassettes__test_status_reply__0.json");
    let c = body("cassettes__test_status_reply__2.json");
    let d = body("cassettes__test_hashtag_tl__0.json");
    let user_direct =
        std::fs::read(dir.join("cassettes__test_stream_user_direct__12.sse")).expect("recorded body");
    let [e, f]: [Value; 2] =
        recorded_updates(&String::from_utf8_lossy(&user_direct)).try_into().expect("two updates");
    let id = |s: &Value| s["id"].as_str().expect("id").to_string();
    let ids: Vec<String> = [&a, &b, &c, &d, &e, &f].iter().map(|s| id(s)).collect();
    assert!(ids.windows(2).all(|w| (w[0].len(), &w[0]) < (w[1].len(), &w[1])), "in id order: {ids:?}");

    let mock = MockMastodon::start().await;
    let base = mock.url();
    let tag = "/api/v1/timelines/tag/rustlang";
    mock.route("GET", "/api/v2/instance", vec![recorded_instance(&dir, &mock)]);
    // The timeline as Mastodon pages it after the outage, newest first, 3 a page here.
    let link = |next: &str, prev: &str| {
        format!("<{base}{tag}?limit=40&max_id={next}>; rel=\"next\", <{base}{tag}?limit=40&min_id={prev}>; rel=\"prev\"")
    };
    mock.route(
        "GET",
        &format!("{tag}?limit=40&max_id={}", ids[3]),
        vec![Reply::json(200, &json!([c, b, a])).with_header("link", &link(&ids[0], &ids[2]))],
    );
    mock.route(
        "GET",
        tag,
        vec![empty_page(), Reply::json(200, &json!([f, e, d])).with_header("link", &link(&ids[3], &ids[5]))],
    );
    // Before the kill: A, B, C, then half of D's event, held open. After: C again (the stream
    // overlaps what was seen), then the recorded body (E, F, E edited, E deleted).
    let mut first = b":)\n".to_vec();
    for s in [&a, &b, &c] {
        first.extend(sse_event("update", &compact(s)));
        first.extend(b":thump\n");
    }
    let d_event = sse_event("update", &compact(&d));
    first.extend(&d_event[..d_event.len() / 2]);
    let mut second = sse_event("update", &compact(&c));
    second.extend(&user_direct);
    mock.route(
        "GET",
        "/api/v1/streaming/hashtag",
        vec![
            Reply::sse(awkward_chunks(&first), After::Heartbeats(HEARTBEAT)),
            Reply::sse(awkward_chunks(&second), After::Heartbeats(HEARTBEAT)),
        ],
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().to_path_buf();
    let url = mock.url();
    let start = move || {
        let (data, url) = (data.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            common::process::start(
                &data,
                &["--sources", "mastodon", "--mastodon-url", &url, "--track", "rustlang"],
                &[("TAGFLOW_MASTODON_TOKEN", TOKEN)],
            )
        })
    };
    let client = reqwest::Client::new();

    let server = start().await.expect("first start");
    let addr = server.url("");
    wait_for(&client, &addr, "A, B and C committed", |s| s["posts"] == 3).await;
    assert_no_token("/status", &status(&client, &addr).await.to_string());
    let log1 = server.log.lock().expect("log").join("\n");
    tokio::task::spawn_blocking(move || server.kill9()).await.expect("kill -9");
    assert_eq!(
        mock.targets(),
        [
            "GET /api/v2/instance",
            "GET /api/v1/streaming/hashtag?tag=rustlang",
            "GET /api/v1/timelines/tag/rustlang?limit=40"
        ]
    );
    mock.clear_requests();

    let server = start().await.expect("restart");
    let addr = server.url("");
    let s = wait_for(&client, &addr, "E deleted", |s| s["deleted"] == 1).await;
    // New: D, E, F (backfilled) and E's edit (applied again); duplicates: C and E, F re-sent.
    assert_eq!(
        (s["posts"].as_u64(), s["duplicates"].as_u64(), s["skipped"].as_u64()),
        (Some(4), Some(3), Some(0)),
        "{s}"
    );
    let want = union(&[
        "mastodon-api__cassettes__test_notifications_mentions_only",
        "mastodon-api__cassettes__test_status_reply",
        "mastodon-api__cassettes__test_hashtag_tl",
        "mastodon__cassettes__test_stream_user_direct__12",
    ]);
    assert_eq!(graph(&client, &addr).await, want);
    assert_eq!(
        mock.targets(),
        [
            "GET /api/v2/instance".to_string(),
            "GET /api/v1/streaming/hashtag?tag=rustlang".into(),
            format!("GET {tag}?limit=40"),
            format!("GET {tag}?limit=40&max_id={}", ids[3]),
        ],
        "the backfill walks back to C, the newest post committed before the kill, and no further"
    );
    assert_token_sent_only_as_bearer(&mock);
    assert_no_token("/status", &status(&client, &addr).await.to_string());
    let (exit, log2) = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(15)))
        .await
        .expect("terminate");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    assert_no_token("the log", &log1);
    assert_no_token("the log", &log2.join("\n"));
    assert!(log2.iter().any(|l| l.contains("source mastodon")), "the source logged");
}
