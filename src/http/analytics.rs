//! Analytics routes: the per-user table, components, cores, communities, bridges, ego networks, the
//! strongest path, and the selection (`kinds`, `since`, `until`, `min_weight`) they all share.
//! Every answer says which network it describes and when it was computed.

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::analytics::community::Method;
use crate::analytics::engine::{Answer, Output, Task};
use crate::analytics::report::{self, About, CommunityParams, UsersQuery};
use crate::analytics::Network;
use crate::graph::{rfc3339, GraphError, Selection, TieView, UserView};
use actix_web::{web, HttpRequest};
use serde::Serialize;
use std::collections::HashMap;
use std::str::FromStr;
use utoipa::ToSchema;

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
        // Exactly the contract's boolean: a bare `?directed` or `=1` would be a second spelling.
        match self.take(key).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
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

/// The selection every analysis takes, as the contract states it ([`Params::selection`] reads it).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct SelectionQuery {
    /// Interaction kinds counted, comma separated: `repost,reply,quote,mention,manual` (default all;
    /// any case; `retweet`, `reblog` and `boost` are reposts).
    #[param(
        example = "repost,quote",
        pattern = r"^([\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*,)*[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?i:repost|retweet|reblog|boost|reply|quote|mention|manual)[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(,[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*((?i:repost|retweet|reblog|boost|reply|quote|mention|manual)[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?)*$"
    )]
    kinds: Option<String>,
    /// Only interactions at or after this time: unix seconds or RFC 3339.
    #[param(value_type = Option<TimeBound>, example = "2026-11-01T00:00:00Z")]
    since: Option<String>,
    /// Only interactions before this time: unix seconds or RFC 3339 (at or before `since`: nothing).
    #[param(value_type = Option<TimeBound>)]
    until: Option<String>,
    /// Keep an edge only if it carries at least this many selected interactions.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 4294967295_u64, default = 1)]
    min_weight: Option<u32>,
}

/// A time bound, as the contract states it: unix seconds, or an RFC 3339 time.
pub(crate) struct TimeBound;

impl utoipa::PartialSchema for TimeBound {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(u32::MAX)))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .description(Some("Unix seconds, or an RFC 3339 time"))
            .into()
    }
}

impl utoipa::ToSchema for TimeBound {}

/// How communities are found, as the contract states it ([`community_params`] reads it).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct CommunityQuery {
    #[param(inline)]
    algorithm: Option<Method>,
    /// Higher finds more, smaller communities.
    #[param(minimum = 0.0001, maximum = 1000.0, default = 1.0)]
    resolution: Option<f64>,
    /// The same seed on the same graph gives the same communities.
    #[param(minimum = 0, maximum = 9223372036854775807_i64, default = 42)]
    seed: Option<u64>,
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
        Some(c) => c
            .strip_prefix('o')
            .filter(|n| (1..=18).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .ok_or(ApiError::InvalidCursor),
    }
}

pub(super) fn community_params(p: &mut Params) -> Result<CommunityParams> {
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
    let seed = p.number("seed", 0..=i64::MAX as u64, 42)?;
    Ok(CommunityParams { method, resolution, seed })
}

/// The query of `/analytics/users`, besides the selection and the communities' parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct UsersTableQuery {
    /// The column to sort by, highest first: pagerank, betweenness, core, degree, in_degree,
    /// out_degree, in_strength, out_strength.
    #[param(
        pattern = "^(pagerank|betweenness|core|degree|in_degree|out_degree|in_strength|out_strength)$",
        default = "pagerank"
    )]
    sort: Option<String>,
    #[param(minimum = 1, maximum = 10000, default = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^o[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Columns besides degrees and strengths, comma separated: pagerank, core, community,
    /// component, betweenness (default: all but betweenness).
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(pagerank|core|community|component|betweenness)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(,[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(pagerank|core|community|component|betweenness)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)*$"
    )]
    metrics: Option<String>,
    /// PageRank's damping factor.
    #[param(minimum = 0.0, maximum = 0.999, default = 0.85)]
    damping: Option<f64>,
}

/// How betweenness is estimated, where it is computed.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct SamplesQuery {
    /// Sources sampled to estimate betweenness (default: enough for a 5% error bound).
    #[param(minimum = 1, maximum = 10000000)]
    samples: Option<usize>,
}

/// The per-user table: degrees, strengths, PageRank, core, community, component, betweenness,
/// sorted by any of them, a page at a time.
#[utoipa::path(get, path = "/analytics/users", tag = "analytics",
    params(UsersTableQuery, SamplesQuery, SelectionQuery, CommunityQuery),
    responses(
        (status = 200, description = "A page of the table", body = report::UsersTable),
        (status = 400, description = "`invalid_query`, `invalid_cursor`", body = ErrorBody),
    ))]
pub async fn users(state: web::Data<AppState>, req: HttpRequest) -> Result<web::Json<report::UsersTable>> {
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
    Ok(web::Json(report::users(&state.analytics, sel, &q).await?))
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ComponentsQuery {
    /// `weak` (ignoring direction) or `strong`.
    #[param(pattern = "^(weak|strong)$", default = "weak")]
    mode: Option<String>,
}

/// Connected components: how many, the largest's share, the largest sizes.
#[utoipa::path(get, path = "/analytics/components", tag = "analytics",
    params(ComponentsQuery, SelectionQuery),
    responses(
        (status = 200, description = "The components", body = report::Components),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub async fn components(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<web::Json<report::Components>> {
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
    Ok(web::Json(report::components(&state.analytics, sel, strong).await?))
}

/// How many users have each core number, and how large each k-core is.
#[utoipa::path(get, path = "/analytics/cores", tag = "analytics", params(SelectionQuery),
    responses(
        (status = 200, description = "The cores", body = report::Cores),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub async fn cores(state: web::Data<AppState>, req: HttpRequest) -> Result<web::Json<report::Cores>> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    p.finish()?;
    Ok(web::Json(report::cores(&state.analytics, sel).await?))
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct CommunitiesQuery {
    /// Communities listed, the largest.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    limit: Option<usize>,
    /// Leaders listed per community, by PageRank.
    #[param(minimum = 0, maximum = 100, default = 5)]
    top: Option<usize>,
}

/// The communities (camps), largest first, each with its size, inner weight and leaders.
#[utoipa::path(get, path = "/analytics/communities", tag = "analytics",
    params(CommunitiesQuery, CommunityQuery, SelectionQuery),
    responses(
        (status = 200, description = "The communities", body = report::Communities),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub async fn communities(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<web::Json<report::Communities>> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let cp = community_params(&mut p)?;
    let limit = p.number("limit", 1..=10_000usize, 100)?;
    let top = p.number("top", 0..=100usize, 5)?;
    p.finish()?;
    Ok(web::Json(report::communities(&state.analytics, sel, &cp, limit, top).await?))
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageQuery {
    #[param(minimum = 1, maximum = 10000, default = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^o[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// A community's members, by PageRank, a page at a time.
#[utoipa::path(get, path = "/analytics/communities/{id}", tag = "analytics",
    params(("id" = u32, Path, description = "The community, as `/analytics/communities` numbers it"),
           PageQuery, CommunityQuery, SelectionQuery),
    responses(
        (status = 200, description = "The members", body = report::CommunityMembers),
        (status = 400, description = "`invalid_query`, `invalid_path`, `invalid_cursor`", body = ErrorBody),
        (status = 404, description = "`community_not_found`", body = ErrorBody),
    ))]
pub(crate) async fn community_members(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<web::Json<report::CommunityMembers>> {
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
    Ok(web::Json(report::community_members(&state.analytics, sel, &cp, id, limit, offset).await?))
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct BridgesQuery {
    #[param(minimum = 1, maximum = 1000, default = 20)]
    limit: Option<usize>,
}

/// Bridges: users by estimated betweenness, with the communities their interactions reach.
#[utoipa::path(get, path = "/analytics/bridges", tag = "analytics",
    params(BridgesQuery, SamplesQuery, CommunityQuery, SelectionQuery),
    responses(
        (status = 200, description = "The bridges", body = report::Bridges),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub async fn bridges(state: web::Data<AppState>, req: HttpRequest) -> Result<web::Json<report::Bridges>> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let limit = p.number("limit", 1..=1_000usize, 20)?;
    let samples = if p.has("samples") { Some(p.number("samples", 1..=10_000_000usize, 1)?) } else { None };
    let cp = community_params(&mut p)?;
    p.finish()?;
    Ok(web::Json(report::bridges(&state.analytics, sel, &cp, limit, samples).await?))
}

/// The query of `/analytics/timeline`, besides `kinds`, `since` and `until`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct TimelineQuery {
    /// Bars in the chart.
    #[param(minimum = 1, maximum = 1000, default = 60)]
    buckets: Option<usize>,
    /// Interaction kinds counted, comma separated (default all).
    #[param(
        example = "repost,quote",
        pattern = r"^([\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*,)*[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?i:repost|retweet|reblog|boost|reply|quote|mention|manual)[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(,[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*((?i:repost|retweet|reblog|boost|reply|quote|mention|manual)[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?)*$"
    )]
    kinds: Option<String>,
    /// The chart starts here (default: the first interaction): unix seconds or RFC 3339.
    #[param(value_type = Option<TimeBound>)]
    since: Option<String>,
    /// The chart ends before this (default: after the last interaction).
    #[param(value_type = Option<TimeBound>)]
    until: Option<String>,
}

/// Interactions over time, as bars of equal width: the hashtag's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Timeline {
    /// The first and the last interaction of the whole graph (null when it has none): the range a
    /// time slider covers.
    first: Option<String>,
    last: Option<String>,
    /// Seconds each bar covers.
    width_seconds: i64,
    bars: Vec<Bar>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Bar {
    /// When the bar starts.
    start: String,
    /// Selected interactions from then until the next bar.
    interactions: u64,
}

/// Interactions per period of the selection's kinds and window, for the page's timeline.
#[utoipa::path(get, path = "/analytics/timeline", tag = "analytics", params(TimelineQuery),
    responses(
        (status = 200, description = "The bars", body = Timeline),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ))]
pub async fn timeline(state: web::Data<AppState>, req: HttpRequest) -> Result<web::Json<Timeline>> {
    let mut p = Params::of(&req)?;
    let buckets = p.number("buckets", 1..=1_000usize, 60)?;
    let (kinds, since, until) = (p.take("kinds"), p.take("since"), p.take("until"));
    p.finish()?;
    let sel = Selection::parse(kinds.as_deref(), since.as_deref(), until.as_deref(), 1)
        .map_err(ApiError::InvalidQuery)?;
    let answer = super::handlers::heavy(&state, move |graph| {
        let g = graph.read();
        let span = g.time_span();
        let start = sel.since.or(span.map(|s| s.0)).unwrap_or(0);
        let end = sel.until.or(span.map(|s| s.1 + 1)).unwrap_or(start + 1).max(start + 1);
        let width = (end - start).div_euclid(buckets as i64) + i64::from((end - start) % buckets as i64 != 0);
        let counts = g.histogram(&sel, start, width, buckets);
        drop(g);
        Ok(Timeline {
            first: span.map(|s| rfc3339(s.0)),
            last: span.map(|s| rfc3339(s.1)),
            width_seconds: width,
            bars: counts
                .into_iter()
                .enumerate()
                .map(|(i, n)| Bar { start: rfc3339(start + i as i64 * width), interactions: n })
                .collect(),
        })
    })
    .await?;
    Ok(web::Json(answer))
}

/// A user as drawn: degrees in the network drawn, and in an ego network the hops from its centre.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DrawnUser {
    #[serde(flatten)]
    pub(crate) user: UserView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hop: Option<u32>,
}

/// Drawable nodes and edges among some users of a network, in `/graph`'s shape.
pub(super) fn drawing(
    state: &AppState,
    sel: &Selection,
    net: &Network,
    ids: &[usize],
    hops: Option<&[u32]>,
    max_edges: usize,
) -> (Vec<DrawnUser>, Vec<TieView>, usize) {
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
    let handle = |i: usize| refs[chosen[&i]].as_ref().and_then(|r| r.1.clone());
    let edges = pairs
        .iter()
        .zip(details)
        .filter_map(|(&(a, b, w), d)| {
            Some(TieView {
                from: key(a)?,
                to: key(b)?,
                from_handle: handle(a),
                to_handle: handle(b),
                total: u64::from(w),
                kinds: d.kinds,
                first_seen: rfc3339(i64::from(d.first)),
                last_seen: rfc3339(i64::from(d.last)),
            })
        })
        .collect();
    let nodes = ids
        .iter()
        .zip(&refs)
        .enumerate()
        .filter_map(|(k, (&i, r))| {
            let (id, handle, name) = r.clone()?;
            Some(DrawnUser { user: degrees_in(net, i, id, handle, name), hop: hops.map(|h| h[k]) })
        })
        .collect();
    (nodes, edges, among)
}

/// A user with its degrees in a network.
fn degrees_in(net: &Network, i: usize, id: String, handle: Option<String>, name: Option<String>) -> UserView {
    let (in_degree, out_degree) = (net.inc(i).len() as u32, net.out(i).0.len() as u32);
    UserView { id, handle, name, in_degree, out_degree, degree: in_degree + out_degree }
}

/// The dense id of a user named in a path, in a network: `None` when the user has no interaction
/// in its selection.
fn member(state: &AppState, net: &Network, spec: &str) -> Result<Option<usize>> {
    let g = state.store.graph().read();
    let key = g.resolve(spec)?;
    let uid = g.uid(key).ok_or_else(|| ApiError::Graph(GraphError::UserNotFound(spec.to_string())))?;
    Ok(net.id_of(uid))
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct EgoQuery {
    /// How far from the user.
    #[param(minimum = 1, maximum = 3, default = 1)]
    hops: Option<u32>,
    /// Users drawn at most, the nearest and heaviest first.
    #[param(minimum = 1, maximum = 2000, default = 100)]
    limit: Option<usize>,
}

/// The user's neighbourhood in a selection, ready to draw.
#[utoipa::path(get, path = "/vertices/{user}/ego", tag = "analytics",
    params(("user" = String, Path, description = super::handlers::USER_PARAM), EgoQuery, SelectionQuery),
    responses(
        (status = 200, description = "The ego network", body = Ego),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`ambiguous_handle`", body = ErrorBody),
    ))]
pub async fn ego(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<web::Json<Ego>> {
    let mut p = Params::of(&req)?;
    let sel = p.selection()?;
    let hops = p.number("hops", 1..=3u32, 1)?;
    let limit = p.number("limit", 1..=2_000usize, 100)?;
    p.finish()?;
    state.store.graph().read().resolve(&path)?;
    let a = run(&state, Task::Undirected, sel).await?;
    let net = a.network.clone();
    let (nodes, edges) = match member(&state, &net, &path)? {
        Some(center) => {
            let chosen = crate::analytics::paths::ego(net.undirected(), center, hops, limit);
            let ids: Vec<usize> = chosen.iter().map(|&(i, _)| i).collect();
            let levels: Vec<u32> = chosen.iter().map(|&(_, h)| h).collect();
            let (nodes, edges, _) = drawing(&state, &sel, &net, &ids, Some(&levels), usize::MAX);
            (nodes, edges)
        }
        // No interaction in the selection: the user alone.
        None => {
            let g = state.store.graph().read();
            let key = g.resolve(&path)?;
            let user =
                g.user(key).ok_or_else(|| ApiError::Graph(GraphError::UserNotFound(path.to_string())))?.user;
            let alone = UserView { in_degree: 0, out_degree: 0, degree: 0, ..user };
            (vec![DrawnUser { user: alone, hop: Some(0) }], Vec::new())
        }
    };
    Ok(web::Json(Ego {
        about: About::of(&sel, &[&a]),
        center: nodes.first().map(|n| n.user.id.clone()),
        hops,
        nodes,
        edges,
    }))
}

/// A user's neighbourhood in a selection, ready to draw.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ego {
    #[serde(flatten)]
    about: About,
    /// The user at the centre (null if removed since the snapshot).
    center: Option<String>,
    hops: u32,
    /// The centre first, then by hops.
    nodes: Vec<DrawnUser>,
    edges: Vec<TieView>,
}

/// The strongest path between two users (`find_path?weighted=true`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StrongestPath {
    #[serde(flatten)]
    about: About,
    from: String,
    to: String,
    directed: bool,
    /// Always true: this is the weighted answer.
    weighted: bool,
    hops: usize,
    /// The sum of 1/weight over the path's edges: the lower, the stronger.
    cost: f64,
    /// The users' keys from `from` to `to` (null for a user removed since the snapshot).
    path: Vec<Option<String>>,
    /// The same users with their degrees in the selection.
    users: Vec<Option<UserView>>,
    steps: Vec<Step>,
}

/// One step of a strongest path: the interactions each way between its two users.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Step {
    from: Option<String>,
    to: Option<String>,
    forward: u32,
    backward: u32,
}

/// The strongest path (`find_path?weighted=true`), on a selection.
pub(super) async fn strongest_path(
    state: &AppState,
    from: &str,
    to: &str,
    directed: bool,
    sel: Selection,
) -> Result<StrongestPath> {
    {
        let g = state.store.graph().read();
        g.resolve_pair(from, to)?;
    }
    let a = run(state, if directed { Task::Network } else { Task::Undirected }, sel).await?;
    let net = a.network.clone();
    let keys = {
        let g = state.store.graph().read();
        let (a, b) = g.resolve_pair(from, to)?;
        (a.to_string(), b.to_string())
    };
    let no_path = || ApiError::Graph(GraphError::NoPath { from: keys.0.clone(), to: keys.1.clone() });
    let (Some(x), Some(y)) = (member(state, &net, from)?, member(state, &net, to)?) else {
        return Err(no_path());
    };
    // A search over the whole network: on the paced pool of expensive reads, not the request thread.
    let searched = net.clone();
    let found = super::handlers::heavy(state, move |_| {
        Ok(crate::analytics::paths::strongest_path(&searched, x, y, directed))
    })
    .await?
    .ok_or_else(no_path)?;
    let refs = profiles(state, &net, &found.nodes);
    let path: Vec<Option<String>> = refs.iter().map(|r| r.as_ref().map(|r| r.0.clone())).collect();
    let users: Vec<Option<UserView>> = refs
        .into_iter()
        .zip(&found.nodes)
        .map(|(r, &i)| r.map(|(id, handle, name)| degrees_in(&net, i, id, handle, name)))
        .collect();
    let weight = |u: usize, v: usize| -> u32 {
        let (d, w) = net.out(u);
        d.binary_search(&(v as u32)).map_or(0, |i| w[i])
    };
    let steps: Vec<Step> = found
        .nodes
        .windows(2)
        .enumerate()
        .map(|(i, s)| Step {
            from: path[i].clone(),
            to: path[i + 1].clone(),
            forward: weight(s[0], s[1]),
            backward: weight(s[1], s[0]),
        })
        .collect();
    Ok(StrongestPath {
        about: About::of(&sel, &[&a]),
        from: keys.0,
        to: keys.1,
        directed,
        weighted: true,
        hops: found.nodes.len() - 1,
        cost: found.cost,
        path,
        users,
        steps,
    })
}

/// A user's metrics in the whole network, those computed so far (by `/analytics/...`).
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct UserMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pagerank: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    core: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<u32>,
    /// The newest graph version among them.
    graph_version: u64,
    /// Whether any of them was computed on an older graph than the current one.
    stale: bool,
}

/// The metrics of a user where the whole network's have been computed (for `GET /vertices/{user}`).
pub(super) fn cached_metrics(state: &AppState, uid: u32) -> Option<UserMetrics> {
    let sel = Selection::default();
    let e = &state.analytics;
    let pr = e.cached(Task::pagerank(0.85), sel);
    let core = e.cached(Task::Cores, sel);
    let comm = e.cached(Task::communities(Method::Leiden, 1.0, 42), sel);
    let comp = e.cached(Task::Components { strong: false }, sel);
    let mut m = UserMetrics::default();
    let mut any = false;
    for a in [&pr, &core, &comm, &comp].into_iter().flatten() {
        let Some(i) = a.network.id_of(uid) else { continue };
        match &*a.output {
            Output::PageRank(p) => m.pagerank = Some(p.scores[i]),
            Output::Cores(c) => m.core = Some(c[i]),
            Output::Communities(c) => m.community = Some(c.partition.of[i]),
            Output::Components(c) => m.component = Some(c.of[i]),
            _ => continue,
        }
        any = true;
        m.graph_version = m.graph_version.max(a.network.version);
        m.stale |= a.stale;
    }
    any.then_some(m)
}
