//! `GET /metrics` read by the reference parser (`prometheus_client` from PyPI): it parses, and the
//! counters move with what the service does.

mod common;

use common::app::{python_has, spawn_app, TestApp};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;

/// Scrapes `/metrics` and parses it with `prometheus_client`: each sample as `name{labels}` -> value.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app.client.get(format!("{}/metrics", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference parser refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: HashMap<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed.into_iter().map(|(k, v)| (k, v.as_f64().unwrap())).collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| {
        let mut keys: Vec<_> =
            m.keys().filter(|k| k.starts_with(&key[..key.find('{').unwrap_or(key.len())])).collect();
        keys.sort();
        panic!("no sample {key}; samples of that name: {keys:?}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_reference_parser_and_the_counters_move() {
    if !python_has(&["prometheus_client"], "Prometheus parser check") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app(&tmp).await;
    let before = scrape(&app).await;
    assert_eq!(get(&before, "tagflow_users{}"), 0.0);

    assert_eq!(app.post_empty("/aristas/add/ana/bo").await.0, 201);
    assert_eq!(app.post_empty("/aristas/add/bo/cy").await.0, 201);
    assert_eq!(app.get("/vertices/nobody").await.0, 404);
    let v2 = r#"{"data":{"id":"7","text":"hi @b","author_id":"1","entities":{"mentions":[{"username":"b","id":"2"}]}},"includes":{"users":[{"id":"2","username":"b"}]}}"#;
    assert_eq!(app.post("/ingest", &format!("{v2}\n{v2}\n{{broken\n")).await.0, 200);

    let after = scrape(&app).await;
    assert_eq!(get(&after, "tagflow_users{}"), 5.0);
    assert_eq!(get(&after, "tagflow_edges{}"), 3.0);
    assert_eq!(get(&after, "tagflow_interactions{}"), 3.0);
    let adds = r#"tagflow_http_requests_total{method="POST",route="/aristas/add/{from}/{to}",status="201"}"#;
    assert_eq!(get(&after, adds), 2.0);
    assert_eq!(
        get(&after, r#"tagflow_http_requests_total{method="GET",route="/vertices/{user}",status="404"}"#),
        1.0
    );
    assert_eq!(
        get(&after, r#"tagflow_http_request_duration_seconds_count{method="GET",route="/metrics"}"#),
        1.0,
        "the first scrape was counted"
    );
    assert!(
        get(&after, "tagflow_store_commits_total{}") >= get(&before, "tagflow_store_commits_total{}") + 3.0
    );
    assert!(get(&after, "tagflow_store_commit_duration_seconds_count{}") >= 3.0);
    assert!(get(&after, "tagflow_store_flush_duration_seconds_count{}") >= 3.0);
    assert!(get(&after, r#"tagflow_store_commit_mutations_bucket{le="+Inf"}"#) >= 3.0);
    assert_eq!(get(&after, r#"tagflow_source_posts_total{source="ingest"}"#), 1.0);
    assert_eq!(get(&after, r#"tagflow_source_duplicates_total{source="ingest"}"#), 1.0);
    assert_eq!(get(&after, r#"tagflow_source_skipped_total{source="ingest"}"#), 1.0);
    assert_eq!(get(&after, r#"tagflow_source_state{source="ingest",state="streaming"}"#), 1.0);
    assert!(get(&after, "process_resident_memory_bytes{}") > 1e6);
    assert!(get(&after, "tagflow_store_bytes_on_disk{}") > 0.0);
    assert_eq!(get(&after, "tagflow_http_connections_refused_total{}"), 0.0);
    app.stop().await;
}

#[tokio::test]
async fn no_token_reaches_the_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = tagflow::config::Config::for_tests(tmp.path());
    config.access = tagflow::http::auth::Access::new(Some("s3cret-write".into()), Some("s3cret-read".into()));
    let app = common::app::spawn_app_with(config).await;
    let url = format!("{}/metrics", app.addr);
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        401,
        "metrics are data: a read token guards them"
    );
    let r = app
        .client
        .post(format!("{}/vertices/add/a", app.addr))
        .bearer_auth("s3cret-write")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let _ = app.client.get(&url).bearer_auth("wrong-s3cret").send().await.unwrap();
    let text = app.client.get(&url).bearer_auth("s3cret-read").send().await.unwrap().text().await.unwrap();
    assert!(text.contains("tagflow_users 1"), "{text}");
    assert!(!text.contains("s3cret"), "a token leaked into /metrics");
    app.stop().await;
}
