//! How the graph is shown: the views of users and edges the API serializes, pages of users (by key
//! or by degree) and of edges, a user's heaviest edges, and the subgraph worth drawing. Reads only;
//! the graph's state and its one write path are in `graph.rs`.

use super::graph::{node_index, Graph, Node, LISTED, NO_NODE};
use super::tie::{KindCounts, Tie};
use petgraph::stable_graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

/// Users by a degree, highest first, ties by key — the users that have [`Lists`] (every user with
/// more than [`LISTED`] edges) as they were when it was made: the first pages of users by degree in
/// O(limit · log users). Made by [`DegreeOrder::make`] from a copy taken a stretch of users per read
/// lock and sorted after; the write path keeps nothing up to date for it (callers keep one for a
/// while: see `http::reads`).
pub struct DegreeOrder {
    users: Vec<(Reverse<u32>, Arc<str>)>,
    /// Users in the graph when it was made (those out of the order have few edges).
    all: usize,
    /// The graph's version when it was made.
    pub version: u64,
}

/// Listed users copied per read lock by [`DegreeOrder::make`]: the writer waits for one stretch at
/// most (a copy of every listed user at once held the lock for 100-170 ms at 22M edges).
const ORDER_STRETCH: usize = 8_192;

impl DegreeOrder {
    /// The order of the graph `read` gives access to (`None` for [`UserOrder::Key`]): the listed
    /// users copied [`ORDER_STRETCH`] at a time, each stretch under its own read lock, then sorted
    /// with no lock held. The graph may change between stretches: the order is as of its first
    /// stretch (so it counts as stale as soon as the graph changes), and a user copied twice is
    /// kept once, at the degree it was first copied with.
    pub fn make<G: std::ops::Deref<Target = Graph>>(
        read: impl Fn() -> G,
        order: UserOrder,
    ) -> Option<DegreeOrder> {
        DegreeOrder::make_in(read, order, ORDER_STRETCH)
    }

    fn make_in<G: std::ops::Deref<Target = Graph>>(
        read: impl Fn() -> G,
        order: UserOrder,
        stretch: usize,
    ) -> Option<DegreeOrder> {
        let degree: fn(&Node) -> u32 = match order {
            UserOrder::Key => return None,
            UserOrder::Degree => |n| n.in_deg + n.out_deg,
            UserOrder::InDegree => |n| n.in_deg,
            UserOrder::OutDegree => |n| n.out_deg,
        };
        let (mut users, mut from) = (Vec::new(), 0);
        let (mut first, mut changed) = (None, false);
        let mut all;
        loop {
            let g = read();
            let next = g.listed_degrees(degree, from, stretch, &mut users);
            changed |= first.is_some_and(|v| v != g.version);
            first.get_or_insert(g.version);
            all = g.user_count();
            drop(g);
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        users.sort_unstable();
        if changed {
            let mut seen = rustc_hash::FxHashSet::default();
            users.retain(|(_, key)| seen.insert(key.clone()));
        }
        Some(DegreeOrder { users, all, version: first.unwrap_or(0) })
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
    /// The users' handles, when known, for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_handle: Option<String>,
    pub total: u64,
    pub kinds: KindCounts,
    pub first_seen: String,
    pub last_seen: String,
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

/// Builds the API view of an edge.
fn tie_view(from: &str, to: &str, tie: &Tie) -> TieView {
    let mut kinds = KindCounts::default();
    kinds.add_tie(tie);
    TieView {
        from: from.to_string(),
        to: to.to_string(),
        from_handle: None,
        to_handle: None,
        total: tie.total(),
        kinds,
        first_seen: super::tie::rfc3339(tie.first_seen()),
        last_seen: super::tie::rfc3339(tie.last_seen()),
    }
}

impl Graph {
    /// An edge as the API shows it, with its users' handles.
    pub(crate) fn tie_view_of(&self, from: &str, to: &str, tie: &Tie) -> TieView {
        let handle = |key: &str| self.profile(key).and_then(|(h, _)| h.map(str::to_string));
        TieView { from_handle: handle(from), to_handle: handle(to), ..tie_view(from, to, tie) }
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

impl Graph {
    /// The `limit` heaviest edges of a user (out-edges, in-edges or both), heaviest first (among
    /// equal weights, in no promised order); and how many edges there are in those directions.
    ///
    /// Cost: for a user with [`Lists`] (more than [`LISTED`] edges), O(limit · log degree): its ties
    /// of two interactions or more are kept in order of weight, and the rest are taken newest first
    /// from its lists; views are built for the chosen only. For any other user, one pass over its
    /// few edges.
    pub(crate) fn heaviest_ties_of(
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
                // Then single interactions, newest first: out-edges, then in-edges.
                let (outs, ins): (&[u32], &[u32]) =
                    (if out { &l.out } else { &[] }, if inc { &l.inc } else { &[] });
                let singles_out = outs.iter().rev().filter(|n| !l.heavy_out.members.contains(n));
                let singles_in = ins.iter().rev().filter(|n| !l.heavy_in.members.contains(n));
                let singles =
                    singles_out.map(|&n| (i, node_index(n))).chain(singles_in.map(|&n| (node_index(n), i)));
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
                Some(self.tie_view_of(&self.node(a).key, &self.node(b).key, &self.tie_at(e)))
            })
            .collect();
        Some((count, views))
    }

    /// Copies the users with lists in slots `from..from + max` and their `degree` into `users`;
    /// returns where the next stretch starts, if any.
    fn listed_degrees(
        &self,
        degree: fn(&Node) -> u32,
        from: usize,
        max: usize,
        users: &mut Vec<(Reverse<u32>, Arc<str>)>,
    ) -> Option<usize> {
        let end = from.saturating_add(max).min(self.lists.len());
        for l in self.lists.get(from..end).unwrap_or_default() {
            if l.owner != NO_NODE {
                let n = &self.g[node_index(l.owner)];
                users.push((Reverse(degree(n)), n.key.clone()));
            }
        }
        (end < self.lists.len()).then_some(end)
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
                items.push(self.tie_view_of(key, to, &tie));
            }
        }
        Page { items, next }
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
    pub(crate) fn top_subgraph(&self, top: usize, min_weight: u64, max_edges: usize) -> Subgraph {
        self.subgraph_among(self.users_by_degree(UserOrder::Degree, None, top).items, min_weight, max_edges)
    }

    /// [`Graph::top_subgraph`] of users already chosen (the first page of a [`DegreeOrder`]), in one
    /// go: [`Graph::edges_among`] then [`Graph::heaviest_drawn`].
    pub(crate) fn subgraph_among(&self, users: Vec<UserView>, min_weight: u64, max_edges: usize) -> Subgraph {
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
    pub fn edges_among(&self, from: &[&str], among: &[&str], min_weight: u64) -> Vec<Found> {
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
    pub(crate) fn heaviest_drawn(&self, found: Vec<Found>, max_edges: usize) -> (Vec<TieView>, usize) {
        let (kept, among) = heaviest(found, max_edges);
        (self.drawn(kept), among)
    }

    /// The views of edges [`heaviest`] kept, in its order; edges gone since are left out.
    pub(crate) fn drawn(&self, kept: Vec<Found>) -> Vec<TieView> {
        kept.into_iter().filter_map(|(_, a, b)| self.tie_view(&a, &b)).collect()
    }
}

/// An edge [`Graph::edges_among`] found: its interactions, from, to.
pub(crate) type Found = (u64, Arc<str>, Arc<str>);

/// The `max_edges` heaviest of `found`, heaviest first, then by (from, to); and how many there
/// were. It needs no graph: a caller holding a lock sorts before taking it.
pub(crate) fn heaviest(mut found: Vec<Found>, max_edges: usize) -> (Vec<Found>, usize) {
    let among = found.len();
    let order = |a: &Found, b: &Found| b.0.cmp(&a.0).then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
    if found.len() > max_edges && max_edges > 0 {
        found.select_nth_unstable_by(max_edges - 1, order);
    }
    found.truncate(max_edges);
    found.sort_unstable_by(order);
    (found, among)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testkit::{hubby, sample, tie_of as tie};
    use crate::graph::Kind;

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
                let ranked = DegreeOrder::make(|| &g, order).unwrap();
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
            assert!(DegreeOrder::make(|| &g, UserOrder::Key).is_none());
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

    /// Copied a few users per read lock, the order is the one copied at once; while the graph
    /// changes between stretches, it lists every user once and is as of its first stretch.
    #[test]
    fn a_degree_order_copied_in_stretches_is_the_one_copied_at_once() {
        let g = hubby(2_000, 30_000, 9);
        for order in [UserOrder::Degree, UserOrder::InDegree, UserOrder::OutDegree] {
            let whole = DegreeOrder::make_in(|| &g, order, usize::MAX).unwrap();
            assert!(whole.users.len() > 10, "{}", whole.users.len());
            for stretch in [1, 3, 64] {
                let parts = DegreeOrder::make_in(|| &g, order, stretch).unwrap();
                assert_eq!(
                    (&parts.users, parts.all, parts.version),
                    (&whole.users, whole.all, whole.version)
                );
            }
        }
        let g = std::cell::RefCell::new(g);
        let (calls, first_version) = (std::cell::Cell::new(0u32), g.borrow().version());
        let changing = DegreeOrder::make_in(
            || {
                let i = calls.get();
                calls.set(i + 1);
                if i > 0 {
                    let (a, b) = (format!("u{}", 100 + i), format!("u{}", i % 40));
                    let mut g = g.borrow_mut();
                    g.set_tie(&a, &b, tie(Kind::Mention, 1));
                    g.bump_version();
                }
                g.borrow()
            },
            UserOrder::Degree,
            5,
        )
        .unwrap();
        assert!(calls.get() > 2 && g.borrow().version() > first_version);
        assert_eq!(changing.version, first_version, "as of its first stretch: stale at once");
        let keys: std::collections::HashSet<_> = changing.users.iter().map(|(_, k)| k.clone()).collect();
        assert_eq!(keys.len(), changing.users.len(), "each user once");
        assert!(changing.users.windows(2).all(|w| w[0] <= w[1]), "sorted");
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
