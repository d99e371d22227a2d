//! Opening a data directory: the graph rebuilt from the snapshot file the manifest names and the log
//! after it, every piece checked against its checksum, its place and the manifest, so that damage is
//! refused with what it costs instead of served as a smaller graph. Also reads the layouts before
//! snapshot files (2 and 3), which `open` then rewrites; opens sled (a panic on its own files is
//! reported as damage) and creates a new store in an empty directory.

use super::feed::{Changes, TieChange};
use super::layout::{self, Effect};
use super::manifest::{self, Manifest};
use super::seen::SeenSet;
use super::snapshot::{Counts, FrameKind, FrameReader};
use super::{StoreConfig, StoreError};
use crate::graph::{Graph, Purge};
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

/// What opening the data directory found.
pub(super) struct Loaded {
    pub graph: Graph,
    pub seen: SeenSet,
    pub disk: Disk,
    /// Leftovers that were (or, verifying, would be) cleaned up: for the log and `tagflow verify`.
    pub notes: Vec<String>,
}

/// Where the store stands on disk: found by loading, then kept up to date by the writer.
pub(super) struct Disk {
    pub store_id: String,
    pub next_uid: u32,
    pub next_seq: u64,
    /// The current snapshot, and the last log record it covers.
    pub snapshot: Option<manifest::SnapshotEntry>,
    pub covered: u64,
    /// Pieces and bytes of each log record after `covered`, in order.
    pub log: VecDeque<(u32, u64)>,
    pub log_bytes: u64,
    /// Read from a layout before snapshot files: its keys, for the rewrite to drop.
    pub legacy: Option<Legacy>,
}

impl Disk {
    pub(crate) fn snapshot_bytes(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.summary.bytes)
    }
}

/// The sled keys of a layout 2 or 3 directory that its rewrite drops.
pub(super) struct Legacy {
    pub snapshot: u32,
    pub chunks: u32,
    /// First log seq, and per record its pieces (0: a record written whole, under its own key).
    pub first_seq: u64,
    pub pieces: Vec<u32>,
    /// Written before the timeline: it was rebuilt from the edges.
    pub without_timeline: bool,
}

/// Applies runs of effects (a snapshot's frames, log records) to a graph and its seen-set: loading
/// builds a new graph with it, a replica following the shared log applies other replicas' commits to
/// its live one. Snapshot edges are known to be new (`fresh`): they are added without looking for an
/// existing edge.
///
/// Timeline removals are gathered in `purge` and carried out in one pass over the timeline, just
/// before a later stamp they could concern (or at [`Effects::settle`]): a pass per record would
/// make replaying a log of deletions quadratic.
#[derive(Default)]
pub(super) struct Effects {
    pub max_uid: Option<u32>,
    purge: Purge,
    /// What was applied, to check against a snapshot's end frame.
    pub counts: Counts,
}

impl Effects {
    /// Applies `record`; `Err(offset)` at the first malformed effect.
    pub fn apply(
        &mut self,
        graph: &mut Graph,
        seen: &mut SeenSet,
        record: &[u8],
        fresh: bool,
    ) -> Result<(), usize> {
        self.apply_recording(graph, seen, record, fresh, None)
    }

    /// [`Effects::apply`], also recording what changed for the change feed when `changes` is given
    /// (a replica applying another's commit tells its own consumers).
    pub(crate) fn apply_recording(
        &mut self,
        graph: &mut Graph,
        seen: &mut SeenSet,
        record: &[u8],
        fresh: bool,
        mut changes: Option<&mut Changes>,
    ) -> Result<(), usize> {
        let purge = &mut self.purge;
        for effect in layout::Decoder::new(record) {
            let effect = effect?;
            if let Some(c) = changes.as_deref_mut() {
                record_change(graph, &effect, c);
            }
            match effect {
                Effect::UserPut { uid, key, handle, name } => {
                    graph.upsert_user(uid, key, handle, name);
                    if let Some(c) = changes.as_deref_mut() {
                        c.users.push((key.into(), handle.map(str::to_string)));
                    }
                    self.max_uid = Some(self.max_uid.map_or(uid, |m| m.max(uid)));
                    self.counts.users += 1;
                }
                Effect::UserDrop { uid } => {
                    graph.remove_user_by_uid(uid);
                    purge.uids.insert(uid);
                }
                Effect::PurgePair { from, to } => {
                    purge.pairs.insert((from, to));
                }
                Effect::Unstamp { from, to, kind, at } => {
                    purge.stamps.push((from, to, kind, (at != 0).then_some(at)));
                }
                Effect::Stamp { from, to, kind, at } => {
                    let concerned = !purge.is_empty()
                        && (purge.uids.contains(&from)
                            || purge.uids.contains(&to)
                            || purge.pairs.contains(&(from, to))
                            || purge.stamps.iter().any(|&(a, b, k, _)| (a, b, k) == (from, to, kind)));
                    if concerned {
                        graph.purge_timeline(purge);
                        *purge = Purge::default();
                    }
                    graph.stamp(from, to, kind, at);
                    self.counts.stamps += 1;
                }
                Effect::TieSet { from, to, tie } => {
                    if fresh {
                        graph.load_tie(from, to, tie);
                    } else {
                        graph.set_tie_by_uid(from, to, tie);
                    }
                    self.counts.ties += 1;
                }
                Effect::Seen { hash } => {
                    seen.insert(hash);
                    self.counts.seen += 1;
                }
            }
        }
        Ok(())
    }

    /// Carries out the pending timeline removals.
    pub(crate) fn settle(&mut self, graph: &mut Graph) {
        if !self.purge.is_empty() {
            graph.purge_timeline(&std::mem::take(&mut self.purge));
        }
    }
}

/// What `effect` is about to change, as the feed reports it: edges before and after (a removed
/// user's edges all go).
fn record_change(graph: &Graph, effect: &Effect<'_>, changes: &mut Changes) {
    match *effect {
        Effect::UserDrop { uid } => {
            let Some(key) = graph.key_of_uid(uid) else { return };
            for (from, to) in graph.ties_of(key) {
                let before = graph.tie(&from, &to);
                changes.ties.push(TieChange { from: from.into(), to: to.into(), before, after: None });
            }
        }
        Effect::TieSet { from, to, tie } => {
            let (Some(a), Some(b)) = (graph.key_of_uid(from), graph.key_of_uid(to)) else { return };
            let before = graph.tie(a, b);
            let after = (!tie.is_empty()).then_some(tie);
            changes.ties.push(TieChange { from: a.into(), to: b.into(), before, after });
        }
        _ => {}
    }
}

/// A graph being loaded: a snapshot, then the log after it.
pub(super) struct Replay {
    pub graph: Graph,
    pub seen: SeenSet,
    pub effects: Effects,
}

impl Replay {
    pub fn new() -> Replay {
        Replay { graph: Graph::new(), seen: SeenSet::default(), effects: Effects::default() }
    }

    /// Applies `record`; `Err(offset)` at the first malformed effect.
    pub fn apply(&mut self, record: &[u8], fresh: bool) -> Result<(), usize> {
        self.effects.apply(&mut self.graph, &mut self.seen, record, fresh)
    }

    /// The pending timeline removals, then the tables' slack: the graph is ready to serve.
    pub fn finish(mut self) -> (Graph, SeenSet, Option<u32>) {
        self.effects.settle(&mut self.graph);
        self.graph.shrink_to_fit();
        // The tables are sized exactly by loading: the first writes would double them (see there).
        self.graph.reserve_headroom();
        (self.graph, self.seen, self.effects.max_uid)
    }
}

fn corrupt(dir: &Path, what: String) -> StoreError {
    StoreError::Corrupt { dir: dir.to_path_buf(), what }
}

/// Reads a snapshot file into `replay`, checking every frame, its end frame's counts and the
/// manifest's size and checksum.
pub(super) fn read_snapshot(
    dir: &Path,
    entry: &manifest::SnapshotEntry,
    replay: &mut Replay,
) -> Result<(), StoreError> {
    let damaged = |what: String| {
        corrupt(
            dir,
            format!(
                "snapshot {} (checkpoint {}, {} users, {} edges, {} interactions) {what}",
                entry.file, entry.id, entry.counts.users, entry.counts.ties, entry.counts.stamps
            ),
        )
    };
    let file =
        std::fs::File::open(dir.join(&entry.file)).map_err(|e| damaged(format!("cannot be read: {e}")))?;
    read_frames(std::io::BufReader::with_capacity(1 << 20, file), entry, replay).map_err(damaged)
}

/// Reads a snapshot's frames into `replay`, checking every frame, its end frame's counts and the
/// size and checksum `entry` records; `Err` says what is wrong, for the caller to name the snapshot.
pub(super) fn read_frames(
    inp: impl std::io::Read,
    entry: &manifest::SnapshotEntry,
    replay: &mut Replay,
) -> Result<(), String> {
    let mut r = FrameReader::new(inp).map_err(|e| format!("is damaged: {e}"))?;
    // Sized once: growing by doubling would leave up to half of the largest vectors unused.
    replay.graph.reserve(entry.counts.users as usize, entry.counts.ties as usize);
    while let Some(frame) = r.next_frame().map_err(|e| format!("is damaged: {e}"))? {
        if frame.kind != FrameKind::Effects {
            return Err(format!("holds a frame of kind {:?} where only effects belong", frame.kind));
        }
        let (n, at) = r.position();
        replay.apply(&frame.payload, true).map_err(|off| {
            format!("has an unreadable effect in frame {} at byte {}", n - 1, at + off as u64)
        })?;
    }
    let summary = r.summary();
    if summary != entry.summary {
        return Err(format!(
            "does not match its record: {} bytes, checksum {:08x}, {} frames where it says {} bytes, {:08x}, {} frames",
            summary.bytes, summary.crc32, summary.frames, entry.summary.bytes, entry.summary.crc32, entry.summary.frames
        ));
    }
    let end = r.counts().expect("the end frame was read");
    let got = Counts { seq: end.seq, next_uid: end.next_uid, records: end.records, ..replay.effects.counts };
    if end != entry.counts || got != end {
        return Err(format!(
            "holds other counts than it should: read {got:?}, its end frame says {end:?}, its record {:?}",
            entry.counts
        ));
    }
    Ok(())
}

/// Loads a layout 4 directory as its manifest describes it. With `repair`, leftovers of a checkpoint
/// cut short are removed (else only noted) and a torn last record is dropped.
pub(super) fn load(db: &sled::Db, dir: &Path, m: &Manifest, repair: bool) -> Result<Loaded, StoreError> {
    let mut notes = Vec::new();
    let stored_id = db.get(layout::META_STORE_ID)?;
    if stored_id.as_deref() != Some(m.store_id.as_bytes()) {
        return Err(corrupt(
            dir,
            format!(
                "sled's database (the files db and conf) is not the one the MANIFEST describes (store {}, log \
                 up to record {}): it was replaced, emptied or lost; post records and source cursors with it",
                m.store_id, m.last_seq
            ),
        ));
    }
    let mut replay = Replay::new();
    if let Some(entry) = &m.snapshot {
        read_snapshot(dir, entry, &mut replay)?;
        replay.effects.counts = Counts::default();
    }
    // The log after the snapshot: records numbered densely, pieces numbered densely within each.
    let mut next_seq = m.covered_seq + 1;
    let mut log = VecDeque::new();
    let mut log_bytes = 0u64;
    loop {
        let record = match read_record(db, next_seq)? {
            Ok(None) => break,
            Ok(Some(r)) => r,
            Err(what) => {
                // A damaged or incomplete record: the torn tail of a crash if nothing follows it and
                // it was never known durable; anything else is damage.
                let follows = db.range(&layout::log_key(next_seq + 1)[..]..layout::LOG_END).next().is_some();
                if next_seq > m.last_seq && !follows {
                    let note = format!(
                        "log record {next_seq} is incomplete ({what}): the torn tail of a crash, dropped"
                    );
                    log::warn!("store: {note}");
                    if repair {
                        remove_record(db, next_seq)?;
                    }
                    notes.push(note);
                    break;
                }
                return Err(corrupt(
                    dir,
                    format!(
                        "log record {next_seq} {what}; it and the {} records after it would be lost",
                        count_after(db, next_seq)?
                    ),
                ));
            }
        };
        let bytes: u64 = record.iter().map(|p| p.len() as u64).sum();
        for (i, piece) in record.iter().enumerate() {
            replay.apply(piece, false).map_err(|at| {
                corrupt(dir, format!("log record {next_seq} piece {i} has an unreadable effect at byte {at}"))
            })?;
        }
        log.push_back((record.len() as u32, bytes));
        log_bytes += bytes;
        next_seq += 1;
    }
    if next_seq <= m.last_seq {
        return Err(corrupt(
            dir,
            format!(
                "log record {next_seq} is missing but the MANIFEST says records up to {} were durable: {} \
                 acknowledged commits would be lost",
                m.last_seq,
                m.last_seq + 1 - next_seq
            ),
        ));
    }
    if let Some(kv) = db.range(&layout::log_key(next_seq)[..]..layout::LOG_END).next() {
        let (k, _) = kv?;
        return Err(corrupt(
            dir,
            format!(
                "log record {next_seq} is missing but record {:?} follows it",
                layout::seq_of_log_key(&k)
            ),
        ));
    }
    // Records the last checkpoint covers but did not get to drop before a crash.
    let stale: Vec<sled::IVec> = db
        .range(&layout::log_key(0)[..]..&layout::log_key(m.covered_seq + 1)[..])
        .keys()
        .collect::<Result<_, _>>()?;
    if !stale.is_empty() {
        notes.push(format!(
            "{} log pieces already in the snapshot were left by a checkpoint cut short",
            stale.len()
        ));
        if repair {
            let mut batch = sled::Batch::default();
            stale.into_iter().for_each(|k| batch.remove(k));
            db.apply_batch(batch)?;
        }
    }
    // Snapshot files the manifest does not name: a checkpoint cut short, or one replaced.
    let current = m.snapshot.as_ref().map(|s| s.file.as_str());
    for entry in
        std::fs::read_dir(dir).map_err(|e| corrupt(dir, format!("cannot list the directory: {e}")))?
    {
        let name = entry.map_err(|e| corrupt(dir, e.to_string()))?.file_name().to_string_lossy().into_owned();
        if name.starts_with("checkpoint-") && Some(name.as_str()) != current {
            notes.push(format!("{name} is not in the MANIFEST: left by a checkpoint cut short"));
            if repair {
                let _ = std::fs::remove_file(dir.join(&name));
            }
        }
    }
    let stored_next = next_uid(db, dir)?;
    let (graph, seen, max_uid) = replay.finish();
    let end_next = m.snapshot.as_ref().map_or(0, |s| s.counts.next_uid);
    let next_uid = stored_next.max(end_next).max(max_uid.map_or(0, |m| m + 1));
    for n in &notes {
        log::info!("store: {n}");
    }
    Ok(Loaded {
        graph,
        seen,
        notes,
        disk: Disk {
            store_id: m.store_id.clone(),
            next_uid,
            next_seq,
            snapshot: m.snapshot.clone(),
            covered: m.covered_seq,
            log,
            log_bytes,
            legacy: None,
        },
    })
}

fn next_uid(db: &sled::Db, dir: &Path) -> Result<u32, StoreError> {
    Ok(match db.get(layout::META_NEXT_UID)? {
        Some(v) => {
            u32::from_le_bytes(v.as_ref().try_into().map_err(|_| corrupt(dir, "bad next_uid".into()))?)
        }
        None => 0,
    })
}

/// The pieces of log record `seq`, each checked: `Ok(None)` if there is no such record, `Err` with
/// what is wrong if it is damaged or incomplete.
type Record = Result<Option<Vec<Vec<u8>>>, String>;

fn read_record(db: &sled::Db, seq: u64) -> Result<Record, sled::Error> {
    let Some(first) = db.get(layout::log_piece_key(seq, 0))? else {
        return Ok(if db.get(layout::log_key(seq))?.is_some() {
            Err("is written whole, as only layout 3 did".into())
        } else if db.get(layout::log_piece_key(seq, 1))?.is_some() {
            Err("is missing its piece 0".into())
        } else {
            Ok(None)
        });
    };
    let check = |v: &[u8], piece: u32, pieces: Option<u32>| -> Result<(Vec<u8>, u32), String> {
        let (h, effects) = layout::decode_piece(v).map_err(|e| format!("piece {piece} is damaged ({e})"))?;
        if h.seq != seq || h.piece != piece || pieces.is_some_and(|n| n != h.pieces) || h.pieces == 0 {
            return Err(format!(
                "piece {piece} is misplaced (its header says record {} piece {} of {})",
                h.seq, h.piece, h.pieces
            ));
        }
        Ok((effects.to_vec(), h.pieces))
    };
    let (effects, pieces) = match check(&first, 0, None) {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    let mut out = vec![effects];
    for piece in 1..pieces {
        let Some(v) = db.get(layout::log_piece_key(seq, piece))? else {
            return Ok(Err(format!("is missing piece {piece} of {pieces}")));
        };
        match check(&v, piece, Some(pieces)) {
            Ok((effects, _)) => out.push(effects),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(Some(out)))
}

fn remove_record(db: &sled::Db, seq: u64) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    for k in db.range(&layout::log_key(seq)[..]..&layout::log_key(seq + 1)[..]).keys() {
        batch.remove(k?);
    }
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

fn count_after(db: &sled::Db, seq: u64) -> Result<u64, sled::Error> {
    let mut n = 0;
    let mut last = None;
    for k in db.range(&layout::log_key(seq + 1)[..]..layout::LOG_END).keys() {
        let s = layout::seq_of_log_key(&k?);
        if s != last {
            n += 1;
            last = s;
        }
    }
    Ok(n)
}

/// Loads a directory of layout 2 or 3: the snapshot kept in sled, then the log after it (pieces
/// without headers, or records written whole).
///
/// Everything is read by key, never by iterating a range: sled 0.34's iterators page in every leaf
/// they pass without ever counting it against the cache, so a scan of the snapshot left all of it
/// resident for the life of the process, while a `get` is counted and evicted like any other access.
pub(super) fn load_legacy(db: &sled::Db, dir: &Path, without_timeline: bool) -> Result<Loaded, StoreError> {
    let checkpoint = match db.get(layout::META_CHECKPOINT)? {
        Some(v) => {
            layout::decode_checkpoint(&v).ok_or_else(|| corrupt(dir, "bad checkpoint record".into()))?
        }
        None => layout::Checkpoint::default(),
    };
    let (snapshot, covered) = (checkpoint.snapshot, checkpoint.seq);
    let mut replay = Replay::new();
    replay.graph.reserve(checkpoint.users as usize, checkpoint.ties as usize);
    let mut chunks = 0u32;
    // No checkpoint was ever completed when it covers nothing: any chunk is a leftover.
    if covered > 0 {
        while let Some(v) = db.get(layout::snapshot_key(snapshot, chunks))? {
            replay
                .apply(&v, true)
                .map_err(|at| corrupt(dir, format!("snapshot chunk {chunks} at byte {at}")))?;
            chunks += 1;
        }
    }
    let mut next_seq = covered + 1;
    let mut pieces_of = Vec::new();
    loop {
        let whole = db.get(layout::log_key(next_seq))?;
        let mut pieces = 0u32;
        if let Some(v) = &whole {
            replay
                .apply(v, false)
                .map_err(|at| corrupt(dir, format!("log record {next_seq} at byte {at}")))?;
        }
        while let Some(v) = db.get(layout::log_piece_key(next_seq, pieces))? {
            replay
                .apply(&v, false)
                .map_err(|at| corrupt(dir, format!("log record {next_seq} piece {pieces} at byte {at}")))?;
            pieces += 1;
        }
        if whole.is_none() && pieces == 0 {
            break;
        }
        pieces_of.push(pieces);
        next_seq += 1;
    }
    if let Some(kv) = db.range(&layout::log_key(next_seq)[..]..layout::LOG_END).next() {
        let (k, _) = kv?;
        return Err(corrupt(
            dir,
            format!("log record {next_seq} is missing but {:?} follows it", layout::seq_of_log_key(&k)),
        ));
    }
    let stored_next = next_uid(db, dir)?;
    let (mut graph, seen, max_uid) = replay.finish();
    if without_timeline {
        // Written before the timeline: rebuilt from the edges, then kept by the rewrite.
        graph.synthesize_timeline();
        log::warn!(
            "store: {} was written by an older tagflow without interaction times; the timeline was \
             rebuilt from each edge's first and last times (exact for edges seen once or twice)",
            dir.display()
        );
    }
    Ok(Loaded {
        graph,
        seen,
        notes: vec![format!(
            "written by an older tagflow (layout {}), rewritten on open",
            if without_timeline { 2 } else { 3 }
        )],
        disk: Disk {
            store_id: String::new(),
            next_uid: stored_next.max(max_uid.map_or(0, |m| m + 1)),
            next_seq,
            snapshot: None,
            covered: next_seq - 1,
            log: VecDeque::new(),
            log_bytes: 0,
            legacy: Some(Legacy {
                snapshot,
                chunks,
                first_seq: covered + 1,
                pieces: pieces_of,
                without_timeline,
            }),
        },
    })
}

/// Opens sled and loads what the directory holds, creating a new store in an empty directory.
/// sled panicking on files it cannot read is caught and reported as damage.
pub(super) fn open_db(config: &StoreConfig, repair: bool) -> Result<(sled::Db, Loaded), StoreError> {
    let dir = &config.dir;
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<_, StoreError> {
        let db = open_sled(config)?;
        let loaded = load_dir(&db, dir, repair)?;
        Ok((db, loaded))
    }));
    match attempt {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(StoreError::Corrupt {
                dir: dir.clone(),
                what: format!("sled could not read its own files (the files db and conf are damaged): {why}"),
            })
        }
    }
}

pub(super) fn open_sled(config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let dir = &config.dir;
    // sled releases its file lock from a background thread just after the previous owner in this
    // process let go (an in-process restart): give it a moment before reporting the directory held.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| classify_open_error(dir, e));
        match opened {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Which layout the directory is of, and its load. A new directory is created as layout 4: the
/// manifest first, then sled's marks, so that a crash in between leaves a directory that opens.
fn load_dir(db: &sled::Db, dir: &Path, repair: bool) -> Result<Loaded, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt { dir: dir.to_path_buf(), what };
    let m = manifest::read(dir).map_err(&corrupt)?;
    let version = match db.get(layout::META_VERSION)? {
        None => None,
        Some(v) => Some(u32::from_le_bytes(
            v.as_ref().try_into().map_err(|_| corrupt("the layout version record is damaged".into()))?,
        )),
    };
    match (version, m) {
        (Some(layout::LAYOUT_VERSION), Some(m)) => load(db, dir, &m, repair),
        (Some(layout::LAYOUT_VERSION), None) => Err(corrupt(format!(
            "its {} is missing: which snapshot and how much log it must hold is unknown",
            manifest::FILE
        ))),
        (Some(v @ (layout::LAYOUT_SNAPSHOT_IN_SLED | layout::LAYOUT_WITHOUT_TIMELINE)), _) => {
            load_legacy(db, dir, v == layout::LAYOUT_WITHOUT_TIMELINE)
        }
        (Some(v), _) => Err(corrupt(format!("unknown layout version {v} (written by a newer tagflow?)"))),
        // A manifest of a store that never held anything: its creation was cut short.
        (None, Some(m)) if m.snapshot.is_none() && m.last_seq == 0 && db.is_empty() => {
            create(db, dir, m.store_id, repair)
        }
        (None, Some(m)) => Err(corrupt(format!(
            "sled's database (the files db and conf) is empty or missing, but the {} says it held log \
             records up to {}{}",
            manifest::FILE,
            m.last_seq,
            m.snapshot.map(|s| format!(" beside snapshot {}", s.file)).unwrap_or_default()
        ))),
        (None, None) if !db.is_empty() => {
            Err(corrupt("sled's database holds records but no layout version".into()))
        }
        (None, None) => {
            if let Some(f) = std::fs::read_dir(dir)
                .map_err(|e| corrupt(e.to_string()))?
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
            {
                return Err(corrupt(format!(
                    "it holds {} but neither a {} nor sled's records",
                    f.file_name().to_string_lossy(),
                    manifest::FILE
                )));
            }
            create(db, dir, new_store_id(), repair)
        }
    }
}

fn create(db: &sled::Db, dir: &Path, store_id: String, write: bool) -> Result<Loaded, StoreError> {
    if write {
        manifest::write(dir, &manifest::Manifest::new(store_id.clone()))
            .map_err(|e| StoreError::Io { what: format!("writing {}", manifest::FILE), cause: e })?;
        db.insert(layout::META_STORE_ID, store_id.as_bytes())?;
        db.insert(layout::META_VERSION, &layout::LAYOUT_VERSION.to_le_bytes()[..])?;
        db.flush()?;
    }
    Ok(Loaded {
        graph: Graph::new(),
        seen: SeenSet::default(),
        notes: Vec::new(),
        disk: Disk {
            store_id,
            next_uid: 0,
            next_seq: 1,
            snapshot: None,
            covered: 0,
            log: Default::default(),
            log_bytes: 0,
            legacy: None,
        },
    })
}

pub(super) fn new_store_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:016x}", crate::rng::mix64(nanos as u64 ^ (u64::from(std::process::id()) << 40)))
}

pub(super) fn classify_open_error(dir: &Path, e: sled::Error) -> StoreError {
    // sled reports a held lock as an I/O error from its file lock ("could not acquire lock ...").
    let text = e.to_string();
    if matches!(&e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
        || text.contains("could not acquire lock")
        || text.contains("Resource temporarily unavailable")
    {
        StoreError::Locked { dir: dir.to_path_buf() }
    } else if matches!(e, sled::Error::Corruption { .. }) {
        StoreError::Corrupt {
            dir: dir.to_path_buf(),
            what: format!("sled reports its own files damaged: {e}"),
        }
    } else {
        StoreError::Open { dir: dir.to_path_buf(), cause: e }
    }
}
