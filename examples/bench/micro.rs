//! The small measurements: how fast the demo writes its lines, what its workload looks like at the
//! benchmark's scale, and how fast the X decoders read the recorded pages. Printed first by the
//! benchmark (`--no-micro` leaves them out); timings are CPU-bound and single-threaded.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tagflow::ingest::decode::{x_v1, x_v2};
use tagflow::ingest::demo::{DemoConfig, DemoGenerator};

/// The recorded payloads: `TAGFLOW_FIXTURES`, or `../shared/fixtures` beside the clone.
fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("TAGFLOW_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    dir.join("SOURCES.md").is_file().then_some(dir)
}

pub fn run(users: u32) {
    demo_throughput();
    demo_workload(users, 4_000_000);
    match fixtures() {
        Some(dir) => decode_throughput(&dir),
        None => println!("decode: the recorded fixtures are absent (set TAGFLOW_FIXTURES); not measured"),
    }
}

/// Lines per second the demo writes, flushed every 64 KiB as a streaming import hands chunks on.
fn demo_throughput() {
    let mut g = DemoGenerator::new(DemoConfig { users: 1_000_000, ..DemoConfig::default() });
    let lines = 4_000_000;
    let mut buf = Vec::with_capacity(128 << 10);
    let (mut bytes, started) = (0usize, Instant::now());
    for _ in 0..lines {
        g.write_next(&mut buf);
        buf.push(b'\n');
        if buf.len() > 64 << 10 {
            bytes += buf.len();
            buf.clear();
        }
    }
    bytes += buf.len();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "demo: {lines} lines in {secs:.2} s = {:.2} M lines/s, {:.0} MB/s, {:.0} bytes/line",
        lines as f64 / secs / 1e6,
        bytes as f64 / secs / 1e6,
        bytes as f64 / lines as f64
    );
}

/// The demo's posts at the benchmark's scale, through the real decoder: interactions per post, how
/// many distinct pairs and users they touch, how concentrated attention is.
fn demo_workload(users: u32, posts: usize) {
    let mut g = DemoGenerator::new(DemoConfig { users, ..DemoConfig::default() });
    let mut buf = Vec::with_capacity(4096);
    let (mut seen, mut received, mut pairs) =
        (HashSet::new(), std::collections::HashMap::new(), HashSet::new());
    let mut interactions = 0usize;
    for _ in 0..posts {
        buf.clear();
        g.write_next(&mut buf);
        for record in x_v2::decode(&buf).unwrap_or_default() {
            let tagflow::graph::Record::Post(p) = record else { continue };
            seen.insert(p.author.key.clone());
            for i in p.interactions {
                interactions += 1;
                *received.entry(i.to.clone()).or_insert(0u64) += 1;
                seen.insert(i.to.clone());
                pairs.insert((i.from, i.to));
            }
        }
    }
    let mut counts: Vec<u64> = received.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = counts.iter().take(users as usize / 100).sum();
    println!(
        "demo workload: {posts} posts over {users} users: {interactions} interactions ({:.3} per post), {} \
         distinct (from, to) pairs, {} users touched ({:.1}%), the top 1% receive {:.1}%",
        interactions as f64 / posts as f64,
        pairs.len(),
        seen.len(),
        100.0 * seen.len() as f64 / f64::from(users),
        100.0 * top as f64 / interactions.max(1) as f64
    );
}

/// Decodes each recorded page for about a second: tweets/s and MB/s; then the stream line by line.
fn decode_throughput(fixtures: &Path) {
    for name in ["x-v2/noflat.jsonl", "x-v2/brexit.jsonl", "x-v2/kpop.jsonl", "x-v1/search_2014.json"] {
        let Ok(bytes) = std::fs::read(fixtures.join(name)) else {
            println!("decode: {name} is missing");
            continue;
        };
        let run = |bytes: &[u8]| -> usize {
            let decoded = if name.starts_with("x-v1") { x_v1::decode(bytes) } else { x_v2::decode(bytes) };
            decoded.map(|r| r.len()).unwrap_or(0)
        };
        let per_page = run(&bytes);
        let (mut pages, start) = (0u64, Instant::now());
        while start.elapsed() < Duration::from_secs(1) {
            for _ in 0..10 {
                black_box(run(black_box(&bytes)));
            }
            pages += 10;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "decode {name}: {per_page} tweets/page, {:.0} tweets/s, {:.0} MB/s",
            (pages * per_page as u64) as f64 / secs,
            (pages * bytes.len() as u64) as f64 / secs / 1e6,
        );
    }
    let Ok(stream) = std::fs::read(fixtures.join("x-v2/streaming_output.jsonl")) else { return };
    let lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()).collect();
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < Duration::from_secs(1) {
        for line in &lines {
            black_box(x_v2::decode(black_box(line)).map(|r| r.len()).unwrap_or(0));
        }
        n += lines.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "decode x-v2/streaming_output.jsonl line by line: {:.0} lines/s, {:.0} MB/s",
        n as f64 / secs,
        (n as f64 / lines.len() as f64) * stream.len() as f64 / secs / 1e6
    );
}
