//! `GET /status`: the service's health and size, what load balancers and the page poll; and the
//! figures it shows that cost system calls, read at most once a second.

use super::AppState;
use crate::ingest::status::SourceReport;
use actix_web::web;
use serde::Serialize;
use utoipa::ToSchema;

/// The service's health and size (`GET /status`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `OK`, or `DEGRADED` while the store cannot make writes durable (reads still answer; see
    /// `store.failing`).
    status: &'static str,
    version: &'static str,
    users: usize,
    edges: usize,
    interactions: u64,
    uptime_seconds: u64,
    store: StoreStatus,
    /// Resident memory, what a 512 MB dyno or a container limit is measured against; null off Linux.
    resident_bytes: Option<u64>,
    /// Every source: live ones, imports and `POST /ingest`.
    sources: Vec<SourceReport>,
    analytics: AnalyticsStatus,
    /// The per-interaction timeline that time windows are computed from.
    timeline: TimelineStatus,
    http: HttpStatus,
    /// Where the page is.
    ui: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
struct StoreStatus {
    /// `sled` (the data directory) or `postgres` (a database replicas share).
    backend: &'static str,
    /// On `postgres`: the database (without password), the last log record this replica applied,
    /// the newest it knows was committed, and how many it is behind.
    database: Option<String>,
    applied_seq: Option<u64>,
    log_seq: Option<u64>,
    lag_records: Option<u64>,
    /// `ok`, `storage_full` (the disk is full) or `store_unavailable` (another I/O error): the last
    /// commit's fate. Writes are refused with that code until one succeeds again.
    health: &'static str,
    /// Since when commits fail, how many did, and the last cause; null while they succeed.
    failing: Option<Failing>,
    commits: u64,
    mutations: u64,
    bytes_on_disk: u64,
    checkpoints: u64,
    /// A checkpoint is being written right now (beside the writes, which it does not hold up).
    checkpointing: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct Failing {
    since: String,
    failed_commits: u64,
    message: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct AnalyticsStatus {
    /// Analyses run since start.
    runs: u64,
    /// Network snapshots held by cached analyses.
    held_snapshots: usize,
}

#[derive(Debug, Serialize, ToSchema)]
struct TimelineStatus {
    interactions: usize,
    bytes: usize,
}

#[derive(Debug, Serialize, ToSchema)]
struct HttpStatus {
    connections: usize,
    max_connections: usize,
    connections_refused: u64,
    /// Requests answered 429 since start.
    rate_limited: u64,
}

#[utoipa::path(get, path = "/status", tag = "service",
    responses((status = 200, description = "The service is up", body = Status)))]
pub async fn status(state: web::Data<AppState>) -> web::Json<Status> {
    let (users, edges, interactions, timeline) = {
        let g = state.store.graph().read();
        (g.user_count(), g.tie_count(), g.interaction_count(), g.timeline_stats())
    };
    let stats = state.store.stats();
    let (resident, bytes_on_disk) = state.sampled.get(&state.store);
    use std::sync::atomic::Ordering::Relaxed;
    let failing = state.store.health().failing();
    let replication = state.store.replication();
    let seq = |f: fn(&crate::store::Replication) -> u64| replication.map(|(_, r)| f(r));
    web::Json(Status {
        status: if failing.is_some() { "DEGRADED" } else { "OK" },
        version: env!("CARGO_PKG_VERSION"),
        users,
        edges,
        interactions,
        uptime_seconds: state.started.elapsed().as_secs(),
        store: StoreStatus {
            backend: if replication.is_some() { "postgres" } else { "sled" },
            database: replication.map(|(db, _)| db.to_string()),
            applied_seq: seq(|r| r.applied.load(Relaxed)),
            log_seq: seq(|r| r.head.load(Relaxed)),
            lag_records: seq(crate::store::Replication::lag),
            health: failing.as_ref().map_or("ok", |f| f.code),
            failing: failing.map(|f| Failing {
                since: f.since.to_rfc3339(),
                failed_commits: f.failed_commits,
                message: f.message,
            }),
            commits: stats.commits.load(Relaxed),
            mutations: stats.mutations.load(Relaxed),
            bytes_on_disk,
            checkpoints: stats.checkpoints.load(Relaxed),
            checkpointing: stats.checkpointing.load(Relaxed),
        },
        resident_bytes: resident,
        sources: state.sources.reports(),
        analytics: AnalyticsStatus {
            runs: state.analytics.runs(),
            held_snapshots: state.analytics.held_networks(),
        },
        timeline: TimelineStatus { interactions: timeline.0, bytes: timeline.1 },
        http: HttpStatus {
            connections: state.connections.open(),
            max_connections: state.connections.cap(),
            connections_refused: state.connections.refused(),
            rate_limited: state.rates.limited(),
        },
        ui: "/ui",
    })
}

/// Figures that cost system calls to read (a `/proc` file, sled's files on disk): read at most once
/// a second, since `/status` may be polled by many (reading them on every request made `/status`
/// three times slower than a count).
#[derive(Debug, Default)]
pub struct Sampled {
    last: parking_lot::Mutex<Option<(std::time::Instant, Option<u64>, u64)>>,
}

impl Sampled {
    /// Resident memory (Linux) and bytes on disk, at most a second old.
    pub fn get(&self, store: &crate::store::StoreHandle) -> (Option<u64>, u64) {
        let mut last = self.last.lock();
        match *last {
            Some((at, resident, disk)) if at.elapsed() < std::time::Duration::from_secs(1) => {
                (resident, disk)
            }
            _ => {
                let (resident, disk) = (resident_bytes(), store.size_on_disk());
                *last = Some((std::time::Instant::now(), resident, disk));
                (resident, disk)
            }
        }
    }
}

/// This process's resident memory, from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?;
    kib.trim().parse::<u64>().ok().map(|k| k * 1024)
}
