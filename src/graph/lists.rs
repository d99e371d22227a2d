//! Busy users' neighbours as contiguous lists, and their heavy ties in order of weight, kept in step
//! with the edges by the graph's write path: what makes paths, a hub's heaviest edges and the
//! drawing fast to read.

use super::graph::{Graph, LISTED, NO_LISTS};
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use rustc_hash::FxHashSet;
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Compact copies of a well-connected user's neighbours, kept in step with the edges.
///
/// petgraph links each user's edges into a list threaded through the edge array: walking it is one
/// dependent memory load per neighbour, which the processor cannot overlap. For a user with
/// thousands of neighbours those serialized misses were almost all of a slow find_path (about
/// 200 ns per neighbour walked). A contiguous array is read at memory bandwidth instead.
///
/// The lists keep the order edges were made in (oldest first), and beside them the user's ties of
/// two interactions or more in order of weight: a busy user's heaviest edges are then read in
/// O(limit · log degree) — the heavy ones in order, then single interactions, newest first —
/// where ranking every edge of a hub held the graph's read lock for milliseconds.
#[derive(Default)]
pub(super) struct Lists {
    /// The user's node index ([`NO_NODE`] for a free slot).
    pub(super) owner: u32,
    pub(super) out: Vec<u32>,
    pub(super) inc: Vec<u32>,
    pub(super) heavy_out: Heavy,
    pub(super) heavy_in: Heavy,
}

/// A user's ties in one direction that carry at least two interactions: by weight, heaviest first
/// (ties by neighbour index), and the same neighbours as a set.
#[derive(Default)]
pub(super) struct Heavy {
    pub(super) order: BTreeSet<(Reverse<u32>, u32)>,
    pub(super) members: FxHashSet<u32>,
}

impl Heavy {
    /// The tie with neighbour `n` went from `old` to `new` interactions (0: absent).
    pub(super) fn reweigh(&mut self, n: u32, old: u64, new: u64) {
        let weight = |t: u64| Reverse(u32::try_from(t).unwrap_or(u32::MAX));
        if old >= 2 {
            self.order.remove(&(weight(old), n));
        }
        if new >= 2 {
            self.order.insert((weight(new), n));
            self.members.insert(n);
        } else if old >= 2 {
            self.members.remove(&n);
        }
    }
}

impl Graph {
    pub(super) fn lists_of(&self, i: NodeIndex) -> Option<usize> {
        let slot = self.g[i].lists;
        (slot != NO_LISTS).then_some(slot as usize)
    }

    /// Starts neighbour lists for a user that just got more than [`LISTED`] edges.
    pub(super) fn list_if_busy(&mut self, i: NodeIndex) {
        let n = &self.g[i];
        if n.out_deg + n.in_deg <= LISTED {
            return;
        }
        // petgraph walks a user's edges newest first; the lists keep them oldest first.
        let copy = |dir| {
            let mut list: Vec<u32> = self.g.neighbors_directed(i, dir).map(|x| x.index() as u32).collect();
            list.reverse();
            list
        };
        let heavy = |dir| {
            let mut heavy = Heavy::default();
            for e in self.g.edges_directed(i, dir) {
                let other = if dir == Direction::Outgoing { e.target() } else { e.source() };
                heavy.reweigh(other.index() as u32, 0, self.tie_of(e.id(), e.weight()).total());
            }
            heavy
        };
        let lists = Lists {
            owner: i.index() as u32,
            out: copy(Direction::Outgoing),
            inc: copy(Direction::Incoming),
            heavy_out: heavy(Direction::Outgoing),
            heavy_in: heavy(Direction::Incoming),
        };
        let slot = match self.free_lists.pop() {
            Some(slot) => {
                self.lists[slot as usize] = lists;
                slot
            }
            None => {
                self.lists.push(lists);
                (self.lists.len() - 1) as u32
            }
        };
        self.g[i].lists = slot;
    }

    /// The tie from `a` to `b` went from `old` to `new` interactions (0: absent).
    pub(super) fn reweigh(&mut self, a: NodeIndex, b: NodeIndex, old: u64, new: u64) {
        if let Some(l) = self.lists_of(a) {
            self.lists[l].heavy_out.reweigh(b.index() as u32, old, new);
        }
        if let Some(l) = self.lists_of(b) {
            self.lists[l].heavy_in.reweigh(a.index() as u32, old, new);
        }
    }

    /// Visits the neighbours of `i` in direction `dir` while `f` returns true; false if it stopped.
    /// Reads the compact lists where a user has them.
    #[inline]
    pub(crate) fn neighbors_while(
        &self,
        i: NodeIndex,
        dir: Direction,
        mut f: impl FnMut(NodeIndex) -> bool,
    ) -> bool {
        match self.lists_of(i) {
            Some(l) => {
                let l = &self.lists[l];
                let list = if dir == Direction::Outgoing { &l.out } else { &l.inc };
                list.iter().all(|&v| f(NodeIndex::new(v as usize)))
            }
            None => self.g.neighbors_directed(i, dir).all(f),
        }
    }

    /// Users that have neighbour lists (for tests that must exercise them).
    #[cfg(test)]
    pub(crate) fn listed_users(&self) -> usize {
        self.lists.len() - self.free_lists.len()
    }
}
