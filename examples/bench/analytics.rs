//! The analytics part of the benchmark: snapshot times and sizes, each algorithm on every core (as
//! the peers run), the timeline's cost, durable ingest with and without analyses running, and the
//! edge list and figures `bench/analytics_peers.py` compares networkit, igraph and NetworkX with.

use serde_json::{json, Value};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tagflow::analytics::community::{self, Method};
use tagflow::analytics::engine::{self, Engine, Task};
use tagflow::analytics::network::Scratch;
use tagflow::analytics::{pagerank, paths, structure, Network};
use tagflow::graph::{Extract, Selection};
use tagflow::store::StoreHandle;

/// Windows of ingest alone, and as many with analyses running, taken in turns.
const INGEST_ROUNDS: u64 = 2;

/// How many times each algorithm runs (betweenness once: it takes long enough not to need it).
const BEST_OF: u32 = 3;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times `f` `runs` times (the machine is shared: the best of a few is the figure least disturbed
/// by others; the peers are timed the same way), records the best under `key`.
fn timed<T>(
    figures: &mut serde_json::Map<String, Value>,
    key: &str,
    runs: u32,
    f: impl Fn() -> T,
) -> (T, f64) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let o = f();
        best = best.min(ms(t.elapsed()));
        out = Some(o);
    }
    figures.insert(key.into(), json!(best));
    (out.expect("ran at least once"), best)
}

/// Snapshots of a selection taken [`BEST_OF`] times, as the algorithms are timed: the last network,
/// the first run's time, the best time, and the longest the read lock was held.
fn snapshot(handle: &StoreHandle, sel: &Selection) -> (Network, f64, f64, f64) {
    let (mut first, mut best, mut lock) = (None, f64::INFINITY, 0f64);
    let mut net = None;
    // Kept from one snapshot to the next, as the engine keeps it.
    let mut scratch = Scratch::default();
    for _ in 0..BEST_OF {
        let t = Instant::now();
        let (n, held) = engine::snapshot(handle.graph(), sel, None, &mut scratch);
        let took = ms(t.elapsed());
        first.get_or_insert(took);
        (best, lock) = (best.min(took), lock.max(ms(held)));
        net = Some(n);
    }
    (net.expect("taken at least once"), first.unwrap_or(best), best, lock)
}

/// Runs every measurement on the open store; writes `analytics.u32` (the selected network's edges
/// as little-endian `u32` triples `from, to, weight` in dense ids) and `tagflow.json` into `export`.
pub fn measure(handle: &StoreHandle, export: &Path, samples: usize, threads: usize) -> anyhow::Result<()> {
    let mut f = serde_json::Map::new();
    let (stamps, timeline_bytes) = handle.graph().read().timeline_stats();
    println!(
        "timeline: {stamps} interactions in {:.0} MiB = {:.2} bytes per interaction",
        timeline_bytes as f64 / 1048576.0,
        timeline_bytes as f64 / stamps.max(1) as f64
    );
    f.insert("timeline_bytes_per_interaction".into(), json!(timeline_bytes as f64 / stamps.max(1) as f64));

    let whole = Selection::default();
    let (net, first, took, lock) = snapshot(handle, &whole);
    println!(
        "snapshot of the whole network: {took:.0} ms, best of {BEST_OF} (the first {first:.0} ms; at most {lock:.0} ms \
         holding the read lock); {} users, {} edges, {} interactions; {:.1} bytes per edge ({:.1} for the edges, \
         {:.1} for the users)",
        net.users(),
        net.edges(),
        net.interactions,
        net.bytes() as f64 / net.edges().max(1) as f64,
        net.edge_bytes() as f64 / net.edges().max(1) as f64,
        net.user_bytes() as f64 / net.edges().max(1) as f64,
    );
    f.insert("snapshot_ms".into(), json!(took));
    f.insert("snapshot_first_ms".into(), json!(first));
    f.insert("snapshot_lock_ms".into(), json!(lock));
    f.insert("snapshot_bytes_per_edge".into(), json!(net.bytes() as f64 / net.edges().max(1) as f64));
    f.insert("users".into(), json!(net.users()));
    f.insert("edges".into(), json!(net.edges()));
    // The guard must not live through the snapshot: a second read lock waits behind a queued writer.
    let span = handle.graph().read().time_span();
    if let Some((_, last)) = span {
        let day = Selection { since: Some(last + 1 - 86_400), until: Some(last + 1), ..Selection::default() };
        let (dnet, dfirst, dtook, dlock) = snapshot(handle, &day);
        println!(
            "snapshot of the last day: {dtook:.0} ms, best of {BEST_OF} (the first {dfirst:.0} ms; at most {dlock:.0} ms \
             holding the read lock); {} users, {} edges, {} interactions",
            dnet.users(),
            dnet.edges(),
            dnet.interactions
        );
        f.insert("day_snapshot_ms".into(), json!(dtook));
        f.insert("day_snapshot_lock_ms".into(), json!(dlock));
    }

    algorithms(&net, samples, threads, &mut f)?;

    std::fs::create_dir_all(export)?;
    let mut out = BufWriter::new(std::fs::File::create(export.join("analytics.u32"))?);
    for u in 0..net.users() {
        let (dst, w) = net.out(u);
        for (&v, &w) in dst.iter().zip(w) {
            for x in [u as u32, v, w] {
                out.write_all(&x.to_le_bytes())?;
            }
        }
    }
    out.flush()?;
    std::fs::write(export.join("tagflow.json"), serde_json::to_string_pretty(&Value::Object(f))?)?;
    println!("wrote the network and the figures to {} for bench/analytics_peers.py", export.display());
    Ok(())
}

/// Times each algorithm on `net` on a pool of `threads` (as the peers run), records the figures.
fn algorithms(
    net: &Network,
    samples: usize,
    threads: usize,
    f: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| {
        let n = net.users().max(1);
        // The peers' criterion: L1 change below 1e-8 (NetworkX's is users x tol).
        let (pr, t) =
            timed(f, "pagerank_ms", BEST_OF, || pagerank::pagerank(net, 0.85, 1e-8 / n as f64, 10_000));
        println!("pagerank (L1 change < 1e-8): {t:.0} ms, {} iterations", pr.iterations);
        let (weak, t) = timed(f, "weak_ms", BEST_OF, || structure::weak_components(net));
        println!("weak components: {t:.0} ms, {} components", weak.count());
        f.insert("weak_count".into(), json!(weak.count()));
        let (strong, t) = timed(f, "strong_ms", BEST_OF, || structure::strong_components(net));
        println!("strong components: {t:.0} ms, {} components", strong.count());
        f.insert("strong_count".into(), json!(strong.count()));
        let (und, t) = timed(f, "undirected_ms", 1, || net.undirected());
        println!("undirected view: {t:.0} ms, {} adjacency entries", und.adjacency_len());
        let (cores, t) = timed(f, "cores_ms", BEST_OF, || structure::core_numbers(und));
        println!("core numbers: {t:.0} ms, max core {}", cores.iter().max().unwrap_or(&0));
        f.insert("max_core".into(), json!(cores.iter().max().unwrap_or(&0)));
        for (method, key) in [(Method::Leiden, "leiden"), (Method::Louvain, "louvain")] {
            let (c, t) =
                timed(f, &format!("{key}_ms"), BEST_OF, || community::communities(und, method, 1.0, 42));
            println!("{key}: {t:.0} ms, {} communities, modularity {:.4}", c.partition.count(), c.modularity);
            f.insert(format!("{key}_modularity"), json!(c.modularity));
        }
        let (_, t) = timed(f, "betweenness_ms", 1, || paths::betweenness(und, samples, 42));
        println!("betweenness, {samples} sampled sources: {t:.0} ms");
    });
    f.insert("betweenness_samples".into(), json!(samples));
    f.insert("threads".into(), json!(threads));
    Ok(())
}

/// The algorithms again, on the edge list [`measure`] wrote into `export` (`analytics.u32`), in a
/// process of their own: `bench/analytics_peers.py --rounds` runs this between the peers' rounds,
/// so that both sides are timed within minutes of each other on a machine whose speed drifts.
/// Writes the figures to `tagflow-algorithms.json` there.
pub fn on_edge_list(export: &Path, samples: usize, threads: usize) -> anyhow::Result<()> {
    let raw = std::fs::read(export.join("analytics.u32"))?;
    let words: Vec<u32> = raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let edges: Vec<[u32; 3]> = words.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect();
    let t = Instant::now();
    let net = Network::build(Extract { edges, uid_of: None, degrees: None, version: 0 }, 1);
    println!(
        "network of {}: {} users, {} edges, built in {:.0} ms",
        export.display(),
        net.users(),
        net.edges(),
        ms(t.elapsed())
    );
    let mut f = serde_json::Map::new();
    algorithms(&net, samples, threads, &mut f)?;
    std::fs::write(export.join("tagflow-algorithms.json"), serde_json::to_string_pretty(&Value::Object(f))?)?;
    Ok(())
}

/// Durable ingest alone and while the engine (with the service's default threads) recomputes
/// PageRank, cores, communities and components on the live graph in a loop: windows of `secs`,
/// [`INGEST_ROUNDS`] of each side, in the order alone, with, with, alone (and so on): every window
/// adds posts (1.1-1.8M at 1M users), the graph grows, and the rate falls from one window to the
/// next (by 16-41% from the first to the fourth, measured): this order gives both sides the same
/// share of that fall, where alone, with, alone, with charged the analyses' side with a window's
/// more of it. The figure is the ratio of the two sides' posts.
pub fn ingest_under_analytics(
    handle: &StoreHandle,
    feed: &mut dyn FnMut(&StoreHandle, Duration) -> anyhow::Result<u64>,
    secs: u64,
) -> anyhow::Result<()> {
    let span = Duration::from_secs(secs);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).max(1);
    let engine = Engine::new(handle.graph().clone(), threads)?;
    let (mut alone, mut with, mut runs) = (0u64, 0u64, 0u64);
    for window in 0..2 * INGEST_ROUNDS {
        if matches!(window % 4, 0 | 3) {
            let a = feed(handle, span)?;
            println!("durable ingest, window {}: {:.0} posts/s alone", window + 1, a as f64 / secs as f64);
            alone += a;
            continue;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let looping = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let sel = Selection::default();
                let tasks = [
                    Task::pagerank(0.85),
                    Task::Cores,
                    Task::communities(Method::Leiden, 1.0, 42),
                    Task::Components { strong: false },
                ];
                // A dashboard that asks again as soon as it has its answers: the pool is never idle.
                let before = engine.runs();
                while !stop.load(Ordering::Relaxed) {
                    for t in tasks {
                        rt.block_on(engine.run(t, sel)).expect("analysis");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                engine.runs() - before
            })
        };
        let w = feed(handle, span)?;
        stop.store(true, Ordering::Relaxed);
        let r = looping.join().expect("analytics loop");
        println!(
            "durable ingest, window {}: {:.0} posts/s while analyses run ({r} computed)",
            window + 1,
            w as f64 / secs as f64
        );
        (with, runs) = (with + w, runs + r);
    }
    let per_sec = |posts: u64| posts as f64 / (secs * INGEST_ROUNDS) as f64;
    println!(
        "durable ingest: {:.0} posts/s alone, {:.0} posts/s while analyses run on {threads} thread(s) \
         ({runs} analyses computed) = {:.0}% kept",
        per_sec(alone),
        per_sec(with),
        100.0 * with as f64 / alone.max(1) as f64
    );
    Ok(())
}
