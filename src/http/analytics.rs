//! Analytics routes: the per-user table, components, cores, communities, bridges, ego networks, the
//! strongest path, and the selection (`kinds`, `since`, `until`, `min_weight`) they all share.
//! Every answer says which network it describes and when it was computed.

use super::error::ApiError;
use super::AppState;
use crate::analytics::community::Method;
use crate::analytics::engine::{Answer, Output, Task};
use crate::analytics::Network;
use crate::graph::{rfc3339, KindSet, Selection};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

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
        let kinds = match self.take("kinds") {
            None => KindSet::ALL,
            Some(list) => KindSet::parse(&list).map_err(|bad| {
                ApiError::InvalidQuery(if bad.is_empty() {
                    "kinds must name at least one of repost, reply, quote, mention, manual".into()
                } else {
                    format!("unknown kind {bad:?} in kinds (repost, reply, quote, mention, manual)")
                })
            })?,
        };
        let since = self.take("since").map(|v| parse_time("since", &v)).transpose()?;
        let until = self.take("until").map(|v| parse_time("until", &v)).transpose()?;
        if let (Some(a), Some(b)) = (since, until) {
            if a >= b {
                return Err(ApiError::InvalidQuery("since must be before until".into()));
            }
        }
        let min_weight = self.number("min_weight", 1..=u32::MAX, 1)?;
        Ok(Selection { kinds, since, until, min_weight })
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

/// Unix seconds or RFC 3339.
fn parse_time(key: &str, v: &str) -> Result<i64> {
    if let Ok(n) = v.trim().parse::<i64>() {
        if (0..=i64::from(u32::MAX)).contains(&n) {
            return Ok(n);
        }
    }
    chrono::DateTime::parse_from_rfc3339(v.trim()).map(|t| t.timestamp()).map_err(|_| {
        ApiError::InvalidQuery(format!(
            "{key} must be unix seconds or an RFC 3339 time (2026-11-29T12:00:00Z), not {:?}",
            v.chars().take(40).collect::<String>()
        ))
    })
}

/// Whether a query names any selection parameter besides `min_weight`.
pub(super) fn selects(p: &Params) -> bool {
    ["kinds", "since", "until"].iter().any(|k| p.has(k))
}

async fn run(state: &AppState, task: Task, sel: Selection) -> Result<Answer> {
    state.analytics.run(task, sel).await.map_err(ApiError::Internal)
}

/// `network`, `graph_version`, `computed_at`, `took_ms`, `stale` of an answer built from several.
fn envelope(sel: &Selection, answers: &[&Answer]) -> serde_json::Map<String, Value> {
    let net = &answers[0].network;
    let mut m = serde_json::Map::new();
    m.insert("network".into(), network_json(sel, net));
    m.insert("graph_version".into(), json!(net.version));
    let at = answers.iter().map(|a| a.computed_at).max().unwrap_or(0);
    m.insert("computed_at".into(), json!(rfc3339(at)));
    m.insert("took_ms".into(), json!(answers.iter().map(|a| a.took_ms).sum::<u64>()));
    m.insert("stale".into(), json!(answers.iter().any(|a| a.stale)));
    m
}

pub(super) fn network_json(sel: &Selection, net: &Network) -> Value {
    json!({
        "kinds": sel.kinds.names(),
        "since": sel.since.map(rfc3339),
        "until": sel.until.map(rfc3339),
        "min_weight": sel.min_weight,
        "users": net.users(),
        "edges": net.edges(),
        "interactions": net.interactions,
    })
}

/// Key, handle and name of users of a network, by dense id (`None` for a user removed since).
type Profile = Option<crate::graph::UserRefOwned>;

fn profiles(state: &AppState, net: &Network, ids: &[usize]) -> Vec<Profile> {
    let uids: Vec<u32> = ids.iter().map(|&i| net.uids[i]).collect();
    state.store.graph().read().user_refs(&uids)
}

fn pagerank_of(a: &Answer) -> &[f64] {
    match &*a.output {
        Output::PageRank(p) => &p.scores,
        _ => &[],
    }
}

fn offset_cursor(cursor: Option<String>) -> Result<usize> {
    match cursor {
        None => Ok(0),
        Some(c) => c.strip_prefix('o').and_then(|n| n.parse().ok()).ok_or(ApiError::InvalidCursor),
    }
}

fn community_method(p: &mut Params) -> Result<(Method, f64, u64)> {
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
    Ok((method, resolution, seed))
}

const METRICS: [&str; 5] = ["pagerank", "core", "community", "component", "betweenness"];

/// `GET /analytics/users`: the per-user table, sorted by any metric, paginated.
pub async fn users(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let sort = p.take("sort").unwrap_or_else(|| "pagerank".into());
    let sorts = [
        "pagerank",
        "betweenness",
        "core",
        "degree",
        "in_degree",
        "out_degree",
        "in_strength",
        "out_strength",
    ];
    if !sorts.contains(&sort.as_str()) {
        return Err(ApiError::InvalidQuery(format!("sort must be one of {}", sorts.join(", "))));
    }
    let limit = p.number("limit", 1..=10_000usize, 100)?;
    let offset = offset_cursor(p.take("cursor"))?;
    let mut metrics: Vec<String> = match p.take("metrics") {
        None => vec!["pagerank".into(), "core".into(), "community".into(), "component".into()],
        Some(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
    };
    if let Some(bad) = metrics.iter().find(|m| !METRICS.contains(&m.as_str())) {
        return Err(ApiError::InvalidQuery(format!(
            "unknown metric {bad:?} (pagerank, core, community, component, betweenness)"
        )));
    }
    for m in ["pagerank", "betweenness", "core"] {
        if sort == m && !metrics.iter().any(|x| x == m) {
            metrics.push(m.into());
        }
    }
    let damping = p.number("damping", 0.0..=0.999, 0.85)?;
    let (method, resolution, seed) = community_method(&mut p)?;
    let samples = p
        .take("samples")
        .map(|s| s.parse::<usize>().ok().filter(|&n| n >= 1))
        .map(|o| o.ok_or_else(|| ApiError::InvalidQuery("samples must be a positive number".into())))
        .transpose()?;
    p.finish()?;
    let want = |m: &str| metrics.iter().any(|x| x == m);
    let base = run(&state, Task::Network, sel).await?;
    let pr = if want("pagerank") { Some(run(&state, Task::pagerank(damping), sel).await?) } else { None };
    let core = if want("core") { Some(run(&state, Task::Cores, sel).await?) } else { None };
    let comm = if want("community") {
        Some(run(&state, Task::communities(method, resolution, seed), sel).await?)
    } else {
        None
    };
    let comp = if want("component") {
        Some(run(&state, Task::Components { strong: false }, sel).await?)
    } else {
        None
    };
    let btw = if want("betweenness") {
        Some(run(&state, Task::Betweenness { samples, seed }, sel).await?)
    } else {
        None
    };
    // Every answer must describe the same snapshot; a stale one may lag: use the newest network.
    let net = [&pr, &core, &comm, &comp, &btw]
        .iter()
        .filter_map(|a| a.as_ref())
        .map(|a| a.network.clone())
        .chain([base.network.clone()])
        .max_by_key(|n| n.version)
        .expect("base");
    fn same<'a>(a: &'a Option<Answer>, net: &Arc<Network>) -> Option<&'a Answer> {
        a.as_ref().filter(|a| Arc::ptr_eq(&a.network, net))
    }
    let n = net.users();
    let strength = |v: &[u32]| v.iter().map(|&w| u64::from(w)).sum::<u64>();
    let value = |i: usize| -> f64 {
        match sort.as_str() {
            "pagerank" => same(&pr, &net).map_or(0.0, |a| pagerank_of(a)[i]),
            "betweenness" => same(&btw, &net).map_or(0.0, |a| match &*a.output {
                Output::Betweenness { scores, .. } => scores[i],
                _ => 0.0,
            }),
            "core" => same(&core, &net).map_or(0.0, |a| match &*a.output {
                Output::Cores(c) => f64::from(c[i]),
                _ => 0.0,
            }),
            "degree" => (net.out(i).0.len() + net.inc(i).0.len()) as f64,
            "in_degree" => net.inc(i).0.len() as f64,
            "out_degree" => net.out(i).0.len() as f64,
            "in_strength" => strength(net.inc(i).1) as f64,
            _ => strength(net.out(i).1) as f64,
        }
    };
    let mut order: Vec<(f64, usize)> = (0..n).map(|i| (value(i), i)).collect();
    order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let page: Vec<usize> = order.iter().skip(offset).take(limit).map(|&(_, i)| i).collect();
    let refs = profiles(&state, &net, &page);
    let rows: Vec<Value> = page
        .iter()
        .zip(refs)
        .filter_map(|(&i, r)| {
            let (id, handle, name) = r?;
            let mut row = json!({
                "id": id, "handle": handle, "name": name,
                "in_degree": net.inc(i).0.len(), "out_degree": net.out(i).0.len(),
                "in_strength": strength(net.inc(i).1), "out_strength": strength(net.out(i).1),
            });
            if let Some(a) = same(&pr, &net) {
                row["pagerank"] = json!(pagerank_of(a)[i]);
            }
            if let Some(Output::Cores(c)) = same(&core, &net).map(|a| &*a.output) {
                row["core"] = json!(c[i]);
            }
            if let Some(Output::Communities(c)) = same(&comm, &net).map(|a| &*a.output) {
                row["community"] = json!(c.partition.of[i]);
            }
            if let Some(Output::Components(c)) = same(&comp, &net).map(|a| &*a.output) {
                row["component"] = json!(c.of[i]);
            }
            if let Some(Output::Betweenness { scores, .. }) = same(&btw, &net).map(|a| &*a.output) {
                row["betweenness"] = json!(scores[i]);
            }
            Some(row)
        })
        .collect();
    let answers: Vec<&Answer> =
        [&pr, &core, &comm, &comp, &btw].into_iter().filter_map(|a| a.as_ref()).chain([&base]).collect();
    let mut body = envelope(&sel, &answers);
    body.insert("sort".into(), json!(sort));
    body.insert("users".into(), json!(rows));
    body.insert("next_cursor".into(), json!((offset + limit < n).then(|| format!("o{}", offset + limit))));
    if let Some(Output::Betweenness { samples, error_bound, .. }) = btw.as_ref().map(|a| &*a.output) {
        body.insert(
            "betweenness".into(),
            json!({ "samples": samples, "error_bound": error_bound, "confidence": 0.95 }),
        );
    }
    Ok(HttpResponse::Ok().json(body))
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
    let a = run(&state, Task::Components { strong }, sel).await?;
    let Output::Components(part) = &*a.output else { return Err(ApiError::Internal("components".into())) };
    let n = a.network.users().max(1);
    let largest = part.sizes.first().copied().unwrap_or(0);
    let mut body = envelope(&sel, &[&a]);
    body.insert("mode".into(), json!(if strong { "strong" } else { "weak" }));
    body.insert("count".into(), json!(part.count()));
    body.insert("largest".into(), json!({ "size": largest, "share": f64::from(largest) / n as f64 }));
    body.insert("sizes".into(), json!(part.sizes.iter().take(100).collect::<Vec<_>>()));
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /analytics/cores`: how many users have each core number, and how large each k-core is.
pub async fn cores(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    p.finish()?;
    let a = run(&state, Task::Cores, sel).await?;
    let Output::Cores(c) = &*a.output else { return Err(ApiError::Internal("cores".into())) };
    let max = c.iter().copied().max().unwrap_or(0);
    let mut exact = vec![0u64; max as usize + 1];
    for &k in c {
        exact[k as usize] += 1;
    }
    let mut in_core = 0u64;
    let mut rows: Vec<Value> = Vec::new();
    for k in (1..=max as usize).rev() {
        in_core += exact[k];
        rows.push(json!({ "k": k, "users": exact[k], "k_core_size": in_core }));
    }
    rows.reverse();
    let mut body = envelope(&sel, &[&a]);
    body.insert("max_core".into(), json!(max));
    body.insert("cores".into(), json!(rows));
    Ok(HttpResponse::Ok().json(body))
}

/// Members of each community, heaviest PageRank first.
fn members_by_rank(part: &crate::analytics::structure::Partition, pr: &[f64]) -> Vec<Vec<usize>> {
    let mut members = vec![Vec::new(); part.count()];
    for (u, &c) in part.of.iter().enumerate() {
        members[c as usize].push(u);
    }
    for m in &mut members {
        m.sort_unstable_by(|&a, &b| {
            pr.get(b).unwrap_or(&0.0).total_cmp(pr.get(a).unwrap_or(&0.0)).then(a.cmp(&b))
        });
    }
    members
}

fn user_brief(r: Profile, pr: f64) -> Option<Value> {
    let (id, handle, _) = r?;
    Some(json!({ "id": id, "handle": handle, "pagerank": pr }))
}

/// `GET /analytics/communities`.
pub async fn communities(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let (method, resolution, seed) = community_method(&mut p)?;
    let limit = p.number("limit", 1..=10_000usize, 100)?;
    let top = p.number("top", 0..=100usize, 5)?;
    p.finish()?;
    let c = run(&state, Task::communities(method, resolution, seed), sel).await?;
    let pr = run(&state, Task::pagerank(0.85), sel).await?;
    let Output::Communities(found) = &*c.output else { return Err(ApiError::Internal("communities".into())) };
    let net = &c.network;
    let ranks = if Arc::ptr_eq(&pr.network, net) { pagerank_of(&pr) } else { &[] };
    let members = members_by_rank(&found.partition, ranks);
    // Weight inside each community (each undirected edge once).
    let mut inner = vec![0u64; found.partition.count()];
    for u in 0..net.users() {
        let (dst, w) = net.out(u);
        for (&v, &w) in dst.iter().zip(w) {
            if found.partition.of[u] == found.partition.of[v as usize] {
                inner[found.partition.of[u] as usize] += u64::from(w);
            }
        }
    }
    let leaders: Vec<usize> = members.iter().take(limit).flat_map(|m| m.iter().take(top).copied()).collect();
    let mut refs = profiles(&state, net, &leaders).into_iter();
    let list: Vec<Value> = members
        .iter()
        .take(limit)
        .enumerate()
        .map(|(id, m)| {
            let tops: Vec<Value> = m
                .iter()
                .take(top)
                .zip(refs.by_ref())
                .filter_map(|(&u, r)| user_brief(r, ranks.get(u).copied().unwrap_or(0.0)))
                .collect();
            json!({ "id": id, "size": m.len(), "internal_weight": inner[id], "top_users": tops })
        })
        .collect();
    let mut body = envelope(&sel, &[&c, &pr]);
    body.insert("algorithm".into(), json!(method.as_str()));
    body.insert("resolution".into(), json!(resolution));
    body.insert("seed".into(), json!(seed));
    body.insert("modularity".into(), json!(found.modularity));
    body.insert("count".into(), json!(found.partition.count()));
    body.insert("communities".into(), json!(list));
    Ok(HttpResponse::Ok().json(body))
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
    let (method, resolution, seed) = community_method(&mut p)?;
    let limit = p.number("limit", 1..=10_000usize, 100)?;
    let offset = offset_cursor(p.take("cursor"))?;
    p.finish()?;
    let c = run(&state, Task::communities(method, resolution, seed), sel).await?;
    let pr = run(&state, Task::pagerank(0.85), sel).await?;
    let Output::Communities(found) = &*c.output else { return Err(ApiError::Internal("communities".into())) };
    let ranks = if Arc::ptr_eq(&pr.network, &c.network) { pagerank_of(&pr) } else { &[] };
    let members = members_by_rank(&found.partition, ranks);
    let m = members.get(id as usize).ok_or(ApiError::CommunityNotFound(id))?;
    let page: Vec<usize> = m.iter().skip(offset).take(limit).copied().collect();
    let refs = profiles(&state, &c.network, &page);
    let users: Vec<Value> = page
        .iter()
        .zip(refs)
        .filter_map(|(&u, r)| user_brief(r, ranks.get(u).copied().unwrap_or(0.0)))
        .collect();
    let mut body = envelope(&sel, &[&c, &pr]);
    body.insert("id".into(), json!(id));
    body.insert("size".into(), json!(m.len()));
    body.insert("users".into(), json!(users));
    body.insert(
        "next_cursor".into(),
        json!((offset + limit < m.len()).then(|| format!("o{}", offset + limit))),
    );
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /analytics/bridges`: users by estimated betweenness, with the communities their edges reach.
pub async fn bridges(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let limit = p.number("limit", 1..=1_000usize, 20)?;
    let samples = if p.has("samples") { Some(p.number("samples", 1..=10_000_000usize, 1)?) } else { None };
    let (method, resolution, seed) = community_method(&mut p)?;
    p.finish()?;
    let b = run(&state, Task::Betweenness { samples, seed }, sel).await?;
    let c = run(&state, Task::communities(method, resolution, seed), sel).await?;
    let Output::Betweenness { scores, samples, error_bound } = &*b.output else {
        return Err(ApiError::Internal("betweenness".into()));
    };
    let net = &b.network;
    let part = match &*c.output {
        Output::Communities(f) if Arc::ptr_eq(&c.network, net) => Some(&f.partition),
        _ => None,
    };
    let mut order: Vec<usize> = (0..net.users()).collect();
    order.sort_unstable_by(|&x, &y| scores[y].total_cmp(&scores[x]).then(x.cmp(&y)));
    order.truncate(limit);
    let refs = profiles(&state, net, &order);
    let rows: Vec<Value> = order
        .iter()
        .zip(refs)
        .filter_map(|(&u, r)| {
            let (id, handle, name) = r?;
            let mut reach: HashMap<u32, u64> = HashMap::new();
            if let Some(part) = part {
                for (n, w) in [net.out(u), net.inc(u)] {
                    for (&v, &w) in n.iter().zip(w) {
                        *reach.entry(part.of[v as usize]).or_default() += u64::from(w);
                    }
                }
            }
            let mut reach: Vec<(u32, u64)> = reach.into_iter().collect();
            reach.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Some(json!({
                "id": id, "handle": handle, "name": name, "betweenness": scores[u],
                "community": part.map(|p| p.of[u]),
                "communities": reach.iter().map(|(c, w)| json!({ "id": c, "weight": w })).collect::<Vec<_>>(),
            }))
        })
        .collect();
    let mut body = envelope(&sel, &[&b, &c]);
    body.insert("samples".into(), json!(samples));
    body.insert("error_bound".into(), json!(error_bound));
    body.insert("confidence".into(), json!(0.95));
    body.insert("users".into(), json!(rows));
    Ok(HttpResponse::Ok().json(body))
}

/// Drawable nodes and edges among some users of a network, in `/graph`'s shape.
pub(super) fn drawing(
    state: &AppState,
    sel: &Selection,
    net: &Network,
    ids: &[usize],
    hops: Option<&[u32]>,
) -> (Vec<Value>, Vec<Value>) {
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
    (nodes, edges)
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
    let (nodes, edges) = drawing(&state, &sel, &net, &ids, Some(&levels));
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
