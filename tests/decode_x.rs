//! The X decoders on the real recorded payloads of `../shared/fixtures/x-v2` and `x-v1`.
//!
//! Each fixture's decoded result (records, posts, users with their latest profile, and the aggregated map
//! `(from, to, kind) -> count`) must equal `tests/expected/x/<fixture>.json`, which
//! `tests/reference/x_expected.py` works out from the payloads without the Rust code. The per-kind totals
//! are then reconciled with the numbers counted by hand in `fixtures/SOURCES.md`: those count every
//! candidate edge before any rule, so `decoded + dropped-by-rule == SOURCES.md`, with the drops
//! (self-loops, repeats, unresolvable targets, the automatic `RT @author` mention) itemised in the
//! expected file.
//!
//! The tests skip (and say so) when the fixtures are absent. Decoding speed is measured by the
//! benchmark (`bench/run.sh`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tagflow::graph::{Kind, Record};
use tagflow::ingest::decode::{self, x_v1, x_v2, Decoded, Format};

const V2_FIXTURES: [&str; 9] = [
    "streaming_output.jsonl",
    "streaming_output_with_error.jsonl",
    "noflat.jsonl",
    "brexit.jsonl",
    "kpop.jsonl",
    "mentions_tweet.jsonl",
    "cotweet.jsonl",
    "quoted_edit.jsonl",
    "two_tweets.jsonl",
];
const V1_FIXTURES: [&str; 2] = ["search_2014.json", "twitter_api_response.json"];

/// The graph kinds of X edges and the name SOURCES.md counts them under.
const KINDS: [(Kind, &str); 4] =
    [(Kind::Repost, "retweet"), (Kind::Reply, "reply"), (Kind::Quote, "quote"), (Kind::Mention, "mention")];

#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
struct Records {
    /// Non-blank lines (v2) or documents (v1), well-formed or not.
    lines: u64,
    posts: u64,
    disconnects: u64,
    ignored: u64,
    errors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Profile {
    handle: Option<String>,
    name: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct PostSummary {
    author: String,
    created_at: Option<i64>,
    tags: Vec<String>,
    refs: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Reconcile {
    /// Kind -> reason -> how many candidate edges the rules dropped.
    dropped: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Deserialize)]
struct Expected {
    records: Records,
    totals: BTreeMap<String, u64>,
    reconcile: Reconcile,
    users: BTreeMap<String, Profile>,
    edges: Vec<(String, String, String, u64)>,
    posts: BTreeMap<String, PostSummary>,
}

/// What a run of the decoder over one fixture gives, aggregated as the graph would apply it: a post
/// applies once however often it is delivered, a profile takes the latest handle and name seen.
#[derive(Debug, Default)]
struct Aggregate {
    records: Records,
    users: BTreeMap<String, Profile>,
    edges: BTreeMap<(String, String, String), u64>,
    posts: BTreeMap<String, PostSummary>,
}

impl Aggregate {
    fn see(&mut self, key: &str, handle: Option<&str>, name: Option<&str>) {
        let profile = self.users.entry(key.to_string()).or_insert(Profile { handle: None, name: None });
        if let Some(h) = handle {
            profile.handle = Some(h.to_string());
        }
        if let Some(n) = name {
            profile.name = Some(n.to_string());
        }
    }

    fn add(&mut self, decoded: Decoded) {
        self.records.lines += 1;
        let records = match decoded {
            Ok(records) => records,
            Err(_) => {
                self.records.errors += 1;
                return;
            }
        };
        for record in records {
            match record {
                Record::Post(post) => {
                    self.records.posts += 1;
                    if self.posts.contains_key(&post.id) {
                        continue;
                    }
                    for user in std::iter::once(&post.author).chain(&post.users) {
                        self.see(&user.key, user.handle.as_deref(), user.name.as_deref());
                    }
                    for i in &post.interactions {
                        assert_eq!(
                            i.from, post.author.key,
                            "post {}: an interaction not from the author",
                            post.id
                        );
                        self.see(&i.to, None, None);
                        *self.edges.entry((i.from.clone(), i.to.clone(), i.kind.to_string())).or_default() +=
                            1;
                    }
                    let summary = PostSummary {
                        author: post.author.key.clone(),
                        created_at: post.created_at,
                        tags: post.tags,
                        refs: post.refs,
                    };
                    self.posts.insert(post.id, summary);
                }
                Record::Disconnect { .. } => self.records.disconnects += 1,
                Record::Ignored => self.records.ignored += 1,
                other => panic!("an X decoder produced {other:?}"),
            }
        }
    }

    fn total(&self, kind: Kind) -> u64 {
        self.edges.iter().filter(|((_, _, k), _)| k == kind.as_str()).map(|(_, n)| n).sum()
    }
}

fn expected(name: &str) -> Expected {
    let stem = Path::new(name).file_stem().and_then(|s| s.to_str()).expect("fixture name");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/x").join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run tests/reference/x_expected.py)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The counts SOURCES.md gives for one fixture (`x-v2/noflat.jsonl` -> {"retweet": 47, ...}).
fn sources_counts(fixtures: &Path, fixture: &str) -> BTreeMap<String, u64> {
    let sources = std::fs::read_to_string(fixtures.join("SOURCES.md")).expect("SOURCES.md");
    let line = sources
        .lines()
        .find(|l| l.strip_prefix("- ").and_then(|l| l.split('|').next()).map(str::trim) == Some(fixture))
        .unwrap_or_else(|| panic!("SOURCES.md has no line for {fixture}"));
    let counts =
        line.split('|').nth(5).unwrap_or_else(|| panic!("SOURCES.md line of {fixture} has no counts"));
    counts
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or_else(|_| panic!("{fixture}: count {k}={v}"))))
        .collect()
}

fn decode_v2_file(path: &Path) -> Aggregate {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut agg = Aggregate::default();
    for line in bytes.split(|&b| b == b'\n') {
        let decoded = x_v2::decode(line);
        if line.trim_ascii().is_empty() {
            // The last split of a file, or a keep-alive: nothing, and no error.
            assert!(decoded.expect("a blank line decodes").is_empty(), "a blank line gives no record");
            continue;
        }
        assert_eq!(decode::sniff(line), Some(Format::XV2), "{}: sniff of {:.60?}", path.display(), line);
        agg.add(decoded);
    }
    agg
}

fn decode_v1_file(path: &Path) -> Aggregate {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(decode::sniff(&bytes), Some(Format::XV1), "{}: sniff", path.display());
    let mut agg = Aggregate::default();
    agg.add(x_v1::decode(&bytes));
    agg
}

/// Compares a fixture's decoded aggregate with its expected file, then reconciles with SOURCES.md.
fn check(fixtures: &Path, fixture: &str, got: &Aggregate) {
    let want = expected(fixture);
    assert_eq!(got.records, want.records, "{fixture}: records");

    let want_edges: BTreeMap<(String, String, String), u64> =
        want.edges.into_iter().map(|(f, t, k, n)| ((f, t, k), n)).collect();
    let missing: Vec<_> = want_edges.iter().filter(|(e, n)| got.edges.get(*e) != Some(n)).collect();
    let extra: Vec<_> = got.edges.iter().filter(|(e, n)| want_edges.get(*e) != Some(n)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{fixture}: edges differ\n  expected, not decoded: {missing:?}\n  decoded, not expected: {extra:?}"
    );

    for (key, profile) in &want.users {
        assert_eq!(got.users.get(key), Some(profile), "{fixture}: user {key}");
    }
    let unexpected: Vec<_> = got.users.keys().filter(|k| !want.users.contains_key(*k)).collect();
    assert!(unexpected.is_empty(), "{fixture}: users not expected: {unexpected:?}");

    for (id, post) in &want.posts {
        assert_eq!(got.posts.get(id), Some(post), "{fixture}: post {id}");
    }
    assert_eq!(got.posts.len(), want.posts.len(), "{fixture}: number of distinct posts");

    let sources = sources_counts(fixtures, fixture);
    let mut unresolvable = 0;
    for (kind, sources_name) in KINDS {
        let decoded = got.total(kind);
        assert_eq!(Some(&decoded), want.totals.get(kind.as_str()), "{fixture}: {kind} total");
        let dropped = want.reconcile.dropped.get(kind.as_str()).cloned().unwrap_or_default();
        unresolvable += dropped.get("unresolvable").copied().unwrap_or(0);
        let counted = sources.get(sources_name).copied().unwrap_or(0);
        if dropped.values().all(|&n| n == 0) {
            // Where the rules drop nothing, the decoder must agree with SOURCES.md as it stands.
            assert_eq!(decoded, counted, "{fixture}: {kind} vs SOURCES.md {sources_name}={counted}");
        } else {
            let dropped_total: u64 = dropped.values().sum();
            assert_eq!(
                decoded + dropped_total,
                counted,
                "{fixture}: {kind}: {decoded} decoded + {dropped:?} dropped vs SOURCES.md {sources_name}={counted}"
            );
        }
    }
    if let Some(&resolvable) = sources.get("resolvable_edges") {
        let candidates: u64 = KINDS.iter().map(|(_, n)| sources.get(*n).copied().unwrap_or(0)).sum();
        assert_eq!(candidates - unresolvable, resolvable, "{fixture}: resolvable_edges");
    }
    assert_eq!(
        unresolvable,
        sources.get("unresolvable_edges").copied().unwrap_or(0),
        "{fixture}: unresolvable"
    );
    assert_eq!(got.records.posts, sources.get("tweets").copied().unwrap_or(0), "{fixture}: tweets");
    assert_eq!(
        got.records.disconnects,
        sources.get("operational_disconnect").copied().unwrap_or(0),
        "{fixture}"
    );
    assert_eq!(
        got.records.errors,
        sources.get("unparsable_lines").copied().unwrap_or(0),
        "{fixture}: unparsable"
    );
    for name in ["lines", "pages"] {
        if let Some(&n) = sources.get(name) {
            assert_eq!(got.records.lines - got.records.errors, n, "{fixture}: well-formed {name}");
        }
    }
}

#[test]
fn x_v2_fixtures_decode_to_the_reference_graph() {
    let Some(fixtures) = common::fixtures::fixtures("x_v2_fixtures_decode_to_the_reference_graph") else {
        return;
    };
    for name in V2_FIXTURES {
        let got = decode_v2_file(&fixtures.join("x-v2").join(name));
        check(&fixtures, &format!("x-v2/{name}"), &got);
    }
}

#[test]
fn x_v1_fixtures_decode_to_the_reference_graph() {
    let Some(fixtures) = common::fixtures::fixtures("x_v1_fixtures_decode_to_the_reference_graph") else {
        return;
    };
    for name in V1_FIXTURES {
        let got = decode_v1_file(&fixtures.join("x-v1").join(name));
        check(&fixtures, &format!("x-v1/{name}"), &got);
    }
}

#[test]
fn noflat_totals_match_the_counts_of_sources_md_once_rule_drops_are_added_back() {
    let Some(fixtures) = common::fixtures::fixtures("noflat_totals_match_sources_md") else {
        return;
    };
    // SOURCES.md: retweet=47 reply=31 quote=8 mention=110 resolvable_edges=195 unresolvable_edges=1.
    let got = decode_v2_file(&fixtures.join("x-v2/noflat.jsonl"));
    // Two self-retweets and two self-replies (threads) are self-loops.
    assert_eq!(got.total(Kind::Repost), 47 - 2);
    assert_eq!(got.total(Kind::Reply), 31 - 2);
    assert_eq!(got.total(Kind::Quote), 8);
    // 47 automatic `RT @author` mentions, one @-mention repeated in a tweet, @gatewaypundit suspended.
    assert_eq!(got.total(Kind::Mention), 110 - 47 - 1 - 1);
}

#[test]
fn the_truncated_stream_line_is_one_error_and_the_other_lines_decode() {
    let Some(fixtures) = common::fixtures::fixtures("the_truncated_stream_line_is_one_error") else {
        return;
    };
    let bytes = std::fs::read(fixtures.join("x-v2/streaming_output_with_error.jsonl")).expect("fixture");
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()).collect();
    assert_eq!(lines.len(), 8);
    for (i, line) in lines.iter().enumerate() {
        let decoded = x_v2::decode(line);
        if i == 7 {
            assert!(matches!(decoded, Err(decode::DecodeError::Json(_))), "line 8 is truncated: {decoded:?}");
        } else {
            assert!(matches!(decoded.as_deref(), Ok([Record::Post(_)])), "line {}: {decoded:?}", i + 1);
        }
    }
}

#[test]
fn the_operational_disconnect_line_of_the_recorded_stream_is_a_disconnect() {
    let Some(fixtures) = common::fixtures::fixtures("the_operational_disconnect_line") else {
        return;
    };
    let bytes = std::fs::read(fixtures.join("x-v2/streaming_output.jsonl")).expect("fixture");
    let line = bytes.split(|&b| b == b'\n').nth(4).expect("line 5");
    let records = x_v2::decode(line).expect("decodes");
    assert!(matches!(records.as_slice(), [Record::Disconnect { .. }]), "{records:?}");
}

#[test]
fn sniff_tells_the_formats_apart() {
    let cases: &[(&str, Option<Format>, &str)] = &[
        (r#"{"data": {"id": "1"}, "includes": {}}"#, Some(Format::XV2), "v2 stream line"),
        (r#"  {"includes": {"users": []}, "data": []}"#, Some(Format::XV2), "v2 page, includes first"),
        (r#"{"errors": [{"title": "operational-disconnect"}]}"#, Some(Format::XV2), "v2 errors-only line"),
        (r#"{"matching_rules": [{"id": 1}]}"#, Some(Format::XV2), "v2 matching_rules"),
        (
            r#"{"created_at": "Thu Apr 06 15:28:43 +0000 2017", "id": 1, "id_str": "1"}"#,
            Some(Format::XV1),
            "v1 status",
        ),
        (r#"{"statuses": [], "search_metadata": {}}"#, Some(Format::XV1), "v1 search response"),
        (r#"[{"id": 1, "id_str": "1", "user": {}}]"#, Some(Format::XV1), "v1 array"),
        (r#"{"did": "did:plc:x", "time_us": 1, "kind": "commit"}"#, Some(Format::Jetstream), "jetstream"),
        (
            r#"{"kind": "identity", "time_us": 1, "did": "did:plc:x"}"#,
            Some(Format::Jetstream),
            "jetstream, keys reordered",
        ),
        (
            r#"{"id": "1", "uri": "https://m.example/1", "content": "<p>\"data\": {</p>", "account": {"id": "2"}}"#,
            Some(Format::Mastodon),
            "mastodon status with a key-like string in its content",
        ),
        (
            r#"{"stream": ["hashtag", "rust"], "event": "update", "payload": "{}"}"#,
            Some(Format::Mastodon),
            "frame",
        ),
        (
            r#"{"event": "filters_changed", "stream": ["user"]}"#,
            Some(Format::Mastodon),
            "frame without payload",
        ),
        (
            r#"{"event": "update", "payload": "{\"account\": 1, \"uri\": 2}"}"#,
            None,
            "keys inside a string value",
        ),
        (r#"[{"id": "1", "account": {"uri": "x"}, "uri": "u"}]"#, Some(Format::Mastodon), "mastodon page"),
        (
            r#"{"nested": {"data": 1, "id_str": "2"}, "other": [{"did": 1}]}"#,
            None,
            "nested keys do not count",
        ),
        (r#"{"error": "Record not found"}"#, None, "mastodon error"),
        ("not json", None, "garbage"),
        ("", None, "empty"),
        (
            r#"{"data": {"author_id": "1021159080151404544""#,
            Some(Format::XV2),
            "truncated after its first key",
        ),
        (r#"{"a\"data": 1}"#, None, "a key with an escaped quote"),
    ];
    for (record, format, what) in cases {
        assert_eq!(decode::sniff(record.as_bytes()), *format, "{what}: {record}");
    }
}

#[test]
fn the_dispatcher_calls_the_decoder_of_the_format() {
    let v2 = br#"{"data": {"id": "1", "author_id": "2"}}"#;
    assert!(
        matches!(decode::decode(Format::XV2, v2).as_deref(), Ok([Record::Post(p)]) if p.author.key == "x:2")
    );
    let v1 = br#"{"id_str": "1", "user": {"id_str": "3"}}"#;
    assert!(
        matches!(decode::decode(Format::XV1, v1).as_deref(), Ok([Record::Post(p)]) if p.author.key == "x:3")
    );
    assert!(decode::decode(Format::XV1, v2).is_ok_and(|r| matches!(r.as_slice(), [Record::Ignored])));
}

#[test]
fn sniff_recognises_the_recorded_jetstream_and_mastodon_frames() {
    let Some(fixtures) = common::fixtures::fixtures("sniff_recognises_the_recorded_frames") else {
        return;
    };
    let golden =
        std::fs::read(fixtures.join("bluesky/jetstream__subscribe_golden_v1.jsonl")).expect("fixture");
    for line in golden.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
        assert_eq!(decode::sniff(line), Some(Format::Jetstream), "{:.80?}", String::from_utf8_lossy(line));
    }
    let frames: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(fixtures.join("mastodon/docs_websocket_examples.json")).expect("fixture"),
    )
    .expect("a JSON array");
    for frame in frames {
        let bytes = serde_json::to_vec(&frame).expect("serialises");
        assert_eq!(decode::sniff(&bytes), Some(Format::Mastodon), "{frame}");
    }
}
