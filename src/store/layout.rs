//! The on-disk layout: an append-only log of group commits plus chunked snapshots, in sled's
//! default tree, so that one `apply_batch` is one atomic write of a whole group commit.
//!
//! | key                                         | value                                            |
//! |---------------------------------------------|--------------------------------------------------|
//! | `mversion`                                  | layout version (u32 LE)                          |
//! | `mstore_id`                                 | the store's id, also in the manifest (16 hex)    |
//! | `mnext_uid`                                 | next user id to assign (u32 LE)                  |
//! | `l` seq (u64 BE) piece (u32 BE)             | one piece of a group commit: a [`PieceHeader`], then [`Effect`]s |
//! | `p` platform tag (u8) post id               | a post's interactions, for platforms that edit and delete (Mastodon, Bluesky) |
//! | `c` cursor name                             | a source's resume position (opaque bytes)         |
//!
//! Why a log: a post touches an author, a few targets and a few edges. Writing each of those as its
//! own sled key costs several random-key inserts per post; appending the commit's final effects as
//! one sequential record costs one insert per commit, whatever its size. Restart loads the latest
//! snapshot in bulk and replays the log after it; a checkpoint folds the log into a new snapshot
//! once the log is as large as the snapshot (so checkpoints cost O(graph) amortised, and the log to
//! replay never exceeds the snapshot). Users are numbered by the store (uids), never by petgraph.
//! Snapshots are files beside sled's (see `snapshot` and `manifest`); layouts 2 and 3 kept them in
//! sled as `s` chunks, with a `mcheckpoint` record, and log pieces without headers: such a directory
//! is read as it is and rewritten as layout 4 when opened.
//!
//! Why pieces: log records and snapshot chunks are cut into values of about [`PIECE_BYTES`], each a
//! whole number of effects (so each decodes on its own). sled 0.34 stores a value larger than an
//! eighth of its 512 KiB segment as a separate blob, and its page cache weighs a page by its size
//! *in the log*, where a blob is a pointer: blob pages never count against `cache_capacity` and are
//! never evicted. Whole 4 MiB chunks kept the entire snapshot resident after a restart (350 MB at
//! ten million interactions). A leaf holds at most 17 values before it splits, so pieces of a few
//! KiB keep even a full leaf inline, counted and evictable. Log keys written before pieces (`l` seq,
//! 9 bytes) still load: they sort before any piece of the same seq.

use crate::graph::{Kind, Platform, Tie, TIE_BYTES};

pub(crate) const LAYOUT_VERSION: u32 = 4;

/// Snapshots in sled, log pieces without checksums: read, then rewritten as the current layout.
pub(crate) const LAYOUT_SNAPSHOT_IN_SLED: u32 = 3;

/// Directories written before the interaction timeline (layout 2) still open: the timeline is then
/// rebuilt from the edges' first and last times and the directory rewritten as the current layout.
pub(crate) const LAYOUT_WITHOUT_TIMELINE: u32 = 2;

pub(crate) const META_VERSION: &[u8] = b"mversion";
pub(crate) const META_STORE_ID: &[u8] = b"mstore_id";
pub(crate) const META_NEXT_UID: &[u8] = b"mnext_uid";
/// Layouts 2 and 3 only.
pub(crate) const META_CHECKPOINT: &[u8] = b"mcheckpoint";
pub(crate) const LOG: u8 = b'l';
pub(crate) const SNAPSHOT: u8 = b's';
pub const POST: u8 = b'p';
pub const CURSOR: u8 = b'c';

/// Marks a post that was deleted: seen, but contributing nothing.
pub(crate) const POST_DELETED: &[u8] = &[0xFF];

/// Target size of one log piece or snapshot chunk; see the module notes. The largest effect (a user
/// with a long key, handle and name) is about 2.3 KiB, so no value exceeds 6.5 KiB and a full sled
/// leaf (17 values) stays under the 128 KiB blob threshold.
pub(crate) const PIECE_BYTES: usize = 4 << 10;

/// The first key of log record `seq` (its pieces follow it), and a bound for ranges over the log.
pub(crate) fn log_key(seq: u64) -> [u8; 9] {
    let mut k = [LOG; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The key of piece `piece` of log record `seq`.
pub(crate) fn log_piece_key(seq: u64, piece: u32) -> [u8; 13] {
    let mut k = [LOG; 13];
    k[1..9].copy_from_slice(&seq.to_be_bytes());
    k[9..].copy_from_slice(&piece.to_be_bytes());
    k
}

/// Just past every log key.
pub(crate) const LOG_END: &[u8] = &[LOG + 1];

/// What starts every log piece of layout 4: a checksum of the rest of the value, and where the piece
/// belongs (its record, its place, how many pieces the record has), so that a piece that is damaged,
/// misplaced or missing is found on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PieceHeader {
    pub seq: u64,
    pub piece: u32,
    pub pieces: u32,
}

pub(crate) const PIECE_HEADER: usize = 20;

/// A log piece as stored: header, then the effects.
pub(crate) fn encode_piece(h: PieceHeader, effects: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(PIECE_HEADER + effects.len());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&h.seq.to_le_bytes());
    v.extend_from_slice(&h.piece.to_le_bytes());
    v.extend_from_slice(&h.pieces.to_le_bytes());
    v.extend_from_slice(effects);
    let crc = crc32fast::hash(&v[4..]);
    v[..4].copy_from_slice(&crc.to_le_bytes());
    v
}

/// A stored log piece's header and effects, or what is wrong with it.
pub(crate) fn decode_piece(v: &[u8]) -> Result<(PieceHeader, &[u8]), &'static str> {
    if v.len() < PIECE_HEADER {
        return Err("shorter than its header");
    }
    if crc32fast::hash(&v[4..]).to_le_bytes() != v[..4] {
        return Err("checksum mismatch");
    }
    let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
    let h = PieceHeader {
        seq: u64::from_le_bytes(v[4..12].try_into().expect("8 bytes")),
        piece: u32_at(12),
        pieces: u32_at(16),
    };
    Ok((h, &v[PIECE_HEADER..]))
}

/// Splits a sequence of effects into pieces of at least `target` bytes (the last may be shorter),
/// each a whole number of effects. A malformed tail stays in the last piece, where decoding reports it.
pub fn pieces(bytes: &[u8], target: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(bytes.len() / target.max(1) + 1);
    let mut decoder = Decoder::new(bytes);
    let mut start = 0;
    while decoder.next().is_some() {
        if decoder.pos - start >= target {
            out.push(&bytes[start..decoder.pos]);
            start = decoder.pos;
        }
    }
    if start < bytes.len() {
        out.push(&bytes[start..]);
    }
    out
}

pub(crate) fn seq_of_log_key(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.get(1..9)?.try_into().ok()?))
}

pub(crate) fn snapshot_key(snapshot: u32, chunk: u32) -> [u8; 9] {
    let mut k = [SNAPSHOT; 9];
    k[1..5].copy_from_slice(&snapshot.to_be_bytes());
    k[5..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// The checkpoint record: which snapshot is current, the last log seq it covers, and how many users
/// and edges it holds (so that loading sizes the graph once instead of doubling its vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Checkpoint {
    pub snapshot: u32,
    pub seq: u64,
    pub users: u64,
    pub ties: u64,
}

#[cfg(test)]
pub(crate) fn encode_checkpoint(c: &Checkpoint) -> [u8; 28] {
    let mut v = [0u8; 28];
    v[..4].copy_from_slice(&c.snapshot.to_le_bytes());
    v[4..12].copy_from_slice(&c.seq.to_le_bytes());
    v[12..20].copy_from_slice(&c.users.to_le_bytes());
    v[20..].copy_from_slice(&c.ties.to_le_bytes());
    v
}

pub(crate) fn decode_checkpoint(v: &[u8]) -> Option<Checkpoint> {
    let u64_at = |i: usize| Some(u64::from_le_bytes(v.get(i..i + 8)?.try_into().ok()?));
    Some(Checkpoint {
        snapshot: u32::from_le_bytes(v.get(..4)?.try_into().ok()?),
        seq: u64_at(4)?,
        // Records written before the counts were added are 12 bytes: no sizes, load grows as it goes.
        users: if v.len() >= 28 { u64_at(12)? } else { 0 },
        ties: if v.len() >= 28 { u64_at(20)? } else { 0 },
    })
}

pub(crate) fn post_key(platform: Platform, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + id.len());
    k.push(POST);
    k.push(platform.tag());
    k.extend_from_slice(id.as_bytes());
    k
}

pub(crate) fn cursor_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(CURSOR);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Whether the store keeps a post's interactions so that an edit or a deletion can undo them.
/// X's stream never edits or deletes a post in place, and X is the bulk of any import: its posts are
/// only remembered as seen.
pub(crate) fn keeps_post_record(platform: Platform) -> bool {
    platform != Platform::X
}

/// The 64-bit fingerprint of a post identity that the seen-set keeps. Stable across builds (it is
/// persisted): FNV-1a over the platform tag and the id, finished with a SplitMix64 mix. A chance
/// collision between two real posts is about n²/2⁶⁵: one in a few hundred thousand at ten million.
pub(crate) fn post_hash(platform: Platform, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(platform.tag()).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    crate::rng::mix64(h ^ id.len() as u64)
}

/// One recorded change. Log records and snapshot chunks are sequences of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect<'a> {
    UserPut {
        uid: u32,
        key: &'a str,
        handle: Option<&'a str>,
        name: Option<&'a str>,
    },
    UserDrop {
        uid: u32,
    },
    /// The final state of an edge; an empty tie removes it.
    TieSet {
        from: u32,
        to: u32,
        tie: Tie,
    },
    /// A post was seen (applied, or deleted before it arrived).
    Seen {
        hash: u64,
    },
    /// One interaction and its time, for the timeline.
    Stamp {
        from: u32,
        to: u32,
        kind: Kind,
        at: u32,
    },
    /// Every stamp of a pair goes (its edge was removed).
    PurgePair {
        from: u32,
        to: u32,
    },
    /// One stamp goes (a retracted post); `at` 0 is "any time" (posts recorded without times).
    Unstamp {
        from: u32,
        to: u32,
        kind: Kind,
        at: u32,
    },
}

const USER_PUT: u8 = 1;
const USER_DROP: u8 = 2;
const TIE_SET: u8 = 3;
const SEEN: u8 = 4;
const STAMP: u8 = 5;
const PURGE_PAIR: u8 = 6;
const UNSTAMP: u8 = 7;

/// Handles and names longer than this are cut (at a character boundary) before storing.
const MAX_FIELD: usize = 1024;

/// Appends effects to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn user_put(&mut self, uid: u32, key: &str, handle: Option<&str>, name: Option<&str>) {
        self.buf.push(USER_PUT);
        self.buf.extend_from_slice(&uid.to_le_bytes());
        push_field(&mut self.buf, Some(key));
        push_field(&mut self.buf, handle);
        push_field(&mut self.buf, name);
    }

    pub(crate) fn user_drop(&mut self, uid: u32) {
        self.buf.push(USER_DROP);
        self.buf.extend_from_slice(&uid.to_le_bytes());
    }

    pub(crate) fn tie_set(&mut self, from: u32, to: u32, tie: &Tie) {
        self.buf.push(TIE_SET);
        self.buf.extend_from_slice(&from.to_le_bytes());
        self.buf.extend_from_slice(&to.to_le_bytes());
        self.buf.extend_from_slice(&tie.to_bytes());
    }

    pub fn seen(&mut self, hash: u64) {
        self.buf.push(SEEN);
        self.buf.extend_from_slice(&hash.to_le_bytes());
    }

    pub(crate) fn stamp(&mut self, from: u32, to: u32, kind: Kind, at: u32) {
        self.stamp_like(STAMP, from, to, kind, at);
    }

    pub(crate) fn unstamp(&mut self, from: u32, to: u32, kind: Kind, at: u32) {
        self.stamp_like(UNSTAMP, from, to, kind, at);
    }

    fn stamp_like(&mut self, tag: u8, from: u32, to: u32, kind: Kind, at: u32) {
        self.buf.push(tag);
        self.buf.extend_from_slice(&from.to_le_bytes());
        self.buf.extend_from_slice(&to.to_le_bytes());
        self.buf.push(kind.index() as u8);
        self.buf.extend_from_slice(&at.to_le_bytes());
    }

    pub(crate) fn purge_pair(&mut self, from: u32, to: u32) {
        self.buf.push(PURGE_PAIR);
        self.buf.extend_from_slice(&from.to_le_bytes());
        self.buf.extend_from_slice(&to.to_le_bytes());
    }
}

fn push_field(out: &mut Vec<u8>, s: Option<&str>) {
    match s.map(|s| truncate(s, MAX_FIELD)) {
        // Length 0xFFFF means "absent", distinct from an empty string.
        None => out.extend_from_slice(&u16::MAX.to_le_bytes()),
        Some(s) => {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads effects back; yields `Err(offset)` at the first malformed one (a corrupt record).
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes, pos: 0 }
    }

    /// At most how many users and edges these effects add to a graph: what to grow the graph's
    /// storage for before applying them ([`crate::graph::Graph::grown`]).
    pub fn growth(self) -> (usize, usize) {
        self.fold((0, 0), |(users, ties), e| match e {
            Ok(Effect::UserPut { .. }) => (users + 1, ties),
            Ok(Effect::TieSet { .. }) => (users, ties + 1),
            _ => (users, ties),
        })
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn field(&mut self) -> Option<Option<&'a str>> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        if len == u16::MAX {
            return Some(None);
        }
        Some(Some(std::str::from_utf8(self.take(len as usize)?).ok()?))
    }

    fn effect(&mut self) -> Option<Effect<'a>> {
        Some(match *self.take(1)?.first()? {
            USER_PUT => {
                let uid = self.u32()?;
                let key = self.field()??;
                Effect::UserPut { uid, key, handle: self.field()?, name: self.field()? }
            }
            USER_DROP => Effect::UserDrop { uid: self.u32()? },
            TIE_SET => {
                let (from, to) = (self.u32()?, self.u32()?);
                Effect::TieSet { from, to, tie: Tie::from_bytes(self.take(TIE_BYTES)?)? }
            }
            SEEN => Effect::Seen { hash: u64::from_le_bytes(self.take(8)?.try_into().ok()?) },
            tag @ (STAMP | UNSTAMP) => {
                let (from, to) = (self.u32()?, self.u32()?);
                let kind = Kind::from_index(*self.take(1)?.first()? as usize)?;
                let at = self.u32()?;
                if tag == STAMP {
                    Effect::Stamp { from, to, kind, at }
                } else {
                    Effect::Unstamp { from, to, kind, at }
                }
            }
            PURGE_PAIR => Effect::PurgePair { from: self.u32()?, to: self.u32()? },
            _ => return None,
        })
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Result<Effect<'a>, usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let at = self.pos;
        match self.effect() {
            Some(e) => Some(Ok(e)),
            None => {
                self.pos = self.bytes.len();
                Some(Err(at))
            }
        }
    }
}

/// One persisted interaction of a post, by store uids, with the time it was stamped at (0 in
/// records written before the timeline: "any time").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PostEdge {
    pub kind: Kind,
    pub from: u32,
    pub to: u32,
    pub at: u32,
}

/// Post record versions: 1 without times (9 bytes an edge), 2 with them (13 bytes).
const POST_V1: u8 = 1;
const POST_V2: u8 = 2;

pub(crate) fn encode_post(edges: &[PostEdge]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 13 * edges.len());
    // A leading version byte keeps an empty interaction list distinct from the deleted marker.
    out.push(POST_V2);
    for e in edges {
        out.push(e.kind.index() as u8);
        out.extend_from_slice(&e.from.to_le_bytes());
        out.extend_from_slice(&e.to.to_le_bytes());
        out.extend_from_slice(&e.at.to_le_bytes());
    }
    out
}

/// The interactions of a stored post; empty for a deleted one; `None` if unreadable.
pub(crate) fn decode_post(bytes: &[u8]) -> Option<Vec<PostEdge>> {
    if bytes == POST_DELETED {
        return Some(Vec::new());
    }
    let (&version, body) = bytes.split_first()?;
    let width = match version {
        POST_V1 => 9,
        POST_V2 => 13,
        _ => return None,
    };
    if body.len() % width != 0 {
        return None;
    }
    body.chunks_exact(width)
        .map(|c| {
            Some(PostEdge {
                kind: Kind::from_index(c[0] as usize)?,
                from: u32::from_le_bytes(c[1..5].try_into().ok()?),
                to: u32::from_le_bytes(c[5..9].try_into().ok()?),
                at: if width == 13 { u32::from_le_bytes(c[9..13].try_into().ok()?) } else { 0 },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_round_trip_in_order() {
        let mut tie = Tie::default();
        tie.add(Kind::Quote, 1_600_000_000);
        let long = "é".repeat(600);
        let mut e = Encoder::default();
        e.user_put(7, "x:1", Some("alice"), Some("Alice 🦀"));
        e.user_put(8, "bob", None, Some(""));
        e.user_put(9, "c", None, Some(&long));
        e.user_drop(3);
        e.tie_set(7, 8, &tie);
        e.seen(u64::MAX - 5);
        e.stamp(7, 8, Kind::Reply, 1_700_000_001);
        e.purge_pair(8, 7);
        e.unstamp(7, 8, Kind::Mention, 0);
        let got: Vec<Effect> = Decoder::new(&e.buf).map(Result::unwrap).collect();
        assert_eq!(Decoder::new(&e.buf).growth(), (3, 1), "three users and one edge at most");
        assert_eq!(
            got[0],
            Effect::UserPut { uid: 7, key: "x:1", handle: Some("alice"), name: Some("Alice 🦀") }
        );
        assert_eq!(got[1], Effect::UserPut { uid: 8, key: "bob", handle: None, name: Some("") });
        let Effect::UserPut { name: Some(cut), .. } = &got[2] else { panic!() };
        assert_eq!(cut.len(), 1024, "long names are cut at a character boundary");
        assert_eq!(got[3], Effect::UserDrop { uid: 3 });
        assert_eq!(got[4], Effect::TieSet { from: 7, to: 8, tie });
        assert_eq!(got[5], Effect::Seen { hash: u64::MAX - 5 });
        assert_eq!(got[6], Effect::Stamp { from: 7, to: 8, kind: Kind::Reply, at: 1_700_000_001 });
        assert_eq!(got[7], Effect::PurgePair { from: 8, to: 7 });
        assert_eq!(got[8], Effect::Unstamp { from: 7, to: 8, kind: Kind::Mention, at: 0 });
    }

    #[test]
    fn a_truncated_record_is_reported_not_misread() {
        let mut e = Encoder::default();
        e.user_drop(1);
        e.tie_set(1, 2, &Tie::default());
        let cut = &e.buf[..e.buf.len() - 3];
        let got: Vec<_> = Decoder::new(cut).collect();
        assert_eq!(got, vec![Ok(Effect::UserDrop { uid: 1 }), Err(5)]);
    }

    #[test]
    fn pieces_are_whole_effects_and_rejoin_to_the_record() {
        let mut enc = Encoder::default();
        for uid in 0..500u32 {
            enc.user_put(uid, &format!("x:{uid}"), Some("h"), None);
            enc.seen(u64::from(uid));
        }
        let whole: Vec<_> = Decoder::new(&enc.buf).collect();
        let parts = pieces(&enc.buf, 256);
        assert!(parts.len() > 10);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.len() >= 256 && p.len() < 256 + 64));
        assert_eq!(parts.concat(), enc.buf);
        let rejoined: Vec<_> = parts.iter().flat_map(|p| Decoder::new(p)).collect();
        assert_eq!(rejoined, whole);
        assert!(pieces(&[], 256).is_empty());
        assert_eq!(pieces(&enc.buf, usize::MAX), vec![&enc.buf[..]]);
    }

    #[test]
    fn post_records_round_trip_and_deleted_is_distinct_from_empty() {
        let edges = vec![PostEdge { kind: Kind::Quote, from: 7, to: 1 << 20, at: 1_700_000_000 }];
        assert_eq!(decode_post(&encode_post(&edges)), Some(edges));
        // A record written before times were kept reads with "any time".
        let old = [1, 2, 7, 0, 0, 0, 9, 0, 0, 0];
        assert_eq!(decode_post(&old), Some(vec![PostEdge { kind: Kind::Quote, from: 7, to: 9, at: 0 }]));
        assert_eq!(decode_post(&encode_post(&[])), Some(vec![]));
        assert_ne!(encode_post(&[]).as_slice(), POST_DELETED);
        assert_eq!(decode_post(&[1, 2, 3]), None);
    }

    const PINNED_HASH: u64 = 12_968_671_951_153_371_252;

    #[test]
    fn log_keys_sort_by_sequence_and_post_hashes_are_stable() {
        assert!(log_key(255) < log_key(256));
        assert!(log_key(255).as_slice() < log_piece_key(255, 0).as_slice());
        assert!(log_piece_key(255, 0) < log_piece_key(255, 1));
        assert!(log_piece_key(255, u32::MAX).as_slice() < log_key(256).as_slice());
        assert!(&log_piece_key(u64::MAX, u32::MAX)[..] < LOG_END);
        assert_eq!(seq_of_log_key(&log_key(1 << 40)), Some(1 << 40));
        assert_eq!(seq_of_log_key(&log_piece_key(1 << 40, 7)), Some(1 << 40));
        assert!(snapshot_key(1, 9) < snapshot_key(2, 0));
        // Persisted: must never change between builds.
        assert_eq!(
            post_hash(Platform::X, "1377650529766154240"),
            post_hash(Platform::X, "1377650529766154240")
        );
        assert_ne!(post_hash(Platform::X, "1"), post_hash(Platform::Mastodon, "1"));
        assert_eq!(post_hash(Platform::X, "1377650529766154240"), PINNED_HASH);
    }
}
