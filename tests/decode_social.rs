//! The Mastodon and Jetstream decoders on real recorded payloads (`../shared/fixtures/mastodon` and
//! `bluesky`), against expectations worked out independently of the decoders by
//! `tests/reference/social_expected.py` and committed in `tests/expected/social/`.
//!
//! Each fixture is replayed the way the script documents (cassette responses in order, SSE bodies
//! through `SseParser` in several chunkings, WebSocket frames, Jetstream lines), the records are applied
//! to a small model of the graph (a post id is applied once, an edit replaces, a delete removes that exact
//! id) and the outcome is compared whole: record counts, per-kind totals, users with handles and names,
//! the (from, to, kind) -> count map, the posts left, deletes and profile updates. The per-kind totals
//! plus the candidates the rules drop must add up to the counts of `fixtures/SOURCES.md`.

mod common;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tagflow::graph::{Kind, Post, Record, UserRef};
use tagflow::ingest::decode::mastodon;
use tagflow::ingest::decode::sse::{SseEvent, SseParser};
use tagflow::ingest::decode::{jetstream, DecodeError};

/// What the decoded records of one fixture add up to, in the shape of the expected files.
#[derive(Default)]
struct Outcome {
    records: BTreeMap<&'static str, u64>,
    accounts: u64,
    totals: BTreeMap<&'static str, u64>,
    users: BTreeMap<String, (Option<String>, Option<String>)>,
    posts: BTreeMap<String, Post>,
    deleted: Vec<String>,
    profiles: BTreeMap<String, String>,
}

impl Outcome {
    fn new() -> Outcome {
        let mut outcome = Outcome::default();
        for kind in ["post", "edit", "delete", "profile", "ignored", "error"] {
            outcome.records.insert(kind, 0);
        }
        for kind in [Kind::Repost, Kind::Reply, Kind::Quote, Kind::Mention] {
            outcome.totals.insert(kind.as_str(), 0);
        }
        outcome
    }

    fn see(&mut self, user: &UserRef) {
        let entry = self.users.entry(user.key.clone()).or_default();
        if user.handle.is_some() {
            entry.0.clone_from(&user.handle);
        }
        if user.name.is_some() {
            entry.1.clone_from(&user.name);
        }
    }

    fn apply(&mut self, decoded: Result<Vec<Record>, DecodeError>) {
        let records = match decoded {
            Ok(records) => records,
            Err(_) => {
                *self.records.entry("error").or_default() += 1;
                return;
            }
        };
        for record in records {
            match record {
                Record::Post(post) => self.apply_post("post", post),
                Record::Edit(post) => self.apply_post("edit", post),
                Record::Delete { id, .. } => {
                    *self.records.entry("delete").or_default() += 1;
                    self.posts.remove(&id);
                    self.deleted.push(id);
                }
                Record::Profile(user) => {
                    *self.records.entry("profile").or_default() += 1;
                    self.profiles.insert(user.key, user.handle.unwrap_or_default());
                }
                Record::Ignored => *self.records.entry("ignored").or_default() += 1,
                Record::Disconnect { reason } => panic!("no social source disconnects in-band: {reason}"),
            }
        }
    }

    fn apply_post(&mut self, kind: &'static str, post: Post) {
        *self.records.entry(kind).or_default() += 1;
        self.see(&post.author);
        for user in &post.users {
            self.see(user);
        }
        for interaction in &post.interactions {
            assert_eq!(interaction.from, post.author.key, "interactions start at the author: {post:?}");
            assert_ne!(interaction.to, interaction.from, "no self-loop: {post:?}");
            *self.totals.entry(interaction.kind.as_str()).or_default() += 1;
            self.users.entry(interaction.to.clone()).or_default();
        }
        if kind == "edit" || !self.posts.contains_key(&post.id) {
            self.posts.insert(post.id.clone(), post);
        }
    }

    /// The outcome as the expected files write it (everything but `reconcile`).
    fn to_json(&self, fixture: &str, format: &str) -> Value {
        let mut users = self.users.clone();
        // An identity handle updates a user the graph knows; it adds none.
        for (key, handle) in &self.profiles {
            if let Some(user) = users.get_mut(key) {
                user.0 = Some(handle.clone());
            }
        }
        let mut edges: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        for post in self.posts.values() {
            for i in &post.interactions {
                *edges.entry((i.from.as_str(), i.to.as_str(), i.kind.as_str())).or_default() += 1;
            }
        }
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let mut deleted = self.deleted.clone();
        deleted.sort();
        json!({
            "fixture": fixture,
            "format": format,
            "records": self.records,
            "accounts": self.accounts,
            "totals": self.totals,
            "users": users.iter().map(|(k, (handle, name))| (k.clone(), json!({"handle": handle, "name": name})))
                .collect::<serde_json::Map<_, _>>(),
            "edges": edges.iter().map(|((f, t, k), n)| json!([f, t, k, n])).collect::<Vec<_>>(),
            "posts": self.posts.iter().map(|(id, p)| (id.clone(), json!({
                "author": p.author.key, "created_at": p.created_at, "tags": sorted(&p.tags), "refs": sorted(&p.refs),
            }))).collect::<serde_json::Map<_, _>>(),
            "deleted": deleted,
            "profiles": self.profiles,
        })
    }
}

fn expected_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expected/social")
}

/// The expected files of one format, by name.
fn expectations(format: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(expected_dir()).expect("tests/expected/social exists") {
        let path = entry.expect("readable dir").path();
        let expected: Value = serde_json::from_slice(&std::fs::read(&path).expect("readable"))
            .expect("expected files are JSON");
        if expected["format"] == format {
            out.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), expected));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no expectations for {format}: run tests/reference/social_expected.py");
    out
}

/// Compares an outcome with its expected file, field by field for a readable failure, and checks that
/// the decoded per-kind totals plus the drops the reference explains add up to SOURCES.md.
fn check(name: &str, expected: &Value, outcome: &Outcome) {
    let fixture = expected["fixture"].as_str().expect("fixture");
    let actual = outcome.to_json(fixture, expected["format"].as_str().expect("format"));
    for field in ["records", "accounts", "totals", "users", "edges", "posts", "deleted", "profiles"] {
        assert_eq!(
            actual[field],
            expected[field],
            "{name}: `{field}` differs\nactual:   {}\nexpected: {}",
            serde_json::to_string_pretty(&actual[field]).unwrap_or_default(),
            serde_json::to_string_pretty(&expected[field]).unwrap_or_default(),
        );
    }
    let reconcile = &expected["reconcile"];
    for kind in ["repost", "reply", "quote", "mention"] {
        let dropped: u64 =
            reconcile["dropped"][kind].as_object().map_or(0, |d| d.values().filter_map(Value::as_u64).sum());
        let sources: u64 = reconcile["sources"]
            .as_object()
            .map(|s| s.iter().filter(|(k, _)| Kind::parse(k).map(Kind::as_str) == Some(kind)))
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        assert_eq!(outcome.totals[kind] + dropped, sources, "{name}: {kind} decoded + dropped vs SOURCES.md");
    }
}

/// `host[:port]` of the request URI: the instance the cassette talked to.
fn request_host(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    rest.split(['/', '?', '#']).next().map(str::to_ascii_lowercase)
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialises")
}

/// The cassette's response files, in recording order.
fn cassette_files(dir: &Path, cassette: &str) -> Vec<PathBuf> {
    let prefix = format!("{cassette}__");
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .expect("mastodon/api exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let n = name.strip_prefix(&prefix)?.strip_suffix(".json")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn mastodon_api_cassettes_decode_to_the_reference_graph() {
    let Some(fixtures) = common::fixtures::fixtures("mastodon_api_cassettes_decode_to_the_reference_graph")
    else {
        return;
    };
    let api = fixtures.join("mastodon/api");
    for (name, expected) in expectations("mastodon-api") {
        let fixture = expected["fixture"].as_str().expect("fixture");
        let cassette = fixture.trim_start_matches("mastodon/api/").trim_end_matches("__*.json");
        let files = cassette_files(&api, cassette);
        assert!(!files.is_empty(), "{name}: no files for {fixture}");
        let mut outcome = Outcome::new();
        for path in files {
            let doc: Value = serde_json::from_slice(&std::fs::read(&path).expect("readable")).expect("JSON");
            let method = doc["request"]["method"].as_str().unwrap_or_default();
            if method.eq_ignore_ascii_case("DELETE") || doc["status"] != 200 {
                continue; // a DELETE answers with the status it removed: not a status seen
            }
            let uri = doc["request"]["uri"].as_str().expect("request uri");
            let instance = request_host(uri);
            let instance = instance.as_deref();
            let body = &doc["body"];
            let path_only = uri.split('?').next().unwrap_or(uri);
            if path_only.ends_with("/reblogged_by") {
                let users = mastodon::decode_accounts(&bytes(body), instance).expect("reblogged_by decodes");
                for user in &users {
                    outcome.accounts += 1;
                    outcome.see(user);
                }
            } else if let Some(ancestors) = body.get("ancestors").and_then(Value::as_array) {
                let descendants = body["descendants"].as_array().into_iter().flatten();
                for status in ancestors.iter().chain(descendants) {
                    outcome.apply(mastodon::decode_status(&bytes(status), instance));
                }
            } else if body.get("uri").is_some() && body.get("account").is_some() {
                outcome.apply(mastodon::decode(&bytes(body), instance));
            } else if body.as_array().is_some_and(|a| a.iter().all(|s| s.get("uri").is_some())) {
                // A timeline page: through the shape-sniffing entry point, as the importer would.
                outcome.apply(mastodon::decode(&bytes(body), instance));
            }
        }
        check(&name, &expected, &outcome);
    }
}

#[test]
fn mastodon_sse_bodies_decode_to_the_reference_graph_however_they_are_chunked() {
    let Some(fixtures) = common::fixtures::fixtures("mastodon_sse_bodies_decode_to_the_reference_graph")
    else {
        return;
    };
    for (name, expected) in expectations("mastodon-sse") {
        let body =
            std::fs::read(fixtures.join(expected["fixture"].as_str().expect("fixture"))).expect("readable");
        let parse = |chunk: usize| -> Vec<SseEvent> {
            let mut parser = SseParser::new(1 << 20);
            body.chunks(chunk).flat_map(|c| parser.push(c).expect("within the cap")).collect()
        };
        let events = parse(body.len().max(1));
        for chunk in [1, 2, 3, 7, 64, 1000] {
            assert_eq!(parse(chunk), events, "{name}: chunks of {chunk} bytes");
        }
        let mut outcome = Outcome::new();
        for event in &events {
            outcome.apply(mastodon::decode_event(&event.event, event.data.as_bytes(), None));
        }
        check(&name, &expected, &outcome);
    }
}

#[test]
fn mastodon_websocket_frames_decode_to_the_reference_graph() {
    let Some(fixtures) =
        common::fixtures::fixtures("mastodon_websocket_frames_decode_to_the_reference_graph")
    else {
        return;
    };
    for (name, expected) in expectations("mastodon-ws") {
        let path = fixtures.join(expected["fixture"].as_str().expect("fixture"));
        let frames: Vec<Value> =
            serde_json::from_slice(&std::fs::read(path).expect("readable")).expect("JSON");
        let mut outcome = Outcome::new();
        for frame in &frames {
            let decoded = mastodon::decode_frame(&bytes(frame), None);
            let sniffed = mastodon::decode(&bytes(frame), None);
            assert_eq!(format!("{decoded:?}"), format!("{sniffed:?}"), "{name}: decode() sees a frame");
            outcome.apply(decoded);
        }
        check(&name, &expected, &outcome);
    }
}

#[test]
fn jetstream_captures_decode_to_the_reference_graph_and_keep_every_cursor() {
    let Some(fixtures) = common::fixtures::fixtures("jetstream_captures_decode_to_the_reference_graph")
    else {
        return;
    };
    for (name, expected) in expectations("jetstream") {
        let text = std::fs::read_to_string(fixtures.join(expected["fixture"].as_str().expect("fixture")))
            .expect("readable");
        let mut outcome = Outcome::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let decoded = jetstream::decode(line.as_bytes());
            if let Ok(event) = &decoded {
                let raw: Value = serde_json::from_str(line).expect("JSON");
                assert_eq!(Some(event.time_us), raw["time_us"].as_i64(), "{name}: time_us of {line}");
                assert_eq!(Some(event.did.as_str()), raw["did"].as_str(), "{name}: did of {line}");
            }
            outcome.apply(decoded.map(|e| e.records));
        }
        check(&name, &expected, &outcome);
    }
}

#[test]
fn every_social_fixture_has_an_expectation() {
    let Some(fixtures) = common::fixtures::fixtures("every_social_fixture_has_an_expectation") else {
        return;
    };
    let covered: Vec<String> = ["mastodon-api", "mastodon-sse", "mastodon-ws", "jetstream"]
        .into_iter()
        .flat_map(expectations)
        .map(|(_, e)| e["fixture"].as_str().expect("fixture").to_owned())
        .collect();
    for dir in ["mastodon", "mastodon/api", "bluesky"] {
        for entry in std::fs::read_dir(fixtures.join(dir)).expect("fixture dir") {
            let path = entry.expect("entry").path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()).filter(|_| path.is_file()) else {
                continue;
            };
            if file == "jetstream__corpus_manifest.json" {
                continue; // capture metadata, not events
            }
            let rel = format!("{dir}/{file}");
            let is_covered = covered.iter().any(|c| match c.strip_suffix("*.json") {
                Some(prefix) => rel
                    .strip_prefix(prefix)
                    .and_then(|n| n.strip_suffix(".json"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
                None => *c == rel,
            });
            assert!(is_covered, "{rel} has no expectation in tests/expected/social");
        }
    }
}
