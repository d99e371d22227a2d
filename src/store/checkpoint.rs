//! Checkpoints: the graph as of one commit written to a new snapshot file while commits go on, then
//! the manifest switched to it, then the log it covers dropped. Runs on its own thread: the write
//! path only opens a [`Cut`] (a pointer per timeline chunk, under the write lock) and, while the
//! checkpoint reads, keeps a before-image of what it changes first.
//!
//! Crash-safe at every step: until the manifest is renamed over the old one, the old snapshot and
//! the whole log are what a restart loads; after it, the log the new snapshot covers is leftover,
//! dropped on open. A checkpoint cut short costs what it had written, no more.

use super::manifest::{self, Manifest, SnapshotEntry};
use super::seen::SeenSet;
use super::snapshot::{self, FrameWriter};
use super::{layout, SharedGraph, StoreError};
use crate::graph::Cut;
use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a checkpoint needs, taken by the writer when it starts one.
pub(super) struct Job {
    pub dir: PathBuf,
    /// `None` if sled is being reopened: the log then stays until the next checkpoint drops it.
    pub db: Option<sled::Db>,
    pub graph: SharedGraph,
    pub seen: Arc<RwLock<SeenSet>>,
    pub cut: Arc<Cut>,
    pub store_id: String,
    pub id: u32,
    /// The last log record in the snapshot, and the next uid after it.
    pub covered: u64,
    pub next_uid: u32,
    /// The log records it makes redundant: first seq, and the pieces of each.
    pub drop_from: u64,
    pub drop_pieces: Vec<u32>,
    /// The snapshot file it replaces.
    pub old_file: Option<String>,
    /// The last log record known durable (kept by the writer), for the manifest.
    pub durable: Arc<AtomicU64>,
    /// Where `checkpointing` is cleared when the job ends.
    pub stats: Arc<super::WriteStats>,
}

/// A finished checkpoint: the manifest's new entry.
pub(super) struct Done {
    pub entry: SnapshotEntry,
    pub covered: u64,
    /// The last durable record the manifest it wrote vouches for.
    pub manifest_seq: u64,
    /// Log records dropped (the first this many after the previous snapshot).
    pub dropped: usize,
}

/// However the job ends (done, failed, never started), the graph stops keeping images for it.
impl Drop for Job {
    fn drop(&mut self) {
        self.graph.write().close_cut(&self.cut);
        self.stats.checkpointing.store(false, Ordering::Release);
    }
}

impl Job {
    pub fn run(self) -> Result<Done, StoreError> {
        let file = manifest::snapshot_file(self.id);
        let path = self.dir.join(&file);
        let written = self.write(&path);
        let (summary, counts) = match written {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(StoreError::Io { what: format!("writing {file}"), cause: e });
            }
        };
        let entry = SnapshotEntry { id: self.id, file, summary, counts };
        let m = Manifest {
            snapshot: Some(entry.clone()),
            covered_seq: self.covered,
            last_seq: self.durable.load(Ordering::Acquire).max(self.covered),
            ..Manifest::new(self.store_id.clone())
        };
        manifest::write(&self.dir, &m).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            StoreError::Io { what: format!("writing {}", manifest::FILE), cause: e }
        })?;
        // From here the new snapshot is the one: what it replaces is leftover (dropped on open if a
        // crash comes first), so failures below are logged, never undo it.
        if let Some(old) = &self.old_file {
            if let Err(e) = std::fs::remove_file(self.dir.join(old)) {
                log::warn!("store: cannot remove the replaced snapshot {old}: {e}");
            }
        }
        // In small batches: sled applies a batch under a lock that holds every other write, and the
        // log a checkpoint drops is as large as the snapshot (a hundred thousand pieces and more).
        let keys = (self.drop_from..)
            .zip(&self.drop_pieces)
            .flat_map(|(seq, &pieces)| (0..pieces).map(move |piece| layout::log_piece_key(seq, piece)));
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in keys {
            batch.remove(&key[..]);
            n += 1;
            if n % DROP_BATCH == 0 {
                self.drop_log(std::mem::take(&mut batch));
            }
        }
        self.drop_log(batch);
        Ok(Done { entry, covered: self.covered, manifest_seq: m.last_seq, dropped: self.drop_pieces.len() })
    }

    fn drop_log(&self, batch: sled::Batch) {
        if let Err(e) = self.db.as_ref().map_or(Ok(()), |db| db.apply_batch(batch)) {
            log::warn!("store: cannot drop the log up to {} now in the snapshot: {e}", self.covered);
        }
    }

    fn write(&self, path: &Path) -> std::io::Result<(snapshot::Summary, snapshot::Counts)> {
        let file = SyncEvery { file: std::fs::File::create(path)?, unsynced: 0 };
        let mut w = FrameWriter::new(std::io::BufWriter::with_capacity(1 << 20, file))?;
        let mut counts = snapshot::write_graph(&mut w, &self.graph, &self.seen, &self.cut, |_| false)?;
        counts.seq = self.covered;
        counts.next_uid = self.next_uid;
        let (out, summary) = w.finish(&counts)?;
        out.into_inner().map_err(|e| e.into_error())?.file.sync_all()?;
        manifest::sync_dir(&self.dir)?;
        Ok((summary, counts))
    }
}

/// Log pieces dropped per sled batch.
const DROP_BATCH: usize = 1024;

/// Bytes written to a snapshot file between two syncs.
const SYNC_BYTES: u64 = 8 << 20;

/// A file synced every [`SYNC_BYTES`]: the snapshot reaches the disk as it is written, instead of
/// as hundreds of MiB of dirty pages that one final sync (and every commit's fsync meanwhile) would
/// wait for.
struct SyncEvery {
    file: std::fs::File,
    unsynced: u64,
}

impl std::io::Write for SyncEvery {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
