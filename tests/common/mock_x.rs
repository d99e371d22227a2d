//! A mock of the X API v2 on 127.0.0.1:0, speaking HTTP/1.1 by hand so that a test controls every
//! byte of a stream: where chunks end, keep-alives, silences, closes. Each request is recorded (method,
//! path, query, headers, body, arrival time on the tokio clock) and answered by the test's handler.
//! Every response closes its connection, so each request of the client is a new connection.

use reqwest::Url;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request was complete (tokio clock: paused-time tests read exact intervals).
    pub at: Instant,
    /// How many earlier requests had the same method and path.
    pub nth: usize,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `METHOD /path`.
    pub fn route(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response with a `content-length`.
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// `200` with a chunked body played step by step.
    Stream(Vec<Step>),
}

/// One step of a streamed body.
#[derive(Debug, Clone)]
pub enum Step {
    /// One HTTP chunk with these bytes, flushed at once.
    Send(Vec<u8>),
    /// Silence for a while.
    Pause(Duration),
    /// Silence until the client goes away (or the mock is dropped).
    Hold,
    /// The terminating chunk: a clean end of the body.
    End,
}

impl Reply {
    pub fn json(status: u16, body: impl ToString) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A running mock; stops (closing every connection) when dropped.
pub struct MockX {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    accept: JoinHandle<()>,
}

impl MockX {
    /// Listens on 127.0.0.1:0 and answers every request with `handler`.
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> MockX {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let url = format!("http://{}", listener.local_addr().expect("mock address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = requests.clone();
        let accept = tokio::spawn(async move {
            // Owned here: aborting the accept task drops the set, which aborts every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        connections.spawn(serve(socket, handler.clone(), log.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        MockX { url, requests, accept }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests to one `METHOD /path`, in order.
    pub fn requests_to(&self, route: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.route() == route).collect()
    }

    /// Waits (bounded) until at least `n` requests went to `route`; false on timeout.
    pub async fn wait_for(&self, route: &str, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.requests_to(route).len() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for MockX {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(mut socket: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Request>>>) {
    let Some(mut request) = read_request(&mut socket).await else { return };
    {
        let mut log = log.lock().unwrap();
        request.nth = log.iter().filter(|r| r.method == request.method && r.path == request.path).count();
        log.push(request.clone());
    }
    match handler(&request) {
        Reply::Full { status, headers, body } => {
            let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (k, v) in &headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            let _ = socket.flush().await;
            let _ = socket.shutdown().await;
        }
        Reply::Stream(steps) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n\
                        transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for step in steps {
                match step {
                    Step::Send(bytes) => {
                        if bytes.is_empty() {
                            continue;
                        }
                        let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
                        chunk.extend_from_slice(&bytes);
                        chunk.extend_from_slice(b"\r\n");
                        if socket.write_all(&chunk).await.is_err() || socket.flush().await.is_err() {
                            return;
                        }
                    }
                    Step::Pause(d) => tokio::time::sleep(d).await,
                    Step::Hold => {
                        // The client sends nothing more: a read returns only when it closes.
                        let mut buf = [0u8; 256];
                        while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                        return;
                    }
                    Step::End => {
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                        let _ = socket.flush().await;
                        let _ = socket.shutdown().await;
                        return;
                    }
                }
            }
        }
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    let url = Url::parse(&format!("http://mock{target}")).ok()?;
    Some(Request {
        method,
        path: url.path().to_string(),
        query: url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
        headers,
        body,
        at: Instant::now(),
        nth: 0,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

// ---- payload helpers ----

/// The non-blank lines of an NDJSON fixture, without their line ends.
pub fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|&b| b == b'\n').map(|l| l.trim_ascii().to_vec()).filter(|l| !l.is_empty()).collect()
}

/// Stream framing: each line ends in `\r\n`, and a bare `\r\n` keep-alive follows every
/// `keepalive_every`-th line (0: none).
pub fn framed(lines: &[Vec<u8>], keepalive_every: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if keepalive_every > 0 && (i + 1) % keepalive_every == 0 {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Cuts `bytes` into chunks at `pieces - 1` pseudo-random points (seeded: a failure replays), as a
/// network would: inside lines, between `\r` and `\n`, inside UTF-8 characters.
pub fn cut(bytes: &[u8], pieces: usize, seed: u64) -> Vec<Step> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut points: Vec<usize> = (1..pieces.max(1))
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % bytes.len().max(1) as u64) as usize
        })
        .collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| Step::Send(bytes[w[0]..w[1]].to_vec())).collect()
}

/// `GET .../rules` answer listing `(id, value, tag)` rules.
pub fn rules_list(rules: &[(&str, &str, &str)]) -> Value {
    if rules.is_empty() {
        return json!({ "meta": { "sent": "2024-01-01T00:00:00.000Z", "result_count": 0 } });
    }
    let data: Vec<Value> =
        rules.iter().map(|(id, value, tag)| json!({ "id": id, "value": value, "tag": tag })).collect();
    json!({ "data": data, "meta": { "sent": "2024-01-01T00:00:00.000Z", "result_count": rules.len() } })
}

/// An empty recent-search page.
pub fn empty_page() -> Value {
    json!({ "meta": { "result_count": 0 } })
}

/// A recorded search page with its `meta.next_token` replaced (`None` removes it: the last page).
pub fn rechained(page: &[u8], next_token: Option<&str>) -> Value {
    let mut v: Value = serde_json::from_slice(page.trim_ascii()).expect("a search page is JSON");
    let meta = v["meta"].as_object_mut().expect("a search page has meta");
    match next_token {
        Some(t) => meta.insert("next_token".into(), json!(t)),
        None => meta.remove("next_token"),
    };
    v
}

/// Builds a recent-search page from filtered-stream lines: `data` collects their tweets and
/// `includes` their users and tweets (as the search endpoint would have returned them).
pub fn page_of_stream_lines(lines: &[Vec<u8>]) -> Value {
    let mut data = Vec::new();
    let mut users = Vec::new();
    let mut tweets = Vec::new();
    for line in lines {
        let v: Value = serde_json::from_slice(line).expect("a stream line is JSON");
        if v.get("data").is_none() {
            continue;
        }
        data.push(v["data"].clone());
        users.extend(v["includes"]["users"].as_array().cloned().unwrap_or_default());
        tweets.extend(v["includes"]["tweets"].as_array().cloned().unwrap_or_default());
    }
    let count = data.len();
    json!({ "data": data, "includes": { "users": users, "tweets": tweets }, "meta": { "result_count": count } })
}
