//! The weight of an edge: how often one user acted upon another, per kind, and when.

use super::model::Kind;
use serde::Serialize;

/// All interactions from one user to another: per-kind counts and the first and last time seen.
///
/// ```
/// use tagflow::graph::{Kind, Tie};
/// let mut tie = Tie::default();
/// tie.add(Kind::Repost, 1_700_000_000);
/// tie.add(Kind::Mention, 1_600_000_000);
/// assert_eq!((tie.count(Kind::Repost), tie.total()), (1, 2));
/// assert_eq!(tie.first_seen(), 1_600_000_000);
/// ```
///
/// 28 bytes, because a million-user graph holds millions of these: times are unix seconds as `u32`
/// (good until 2106) and counts saturate at `u32::MAX` instead of wrapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tie {
    counts: [u32; Kind::COUNT],
    first: u32,
    last: u32,
}

/// The on-disk size of a [`Tie`] (see [`Tie::to_bytes`]).
pub const TIE_BYTES: usize = 4 * Kind::COUNT + 8;

impl Tie {
    /// Adds one interaction of `kind` seen at `at` (unix seconds).
    pub fn add(&mut self, kind: Kind, at: i64) {
        let at = clamp_time(at);
        let c = &mut self.counts[kind.index()];
        *c = c.saturating_add(1);
        if self.first == 0 || at < self.first {
            self.first = at;
        }
        if at > self.last {
            self.last = at;
        }
    }

    /// Removes one interaction of `kind` (a deleted or edited post). First/last times are kept: they
    /// say when the pair was seen interacting, which stays true. Returns false if there was none.
    pub fn remove(&mut self, kind: Kind) -> bool {
        let c = &mut self.counts[kind.index()];
        if *c == 0 {
            return false;
        }
        *c -= 1;
        true
    }

    pub fn count(&self, kind: Kind) -> u32 {
        self.counts[kind.index()]
    }

    /// All interactions of every kind.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    pub fn first_seen(&self) -> i64 {
        i64::from(self.first)
    }

    pub fn last_seen(&self) -> i64 {
        i64::from(self.last)
    }

    /// Fixed little-endian layout: 5 counts, first, last.
    pub(crate) fn to_bytes(self) -> [u8; TIE_BYTES] {
        let mut out = [0u8; TIE_BYTES];
        let words = self.counts.iter().chain([&self.first, &self.last]);
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The inverse of [`Tie::to_bytes`]; `None` for a value of the wrong length.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Tie> {
        if bytes.len() != TIE_BYTES {
            return None;
        }
        let mut words = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut tie = Tie::default();
        for c in tie.counts.iter_mut() {
            *c = words.next()?;
        }
        tie.first = words.next()?;
        tie.last = words.next()?;
        Some(tie)
    }
}

/// A [`Tie`] as the graph holds it: 16 bytes instead of 28, which with petgraph's links makes an
/// edge 32 bytes instead of 48. Almost every pair interacts a handful of times, so the five counts
/// are packed as 12-bit fields of one word; a tie with any count above 4,095 is marked spilled and
/// the graph keeps its full counts beside it ([`Packed::pack`] hands them over). Never empty: the
/// graph removes an edge whose tie empties, and bit 62 is always set, so `Option<Packed>` (what a
/// `StableGraph` stores per edge) costs nothing extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packed {
    bits: std::num::NonZeroU64,
    first: u32,
    last: u32,
}

const FIELD_BITS: u32 = 12;
const FIELD_MAX: u32 = (1 << FIELD_BITS) - 1;
const PRESENT: u64 = 1 << 62;
const SPILLED: u64 = 1 << 63;

/// Full counts of a spilled [`Packed`] tie.
pub(crate) type Spill = [u32; Kind::COUNT];

impl Packed {
    /// Packs a tie; `Some(counts)` if they do not fit and must be kept beside it.
    pub(crate) fn pack(tie: &Tie) -> (Packed, Option<Spill>) {
        let fits = tie.counts.iter().all(|&c| c <= FIELD_MAX);
        let bits = if fits {
            tie.counts
                .iter()
                .enumerate()
                .fold(PRESENT, |acc, (i, &c)| acc | u64::from(c) << (FIELD_BITS * i as u32))
        } else {
            PRESENT | SPILLED
        };
        let packed = Packed {
            bits: std::num::NonZeroU64::new(bits).expect("PRESENT is set"),
            first: tie.first,
            last: tie.last,
        };
        (packed, (!fits).then_some(tie.counts))
    }

    /// Whether the counts live beside the tie.
    pub(crate) fn spilled(&self) -> bool {
        self.bits.get() & SPILLED != 0
    }

    /// The tie back; `spill` must be the counts [`Packed::pack`] returned if it was spilled.
    pub(crate) fn unpack(&self, spill: Option<&Spill>) -> Tie {
        let counts = match spill {
            Some(c) if self.spilled() => *c,
            _ => {
                let mut counts = [0; Kind::COUNT];
                for (i, c) in counts.iter_mut().enumerate() {
                    *c = ((self.bits.get() >> (FIELD_BITS * i as u32)) as u32) & FIELD_MAX;
                }
                counts
            }
        };
        Tie { counts, first: self.first, last: self.last }
    }
}

/// Unix seconds clamped into the `u32` range a [`Tie`] stores (0 is "never").
pub fn clamp_time(at: i64) -> u32 {
    at.clamp(1, i64::from(u32::MAX)) as u32
}

/// Per-kind counts as a JSON object, omitting zero kinds: `{"repost":2,"mention":1}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KindCounts {
    #[serde(skip_serializing_if = "is_zero")]
    pub repost: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub reply: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub quote: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub mention: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub manual: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl KindCounts {
    pub fn add(&mut self, kind: Kind, n: u64) {
        let slot = match kind {
            Kind::Repost => &mut self.repost,
            Kind::Reply => &mut self.reply,
            Kind::Quote => &mut self.quote,
            Kind::Mention => &mut self.mention,
            Kind::Manual => &mut self.manual,
        };
        *slot += n;
    }

    pub(crate) fn add_tie(&mut self, tie: &Tie) {
        for kind in Kind::ALL {
            self.add(kind, u64::from(tie.count(kind)));
        }
    }

    pub fn get(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Repost => self.repost,
            Kind::Reply => self.reply,
            Kind::Quote => self.quote,
            Kind::Mention => self.mention,
            Kind::Manual => self.manual,
        }
    }

    pub fn total(&self) -> u64 {
        Kind::ALL.iter().map(|&k| self.get(k)).sum()
    }
}

/// Formats unix seconds as RFC 3339 UTC (`2021-04-01T12:00:00Z`), without a date crate in the core.
/// Times are clamped to what a [`Tie`] can hold (1970 to 2106).
///
/// ```
/// assert_eq!(tagflow::graph::rfc3339(1_617_278_400), "2021-04-01T12:00:00Z");
/// ```
pub fn rfc3339(secs: i64) -> String {
    let mut out = Vec::with_capacity(20);
    push_rfc3339(secs.clamp(0, i64::from(u32::MAX)) as u32, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends unix seconds as RFC 3339 UTC to `out`: 20 ASCII bytes, no allocation (exports write
/// one per interaction).
pub fn push_rfc3339(secs: u32, out: &mut Vec<u8>) {
    let secs = i64::from(secs);
    let (year, month, day) = civil_from_days(secs / 86_400);
    let (month, day, rem) = (i64::from(month), i64::from(day), secs % 86_400);
    let two = |n: i64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let [y1, y2] = two(year / 100);
    let [y3, y4] = two(year % 100);
    let [mo1, mo2] = two(month);
    let [d1, d2] = two(day);
    let [h1, h2] = two(rem / 3600);
    let [mi1, mi2] = two(rem % 3600 / 60);
    let [s1, s2] = two(rem % 60);
    out.extend_from_slice(&[
        y1, y2, y3, y4, b'-', mo1, mo2, b'-', d1, d2, b'T', h1, h2, b':', mi1, mi2, b':', s1, s2, b'Z',
    ]);
}

/// Days since 1970-01-01 to a proleptic Gregorian date (year, month, day): Howard Hinnant's
/// `civil_from_days`, in integers only (the demo's lines and every time the API writes use it).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tie_counts_per_kind_and_tracks_first_and_last() {
        let mut t = Tie::default();
        t.add(Kind::Repost, 200);
        t.add(Kind::Repost, 100);
        t.add(Kind::Mention, 300);
        assert_eq!(t.count(Kind::Repost), 2);
        assert_eq!(t.count(Kind::Mention), 1);
        assert_eq!(t.total(), 3);
        assert_eq!((t.first_seen(), t.last_seen()), (100, 300));
        assert!(t.remove(Kind::Mention));
        assert!(!t.remove(Kind::Mention), "no mention left to remove");
        assert_eq!(t.total(), 2);
    }

    #[test]
    fn tie_round_trips_through_bytes() {
        let mut t = Tie::default();
        t.add(Kind::Quote, 1_600_000_000);
        t.add(Kind::Manual, 1_700_000_000);
        assert_eq!(Tie::from_bytes(&t.to_bytes()), Some(t));
        assert_eq!(Tie::from_bytes(&[0u8; 3]), None);
    }

    #[test]
    fn packed_ties_round_trip_and_spill_only_counts_that_do_not_fit() {
        assert_eq!(std::mem::size_of::<Packed>(), 16);
        assert_eq!(std::mem::size_of::<Option<Packed>>(), 16, "the niche keeps petgraph's Option free");
        let mut t = Tie::default();
        t.add(Kind::Reply, 1_600_000_000);
        for _ in 0..FIELD_MAX {
            t.add(Kind::Manual, 1_700_000_000);
        }
        let (p, spill) = Packed::pack(&t);
        assert_eq!((spill, p.spilled()), (None, false), "4,095 still fits");
        assert_eq!(p.unpack(None), t);
        t.add(Kind::Manual, 1_800_000_000);
        t.counts[Kind::Repost.index()] = u32::MAX;
        let (p, spill) = Packed::pack(&t);
        assert!(p.spilled());
        assert_eq!(spill, Some(t.counts));
        assert_eq!(p.unpack(spill.as_ref()), t);
        assert_eq!((p.unpack(spill.as_ref()).count(Kind::Manual), t.last_seen()), (4_096, 1_800_000_000));
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_617_278_400), "2021-04-01T12:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::from(u32::MAX)), "2106-02-07T06:28:15Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z", "clamped");
    }
}
