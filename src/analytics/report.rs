//! The analyses as typed documents: the per-user table, components, cores, communities and bridges,
//! each with the network it describes and when it was computed. The HTTP routes serve them (their
//! types are the API's schemas) and `tagflow analyze` prints them (as a table, or as the same JSON
//! with `--json`), so both say the same thing. Parameters arrive parsed and checked; knows no HTTP.

use super::community::Method;
use super::engine::{Answer, Engine, Output, Task};
use super::structure::Partition;
use super::Network;
use crate::graph::{rfc3339, Selection, UserRefOwned};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The computation failed (a bug): the message, for the log.
    #[error("analysis failed: {0}")]
    Failed(String),
    #[error("no community {0} in this selection")]
    CommunityNotFound(u32),
}

type Result<T> = std::result::Result<T, ReportError>;

/// How communities are found: the algorithm, its resolution and its seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommunityParams {
    pub method: Method,
    pub resolution: f64,
    pub seed: u64,
}

impl Default for CommunityParams {
    fn default() -> Self {
        CommunityParams { method: Method::Leiden, resolution: 1.0, seed: 42 }
    }
}

impl CommunityParams {
    pub fn task(&self) -> Task {
        Task::communities(self.method, self.resolution, self.seed)
    }
}

/// What the user table's rows may carry besides degrees and strengths.
pub(crate) const METRICS: [&str; 5] = ["pagerank", "core", "community", "component", "betweenness"];
/// What the user table may be sorted by.
pub(crate) const SORTS: [&str; 8] =
    ["pagerank", "betweenness", "core", "degree", "in_degree", "out_degree", "in_strength", "out_strength"];

/// The user table's parameters (`GET /analytics/users`).
#[derive(Debug, Clone)]
pub struct UsersQuery {
    /// One of [`SORTS`].
    pub sort: String,
    pub limit: usize,
    pub offset: usize,
    /// Some of [`METRICS`]; the sort's metric is added when missing.
    pub metrics: Vec<String>,
    pub damping: f64,
    pub communities: CommunityParams,
    /// Betweenness samples (default: see [`super::paths::default_samples`]).
    pub samples: Option<usize>,
}

impl Default for UsersQuery {
    fn default() -> Self {
        UsersQuery {
            sort: "pagerank".into(),
            limit: 100,
            offset: 0,
            metrics: ["pagerank", "core", "community", "component"].map(String::from).to_vec(),
            damping: 0.85,
            communities: CommunityParams::default(),
            samples: None,
        }
    }
}

async fn run(engine: &Arc<Engine>, task: Task, sel: Selection) -> Result<Answer> {
    engine.run(task, sel).await.map_err(ReportError::Failed)
}

/// What every analysis says about itself: the network it describes, the graph version it was
/// computed on, when, how long it took, and whether a newer graph is being analysed meanwhile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct About {
    pub network: NetworkInfo,
    /// The graph's version when its snapshot was taken; it grows with every change.
    pub graph_version: u64,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub computed_at: String,
    pub took_ms: u64,
    /// Served from the cache while the graph has changed and a fresh run computes.
    pub stale: bool,
}

impl About {
    /// The envelope of an answer built from several.
    pub(crate) fn of(sel: &Selection, answers: &[&Answer]) -> About {
        let net = &answers[0].network;
        About {
            network: NetworkInfo::of(sel, net),
            graph_version: net.version,
            computed_at: rfc3339(answers.iter().map(|a| a.computed_at).max().unwrap_or(0)),
            took_ms: answers.iter().map(|a| a.took_ms).sum(),
            stale: answers.iter().any(|a| a.stale),
        }
    }
}

/// The network analysed: the selection's parameters and its size.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NetworkInfo {
    /// The interaction kinds selected.
    pub kinds: Vec<&'static str>,
    /// RFC 3339, when the selection starts at a time.
    pub since: Option<String>,
    /// RFC 3339, when the selection ends at a time (excluded).
    pub until: Option<String>,
    pub min_weight: u32,
    pub users: usize,
    pub edges: usize,
    pub interactions: u64,
}

impl NetworkInfo {
    pub(crate) fn of(sel: &Selection, net: &Network) -> NetworkInfo {
        NetworkInfo {
            kinds: sel.kinds.names(),
            since: sel.since.map(rfc3339),
            until: sel.until.map(rfc3339),
            min_weight: sel.min_weight,
            users: net.users(),
            edges: net.edges(),
            interactions: net.interactions,
        }
    }
}

/// `GET /analytics/users`: a page of the per-user table.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsersTable {
    #[serde(flatten)]
    pub about: About,
    pub sort: String,
    pub users: Vec<UserRow>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// How betweenness was estimated, when it is a column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betweenness: Option<Sampling>,
}

/// A user's row: degrees and strengths (interactions) in the selection, and the metrics asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRow {
    pub id: String,
    pub handle: Option<String>,
    pub name: Option<String>,
    pub in_degree: usize,
    pub out_degree: usize,
    pub in_strength: u64,
    pub out_strength: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagerank: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betweenness: Option<f64>,
}

/// How a sampled betweenness was estimated: sources sampled, and the bound on any user's error
/// with the given confidence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Sampling {
    pub samples: usize,
    pub error_bound: f64,
    pub confidence: f64,
}

/// `GET /analytics/components`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Components {
    #[serde(flatten)]
    pub about: About,
    /// `weak` or `strong`.
    pub mode: &'static str,
    pub count: usize,
    pub largest: Largest,
    /// The sizes of the 100 largest components, largest first.
    pub sizes: Vec<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Largest {
    pub size: u32,
    /// Its share of the network's users, from 0 to 1.
    pub share: f64,
}

/// `GET /analytics/cores`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cores {
    #[serde(flatten)]
    pub about: About,
    pub max_core: u32,
    /// One row per core number from 1 to `max_core`.
    pub cores: Vec<CoreRow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CoreRow {
    pub k: usize,
    /// Users whose core number is exactly `k`.
    pub users: u64,
    /// Users in the `k`-core (core number at least `k`).
    pub k_core_size: u64,
}

/// A user ranked by PageRank within a community.
#[derive(Debug, Serialize, ToSchema)]
pub struct RankedUser {
    pub id: String,
    pub handle: Option<String>,
    pub pagerank: f64,
}

/// `GET /analytics/communities`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Communities {
    #[serde(flatten)]
    pub about: About,
    /// `leiden` or `louvain`.
    pub algorithm: &'static str,
    pub resolution: f64,
    pub seed: u64,
    pub modularity: f64,
    pub count: usize,
    /// Largest first.
    pub communities: Vec<CommunityRow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommunityRow {
    pub id: usize,
    pub size: usize,
    /// Interactions between members.
    pub internal_weight: u64,
    /// Its leaders by PageRank.
    pub top_users: Vec<RankedUser>,
}

/// `GET /analytics/communities/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommunityMembers {
    #[serde(flatten)]
    pub about: About,
    pub id: u32,
    pub size: usize,
    pub users: Vec<RankedUser>,
    pub next_cursor: Option<String>,
}

/// `GET /analytics/bridges`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bridges {
    #[serde(flatten)]
    pub about: About,
    #[serde(flatten)]
    pub sampling: Sampling,
    pub users: Vec<Bridge>,
}

/// A user with high betweenness, and the communities its interactions reach.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bridge {
    pub id: String,
    pub handle: Option<String>,
    pub name: Option<String>,
    pub betweenness: f64,
    /// Its own community (null when communities lag behind this snapshot).
    pub community: Option<u32>,
    /// Every community its edges reach, by weight.
    pub communities: Vec<Reach>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reach {
    pub id: u32,
    /// Interactions between the user and that community.
    pub weight: u64,
}

/// Key, handle and name of users of a network, by dense id (`None` for a user removed since).
pub(crate) type Profile = Option<UserRefOwned>;

pub(crate) fn profiles(engine: &Engine, net: &Network, ids: &[usize]) -> Vec<Profile> {
    let uids: Vec<u32> = ids.iter().map(|&i| net.uids[i]).collect();
    engine.graph().read().user_refs(&uids)
}

fn pagerank_of(a: &Answer) -> &[f64] {
    match &*a.output {
        Output::PageRank(p) => &p.scores,
        _ => &[],
    }
}

/// An answer if it was computed on `net` (answers computed meanwhile may lag behind).
fn on<'a>(a: &'a Option<Answer>, net: &Arc<Network>) -> Option<&'a Answer> {
    a.as_ref().filter(|a| Arc::ptr_eq(&a.network, net))
}

/// A sort's name as a `'static` key.
fn sort_key(sort: &str) -> &'static str {
    SORTS.iter().find(|s| **s == sort).copied().unwrap_or("pagerank")
}

/// Users (dense ids) by a column, highest first, ties by id. `output` is the result the column
/// comes from (PageRank, betweenness, cores), `None` for degrees and strengths or when it lags.
fn ranking(sort: &str, net: &Network, output: Option<&Output>) -> Vec<u32> {
    let n = net.users();
    let values: Vec<f64> = match (sort, output) {
        ("pagerank", Some(Output::PageRank(p))) => p.scores.clone(),
        ("betweenness", Some(Output::Betweenness { scores, .. })) => scores.clone(),
        ("core", Some(Output::Cores(c))) => c.iter().map(|&k| f64::from(k)).collect(),
        ("degree", _) => (0..n).map(|i| (net.out(i).0.len() + net.inc(i).len()) as f64).collect(),
        ("in_degree", _) => (0..n).map(|i| net.inc(i).len() as f64).collect(),
        ("out_degree", _) => (0..n).map(|i| net.out(i).0.len() as f64).collect(),
        ("in_strength", _) => (0..n).map(|i| net.in_strength(i) as f64).collect(),
        ("out_strength", _) => (0..n).map(|i| net.out_strength(i) as f64).collect(),
        _ => vec![0.0; n],
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| values[b as usize].total_cmp(&values[a as usize]).then(a.cmp(&b)));
    order
}

/// The per-user table, sorted and paginated.
pub async fn users(engine: &Arc<Engine>, sel: Selection, q: &UsersQuery) -> Result<UsersTable> {
    let mut metrics = q.metrics.clone();
    for m in ["pagerank", "betweenness", "core"] {
        if q.sort == m && !metrics.iter().any(|x| x == m) {
            metrics.push(m.into());
        }
    }
    let want = |m: &str| metrics.iter().any(|x| x == m);
    let maybe = |m: &'static str, task: Task| async move {
        match want(m) {
            true => run(engine, task, sel).await.map(Some),
            false => Ok(None),
        }
    };
    let base = run(engine, Task::Network, sel).await?;
    let pr = maybe("pagerank", Task::pagerank(q.damping)).await?;
    let core = maybe("core", Task::Cores).await?;
    let comm = maybe("community", q.communities.task()).await?;
    let comp = maybe("component", Task::Components { strong: false }).await?;
    let btw =
        maybe("betweenness", Task::Betweenness { samples: q.samples, seed: q.communities.seed }).await?;
    // Every column must describe the same snapshot; a stale one may lag: use the newest.
    let net = [&pr, &core, &comm, &comp, &btw]
        .iter()
        .filter_map(|a| a.as_ref())
        .map(|a| a.network.clone())
        .chain([base.network.clone()])
        .max_by_key(|n| n.version)
        .expect("base");
    let n = net.users();
    // The column sorted by, and the result it comes from (none for degrees and strengths).
    let (task, source) = match q.sort.as_str() {
        "pagerank" => (Task::pagerank(q.damping), &pr),
        "betweenness" => (Task::Betweenness { samples: q.samples, seed: q.communities.seed }, &btw),
        "core" => (Task::Cores, &core),
        _ => (Task::Network, &None),
    };
    let output = on(source, &net).map(|a| a.output.clone());
    let order = if output.is_some() || task == Task::Network {
        let (sort, net2) = (q.sort.clone(), net.clone());
        engine
            .derived((task, sel, sort_key(&q.sort)), &net, move || ranking(&sort, &net2, output.as_deref()))
            .await
            .map_err(ReportError::Failed)?
    } else {
        // The column's result lags behind the snapshot: all zeros, sorted by id, not kept.
        Arc::new(ranking(&q.sort, &net, None))
    };
    let page: Vec<usize> = order.iter().skip(q.offset).take(q.limit).map(|&i| i as usize).collect();
    let refs = profiles(engine, &net, &page);
    let output_on = |a: &Option<Answer>| on(a, &net).map(|a| a.output.clone());
    let (pr_on, core_on, comm_on, comp_on, btw_on) =
        (output_on(&pr), output_on(&core), output_on(&comm), output_on(&comp), output_on(&btw));
    let rows: Vec<UserRow> = page
        .iter()
        .zip(refs)
        .filter_map(|(&i, r)| {
            let (id, handle, name) = r?;
            Some(UserRow {
                id,
                handle,
                name,
                in_degree: net.inc(i).len(),
                out_degree: net.out(i).0.len(),
                in_strength: net.in_strength(i),
                out_strength: net.out_strength(i),
                pagerank: match pr_on.as_deref() {
                    Some(Output::PageRank(p)) => Some(p.scores[i]),
                    _ => None,
                },
                core: match core_on.as_deref() {
                    Some(Output::Cores(c)) => Some(c[i]),
                    _ => None,
                },
                community: match comm_on.as_deref() {
                    Some(Output::Communities(c)) => Some(c.partition.of[i]),
                    _ => None,
                },
                component: match comp_on.as_deref() {
                    Some(Output::Components(c)) => Some(c.of[i]),
                    _ => None,
                },
                betweenness: match btw_on.as_deref() {
                    Some(Output::Betweenness { scores, .. }) => Some(scores[i]),
                    _ => None,
                },
            })
        })
        .collect();
    let answers: Vec<&Answer> =
        [&pr, &core, &comm, &comp, &btw].into_iter().filter_map(|a| a.as_ref()).chain([&base]).collect();
    let next = q.offset + q.limit;
    Ok(UsersTable {
        about: About::of(&sel, &answers),
        sort: q.sort.clone(),
        users: rows,
        next_cursor: (next < n).then(|| format!("o{next}")),
        betweenness: match btw.as_ref().map(|a| &*a.output) {
            Some(Output::Betweenness { samples, error_bound, .. }) => {
                Some(Sampling { samples: *samples, error_bound: *error_bound, confidence: 0.95 })
            }
            _ => None,
        },
    })
}

/// Weak or strong components: how many, the largest's share, the 100 largest sizes.
pub async fn components(engine: &Arc<Engine>, sel: Selection, strong: bool) -> Result<Components> {
    let a = run(engine, Task::Components { strong }, sel).await?;
    let Output::Components(part) = &*a.output else { return Err(ReportError::Failed("components".into())) };
    let n = a.network.users().max(1);
    let largest = part.sizes.first().copied().unwrap_or(0);
    Ok(Components {
        about: About::of(&sel, &[&a]),
        mode: if strong { "strong" } else { "weak" },
        count: part.count(),
        largest: Largest { size: largest, share: f64::from(largest) / n as f64 },
        sizes: part.sizes.iter().take(100).copied().collect(),
    })
}

/// How many users have each core number, and how large each k-core is.
pub async fn cores(engine: &Arc<Engine>, sel: Selection) -> Result<Cores> {
    let a = run(engine, Task::Cores, sel).await?;
    let Output::Cores(c) = &*a.output else { return Err(ReportError::Failed("cores".into())) };
    let max = c.iter().copied().max().unwrap_or(0);
    let mut exact = vec![0u64; max as usize + 1];
    for &k in c {
        exact[k as usize] += 1;
    }
    let mut in_core = 0u64;
    let mut rows: Vec<CoreRow> = Vec::new();
    for k in (1..=max as usize).rev() {
        in_core += exact[k];
        rows.push(CoreRow { k, users: exact[k], k_core_size: in_core });
    }
    rows.reverse();
    Ok(Cores { about: About::of(&sel, &[&a]), max_core: max, cores: rows })
}

/// Members of each community, heaviest PageRank first.
fn members_by_rank(part: &Partition, pr: &[f64]) -> Vec<Vec<usize>> {
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

fn user_brief(r: Profile, pagerank: f64) -> Option<RankedUser> {
    let (id, handle, _) = r?;
    Some(RankedUser { id, handle, pagerank })
}

/// Each community's members by PageRank, and the weight of the edges inside it.
struct CommunityIndex {
    members: Vec<Vec<usize>>,
    inner: Vec<u64>,
}

/// The index of a communities answer, computed once per snapshot (and not kept when PageRank
/// lags behind it).
async fn community_index(
    engine: &Arc<Engine>,
    sel: Selection,
    cp: &CommunityParams,
    c: &Answer,
    pr: &Answer,
) -> Result<Arc<CommunityIndex>> {
    let ranked = Arc::ptr_eq(&pr.network, &c.network);
    let (c2, pr2) = (c.clone(), pr.clone());
    let compute = move || {
        let (net, ranks) = (&c2.network, ranks_on(&c2, &pr2));
        let Output::Communities(found) = &*c2.output else {
            return CommunityIndex { members: Vec::new(), inner: Vec::new() };
        };
        // Weight inside each community (each directed edge once).
        let of = &found.partition.of;
        let mut inner = vec![0u64; found.partition.count()];
        for u in 0..net.users() {
            let (dst, w) = net.out(u);
            for (&v, &w) in dst.iter().zip(w) {
                if of[u] == of[v as usize] {
                    inner[of[u] as usize] += u64::from(w);
                }
            }
        }
        CommunityIndex { members: members_by_rank(&found.partition, ranks), inner }
    };
    if ranked {
        engine.derived((cp.task(), sel, "members"), &c.network, compute).await.map_err(ReportError::Failed)
    } else {
        Ok(Arc::new(compute()))
    }
}

/// Communities, PageRank (which orders the members) and the index of the communities' members.
async fn ranked_communities(
    engine: &Arc<Engine>,
    sel: Selection,
    cp: &CommunityParams,
) -> Result<(Answer, Answer, Arc<CommunityIndex>)> {
    let c = run(engine, cp.task(), sel).await?;
    let pr = run(engine, Task::pagerank(0.85), sel).await?;
    let index = community_index(engine, sel, cp, &c, &pr).await?;
    Ok((c, pr, index))
}

/// PageRank's scores if computed on the communities' snapshot (otherwise none: they would not match).
fn ranks_on<'a>(c: &Answer, pr: &'a Answer) -> &'a [f64] {
    if Arc::ptr_eq(&pr.network, &c.network) {
        pagerank_of(pr)
    } else {
        &[]
    }
}

/// The communities, largest first, each with its size, inner weight and `top` leaders by PageRank.
pub async fn communities(
    engine: &Arc<Engine>,
    sel: Selection,
    cp: &CommunityParams,
    limit: usize,
    top: usize,
) -> Result<Communities> {
    let (c, pr, index) = ranked_communities(engine, sel, cp).await?;
    let Output::Communities(found) = &*c.output else {
        return Err(ReportError::Failed("communities".into()));
    };
    let net = &c.network;
    let ranks = ranks_on(&c, &pr);
    let (members, inner) = (&index.members, &index.inner);
    let leaders: Vec<usize> = members.iter().take(limit).flat_map(|m| m.iter().take(top).copied()).collect();
    let mut refs = profiles(engine, net, &leaders).into_iter();
    let list: Vec<CommunityRow> = members
        .iter()
        .take(limit)
        .enumerate()
        .map(|(id, m)| {
            let top_users: Vec<RankedUser> = m
                .iter()
                .take(top)
                .zip(refs.by_ref())
                .filter_map(|(&u, r)| user_brief(r, ranks.get(u).copied().unwrap_or(0.0)))
                .collect();
            CommunityRow { id, size: m.len(), internal_weight: inner[id], top_users }
        })
        .collect();
    Ok(Communities {
        about: About::of(&sel, &[&c, &pr]),
        algorithm: cp.method.as_str(),
        resolution: cp.resolution,
        seed: cp.seed,
        modularity: found.modularity,
        count: found.partition.count(),
        communities: list,
    })
}

/// One community's members by PageRank, paginated.
pub(crate) async fn community_members(
    engine: &Arc<Engine>,
    sel: Selection,
    cp: &CommunityParams,
    id: u32,
    limit: usize,
    offset: usize,
) -> Result<CommunityMembers> {
    let (c, pr, index) = ranked_communities(engine, sel, cp).await?;
    let ranks = ranks_on(&c, &pr);
    let m = index.members.get(id as usize).ok_or(ReportError::CommunityNotFound(id))?;
    let page: Vec<usize> = m.iter().skip(offset).take(limit).copied().collect();
    let refs = profiles(engine, &c.network, &page);
    let users: Vec<RankedUser> = page
        .iter()
        .zip(refs)
        .filter_map(|(&u, r)| user_brief(r, ranks.get(u).copied().unwrap_or(0.0)))
        .collect();
    let next = offset + limit;
    Ok(CommunityMembers {
        about: About::of(&sel, &[&c, &pr]),
        id,
        size: m.len(),
        users,
        next_cursor: (next < m.len()).then(|| format!("o{next}")),
    })
}

/// Users by estimated betweenness, each with the communities its edges reach (and their weight).
pub async fn bridges(
    engine: &Arc<Engine>,
    sel: Selection,
    cp: &CommunityParams,
    limit: usize,
    samples: Option<usize>,
) -> Result<Bridges> {
    let b_task = Task::Betweenness { samples, seed: cp.seed };
    let b = run(engine, b_task, sel).await?;
    let c = run(engine, cp.task(), sel).await?;
    let Output::Betweenness { scores, samples, error_bound } = &*b.output else {
        return Err(ReportError::Failed("betweenness".into()));
    };
    let net = &b.network;
    let part = match &*c.output {
        Output::Communities(f) if Arc::ptr_eq(&c.network, net) => Some(&f.partition),
        _ => None,
    };
    let (net2, output) = (net.clone(), b.output.clone());
    let ranked = engine
        .derived((b_task, sel, "betweenness"), net, move || ranking("betweenness", &net2, Some(&output)))
        .await
        .map_err(ReportError::Failed)?;
    let order: Vec<usize> = ranked.iter().take(limit).map(|&i| i as usize).collect();
    let refs = profiles(engine, net, &order);
    let rows: Vec<Bridge> = order
        .iter()
        .zip(refs)
        .filter_map(|(&u, r)| {
            let (id, handle, name) = r?;
            let mut reach: HashMap<u32, u64> = HashMap::new();
            if let Some(part) = part {
                let (dst, w) = net.out(u);
                for (v, w) in dst.iter().copied().zip(w.iter().copied()).chain(net.in_edges(u)) {
                    *reach.entry(part.of[v as usize]).or_default() += u64::from(w);
                }
            }
            let mut reach: Vec<(u32, u64)> = reach.into_iter().collect();
            reach.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Some(Bridge {
                id,
                handle,
                name,
                betweenness: scores[u],
                community: part.map(|p| p.of[u]),
                communities: reach.into_iter().map(|(id, weight)| Reach { id, weight }).collect(),
            })
        })
        .collect();
    Ok(Bridges {
        about: About::of(&sel, &[&b, &c]),
        sampling: Sampling { samples: *samples, error_bound: *error_bound, confidence: 0.95 },
        users: rows,
    })
}
