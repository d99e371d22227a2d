//! Exports end to end, as researchers use them: every format downloaded from `GET /export` and
//! written by `tagflow export`, read back by NetworkX, igraph, Python's csv and json, and compared
//! with what the API lists (`/aristas`, `/vertices`); the GEXF validated against the official GEXF
//! 1.3 schema with xmllint; the cuts (`kinds`, windows, `min_weight`, `min_degree`, `top`, `core`,
//! `ego`) compared with what NetworkX computes from the interactions themselves.
//!
//! Needs `python3` with `networkx` and `igraph`, `xmllint` (libxml2-utils) and the recorded fixtures;
//! without them these tests say SKIPPED and pass, except with `CI=true`, where they fail.

mod common;

use common::app::{assert_error, python_has, reference, spawn_app, spawn_app_at, TestApp};
use common::browser::on_path;
use common::fixtures::fixtures;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use tagflow::graph::{Kind, Mutation};
use tagflow::ingest::decode::x_v2;
use tagflow::ingest::source::to_mutation;
use tagflow::rng::SplitMix64;

const KINDS: [&str; 5] = ["repost", "reply", "quote", "mention", "manual"];

/// What the tests need besides the crate: `None` (and a visible skip) when something is missing.
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let fixtures = fixtures(test)?;
    if !python_has(&["networkx", "igraph"], test) {
        return None;
    }
    match on_path("xmllint") {
        Some(xmllint) => Some((fixtures, xmllint)),
        None => {
            common::skip::skip(test, "xmllint", "apt-get install libxml2-utils");
            None
        }
    }
}

/// Three recorded X search pages (real users, handles, names and times) through the real decoder,
/// and users whose names are hostile to every format: markup, a spreadsheet formula, quotes and
/// separators in a key.
fn recorded(fixtures: &Path) -> Vec<Mutation> {
    let mut m = Vec::new();
    for page in ["noflat.jsonl", "brexit.jsonl", "kpop.jsonl"] {
        let text = std::fs::read_to_string(fixtures.join("x-v2").join(page)).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            m.extend(x_v2::decode(line.as_bytes()).unwrap().into_iter().filter_map(to_mutation));
        }
    }
    m.push(Mutation::AddUser {
        key: "evil \"one\", with commas".into(),
        handle: Some("<img src=x onerror=alert(1)>".into()),
        name: Some("=HYPERLINK(\"http://example.com\",\"click\") & 'more' <b>".into()),
    });
    for (at, kind) in
        [(1_617_278_400, Kind::Manual), (1_617_278_460, Kind::Mention), (1_617_278_460, Kind::Manual)]
    {
        m.push(Mutation::AddInteraction {
            from: "evil \"one\", with commas".into(),
            to: "-plain".into(),
            kind,
            at,
        });
    }
    m
}

async fn submit(app: &TestApp, mutations: Vec<Mutation>) {
    for chunk in mutations.chunks(500) {
        app.store.submit(chunk.to_vec()).await.unwrap();
    }
}

/// Downloads an export: status, headers, the body (gunzipped when the server gzipped it).
async fn download(app: &TestApp, query: &str, gzip: bool) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.client.get(format!("{}/export?{query}", app.addr));
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let raw = resp.bytes().await.unwrap().to_vec();
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        raw
    };
    (status, headers, body)
}

fn python(job: &Value) -> Value {
    reference("nx_export.py", job)
}

fn xmllint_valid(xmllint: &Path, file: &Path) {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/gexf-1.3/gexf.xsd");
    let out = Command::new(xmllint).args(["--noout", "--schema", schema]).arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{} is not valid GEXF 1.3: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every edge as `/aristas` lists it, by (from, to).
async fn listed_edges(app: &TestApp) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app.get(&format!("/aristas?limit=1000{cursor}")).await;
        for e in page["edges"].as_array().unwrap() {
            out.insert((e["from"].as_str().unwrap().into(), e["to"].as_str().unwrap().into()), e.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Every user as `/vertices` lists it, by key.
async fn listed_users(app: &TestApp) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app.get(&format!("/vertices?limit=1000{cursor}")).await;
        for u in page["vertices"].as_array().unwrap() {
            out.insert(u["id"].as_str().unwrap().into(), u.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// What every format must say, worked out from the API's listings: users with an edge, with their
/// label, name, platform, degrees and strengths; edges with their weight, kinds, first and last.
fn expected(
    edges: &BTreeMap<(String, String), Value>,
    users: &BTreeMap<String, Value>,
) -> (BTreeMap<String, Value>, BTreeMap<(String, String), Value>) {
    let mut nodes: BTreeMap<String, Value> = BTreeMap::new();
    let mut deg: HashMap<String, [u64; 4]> = HashMap::new();
    for ((from, to), e) in edges {
        let w = e["total"].as_u64().unwrap();
        let d = deg.entry(from.clone()).or_default();
        d[1] += 1;
        d[3] += w;
        let d = deg.entry(to.clone()).or_default();
        d[0] += 1;
        d[2] += w;
    }
    for (key, [in_degree, out_degree, in_strength, out_strength]) in deg {
        let u = &users[&key];
        let mut attrs = json!({
            "label": u["handle"].as_str().unwrap_or(&key),
            "in_degree": in_degree, "out_degree": out_degree,
            "in_strength": in_strength, "out_strength": out_strength,
        });
        if let Some(name) = u["name"].as_str() {
            attrs["name"] = name.into();
        }
        if let Some((p, _)) = key.split_once(':').filter(|(p, _)| ["x", "mastodon", "bsky"].contains(p)) {
            attrs["platform"] = p.into();
        }
        nodes.insert(key, attrs);
    }
    let ties = edges
        .iter()
        .map(|(pair, e)| {
            let mut attrs = json!({
                "weight": e["total"], "first_seen": e["first_seen"], "last_seen": e["last_seen"],
            });
            for k in KINDS {
                attrs[k] = e["kinds"][k].as_u64().unwrap_or(0).into();
            }
            (pair.clone(), attrs)
        })
        .collect();
    (nodes, ties)
}

/// Compares one format, as Python read it, with the expectations; `neutralised` says the format
/// prefixes formula-like text with `'` (CSV).
#[track_caller]
fn same(
    format: &str,
    read: &Value,
    nodes: &BTreeMap<String, Value>,
    edges: &BTreeMap<(String, String), Value>,
    neutralised: bool,
) {
    // What a spreadsheet would run as a formula is written with a leading `'` in CSV.
    let text = |s: &str| match neutralised && s.starts_with(['=', '+', '-', '@']) {
        true => format!("'{s}"),
        false => s.to_string(),
    };
    let got: BTreeMap<String, Value> = serde_json::from_value(read["nodes"].clone()).unwrap();
    let want_keys: BTreeSet<String> = nodes.keys().map(|k| text(k)).collect();
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), want_keys, "{format}: the same users");
    for (key, want) in nodes {
        for (attr, v) in want.as_object().unwrap() {
            let v = v.as_str().map_or(v.clone(), |s| text(s).into());
            assert_eq!(got[&text(key)][attr], v, "{format}: {attr} of {key}");
        }
    }
    let list = read["edges"].as_array().unwrap();
    assert_eq!(list.len(), edges.len(), "{format}: as many edges");
    let raw =
        |s: &str| if neutralised { s.strip_prefix('\'').unwrap_or(s).to_string() } else { s.to_string() };
    for e in list {
        let pair = (raw(e[0].as_str().unwrap()), raw(e[1].as_str().unwrap()));
        let want =
            edges.get(&pair).unwrap_or_else(|| panic!("{format}: an edge {pair:?} the API does not list"));
        for (attr, v) in want.as_object().unwrap() {
            assert_eq!(e[2][attr], *v, "{format}: {attr} of {pair:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_reads_back_as_the_api_lists_the_graph() {
    let Some((fixtures, xmllint)) = tools("every_format_reads_back_as_the_api_lists_the_graph") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    submit(&app, recorded(&fixtures)).await;
    let (edges, users) = (listed_edges(&app).await, listed_users(&app).await);
    assert!(edges.len() > 300, "a graph worth checking ({} edges)", edges.len());
    let (want_nodes, want_edges) = expected(&edges, &users);

    let mut files = serde_json::Map::new();
    for (name, query, gzip) in [
        ("gexf", "format=gexf", true),
        ("graphml", "format=graphml", false),
        ("csv_nodes", "format=csv&table=nodes", false),
        ("csv_edges", "format=csv", true),
        ("graphology", "format=graphology", false),
    ] {
        let (status, headers, body) = download(&app, query, gzip).await;
        assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&body));
        assert_eq!(headers.get("content-encoding").is_some(), gzip, "{query}: gzip when accepted only");
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment; filename=\"tagflow-rustlang"), "{disposition}");
        let path = tmp.path().join(name);
        std::fs::write(&path, &body).unwrap();
        files.insert(name.into(), path.to_string_lossy().into());
    }
    xmllint_valid(&xmllint, Path::new(files["gexf"].as_str().unwrap()));
    let read = python(&json!({ "mode": "read", "files": files }));
    for format in ["gexf", "graphml", "igraph", "graphology"] {
        same(format, &read[format], &want_nodes, &want_edges, false);
    }
    same("csv", &read["csv"], &want_nodes, &want_edges, true);
    assert_eq!(read["igraph"]["directed"], true);

    // The GEXF's spells: each edge's distinct interaction times, from its first to its last.
    let spells: BTreeMap<String, Vec<String>> = serde_json::from_value(read["spells"].clone()).unwrap();
    assert_eq!(spells.len(), edges.len());
    for ((from, to), e) in &edges {
        let times = &spells[&format!("{from} {to}")];
        assert!(times.windows(2).all(|w| w[0] < w[1]), "distinct and ascending: {times:?}");
        assert_eq!(times.first().unwrap(), e["first_seen"].as_str().unwrap());
        assert_eq!(times.last().unwrap(), e["last_seen"].as_str().unwrap());
        assert!(times.len() as u64 <= e["total"].as_u64().unwrap());
    }
    assert_eq!(
        spells["evil \"one\", with commas -plain"],
        ["2021-04-01T12:00:00Z", "2021-04-01T12:01:00Z"],
        "three interactions in two distinct seconds"
    );

    // Metrics: the analytics routes' values, on every user.
    let (_, table) = app.get("/analytics/users?limit=10000&metrics=pagerank,core,community,component").await;
    let (_, _, body) =
        download(&app, "format=graphology&metrics=pagerank,community,core,component", false).await;
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let exported: HashMap<&str, &Value> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["key"].as_str().unwrap(), &n["attributes"]))
        .collect();
    let rows = table["users"].as_array().unwrap();
    assert_eq!(rows.len(), exported.len());
    for row in rows {
        let n = exported[row["id"].as_str().unwrap()];
        for m in ["pagerank", "core", "community", "component"] {
            assert_eq!(n[m], row[m], "{m} of {}", row["id"]);
        }
    }
    app.stop().await;
}

/// Interactions among 300 users over a day: heavy-tailed activity, every kind, repeated pairs.
fn generated() -> Vec<(String, String, &'static str, i64)> {
    let mut s = SplitMix64::new(17);
    let mut out = Vec::new();
    for _ in 0..4_000 {
        // Acting users skewed to the first ones, acted upon skewed likewise: hubs, and a long tail.
        let (ra, rb) = (s.below(300) + 1, s.below(300) + 1);
        let (a, b) = (s.below(ra), s.below(rb));
        if a == b {
            continue;
        }
        let kind = KINDS[s.below(5) as usize];
        out.push((format!("u{a}"), format!("u{b}"), kind, 1_700_000_000 + s.below(86_400) as i64));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_keep_what_networkx_keeps() {
    if !python_has(&["networkx", "igraph"], "cuts_keep_what_networkx_keeps") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let interactions = generated();
    let mutations = interactions
        .iter()
        .map(|(from, to, kind, at)| Mutation::AddInteraction {
            from: from.clone(),
            to: to.clone(),
            kind: Kind::parse(kind).unwrap(),
            at: *at,
        })
        .collect();
    submit(&app, mutations).await;
    let (since, until) = (1_700_020_000, 1_700_060_000);
    let requests = [
        (json!({}), String::new()),
        (json!({"kinds": ["repost", "reply"], "min_weight": 2}), "kinds=repost,reply&min_weight=2".into()),
        (json!({"since": since, "until": until}), format!("since={since}&until=2023-11-15T14:53:20Z")),
        (json!({"min_degree": 12}), "min_degree=12".into()),
        (json!({"core": 6}), "core=6".into()),
        (json!({"ego": "u40", "hops": 2, "kinds": ["mention"]}), "ego=u40&hops=2&kinds=mention".into()),
        (json!({"ego": "u3"}), "ego=u3".into()),
        (
            json!({"kinds": ["repost", "mention"], "since": since, "core": 3, "min_degree": 4}),
            format!("kinds=repost,mention&since={since}&core=3&min_degree=4"),
        ),
        (json!({"top": 25}), "top=25".into()),
    ];
    assert_eq!(tagflow::graph::rfc3339(until), "2023-11-15T14:53:20Z");
    let expected = python(&json!({
        "mode": "cut",
        "interactions": interactions,
        "requests": requests.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
    }));
    let mut files = Vec::new();
    for (i, (_, query)) in requests.iter().enumerate() {
        let (status, _, body) = download(&app, &format!("format=graphml&{query}"), false).await;
        assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&body));
        let path = tmp.path().join(format!("cut{i}.graphml"));
        std::fs::write(&path, body).unwrap();
        files.push(path);
    }
    for (i, (r, query)) in requests.iter().enumerate() {
        let read = python(&json!({ "mode": "read", "files": { "graphml": files[i] } }));
        let got: BTreeSet<String> = read["graphml"]["nodes"].as_object().unwrap().keys().cloned().collect();
        let want = &expected[i];
        let all: BTreeMap<String, u64> = want["edges"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        if let Some(n) = r["top"].as_u64() {
            // The n users of highest degree: every user above the n-th's degree, then ties.
            let pool: HashMap<String, u64> = serde_json::from_value(want["top_pool"].clone()).unwrap();
            let mut degrees: Vec<u64> = pool.values().copied().collect();
            degrees.sort_unstable_by(|a, b| b.cmp(a));
            let nth = degrees[n as usize - 1];
            assert_eq!(got.len(), n as usize, "{query}");
            assert!(got.iter().all(|u| pool[u] >= nth), "{query}: only users as busy as the {n}th");
            assert!(
                pool.iter().filter(|(_, d)| **d > nth).all(|(u, _)| got.contains(u)),
                "{query}: every busier user"
            );
        } else {
            let want_nodes: BTreeSet<String> = serde_json::from_value(want["nodes"].clone()).unwrap();
            assert!(!want_nodes.is_empty(), "{query}: a cut worth checking");
            assert_eq!(got, want_nodes, "{query}: the users NetworkX keeps");
        }
        // Edges: exactly the selection's edges among the kept users, with their weights.
        let got_edges: BTreeMap<String, u64> = read["graphml"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    format!("{} {}", e[0].as_str().unwrap(), e[1].as_str().unwrap()),
                    e[2]["weight"].as_u64().unwrap(),
                )
            })
            .collect();
        let want_edges: BTreeMap<String, u64> = all
            .into_iter()
            .filter(|(k, _)| {
                let (a, b) = k.split_once(' ').unwrap();
                got.contains(a) && got.contains(b)
            })
            .collect();
        assert_eq!(got_edges, want_edges, "{query}: the edges among them");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exports_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    submit(
        &app,
        vec![Mutation::AddInteraction {
            from: "a".into(),
            to: "b".into(),
            kind: Kind::Reply,
            at: 1_700_000_000,
        }],
    )
    .await;
    for query in [
        "format=dot",
        "format=gexf&table=nodes",
        "format=csv&table=both",
        "hops=2",
        "ego=a&hops=4",
        "ego=",
        "top=0",
        "core=0",
        "min_degree=-1",
        "metrics=betweenness",
        "kinds=like",
        "since=yesterday",
        "min_weight=0",
        "damping=1",
        "algorithm=magic",
        "colour=red",
    ] {
        assert_error(&app.get(&format!("/export?{query}")).await, 400, "invalid_query");
    }
    assert_error(&app.get("/export?ego=nobody").await, 404, "user_not_found");
    // An ego outside the selection: an empty network, not an error.
    let (status, _, body) = download(&app, "format=graphology&ego=a&kinds=repost", false).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((doc["nodes"].as_array().unwrap().len(), doc["edges"].as_array().unwrap().len()), (0, 0));
    // HEAD says what the file would be without preparing it.
    let head = app
        .client
        .head(format!("{}/export?format=csv&table=nodes&since=2026-11-01T00:00:00Z", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-disposition"],
        "attachment; filename=\"tagflow-rustlang-20261101T000000Z--now-nodes.csv\""
    );
    assert_eq!(head.headers()["content-type"], "text/csv; charset=utf-8");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_mid_export_free_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    // 120,000 interactions: a GEXF of tens of megabytes, far more than the chunks in flight.
    let mut s = SplitMix64::new(3);
    let mutations: Vec<Mutation> = (0..120_000)
        .map(|i| Mutation::AddInteraction {
            from: format!("u{}", s.below(20_000)),
            to: format!("u{}", s.below(20_000)),
            kind: Kind::ALL[i % 4],
            at: 1_700_000_000 + i as i64,
        })
        .collect();
    submit(&app, mutations).await;
    for _ in 0..(3 * tagflow::http::EXPORTS_AT_ONCE) {
        let mut resp = app.client.get(format!("{}/export?format=gexf", app.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let first = resp.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"<?xml"));
        drop(resp);
    }
    // Every writer notices its client is gone and gives its place back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, _, body) = download(&app, "format=csv&table=nodes", false).await;
        if status == 200 {
            assert!(body.starts_with(b"Id,Label,"));
            break;
        }
        assert_eq!(status, 503, "busy, or done");
        assert!(std::time::Instant::now() < deadline, "exports of clients long gone still hold their places");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_writes_what_the_route_serves() {
    let Some((fixtures, xmllint)) = tools("the_command_writes_what_the_route_serves") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let app = spawn_app_at(&data).await;
    submit(&app, recorded(&fixtures)).await;
    let query = "kinds=repost,mention&metrics=pagerank,community";
    let (_, _, nodes) = download(&app, &format!("format=csv&table=nodes&{query}"), false).await;
    let (_, _, edges) = download(&app, &format!("format=csv&{query}"), true).await;
    app.stop().await;

    let tagflow = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tagflow"))
            .arg("export")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let out_nodes = tmp.path().join("nodes.csv");
    let out = tagflow(&[
        "--format",
        "csv",
        "--table",
        "nodes",
        "--kinds",
        "repost,mention",
        "--metrics",
        "pagerank,community",
        "--out",
        out_nodes.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote "), "says what it wrote");
    assert_eq!(std::fs::read(&out_nodes).unwrap(), nodes, "the same nodes table as the route");
    let out = tagflow(&["--format", "csv", "--kinds", "repost,mention", "--out", "-", "--quiet"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, edges, "the same edges table as the route, on standard output");

    let gexf = tmp.path().join("graph.gexf.gz");
    let out = tagflow(&["--format", "gexf", "--core", "2", "--out", gexf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut xml = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gexf).unwrap()).read_to_end(&mut xml).unwrap();
    let plain = tmp.path().join("graph.gexf");
    std::fs::write(&plain, &xml).unwrap();
    xmllint_valid(&xmllint, &plain);
    assert!(String::from_utf8_lossy(&xml).contains("core=2"), "the file says what it holds");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "no partial file left behind");

    let missing = tmp.path().join("never.gexf");
    let out = tagflow(&["--ego", "@nobody-at-all", "--out", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody-at-all"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!missing.exists() && !tmp.path().join("never.gexf.partial").exists());
    let out = tagflow(&["--format", "pdf", "--out", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("format must be one of"));
}
