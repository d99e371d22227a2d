//! Communities by modularity: Louvain (Blondel et al. 2008) and Leiden (Traag, Waltman and van Eck,
//! "From Louvain to Leiden: guaranteeing well-connected communities", 2019), on the undirected
//! network weighted by w(u->v) + w(v->u), with a resolution parameter. Deterministic for a seed: the
//! only randomness is the order nodes are visited in.
//!
//! Local moving goes in passes over the nodes, chunk by chunk: a chunk's nodes choose their moves in
//! parallel, then the moves are made in order, each checked against those made before it, so that
//! every move gains what it would one node at a time and the result does not depend on the number
//! of threads.
//!
//! Leiden here: local moving that revisits only the nodes whose neighbours moved, then a refinement that merges singletons inside
//! each community into well-connected sub-communities (greedily, by the best modularity gain), then
//! aggregation by the refined partition with the unrefined one as the starting point. As a last step
//! any community that is not connected is split into its components, which never lowers
//! modularity, so every community reported is connected.

use super::network::{pieces, zeroed, Undirected};
use super::structure::Partition;
use crate::rng::SplitMix64;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

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
    fn neighbors(&self, u: usize) -> &[u32] {
        &self.adj[self.off[u]..self.off[u + 1]]
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

/// Each node's place in its group (groups as [`grouped`] gives them).
fn places(start: &[usize], members: &[u32]) -> Vec<u32> {
    let mut place = vec![0u32; members.len()];
    for group in start.windows(2) {
        for (i, &u) in members[group[0]..group[1]].iter().enumerate() {
            place[u as usize] = i as u32;
        }
    }
    place
}

/// Groups (given where each starts, as [`grouped`] gives them) in runs of about equal numbers of
/// members, a few runs a thread of the current pool: where each run starts, in groups.
fn runs(start: &[usize]) -> Vec<usize> {
    let (groups, total) = (start.len() - 1, start[start.len() - 1]);
    let runs = 8 * rayon::current_num_threads();
    (0..=runs).map(|i| start.partition_point(|&o| o < total * i / runs).min(groups)).collect()
}

/// `0..n` in runs of [`RUN`] consecutive nodes, the runs in shuffled order: the order local moving
/// and the refinement visit the nodes in. Random enough that passes do not sweep the graph one way,
/// yet each run reads its nodes' labels, strengths and lists in order: with every node shuffled, a
/// third of choosing a move went to cache misses on them.
fn run_shuffled(n: usize, rng: &mut SplitMix64) -> Vec<u32> {
    let runs = shuffled(n.div_ceil(RUN), rng);
    runs.iter().flat_map(|&r| r as usize * RUN..((r as usize + 1) * RUN).min(n)).map(|u| u as u32).collect()
}

const RUN: usize = 64;

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

/// How many nodes choose their moves together, against the state as their chunk found it: a small
/// share of the level's nodes (so that few have a neighbour in their own chunk, and must choose
/// again), at most 2,048. It depends on the level's size alone, so the partition does not depend on
/// the number of threads.
fn chunk(n: usize) -> usize {
    (n / 256).clamp(1, 2048)
}

/// A node's chosen move, against the state at its chunk's start: the community it joins ([`ALONE`]:
/// a new one of its own), its weights to the rest of its own community and to that one, and
/// whether any of its neighbours is in the same chunk.
#[derive(Clone, Copy)]
struct Choice {
    u: u32,
    to: u32,
    to_own: f64,
    to_target: f64,
    peers: bool,
}

const ALONE: u32 = u32::MAX;

/// Moving nodes between communities: the state the gains are computed from.
struct Mover<'a> {
    g: &'a Level,
    comm: Vec<u32>,
    tot: Vec<f64>,
    size: Vec<u32>,
    empty: Vec<u32>,
    /// The nodes of the chunk being moved, as bits.
    in_chunk: Vec<u64>,
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
        Mover { g, comm, tot, size, empty, in_chunk: vec![0; n.div_ceil(64)], gamma_over_2m: gamma / two_m }
    }

    /// The community with the best modularity gain for `u` (possibly a new one), or `None` to stay.
    /// `links` is scratch space.
    fn choose(&self, u: usize, links: &mut Vec<(u32, f64)>) -> Option<Choice> {
        let cu = self.comm[u];
        let ku = self.g.k[u];
        let mut peers = false;
        let gain = |c: u32, w: f64| {
            let tot = self.tot[c as usize] - if c == cu { ku } else { 0.0 };
            w - self.gamma_over_2m * ku * tot
        };
        let (mut to_own, mut best) = (0.0, (cu, 0.0, f64::NEG_INFINITY));
        links.clear();
        for (v, x) in self.g.edges(u) {
            if v != u {
                peers |= self.in_chunk[v >> 6] >> (v & 63) & 1 != 0;
                links.push((self.comm[v], x));
            }
        }
        links.sort_unstable_by_key(|l| l.0);
        for run in links.chunk_by(|a, b| a.0 == b.0) {
            let (c, w) = (run[0].0, run.iter().map(|l| l.1).sum::<f64>());
            if c == cu {
                to_own = w;
                continue;
            }
            let g = gain(c, w);
            if g > best.2 {
                best = (c, w, g);
            }
        }
        let stay = gain(cu, to_own);
        let (to, to_target) = if best.2 > stay + 1e-12 * ku.max(1.0) && best.2 >= -1e-12 {
            (best.0, best.1)
        } else if stay.max(best.2) < -1e-12 && self.size[cu as usize] > 1 {
            // Alone is worth 0: better when staying and every neighbour cost more than they bring.
            (ALONE, 0.0)
        } else {
            return None;
        };
        Some(Choice { u: u as u32, to, to_own, to_target, peers })
    }

    /// Makes a move chosen against the state at its chunk's start, given the moves made since. Its
    /// weights to its own and its chosen community stay exact while no neighbour has moved, that
    /// is when none is in the chunk: then the move is checked against the totals as they are now.
    /// Otherwise, or when the move no longer gains, the node chooses again. Every move made thus
    /// gains exactly what it would one node at a time, so local moving ends. Returns whether `u`
    /// moved.
    fn apply(&mut self, c: Choice, links: &mut Vec<(u32, f64)>) -> bool {
        let u = c.u as usize;
        let cu = self.comm[u] as usize;
        let ku = self.g.k[u];
        let stay = c.to_own - self.gamma_over_2m * ku * (self.tot[cu] - ku);
        let still = !c.peers
            && match c.to {
                ALONE => stay < -1e-12 && self.size[cu] > 1,
                to => {
                    let gain = c.to_target - self.gamma_over_2m * ku * self.tot[to as usize];
                    gain > stay + 1e-12 * ku.max(1.0) && gain >= -1e-12
                }
            };
        let to = if still {
            c.to
        } else {
            match self.choose(u, links) {
                Some(again) => again.to,
                None => return false,
            }
        };
        let to = match to {
            ALONE => match self.empty.pop() {
                Some(e) => e as usize,
                None => return false,
            },
            to => to as usize,
        };
        self.tot[cu] -= ku;
        self.size[cu] -= 1;
        self.tot[to] += ku;
        self.size[to] += 1;
        if self.size[cu] == 0 {
            self.empty.push(cu as u32);
        }
        self.comm[u] = to as u32;
        true
    }
}

/// Local moving, in passes over the nodes in a shuffled order. Louvain's passes visit every node,
/// until a pass moves nobody; Leiden's visit only the nodes whose neighbours moved away from them
/// since their last visit (its "fast local moving"), until there are none. Returns whether anybody
/// moved.
///
/// A pass goes chunk by chunk ([`chunk`]): each node of a chunk chooses its move in parallel,
/// against the state at the chunk's start, then the moves are made one by one in the chunk's order
/// (see [`Mover::apply`]).
fn local_moves(m: &mut Mover, method: Method, rng: &mut SplitMix64) -> bool {
    let n = m.g.n();
    let order = run_shuffled(n, rng);
    let due: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(true)).collect();
    let mut any = false;
    let (mut links, mut due_now) = (Vec::new(), Vec::new());
    // Every move gains, so passes dwindle; the bound caps a long tail of tiny gains.
    for _ in 0..100 {
        let pass: &[u32] = match method {
            Method::Louvain => &order,
            Method::Leiden => {
                due_now.clear();
                due_now.extend(order.iter().copied().filter(|&u| due[u as usize].load(Relaxed)));
                &due_now
            }
        };
        let mut moved_in_pass = 0usize;
        for chunk in pass.chunks(chunk(n)) {
            for &u in chunk {
                m.in_chunk[u as usize >> 6] |= 1 << (u & 63);
            }
            let choose = |links: &mut Vec<(u32, f64)>, &u: &u32| {
                due[u as usize].store(false, Relaxed);
                m.choose(u as usize, links)
            };
            let chosen: Vec<Choice> = if chunk.len() < 256 {
                let mut links = Vec::new();
                chunk.iter().filter_map(|u| choose(&mut links, u)).collect()
            } else {
                chunk.par_iter().with_min_len(64).map_init(Vec::new, choose).flatten_iter().collect()
            };
            let moved: Vec<u32> =
                chosen.into_iter().filter(|&c| m.apply(c, &mut links)).map(|c| c.u).collect();
            for &u in chunk {
                m.in_chunk[u as usize >> 6] = 0;
            }
            moved_in_pass += moved.len();
            if method == Method::Leiden {
                // A node that moved makes its neighbours outside its new community due again.
                let m = &*m;
                moved.par_iter().with_min_len(16).for_each(|&u| {
                    let cu = m.comm[u as usize];
                    for &v in m.g.neighbors(u as usize) {
                        if m.comm[v as usize] != cu {
                            due[v as usize].store(true, Relaxed);
                        }
                    }
                });
            }
        }
        any |= moved_in_pass > 0;
        if moved_in_pass == 0 {
            break;
        }
    }
    any
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
    // Members by community, each in the order of shuffled runs; `local[u]`: u's place among its
    // community's.
    let (start, members) = grouped(comm, parts, run_shuffled(n, rng).into_iter());
    let local = places(&start, &members);
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

/// Splits every community that is not connected into its connected parts, on the graph of `n`
/// nodes given by `neighbors`: the part holding a community's first node keeps its label, the others
/// get new ones. Communities are walked apart, runs of them in parallel.
fn split_disconnected<'g>(n: usize, neighbors: impl Fn(usize) -> &'g [u32] + Sync, labels: &mut [u32]) {
    let parts = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let (start, members) = grouped(labels, parts, 0..n as u32);
    let local = places(&start, &members);
    let bounds = runs(&start);
    // Per run, each member's part within its community (0: the part of the community's first).
    let found: Vec<Vec<u32>> = (0..bounds.len() - 1)
        .into_par_iter()
        .map(|run| {
            let (first, last) = (bounds[run], bounds[run + 1].max(bounds[run]));
            let lo = start[first];
            let mut part = vec![u32::MAX; start[last] - lo];
            let mut stack = Vec::new();
            for c in first..last {
                let mut next = 0;
                for i in start[c]..start[c + 1] {
                    if part[i - lo] != u32::MAX {
                        continue;
                    }
                    part[i - lo] = next;
                    stack.push(members[i]);
                    while let Some(u) = stack.pop() {
                        for &v in neighbors(u as usize) {
                            if labels[v as usize] as usize != c {
                                continue;
                            }
                            let j = start[c] + local[v as usize] as usize - lo;
                            if part[j] == u32::MAX {
                                part[j] = next;
                                stack.push(v);
                            }
                        }
                    }
                    next += 1;
                }
            }
            part
        })
        .collect();
    let mut next = parts as u32;
    for (run, part) in found.iter().enumerate() {
        let lo = start[bounds[run]];
        for c in bounds[run]..bounds[run + 1].max(bounds[run]) {
            let here = &part[start[c] - lo..start[c + 1] - lo];
            for (&u, &p) in members[start[c]..start[c + 1]].iter().zip(here) {
                if p > 0 {
                    labels[u as usize] = next + p - 1;
                }
            }
            next += here.iter().copied().max().unwrap_or(0);
        }
    }
}

/// Modularity of a partition of the undirected graph, as `networkx.community.modularity` computes
/// it: the sum over communities of L_c/m - γ (d_c / 2m)². Each user's weights are summed in
/// parallel, then added up by community in the users' order.
pub fn modularity(g: &Undirected, labels: &[u32], gamma: f64) -> f64 {
    let n = g.users();
    let parts = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    // Per user: its strength, and its weight to its own community.
    let sums: Vec<(f64, f64)> = (0..n)
        .into_par_iter()
        .with_min_len(1 << 12)
        .map(|u| {
            let (mut all, mut inner) = (0.0, 0.0);
            for (&v, &w) in g.neighbors(u).iter().zip(g.weights(u)) {
                all += w as f64;
                if labels[v as usize] == labels[u] {
                    inner += w as f64;
                }
            }
            (all, inner)
        })
        .collect();
    let mut inner = vec![0.0f64; parts];
    let mut deg = vec![0.0f64; parts];
    let mut two_m = 0.0;
    for (u, &(all, within)) in sums.iter().enumerate() {
        let c = labels[u] as usize;
        two_m += all;
        deg[c] += all;
        inner[c] += within;
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
            if !local_moves(&mut mover, method, &mut rng) && method == Method::Louvain {
                comm = mover.comm;
                break;
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
        // Every node of a Leiden level is a connected set of users (refinement merges only along
        // edges, and so did the levels below), so a community is connected if its nodes are,
        // on the last level: checked there, on far fewer nodes. Louvain's on the users.
        if method == Method::Leiden {
            split_disconnected(level.n(), |u| level.neighbors(u), &mut comm);
        }
        for (l, &a) in labels.iter_mut().zip(&assign) {
            *l = comm[a as usize];
        }
        if method == Method::Louvain {
            split_disconnected(n, |u| g.neighbors(u), &mut labels);
        }
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

    /// Local moving, refinement and aggregation split their work by the pool's threads: the
    /// partition found is the same, to the bit, whatever their number. The network is large enough
    /// for local moving's chunks to be chosen in parallel (see [`chunk`]).
    #[test]
    fn the_partition_does_not_depend_on_the_number_of_threads() {
        let mut rng = SplitMix64::new(11);
        // 1,000 planted groups of 80 users, mostly tied inside, some ties across.
        let users = 80_000;
        assert!(chunk(users) >= 256, "chunks chosen in parallel");
        let edges: Vec<(u32, u32, u32)> = (0..400_000)
            .map(|i| {
                let a = rng.below(users as u64) as u32;
                let b = if i % 5 == 0 {
                    rng.below(users as u64) as u32
                } else {
                    a / 80 * 80 + rng.below(80) as u32
                };
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
                found[0].partition.sizes.len() >= 100,
                "{method:?}: {} communities",
                found[0].partition.sizes.len()
            );
            for f in &found[1..] {
                assert_eq!(f.partition, found[0].partition, "{method:?}");
                assert_eq!(f.modularity.to_bits(), found[0].modularity.to_bits(), "{method:?}");
            }
            // Leiden checks connectivity on its last level only: every community is connected
            // on the users' graph too.
            let mut again = found[0].partition.of.clone();
            split_disconnected(g.users(), |u| g.neighbors(u), &mut again);
            assert_eq!(Partition::from_labels(&again), found[0].partition, "{method:?}: connected");
        }
    }

    #[test]
    fn communities_that_are_not_connected_are_split_into_their_parts() {
        // Label 0 holds two separate pairs and a lone user, label 1 a connected pair.
        let n = net(&[(0, 1, 1), (2, 3, 1), (4, 5, 1), (1, 6, 1), (3, 7, 1)], 1);
        let g = n.undirected();
        let at = |user: u32| n.id_of(user).unwrap();
        let mut labels = vec![0u32; g.users()];
        for user in [4, 5] {
            labels[at(user)] = 1;
        }
        labels[at(6)] = 2;
        labels[at(7)] = 2;
        split_disconnected(g.users(), |u| g.neighbors(u), &mut labels);
        let of = |user: u32| labels[at(user)];
        assert_eq!(of(0), of(1), "a connected part stays together");
        assert_eq!(of(2), of(3));
        assert_ne!(of(0), of(2), "parts that do not touch are apart");
        assert_eq!(of(4), of(5));
        assert_eq!(of(4), 1, "a connected community keeps its label");
        assert_ne!(of(6), of(7), "6 and 7 are joined only through other communities");
        let mut distinct = labels.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
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
