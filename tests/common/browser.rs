//! A real browser for the pages' tests: headless chromium, offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where `program` is on `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Headless, and offline: background services are off and every host name but 127.0.0.1 fails to
/// resolve, so no request leaves the machine.
const OFFLINE: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--hide-scrollbars",
];

/// Runs headless chromium on `url` with `extra` flags, stdout to a file; returns stdout. Bounded: a
/// browser that hangs is killed and fails the test. No request leaves the machine: background
/// services are off and every host name but 127.0.0.1 fails to resolve.
pub fn chromium(bin: &Path, profile: &Path, url: &str, extra: &[String]) -> String {
    let out_path = profile.with_extension("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let mut child = Command::new(bin)
        .args(OFFLINE)
        .args(["--virtual-time-budget=5000", "--window-size=1280,900"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium failed: {status}");
    std::fs::read_to_string(&out_path).expect("chromium stdout")
}

/// A page in headless chromium driven over the DevTools protocol: evaluate script, click, read
/// the console's errors, download, take screenshots. Offline as [`chromium`] is; killed on drop.
pub struct Page {
    child: std::process::Child,
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next: u64,
    /// Errors the page reported: uncaught exceptions, `console.error`, failed loads.
    pub errors: Vec<String>,
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page {
    /// Starts chromium on a blank page (`width` × `height`) and opens `url` in it.
    pub async fn open(bin: &Path, profile: &Path, url: &str, width: u32, height: u32) -> Page {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .args(OFFLINE)
            .args(["--remote-debugging-port=0", "--remote-allow-origins=*"])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..." on stderr.
        let stderr = child.stderr.take().expect("stderr");
        let port = tokio::task::spawn_blocking(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
                }
            }
            None
        });
        let port = tokio::time::timeout(Duration::from_secs(60), port)
            .await
            .expect("chromium's DevTools within 60 s")
            .unwrap()
            .expect("chromium announced its DevTools port");
        let targets: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await.unwrap().json().await.unwrap();
        let ws_url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("DevTools websocket");
        let mut page = Page { child, ws, next: 0, errors: Vec::new() };
        for domain in ["Runtime.enable", "Page.enable", "Log.enable"] {
            page.call(domain, serde_json::json!({})).await;
        }
        page.call("Page.navigate", serde_json::json!({ "url": url })).await;
        page
    }

    /// Sends a command and waits for its answer, noting the errors the events report meanwhile.
    pub async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next += 1;
        let id = self.next;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::Text(msg.to_string().into())).await.expect("send to DevTools");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("DevTools did not answer {method} within 60 s"))
                .expect("DevTools open")
                .expect("DevTools frame");
            let Message::Text(text) = frame else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
            self.note(&v);
        }
    }

    fn note(&mut self, event: &serde_json::Value) {
        let p = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                self.errors.push(format!("exception: {}", p["exceptionDetails"]))
            }
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                self.errors.push(format!("console.error: {}", p["args"]))
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", p["entry"]["text"]))
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let params =
            serde_json::json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let r = self.call("Runtime.evaluate", params).await;
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (its value), or panics after `seconds`. Until
    /// then an exception counts as falsy (the page may not be loaded yet).
    pub async fn wait_for(&mut self, expression: &str, seconds: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let params =
                serde_json::json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
            let r = self.call("Runtime.evaluate", params).await;
            let v = if r.get("exceptionDetails").is_some() {
                serde_json::Value::Null
            } else {
                r["result"]["value"].clone()
            };
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(Instant::now() < deadline, "still falsy after {seconds} s: {expression}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Clicks at a point of the page, as a mouse would.
    pub async fn click(&mut self, x: f64, y: f64) {
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let params =
                serde_json::json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 });
            self.call("Input.dispatchMouseEvent", params).await;
        }
    }

    /// Lets downloads go to `dir`.
    pub async fn downloads_to(&mut self, dir: &Path) {
        let params = serde_json::json!({ "behavior": "allow", "downloadPath": dir.to_string_lossy() });
        self.call("Page.setDownloadBehavior", params).await;
    }

    /// A PNG of what the page shows.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", serde_json::json!({ "format": "png" })).await;
        base64(r["data"].as_str().expect("screenshot data"))
    }
}

/// Decodes standard base64 (what DevTools sends screenshots in).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
