//! The page: `GET /graph` (the subgraph it draws) exactly on a small graph built through the API,
//! `GET /ui` served self-contained, and, when `chromium` is installed, the page run in a real
//! headless browser: a screenshot, and the DOM its script filled in.

mod common;

use common::app::{assert_error, spawn_app, TestApp};
use common::browser::{on_path, Page};
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
    assert!(html.contains("<script>") && html.contains("/export?format=graphology"), "the script is inline");
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

/// A demo campaign: `posts` posts of `users` users from the demo generator, through the real decoder.
async fn demo_campaign(app: &TestApp, users: u32, posts: usize) {
    use tagflow::ingest::decode::x_v2;
    use tagflow::ingest::demo::{DemoConfig, DemoGenerator};
    use tagflow::ingest::source::to_mutation;
    let mut generator = DemoGenerator::new(DemoConfig { users, seed: 7, ..DemoConfig::default() });
    let mutations: Vec<_> = (0..posts)
        .flat_map(|_| {
            let line = generator.next_line();
            x_v2::decode(line.as_bytes()).unwrap().into_iter().filter_map(to_mutation).collect::<Vec<_>>()
        })
        .collect();
    for chunk in mutations.chunks(1_000) {
        app.store.submit(chunk.to_vec()).await.unwrap();
    }
}

fn browser(test: &str) -> Option<std::path::PathBuf> {
    let bin = on_path("chromium");
    if bin.is_none() {
        common::skip::skip(test, "chromium", "apt-get install -y chromium");
    }
    bin
}

/// How many users and edges the page says it drew (`data-drawn`: "N users, M edges").
fn drawn(v: &Value) -> (u64, u64) {
    let s = v.as_str().unwrap_or_default();
    let mut n = s.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()).map(|t| t.parse().unwrap());
    (n.next().unwrap_or(0), n.next().unwrap_or(0))
}

/// Clicks a drawn user, as a reader would: where it is once the layout has settled (a refresh may
/// still nudge it, so a miss is tried again); waits until its details are shown.
async fn click_user(page: &mut Page, id: &str, handle: &str) {
    let shown = format!("document.querySelector('#details .name')?.textContent.includes({handle:?})");
    for _ in 0..5 {
        page.wait_for("sim.alpha <= 0.004", 60).await;
        let at = page.wait_for(&format!("tagflowPage.where({id:?})"), 30).await;
        page.click(at["x"].as_f64().unwrap(), at["y"].as_f64().unwrap()).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if page.eval(&shown).await == true {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    }
    panic!("clicking {id} never showed its details");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_shows_the_campaign_and_answers_clicks_in_a_real_browser() {
    let Some(bin) = browser("the browser test of /ui") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    demo_campaign(&app, 1_500, 4_000).await;
    let profile = tempfile::tempdir().unwrap();
    let mut page = Page::open(&bin, &profile.path().join("p"), &format!("{}/ui", app.addr), 1400, 950).await;
    page.wait_for("document.getElementById('updated').textContent.startsWith('updated ')", 60).await;

    // The drawing: the 300 busiest users, as the export of the same cut holds them.
    let (_, doc) = app.get("/export?format=graphology&top=300").await;
    let want = (doc["nodes"].as_array().unwrap().len() as u64, doc["edges"].as_array().unwrap().len() as u64);
    assert_eq!(
        drawn(&page.wait_for("canvas.dataset.drawn", 30).await),
        want,
        "the busiest 300 and their edges"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#legend li').length").await,
        8,
        "the communities' legend"
    );
    assert_eq!(page.eval("document.querySelectorAll('#top tr').length").await, 15, "the PageRank table");
    assert!(page.eval("Number(document.getElementById('chart').dataset.bars)").await.as_u64() > Some(10));
    // No busy account looks alone: the most acted-upon user is drawn with edges, or a "+N".
    let (_, top) = app.get("/vertices?sort=in_degree&limit=1").await;
    let star = top["vertices"][0]["id"].as_str().unwrap().to_string();
    let (drawn_edges, others) = serde_json::from_value::<(u64, u64)>(
        page.eval(&format!("(n => [n.drawn, n.others])(sim.nodes.get({star:?}))")).await,
    )
    .unwrap();
    assert!(
        drawn_edges + others == top["vertices"][0]["degree"].as_u64().unwrap() && drawn_edges > 0,
        "{star}"
    );

    // Filters change what is drawn: without reposts, the export of that selection.
    page.eval("document.querySelector('input[value=repost]').click()").await;
    let (_, doc) = app.get("/export?format=graphology&top=300&kinds=reply,quote,mention,manual").await;
    let want = (doc["nodes"].as_array().unwrap().len() as u64, doc["edges"].as_array().unwrap().len() as u64);
    let expr = format!("canvas.dataset.drawn === '{} users, {} edges'", want.0, want.1);
    page.wait_for(&expr, 30).await;
    page.eval("document.querySelector('input[value=repost]').click()").await;
    page.wait_for("document.getElementById('updated').textContent.startsWith('updated ')", 30).await;

    // A click on the most influential user opens it; its neighbourhood is one more click away.
    let (_, table) = app.get("/analytics/users?sort=pagerank&limit=1").await;
    let leader = table["users"][0]["id"].as_str().unwrap().to_string();
    let handle = table["users"][0]["handle"].as_str().unwrap().to_string();
    click_user(&mut page, &leader, &handle).await;
    let button = page
        .eval("(b => { b.scrollIntoView({block: 'center'}); const r = b.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })([...document.querySelectorAll('#details button')].find(b => b.textContent === 'Its neighbourhood'))")
        .await;
    page.click(button["x"].as_f64().unwrap(), button["y"].as_f64().unwrap()).await;
    page.wait_for(&format!("canvas.dataset.mode === 'ego:{leader}'"), 30).await;
    let (_, ego) = app.get(&format!("/vertices/{}/ego?hops=1&limit=500", common::app::enc(&leader))).await;
    let want = (ego["nodes"].as_array().unwrap().len() as u64, ego["edges"].as_array().unwrap().len() as u64);
    assert_eq!(drawn(&page.wait_for("canvas.dataset.drawn", 30).await), want, "its neighbourhood, drawn");

    // An export button downloads the neighbourhood, in a file that parses.
    let downloads = tempfile::tempdir().unwrap();
    page.downloads_to(downloads.path()).await;
    page.eval("[...document.querySelectorAll('a.export')].find(a => a.textContent === 'graphology').click()")
        .await;
    let file = loop {
        let done = std::fs::read_dir(downloads.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"));
        if let Some(f) = done {
            break f;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).expect("the download parses");
    assert_eq!(doc["nodes"].as_array().unwrap().len() as u64, want.0, "the download holds what is drawn");
    assert!(file.file_name().unwrap().to_string_lossy().starts_with("tagflow-rustlang"), "{file:?}");

    // Back to the overview, with a path between two leaders, for the README's picture.
    page.eval("document.getElementById('back').click(); window.scrollTo(0, 0)").await;
    page.wait_for("canvas.dataset.mode === 'overview'", 30).await;
    let (_, table) = app.get("/analytics/users?sort=pagerank&limit=12").await;
    let far = table["users"][11]["id"].as_str().unwrap();
    page.eval(&format!(
        "document.getElementById('path-a').value = {leader:?}; document.getElementById('path-b').value = {far:?}; \
         document.querySelector('#path-form button[type=submit]').click()"
    ))
    .await;
    page.wait_for("document.querySelectorAll('#path-out li').length > 0", 30).await;
    let hops = page.eval("document.querySelector('#path-out li').textContent").await;
    assert!(
        hops.as_str().unwrap().contains('→') || hops.as_str().unwrap().contains('←'),
        "a hop says its direction: {hops}"
    );
    click_user(&mut page, &leader, &handle).await;
    page.call("Input.dispatchMouseEvent", json!({ "type": "mouseMoved", "x": 5, "y": 5 })).await; // no tooltip
    tokio::time::sleep(std::time::Duration::from_secs(3)).await; // the layout settles
    let png = page.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 80_000, "a drawing, not a blank page");
    if let Some(keep) = std::env::var_os("TAGFLOW_UI_SCREENSHOT") {
        std::fs::write(keep, &png).expect("keep the screenshot");
    }
    assert!(page.errors.is_empty(), "the page reported errors: {:?}", page.errors);
    drop(page);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_the_api_is_shown_as_text_in_a_real_browser() {
    let Some(bin) = browser("the escaping test of /ui") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    browser_graph(&app).await;
    let profile = tempfile::tempdir().unwrap();
    let mut page = Page::open(&bin, &profile.path().join("p"), &format!("{}/ui", app.addr), 1280, 900).await;
    page.wait_for("document.getElementById('updated').textContent.startsWith('updated ')", 60).await;
    let (users, _) = drawn(&page.wait_for("canvas.dataset.drawn", 30).await);
    assert_eq!(users, 41, "every user with an edge");
    page.eval("select('evil')").await;
    page.wait_for("document.querySelector('#details .name')?.textContent.includes('onerror')", 30).await;
    let details = page.eval("document.getElementById('details').textContent").await;
    assert!(
        details.as_str().unwrap().contains("@<img src=x onerror=alert(1)>"),
        "the handle, as text: {details}"
    );
    assert!(details.as_str().unwrap().contains("<b>bold</b> & co"), "the name, as text");
    assert_eq!(page.eval("document.querySelectorAll('img, b').length").await, 0, "no markup from the API");
    assert!(page.errors.is_empty(), "the page reported errors: {:?}", page.errors);
    drop(page);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_draws_thousands_of_users() {
    let Some(bin) = browser("the browser test of /ui with 3,000 users") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    demo_campaign(&app, 8_000, 20_000).await;
    let profile = tempfile::tempdir().unwrap();
    let mut page = Page::open(&bin, &profile.path().join("p"), &format!("{}/ui", app.addr), 1400, 950).await;
    page.wait_for("document.getElementById('updated').textContent.startsWith('updated ')", 60).await;
    page.eval("document.getElementById('draw-n').value = 3000; document.getElementById('draw-n').dispatchEvent(new Event('change', {bubbles: true}))").await;
    let (_, doc) = app.get("/export?format=graphology&top=3000").await;
    let want = (doc["nodes"].as_array().unwrap().len() as u64, doc["edges"].as_array().unwrap().len() as u64);
    assert!(want.0 == 3_000, "a campaign with 3,000 users to draw");
    let expr = format!("canvas.dataset.drawn === '{} users, {} edges'", want.0, want.1);
    let started = std::time::Instant::now();
    page.wait_for(&expr, 60).await;
    // Frames while the layout runs: how smooth drawing this many is (printed, not judged: the
    // machine is shared).
    let frames = page
        .eval("new Promise(done => { const t = []; let last = performance.now(); const f = now => { t.push(now - last); last = now; if (t.length < 120) requestAnimationFrame(f); else done(t); }; requestAnimationFrame(f); })")
        .await;
    let mut ms: Vec<f64> = frames.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    ms.sort_by(f64::total_cmp);
    // One step of the layout and one drawing, timed in the page (the median of five).
    let parts = page
        .eval("(() => { const t = [], d = []; for (let i = 0; i < 5; i++) { let s = performance.now(); tick(); t.push(performance.now() - s); s = performance.now(); draw(); d.push(performance.now() - s); } const m = a => a.sort((x, y) => x - y)[2]; return [m(t), m(d)]; })()")
        .await;
    page.wait_for("sim.alpha <= 0.004", 180).await;
    println!(
        "ui: {} users and {} edges drawn; frame p50 {:.1} ms, p95 {:.1} ms while the layout ran (a layout step {:.1} ms, \
         a drawing {:.1} ms); settled {:.1} s after the request",
        want.0,
        want.1,
        ms[ms.len() / 2],
        ms[ms.len() * 95 / 100],
        parts[0].as_f64().unwrap_or(0.0),
        parts[1].as_f64().unwrap_or(0.0),
        started.elapsed().as_secs_f64()
    );
    assert!(page.errors.is_empty(), "the page reported errors: {:?}", page.errors);
    drop(page);
    app.stop().await;
}
