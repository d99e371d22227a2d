//! Betweenness (sampled Brandes), the strongest path (Dijkstra on 1/weight) and ego networks.

use super::network::{Network, Undirected};
use crate::rng::SplitMix64;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Betweenness estimated from `samples` sources drawn without replacement (all of them, exact,
/// when `samples >= users`), on the undirected unweighted graph, normalized as NetworkX does:
/// divided by (n-1)(n-2) and scaled by n/k.
///
/// Error: each source's contribution to a user's normalized score lies in [0, n/(n-1)], so by
/// Hoeffding's inequality and a union bound over the n users, every estimate is within
/// `error_bound(n, k, 0.05)` of the exact value with probability at least 95%.
pub fn betweenness(g: &Undirected, samples: usize, seed: u64) -> Vec<f64> {
    let n = g.users();
    if n < 3 {
        return vec![0.0; n];
    }
    let k = samples.clamp(1, n);
    let sources: Vec<u32> = if k >= n {
        (0..n as u32).collect()
    } else {
        let mut rng = SplitMix64::new(seed);
        let mut all: Vec<u32> = (0..n as u32).collect();
        for i in 0..k {
            let j = i + rng.below((n - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(k);
        all
    };
    // Sums in fixed point: integer addition does not depend on the order the threads add in, so
    // the scores are the same whatever the thread count.
    let raw = sources
        .par_iter()
        .fold(
            || (vec![0u64; n], Scratch::new(n)),
            |(mut acc, mut s), &src| {
                s.accumulate(g, src as usize, &mut acc);
                (acc, s)
            },
        )
        .map(|(acc, _)| acc)
        .reduce(
            || vec![0; n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x = x.saturating_add(y));
                a
            },
        );
    let scale = 1.0 / FIXED / ((n - 1) as f64 * (n - 2) as f64) * n as f64 / k as f64;
    raw.into_iter().map(|x| x as f64 * scale).collect()
}

/// The half-width of the 1 - delta confidence interval of [`betweenness`] for every user at once.
pub(crate) fn error_bound(n: usize, samples: usize, delta: f64) -> f64 {
    if samples >= n || n < 3 {
        return 0.0;
    }
    let range = n as f64 / (n as f64 - 1.0);
    range * ((2.0 * n as f64 / delta).ln() / (2.0 * samples as f64)).sqrt()
}

/// The default sample count: exact up to a work budget of about 4·10⁹ edge visits, fewer above.
pub(crate) fn default_samples(g: &Undirected) -> usize {
    let per_source = g.adjacency_len().max(1) + g.users();
    // At least 32 sources (all of them in a smaller network), at most every user.
    (4_000_000_000 / per_source).max(32).min(g.users().max(1))
}

/// Betweenness sums are kept in units of 2^-20: exact to 1e-6 a source, and room for a million
/// sources over a million users.
const FIXED: f64 = (1u64 << 20) as f64;

struct Scratch {
    dist: Vec<i32>,
    sigma: Vec<f64>,
    delta: Vec<f64>,
    order: Vec<u32>,
}

impl Scratch {
    fn new(n: usize) -> Scratch {
        Scratch { dist: vec![-1; n], sigma: vec![0.0; n], delta: vec![0.0; n], order: Vec::with_capacity(n) }
    }

    /// One source of Brandes' algorithm; predecessors are found again on the way back (a neighbour
    /// one level closer) instead of being stored.
    fn accumulate(&mut self, g: &Undirected, s: usize, acc: &mut [u64]) {
        self.order.clear();
        self.dist[s] = 0;
        self.sigma[s] = 1.0;
        self.order.push(s as u32);
        let mut head = 0;
        while head < self.order.len() {
            let v = self.order[head] as usize;
            head += 1;
            let dv = self.dist[v];
            for &w in g.neighbors(v) {
                let w = w as usize;
                if self.dist[w] < 0 {
                    self.dist[w] = dv + 1;
                    self.order.push(w as u32);
                }
                if self.dist[w] == dv + 1 {
                    self.sigma[w] += self.sigma[v];
                }
            }
        }
        for &w in self.order.iter().rev() {
            let w = w as usize;
            let coeff = (1.0 + self.delta[w]) / self.sigma[w];
            let dw = self.dist[w];
            for &v in g.neighbors(w) {
                let v = v as usize;
                if self.dist[v] == dw - 1 {
                    self.delta[v] += self.sigma[v] * coeff;
                }
            }
            if w != s {
                acc[w] = acc[w].saturating_add((self.delta[w] * FIXED).round() as u64);
            }
        }
        for &w in &self.order {
            let w = w as usize;
            self.dist[w] = -1;
            self.sigma[w] = 0.0;
            self.delta[w] = 0.0;
        }
    }
}

/// A cheapest path and its cost.
pub(crate) struct StrongPath {
    pub nodes: Vec<usize>,
    pub cost: f64,
}

#[derive(PartialEq)]
struct Entry(f64, u32);
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then_with(|| other.1.cmp(&self.1))
    }
}

/// The strongest path from `a` to `b`: Dijkstra with cost 1/weight per edge, following edges either
/// way (weight w(u->v) + w(v->u)) unless `directed`.
pub(crate) fn strongest_path(net: &Network, a: usize, b: usize, directed: bool) -> Option<StrongPath> {
    let n = net.users();
    let undirected = (!directed).then(|| net.undirected());
    let mut dist = vec![f64::INFINITY; n];
    let mut prev = vec![u32::MAX; n];
    let mut heap = BinaryHeap::new();
    dist[a] = 0.0;
    heap.push(Entry(0.0, a as u32));
    while let Some(Entry(d, u)) = heap.pop() {
        let u = u as usize;
        if d > dist[u] {
            continue;
        }
        if u == b {
            break;
        }
        let mut relax = |v: usize, w: f64| {
            let nd = d + 1.0 / w;
            if nd < dist[v] {
                dist[v] = nd;
                prev[v] = u as u32;
                heap.push(Entry(nd, v as u32));
            }
        };
        match &undirected {
            Some(g) => {
                g.neighbors(u).iter().zip(g.weights(u)).for_each(|(&v, &w)| relax(v as usize, w as f64))
            }
            None => {
                let (dst, w) = net.out(u);
                dst.iter().zip(w).for_each(|(&v, &w)| relax(v as usize, f64::from(w)));
            }
        }
    }
    if !dist[b].is_finite() {
        return None;
    }
    let mut nodes = vec![b];
    while *nodes.last()? != a {
        nodes.push(prev[*nodes.last()?] as usize);
    }
    nodes.reverse();
    Some(StrongPath { nodes, cost: dist[b] })
}

/// A user's neighbourhood up to `hops` away (either direction), at most `limit` users: level by
/// level, each level's users taken heaviest first (by the weight of their edges to the users
/// already taken). Returns (user, hop) pairs, the centre first.
pub fn ego(g: &Undirected, center: usize, hops: u32, limit: usize) -> Vec<(usize, u32)> {
    let n = g.users();
    let mut taken = vec![false; n];
    let mut chosen = vec![(center, 0u32)];
    taken[center] = true;
    let mut frontier = vec![center];
    let mut score = vec![0.0f64; n];
    for hop in 1..=hops {
        if chosen.len() >= limit {
            break;
        }
        let mut candidates: Vec<usize> = Vec::new();
        for &u in &frontier {
            for (&v, &w) in g.neighbors(u).iter().zip(g.weights(u)) {
                let v = v as usize;
                if taken[v] {
                    continue;
                }
                if score[v] == 0.0 {
                    candidates.push(v);
                }
                score[v] += w as f64;
            }
        }
        candidates.sort_unstable_by(|&x, &y| score[y].total_cmp(&score[x]).then(x.cmp(&y)));
        candidates.truncate(limit - chosen.len());
        for &v in &candidates {
            taken[v] = true;
            chosen.push((v, hop));
        }
        for x in score.iter_mut() {
            *x = 0.0;
        }
        frontier = candidates;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::super::network::tests::net;
    use super::*;

    #[test]
    fn betweenness_of_a_path_is_exact_when_every_source_is_used() {
        // 0 - 1 - 2 - 3: the middle users carry 2 of the 3 pairs' paths each (normalized: 2/3).
        let n = net(&[(0, 1, 1), (1, 2, 1), (2, 3, 1)], 1);
        let b = betweenness(n.undirected(), 100, 1);
        let want = [0.0, 2.0 / 3.0, 2.0 / 3.0, 0.0];
        assert!(b.iter().zip(want).all(|(x, y)| (x - y).abs() < 1e-12), "{b:?}");
        assert_eq!(error_bound(4, 4, 0.05), 0.0);
        assert!(error_bound(1_000_000, 100, 0.05) > 0.1);
    }

    #[test]
    fn strongest_path_prefers_heavy_ties_and_ego_takes_heaviest_first() {
        // 0 -> 3 directly with weight 1 (cost 1), or 0 -> 1 -> 3 with weight 10 each (cost 0.2).
        let n = net(&[(0, 3, 1), (0, 1, 10), (1, 3, 10), (2, 0, 5)], 1);
        let p = strongest_path(&n, 0, 3, true).unwrap();
        assert_eq!(p.nodes, [0, 1, 3]);
        assert!((p.cost - 0.2).abs() < 1e-12);
        assert!(strongest_path(&n, 3, 0, true).is_none(), "nothing leaves 3");
        assert_eq!(strongest_path(&n, 3, 2, false).unwrap().nodes.len(), 4);
        let g = n.undirected();
        assert_eq!(ego(g, 0, 1, 3), [(0, 0), (1, 1), (2, 1)], "heaviest two of 0's neighbours");
        assert_eq!(ego(g, 2, 2, 10).len(), 4);
    }

    #[test]
    fn betweenness_is_the_same_whatever_the_thread_count() {
        let mut rng = crate::rng::SplitMix64::new(5);
        let edges: Vec<(u32, u32, u32)> = (0..3_000)
            .map(|_| (rng.below(400) as u32, rng.below(400) as u32, 1))
            .filter(|e| e.0 != e.1)
            .collect();
        let n = net(&edges, 1);
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| betweenness(n.undirected(), 150, 3))
        };
        let one = on(1);
        assert!(one.iter().any(|&b| b > 0.0));
        for t in [2, 3, 7] {
            assert_eq!(on(t), one, "{t} threads");
        }
    }
}
