//! An export's content, prepared before a byte is written: a selection's interactions sorted into
//! edges, the users that pass the cuts with their degrees, names and metrics.
//!
//! The graph's read lock is held twice, briefly: once to copy the interactions (12 bytes each),
//! then once per few thousand kept users to copy their names. Sorting, cutting and the analyses run
//! on the analytics pool, at its low priority.

use super::{ExportError, Request};
use crate::analytics::engine::{Answer, Engine, Output, Task};
use crate::analytics::paths;
use crate::graph::{Kind, Platform, Stamp};
use rayon::slice::ParallelSliceMut;
use rustc_hash::FxHashSet;
use std::sync::Arc;

/// A kept user: who, its degrees and strengths in the selection, and the metrics asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub uid: u32,
    pub key: Box<str>,
    pub handle: Option<Box<str>>,
    pub name: Option<Box<str>>,
    pub in_degree: u32,
    pub out_degree: u32,
    pub in_strength: u64,
    pub out_strength: u64,
    pub pagerank: Option<f64>,
    pub community: Option<u32>,
    pub core: Option<u32>,
    pub component: Option<u32>,
}

impl Node {
    /// What to show for the user: its handle, else its key.
    pub fn label(&self) -> &str {
        self.handle.as_deref().unwrap_or(&self.key)
    }

    /// The platform its key names (`x:`, `mastodon:`, `bsky:`), if any (users added by hand have none).
    pub fn platform(&self) -> Option<&'static str> {
        let prefix = self.key.split_once(':')?.0;
        Platform::ALL.iter().map(|p| p.as_str()).find(|p| *p == prefix)
    }
}

/// A kept edge: its users and its interactions in the selection, oldest first.
pub struct Edge<'a> {
    pub from: &'a Node,
    pub to: &'a Node,
    stamps: &'a [Stamp],
}

impl Edge<'_> {
    /// Selected interactions.
    pub fn weight(&self) -> u64 {
        self.stamps.len() as u64
    }

    /// Selected interactions per kind, by [`Kind::index`].
    pub fn counts(&self) -> [u64; Kind::COUNT] {
        let mut c = [0; Kind::COUNT];
        for s in self.stamps {
            c[s.kind_index()] += 1;
        }
        c
    }

    pub fn first(&self) -> u32 {
        self.stamps.first().map_or(0, Stamp::at)
    }

    pub fn last(&self) -> u32 {
        self.stamps.last().map_or(0, Stamp::at)
    }

    /// The distinct times of its interactions, ascending.
    pub fn times(&self) -> impl Iterator<Item = u32> + '_ {
        let mut prev = None;
        self.stamps.iter().map(Stamp::at).filter(move |&t| prev.replace(t) != Some(t))
    }
}

/// An export, ready to write.
pub struct Plan {
    pub request: Request,
    /// The kept edges' interactions, by (from, to, time): each edge a run.
    stamps: Vec<Stamp>,
    /// The kept users, by uid.
    users: Vec<Node>,
    /// Uid -> position in `users` (`u32::MAX`: not kept).
    index: Vec<u32>,
    edges: usize,
    /// The graph's version when the interactions were copied.
    pub version: u64,
}

impl Plan {
    pub fn users(&self) -> &[Node] {
        &self.users
    }

    pub fn edge_count(&self) -> usize {
        self.edges
    }

    pub fn interaction_count(&self) -> usize {
        self.stamps.len()
    }

    /// The kept edges, by source then target (both by arrival).
    pub fn edges(&self) -> impl Iterator<Item = Edge<'_>> {
        self.stamps.chunk_by(same_pair).map(|run| Edge {
            from: &self.users[self.index[run[0].from() as usize] as usize],
            to: &self.users[self.index[run[0].to() as usize] as usize],
            stamps: run,
        })
    }

    /// Bytes held (the figure an export's memory is measured by).
    pub fn bytes(&self) -> usize {
        let strings: usize = self
            .users
            .iter()
            .map(|u| {
                u.key.len()
                    + u.handle.as_ref().map_or(0, |h| h.len())
                    + u.name.as_ref().map_or(0, |n| n.len())
            })
            .sum();
        self.stamps.capacity() * std::mem::size_of::<Stamp>()
            + self.users.capacity() * std::mem::size_of::<Node>()
            + strings
            + self.index.capacity() * 4
    }
}

fn same_pair(a: &Stamp, b: &Stamp) -> bool {
    a.from() == b.from() && a.to() == b.to()
}

/// Keeps the runs (edges) of sorted interactions that `keep(from, to, interactions)` accepts, in
/// place; returns how many edges are left.
fn retain_edges(stamps: &mut Vec<Stamp>, mut keep: impl FnMut(u32, u32, usize) -> bool) -> usize {
    let (mut write, mut read, mut edges) = (0, 0, 0);
    while read < stamps.len() {
        let len = stamps[read..].chunk_by(same_pair).next().map_or(0, <[Stamp]>::len);
        let s = stamps[read];
        if keep(s.from(), s.to(), len) {
            stamps.copy_within(read..read + len, write);
            write += len;
            edges += 1;
        }
        read += len;
    }
    stamps.truncate(write);
    edges
}

/// Degrees and strengths of one user in the selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Degrees {
    in_degree: u32,
    out_degree: u32,
    in_strength: u64,
    out_strength: u64,
}

impl Degrees {
    fn degree(&self) -> u64 {
        u64::from(self.in_degree) + u64::from(self.out_degree)
    }
}

/// What the cuts that need an analysis know: core numbers and the ego ball, by uid.
#[derive(Default)]
struct Known {
    core: Option<Box<dyn Fn(u32) -> Option<u32> + Send>>,
    ego: Option<FxHashSet<u32>>,
}

/// Sorts a selection's interactions into edges, drops edges under `min_weight`, applies the cuts;
/// returns the kept interactions, the kept users by uid with their degrees in the selection, and
/// the number of kept edges.
fn cut(mut stamps: Vec<Stamp>, req: &Request, known: &Known) -> (Vec<Stamp>, Vec<(u32, Degrees)>, usize) {
    stamps.par_sort_unstable_by_key(|s| (s.from(), s.to(), s.at(), s.kind_index()));
    let bound = stamps.iter().map(|s| s.from().max(s.to()) as usize + 1).max().unwrap_or(0);
    let min_weight = req.sel.min_weight.max(1) as usize;
    let mut deg = vec![Degrees::default(); bound];
    for run in stamps.chunk_by(same_pair).filter(|r| r.len() >= min_weight) {
        let (from, to, w) = (run[0].from() as usize, run[0].to() as usize, run.len() as u64);
        deg[from].out_degree += 1;
        deg[from].out_strength += w;
        deg[to].in_degree += 1;
        deg[to].in_strength += w;
    }
    let selected = |d: &Degrees| d.degree() > 0;
    let mut keep: Vec<bool> = deg
        .iter()
        .enumerate()
        .map(|(uid, d)| {
            let uid = uid as u32;
            selected(d)
                && d.degree() >= u64::from(req.min_degree)
                && req.core.is_none_or(|k| known.core.as_ref().and_then(|c| c(uid)).is_some_and(|c| c >= k))
                && known.ego.as_ref().is_none_or(|ball| ball.contains(&uid))
        })
        .collect();
    if let Some(n) = req.top {
        // The n users of highest degree among all selected (ties: the earlier arrival).
        let mut order: Vec<(std::cmp::Reverse<u64>, u32)> = deg
            .iter()
            .enumerate()
            .filter(|(_, d)| selected(d))
            .map(|(uid, d)| (std::cmp::Reverse(d.degree()), uid as u32))
            .collect();
        if order.len() > n {
            order.select_nth_unstable(n);
            for &(_, uid) in &order[n..] {
                keep[uid as usize] = false;
            }
        }
    }
    let edges = retain_edges(&mut stamps, |from, to, len| {
        len >= min_weight && keep[from as usize] && keep[to as usize]
    });
    let users = keep.iter().enumerate().filter(|(_, k)| **k).map(|(uid, _)| (uid as u32, deg[uid])).collect();
    (stamps, users, edges)
}

/// A metric's value for a user, from an analysis computed on some snapshot of the selection.
fn lookup<T: Copy>(
    answer: Option<&Answer>,
    uid: u32,
    pick: impl Fn(&Output, usize) -> Option<T>,
) -> Option<T> {
    let a = answer?;
    let i = a.network.id_of(uid)?;
    pick(&a.output, i)
}

/// A user's core number in a cores result (the cut and the metric read it alike).
fn core_of(output: &Output, i: usize) -> Option<u32> {
    match output {
        Output::Cores(c) => c.get(i).copied(),
        _ => None,
    }
}

/// Users named per read lock: short holds, however many users are kept.
const NAMED_AT_ONCE: usize = 4096;

/// Prepares an export: the analyses the cuts and metrics need (shared with the analytics routes'
/// cache), the interactions, the cuts, the names.
///
/// # Errors
/// [`ExportError::Graph`] when the ego cut names no user (or an ambiguous handle);
/// [`ExportError::Failed`] when an analysis failed.
pub async fn prepare(engine: &Arc<Engine>, req: &Request) -> Result<Plan, ExportError> {
    let graph = engine.graph().clone();
    let sel = req.sel;
    let centre = match &req.ego {
        None => None,
        Some(e) => {
            let g = graph.read();
            let key = g.resolve(&e.user)?;
            Some((g.uid(key).ok_or_else(|| ExportError::Failed("a user without a uid".into()))?, e.hops))
        }
    };
    let run = |wanted: bool, task: Task| {
        let engine = engine.clone();
        async move {
            match wanted {
                true => engine.run(task, sel).await.map(Some).map_err(ExportError::Failed),
                false => Ok(None),
            }
        }
    };
    let m = req.metrics;
    let cores = run(m.core || req.core.is_some(), Task::Cores).await?;
    let pagerank = run(m.pagerank, Task::pagerank(req.damping)).await?;
    let communities = run(m.community, req.communities.task()).await?;
    let components = run(m.component, Task::Components { strong: false }).await?;
    let network = run(centre.is_some(), Task::Undirected).await?;

    let request = req.clone();
    let prepared = engine
        .offload(move || {
            let mut known = Known::default();
            if let Some(a) = cores.clone() {
                known.core = Some(Box::new(move |uid| lookup(Some(&a), uid, core_of)));
            }
            if let (Some((uid, hops)), Some(a)) = (centre, &network) {
                let net = &a.network;
                let ball = match net.id_of(uid) {
                    Some(c) => paths::ego(net.undirected(), c, hops, usize::MAX)
                        .into_iter()
                        .map(|(i, _)| net.uids[i])
                        .collect(),
                    None => FxHashSet::default(),
                };
                known.ego = Some(ball);
            }
            // Room for the copy, touched before the lock is taken (as for analytics snapshots).
            let mut room = Vec::new();
            if !sel.is_windowed() {
                room.resize(graph.read().timeline_stats().0, Stamp::new(0, 0, Kind::Repost, 0));
            }
            let copied = graph.read().interactions(&sel, room);
            let (mut stamps, kept, mut edges) = cut(copied.stamps, &request, &known);
            let mut users = Vec::with_capacity(kept.len());
            let mut vanished = false;
            for chunk in kept.chunks(NAMED_AT_ONCE) {
                let uids: Vec<u32> = chunk.iter().map(|(uid, _)| *uid).collect();
                let refs = graph.read().user_refs(&uids);
                for (&(uid, d), r) in chunk.iter().zip(refs) {
                    // A user removed since the copy: dropped with its edges below.
                    let Some((key, handle, name)) = r else {
                        vanished = true;
                        continue;
                    };
                    users.push(Node {
                        uid,
                        key: key.into_boxed_str(),
                        handle: handle.map(String::into_boxed_str),
                        name: name.map(String::into_boxed_str),
                        in_degree: d.in_degree,
                        out_degree: d.out_degree,
                        in_strength: d.in_strength,
                        out_strength: d.out_strength,
                        pagerank: lookup(pagerank.as_ref(), uid, |o, i| match o {
                            Output::PageRank(p) => p.scores.get(i).copied(),
                            _ => None,
                        }),
                        community: lookup(communities.as_ref(), uid, |o, i| match o {
                            Output::Communities(c) => c.partition.of.get(i).copied(),
                            _ => None,
                        }),
                        core: lookup(cores.as_ref(), uid, core_of),
                        component: lookup(components.as_ref(), uid, |o, i| match o {
                            Output::Components(p) => p.of.get(i).copied(),
                            _ => None,
                        }),
                    });
                }
            }
            let bound = kept.last().map_or(0, |(uid, _)| *uid as usize + 1);
            let mut index = vec![u32::MAX; bound];
            for (i, u) in users.iter().enumerate() {
                index[u.uid as usize] = i as u32;
            }
            if vanished {
                edges = retain_edges(&mut stamps, |from, to, _| {
                    index[from as usize] != u32::MAX && index[to as usize] != u32::MAX
                });
            }
            stamps.shrink_to_fit();
            Plan { request, stamps, users, index, edges, version: copied.version }
        })
        .await
        .map_err(ExportError::Failed)?;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Selection;

    fn stamps(list: &[(u32, u32, Kind, u32)]) -> Vec<Stamp> {
        list.iter().map(|&(f, t, k, at)| Stamp::new(f, t, k, at)).collect()
    }

    #[test]
    fn cut_sorts_into_edges_and_applies_every_cut() {
        use Kind::*;
        // 1 -> 2 three times, 2 -> 1 once, 3 -> 2 twice, 4 -> 5 once, 1 -> 3 once.
        let all = stamps(&[
            (1, 2, Repost, 30),
            (2, 1, Reply, 5),
            (3, 2, Mention, 7),
            (1, 2, Mention, 10),
            (4, 5, Quote, 9),
            (1, 2, Repost, 20),
            (3, 2, Repost, 8),
            (1, 3, Reply, 1),
        ]);
        let req = Request::new(Selection::default());
        let (kept, users, edges) = cut(all.clone(), &req, &Known::default());
        assert_eq!(edges, 5);
        let uids: Vec<u32> = users.iter().map(|(u, _)| *u).collect();
        assert_eq!(uids, [1, 2, 3, 4, 5]);
        let one = users[0].1;
        assert_eq!((one.out_degree, one.in_degree, one.out_strength, one.in_strength), (2, 1, 4, 1));
        let firsts: Vec<(u32, u32, u32)> = kept.iter().map(|s| (s.from(), s.to(), s.at())).collect();
        assert_eq!(&firsts[..3], [(1, 2, 10), (1, 2, 20), (1, 2, 30)], "by pair, then time");

        let mut heavy = req.clone();
        heavy.sel.min_weight = 2;
        let (kept, users, edges) = cut(all.clone(), &heavy, &Known::default());
        assert_eq!((edges, kept.len()), (2, 5), "1->2 (3) and 3->2 (2)");
        assert_eq!(users.iter().map(|(u, _)| *u).collect::<Vec<_>>(), [1, 2, 3]);

        let mut top = req.clone();
        top.top = Some(2);
        let (_, users, edges) = cut(all.clone(), &top, &Known::default());
        // Degrees: 1 -> 3 (2 out + 1 in), 2 -> 2 (1 out, 2 in), 3 -> 2; the tie goes to uid 2.
        assert_eq!(users.iter().map(|(u, _)| *u).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(edges, 2, "1->2 and 2->1");

        let mut min_degree = req.clone();
        min_degree.min_degree = 2;
        let (_, users, _) = cut(all.clone(), &min_degree, &Known::default());
        assert_eq!(users.iter().map(|(u, _)| *u).collect::<Vec<_>>(), [1, 2, 3]);

        let mut core = req.clone();
        core.core = Some(2);
        let known = Known { core: Some(Box::new(|uid| Some(if uid <= 3 { 2 } else { 1 }))), ego: None };
        let (_, users, edges) = cut(all.clone(), &core, &known);
        assert_eq!((users.len(), edges), (3, 4));

        let known = Known { core: None, ego: Some([4, 5].into_iter().collect()) };
        let (kept, users, edges) = cut(all, &req, &known);
        assert_eq!((users.len(), edges, kept.len()), (2, 1, 1));
    }

    #[test]
    fn edges_count_kinds_and_list_distinct_times() {
        let mut s = stamps(&[(1, 2, Kind::Repost, 10), (1, 2, Kind::Mention, 10), (1, 2, Kind::Repost, 12)]);
        s.sort_by_key(|s| (s.at(), s.kind_index()));
        let (a, b) = (node(1, "x:1"), node(2, "x:2"));
        let e = Edge { from: &a, to: &b, stamps: &s };
        assert_eq!((e.weight(), e.first(), e.last()), (3, 10, 12));
        assert_eq!(e.counts(), [2, 0, 0, 1, 0]);
        assert_eq!(e.times().collect::<Vec<_>>(), [10, 12]);
        assert_eq!(
            (a.platform(), node(3, "alice").platform(), node(4, "bsky:did:plc:z").platform()),
            (Some("x"), None, Some("bsky"))
        );
    }

    pub(crate) fn node(uid: u32, key: &str) -> Node {
        Node {
            uid,
            key: key.into(),
            handle: None,
            name: None,
            in_degree: 0,
            out_degree: 0,
            in_strength: 0,
            out_strength: 0,
            pagerank: None,
            community: None,
            core: None,
            component: None,
        }
    }
}
