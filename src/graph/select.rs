//! Selections: the network an analysis looks at (which kinds, which time window, how heavy an edge
//! must be), and the raw copy of it taken under the read lock.
//!
//! Taking a selection copies only flat arrays of numbers (store uids and weights): everything else —
//! aggregating a window's interactions into edges, numbering users densely, building adjacency
//! arrays — happens after the lock is released, so the writer waits for a copy, never for an analysis.

use super::graph::Graph;
use super::model::Kind;
use super::tie::Packed;
use super::tie::{clamp_time, KindCounts};
use super::timeline::Stamp;
use petgraph::stable_graph::EdgeIndex;
use rustc_hash::FxHashMap;

/// A set of interaction kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    pub const ALL: KindSet = KindSet((1 << Kind::COUNT) - 1);

    pub fn of(kinds: &[Kind]) -> KindSet {
        KindSet(kinds.iter().fold(0, |m, k| m | 1 << k.index()))
    }

    /// Parses a comma list of kind names (`repost,reply`); `Err` names the first unknown one.
    pub fn parse(list: &str) -> Result<KindSet, String> {
        let mut set = 0u8;
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kind = Kind::parse(name).ok_or_else(|| name.chars().take(32).collect::<String>())?;
            set |= 1 << kind.index();
        }
        if set == 0 {
            return Err(String::new());
        }
        Ok(KindSet(set))
    }

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    fn contains_index(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    pub fn kinds(self) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|&k| self.contains(k)).collect()
    }

    pub fn names(self) -> Vec<&'static str> {
        self.kinds().into_iter().map(Kind::as_str).collect()
    }
}

/// A time as unix seconds, from unix seconds or RFC 3339.
fn parse_time(key: &str, v: &str) -> Result<i64, String> {
    if let Ok(n) = v.trim().parse::<i64>() {
        if (0..=i64::from(u32::MAX)).contains(&n) {
            return Ok(n);
        }
    }
    chrono::DateTime::parse_from_rfc3339(v.trim()).map(|t| t.timestamp()).map_err(|_| {
        format!(
            "{key} must be unix seconds or an RFC 3339 time (2026-11-29T12:00:00Z), not {:?}",
            v.chars().take(40).collect::<String>()
        )
    })
}

/// Which part of the graph an analysis sees. Its users are the ends of the edges it keeps; an edge
/// u -> v weighs the number of selected interactions from u to v.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selection {
    pub kinds: KindSet,
    /// Unix seconds: only interactions with `since <= time < until` count.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Keep an edge only if it carries at least this many selected interactions.
    pub min_weight: u32,
}

impl Default for Selection {
    fn default() -> Self {
        Selection { kinds: KindSet::ALL, since: None, until: None, min_weight: 1 }
    }
}

impl Selection {
    /// A selection from its textual parameters (a query string's or the command line's):
    /// `kinds` a comma list, `since`/`until` unix seconds or RFC 3339.
    ///
    /// # Errors
    /// What is wrong with which parameter, in a sentence.
    pub fn parse(
        kinds: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        min_weight: u32,
    ) -> Result<Selection, String> {
        let kinds = match kinds {
            None => KindSet::ALL,
            Some(list) => KindSet::parse(list).map_err(|bad| {
                if bad.is_empty() {
                    "kinds must name at least one of repost, reply, quote, mention, manual".to_string()
                } else {
                    format!("unknown kind {bad:?} in kinds (repost, reply, quote, mention, manual)")
                }
            })?,
        };
        // `since >= until` is an empty window: it selects nothing, as its definition says.
        let since = since.map(|v| parse_time("since", v)).transpose()?;
        let until = until.map(|v| parse_time("until", v)).transpose()?;
        if min_weight == 0 {
            return Err("min_weight must be at least 1".into());
        }
        Ok(Selection { kinds, since, until, min_weight })
    }

    pub(crate) fn is_windowed(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    /// The window as the timeline's `u32` seconds, half-open.
    fn bounds(&self) -> (u32, u32) {
        let since = self.since.map_or(0, |s| if s <= 0 { 0 } else { clamp_time(s) });
        let until = self.until.map_or(u32::MAX, |u| if u <= 0 { 0 } else { clamp_time(u) });
        (since, until)
    }

    fn keeps(&self, kind: usize, at: u32, (since, until): (u32, u32)) -> bool {
        self.kinds.contains_index(kind) && at >= since && at < until
    }
}

/// The selected network, as copied under the read lock: `(from, to, weight)` triples of uids (or of
/// node indices, see `uid_of`).
/// Pairs may repeat (a window's interactions, one triple each): their weights add up.
pub struct Extract {
    pub edges: Vec<[u32; 3]>,
    /// When set, the edges' ends are petgraph node indices, and this maps them to uids.
    pub uid_of: Option<Vec<u32>>,
    /// With `uid_of`, when every edge was kept: each node index's out- and in-degree, which are
    /// then its counts of edges as source and as target.
    pub degrees: Option<(Vec<u32>, Vec<u32>)>,
    /// The graph's version when the copy was taken.
    pub version: u64,
}

/// A selection's interactions one by one (who acted on whom, how, when), as copied under the read
/// lock: what an export writes, every interaction with its time. 12 bytes each.
pub struct Interactions {
    pub(crate) stamps: Vec<Stamp>,
    /// The graph's version when the copy was taken.
    pub version: u64,
}

/// A user's key, handle and name, copied out of the graph.
pub type UserRefOwned = (String, Option<String>, Option<String>);

/// An edge of a selection in full: per-kind counts and first and last time, within the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairDetail {
    pub kinds: KindCounts,
    pub first: u32,
    pub last: u32,
}

impl Graph {
    /// Copies the selected network. Without a time window it reads the edges' per-kind counts; with
    /// one it reads the timeline (skipping chunks outside the window). Cost under the lock: one pass
    /// over the edges (or the window's part of the timeline), writing 12 bytes per kept edge; the
    /// edges are read in parallel, in as many parts as the current rayon pool has threads.
    ///
    /// `room` is where to copy: a caller that sizes it beforehand (to [`Graph::edge_bound`] without
    /// a window), outside the lock, keeps the page faults of a big allocation out of the time the
    /// lock is held.
    pub(crate) fn extract(&self, sel: &Selection, mut room: Vec<[u32; 3]>) -> Extract {
        if sel.is_windowed() {
            room.clear();
            let bounds = sel.bounds();
            self.timeline.for_each_in(bounds.0, bounds.1, |s| {
                if sel.keeps(s.kind_index(), s.at(), bounds) {
                    room.push([s.from(), s.to(), 1]);
                }
            });
            return Extract { edges: room, uid_of: None, degrees: None, version: self.version() };
        }
        // Node index -> uid (a sequential read of petgraph's nodes), then the edges as node indices
        // (a sequential read of its edges, by parts): turning indices into uids is random access,
        // left to the caller, after the lock.
        let mut uid_of = vec![u32::MAX; self.node_bound()];
        let (mut out_deg, mut in_deg) = (vec![0u32; self.node_bound()], vec![0u32; self.node_bound()]);
        for i in self.g.node_indices() {
            let n = &self.g[i];
            (uid_of[i.index()], out_deg[i.index()], in_deg[i.index()]) = (n.uid, n.out_deg, n.in_deg);
        }
        let bound = self.edge_bound();
        room.resize(bound, [0; 3]);
        let all = sel.kinds == KindSet::ALL;
        let min_weight = sel.min_weight.max(1);
        let weight = |e: EdgeIndex, packed: &Packed| {
            let w = if all && !packed.spilled() {
                packed.unpack(None).total()
            } else {
                let tie = self.tie_of(e, packed);
                sel.kinds.kinds().iter().map(|&k| u64::from(tie.count(k))).sum()
            };
            w.min(u64::from(u32::MAX)) as u32
        };
        // Each part copies its slots' kept edges to the front of its stretch of `room`, on a thread
        // of its own: not rayon's, whose threads, waiting for a part, may take up unrelated work
        // and hold the lock for as long as that takes.
        let chunk = bound.div_ceil(rayon::current_num_threads()).max(1);
        let copy = |p: usize, out: &mut [[u32; 3]]| {
            let mut kept = 0;
            for i in p * chunk..p * chunk + out.len() {
                let e = EdgeIndex::new(i);
                let (Some(packed), Some((a, b))) = (self.g.edge_weight(e), self.g.edge_endpoints(e)) else {
                    continue;
                };
                let w = weight(e, packed);
                if w >= min_weight {
                    out[kept] = [a.index() as u32, b.index() as u32, w];
                    kept += 1;
                }
            }
            kept
        };
        let kept: Vec<usize> = std::thread::scope(|scope| {
            let mut parts = room.chunks_mut(chunk).enumerate();
            let first = parts.next();
            let others: Vec<_> = parts.map(|(p, out)| scope.spawn(move || copy(p, out))).collect();
            let first = first.map(|(p, out)| copy(p, out));
            first.into_iter().chain(others.into_iter().map(|h| h.join().expect("a copy panicked"))).collect()
        });
        // Then the parts close up (nothing moves when every slot holds a kept edge).
        let mut len = 0;
        for (p, &k) in kept.iter().enumerate() {
            if p * chunk != len {
                room.copy_within(p * chunk..p * chunk + k, len);
            }
            len += k;
        }
        room.truncate(len);
        let degrees = (len == self.g.edge_count()).then_some((out_deg, in_deg));
        Extract { edges: room, uid_of: Some(uid_of), degrees, version: self.version() }
    }

    /// Copies a selection's interactions (kinds and window; `min_weight` is an edge's, applied by
    /// the caller). One pass over the timeline, skipping chunks outside the window.
    ///
    /// `room` is where to copy (emptied first), sized beforehand outside the lock as for
    /// [`Graph::extract`]; [`Graph::timeline_stats`] gives how many there are at most.
    pub(crate) fn interactions(&self, sel: &Selection, mut room: Vec<Stamp>) -> Interactions {
        room.clear();
        let bounds = sel.bounds();
        self.timeline.for_each_in(bounds.0, bounds.1, |s| {
            if sel.keeps(s.kind_index(), s.at(), bounds) {
                room.push(*s);
            }
        });
        Interactions { stamps: room, version: self.version() }
    }

    /// Per-kind detail of some edges of a selection, by uid pairs (for drawing a few of them: an ego
    /// network, a path). Without a window it reads the edges; with one, one pass over the timeline.
    pub(crate) fn pair_details(&self, sel: &Selection, pairs: &[(u32, u32)]) -> Vec<PairDetail> {
        let mut out = vec![PairDetail::default(); pairs.len()];
        if sel.is_windowed() {
            let at: FxHashMap<(u32, u32), usize> = pairs.iter().enumerate().map(|(i, &p)| (p, i)).collect();
            let bounds = sel.bounds();
            self.timeline.for_each_in(bounds.0, bounds.1, |s| {
                if !sel.keeps(s.kind_index(), s.at(), bounds) {
                    return;
                }
                if let Some(&i) = at.get(&(s.from(), s.to())) {
                    let d = &mut out[i];
                    d.kinds.add(s.kind(), 1);
                    d.first = if d.first == 0 { s.at() } else { d.first.min(s.at()) };
                    d.last = d.last.max(s.at());
                }
            });
            return out;
        }
        for (d, &(a, b)) in out.iter_mut().zip(pairs) {
            let (Some(a), Some(b)) = (self.key_of_uid(a), self.key_of_uid(b)) else { continue };
            let Some(tie) = self.tie(a, b) else { continue };
            for k in sel.kinds.kinds() {
                d.kinds.add(k, u64::from(tie.count(k)));
            }
            d.first = clamp_time(tie.first_seen());
            d.last = clamp_time(tie.last_seen());
        }
        out
    }

    /// Key, handle and name of users by uid (`None` for a user removed since).
    pub(crate) fn user_refs(&self, uids: &[u32]) -> Vec<Option<UserRefOwned>> {
        uids.iter()
            .map(|&uid| {
                let key = self.key_of_uid(uid)?;
                let (h, n) = self.profile(key)?;
                Some((key.to_string(), h.map(str::to_string), n.map(str::to_string)))
            })
            .collect()
    }

    /// The earliest and latest interaction time in the timeline (for a page's time slider).
    pub fn time_span(&self) -> Option<(i64, i64)> {
        let mut span: Option<(u32, u32)> = None;
        for s in self.timeline.iter() {
            span = Some(match span {
                None => (s.at(), s.at()),
                Some((a, b)) => (a.min(s.at()), b.max(s.at())),
            });
        }
        span.map(|(a, b)| (i64::from(a), i64::from(b)))
    }

    /// Interactions per time bucket of `width` seconds from `start` (for the page's timeline chart).
    pub(crate) fn histogram(&self, sel: &Selection, start: i64, width: i64, buckets: usize) -> Vec<u64> {
        let mut out = vec![0u64; buckets];
        let bounds = sel.bounds();
        self.timeline.for_each_in(bounds.0, bounds.1, |s| {
            if sel.keeps(s.kind_index(), s.at(), bounds) {
                let b = (i64::from(s.at()) - start).div_euclid(width.max(1));
                if (0..buckets as i64).contains(&b) {
                    out[b as usize] += 1;
                }
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_sets_parse_and_refuse_unknown_names() {
        assert_eq!(KindSet::parse("repost, reply"), Ok(KindSet::of(&[Kind::Repost, Kind::Reply])));
        assert_eq!(KindSet::parse("retweet").unwrap().names(), ["repost"]);
        assert_eq!(KindSet::parse("repost,like"), Err("like".into()));
        assert_eq!(KindSet::parse(""), Err(String::new()));
        assert_eq!(KindSet::ALL.kinds().len(), 5);
    }

    #[test]
    fn the_whole_networks_extract_gives_degrees_that_count_its_edges() {
        // Users added, tied, untied, removed and added again (their node indices reused).
        let mut g = Graph::new();
        for u in 0..60u32 {
            g.upsert_user(u, &format!("u{u}"), None, None);
        }
        let mut rng = crate::rng::SplitMix64::new(5);
        for step in 0..5_000u32 {
            let (a, b) = (format!("u{}", rng.below(60)), format!("u{}", rng.below(60)));
            let mut tie = crate::graph::Tie::default();
            tie.add([Kind::Mention, Kind::Repost][rng.below(2) as usize], 1_700_000_000);
            match rng.below(10) {
                0 => {
                    g.set_tie(&a, &b, crate::graph::Tie::default());
                }
                1 if step % 40 == 0 => {
                    g.remove_user(&a);
                    g.upsert_user(a[1..].parse().unwrap(), &a, None, None);
                }
                _ => {
                    g.set_tie(&a, &b, tie);
                }
            }
        }
        // Copied in three parts (the pool's threads), the vacant slots between them closed up: the
        // same edges as the graph's, with the weights each selection gives them.
        let parts = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for sel in [
            Selection::default(),
            Selection { kinds: KindSet::of(&[Kind::Repost]), min_weight: 2, ..Selection::default() },
        ] {
            let x = parts.install(|| g.extract(&sel, Vec::new()));
            let uid_of = x.uid_of.unwrap();
            let mut got: Vec<_> =
                x.edges.iter().map(|e| (uid_of[e[0] as usize], uid_of[e[1] as usize], e[2])).collect();
            let mut want = Vec::new();
            g.for_each_tie(|a, b, t| {
                let w = sel.kinds.kinds().iter().map(|&k| t.count(k)).sum::<u32>();
                if w >= sel.min_weight {
                    want.push((a, b, w));
                }
            });
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want);
        }
        let x = g.extract(&Selection::default(), Vec::new());
        let (out_deg, in_deg) = x.degrees.expect("every edge kept");
        let (mut from, mut to) = (vec![0u32; out_deg.len()], vec![0u32; in_deg.len()]);
        for e in &x.edges {
            from[e[0] as usize] += 1;
            to[e[1] as usize] += 1;
        }
        assert_eq!((from, to), (out_deg, in_deg));
        assert!(x.edges.len() > 500, "the test made edges ({})", x.edges.len());
        // Reposts only: some edges are left out, and the degrees with them.
        let reposts = Selection { kinds: KindSet::of(&[Kind::Repost]), ..Selection::default() };
        let x = g.extract(&reposts, Vec::new());
        assert!(x.edges.len() < g.tie_count() && x.degrees.is_none());
    }
}
