//! The in-memory interaction graph: a petgraph `StableGraph` of users joined by [`Tie`]s.
//!
//! `StableGraph` keeps node and edge indices valid across removals (plain `Graph::remove_node` moves
//! the last node into the hole), so the key -> index map never needs fixing up. Indices stay private:
//! every public method speaks in user keys.

use super::lists::Lists;
use super::tie::{KindCounts, Packed, Spill, Tie};
use super::timeline::{Purge, Stamp, Timeline};
use super::views::{InOut, TieView, UserDetail, UserView};
use hashbrown::HashTable;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use petgraph::{Directed, Direction};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHasher};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
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

#[derive(Clone)]
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
    pub(super) lists: u32,
}

/// The interaction graph. Cheap to query under a read lock; mutated only by the store's write path.
pub struct Graph {
    pub(crate) g: StableGraph<Node, Packed, Directed, u32>,
    /// Full counts of the edges whose packed tie spilled (some count above 4,095): rare.
    spilled: FxHashMap<EdgeIndex, Spill>,
    /// Key -> node, for lookups (every write looks up several keys: a hash, not a tree walk). A
    /// table of node indices hashed by the key they point at: 9 bytes a slot, where a map from key
    /// to index took 25.
    by_key: HashTable<Slot>,
    /// The same keys in order, so that listing users pages by key without sorting.
    pub(super) ordered: BTreeSet<Arc<str>>,
    /// Handle -> users with that handle (usually one): node indices hashed by the lowercased
    /// handle, several entries where users share one. No lowercased copies are kept.
    by_handle: HashTable<Slot>,
    /// Store uid -> node index (`u32::MAX` where none), to resolve on-disk references.
    pub(super) by_uid: Vec<u32>,
    interactions: u64,
    /// Edges between two busy users: exactly the edges (a, b) with out_deg(a) > HUB and
    /// in_deg(b) > HUB. Finding any other edge walks an adjacency list of at most HUB entries; these
    /// would walk thousands (hubs both act and are acted upon), so they are indexed. Typically a
    /// small fraction of all edges.
    busy: FxHashMap<(u32, u32), EdgeIndex>,
    /// Neighbour lists of users with more than [`LISTED`] edges (in + out), and free slots.
    pub(super) lists: Vec<Lists>,
    pub(super) free_lists: Vec<u32>,
    /// One stamp per interaction, for exact counts over any time window.
    pub(crate) timeline: Timeline,
    /// Bumped by every change the write path applies: what cached analyses are checked against.
    pub(super) version: u64,
    /// Open [`super::cut::Cut`]s (a checkpoint's, a backup's): changes keep before-images for them.
    pub(super) cuts: Vec<Arc<super::cut::Cut>>,
}

/// Degree above which a user counts as busy for [`Graph::busy`].
const HUB: u32 = 32;

pub(super) const NO_NODE: u32 = u32::MAX;

/// Degree (in + out) above which a user's neighbours are also kept as [`Lists`]. Around a third of
/// a heavy-tailed graph's edge ends belong to such users; the copies cost about 4 bytes each.
pub(super) const LISTED: u32 = 32;

pub(super) const NO_LISTS: u32 = u32::MAX;

/// Where an edge between two existing users is (or would go), as found by [`Graph::tie_slot`]. Opaque:
/// it lets the write path apply a change without looking the pair up again, and is only valid until
/// the next removal of a user or an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieSlot {
    a: NodeIndex,
    b: NodeIndex,
    edge: Option<EdgeIndex>,
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
            cuts: Vec::new(),
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

    #[cfg(test)]
    /// Checks that the timeline holds, for every edge and kind, as many stamps as the edge counts,
    /// and no stamp of an absent edge. For tests of the write path.
    #[doc(hidden)]
    pub(crate) fn check_timeline(&self) -> Result<(), String> {
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
    pub(crate) fn reserve(&mut self, users: usize, ties: usize) {
        self.g.reserve_nodes(users);
        self.g.reserve_edges(ties);
        self.by_handle.reserve(users, Slot::hash);
        self.by_key.reserve(users, Slot::hash);
    }

    /// Room for the graph to grow to four times its size before its node or edge vector must grow
    /// (address space until used, not resident memory: pages are touched as the vectors fill), so
    /// that the writes after a restart do not pay for growing them at all.
    pub(crate) fn reserve_headroom(&mut self) {
        self.g.reserve_nodes(self.g.node_count() * 3 + (1 << 16));
        self.g.reserve_edges(self.g.edge_count() * 3 + (1 << 16));
    }

    /// The storage that `users` more users and `ties` more edges would make double, grown: built
    /// under a read lock, so that the copy does not happen under the write lock with every read
    /// waiting. A vector that doubles in place copies all of it into fresh memory: petgraph's node
    /// vector (72 bytes a user) held the graph 0.3-1.3 s at 2M and 4M users, its edge vector would
    /// hold it longer, and a key index's rehash took tens of milliseconds at a million users. Here
    /// the readers go on while the copy is made, and the write lock only swaps it in. The write
    /// path, sole mutator of the graph, asks before a commit and hands the result to
    /// [`Graph::install`].
    pub(crate) fn grown(&self, users: usize, ties: usize) -> Option<Grown> {
        let regrow = |table: &HashTable<Slot>| {
            (table.capacity() - table.len() < users).then(|| {
                // Twice the buckets, as the table's own growth would make (its capacity is 7/8 of
                // its buckets, and asking for more than twice that would make four times).
                let mut grown = HashTable::with_capacity((table.len() + users).max(table.capacity() + 1));
                for s in table.iter() {
                    grown.insert_unique(s.hash(), *s, Slot::hash);
                }
                grown
            })
        };
        // The vectors' lengths, not their counts: removed users and edges leave holes, which
        // petgraph fills first, so this may grow a little early, never late.
        let (node_room, edge_room) = self.g.capacity();
        let (nodes, edges) = (self.node_bound() + users, self.edge_bound() + ties);
        let g = (nodes > node_room || edges > edge_room).then(|| {
            let more = |need: usize, room: usize| if need > room { need.max(room * 2) } else { room };
            let mut g = StableGraph::with_capacity(more(nodes, node_room), more(edges, edge_room));
            // Into the room made for it: one copy, and no doubling of the copy.
            g.clone_from(&self.g);
            g
        });
        let uids = self.by_uid.len() + users;
        let by_uid = (uids > self.by_uid.capacity()).then(|| {
            let mut v = Vec::with_capacity(uids.max(self.by_uid.capacity() * 2));
            v.extend_from_slice(&self.by_uid);
            v
        });
        let (by_key, by_handle) = (regrow(&self.by_key), regrow(&self.by_handle));
        (by_key.is_some() || by_handle.is_some() || g.is_some() || by_uid.is_some()).then(|| Grown {
            from: (self.version, self.by_key.len(), self.by_handle.len()),
            by_key,
            by_handle,
            g,
            by_uid,
        })
    }

    /// [`Graph::grown`] under a read lock of `graph`, logged when anything grew (once a doubling:
    /// rare, and a few hundred milliseconds of a core at millions of users, which an operator
    /// watching latencies wants to be able to tell apart).
    pub(crate) fn grow_beside(
        graph: &parking_lot::RwLock<Graph>,
        users: usize,
        ties: usize,
    ) -> Option<Grown> {
        let t = std::time::Instant::now();
        let grown = graph.read().grown(users, ties);
        if let Some(g) = &grown {
            log::info!("graph: grew {} beside the readers in {} ms", g.what(), t.elapsed().as_millis());
        }
        grown
    }

    /// Puts the storage [`Graph::grown`] built in place, if the graph has not changed since (else
    /// it is dropped, and the storage doubles as it would have). Constant time; returns what it
    /// replaced, for the caller to drop once it has let go of the lock (freeing a million users'
    /// names takes a while too).
    pub(crate) fn install(&mut self, mut grown: Grown) -> Grown {
        if grown.from != (self.version, self.by_key.len(), self.by_handle.len()) {
            return grown;
        }
        fn swap<T>(mine: &mut T, theirs: &mut Option<T>) {
            if let Some(t) = theirs.as_mut() {
                std::mem::swap(mine, t);
            }
        }
        swap(&mut self.by_key, &mut grown.by_key);
        swap(&mut self.by_handle, &mut grown.by_handle);
        swap(&mut self.g, &mut grown.g);
        swap(&mut self.by_uid, &mut grown.by_uid);
        grown
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

    pub(super) fn idx(&self, key: &str) -> Option<NodeIndex> {
        let g = &self.g;
        self.by_key.find(key_hash(key), |s| &*g[node_index(s.node)].key == key).map(|s| node_index(s.node))
    }

    pub(super) fn node(&self, i: NodeIndex) -> &Node {
        &self.g[i]
    }

    /// The store's persistent id of a user.
    pub(crate) fn uid(&self, key: &str) -> Option<u32> {
        self.idx(key).map(|i| self.node(i).uid)
    }

    /// The key of the user with a store id.
    pub(crate) fn key_of_uid(&self, uid: u32) -> Option<&str> {
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
        if handle.is_empty() {
            // Nothing names no one (a user stored with an empty handle included).
            return Err(GraphError::UserNotFound(spec.to_string()));
        }
        let matching: Vec<NodeIndex> = self
            .by_handle
            .iter_hash(handle_hash(handle))
            .map(|s| node_index(s.node))
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

    pub(super) fn view(&self, i: NodeIndex) -> UserView {
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
    pub(super) fn find_edge(&self, a: NodeIndex, b: NodeIndex) -> Option<EdgeIndex> {
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

    /// The interactions from `from` to `to` and where they sit; `None` if either user is unknown.
    pub(crate) fn tie_slot(&self, from: &str, to: &str) -> Option<(Option<Tie>, TieSlot)> {
        let (a, b) = (self.idx(from)?, self.idx(to)?);
        let edge = self.find_edge(a, b);
        Some((edge.map(|e| self.tie_at(e)), TieSlot { a, b, edge }))
    }

    /// Sets an edge found by [`Graph::tie_slot`], with no removal since: no lookup at all.
    pub(crate) fn set_tie_at(&mut self, slot: &TieSlot, tie: Tie) {
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
    pub(super) fn tie_of(&self, e: EdgeIndex, packed: &Packed) -> Tie {
        packed.unpack(if packed.spilled() { self.spilled.get(&e) } else { None })
    }

    pub(crate) fn tie_at(&self, e: EdgeIndex) -> Tie {
        self.tie_of(e, &self.g[e])
    }

    /// Overwrites the tie of an existing edge with a non-empty one.
    fn replace_tie(&mut self, e: EdgeIndex, tie: &Tie) {
        if !self.cuts.is_empty() {
            self.keep_tie(e, Some(self.tie_at(e)));
        }
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

    pub(crate) fn tie_view(&self, from: &str, to: &str) -> Option<TieView> {
        self.tie(from, to).map(|t| self.tie_view_of(from, to, &t))
    }

    /// Every edge touching a user, as (from, to) keys. Cost: O(degree).
    pub(crate) fn ties_of(&self, key: &str) -> Vec<(String, String)> {
        let Some(i) = self.idx(key) else { return Vec::new() };
        let out = self.g.edges_directed(i, Direction::Outgoing);
        let inc = self.g.edges_directed(i, Direction::Incoming);
        out.chain(inc)
            .map(|e| (self.node(e.source()).key.to_string(), self.node(e.target()).key.to_string()))
            .collect()
    }

    /// Adds a user or updates its profile. `None` leaves a known handle or name as it was.
    pub(crate) fn upsert_user(&mut self, uid: u32, key: &str, handle: Option<&str>, name: Option<&str>) {
        let i = match self.idx(key) {
            Some(i) => {
                self.keep_user(i);
                i
            }
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
                let hash = key_hash(&key);
                self.by_key.insert_unique(hash, Slot::new(i, hash), Slot::hash);
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
                let hash = handle_hash(h);
                self.by_handle.insert_unique(hash, Slot::new(i, hash), Slot::hash);
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
        if let Ok(entry) = self.by_handle.find_entry(handle_hash(old), |s| s.node == me) {
            entry.remove();
        }
    }

    /// Removes a user and every edge touching it. Returns false if there was no such user.
    pub(crate) fn remove_user(&mut self, key: &str) -> bool {
        let Some(i) = self.idx(key) else { return false };
        self.keep_user(i);
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
        if let Ok(entry) = self.by_key.find_entry(key_hash(key), |s| s.node == me) {
            entry.remove();
        }
        self.ordered.remove(key);
        self.g.remove_node(i);
        true
    }

    fn remove_edge(&mut self, e: EdgeIndex) {
        let Some((a, b)) = self.g.edge_endpoints(e) else { return };
        if !self.cuts.is_empty() {
            self.keep_tie(e, Some(self.tie_at(e)));
        }
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
                self.reindex_busy(a, Direction::Outgoing, false);
            }
            if self.g[b].in_deg == HUB {
                self.reindex_busy(b, Direction::Incoming, false);
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
        self.keep_tie(e, None);
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
        if out > HUB && inc > HUB {
            self.busy.insert((a.index() as u32, b.index() as u32), e);
        }
        // A user that just became busy brings its edges to other busy users into the index.
        if out == HUB + 1 {
            self.reindex_busy(a, Direction::Outgoing, true);
        }
        if inc == HUB + 1 {
            self.reindex_busy(b, Direction::Incoming, true);
        }
    }

    /// Keeps [`Graph::busy`] exact when `u`'s degree in `dir` crosses [`HUB`]: a user that became
    /// busy brings its edges whose other end is busy into the index; one that is no longer busy takes
    /// all its edges in `dir` out of it.
    fn reindex_busy(&mut self, u: NodeIndex, dir: Direction, became_busy: bool) {
        let g = &self.g;
        let edges: Vec<((u32, u32), EdgeIndex)> = g
            .edges_directed(u, dir)
            .filter(|x| !became_busy || (g[x.source()].out_deg > HUB && g[x.target()].in_deg > HUB))
            .map(|x| ((x.source().index() as u32, x.target().index() as u32), x.id()))
            .collect();
        for (key, id) in edges {
            if became_busy {
                self.busy.insert(key, id);
            } else {
                self.busy.remove(&key);
            }
        }
    }

    /// Gives back the spare capacity that growing by doubling left in the neighbour lists (after a
    /// bulk load, where every list grew from nothing).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.timeline.shrink_to_fit();
        for l in &mut self.lists {
            l.out.shrink_to_fit();
            l.inc.shrink_to_fit();
        }
    }

    /// Sets the interactions from `from` to `to`; an empty tie removes the edge.
    /// Both users must exist (the write path creates them first); returns false otherwise.
    pub(crate) fn set_tie(&mut self, from: &str, to: &str, tie: Tie) -> bool {
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
    pub(crate) fn load_tie(&mut self, from_uid: u32, to_uid: u32, tie: Tie) -> bool {
        let node = |uid: u32| self.by_uid.get(uid as usize).copied().filter(|&i| i != NO_NODE);
        let (Some(a), Some(b)) = (node(from_uid), node(to_uid)) else { return false };
        let (a, b) = (NodeIndex::new(a as usize), NodeIndex::new(b as usize));
        if a == b || tie.is_empty() {
            return false;
        }
        self.add_edge(a, b, tie);
        true
    }

    pub(super) fn node_of_uid(&self, uid: u32) -> Option<NodeIndex> {
        self.by_uid.get(uid as usize).copied().filter(|&i| i != NO_NODE).map(|i| NodeIndex::new(i as usize))
    }

    /// Removes a user addressed by store uid (replaying the log). Returns false if unknown.
    pub(crate) fn remove_user_by_uid(&mut self, uid: u32) -> bool {
        match self.node_of_uid(uid) {
            Some(i) => {
                let key = self.node(i).key.clone();
                self.remove_user(&key)
            }
            None => false,
        }
    }

    /// Sets an edge addressed by store uids (replaying the log); an empty tie removes it.
    pub(crate) fn set_tie_by_uid(&mut self, from_uid: u32, to_uid: u32, tie: Tie) -> bool {
        let (Some(a), Some(b)) = (self.node_of_uid(from_uid), self.node_of_uid(to_uid)) else { return false };
        let (from, to) = (self.node(a).key.clone(), self.node(b).key.clone());
        self.set_tie(&from, &to, tie)
    }

    #[cfg(test)]
    /// Visits every user with its uid, key, handle and name (for snapshots). Cost: O(users).
    pub(crate) fn for_each_user(&self, mut f: impl FnMut(u32, &str, Option<&str>, Option<&str>)) {
        for n in self.g.node_weights() {
            f(n.uid, &n.key, n.handle.as_deref(), n.name.as_deref());
        }
    }

    #[cfg(test)]
    /// Visits every edge as (from uid, to uid, tie) (for snapshots). Cost: O(edges).
    pub(crate) fn for_each_tie(&self, mut f: impl FnMut(u32, u32, &Tie)) {
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

    /// Resolves a pair of user specs to keys (see [`Graph::resolve`]).
    pub(crate) fn resolve_pair<'a>(&'a self, a: &str, b: &str) -> Result<(&'a str, &'a str), GraphError> {
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

    /// Upper bound of edge indices (edge slots, some perhaps vacant).
    pub(crate) fn edge_bound(&self) -> usize {
        petgraph::visit::EdgeIndexable::edge_bound(&self.g)
    }

    /// Upper bound of node indices, for scratch arrays indexed by node.
    pub(crate) fn node_bound(&self) -> usize {
        self.g.node_indices().next_back().map_or(0, |i| i.index() + 1)
    }
}

pub(super) fn node_index(i: u32) -> NodeIndex {
    NodeIndex::new(i as usize)
}

/// Storage grown ahead of a commit (see [`Graph::grown`]), or what it replaced.
pub(crate) struct Grown {
    /// The graph's version and the indexes' lengths it was built from.
    from: (u64, usize, usize),
    by_key: Option<HashTable<Slot>>,
    by_handle: Option<HashTable<Slot>>,
    g: Option<StableGraph<Node, Packed, Directed, u32>>,
    by_uid: Option<Vec<u32>>,
}

impl Grown {
    /// What grew, to what room, in words.
    fn what(&self) -> String {
        let mut what = Vec::new();
        if let Some(g) = &self.g {
            let (users, edges) = g.capacity();
            what.push(format!("the users' and edges' vectors (room for {users} and {edges})"));
        }
        for (name, table) in [("key", &self.by_key), ("handle", &self.by_handle)] {
            if let Some(t) = table {
                what.push(format!("the {name} index (room for {})", t.capacity()));
            }
        }
        if let Some(v) = &self.by_uid {
            what.push(format!("the uid index (room for {})", v.capacity()));
        }
        what.join(", ")
    }
}

/// An entry of the key and handle indexes: a node, and the half of its key's (or handle's) hash
/// that the table's hash is made of. A table that doubles rehashes from its entries alone:
/// hashing every key again through its node took ~100 ns an entry, ~180 ms at 1.8M users, all
/// of it under the write lock with every read waiting.
#[derive(Clone, Copy)]
struct Slot {
    node: u32,
    half: u32,
}

impl Slot {
    /// `hash` is one [`key_hash`] or [`handle_hash`] made.
    fn new(node: NodeIndex, hash: u64) -> Slot {
        Slot { node: node.index() as u32, half: hash as u32 }
    }

    fn hash(&self) -> u64 {
        spread(self.half)
    }
}

/// A table's hash from 32 bits: them twice (hashbrown takes the bucket from the low bits and a tag
/// from the top seven).
fn spread(half: u32) -> u64 {
    u64::from(half) << 32 | u64::from(half)
}

/// The high half of a hash, spread: Fx puts its best bits high.
fn table_hash(full: u64) -> u64 {
    spread((full >> 32) as u32)
}

fn key_hash(key: &str) -> u64 {
    table_hash(FxBuildHasher.hash_one(key))
}

/// Hash of a handle as compared: case-insensitively (full Unicode lowercase, no copy made).
fn handle_hash(handle: &str) -> u64 {
    let mut h = FxHasher::default();
    for c in handle.chars().flat_map(char::to_lowercase) {
        h.write_u32(c as u32);
    }
    table_hash(h.finish())
}

fn same_handle(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Kind;

    use crate::graph::testkit::{sample, tie_of as tie};
    use crate::rng::SplitMix64;

    /// Users the storage takes before any of it must grow.
    fn room_for_users(g: &Graph) -> usize {
        let table = |t: &HashTable<Slot>| t.capacity() - t.len();
        (g.g.capacity().0 - g.node_bound())
            .min(g.by_uid.capacity() - g.by_uid.len())
            .min(table(&g.by_key))
            .min(table(&g.by_handle))
    }

    #[test]
    fn indexes_grown_beside_the_graph_answer_as_the_ones_they_replace() {
        let mut g = Graph::new();
        let add = |g: &mut Graph, from: u32, to: u32| {
            for u in from..to {
                g.upsert_user(u, &format!("x:{u}"), Some(&format!("Handle{u}")), None);
            }
            g.bump_version();
        };
        add(&mut g, 0, 1_000);
        // Room enough: nothing to do.
        let room = room_for_users(&g);
        assert!(g.grown(room, 0).is_none());
        let grown = g.grown(room + 1, 0).expect("some storage would double");
        let what = grown.what();
        assert!(what.starts_with("the users' and edges' vectors (room for "), "{what}");
        g.install(grown);
        assert!(room_for_users(&g) > room);
        let capacity = (g.by_key.capacity(), g.by_handle.capacity(), g.g.capacity(), g.by_uid.capacity());
        add(&mut g, 1_000, 1_000 + room as u32 + 1);
        assert_eq!(
            (g.by_key.capacity(), g.by_handle.capacity(), g.g.capacity(), g.by_uid.capacity()),
            capacity,
            "the commit fitted in the room made for it"
        );
        for u in (0..1_000 + room as u32 + 1).step_by(7) {
            assert_eq!(g.uid(&format!("x:{u}")), Some(u));
            assert_eq!(g.resolve(&format!("@handle{u}")).unwrap(), format!("x:{u}"));
        }
        // A full index doubles, as its own growth would make it: not more.
        let before = g.by_key.capacity();
        let grown = g.grown(before - g.by_key.len() + 1, 0).unwrap();
        g.install(grown);
        assert_eq!(g.by_key.capacity(), 2 * before, "{before} -> {}", g.by_key.capacity());
        // Built before a change it did not see: dropped, and the graph keeps its own storage.
        let stale = g.grown(room_for_users(&g) + 1, 0).unwrap();
        add(&mut g, 5_000, 5_001);
        let returned = g.install(stale);
        assert!(returned.g.is_some() || returned.by_key.is_some(), "the stale storage comes back unused");
        assert_eq!(g.by_key.capacity(), 2 * before);
        assert_eq!(g.resolve("@HANDLE5000").unwrap(), "x:5000");
    }

    #[test]
    fn a_graph_grown_beside_itself_is_the_graph_that_doubles_in_place() {
        // Two copies of a graph with holes left by removed users; one grows beside itself, then
        // both take the same writes, the other doubling as it fills.
        let build = || {
            let mut g = crate::graph::testkit::skewed(3_000, 12_000, 11, 3, 13);
            g.bump_version();
            g
        };
        let (mut beside, mut in_place) = (build(), build());
        let (node_room, edge_room) = beside.g.capacity();
        let (users, ties) = (node_room - beside.node_bound() + 1, edge_room - beside.edge_bound() + 1);
        let grown = beside.grown(users, ties).expect("both vectors would double");
        let replaced = beside.install(grown);
        assert_eq!(
            replaced.g.map(|g| g.capacity()),
            Some((node_room, edge_room)),
            "what it replaced comes back"
        );
        let room = beside.g.capacity();
        assert!(room.0 >= 2 * node_room && room.1 >= 2 * edge_room, "{room:?}");
        for g in [&mut beside, &mut in_place] {
            let mut s = SplitMix64::new(5);
            // More than the room asked for: the holes are filled first, and some ties exist.
            let added = users as u32 + 300;
            for n in 3_000..3_000 + added {
                g.upsert_user(n, &format!("u{n}"), Some(&format!("H{n}")), None);
            }
            let all = u64::from(3_000 + added);
            for _ in 0..2 * ties {
                let (a, b) = (s.next_u64() % all, s.next_u64() % all);
                if a != b && a % 13 != 0 && b % 13 != 0 {
                    g.set_tie(&format!("u{a}"), &format!("u{b}"), tie(Kind::Reply, 2));
                }
            }
            g.remove_user("u1");
            g.upsert_user(1_000_000, "late", None, None);
        }
        assert_eq!(beside.g.capacity(), room, "the writes fitted in the room made for them");
        assert!(in_place.g.capacity().0 > node_room && in_place.g.capacity().1 > edge_room);
        // The same indices, the same adjacency lists in the same order, the same answers.
        assert_eq!(beside.by_uid, in_place.by_uid);
        assert_eq!(beside.node_bound(), in_place.node_bound());
        assert_eq!(beside.edge_bound(), in_place.edge_bound());
        for i in in_place.g.node_indices() {
            assert_eq!(beside.g[i].key, in_place.g[i].key);
            for dir in [Direction::Outgoing, Direction::Incoming] {
                let ends = |g: &Graph| {
                    g.g.edges_directed(i, dir).map(|e| (e.id(), e.source(), e.target())).collect::<Vec<_>>()
                };
                assert_eq!(ends(&beside), ends(&in_place));
            }
        }
        assert_eq!(beside.ties_page(None, 1 << 20), in_place.ties_page(None, 1 << 20));
        assert_eq!(beside.resolve("@h3001"), in_place.resolve("@h3001"));
        assert_eq!(beside.interaction_count(), in_place.interaction_count());
    }

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
        // An empty handle (stored by an older version, or by a source) names no one.
        g.upsert_user(4, "x:4", Some(""), None);
        for nothing in ["", "@"] {
            assert_eq!(g.resolve(nothing), Err(GraphError::UserNotFound(nothing.into())), "{nothing:?}");
        }
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
}
