//! Persistence in sled, and the one write path.
//!
//! sled is the source of truth: on open, the in-memory [`Graph`] is rebuilt from it. Every change goes
//! through [`StoreHandle::submit`]: a single writer thread drains all pending mutations (from HTTP
//! handlers and ingest sources alike), stages them against the graph, writes them as one atomic sled
//! batch, flushes (fsync), and only then applies them to the graph and answers. Many concurrent
//! writers therefore share one flush (group commit), and nothing is acknowledged before it is on disk.
//!
//! Checkpoints fold the log into a snapshot file on their own thread (see [`checkpoint`]); a
//! manifest beside sled's files says what must exist, and opening checks all of it (see [`load`]).
//! A commit that cannot be made durable is refused with the cause (disk full, other I/O errors),
//! the store reports itself degraded, and the next commit that succeeds clears it.
//!
//! Knows the graph, never HTTP.

mod archive;
mod checkpoint;
pub mod feed;
mod layout;
mod load;
mod manifest;
mod seen;
mod snapshot;
mod stage;

use crate::graph::{Graph, Mutation, Outcome, Platform, Rejection};
pub use archive::{check_archive, restore, Backup};
use load::{Disk, Loaded};
use parking_lot::{Mutex, RwLock};
use seen::SeenSet;
pub use snapshot::Counts;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The graph shared between the writer (which mutates it) and readers (HTTP queries).
pub type SharedGraph = Arc<RwLock<Graph>>;

/// Store failures. These are about the disk, not about the request: the HTTP layer answers 500/503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {dir} is in use by another tagflow process (sled holds a lock on it)")]
    Locked { dir: PathBuf },
    // The causes are in the messages and not also `source`s, or a chain (`{:#}`) would print them
    // twice.
    #[error("cannot open data directory {dir}: {cause}")]
    Open { dir: PathBuf, cause: sled::Error },
    #[error("storage error: {0}")]
    Sled(sled::Error),
    #[error("storage error {what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("data directory {dir} is corrupt: {what}")]
    Corrupt { dir: PathBuf, what: String },
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// The disk (or the quota) is full: the write can succeed once space is freed.
    pub fn is_storage_full(&self) -> bool {
        let io = match self {
            StoreError::Sled(sled::Error::Io(e)) | StoreError::Open { cause: sled::Error::Io(e), .. } => e,
            StoreError::Io { cause, .. } => cause,
            _ => return false,
        };
        is_full(io)
    }
}

impl StoreError {
    /// The same error, for each of the writers whose commit it failed.
    fn replica(&self) -> StoreError {
        match self {
            StoreError::Sled(e) => StoreError::Sled(e.clone()),
            StoreError::Open { dir, cause } => StoreError::Open { dir: dir.clone(), cause: cause.clone() },
            StoreError::Io { what, cause } => StoreError::Io {
                what: what.clone(),
                cause: match cause.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(cause.kind(), cause.to_string()),
                },
            },
            StoreError::Locked { dir } => StoreError::Locked { dir: dir.clone() },
            StoreError::Corrupt { dir, what } => StoreError::Corrupt { dir: dir.clone(), what: what.clone() },
            StoreError::Closed => StoreError::Closed,
        }
    }
}

fn is_full(e: &std::io::Error) -> bool {
    // ENOSPC and EDQUOT; sled sometimes wraps the OS error in one of its own.
    matches!(e.raw_os_error(), Some(28) | Some(122))
        || e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || e.to_string().contains("No space left on device")
}

/// Whether the store can make writes durable right now, for `/status`, the health check and
/// `/metrics`. Set by the writer after every commit.
#[derive(Debug, Default)]
pub struct Health {
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug, Clone)]
pub struct Failing {
    /// `storage_full` or `store_unavailable`.
    pub code: &'static str,
    pub message: String,
    pub since: chrono::DateTime<chrono::Utc>,
    pub failed_commits: u64,
}

impl Health {
    /// `None` while writes succeed.
    pub fn failing(&self) -> Option<Failing> {
        self.failing.lock().clone()
    }

    fn failed(&self, e: &StoreError) {
        let code = if e.is_storage_full() { "storage_full" } else { "store_unavailable" };
        let mut f = self.failing.lock();
        match f.as_mut() {
            Some(f) => {
                f.failed_commits += 1;
                f.code = code;
                f.message = e.to_string();
            }
            None => {
                *f = Some(Failing {
                    code,
                    message: e.to_string(),
                    since: chrono::Utc::now(),
                    failed_commits: 1,
                })
            }
        }
    }

    fn succeeded(&self) {
        if let Some(f) = self.failing.lock().take() {
            log::warn!(
                "store: writes succeed again after {} failed commits since {}",
                f.failed_commits,
                f.since.to_rfc3339()
            );
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        StoreError::Sled(e)
    }
}

/// Store tuning.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// sled's page cache, in bytes. Small by default: the service must fit a 512 MB dyno.
    pub cache_bytes: u64,
    /// The most mutations one group commit takes before it flushes.
    pub max_batch: usize,
    /// Log bytes after which a checkpoint folds the log into a snapshot (or the snapshot's size,
    /// if larger).
    pub checkpoint_min_bytes: u64,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            cache_bytes: 64 << 20,
            max_batch: 50_000,
            checkpoint_min_bytes: 32 << 20,
        }
    }
}

/// sled, shared, and reopened by the writer after an I/O error: sled 0.34 refuses every write after
/// one, for good, even once the disk has room again. Users take a clone for one operation, never keep
/// it: a reopen needs every clone dropped (sled holds its file lock until the last goes).
#[derive(Clone)]
struct Sled(Arc<RwLock<Option<sled::Db>>>);

impl Sled {
    fn new(db: sled::Db) -> Sled {
        Sled(Arc::new(RwLock::new(Some(db))))
    }

    /// The open database, or `store_unavailable` while it is being reopened.
    fn db(&self) -> Result<sled::Db, StoreError> {
        self.0.read().clone().ok_or(StoreError::Closed)
    }
}

/// What opening found, for logs and `/status`.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    pub users: usize,
    pub ties: usize,
    pub elapsed: Duration,
}

/// Counters of the write path, and its histograms (exported by `/metrics`).
#[derive(Debug)]
pub struct WriteStats {
    pub commits: AtomicU64,
    pub mutations: AtomicU64,
    /// Time spent, per phase of a commit: staging against the graph, writing the sled batch,
    /// flushing it to disk, applying it to the graph.
    pub stage_micros: AtomicU64,
    pub write_micros: AtomicU64,
    pub flush_micros: AtomicU64,
    pub apply_micros: AtomicU64,
    pub checkpoints: AtomicU64,
    /// A checkpoint is being written right now (beside the commits).
    pub checkpointing: std::sync::atomic::AtomicBool,
    /// Seconds per group commit, from staging to applied.
    pub commit_seconds: prometheus::Histogram,
    /// Mutations per group commit.
    pub commit_mutations: prometheus::Histogram,
    /// Seconds per flush (the fsync an acknowledgement waits for).
    pub flush_seconds: prometheus::Histogram,
    pub checkpoint_seconds: prometheus::Histogram,
}

impl Default for WriteStats {
    fn default() -> WriteStats {
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(name, help).buckets(buckets))
                .expect("a valid histogram")
        };
        let seconds = || prometheus::exponential_buckets(0.000_25, 2.0, 16).expect("valid buckets");
        WriteStats {
            commits: AtomicU64::default(),
            mutations: AtomicU64::default(),
            stage_micros: AtomicU64::default(),
            write_micros: AtomicU64::default(),
            flush_micros: AtomicU64::default(),
            apply_micros: AtomicU64::default(),
            checkpoints: AtomicU64::default(),
            checkpointing: Default::default(),
            commit_seconds: histogram(
                "tagflow_store_commit_duration_seconds",
                "Seconds per group commit: staging, writing, flushing, applying to the graph",
                seconds(),
            ),
            commit_mutations: histogram(
                "tagflow_store_commit_mutations",
                "Mutations per group commit",
                prometheus::exponential_buckets(1.0, 4.0, 10).expect("valid buckets"),
            ),
            flush_seconds: histogram(
                "tagflow_store_flush_duration_seconds",
                "Seconds per flush to disk (fsync) before writes are acknowledged",
                seconds(),
            ),
            checkpoint_seconds: histogram(
                "tagflow_store_checkpoint_duration_seconds",
                "Seconds per checkpoint (a new snapshot of the whole graph)",
                prometheus::exponential_buckets(0.01, 2.0, 14).expect("valid buckets"),
            ),
        }
    }
}

/// The outcomes of one submission, in order, or why the whole batch failed.
pub type Outcomes = Result<Vec<Result<Outcome, Rejection>>, StoreError>;

struct Command {
    mutations: Vec<Mutation>,
    reply: Option<oneshot::Sender<Outcomes>>,
    /// Commit everything queued before this command, then stop the writer.
    shutdown: bool,
    /// With `shutdown`: stop without the clean-stop checkpoint, as a crash would (tests only).
    abort: bool,
    /// After this command's commit, open a backup and hand it over.
    backup: Option<oneshot::Sender<Backup>>,
    /// Start a checkpoint after this command's commit, however small the log (benchmarks).
    checkpoint: bool,
}

impl Command {
    /// Commits `mutations` and answers on `reply`; nothing else (see the fields for what else).
    fn new(mutations: Vec<Mutation>, reply: Option<oneshot::Sender<Outcomes>>) -> Command {
        Command { mutations, reply, shutdown: false, abort: false, backup: None, checkpoint: false }
    }

    /// Stops the writer after committing what is queued; `abort` skips the clean-stop checkpoint.
    fn stop(abort: bool) -> (Command, oneshot::Receiver<Outcomes>) {
        let (reply, rx) = oneshot::channel();
        (Command { shutdown: true, abort, ..Command::new(Vec::new(), Some(reply)) }, rx)
    }

    /// Opens a backup after the commits queued before it.
    fn backup() -> (Command, oneshot::Receiver<Backup>) {
        let (tx, rx) = oneshot::channel();
        (Command { backup: Some(tx), ..Command::new(Vec::new(), None) }, rx)
    }
}

/// A cloneable handle to the store: submit mutations, read cursors, reach the graph.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    db: Sled,
    graph: SharedGraph,
    seen: Arc<RwLock<SeenSet>>,
    stats: Arc<WriteStats>,
    health: Arc<Health>,
    dir: Arc<PathBuf>,
    /// One count per live handle, to know when the data directory's lock is about to be released.
    live: Arc<()>,
    feed: feed::Feed,
}

/// The running writer; joining it waits for every queued mutation to be committed.
pub struct Writer {
    thread: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
}

impl Writer {
    /// Waits until every handle is dropped and the queue is drained, then checkpoints and flushes
    /// one last time.
    ///
    /// # Errors
    /// The final flush failed: writes acknowledged before are durable (each was flushed), but the
    /// clean-stop checkpoint or manifest may not be; the caller should exit non-zero.
    pub fn join(mut self) -> Result<(), StoreError> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StoreError::Io {
                what: "in the writer thread".into(),
                cause: std::io::Error::other("it panicked"),
            }),
            None => Ok(()),
        }
    }
}

/// What `tagflow verify` found in a data directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    pub users: usize,
    pub edges: usize,
    pub interactions: u64,
    pub seen_posts: usize,
    pub snapshot: Option<String>,
    pub covered_seq: u64,
    pub log_records: usize,
    pub last_seq: u64,
    /// Leftovers that opening would clean up (never damage).
    pub notes: Vec<String>,
}

/// Checks a data directory that no service holds, without changing it: everything opening checks.
///
/// # Errors
/// As [`open`]: [`StoreError::Corrupt`] names the damage.
pub fn verify(dir: &Path) -> Result<Verified, StoreError> {
    let config = StoreConfig::new(dir);
    if !dir.join("conf").exists() && !manifest::path(dir).exists() {
        return Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            what: "no tagflow data directory here".into(),
        });
    }
    let (db, loaded) = open_db(&config, false)?;
    let (graph, disk) = (&loaded.graph, &loaded.disk);
    let _ = db.flush();
    Ok(Verified {
        users: graph.user_count(),
        edges: graph.tie_count(),
        interactions: graph.timeline_stats().0 as u64,
        seen_posts: loaded.seen.len(),
        snapshot: disk.snapshot.as_ref().map(|s| s.file.clone()),
        covered_seq: disk.covered,
        log_records: disk.log.len(),
        last_seq: disk.next_seq - 1,
        notes: loaded.notes,
    })
}

/// Opens (or creates) the data directory, loads the graph and starts the writer thread.
///
/// # Errors
/// [`StoreError::Locked`] if another process holds the directory, [`StoreError::Open`] for other
/// failures to open it, [`StoreError::Corrupt`] for damage (named), [`StoreError::Io`] if a
/// directory of an older layout cannot be rewritten.
pub fn open(config: &StoreConfig) -> Result<(StoreHandle, Writer, LoadReport), StoreError> {
    let started = Instant::now();
    let dir = config.dir.clone();
    let (db, loaded) = open_db(config, true)?;
    let Loaded { graph, seen, disk, .. } = loaded;
    let report =
        LoadReport { users: graph.user_count(), ties: graph.tie_count(), elapsed: started.elapsed() };
    let graph: SharedGraph = Arc::new(RwLock::new(graph));
    let seen = Arc::new(RwLock::new(seen));
    // Bounded: a source that outruns the disk waits instead of growing memory.
    let (tx, rx) = mpsc::channel::<Command>(1024);
    let stats = Arc::new(WriteStats::default());
    let health = Arc::new(Health::default());
    let feed = feed::Feed::new();
    let db = Sled::new(db);
    let mut writer = WriterLoop {
        config: config.clone(),
        poisoned: false,
        db: db.clone(),
        dir: dir.clone(),
        graph: graph.clone(),
        seen: seen.clone(),
        durable: Arc::new(AtomicU64::new(disk.next_seq - 1)),
        disk,
        stats: stats.clone(),
        health: health.clone(),
        max: config.max_batch,
        checkpoint_min: config.checkpoint_min_bytes,
        feed: feed.clone(),
        running: None,
        retry_at: None,
        manifest_seq: 0,
        manifest_at: Instant::now(),
        record_cuts: Vec::new(),
        forced: false,
    };
    if writer.disk.legacy.is_some() {
        // An older layout: rewritten now, before any commit adds pieces of the new kind to it.
        writer.upgrade()?;
    }
    let thread = std::thread::Builder::new()
        .name("tagflow-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Open { dir: dir.clone(), cause: sled::Error::Io(e) })?;
    let handle =
        StoreHandle { tx, db, graph, seen, stats, health, dir: Arc::new(dir), live: Arc::new(()), feed };
    Ok((handle, Writer { thread: Some(thread) }, report))
}

/// Opens sled and loads what the directory holds, creating a new store in an empty directory.
/// sled panicking on files it cannot read is caught and reported as damage.
fn open_db(config: &StoreConfig, repair: bool) -> Result<(sled::Db, Loaded), StoreError> {
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

fn open_sled(config: &StoreConfig) -> Result<sled::Db, StoreError> {
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
        (Some(layout::LAYOUT_VERSION), Some(m)) => load::load(db, dir, &m, repair),
        (Some(layout::LAYOUT_VERSION), None) => Err(corrupt(format!(
            "its {} is missing: which snapshot and how much log it must hold is unknown",
            manifest::FILE
        ))),
        (Some(v @ (layout::LAYOUT_SNAPSHOT_IN_SLED | layout::LAYOUT_WITHOUT_TIMELINE)), _) => {
            load::load_legacy(db, dir, v == layout::LAYOUT_WITHOUT_TIMELINE)
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

fn new_store_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:016x}", crate::rng::mix64(nanos as u64 ^ (u64::from(std::process::id()) << 40)))
}

fn classify_open_error(dir: &Path, e: sled::Error) -> StoreError {
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

struct WriterLoop {
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

impl WriterLoop {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Result<(), StoreError> {
        let mut stopping = false;
        let mut abort = false;
        // Only to wait for the next command with a timeout (see `next_command`).
        let timer = tokio::runtime::Builder::new_current_thread().enable_time().build().ok();
        while let Some(first) = self.next_command(&mut rx, timer.as_ref()) {
            stopping |= first.shutdown;
            abort |= first.abort;
            let mut commands = vec![first];
            let mut n = commands[0].mutations.len();
            // Group commit: take whatever else is already queued, up to the batch limit.
            while n < self.max && !stopping {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.mutations.len();
                        stopping |= c.shutdown;
                        abort |= c.abort;
                        commands.push(c);
                    }
                    Err(_) => break,
                }
            }
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
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.mutations.fetch_add(total as u64, Ordering::Relaxed);
        match result {
            Ok(outcomes) => {
                self.health.succeeded();
                let mut outcomes = outcomes.into_iter();
                for (reply, size) in replies.into_iter().zip(sizes) {
                    let mine: Vec<_> = outcomes.by_ref().take(size).collect();
                    if let Some(r) = reply {
                        let _ = r.send(Ok(mine));
                    }
                }
            }
            Err(e) => {
                log::error!("store: commit of {total} mutations failed: {e}");
                self.health.failed(&e);
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(e.replica()));
                }
            }
        }
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
        let mut batch = std::mem::take(&mut staged.batch);
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
            c.keep(&db, &staged.written)?;
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
        self.seen.write().extend(std::mem::take(&mut staged.seen));
        // Whether anyone listens is asked under the write lock: a consumer that subscribes later
        // copies the graph after this commit (its read lock waits for ours), so none misses it.
        let changes = {
            let mut graph = self.graph.write();
            let listened = self.feed.listened();
            staged.apply(&mut graph, listened)
        };
        if let Some(changes) = changes {
            self.feed.send(changes);
        }
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
        let failed = result.as_ref().err().map(|e| StoreError::Io {
            what: "checkpointing".into(),
            cause: std::io::Error::other(e.to_string()),
        });
        self.finished(result, started);
        failed.map_or(Ok(()), Err)
    }

    /// Rewrites a directory of layout 2 or 3 as layout 4: a snapshot file and a manifest, then one
    /// sled batch that drops the old snapshot chunks and log and marks the new layout.
    fn upgrade(&mut self) -> Result<(), StoreError> {
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

impl StoreHandle {
    /// Persists and applies mutations; resolves once they are durable, with one outcome each.
    ///
    /// # Errors
    /// [`StoreError`] if the disk write failed (nothing of the batch was applied) or the store is shut.
    pub async fn submit(
        &self,
        mutations: Vec<Mutation>,
    ) -> Result<Vec<Result<Outcome, Rejection>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::new(mutations, Some(reply))).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`StoreHandle::submit`] for one mutation.
    ///
    /// # Errors
    /// The store error, or the mutation's rejection as `Ok(Err(..))`.
    pub async fn submit_one(&self, mutation: Mutation) -> Result<Result<Outcome, Rejection>, StoreError> {
        let mut out = self.submit(vec![mutation]).await?;
        out.pop().ok_or(StoreError::Closed)
    }

    /// Blocking twin of [`StoreHandle::submit`], for threads outside the async runtime (the importer).
    ///
    /// # Errors
    /// As [`StoreHandle::submit`].
    pub fn submit_blocking(
        &self,
        mutations: Vec<Mutation>,
    ) -> Result<Vec<Result<Outcome, Rejection>>, StoreError> {
        self.enqueue_blocking(mutations)?.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Queues mutations without waiting for them to commit; the receiver resolves when they are
    /// durable. Lets a bulk loader keep several batches in flight.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the writer is gone.
    pub fn enqueue_blocking(
        &self,
        mutations: Vec<Mutation>,
    ) -> Result<oneshot::Receiver<Outcomes>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.blocking_send(Command::new(mutations, Some(reply))).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Commits everything queued so far, flushes and stops the writer; later submissions fail with
    /// [`StoreError::Closed`]. Resolves when the last commit is durable.
    /// Follows what every commit changes from now on (see [`feed`]); `None` once the store is
    /// closing.
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<feed::Changes>>> {
        self.feed.subscribe()
    }

    pub async fn close(&self) {
        let (cmd, rx) = Command::stop(false);
        if self.tx.send(cmd).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Drops this handle once it is the last one (waiting at most `timeout` for the others, held by
    /// HTTP workers that are still shutting down), so that sled's lock on the data directory is
    /// released when this returns true and another process, or a restart, can open it at once.
    pub fn release(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Arc::strong_count(&self.live) > 1 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stops the writer like [`StoreHandle::close`] but without the clean-stop checkpoint, leaving
    /// the data directory as a crash after the last commit would. For tests of log replay.
    #[doc(hidden)]
    pub fn crash_for_tests(&self) {
        let (cmd, rx) = Command::stop(true);
        if self.tx.blocking_send(cmd).is_ok() {
            let _ = rx.blocking_recv();
        }
    }

    /// A backup of the store as of the next commit boundary (everything submitted before is in it),
    /// to write with [`Backup::write`] on a blocking thread.
    ///
    /// # Errors
    /// [`StoreError::Closed`] if the store is shutting down or cannot read sled right now.
    pub async fn backup(&self) -> Result<Backup, StoreError> {
        let (cmd, rx) = Command::backup();
        self.tx.send(cmd).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Blocking twin of [`StoreHandle::backup`], for commands outside the async runtime.
    ///
    /// # Errors
    /// As [`StoreHandle::backup`].
    pub fn backup_blocking(&self) -> Result<Backup, StoreError> {
        let (cmd, rx) = Command::backup();
        self.tx.blocking_send(cmd).map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)
    }

    /// Starts a checkpoint after the next commit, however small the log is, unless one runs (for
    /// benchmarks: the size rule would otherwise wait for as much log as the snapshot holds).
    #[doc(hidden)]
    pub fn checkpoint_soon(&self) {
        let _ = self.tx.blocking_send(Command { checkpoint: true, ..Command::new(Vec::new(), None) });
    }

    /// Blocking twin of [`StoreHandle::close`].
    pub fn close_blocking(&self) {
        let (cmd, rx) = Command::stop(false);
        if self.tx.blocking_send(cmd).is_ok() {
            let _ = rx.blocking_recv();
        }
    }

    pub fn graph(&self) -> &SharedGraph {
        &self.graph
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// Whether commits are failing right now, and why.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// A source's persisted resume position.
    ///
    /// # Errors
    /// sled read errors.
    pub fn cursor(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.db()?.get(layout::cursor_key(name))?.map(|v| v.to_vec()))
    }

    /// Whether a post was seen (applied or deleted) before.
    ///
    /// # Errors
    /// sled read errors.
    pub fn has_post(&self, platform: Platform, id: &str) -> Result<bool, StoreError> {
        Ok(self.seen.read().contains(&layout::post_hash(platform, id)))
    }

    /// Bytes on disk, as sled counts them.
    pub fn size_on_disk(&self) -> u64 {
        self.db.db().ok().and_then(|db| db.size_on_disk().ok()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
