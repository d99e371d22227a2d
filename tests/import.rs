//! `tagflow import` and `POST /ingest` end to end: the real binary on the real recorded payloads,
//! compared with expectations worked out independently of the decoders
//! (`tests/reference/x_expected.py` -> `tests/expected/x/*.json`).

mod common;

use common::app::{assert_error, spawn_app};
use common::fixtures::fixtures;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tagflow::graph::{Kind, UserOrder};
use tagflow::store::{self, StoreConfig};

type Edges = BTreeMap<(String, String, String), u64>;

fn import(args: &[&str]) -> (bool, String, String) {
    common::process::run_tagflow(&[&["import"], args].concat())
}

/// The figure `name=` in the import summary line.
fn figure(stdout: &str, name: &str) -> u64 {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {stdout:?}"))
}

/// Users and per-kind edge counts of a data directory, read through the store.
fn graph_of(dir: &Path) -> (BTreeSet<String>, Edges) {
    let (h, w, _) = store::open(&StoreConfig::new(dir)).expect("open data dir");
    let (users, edges) = {
        let g = h.graph().read();
        let users = g.users_page(UserOrder::Key, None, usize::MAX).items.into_iter().map(|u| u.id).collect();
        let mut edges = Edges::new();
        for t in g.ties_page(None, usize::MAX).items {
            let tie = g.tie(&t.from, &t.to).unwrap();
            for k in Kind::ALL {
                if tie.count(k) > 0 {
                    edges.insert(
                        (t.from.clone(), t.to.clone(), k.as_str().to_string()),
                        u64::from(tie.count(k)),
                    );
                }
            }
        }
        (users, edges)
    };
    drop(h);
    w.join().expect("the store stops cleanly");
    (users, edges)
}

fn expected(name: &str) -> (BTreeSet<String>, Edges, u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/x").join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut edges = Edges::new();
    for e in v["edges"].as_array().unwrap() {
        let key =
            (e[0].as_str().unwrap().into(), e[1].as_str().unwrap().into(), e[2].as_str().unwrap().into());
        *edges.entry(key).or_default() += e[3].as_u64().unwrap();
    }
    let mut users: BTreeSet<String> = edges.keys().flat_map(|(a, b, _)| [a.clone(), b.clone()]).collect();
    // Every post's author is a user, even with no interaction.
    for p in v["posts"].as_object().unwrap().values() {
        users.insert(p["author"].as_str().unwrap().to_string());
    }
    let posts = v["posts"].as_object().unwrap().len() as u64;
    (users, edges, posts)
}

#[test]
fn importing_each_recorded_x_file_gives_exactly_the_expected_graph() {
    let Some(fx) = fixtures("importing_each_recorded_x_file_gives_exactly_the_expected_graph") else {
        return;
    };
    let files = [
        ("x-v2/streaming_output.jsonl", "streaming_output"),
        ("x-v2/streaming_output_with_error.jsonl", "streaming_output_with_error"),
        ("x-v2/noflat.jsonl", "noflat"),
        ("x-v2/brexit.jsonl", "brexit"),
        ("x-v2/kpop.jsonl", "kpop"),
        ("x-v2/mentions_tweet.jsonl", "mentions_tweet"),
        ("x-v2/quoted_edit.jsonl", "quoted_edit"),
        ("x-v2/two_tweets.jsonl", "two_tweets"),
        ("x-v2/cotweet.jsonl", "cotweet"),
        ("x-v1/search_2014.json", "search_2014"),
        ("x-v1/twitter_api_response.json", "twitter_api_response"),
    ];
    for (file, name) in files {
        let tmp = tempfile::tempdir().unwrap();
        let path = fx.join(file);
        let (ok, out, err) = import(&[path.to_str().unwrap(), "--data-dir", tmp.path().to_str().unwrap()]);
        assert!(ok, "{file}: {err}");
        let (want_users, want_edges, want_posts) = expected(name);
        assert_eq!(figure(&out, "posts"), want_posts, "{file}: {out}");
        let (users, edges) = graph_of(tmp.path());
        assert_eq!(edges, want_edges, "{file}: edges");
        assert_eq!(users, want_users, "{file}: users");
        let skipped = figure(&out, "skipped");
        assert_eq!(
            skipped,
            u64::from(name == "streaming_output_with_error"),
            "{file}: the truncated line only"
        );
    }
}

#[test]
fn importing_the_same_files_twice_changes_nothing() {
    let Some(fx) = fixtures("importing_the_same_files_twice_changes_nothing") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_string();
    let a = fx.join("x-v2/noflat.jsonl");
    let b = fx.join("x-v1/search_2014.json");
    let args = [a.to_str().unwrap(), b.to_str().unwrap(), "--data-dir", &dir];
    let (ok, first, err) = import(&args);
    assert!(ok, "{err}");
    let before = graph_of(tmp.path());
    let (ok, second, err) = import(&args);
    assert!(ok, "{err}");
    assert_eq!(figure(&second, "posts"), 0, "{second}");
    assert_eq!(figure(&second, "duplicates"), figure(&first, "posts"), "{second}");
    assert_eq!(graph_of(tmp.path()), before);
    assert!(!err.contains('\u{1b}'), "no progress bar drawn when stderr is not a terminal");
}

/// Always runs: hand-written records in the real shapes, with broken lines among them.
#[test]
fn broken_lines_are_counted_and_skipped_without_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mixed.jsonl");
    let v2 = r#"{"data":{"id":"100","text":"RT @bob: hi","author_id":"1","created_at":"2021-04-01T12:00:00.000Z","referenced_tweets":[{"type":"retweeted","id":"99"}],"entities":{"mentions":[{"start":3,"end":7,"username":"bob","id":"2"}]}},"includes":{"users":[{"id":"1","username":"ann","name":"Ann"},{"id":"2","username":"bob","name":"Bob"}],"tweets":[{"id":"99","author_id":"2","text":"hi"}]}}"#;
    let v1 = r#"{"id_str":"200","created_at":"Thu Apr 06 15:28:43 +0000 2017","user":{"id_str":"3","screen_name":"cy"},"in_reply_to_user_id_str":"1","entities":{"user_mentions":[{"id_str":"2","screen_name":"bob"}]},"text":"@ann @bob yes"}"#;
    let body = format!("{v2}\n\n{{\"data\": {{\"id\": \"trunc\n   \nnot json at all\n{v1}\r\n[1,2,3]\n");
    std::fs::write(&file, body).unwrap();
    let other = tmp.path().join("other.jsonl");
    std::fs::write(&other, "{broken\n").unwrap();
    let data = tmp.path().join("data");
    let files = [file.to_str().unwrap(), other.to_str().unwrap()];
    let (ok, out, err) = import(&[files[0], files[1], "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(figure(&out, "posts"), 2, "{out}");
    assert_eq!(figure(&out, "skipped"), 4, "{out}");
    assert_eq!(figure(&out, "interactions"), 3, "{out}");
    // The first reasons name the file and the line, of each file.
    assert!(out.contains(&format!("{}, line 3", files[0])), "{out}");
    assert!(out.contains(&format!("{}, line 1", files[1])), "{out}");
    let (users, edges) = graph_of(&data);
    assert_eq!(users, ["x:1", "x:2", "x:3"].map(String::from).into_iter().collect());
    let want: Edges =
        [(("x:1", "x:2", "repost"), 1), (("x:3", "x:1", "reply"), 1), (("x:3", "x:2", "mention"), 1)]
            .into_iter()
            .map(|((a, b, k), n)| ((a.to_string(), b.to_string(), k.to_string()), n))
            .collect();
    assert_eq!(edges, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_accepts_ndjson_of_every_format_and_reports_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let v2 = r#"{"data":{"id":"7","text":"hi @b","author_id":"1","entities":{"mentions":[{"username":"b","id":"2"}]}},"includes":{"users":[{"id":"2","username":"b"}]}}"#;
    let jet = r#"{"did":"did:plc:aaa","time_us":1725911162329308,"kind":"commit","commit":{"rev":"x","operation":"create","collection":"app.bsky.feed.repost","rkey":"r1","record":{"$type":"app.bsky.feed.repost","createdAt":"2024-09-09T19:46:02.102Z","subject":{"cid":"c","uri":"at://did:plc:bbb/app.bsky.feed.post/p1"}},"cid":"c2"}}"#;
    let body = format!("{v2}\n{{broken\n\n{jet}\n");
    let (s, r) = app.post("/ingest", &body).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["records"].as_u64(), r["accepted"].as_u64(), r["skipped"].as_u64()),
        (Some(3), Some(2), Some(1)),
        "{r}"
    );
    assert_eq!(r["interactions"], 2);
    assert!(r["reasons"][0].as_str().unwrap().starts_with("line 2"), "{r}");
    let (_, r) = app.post("/ingest", &body).await;
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "replay counts nothing twice"
    );
    assert_eq!(app.get("/aristas/x:1/x:2").await.1["kinds"]["mention"], 1);
    assert_eq!(app.get("/aristas/bsky:did:plc:aaa/bsky:did:plc:bbb").await.1["kinds"]["repost"], 1);
    let status = app.get("/status").await.1;
    let ingest =
        status["sources"].as_array().unwrap().iter().find(|s| s["name"] == "ingest").unwrap().clone();
    assert_eq!(
        (ingest["posts"].as_u64(), ingest["duplicates"].as_u64(), ingest["skipped"].as_u64()),
        (Some(2), Some(2), Some(2))
    );
    assert_error(&app.post("/ingest?format=yaml", &body).await, 400, "invalid_query");
    let huge = "x".repeat(9 << 20);
    assert_error(&app.post("/ingest", &huge).await, 413, "payload_too_large");
    assert_error(&app.get("/ingest").await, 405, "method_not_allowed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_with_url_streams_a_file_to_a_running_service() {
    let Some(fx) = fixtures("import_with_url_streams_a_file_to_a_running_service") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let addr = app.addr.clone();
    let file = fx.join("x-v1/twitter_api_response.json");
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || import(&[file.to_str().unwrap(), "--url", &addr])).await.unwrap();
    assert!(ok, "{err}");
    let (_, want_edges, want_posts) = expected("twitter_api_response");
    assert_eq!(figure(&out, "posts"), want_posts, "{out}");
    let edges = app.get("/aristas/count").await.1;
    assert_eq!(edges["count"].as_u64(), Some(want_edges.len() as u64));
    app.stop().await;
}

const V2: &str = r#"{"data":{"id":"100","text":"RT @bob: hi","author_id":"1","referenced_tweets":[{"type":"retweeted","id":"99"}],"entities":{"mentions":[{"start":3,"end":7,"username":"bob","id":"2"}]}},"includes":{"users":[{"id":"1","username":"ann"},{"id":"2","username":"bob"}],"tweets":[{"id":"99","author_id":"2","text":"hi"}]}}"#;
const V1: &str = r#"{"id_str":"200","user":{"id_str":"3","screen_name":"cy"},"in_reply_to_user_id_str":"1","entities":{"user_mentions":[]},"text":"@ann yes"}"#;

/// Lines over `--max-line` are counted and skipped, never held; a first line that opens a document
/// it never closes (a truncated NDJSON line) is not a reason to read the file whole: once the lines
/// held pass the limit, they are read as NDJSON and the import goes on.
#[test]
fn over_long_lines_are_skipped_unread_and_a_broken_first_line_does_not_hold_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("long.jsonl");
    let filler: String = (0..30_000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let long = format!("{{\"data\":{{\"id\":\"{}\"}}}}", "x".repeat(3 << 20));
    let body = format!("{{\"data\": {{\"id\": \"trunc\n{filler}{V2}\n{long}\n{V1}\n{long}");
    std::fs::write(&file, body).unwrap();
    let data = tmp.path().join("data");
    let (ok, out, err) =
        import(&[file.to_str().unwrap(), "--max-line", "0.25", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        figure(&out, "posts"),
        2,
        "both records after the broken first line and the long lines: {out}"
    );
    // The broken first line, 30,000 lines of JSON that are no posts, and the two long lines.
    assert_eq!(figure(&out, "skipped"), 30_003, "{out}");
    let (users, _) = graph_of(&data);
    assert_eq!(users.len(), 3);
    // The reason says so, naming the line.
    let short = tmp.path().join("short.jsonl");
    std::fs::write(&short, format!("{V1}\n{long}\n")).unwrap();
    let (ok, out, err) =
        import(&[short.to_str().unwrap(), "--max-line", "0.25", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("line 2: 3145747 bytes, over --max-line (262144 bytes): skipped unread"), "{out}");
}

/// A JSON array (a v1.1 archive) is read element by element: a broken element is one skip, and
/// JSON that breaks off keeps what came before it.
#[test]
fn an_array_is_read_element_by_element_and_a_break_keeps_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("archive.json");
    let second = V1.replace("\"200\"", "\"201\"").replace("\"3\"", "\"4\"");
    std::fs::write(&file, format!("[{V1},\n{{\"not\":\"a status\"}},\n{second}, {{\"id_str\": \"30"))
        .unwrap();
    let data = tmp.path().join("data");
    let (ok, out, err) = import(&[file.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(figure(&out, "posts"), 2, "{out}");
    assert_eq!(figure(&out, "skipped"), 2, "the element that is no status, and the break: {out}");
    assert!(out.contains("element 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_with_url_skips_a_record_the_service_refuses_as_too_large_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let file = tmp.path().join("big.jsonl");
    let big =
        format!("{{\"data\":{{\"id\":\"9\",\"text\":\"{}\",\"author_id\":\"5\"}}}}", "x".repeat(9 << 20));
    std::fs::write(&file, format!("{V2}\n{big}\n{V1}\n")).unwrap();
    let addr = app.addr.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        import(&[file.to_str().unwrap(), "--url", &addr, "--max-line", "16"])
    })
    .await
    .unwrap();
    assert!(ok, "the run goes on past the refused record: {err}");
    assert_eq!(figure(&out, "posts"), 2, "{out}");
    assert_eq!(figure(&out, "skipped"), 1, "{out}");
    assert!(out.contains("(413)"), "{out}");
    assert_eq!(app.get("/aristas/x:3/x:1").await.1["kinds"]["reply"], 1);
    app.stop().await;
}

#[test]
fn a_missing_file_is_one_error_and_leaves_no_data_directory_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let real = tmp.path().join("posts.jsonl");
    std::fs::write(&real, "{}\n").unwrap();
    let missing = tmp.path().join("mistyped.jsonl");
    let (ok, _, stderr) = common::process::run_tagflow(&[
        "import".as_ref(),
        real.as_os_str(),
        missing.as_os_str(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    assert!(!ok);
    assert_eq!(stderr.matches("mistyped.jsonl").count(), 1, "said once: {stderr}");
    assert!(stderr.contains("cannot open"), "{stderr}");
    assert!(!dir.exists(), "nothing was created for an import that could not start");
}
