//! The writer thread: the one write path. It drains every queued command (group commit), stages
//! the mutations against the graph, writes them as one sled batch with the log record, flushes, then
//! applies them to the graph and answers; between commits it starts and collects checkpoints, opens
//! backups, keeps the manifest up to date, and reopens sled after an I/O error.

use super::layout;
use super::load::{new_store_id, open_sled, Disk};
use super::seen::SeenSet;
use super::{archive, checkpoint, feed, manifest, stage};
use super::{Backup, Health, Outcomes, SharedGraph, Sled, StoreConfig, StoreError, WriteStats};
use crate::graph::{Mutation, Outcome, Rejection};
use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the writer is asked to do.
pub(super) struct Command {
    pub(super) mutations: Vec<Mutation>,
    pub(super) reply: Option<oneshot::Sender<Outcomes>>,
    /// Commit everything queued before this command, then stop the writer.
    pub(super) shutdown: bool,
    /// With `shutdown`: stop without the clean-stop checkpoint, as a crash would (tests only).
    pub(super) abort: bool,
    /// After this command's commit, open a backup and hand it over.
    pub(super) backup: Option<oneshot::Sender<Backup>>,
    /// Start a checkpoint after this command's commit, however small the log (benchmarks).
    pub(super) checkpoint: bool,
}

impl Command {
    /// Commits `mutations` and answers on `reply`; nothing else (see the fields for what else).
    pub(super) fn new(mutations: Vec<Mutation>, reply: Option<oneshot::Sender<Outcomes>>) -> Command {
        Command { mutations, reply, shutdown: false, abort: false, backup: None, checkpoint: false }
    }

    /// Stops the writer after committing what is queued; `abort` skips the clean-stop checkpoint.
    pub(super) fn stop(abort: bool) -> (Command, oneshot::Receiver<Outcomes>) {
        let (reply, rx) = oneshot::channel();
        (Command { shutdown: true, abort, ..Command::new(Vec::new(), Some(reply)) }, rx)
    }

    /// Starts a checkpoint after the commits queued before it, however small the log.
    pub(super) fn checkpoint() -> Command {
        Command { checkpoint: true, ..Command::new(Vec::new(), None) }
    }

    /// Opens a backup after the commits queued before it.
    pub(super) fn backup() -> (Command, oneshot::Receiver<Backup>) {
        let (tx, rx) = oneshot::channel();
        (Command { backup: Some(tx), ..Command::new(Vec::new(), None) }, rx)
    }
}

/// A group commit: `first`, and whatever else is already queued, up to `max` mutations (nothing
/// after a stop). Sets `stopping` and `abort` as the commands taken ask.
pub(super) fn group(
    first: Command,
    rx: &mut mpsc::Receiver<Command>,
    max: usize,
    (stopping, abort): (&mut bool, &mut bool),
) -> Vec<Command> {
    *stopping |= first.shutdown;
    *abort |= first.abort;
    let mut n = first.mutations.len();
    let mut commands = vec![first];
    while n < max && !*stopping {
        match rx.try_recv() {
            Ok(c) => {
                n += c.mutations.len();
                *stopping |= c.shutdown;
                *abort |= c.abort;
                commands.push(c);
            }
            Err(_) => break,
        }
    }
    commands
}

/// Answers each command of a group commit with its own outcomes, or all with the error that failed
/// the commit; records whether the commit succeeded in the store's health.
pub(super) fn answer(
    health: &Health,
    replies: Vec<Option<oneshot::Sender<Outcomes>>>,
    sizes: &[usize],
    result: Outcomes,
) {
    match result {
        Ok(outcomes) => {
            health.succeeded();
            let mut outcomes = outcomes.into_iter();
            for (reply, &size) in replies.into_iter().zip(sizes) {
                let mine: Vec<_> = outcomes.by_ref().take(size).collect();
                if let Some(r) = reply {
                    let _ = r.send(Ok(mine));
                }
            }
        }
        Err(e) => {
            health.failed(&e);
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(e.replica()));
            }
        }
    }
}

/// A checkpoint running on its own thread.
struct Running {
    thread: std::thread::JoinHandle<Result<checkpoint::Done, StoreError>>,
    started: Instant,
}

/// How long after a failed checkpoint the next is tried (the log keeps everything meanwhile).
const CHECKPOINT_RETRY: Duration = Duration::from_secs(10);

/// How far the manifest's last durable record may lag the log: at most one manifest write (a small
/// file, synced and renamed) a second, off the commit's path. Damage that loses only the commits of
/// the last second before a crash looks like that crash; anything older is caught.
const MANIFEST_LAG: Duration = Duration::from_secs(1);

pub(super) struct WriterLoop {
    config: StoreConfig,
    db: Sled,
    /// A commit failed on an I/O error: sled is reopened before the next one.
    poisoned: bool,
    dir: PathBuf,
    graph: SharedGraph,
    seen: Arc<RwLock<SeenSet>>,
    disk: Disk,
    /// The last log record flushed, shared with checkpoints (for the manifest).
    durable: Arc<AtomicU64>,
    stats: Arc<WriteStats>,
    health: Arc<Health>,
    max: usize,
    checkpoint_min: u64,
    feed: feed::Feed,
    running: Option<Running>,
    retry_at: Option<Instant>,
    /// The last log record the manifest on disk vouches for, and when it was written.
    manifest_seq: u64,
    manifest_at: Instant,
    /// sled records as of the commit each open backup started at.
    record_cuts: Vec<Arc<archive::RecordCut>>,
    /// A checkpoint was asked for (see [`StoreHandle::checkpoint_soon`]).
    forced: bool,
}

/// What the writer shares with the store's handles.
pub(super) struct Shared {
    pub db: Sled,
    pub graph: SharedGraph,
    pub seen: Arc<RwLock<SeenSet>>,
    pub stats: Arc<WriteStats>,
    pub health: Arc<Health>,
    pub feed: feed::Feed,
}

impl WriterLoop {
    pub(super) fn new(config: &StoreConfig, shared: Shared, disk: Disk) -> WriterLoop {
        let Shared { db, graph, seen, stats, health, feed } = shared;
        WriterLoop {
            config: config.clone(),
            poisoned: false,
            db,
            dir: config.dir.clone(),
            graph,
            seen,
            durable: Arc::new(AtomicU64::new(disk.next_seq - 1)),
            disk,
            stats,
            health,
            max: config.max_batch,
            checkpoint_min: config.checkpoint_min_bytes,
            feed,
            running: None,
            retry_at: None,
            manifest_seq: 0,
            manifest_at: Instant::now(),
            record_cuts: Vec::new(),
            forced: false,
        }
    }

    /// The directory is of an older layout, to rewrite before the first commit.
    pub(super) fn legacy(&self) -> bool {
        self.disk.legacy.is_some()
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Result<(), StoreError> {
        let mut stopping = false;
        let mut abort = false;
        // Only to wait for the next command with a timeout (see `next_command`).
        let timer = tokio::runtime::Builder::new_current_thread().enable_time().build().ok();
        while let Some(first) = self.next_command(&mut rx, timer.as_ref()) {
            let commands = group(first, &mut rx, self.max, (&mut stopping, &mut abort));
            self.commit(commands);
            self.tend_checkpoint(false);
            if self.running.is_none()
                && self.manifest_at.elapsed() >= MANIFEST_LAG
                && self.disk.next_seq - 1 > self.manifest_seq
            {
                self.update_manifest();
            }
            if stopping {
                // Later senders get `Closed`: their reply channels are dropped with the receiver.
                rx.close();
                break;
            }
        }
        self.feed.close();
        if abort {
            // As a crash would leave it, after the running checkpoint (if any) finished or failed:
            // both are states a crash can leave. Its thread holds sled, so it is waited for.
            if let Some(r) = self.running.take() {
                let _ = r.thread.join();
            }
            log::debug!("store: writer stopped without a final checkpoint");
            return Ok(());
        }
        self.tend_checkpoint(true);
        // A clean stop folds the log into a snapshot, so that the next start is a bulk load.
        let mut result = Ok(());
        if self.disk.log_bytes > 0 {
            if let Err(e) = self.checkpoint_now() {
                log::error!("store: checkpoint at shutdown failed: {e}");
                result = Err(e);
            }
        }
        if let Err(e) = self.db.db().and_then(|db| Ok(db.flush()?)) {
            log::error!("store: final flush failed: {e}");
            result = Err(e);
        }
        if result.is_ok() {
            let m = self.manifest(true);
            if let Err(e) = manifest::write(&self.dir, &m) {
                log::error!("store: writing the manifest at shutdown failed: {e}");
                result = Err(StoreError::Io { what: format!("writing {}", manifest::FILE), cause: e });
            }
        }
        log::debug!("store: writer stopped");
        result
    }

    /// The next command; while the manifest lags the log, waits at most until it is due and brings
    /// it up to date (see [`MANIFEST_LAG`]).
    fn next_command(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        timer: Option<&tokio::runtime::Runtime>,
    ) -> Option<Command> {
        loop {
            let stale = self.disk.next_seq - 1 > self.manifest_seq && self.running.is_none();
            let (Some(timer), true) = (timer, stale) else { return rx.blocking_recv() };
            let due = self.manifest_at + MANIFEST_LAG;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                if let Ok(c) = timer.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                    return c;
                }
            }
            self.update_manifest();
        }
    }

    /// Records in the manifest that the log reached its last flushed record, so that losing any of
    /// it to damage is noticed on open (not only what the last checkpoint covers).
    fn update_manifest(&mut self) {
        let m = self.manifest(false);
        match manifest::write(&self.dir, &m) {
            Ok(()) => self.manifest_seq = m.last_seq,
            Err(e) => log::warn!("store: cannot update the manifest: {e}"),
        }
        self.manifest_at = Instant::now();
    }

    fn manifest(&self, clean: bool) -> manifest::Manifest {
        manifest::Manifest {
            snapshot: self.disk.snapshot.clone(),
            covered_seq: self.disk.covered,
            last_seq: self.disk.next_seq - 1,
            clean,
            ..manifest::Manifest::new(self.disk.store_id.clone())
        }
    }

    fn commit(&mut self, commands: Vec<Command>) {
        let sizes: Vec<usize> = commands.iter().map(|c| c.mutations.len()).collect();
        let mut replies = Vec::with_capacity(commands.len());
        let mut all = Vec::with_capacity(sizes.iter().sum());
        let mut backups = Vec::new();
        for c in commands {
            replies.push(c.reply);
            all.extend(c.mutations);
            backups.extend(c.backup);
            self.forced |= c.checkpoint;
        }
        let total = all.len();
        let started = Instant::now();
        let result = self.persist(all);
        self.stats.commit_seconds.observe(started.elapsed().as_secs_f64());
        self.stats.commit_mutations.observe(total as f64);
        self.stats.committed();
        self.stats.mutations.fetch_add(total as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            log::error!("store: commit of {total} mutations failed: {e}");
        }
        answer(&self.health, replies, &sizes, result);
        // A backup starts here, between two commits: as of the one just made.
        for asked in backups {
            if let Some(backup) = self.open_backup() {
                let _ = asked.send(backup);
            }
        }
    }

    /// Opens a backup of the store as it is now (`None` while sled is being reopened).
    fn open_backup(&mut self) -> Option<Backup> {
        let db = self.db.db().ok()?;
        let records = Arc::new(archive::RecordCut::default());
        self.record_cuts.push(records.clone());
        Some(Backup {
            cut: self.graph.write().open_cut(),
            graph: self.graph.clone(),
            seen: self.seen.clone(),
            db,
            records,
            store_id: self.disk.store_id.clone(),
            seq: self.disk.next_seq - 1,
            next_uid: self.disk.next_uid,
        })
    }

    fn persist(&mut self, mutations: Vec<Mutation>) -> Result<Vec<Result<Outcome, Rejection>>, StoreError> {
        if self.poisoned {
            self.reopen()?;
        }
        let db = self.db.db()?;
        let now = chrono::Utc::now().timestamp();
        let micros = |t: Instant| t.elapsed().as_micros() as u64;
        let t = Instant::now();
        // Readers go on while we stage: only this thread ever mutates the graph.
        let mut staged = {
            let graph = self.graph.read();
            let seen = self.seen.read();
            stage::stage(&graph, &stage::Lookup { seen: &seen, db: &db }, self.disk.next_uid, now, mutations)?
        };
        self.stats.stage_micros.fetch_add(micros(t), Ordering::Relaxed);
        let outcomes = std::mem::take(&mut staged.outcomes);
        if staged.is_empty() {
            return Ok(outcomes);
        }
        let t = Instant::now();
        let writes = std::mem::take(&mut staged.writes);
        let mut batch = sled::Batch::default();
        for (k, v) in &writes {
            batch.insert(&k[..], &v[..]);
        }
        batch.insert(layout::META_NEXT_UID, &staged.next_uid.to_le_bytes()[..]);
        let log = std::mem::take(&mut staged.log);
        let log_len = log.len() as u64;
        let seq = self.disk.next_seq;
        let pieces = layout::pieces(&log, layout::PIECE_BYTES);
        let n_pieces = pieces.len() as u32;
        for (i, piece) in pieces.into_iter().enumerate() {
            let header = layout::PieceHeader { seq, piece: i as u32, pieces: n_pieces };
            batch.insert(&layout::log_piece_key(seq, i as u32)[..], layout::encode_piece(header, piece));
        }
        // Open backups keep what these records were before this commit changes them.
        self.record_cuts.retain(|c| !c.done());
        for c in &self.record_cuts {
            c.keep(&db, writes.iter().map(|(k, _)| k))?;
        }
        self.poisoned = true;
        db.apply_batch(batch)?;
        self.stats.write_micros.fetch_add(micros(t), Ordering::Relaxed);
        let t = Instant::now();
        // Durability: sled's own background flush runs every 500 ms; an acknowledged write must not
        // wait for it, so flush (fsync) before anyone is answered.
        db.flush()?;
        self.poisoned = false;
        self.stats.flush_micros.fetch_add(micros(t), Ordering::Relaxed);
        self.stats.flush_seconds.observe(t.elapsed().as_secs_f64());
        if log_len > 0 {
            self.disk.log.push_back((n_pieces, log_len));
            self.disk.next_seq += 1;
            self.disk.log_bytes += log_len;
            self.durable.store(seq, Ordering::Release);
        }
        self.disk.next_uid = staged.next_uid;
        let t = Instant::now();
        // Open backups learn of the posts seen after their commit before the seen-set holds them.
        for c in &self.record_cuts {
            c.seen_since(&staged.seen);
        }
        self.seen.write().extend(std::mem::take(&mut staged.seen));
        staged.publish(&self.graph, &self.feed, &self.stats);
        self.stats.apply_micros.fetch_add(micros(t), Ordering::Relaxed);
        Ok(outcomes)
    }

    /// Drops sled and opens it again, after a commit failed on an I/O error (the disk was full):
    /// what is on disk is every acknowledged commit, and perhaps failed ones, whose records the
    /// next commits overwrite (they reuse the sequence numbers the failed ones took).
    fn reopen(&mut self) -> Result<(), StoreError> {
        // A running checkpoint holds sled: wait for it (it has likely failed too).
        self.tend_checkpoint(true);
        {
            let mut slot = self.db.0.write();
            if let Some(db) = slot.take() {
                let _ = db.flush();
            }
            *slot = Some(open_sled(&self.config)?);
        }
        log::warn!("store: sled reopened after an I/O error");
        self.poisoned = false;
        Ok(())
    }

    /// Collects a finished checkpoint (with `wait`, waits for a running one), and starts the next
    /// once the log is as large as the last snapshot (and not tiny): checkpoints then cost O(graph)
    /// amortised over the writes, and a restart never replays much more log than snapshot.
    fn tend_checkpoint(&mut self, wait: bool) {
        if let Some(r) = self.running.take() {
            if !wait && !r.thread.is_finished() {
                self.running = Some(r);
                return;
            }
            let result = r.thread.join().unwrap_or_else(|_| {
                Err(StoreError::Io {
                    what: "in the checkpoint thread".into(),
                    cause: std::io::Error::other("it panicked"),
                })
            });
            self.finished(result, r.started);
        }
        if wait || self.running.is_some() || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let due = self.disk.log_bytes >= self.checkpoint_min.max(self.disk.snapshot_bytes());
        if due || (self.forced && self.disk.log_bytes > 0) {
            self.forced = false;
            let job = self.job();
            log::info!("store: checkpoint {} started, covering the log up to {}", job.id, job.covered);
            let started = Instant::now();
            self.stats.checkpointing.store(true, Ordering::Release);
            match std::thread::Builder::new().name("tagflow-checkpoint".into()).spawn(move || job.run()) {
                Ok(thread) => self.running = Some(Running { thread, started }),
                Err(e) => log::error!("store: cannot start a checkpoint thread: {e}"),
            }
        }
    }

    /// A checkpoint of the graph as it is now; opens the cut (under the write lock: cheap).
    fn job(&mut self) -> checkpoint::Job {
        let cut = self.graph.write().open_cut();
        checkpoint::Job {
            dir: self.dir.clone(),
            db: self.db.db().ok(),
            graph: self.graph.clone(),
            seen: self.seen.clone(),
            cut,
            store_id: self.disk.store_id.clone(),
            id: self.disk.snapshot.as_ref().map_or(0, |s| s.id).wrapping_add(1),
            covered: self.disk.next_seq - 1,
            next_uid: self.disk.next_uid,
            drop_from: self.disk.covered + 1,
            drop_pieces: self.disk.log.iter().map(|&(pieces, _)| pieces).collect(),
            stats: self.stats.clone(),
            old_file: self.disk.snapshot.as_ref().map(|s| s.file.clone()),
            durable: self.durable.clone(),
        }
    }

    fn finished(&mut self, result: Result<checkpoint::Done, StoreError>, started: Instant) {
        match result {
            Ok(done) => {
                let dropped = &mut self.disk.log;
                let bytes: u64 = dropped.drain(..done.dropped.min(dropped.len())).map(|(_, b)| b).sum();
                self.disk.log_bytes -= bytes;
                log::info!(
                    "store: checkpoint {} covers log up to {}: {:.1} MiB in {:.2}s (log was {:.1} MiB)",
                    done.entry.id,
                    done.covered,
                    done.entry.summary.bytes as f64 / (1 << 20) as f64,
                    started.elapsed().as_secs_f64(),
                    bytes as f64 / (1 << 20) as f64
                );
                self.disk.snapshot = Some(done.entry);
                self.disk.covered = done.covered;
                self.manifest_seq = self.manifest_seq.max(done.manifest_seq);
                self.manifest_at = Instant::now();
                self.retry_at = None;
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.stats.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                // The log still holds everything: a failed checkpoint only costs restart time.
                log::error!("store: checkpoint failed (retrying in {}s): {e}", CHECKPOINT_RETRY.as_secs());
                self.retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
            }
        }
    }

    /// A checkpoint on this thread, waited for (at a clean stop, and rewriting an older layout).
    fn checkpoint_now(&mut self) -> Result<(), StoreError> {
        let job = self.job();
        let started = Instant::now();
        let result = job.run();
        let failed = result.as_ref().err().map(StoreError::replica);
        self.finished(result, started);
        failed.map_or(Ok(()), Err)
    }

    /// Rewrites a directory of layout 2 or 3 as layout 4: a snapshot file and a manifest, then one
    /// sled batch that drops the old snapshot chunks and log and marks the new layout.
    pub(super) fn upgrade(&mut self) -> Result<(), StoreError> {
        let legacy = self.disk.legacy.take().expect("an older layout");
        self.disk.store_id = new_store_id();
        self.checkpoint_now()?;
        let mut batch = sled::Batch::default();
        for chunk in 0..legacy.chunks {
            batch.remove(&layout::snapshot_key(legacy.snapshot, chunk)[..]);
        }
        for (seq, &pieces) in (legacy.first_seq..).zip(&legacy.pieces) {
            batch.remove(&layout::log_key(seq)[..]);
            for piece in 0..pieces {
                batch.remove(&layout::log_piece_key(seq, piece)[..]);
            }
        }
        // Chunks of checkpoints the old layout left unfinished.
        let db = self.db.db()?;
        for k in db.scan_prefix([layout::SNAPSHOT]).keys() {
            batch.remove(k?);
        }
        batch.remove(layout::META_CHECKPOINT);
        batch.insert(layout::META_STORE_ID, self.disk.store_id.as_bytes());
        batch.insert(layout::META_VERSION, &layout::LAYOUT_VERSION.to_le_bytes()[..]);
        db.apply_batch(batch)?;
        db.flush()?;
        log::info!(
            "store: {} rewritten from layout {} to {}",
            self.dir.display(),
            if legacy.without_timeline {
                layout::LAYOUT_WITHOUT_TIMELINE
            } else {
                layout::LAYOUT_SNAPSHOT_IN_SLED
            },
            layout::LAYOUT_VERSION
        );
        Ok(())
    }
}
