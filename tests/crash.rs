//! Durability of the real binary: acknowledged writes survive `kill -9`; SIGTERM exits cleanly; a
//! second process on the same data directory is refused with a clear error.

mod common;

use common::process::{start, try_start};
use std::collections::BTreeMap;
use std::time::Duration;

/// Edges acknowledged with a 201, and how many times each.
type Acked = BTreeMap<(String, String), u64>;

/// `writers` tasks post interactions `{prefix}w{n}` -> `t{i % targets}` as fast as they can until a
/// request fails (the kill); collect them with [`collect`].
fn spawn_writers(
    base: &str,
    writers: usize,
    prefix: &str,
    targets: u64,
) -> (Vec<tokio::task::JoinHandle<()>>, tokio::sync::mpsc::UnboundedReceiver<(String, String)>) {
    let client = reqwest::Client::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let tasks = (0..writers)
        .map(|w| {
            let (client, base, tx, from) =
                (client.clone(), base.to_string(), tx.clone(), format!("{prefix}w{w}"));
            tokio::spawn(async move {
                for i in 0..1_000_000u64 {
                    let to = format!("t{}", i % targets);
                    let body = format!(r#"{{"from":"{from}","to":"{to}","kind":"mention"}}"#);
                    let sent = client
                        .post(format!("{base}/aristas"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => {
                            let _ = tx.send((from.clone(), to));
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    (tasks, rx)
}

/// Waits for the writers to stop and adds what they got acknowledged to `acked`.
async fn collect(
    writers: Vec<tokio::task::JoinHandle<()>>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    acked: &mut Acked,
) {
    for w in writers {
        w.await.unwrap();
    }
    while let Ok(pair) = rx.try_recv() {
        *acked.entry(pair).or_default() += 1;
    }
}

/// Every acknowledged write is there after the restart: a write in flight at the kill may have been
/// persisted without being acknowledged, so never fewer and at most one more.
async fn assert_survived(server: &common::process::ServerProcess, acked: &Acked) {
    let client = reqwest::Client::new();
    for ((from, to), n) in acked {
        let edge: serde_json::Value = client
            .get(server.url(&format!("/aristas/{from}/{to}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let got = edge["kinds"]["mention"].as_u64().unwrap_or(0);
        assert!(got >= *n, "{from}->{to}: {n} acknowledged, {got} after restart");
        assert!(got <= n + 1, "{from}->{to}: at most the one unacknowledged in-flight write extra");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &["--sources", "none"], &[]);
    // Eight writers post interactions as fast as they can; the process is killed while they run.
    let (writers, rx) = spawn_writers(&server.url(""), 8, "", 50);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    let mut acked = Acked::new();
    collect(writers, rx, &mut acked).await;
    let total: u64 = acked.values().sum();
    assert!(total > 50, "the writers got some acknowledgements before the kill ({total})");
    let server = start(tmp.path(), &["--sources", "none"], &[]);
    assert_survived(&server, &acked).await;
    eprintln!("kill -9 test: {total} acknowledged writes over {} edges all survived", acked.len());
}

/// `kill -9` while checkpoints run: the demo feeds the log fast and checkpoints start every MiB of
/// it, four writers post edges over HTTP, and the process is killed a few milliseconds after a
/// checkpoint starts, round after round. Every restart must open (a checkpoint cut short costs
/// nothing but itself) with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_during_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--sources", "demo", "--demo-rate", "20000", "--checkpoint-mb", "1"];
    let mut acked = Acked::new();
    let mut rng = tagflow::rng::SplitMix64::new(11);
    let (mut rounds, mut inside, mut checkpoints) = (0, 0, 0);
    let is_start = |l: &String| l.contains("store: checkpoint") && l.contains("started");
    let is_end = |l: &String| l.contains("store: checkpoint") && l.contains("covers log");
    while rounds < 12 && (rounds < 5 || inside < 3) {
        rounds += 1;
        let server = start(tmp.path(), &args, &[]);
        let (writers, rx) = spawn_writers(&server.url(""), 4, &format!("r{rounds}"), 20);
        // Aim at a checkpoint: wait for one to start, then kill within a few milliseconds of it.
        tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let seen = server.log.lock().unwrap().iter().filter(|l| is_start(l)).count();
        while server.log.lock().unwrap().iter().filter(|l| is_start(l)).count() == seen
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        let log = server.log.lock().unwrap().clone();
        server.kill9();
        collect(writers, rx, &mut acked).await;
        let (started, finished) =
            (log.iter().filter(|l| is_start(l)).count(), log.iter().filter(|l| is_end(l)).count());
        checkpoints += finished;
        inside += usize::from(started > finished);
    }
    assert!(inside >= 2, "too few kills landed inside a checkpoint: {inside} in {rounds} rounds");
    let server = start(tmp.path(), &args, &[]);
    assert_survived(&server, &acked).await;
    eprintln!(
        "kill -9 during checkpoints: {rounds} rounds, {inside} kills inside a checkpoint, {checkpoints} \
         checkpoints finished, {} acknowledged writes all survived",
        acked.values().sum::<u64>()
    );
}

#[test]
fn sigterm_exits_zero_after_flushing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &["--sources", "none"], &[]);
    assert_eq!(plain_http::post(&server.url("/vertices"), r#"{"id":"kept"}"#), 201);
    let (status, log) = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}; log:\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("stopped cleanly")), "log:\n{}", log.join("\n"));
    let server = start(tmp.path(), &["--sources", "none"], &[]);
    assert_eq!(plain_http::get(&server.url("/vertices/kept")), 200);
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = start(tmp.path(), &["--sources", "none"], &[]);
    let log = match try_start(tmp.path(), &["--sources", "none"], &[]) {
        Ok(_) => panic!("a second process opened the same data directory"),
        Err(log) => log.join("\n"),
    };
    assert!(log.contains(&tmp.path().display().to_string()), "the error names the directory:\n{log}");
    assert!(log.contains("in use by another tagflow process"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Tiny std-only HTTP helpers for the synchronous tests.
mod plain_http {
    use std::io::{Read, Write};

    fn request(url: &str, method: &str, body: &str) -> u16 {
        let rest = url.strip_prefix("http://").expect("http url");
        let (host, path) =
            rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
        let mut s = std::net::TcpStream::connect(host).expect("connect");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out.get(9..12).and_then(|c| c.parse().ok()).expect("status line")
    }

    pub fn post(url: &str, body: &str) -> u16 {
        request(url, "POST", body)
    }

    pub fn get(url: &str) -> u16 {
        request(url, "GET", "")
    }
}
