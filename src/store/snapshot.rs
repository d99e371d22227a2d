//! Snapshot files: the whole graph as of one commit, in checksummed frames. A checkpoint writes one
//! beside sled's files (`checkpoint-<id>.tfs`); a backup is the same stream, gzipped, with the
//! post records and cursors added.
//!
//! ```text
//! file   := magic "TFSNAP1\n", frame*, end frame
//! frame  := len u32 LE | crc32 u32 LE | seq u32 LE | kind u8 | payload (len bytes)
//!           crc32 covers seq, kind and payload; seq counts frames from 0
//! kinds  := 1 effects (a run of layout::Effect: users, then edges, then the timeline, then seen
//!           posts), 2 records (sled key/value pairs: post records and cursors, in backups),
//!           3 end (the counts: what a reader checks it got)
//! ```
//!
//! Every frame is checked on its own (a flipped byte names its frame), the sequence numbers catch a
//! frame lost or repeated, and the end frame catches a file cut short. Nothing after the end frame
//! is allowed. The whole file's checksum, kept in the manifest, catches the rest.

use super::layout;
use super::seen::{SeenSet, SHARDS};
use crate::graph::{Cut, Graph};
use parking_lot::RwLock;
use std::io::{self, Read, Write};

const MAGIC: &[u8; 8] = b"TFSNAP1\n";
const HEADER: usize = 13;
/// Payload size a frame is cut at; the largest frame a reader accepts (a damaged length must not
/// make it allocate gigabytes).
const FRAME_BYTES: usize = 256 << 10;
const MAX_FRAME: usize = 16 << 20;
/// Users or edges read per slice of a cut: each slice holds the graph's read lock, and so the write
/// path, for well under a millisecond.
const SLICE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Effects = 1,
    Records = 2,
    End = 3,
}

/// What a snapshot holds, written in its end frame and checked on reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub users: u64,
    pub ties: u64,
    pub stamps: u64,
    pub seen: u64,
    /// Sled records (post records and cursors): only backups carry them.
    pub records: u64,
    /// The last log record the snapshot covers, and the next uid to assign after it.
    pub seq: u64,
    pub next_uid: u32,
}

impl Counts {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(52);
        for n in [self.users, self.ties, self.stamps, self.seen, self.records, self.seq] {
            v.extend_from_slice(&n.to_le_bytes());
        }
        v.extend_from_slice(&self.next_uid.to_le_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Counts> {
        let n = |i: usize| Some(u64::from_le_bytes(v.get(i * 8..i * 8 + 8)?.try_into().ok()?));
        (v.len() == 52).then_some(())?;
        Some(Counts {
            users: n(0)?,
            ties: n(1)?,
            stamps: n(2)?,
            seen: n(3)?,
            records: n(4)?,
            seq: n(5)?,
            next_uid: u32::from_le_bytes(v[48..52].try_into().ok()?),
        })
    }
}

/// Writes frames, keeping the whole stream's checksum and size.
pub(crate) struct FrameWriter<W: Write> {
    out: W,
    seq: u32,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(mut out: W) -> io::Result<FrameWriter<W>> {
        out.write_all(MAGIC)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(MAGIC);
        Ok(FrameWriter { out, seq: 0, bytes: MAGIC.len() as u64, crc })
    }

    pub fn frame(&mut self, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
        let mut head = [0u8; HEADER];
        head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[8..12].copy_from_slice(&self.seq.to_le_bytes());
        head[12] = kind as u8;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head[8..]);
        crc.update(payload);
        head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.crc.update(&head);
        self.crc.update(payload);
        self.seq += 1;
        self.bytes += (HEADER + payload.len()) as u64;
        Ok(())
    }

    /// Writes `buf` as effect frames once it holds a frame's worth (or, with `all`, whatever it
    /// holds), cut at effect boundaries.
    pub(crate) fn effects(&mut self, buf: &mut Vec<u8>, all: bool) -> io::Result<()> {
        if buf.is_empty() || (buf.len() < FRAME_BYTES && !all) {
            return Ok(());
        }
        for piece in layout::pieces(buf, FRAME_BYTES) {
            self.frame(FrameKind::Effects, piece)?;
        }
        buf.clear();
        Ok(())
    }

    /// Writes the end frame; returns the stream, its size, checksum and frame count.
    pub fn finish(mut self, counts: &Counts) -> io::Result<(W, Summary)> {
        self.frame(FrameKind::End, &counts.encode())?;
        self.out.flush()?;
        Ok((self.out, Summary { bytes: self.bytes, crc32: self.crc.finalize(), frames: self.seq }))
    }
}

/// Size, checksum and frame count of a written snapshot (what the manifest records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Summary {
    pub bytes: u64,
    pub crc32: u32,
    pub frames: u32,
}

/// Writes the graph as of `cut`, and the seen-set but the fingerprints `after_cut` names, as effect
/// frames; returns the counts (without `seq`, `next_uid` and `records`, which the caller knows).
/// Holds each lock for one slice at a time.
pub(crate) fn write_graph<W: Write>(
    out: &mut FrameWriter<W>,
    graph: &RwLock<Graph>,
    seen: &RwLock<SeenSet>,
    cut: &Cut,
    after_cut: impl Fn(u64) -> bool,
) -> io::Result<Counts> {
    let mut enc = layout::Encoder::default();
    let mut counts = Counts::default();
    // Users first, then edges, then the timeline, then seen posts: the order a load replays them in.
    loop {
        let more = cut.read_users(&graph.read(), SLICE, |uid, key, handle, name| {
            enc.user_put(uid, key, handle, name);
            counts.users += 1;
        });
        out.effects(&mut enc.buf, false)?;
        if !more {
            break;
        }
    }
    loop {
        let more = cut.read_ties(&graph.read(), SLICE, |a, b, tie| {
            enc.tie_set(a, b, tie);
            counts.ties += 1;
        });
        out.effects(&mut enc.buf, false)?;
        if !more {
            break;
        }
    }
    for s in cut.stamps() {
        enc.stamp(s.from(), s.to(), s.kind(), s.at());
        counts.stamps += 1;
        out.effects(&mut enc.buf, false)?;
    }
    // The seen-set only grows. In a checkpoint a fingerprint added after the cut is harmless (its
    // log record, which also names it, is replayed after the snapshot); a backup, which has no log
    // after it, leaves them out (`after_cut`), or a post it does not hold would count as seen.
    for i in 0..SHARDS {
        for &h in seen.read().shard(i) {
            if !after_cut(h) {
                enc.seen(h);
                counts.seen += 1;
            }
        }
        out.effects(&mut enc.buf, false)?;
    }
    out.effects(&mut enc.buf, true)?;
    Ok(counts)
}

/// What is wrong with a snapshot stream, and where.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("it does not start as a tagflow snapshot")]
    Magic,
    #[error("frame {frame} at byte {at} is damaged ({what}); it and everything after it would be lost")]
    Frame { frame: u32, at: u64, what: &'static str },
    #[error("it ends after {frames} frames ({at} bytes) without its end frame: cut short")]
    Truncated { frames: u32, at: u64 },
    #[error("bytes follow its end frame at byte {at}")]
    Trailing { at: u64 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One frame read and checked.
pub(crate) struct Frame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

/// Reads and checks frames; after the end frame, [`FrameReader::counts`] and the summary.
pub(crate) struct FrameReader<R: Read> {
    inp: R,
    seq: u32,
    at: u64,
    crc: crc32fast::Hasher,
    end: Option<Counts>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(mut inp: R) -> Result<FrameReader<R>, Damage> {
        let mut magic = [0u8; 8];
        read_full(&mut inp, &mut magic).map_err(|_| Damage::Magic)?;
        if &magic != MAGIC {
            return Err(Damage::Magic);
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&magic);
        Ok(FrameReader { inp, seq: 0, at: magic.len() as u64, crc, end: None })
    }

    /// The next frame before the end frame; `None` after it (once the stream is checked to end).
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, Damage> {
        if self.end.is_some() {
            return Ok(None);
        }
        let (frame, at) = (self.seq, self.at);
        let bad = |what| Damage::Frame { frame, at, what };
        let mut head = [0u8; HEADER];
        match read_full(&mut self.inp, &mut head)? {
            0 => return Err(Damage::Truncated { frames: frame, at }),
            n if n < HEADER => return Err(bad("its header is cut short")),
            _ => {}
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(bad("its length is impossible"));
        }
        let mut payload = vec![0u8; len];
        if read_full(&mut self.inp, &mut payload)? < len {
            return Err(bad("its payload is cut short"));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head[8..]);
        crc.update(&payload);
        if crc.finalize().to_le_bytes() != head[4..8] {
            return Err(bad("checksum mismatch"));
        }
        if head[8..12] != self.seq.to_le_bytes() {
            return Err(bad("out of sequence: a frame is missing or repeated"));
        }
        let kind = match head[12] {
            1 => FrameKind::Effects,
            2 => FrameKind::Records,
            3 => FrameKind::End,
            _ => return Err(bad("unknown kind")),
        };
        self.crc.update(&head);
        self.crc.update(&payload);
        self.seq += 1;
        self.at += (HEADER + len) as u64;
        if kind == FrameKind::End {
            self.end = Some(Counts::decode(&payload).ok_or_else(|| bad("unreadable counts"))?);
            let mut rest = [0u8; 1];
            if read_full(&mut self.inp, &mut rest)? > 0 {
                return Err(Damage::Trailing { at: self.at });
            }
            return Ok(None);
        }
        Ok(Some(Frame { kind, payload }))
    }

    /// The counts of the end frame (once read).
    pub fn counts(&self) -> Option<Counts> {
        self.end
    }

    pub fn summary(&self) -> Summary {
        Summary { bytes: self.at, crc32: self.crc.clone().finalize(), frames: self.seq }
    }

    /// Byte offset of the next frame, for messages.
    pub fn position(&self) -> (u32, u64) {
        (self.seq, self.at)
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(inp: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match inp.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new()).unwrap();
        let mut enc = layout::Encoder::default();
        for uid in 0..3000u32 {
            enc.user_put(uid, &format!("x:{uid}"), Some("h"), None);
        }
        w.effects(&mut enc.buf, true).unwrap();
        w.frame(FrameKind::Records, b"\x02\0\0\0ca").unwrap();
        let (bytes, summary) = w.finish(&Counts { users: 3000, records: 1, ..Counts::default() }).unwrap();
        assert_eq!(summary.bytes, bytes.len() as u64);
        bytes
    }

    fn read_all(bytes: &[u8]) -> Result<(usize, Counts, Summary), Damage> {
        let mut r = FrameReader::new(bytes)?;
        let mut n = 0;
        while r.next_frame()?.is_some() {
            n += 1;
        }
        Ok((n, r.counts().unwrap(), r.summary()))
    }

    #[test]
    fn frames_round_trip_and_every_damage_is_named() {
        let bytes = sample();
        let (frames, counts, summary) = read_all(&bytes).unwrap();
        assert_eq!(frames, 2);
        assert_eq!(counts.users, 3000);
        assert_eq!(summary.crc32, crc32fast::hash(&bytes));
        // Every single flipped byte, every cut, and trailing junk: reported, never read as good.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            assert!(read_all(&bad).is_err(), "flip at {i} read as good");
        }
        for cut in [0, 5, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut} read as good");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(read_all(&long), Err(Damage::Trailing { .. })));
    }
}
