//! Analytics routes: the per-user table, components, cores, communities, bridges, ego networks, the
//! strongest path, and the selection (`kinds`, `since`, `until`, `min_weight`) they all share.
//! Every answer says which network it describes and when it was computed.

use super::error::ApiError;
use super::AppState;
use crate::analytics::community::Method;
use crate::analytics::engine::{Answer, Output, Task};
use crate::analytics::report::{self, envelope, CommunityParams, UsersQuery};
use crate::analytics::Network;
use crate::graph::{rfc3339, Selection};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::str::FromStr;

type Result<T> = std::result::Result<T, ApiError>;

/// A query string taken apart: each route takes what it knows, and anything left over is refused.
pub(super) struct Params(HashMap<String, String>);

impl Params {
    pub(super) fn of(req: &HttpRequest) -> Result<Params> {
        web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .map(|q| Params(q.into_inner()))
            .map_err(|e| ApiError::InvalidQuery(e.to_string()))
    }

    pub(super) fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// A number within `range`, or the default.
    pub(super) fn number<T>(&mut self, key: &str, range: std::ops::RangeInclusive<T>, default: T) -> Result<T>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.take(key) else { return Ok(default) };
        match v.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ApiError::InvalidQuery(format!(
                "{key} must be a number from {} to {}, not {:?}",
                range.start(),
                range.end(),
                v.chars().take(32).collect::<String>()
            ))),
        }
    }

    pub(super) fn flag(&mut self, key: &str) -> Result<bool> {
        match self.take(key).as_deref() {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(ApiError::InvalidQuery(format!("{key} must be true or false, not {other:?}"))),
        }
    }

    /// The selection every analysis takes.
    pub(super) fn selection(&mut self) -> Result<Selection> {
        let (kinds, since, until) = (self.take("kinds"), self.take("since"), self.take("until"));
        let min_weight = self.number("min_weight", 1..=u32::MAX, 1)?;
        Selection::parse(kinds.as_deref(), since.as_deref(), until.as_deref(), min_weight)
            .map_err(ApiError::InvalidQuery)
    }

    pub(super) fn finish(self) -> Result<()> {
        match self.0.into_keys().min() {
            None => Ok(()),
            Some(k) => Err(ApiError::InvalidQuery(format!(
                "unknown parameter {:?}",
                k.chars().take(64).collect::<String>()
            ))),
        }
    }
}

/// Whether a query names any selection parameter besides `min_weight`.
pub(super) fn selects(p: &Params) -> bool {
    ["kinds", "since", "until"].iter().any(|k| p.has(k))
}

async fn run(state: &AppState, task: Task, sel: Selection) -> Result<Answer> {
    state.analytics.run(task, sel).await.map_err(ApiError::Internal)
}

fn profiles(state: &AppState, net: &Network, ids: &[usize]) -> Vec<report::Profile> {
    report::profiles(&state.analytics, net, ids)
}

fn offset_cursor(cursor: Option<String>) -> Result<usize> {
    match cursor {
        None => Ok(0),
        Some(c) => c.strip_prefix('o').and_then(|n| n.parse().ok()).ok_or(ApiError::InvalidCursor),
    }
}

fn community_params(p: &mut Params) -> Result<CommunityParams> {
    let method = match p.take("algorithm") {
        None => Method::Leiden,
        Some(a) => Method::parse(&a).ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "algorithm must be leiden or louvain, not {:?}",
                a.chars().take(32).collect::<String>()
            ))
        })?,
    };
    let resolution = p.number("resolution", 0.0001..=1000.0, 1.0)?;
    let seed = p.number("seed", 0..=u64::MAX, 42)?;
    Ok(CommunityParams { method, resolution, seed })
}

/// `GET /analytics/users`: the per-user table, sorted by any metric, paginated.
pub async fn users(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let mut q = UsersQuery::default();
    if let Some(sort) = p.take("sort") {
        if !report::SORTS.contains(&sort.as_str()) {
            return Err(ApiError::InvalidQuery(format!("sort must be one of {}", report::SORTS.join(", "))));
        }
        q.sort = sort;
    }
    q.limit = p.number("limit", 1..=10_000usize, 100)?;
    q.offset = offset_cursor(p.take("cursor"))?;
    if let Some(list) = p.take("metrics") {
        q.metrics = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    }
    if let Some(bad) = q.metrics.iter().find(|m| !report::METRICS.contains(&m.as_str())) {
        return Err(ApiError::InvalidQuery(format!(
            "unknown metric {bad:?} ({})",
            report::METRICS.join(", ")
        )));
    }
    q.damping = p.number("damping", 0.0..=0.999, 0.85)?;
    q.communities = community_params(&mut p)?;
    if p.has("samples") {
        q.samples = Some(p.number("samples", 1..=10_000_000usize, 1)?);
    }
    p.finish()?;
    Ok(HttpResponse::Ok().json(report::users(&state.analytics, sel, &q).await?))
}

/// `GET /analytics/components?mode=weak|strong`.
pub async fn components(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let strong = match p.take("mode").as_deref() {
        None | Some("weak") => false,
        Some("strong") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!("mode must be weak or strong, not {other:?}")))
        }
    };
    p.finish()?;
    Ok(HttpResponse::Ok().json(report::components(&state.analytics, sel, strong).await?))
}

/// `GET /analytics/cores`: how many users have each core number, and how large each k-core is.
pub async fn cores(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    p.finish()?;
    Ok(HttpResponse::Ok().json(report::cores(&state.analytics, sel).await?))
}

/// `GET /analytics/communities`.
pub async fn communities(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let cp = community_params(&mut p)?;
    let limit = p.number("limit", 1..=10_000usize, 100)?;
    let top = p.number("top", 0..=100usize, 5)?;
    p.finish()?;
    Ok(HttpResponse::Ok().json(report::communities(&state.analytics, sel, &cp, limit, top).await?))
}

/// `GET /analytics/communities/{id}`: a community's members, by PageRank.
pub async fn community_members(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let id: u32 = path.parse().map_err(|_| {
        ApiError::InvalidPath(format!(
            "community id must be a number, not {:?}",
            path.chars().take(32).collect::<String>()
        ))
    })?;
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let cp = community_params(&mut p)?;
    let limit = p.number("limit", 1..=10_000usize, 100)?;
    let offset = offset_cursor(p.take("cursor"))?;
    p.finish()?;
    let body = report::community_members(&state.analytics, sel, &cp, id, limit, offset).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /analytics/bridges`: users by estimated betweenness, with the communities their edges reach.
pub async fn bridges(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let limit = p.number("limit", 1..=1_000usize, 20)?;
    let samples = if p.has("samples") { Some(p.number("samples", 1..=10_000_000usize, 1)?) } else { None };
    let cp = community_params(&mut p)?;
    p.finish()?;
    Ok(HttpResponse::Ok().json(report::bridges(&state.analytics, sel, &cp, limit, samples).await?))
}

/// Drawable nodes and edges among some users of a network, in `/graph`'s shape.
pub(super) fn drawing(
    state: &AppState,
    sel: &Selection,
    net: &Network,
    ids: &[usize],
    hops: Option<&[u32]>,
    max_edges: usize,
) -> (Vec<Value>, Vec<Value>, usize) {
    let refs = profiles(state, net, ids);
    let chosen: HashMap<usize, usize> = ids.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut pairs: Vec<(usize, usize, u32)> = Vec::new();
    for &u in ids {
        let (dst, w) = net.out(u);
        for (&v, &w) in dst.iter().zip(w) {
            if chosen.contains_key(&(v as usize)) {
                pairs.push((u, v as usize, w));
            }
        }
    }
    pairs.sort_unstable_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    let among = pairs.len();
    pairs.truncate(max_edges);
    let uid_pairs: Vec<(u32, u32)> = pairs.iter().map(|&(a, b, _)| (net.uids[a], net.uids[b])).collect();
    let details = state.store.graph().read().pair_details(sel, &uid_pairs);
    let key = |i: usize| refs[chosen[&i]].as_ref().map(|r| r.0.clone());
    let edges = pairs
        .iter()
        .zip(details)
        .filter_map(|(&(a, b, w), d)| {
            Some(json!({ "from": key(a)?, "to": key(b)?, "total": w, "kinds": d.kinds, "first_seen": rfc3339(i64::from(d.first)), "last_seen": rfc3339(i64::from(d.last)) }))
        })
        .collect();
    let nodes = ids
        .iter()
        .zip(&refs)
        .enumerate()
        .filter_map(|(k, (&i, r))| {
            let (id, handle, name) = r.clone()?;
            let (i_d, o_d) = (net.inc(i).0.len(), net.out(i).0.len());
            let mut node = json!({ "id": id, "handle": handle, "name": name, "in_degree": i_d, "out_degree": o_d, "degree": i_d + o_d });
            if let Some(h) = hops {
                node["hop"] = json!(h[k]);
            }
            Some(node)
        })
        .collect();
    (nodes, edges, among)
}

/// The dense id of a user named in a path, in a network.
fn member(state: &AppState, net: &Network, spec: &str) -> Result<usize> {
    let g = state.store.graph().read();
    let key = g.resolve(spec)?;
    let uid = g.uid(key).ok_or_else(|| ApiError::UserNotFound(spec.to_string()))?;
    net.id_of(uid)
        .ok_or_else(|| ApiError::InvalidQuery(format!("{key:?} has no interaction in this selection")))
}

/// `GET /vertices/{user}/ego?hops&limit`: the user's neighbourhood, ready to draw.
pub async fn ego(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let hops = p.number("hops", 1..=3u32, 1)?;
    let limit = p.number("limit", 1..=2_000usize, 100)?;
    p.finish()?;
    state.store.graph().read().resolve(&path)?;
    let a = run(&state, Task::Network, sel).await?;
    let net = a.network.clone();
    let center = member(&state, &net, &path)?;
    let chosen = crate::analytics::paths::ego(net.undirected(), center, hops, limit);
    let ids: Vec<usize> = chosen.iter().map(|&(i, _)| i).collect();
    let levels: Vec<u32> = chosen.iter().map(|&(_, h)| h).collect();
    let (nodes, edges, _) = drawing(&state, &sel, &net, &ids, Some(&levels), usize::MAX);
    let mut body = envelope(&sel, &[&a]);
    body.insert("center".into(), nodes.first().map(|n| n["id"].clone()).unwrap_or(Value::Null));
    body.insert("hops".into(), json!(hops));
    body.insert("nodes".into(), json!(nodes));
    body.insert("edges".into(), json!(edges));
    Ok(HttpResponse::Ok().json(body))
}

/// The strongest path (`find_path?weighted=true`), on a selection.
pub(super) async fn strongest_path(
    state: &AppState,
    from: &str,
    to: &str,
    directed: bool,
    sel: Selection,
) -> Result<HttpResponse> {
    {
        let g = state.store.graph().read();
        g.resolve_pair(from, to)?;
    }
    let a = run(state, Task::Network, sel).await?;
    let net = a.network.clone();
    let (x, y) = (member(state, &net, from)?, member(state, &net, to)?);
    let keys = {
        let g = state.store.graph().read();
        let (a, b) = g.resolve_pair(from, to)?;
        (a.to_string(), b.to_string())
    };
    let found = crate::analytics::paths::strongest_path(&net, x, y, directed)
        .ok_or_else(|| ApiError::NoPath { from: keys.0.clone(), to: keys.1.clone() })?;
    let refs = profiles(state, &net, &found.nodes);
    let path: Vec<Value> = refs.iter().map(|r| json!(r.as_ref().map(|r| &r.0))).collect();
    let users: Vec<Value> = refs
        .iter()
        .map(|r| json!(r.as_ref().map(|(id, h, n)| json!({ "id": id, "handle": h, "name": n }))))
        .collect();
    let weight = |u: usize, v: usize| -> u32 {
        let (d, w) = net.out(u);
        d.binary_search(&(v as u32)).map_or(0, |i| w[i])
    };
    let steps: Vec<Value> = found
        .nodes
        .windows(2)
        .map(|s| json!({ "from": path[0].clone(), "forward": weight(s[0], s[1]), "backward": weight(s[1], s[0]) }))
        .enumerate()
        .map(|(i, mut v)| { v["from"] = path[i].clone(); v["to"] = path[i + 1].clone(); v })
        .collect();
    let mut body = envelope(&sel, &[&a]);
    body.insert("from".into(), json!(keys.0));
    body.insert("to".into(), json!(keys.1));
    body.insert("directed".into(), json!(directed));
    body.insert("weighted".into(), json!(true));
    body.insert("hops".into(), json!(found.nodes.len() - 1));
    body.insert("cost".into(), json!(found.cost));
    body.insert("path".into(), json!(path));
    body.insert("users".into(), json!(users));
    body.insert("steps".into(), json!(steps));
    Ok(HttpResponse::Ok().json(body))
}

/// The metrics of a user where the whole network's have been computed (for `GET /vertices/{user}`).
pub(super) fn cached_metrics(state: &AppState, uid: u32) -> Option<Value> {
    let sel = Selection::default();
    let e = &state.analytics;
    let pr = e.cached(Task::pagerank(0.85), sel);
    let core = e.cached(Task::Cores, sel);
    let comm = e.cached(Task::communities(Method::Leiden, 1.0, 42), sel);
    let comp = e.cached(Task::Components { strong: false }, sel);
    let mut m = serde_json::Map::new();
    for a in [&pr, &core, &comm, &comp].into_iter().flatten() {
        let Some(i) = a.network.id_of(uid) else { continue };
        let (k, v) = match &*a.output {
            Output::PageRank(p) => ("pagerank", json!(p.scores[i])),
            Output::Cores(c) => ("core", json!(c[i])),
            Output::Communities(c) => ("community", json!(c.partition.of[i])),
            Output::Components(c) => ("component", json!(c.of[i])),
            _ => continue,
        };
        m.insert(k.into(), v);
        m.insert("graph_version".into(), json!(a.network.version));
        m.insert("stale".into(), json!(a.stale || m.get("stale").and_then(Value::as_bool).unwrap_or(false)));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}
