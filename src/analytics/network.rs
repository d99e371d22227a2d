//! The selected network as compact immutable arrays (CSR): users numbered densely `0..n` in store-uid
//! order, each user's out- and in-edges contiguous and sorted by neighbour, weights as counts.
//!
//! Built from an [`Extract`] after the graph's read lock is released. 16 bytes per edge (target and
//! weight, both ways) plus 16 per user.

use crate::graph::Extract;
use rayon::prelude::*;

/// Sorts a source's packed `target << 32 | weight` records, merges repeated targets (summing their
/// weights), drops those lighter than `min_weight`, and leaves the kept ones at the front; returns
/// how many.
fn merge(list: &mut [u64], min_weight: u32) -> u32 {
    list.sort_unstable();
    let mut kept = 0;
    let mut i = 0;
    while i < list.len() {
        let target = list[i] >> 32;
        let mut w = 0u32;
        while i < list.len() && list[i] >> 32 == target {
            w = w.saturating_add(list[i] as u32);
            i += 1;
        }
        if w >= min_weight {
            list[kept] = (target << 32) | u64::from(w);
            kept += 1;
        }
    }
    kept as u32
}

/// A selected network, ready for the algorithms.
pub struct Network {
    /// Store uid of each user (dense id -> uid), ascending.
    pub uids: Vec<u32>,
    out_off: Vec<u32>,
    out_dst: Vec<u32>,
    out_w: Vec<u32>,
    in_off: Vec<u32>,
    in_src: Vec<u32>,
    in_w: Vec<u32>,
    /// Sum of the weights: the selected interactions.
    pub interactions: u64,
    /// The graph version the copy was taken at.
    pub version: u64,
    /// When the copy was taken, and how long taking and building it took.
    pub(crate) taken: std::time::Instant,
    pub(crate) cost: std::time::Duration,
    /// The undirected view, built once on first use (cores, communities, betweenness, ego networks
    /// and undirected paths all read it).
    undirected: std::sync::OnceLock<Undirected>,
}

impl Network {
    /// Builds the network: aggregates a window's interactions into weighted edges, drops edges
    /// lighter than `min_weight`, numbers the remaining users densely, and lays out both adjacencies.
    ///
    /// One scatter by source (each record packed as `target << 32 | weight`), a sort of each
    /// source's list on the current rayon pool (merging a window's repeated pairs), then one scatter
    /// by target walking sources in order, so that every list comes out sorted.
    pub fn build(extract: Extract, min_weight: u32) -> Network {
        let Extract { mut edges, uid_of, version } = extract;
        if let Some(uid_of) = uid_of {
            for e in &mut edges {
                e[0] = uid_of[e[0] as usize];
                e[1] = uid_of[e[1] as usize];
            }
        }
        let min_weight = min_weight.max(1);
        let max_uid = edges.iter().map(|e| e[0].max(e[1])).max().map_or(0, |m| m as usize + 1);
        // 1. Bucket by source uid.
        let mut off = vec![0u32; max_uid + 1];
        for e in &edges {
            off[e[0] as usize + 1] += 1;
        }
        for i in 0..max_uid {
            off[i + 1] += off[i];
        }
        let mut packed = vec![0u64; edges.len()];
        {
            let mut at = off.clone();
            for e in &edges {
                let p = &mut at[e[0] as usize];
                packed[*p as usize] = (u64::from(e[1]) << 32) | u64::from(e[2]);
                *p += 1;
            }
        }
        drop(edges);
        // 2. Each source's list: sorted by target, repeats merged, light edges dropped; `kept[s]`
        // records stay at the front of its slice.
        let mut lists: Vec<&mut [u64]> = Vec::with_capacity(max_uid);
        let mut rest = &mut packed[..];
        for s in 0..max_uid {
            let (list, tail) = rest.split_at_mut((off[s + 1] - off[s]) as usize);
            lists.push(list);
            rest = tail;
        }
        let kept: Vec<u32> = lists.into_par_iter().map(|list| merge(list, min_weight)).collect();
        // 3. Dense ids, in uid order, for users with a kept edge either way.
        let mut id = vec![u32::MAX; max_uid];
        for s in 0..max_uid {
            if kept[s] > 0 {
                id[s] = 0;
                for &r in &packed[off[s] as usize..(off[s] + kept[s]) as usize] {
                    id[(r >> 32) as usize] = 0;
                }
            }
        }
        let mut uids = Vec::new();
        for (u, slot) in id.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = uids.len() as u32;
                uids.push(u as u32);
            }
        }
        // 4. Out-adjacency in dense ids (targets keep their order: ids are monotone in uids).
        let n = uids.len();
        let m: usize = kept.iter().map(|&k| k as usize).sum();
        let mut out_off = Vec::with_capacity(n + 1);
        out_off.push(0u32);
        let (mut out_dst, mut out_w) = (Vec::with_capacity(m), Vec::with_capacity(m));
        for &u in &uids {
            let start = off[u as usize] as usize;
            for &r in &packed[start..start + kept[u as usize] as usize] {
                out_dst.push(id[(r >> 32) as usize]);
                out_w.push(r as u32);
            }
            out_off.push(out_dst.len() as u32);
        }
        drop((packed, off, kept, id));
        let interactions = out_w.iter().map(|&x| u64::from(x)).sum();
        // 5. In-adjacency by walking sources in order: each in-list comes out sorted by source.
        let mut in_off = vec![0u32; n + 1];
        for &v in &out_dst {
            in_off[v as usize + 1] += 1;
        }
        for i in 0..n {
            in_off[i + 1] += in_off[i];
        }
        // One 8-byte write per edge at a random place (source and weight packed), then split.
        let mut packed = vec![0u64; m];
        let mut at = in_off.clone();
        for u in 0..n {
            for p in out_off[u] as usize..out_off[u + 1] as usize {
                let slot = &mut at[out_dst[p] as usize];
                packed[*slot as usize] = ((u as u64) << 32) | u64::from(out_w[p]);
                *slot += 1;
            }
        }
        drop(at);
        let in_src: Vec<u32> = packed.iter().map(|&r| (r >> 32) as u32).collect();
        let in_w: Vec<u32> = packed.iter().map(|&r| r as u32).collect();
        drop(packed);
        Network {
            uids,
            out_off,
            out_dst,
            out_w,
            in_off,
            in_src,
            in_w,
            interactions,
            version,
            taken: std::time::Instant::now(),
            cost: std::time::Duration::ZERO,
            undirected: std::sync::OnceLock::new(),
        }
    }

    pub fn users(&self) -> usize {
        self.uids.len()
    }

    pub fn edges(&self) -> usize {
        self.out_dst.len()
    }

    /// Out-neighbours of `u` and the weights of those edges.
    pub fn out(&self, u: usize) -> (&[u32], &[u32]) {
        let r = self.out_off[u] as usize..self.out_off[u + 1] as usize;
        (&self.out_dst[r.clone()], &self.out_w[r])
    }

    /// In-neighbours of `v` and the weights of those edges.
    pub(crate) fn inc(&self, v: usize) -> (&[u32], &[u32]) {
        let r = self.in_off[v] as usize..self.in_off[v + 1] as usize;
        (&self.in_src[r.clone()], &self.in_w[r])
    }

    /// The dense id of a store uid, if that user is in the network.
    pub fn id_of(&self, uid: u32) -> Option<usize> {
        self.uids.binary_search(&uid).ok()
    }

    /// Bytes held by the arrays.
    pub fn bytes(&self) -> usize {
        4 * (self.uids.len()
            + self.out_off.len()
            + self.out_dst.len()
            + self.out_w.len()
            + self.in_off.len()
            + self.in_src.len()
            + self.in_w.len())
    }

    /// The undirected simple view: u and v are neighbours if either acted on the other, with weight
    /// w(u->v) + w(v->u). Each edge appears in both lists. Built on first use, then shared.
    pub fn undirected(&self) -> &Undirected {
        self.undirected.get_or_init(|| self.build_undirected())
    }

    fn build_undirected(&self) -> Undirected {
        let n = self.users();
        let mut off = vec![0u32; n + 1];
        let mut adj = Vec::with_capacity(2 * self.edges());
        let mut w = Vec::with_capacity(2 * self.edges());
        for u in 0..n {
            let (od, ow) = self.out(u);
            let (id, iw) = self.inc(u);
            let (mut i, mut j) = (0, 0);
            while i < od.len() || j < id.len() {
                let a = od.get(i).copied().unwrap_or(u32::MAX);
                let b = id.get(j).copied().unwrap_or(u32::MAX);
                if a == b {
                    adj.push(a);
                    w.push(u64::from(ow[i]) + u64::from(iw[j]));
                    i += 1;
                    j += 1;
                } else if a < b {
                    adj.push(a);
                    w.push(u64::from(ow[i]));
                    i += 1;
                } else {
                    adj.push(b);
                    w.push(u64::from(iw[j]));
                    j += 1;
                }
            }
            off[u + 1] = adj.len() as u32;
        }
        Undirected { off, adj, w }
    }
}

/// An undirected simple graph in CSR form (every edge in both lists, sorted), weighted.
pub struct Undirected {
    off: Vec<u32>,
    adj: Vec<u32>,
    w: Vec<u64>,
}

impl Undirected {
    pub fn users(&self) -> usize {
        self.off.len() - 1
    }

    pub(crate) fn neighbors(&self, u: usize) -> &[u32] {
        &self.adj[self.off[u] as usize..self.off[u + 1] as usize]
    }

    pub fn weights(&self, u: usize) -> &[u64] {
        &self.w[self.off[u] as usize..self.off[u + 1] as usize]
    }

    pub fn degree(&self, u: usize) -> usize {
        (self.off[u + 1] - self.off[u]) as usize
    }

    /// Sum of the weights of `u`'s edges.
    pub(crate) fn strength(&self, u: usize) -> u64 {
        self.weights(u).iter().sum()
    }

    /// Twice the number of edges (each appears in both lists).
    pub fn adjacency_len(&self) -> usize {
        self.adj.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A network from (from uid, to uid, weight) triples, as an extract would give.
    pub(crate) fn net(edges: &[(u32, u32, u32)], min_weight: u32) -> Network {
        let edges = edges.iter().map(|&(a, b, w)| [a, b, w]).collect();
        Network::build(Extract { edges, uid_of: None, version: 0 }, min_weight)
    }

    #[test]
    fn build_aggregates_filters_and_sorts_both_ways() {
        // Interactions one by one (a window): 5->9 three times, 9->5 once, 5->2 once, 7->9 once.
        let n = net(&[(5, 9, 1), (9, 5, 1), (5, 2, 1), (5, 9, 1), (7, 9, 1), (5, 9, 1)], 1);
        assert_eq!(n.uids, [2, 5, 7, 9]);
        assert_eq!(n.out(1), (&[0, 3][..], &[1, 3][..]), "5 -> 2 once, 5 -> 9 three times");
        assert_eq!(n.inc(3), (&[1, 2][..], &[3, 1][..]));
        assert_eq!((n.edges(), n.interactions), (4, 6));
        let heavy = net(&[(5, 9, 1), (9, 5, 1), (5, 9, 1)], 2);
        assert_eq!(
            (heavy.uids.clone(), heavy.edges()),
            (vec![5, 9], 1),
            "min_weight drops 9->5 and its user stays only as a target"
        );
        let u = n.undirected();
        assert_eq!(u.neighbors(1), [0, 3]);
        assert_eq!(u.weights(1), [1, 4], "w(5,9) = 3 + 1");
        assert_eq!(u.strength(3), 5);
        let empty = net(&[], 1);
        assert_eq!((empty.users(), empty.edges()), (0, 0));
    }
}
