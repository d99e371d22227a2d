//! A consistent read of a changing graph: a [`Cut`] fixes the graph as of one commit, and is read
//! in slices, each under a short read lock, while later commits go on changing the live graph.
//!
//! Copy-on-write by user and by edge: while a cut is open, the first change to a user or an edge
//! that the reader has not passed yet keeps its state as of the cut (its before-image); the reader
//! reads a changed user's before-image in its place (users are read by uid), and skips changed
//! edges to read their before-images once, after its last slice. Users created
//! after the cut have uids at or above its bound and are skipped, with their edges. The timeline is
//! shared by chunk ([`super::timeline::Timeline::freeze`]): the live graph copies a chunk before it
//! changes a shared one. A checkpoint or a backup thus costs the write path a lookup per change while
//! it runs, instead of holding every write for as long as the whole graph takes to write out.

use super::graph::Graph;
use super::tie::Tie;
use super::timeline::{FrozenTimeline, Stamp};
use parking_lot::Mutex;
use petgraph::stable_graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeIndexable;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A user as it was at the cut.
struct UserImage {
    key: Arc<str>,
    handle: Option<Box<str>>,
    name: Option<Box<str>>,
}

#[derive(Default)]
struct Images {
    users: FxHashMap<u32, UserImage>,
    /// `None`: the edge did not exist at the cut (it was made since, in a slot not yet read).
    ties: FxHashMap<(u32, u32), Option<Tie>>,
}

/// The graph as of one commit. Opened by [`Graph::open_cut`] under the write lock; read with
/// [`Cut::read_users`], [`Cut::read_ties`] and `Cut::stamps`, in that order.
pub(crate) struct Cut {
    /// Uids at or above this were assigned after the cut.
    uid_bound: u32,
    edge_bound: usize,
    /// Uids and edge slots below these were read (`usize::MAX` once every edge was): a change
    /// there needs no before-image. Written by the reader under a read lock, read by the
    /// write path under the write lock.
    users_read: AtomicUsize,
    ties_read: AtomicUsize,
    images: Mutex<Images>,
    timeline: FrozenTimeline,
}

impl Cut {
    /// Reads the next at most `max` uids into `f` (uid, key, handle, name), each user as it was at
    /// the cut (its before-image where it changed since). Returns false once every user of the cut
    /// was read. Users come in uid order, so a graph loaded from what was read has its nodes in uid
    /// order, which is what the analyses' snapshot reads fastest.
    pub(crate) fn read_users(
        &self,
        graph: &Graph,
        max: usize,
        mut f: impl FnMut(u32, &str, Option<&str>, Option<&str>),
    ) -> bool {
        let bound = self.uid_bound;
        let from = u32::try_from(self.users_read.load(Ordering::Acquire)).unwrap_or(bound).min(bound);
        let to = u32::try_from(max).unwrap_or(u32::MAX).saturating_add(from).min(bound);
        let images = self.images.lock();
        for uid in from..to {
            if let Some(u) = images.users.get(&uid) {
                f(uid, &u.key, u.handle.as_deref(), u.name.as_deref());
            } else if let Some(i) = graph.node_of_uid(uid) {
                let n = &graph.g[i];
                f(uid, &n.key, n.handle.as_deref(), n.name.as_deref());
            }
        }
        self.users_read.store(to as usize, Ordering::Release);
        to < bound
    }

    /// Reads the next at most `max` edge slots into `f` (from uid, to uid, tie); after the last
    /// slot, the before-images. Returns false once every edge of the cut was read.
    pub(crate) fn read_ties(&self, graph: &Graph, max: usize, mut f: impl FnMut(u32, u32, &Tie)) -> bool {
        let from = self.ties_read.load(Ordering::Acquire);
        if from == usize::MAX {
            return false;
        }
        let to = from.saturating_add(max).min(self.edge_bound);
        let images = self.images.lock();
        for i in from..to {
            let e = EdgeIndex::new(i);
            let (Some((a, b)), Some(w)) = (graph.g.edge_endpoints(e), graph.g.edge_weight(e)) else {
                continue;
            };
            let (a, b) = (graph.g[a].uid, graph.g[b].uid);
            if a < self.uid_bound && b < self.uid_bound && !images.ties.contains_key(&(a, b)) {
                f(a, b, &graph.tie_of(e, w));
            }
        }
        if to < self.edge_bound {
            self.ties_read.store(to, Ordering::Release);
            return true;
        }
        for (&(a, b), tie) in &images.ties {
            if let Some(tie) = tie {
                f(a, b, tie);
            }
        }
        self.ties_read.store(usize::MAX, Ordering::Release);
        false
    }

    /// The timeline as of the cut. Needs no lock.
    pub(crate) fn stamps(&self) -> impl Iterator<Item = &Stamp> {
        self.timeline.iter()
    }

    /// Before-images kept so far (users, edges): what the cut costs beyond the shared timeline.
    #[cfg(test)]
    pub(crate) fn images(&self) -> (usize, usize) {
        let images = self.images.lock();
        (images.users.len(), images.ties.len())
    }
}

impl Graph {
    /// Fixes the graph as it is now for a reader on another thread (see [`Cut`]); several may be
    /// open at once. Cost: a copy of the timeline's chunk list.
    pub(crate) fn open_cut(&mut self) -> Arc<Cut> {
        let cut = Arc::new(Cut {
            uid_bound: u32::try_from(self.by_uid.len()).unwrap_or(u32::MAX),
            edge_bound: self.g.edge_bound(),
            users_read: AtomicUsize::new(0),
            ties_read: AtomicUsize::new(0),
            images: Mutex::default(),
            timeline: self.timeline.freeze(),
        });
        self.cuts.push(cut.clone());
        cut
    }

    /// Stops keeping before-images for `cut` (its reader is done, or gave up).
    pub(crate) fn close_cut(&mut self, cut: &Arc<Cut>) {
        self.cuts.retain(|c| !Arc::ptr_eq(c, cut));
    }

    /// Before a user changes or goes: keeps it as it was, if an open cut has not read it yet.
    pub(super) fn keep_user(&self, i: NodeIndex) {
        let n = &self.g[i];
        for cut in &self.cuts {
            if n.uid >= cut.uid_bound || (n.uid as usize) < cut.users_read.load(Ordering::Acquire) {
                continue;
            }
            cut.images.lock().users.entry(n.uid).or_insert_with(|| UserImage {
                key: n.key.clone(),
                handle: n.handle.clone(),
                name: n.name.clone(),
            });
        }
    }

    /// Before an edge changes or goes (`before` its tie), or just after one is made (`None`): keeps
    /// its state at the cut, if an open cut has not read its slot yet.
    pub(super) fn keep_tie(&self, e: EdgeIndex, before: Option<Tie>) {
        if self.cuts.is_empty() {
            return;
        }
        let Some((a, b)) = self.g.edge_endpoints(e) else { return };
        let (a, b) = (self.g[a].uid, self.g[b].uid);
        for cut in &self.cuts {
            if e.index() >= cut.ties_read.load(Ordering::Acquire) && a < cut.uid_bound && b < cut.uid_bound {
                cut.images.lock().ties.entry((a, b)).or_insert(before);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{skewed, tie_of};
    use super::super::{Kind, Purge};
    use super::*;
    use crate::rng::SplitMix64;
    use std::collections::BTreeMap;

    type Users = BTreeMap<u32, (String, Option<String>, Option<String>)>;
    type Ties = BTreeMap<(u32, u32), Tie>;

    fn whole(g: &Graph) -> (Users, Ties, Vec<Stamp>) {
        let mut users = Users::new();
        g.for_each_user(|uid, k, h, n| {
            users.insert(uid, (k.into(), h.map(Into::into), n.map(Into::into)));
        });
        let mut ties = Ties::new();
        g.for_each_tie(|a, b, t| {
            ties.insert((a, b), *t);
        });
        (users, ties, g.timeline.iter().copied().collect())
    }

    /// Random changes of every kind between the reader's slices: what the cut reads is exactly the
    /// graph as it was when the cut was opened, each user and edge once.
    #[test]
    fn a_cut_reads_the_graph_as_of_its_opening_whatever_changes_between_slices() {
        for seed in 0..24u64 {
            let mut g = skewed(300, 1500, seed, 3, 11);
            for s in 0..2_000u32 {
                g.stamp(s % 300, (s * 7) % 300, Kind::Mention, s);
            }
            let want = whole(&g);
            let cut = g.open_cut();
            let mut rng = SplitMix64::new(seed ^ 0xC0FFEE);
            let mut next_uid = 300u32;
            let key = |n: u64| format!("u{n}");
            let mut change = |g: &mut Graph, rng: &mut SplitMix64| {
                for _ in 0..1 + rng.below(20) {
                    let (a, b) = (rng.below(u64::from(next_uid)), rng.below(u64::from(next_uid)));
                    match rng.below(7) {
                        0 => {
                            g.upsert_user(next_uid, &key(u64::from(next_uid)), Some("new"), None);
                            next_uid += 1;
                        }
                        // Uids are never reused: only a user that is there changes its profile.
                        1 if g.index_of(&key(a)).is_some() => {
                            g.upsert_user(a as u32, &key(a), Some(&format!("h{}", rng.below(9))), Some("n"))
                        }
                        2 if rng.chance(300) => {
                            g.remove_user(&key(a));
                        }
                        3 => {
                            g.set_tie(&key(a), &key(b), Tie::default());
                        }
                        4 => g.stamp(a as u32, b as u32, Kind::Reply, 9),
                        5 => {
                            let mut p = Purge::default();
                            p.pairs.insert((a as u32, b as u32));
                            g.purge_timeline(&p);
                        }
                        _ if a != b => {
                            g.set_tie(&key(a), &key(b), tie_of(Kind::Quote, 1 + rng.below(3) as u32));
                        }
                        _ => {}
                    }
                }
            };
            let (mut users, mut ties) = (Users::new(), Ties::new());
            let slice = 1 + rng.below(40) as usize;
            loop {
                change(&mut g, &mut rng);
                let more = cut.read_users(&g, slice, |uid, k, h, n| {
                    assert!(
                        users.last_key_value().is_none_or(|(&last, _)| last < uid),
                        "{uid} out of uid order"
                    );
                    users.insert(uid, (k.into(), h.map(Into::into), n.map(Into::into)));
                });
                if !more {
                    break;
                }
            }
            loop {
                change(&mut g, &mut rng);
                let more = cut.read_ties(&g, slice, |a, b, t| {
                    assert!(ties.insert((a, b), *t).is_none(), "edge {a} -> {b} read twice");
                });
                if !more {
                    break;
                }
            }
            change(&mut g, &mut rng);
            let stamps: Vec<Stamp> = cut.stamps().copied().collect();
            assert_eq!(users, want.0, "seed {seed}: users");
            assert_eq!(ties, want.1, "seed {seed}: edges");
            assert_eq!(stamps, want.2, "seed {seed}: timeline");
            // Once read, the cut keeps nothing more; closed, the graph keeps no images at all.
            let kept = cut.images();
            change(&mut g, &mut rng);
            assert_eq!(cut.images(), kept);
            g.close_cut(&cut);
        }
    }
}
