//! Checkpoints beside the writes: posts ingested at a steady rate while checkpoints of the whole
//! graph are written, and a probe commit (one interaction, as `POST /aristas` makes) every few
//! milliseconds: how long a commit waits while a checkpoint runs, against while none does. Then a
//! backup of the whole store while the ingest goes on.

use super::Feeder;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tagflow::graph::{Kind, Mutation};
use tagflow::ingest::demo::DemoConfig;
use tagflow::store::StoreHandle;

/// Posts per second the feeder holds to (the demo's flat-out rate is higher; a live source's lower).
const RATE: u64 = 20_000;
const PROBE_EVERY: Duration = Duration::from_millis(5);

pub fn measure(handle: &StoreHandle, users: u32, secs: u64) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    // The feeder: batches of 200 posts, paced to RATE.
    let feeder = {
        let (h, stop) = (handle.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let start = DemoConfig::default().start + 400 * 86_400;
            let mut f = Feeder::new(users, 99, start, 200);
            let t = Instant::now();
            let (posts, _) = f.run(&h, |posts, _| {
                let due = Duration::from_secs_f64(posts as f64 / RATE as f64);
                if let Some(wait) = due.checked_sub(t.elapsed()) {
                    std::thread::sleep(wait);
                }
                !stop.load(Ordering::Relaxed)
            })?;
            Ok(posts)
        })
    };
    // The probe: one interaction a commit; its latency, and whether a checkpoint ran meanwhile.
    let probe = {
        let (h, stop) = (handle.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<Vec<(Duration, bool)>> {
            let mut out = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let before = h.stats().checkpointing.load(Ordering::Relaxed);
                let t = Instant::now();
                h.submit_blocking(vec![Mutation::AddInteraction {
                    from: format!("probe{}", i % 100),
                    to: format!("target{}", i % 7),
                    kind: Kind::Manual,
                    at: 1_800_000_000,
                }])?;
                let lat = t.elapsed();
                out.push((lat, before || h.stats().checkpointing.load(Ordering::Relaxed)));
                i += 1;
                std::thread::sleep(PROBE_EVERY);
            }
            Ok(out)
        })
    };
    let started = Instant::now();
    let checkpoints_before = handle.stats().checkpoints.load(Ordering::Relaxed);
    // A checkpoint as soon as the last one is done, all along.
    let mut longest = Duration::ZERO;
    let mut running_since: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(secs) {
        let running = handle.stats().checkpointing.load(Ordering::Relaxed);
        match (running, running_since) {
            (true, None) => running_since = Some(Instant::now()),
            (false, Some(t)) => {
                longest = longest.max(t.elapsed());
                running_since = None;
            }
            (false, None) => handle.checkpoint_soon(),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A backup of the whole store while the ingest goes on.
    let t = Instant::now();
    let backup = handle.backup_blocking()?;
    let mut sink = Counting(0);
    let counts = backup.write(&mut sink)?;
    let backup_secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let posts = feeder.join().expect("feeder")?;
    let mut probes = probe.join().expect("probe")?;
    let checkpoints = handle.stats().checkpoints.load(Ordering::Relaxed) - checkpoints_before;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "checkpoints beside the writes: {checkpoints} checkpoints in {elapsed:.0}s of ingest at {:.0} posts/s \
         (the longest {:.1}s)",
        posts as f64 / elapsed,
        longest.as_secs_f64()
    );
    for during in [false, true] {
        let mut lat: Vec<Duration> = probes.iter().filter(|p| p.1 == during).map(|p| p.0).collect();
        if lat.is_empty() {
            continue;
        }
        lat.sort();
        let q = |f: f64| lat[((lat.len() - 1) as f64 * f) as usize].as_secs_f64() * 1e3;
        println!(
            "  probe commit {}: n={} p50={:.1}ms p99={:.1}ms max={:.1}ms (goal: max under 100 ms)",
            if during { "while a checkpoint runs" } else { "with no checkpoint     " },
            lat.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
    probes.clear();
    println!(
        "backup while ingesting: {} users, {} edges, {} interactions as of commit {} in {backup_secs:.1}s, \
         {:.1} MiB gzipped ({:.0} MiB/s of archive)",
        counts.users,
        counts.ties,
        counts.stamps,
        counts.seq,
        sink.0 as f64 / f64::from(1 << 20),
        sink.0 as f64 / f64::from(1 << 20) / backup_secs
    );
    Ok(())
}

/// A sink that only counts (the backup's cost is reading and compressing, not the disk it lands on).
struct Counting(u64);

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
