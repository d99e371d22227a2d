//! Request handlers. Each one validates its input, then either reads the graph under a short read
//! lock or submits a mutation to the store and answers once it is durable.

use super::analytics::{self, Params};
use super::error::ApiError;
use super::AppState;
use crate::graph::{decode_pair, validate_key, Graph, GraphError, Kind, Mutation, UserOrder};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

type Result<T> = std::result::Result<T, ApiError>;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

// ---- status ----

pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let (users, edges, interactions, timeline) = {
        let g = state.store.graph().read();
        (g.user_count(), g.tie_count(), g.interaction_count(), g.timeline_stats())
    };
    let stats = state.store.stats();
    let (resident, bytes_on_disk) = state.sampled.get(&state.store);
    use std::sync::atomic::Ordering::Relaxed;
    HttpResponse::Ok().json(json!({
        "status": "OK",
        "version": env!("CARGO_PKG_VERSION"),
        "users": users,
        "edges": edges,
        "interactions": interactions,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "store": {
            "commits": stats.commits.load(Relaxed),
            "mutations": stats.mutations.load(Relaxed),
            "bytes_on_disk": bytes_on_disk,
            "checkpoints": stats.checkpoints.load(Relaxed),
        },
        // What a 512 MB dyno or a container limit is measured against; absent off Linux.
        "resident_bytes": resident,
        "sources": state.sources.reports(),
        "analytics": { "runs": state.analytics.runs(), "held_snapshots": state.analytics.held_networks() },
        "timeline": { "interactions": timeline.0, "bytes": timeline.1 },
        "http": {
            "connections": state.connections.open(),
            "max_connections": state.connections.cap(),
            "connections_refused": state.connections.refused(),
            "rate_limited": state.rates.limited(),
        },
        "ui": "/ui",
    }))
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

/// Runs an expensive read of the graph on the analytics engine's pool of reads (bounded, lowest
/// priority: see [`crate::analytics::engine::Engine::read`]).
async fn heavy<T, F>(state: &AppState, read: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Graph) -> Result<T> + Send + 'static,
{
    state.analytics.read(read).await.map_err(|e| match e {
        None => ApiError::Overloaded("too many expensive reads are waiting"),
        Some(cause) => ApiError::Internal(cause),
    })?
}

// ---- users ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<usize>,
    cursor: Option<String>,
    sort: Option<String>,
}

fn limit(l: Option<usize>) -> Result<usize> {
    match l.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::InvalidQuery("limit must be at least 1".into())),
        n if n > MAX_LIMIT => Err(ApiError::InvalidQuery(format!("limit must be at most {MAX_LIMIT}"))),
        n => Ok(n),
    }
}

/// A page of users, serialized straight from the views (building a `json!` tree of them first cost
/// as much again).
#[derive(Serialize)]
struct UsersPage<'a> {
    vertices: &'a [crate::graph::UserView],
    count: usize,
    next_cursor: Option<&'a str>,
}

/// A user's heaviest edges and how many it has (`GET /vertices/{user}/aristas`).
#[derive(Serialize)]
struct UserEdges<'a> {
    user: &'a str,
    count: u32,
    edges: &'a [crate::graph::TieView],
}

/// A page of edges, likewise.
#[derive(Serialize)]
struct EdgesPage<'a> {
    edges: &'a [crate::graph::TieView],
    count: usize,
    next_cursor: Option<&'a str>,
}

pub async fn list_users(state: web::Data<AppState>, q: web::Query<ListParams>) -> Result<HttpResponse> {
    let limit = limit(q.limit)?;
    let order = match q.sort.as_deref() {
        None | Some("key") | Some("id") => UserOrder::Key,
        Some("degree") => UserOrder::Degree,
        Some("in_degree") => UserOrder::InDegree,
        Some("out_degree") => UserOrder::OutDegree,
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "sort must be key, degree, in_degree or out_degree, not {other:?}"
            )))
        }
    };
    if let (Some(c), UserOrder::Degree | UserOrder::InDegree | UserOrder::OutDegree) = (&q.cursor, order) {
        let valid = c.split_once(':').is_some_and(|(d, _)| d.parse::<u32>().is_ok());
        if !valid {
            return Err(ApiError::InvalidCursor);
        }
    }
    // By key it is O(limit); by degree a scan of every user: off the request threads.
    let cursor = q.cursor.clone();
    let listing = move |g: &Graph| (g.users_page(order, cursor.as_deref(), limit), g.user_count());
    let (page, count) = if order == UserOrder::Key {
        listing(&state.store.graph().read())
    } else {
        heavy(&state, move |g| Ok(listing(g))).await?
    };
    Ok(HttpResponse::Ok().json(UsersPage { vertices: &page.items, count, next_cursor: page.next.as_deref() }))
}

pub async fn count_users(state: web::Data<AppState>) -> HttpResponse {
    let n = state.store.graph().read().user_count();
    HttpResponse::Ok().json(json!({ "count": n }))
}

/// `GET /vertices/{user}`: degrees and interactions per kind, and the user's metrics in the whole
/// network where they have been computed (by `/analytics/...`).
pub async fn get_user(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let (detail, uid) = {
        let g = state.store.graph().read();
        let key = g.resolve(&path)?;
        (g.user(key).ok_or_else(|| ApiError::UserNotFound(path.to_string()))?, g.uid(key))
    };
    let mut body = serde_json::to_value(detail).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(m) = uid.and_then(|uid| analytics::cached_metrics(&state, uid)) {
        body["metrics"] = m;
    }
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Debug, Deserialize)]
pub struct EdgesOfParams {
    direction: Option<String>,
    limit: Option<usize>,
}

/// The edges of one user, heaviest first.
pub async fn user_edges(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<EdgesOfParams>,
) -> Result<HttpResponse> {
    let limit = limit(q.limit)?;
    let (want_out, want_in) = match q.direction.as_deref() {
        None | Some("both") => (true, true),
        Some("out") => (true, false),
        Some("in") => (false, true),
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!("direction must be in, out or both, not {other:?}")))
        }
    };
    let user = path.into_inner();
    let (key, total, edges) = heavy(&state, move |g| {
        let key = g.resolve(&user)?;
        let (total, edges) = g.heaviest_ties_of(key, want_out, want_in, limit).unwrap_or_default();
        Ok((key.to_string(), total, edges))
    })
    .await?;
    Ok(HttpResponse::Ok().json(UserEdges { user: &key, count: total, edges: &edges }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    id: String,
    handle: Option<String>,
    name: Option<String>,
}

pub async fn add_user(state: web::Data<AppState>, body: super::body::Json<NewUser>) -> Result<HttpResponse> {
    let NewUser { id, handle, name } = body.0;
    create_user(&state, id, handle.map(|h| h.trim_start_matches('@').to_string()), name).await
}

pub async fn add_user_at(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    create_user(&state, path.into_inner(), None, None).await
}

async fn create_user(
    state: &AppState,
    id: String,
    handle: Option<String>,
    name: Option<String>,
) -> Result<HttpResponse> {
    validate_key(&id)?;
    for (field, v) in [("handle", &handle), ("name", &name)] {
        if v.as_deref().is_some_and(|s| s.len() > 1024 || s.chars().any(char::is_control)) {
            return Err(ApiError::InvalidUser {
                key: id,
                reason: format!("{field} is too long or has control characters"),
            });
        }
    }
    state.store.submit_one(Mutation::AddUser { key: id.clone(), handle, name }).await??;
    let detail =
        state.store.graph().read().user(&id).ok_or_else(|| ApiError::Internal("user vanished".into()))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/vertices/{}", encode_segment(&id))))
        .json(detail))
}

pub async fn remove_user(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let key = state.store.graph().read().resolve(&path)?.to_string();
    state.store.submit_one(Mutation::RemoveUser { key }).await??;
    Ok(HttpResponse::NoContent().finish())
}

// ---- edges ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list_edges(state: web::Data<AppState>, q: web::Query<EdgeParams>) -> Result<HttpResponse> {
    let limit = limit(q.limit)?;
    let after = match &q.cursor {
        Some(c) => Some(decode_pair(c).ok_or(ApiError::InvalidCursor)?),
        None => None,
    };
    let g = state.store.graph().read();
    let page = g.ties_page(after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), limit);
    Ok(HttpResponse::Ok().json(EdgesPage {
        edges: &page.items,
        count: g.tie_count(),
        next_cursor: page.next.as_deref(),
    }))
}

pub async fn count_edges(state: web::Data<AppState>) -> HttpResponse {
    let g = state.store.graph().read();
    HttpResponse::Ok().json(json!({ "count": g.tie_count(), "interactions": g.interaction_count() }))
}

pub async fn get_edge(state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse> {
    let g = state.store.graph().read();
    let (from, to) = g.resolve_pair(&path.0, &path.1)?;
    let view =
        g.tie_view(from, to).ok_or_else(|| ApiError::EdgeNotFound { from: from.into(), to: to.into() })?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEdge {
    from: String,
    to: String,
    kind: Option<String>,
}

pub async fn add_edge(state: web::Data<AppState>, body: super::body::Json<NewEdge>) -> Result<HttpResponse> {
    let NewEdge { from, to, kind } = body.0;
    record_interaction(&state, &from, &to, kind.as_deref()).await
}

pub async fn add_edge_at(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    record_interaction(&state, &path.0, &path.1, None).await
}

pub async fn add_edge_at_kind(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse> {
    record_interaction(&state, &path.0, &path.1, Some(&path.2)).await
}

/// Names a user for a write that creates unknown users: a known key or handle resolves; an unknown
/// plain name becomes a new key; an unknown `@handle` is an error (a handle cannot be a key).
fn resolve_or_new(g: &Graph, spec: &str) -> Result<String> {
    match g.resolve(spec) {
        Ok(k) => Ok(k.to_string()),
        Err(GraphError::UserNotFound(_)) if !spec.starts_with('@') => {
            validate_key(spec)?;
            Ok(spec.to_string())
        }
        Err(e) => Err(e.into()),
    }
}

async fn record_interaction(
    state: &AppState,
    from: &str,
    to: &str,
    kind: Option<&str>,
) -> Result<HttpResponse> {
    let kind = match kind {
        None => Kind::Manual,
        Some(k) => Kind::parse(k).ok_or_else(|| ApiError::InvalidKind(k.chars().take(64).collect()))?,
    };
    let (from, to) = {
        let g = state.store.graph().read();
        (resolve_or_new(&g, from)?, resolve_or_new(&g, to)?)
    };
    let at = chrono::Utc::now().timestamp();
    state
        .store
        .submit_one(Mutation::AddInteraction { from: from.clone(), to: to.clone(), kind, at })
        .await??;
    let view = state
        .store
        .graph()
        .read()
        .tie_view(&from, &to)
        .ok_or_else(|| ApiError::Internal("edge vanished after write".into()))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/aristas/{}/{}", encode_segment(&from), encode_segment(&to))))
        .json(view))
}

pub async fn remove_edge(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (from, to) = {
        let g = state.store.graph().read();
        let (a, b) = g.resolve_pair(&path.0, &path.1)?;
        (a.to_string(), b.to_string())
    };
    state.store.submit_one(Mutation::RemoveTie { from, to }).await??;
    Ok(HttpResponse::NoContent().finish())
}

// ---- paths ----

/// `GET /find_path/{from}/{to}`: the fewest hops on the whole graph, or with `weighted=true` the
/// strongest path on a selection (cost 1/weight per edge).
pub async fn find_path(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let directed = p.flag("directed")?;
    let weighted = p.flag("weighted")?;
    if !weighted && (analytics::selects(&p) || p.has("min_weight")) {
        return Err(ApiError::InvalidQuery(
            "kinds, since, until and min_weight select the network of weighted=true paths".into(),
        ));
    }
    let sel = p.selection()?;
    p.finish()?;
    if weighted {
        return analytics::strongest_path(&state, &path.0, &path.1, directed, sel).await;
    }
    let (from, to) = path.into_inner();
    let found = heavy(&state, move |g| Ok(g.find_path(&from, &to, directed)?)).await?;
    Ok(HttpResponse::Ok().json(found))
}

// ---- the page ----

const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 500;
/// Edges `/graph` draws at most, the heaviest: more than a picture can show, and bounded, where the
/// edges among 500 hubs can be a hundred thousand.
const DEFAULT_MAX_EDGES: usize = 2_000;
const MAX_MAX_EDGES: usize = 20_000;

/// `GET /graph`: the `top` users of highest degree and the edges among them with at least
/// `min_weight` interactions, the subgraph `/ui` draws. Bounded, so the read lock is short. With
/// `kinds`, `since` or `until`, degrees and weights are those of that selection.
pub async fn subgraph(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let top = match p.take("top") {
        None => DEFAULT_TOP,
        Some(t) => match t.parse::<usize>() {
            Ok(0) => return Err(ApiError::InvalidQuery("top must be at least 1".into())),
            Ok(n) if n <= MAX_TOP => n,
            _ => return Err(ApiError::InvalidQuery(format!("top must be a number from 1 to {MAX_TOP}"))),
        },
    };
    let max_edges = match p.take("max_edges") {
        None => DEFAULT_MAX_EDGES,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= MAX_MAX_EDGES => n,
            _ => {
                return Err(ApiError::InvalidQuery(format!(
                    "max_edges must be a number from 0 to {MAX_MAX_EDGES}"
                )))
            }
        },
    };
    let selected = analytics::selects(&p);
    let sel = p.selection()?;
    p.finish()?;
    if selected {
        let a = state
            .analytics
            .run(crate::analytics::engine::Task::Network, sel)
            .await
            .map_err(ApiError::Internal)?;
        let net = &a.network;
        let mut ids: Vec<usize> = (0..net.users()).collect();
        let degree = |i: usize| net.out(i).0.len() + net.inc(i).0.len();
        ids.sort_unstable_by(|&x, &y| degree(y).cmp(&degree(x)).then(x.cmp(&y)));
        ids.truncate(top);
        let (nodes, edges, among) = analytics::drawing(&state, &sel, net, &ids, None, max_edges);
        return Ok(HttpResponse::Ok().json(json!({
            "nodes": nodes,
            "edges": edges,
            "edges_among": among,
            "users": net.users(),
            "edges_total": net.edges(),
            "network": crate::analytics::report::network_json(&sel, net),
        })));
    }
    let min_weight = u64::from(sel.min_weight);
    let (drawn, users, edges_total) = heavy(&state, move |g| {
        Ok((g.top_subgraph(top, min_weight, max_edges), g.user_count(), g.tie_count()))
    })
    .await?;
    let edges: Vec<_> = drawn
        .ties
        .into_iter()
        .map(|t| json!({ "from": t.from, "to": t.to, "total": t.total, "kinds": t.kinds }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "nodes": drawn.users,
        "edges": edges,
        "edges_among": drawn.among,
        "users": users,
        "edges_total": edges_total,
    })))
}

/// The page, compiled in so that the binary alone serves it, offline.
const UI_HTML: &str = include_str!("ui.html");

/// `GET /ui`: the live drawing of the graph. The content security policy backs the page's promise
/// to load nothing from elsewhere: only its own inline script and style, and requests to this origin.
pub async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; \
             style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ))
        .insert_header(("Cache-Control", "no-cache"))
        .body(UI_HTML)
}

// ---- the HTTP collector ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    format: Option<String>,
}

/// `POST /ingest`: NDJSON of any supported payload (X v2 lines, v1.1 statuses, Mastodon statuses,
/// Jetstream events), decoded and committed durably before the answer. Broken lines are counted and
/// skipped, with the first few reasons quoted.
pub async fn ingest(
    state: web::Data<AppState>,
    q: web::Query<IngestParams>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let format = match q.format.as_deref() {
        None => None,
        Some(f) => crate::config::ImportFormat::parse(f)
            .ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "unknown format {:?} (auto, x-v2, x-v1, mastodon, jetstream)",
                    f.chars().take(32).collect::<String>()
                ))
            })?
            .into_format(),
    };
    let body = super::body::read(&state, &req, &mut payload.into_inner()).await?;
    // Decoding a large body is CPU work: keep it off the async workers.
    let collected = web::block(move || crate::ingest::Collected::ndjson(&body, format))
        .await
        .map_err(|e| ApiError::Internal(format!("decode task: {e}")))?;
    let outcomes = state.store.submit(collected.mutations).await?;
    let tally = crate::ingest::source::Tally::of(&outcomes);
    tally.report_to(&state.ingest);
    state.ingest.add(&state.ingest.skipped, collected.skipped);
    if !collected.reasons.is_empty() {
        log::warn!("ingest: skipped {} records, first: {}", collected.skipped, collected.reasons[0]);
    }
    Ok(HttpResponse::Ok().json(crate::ingest::IngestAnswer {
        records: collected.records,
        accepted: tally.posts,
        interactions: tally.interactions,
        duplicates: tally.duplicates,
        deleted: tally.deleted,
        new_users: tally.new_users,
        skipped: collected.skipped,
        reasons: collected.reasons,
    }))
}

// ---- fallbacks ----

/// The answer to a method a route does not take: 405, naming the ones it does.
pub fn method_not_allowed(req: &HttpRequest, allow: &str) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string().chars().take(32).collect(),
        allow: allow.to_string(),
    }
}

pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse> {
    Err(ApiError::RouteNotFound(req.path().chars().take(200).collect()))
}

/// Percent-encodes a user key for a `Location` header path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
