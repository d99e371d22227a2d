//! The benchmark: builds a large graph with the demo generator through the real decoder and the real
//! durable write path, then measures what the issue asks for. Run it with `bench/run.sh`, which
//! builds in release mode and adds the NetworkX comparison.
//!
//! ```text
//! cargo run --release --example bench -- --users 1000000 --interactions 10000000 --dir /tmp/tf-bench \
//!     --binary target/release/tagflow
//! ```
//!
//! Prints: durable import rate (posts/s), resident memory per edge of the restarted service,
//! restart time (spawn until `/status` answers), find_path latency p50/p99 over 1,000 random pairs
//! in-process and through HTTP; writes the pairs and the edge list for the NetworkX comparison.
//! Then checkpoints and a backup beside a steady ingest (see `storage.rs`), the exports in every
//! format (see `exports.rs`), and the analytics (see `analytics.rs`): snapshots, each algorithm, the timeline's cost, ingest
//! while analyses run, and a cached analytics answer over HTTP.

mod analytics;
mod exports;
mod micro;
mod postgres;
mod storage;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tagflow::graph::Mutation;
use tagflow::ingest::decode::x_v2;
use tagflow::ingest::demo::{DemoConfig, DemoGenerator};
use tagflow::ingest::source::{to_mutation, Tally};
use tagflow::rng::SplitMix64;
use tagflow::store::{self, StoreConfig};

/// The binary's allocator (see `src/main.rs`), so that the import measured is the service's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    users: u32,
    interactions: u64,
    dir: PathBuf,
    binary: Option<PathBuf>,
    pairs: usize,
    batch: usize,
    peer_files: bool,
    exports: bool,
    reuse: bool,
    analytics: bool,
    samples: usize,
    ingest_secs: u64,
    micro: bool,
    storage_secs: u64,
    postgres: Option<String>,
    follow_secs: u64,
    algorithms: Option<PathBuf>,
}

const USAGE: &str = "usage: bench [--users N] [--interactions N] [--dir DIR] [--binary PATH] [--pairs N] \
[--batch N] [--no-peer-files] [--no-exports] [--reuse] [--no-analytics] [--no-micro] [--samples K] [--ingest-secs S]
[--storage-secs S] [--postgres URL [--follow-secs S]]
       bench --algorithms EXPORT_DIR [--samples K]

Builds a graph with the demo generator through the durable write path and prints import rate,
find_path latency (in-process and, with --binary, over HTTP), restart time and memory per edge,
then the analytics figures (betweenness from K sampled sources, default 64; ingest measured in
windows of S seconds, alone and with analyses running in turns, two of each, default 20).
--reuse skips the import when DIR already holds a graph (to measure queries again).
--no-exports leaves out the exports in every format; --no-peer-files the files the peers read.
--no-micro leaves out the first figures: demo lines/s, the demo's workload, decoding the recorded pages.
--storage-secs S: checkpoints beside a steady ingest for S seconds, and a backup (default 60; 0 skips).
--postgres URL: instead, the PostgreSQL store on that (empty) database: durable import of the same
posts, a checkpoint, a replica's start, and a follower's lag behind a writer at 2,000 posts/s for
S seconds (default 30).
--algorithms EXPORT_DIR: only the algorithms, again, on the network an earlier run exported there
(bench/analytics_peers.py --rounds runs this between the peers' rounds).";

fn args() -> Args {
    let mut a = Args {
        users: 1_000_000,
        interactions: 10_000_000,
        dir: std::env::temp_dir().join("tagflow-bench"),
        binary: None,
        pairs: 1_000,
        batch: 5_000,
        peer_files: true,
        exports: true,
        reuse: false,
        analytics: true,
        samples: 64,
        ingest_secs: 20,
        micro: true,
        storage_secs: 60,
        postgres: None,
        follow_secs: 30,
        algorithms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next().unwrap_or_else(|| {
                eprintln!("{flag} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--users" => a.users = val().parse().expect("--users N"),
            "--interactions" => a.interactions = val().parse().expect("--interactions N"),
            "--dir" => a.dir = PathBuf::from(val()),
            "--binary" => a.binary = Some(PathBuf::from(val())),
            "--pairs" => a.pairs = val().parse().expect("--pairs N"),
            "--batch" => a.batch = val().parse().expect("--batch N"),
            "--no-peer-files" => a.peer_files = false,
            "--no-exports" => a.exports = false,
            "--reuse" => a.reuse = true,
            "--no-analytics" => a.analytics = false,
            "--no-micro" => a.micro = false,
            "--samples" => a.samples = val().parse().expect("--samples K"),
            "--ingest-secs" => a.ingest_secs = val().parse().expect("--ingest-secs S"),
            "--storage-secs" => a.storage_secs = val().parse().expect("--storage-secs S"),
            "--postgres" => a.postgres = Some(val()),
            "--follow-secs" => a.follow_secs = val().parse().expect("--follow-secs S"),
            "--algorithms" => a.algorithms = Some(PathBuf::from(val())),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => {
                eprintln!("unknown flag {other}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    a
}

fn main() -> anyhow::Result<()> {
    let a = args();
    if let Some(export) = &a.algorithms {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return analytics::on_edge_list(export, a.samples, cores);
    }
    let reuse = a.reuse && a.dir.join("db").exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
    println!("tagflow benchmark: users={} interactions>={} dir={}", a.users, a.interactions, a.dir.display());
    if a.micro {
        micro::run(a.users);
    }
    if let Some(url) = &a.postgres {
        return postgres::measure(url, a.users, a.interactions, a.batch, a.follow_secs);
    }

    // 1. Durable import through the real decoder and write path, in group commits.
    let (handle, writer, loaded) = store::open(&StoreConfig::new(&a.dir))?;
    if reuse {
        println!(
            "reused {}: {} users, {} edges loaded in {:.1}s (no import measured)",
            a.dir.display(),
            loaded.users,
            loaded.ties,
            loaded.elapsed.as_secs_f64()
        );
    } else {
        import(&a, &handle)?;
    }
    // 2. find_path in-process, 1,000 random pairs (undirected, the API default).
    let keys: Vec<String> = {
        let g = handle.graph().read();
        g.users_page(tagflow::graph::UserOrder::Key, None, usize::MAX)
            .items
            .into_iter()
            .map(|u| u.id)
            .collect()
    };
    let mut s = SplitMix64::new(2024);
    let pairs: Vec<(String, String)> = (0..a.pairs)
        .map(|_| {
            let x = &keys[(s.next_u64() % keys.len() as u64) as usize];
            let y = &keys[(s.next_u64() % keys.len() as u64) as usize];
            (x.clone(), y.clone())
        })
        .collect();
    // The first search of a thread sizes its scratch marks (page faults): warm up, as a server has.
    let _ = handle.graph().read().find_path(&pairs[0].0, &pairs[0].1, false);
    for (directed, what) in [(false, "undirected"), (true, "directed")] {
        let mut lat = Vec::with_capacity(pairs.len());
        let mut found = 0;
        for (x, y) in &pairs {
            let g = handle.graph().read();
            let t = Instant::now();
            let r = g.find_path(x, y, directed);
            lat.push(t.elapsed());
            found += usize::from(r.is_ok());
        }
        report(&format!("find_path in-process ({what})"), &mut lat, Some(found));
    }

    if a.peer_files {
        peer_files(&a.dir, &handle, &pairs)?;
    }
    if a.storage_secs > 0 {
        storage::measure(&handle, a.users, a.storage_secs)?;
    }
    if a.exports {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        exports::measure(&handle, &a.dir.with_extension("export"), cores)?;
    }
    if a.analytics {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        analytics::measure(&handle, &a.dir.with_extension("export"), a.samples, cores)?;
    }
    // The storage figures added posts: the restart is measured against the graph as it is now.
    let edges = handle.graph().read().tie_count();
    handle.close_blocking();
    drop(handle);
    writer.join().expect("the store stops cleanly");

    // 3. Restart: the real binary on the same directory, until /status answers; then its memory
    // and find_path over HTTP.
    if let Some(bin) = &a.binary {
        restart_and_query(bin, &a.dir, &pairs, edges)?;
    } else {
        println!("restart/HTTP: skipped (pass --binary target/release/tagflow)");
    }

    // 4. Durable ingest alone, then while analyses run (last: it adds posts to the graph).
    if a.analytics && a.ingest_secs > 0 {
        let (handle, writer, _) = store::open(&StoreConfig::new(&a.dir))?;
        // Posts later than the graph's (new ids, new times), so that every one is a real write.
        let mut phase = 0;
        let mut feed = |h: &store::StoreHandle, span: Duration| {
            phase += 1;
            let start = DemoConfig::default().start + phase * 40 * 86_400;
            let mut f = Feeder::new(a.users, 7 + phase as u64, start, a.batch);
            let t = Instant::now();
            f.run(h, |_, _| t.elapsed() < span).map(|(posts, _)| posts)
        };
        analytics::ingest_under_analytics(&handle, &mut feed, a.ingest_secs)?;
        handle.close_blocking();
        drop(handle);
        writer.join().expect("the store stops cleanly");
    }
    Ok(())
}

/// Generated posts decoded and written through the durable path in group commits, a few in flight.
struct Feeder {
    generator: DemoGenerator,
    batch: usize,
    tally: Tally,
    decode_time: Duration,
}

impl Feeder {
    fn new(users: u32, seed: u64, start: i64, batch: usize) -> Feeder {
        let config = DemoConfig { users, seed, start, ..DemoConfig::default() };
        Feeder {
            generator: DemoGenerator::new(config),
            batch,
            tally: Tally::default(),
            decode_time: Duration::ZERO,
        }
    }

    /// Writes posts while `more(posts, interactions)` says so; returns how many of each, once durable.
    fn run(
        &mut self,
        handle: &store::StoreHandle,
        mut more: impl FnMut(u64, u64) -> bool,
    ) -> anyhow::Result<(u64, u64)> {
        let mut line = Vec::with_capacity(4096);
        let (mut posts, mut interactions) = (0u64, 0u64);
        let mut in_flight = std::collections::VecDeque::new();
        let mut batch: Vec<Mutation> = Vec::with_capacity(self.batch);
        while more(posts, interactions) {
            line.clear();
            self.generator.write_next(&mut line);
            let t = Instant::now();
            for m in x_v2::decode(&line)?.into_iter().filter_map(to_mutation) {
                if let Mutation::ApplyPost(p) = &m {
                    interactions += p.interactions.len() as u64;
                }
                batch.push(m);
            }
            self.decode_time += t.elapsed();
            posts += 1;
            if batch.len() >= self.batch {
                in_flight.push_back(handle.enqueue_blocking(std::mem::take(&mut batch))?);
                while in_flight.len() > 4 {
                    let out = in_flight.pop_front().expect("non-empty").blocking_recv()??;
                    self.tally.add(&Tally::of(&out));
                }
            }
        }
        in_flight.push_back(handle.enqueue_blocking(batch)?);
        for rx in in_flight {
            self.tally.add(&Tally::of(&rx.blocking_recv()??));
        }
        Ok((posts, interactions))
    }
}

/// The durable import through the real decoder and write path, in group commits; prints its figures.
fn import(a: &Args, handle: &store::StoreHandle) -> anyhow::Result<()> {
    let mut feeder = Feeder::new(a.users, 42, DemoConfig::default().start, a.batch);
    let started = Instant::now();
    let (posts, _) = feeder.run(handle, |posts, interactions| {
        if posts > 0 && posts % 500_000 == 0 {
            let s = started.elapsed().as_secs_f64();
            println!("  .. {posts} posts, {interactions} interactions, {:.0} posts/s", posts as f64 / s);
        }
        interactions < a.interactions
    })?;
    let import_secs = started.elapsed().as_secs_f64();
    let tally = &feeder.tally;
    let (users, edges) = {
        let g = handle.graph().read();
        (g.user_count(), g.tie_count())
    };
    println!(
        "import (durable, group commits of {}): {posts} posts, {} interactions in {import_secs:.1}s = {:.0} posts/s \
         ({:.0} interactions/s; decoding took {:.1}s of it)",
        a.batch,
        tally.interactions,
        posts as f64 / import_secs,
        tally.interactions as f64 / import_secs,
        feeder.decode_time.as_secs_f64()
    );
    println!("graph: {users} users, {edges} edges, {} bytes on disk", handle.size_on_disk());
    print_writer_time("writer time", "write", "flush", handle);
    Ok(())
}

/// Where the writer's time went, per phase of a commit (`write` and `flush` name the middle two,
/// which each store spends differently).
fn print_writer_time(label: &str, write: &str, flush: &str, handle: &store::StoreHandle) {
    use std::sync::atomic::Ordering::Relaxed;
    let st = handle.stats();
    let ms = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64 / 1e3;
    println!(
        "{label}: stage={:.0}ms {write}={:.0}ms {flush}={:.0}ms apply={:.0}ms over {} commits",
        ms(&st.stage_micros),
        ms(&st.write_micros),
        ms(&st.flush_micros),
        ms(&st.apply_micros),
        st.commits.load(Relaxed)
    );
}

/// Prints latency quantiles; `found` says how many pairs were connected, for paths.
fn report(what: &str, lat: &mut [Duration], found: Option<usize>) {
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let count = match found {
        Some(found) => format!("{} pairs ({found} connected)", lat.len()),
        None => format!("{} requests", lat.len()),
    };
    println!(
        "{what}: {count} p50={:.3}ms p99={:.3}ms max={:.3}ms",
        q(0.50).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
}

/// Writes `edges.tsv` and `pairs.tsv` beside the data directory, for bench/networkx_compare.py.
fn peer_files(dir: &Path, handle: &store::StoreHandle, pairs: &[(String, String)]) -> anyhow::Result<()> {
    let base = dir.with_extension("export");
    std::fs::create_dir_all(&base)?;
    let g = handle.graph().read();
    let mut out = BufWriter::new(std::fs::File::create(base.join("edges.tsv"))?);
    let mut after: Option<(String, String)> = None;
    loop {
        let page = g.ties_page(after.as_ref().map(|(x, y)| (x.as_str(), y.as_str())), 100_000);
        for t in &page.items {
            writeln!(out, "{}\t{}", t.from, t.to)?;
        }
        match page.next {
            Some(c) => after = tagflow::graph::decode_pair(&c),
            None => break,
        }
    }
    let mut p = BufWriter::new(std::fs::File::create(base.join("pairs.tsv"))?);
    for (x, y) in pairs {
        writeln!(p, "{x}\t{y}")?;
    }
    println!("exported edges and pairs to {}", base.display());
    Ok(())
}

/// The restarted service, stopped (SIGTERM, then waited for) however the measures end: a failed
/// one must not leave it running, holding the data directory.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn restart_and_query(bin: &Path, dir: &Path, pairs: &[(String, String)], edges: usize) -> anyhow::Result<()> {
    let port = free_port()?;
    let t = Instant::now();
    let child = Service(
        Command::new(bin)
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--sources",
                "none",
                // What is measured is the service, not the per-client limiter (the benchmark is one client).
                "--rate-limit-reads",
                "0",
                "--rate-limit-writes",
                "0",
                "--port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    runtime.block_on(async {
        loop {
            if let Ok(r) = client.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if t.elapsed() > Duration::from_secs(600) {
                panic!("no /status after 10 minutes");
            }
        }
    });
    println!("restart: {:.2}s from spawn until /status answered", t.elapsed().as_secs_f64());
    let rss = rss_kib(child.0.id()).unwrap_or(0);
    println!(
        "memory of the restarted service: {:.0} MiB resident = {:.1} bytes per edge ({edges} edges)",
        rss as f64 / 1024.0,
        rss as f64 * 1024.0 / edges.max(1) as f64
    );
    let mut lat = Vec::with_capacity(pairs.len());
    let (mut found, mut gave_up) = (0, 0);
    runtime.block_on(async {
        for (x, y) in pairs {
            let url = format!("{base}/find_path/{}/{}", enc(x), enc(y));
            let t = Instant::now();
            let r = client.get(url).send().await.expect("request");
            let status = r.status().as_u16();
            let ok = status == 200;
            let body = r.bytes().await.unwrap_or_default();
            // A path, 404 no_path, or 503 too_expensive (the search's budget spent: far users in a
            // graph of long chains, as bench/http.sh's writes leave): anything else is a failure of
            // the measurement, not an answer.
            const GAVE_UP: &[u8] = b"\"too_expensive\"";
            let too_expensive = status == 503 && body.windows(GAVE_UP.len()).any(|w| w == GAVE_UP);
            assert!(
                ok || status == 404 || too_expensive,
                "find_path answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            lat.push(t.elapsed());
            found += usize::from(ok);
            gave_up += usize::from(too_expensive);
        }
    });
    report("find_path over HTTP (undirected, keep-alive, sequential)", &mut lat, Some(found));
    if gave_up > 0 {
        println!("  of which {gave_up} gave up within the search's budget (503 too_expensive)");
    }
    // An analytics answer: computed once (PageRank, cores, communities, components on the service's
    // default threads), then served from the cache.
    let url = format!("{base}/analytics/users?limit=100");
    let t = Instant::now();
    let first = runtime.block_on(async { client.get(&url).send().await?.text().await })?;
    anyhow::ensure!(first.contains("\"pagerank\""), "analytics answer: {first}");
    println!("GET /analytics/users?limit=100, first (computing): {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let mut lat = Vec::with_capacity(1000);
    runtime.block_on(async {
        for _ in 0..1000 {
            let t = Instant::now();
            let body = client.get(&url).send().await.expect("request").bytes().await.expect("body");
            lat.push(t.elapsed());
            assert!(body.len() > 1000);
        }
    });
    report("GET /analytics/users?limit=100 cached, over HTTP (keep-alive, sequential)", &mut lat, None);
    drop(child);
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn enc(s: &str) -> String {
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
