//! Backups: the whole store as of one commit — users, edges, timeline, seen posts, post records and
//! source cursors — as one gzipped, checksummed stream (the snapshot file's frames, with the sled
//! records added), written while the service keeps serving and ingesting; and restoring one into a
//! new data directory, refusing a damaged archive.
//!
//! The graph is read through a [`Cut`]; sled's records through a [`RecordCut`]: while a backup reads
//! them in key order, the first change the write path makes to a record the backup has not reached
//! keeps its value as of the commit (or that it did not exist).

use super::layout::{self, Effect};
use super::manifest::{self, Manifest, SnapshotEntry};
use super::seen::SeenSet;
use super::snapshot::{self, Counts, FrameKind, FrameReader, FrameWriter};
use super::{SharedGraph, StoreError};
use crate::graph::Cut;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Payload size of a records frame.
const RECORDS_FRAME: usize = 256 << 10;

/// sled's records as of a commit, read in key order while commits go on; and the posts first seen
/// since that commit, which the backup's seen-set must not hold.
#[derive(Default)]
pub(super) struct RecordCut {
    state: Mutex<RecordImages>,
    seen_after: Mutex<rustc_hash::FxHashSet<u64>>,
    done: AtomicBool,
}

#[derive(Default)]
struct RecordImages {
    /// Keys up to this one were read: a change there needs no image.
    read_upto: Option<Vec<u8>>,
    /// Value at the commit (`None`: the key did not exist).
    images: FxHashMap<Vec<u8>, Option<sled::IVec>>,
}

impl RecordCut {
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Before the write path writes `keys`: keeps the value at the cut of those not read yet.
    pub fn keep<'k>(
        &self,
        db: &sled::Db,
        keys: impl Iterator<Item = &'k Vec<u8>>,
    ) -> Result<(), sled::Error> {
        let mut s = self.state.lock();
        for k in keys {
            if s.read_upto.as_deref().is_some_and(|r| k.as_slice() <= r) || s.images.contains_key(k) {
                continue;
            }
            let before = db.get(k)?;
            s.images.insert(k.clone(), before);
        }
        Ok(())
    }

    /// Before the write path adds these fingerprints to the seen-set: they are after the cut.
    pub(crate) fn seen_since(&self, hashes: &[u64]) {
        self.seen_after.lock().extend(hashes.iter().copied());
    }

    /// The value to back up for a record the iterator found: its image if it changed since the cut.
    fn value(&self, key: &[u8], now: sled::IVec) -> Option<sled::IVec> {
        let mut s = self.state.lock();
        s.read_upto = Some(key.to_vec());
        match s.images.get(key) {
            Some(before) => before.clone(),
            None => Some(now),
        }
    }
}

/// A backup as of one commit, opened by the writer; [`Backup::write`] writes it.
pub struct Backup {
    pub(super) graph: SharedGraph,
    pub(super) seen: Arc<RwLock<SeenSet>>,
    pub(super) db: sled::Db,
    pub(super) cut: Arc<Cut>,
    pub(super) records: Arc<RecordCut>,
    pub(super) store_id: String,
    pub(super) seq: u64,
    pub(super) next_uid: u32,
}

/// However the backup ends, the graph and the write path stop keeping images for it.
impl Drop for Backup {
    fn drop(&mut self) {
        self.records.done.store(true, Ordering::Release);
        self.graph.write().close_cut(&self.cut);
    }
}

impl Backup {
    /// The last commit the backup holds.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// A name for the archive: the store and the commit.
    pub fn file_name(&self) -> String {
        format!("tagflow-{}-{}.tfbackup", self.store_id, self.seq)
    }

    /// Writes the archive, gzipped, into `out`. Blocking: seconds to minutes for a large graph.
    ///
    /// # Errors
    /// Writing to `out` failed, or reading sled did.
    pub fn write(self, out: impl Write) -> Result<Counts, StoreError> {
        let after = |h: u64| self.records.seen_after.lock().contains(&h);
        // In key order (`c` before `p`): what was read is then everything up to the last key read,
        // which is what the write path compares against to decide whether to keep an image.
        let records = [layout::CURSOR, layout::POST].into_iter().flat_map(|prefix| {
            self.db.scan_prefix([prefix]).filter_map(|kv| match kv {
                Ok((k, v)) => self.records.value(&k, v).map(|v| Ok((k.to_vec(), v.to_vec()))),
                Err(e) => Some(Err(StoreError::Sled(e))),
            })
        });
        let position = (self.seq, self.next_uid);
        write_archive(out, (&self.graph, &self.seen, &self.cut), after, records, position)
    }
}

/// Writes an archive, gzipped: the graph as of `cut` (without the seen posts `after` names), the
/// post records and cursors, and the end frame with the last commit and the next uid it holds.
pub(super) fn write_archive(
    out: impl Write,
    (graph, seen, cut): (&RwLock<crate::graph::Graph>, &RwLock<SeenSet>, &Cut),
    after: impl Fn(u64) -> bool,
    records: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
    (seq, next_uid): (u64, u32),
) -> Result<Counts, StoreError> {
    let io = |e: io::Error| StoreError::Io { what: "writing the backup".into(), cause: e };
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut w = FrameWriter::new(gz).map_err(io)?;
    let mut counts = snapshot::write_graph(&mut w, graph, seen, cut, after).map_err(io)?;
    let mut payload = Vec::with_capacity(RECORDS_FRAME + 4096);
    for kv in records {
        let (k, v) = kv?;
        push_record(&mut payload, &k, &v);
        counts.records += 1;
        if payload.len() >= RECORDS_FRAME {
            w.frame(FrameKind::Records, &payload).map_err(io)?;
            payload.clear();
        }
    }
    if !payload.is_empty() {
        w.frame(FrameKind::Records, &payload).map_err(io)?;
    }
    counts.seq = seq;
    counts.next_uid = next_uid;
    let (gz, _) = w.finish(&counts).map_err(io)?;
    gz.finish().map_err(io)?.flush().map_err(io)?;
    Ok(counts)
}

fn push_record(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

/// The (key, value) records of a records frame; `None` if the frame is malformed.
fn records(mut p: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    fn field<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
        let v = p.get(4..4 + n)?;
        *p = &p[4 + n..];
        Some(v)
    }
    let mut out = Vec::new();
    while !p.is_empty() {
        let k = field(&mut p)?;
        let v = field(&mut p)?;
        out.push((k, v));
    }
    Some(out)
}

/// Counts the effects of a run, checking each decodes.
fn count_effects(payload: &[u8], counts: &mut Counts) -> Result<(), usize> {
    for e in layout::Decoder::new(payload) {
        match e? {
            Effect::UserPut { .. } => counts.users += 1,
            Effect::TieSet { .. } => counts.ties += 1,
            Effect::Stamp { .. } => counts.stamps += 1,
            Effect::Seen { .. } => counts.seen += 1,
            // A snapshot holds final states only.
            _ => return Err(0),
        }
    }
    Ok(())
}

/// Reads a whole archive, checking every frame, the counts and gzip's own checksum; calls `each` on
/// every frame. Returns the end frame's counts.
pub(super) fn read_archive(
    archive: impl Read,
    mut each: impl FnMut(&snapshot::Frame) -> Result<(), String>,
) -> Result<Counts, String> {
    let gz = flate2::read::GzDecoder::new(io::BufReader::with_capacity(1 << 20, archive));
    let mut r = FrameReader::new(gz).map_err(|e| format!("the archive is damaged: {e}"))?;
    let mut got = Counts::default();
    while let Some(frame) = r.next_frame().map_err(|e| format!("the archive is damaged: {e}"))? {
        let (n, _) = r.position();
        match frame.kind {
            FrameKind::Effects => count_effects(&frame.payload, &mut got)
                .map_err(|_| format!("the archive's frame {} holds an unreadable effect", n - 1))?,
            FrameKind::Records => {
                got.records += records(&frame.payload)
                    .ok_or_else(|| format!("the archive's frame {} holds unreadable records", n - 1))?
                    .len() as u64;
            }
            FrameKind::End => {}
        }
        each(&frame)?;
    }
    let end = r.counts().expect("the end frame was read");
    if (Counts { seq: end.seq, next_uid: end.next_uid, ..got }) != end {
        return Err(format!(
            "the archive holds other counts than its end frame says: {got:?} against {end:?}"
        ));
    }
    Ok(end)
}

/// Reads an archive to restore it: each effects frame goes to `effects`, each frame's post records
/// and cursors to `records` (anything else in it is damage). The first error of either, or the
/// archive's damage (named as in the store at `place`), ends it.
pub(super) fn unpack(
    archive: impl Read,
    place: &Path,
    mut effects: impl FnMut(&[u8]) -> Result<(), StoreError>,
    mut records_of: impl FnMut(Vec<(&[u8], &[u8])>) -> Result<(), StoreError>,
) -> Result<Counts, StoreError> {
    let mut failed: Option<StoreError> = None;
    let end = read_archive(archive, |frame| {
        let r = match frame.kind {
            FrameKind::Effects => effects(&frame.payload),
            FrameKind::Records => {
                let records = records(&frame.payload).unwrap_or_default();
                if records
                    .iter()
                    .any(|(k, _)| !matches!(k.first(), Some(&layout::POST) | Some(&layout::CURSOR)))
                {
                    return Err("the archive holds a record that is neither a post nor a cursor".into());
                }
                records_of(records)
            }
            FrameKind::End => Ok(()),
        };
        r.map_err(|e| {
            let text = e.to_string();
            failed = Some(e);
            text
        })
    });
    match (end, failed) {
        (_, Some(e)) => Err(e),
        (Err(what), None) => Err(StoreError::Corrupt { dir: place.to_path_buf(), what }),
        (Ok(end), None) => Ok(end),
    }
}

/// Checks an archive without restoring it (what `tagflow backup --url` does with what it got).
///
/// # Errors
/// What is damaged in it.
pub fn check_archive(archive: impl Read) -> Result<Counts, String> {
    read_archive(archive, |_| Ok(()))
}

/// Restores an archive into `dir`, which must not exist or be empty: a snapshot file, sled's records
/// and a manifest, as a clean stop would leave them. A damaged archive is refused and nothing is
/// left behind.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the damage; I/O errors creating the directory.
pub fn restore(archive: impl Read, dir: &Path) -> Result<Counts, StoreError> {
    let exists = dir.exists();
    if exists && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            what: "it is not empty: a restore goes into a new directory".into(),
        });
    }
    let result = restore_into(archive, dir);
    if result.is_err() {
        if exists {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result
}

fn restore_into(archive: impl Read, dir: &Path) -> Result<Counts, StoreError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| StoreError::Io { what: what.clone(), cause: e }
    };
    std::fs::create_dir_all(dir).map_err(io("creating the directory"))?;
    let db = sled::Config::new()
        .path(dir)
        .open()
        .map_err(|e| StoreError::Open { dir: dir.to_path_buf(), cause: e })?;
    let file = manifest::snapshot_file(1);
    let out = std::fs::File::create(dir.join(&file)).map_err(io("writing the snapshot"))?;
    let mut w =
        FrameWriter::new(io::BufWriter::with_capacity(1 << 20, out)).map_err(io("writing the snapshot"))?;
    let end = unpack(
        archive,
        dir,
        |effects| w.frame(FrameKind::Effects, effects).map_err(io("writing the snapshot")),
        |records| {
            let mut batch = sled::Batch::default();
            for (k, v) in records {
                batch.insert(k, v);
            }
            db.apply_batch(batch).map_err(StoreError::Sled)
        },
    )?;
    let snapshot_counts = Counts { records: 0, ..end };
    let (out, summary) = w.finish(&snapshot_counts).map_err(io("writing the snapshot"))?;
    out.into_inner()
        .map_err(|e| io("writing the snapshot")(e.into_error()))?
        .sync_all()
        .map_err(io("writing the snapshot"))?;
    let store_id = super::load::new_store_id();
    db.insert(layout::META_NEXT_UID, &end.next_uid.to_le_bytes()[..])?;
    db.insert(layout::META_STORE_ID, store_id.as_bytes())?;
    db.insert(layout::META_VERSION, &layout::LAYOUT_VERSION.to_le_bytes()[..])?;
    db.flush()?;
    drop(db);
    let m = Manifest {
        snapshot: Some(SnapshotEntry { id: 1, file, summary, counts: snapshot_counts }),
        covered_seq: end.seq,
        last_seq: end.seq,
        clean: true,
        ..Manifest::new(store_id)
    };
    manifest::write(dir, &m).map_err(io("writing the manifest"))?;
    Ok(end)
}
