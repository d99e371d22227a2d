//! Shortest paths between two users: a bidirectional breadth-first search over the live graph.
//!
//! A plain BFS from one end visits most of a million-user graph on a miss; searching from both ends
//! and always growing the side whose frontier has fewer edges to walk meets in the middle after
//! touching roughly the square root as many users. Edge direction is followed when asked; by default a
//! path may use an edge either way ("how are these two accounts connected").

use super::graph::{Graph, GraphError};
use super::tie::KindCounts;
use super::views::UserView;
use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;
use serde::Serialize;
use std::cell::RefCell;

/// A shortest path, as keys from `from` to `to` inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)] // In the contract: no other field, unlike the strongest path's answer.
pub struct PathView {
    pub from: String,
    pub to: String,
    pub directed: bool,
    pub hops: usize,
    pub path: Vec<String>,
    /// The same users with their handles and degrees, for display.
    pub users: Vec<UserView>,
    /// Each hop's interactions, both ways: what joins `path[i]` and `path[i + 1]`.
    pub steps: Vec<Hop>,
}

/// The interactions along one hop of a path: from its first user to its second (`forward`), and
/// back (`backward`). An undirected path may follow a hop against the interactions' direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Hop {
    pub forward: KindCounts,
    pub backward: KindCounts,
}

/// Per-thread scratch space, reused across searches so that a query allocates nothing proportional
/// to the graph: marks are stamped with a search number instead of being cleared.
#[derive(Default)]
struct Scratch {
    stamp: u32,
    /// Per node, both sides' marks side by side: growing one side checks the other's mark of the
    /// same node, and this way that is the same cache line (one memory miss per neighbour, not two).
    marks: Vec<Mark>,
}

/// One side's mark of a node: the search stamp when reached, and the parent it was reached from.
#[derive(Default, Clone, Copy)]
struct Side {
    stamp: u32,
    parent: u32,
}

#[derive(Default, Clone, Copy)]
struct Mark {
    fwd: Side,
    bwd: Side,
}

impl Mark {
    fn side(&mut self, forward: bool) -> (&mut Side, Side) {
        if forward {
            (&mut self.fwd, self.bwd)
        } else {
            (&mut self.bwd, self.fwd)
        }
    }
}

/// A frontier: each user with the number of adjacency entries growing it walks (read once, when
/// the user is reached), and their sum.
#[derive(Default)]
struct Front {
    users: Vec<(u32, NodeIndex)>,
    cost: u64,
}

impl Front {
    fn push(&mut self, walk: u32, i: NodeIndex) {
        self.users.push((walk, i));
        self.cost += u64::from(walk);
    }

    fn clear(&mut self) {
        self.users.clear();
        self.cost = 0;
    }
}

/// Users whose adjacency is longer than this are grown last in their level, cheapest first.
const LIGHT: u32 = 64;

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

const ROOT: u32 = u32::MAX;

/// Adjacency entries a search of [`Graph::find_path`] may walk before it gives up with
/// [`GraphError::TooExpensive`]: a fifth of a ten-million-interaction graph's adjacency. Searches that find their path meet long before (p99 under a millisecond); what it cuts
/// off is the miss between two users whose smaller side is a component of millions.
pub(crate) const PATH_BUDGET: u64 = 4_000_000;

/// A budget for a first try where a search may not hold the lock long (a request thread): about half
/// a millisecond. Most paths are found within it; the rest are searched again with
/// [`PATH_BUDGET`] where long reads are paced.
pub const QUICK_PATH_BUDGET: u64 = 100_000;

/// Adjacency entries a search on the paced pool walks per read lock (see
/// [`Graph::find_path_stepped`]): a few hundred microseconds, what a writer may wait for it.
pub const PATH_STEP: u64 = 50_000;

/// What growing one level of a search costs besides its adjacency entries, in entries: about what
/// walking that many entries takes.
const LEVEL_COST: u64 = 32;

/// How a bounded search ended.
enum Search {
    /// The path, and the adjacency entries walked to find it.
    Found(Vec<NodeIndex>, u64),
    /// Not connected: every entry of the smaller side was walked.
    NoPath(u64),
    /// Stopped after walking this many adjacency entries.
    OverBudget(u64),
}

impl Graph {
    /// A shortest path between two users named by key or handle.
    ///
    /// Cost: at most [`PATH_BUDGET`] adjacency entries walked; typically far less.
    ///
    /// # Errors
    /// `UserNotFound` / `AmbiguousHandle` for either end, `NoPath` if they are not connected,
    /// `TooExpensive` if the search walked its budget without deciding.
    pub fn find_path(&self, from: &str, to: &str, directed: bool) -> Result<PathView, GraphError> {
        self.find_path_within(from, to, directed, PATH_BUDGET).0
    }

    /// [`Graph::find_path`] with a budget of adjacency entries of the caller's; and the entries
    /// the search walked.
    ///
    /// # Errors
    /// As [`Graph::find_path`]; `TooExpensive` past `budget`.
    pub(crate) fn find_path_within(
        &self,
        from: &str,
        to: &str,
        directed: bool,
        budget: u64,
    ) -> (Result<PathView, GraphError>, u64) {
        let (from, to) = match self.resolve_pair(from, to) {
            Ok(pair) => pair,
            Err(e) => return (Err(e), 0),
        };
        let (s, t) = (self.index_of(from).expect("resolved"), self.index_of(to).expect("resolved"));
        let search = self.shortest_path_indices(s, t, directed, budget);
        let walked = search.walked();
        (self.answer(from, to, directed, search), walked)
    }

    /// [`Graph::find_path`] on a graph that others change meanwhile: `read` gives the graph for
    /// each step of about `step` adjacency entries, and it is let go of between steps, so a writer
    /// waits for one step at most, never for a whole search. The path answered holds in the graph
    /// as it is at the end (checked: a path a removal broke is searched for again, after three
    /// times in one step); it is a shortest one in the graph as it was, give or take the edges
    /// added during the search. Its budget is [`PATH_BUDGET`] in all.
    ///
    /// # Errors
    /// As [`Graph::find_path`].
    pub(crate) fn find_path_stepped<G: std::ops::Deref<Target = Graph>>(
        mut read: impl FnMut() -> G,
        from: &str,
        to: &str,
        directed: bool,
        step: u64,
    ) -> Result<PathView, GraphError> {
        let mut attempt = 0;
        loop {
            let step = if attempt < 3 { step } else { u64::MAX };
            attempt += 1;
            let g = read();
            let (from, to) = match g.resolve_pair(from, to) {
                Ok((a, b)) => (a.to_string(), b.to_string()),
                Err(e) => return Err(e),
            };
            let (s, t) = (g.index_of(&from).expect("resolved"), g.index_of(&to).expect("resolved"));
            let (search, g) = match g.adjacent(s, t, directed) {
                Some(found) => (Some(found), g),
                None => SCRATCH.with(|cell| {
                    let sc = &mut *cell.borrow_mut();
                    let mut bfs = Bfs::new(&g, sc, s, t, directed, PATH_BUDGET);
                    let mut g = g;
                    loop {
                        if let Some(end) = bfs.grow(&g, sc, step) {
                            return (Some(end), g);
                        }
                        // Let go before asking again: a writer may be waiting between the two.
                        drop(g);
                        g = read();
                        if g.index_of(&from) != Some(s) || g.index_of(&to) != Some(t) {
                            return (None, g); // An end was removed meanwhile: from the start.
                        }
                    }
                }),
            };
            match search {
                Some(Search::Found(nodes, _)) if !g.path_holds(&nodes, directed) => {}
                Some(search) => return g.answer(&from, &to, directed, search),
                None => {}
            }
        }
    }

    /// A search under one borrow of the graph.
    fn shortest_path_indices(&self, s: NodeIndex, t: NodeIndex, directed: bool, budget: u64) -> Search {
        self.adjacent(s, t, directed).unwrap_or_else(|| {
            SCRATCH.with(|cell| {
                let sc = &mut *cell.borrow_mut();
                let mut bfs = Bfs::new(self, sc, s, t, directed, budget);
                bfs.grow(self, sc, u64::MAX).expect("a search without steps ends")
            })
        })
    }

    /// Two users that are neighbours (or the same user) need no search: found in O(1) for two busy
    /// users (their edge is indexed), where a search from two hubs would walk the smaller one's
    /// whole adjacency to meet at once.
    fn adjacent(&self, s: NodeIndex, t: NodeIndex, directed: bool) -> Option<Search> {
        if s == t {
            return Some(Search::Found(vec![s], 0));
        }
        let linked = self.find_edge(s, t).is_some() || (!directed && self.find_edge(t, s).is_some());
        linked.then(|| Search::Found(vec![s, t], 1))
    }

    /// Whether every user of `nodes` is in the graph and each joins the next by an edge (either way
    /// unless `directed`).
    fn path_holds(&self, nodes: &[NodeIndex], directed: bool) -> bool {
        nodes.iter().all(|&i| self.g.contains_node(i))
            && nodes.windows(2).all(|w| {
                self.find_edge(w[0], w[1]).is_some() || (!directed && self.find_edge(w[1], w[0]).is_some())
            })
    }

    /// The answer of a search between users `from` and `to` (keys).
    fn answer(&self, from: &str, to: &str, directed: bool, search: Search) -> Result<PathView, GraphError> {
        let nodes = match search {
            Search::Found(nodes, _) => nodes,
            Search::NoPath(_) => {
                return Err(GraphError::NoPath { from: from.to_string(), to: to.to_string() })
            }
            Search::OverBudget(walked) => return Err(GraphError::TooExpensive { walked }),
        };
        let counts = |a, b| {
            let mut c = KindCounts::default();
            if let Some(e) = self.find_edge(a, b) {
                c.add_tie(&self.tie_at(e));
            }
            c
        };
        Ok(PathView {
            from: from.to_string(),
            to: to.to_string(),
            directed,
            hops: nodes.len() - 1,
            path: nodes.iter().map(|&i| self.key_at(i).to_string()).collect(),
            users: nodes.iter().map(|&i| self.view_at(i)).collect(),
            steps: nodes
                .windows(2)
                .map(|w| Hop { forward: counts(w[0], w[1]), backward: counts(w[1], w[0]) })
                .collect(),
        })
    }
}

impl Search {
    fn walked(&self) -> u64 {
        match *self {
            Search::Found(_, w) | Search::NoPath(w) | Search::OverBudget(w) => w,
        }
    }
}

/// The adjacency entries growing user `i` from one side walks.
fn walk(graph: &Graph, i: NodeIndex, directed: bool, forward: bool) -> u32 {
    let (out, inc) = graph.degrees_at(i);
    match (directed, forward) {
        (false, _) => out + inc,
        (true, true) => out,
        (true, false) => inc,
    }
}

/// A bidirectional breadth-first search, grown in steps that may each see a different graph (see
/// [`Graph::find_path_stepped`]); its marks are the thread's [`Scratch`], stamped with its number.
struct Bfs {
    directed: bool,
    budget: u64,
    stamp: u32,
    front_f: Front,
    front_b: Front,
    next: Front,
    /// The level being grown: its side, its users in the order they are grown, how many are done.
    forward: bool,
    order: Vec<(u32, NodeIndex)>,
    done: usize,
    in_level: bool,
    walked: u64,
}

impl Bfs {
    fn new(graph: &Graph, sc: &mut Scratch, s: NodeIndex, t: NodeIndex, directed: bool, budget: u64) -> Bfs {
        sc.stamp = sc.stamp.wrapping_add(1);
        if sc.stamp == 0 {
            // Wrapped after 4 billion searches: clear the marks once.
            sc.marks.iter_mut().for_each(|m| *m = Mark::default());
            sc.stamp = 1;
        }
        let stamp = sc.stamp;
        let bound = graph.node_bound();
        if sc.marks.len() < bound {
            sc.marks.resize(bound, Mark::default());
        }
        sc.marks[s.index()].fwd = Side { stamp, parent: ROOT };
        sc.marks[t.index()].bwd = Side { stamp, parent: ROOT };
        let mut bfs = Bfs {
            directed,
            budget,
            stamp,
            front_f: Front::default(),
            front_b: Front::default(),
            next: Front::default(),
            forward: true,
            order: Vec::new(),
            done: 0,
            in_level: false,
            walked: 0,
        };
        bfs.front_f.push(walk(graph, s, directed, true), s);
        bfs.front_b.push(walk(graph, t, directed, false), t);
        bfs
    }

    /// Grows the search by about `step` adjacency entries (whole users' adjacencies), or to its
    /// end: `None` while it goes on.
    fn grow(&mut self, graph: &Graph, sc: &mut Scratch, step: u64) -> Option<Search> {
        let bound = graph.node_bound();
        if sc.marks.len() < bound {
            sc.marks.resize(bound, Mark::default());
        }
        let (stamp, directed) = (self.stamp, self.directed);
        let mut spent = 0u64;
        loop {
            if !self.in_level {
                if self.front_f.users.is_empty() || self.front_b.users.is_empty() {
                    return Some(Search::NoPath(self.walked));
                }
                // Grow the side with fewer adjacency entries to walk.
                self.forward = self.front_f.cost <= self.front_b.cost;
                let front = if self.forward { &self.front_f } else { &self.front_b };
                // A level's cost is known before it is grown: stop before, not after, the budget.
                // A level costs its entries and a fixed part (a search along a chain of users grows
                // thousands of levels of one entry each, and must not escape the budget that way).
                let cost = front.cost.saturating_add(LEVEL_COST);
                self.walked = self.walked.saturating_add(cost);
                if self.walked > self.budget {
                    return Some(Search::OverBudget(self.walked - cost));
                }
                // Every meeting found while growing this level closes a path of the same length,
                // so grow the cheap users first and the hubs last, cheapest first: the meeting is
                // usually found before a hub's neighbours are walked, which is what the slowest
                // searches spend their time on. Only the few hubs are sorted.
                self.order.clear();
                self.order.extend(front.users.iter().copied().filter(|&(w, _)| w <= LIGHT));
                let light = self.order.len();
                self.order.extend(front.users.iter().copied().filter(|&(w, _)| w > LIGHT));
                self.order[light..].sort_unstable_by_key(|&(w, _)| w);
                self.next.clear();
                self.done = 0;
                self.in_level = true;
                spent += LEVEL_COST;
            }
            let forward = self.forward;
            let dirs: &[Direction] = match (directed, forward) {
                (false, _) => &[Direction::Outgoing, Direction::Incoming],
                (true, true) => &[Direction::Outgoing],
                (true, false) => &[Direction::Incoming],
            };
            let mut meet = None;
            'level: while self.done < self.order.len() {
                if spent >= step {
                    return None;
                }
                let (w, u) = self.order[self.done];
                self.done += 1;
                if !graph.g.contains_node(u) {
                    continue; // Removed since it was reached.
                }
                spent += u64::from(w) + 1;
                for &dir in dirs {
                    let (marks, next) = (&mut sc.marks, &mut self.next);
                    let grown = graph.neighbors_while(u, dir, |v| {
                        let (mine, theirs) = marks[v.index()].side(forward);
                        if mine.stamp == stamp {
                            return true;
                        }
                        *mine = Side { stamp, parent: u.index() as u32 };
                        if theirs.stamp == stamp {
                            // Both searches grow whole levels, alternating, so the first meeting
                            // found while growing a level closes a shortest path.
                            meet = Some(v);
                            return false;
                        }
                        next.push(walk(graph, v, directed, forward), v);
                        true
                    });
                    if !grown {
                        break 'level;
                    }
                }
            }
            if let Some(v) = meet {
                return Some(Search::Found(stitch(sc, v, stamp), self.walked));
            }
            self.in_level = false;
            let front = if forward { &mut self.front_f } else { &mut self.front_b };
            std::mem::swap(front, &mut self.next);
        }
    }
}

/// Joins the two half-paths at the meeting node `v`.
fn stitch(sc: &Scratch, v: NodeIndex, stamp: u32) -> Vec<NodeIndex> {
    let walk = |side: fn(&Mark) -> Side| {
        let mut out = Vec::new();
        let mut cur = side(&sc.marks[v.index()]).parent;
        while cur != ROOT {
            debug_assert_eq!(side(&sc.marks[cur as usize]).stamp, stamp);
            out.push(NodeIndex::new(cur as usize));
            cur = side(&sc.marks[cur as usize]).parent;
        }
        out
    };
    let mut path = walk(|m| m.fwd);
    path.reverse();
    path.push(v);
    path.extend(walk(|m| m.bwd));
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Kind, Tie};
    use crate::rng::SplitMix64;
    use petgraph::algo::dijkstra;

    fn one(kind: Kind) -> Tie {
        crate::graph::testkit::tie_of(kind, 1)
    }

    fn random_graph(users: u32, edges: u32, seed: u64) -> Graph {
        crate::graph::testkit::skewed(users, edges, seed, 1, 17)
    }

    /// Distances from petgraph's own Dijkstra over the same petgraph storage: an independent
    /// implementation (unit weights) that shares none of the search code above.
    fn reference(g: &Graph, from: &str, to: &str, directed: bool) -> Option<usize> {
        let (s, t) = (g.index_of(from)?, g.index_of(to)?);
        let d = if directed {
            dijkstra(&g.g, s, Some(t), |_| 1usize)
        } else {
            // Undirected view: petgraph's Undirected adaptor.
            dijkstra(petgraph::visit::UndirectedAdaptor(&g.g), s, Some(t), |_| 1usize)
        };
        d.get(&t).copied()
    }

    #[test]
    fn bidirectional_bfs_matches_dijkstra_on_random_graphs() {
        let mut checked = (0, 0);
        let mut listed = 0;
        for (seed, users, edges) in
            [(1u64, 200u32, 300u32), (2, 1_000, 1_500), (3, 3_000, 9_000), (4, 500, 5_000)]
        {
            let g = random_graph(users, edges, seed);
            listed += g.listed_users();
            let keys = keys(&g);
            let mut s = SplitMix64::new(seed ^ 0xABCD);
            for _ in 0..1_000 {
                let a = &keys[(s.next_u64() % keys.len() as u64) as usize];
                let b = &keys[(s.next_u64() % keys.len() as u64) as usize];
                for directed in [false, true] {
                    let want = reference(&g, a, b, directed);
                    let got = g.find_path(a, b, directed);
                    match (want, &got) {
                        (Some(d), Ok(p)) => {
                            assert_eq!(p.hops, d, "{a} -> {b} directed={directed}");
                            assert_eq!(p.path.first(), Some(a));
                            assert_eq!(p.path.last(), Some(b));
                            for w in p.path.windows(2) {
                                let fwd = g.tie(&w[0], &w[1]).is_some();
                                let back = g.tie(&w[1], &w[0]).is_some();
                                assert!(fwd || (!directed && back), "{} -> {} is not an edge", w[0], w[1]);
                            }
                            checked.0 += 1;
                        }
                        (None, Err(GraphError::NoPath { .. })) => checked.1 += 1,
                        _ => panic!("{a} -> {b} directed={directed}: reference {want:?}, got {got:?}"),
                    }
                }
            }
        }
        assert!(
            checked.0 > 1_000 && checked.1 > 100,
            "both reachable and unreachable pairs checked: {checked:?}"
        );
        assert!(listed > 30, "searches crossed users read from neighbour lists ({listed})");
    }

    /// Searched in steps of a single user each on a graph that does not change, a search finds
    /// what the search under one borrow finds, with the same budget.
    #[test]
    fn a_search_in_steps_finds_what_one_search_finds() {
        for (seed, users, edges) in [(5u64, 300u32, 500u32), (6, 2_000, 6_000)] {
            let g = random_graph(users, edges, seed);
            let keys = keys(&g);
            let mut s = SplitMix64::new(seed);
            let (mut found, mut reads) = (0, 0);
            for _ in 0..300 {
                let a = &keys[(s.next_u64() % keys.len() as u64) as usize];
                let b = &keys[(s.next_u64() % keys.len() as u64) as usize];
                for directed in [false, true] {
                    let stepped = Graph::find_path_stepped(
                        || {
                            reads += 1;
                            &g
                        },
                        a,
                        b,
                        directed,
                        1,
                    );
                    let whole = g.find_path(a, b, directed);
                    match (&stepped, &whole) {
                        (Ok(p), Ok(q)) => {
                            assert_eq!(p.hops, q.hops, "{a} -> {b} directed={directed}");
                            assert!(g.path_holds(&indices(&g, &p.path), directed));
                            found += 1;
                        }
                        _ => assert_eq!(stepped, whole, "{a} -> {b} directed={directed}"),
                    }
                }
            }
            assert!(found > 100 && reads > 2 * found, "paths found in many steps: {found}, {reads}");
        }
    }

    /// Every user's key, in key order.
    fn keys(g: &Graph) -> Vec<String> {
        g.users_page(crate::graph::UserOrder::Key, None, usize::MAX).items.into_iter().map(|u| u.id).collect()
    }

    fn indices(g: &Graph, path: &[String]) -> Vec<NodeIndex> {
        path.iter().map(|k| g.index_of(k).unwrap()).collect()
    }

    /// A search in steps over a graph that writers change between its steps: users removed (from
    /// its frontiers, its path, its ends), edges added, users added. It never fails for that, and
    /// a path it answers holds in the graph as it is when answered.
    #[test]
    fn a_search_in_steps_answers_a_path_that_holds_while_the_graph_changes() {
        // Two routes: s a1 a2 a3 t (4 hops) and s b1 b2 b3 b4 t (5 hops). Removing a2 during the
        // search leaves the longer one.
        let routes = || {
            let mut g = Graph::new();
            let names = ["s", "a1", "a2", "a3", "t", "b1", "b2", "b3", "b4"];
            for (n, k) in names.iter().enumerate() {
                g.upsert_user(n as u32, k, None, None);
            }
            for route in [&["s", "a1", "a2", "a3", "t"][..], &["s", "b1", "b2", "b3", "b4", "t"]] {
                for w in route.windows(2) {
                    g.set_tie(w[0], w[1], one(Kind::Reply));
                }
            }
            g
        };
        let mut removed_during = 0;
        for when in 1..12 {
            let lock = std::sync::RwLock::new(routes());
            let mut reads = 0;
            let p = Graph::find_path_stepped(
                || {
                    reads += 1;
                    if reads == when {
                        lock.write().unwrap().remove_user("a2");
                    }
                    lock.read().unwrap()
                },
                "s",
                "t",
                false,
                1,
            )
            .unwrap();
            if reads >= when {
                assert_eq!(p.path, ["s", "b1", "b2", "b3", "b4", "t"], "a2 removed at read {when}");
                removed_during += usize::from(when > 1);
            } else {
                assert_eq!(p.path, ["s", "a1", "a2", "a3", "t"], "the search ended in {reads} reads");
            }
        }
        assert!(removed_during >= 3, "a2 was removed during searches {removed_during} times");
        // Random graphs, random writes between every step.
        let base = || random_graph(2_000, 5_000, 9);
        let keys = keys(&base());
        let mut s = SplitMix64::new(77);
        let mut outcomes = [0usize; 3];
        for round in 0..200u32 {
            let lock = std::sync::RwLock::new(base());
            let pick = |s: &mut SplitMix64| keys[(s.next_u64() % keys.len() as u64) as usize].clone();
            let (a, b) = (pick(&mut s), pick(&mut s));
            let mut writes = SplitMix64::new(u64::from(round));
            let got = Graph::find_path_stepped(
                || {
                    {
                        let mut w = lock.write().unwrap();
                        let (x, y) = (pick(&mut writes), pick(&mut writes));
                        match writes.next_u64() % 3 {
                            0 => drop(w.remove_user(&x)),
                            1 => drop(w.set_tie(&x, &y, one(Kind::Mention))),
                            _ => w.upsert_user(10_000 + round, &format!("new{round}-{x}"), None, None),
                        }
                    }
                    lock.read().unwrap()
                },
                &a,
                &b,
                round % 2 == 0,
                3,
            );
            let g = lock.read().unwrap();
            match got {
                Ok(p) => {
                    assert_eq!((p.path.first(), p.path.last()), (Some(&a), Some(&b)));
                    let nodes: Vec<NodeIndex> = p.path.iter().filter_map(|k| g.index_of(k)).collect();
                    assert_eq!(nodes.len(), p.path.len(), "every user of the path is in the graph");
                    assert!(g.path_holds(&nodes, round % 2 == 0), "{:?} holds", p.path);
                    outcomes[0] += 1;
                }
                Err(GraphError::NoPath { .. }) => outcomes[1] += 1,
                Err(GraphError::UserNotFound(_)) => outcomes[2] += 1,
                Err(e) => panic!("{a} -> {b}: {e:?}"),
            }
        }
        assert!(outcomes[0] > 50 && outcomes[1] > 0, "paths and misses: {outcomes:?}");
    }

    #[test]
    fn path_to_self_is_zero_hops_and_unknown_users_are_errors() {
        let mut g = Graph::new();
        g.upsert_user(0, "a", Some("alice"), None);
        g.upsert_user(1, "b", None, None);
        g.set_tie("a", "b", one(Kind::Reply));
        assert_eq!(g.find_path("a", "a", false).unwrap().hops, 0);
        assert_eq!(g.find_path("@ALICE", "b", true).unwrap().path, vec!["a", "b"]);
        assert!(matches!(g.find_path("b", "a", true), Err(GraphError::NoPath { .. })));
        assert_eq!(g.find_path("b", "a", false).unwrap().hops, 1);
        assert_eq!(g.find_path("a", "zed", false), Err(GraphError::UserNotFound("zed".into())));
    }

    #[test]
    fn a_search_stops_within_its_budget_and_says_so() {
        // Two long chains that never meet: a miss walks both whole.
        let mut g = Graph::new();
        for n in 0..20_000u32 {
            g.upsert_user(n, &format!("u{n}"), None, None);
        }
        for n in 0..9_999u32 {
            g.set_tie(&format!("u{n}"), &format!("u{}", n + 1), one(Kind::Reply));
            g.set_tie(&format!("u{}", 10_000 + n), &format!("u{}", 10_001 + n), one(Kind::Reply));
        }
        let pick = |g: &Graph, a: &str, b: &str, budget| {
            let (s, t) = (g.index_of(a).unwrap(), g.index_of(b).unwrap());
            g.shortest_path_indices(s, t, false, budget)
        };
        assert!(matches!(pick(&g, "u0", "u9999", u64::MAX), Search::Found(p, _) if p.len() == 10_000));
        assert!(matches!(pick(&g, "u0", "u10000", u64::MAX), Search::NoPath(_)));
        // A chain is thousands of levels of one entry: each level counts, so a miss along two
        // chains costs its levels, not the few entries it reads.
        match pick(&g, "u0", "u10000", 50_000) {
            Search::OverBudget(walked) => assert!(walked <= 50_000 && walked > 45_000, "{walked}"),
            _ => panic!("a miss over 20,000 levels fits no budget of 50,000"),
        }
        match pick(&g, "u0", "u3", 5_000) {
            Search::Found(p, walked) => assert!(p.len() == 4 && walked < 5_000, "{walked}"),
            _ => panic!("near users are found within the budget"),
        }
        // Neighbours are found without a search.
        assert!(matches!(pick(&g, "u7", "u8", 0), Search::Found(p, _) if p.len() == 2));
    }
}
