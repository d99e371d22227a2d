//! Structure of the selected network: core numbers (k-cores) and weak and strong components.

use super::network::{Network, Undirected};

/// Core number of every user on the undirected simple graph: the largest k such that the user
/// belongs to a subgraph where everyone has at least k neighbours.
///
/// Peeled level by level on the current rayon pool (Kabir and Madduri's PKC, "Parallel k-Core
/// Decomposition on Multicore Platforms", 2017): at level k, the users left whose degree is k are
/// removed, each decrementing its neighbours' degrees; a neighbour that drops to k is removed in
/// the same level. A user's degree, once it reaches its level, is its core number. O(m) work plus
/// one pass over the users left per level; Batagelj and Zaversnik's sequential bucket algorithm
/// does the same work with a random access more per edge, and on one core only.
pub fn core_numbers(g: &Undirected) -> Vec<u32> {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    let n = g.users();
    let deg: Vec<AtomicU32> = (0..n).into_par_iter().map(|u| AtomicU32::new(g.degree(u) as u32)).collect();
    let mut left: Vec<u32> = (0..n as u32).collect();
    while !left.is_empty() {
        let level = left.par_iter().map(|&v| deg[v as usize].load(Relaxed)).min().unwrap_or(0);
        let mut peel: Vec<u32> =
            left.par_iter().copied().filter(|&v| deg[v as usize].load(Relaxed) == level).collect();
        while !peel.is_empty() {
            peel = peel
                .par_iter()
                .with_min_len(64)
                .fold(Vec::new, |mut next, &v| {
                    for &u in g.neighbors(v as usize) {
                        let d = &deg[u as usize];
                        if d.load(Relaxed) > level {
                            // Two removals may race for the last step above the level: the one
                            // that took it to the level removes the user; one that went below
                            // gives its step back.
                            let was = d.fetch_sub(1, Relaxed);
                            if was == level + 1 {
                                next.push(u);
                            } else if was <= level {
                                d.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    next
                })
                .reduce(Vec::new, |mut a, mut b| {
                    a.append(&mut b);
                    a
                });
        }
        left = left.par_iter().copied().filter(|&v| deg[v as usize].load(Relaxed) > level).collect();
    }
    deg.into_iter().map(AtomicU32::into_inner).collect()
}

/// A partition of the users: `of[u]` is u's part, parts numbered by decreasing size (ties: by
/// their smallest member), `sizes[p]` the size of part p.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub of: Vec<u32>,
    pub sizes: Vec<u32>,
}

impl Partition {
    /// Renumbers arbitrary labels into the canonical order.
    pub(crate) fn from_labels(labels: &[u32]) -> Partition {
        let n = labels.len();
        let bound = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut size = vec![0u32; bound];
        let mut first = vec![u32::MAX; bound];
        for (u, &l) in labels.iter().enumerate() {
            size[l as usize] += 1;
            first[l as usize] = first[l as usize].min(u as u32);
        }
        let mut order: Vec<u32> = (0..bound as u32).filter(|&l| size[l as usize] > 0).collect();
        order.sort_unstable_by_key(|&l| (std::cmp::Reverse(size[l as usize]), first[l as usize]));
        let mut rank = vec![0u32; bound];
        for (r, &l) in order.iter().enumerate() {
            rank[l as usize] = r as u32;
        }
        let of: Vec<u32> = (0..n).map(|u| rank[labels[u] as usize]).collect();
        let sizes = order.iter().map(|&l| size[l as usize]).collect();
        Partition { of, sizes }
    }

    pub fn count(&self) -> usize {
        self.sizes.len()
    }
}

/// Weakly connected components: union-find over the edges with path halving and union by size.
pub fn weak_components(net: &Network) -> Partition {
    let n = net.users();
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let mut size = vec![1u32; n];
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let p = parent[x as usize];
            parent[x as usize] = parent[p as usize];
            x = parent[x as usize];
        }
        x
    }
    for u in 0..n {
        for &v in net.out(u).0 {
            let (a, b) = (find(&mut parent, u as u32), find(&mut parent, v));
            if a != b {
                let (big, small) = if size[a as usize] >= size[b as usize] { (a, b) } else { (b, a) };
                parent[small as usize] = big;
                size[big as usize] += size[small as usize];
            }
        }
    }
    let labels: Vec<u32> = (0..n as u32).map(|u| find(&mut parent, u)).collect();
    Partition::from_labels(&labels)
}

/// Strongly connected components: Tarjan's algorithm with an explicit stack (no recursion, so a
/// long chain of reposts cannot overflow the thread's stack).
pub fn strong_components(net: &Network) -> Partition {
    let n = net.users();
    const NONE: u32 = u32::MAX;
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut label = vec![NONE; n];
    let mut next_index = 0u32;
    let mut next_label = 0u32;
    // Call frames: (node, position in its out-list).
    let mut frames: Vec<(u32, u32)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        frames.push((root as u32, 0));
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root as u32);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut at)) = frames.last_mut() {
            let (out, _) = net.out(v as usize);
            if let Some(&w) = out.get(*at as usize) {
                *at += 1;
                let wu = w as usize;
                if index[wu] == NONE {
                    index[wu] = next_index;
                    low[wu] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[wu] = true;
                    frames.push((w, 0));
                } else if on_stack[wu] {
                    low[v as usize] = low[v as usize].min(index[wu]);
                }
                continue;
            }
            frames.pop();
            let vu = v as usize;
            if let Some(&(parent, _)) = frames.last() {
                low[parent as usize] = low[parent as usize].min(low[vu]);
            }
            if low[vu] == index[vu] {
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    label[w as usize] = next_label;
                    if w == v {
                        break;
                    }
                }
                next_label += 1;
            }
        }
    }
    Partition::from_labels(&label)
}

#[cfg(test)]
mod tests {
    use super::super::network::tests::net;
    use super::*;

    #[test]
    fn cores_of_a_triangle_with_a_tail() {
        // Triangle 0-1-2 (k = 2) with a tail 2-3 (k = 1) and a lone pair 4-5 (k = 1).
        let n = net(&[(0, 1, 1), (1, 2, 1), (2, 0, 1), (3, 2, 1), (4, 5, 1), (5, 4, 3)], 1);
        assert_eq!(core_numbers(n.undirected()), [2, 2, 2, 1, 1, 1]);
    }

    #[test]
    fn cores_peeled_in_parallel_equal_the_sequential_bucket_algorithm() {
        // Batagelj and Zaversnik's bucket algorithm ("An O(m) Algorithm for Cores Decomposition
        // of Networks", 2003), sequential: users in order of degree, each lowering its
        // better-connected neighbours' degrees by one.
        fn bucket(g: &Undirected) -> Vec<u32> {
            let n = g.users();
            let mut deg: Vec<usize> = (0..n).map(|u| g.degree(u)).collect();
            let max = deg.iter().copied().max().unwrap_or(0);
            let mut bin = vec![0usize; max + 2];
            for &d in &deg {
                bin[d + 1] += 1;
            }
            for d in 0..=max {
                bin[d + 1] += bin[d];
            }
            let (mut pos, mut vert, mut next) = (vec![0; n], vec![0; n], bin.clone());
            for u in 0..n {
                (pos[u], vert[next[deg[u]]]) = (next[deg[u]], u);
                next[deg[u]] += 1;
            }
            for i in 0..n {
                let v = vert[i];
                for &u in g.neighbors(v) {
                    let u = u as usize;
                    if deg[u] > deg[v] {
                        let (du, pu) = (deg[u], pos[u]);
                        let (pw, w) = (bin[du], vert[bin[du]]);
                        vert.swap(pu, pw);
                        (pos[u], pos[w]) = (pw, pu);
                        bin[du] += 1;
                        deg[u] -= 1;
                    }
                }
            }
            deg.into_iter().map(|d| d as u32).collect()
        }
        // Four threads, big peeling levels: removals race for the same neighbours.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().expect("a pool");
        let mut rng = crate::rng::SplitMix64::new(11);
        for (users, edges) in [(60, 150), (5_000, 40_000), (200_000, 2_000_000)] {
            // Heavy-tailed: low ids draw most edges, so cores reach well above 1.
            let mut pick = || {
                let r = rng.below(users);
                (r * r / users) as u32
            };
            let list: Vec<(u32, u32, u32)> =
                (0..edges).map(|_| (pick(), pick(), 1)).filter(|e| e.0 != e.1).collect();
            let n = net(&list, 1);
            let want = bucket(n.undirected());
            assert!(want.iter().max() > Some(&3), "deep enough cores to race over");
            for _ in 0..3 {
                assert_eq!(pool.install(|| core_numbers(n.undirected())), want, "{users} users");
            }
        }
    }

    #[test]
    fn components_weak_and_strong() {
        // 0 -> 1 -> 2 -> 0 is a cycle; 2 -> 3; 4 -> 5 apart.
        let n = net(&[(0, 1, 1), (1, 2, 1), (2, 0, 1), (2, 3, 1), (4, 5, 1)], 1);
        let weak = weak_components(&n);
        assert_eq!(weak.sizes, [4, 2]);
        assert_eq!(weak.of, [0, 0, 0, 0, 1, 1]);
        let strong = strong_components(&n);
        assert_eq!(strong.sizes, [3, 1, 1, 1]);
        assert_eq!(&strong.of[..3], [0, 0, 0]);
        assert_eq!(strong.count(), 4);
    }
}
