//! The PostgreSQL store, beside the sled figures: durable ingest through the database (the same
//! generated posts, decoder and group commits as the sled import), a replica's start from the
//! database (checkpoint then log), and how far a follower lags a writer at a steady 2,000 posts/s.

use super::{report, Feeder};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tagflow::ingest::demo::DemoConfig;
use tagflow::store::{self, Database, StoreConfig, StoreHandle};

/// The follower's writer holds to this rate (the figure).
const FOLLOW_RATE: u64 = 2_000;
const FOLLOW_BATCH: usize = 20;

fn open(
    db: &Database,
    dir: &std::path::Path,
) -> anyhow::Result<(StoreHandle, store::Writer, store::LoadReport)> {
    let mut config = StoreConfig::new(dir);
    config.database = Some(db.clone());
    Ok(store::open(&config)?)
}

pub fn measure(
    url: &str,
    users: u32,
    interactions: u64,
    batch: usize,
    follow_secs: u64,
) -> anyhow::Result<()> {
    let db = Database::parse(url).map_err(anyhow::Error::msg)?;
    let scratch = std::env::temp_dir().join("tagflow-bench-pg");
    println!("postgres: {} (a fresh database)", db.shown());

    // 1. Durable ingest: every group commit one transaction, synchronous commit.
    let (handle, writer, _) = open(&db, &scratch)?;
    let mut feeder = Feeder::new(users, 42, DemoConfig::default().start, batch);
    let started = Instant::now();
    let (posts, _) = feeder.run(&handle, |posts, n| {
        if posts > 0 && posts % 500_000 == 0 {
            println!(
                "  .. {posts} posts, {n} interactions, {:.0} posts/s",
                posts as f64 / started.elapsed().as_secs_f64()
            );
        }
        n < interactions
    })?;
    let secs = started.elapsed().as_secs_f64();
    let (u, e) = {
        let g = handle.graph().read();
        (g.user_count(), g.tie_count())
    };
    println!(
        "postgres import (durable, one transaction per group commit): {posts} posts, {} interactions in {secs:.1}s \
         = {:.0} posts/s; graph {u} users, {e} edges",
        feeder.tally.interactions,
        posts as f64 / secs
    );
    super::print_writer_time("postgres writer time", "insert", "commit", &handle);
    // A clean stop writes a checkpoint into the database, so that a start reads a snapshot.
    let t = Instant::now();
    handle.close_blocking();
    drop(handle);
    writer.join()?;
    println!("postgres clean stop (a checkpoint of the whole graph): {:.1}s", t.elapsed().as_secs_f64());

    // 2. A replica starts: the snapshot, and the log after it; then a second one beside it.
    let (handle, writer, loaded) = open(&db, &scratch)?;
    println!(
        "postgres replica start: {} users, {} edges loaded from the database in {:.2}s",
        loaded.users,
        loaded.ties,
        loaded.elapsed.as_secs_f64()
    );
    let (second, second_writer, _) = open(&db, &scratch)?;

    // 3. Follower lag: the first replica writes 2,000 posts/s in commits of 20; the second applies
    // each commit when notified. Lag: from the writer's acknowledgement to the follower's apply.
    let follower = second.clone();
    let watch = std::thread::spawn(move || {
        let replication = follower.replication().expect("a database store").1;
        let mut seen = Vec::new();
        let mut last = replication.applied.load(Ordering::Acquire);
        let deadline = Instant::now() + Duration::from_secs(follow_secs + 10);
        while Instant::now() < deadline {
            let now = replication.applied.load(Ordering::Acquire);
            if now != last {
                let at = Instant::now();
                seen.extend((last + 1..=now).map(|seq| (seq, at)));
                last = now;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        seen
    });
    let writer_replication = handle.replication().expect("a database store").1;
    let mut feeder = Feeder::new(users, 77, DemoConfig::default().start + 800 * 86_400, FOLLOW_BATCH);
    let mut acks = Vec::new();
    let t = Instant::now();
    let (posts, _) = feeder.run(&handle, |posts, _| {
        let due = Duration::from_secs_f64(posts as f64 / FOLLOW_RATE as f64);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
        acks.push((writer_replication.applied.load(Ordering::Acquire), Instant::now()));
        t.elapsed() < Duration::from_secs(follow_secs)
    })?;
    let applied = watch.join().expect("the watcher");
    let applied: std::collections::HashMap<u64, Instant> = applied.into_iter().collect();
    // Each commit's acknowledgement: the first moment the writer had applied it.
    let mut acked = std::collections::BTreeMap::new();
    for (seq, at) in acks {
        acked.entry(seq).or_insert(at);
    }
    let mut lag: Vec<Duration> = acked
        .iter()
        .filter_map(|(seq, at)| applied.get(seq).map(|f| f.saturating_duration_since(*at)))
        .collect();
    println!(
        "postgres follower: {posts} posts at {FOLLOW_RATE}/s in {} commits, {} seen applied by the other replica",
        acked.len(),
        lag.len()
    );
    report("postgres follower lag (ack on the writer -> applied on the follower)", &mut lag, None);
    second.close_blocking();
    drop(second);
    second_writer.join()?;
    handle.close_blocking();
    drop(handle);
    writer.join()?;
    Ok(())
}
