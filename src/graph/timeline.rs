//! The interaction timeline: one 12-byte stamp per interaction (who acted on whom, how, and when),
//! so that any time window can be counted exactly, which per-edge first/last times cannot do.
//!
//! Stamps name users by store uid, never by petgraph index: uids are never reused, so a stamp can
//! never come to stand for another user. The graph keeps the timeline in step with its ties (for
//! every edge and kind, as many stamps as the tie counts): the store's write path adds a stamp with
//! every interaction and takes them out with retracted posts, removed edges and removed users.
//!
//! Kept in fixed-size chunks rather than one vector: a vector grown by doubling holds up to twice
//! its length, and at ten million interactions that slack alone would be over the 12-byte budget.
//! Each chunk remembers its time range, so a window skips the chunks it cannot touch (live data
//! arrives roughly in time order, so most of a narrow window's chunks are skipped).

use super::model::Kind;
use std::sync::Arc;

/// One interaction: `from` acted upon `to` with `kind` at `at` (unix seconds, as a [`super::Tie`]
/// keeps them). The kind rides in the top three bits of `from`: uids stay below 2^29.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Stamp {
    from_kind: u32,
    to: u32,
    at: u32,
}

/// Uids at or above this cannot be stamped (the store refuses to assign them).
pub const MAX_UID: u32 = (1 << 29) - 1;
const UID_MASK: u32 = MAX_UID;

impl Stamp {
    pub(crate) fn new(from: u32, to: u32, kind: Kind, at: u32) -> Stamp {
        debug_assert!(from <= MAX_UID && to <= MAX_UID);
        Stamp { from_kind: (from & UID_MASK) | ((kind.index() as u32) << 29), to, at }
    }
    pub(crate) fn from(&self) -> u32 {
        self.from_kind & UID_MASK
    }
    pub(crate) fn to(&self) -> u32 {
        self.to
    }
    pub(crate) fn kind(&self) -> Kind {
        Kind::from_index((self.from_kind >> 29) as usize).unwrap_or(Kind::Manual)
    }
    pub(crate) fn kind_index(&self) -> usize {
        (self.from_kind >> 29) as usize
    }
    pub(crate) fn at(&self) -> u32 {
        self.at
    }
}

/// Stamps per chunk: 768 KiB chunks, small next to a large timeline, large next to malloc's overhead.
const CHUNK: usize = 1 << 16;

/// The last chunk grows by this many stamps at a time, not all at once nor by doubling: whatever
/// the timeline's length, at most 48 KiB of it is unused.
const GROWTH: usize = CHUNK / 16;

struct Chunk {
    stamps: Vec<Stamp>,
    min_at: u32,
    max_at: u32,
}

/// A copy of a chunk shared with a [`FrozenTimeline`], made before the live timeline changes it:
/// with the original's capacity, so that pushing on grows it as it would have grown the original.
impl Clone for Chunk {
    fn clone(&self) -> Chunk {
        let mut stamps = Vec::with_capacity(self.stamps.capacity().max(self.stamps.len()));
        stamps.extend_from_slice(&self.stamps);
        Chunk { stamps, min_at: self.min_at, max_at: self.max_at }
    }
}

impl Chunk {
    fn new() -> Chunk {
        Chunk { stamps: Vec::new(), min_at: u32::MAX, max_at: 0 }
    }
    fn note(&mut self, at: u32) {
        self.min_at = self.min_at.min(at);
        self.max_at = self.max_at.max(at);
    }
}

/// What to take out of the timeline in one pass.
#[derive(Debug, Default)]
pub(crate) struct Purge {
    /// Every stamp of these users (removed users).
    pub(crate) uids: rustc_hash::FxHashSet<u32>,
    /// Every stamp of these (from, to) pairs (removed edges).
    pub(crate) pairs: rustc_hash::FxHashSet<(u32, u32)>,
    /// One stamp each: the interactions of retracted posts. `at == None` (a post recorded before
    /// times were kept) takes any stamp of that pair and kind.
    pub(crate) stamps: Vec<(u32, u32, Kind, Option<u32>)>,
}

impl Purge {
    pub(crate) fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.pairs.is_empty() && self.stamps.is_empty()
    }
}

/// All stamps, in the order they were added. Chunks are shared with frozen copies (see
/// [`Timeline::freeze`]) and copied on the first change while shared.
#[derive(Default)]
pub(crate) struct Timeline {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
}

/// The timeline as it was when frozen, whatever the live one does since.
pub(crate) struct FrozenTimeline {
    chunks: Vec<Arc<Chunk>>,
}

impl FrozenTimeline {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Stamp> {
        self.chunks.iter().flat_map(|c| c.stamps.iter())
    }
}

impl Timeline {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held, for the memory figures (`/status` and the benchmark).
    pub(crate) fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.stamps.capacity() * std::mem::size_of::<Stamp>()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }

    pub(crate) fn push(&mut self, s: Stamp) {
        if self.chunks.last().is_none_or(|c| c.stamps.len() == CHUNK) {
            self.chunks.push(Arc::new(Chunk::new()));
        }
        let last = Arc::make_mut(self.chunks.last_mut().expect("a chunk was just ensured"));
        if last.stamps.len() == last.stamps.capacity() {
            last.stamps.reserve_exact(GROWTH);
        }
        last.stamps.push(s);
        last.note(s.at);
        self.len += 1;
    }

    /// Visits the stamps whose time may fall in `[since, until)`: whole chunks outside it are skipped,
    /// the rest is for `f` to filter.
    pub(crate) fn for_each_in(&self, since: u32, until: u32, mut f: impl FnMut(&Stamp)) {
        for c in &self.chunks {
            if c.max_at < since || c.min_at >= until {
                continue;
            }
            c.stamps.iter().for_each(&mut f);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Stamp> {
        self.chunks.iter().flat_map(|c| c.stamps.iter())
    }

    /// A copy of the timeline as it is now, sharing its chunks: a pointer per 65,536 stamps. The
    /// live timeline copies a shared chunk before changing it (pushing onto the last one; a purge
    /// builds new chunks anyway), so the copy costs memory only for what changes while it lives.
    pub(crate) fn freeze(&self) -> FrozenTimeline {
        FrozenTimeline { chunks: self.chunks.clone() }
    }

    /// Takes out what `purge` names, in one pass that keeps the order of the rest. Returns how many
    /// stamps went.
    pub(crate) fn purge(&mut self, purge: &Purge) -> usize {
        if purge.is_empty() || self.len == 0 {
            return 0;
        }
        // Single stamps to take: exact ones by value, undated ones by (pair, kind); counted, since a
        // post can repeat an interaction.
        let mut exact: rustc_hash::FxHashMap<Stamp, u32> = Default::default();
        let mut undated: rustc_hash::FxHashMap<(u32, u32, usize), u32> = Default::default();
        for &(a, b, kind, at) in &purge.stamps {
            match at {
                Some(at) => *exact.entry(Stamp::new(a, b, kind, at)).or_default() += 1,
                None => *undated.entry((a, b, kind.index())).or_default() += 1,
            }
        }
        let before = self.len;
        let mut take = |s: &Stamp| -> bool {
            if purge.uids.contains(&s.from()) || purge.uids.contains(&s.to) {
                return true;
            }
            if !purge.pairs.is_empty() && purge.pairs.contains(&(s.from(), s.to)) {
                return true;
            }
            if let Some(n) = exact.get_mut(s).filter(|n| **n > 0) {
                *n -= 1;
                return true;
            }
            false
        };
        // Chunk by chunk into a new timeline: each old chunk is freed as soon as it is copied.
        let mut out = Timeline::default();
        for c in std::mem::take(&mut self.chunks) {
            c.stamps.iter().filter(|s| !take(s)).for_each(|s| out.push(*s));
        }
        // Undated retractions match any time: resolved after the exact ones, so that no stamp is
        // claimed twice.
        if !undated.is_empty() {
            let mut again = Timeline::default();
            for c in std::mem::take(&mut out.chunks) {
                for s in &c.stamps {
                    match undated.get_mut(&(s.from(), s.to, s.kind_index())).filter(|n| **n > 0) {
                        Some(n) => *n -= 1,
                        None => again.push(*s),
                    }
                }
            }
            out = again;
        }
        *self = out;
        before - self.len
    }

    /// Gives back the slack of the last chunk (after a bulk load).
    pub(crate) fn shrink_to_fit(&mut self) {
        if let Some(c) = self.chunks.last_mut().and_then(Arc::get_mut) {
            c.stamps.shrink_to_fit();
        }
        self.chunks.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_pack_in_twelve_bytes_and_round_trip() {
        assert_eq!(std::mem::size_of::<Stamp>(), 12);
        let s = Stamp::new(MAX_UID, 7, Kind::Manual, u32::MAX);
        assert_eq!((s.from(), s.to(), s.kind(), s.at()), (MAX_UID, 7, Kind::Manual, u32::MAX));
        let s = Stamp::new(0, MAX_UID, Kind::Repost, 1);
        assert_eq!((s.from(), s.to(), s.kind(), s.at()), (0, MAX_UID, Kind::Repost, 1));
    }

    #[test]
    fn a_timeline_holds_little_more_than_twelve_bytes_a_stamp() {
        let mut t = Timeline::default();
        for len in [1, GROWTH + 1, CHUNK, 2 * CHUNK + 10] {
            while t.len() < len {
                t.push(Stamp::new(1, 2, Kind::Repost, t.len() as u32));
            }
            let slack = t.bytes() - 12 * len;
            assert!(slack <= 12 * GROWTH + 1024, "{len} stamps: {slack} bytes unused");
        }
    }

    #[test]
    fn purge_takes_users_pairs_and_single_stamps_and_keeps_the_rest_in_order() {
        let mut t = Timeline::default();
        let n = CHUNK * 2 + 10;
        for i in 0..n as u32 {
            t.push(Stamp::new(i % 7, (i + 1) % 7, Kind::ALL[(i % 5) as usize], i));
        }
        // Duplicated interaction: two identical stamps, one retracted.
        t.push(Stamp::new(1, 2, Kind::Quote, 5));
        t.push(Stamp::new(1, 2, Kind::Quote, 5));
        let total = t.len();
        let mut p = Purge::default();
        p.uids.insert(6);
        p.pairs.insert((3, 4));
        p.stamps.push((1, 2, Kind::Quote, Some(5)));
        p.stamps.push((2, 3, Kind::Reply, None));
        let want: Vec<Stamp> = {
            let mut v: Vec<Stamp> = t
                .iter()
                .copied()
                .filter(|s| s.from() != 6 && s.to() != 6 && (s.from(), s.to()) != (3, 4))
                .collect();
            let i = v.iter().position(|s| *s == Stamp::new(1, 2, Kind::Quote, 5)).unwrap();
            v.remove(i);
            let j = v.iter().position(|s| (s.from(), s.to(), s.kind()) == (2, 3, Kind::Reply)).unwrap();
            v.remove(j);
            v
        };
        let gone = t.purge(&p);
        assert_eq!(gone, total - want.len());
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), want);
        assert_eq!(t.len(), want.len());
        // Window skipping still sees every stamp of the window.
        let mut seen = 0;
        t.for_each_in(100, 200, |s| seen += usize::from((100..200).contains(&s.at())));
        assert_eq!(seen, want.iter().filter(|s| (100..200).contains(&s.at())).count());
    }
}
