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
        let (nodes, walked) = match self.shortest_path_indices(s, t, directed, budget) {
            Search::Found(nodes, walked) => (nodes, walked),
            Search::NoPath(walked) => {
                return (Err(GraphError::NoPath { from: from.to_string(), to: to.to_string() }), walked)
            }
            Search::OverBudget(walked) => return (Err(GraphError::TooExpensive { walked }), walked),
        };
        (
            Ok(PathView {
                from: from.to_string(),
                to: to.to_string(),
                directed,
                hops: nodes.len() - 1,
                path: nodes.iter().map(|&i| self.key_at(i).to_string()).collect(),
                users: nodes.iter().map(|&i| self.view_at(i)).collect(),
                steps: nodes
                    .windows(2)
                    .map(|w| {
                        let counts = |a, b| {
                            let mut c = KindCounts::default();
                            if let Some(e) = self.find_edge(a, b) {
                                c.add_tie(&self.tie_at(e));
                            }
                            c
                        };
                        Hop { forward: counts(w[0], w[1]), backward: counts(w[1], w[0]) }
                    })
                    .collect(),
            }),
            walked,
        )
    }

    fn shortest_path_indices(&self, s: NodeIndex, t: NodeIndex, directed: bool, budget: u64) -> Search {
        if s == t {
            return Search::Found(vec![s], 0);
        }
        // Neighbours first, in O(1) for two busy users (their edge is indexed): a search from two
        // hubs would otherwise walk the smaller one's whole adjacency to meet at once.
        if self.find_edge(s, t).is_some() || (!directed && self.find_edge(t, s).is_some()) {
            return Search::Found(vec![s, t], 1);
        }
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            bidirectional_bfs(self, &mut scratch, s, t, directed, budget)
        })
    }
}

fn bidirectional_bfs(
    graph: &Graph,
    sc: &mut Scratch,
    s: NodeIndex,
    t: NodeIndex,
    directed: bool,
    budget: u64,
) -> Search {
    let bound = graph.node_bound();
    if sc.marks.len() < bound {
        sc.marks.resize(bound, Mark::default());
    }
    sc.stamp = sc.stamp.wrapping_add(1);
    if sc.stamp == 0 {
        // Wrapped after 4 billion searches: clear the marks once.
        sc.marks.iter_mut().for_each(|m| *m = Mark::default());
        sc.stamp = 1;
    }
    let stamp = sc.stamp;
    sc.marks[s.index()].fwd = Side { stamp, parent: ROOT };
    sc.marks[t.index()].bwd = Side { stamp, parent: ROOT };
    // The adjacency entries growing user `i` from one side walks.
    let walk = |i: NodeIndex, forward: bool| -> u32 {
        let (out, inc) = graph.degrees_at(i);
        match (directed, forward) {
            (false, _) => out + inc,
            (true, true) => out,
            (true, false) => inc,
        }
    };
    let mut front_f = Front::default();
    let mut front_b = Front::default();
    front_f.push(walk(s, true), s);
    front_b.push(walk(t, false), t);
    let mut next = Front::default();
    let mut heavy: Vec<(u32, NodeIndex)> = Vec::new();
    let mut walked = 0u64;

    while !front_f.users.is_empty() && !front_b.users.is_empty() {
        // Grow the side with fewer adjacency entries to walk.
        let forward = front_f.cost <= front_b.cost;
        let front = if forward { &mut front_f } else { &mut front_b };
        // A level's cost is known before it is grown: stop before, not after, the budget. A level
        // costs its entries and a fixed part (a search along a chain of users grows thousands of
        // levels of one entry each, and must not escape the budget that way).
        let cost = front.cost.saturating_add(LEVEL_COST);
        walked = walked.saturating_add(cost);
        if walked > budget {
            return Search::OverBudget(walked - cost);
        }
        let dirs: &[Direction] = match (directed, forward) {
            (false, _) => &[Direction::Outgoing, Direction::Incoming],
            (true, true) => &[Direction::Outgoing],
            (true, false) => &[Direction::Incoming],
        };
        next.clear();
        // Every meeting found while growing this level closes a path of the same length, so grow
        // the cheap users first and the hubs last, cheapest first: the meeting is usually found
        // before a hub's neighbours are walked, which is what the slowest searches spend their time
        // on. Only the few hubs are sorted.
        heavy.clear();
        heavy.extend(front.users.iter().copied().filter(|&(w, _)| w > LIGHT));
        heavy.sort_unstable_by_key(|&(w, _)| w);
        let light = front.users.iter().copied().filter(|&(w, _)| w <= LIGHT);
        let mut meet = None;
        'level: for (_, u) in light.chain(heavy.iter().copied()) {
            for &dir in dirs {
                let marks = &mut sc.marks;
                let grown = graph.neighbors_while(u, dir, |v| {
                    let (mine, theirs) = marks[v.index()].side(forward);
                    if mine.stamp == stamp {
                        return true;
                    }
                    *mine = Side { stamp, parent: u.index() as u32 };
                    if theirs.stamp == stamp {
                        // Both searches grow whole levels, alternating, so the first meeting found
                        // while growing a level closes a shortest path.
                        meet = Some(v);
                        return false;
                    }
                    next.push(walk(v, forward), v);
                    true
                });
                if !grown {
                    break 'level;
                }
            }
        }
        if let Some(v) = meet {
            return Search::Found(stitch(sc, v, stamp), walked);
        }
        std::mem::swap(front, &mut next);
    }
    Search::NoPath(walked)
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
            let keys: Vec<String> = g
                .users_page(crate::graph::UserOrder::Key, None, usize::MAX)
                .items
                .into_iter()
                .map(|u| u.id)
                .collect();
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
