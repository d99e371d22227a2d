//! The selected network as compact immutable arrays (CSR): users numbered densely `0..n` in store-uid
//! order, each user's out- and in-edges contiguous and sorted by neighbour, weights as counts.
//!
//! Built from an [`Extract`] after the graph's read lock is released. 13 bytes per edge (target and
//! weight out, source and a byte of weight in: an in-edge heavier than 254 finds its weight in its
//! source's out-list) plus 12 per user.
//!
//! At millions of edges the build is bound by memory, not arithmetic: a write to a random place
//! of a large array costs a cache and a TLB miss, and every 4 KiB of fresh memory a page fault
//! (0.75 ms a MiB on the benchmark's machine, as much as the rest of the work). So the build
//! allocates little beyond its output, touches fresh memory on every core ([`zeroed`]), reuses
//! buffers, sorts by blocks of keys that fit in cache ([`Deal`]), and runs every pass over parts,
//! sources or blocks on the current rayon pool.

use crate::graph::Extract;
use rayon::prelude::*;

/// Merges a source's list, sorted by target, in place: repeated targets become one (their weights
/// summed), those lighter than `min_weight` are dropped, the kept ones stay at the front; returns
/// how many.
fn merge(dst: &mut [u32], w: &mut [u32], min_weight: u32) -> u32 {
    if dst.windows(2).all(|p| p[0] != p[1]) && w.iter().all(|&x| x >= min_weight) {
        return dst.len() as u32;
    }
    let mut kept = 0;
    let mut i = 0;
    while i < dst.len() {
        let target = dst[i];
        let mut sum = 0u32;
        while i < dst.len() && dst[i] == target {
            sum = sum.saturating_add(w[i]);
            i += 1;
        }
        if sum >= min_weight {
            (dst[kept], w[kept]) = (target, sum);
            kept += 1;
        }
    }
    kept as u32
}

/// A zeroed vector whose pages are touched on every core of the current rayon pool: fresh memory
/// costs a page fault per 4 KiB, which threads take in parallel.
pub(crate) fn zeroed<T: Copy + Default + Send + Sync>(len: usize) -> Vec<T> {
    let mut v = vec![T::default(); len];
    v.par_chunks_mut(1 << 16).for_each(|c| c.fill(T::default()));
    v
}

/// `len` `T`s to be overwritten, in `v`'s memory (already touched) where it is large enough: only
/// what lies past its length is written.
pub(crate) fn reuse<T: Copy + Default + Send + Sync>(mut v: Vec<T>, len: usize) -> Vec<T> {
    if v.capacity() < len {
        return zeroed(len);
    }
    v.resize(len, T::default());
    v
}

/// The buffers a snapshot needs while it is built and not after (the copy of the edges, the
/// records dealt by source: 12 bytes an edge each), kept for the next snapshot. Fresh memory costs
/// the kernel's zeroing of every page on first touch: 58% of a whole-network snapshot's time at
/// 1M users / 10M interactions (perf), and these two are about half of what a snapshot touches.
#[derive(Default)]
pub struct Scratch(Vec<Vec<[u32; 3]>>);

impl Scratch {
    /// The largest buffer kept, or an empty one.
    pub(crate) fn take(&mut self) -> Vec<[u32; 3]> {
        let largest = (0..self.0.len()).max_by_key(|&i| self.0[i].capacity());
        largest.map(|i| self.0.swap_remove(i)).unwrap_or_default()
    }

    /// Keeps `v` for later (the two largest at most).
    fn keep(&mut self, v: Vec<[u32; 3]>) {
        self.0.push(v);
        self.0.sort_by_key(|v| std::cmp::Reverse(v.capacity()));
        self.0.truncate(2);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|v| v.capacity() * std::mem::size_of::<[u32; 3]>()).sum()
    }
}

/// Splits `a` and `b` (of equal lengths) into consecutive pieces of the given lengths.
pub(crate) fn pieces<'a, A, B>(
    mut a: &'a mut [A],
    mut b: &'a mut [B],
    lens: impl Iterator<Item = usize>,
) -> Vec<(&'a mut [A], &'a mut [B])> {
    let mut out = Vec::new();
    for len in lens {
        let (x, a_rest) = a.split_at_mut(len);
        let (y, b_rest) = b.split_at_mut(len);
        (a, b) = (a_rest, b_rest);
        out.push((x, y));
    }
    out
}

/// What a [`Deal`] writes a record's third field as: the whole count, or a byte of it
/// ([`HEAVY`] for "look it up").
pub(crate) trait Weight: Copy + Default + Send + Sync {
    fn of(w: u32) -> Self;
}

impl Weight for u32 {
    fn of(w: u32) -> u32 {
        w
    }
}

/// An in-edge's byte of weight that says its weight is in its source's out-list (255 or more).
const HEAVY: u8 = u8::MAX;

impl Weight for u8 {
    fn of(w: u32) -> u8 {
        w.min(u32::from(HEAVY)) as u8
    }
}

/// Blocks of consecutive keys a [`Deal`] sorts through: few enough that the first pass's write
/// heads stay in cache, many enough that a block's part of the output does too.
const BLOCKS: usize = 512;

/// How a [`Deal`] lays out each key's records.
#[derive(Clone, Copy)]
enum Layout<'a> {
    /// In the order given.
    Given,
    /// Sorted by `a` (ties in the order given), then `a` renamed through the map if one is given
    /// (an increasing one, so the order holds).
    Sorted(Option<&'a [u32]>),
}

/// Records `[key, a, b]` grouped by key into two arrays `a` and `b`: `off` holds where each key's
/// records start (the prefix sums of their counts, one more than there are keys).
///
/// Writing each record straight to its place costs a cache and a TLB miss per record at millions
/// of them. Instead the records are dealt twice: into at most [`BLOCKS`] blocks of consecutive
/// keys (as many streams of writes as blocks), then each block into its own stretch of the output,
/// small enough to stay in cache, the blocks in parallel on the current rayon pool.
struct Deal<'a> {
    off: &'a [u32],
    shift: u32,
    blocks: usize,
}

impl<'a> Deal<'a> {
    fn new(off: &'a [u32], max_blocks: usize) -> Deal<'a> {
        let keys = off.len() - 1;
        let mut shift = 0;
        while keys >> shift >= max_blocks {
            shift += 1;
        }
        Deal { off, shift, blocks: keys.div_ceil(1 << shift) }
    }

    fn block(&self, key: u32) -> usize {
        key as usize >> self.shift
    }

    /// Where block `b`'s records start.
    fn start(&self, b: usize) -> usize {
        self.off[(b << self.shift).min(self.off.len() - 1)] as usize
    }

    /// Deals the records of `parts` consecutive parts (`records(p)` gives part `p`'s, in order)
    /// into `buf` (reused), then places them as `layout` says; returns the buffer. Parts are dealt
    /// in parallel, each into its own stretch of every block (counted first), so the order given
    /// is kept.
    fn deal<I: Iterator<Item = [u32; 3]>, W: Weight>(
        &self,
        parts: usize,
        records: impl Fn(usize) -> I + Sync,
        buf: Vec<[u32; 3]>,
        (out_a, out_b): (&mut [u32], &mut [W]),
        layout: Layout,
    ) -> Vec<[u32; 3]> {
        let counts: Vec<Vec<usize>> = (0..parts)
            .into_par_iter()
            .map(|p| {
                let mut c = vec![0usize; self.blocks];
                records(p).for_each(|r| c[self.block(r[0])] += 1);
                c
            })
            .collect();
        let mut dealt = reuse(buf, self.start(self.blocks));
        let mut heads: Vec<Vec<&mut [[u32; 3]]>> =
            (0..parts).map(|_| Vec::with_capacity(self.blocks)).collect();
        let mut rest = &mut dealt[..];
        for b in 0..self.blocks {
            for (p, c) in counts.iter().enumerate() {
                let (x, r) = rest.split_at_mut(c[b]);
                heads[p].push(x);
                rest = r;
            }
        }
        heads.into_par_iter().enumerate().for_each(|(p, mut heads)| {
            for r in records(p) {
                let head = &mut heads[self.block(r[0])];
                let (slot, rest) = std::mem::take(head).split_first_mut().expect("counted");
                *slot = r;
                *head = rest;
            }
        });
        self.place(&dealt, out_a, out_b, layout);
        dealt
    }

    /// Places records already in their blocks, each block in parallel.
    fn place<W: Weight>(&self, dealt: &[[u32; 3]], out_a: &mut [u32], out_b: &mut [W], layout: Layout) {
        let lens = (0..self.blocks).map(|b| self.start(b + 1) - self.start(b));
        let outs = pieces(out_a, out_b, lens);
        let mut ins = Vec::with_capacity(self.blocks);
        let mut rest = dealt;
        for (b, (a, _)) in outs.iter().enumerate() {
            let (d, d_rest) = rest.split_at(a.len());
            rest = d_rest;
            ins.push((b, d));
        }
        // Every `a` is below the number of keys.
        let bits = u32::BITS - ((self.off.len() - 1) as u32).leading_zeros();
        outs.into_par_iter().zip(ins).for_each(|((out_a, out_b), (b, dealt))| {
            let lo = (b << self.shift) as u32;
            let hi = ((b + 1) << self.shift).min(self.off.len() - 1);
            let base = self.start(b) as u32;
            let mut at: Vec<u32> = self.off[lo as usize..hi].iter().map(|&o| o - base).collect();
            let (sorted, rename);
            let dealt = match layout {
                Layout::Given => {
                    rename = None;
                    dealt
                }
                Layout::Sorted(map) => {
                    (sorted, rename) = (sorted_by_a(dealt, bits), map);
                    &sorted[..]
                }
            };
            for r in dealt {
                let slot = &mut at[(r[0] - lo) as usize];
                let a = rename.map_or(r[1], |m: &[u32]| m[r[1] as usize]);
                (out_a[*slot as usize], out_b[*slot as usize]) = (a, W::of(r[2]));
                *slot += 1;
            }
        });
    }
}

/// Records sorted by `a` (their second field, below `1 << bits`), stably: a radix sort, 11 bits a
/// pass, on a block small enough to stay in cache.
fn sorted_by_a(records: &[[u32; 3]], bits: u32) -> Vec<[u32; 3]> {
    const DIGIT: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT;
    let passes = bits.div_ceil(DIGIT).max(1) as usize;
    let digit = |r: &[u32; 3], p: usize| (r[1] >> (p as u32 * DIGIT)) as usize & (BUCKETS - 1);
    let mut counts = vec![0usize; passes * BUCKETS];
    for r in records {
        for p in 0..passes {
            counts[p * BUCKETS + digit(r, p)] += 1;
        }
    }
    // `cur` empty: the records are still as given.
    let (mut cur, mut spare) = (Vec::new(), vec![[0u32; 3]; records.len()]);
    for (p, counts) in counts.chunks_mut(BUCKETS).enumerate() {
        if counts.contains(&records.len()) {
            continue; // one digit for all: nothing moves
        }
        let mut at = 0;
        for c in counts.iter_mut() {
            (*c, at) = (at, at + *c);
        }
        for r in if cur.is_empty() { records } else { &cur } {
            let slot = &mut counts[digit(r, p)];
            spare[*slot] = *r;
            *slot += 1;
        }
        std::mem::swap(&mut cur, &mut spare);
        if spare.is_empty() {
            spare = vec![[0u32; 3]; records.len()];
        }
    }
    if cur.is_empty() {
        records.to_vec()
    } else {
        cur
    }
}

/// Whether the uids given (`u32::MAX` for none) increase.
fn increasing(uids: &[u32]) -> bool {
    let mut last = None;
    uids.iter().filter(|&&u| u != u32::MAX).all(|&u| last.replace(u).is_none_or(|l| l < u))
}

/// Prefix sums of counts, in place: `counts[i + 1]` held key i's count; afterwards `counts[i]` is
/// where key i starts.
fn prefix(counts: &mut [u32]) {
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
}

/// Where each key's records start at one end (0: as sources, 1: as targets; see [`prefix`]),
/// counted.
fn count(edges: &[[u32; 3]], keys: usize, end: usize) -> Vec<u32> {
    let mut off = vec![0u32; keys + 1];
    edges.iter().for_each(|e| off[e[end] as usize + 1] += 1);
    prefix(&mut off);
    off
}

/// [`count`]'s answers for both ends from the graph's degrees by node index, each node its key
/// through `rename` when one is given: no pass over the edges.
fn from_degrees(
    (out_deg, in_deg): (Vec<u32>, Vec<u32>),
    keys: usize,
    rename: Option<&[u32]>,
) -> (Vec<u32>, Vec<u32>) {
    let (mut from, mut to) = (vec![0u32; keys + 1], vec![0u32; keys + 1]);
    for (i, (&o, &d)) in out_deg.iter().zip(&in_deg).enumerate() {
        if o > 0 || d > 0 {
            let k = rename.map_or(i, |m| m[i] as usize);
            (from[k + 1], to[k + 1]) = (o, d);
        }
    }
    prefix(&mut from);
    prefix(&mut to);
    (from, to)
}

/// Dense ids for the keys `present` says are in, numbered in key order: key -> id (`u32::MAX` for
/// none), and the keys in.
fn dense_ids(keys: usize, present: impl Fn(usize) -> bool) -> (Vec<u32>, Vec<u32>) {
    let mut id = vec![u32::MAX; keys];
    let mut ins = Vec::new();
    for (k, slot) in id.iter_mut().enumerate() {
        if present(k) {
            *slot = ins.len() as u32;
            ins.push(k as u32);
        }
    }
    (id, ins)
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
    /// A byte of each in-edge's weight, [`HEAVY`] where it is in the source's out-list: the
    /// weights are counts, mostly small, and the in-lists' whole weights would cost 3 bytes an edge
    /// more (the snapshot's budget is 16 in all).
    in_w: Vec<u8>,
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
    /// Two [`Deal`]s: the records by source, each source's list sorted by target (a window's
    /// repeated pairs side by side, to be merged); then by target walking sources in order, so
    /// each in-list comes out sorted by source.
    pub fn build(extract: Extract, min_weight: u32) -> Network {
        Network::build_with(extract, min_weight, &mut Scratch::default())
    }

    /// [`Network::build`], taking its buffers from `scratch` and leaving them there after.
    pub fn build_with(extract: Extract, min_weight: u32, scratch: &mut Scratch) -> Network {
        let Extract { mut edges, uid_of, degrees, version } = extract;
        let min_weight = min_weight.max(1);
        // The whole network's pairs are unique (the extract left lighter ones out): nothing to
        // merge, and the counts say who is in.
        let unique = uid_of.is_some();
        // Records keyed in the uids' order: node indices when that is their order (no user
        // removed and its index reused), else uids.
        let (keys, rename, uid_of) = match uid_of {
            Some(uid_of) if increasing(&uid_of) => (uid_of.len(), None, Some(uid_of)),
            Some(uid_of) => {
                let keys = uid_of.iter().filter(|&&u| u != u32::MAX).max().map_or(0, |&u| u as usize + 1);
                (keys, Some(uid_of), None)
            }
            None => {
                (edges.par_iter().map(|e| e[0].max(e[1])).max().map_or(0, |m| m as usize + 1), None, None)
            }
        };
        if let Some(m) = &rename {
            edges.par_iter_mut().with_min_len(1 << 16).for_each(|e| {
                (e[0], e[1]) = (m[e[0] as usize], m[e[1] as usize]);
            });
        }
        // Counts by target only where they stay true: a window's are recounted once merged.
        let (off, in_off) = match degrees {
            Some(degrees) => {
                let (off, in_off) = from_degrees(degrees, keys, rename.as_deref());
                (off, Some(in_off))
            }
            // Two passes side by side rather than one pass in two halves: each thread's random
            // writes then stay within one array.
            None if unique => {
                let (off, in_off) = rayon::join(|| count(&edges, keys, 0), || count(&edges, keys, 1));
                (off, Some(in_off))
            }
            None => (count(&edges, keys, 0), None),
        };
        drop(rename);
        let early = in_off
            .as_ref()
            .map(|in_off| dense_ids(keys, |k| off[k + 1] > off[k] || in_off[k + 1] > in_off[k]));
        // 1. By source, into the out-adjacency's arrays, each list sorted by target (already in
        // dense ids when known).
        let m0 = edges.len();
        let (mut out_dst, mut out_w) = (zeroed::<u32>(m0), zeroed::<u32>(m0));
        let parts = rayon::current_num_threads();
        let chunk = m0.div_ceil(parts).max(1);
        let buf = Deal::new(&off, BLOCKS).deal(
            parts,
            |p| edges[(p * chunk).min(m0)..((p + 1) * chunk).min(m0)].iter().copied(),
            scratch.take(),
            (&mut out_dst, &mut out_w),
            Layout::Sorted(early.as_ref().map(|(id, _)| &id[..])),
        );
        scratch.keep(edges);
        // 2. Merged (repeated pairs summed, light ones dropped, `kept[s]` at the front of its
        // stretch) and dense ids, in uid order, for users with a kept edge either way.
        let (id, present, kept) = match early {
            Some((id, present)) => (id, present, None),
            None => {
                let lens = (0..keys).map(|s| (off[s + 1] - off[s]) as usize);
                let kept: Vec<u32> = pieces(&mut out_dst, &mut out_w, lens)
                    .into_par_iter()
                    .with_min_len(1 << 10)
                    .map(|(d, w)| merge(d, w, min_weight))
                    .collect();
                let mut mark = vec![false; keys];
                for s in 0..keys {
                    if kept[s] > 0 {
                        mark[s] = true;
                        for &t in &out_dst[off[s] as usize..(off[s] + kept[s]) as usize] {
                            mark[t as usize] = true;
                        }
                    }
                }
                let (id, present) = dense_ids(keys, |k| mark[k]);
                (id, present, Some(kept))
            }
        };
        // 3. The kept records closed up (nothing moves when all are kept), then targets renumbered
        // where they are not yet (they keep their order: ids are monotone in keys).
        let n = present.len();
        let mut out_off = Vec::with_capacity(n + 1);
        out_off.push(0u32);
        for &k in &present {
            let k = k as usize;
            let (from, len) =
                (off[k] as usize, kept.as_ref().map_or(off[k + 1] - off[k], |kept| kept[k]) as usize);
            let to = out_off[out_off.len() - 1] as usize;
            if from != to {
                out_dst.copy_within(from..from + len, to);
                out_w.copy_within(from..from + len, to);
            }
            out_off.push((to + len) as u32);
        }
        let m = out_off[n] as usize;
        out_dst.truncate(m);
        out_w.truncate(m);
        drop(off);
        if kept.is_some() {
            out_dst.par_iter_mut().with_min_len(1 << 16).for_each(|t| *t = id[*t as usize]);
        }
        drop((id, kept));
        let interactions = out_w.par_iter().map(|&x| u64::from(x)).sum();
        // 4. In-adjacency, dealt by target walking sources in order: each in-list comes out sorted
        // by source.
        let in_off = if let Some(in_off) = in_off {
            // The same in-degrees, renumbered.
            let mut dense = Vec::with_capacity(n + 1);
            dense.push(0);
            dense.extend(present.iter().map(|&k| in_off[k as usize + 1]));
            dense
        } else {
            let mut counts = vec![0u32; n + 1];
            for &v in &out_dst {
                counts[v as usize + 1] += 1;
            }
            prefix(&mut counts);
            counts
        };
        let uids = match uid_of {
            Some(uid_of) => present.iter().map(|&k| uid_of[k as usize]).collect(),
            None => present,
        };
        let (mut in_src, mut in_w) = (zeroed::<u32>(m), zeroed::<u8>(m));
        // In parts of about as many edges, one a thread.
        let bounds: Vec<usize> = (0..=parts)
            .map(|p| {
                if p == parts {
                    n
                } else {
                    out_off.partition_point(|&o| (o as usize) < m * p / parts).min(n)
                }
            })
            .collect();
        let records = |p: usize| {
            let (out_off, out_dst, out_w) = (&out_off, &out_dst, &out_w);
            (bounds[p]..bounds[p + 1]).flat_map(move |u| {
                let r = out_off[u] as usize..out_off[u + 1] as usize;
                out_dst[r.clone()].iter().zip(&out_w[r]).map(move |(&v, &w)| [v, u as u32, w])
            })
        };
        scratch.keep(Deal::new(&in_off, BLOCKS).deal(
            parts,
            records,
            buf,
            (&mut in_src, &mut in_w),
            Layout::Given,
        ));
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

    /// Where `v`'s in-edges are in the in-arrays.
    fn in_range(&self, v: usize) -> std::ops::Range<usize> {
        self.in_off[v] as usize..self.in_off[v + 1] as usize
    }

    /// In-neighbours of `v`, sorted.
    pub(crate) fn inc(&self, v: usize) -> &[u32] {
        &self.in_src[self.in_range(v)]
    }

    /// In-neighbours of `v` with the weights of those edges, in [`Network::inc`]'s order.
    pub(crate) fn in_edges(&self, v: usize) -> impl Iterator<Item = (u32, u32)> + '_ {
        let r = self.in_range(v);
        self.in_src[r.clone()].iter().zip(&self.in_w[r]).map(move |(&u, &w)| (u, self.weight_in(u, v, w)))
    }

    /// The weight of the in-edge `u -> v` whose byte is `w`.
    fn weight_in(&self, u: u32, v: usize, w: u8) -> u32 {
        if w < HEAVY {
            return u32::from(w);
        }
        let (dst, w) = self.out(u as usize);
        w[dst.binary_search(&(v as u32)).expect("an in-edge is its source's out-edge")]
    }

    /// `v`'s heavy in-edges, each as its source and what its weight adds to its byte: what a sum
    /// over the bytes corrects by (the byte sums below take no branch, and most lists have none).
    fn beyond_bytes(&self, v: usize) -> impl Iterator<Item = (u32, u32)> + '_ {
        let r = self.in_range(v);
        let heavy = self.in_w[r.clone()].iter().zip(&self.in_src[r]).filter(|(&b, _)| b == HEAVY);
        heavy.map(move |(&b, &u)| (u, self.weight_in(u, v, b) - u32::from(b)))
    }

    /// Sum of the weights of `v`'s in-edges: the bytes summed (a pass that vectorizes: a hub has
    /// millions), then the heavy ones corrected.
    pub(crate) fn in_strength(&self, v: usize) -> u64 {
        let bytes: u64 = self.in_w[self.in_range(v)].iter().map(|&b| u64::from(b)).sum();
        bytes + self.beyond_bytes(v).map(|(_, more)| u64::from(more)).sum::<u64>()
    }

    /// `x[u] * w(u -> v)` summed over `v`'s in-edges (PageRank's pull): the bytes taken as the
    /// weights in a pass with no branch, then the heavy edges corrected, if there are any.
    pub(crate) fn pull(&self, v: usize, x: &[f64]) -> f64 {
        let r = self.in_range(v);
        let (sum, heavy) =
            self.in_src[r.clone()].iter().zip(&self.in_w[r]).fold((0.0, false), |(sum, heavy), (&u, &b)| {
                (sum + x[u as usize] * f64::from(b), heavy | (b == HEAVY))
            });
        if !heavy {
            return sum;
        }
        sum + self.beyond_bytes(v).map(|(u, more)| x[u as usize] * f64::from(more)).sum::<f64>()
    }

    /// Sum of the weights of `u`'s out-edges.
    pub(crate) fn out_strength(&self, u: usize) -> u64 {
        self.out(u).1.iter().map(|&w| u64::from(w)).sum()
    }

    /// The dense id of a store uid, if that user is in the network.
    pub fn id_of(&self, uid: u32) -> Option<usize> {
        self.uids.binary_search(&uid).ok()
    }

    /// Bytes held by the arrays.
    pub fn bytes(&self) -> usize {
        self.edge_bytes() + self.user_bytes()
    }

    /// Bytes held by the arrays an edge has entries in: 13 an edge.
    pub fn edge_bytes(&self) -> usize {
        4 * (self.out_dst.len() + self.out_w.len() + self.in_src.len()) + self.in_w.len()
    }

    /// Bytes held by the arrays a user has entries in: 12 a user.
    pub fn user_bytes(&self) -> usize {
        4 * (self.uids.len() + self.out_off.len() + self.in_off.len())
    }

    /// The undirected simple view: u and v are neighbours if either acted on the other, with weight
    /// w(u->v) + w(v->u). Each edge appears in both lists. Built on first use, then shared.
    ///
    /// A first use waits for a build under way elsewhere: not on a rayon pool's thread, where the
    /// build's own parallel work may be waiting for this very thread. The engine builds the view
    /// with [`Network::undirected_on`] before its tasks start.
    pub fn undirected(&self) -> &Undirected {
        self.undirected.get_or_init(|| self.build_undirected())
    }

    /// [`Network::undirected`], built on `pool` if not yet: called from a thread outside it.
    pub(crate) fn undirected_on(&self, pool: &rayon::ThreadPool) -> &Undirected {
        self.undirected.get_or_init(|| pool.install(|| self.build_undirected()))
    }

    /// Each user's out- and in-list merged (both sorted): first how long each merge is, then the
    /// merges written in place, users in parallel.
    fn build_undirected(&self) -> Undirected {
        let n = self.users();
        let lens: Vec<u32> = (0..n)
            .into_par_iter()
            .with_min_len(1 << 12)
            .map(|u| {
                let mut len = 0;
                merge_sorted(self.out(u).0, self.inc(u), |_, _| len += 1);
                len
            })
            .collect();
        let mut off = Vec::with_capacity(n + 1);
        off.push(0u32);
        for &len in &lens {
            off.push(off[off.len() - 1] + len);
        }
        let total = off[n] as usize;
        let (mut adj, mut w) = (zeroed::<u32>(total), zeroed::<u64>(total));
        pieces(&mut adj, &mut w, lens.iter().map(|&l| l as usize))
            .into_par_iter()
            .with_min_len(1 << 12)
            .enumerate()
            .for_each(|(u, (adj, w))| {
                let ((od, ow), id) = (self.out(u), self.inc(u));
                let iw = &self.in_w[self.in_range(u)];
                let mut at = 0;
                merge_sorted(od, id, |v, (i, j)| {
                    adj[at] = v;
                    w[at] = i.map_or(0, |i| u64::from(ow[i]))
                        + j.map_or(0, |j| u64::from(self.weight_in(v, u, iw[j])));
                    at += 1;
                });
            });
        Undirected { off, adj, w }
    }
}

/// Walks the union of two sorted lists of distinct ids in order: `f(id, (index in a, index in b))`.
fn merge_sorted(a: &[u32], b: &[u32], mut f: impl FnMut(u32, (Option<usize>, Option<usize>))) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let x = a.get(i).copied().unwrap_or(u32::MAX);
        let y = b.get(j).copied().unwrap_or(u32::MAX);
        if x == y {
            f(x, (Some(i), Some(j)));
            i += 1;
            j += 1;
        } else if x < y {
            f(x, (Some(i), None));
            i += 1;
        } else {
            f(y, (None, Some(j)));
            j += 1;
        }
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
        Network::build(Extract { edges, uid_of: None, degrees: None, version: 0 }, min_weight)
    }

    #[test]
    fn build_aggregates_filters_and_sorts_both_ways() {
        // Interactions one by one (a window): 5->9 three times, 9->5 once, 5->2 once, 7->9 once.
        let n = net(&[(5, 9, 1), (9, 5, 1), (5, 2, 1), (5, 9, 1), (7, 9, 1), (5, 9, 1)], 1);
        assert_eq!(n.uids, [2, 5, 7, 9]);
        assert_eq!(n.out(1), (&[0, 3][..], &[1, 3][..]), "5 -> 2 once, 5 -> 9 three times");
        assert_eq!(n.inc(3), [1, 2]);
        assert_eq!(n.in_edges(3).collect::<Vec<_>>(), [(1, 3), (2, 1)]);
        assert_eq!((n.in_strength(3), n.out_strength(1)), (4, 4));
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

    #[test]
    fn in_edges_heavier_than_a_byte_read_their_weight_from_the_out_list() {
        // 1..=5 act on 0 with weights around the byte's limit; 0 acts back on 3.
        let n = net(&[(1, 0, 254), (2, 0, 255), (3, 0, 256), (4, 0, 70_000), (5, 0, 1), (0, 3, 300)], 1);
        assert_eq!(n.in_edges(0).collect::<Vec<_>>(), [(1, 254), (2, 255), (3, 256), (4, 70_000), (5, 1)]);
        assert_eq!(n.in_edges(3).collect::<Vec<_>>(), [(0, 300)]);
        assert_eq!(n.in_strength(0), 254 + 255 + 256 + 70_000 + 1);
        let x: Vec<f64> = (0..n.users()).map(|u| u as f64 + 1.0).collect();
        assert_eq!(n.pull(0, &x), f64::from(2 * 254 + 3 * 255 + 4 * 256 + 5 * 70_000 + 6));
        assert_eq!(n.pull(3, &x), 300.0);
        assert_eq!(n.undirected().weights(0), [254, 255, 556, 70_000, 1]);
        assert_eq!(n.undirected().weights(3), [556]);
        assert_eq!(
            (n.edge_bytes(), n.user_bytes()),
            (13 * 6, 4 * (6 + 7 + 7)),
            "a byte for each in-edge's weight"
        );
    }

    /// The network worked out the obvious way: pairs summed in a map, light ones dropped, users
    /// numbered by uid, both adjacencies sorted.
    fn model(edges: &[[u32; 3]], min_weight: u32) -> (Vec<u32>, Vec<(u32, u32, u32)>) {
        let mut pairs = std::collections::BTreeMap::new();
        for &[a, b, w] in edges {
            *pairs.entry((a, b)).or_insert(0u32) += w;
        }
        pairs.retain(|_, w| *w >= min_weight.max(1));
        let uids: Vec<u32> = pairs
            .keys()
            .flat_map(|&(a, b)| [a, b])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        (uids, pairs.into_iter().map(|((a, b), w)| (a, b, w)).collect())
    }

    /// Checks a built network against [`model`]: users, out-lists and in-lists, both sorted.
    fn check(n: &Network, edges: &[[u32; 3]], min_weight: u32) {
        let (uids, pairs) = model(edges, min_weight);
        assert_eq!(n.uids, uids);
        let mut out = Vec::new();
        for u in 0..n.users() {
            let (d, w) = n.out(u);
            assert!(d.windows(2).all(|p| p[0] < p[1]), "out-list of {u} sorted");
            out.extend(d.iter().zip(w).map(|(&v, &w)| (n.uids[u], n.uids[v as usize], w)));
        }
        assert_eq!(out, pairs);
        let mut inc = Vec::new();
        for v in 0..n.users() {
            let s = n.inc(v);
            assert!(s.windows(2).all(|p| p[0] < p[1]), "in-list of {v} sorted");
            assert!(n.in_edges(v).map(|e| e.0).eq(s.iter().copied()));
            inc.extend(n.in_edges(v).map(|(u, w)| (n.uids[u as usize], n.uids[v], w)));
        }
        inc.sort_unstable();
        assert_eq!(inc, pairs);
        // The undirected view: each pair once per end, its weight both ways summed.
        let mut both = std::collections::BTreeMap::new();
        for &(a, b, w) in &pairs {
            *both.entry((a, b)).or_insert(0u64) += u64::from(w);
            *both.entry((b, a)).or_insert(0u64) += u64::from(w);
        }
        let und = n.undirected();
        let mut got = std::collections::BTreeMap::new();
        for u in 0..und.users() {
            assert!(und.neighbors(u).windows(2).all(|p| p[0] < p[1]), "neighbours of {u} sorted");
            for (&v, &w) in und.neighbors(u).iter().zip(und.weights(u)) {
                got.insert((n.uids[u], n.uids[v as usize]), w);
            }
        }
        assert_eq!(got, both);
        assert_eq!(n.interactions, pairs.iter().map(|p| u64::from(p.2)).sum::<u64>());
    }

    #[test]
    fn build_matches_the_obvious_computation_across_many_blocks() {
        // 20,000 uids: the deals go through hundreds of blocks of 64 keys.
        let mut rng = crate::rng::SplitMix64::new(7);
        let skewed = |rng: &mut crate::rng::SplitMix64| {
            let r = rng.below(20_000);
            (r * r / 20_000) as u32 // many records on low uids: hubs
        };
        // A window: interactions one by one, repeated pairs, several minimum weights.
        let window: Vec<[u32; 3]> = (0..60_000).map(|_| [skewed(&mut rng), skewed(&mut rng), 1]).collect();
        // Every build also again with the buffers the builds before left (stale contents, larger
        // or smaller than needed), as the engine takes one snapshot after another.
        let mut scratch = Scratch::default();
        let mut check_both = |extract: Extract, expected: &[[u32; 3]], min_weight: u32| {
            let again = Extract {
                edges: extract.edges.clone(),
                uid_of: extract.uid_of.clone(),
                degrees: extract.degrees.clone(),
                version: extract.version,
            };
            check(&Network::build(again, min_weight), expected, min_weight);
            check(&Network::build_with(extract, min_weight, &mut scratch), expected, min_weight);
            assert!(scratch.bytes() > 0, "the buffers are kept");
        };
        for min_weight in [1, 2, 3] {
            check_both(
                Extract { edges: window.clone(), uid_of: None, degrees: None, version: 0 },
                &window,
                min_weight,
            );
        }
        // The whole network: unique pairs as node indices, mapped to uids that are not in node
        // order (a user removed and its index reused).
        // Weights mostly small, some past an in-edge's byte.
        let weight = |a: u32, b: u32| if (a ^ b) % 11 == 0 { 200 + (a ^ b) % 300 } else { 1 + (a ^ b) % 5 };
        let mut pairs: Vec<[u32; 3]> = window.iter().map(|e| [e[0], e[1], weight(e[0], e[1])]).collect();
        pairs.sort_unstable_by_key(|e| (e[0], e[1]));
        pairs.dedup_by_key(|e| (e[0], e[1]));
        let mut shuffled = pairs.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let scrambled: Vec<u32> = (0..20_000u32).map(|i| (i * 7_919) % 20_011).collect();
        // In the uids' order, with holes (no node at those indices) and gaps (users removed).
        let in_order: Vec<u32> =
            (0..20_000u32).map(|i| if i % 97 == 5 { u32::MAX } else { 3 * i + 1 }).collect();
        let used = |i: &u32| *i % 97 != 5;
        let edges: Vec<[u32; 3]> = shuffled.iter().filter(|e| used(&e[0]) && used(&e[1])).copied().collect();
        // The degrees a graph keeps, by node index: what the counts come from when given.
        let (mut out_deg, mut in_deg) = (vec![0u32; 20_000], vec![0u32; 20_000]);
        for e in &edges {
            out_deg[e[0] as usize] += 1;
            in_deg[e[1] as usize] += 1;
        }
        for uid_of in [scrambled, in_order] {
            for degrees in [None, Some((out_deg.clone(), in_deg.clone()))] {
                let extract =
                    Extract { edges: edges.clone(), uid_of: Some(uid_of.clone()), degrees, version: 0 };
                let in_uids: Vec<[u32; 3]> =
                    edges.iter().map(|e| [uid_of[e[0] as usize], uid_of[e[1] as usize], e[2]]).collect();
                check_both(extract, &in_uids, 1);
            }
        }
        // A smaller network after the larger ones: the kept buffers are cut down, not trusted.
        check_both(
            Extract { edges: window[..500].to_vec(), uid_of: None, degrees: None, version: 0 },
            &window[..500],
            1,
        );
    }

    #[test]
    fn deals_group_by_key_in_the_order_given_or_sorted() {
        // Keys 0..10 in blocks of 2 keys (5 blocks); `a` out of order with ties, `b` numbers the
        // records; dealt in three parts.
        let records: Vec<[u32; 3]> = (0..40u32).map(|i| [(i * 7) % 10, (i * 13) % 40 / 2, i]).collect();
        let mut off = vec![0u32; 11];
        for r in &records {
            off[r[0] as usize + 1] += 1;
        }
        prefix(&mut off);
        let deal = Deal::new(&off, 6);
        assert_eq!((deal.shift, deal.blocks), (1, 5));
        let cut = [0, 13, 26, 40];
        let parts = |p: usize| records[cut[p]..cut[p + 1]].iter().copied();
        let of_key =
            |k: usize| records.iter().filter(|x| x[0] == k as u32).map(|x| (x[1], x[2])).collect::<Vec<_>>();
        let (mut a, mut b) = (vec![0u32; 40], vec![0u32; 40]);
        let buf = deal.deal(3, parts, Vec::new(), (&mut a, &mut b), Layout::Given);
        assert_eq!(buf.len(), 40);
        for k in 0..10 {
            let r = off[k] as usize..off[k + 1] as usize;
            let got: Vec<(u32, u32)> = a[r.clone()].iter().copied().zip(b[r].iter().copied()).collect();
            assert_eq!(got, of_key(k), "key {k}: its records, in order");
        }
        // Sorted by `a`, ties in the order given (a stable sort), then renamed.
        let rename: Vec<u32> = (0..20).map(|x| 2 * x + 1).collect();
        for map in [None, Some(&rename[..])] {
            let (mut a, mut b) = (vec![0u32; 40], vec![0u32; 40]);
            deal.deal(3, parts, buf.clone(), (&mut a, &mut b), Layout::Sorted(map));
            for k in 0..10 {
                let r = off[k] as usize..off[k + 1] as usize;
                let got: Vec<(u32, u32)> = a[r.clone()].iter().copied().zip(b[r].iter().copied()).collect();
                let mut want = of_key(k);
                want.sort_by_key(|&(a, _)| a);
                let want: Vec<(u32, u32)> =
                    want.iter().map(|&(a, b)| (map.map_or(a, |m| m[a as usize]), b)).collect();
                assert_eq!(got, want, "key {k}: its records by a, renamed: {}", map.is_some());
            }
        }
    }

    #[test]
    fn the_radix_sort_is_stable_over_every_pass() {
        // 30 bits: three passes, one of them with a single digit for all (skipped).
        let mut rng = crate::rng::SplitMix64::new(3);
        let records: Vec<[u32; 3]> = (0..5_000u32)
            .map(|i| [0, (rng.below(1 << 8) as u32) << 22 | (rng.below(50) as u32), i])
            .collect();
        let mut want = records.clone();
        want.sort_by_key(|r| r[1]);
        assert_eq!(sorted_by_a(&records, 30), want);
        assert_eq!(sorted_by_a(&[], 30), Vec::<[u32; 3]>::new());
    }
}
