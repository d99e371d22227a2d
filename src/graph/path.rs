//! Shortest paths between two users: a bidirectional breadth-first search over the live graph.
//!
//! A plain BFS from one end visits most of a million-user graph on a miss; searching from both ends
//! and always growing the side whose frontier has fewer edges to walk meets in the middle after
//! touching roughly the square root as many users. Edge direction is followed when asked; by default a
//! path may use an edge either way ("how are these two accounts connected").

use super::graph::{Graph, GraphError, UserView};
use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;
use serde::Serialize;
use std::cell::RefCell;

/// A shortest path, as keys from `from` to `to` inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathView {
    pub from: String,
    pub to: String,
    pub directed: bool,
    pub hops: usize,
    pub path: Vec<String>,
    /// The same users with their handles and degrees, for display.
    pub users: Vec<UserView>,
}

/// Per-thread scratch space, reused across searches so that a query allocates nothing proportional
/// to the graph: marks are stamped with a search number instead of being cleared.
#[derive(Default)]
struct Scratch {
    stamp: u32,
    /// Per node: the search stamp when reached from the front, and the parent.
    fwd: Vec<(u32, u32)>,
    bwd: Vec<(u32, u32)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

const ROOT: u32 = u32::MAX;

impl Graph {
    /// A shortest path between two users named by key or handle.
    ///
    /// Cost: in the worst case (no path, both ends in large components) O(users + edges) of the
    /// smaller side's component; typically far less.
    ///
    /// # Errors
    /// `UserNotFound` / `AmbiguousHandle` for either end, `NoPath` if they are not connected.
    pub fn find_path(&self, from: &str, to: &str, directed: bool) -> Result<PathView, GraphError> {
        let (from, to) = self.resolve_pair(from, to)?;
        let (s, t) = (self.index_of(from).expect("resolved"), self.index_of(to).expect("resolved"));
        let nodes = self
            .shortest_path_indices(s, t, directed)
            .ok_or_else(|| GraphError::NoPath { from: from.to_string(), to: to.to_string() })?;
        Ok(PathView {
            from: from.to_string(),
            to: to.to_string(),
            directed,
            hops: nodes.len() - 1,
            path: nodes.iter().map(|&i| self.key_at(i).to_string()).collect(),
            users: nodes.iter().map(|&i| self.view_at(i)).collect(),
        })
    }

    /// Number of hops of a shortest path, or `None`. Same search as [`Graph::find_path`].
    pub fn distance(&self, from: &str, to: &str, directed: bool) -> Option<usize> {
        let (s, t) = (self.index_of(from)?, self.index_of(to)?);
        self.shortest_path_indices(s, t, directed).map(|p| p.len() - 1)
    }

    fn shortest_path_indices(&self, s: NodeIndex, t: NodeIndex, directed: bool) -> Option<Vec<NodeIndex>> {
        if s == t {
            return Some(vec![s]);
        }
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            bidirectional_bfs(self, &mut scratch, s, t, directed)
        })
    }
}

fn bidirectional_bfs(
    graph: &Graph,
    sc: &mut Scratch,
    s: NodeIndex,
    t: NodeIndex,
    directed: bool,
) -> Option<Vec<NodeIndex>> {
    let bound = graph.node_bound();
    if sc.fwd.len() < bound {
        sc.fwd.resize(bound, (0, 0));
        sc.bwd.resize(bound, (0, 0));
    }
    sc.stamp = sc.stamp.wrapping_add(1);
    if sc.stamp == 0 {
        // Wrapped after 4 billion searches: clear the marks once.
        sc.fwd.iter_mut().chain(sc.bwd.iter_mut()).for_each(|m| *m = (0, 0));
        sc.stamp = 1;
    }
    let stamp = sc.stamp;
    sc.fwd[s.index()] = (stamp, ROOT);
    sc.bwd[t.index()] = (stamp, ROOT);
    let mut front_f = vec![s];
    let mut front_b = vec![t];
    let mut next = Vec::new();

    // Cost of expanding a frontier: the number of adjacency entries it will walk.
    let cost = |front: &[NodeIndex], forward: bool| -> u64 {
        front
            .iter()
            .map(|&i| {
                let (out, inc) = graph.degrees_at(i);
                u64::from(match (directed, forward) {
                    (false, _) => out + inc,
                    (true, true) => out,
                    (true, false) => inc,
                })
            })
            .sum()
    };

    while !front_f.is_empty() && !front_b.is_empty() {
        let forward = cost(&front_f, true) <= cost(&front_b, false);
        let (front, mine, theirs) =
            if forward { (&mut front_f, &mut sc.fwd, &sc.bwd) } else { (&mut front_b, &mut sc.bwd, &sc.fwd) };
        let dirs: &[Direction] = match (directed, forward) {
            (false, _) => &[Direction::Outgoing, Direction::Incoming],
            (true, true) => &[Direction::Outgoing],
            (true, false) => &[Direction::Incoming],
        };
        next.clear();
        // Every meeting found while growing this level closes a path of the same length, so grow
        // the cheapest users first: the meeting is usually found before a hub's neighbours are
        // walked, which is what the slowest searches spend their time on.
        let walk = |i: &NodeIndex| {
            let (out, inc) = graph.degrees_at(*i);
            match (directed, forward) {
                (false, _) => out + inc,
                (true, true) => out,
                (true, false) => inc,
            }
        };
        front.sort_unstable_by_key(walk);
        let mut meet = None;
        'level: for &u in front.iter() {
            for &dir in dirs {
                for v in graph.g.neighbors_directed(u, dir) {
                    let m = &mut mine[v.index()];
                    if m.0 == stamp {
                        continue;
                    }
                    *m = (stamp, u.index() as u32);
                    if theirs[v.index()].0 == stamp {
                        // Both searches grow whole levels, alternating, so the first meeting found
                        // while growing a level closes a shortest path.
                        meet = Some(v);
                        break 'level;
                    }
                    next.push(v);
                }
            }
        }
        if let Some(v) = meet {
            return Some(stitch(sc, v, stamp));
        }
        std::mem::swap(front, &mut next);
    }
    None
}

/// Joins the two half-paths at the meeting node `v`.
fn stitch(sc: &Scratch, v: NodeIndex, stamp: u32) -> Vec<NodeIndex> {
    let walk = |marks: &[(u32, u32)]| {
        let mut out = Vec::new();
        let mut cur = marks[v.index()].1;
        while cur != ROOT {
            debug_assert_eq!(marks[cur as usize].0, stamp);
            out.push(NodeIndex::new(cur as usize));
            cur = marks[cur as usize].1;
        }
        out
    };
    let mut path = walk(&sc.fwd);
    path.reverse();
    path.push(v);
    path.extend(walk(&sc.bwd));
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Kind, Tie};
    use crate::rng::SplitMix64;
    use petgraph::algo::dijkstra;

    fn one(kind: Kind) -> Tie {
        let mut t = Tie::default();
        t.add(kind, 1_000);
        t
    }

    fn random_graph(users: u32, edges: u32, seed: u64) -> Graph {
        let mut g = Graph::new();
        let mut s = SplitMix64::new(seed);
        for n in 0..users {
            g.upsert_user(n, &format!("u{n}"), None, None);
        }
        for _ in 0..edges {
            let a = (s.next_u64() % u64::from(users)) as u32;
            // Skewed targets, so that some users are hubs and some pairs are unreachable.
            let b = ((s.next_u64() % u64::from(users)) * (s.next_u64() % 100) / 100) as u32;
            if a != b {
                g.set_tie(&format!("u{a}"), &format!("u{b}"), one(Kind::Mention));
            }
        }
        // Remove some users so that the stable indices have holes, as after API deletions.
        for n in (0..users).step_by(17) {
            g.remove_user(&format!("u{n}"));
        }
        g
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
        for (seed, users, edges) in
            [(1u64, 200u32, 300u32), (2, 1_000, 1_500), (3, 3_000, 9_000), (4, 500, 5_000)]
        {
            let g = random_graph(users, edges, seed);
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
}
