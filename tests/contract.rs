//! The API contract: the OpenAPI document the service generates, checked against the service itself
//! by schemathesis (every check, stateful links included, with a write token), and the page that
//! presents it.

mod common;

use common::app::spawn_app;
use common::browser::{chromium, on_path};
use common::process::start;
use common::skip::skip;
use std::process::Command;

/// schemathesis drives the real binary: every operation with examples, boundary values, random and
/// invalid inputs, then stateful sequences along the document's links (create a user, read it,
/// list its edges, delete it). Any server error, undocumented status, response off its schema,
/// accepted invalid input or refused valid input fails the test. The demo source runs meanwhile, so
/// the analyses have a network to work on.
#[test]
fn schemathesis_finds_the_service_true_to_its_contract() {
    let version = Command::new("schemathesis").arg("--version").output();
    if !version.as_ref().is_ok_and(|o| o.status.success()) {
        skip(
            "schemathesis_finds_the_service_true_to_its_contract",
            "schemathesis",
            "pip install -r .ci/test-requirements.txt",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        // Rate limits have tests of their own (tests/limits.rs); here they would only turn the
        // fuzzer's requests into 429s that test nothing.
        &["--demo", "--demo-rate", "20", "--rate-limit-reads", "0", "--rate-limit-writes", "0"],
        &[("TAGFLOW_API_TOKEN", "contract-token")],
    );
    // Some users and interactions before the first request.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let out = Command::new("schemathesis")
        .args(["--config-file", config, "run", &server.url("/openapi.json")])
        // One worker: with two, Python 3.11's `ast.parse` (which hypothesis calls to describe its
        // filters) can fail in one thread while another parses ("AST constructor recursion depth
        // mismatch"), a tool error that fails the run with every case passed.
        .args(["--checks", "all", "--workers", "1", "--max-failures", "20"])
        .args(["--header", "Authorization: Bearer contract-token"])
        // Responses that never end (the live streams) cannot be checked by a fuzzer that waits for
        // whole responses: tests/stream.rs checks them, their refusals included.
        .args(["--exclude-path-regex", "^/stream/"])
        .env("NO_COLOR", "1")
        // It keeps a cache of its own in the working directory: not in the checkout.
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    let summary = report.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>();
    assert!(
        out.status.success(),
        "schemathesis found the service off its contract:\n{report}\n{}\nserver log (last lines):\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log.lock().unwrap().iter().rev().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    // The number of cases it ran, for the record (the test output shows it with --nocapture).
    let cases = report.lines().find(|l| l.contains(" generated,")).unwrap_or("").trim().to_string();
    println!("schemathesis: {cases}");
    assert!(
        report.contains("Stateful") && !report.contains("No tests were run"),
        "every phase must run, stateful included:\n{}",
        summary.join("\n")
    );
    let generated: u64 = cases.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(generated >= 1000, "schemathesis ran only {generated} cases:\n{}", summary.join("\n"));
    assert!(
        !server.log.lock().unwrap().iter().any(|l| l.contains("panicked")),
        "the server panicked under schemathesis"
    );
}

/// `/openapi.json` is the document, `/docs` the page that reads it, offline and unframeable.
#[actix_web::test]
async fn the_contract_and_its_page_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/vertices", "/aristas/{from}/{to}", "/analytics/communities", "/vertices/cuenta_vertices"] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    let r = app.client.get(format!("{}/docs", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains("/openapi.json"), "the page reads the document");
    for outside in ["http://", "https://", "//cdn", "<link"] {
        assert!(!html.contains(outside), "the page loads something from elsewhere: {outside}");
    }
    app.stop().await;
}

/// `/docs` in a real browser, offline: it reads the document and presents every operation (each
/// as a section named by its operation id) and every schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_presents_every_operation_in_a_real_browser() {
    let Some(bin) = on_path("chromium") else {
        skip("the browser test of /docs", "chromium", "apt-get install -y chromium");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let (_, doc) = app.get("/openapi.json").await;
    let url = format!("{}/docs", app.addr);
    let profile = tmp.path().join("profile");
    let dom =
        tokio::task::spawn_blocking(move || chromium(&bin, &profile, &url, &["--dump-dom".to_string()]))
            .await
            .unwrap();
    assert!(dom.contains("<div id=\"error\"></div>"), "the page could not read /openapi.json");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(dom.contains(&format!("id=\"{id}\"")), "{method} {path} ({id}) is not on the page");
            operations += 1;
        }
    }
    assert!(operations > 30, "{operations} operations");
    for schema in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(dom.contains(&format!("id=\"schema-{schema}\"")), "schema {schema} is not on the page");
    }
    assert!(dom.contains("needs a token"), "writes say they need a token");
    app.stop().await;
}
