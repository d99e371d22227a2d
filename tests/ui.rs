//! The page: `GET /graph` (the subgraph it draws) exactly on a small graph built through the API,
//! `GET /ui` served self-contained, and, when `chromium` is installed, the page run in a real
//! headless browser: a screenshot, and the DOM its script filled in.

mod common;

use common::app::{assert_error, spawn_app, TestApp};
use common::browser::{chromium, on_path};
use serde_json::{json, Value};

/// Degrees: ana 4 (in 2, out 2), ben 3, cid 2, dan 2, eve 1.
async fn small_graph(app: &TestApp) {
    let (s, body) = app.post("/vertices", r#"{"id":"ana","handle":"ana_h","name":"Ana A."}"#).await;
    assert_eq!(s, 201, "{body}");
    let edges = [
        ("ana", "ben", "repost", 2),
        ("ana", "ben", "reply", 1),
        ("ben", "ana", "mention", 1),
        ("ana", "cid", "quote", 2),
        ("cid", "ben", "manual", 1),
        ("dan", "ana", "mention", 1),
        ("eve", "dan", "repost", 5),
    ];
    for (from, to, kind, times) in edges {
        for _ in 0..times {
            let body = json!({ "from": from, "to": to, "kind": kind }).to_string();
            let (s, got) = app.post("/aristas", &body).await;
            assert_eq!(s, 201, "{from}->{to}: {got}");
        }
    }
}

fn ids(body: &Value) -> Vec<&str> {
    body["nodes"].as_array().expect("nodes").iter().map(|n| n["id"].as_str().expect("id")).collect()
}

/// The edges as a set of (from, to, total, kinds), so that the test does not pin an order the API
/// leaves to the heaviest-first rule.
fn edge_set(body: &Value) -> Vec<(String, String, u64, Value)> {
    let mut edges: Vec<_> = body["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().expect(k).to_string();
            (s("from"), s("to"), e["total"].as_u64().expect("total"), e["kinds"].clone())
        })
        .collect();
    edges.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    edges
}

fn e(from: &str, to: &str, total: u64, kinds: Value) -> (String, String, u64, Value) {
    (from.to_string(), to.to_string(), total, kinds)
}

#[tokio::test]
async fn graph_returns_the_top_users_and_only_the_edges_among_them() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    small_graph(&app).await;

    let (s, body) = app.get("/graph?top=3").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ids(&body), ["ana", "ben", "cid"], "by degree, ties by key (cid before dan)");
    assert_eq!(
        body["nodes"][0],
        json!({"id": "ana", "handle": "ana_h", "name": "Ana A.", "degree": 4, "in_degree": 2, "out_degree": 2})
    );
    assert_eq!((body["users"].as_u64(), body["edges_total"].as_u64()), (Some(5), Some(6)));
    assert_eq!(
        edge_set(&body),
        [
            e("ana", "ben", 3, json!({"repost": 2, "reply": 1})),
            e("ana", "cid", 2, json!({"quote": 2})),
            e("ben", "ana", 1, json!({"mention": 1})),
            e("cid", "ben", 1, json!({"manual": 1})),
        ],
        "edges touching dan or eve are left out, even eve->dan, the heaviest"
    );
    assert_eq!(body["edges"][0]["total"], 3, "heaviest first");

    let (_, body) = app.get("/graph?top=3&min_weight=2").await;
    assert_eq!(
        edge_set(&body),
        [e("ana", "ben", 3, json!({"repost": 2, "reply": 1})), e("ana", "cid", 2, json!({"quote": 2}))],
        "min_weight keeps edges of at least that total"
    );

    let (s, body) = app.get("/graph").await;
    assert_eq!(s, 200);
    assert_eq!(ids(&body), ["ana", "ben", "cid", "dan", "eve"], "top defaults to 100: everyone here");
    assert_eq!(body["edges"].as_array().map(Vec::len), Some(6));
    let heaviest = &body["edges"][0];
    assert_eq!(
        [&heaviest["from"], &heaviest["to"], &heaviest["total"], &heaviest["kinds"]],
        [&json!("eve"), &json!("dan"), &json!(5), &json!({"repost": 5})]
    );
    assert!(heaviest["first_seen"].is_string() && heaviest["last_seen"].is_string(), "{heaviest}");
    assert_eq!(app.get("/graph?top=500&min_weight=6").await.1["edges"], json!([]));

    // A picture has room for so many edges: the heaviest are kept, and the answer says how many
    // there were.
    let (_, body) = app.get("/graph?top=3&max_edges=2").await;
    assert_eq!(
        edge_set(&body),
        [e("ana", "ben", 3, json!({"repost": 2, "reply": 1})), e("ana", "cid", 2, json!({"quote": 2}))]
    );
    assert_eq!(body["edges_among"], 4);
    let (_, body) = app.get("/graph?top=3&max_edges=2&kinds=repost,reply,quote,mention,manual").await;
    assert_eq!((body["edges"].as_array().map(Vec::len), body["edges_among"].as_u64()), (Some(2), Some(4)));
    app.stop().await;
}

#[tokio::test]
async fn graph_refuses_bad_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    for (query, why) in [
        ("top=0", "top below 1"),
        ("top=501", "top above 500"),
        ("top=100000", "top far above 500"),
        ("top=abc", "top not a number"),
        ("top=-1", "top negative"),
        ("min_weight=heavy", "min_weight not a number"),
        ("max_edges=20001", "max_edges above 20,000"),
        ("max_edges=-1", "max_edges negative"),
        ("depth=2", "unknown parameter"),
    ] {
        let got = app.get(&format!("/graph?{query}")).await;
        assert_eq!(got.0, 400, "{why}: {:?}", got.1);
        assert_error(&got, 400, "invalid_query");
    }
    assert_eq!(app.get("/graph?top=500").await.0, 200);
    assert_error(&app.post_empty("/graph").await, 405, "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn ui_is_one_self_contained_html_page_and_status_points_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let resp = app.client.get(format!("{}/ui", app.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    let csp = header("content-security-policy").expect("a content security policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<script>") && html.contains("/graph?top="), "the script is inline");
    let lower = html.to_lowercase();
    for external in ["http://", "https://", "//cdn", "<script src", "<link rel=\"stylesheet\"", "@import"] {
        assert!(!lower.contains(external), "the page must work offline, found {external:?}");
    }
    assert!(
        !html.contains("innerHTML") && !html.contains("outerHTML"),
        "text from the API is never parsed as HTML"
    );

    for path in ["/status", "/"] {
        let (s, body) = app.get(path).await;
        assert_eq!(
            (s.as_u16(), body["status"].as_str()),
            (200, Some("OK")),
            "{path} still answers API clients"
        );
        assert_eq!(body["ui"], "/ui", "{path} mentions the page");
    }
    assert_error(&app.post_empty("/ui").await, 405, "method_not_allowed");
    app.stop().await;
}

// ---- a real browser ----

/// 40 users with demo-style handles and names in four communities around a hub each, every kind of
/// interaction, plus one user whose handle and name are HTML.
async fn browser_graph(app: &TestApp) -> usize {
    use tagflow::ingest::demo::{display_name, username};
    let key = |u: u32| format!("x:{u}");
    for u in 1..=40u32 {
        let body = json!({ "id": key(u), "handle": username(u), "name": display_name(u) }).to_string();
        assert_eq!(app.post("/vertices", &body).await.0, 201);
    }
    let body = json!({"id": "evil", "handle": "<img src=x onerror=alert(1)>", "name": "<b>bold</b> & co"});
    assert_eq!(app.post("/vertices", &body.to_string()).await.0, 201);
    let kinds = ["repost", "reply", "quote", "mention", "manual"];
    let mut edges: Vec<(String, String, &str)> = Vec::new();
    for u in 5..=40u32 {
        let hub = 1 + u % 4;
        edges.push((key(u), key(hub), kinds[(u % 3) as usize]));
        edges.push((key(u), key(hub), "repost"));
        edges.push((key(u), key(5 + (u * 7) % 36), kinds[(u % 5) as usize]));
        if u % 6 == 0 {
            edges.push((key(u), key(1 + (u + 1) % 4), "mention"));
        }
    }
    for hub in 1..=4u32 {
        edges.push((key(hub), key(1 + hub % 4), "reply"));
        edges.push(("evil".into(), key(hub), "mention"));
        edges.push(("evil".into(), key(4 + hub), "quote"));
    }
    for (from, to, kind) in edges {
        if from == to {
            continue;
        }
        let body = json!({ "from": from, "to": to, "kind": kind }).to_string();
        assert_eq!(app.post("/aristas", &body).await.0, 201);
    }
    41
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_draws_the_graph_and_fills_the_counters_in_a_real_browser() {
    let Some(bin) = on_path("chromium") else {
        common::skip::skip("the browser test of /ui", "chromium", "apt-get install -y chromium");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let users = browser_graph(&app).await;
    assert_eq!(app.get("/status").await.1["users"], users);
    let url = format!("{}/ui", app.addr);
    let shots = tempfile::tempdir().unwrap();
    let png = shots.path().join("ui.png");

    let (b, u, p) = (bin.clone(), url.clone(), shots.path().join("profile-shot"));
    let flag = format!("--screenshot={}", png.display());
    tokio::task::spawn_blocking(move || chromium(&b, &p, &u, &[flag])).await.unwrap();
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // The page without its drawing (script removed) measures about 35 KB, with it about 250 KB.
    assert!(bytes.len() > 80_000, "a drawing, not a blank page: {} bytes", bytes.len());
    if let Some(keep) = std::env::var_os("TAGFLOW_UI_SCREENSHOT") {
        std::fs::copy(&png, &keep).expect("copy the screenshot");
    }

    let (b, u, p) = (bin, url, shots.path().join("profile-dom"));
    let dom =
        tokio::task::spawn_blocking(move || chromium(&b, &p, &u, &["--dump-dom".to_string()])).await.unwrap();
    let counter = |id: &str| {
        let start = dom.find(&format!("id=\"{id}\">")).map(|i| i + id.len() + 6)?;
        Some(dom[start..].split('<').next()?.to_string())
    };
    assert_eq!(counter("c-users").as_deref(), Some(users.to_string().as_str()), "users counter");
    let edges_total = app.get("/status").await.1["edges"].to_string();
    assert_eq!(counter("c-edges"), Some(edges_total), "edges counter");
    let memory = counter("c-memory").unwrap_or_default();
    let mb: f64 = memory.strip_suffix(" MB").unwrap_or("x").replace(',', "").parse().unwrap_or(0.0);
    assert!(mb >= 1.0, "the memory counter shows the service's MB: {memory:?}");
    assert!(dom.contains(&format!("showing {users} of {users} users")), "the drawing's caption");
    let edges = app.get("/graph").await.1["edges"].as_array().map_or(0, Vec::len);
    assert!(
        dom.contains(&format!("data-drawn=\"{users} users, {edges} edges\"")),
        "the canvas drew them all"
    );
    let hub = format!("@{}", tagflow::ingest::demo::username(1));
    assert!(dom.contains(&hub), "the top users table names {hub}");
    assert!(dom.contains("updated "), "the refresh finished without an error");
    // The hostile profile is shown as text (in the table), never parsed as markup.
    assert!(dom.contains("@&lt;img src=x onerror=alert(1)&gt;"), "the handle is escaped");
    assert!(dom.contains("&lt;b&gt;bold&lt;/b&gt; &amp; co"), "the name is escaped");
    assert!(!dom.contains("<img") && !dom.contains("<b>bold"), "no markup from the API");
    app.stop().await;
}
