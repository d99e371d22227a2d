//! The Gephi stream end to end: what a client replaying `/stream/gephi` holds equals what
//! `/aristas` and `/vertices` list once the writes stop, for the whole graph and for a selection
//! (kinds and a minimum weight), while ingest adds, removes and renames; a stream that falls behind
//! is closed with an error line; idle streams carry heartbeats; open streams do not hold up a stop.

mod common;

use common::app::{assert_error, spawn_app, TestApp};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tagflow::graph::{Kind, Mutation, UserRef};
use tagflow::rng::SplitMix64;
use tokio::sync::Mutex;

/// What a Gephi-like client holds after replaying the events it read.
#[derive(Default, Debug)]
struct Replay {
    nodes: BTreeMap<String, String>,
    edges: BTreeMap<String, serde_json::Map<String, Value>>,
    errors: Vec<Value>,
    heartbeats: usize,
    /// Bytes of an unfinished line.
    partial: String,
}

impl Replay {
    fn feed(&mut self, chunk: &[u8]) {
        self.partial.push_str(std::str::from_utf8(chunk).unwrap());
        while let Some(end) = self.partial.find("\r\n") {
            let line: String = self.partial.drain(..end + 2).collect();
            self.line(line.trim_end());
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.heartbeats += 1;
            return;
        }
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}"));
        let (op, body) = v.as_object().unwrap().iter().next().unwrap();
        if op == "error" {
            self.errors.push(v.clone());
            return;
        }
        let (id, attrs) = body.as_object().unwrap().iter().next().unwrap();
        let attrs = attrs.as_object().unwrap().clone();
        match op.as_str() {
            "an" => {
                assert!(!self.nodes.contains_key(id), "an for a node already there: {id}");
                self.nodes.insert(id.clone(), attrs["label"].as_str().unwrap().into());
            }
            "cn" => {
                let label = self.nodes.get_mut(id).unwrap_or_else(|| panic!("cn of an unknown node {id}"));
                *label = attrs["label"].as_str().unwrap().into();
            }
            "dn" => {
                assert!(self.nodes.remove(id).is_some(), "dn of an unknown node {id}");
                assert!(
                    !self.edges.values().any(|e| e["source"] == id.as_str() || e["target"] == id.as_str()),
                    "dn of {id} while its edges are shown"
                );
            }
            "ae" => {
                for end in ["source", "target"] {
                    assert!(
                        self.nodes.contains_key(attrs[end].as_str().unwrap()),
                        "ae before its {end}'s an"
                    );
                }
                assert!(
                    self.edges.insert(id.clone(), attrs).is_none(),
                    "ae of an edge already there: {id:?}"
                );
            }
            "ce" => {
                let e = self.edges.get_mut(id).unwrap_or_else(|| panic!("ce of an unknown edge {id:?}"));
                e.extend(attrs);
            }
            "de" => assert!(self.edges.remove(id).is_some(), "de of an unknown edge {id:?}"),
            other => panic!("unknown event {other}"),
        }
    }
}

/// Opens a stream and replays it in the background; returns the replay and the reader's task.
async fn follow(app: &TestApp, query: &str) -> (Arc<Mutex<Replay>>, tokio::task::JoinHandle<()>) {
    let mut resp = app.client.get(format!("{}/stream/gephi?{query}", app.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let replay = Arc::new(Mutex::new(Replay::default()));
    let r = replay.clone();
    let task = tokio::spawn(async move {
        while let Ok(Some(chunk)) = resp.chunk().await {
            r.lock().await.feed(&chunk);
        }
    });
    (replay, task)
}

/// What a stream of `kinds` and `min_weight` must hold: from the API's listings.
async fn expected(
    app: &TestApp,
    kinds: &[&str],
    min_weight: u64,
) -> (BTreeMap<String, String>, BTreeMap<String, u64>) {
    let mut edges = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app.get(&format!("/aristas?limit=1000{cursor}")).await;
        for e in page["edges"].as_array().unwrap() {
            let w: u64 = kinds.iter().map(|k| e["kinds"][*k].as_u64().unwrap_or(0)).sum();
            if w >= min_weight {
                edges.insert(format!("{}\t{}", e["from"].as_str().unwrap(), e["to"].as_str().unwrap()), w);
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let ends: BTreeSet<String> = edges.keys().flat_map(|k| k.split('\t').map(String::from)).collect();
    let mut nodes = BTreeMap::new();
    for key in ends {
        let (_, u) = app.get(&format!("/vertices/{}", common::app::enc(&key))).await;
        nodes.insert(key.clone(), u["handle"].as_str().unwrap_or(&key).to_string());
    }
    (nodes, edges)
}

fn interaction(s: &mut SplitMix64, users: u64) -> Mutation {
    let (a, b) = (s.below(users), s.below(users));
    let b = if a == b { (b + 1) % users } else { b };
    Mutation::AddInteraction {
        from: format!("u{a}"),
        to: format!("u{b}"),
        kind: Kind::ALL[s.below(4) as usize],
        at: 1_700_000_000 + s.below(86_400) as i64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_stream_holds_what_the_api_lists_while_ingest_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let mut s = SplitMix64::new(11);
    let first: Vec<Mutation> = (0..1_500).map(|_| interaction(&mut s, 120)).collect();
    app.store.submit(first).await.unwrap();
    let (all, all_task) = follow(&app, "").await;
    let (some, some_task) = follow(&app, "kinds=repost,reply&min_weight=2").await;
    // Ingest while the streams run: new interactions, removed edges and users, renamed users.
    for round in 0..60 {
        let mut batch: Vec<Mutation> = (0..40).map(|_| interaction(&mut s, 130)).collect();
        if round % 7 == 3 {
            batch.push(Mutation::RemoveUser { key: format!("u{}", s.below(200)) });
        }
        if round % 5 == 1 {
            let (a, b) = (s.below(200), s.below(200));
            batch.push(Mutation::RemoveTie { from: format!("u{a}"), to: format!("u{b}") });
        }
        if round % 4 == 2 {
            let mut user = UserRef::new(format!("u{}", s.below(200)));
            user.handle = Some(format!("renamed{round}"));
            batch.push(Mutation::Profile(user));
        }
        app.store.submit(batch).await.unwrap();
    }
    for (replay, kinds, min_weight) in [
        (&all, &["repost", "reply", "quote", "mention", "manual"][..], 1),
        (&some, &["repost", "reply"][..], 2),
    ] {
        let (nodes, edges) = expected(&app, kinds, min_weight).await;
        assert!(edges.len() > 40, "a graph worth checking ({} edges)", edges.len());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = replay.lock().await;
            let got: BTreeMap<String, u64> =
                r.edges.iter().map(|(k, v)| (k.clone(), v["weight"].as_u64().unwrap())).collect();
            if got == edges && r.nodes == nodes {
                for (id, e) in &r.edges {
                    let sum: u64 = kinds.iter().map(|k| e[*k].as_u64().unwrap()).sum();
                    assert_eq!(sum, e["weight"].as_u64().unwrap(), "{id:?}: counts per kind add up");
                }
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kinds:?}/{min_weight}: the replay differs: {} edges vs {}, {} users vs {}",
                got.len(),
                edges.len(),
                r.nodes.len(),
                nodes.len()
            );
            drop(r);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A stop does not wait for the open streams: they end with it.
    let t = Instant::now();
    app.stop().await;
    assert!(t.elapsed() < Duration::from_secs(5), "stopping took {:?} with streams open", t.elapsed());
    for task in [all_task, some_task] {
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the streams ended").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_that_falls_behind_is_closed_with_an_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let mut resp = app.client.get(format!("{}/stream/gephi", app.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Commits one by one, each with a hundred new users and edges, while nobody reads the stream:
    // far more than the connection's buffers and more commits than the feed holds.
    let mut s = SplitMix64::new(5);
    for round in 0..(tagflow::store::feed::FEED_DEPTH as u64 + 300) {
        let batch = (0..100)
            .map(|i| Mutation::AddInteraction {
                from: format!("user-{round}-{i}-with-a-long-name-{}", s.below(1_000_000)),
                to: format!("u{}", s.below(50)),
                kind: Kind::Mention,
                at: 1_700_000_000,
            })
            .collect();
        app.store.submit(batch).await.unwrap();
    }
    let mut replay = Replay::default();
    let read = async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            replay.feed(&chunk);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("the stream ended");
    assert_eq!(replay.errors.len(), 1, "one error line, at the end");
    assert_eq!(replay.errors[0]["error"]["code"], "overloaded");
    assert!(replay.errors[0]["error"]["message"].as_str().unwrap().contains("reconnect"));
    // The writer was never held up, and a new stream starts from the graph as it is.
    let (_, count) = app.get("/aristas/count").await;
    let (fresh, task) = follow(&app, "").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while fresh.lock().await.edges.len() < count["count"].as_u64().unwrap() as usize {
        assert!(Instant::now() < deadline, "the new stream's first dump is whole");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_carry_heartbeats_and_bad_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    assert_error(&app.get("/stream/gephi?since=2026-11-01T00:00:00Z").await, 400, "invalid_query");
    assert_error(&app.get("/stream/gephi?kinds=like").await, 400, "invalid_query");
    assert_error(&app.get("/stream/gephi?format=gexf").await, 400, "invalid_query");
    let (replay, task) = follow(&app, "").await;
    tokio::time::sleep(tagflow::http::HEARTBEAT + Duration::from_secs(3)).await;
    assert!(
        replay.lock().await.heartbeats >= 1,
        "a blank line within {:?} of silence",
        tagflow::http::HEARTBEAT
    );
    task.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_hear_of_every_change_at_most_once_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let mut resp = app.client.get(format!("{}/stream/changes", app.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    // Reads until `n` change events have come; returns their data.
    async fn events(resp: &mut reqwest::Response, text: &mut String, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<Value> = text
                .split("\n\n")
                .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{n} events within 10 s: {text:?}");
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await.unwrap().unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
    let first = events(&mut resp, &mut text, 1).await;
    assert!(text.starts_with("retry: 3000"), "{text:?}");
    assert_eq!((first[0]["users"].as_u64(), first[0]["edges"].as_u64()), (Some(0), Some(0)));
    // A burst of commits: one event, or two, not one per commit.
    for i in 0..20 {
        let m = Mutation::AddInteraction {
            from: format!("a{i}"),
            to: "b".into(),
            kind: Kind::Reply,
            at: 1_700_000_000,
        };
        app.store.submit(vec![m]).await.unwrap();
    }
    let mut got = events(&mut resp, &mut text, 2).await;
    while got.last().unwrap()["users"] != 21 {
        got = events(&mut resp, &mut text, got.len() + 1).await;
    }
    assert!(got.last().unwrap()["version"].as_u64() > first[0]["version"].as_u64());
    assert!(got.len() <= 4, "coalesced: {} events for 20 commits in about a second", got.len());
    app.stop().await;
}
