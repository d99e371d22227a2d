//! The in-memory interaction graph: a petgraph `StableGraph` of users joined by [`Tie`]s.
//!
//! `StableGraph` keeps node and edge indices valid across removals (plain `Graph::remove_node` moves
//! the last node into the hole), so the key -> index map never needs fixing up. Indices stay private:
//! every public method speaks in user keys.

use super::tie::{KindCounts, Packed, Spill, Tie};
use super::timeline::{Purge, Stamp, Timeline};
use hashbrown::HashTable;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use petgraph::{Directed, Direction};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet, FxHasher};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::Arc;

/// What can go wrong when a query names users.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("no user {0:?}")]
    UserNotFound(String),
    #[error("handle {handle:?} matches several users: {}", keys.join(", "))]
    AmbiguousHandle { handle: String, keys: Vec<String> },
    #[error("no edge from {from:?} to {to:?}")]
    TieNotFound { from: String, to: String },
    #[error("no path from {from:?} to {to:?}")]
    NoPath { from: String, to: String },
    /// A search walked its budget of adjacency entries without deciding.
    #[error("the search walked {walked} adjacency entries without deciding")]
    TooExpensive { walked: u64 },
}

pub(crate) struct Node {
    pub(crate) key: Arc<str>,
    pub(crate) handle: Option<Box<str>>,
    pub(crate) name: Option<Box<str>>,
    /// The store's persistent id of this user (edges and posts on disk refer to it).
    pub(crate) uid: u32,
    /// Distinct users this one acted upon / was acted upon by: kept up to date on every edge change.
    pub(crate) out_deg: u32,
    pub(crate) in_deg: u32,
    /// Slot of this user's neighbour lists in [`Graph::lists`], or [`NO_LISTS`]. (Fills what would
    /// otherwise be padding: a node stays 64 bytes.)
    lists: u32,
}

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
struct Lists {
    /// The user's node index ([`NO_NODE`] for a free slot).
    owner: u32,
    out: Vec<u32>,
    inc: Vec<u32>,
    heavy_out: Heavy,
    heavy_in: Heavy,
}

/// A user's ties in one direction that carry at least two interactions: by weight, heaviest first
/// (ties by neighbour index), and the same neighbours as a set.
#[derive(Default)]
struct Heavy {
    order: BTreeSet<(Reverse<u32>, u32)>,
    members: FxHashSet<u32>,
}

impl Heavy {
    /// The tie with neighbour `n` went from `old` to `new` interactions (0: absent).
    fn reweigh(&mut self, n: u32, old: u64, new: u64) {
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

/// Users by a degree, highest first, ties by key — the users that have [`Lists`] (every user with
/// more than [`LISTED`] edges) as they were when it was made: the first pages of users by degree in
/// O(limit · log users). Made from a copy taken under the read lock in O(listed users) and sorted
/// after it is released; the write path keeps nothing up to date for it (callers keep one for a
/// while: see `http::handlers`).
pub struct DegreeOrder {
    users: Vec<(Reverse<u32>, Arc<str>)>,
    /// Users in the graph when it was made (those out of the order have few edges).
    all: usize,
    /// The graph's version when it was made.
    pub version: u64,
}

impl DegreeOrder {
    /// Sorts a copy taken by [`Graph::listed_degrees`] (after the lock is released).
    pub fn sorted(mut self) -> DegreeOrder {
        self.users.sort_unstable();
        self
    }

    /// A page after `cursor` (as [`parse_user_cursor`] reads it), or `None` when the page reaches
    /// users with [`LISTED`] edges or fewer, which only [`Graph::users_page`]'s scan orders.
    pub fn page(&self, g: &Graph, cursor: Option<(u32, &str)>, limit: usize) -> Option<Page<UserView>> {
        let start = match cursor {
            None => 0,
            Some((d, k)) => self.users.partition_point(|(rd, key)| (*rd, &**key) <= (Reverse(d), k)),
        };
        let end = start.saturating_add(limit).min(self.users.len());
        let mut items = Vec::with_capacity(end - start);
        let mut last = None;
        for (Reverse(d), key) in &self.users[start..end] {
            if *d <= LISTED {
                return None;
            }
            if let Some(i) = g.idx(key) {
                items.push(g.view(i));
            }
            last = Some((*d, key));
        }
        // Users out of the order have LISTED edges or fewer: they come after every user shown, and
        // a page that did not fill needs them.
        let outside = self.all > self.users.len();
        if end - start < limit && outside {
            return None;
        }
        let more = end < self.users.len() || outside;
        let next = more.then(|| last.map(|(d, k)| format!("{d}:{k}"))).flatten();
        Some(Page { items, next })
    }
}

/// The interaction graph. Cheap to query under a read lock; mutated only by the store's write path.
pub struct Graph {
    pub(crate) g: StableGraph<Node, Packed, Directed, u32>,
    /// Full counts of the edges whose packed tie spilled (some count above 4,095): rare.
    spilled: FxHashMap<EdgeIndex, Spill>,
    /// Key -> node, for lookups (every write looks up several keys: a hash, not a tree walk). A
    /// table of bare node indices hashed by the key they point at: 5 bytes a slot, where a map from
    /// key to index took 25.
    by_key: HashTable<u32>,
    /// The same keys in order, so that listing users pages by key without sorting.
    ordered: BTreeSet<Arc<str>>,
    /// Handle -> users with that handle (usually one): node indices hashed by the lowercased
    /// handle, several entries where users share one. No lowercased copies are kept.
    by_handle: HashTable<u32>,
    /// Store uid -> node index (`u32::MAX` where none), to resolve on-disk references.
    by_uid: Vec<u32>,
    interactions: u64,
    /// Edges between two busy users: exactly the edges (a, b) with out_deg(a) > HUB and
    /// in_deg(b) > HUB. Finding any other edge walks an adjacency list of at most HUB entries; these
    /// would walk thousands (hubs both act and are acted upon), so they are indexed. Typically a
    /// small fraction of all edges.
    busy: FxHashMap<(u32, u32), EdgeIndex>,
    /// Neighbour lists of users with more than [`LISTED`] edges (in + out), and free slots.
    lists: Vec<Lists>,
    free_lists: Vec<u32>,
    /// One stamp per interaction, for exact counts over any time window.
    pub(crate) timeline: Timeline,
    /// Bumped by every change the write path applies: what cached analyses are checked against.
    version: u64,
}

/// Degree above which a user counts as busy for [`Graph::busy`].
const HUB: u32 = 32;

const NO_NODE: u32 = u32::MAX;

/// Degree (in + out) above which a user's neighbours are also kept as [`Lists`]. Around a third of
/// a heavy-tailed graph's edge ends belong to such users; the copies cost about 4 bytes each.
const LISTED: u32 = 32;

const NO_LISTS: u32 = u32::MAX;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub in_degree: u32,
    pub out_degree: u32,
    pub degree: u32,
}

/// A user with its interactions per kind, received (`in`) and made (`out`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserView,
    pub interactions: InOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InOut {
    #[serde(rename = "in")]
    pub received: KindCounts,
    #[serde(rename = "out")]
    pub made: KindCounts,
}

/// An edge as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TieView {
    pub from: String,
    pub to: String,
    pub total: u64,
    pub kinds: KindCounts,
    pub first_seen: String,
    pub last_seen: String,
}

/// Where an edge between two existing users is (or would go), as found by [`Graph::tie_slot`]. Opaque:
/// it lets the write path apply a change without looking the pair up again, and is only valid until
/// the next removal of a user or an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieSlot {
    a: NodeIndex,
    b: NodeIndex,
    edge: Option<EdgeIndex>,
}

/// What [`Graph::top_subgraph`] draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subgraph {
    pub users: Vec<UserView>,
    /// The heaviest edges among the users, at most the `max_edges` asked for.
    pub ties: Vec<TieView>,
    /// Edges among the users (with the minimum weight) in all.
    pub among: usize,
}

/// How to order a listing of users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    /// By key, ascending.
    Key,
    /// By in + out degree, descending, ties broken by key.
    Degree,
    InDegree,
    OutDegree,
}

/// One page of a listing and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque position after the last item; `None` on the last page.
    pub next: Option<String>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

impl Graph {
    pub fn new() -> Graph {
        Graph {
            g: StableGraph::default(),
            by_key: HashTable::new(),
            ordered: BTreeSet::new(),
            by_handle: HashTable::new(),
            by_uid: Vec::new(),
            interactions: 0,
            busy: FxHashMap::default(),
            spilled: FxHashMap::default(),
            lists: Vec::new(),
            free_lists: Vec::new(),
            timeline: Timeline::default(),
            version: 0,
        }
    }

    /// A number that changes whenever the graph does (every applied commit).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Marks the graph changed; the write path calls it once per applied commit.
    pub(crate) fn bump_version(&mut self) {
        self.version += 1;
    }

    /// Records when one interaction happened (the store calls this beside the tie's count).
    pub(crate) fn stamp(&mut self, from_uid: u32, to_uid: u32, kind: super::Kind, at: u32) {
        self.timeline.push(Stamp::new(from_uid, to_uid, kind, at));
    }

    /// Takes interactions out of the timeline (removed users and edges, retracted posts).
    pub(crate) fn purge_timeline(&mut self, purge: &Purge) -> usize {
        self.timeline.purge(purge)
    }

    /// Interactions in the timeline, and the bytes it holds.
    pub fn timeline_stats(&self) -> (usize, usize) {
        (self.timeline.len(), self.timeline.bytes())
    }

    /// Builds the timeline of a graph loaded from a data directory written before timelines were
    /// kept: each edge's first interaction at its first-seen time and the others at its last-seen
    /// time (exact for edges seen once or twice, approximate beyond).
    pub(crate) fn synthesize_timeline(&mut self) {
        use petgraph::visit::IntoEdgeReferences;
        let mut stamps = Vec::new();
        for e in (&self.g).edge_references() {
            let tie = self.tie_of(e.id(), e.weight());
            let (a, b) = (self.node(e.source()).uid, self.node(e.target()).uid);
            let mut first = true;
            for kind in super::Kind::ALL {
                for _ in 0..tie.count(kind) {
                    let at = if first { tie.first_seen() } else { tie.last_seen() };
                    first = false;
                    stamps.push(Stamp::new(a, b, kind, super::tie::clamp_time(at)));
                }
            }
        }
        stamps.sort_unstable_by_key(|s| s.at());
        for s in stamps {
            self.timeline.push(s);
        }
    }

    /// Checks that the timeline holds, for every edge and kind, as many stamps as the edge counts,
    /// and no stamp of an absent edge. For tests of the write path.
    #[doc(hidden)]
    pub fn check_timeline(&self) -> Result<(), String> {
        use petgraph::visit::IntoEdgeReferences;
        let mut counts: FxHashMap<(u32, u32), [u64; 5]> = FxHashMap::default();
        for s in self.timeline.iter() {
            counts.entry((s.from(), s.to())).or_default()[s.kind_index()] += 1;
        }
        for e in (&self.g).edge_references() {
            let tie = self.tie_of(e.id(), e.weight());
            let key = (self.node(e.source()).uid, self.node(e.target()).uid);
            let got = counts.remove(&key).unwrap_or_default();
            for kind in super::Kind::ALL {
                if got[kind.index()] != u64::from(tie.count(kind)) {
                    return Err(format!(
                        "edge {} -> {}: {} {:?} stamps for a count of {}",
                        self.node(e.source()).key,
                        self.node(e.target()).key,
                        got[kind.index()],
                        kind,
                        tie.count(kind)
                    ));
                }
            }
        }
        match counts.into_iter().next() {
            Some(((a, b), c)) => Err(format!("stamps {c:?} for uids {a} -> {b}, which have no edge")),
            None => Ok(()),
        }
    }

    /// Pre-sizes the storage when the final size is known (loading from disk), so that a large graph
    /// does not pay for vector doubling twice over.
    pub fn reserve(&mut self, users: usize, ties: usize) {
        self.g.reserve_nodes(users);
        self.g.reserve_edges(ties);
        let g = &self.g;
        self.by_handle.reserve(users, |&i| handle_hash(g[node_index(i)].handle.as_deref().unwrap_or("")));
        self.by_key.reserve(users, |&i| key_hash(&g[node_index(i)].key));
    }

    /// Room for the graph to grow by half before any of its large tables doubles. A doubling copies
    /// the whole table while the writer holds the graph (at 9M edges, the first write after a
    /// restart, with tables sized exactly by loading, took 0.73 s and held `/status` as long); the
    /// room is address space until used, not resident memory.
    pub fn reserve_headroom(&mut self) {
        self.g.reserve_nodes(self.g.node_count() / 2 + 1024);
        self.g.reserve_edges(self.g.edge_count() / 2 + 1024);
    }

    /// Users and edges the storage holds before it must grow.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> (usize, usize) {
        self.g.capacity()
    }

    pub fn user_count(&self) -> usize {
        self.g.node_count()
    }

    pub fn tie_count(&self) -> usize {
        self.g.edge_count()
    }

    /// Interactions of every kind on every edge.
    pub fn interaction_count(&self) -> u64 {
        self.interactions
    }

    pub fn contains(&self, key: &str) -> bool {
        self.idx(key).is_some()
    }

    fn idx(&self, key: &str) -> Option<NodeIndex> {
        let g = &self.g;
        self.by_key.find(key_hash(key), |&i| &*g[node_index(i)].key == key).map(|&i| node_index(i))
    }

    fn node(&self, i: NodeIndex) -> &Node {
        &self.g[i]
    }

    /// The store's persistent id of a user.
    pub fn uid(&self, key: &str) -> Option<u32> {
        self.idx(key).map(|i| self.node(i).uid)
    }

    /// The key of the user with a store id.
    pub fn key_of_uid(&self, uid: u32) -> Option<&str> {
        let i = *self.by_uid.get(uid as usize)?;
        (i != NO_NODE).then(|| &*self.node(NodeIndex::new(i as usize)).key)
    }

    /// The latest known handle and display name of a user.
    pub fn profile(&self, key: &str) -> Option<(Option<&str>, Option<&str>)> {
        self.idx(key).map(|i| {
            let n = self.node(i);
            (n.handle.as_deref(), n.name.as_deref())
        })
    }

    /// Resolves what a client wrote to name a user: its exact key, or a handle (with or without a
    /// leading `@`, case-insensitive).
    ///
    /// # Errors
    /// [`GraphError::UserNotFound`], or [`GraphError::AmbiguousHandle`] listing the matching keys.
    pub fn resolve<'a>(&'a self, spec: &str) -> Result<&'a str, GraphError> {
        if let Some(i) = self.idx(spec) {
            return Ok(&self.node(i).key);
        }
        let handle = spec.strip_prefix('@').unwrap_or(spec);
        let matching: Vec<NodeIndex> = self
            .by_handle
            .iter_hash(handle_hash(handle))
            .map(|&i| node_index(i))
            .filter(|&i| self.node(i).handle.as_deref().is_some_and(|h| same_handle(h, handle)))
            .collect();
        match matching.as_slice() {
            [one] => Ok(&self.node(*one).key),
            [] => Err(GraphError::UserNotFound(spec.to_string())),
            many => {
                let mut keys: Vec<String> = many.iter().map(|&i| self.node(i).key.to_string()).collect();
                keys.sort();
                Err(GraphError::AmbiguousHandle { handle: spec.to_string(), keys })
            }
        }
    }

    fn view(&self, i: NodeIndex) -> UserView {
        let n = self.node(i);
        UserView {
            id: n.key.to_string(),
            handle: n.handle.as_deref().map(str::to_string),
            name: n.name.as_deref().map(str::to_string),
            in_degree: n.in_deg,
            out_degree: n.out_deg,
            degree: n.in_deg + n.out_deg,
        }
    }

    /// One user with in/out interaction counts per kind. Cost: O(degree of the user).
    pub fn user(&self, key: &str) -> Option<UserDetail> {
        let i = self.idx(key)?;
        let mut received = KindCounts::default();
        let mut made = KindCounts::default();
        for e in self.g.edges_directed(i, Direction::Incoming) {
            received.add_tie(&self.tie_of(e.id(), e.weight()));
        }
        for e in self.g.edges_directed(i, Direction::Outgoing) {
            made.add_tie(&self.tie_of(e.id(), e.weight()));
        }
        Some(UserDetail { user: self.view(i), interactions: InOut { received, made } })
    }

    /// The edge index from `a` to `b`, walking whichever adjacency list is shorter (a hub can have
    /// hundreds of thousands of followers-up; its counterpart usually has a handful).
    fn find_edge(&self, a: NodeIndex, b: NodeIndex) -> Option<EdgeIndex> {
        let (out, inc) = (self.node(a).out_deg, self.node(b).in_deg);
        if out > HUB && inc > HUB {
            return self.busy.get(&(a.index() as u32, b.index() as u32)).copied();
        }
        if out <= inc {
            self.g.edges_directed(a, Direction::Outgoing).find(|e| e.target() == b).map(|e| e.id())
        } else {
            self.g.edges_directed(b, Direction::Incoming).find(|e| e.source() == a).map(|e| e.id())
        }
    }

    /// Whether there is an edge from `a` to `b`.
    pub(crate) fn adjacent(&self, a: NodeIndex, b: NodeIndex) -> bool {
        self.find_edge(a, b).is_some()
    }

    /// The interactions from `from` to `to` and where they sit; `None` if either user is unknown.
    pub fn tie_slot(&self, from: &str, to: &str) -> Option<(Option<Tie>, TieSlot)> {
        let (a, b) = (self.idx(from)?, self.idx(to)?);
        let edge = self.find_edge(a, b);
        Some((edge.map(|e| self.tie_at(e)), TieSlot { a, b, edge }))
    }

    /// Sets an edge found by [`Graph::tie_slot`], with no removal since: no lookup at all.
    pub fn set_tie_at(&mut self, slot: &TieSlot, tie: Tie) {
        match slot.edge {
            Some(e) if tie.is_empty() => self.remove_edge(e),
            Some(e) => self.replace_tie(e, &tie),
            None if tie.is_empty() => {}
            None => self.add_edge(slot.a, slot.b, tie),
        }
    }

    /// The interactions from `from` to `to`, if any.
    pub fn tie(&self, from: &str, to: &str) -> Option<Tie> {
        let e = self.find_edge(self.idx(from)?, self.idx(to)?)?;
        Some(self.tie_at(e))
    }

    /// The tie of an edge, its counts taken from beside it if they spilled.
    fn tie_of(&self, e: EdgeIndex, packed: &Packed) -> Tie {
        packed.unpack(if packed.spilled() { self.spilled.get(&e) } else { None })
    }

    pub(crate) fn tie_at(&self, e: EdgeIndex) -> Tie {
        self.tie_of(e, &self.g[e])
    }

    /// Overwrites the tie of an existing edge with a non-empty one.
    fn replace_tie(&mut self, e: EdgeIndex, tie: &Tie) {
        let old = self.tie_at(e).total();
        self.interactions = self.interactions - old + tie.total();
        if let Some((a, b)) = self.g.edge_endpoints(e) {
            self.reweigh(a, b, old, tie.total());
        }
        let (packed, spill) = Packed::pack(tie);
        self.g[e] = packed;
        match spill {
            Some(counts) => {
                self.spilled.insert(e, counts);
            }
            None => {
                self.spilled.remove(&e);
            }
        }
    }

    pub fn tie_view(&self, from: &str, to: &str) -> Option<TieView> {
        self.tie(from, to).map(|t| tie_view(from, to, &t))
    }

    /// Every edge touching a user, as (from, to) keys. Cost: O(degree).
    pub fn ties_of(&self, key: &str) -> Vec<(String, String)> {
        let Some(i) = self.idx(key) else { return Vec::new() };
        let out = self.g.edges_directed(i, Direction::Outgoing);
        let inc = self.g.edges_directed(i, Direction::Incoming);
        out.chain(inc)
            .map(|e| (self.node(e.source()).key.to_string(), self.node(e.target()).key.to_string()))
            .collect()
    }

    /// The `limit` heaviest edges of a user (out-edges, in-edges or both), heaviest first (among
    /// equal weights, in no promised order); and how many edges there are in those directions.
    ///
    /// Cost: for a user with [`Lists`] (more than [`LISTED`] edges), O(limit · log degree): its ties
    /// of two interactions or more are kept in order of weight, and the rest are taken newest first
    /// from its lists; views are built for the chosen only. For any other user, one pass over its
    /// few edges.
    pub fn heaviest_ties_of(
        &self,
        key: &str,
        out: bool,
        inc: bool,
        limit: usize,
    ) -> Option<(u32, Vec<TieView>)> {
        let i = self.idx(key)?;
        let (out_deg, in_deg) = self.degrees_at(i);
        let count = if out { out_deg } else { 0 } + if inc { in_deg } else { 0 };
        // (from, to) of the chosen edges, heaviest first.
        let mut chosen: Vec<(NodeIndex, NodeIndex)> = Vec::with_capacity(limit.min(1024));
        match self.lists_of(i) {
            Some(l) => {
                let l = &self.lists[l];
                let none = BTreeSet::new();
                let mut outs = if out { l.heavy_out.order.iter() } else { none.iter() }.peekable();
                let mut ins = if inc { l.heavy_in.order.iter() } else { none.iter() }.peekable();
                while chosen.len() < limit {
                    let take_out = match (outs.peek(), ins.peek()) {
                        (Some(a), Some(b)) => a <= b,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => break,
                    };
                    if take_out {
                        let (_, n) = outs.next().expect("peeked");
                        chosen.push((i, node_index(*n)));
                    } else {
                        let (_, n) = ins.next().expect("peeked");
                        chosen.push((node_index(*n), i));
                    }
                }
                let singles_out = l.out.iter().rev().filter(|n| !l.heavy_out.members.contains(n));
                let singles_in = l.inc.iter().rev().filter(|n| !l.heavy_in.members.contains(n));
                let singles = singles_out
                    .take(if out { usize::MAX } else { 0 })
                    .map(|&n| (i, node_index(n)))
                    .chain(singles_in.take(if inc { usize::MAX } else { 0 }).map(|&n| (node_index(n), i)));
                let room = limit - chosen.len();
                chosen.extend(singles.take(room));
            }
            None => {
                let dirs = [(out, Direction::Outgoing), (inc, Direction::Incoming)];
                let mut all: Vec<(u64, NodeIndex, NodeIndex)> = dirs
                    .iter()
                    .filter(|(want, _)| *want)
                    .flat_map(|(_, dir)| self.g.edges_directed(i, *dir))
                    .map(|e| (self.tie_of(e.id(), e.weight()).total(), e.source(), e.target()))
                    .collect();
                all.sort_unstable_by_key(|e| Reverse(e.0));
                chosen.extend(all.into_iter().take(limit).map(|(_, a, b)| (a, b)));
            }
        }
        let views = chosen
            .into_iter()
            .filter_map(|(a, b)| {
                let e = self.find_edge(a, b)?;
                Some(tie_view(&self.node(a).key, &self.node(b).key, &self.tie_at(e)))
            })
            .collect();
        Some((count, views))
    }

    /// Adds a user or updates its profile. `None` leaves a known handle or name as it was.
    pub fn upsert_user(&mut self, uid: u32, key: &str, handle: Option<&str>, name: Option<&str>) {
        let i = match self.idx(key) {
            Some(i) => i,
            None => {
                let key: Arc<str> = Arc::from(key);
                let i = self.g.add_node(Node {
                    key: key.clone(),
                    handle: None,
                    name: None,
                    uid,
                    out_deg: 0,
                    in_deg: 0,
                    lists: NO_LISTS,
                });
                let g = &self.g;
                self.by_key
                    .insert_unique(key_hash(&key), i.index() as u32, |&j| key_hash(&g[node_index(j)].key));
                self.ordered.insert(key);
                let slot = uid as usize;
                if self.by_uid.len() <= slot {
                    self.by_uid.resize(slot + 1, NO_NODE);
                }
                self.by_uid[slot] = i.index() as u32;
                i
            }
        };
        if let Some(h) = handle {
            if self.node(i).handle.as_deref() != Some(h) {
                self.unindex_handle(i);
                self.g[i].handle = Some(h.into());
                let g = &self.g;
                self.by_handle.insert_unique(handle_hash(h), i.index() as u32, |&j| {
                    handle_hash(g[node_index(j)].handle.as_deref().unwrap_or(""))
                });
            }
        }
        if let Some(n) = name {
            if self.node(i).name.as_deref() != Some(n) {
                self.g[i].name = Some(n.into());
            }
        }
    }

    fn unindex_handle(&mut self, i: NodeIndex) {
        let Some(old) = self.g[i].handle.as_deref() else { return };
        let me = i.index() as u32;
        if let Ok(entry) = self.by_handle.find_entry(handle_hash(old), |&j| j == me) {
            entry.remove();
        }
    }

    /// Removes a user and every edge touching it. Returns false if there was no such user.
    pub fn remove_user(&mut self, key: &str) -> bool {
        let Some(i) = self.idx(key) else { return false };
        // Its own lists go first: removing its edges then only touches the other ends' lists.
        let slot = std::mem::replace(&mut self.g[i].lists, NO_LISTS);
        if slot != NO_LISTS {
            self.lists[slot as usize] = Lists { owner: NO_NODE, ..Lists::default() };
            self.free_lists.push(slot);
        }
        let edges: Vec<EdgeIndex> = self
            .g
            .edges_directed(i, Direction::Outgoing)
            .chain(self.g.edges_directed(i, Direction::Incoming))
            .map(|e| e.id())
            .collect();
        for e in edges {
            self.remove_edge(e);
        }
        self.unindex_handle(i);
        let uid = self.node(i).uid as usize;
        if let Some(slot) = self.by_uid.get_mut(uid) {
            *slot = NO_NODE;
        }
        let me = i.index() as u32;
        if let Ok(entry) = self.by_key.find_entry(key_hash(key), |&j| j == me) {
            entry.remove();
        }
        self.ordered.remove(key);
        self.g.remove_node(i);
        true
    }

    fn remove_edge(&mut self, e: EdgeIndex) {
        let Some((a, b)) = self.g.edge_endpoints(e) else { return };
        if let Some(packed) = self.g.remove_edge(e) {
            let spill = self.spilled.remove(&e);
            let total = packed.unpack(spill.as_ref()).total();
            self.interactions -= total;
            self.busy.remove(&(a.index() as u32, b.index() as u32));
            self.reweigh(a, b, total, 0);
            self.g[a].out_deg -= 1;
            self.g[b].in_deg -= 1;
            // Order-preserving: the lists keep the order edges were made in.
            let unlist = |list: &mut Vec<u32>, x: NodeIndex| {
                if let Some(p) = list.iter().rposition(|&y| y == x.index() as u32) {
                    list.remove(p);
                }
            };
            if let Some(l) = self.lists_of(a) {
                unlist(&mut self.lists[l].out, b);
            }
            if let Some(l) = self.lists_of(b) {
                unlist(&mut self.lists[l].inc, a);
            }
            // A user that is no longer busy takes its edges out of the index.
            if self.g[a].out_deg == HUB {
                let targets: Vec<u32> =
                    self.g.neighbors_directed(a, Direction::Outgoing).map(|x| x.index() as u32).collect();
                for x in targets {
                    self.busy.remove(&(a.index() as u32, x));
                }
            }
            if self.g[b].in_deg == HUB {
                let sources: Vec<u32> =
                    self.g.neighbors_directed(b, Direction::Incoming).map(|y| y.index() as u32).collect();
                for y in sources {
                    self.busy.remove(&(y, b.index() as u32));
                }
            }
        }
    }

    /// Adds an edge known to be absent, keeping degrees, totals and the busy index up to date.
    fn add_edge(&mut self, a: NodeIndex, b: NodeIndex, tie: Tie) {
        let (packed, spill) = Packed::pack(&tie);
        let e = self.g.add_edge(a, b, packed);
        if let Some(counts) = spill {
            self.spilled.insert(e, counts);
        }
        self.interactions += tie.total();
        self.g[a].out_deg += 1;
        self.g[b].in_deg += 1;
        // A user listed now has the new edge in its lists already (they are copied from the graph).
        let (listed_a, listed_b) = (self.lists_of(a), self.lists_of(b));
        match listed_a {
            Some(l) => self.lists[l].out.push(b.index() as u32),
            None => self.list_if_busy(a),
        }
        match listed_b {
            Some(l) => self.lists[l].inc.push(a.index() as u32),
            None => self.list_if_busy(b),
        }
        if let Some(l) = listed_a {
            self.lists[l].heavy_out.reweigh(b.index() as u32, 0, tie.total());
        }
        if let Some(l) = listed_b {
            self.lists[l].heavy_in.reweigh(a.index() as u32, 0, tie.total());
        }
        let (out, inc) = (self.g[a].out_deg, self.g[b].in_deg);
        let key = |x: NodeIndex, y: NodeIndex| (x.index() as u32, y.index() as u32);
        if out > HUB && inc > HUB {
            self.busy.insert(key(a, b), e);
        }
        // A user that just became busy brings its edges to other busy users into the index.
        if out == HUB + 1 {
            let found: Vec<(NodeIndex, EdgeIndex)> = self
                .g
                .edges_directed(a, Direction::Outgoing)
                .filter(|x| self.g[x.target()].in_deg > HUB)
                .map(|x| (x.target(), x.id()))
                .collect();
            for (x, id) in found {
                self.busy.insert(key(a, x), id);
            }
        }
        if inc == HUB + 1 {
            let found: Vec<(NodeIndex, EdgeIndex)> = self
                .g
                .edges_directed(b, Direction::Incoming)
                .filter(|y| self.g[y.source()].out_deg > HUB)
                .map(|y| (y.source(), y.id()))
                .collect();
            for (y, id) in found {
                self.busy.insert(key(y, b), id);
            }
        }
    }

    fn lists_of(&self, i: NodeIndex) -> Option<usize> {
        let slot = self.g[i].lists;
        (slot != NO_LISTS).then_some(slot as usize)
    }

    /// Starts neighbour lists for a user that just got more than [`LISTED`] edges.
    fn list_if_busy(&mut self, i: NodeIndex) {
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

    /// The users with lists and their degree in `order` (`None` for [`UserOrder::Key`]): a
    /// [`DegreeOrder`] to be sorted, copied in O(listed users) under the read lock, and sorted by the
    /// caller after it ([`DegreeOrder::sorted`]).
    pub fn listed_degrees(&self, order: UserOrder) -> Option<DegreeOrder> {
        let degree = |n: &Node| match order {
            UserOrder::Key => None,
            UserOrder::Degree => Some(n.in_deg + n.out_deg),
            UserOrder::InDegree => Some(n.in_deg),
            UserOrder::OutDegree => Some(n.out_deg),
        };
        let users = self
            .lists
            .iter()
            .filter(|l| l.owner != NO_NODE)
            .map(|l| {
                let n = &self.g[node_index(l.owner)];
                Some((Reverse(degree(n)?), n.key.clone()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(DegreeOrder { users, all: self.user_count(), version: self.version })
    }

    /// The tie from `a` to `b` went from `old` to `new` interactions (0: absent).
    fn reweigh(&mut self, a: NodeIndex, b: NodeIndex, old: u64, new: u64) {
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

    /// Gives back the spare capacity that growing by doubling left in the neighbour lists (after a
    /// bulk load, where every list grew from nothing).
    pub fn shrink_to_fit(&mut self) {
        self.timeline.shrink_to_fit();
        for l in &mut self.lists {
            l.out.shrink_to_fit();
            l.inc.shrink_to_fit();
        }
    }

    /// Sets the interactions from `from` to `to`; an empty tie removes the edge.
    /// Both users must exist (the write path creates them first); returns false otherwise.
    pub fn set_tie(&mut self, from: &str, to: &str, tie: Tie) -> bool {
        let (Some(a), Some(b)) = (self.idx(from), self.idx(to)) else { return false };
        match self.find_edge(a, b) {
            Some(e) if tie.is_empty() => self.remove_edge(e),
            Some(e) => self.replace_tie(e, &tie),
            None if tie.is_empty() => {}
            None => self.add_edge(a, b, tie),
        }
        true
    }

    /// Adds an edge while loading from disk, addressing users by store uid.
    pub fn load_tie(&mut self, from_uid: u32, to_uid: u32, tie: Tie) -> bool {
        let node = |uid: u32| self.by_uid.get(uid as usize).copied().filter(|&i| i != NO_NODE);
        let (Some(a), Some(b)) = (node(from_uid), node(to_uid)) else { return false };
        let (a, b) = (NodeIndex::new(a as usize), NodeIndex::new(b as usize));
        if a == b || tie.is_empty() {
            return false;
        }
        self.add_edge(a, b, tie);
        true
    }

    fn node_of_uid(&self, uid: u32) -> Option<NodeIndex> {
        self.by_uid.get(uid as usize).copied().filter(|&i| i != NO_NODE).map(|i| NodeIndex::new(i as usize))
    }

    /// Removes a user addressed by store uid (replaying the log). Returns false if unknown.
    pub fn remove_user_by_uid(&mut self, uid: u32) -> bool {
        match self.node_of_uid(uid) {
            Some(i) => {
                let key = self.node(i).key.clone();
                self.remove_user(&key)
            }
            None => false,
        }
    }

    /// Sets an edge addressed by store uids (replaying the log); an empty tie removes it.
    pub fn set_tie_by_uid(&mut self, from_uid: u32, to_uid: u32, tie: Tie) -> bool {
        let (Some(a), Some(b)) = (self.node_of_uid(from_uid), self.node_of_uid(to_uid)) else { return false };
        let (from, to) = (self.node(a).key.clone(), self.node(b).key.clone());
        self.set_tie(&from, &to, tie)
    }

    /// Visits every user with its uid, key, handle and name (for snapshots). Cost: O(users).
    pub fn for_each_user(&self, mut f: impl FnMut(u32, &str, Option<&str>, Option<&str>)) {
        for n in self.g.node_weights() {
            f(n.uid, &n.key, n.handle.as_deref(), n.name.as_deref());
        }
    }

    /// Visits every edge as (from uid, to uid, tie) (for snapshots). Cost: O(edges).
    pub fn for_each_tie(&self, mut f: impl FnMut(u32, u32, &Tie)) {
        use petgraph::visit::IntoEdgeReferences;
        for e in (&self.g).edge_references() {
            f(self.node(e.source()).uid, self.node(e.target()).uid, &self.tie_of(e.id(), e.weight()));
        }
    }

    /// Visits every interaction of the timeline as (from uid, to uid, kind, time) (for snapshots).
    pub fn for_each_stamp(&self, mut f: impl FnMut(u32, u32, super::Kind, u32)) {
        for s in self.timeline.iter() {
            f(s.from(), s.to(), s.kind(), s.at());
        }
    }

    /// A page of users. Ordered by key: O(limit · log n). Ordered by degree: O(n · log limit), a scan
    /// of every user (a few milliseconds per million).
    /// A page of users after a cursor: the `next` of a previous page, `"<degree>:<key>"` of the last
    /// user shown (the degree is 0 in key order), as [`parse_user_cursor`] reads it.
    pub fn users_page(&self, order: UserOrder, after: Option<(u32, &str)>, limit: usize) -> Page<UserView> {
        match order {
            UserOrder::Key => {
                let start = match after {
                    Some((_, k)) => Bound::Excluded(k),
                    None => Bound::Unbounded,
                };
                let mut iter = self.ordered.range::<str, _>((start, Bound::Unbounded));
                let items: Vec<UserView> =
                    iter.by_ref().take(limit).filter_map(|k| self.idx(k)).map(|i| self.view(i)).collect();
                let next =
                    (iter.next().is_some()).then(|| items.last().map(|u| format!("0:{}", u.id))).flatten();
                Page { items, next }
            }
            _ => self.users_by_degree(order, after, limit),
        }
    }

    /// A page of users by a degree, by a scan of every user: O(users · log limit).
    fn users_by_degree(&self, order: UserOrder, cursor: Option<(u32, &str)>, limit: usize) -> Page<UserView> {
        use std::collections::BinaryHeap;
        let degree = |n: &Node| match order {
            UserOrder::InDegree => n.in_deg,
            UserOrder::OutDegree => n.out_deg,
            _ => n.in_deg + n.out_deg,
        };
        // The cursor is "<degree>:<key>" of the last user shown; rank = (Reverse(degree), key).
        let is_after = |d: u32, k: &str| match cursor {
            None => true,
            Some((cd, ck)) => d < cd || (d == cd && k > ck),
        };
        // Max-heap on rank keeps the `limit + 1` smallest ranks seen.
        let mut heap: BinaryHeap<(Reverse<u32>, &str)> = BinaryHeap::with_capacity(limit.min(4096) + 2);
        for n in self.g.node_weights() {
            let d = degree(n);
            if !is_after(d, &n.key) {
                continue;
            }
            let rank = (Reverse(d), &*n.key);
            if heap.len() <= limit {
                heap.push(rank);
            } else if let Some(top) = heap.peek() {
                if rank < *top {
                    heap.pop();
                    heap.push(rank);
                }
            }
        }
        let mut ranked = heap.into_sorted_vec();
        let more = ranked.len() > limit;
        ranked.truncate(limit);
        let items: Vec<UserView> =
            ranked.iter().filter_map(|(_, k)| self.idx(k)).map(|i| self.view(i)).collect();
        let next = if more { ranked.last().map(|(Reverse(d), k)| format!("{d}:{k}")) } else { None };
        Page { items, next }
    }

    /// A page of edges ordered by (from key, to key). `after` is the cursor of the previous page.
    /// Cost: O(limit + degree of the users crossed), each user's out-edges sorted by target key.
    pub fn ties_page(&self, after: Option<(&str, &str)>, limit: usize) -> Page<TieView> {
        let mut items = Vec::with_capacity(limit.min(1024));
        let start = match after {
            Some((from, _)) => Bound::Included(from),
            None => Bound::Unbounded,
        };
        let mut next = None;
        'users: for key in self.ordered.range::<str, _>((start, Bound::Unbounded)) {
            let Some(i) = self.idx(key) else { continue };
            let mut outs: Vec<(&str, Tie)> = self
                .g
                .edges_directed(i, Direction::Outgoing)
                .map(|e| (&*self.node(e.target()).key, self.tie_of(e.id(), e.weight())))
                .collect();
            outs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (to, tie) in outs {
                if let Some((af, at)) = after {
                    if &**key == af && to <= at {
                        continue;
                    }
                }
                if items.len() == limit {
                    next = items.last().map(|t: &TieView| encode_pair(&t.from, &t.to));
                    break 'users;
                }
                items.push(tie_view(key, to, &tie));
            }
        }
        Page { items, next }
    }

    /// Resolves a pair of user specs to keys (see [`Graph::resolve`]).
    pub fn resolve_pair<'a>(&'a self, a: &str, b: &str) -> Result<(&'a str, &'a str), GraphError> {
        Ok((self.resolve(a)?, self.resolve(b)?))
    }

    pub(crate) fn index_of(&self, key: &str) -> Option<NodeIndex> {
        self.idx(key)
    }

    pub(crate) fn key_at(&self, i: NodeIndex) -> &str {
        &self.node(i).key
    }

    pub(crate) fn view_at(&self, i: NodeIndex) -> UserView {
        self.view(i)
    }

    pub(crate) fn degrees_at(&self, i: NodeIndex) -> (u32, u32) {
        let n = self.node(i);
        (n.out_deg, n.in_deg)
    }

    /// Upper bound of node indices, for scratch arrays indexed by node.
    pub(crate) fn node_bound(&self) -> usize {
        self.g.node_indices().next_back().map_or(0, |i| i.index() + 1)
    }

    /// The subgraph worth drawing: the `top` users of highest degree (in + out, ties broken by key,
    /// the order of [`UserOrder::Degree`]) and, of the edges among them with at least `min_weight`
    /// interactions, the `max_edges` heaviest, heaviest first, then by (from, to); and how many
    /// edges there are among them in all.
    ///
    /// Cost: O(users · log top) to pick the users (one scan with a bounded heap); then per chosen
    /// user the cheaper of walking its out-edges or looking each other chosen user up (two busy
    /// users' edge is in a hash), so at most top² steps, not the sum of the hubs' degrees; views are
    /// built for the `max_edges` kept only.
    pub fn top_subgraph(&self, top: usize, min_weight: u64, max_edges: usize) -> Subgraph {
        self.subgraph_among(self.users_by_degree(UserOrder::Degree, None, top).items, min_weight, max_edges)
    }

    /// [`Graph::top_subgraph`] of users already chosen (the first page of a [`DegreeOrder`]), in one
    /// go: [`Graph::edges_among`] then [`Graph::heaviest_drawn`].
    pub fn subgraph_among(&self, users: Vec<UserView>, min_weight: u64, max_edges: usize) -> Subgraph {
        let keys: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let found = self.edges_among(&keys, &keys, min_weight);
        let (ties, among) = self.heaviest_drawn(found, max_edges);
        Subgraph { users, ties, among }
    }

    /// The edges from each user of `from` to any user of `among` (keys) with at least `min_weight`
    /// interactions, as (total, from, to). Cost: per user of `from`, the cheaper of walking its
    /// out-edges (membership in `among` is a bitmap by node) or looking up its edge to each user of
    /// `among` (two busy users' edge is in a hash): so at most |from| · |among| steps, not the sum
    /// of the hubs' degrees. Callers may split `from` into chunks, each under a short read lock.
    pub fn edges_among(
        &self,
        from: &[&str],
        among: &[&str],
        min_weight: u64,
    ) -> Vec<(u64, Arc<str>, Arc<str>)> {
        let among: Vec<NodeIndex> = among.iter().filter_map(|k| self.idx(k)).collect();
        let mut member = vec![0u64; self.node_bound().div_ceil(64)];
        for j in &among {
            member[j.index() / 64] |= 1 << (j.index() % 64);
        }
        let is_member = |j: NodeIndex| member[j.index() / 64] & (1 << (j.index() % 64)) != 0;
        let mut found = Vec::new();
        for i in from.iter().filter_map(|k| self.idx(k)) {
            let mut keep = |e: EdgeIndex, j: NodeIndex| {
                let total = self.tie_at(e).total();
                if total >= min_weight {
                    found.push((total, self.node(i).key.clone(), self.node(j).key.clone()));
                }
            };
            let out_deg = self.node(i).out_deg as usize;
            match self.lists_of(i) {
                // Contiguous: a step of the walk costs about a fiftieth of a lookup.
                Some(l) if out_deg <= 50 * among.len() => {
                    for &j in &self.lists[l].out {
                        let j = node_index(j);
                        if is_member(j) {
                            if let Some(e) = self.find_edge(i, j) {
                                keep(e, j);
                            }
                        }
                    }
                }
                None if out_deg <= among.len() => {
                    for e in self.g.edges_directed(i, Direction::Outgoing) {
                        if is_member(e.target()) {
                            keep(e.id(), e.target());
                        }
                    }
                }
                _ => {
                    for &j in &among {
                        if let Some(e) = self.find_edge(i, j).filter(|_| i != j) {
                            keep(e, j);
                        }
                    }
                }
            }
        }
        found
    }

    /// Of edges found by [`Graph::edges_among`], the `max_edges` heaviest as views, heaviest first,
    /// then by (from, to); and how many there were. Edges gone since they were found are left out.
    pub fn heaviest_drawn(
        &self,
        mut found: Vec<(u64, Arc<str>, Arc<str>)>,
        max_edges: usize,
    ) -> (Vec<TieView>, usize) {
        let among = found.len();
        let order = |a: &(u64, Arc<str>, Arc<str>), b: &(u64, Arc<str>, Arc<str>)| {
            b.0.cmp(&a.0).then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2)))
        };
        if found.len() > max_edges && max_edges > 0 {
            found.select_nth_unstable_by(max_edges - 1, order);
        }
        found.truncate(max_edges);
        found.sort_unstable_by(order);
        let ties = found.into_iter().filter_map(|(_, a, b)| self.tie_view(&a, &b)).collect();
        (ties, among)
    }
}

fn node_index(i: u32) -> NodeIndex {
    NodeIndex::new(i as usize)
}

fn key_hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// Hash of a handle as compared: case-insensitively (full Unicode lowercase, no copy made).
fn handle_hash(handle: &str) -> u64 {
    let mut h = FxHasher::default();
    for c in handle.chars().flat_map(char::to_lowercase) {
        h.write_u32(c as u32);
    }
    h.finish()
}

fn same_handle(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// Builds the API view of an edge.
pub fn tie_view(from: &str, to: &str, tie: &Tie) -> TieView {
    let mut kinds = KindCounts::default();
    kinds.add_tie(tie);
    TieView {
        from: from.to_string(),
        to: to.to_string(),
        total: tie.total(),
        kinds,
        first_seen: super::tie::rfc3339(tie.first_seen()),
        last_seen: super::tie::rfc3339(tie.last_seen()),
    }
}

/// Encodes an edge cursor as hex of `from \n to` (keys never contain control characters), so that it
/// is URL-safe and opaque.
pub fn encode_pair(from: &str, to: &str) -> String {
    let mut s = String::with_capacity(2 * (from.len() + to.len() + 1));
    for b in from.bytes().chain([b'\n']).chain(to.bytes()) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The inverse of [`encode_pair`]: any even run of hex digits is a position in the order of pairs
/// (what is not UTF-8 is read lossily; with no newline, the pair's second key is empty). `None`
/// for anything else, so that the contract can state exactly which cursors are accepted.
pub fn decode_pair(cursor: &str) -> Option<(String, String)> {
    if cursor.len() % 2 != 0 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> =
        (0..cursor.len()).step_by(2).filter_map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).ok()).collect();
    let s = String::from_utf8_lossy(&bytes);
    let (a, b) = s.split_once('\n').unwrap_or((&s, ""));
    Some((a.to_string(), b.to_string()))
}

/// A users cursor, `"<degree>:<key>"` (see [`Graph::users_page`]); `None` for anything else. A
/// degree too large for a `u32` is the largest.
pub fn parse_user_cursor(cursor: &str) -> Option<(u32, &str)> {
    let (d, k) = cursor.split_once(':')?;
    if d.is_empty() || d.len() > 10 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((d.parse::<u64>().ok()?.min(u64::from(u32::MAX)) as u32, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Kind;

    use crate::graph::testkit::tie_of as tie;

    #[test]
    fn heavy_edges_keep_exact_counts_through_updates_removal_and_index_reuse() {
        let mut g = sample();
        let heavy = tie(Kind::Quote, 5_000);
        g.set_tie("x:3", "x:1", heavy);
        assert_eq!(g.tie("x:3", "x:1"), Some(heavy));
        assert_eq!(g.interaction_count(), 4 + 5_000);
        assert_eq!(g.user("x:1").unwrap().interactions.received.quote, 5_000);
        assert_eq!(g.ties_page(None, 10).items.iter().map(|t| t.total).max(), Some(5_000));
        // Back under the packed limit: the spilled counts go.
        let light = tie(Kind::Quote, 3);
        g.set_tie("x:3", "x:1", light);
        assert_eq!((g.tie("x:3", "x:1"), g.spilled.len()), (Some(light), 0));
        g.set_tie("x:3", "x:1", heavy);
        assert!(g.remove_user("x:3"));
        assert_eq!((g.spilled.len(), g.interaction_count()), (0, 4 - 1));
        // The freed edge slot is reused by a light edge, which must not pick up the old counts.
        g.upsert_user(3, "x:4", None, None);
        g.set_tie("x:4", "x:1", light);
        assert_eq!(g.tie("x:4", "x:1"), Some(light));
        let mut sum = 0;
        g.for_each_tie(|_, _, t| sum += t.total());
        assert_eq!(sum, g.interaction_count());
    }

    fn sample() -> Graph {
        let mut g = Graph::new();
        g.upsert_user(0, "x:1", Some("Alice"), Some("Alice A."));
        g.upsert_user(1, "x:2", Some("bob"), None);
        g.upsert_user(2, "x:3", None, None);
        g.set_tie("x:1", "x:2", tie(Kind::Repost, 2));
        g.set_tie("x:3", "x:2", tie(Kind::Mention, 1));
        g.set_tie("x:2", "x:1", tie(Kind::Reply, 1));
        g
    }

    #[test]
    fn degrees_and_counts_follow_edge_changes() {
        let mut g = sample();
        assert_eq!((g.user_count(), g.tie_count(), g.interaction_count()), (3, 3, 4));
        let bob = g.user("x:2").unwrap();
        assert_eq!((bob.user.in_degree, bob.user.out_degree), (2, 1));
        assert_eq!(bob.interactions.received.repost, 2);
        assert_eq!(bob.interactions.received.mention, 1);
        assert_eq!(bob.interactions.made.reply, 1);
        g.set_tie("x:1", "x:2", Tie::default());
        assert_eq!((g.tie_count(), g.interaction_count()), (2, 2));
        assert_eq!(g.user("x:2").unwrap().user.in_degree, 1);
        assert!(g.remove_user("x:2"));
        assert_eq!((g.user_count(), g.tie_count(), g.interaction_count()), (2, 0, 0));
        assert_eq!(g.user("x:1").unwrap().user.degree, 0);
        assert!(!g.remove_user("x:2"));
    }

    #[test]
    fn resolve_accepts_keys_and_handles_case_insensitively() {
        let mut g = sample();
        assert_eq!(g.resolve("x:1"), Ok("x:1"));
        assert_eq!(g.resolve("@alice"), Ok("x:1"));
        assert_eq!(g.resolve("ALICE"), Ok("x:1"));
        assert_eq!(g.resolve("@nobody"), Err(GraphError::UserNotFound("@nobody".into())));
        g.upsert_user(3, "mastodon:alice@example.org", Some("alice"), None);
        assert_eq!(
            g.resolve("@Alice"),
            Err(GraphError::AmbiguousHandle {
                handle: "@Alice".into(),
                keys: vec!["mastodon:alice@example.org".into(), "x:1".into()]
            })
        );
        // A renamed user is found under the new handle only.
        g.upsert_user(0, "x:1", Some("alice_new"), None);
        assert_eq!(g.resolve("@alice"), Ok("mastodon:alice@example.org"));
        assert_eq!(g.resolve("@alice_new"), Ok("x:1"));
    }

    #[test]
    fn users_page_by_key_walks_every_user_once() {
        let mut g = Graph::new();
        for n in 0..25u32 {
            g.upsert_user(n, &format!("u{n:02}"), None, None);
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = g.users_page(UserOrder::Key, after.as_deref().and_then(parse_user_cursor), 10);
            seen.extend(page.items.iter().map(|u| u.id.clone()));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let expected: Vec<String> = (0..25).map(|n| format!("u{n:02}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn users_page_by_degree_is_descending_and_complete() {
        let mut g = Graph::new();
        for n in 0..30u32 {
            g.upsert_user(n, &format!("u{n:02}"), None, None);
        }
        for n in 1..30u32 {
            for m in 0..(n % 7) {
                g.set_tie(&format!("u{m:02}"), &format!("u{n:02}"), tie(Kind::Mention, 1));
            }
        }
        let mut seen: Vec<(u32, String)> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = g.users_page(UserOrder::Degree, after.as_deref().and_then(parse_user_cursor), 4);
            seen.extend(page.items.iter().map(|u| (u.degree, u.id.clone())));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), 30, "every user exactly once");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(seen, sorted);
    }

    #[test]
    fn ties_page_walks_every_edge_once_in_order() {
        let g = sample();
        let mut seen = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = g.ties_page(after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), 2);
            seen.extend(page.items.iter().map(|t| (t.from.clone(), t.to.clone())));
            match page.next {
                Some(c) => after = Some(decode_pair(&c).unwrap()),
                None => break,
            }
        }
        let pairs: Vec<(&str, &str)> = seen.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(pairs, vec![("x:1", "x:2"), ("x:2", "x:1"), ("x:3", "x:2")]);
    }

    #[test]
    fn pair_cursor_round_trips_and_rejects_garbage() {
        let c = encode_pair("x:1", "mastodon:ü@example.org");
        assert_eq!(decode_pair(&c), Some(("x:1".into(), "mastodon:ü@example.org".into())));
        assert_eq!(decode_pair("zz"), None);
        assert_eq!(decode_pair("+f"), None);
        assert_eq!(decode_pair("61"), Some(("a".into(), String::new())));
        assert_eq!(parse_user_cursor("12:x:1"), Some((12, "x:1")));
        assert_eq!(parse_user_cursor("99999999999:a"), None);
        assert_eq!(parse_user_cursor("9999999999:a"), Some((u32::MAX, "a")));
        assert_eq!(parse_user_cursor("+1:a"), None);
        assert_eq!(decode_pair("abc"), None);
    }

    #[test]
    fn edge_lookup_between_busy_users_stays_exact_through_adds_and_removals() {
        // A dense core of 80 users (degrees well above HUB) plus a sparse fringe, mutated at random;
        // every lookup must agree with a plain scan of the edge list.
        let mut g = Graph::new();
        let n = 120u32;
        for u in 0..n {
            g.upsert_user(u, &format!("u{u}"), None, None);
        }
        let mut rng = crate::rng::SplitMix64::new(99);
        let mut next = || rng.next_u64();
        let scan = |g: &Graph, a: &str, b: &str| {
            let (Some(ia), Some(ib)) = (g.idx(a), g.idx(b)) else { return false };
            g.g.edge_indices().any(|e| g.g.edge_endpoints(e) == Some((ia, ib)))
        };
        for step in 0..20_000u32 {
            let core = |x: u64| if x % 4 == 0 { x % u64::from(n) } else { x % 80 };
            let (a, b) = (format!("u{}", core(next())), format!("u{}", core(next())));
            match next() % 20 {
                0 => {
                    g.set_tie(&a, &b, Tie::default());
                }
                1 if step % 50 == 0 => {
                    g.remove_user(&a);
                    let uid = a[1..].parse().unwrap();
                    g.upsert_user(uid, &a, None, None);
                }
                _ if a != b => {
                    g.set_tie(&a, &b, tie(Kind::Mention, 1));
                }
                _ => {}
            }
            let (x, y) = (format!("u{}", core(next())), format!("u{}", core(next())));
            assert_eq!(g.tie(&x, &y).is_some(), scan(&g, &x, &y), "step {step}: {x} -> {y}");
        }
        let busy = g.g.node_weights().filter(|w| w.out_deg > HUB).count();
        assert!(busy > 20, "the test exercised busy users ({busy})");
        // Neighbour lists: exactly the users above LISTED that were not removed since have them,
        // each the same set as petgraph's adjacency.
        let mut listed = 0;
        for i in g.g.node_indices() {
            let Some(l) = g.lists_of(i) else { continue };
            listed += 1;
            for (dir, list) in
                [(Direction::Outgoing, &g.lists[l].out), (Direction::Incoming, &g.lists[l].inc)]
            {
                let mut want: Vec<u32> = g.g.neighbors_directed(i, dir).map(|x| x.index() as u32).collect();
                let mut got = list.clone();
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want, "lists of {}", g.g[i].key);
                let mut seen = Vec::new();
                assert!(g.neighbors_while(i, dir, |v| {
                    seen.push(v.index() as u32);
                    true
                }));
                seen.sort_unstable();
                assert_eq!(seen, want);
            }
        }
        assert!(listed > 20, "the test exercised neighbour lists ({listed})");
        assert_eq!(listed + g.free_lists.len(), g.lists.len(), "every slot is used or free");
        // The index holds exactly the edges between busy ends.
        let want =
            g.g.edge_indices()
                .filter(|&e| {
                    let (a, b) = g.g.edge_endpoints(e).unwrap();
                    g.g[a].out_deg > HUB && g.g[b].in_deg > HUB
                })
                .count();
        assert_eq!(g.busy.len(), want);
    }

    #[test]
    fn load_tie_by_uid_rebuilds_the_same_graph() {
        let mut g = Graph::new();
        g.upsert_user(5, "a", None, None);
        g.upsert_user(9, "b", None, None);
        assert!(g.load_tie(5, 9, tie(Kind::Quote, 3)));
        assert!(!g.load_tie(5, 7, tie(Kind::Quote, 1)), "unknown uid is refused");
        assert_eq!(g.tie("a", "b").map(|t| t.count(Kind::Quote)), Some(3));
        assert_eq!(g.key_of_uid(9), Some("b"));
        assert_eq!(g.key_of_uid(7), None);
    }

    #[test]
    fn top_subgraph_keeps_the_busiest_users_and_only_heavy_enough_edges_among_them() {
        let mut g = Graph::new();
        for (uid, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            g.upsert_user(uid as u32, key, None, None);
        }
        g.set_tie("a", "b", tie(Kind::Repost, 3));
        g.set_tie("b", "a", tie(Kind::Reply, 1));
        g.set_tie("a", "c", tie(Kind::Mention, 2));
        g.set_tie("c", "b", tie(Kind::Quote, 1));
        g.set_tie("d", "a", tie(Kind::Mention, 1));
        g.set_tie("e", "d", tie(Kind::Manual, 5));
        // Degrees: a 4, b 3, c 2, d 2, e 1; c beats d on key.
        let ids = |users: &[UserView]| users.iter().map(|u| u.id.clone()).collect::<Vec<_>>();
        let edges = |ties: &[TieView]| {
            ties.iter().map(|t| (t.from.clone(), t.to.clone(), t.total)).collect::<Vec<_>>()
        };
        let e = |a: &str, b: &str, n: u64| (a.to_string(), b.to_string(), n);

        let Subgraph { users, ties, among } = g.top_subgraph(3, 1, 100);
        assert_eq!(among, 4);
        assert_eq!(ids(&users), ["a", "b", "c"]);
        assert_eq!(users[0].degree, 4);
        assert_eq!(
            edges(&ties),
            [e("a", "b", 3), e("a", "c", 2), e("b", "a", 1), e("c", "b", 1)],
            "edges to d and e are left out, even the heaviest"
        );
        assert_eq!(ties[0].kinds.repost, 3);

        let ties = g.top_subgraph(3, 2, 100).ties;
        assert_eq!(edges(&ties), [e("a", "b", 3), e("a", "c", 2)], "min_weight drops lighter edges");
        let cut = g.top_subgraph(3, 1, 3);
        assert_eq!(edges(&cut.ties), [e("a", "b", 3), e("a", "c", 2), e("b", "a", 1)], "the heaviest kept");
        assert_eq!(cut.among, 4);

        let Subgraph { users, ties, .. } = g.top_subgraph(100, 1, 100);
        assert_eq!(ids(&users), ["a", "b", "c", "d", "e"], "top above the user count takes everyone");
        assert_eq!(ties.len(), g.tie_count());
        assert_eq!(edges(&ties)[0], e("e", "d", 5));

        assert_eq!(g.top_subgraph(0, 1, 100), Subgraph { users: vec![], ties: vec![], among: 0 });
        assert_eq!(Graph::new().top_subgraph(10, 1, 100).ties, vec![]);
    }

    /// A graph with hubs (skewed targets, weights 1-5) and holes in the indices.
    fn hubby(users: u32, edges: u32, seed: u64) -> Graph {
        crate::graph::testkit::skewed(users, edges, seed, 5, 13)
    }

    #[test]
    fn a_user_s_heaviest_edges_are_those_a_full_sort_puts_first() {
        /// Checks every user's heaviest edges against a full sort of its edges: the same weights in
        /// the same order, distinct edges that exist, every edge heavier than the last one shown.
        fn check(g: &Graph, keys: &[String]) {
            for key in keys {
                for (out, inc) in [(true, true), (true, false), (false, true)] {
                    let all: Vec<TieView> = g
                        .ties_of(key)
                        .into_iter()
                        .filter(|(a, _)| if a == key { out } else { inc })
                        .filter_map(|(a, b)| g.tie_view(&a, &b))
                        .collect();
                    let mut totals: Vec<u64> = all.iter().map(|t| t.total).collect();
                    totals.sort_unstable_by(|a, b| b.cmp(a));
                    for limit in [1, 3, 50, 10_000] {
                        let (count, top) = g.heaviest_ties_of(key, out, inc, limit).unwrap();
                        let what = format!("{key} out={out} in={inc} limit={limit}");
                        assert_eq!(count as usize, all.len(), "{what}");
                        let got: Vec<u64> = top.iter().map(|t| t.total).collect();
                        assert_eq!(got, totals[..limit.min(totals.len())], "{what}");
                        let distinct: BTreeSet<(&str, &str)> =
                            top.iter().map(|t| (t.from.as_str(), t.to.as_str())).collect();
                        assert_eq!(distinct.len(), top.len(), "{what}: an edge twice");
                        for t in &top {
                            assert_eq!(g.tie_view(&t.from, &t.to).as_ref(), Some(t), "{what}");
                        }
                        let cut = got.last().copied().unwrap_or(0);
                        let heavier = all.iter().filter(|t| t.total > cut).count();
                        assert!(top.iter().filter(|t| t.total > cut).count() == heavier, "{what}");
                    }
                }
            }
        }
        let mut g = hubby(300, 6_000, 5);
        assert!(g.listed_users() > 5, "hubs have lists");
        let keys: Vec<String> = ["u1", "u2", "u7", "u150", "u298"].map(String::from).to_vec();
        check(&g, &keys);
        // Weights that change, edges and users removed, a user listed late: the orders follow.
        let mut rng = crate::rng::SplitMix64::new(11);
        for step in 0..3_000u32 {
            let (a, b) = (format!("u{}", rng.below(300)), format!("u{}", rng.below(40)));
            if a == b {
                continue;
            }
            let old = g.tie(&a, &b).map_or(0, |t| t.total()) as u32;
            let new = match step % 5 {
                0 => 0,
                1 => 1,
                _ => old + 1 + rng.below(3) as u32,
            };
            g.set_tie(&a, &b, tie(Kind::Repost, new));
        }
        g.remove_user("u3");
        check(&g, &keys);
        assert!(g.heaviest_ties_of("nobody", true, true, 5).is_none());
        // Limits are the caller's: the largest is "all", not an allocation that overflows.
        assert_eq!(g.heaviest_ties_of("u1", true, true, usize::MAX).unwrap().1.len(), g.ties_of("u1").len());
        assert_eq!(g.users_page(UserOrder::Degree, None, usize::MAX).items.len(), g.user_count());
    }

    /// A degree order gives the pages a scan of every user gives, as edges come and go.
    #[test]
    fn users_by_degree_from_a_degree_order_are_those_of_a_scan() {
        let mut g = hubby(2_000, 30_000, 9);
        let mut rng = crate::rng::SplitMix64::new(3);
        for round in 0..4 {
            for order in [UserOrder::Degree, UserOrder::InDegree, UserOrder::OutDegree] {
                let ranked = g.listed_degrees(order).unwrap().sorted();
                let mut cursor: Option<String> = None;
                let mut fast = 0;
                for _ in 0..40 {
                    let c = cursor.as_deref().and_then(parse_user_cursor);
                    let scan = g.users_by_degree(order, c, 7);
                    if let Some(page) = ranked.page(&g, c, 7) {
                        assert_eq!(page.items, scan.items, "round {round} {order:?} after {cursor:?}");
                        assert_eq!(page.next, scan.next, "round {round} {order:?} after {cursor:?}");
                        fast += 1;
                    }
                    match scan.next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
                let top = g.users_by_degree(order, None, 1).items[0].clone();
                let top_degree = match order {
                    UserOrder::InDegree => top.in_degree,
                    UserOrder::OutDegree => top.out_degree,
                    _ => top.degree,
                };
                assert!(fast > 0 || top_degree <= LISTED, "the first pages come from the order ({order:?})");
            }
            assert!(g.listed_degrees(UserOrder::Key).is_none());
            for _ in 0..2_000 {
                let (a, b) = (format!("u{}", rng.below(2_000)), format!("u{}", rng.below(60)));
                if a != b {
                    let new = if rng.below(4) == 0 { 0 } else { 1 };
                    g.set_tie(&a, &b, tie(Kind::Mention, new));
                }
            }
            g.remove_user(&format!("u{}", 10 + round));
        }
    }

    #[test]
    fn the_top_subgraph_has_every_edge_among_the_busiest_users() {
        let g = hubby(400, 8_000, 9);
        for (top, min_weight) in [(5, 1), (40, 1), (40, 4), (400, 1)] {
            let Subgraph { users, ties, among } = g.top_subgraph(top, min_weight, usize::MAX);
            let chosen: std::collections::HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
            let mut want: Vec<TieView> = chosen
                .iter()
                .flat_map(|k| g.ties_of(k))
                .filter(|(a, b)| a != b && chosen.contains(a.as_str()) && chosen.contains(b.as_str()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter_map(|(a, b)| g.tie_view(&a, &b))
                .filter(|t| t.total >= min_weight)
                .collect();
            want.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to))));
            assert_eq!(among, want.len());
            assert_eq!(ties, want, "top={top} min_weight={min_weight}");
            let cut = g.top_subgraph(top, min_weight, 7).ties;
            assert_eq!(cut, want[..want.len().min(7)], "the 7 heaviest, top={top}");
            // Found a few users at a time (as `/graph` does, one read lock each): the same edges.
            let keys: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
            let found: Vec<_> = keys.chunks(3).flat_map(|c| g.edges_among(c, &keys, min_weight)).collect();
            assert_eq!(g.heaviest_drawn(found, usize::MAX), (want, among), "chunked, top={top}");
        }
    }
}
