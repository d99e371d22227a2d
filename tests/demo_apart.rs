//! The demo never mixes made-up posts into real data: with no source configured, `tagflow serve`
//! runs it only on an empty directory (which it marks) or one it marked; `--demo` runs it anywhere.

mod common;

use common::process::{run_tagflow, start};
use std::time::Duration;

fn status(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { reqwest::get(url).await?.json().await }).expect("GET /status")
}

fn users(url: &str) -> u64 {
    status(url)["users"].as_u64().expect("users")
}

fn sources(url: &str) -> Vec<String> {
    let body = status(url);
    body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until the service has at least `n` users (the demo writes a few posts a second).
fn wait_users(url: &str, n: u64) -> u64 {
    for _ in 0..200 {
        let u = users(url);
        if u >= n {
            return u;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    users(url)
}

#[test]
fn the_default_demo_runs_only_on_its_own_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // An imported dataset: a file of recorded posts, loaded by `tagflow import`.
    let data = tmp.path().join("imported");
    let file = tmp.path().join("posts.ndjson");
    std::fs::write(
        &file,
        r#"{"data":{"id":"1","text":"RT @bo: hi #rustlang","author_id":"10","referenced_tweets":[{"type":"retweeted","id":"2"}],"entities":{"mentions":[{"username":"bo","id":"20"}]}},"includes":{"users":[{"id":"10","username":"ana","name":"Ana"},{"id":"20","username":"bo","name":"Bo"}]}}"#,
    )
    .unwrap();
    let (ok, out, err) = run_tagflow(&[
        "import".as_ref(),
        "--quiet".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        file.as_os_str(),
    ]);
    assert!(ok, "{out}{err}");
    // Served with no source configured: unchanged, no demo, and the log says why.
    let server = start(&data, &[], &[]);
    let before = users(&server.url("/status"));
    assert!(before >= 1, "the import's users: {before}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(users(&server.url("/status")), before, "no simulated users were added");
    assert!(!sources(&server.url("/status")).iter().any(|s| s == "demo"));
    let (_, log) = server.terminate(Duration::from_secs(10));
    assert!(log.iter().any(|l| l.contains("demo does not run on it by default")), "{log:?}");
    assert!(!data.join(tagflow::app::DEMO_MARKER).exists());
    // Asked for, the demo runs there anyway (and still does not claim the directory).
    let server = start(&data, &["--demo", "--demo-rate", "200"], &[]);
    assert!(wait_users(&server.url("/status"), before + 5) > before);
    server.terminate(Duration::from_secs(10));
    assert!(!data.join(tagflow::app::DEMO_MARKER).exists());

    // A new directory is the demo's: it runs by default, marks it, and carries on after a restart.
    let own = tmp.path().join("demo");
    let server = start(&own, &["--demo-rate", "200"], &[]);
    assert!(sources(&server.url("/status")).iter().any(|s| s == "demo"));
    let first = wait_users(&server.url("/status"), 5);
    server.terminate(Duration::from_secs(10));
    assert!(own.join(tagflow::app::DEMO_MARKER).exists());
    let server = start(&own, &["--demo-rate", "200"], &[]);
    assert!(wait_users(&server.url("/status"), first + 5) > first, "the demo carries on");
    server.terminate(Duration::from_secs(10));
}
