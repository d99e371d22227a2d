//! Staging one group commit: mutations are evaluated in order against the graph as it will be after
//! the earlier mutations of the same batch (an overlay over the live graph), producing the sled batch
//! to persist and the changes to apply to the graph once it is durable.

use super::feed::{Changes, Feed, TieChange};
use super::layout::{self, PostEdge};
use super::seen::SeenSet;
use super::{StoreError, WriteStats};
use crate::graph::{
    clamp_time, Graph, Kind, Mutation, Outcome, Platform, Post, Purge, Rejection, Tie, TieSlot, UserRef,
};
use parking_lot::RwLock;
use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::time::Instant;

/// A user created or changed in this batch.
#[derive(Debug, Clone)]
struct StagedUser {
    uid: u32,
    handle: Option<String>,
    name: Option<String>,
}

/// The effect of a batch, ready to persist (`log` as one record plus `batch`) and then to apply.
pub(crate) struct Staged {
    /// Keys written beside the log record in the same atomic write: post records and cursors (the
    /// backend adds the next uid when the commit persists anything).
    pub writes: Vec<(Vec<u8>, Vec<u8>)>,
    /// The commit's effects, in replay order: drops, users, edges, seen posts.
    pub log: Vec<u8>,
    /// Posts seen for the first time in this batch.
    pub seen: Vec<u64>,
    pub outcomes: Vec<Result<Outcome, Rejection>>,
    pub next_uid: u32,
    batch_len: usize,
    dropped: Vec<String>,
    users: HashMap<String, StagedUser>,
    /// Staged edge states, with where the graph keeps the edge when staging found it there.
    ties: HashMap<(String, String), (Tie, Option<TieSlot>)>,
    /// The timeline's side: what goes (removed users and edges, retracted posts), then what comes.
    purge: Purge,
    stamps: Vec<NewStamp>,
}

/// An interaction staged for the timeline: from uid, to uid, kind, time.
type NewStamp = (u32, u32, Kind, u32);

impl Staged {
    /// Applies the persisted batch to the shared graph and tells the change feed. Storage that
    /// would double is grown first under a read lock ([`Graph::grown`]), so that the write lock,
    /// which every read waits for, is held for the batch alone; how long is recorded. What the
    /// grown storage replaced is freed after the lock is let go.
    pub fn publish(self, graph: &RwLock<Graph>, feed: &Feed, stats: &WriteStats) {
        let grown = Graph::grow_beside(graph, self.users.len(), self.ties.len());
        let (changes, _replaced) = {
            let mut graph = graph.write();
            let t = Instant::now();
            let replaced = grown.map(|g| graph.install(g));
            // Whether anyone listens is asked under the write lock: a consumer that subscribes
            // later copies the graph after this commit (its read lock waits for ours), so none
            // misses it.
            let listened = feed.listened();
            let changes = self.apply(&mut graph, listened);
            stats.graph_held_seconds.observe(t.elapsed().as_secs_f64());
            (changes, replaced)
        };
        if let Some(changes) = changes {
            feed.send(changes);
        }
    }

    /// Applies the persisted batch to the in-memory graph: removals first, then users, then edges,
    /// which is the order in which the overlay resolved them. With `record`, also returns what
    /// changed (for the change feed; it costs a lookup per edge changed).
    pub fn apply(self, graph: &mut Graph, record: bool) -> Option<Changes> {
        let mut changes = record.then(Changes::default);
        for key in &self.dropped {
            if let Some(c) = changes.as_mut() {
                for (from, to) in graph.ties_of(key) {
                    let before = graph.tie(&from, &to);
                    c.ties.push(TieChange { from: from.into(), to: to.into(), before, after: None });
                }
            }
            graph.remove_user(key);
        }
        for (key, u) in &self.users {
            graph.upsert_user(u.uid, key, u.handle.as_deref(), u.name.as_deref());
            if let Some(c) = changes.as_mut() {
                let handle = graph.profile(key).and_then(|(h, _)| h.map(str::to_string));
                c.users.push((key.as_str().into(), handle));
            }
        }
        // Slots stay valid only while nothing was removed: with removals, look pairs up again.
        let slots_valid = self.dropped.is_empty();
        for ((from, to), (tie, slot)) in &self.ties {
            if let Some(c) = changes.as_mut() {
                let before = graph.tie(from, to);
                let after = (!tie.is_empty()).then_some(*tie);
                c.ties.push(TieChange { from: from.as_str().into(), to: to.as_str().into(), before, after });
            }
            match slot {
                Some(slot) if slots_valid => graph.set_tie_at(slot, *tie),
                _ => {
                    graph.set_tie(from, to, *tie);
                }
            }
        }
        graph.purge_timeline(&self.purge);
        for &(a, b, kind, at) in &self.stamps {
            graph.stamp(a, b, kind, at);
        }
        graph.bump_version();
        changes.map(|c| Changes { version: graph.version(), ..c })
    }

    /// True when the batch persists nothing (every mutation was a duplicate or refused).
    pub fn is_empty(&self) -> bool {
        self.batch_len == 0
    }
}

/// What staging needs besides the graph: whether a post was seen in an earlier batch, and the
/// stored interactions of posts that can be edited or deleted.
pub(crate) trait PostLookup {
    fn seen(&self, hash: u64) -> bool;
    fn post(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The live lookup: the writer's seen-set and sled's post records.
pub(crate) struct Lookup<'a> {
    pub seen: &'a SeenSet,
    pub db: &'a sled::Db,
}

impl PostLookup for Lookup<'_> {
    fn seen(&self, hash: u64) -> bool {
        self.seen.contains(&hash)
    }
    fn post(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }
}

struct Stage<'a, L: PostLookup> {
    graph: &'a Graph,
    db: &'a L,
    now: i64,
    next_uid: u32,
    users: HashMap<String, StagedUser>,
    /// Users of the live graph removed in this batch: the graph's version of them no longer counts.
    dropped: Vec<String>,
    dropped_set: FxHashSet<String>,
    /// Staged edge states, with where the graph keeps the edge when staging found it there.
    ties: HashMap<(String, String), (Tie, Option<TieSlot>)>,
    /// Post records (of platforms that keep them) written in this batch.
    posts: HashMap<Vec<u8>, Vec<u8>>,
    /// Posts seen in this batch (for every platform).
    new_seen: Vec<u64>,
    new_seen_set: FxHashSet<u64>,
    cursors: Vec<(Vec<u8>, Vec<u8>)>,
    user_writes: FxHashSet<String>,
    purge: Purge,
    stamps: Vec<NewStamp>,
}

/// Evaluates `mutations` in order against `graph` and builds the batch that persists them.
///
/// # Errors
/// Only sled read errors (looking up whether a post was seen) abort the whole batch.
pub fn stage<L: PostLookup>(
    graph: &Graph,
    db: &L,
    next_uid: u32,
    now: i64,
    mutations: impl IntoIterator<Item = Mutation>,
) -> Result<Staged, StoreError> {
    let mut s = Stage {
        graph,
        db,
        now,
        next_uid,
        users: HashMap::default(),
        dropped: Vec::new(),
        dropped_set: Default::default(),
        ties: HashMap::default(),
        posts: HashMap::default(),
        new_seen: Vec::new(),
        new_seen_set: Default::default(),
        cursors: Vec::new(),
        user_writes: Default::default(),
        purge: Purge::default(),
        stamps: Vec::new(),
    };
    let mut outcomes = Vec::new();
    for m in mutations {
        outcomes.push(s.mutate(m)?);
    }
    Ok(s.finish(outcomes))
}

impl<L: PostLookup> Stage<'_, L> {
    fn mutate(&mut self, m: Mutation) -> Result<Result<Outcome, Rejection>, StoreError> {
        Ok(match m {
            Mutation::AddUser { key, handle, name } => self.add_user(key, handle, name),
            Mutation::RemoveUser { key } => self.remove_user(&key),
            Mutation::AddInteraction { from, to, kind, at } => self.add_interaction(&from, &to, kind, at),
            Mutation::RemoveTie { from, to } => self.remove_tie(from, to),
            Mutation::ApplyPost(post) => self.apply_post(&post, false)?,
            Mutation::EditPost(post) => self.apply_post(&post, true)?,
            Mutation::RetractPost { platform, id } => self.retract(platform, &id)?,
            Mutation::Profile(u) => Ok(self.profile(&u)),
            Mutation::SetCursor { name, value } => {
                self.cursors.push((layout::cursor_key(&name), value));
                Ok(Outcome::CursorSet)
            }
        })
    }

    // ---- the overlay: the graph as it is after the mutations staged so far ----

    fn is_dropped(&self, key: &str) -> bool {
        !self.dropped_set.is_empty() && self.dropped_set.contains(key)
    }

    fn uid(&self, key: &str) -> Option<u32> {
        if let Some(u) = self.users.get(key) {
            return Some(u.uid);
        }
        if self.is_dropped(key) {
            return None;
        }
        self.graph.uid(key)
    }

    fn exists(&self, key: &str) -> bool {
        self.uid(key).is_some()
    }

    fn profile_of(&self, key: &str) -> (Option<String>, Option<String>) {
        if let Some(u) = self.users.get(key) {
            return (u.handle.clone(), u.name.clone());
        }
        match self.graph.profile(key) {
            Some((h, n)) if !self.dropped_set.contains(key) => (h.map(Into::into), n.map(Into::into)),
            _ => (None, None),
        }
    }

    fn tie(&self, from: &str, to: &str) -> Tie {
        if let Some((t, _)) = self.ties.get(&(from.to_string(), to.to_string())) {
            return *t;
        }
        self.graph_tie(from, to)
    }

    /// The edge as the graph has it, for a pair not staged in this batch.
    fn graph_tie(&self, from: &str, to: &str) -> Tie {
        if self.is_dropped(from) || self.is_dropped(to) {
            return Tie::default();
        }
        self.graph.tie(from, to).unwrap_or_default()
    }

    fn key_of_uid(&self, uid: u32) -> Option<String> {
        if let Some((k, _)) = self.users.iter().find(|(_, u)| u.uid == uid) {
            return Some(k.clone());
        }
        let k = self.graph.key_of_uid(uid)?;
        (!self.dropped_set.contains(k)).then(|| k.to_string())
    }

    // ---- users ----

    fn create_user(&mut self, key: &str, handle: Option<String>, name: Option<String>) -> u32 {
        let uid = self.next_uid;
        self.next_uid += 1;
        self.users.insert(key.to_string(), StagedUser { uid, handle, name });
        self.user_writes.insert(key.to_string());
        uid
    }

    /// Makes sure a user exists, refreshing its profile from what a payload said; returns its uid and
    /// whether it was created.
    fn ensure_user(&mut self, user: &UserRef) -> (u32, bool) {
        match self.uid(&user.key) {
            None => (self.create_user(&user.key, user.handle.clone(), user.name.clone()), true),
            Some(uid) => {
                self.refresh_profile(user, uid);
                (uid, false)
            }
        }
    }

    /// Stages a profile change if the payload says something new; returns whether it did.
    fn refresh_profile(&mut self, user: &UserRef, uid: u32) -> bool {
        if user.handle.is_none() && user.name.is_none() {
            return false;
        }
        // The common case, a profile unchanged since last seen, compares without allocating.
        let unchanged = |h: Option<&str>, n: Option<&str>| {
            user.handle.as_deref().is_none_or(|x| Some(x) == h)
                && user.name.as_deref().is_none_or(|x| Some(x) == n)
        };
        let same = match self.users.get(&user.key) {
            Some(u) => unchanged(u.handle.as_deref(), u.name.as_deref()),
            None if self.is_dropped(&user.key) => false,
            None => self.graph.profile(&user.key).is_some_and(|(h, n)| unchanged(h, n)),
        };
        if same {
            return false;
        }
        let (handle, name) = self.profile_of(&user.key);
        let new_handle = user.handle.clone().filter(|h| Some(h) != handle.as_ref());
        let new_name = user.name.clone().filter(|n| Some(n) != name.as_ref());
        if new_handle.is_none() && new_name.is_none() {
            return false;
        }
        self.users.insert(
            user.key.clone(),
            StagedUser { uid, handle: new_handle.or(handle), name: new_name.or(name) },
        );
        self.user_writes.insert(user.key.clone());
        true
    }

    fn add_user(
        &mut self,
        key: String,
        handle: Option<String>,
        name: Option<String>,
    ) -> Result<Outcome, Rejection> {
        crate::graph::validate_key(&key)?;
        if self.exists(&key) {
            return Err(Rejection::UserExists(key));
        }
        self.create_user(&key, handle, name);
        Ok(Outcome::UserAdded)
    }

    fn remove_user(&mut self, key: &str) -> Result<Outcome, Rejection> {
        let Some(uid) = self.uid(key) else {
            return Err(Rejection::UserNotFound(key.to_string()));
        };
        // Its interactions leave the timeline: staged ones here, the graph's by its uid on apply.
        self.stamps.retain(|&(a, b, _, _)| a != uid && b != uid);
        self.purge.uids.insert(uid);
        let mut removed: FxHashSet<(String, String)> = Default::default();
        // Edges staged in this batch.
        let staged: Vec<(String, String)> =
            self.ties.keys().filter(|(a, b)| a == key || b == key).cloned().collect();
        for pair in staged {
            if !self.ties[&pair].0.is_empty() {
                removed.insert(pair.clone());
            }
            self.ties.remove(&pair);
        }
        // Edges of the live graph (unless this key already replaced its graph version).
        if !self.dropped_set.contains(key) {
            // Their records go with the user: replaying a UserDrop removes its edges.
            for (a, b) in self.graph.ties_of(key) {
                let other = if a == key { &b } else { &a };
                // An edge overridden in this batch was counted above.
                if !self.ties.contains_key(&(a.clone(), b.clone())) && !self.dropped_set.contains(other) {
                    removed.insert((a.clone(), b.clone()));
                }
            }
            if self.graph.contains(key) {
                self.dropped.push(key.to_string());
                self.dropped_set.insert(key.to_string());
            }
        }
        // Edges of other users staged against this one were removed above; edges staged with an
        // empty tie (already deleted) need their graph version gone too, which dropping handles.
        self.ties.retain(|(a, b), _| a != key && b != key);
        self.users.remove(key);
        self.user_writes.remove(key);
        Ok(Outcome::UserRemoved { ties: removed.len() })
    }

    fn profile(&mut self, user: &UserRef) -> Outcome {
        match self.uid(&user.key) {
            Some(uid) if self.refresh_profile(user, uid) => Outcome::ProfileUpdated,
            _ => Outcome::Unchanged,
        }
    }

    // ---- edges ----

    fn add_interaction(&mut self, from: &str, to: &str, kind: Kind, at: i64) -> Result<Outcome, Rejection> {
        crate::graph::validate_key(from)?;
        crate::graph::validate_key(to)?;
        if from == to {
            return Err(Rejection::SelfLoop(from.to_string()));
        }
        let (a, _) = self.ensure_user(&UserRef::new(from));
        let (b, _) = self.ensure_user(&UserRef::new(to));
        let mut tie = self.tie(from, to);
        tie.add(kind, at);
        self.stamps.push((a, b, kind, clamp_time(at)));
        self.ties.insert((from.to_string(), to.to_string()), (tie, None));
        Ok(Outcome::InteractionAdded)
    }

    fn remove_tie(&mut self, from: String, to: String) -> Result<Outcome, Rejection> {
        if self.tie(&from, &to).is_empty() {
            return Err(Rejection::TieNotFound { from, to });
        }
        if let (Some(a), Some(b)) = (self.uid(&from), self.uid(&to)) {
            self.stamps.retain(|&(x, y, _, _)| (x, y) != (a, b));
            self.purge.pairs.insert((a, b));
        }
        self.ties.entry((from, to)).or_insert((Tie::default(), None)).0 = Tie::default();
        Ok(Outcome::TieRemoved)
    }

    // ---- posts ----

    /// Whether a post was seen before (in this batch or an earlier one).
    fn was_seen(&self, hash: u64) -> bool {
        self.new_seen_set.contains(&hash) || self.db.seen(hash)
    }

    fn mark_seen(&mut self, hash: u64) {
        if self.new_seen_set.insert(hash) && !self.db.seen(hash) {
            self.new_seen.push(hash);
        }
    }

    /// The stored interactions of a post, for platforms that keep them.
    fn stored(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.posts.get(key) {
            return Ok(Some(v.clone()));
        }
        self.db.post(key)
    }

    fn apply_post(&mut self, post: &Post, edit: bool) -> Result<Result<Outcome, Rejection>, StoreError> {
        let hash = layout::post_hash(post.platform, &post.id);
        let keep = layout::keeps_post_record(post.platform);
        let pkey = keep.then(|| layout::post_key(post.platform, &post.id));
        if self.was_seen(hash) {
            // Only posts whose interactions are kept can be edited; a deleted post stays deleted.
            let old = match (&pkey, edit) {
                (Some(k), true) => self.stored(k)?,
                _ => None,
            };
            match old {
                Some(old) if old.as_slice() != layout::POST_DELETED => {
                    self.retract_edges(&old);
                }
                _ => return Ok(Ok(Outcome::Duplicate)),
            }
        }
        if crate::graph::validate_key(&post.author.key).is_err() {
            return Ok(Err(Rejection::InvalidKey { key: post.author.key.clone(), reason: "bad author key" }));
        }
        let at = post.created_at.unwrap_or(self.now);
        let stamp_at = clamp_time(at);
        let (author, created) = self.ensure_user(&post.author);
        let mut new_users = usize::from(created);
        let mut edges = Vec::with_capacity(post.interactions.len());
        for i in &post.interactions {
            if i.from != post.author.key || i.to == i.from || crate::graph::validate_key(&i.to).is_err() {
                continue;
            }
            let (to, created) = match post.users.iter().find(|u| u.key == i.to) {
                Some(target) => self.ensure_user(target),
                None => self.ensure_user(&UserRef::new(&i.to)),
            };
            new_users += usize::from(created);
            let pair = (i.from.clone(), i.to.clone());
            if !self.ties.contains_key(&pair) {
                let found = if self.is_dropped(&i.from) || self.is_dropped(&i.to) {
                    (Tie::default(), None)
                } else {
                    match self.graph.tie_slot(&i.from, &i.to) {
                        Some((tie, slot)) => (tie.unwrap_or_default(), Some(slot)),
                        None => (Tie::default(), None),
                    }
                };
                self.ties.insert(pair.clone(), found);
            }
            if let Some((tie, _)) = self.ties.get_mut(&pair) {
                tie.add(i.kind, at);
            }
            edges.push(PostEdge { kind: i.kind, from: author, to, at: stamp_at });
            self.stamps.push((author, to, i.kind, stamp_at));
        }
        // Other users the payload described: refresh the profiles of those already known.
        for u in &post.users {
            if u.handle.is_some() || u.name.is_some() {
                if let Some(uid) = self.uid(&u.key) {
                    self.refresh_profile(u, uid);
                }
            }
        }
        self.mark_seen(hash);
        if let Some(k) = pkey {
            self.posts.insert(k, layout::encode_post(&edges));
        }
        Ok(Ok(Outcome::PostApplied { interactions: edges.len(), new_users }))
    }

    /// Undoes the interactions of a stored post; returns how many were undone.
    fn retract_edges(&mut self, stored: &[u8]) -> usize {
        let Some(edges) = layout::decode_post(stored) else { return 0 };
        let mut undone = 0;
        for e in edges {
            let (Some(from), Some(to)) = (self.key_of_uid(e.from), self.key_of_uid(e.to)) else { continue };
            let mut tie = self.tie(&from, &to);
            if tie.remove(e.kind) {
                undone += 1;
                self.ties.entry((from, to)).or_insert((tie, None)).0 = tie;
                self.unstamp(e);
            }
        }
        undone
    }

    /// Takes one interaction of a retracted post out of the timeline: a stamp staged in this batch
    /// directly, one of the graph's when the batch is applied.
    fn unstamp(&mut self, e: PostEdge) {
        let staged = self
            .stamps
            .iter()
            .rposition(|&(a, b, k, at)| (a, b, k) == (e.from, e.to, e.kind) && (e.at == 0 || at == e.at));
        match staged {
            Some(i) => {
                self.stamps.remove(i);
            }
            None => self.purge.stamps.push((e.from, e.to, e.kind, (e.at != 0).then_some(e.at))),
        }
    }

    fn retract(&mut self, platform: Platform, id: &str) -> Result<Result<Outcome, Rejection>, StoreError> {
        let undone = if layout::keeps_post_record(platform) {
            let pkey = layout::post_key(platform, id);
            let undone = match self.stored(&pkey)? {
                Some(old) => self.retract_edges(&old),
                None => 0,
            };
            self.posts.insert(pkey, layout::POST_DELETED.to_vec());
            undone
        } else {
            // X posts keep no interaction record (see `keeps_post_record`): nothing to undo.
            0
        };
        // Remember the deletion even for a post never seen, so that a late copy is not applied.
        self.mark_seen(layout::post_hash(platform, id));
        Ok(Ok(Outcome::PostRetracted { interactions: undone }))
    }

    fn finish(self, outcomes: Vec<Result<Outcome, Rejection>>) -> Staged {
        let mut log = layout::Encoder::default();
        let mut len = 0usize;
        // Replay order is apply order: drops, users, edges, the timeline, seen posts.
        for key in &self.dropped {
            if let Some(uid) = self.graph.uid(key) {
                log.user_drop(uid);
                len += 1;
            }
        }
        for key in &self.user_writes {
            if let Some(u) = self.users.get(key) {
                log.user_put(u.uid, key, u.handle.as_deref(), u.name.as_deref());
                len += 1;
            }
        }
        let uid = |k: &str| self.users.get(k).map(|u| u.uid).or_else(|| self.graph.uid(k));
        for ((from, to), (tie, _)) in &self.ties {
            let (Some(a), Some(b)) = (uid(from), uid(to)) else { continue };
            log.tie_set(a, b, tie);
            len += 1;
        }
        // The timeline: what goes (drops carry their users' stamps), then what comes.
        for &(a, b) in &self.purge.pairs {
            log.purge_pair(a, b);
            len += 1;
        }
        for &(a, b, kind, at) in &self.purge.stamps {
            log.unstamp(a, b, kind, at.unwrap_or(0));
            len += 1;
        }
        for &(a, b, kind, at) in &self.stamps {
            log.stamp(a, b, kind, at);
            len += 1;
        }
        for h in &self.new_seen {
            log.seen(*h);
            len += 1;
        }
        let writes: Vec<_> = self.posts.into_iter().chain(self.cursors).collect();
        len += writes.len();
        Staged {
            writes,
            log: log.buf,
            seen: self.new_seen,
            batch_len: len,
            outcomes,
            next_uid: self.next_uid,
            dropped: self.dropped,
            users: self.users,
            ties: self.ties,
            purge: self.purge,
            stamps: self.stamps,
        }
    }
}
