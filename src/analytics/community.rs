//! Communities by modularity: Louvain (Blondel et al. 2008) and Leiden (Traag, Waltman and van Eck,
//! "From Louvain to Leiden: guaranteeing well-connected communities", 2019), on the undirected
//! network weighted by w(u->v) + w(v->u), with a resolution parameter. Deterministic for a seed: the
//! only randomness is the order nodes are visited in.
//!
//! Leiden here: a queue-driven local moving phase, then a refinement that merges singletons inside
//! each community into well-connected sub-communities (greedily, by the best modularity gain), then
//! aggregation by the refined partition with the unrefined one as the starting point. As a last step
//! any community that is not connected is split into its components, which never lowers
//! modularity, so every community reported is connected.

use super::network::{pieces, zeroed, Undirected};
use super::structure::Partition;
use crate::rng::SplitMix64;
use rayon::prelude::*;
use std::collections::VecDeque;

/// How communities are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Method {
    Leiden,
    Louvain,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "leiden" => Some(Method::Leiden),
            "louvain" => Some(Method::Louvain),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Leiden => "leiden",
            Method::Louvain => "louvain",
        }
    }
}

/// The communities found and the modularity of that partition on the input graph.
pub struct Communities {
    pub partition: Partition,
    pub modularity: f64,
}

/// One level of the hierarchy: nodes are communities of the level below.
struct Level {
    off: Vec<usize>,
    adj: Vec<u32>,
    w: Vec<f64>,
    /// Strength of each node: the sum of its members' strengths in the input graph.
    k: Vec<f64>,
}

impl Level {
    fn n(&self) -> usize {
        self.k.len()
    }
    fn edges(&self, u: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.off[u]..self.off[u + 1];
        self.adj[r.clone()].iter().map(|&v| v as usize).zip(self.w[r].iter().copied())
    }

    /// The input graph as the first level: its lists copied on the pool, weights as floats.
    fn of(g: &Undirected) -> Level {
        let n = g.users();
        let mut off = Vec::with_capacity(n + 1);
        off.push(0);
        for u in 0..n {
            off.push(off[u] + g.degree(u));
        }
        let (mut adj, mut w) = (zeroed::<u32>(off[n]), zeroed::<f64>(off[n]));
        pieces(&mut adj, &mut w, (0..n).map(|u| g.degree(u)))
            .into_par_iter()
            .with_min_len(1 << 12)
            .enumerate()
            .for_each(|(u, (adj, w))| {
                adj.copy_from_slice(g.neighbors(u));
                for (x, &y) in w.iter_mut().zip(g.weights(u)) {
                    *x = y as f64;
                }
            });
        let k = (0..n).into_par_iter().with_min_len(1 << 12).map(|u| g.strength(u) as f64).collect();
        Level { off, adj, w, k }
    }

    /// The graph of the parts of `labels` (numbered `0..parts`): edges between parts summed, edges
    /// inside a part dropped (gains never need them; modularity is computed on the input graph).
    fn aggregate(&self, labels: &[u32], parts: usize) -> Level {
        let (members_off, members) = grouped(labels, parts, 0..labels.len() as u32);
        // The parts in runs, each run summed on its own (in the same order as one pass would: the
        // sums are the same), then laid end to end.
        let bounds = runs(&members_off);
        let done: Vec<Level> = (0..bounds.len() - 1)
            .into_par_iter()
            .map_init(
                || (vec![0.0f64; parts], Vec::<u32>::new()),
                |(acc, touched), run| {
                    let mut part = Level { off: vec![0], adj: Vec::new(), w: Vec::new(), k: Vec::new() };
                    for c in bounds[run]..bounds[run + 1].max(bounds[run]) {
                        let mut kc = 0.0;
                        for &u in &members[members_off[c]..members_off[c + 1]] {
                            kc += self.k[u as usize];
                            for (v, x) in self.edges(u as usize) {
                                let d = labels[v] as usize;
                                if d == c {
                                    continue;
                                }
                                if acc[d] == 0.0 {
                                    touched.push(d as u32);
                                }
                                acc[d] += x;
                            }
                        }
                        touched.sort_unstable();
                        for &d in touched.iter() {
                            part.adj.push(d);
                            part.w.push(acc[d as usize]);
                            acc[d as usize] = 0.0;
                        }
                        touched.clear();
                        part.off.push(part.adj.len());
                        part.k.push(kc);
                    }
                    part
                },
            )
            .collect();
        let mut off = Vec::with_capacity(parts + 1);
        off.push(0);
        let (mut adj, mut w, mut k) = (Vec::new(), Vec::new(), Vec::with_capacity(parts));
        for part in done {
            let base = adj.len();
            off.extend(part.off[1..].iter().map(|o| base + o));
            adj.extend(part.adj);
            w.extend(part.w);
            k.extend(part.k);
        }
        Level { off, adj, w, k }
    }
}

/// The nodes grouped by label (`0..parts`), each group in the order `order` gives them: where each
/// group starts (one more than there are groups), and the groups end to end.
fn grouped(labels: &[u32], parts: usize, order: impl Iterator<Item = u32>) -> (Vec<usize>, Vec<u32>) {
    let mut start = vec![0usize; parts + 1];
    for &l in labels {
        start[l as usize + 1] += 1;
    }
    for i in 0..parts {
        start[i + 1] += start[i];
    }
    let mut at = start.clone();
    let mut members = vec![0u32; labels.len()];
    for u in order {
        let l = labels[u as usize] as usize;
        members[at[l]] = u;
        at[l] += 1;
    }
    (start, members)
}

/// Groups (given where each starts, as [`grouped`] gives them) in runs of about equal numbers of
/// members, a few runs a thread of the current pool: where each run starts, in groups.
fn runs(start: &[usize]) -> Vec<usize> {
    let (groups, total) = (start.len() - 1, start[start.len() - 1]);
    let runs = 8 * rayon::current_num_threads();
    (0..=runs).map(|i| start.partition_point(|&o| o < total * i / runs).min(groups)).collect()
}

fn shuffled(n: usize, rng: &mut SplitMix64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// Renumbers labels densely (in order of first appearance); returns how many there are.
fn compact(labels: &mut [u32]) -> usize {
    let bound = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut map = vec![u32::MAX; bound];
    let mut next = 0u32;
    for l in labels.iter_mut() {
        if map[*l as usize] == u32::MAX {
            map[*l as usize] = next;
            next += 1;
        }
        *l = map[*l as usize];
    }
    next as usize
}

/// Moving nodes between communities: the state the gains are computed from.
struct Mover<'a> {
    g: &'a Level,
    comm: Vec<u32>,
    tot: Vec<f64>,
    size: Vec<u32>,
    empty: Vec<u32>,
    acc: Vec<f64>,
    touched: Vec<u32>,
    gamma_over_2m: f64,
}

impl<'a> Mover<'a> {
    fn new(g: &'a Level, comm: Vec<u32>, gamma: f64, two_m: f64) -> Mover<'a> {
        let n = g.n();
        let mut tot = vec![0.0; n];
        let mut size = vec![0u32; n];
        for u in 0..n {
            tot[comm[u] as usize] += g.k[u];
            size[comm[u] as usize] += 1;
        }
        let empty = (0..n as u32).rev().filter(|&c| size[c as usize] == 0).collect();
        Mover {
            g,
            comm,
            tot,
            size,
            empty,
            acc: vec![0.0; n],
            touched: Vec::new(),
            gamma_over_2m: gamma / two_m,
        }
    }

    /// Moves `u` to the community with the best modularity gain (possibly a new one); returns
    /// whether it moved.
    fn best_move(&mut self, u: usize) -> bool {
        let cu = self.comm[u] as usize;
        let ku = self.g.k[u];
        for (v, x) in self.g.edges(u) {
            if v == u {
                continue;
            }
            let c = self.comm[v] as usize;
            if self.acc[c] == 0.0 {
                self.touched.push(c as u32);
            }
            self.acc[c] += x;
        }
        self.tot[cu] -= ku;
        self.size[cu] -= 1;
        let gain = |c: usize, acc: f64, tot: &[f64]| acc - self.gamma_over_2m * ku * tot[c];
        let mut best = cu;
        let mut best_gain = gain(cu, self.acc[cu], &self.tot);
        for &c in &self.touched {
            let c = c as usize;
            let g = gain(c, self.acc[c], &self.tot);
            if g > best_gain + 1e-12 * ku.max(1.0) {
                best = c;
                best_gain = g;
            }
        }
        // Alone is worth 0: better when staying costs more than it brings.
        if best_gain < -1e-12 {
            if self.size[cu] == 0 {
                best = cu;
            } else if let Some(e) = self.empty.pop() {
                best = e as usize;
            }
        }
        for &c in &self.touched {
            self.acc[c as usize] = 0.0;
        }
        self.touched.clear();
        self.tot[best] += ku;
        self.size[best] += 1;
        if self.size[cu] == 0 && best != cu {
            self.empty.push(cu as u32);
        }
        self.comm[u] = best as u32;
        best != cu
    }
}

/// Louvain's local moving: sweeps in a random order until a sweep moves nobody.
fn sweep_moves(m: &mut Mover, rng: &mut SplitMix64) -> bool {
    let order = shuffled(m.g.n(), rng);
    let mut any = false;
    for _ in 0..64 {
        let mut moved = 0usize;
        for &u in &order {
            moved += usize::from(m.best_move(u as usize));
        }
        any |= moved > 0;
        if moved == 0 {
            break;
        }
    }
    any
}

/// Leiden's fast local moving: a queue of nodes to visit, refilled with the neighbours of a node
/// that moves (those not already in its new community).
fn queue_moves(m: &mut Mover, rng: &mut SplitMix64) {
    let n = m.g.n();
    let mut queue: VecDeque<u32> = shuffled(n, rng).into();
    let mut queued = vec![true; n];
    while let Some(u) = queue.pop_front() {
        let u = u as usize;
        queued[u] = false;
        if m.best_move(u) {
            let cu = m.comm[u];
            for (v, _) in m.g.edges(u) {
                if !queued[v] && m.comm[v] != cu {
                    queued[v] = true;
                    queue.push_back(v as u32);
                }
            }
        }
    }
}

/// Leiden's refinement: inside each community, singletons that are well connected to it join the
/// well-connected sub-community with the best non-negative gain. Returns the refined labels.
///
/// Communities do not touch each other here, so each is refined apart, runs of them in parallel,
/// its members in the order one shuffled pass over every user would take them: the labels are those
/// of that one pass.
fn refine(g: &Level, comm: &[u32], gamma: f64, two_m: f64, rng: &mut SplitMix64) -> Vec<u32> {
    let n = g.n();
    let g2m = gamma / two_m;
    let parts = comm.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut comm_tot = vec![0.0; parts];
    for u in 0..n {
        comm_tot[comm[u] as usize] += g.k[u];
    }
    // Weight from each node to the rest of its community.
    let inside: Vec<f64> = (0..n)
        .into_par_iter()
        .with_min_len(1 << 12)
        .map(|u| g.edges(u).filter(|&(v, _)| v != u && comm[v] == comm[u]).map(|(_, x)| x).sum())
        .collect();
    // Members by community, each in shuffled order; `local[u]`: u's place among its community's.
    let (start, members) = grouped(comm, parts, shuffled(n, rng).into_iter());
    let mut local = vec![0u32; n];
    for c in 0..parts {
        for (i, &u) in members[start[c]..start[c + 1]].iter().enumerate() {
            local[u as usize] = i as u32;
        }
    }
    let bounds = runs(&start);
    // Per run, each member's refined label: the member (a user) whose group it joined.
    let refined: Vec<Vec<u32>> = (0..bounds.len() - 1)
        .into_par_iter()
        .map_init(Vec::<u32>::new, |touched, run| {
            let lo = start[bounds[run]];
            let run_members = &members[lo..start[bounds[run + 1].max(bounds[run])]];
            // Groups are numbered by their first member's place in the run.
            let place = |v: usize| start[comm[v] as usize] - lo + local[v] as usize;
            let len = run_members.len();
            let mut refined: Vec<u32> = (0..len as u32).collect();
            let mut rtot: Vec<f64> = run_members.iter().map(|&u| g.k[u as usize]).collect();
            let mut rext: Vec<f64> = run_members.iter().map(|&u| inside[u as usize]).collect();
            let mut rsize = vec![1u32; len];
            let mut acc = vec![0.0f64; len];
            for (i, &u) in run_members.iter().enumerate() {
                let u = u as usize;
                let own = refined[i] as usize;
                if rsize[own] != 1 {
                    continue;
                }
                let s = comm[u] as usize;
                let ku = g.k[u];
                if inside[u] < g2m * ku * (comm_tot[s] - ku) {
                    continue;
                }
                for (v, x) in g.edges(u) {
                    if v == u || comm[v] as usize != s {
                        continue;
                    }
                    let r = refined[place(v)] as usize;
                    if acc[r] == 0.0 {
                        touched.push(r as u32);
                    }
                    acc[r] += x;
                }
                let mut best = own;
                let mut best_gain = 0.0;
                for &r in touched.iter() {
                    let r = r as usize;
                    if r == own || rext[r] < g2m * rtot[r] * (comm_tot[s] - rtot[r]) {
                        continue;
                    }
                    let gain = acc[r] - g2m * ku * rtot[r];
                    if gain > best_gain {
                        best = r;
                        best_gain = gain;
                    }
                }
                if best != own {
                    rtot[best] += ku;
                    rtot[own] = 0.0;
                    rext[best] += inside[u] - 2.0 * acc[best];
                    rsize[best] += 1;
                    rsize[own] = 0;
                    refined[i] = best as u32;
                }
                for &r in touched.iter() {
                    acc[r as usize] = 0.0;
                }
                touched.clear();
            }
            refined.iter().map(|&r| run_members[r as usize]).collect()
        })
        .collect();
    let mut labels = vec![0u32; n];
    for (run, refined) in refined.iter().enumerate() {
        let lo = start[bounds[run]];
        for (i, &l) in refined.iter().enumerate() {
            labels[members[lo + i] as usize] = l;
        }
    }
    labels
}

/// Splits every community that is not connected into its connected parts.
fn split_disconnected(g: &Undirected, labels: &mut [u32]) {
    let n = g.users();
    let mut seen = vec![false; n];
    let mut next = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut first_part_of = vec![false; next as usize];
    let mut stack = Vec::new();
    for start in 0..n {
        if seen[start] {
            continue;
        }
        let c = labels[start];
        let label = if first_part_of[c as usize] {
            next += 1;
            next - 1
        } else {
            first_part_of[c as usize] = true;
            c
        };
        seen[start] = true;
        stack.push(start as u32);
        while let Some(u) = stack.pop() {
            labels[u as usize] = label;
            for &v in g.neighbors(u as usize) {
                if !seen[v as usize] && labels[v as usize] == c {
                    seen[v as usize] = true;
                    stack.push(v);
                }
            }
        }
    }
}

/// Modularity of a partition of the undirected graph, as `networkx.community.modularity` computes
/// it: the sum over communities of L_c/m - γ (d_c / 2m)².
pub fn modularity(g: &Undirected, labels: &[u32], gamma: f64) -> f64 {
    let n = g.users();
    let parts = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut inner = vec![0.0f64; parts];
    let mut deg = vec![0.0f64; parts];
    let mut two_m = 0.0;
    for u in 0..n {
        let c = labels[u] as usize;
        for (&v, &w) in g.neighbors(u).iter().zip(g.weights(u)) {
            let w = w as f64;
            two_m += w;
            deg[c] += w;
            if labels[v as usize] as usize == c {
                inner[c] += w;
            }
        }
    }
    if two_m == 0.0 {
        return 0.0;
    }
    let m = two_m / 2.0;
    (0..parts).map(|c| inner[c] / 2.0 / m - gamma * (deg[c] / two_m).powi(2)).sum()
}

/// Finds communities. `labels` of the result follow the input graph's users.
pub fn communities(g: &Undirected, method: Method, gamma: f64, seed: u64) -> Communities {
    let n = g.users();
    let mut rng = SplitMix64::new(seed);
    let mut level = Level::of(g);
    let two_m: f64 = level.k.iter().sum();
    // assign[u] = the level node that input user u is part of.
    let mut assign: Vec<u32> = (0..n as u32).collect();
    let mut labels: Vec<u32> = (0..n as u32).collect();
    if two_m > 0.0 {
        let mut comm: Vec<u32> = (0..n as u32).collect();
        for _ in 0..100 {
            let mut mover = Mover::new(&level, comm, gamma, two_m);
            match method {
                Method::Louvain => {
                    if !sweep_moves(&mut mover, &mut rng) {
                        comm = mover.comm;
                        break;
                    }
                }
                Method::Leiden => queue_moves(&mut mover, &mut rng),
            }
            let mut moved = mover.comm;
            let parts = compact(&mut moved);
            if parts == level.n() {
                comm = moved;
                break;
            }
            // Louvain aggregates by the communities; Leiden by their refinement, starting the
            // next level from the communities.
            let mut by = match method {
                Method::Louvain => moved.clone(),
                Method::Leiden => refine(&level, &moved, gamma, two_m, &mut rng),
            };
            let groups = compact(&mut by);
            if groups == level.n() {
                // The refinement merged nobody: aggregating would change nothing.
                comm = moved;
                break;
            }
            let mut next_comm = vec![0u32; groups];
            for u in 0..level.n() {
                next_comm[by[u] as usize] = moved[u];
            }
            for a in assign.iter_mut() {
                *a = by[*a as usize];
            }
            level = level.aggregate(&by, groups);
            comm = match method {
                Method::Louvain => (0..groups as u32).collect(),
                Method::Leiden => next_comm,
            };
        }
        for (l, &a) in labels.iter_mut().zip(&assign) {
            *l = comm[a as usize];
        }
        split_disconnected(g, &mut labels);
    }
    let partition = Partition::from_labels(&labels);
    let modularity = modularity(g, &partition.of, gamma);
    Communities { partition, modularity }
}

#[cfg(test)]
mod tests {
    use super::super::network::tests::net;
    use super::*;

    /// Two dense cliques of 6 joined by one light edge, and a separate pair.
    fn two_cliques() -> Vec<(u32, u32, u32)> {
        let mut e = Vec::new();
        for base in [0u32, 6] {
            for a in 0..6 {
                for b in 0..6 {
                    if a < b {
                        e.push((base + a, base + b, 2));
                    }
                }
            }
        }
        e.push((5, 6, 1));
        e.push((20, 21, 1));
        e
    }

    #[test]
    fn both_methods_find_planted_cliques_and_report_their_modularity() {
        let n = net(&two_cliques(), 1);
        let g = n.undirected();
        for method in [Method::Leiden, Method::Louvain] {
            let c = communities(g, method, 1.0, 7);
            assert_eq!(c.partition.sizes, [6, 6, 2], "{method:?}");
            assert!((0..6).all(|u| c.partition.of[u] == c.partition.of[0]));
            assert!((c.modularity - modularity(g, &c.partition.of, 1.0)).abs() < 1e-12);
            assert!(c.modularity > 0.4, "{method:?}: {}", c.modularity);
            let again = communities(g, method, 1.0, 7);
            assert_eq!(again.partition, c.partition, "deterministic for a seed");
        }
    }

    /// Refinement and aggregation split their work in runs by the pool's threads: the partition
    /// found is the same, to the bit, whatever their number.
    #[test]
    fn the_partition_does_not_depend_on_the_number_of_threads() {
        let mut rng = SplitMix64::new(11);
        // 60 planted groups of 80 users, mostly tied inside, some ties across.
        let edges: Vec<(u32, u32, u32)> = (0..40_000)
            .map(|i| {
                let a = rng.below(4_800) as u32;
                let b = if i % 5 == 0 { rng.below(4_800) as u32 } else { a / 80 * 80 + rng.below(80) as u32 };
                (a, b, 1 + rng.below(3) as u32)
            })
            .filter(|&(a, b, _)| a != b)
            .collect();
        let n = net(&edges, 1);
        let g = n.undirected();
        for method in [Method::Leiden, Method::Louvain] {
            let found: Vec<Communities> = [1, 2, 5]
                .iter()
                .map(|&threads| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    pool.install(|| communities(g, method, 1.0, 3))
                })
                .collect();
            assert!(
                found[0].partition.sizes.len() >= 40,
                "{method:?}: {} communities",
                found[0].partition.sizes.len()
            );
            for f in &found[1..] {
                assert_eq!(f.partition, found[0].partition, "{method:?}");
                assert_eq!(f.modularity.to_bits(), found[0].modularity.to_bits(), "{method:?}");
            }
        }
    }

    #[test]
    fn modularity_of_a_single_community_is_zero_and_of_nothing_too() {
        let n = net(&[(0, 1, 1), (1, 2, 1)], 1);
        let g = n.undirected();
        assert!(modularity(g, &[0, 0, 0], 1.0).abs() < 1e-12);
        let empty = net(&[], 1);
        assert_eq!(communities(empty.undirected(), Method::Leiden, 1.0, 1).partition.count(), 0);
    }
}
