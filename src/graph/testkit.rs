//! Graphs for the graph core's tests: random, with hubs, and with holes in the node indices.

use super::{Graph, Kind, Tie};
use crate::rng::SplitMix64;

/// A tie of `n` interactions of one kind.
pub(crate) fn tie_of(kind: Kind, n: u32) -> Tie {
    let mut t = Tie::default();
    for s in 0..n {
        t.add(kind, 1_000 + i64::from(s));
    }
    t
}

/// `users` users `u0..`, `edges` random mentions with skewed targets (so that some users are hubs
/// and some pairs are unreachable), each of 1 to `max_weight` interactions; then every
/// `remove_every`-th user is removed, as API deletions leave holes in the stable indices.
pub(crate) fn skewed(users: u32, edges: u32, seed: u64, max_weight: u32, remove_every: usize) -> Graph {
    let mut g = Graph::new();
    let mut s = SplitMix64::new(seed);
    for n in 0..users {
        g.upsert_user(n, &format!("u{n}"), None, None);
    }
    for _ in 0..edges {
        let a = (s.next_u64() % u64::from(users)) as u32;
        let b = ((s.next_u64() % u64::from(users)) * (s.next_u64() % 100) / 100) as u32;
        let weight = if max_weight > 1 { 1 + (s.next_u64() % u64::from(max_weight)) as u32 } else { 1 };
        if a != b {
            g.set_tie(&format!("u{a}"), &format!("u{b}"), tie_of(Kind::Mention, weight));
        }
    }
    for n in (0..users).step_by(remove_every) {
        g.remove_user(&format!("u{n}"));
    }
    g
}

/// Three users, `x:1` (handle Alice) and `x:2` (bob) acting on each other, `x:3` mentioning `x:2`.
pub(crate) fn sample() -> Graph {
    let mut g = Graph::new();
    g.upsert_user(0, "x:1", Some("Alice"), Some("Alice A."));
    g.upsert_user(1, "x:2", Some("bob"), None);
    g.upsert_user(2, "x:3", None, None);
    g.set_tie("x:1", "x:2", tie_of(Kind::Repost, 2));
    g.set_tie("x:3", "x:2", tie_of(Kind::Mention, 1));
    g.set_tie("x:2", "x:1", tie_of(Kind::Reply, 1));
    g
}

/// A graph with hubs (skewed targets, weights 1-5) and holes in the indices.
pub(crate) fn hubby(users: u32, edges: u32, seed: u64) -> Graph {
    skewed(users, edges, seed, 5, 13)
}
