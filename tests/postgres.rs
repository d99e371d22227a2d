//! Replicas on a real PostgreSQL: real `tagflow serve` processes sharing one database serve one
//! graph under concurrent writers, the one a single sled store gives for the same writes; `kill -9`
//! of a replica loses no acknowledged write; a database that goes away turns writes into 503 while
//! reads go on, and everything resumes when it is back.

mod common;

use common::process::{start, ServerProcess};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// No source, and no rate limit: the writers here are many, on loopback.
const NO_LIMITS: [&str; 4] = ["--sources", "none", "--rate-limit-writes", "0"];

/// Every page of a listing (`/aristas` or `/vertices`), as one array of its items.
async fn listing(client: &reqwest::Client, base: &str, path: &str, field: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}{path}?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        items.extend(page[field].as_array().unwrap_or_else(|| panic!("{url}: {page}")).iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

async fn status(client: &reqwest::Client, base: &str) -> Value {
    client.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap()
}

/// Waits until every replica has applied the same, newest record.
async fn settled(client: &reqwest::Client, bases: &[String]) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut seqs = Vec::new();
        for b in bases {
            let s = status(client, b).await;
            seqs.push((s["store"]["applied_seq"].as_u64().unwrap(), s["store"]["log_seq"].as_u64().unwrap()));
        }
        let newest = seqs.iter().map(|s| s.1).max().unwrap();
        if seqs.iter().all(|s| s.0 == newest) {
            return newest;
        }
        assert!(tokio::time::Instant::now() < deadline, "replicas did not converge: {seqs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> reqwest::Result<u16> {
    Ok(client.post(url).json(&body).send().await?.status().as_u16())
}

/// An edge without its times (which differ between two stores fed the same writes).
fn shape(edges: &[Value]) -> BTreeMap<(String, String), (u64, Value)> {
    edges
        .iter()
        .map(|e| {
            let key = (e["from"].as_str().unwrap().to_string(), e["to"].as_str().unwrap().to_string());
            (key, (e["total"].as_u64().unwrap(), e["kinds"].clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_with_concurrent_writers_serve_the_graph_a_single_store_would() {
    let Some(db) = common::pg::database("two_replicas_writers") else { return };
    let env = [("DATABASE_URL", db.as_str())];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let none = NO_LIMITS;
    let (a, b) = (start(dir_a.path(), &none, &env), start(dir_b.path(), &none, &env));
    let bases = [a.url(""), b.url("")];
    let client = reqwest::Client::new();
    let kinds = ["repost", "reply", "quote", "mention"];
    // Three writers on each replica: edges among 15 users, and adds of 20 shared users that only
    // one replica can win each.
    let mut writers = Vec::new();
    for w in 0..6usize {
        let (client, base) = (client.clone(), bases[w % 2].clone());
        writers.push(tokio::spawn(async move {
            let (mut edges, mut users_added) = (Vec::new(), 0);
            for i in 0..120usize {
                if i % 6 == 0 {
                    let body = json!({"id": format!("shared{}", (i / 6 + w) % 20)});
                    match post(&client, format!("{base}/vertices"), body).await.unwrap() {
                        201 => users_added += 1,
                        409 => {}
                        other => panic!("adding a user: {other}"),
                    }
                    continue;
                }
                let from = (i * 7 + w) % 15;
                let (from, to) = (format!("u{from}"), format!("u{}", (from + 1 + (i * 3 + w) % 14) % 15));
                let kind = kinds[(i + w) % 4];
                let body = json!({"from": from, "to": to, "kind": kind});
                assert_eq!(post(&client, format!("{base}/aristas"), body.clone()).await.unwrap(), 201);
                edges.push(body);
            }
            (edges, users_added)
        }));
    }
    let (mut acked, mut users_added) = (Vec::new(), 0);
    for w in writers {
        let (e, u) = w.await.unwrap();
        acked.extend(e);
        users_added += u;
    }
    settled(&client, &bases).await;
    let (edges_a, edges_b) = (
        listing(&client, &bases[0], "/aristas", "edges").await,
        listing(&client, &bases[1], "/aristas", "edges").await,
    );
    let (users_a, users_b) = (
        listing(&client, &bases[0], "/vertices", "vertices").await,
        listing(&client, &bases[1], "/vertices", "vertices").await,
    );
    assert_eq!(edges_a, edges_b, "both replicas list the same edges, times included");
    assert_eq!(users_a, users_b, "and the same users");
    let shared = users_a.iter().filter(|u| u["id"].as_str().unwrap().starts_with("shared")).count();
    assert_eq!(shared, 20);
    assert_eq!(users_added, 20, "each shared user was added once, whichever replica committed first");

    // The same writes into one sled store give the same graph.
    let dir_c = tempfile::tempdir().unwrap();
    let c = start(dir_c.path(), &NO_LIMITS, &[]);
    for body in &acked {
        assert_eq!(post(&client, c.url("/aristas"), body.clone()).await.unwrap(), 201);
    }
    for i in 0..20 {
        post(&client, c.url("/vertices"), json!({"id": format!("shared{i}")})).await.unwrap();
    }
    let edges_c = listing(&client, &c.url(""), "/aristas", "edges").await;
    let users_c = listing(&client, &c.url(""), "/vertices", "vertices").await;
    assert_eq!(shape(&edges_a), shape(&edges_c), "the replicas' graph is the single store's");
    let ids = |users: &[Value]| users.iter().map(|u| u["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&users_a), ids(&users_c));
    assert_eq!(edges_a.len(), edges_c.len());

    // A third replica loads the same graph from the database.
    let dir_d = tempfile::tempdir().unwrap();
    let d = start(dir_d.path(), &none, &env);
    assert_eq!(listing(&client, &d.url(""), "/aristas", "edges").await, edges_a);
    let s = status(&client, &d.url("")).await;
    assert_eq!(s["store"]["backend"], "postgres", "{s}");
    let metrics = client.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let applied = format!("tagflow_replica_applied_seq {}", s["store"]["applied_seq"]);
    assert!(metrics.lines().any(|l| l == applied), "{applied} in\n{metrics}");
    // A backup of a database store is the database's to make.
    let r = client.get(d.url("/backup")).send().await.unwrap();
    assert_eq!(r.status(), 501);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_implemented", "{body}");
    assert_eq!(s["store"]["database"], db.as_str(), "the database, as given (no password here)");
    drop((a, b, c, d));
}

/// Edges acknowledged on one replica: from `{prefix}{n}` to `t{i % 10}`, until a request fails.
fn writers(base: &str, n: usize, prefix: &str) -> Vec<tokio::task::JoinHandle<Vec<(String, String)>>> {
    (0..n)
        .map(|w| {
            let (client, base, from) = (reqwest::Client::new(), base.to_string(), format!("{prefix}{w}"));
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..100_000u64 {
                    let to = format!("t{}", i % 10);
                    let body = json!({"from": from, "to": to, "kind": "mention"});
                    match post(&client, format!("{base}/aristas"), body).await {
                        Ok(201) => acked.push((from.clone(), to)),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect()
}

async fn counts(client: &reqwest::Client, base: &str) -> BTreeMap<(String, String), u64> {
    shape(&listing(client, base, "/aristas", "edges").await).into_iter().map(|(k, (n, _))| (k, n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_replica_under_writes_loses_no_acknowledged_write() {
    let Some(db) = common::pg::database("replica_kill_9") else { return };
    let env = [("DATABASE_URL", db.as_str())];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let none = NO_LIMITS;
    let (a, b) = (start(dir_a.path(), &none, &env), start(dir_b.path(), &none, &env));
    let client = reqwest::Client::new();
    let (on_a, on_b) = (writers(&a.url(""), 4, "a"), writers(&b.url(""), 4, "b"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    let mut acked_a = BTreeMap::<(String, String), u64>::new();
    for w in on_a {
        for pair in w.await.unwrap() {
            *acked_a.entry(pair).or_default() += 1;
        }
    }
    assert!(acked_a.values().sum::<u64>() > 50, "writes were acknowledged before the kill");
    // Every write A acknowledged is on B, and B goes on taking writes.
    let on_b_now = counts(&client, &b.url("")).await;
    for (pair, n) in &acked_a {
        assert!(on_b_now.get(pair).copied().unwrap_or(0) >= *n, "{pair:?}: {n} acknowledged by A");
    }
    let a = start(dir_a.path(), &none, &env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Stop B's writers: close B's port to them by killing B, then compare what each acknowledged.
    b.kill9();
    let mut acked_b = BTreeMap::<(String, String), u64>::new();
    for w in on_b {
        for pair in w.await.unwrap() {
            *acked_b.entry(pair).or_default() += 1;
        }
    }
    settled(&client, &[a.url("")]).await;
    let on_a = counts(&client, &a.url("")).await;
    for (pair, n) in acked_a.iter().chain(acked_b.iter()) {
        // Writes acknowledged by A before the kill and by B to the end, all on the restarted A. A
        // write in flight at a kill may have committed unacknowledged: at least, never fewer.
        assert!(on_a.get(pair).copied().unwrap_or(0) >= *n, "{pair:?}: {n} acknowledged");
    }
    let total_acked: u64 = acked_a.values().chain(acked_b.values()).sum();
    let total: u64 = on_a.values().sum();
    assert!(
        total <= total_acked + 8,
        "at most one unacknowledged write per writer: {total} vs {total_acked}"
    );
    drop(a);
}

/// A TCP proxy to the database that can be cut: while cut, it closes every connection it has and
/// refuses new ones, as a database that went away.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(to: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let (c, to) = (c.clone(), to.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&to).await else { return };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            () = tokio::time::sleep(Duration::from_millis(20)) => {
                                if c.load(Ordering::SeqCst) {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy { port, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_database_gone_reads_go_on_writes_are_503_and_all_resumes_when_it_is_back() {
    let Some(db) = common::pg::database("database_gone") else { return };
    // The same database, through the proxy.
    let (head, name) = db.rsplit_once('/').unwrap();
    let server = head.rsplit_once('@').map_or(head, |(_, s)| s).trim_start_matches("postgres://").to_string();
    let proxy = Proxy::start(server.clone()).await;
    let via = db.replace(&server, &format!("127.0.0.1:{}", proxy.port));
    assert!(via.ends_with(name));
    let dir = tempfile::tempdir().unwrap();
    // With the demo source: it must pause while the database is gone, then go on.
    let args = ["--sources", "demo", "--demo-rate", "50", "--rate-limit-writes", "0"];
    let a: ServerProcess = start(dir.path(), &args, &[("DATABASE_URL", via.as_str())]);
    let client = reqwest::Client::new();
    let base = a.url("");
    let edge = |n: u32| json!({"from": "ana", "to": format!("b{n}"), "kind": "reply"});
    assert_eq!(post(&client, a.url("/aristas"), edge(1)).await.unwrap(), 201);
    let demo =
        |s: &Value| s["sources"].as_array().unwrap().iter().find(|s| s["name"] == "demo").unwrap().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = demo(&status(&client, &base).await);
        if d["state"] == "streaming" && d["posts"].as_u64() > Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the demo did not start: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    proxy.cut.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = client.post(a.url("/aristas")).json(&edge(2)).send().await.unwrap();
    assert_eq!(r.status(), 503, "a write without the database");
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert!(!body.to_string().contains("password"), "{body}");
    let s = status(&client, &base).await;
    assert_eq!(s["status"], "DEGRADED", "{s}");
    assert_eq!(s["store"]["health"], "store_unavailable", "{s}");
    // Reads go on from memory; the demo waits, showing why.
    let users = status(&client, &base).await["users"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = demo(&status(&client, &base).await);
        if d["state"] == "backing_off" {
            assert!(d["last_error"].as_str().unwrap().contains("store"), "{d}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the demo did not pause: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page: Value = client.get(a.url("/aristas/ana/b1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(status(&client, &base).await["users"], users, "nothing was applied meanwhile");

    proxy.cut.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let code = post(&client, a.url("/aristas"), edge(3)).await.unwrap();
        if code == 201 {
            break;
        }
        assert_eq!(code, 503);
        assert!(tokio::time::Instant::now() < deadline, "writes did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&client, &base).await["status"], "OK");
    let ana: Value =
        client.get(a.url("/vertices/ana/aristas?limit=10")).send().await.unwrap().json().await.unwrap();
    let tos: Vec<_> =
        ana["edges"].as_array().unwrap().iter().map(|e| e["to"].as_str().unwrap().to_string()).collect();
    assert_eq!(tos.len(), 2, "{ana}");
    assert!(
        tos.contains(&"b1".into()) && tos.contains(&"b3".into()),
        "the refused write is not there: {tos:?}"
    );
    // The demo goes on by itself, from where it was.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&client, &base).await;
        if demo(&s)["state"] == "streaming" && s["users"].as_u64().unwrap() > users {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the demo did not resume: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagflow_migrate_moves_a_served_graph_into_a_database_and_back() {
    let Some(db) = common::pg::database("cli_migrate") else { return };
    let work = tempfile::tempdir().unwrap();
    let (dir, back) = (work.path().join("sled"), work.path().join("back"));
    // A graph the demo source made, with its cursor, stopped cleanly.
    let demo = start(&dir, &["--sources", "demo", "--demo-rate", "400"], &[]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (exit, log) = demo.terminate(Duration::from_secs(20));
    assert!(exit.success(), "{}", log.join("\n"));

    let (ok, out, err) =
        common::process::run_tagflow(&["migrate", "--from-data-dir", dir.to_str().unwrap(), "--to", &db]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("migrated") && out.contains("users"), "{out}");
    let (ok, _, err) =
        common::process::run_tagflow(&["migrate", "--from-data-dir", dir.to_str().unwrap(), "--to", &db]);
    assert!(!ok && err.contains("already holds a graph"), "a second migration is refused: {err}");

    let client = reqwest::Client::new();
    let sled = start(&dir, &NO_LIMITS, &[]);
    let (edges, users) = (
        listing(&client, &sled.url(""), "/aristas", "edges").await,
        listing(&client, &sled.url(""), "/vertices", "vertices").await,
    );
    assert!(edges.len() > 50, "the demo made a graph: {} edges", edges.len());
    drop(sled);
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = start(replica_dir.path(), &NO_LIMITS, &[("DATABASE_URL", db.as_str())]);
    assert_eq!(
        listing(&client, &replica.url(""), "/aristas", "edges").await,
        edges,
        "the database serves it"
    );
    assert_eq!(listing(&client, &replica.url(""), "/vertices", "vertices").await, users);
    drop(replica);

    let (ok, out, err) =
        common::process::run_tagflow(&["migrate", "--from", &db, "--to-data-dir", back.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let again = start(&back, &NO_LIMITS, &[]);
    assert_eq!(
        listing(&client, &again.url(""), "/aristas", "edges").await,
        edges,
        "and back into a directory"
    );
    assert_eq!(listing(&client, &again.url(""), "/vertices", "vertices").await, users);
    drop(again);
}
