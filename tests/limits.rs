//! What protects the service on the public internet: errors written before any handler runs have
//! the JSON shape, slow and idle clients are cut off, connections are capped with a reserve for the
//! health check, compressed bodies are inflated only up to the limit, clients are held to a rate.

mod common;

use common::app::{assert_error, spawn_app_with, TestApp};
use serde_json::Value;
use std::io::Write;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use tagflow::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn port(app: &TestApp) -> u16 {
    app.addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends raw bytes, reads until the server closes (or 10 s): status and JSON body.
async fn raw(app: &TestApp, bytes: &[u8]) -> (u16, String, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port(app))).await.unwrap();
    // The server may answer and close before it has read everything: what it answered counts.
    let _ = s.write_all(bytes).await;
    read_answer(&mut s).await
}

async fn read_answer(s: &mut TcpStream) -> (u16, String, Value) {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn config(tmp: &tempfile::TempDir) -> Config {
    let mut c = Config::for_tests(tmp.path());
    c.request_timeout = Duration::from_secs(1);
    c.body_timeout = Duration::from_secs(1);
    c
}

#[tokio::test]
async fn errors_written_before_any_handler_have_the_json_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app_with(config(&tmp)).await;

    let (status, head, body) = raw(&app, b"GARBAGE \x01\x02 nonsense\r\n\r\n").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{head}");
    assert!(
        head.contains("content-type: application/json") && head.contains("x-content-type-options: nosniff")
    );

    let huge = format!("GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(160 << 10));
    let (status, _, body) = raw(&app, huge.as_bytes()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (431, Some("headers_too_large")));

    // A connection that never sends its head is answered and closed after the request timeout.
    let started = Instant::now();
    let (status, _, body) = raw(&app, b"GET /status HTTP/1.1\r\nHost:").await;
    assert_eq!((status, body["error"]["code"].as_str()), (408, Some("request_timeout")));
    assert!(started.elapsed() < Duration::from_secs(8), "held {:?}", started.elapsed());

    // A body sent a byte at a time is cut off at the body timeout, with the same shape.
    let mut s = TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap();
    s.write_all(b"POST /vertices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    let (status, _, body) = read_answer(&mut s).await;
    assert_eq!((status, body["error"]["code"].as_str()), (408, Some("request_timeout")));
    assert!(started.elapsed() < Duration::from_secs(8));
    // Whatever happened, the service answers.
    assert_eq!(app.get("/status").await.0, 200);
    app.stop().await;
}

/// A connection that sent a write's head and part of its body: counted until the body timeout.
async fn hold(app: &TestApp) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port(app))).await.unwrap();
    s.write_all(b"POST /vertices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    s
}

async fn get_on(s: &mut TcpStream, path: &str) -> (u16, Value) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_answer(s).await;
    (status, body)
}

#[tokio::test]
async fn past_the_connection_cap_clients_are_refused_and_the_reserve_answers_only_the_health_check() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(&tmp);
    c.max_connections = Some(16); // a reserve of 2
    c.body_timeout = Duration::from_secs(30);
    let app = spawn_app_with(c).await;
    let mut held = Vec::new();
    for _ in 0..14 {
        held.push(hold(&app).await);
    }
    // Let the server count them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut reserve_a = TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap();
    let mut reserve_b = TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) =
        get_on(&mut TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap(), "/status").await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("overloaded")), "past the cap");
    let (status, body) = get_on(&mut reserve_a, "/vertices").await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("overloaded")), "reserve, not health");
    let (status, body) = get_on(&mut reserve_b, "/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["http"]["connections_refused"], 1, "{body}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get("/vertices").await.0, 200, "freed connections are usable again");
    app.stop().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn compressed_bodies_are_read_and_a_bomb_costs_no_more_than_the_limit() {
    // 64 MiB of spaces in a few tens of KiB (made before the server starts: compressing takes a
    // while in a debug build, and a kept-alive connection would time out meanwhile).
    let bomb = gzip(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_app_with(config(&tmp)).await;
    let post = |path: &str, ct: &str, body: Vec<u8>| {
        app.client
            .post(format!("{}{path}", app.addr))
            .header("content-type", ct)
            .header("content-encoding", "gzip")
            .body(body)
            .send()
    };
    let line = r#"{"data":{"id":"7","text":"hi @b","author_id":"1","entities":{"mentions":[{"username":"b","id":"2"}]}},"includes":{"users":[{"id":"2","username":"b"}]}}"#;
    let r = post("/ingest", "application/x-ndjson", gzip(line.trim().as_bytes())).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["accepted"].as_u64(), v["skipped"].as_u64()), (Some(1), Some(0)), "{v}");

    let r = post("/vertices", "application/json", gzip(br#"{"id":"zipped"}"#)).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(app.get("/vertices/zipped").await.0, 200);

    // Refused as too large, not inflated past the limit (8 MiB).
    for path in ["/ingest", "/vertices"] {
        let r = post(path, "application/json", bomb.clone()).await.unwrap();
        assert_eq!(r.status(), 413, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "payload_too_large");
    }
    let r = post("/vertices", "application/json", b"not gzip at all".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(format!("{}/vertices", app.addr))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    app.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_others_keep_going() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(&tmp);
    c.rates.writes = NonZeroU32::new(2); // bursts of 20
    c.rates.expensive_reads = NonZeroU32::new(1); // bursts of 10
    c.rates.trust_proxy = true;
    let app = spawn_app_with(c).await;
    let add = |from: &'static str, i: usize| {
        app.client
            .post(format!("{}/vertices/add/u{i}", app.addr))
            .header("x-forwarded-for", format!("198.51.100.250, {from}"))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(add("203.0.113.1", i).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 20, "{statuses:?}");
    let r = add("203.0.113.1", 99).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(add("203.0.113.2", 100).await.unwrap().status(), 201, "another client is not held");

    let path = "/analytics/users?limit=1";
    let mut got = Vec::new();
    for _ in 0..12 {
        got.push(app.get(path).await);
    }
    assert_eq!(got.iter().filter(|r| r.0 == 200).count(), 10);
    assert_error(got.last().unwrap(), 429, "rate_limited");
    assert_eq!(app.get("/status").await.0, 200, "cheap reads are not limited");
    let (_, status) = app.get("/status").await;
    assert!(status["http"]["rate_limited"].as_u64().unwrap() >= 3, "{status}");
    app.stop().await;
}

/// Writes go first: while the store takes writes, reads past `--reads-while-writing` a second wait
/// their turn; with no writes, or for `/status`, none waits. The wait is a sleep of the bucket's
/// debt, so the lower bounds below hold on any machine; the upper ones are generous.
#[tokio::test]
async fn while_writes_are_taken_reads_past_their_budget_wait_their_turn_and_status_never_does() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(&tmp);
    c.rates.reads_while_writing = NonZeroU32::new(20); // two saved up
    let app = spawn_app_with(c).await;
    let reads = |path: &'static str, n: usize| {
        let app = &app;
        async move {
            let started = Instant::now();
            for _ in 0..n {
                assert_eq!(app.get(path).await.0, 200, "{path}");
            }
            started.elapsed()
        }
    };
    let idle = reads("/vertices?limit=1", 40).await;
    assert!(idle < Duration::from_secs(2), "no writes, no waiting: {idle:?}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, addr, stop) = (app.client.clone(), app.addr.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client.post(format!("{addr}/vertices/add/w{written}")).send().await.unwrap();
                assert_eq!(r.status(), 201);
                written += 1;
            }
            written
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = reads("/status", 40).await;
    let busy = reads("/vertices?limit=1", 40).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(status < Duration::from_secs(2), "/status is never held: {status:?}");
    // 40 reads at 20 a second with at most three saved up: at least 37 turns of 50 ms.
    assert!(busy >= Duration::from_millis(1_800), "reads waited their turn: {busy:?}");
    assert!(written > 40, "the writes went on meanwhile: {written}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = reads("/vertices?limit=1", 40).await;
    assert!(after < Duration::from_secs(2), "writes over, no waiting: {after:?}");
    app.stop().await;
}
