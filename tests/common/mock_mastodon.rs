//! A Mastodon instance on 127.0.0.1:0, speaking HTTP/1.1 by hand, for `tests/source_mastodon.rs`.
//!
//! Routes answer scripted [`Reply`]s in order (the last one repeats): recorded cassette responses with
//! their real status, headers and body ([`Reply::recorded`], with the recorded `http://localhost:3000`
//! links pointed at the mock), hand-written JSON, or server-sent-event streams written as chunked
//! bodies in whatever pieces the test chooses, then closed, kept alive with `:thump` heartbeats, or
//! left silent. Every request is recorded (method, target, `Authorization`) so tests can assert the
//! exact requests the source made. Each response closes its connection, so that a stream's end is
//! the connection's end.

use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The host the recorded cassettes were made against; rewritten to the mock's address.
pub const RECORDED_BASE: &str = "http://localhost:3000";

/// One request the mock received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub authorization: Option<String>,
}

/// What a stream does once its scripted chunks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// End the body and close the connection.
    Close,
    /// Send `:thump\n` at this interval until the client goes away (Mastodon sends one every 15 s).
    Heartbeats(Duration),
    /// Send nothing more, keeping the connection open: a stalled stream.
    Silence,
}

#[derive(Debug, Clone)]
pub enum Body {
    Full(Vec<u8>),
    /// A chunked body: each piece written and flushed on its own, `gap` apart.
    Stream {
        pieces: Vec<Piece>,
        gap: Duration,
        after: After,
    },
}

/// A piece of a streamed body.
#[derive(Debug, Clone)]
pub enum Piece {
    Bytes(Vec<u8>),
    /// Send nothing until the test calls `notify_one` on it (a permit given earlier counts).
    Gate(Arc<Notify>),
}

/// One scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    /// A JSON response.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: Body::Full(serde_json::to_vec(body).expect("json serialises")),
        }
    }

    /// A recorded cassette response (`{request, status, headers, body}`): its status, its headers
    /// (minus those describing the original transfer) and its body, with `http://localhost:3000`
    /// in header values (the `Link`s) replaced by `base`.
    pub fn recorded(doc: &Value, base: &str) -> Reply {
        let status = doc["status"].as_u64().expect("recorded status") as u16;
        let mut headers = Vec::new();
        for (name, value) in doc["headers"].as_object().expect("recorded headers") {
            let skip =
                ["content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"];
            if skip.contains(&name.as_str()) {
                continue;
            }
            if let Some(v) = value.as_str() {
                headers.push((name.clone(), v.replace(RECORDED_BASE, base)));
            }
        }
        Reply {
            status,
            headers,
            body: Body::Full(serde_json::to_vec(&doc["body"]).expect("json serialises")),
        }
    }

    /// A `text/event-stream` response sent as these chunks, then `after`.
    pub fn sse(chunks: Vec<Vec<u8>>, after: After) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: Body::Stream {
                pieces: chunks.into_iter().map(Piece::Bytes).collect(),
                gap: Duration::from_millis(2),
                after,
            },
        }
    }

    /// A stream that, after its chunks so far, waits for `gate` and then sends `more`.
    pub fn then_gated(mut self, gate: &Arc<Notify>, more: Vec<Vec<u8>>) -> Reply {
        if let Body::Stream { pieces, .. } = &mut self.body {
            pieces.push(Piece::Gate(gate.clone()));
            pieces.extend(more.into_iter().map(Piece::Bytes));
        }
        self
    }

    /// Adds (or replaces) a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
}

/// One SSE event as Mastodon's streaming server writes it; `data` must be one line (compact JSON).
pub fn sse_event(event: &str, data: &[u8]) -> Vec<u8> {
    assert!(!data.contains(&b'\n'), "SSE data given to sse_event must be one line");
    let mut out = format!("event: {event}\ndata: ").into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

/// A body with a `:thump` heartbeat after every event (after each blank line), as a quiet stream
/// interleaves them. Comment lines between events change no event.
pub fn with_heartbeats(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut i = 0;
    while i < body.len() {
        out.push(body[i]);
        if body[i] == b'\n' && i > 0 && body[i - 1] == b'\n' {
            out.extend_from_slice(b":thump\n");
        }
        i += 1;
    }
    out
}

/// Cuts a body into pieces of a repeating awkward size cycle, so that chunk boundaries fall inside
/// field names, JSON, `\n\n` pairs and multi-byte UTF-8 characters.
pub fn awkward_chunks(body: &[u8]) -> Vec<Vec<u8>> {
    const SIZES: [usize; 12] = [1, 2, 3, 5, 8, 13, 64, 7, 300, 4096, 1, 977];
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < body.len() {
        let end = (at + SIZES[k % SIZES.len()]).min(body.len());
        chunks.push(body[at..end].to_vec());
        at = end;
        k += 1;
    }
    chunks
}

struct Route {
    method: String,
    path: String,
    /// `None`: any query.
    query: Option<String>,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct State {
    routes: Vec<Route>,
    requests: Vec<Request>,
}

/// The running mock; stops (and drops every held stream) when dropped.
pub struct MockMastodon {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl MockMastodon {
    pub async fn start() -> MockMastodon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let addr = listener.local_addr().expect("mock address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (st, sp) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let sock = tokio::select! {
                    _ = sp.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok((sock, _)) => sock,
                        Err(_) => continue,
                    },
                };
                tokio::spawn(serve(sock, st.clone(), sp.clone()));
            }
        });
        MockMastodon { addr, state, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts `method target`: a target with `?` matches that exact query, one without matches any
    /// query. Replies are used in order and the last one repeats. Earlier routes win.
    pub fn route(&self, method: &str, target: &str, replies: Vec<Reply>) {
        assert!(!replies.is_empty(), "a route needs a reply");
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        self.state.lock().expect("mock state").routes.push(Route {
            method: method.to_string(),
            path,
            query,
            replies: replies.into(),
        });
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("mock state").requests.clone()
    }

    /// `METHOD target` of every request so far.
    pub fn targets(&self) -> Vec<String> {
        self.requests().iter().map(|r| format!("{} {}", r.method, r.target)).collect()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.state.lock().expect("mock state").requests.clear();
    }
}

impl Drop for MockMastodon {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn reply_for(state: &Mutex<State>, req: &Request) -> Reply {
    let mut s = state.lock().expect("mock state");
    s.requests.push(req.clone());
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.target.as_str(), None),
    };
    for route in s.routes.iter_mut() {
        let query_matches = route.query.is_none() || route.query.as_deref() == query;
        if route.method == req.method && route.path == path && query_matches {
            return if route.replies.len() > 1 {
                route.replies.pop_front().expect("non-empty")
            } else {
                route.replies.front().cloned().expect("non-empty")
            };
        }
    }
    Reply::json(404, &serde_json::json!({"error": "Record not found"}))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>, stop: CancellationToken) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match sock.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let reply = reply_for(&state, &Request { method, target, authorization });

    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("connection: close\r\n");
    match reply.body {
        Body::Full(body) => {
            out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
        Body::Stream { pieces, gap, after } => {
            out.push_str("transfer-encoding: chunked\r\n\r\n");
            if sock.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            for piece in pieces {
                match piece {
                    Piece::Bytes(chunk) => {
                        if !write_chunk(&mut sock, &chunk).await {
                            return;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(gap) => {}
                        }
                    }
                    Piece::Gate(gate) => tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = gate.notified() => {}
                    },
                }
            }
            match after {
                After::Close => {
                    let _ = sock.write_all(b"0\r\n\r\n").await;
                    let _ = sock.shutdown().await;
                }
                After::Heartbeats(every) => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if !write_chunk(&mut sock, b":thump\n").await {
                        return;
                    }
                },
                After::Silence => {
                    // Hold the connection until the client gives up on it (or the mock stops).
                    let mut sink = [0u8; 256];
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            r = sock.read(&mut sink) => match r {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            },
                        }
                    }
                }
            }
        }
    }
}

async fn write_chunk(sock: &mut TcpStream, chunk: &[u8]) -> bool {
    if chunk.is_empty() {
        return true;
    }
    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
    frame.extend_from_slice(chunk);
    frame.extend_from_slice(b"\r\n");
    sock.write_all(&frame).await.is_ok() && sock.flush().await.is_ok()
}
