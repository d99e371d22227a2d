//! `GET /metrics`: Prometheus text format. Requests are counted by route pattern (never the raw
//! path, so that the labels stay few), method and status, with a latency histogram; the store's
//! write path records its own histograms (see [`crate::store::WriteStats`]); everything else —
//! graph size, sources, connections, memory — is read from the service's counters at scrape time.
//! No label ever holds a credential or a user's data.

use super::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use parking_lot::Mutex;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// The source states, as the `state` label of `tagflow_source_state`.
const STATES: [&str; 6] = ["connecting", "streaming", "backing_off", "stalled", "failed", "stopped"];

/// The registry and the metrics kept between scrapes.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    users: IntGauge,
    edges: IntGauge,
    interactions: IntGauge,
    bytes_on_disk: IntGauge,
    store_failing: IntGauge,
    /// On a database store: the last shared-log record applied here, and how far behind the log.
    replica_applied: IntGauge,
    replica_lag: IntGauge,
    resident: IntGauge,
    connections: IntGauge,
    source_state: IntGaugeVec,
    source_lag: IntGaugeVec,
    /// Counters mirrored from the service's atomics at scrape time (they only grow).
    mirrored: Mirrored,
    /// One scrape at a time brings the mirrors up to date.
    scrape: Mutex<()>,
}

struct Mirrored {
    commits: IntCounter,
    mutations: IntCounter,
    checkpoints: IntCounter,
    refused: IntCounter,
    rate_limited: IntCounter,
    analytics_runs: IntCounter,
    /// Per source: posts, interactions, duplicates, skipped, deleted, reconnects.
    source: [IntCounterVec; 6],
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid counter");
    registry.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid gauge");
    registry.register(Box::new(g.clone())).expect("registered once");
    g
}

/// Brings a mirrored counter up to `now` (counters never go down).
fn mirror(c: &IntCounter, now: u64) {
    let have = c.get();
    if now > have {
        c.inc_by(now - have);
    }
}

impl Metrics {
    /// The registry, with the store's histograms in it.
    pub fn new(store: &crate::store::WriteStats) -> Metrics {
        let registry = Registry::new();
        for h in [
            &store.commit_seconds,
            &store.commit_mutations,
            &store.flush_seconds,
            &store.checkpoint_seconds,
            &store.graph_held_seconds,
        ] {
            registry.register(Box::new(h.clone())).expect("registered once");
        }
        let requests = IntCounterVec::new(
            Opts::new(
                "tagflow_http_requests_total",
                "HTTP requests answered, by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("a valid counter");
        registry.register(Box::new(requests.clone())).expect("registered once");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "tagflow_http_request_duration_seconds",
                "Seconds to answer, by route pattern and method",
            )
            .buckets(prometheus::exponential_buckets(0.000_1, 2.5, 14).expect("valid buckets")),
            &["route", "method"],
        )
        .expect("a valid histogram");
        registry.register(Box::new(latency.clone())).expect("registered once");
        let source_state = IntGaugeVec::new(
            Opts::new("tagflow_source_state", "1 for the state each source is in, 0 for the others"),
            &["source", "state"],
        )
        .expect("a valid gauge");
        registry.register(Box::new(source_state.clone())).expect("registered once");
        let source_lag = IntGaugeVec::new(
            Opts::new(
                "tagflow_source_lag_seconds",
                "Seconds since the newest post a source ingested was made",
            ),
            &["source"],
        )
        .expect("a valid gauge");
        registry.register(Box::new(source_lag.clone())).expect("registered once");
        let per_source = |what: &str| {
            let c = IntCounterVec::new(
                Opts::new(format!("tagflow_source_{what}_total"), format!("{what} counted by each source")),
                &["source"],
            )
            .expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let source =
            ["posts", "interactions", "duplicates", "skipped", "deleted", "reconnects"].map(per_source);
        let mirrored = Mirrored {
            commits: counter(&registry, "tagflow_store_commits_total", "Group commits"),
            mutations: counter(&registry, "tagflow_store_mutations_total", "Mutations committed"),
            checkpoints: counter(&registry, "tagflow_store_checkpoints_total", "Checkpoints written"),
            refused: counter(
                &registry,
                "tagflow_http_connections_refused_total",
                "Connections refused because --max-connections were open",
            ),
            rate_limited: counter(&registry, "tagflow_http_rate_limited_total", "Requests refused with 429"),
            analytics_runs: counter(&registry, "tagflow_analytics_runs_total", "Analyses computed"),
            source,
        };
        Metrics {
            users: gauge(&registry, "tagflow_users", "Users in the graph"),
            edges: gauge(&registry, "tagflow_edges", "Edges (pairs of users that interacted) in the graph"),
            interactions: gauge(&registry, "tagflow_interactions", "Interactions in the graph"),
            bytes_on_disk: gauge(&registry, "tagflow_store_bytes_on_disk", "Bytes the data directory takes"),
            store_failing: gauge(
                &registry,
                "tagflow_store_failing",
                "1 while commits fail (disk full or another I/O error: /status says which), else 0",
            ),
            replica_applied: gauge(
                &registry,
                "tagflow_replica_applied_seq",
                "On a database store: the last record of the shared log this replica applied (0 on sled)",
            ),
            replica_lag: gauge(
                &registry,
                "tagflow_replica_lag_records",
                "On a database store: records committed to the shared log not yet applied here (0 on sled)",
            ),
            resident: gauge(&registry, "process_resident_memory_bytes", "Resident memory of the process"),
            connections: gauge(&registry, "tagflow_http_connections", "Open HTTP connections"),
            registry,
            requests,
            latency,
            source_state,
            source_lag,
            mirrored,
            scrape: Mutex::new(()),
        }
    }

    /// Counts one answered request.
    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.latency.with_label_values(&[route, method]).observe(seconds);
    }

    /// The text exposition, with every value read now.
    fn render(&self, state: &AppState) -> Result<String, prometheus::Error> {
        let _one = self.scrape.lock();
        {
            let g = state.store.graph().read();
            self.users.set(i64::try_from(g.user_count()).unwrap_or(i64::MAX));
            self.edges.set(i64::try_from(g.tie_count()).unwrap_or(i64::MAX));
            self.interactions.set(i64::try_from(g.interaction_count()).unwrap_or(i64::MAX));
        }
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (resident, bytes_on_disk) = state.sampled.get(&state.store);
        self.bytes_on_disk.set(as_i64(bytes_on_disk));
        self.store_failing.set(i64::from(state.store.health().failing().is_some()));
        if let Some((_, r)) = state.store.replication() {
            self.replica_applied.set(as_i64(r.applied.load(Relaxed)));
            self.replica_lag.set(as_i64(r.lag()));
        }
        self.resident.set(as_i64(resident.unwrap_or(0)));
        self.connections.set(as_i64(state.connections.open() as u64));
        let stats = state.store.stats();
        let m = &self.mirrored;
        mirror(&m.commits, stats.commits.load(Relaxed));
        mirror(&m.mutations, stats.mutations.load(Relaxed));
        mirror(&m.checkpoints, stats.checkpoints.load(Relaxed));
        mirror(&m.refused, state.connections.refused());
        mirror(&m.rate_limited, state.rates.limited());
        mirror(&m.analytics_runs, state.analytics.runs());
        let now = chrono::Utc::now().timestamp();
        for source in state.sources.all() {
            let name = source.name.as_str();
            let values = [
                &source.posts,
                &source.interactions,
                &source.duplicates,
                &source.skipped,
                &source.deleted,
                &source.reconnects,
            ];
            for (counter, value) in m.source.iter().zip(values) {
                mirror(&counter.with_label_values(&[name]), value.load(Relaxed));
            }
            let current = source.state().label();
            for s in STATES {
                self.source_state.with_label_values(&[name, s]).set(i64::from(s == current));
            }
            let last = source.last_post_at.load(Relaxed);
            if last > 0 {
                self.source_lag.with_label_values(&[name]).set((now - last).max(0));
            }
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The method as a label: the standard ones by name, anything else as `other` (a client chooses it).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware that counts every answer, refusals by the gate included.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    let method = method_label(req.method());
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        metrics.observe(&route, method, response.status().as_u16(), started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// Counters and histograms in the Prometheus text format: requests by route, method and status;
/// users, edges, interactions; each source's state and counters; the store's commits, fsyncs and
/// checkpoints; connections, refusals and resident memory.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format 0.0.4",
        content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, super::error::ApiError> {
    let text = state.metrics.render(&state).map_err(|e| super::error::ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}
