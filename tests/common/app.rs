//! A real server on 127.0.0.1:0 with its own temporary data directory, and a small typed client.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tagflow::app::{Application, StopHandle};
use tagflow::config::Config;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub addr: String,
    pub client: reqwest::Client,
    pub dir: PathBuf,
    /// The running service's store: for tests that load data faster than HTTP would.
    pub store: tagflow::store::StoreHandle,
    stop: StopHandle,
    join: JoinHandle<anyhow::Result<()>>,
}

/// Starts a server on a fresh temporary data directory (kept in `tmp`).
pub async fn spawn_app(tmp: &tempfile::TempDir) -> TestApp {
    spawn_app_with(Config::for_tests(tmp.path())).await
}

/// Starts a server on an existing data directory (a restart).
pub async fn spawn_app_at(dir: &Path) -> TestApp {
    spawn_app_with(Config::for_tests(dir)).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = config.data_dir.clone();
    let app = Application::build(config).await.expect("application builds");
    let addr = format!("http://127.0.0.1:{}", app.port());
    let stop = app.stop_handle();
    let store = app.store().clone();
    let join = tokio::spawn(app.run_until_stopped());
    TestApp { addr, client: reqwest::Client::new(), dir, store, stop, join }
}

impl TestApp {
    /// Stops gracefully (as SIGTERM does) and waits until the store is flushed and closed.
    pub async fn stop(self) {
        let TestApp { stop, join, store, .. } = self;
        // Our handle too must go, or the service waits for it before releasing the data directory.
        drop(store);
        stop.stop();
        join.await.expect("server task").expect("server stopped cleanly");
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.addr));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: body is not JSON: {text:?}"))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }
}

/// Asserts a JSON error response with the given status and stable code.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "status of {:?}", got.1);
    assert_eq!(got.1["error"]["code"], code, "code of {:?}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "message of {:?}", got.1);
}

/// Percent-encodes a user key for a path segment.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs a script of `tests/reference/` (an independent reference: NetworkX, igraph) with `input`
/// as JSON on its standard input; its JSON answer.
pub fn reference(script: &str, input: &Value) -> Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(script);
    let mut child =
        Command::new("python3").arg(path).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "tests/reference/{script} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether python3 with networkx is here for the reference checks (see [`python_has`]).
pub fn networkx_available() -> bool {
    python_has(&["networkx", "scipy"], "networkx reference checks")
}

/// Whether python3 can import `modules`; when not, the test is skipped (see [`super::skip::skip`]).
pub fn python_has(modules: &[&str], for_what: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {}", modules.join(", "))])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        super::skip::skip(
            for_what,
            &format!("python3 with {}", modules.join(", ")),
            "pip install -r .ci/test-requirements.txt",
        );
    }
    ok
}
