//! Persistence, and the one write path: the store's handle, its settings, errors and health.
//!
//! The data directory is the source of truth: on open, the in-memory [`Graph`] is rebuilt from it
//! ([`load`]). Every change goes through [`StoreHandle::submit`]: a single writer thread ([`writer`])
//! drains all pending mutations (from HTTP handlers and ingest sources alike), stages them against
//! the graph ([`stage`]), writes them as one atomic sled batch ([`layout`]), flushes (fsync), and only
//! then applies them to the graph and answers. Many concurrent writers therefore share one flush
//! (group commit), and nothing is acknowledged before it is on disk.
//!
//! Checkpoints fold the log into a snapshot file ([`snapshot`]) on their own thread
//! ([`checkpoint`]); a manifest beside sled's files ([`manifest`]) says what must exist, and opening
//! checks all of it. Backups and restores are in [`archive`].
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
mod pg;
mod seen;
mod snapshot;
mod stage;
mod writer;

use crate::graph::{Graph, Mutation, Outcome, Platform, Rejection};
pub use archive::{check_archive, restore, Backup};
use load::{open_db, Loaded};
use parking_lot::{Mutex, RwLock};
pub use pg::{scratch_database, test_server, Database, Replication};
use seen::SeenSet;
pub use snapshot::Counts;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use writer::{Command, WriterLoop};

/// The graph shared between the writer (which mutates it) and readers (HTTP queries).
pub(crate) type SharedGraph = Arc<RwLock<Graph>>;

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
    #[error("database error {what}: {cause}")]
    Database { what: String, cause: String },
    /// Something the data directory's store does and a database store leaves to the database.
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// The disk (or the quota) is full: the write can succeed once space is freed.
    pub(crate) fn is_storage_full(&self) -> bool {
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
            StoreError::Database { what, cause } => {
                StoreError::Database { what: what.clone(), cause: cause.clone() }
            }
            StoreError::Unsupported(what) => StoreError::Unsupported(what),
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
    /// The PostgreSQL store shared by replicas, instead of the data directory.
    pub database: Option<Database>,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            cache_bytes: 64 << 20,
            max_batch: 50_000,
            checkpoint_min_bytes: 32 << 20,
            database: None,
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
    /// Seconds the graph is held for writing per commit: how long every read may wait on one.
    pub graph_held_seconds: prometheus::Histogram,
    /// When the last commit ended, in milliseconds since the Unix epoch (0: none yet).
    last_commit_ms: AtomicU64,
}

/// How long after a commit the store still counts as taking writes (see [`WriteStats::writing`]).
const WRITING_FOR_MS: u64 = 100;

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl WriteStats {
    /// Records a commit (called by the writer, once per group commit).
    pub(crate) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Whether the store is taking writes: a commit ended in the last tenth of a second. Reads
    /// yield to writes while it is (`http::reads::WritesFirst`).
    pub fn writing(&self) -> bool {
        let last = self.last_commit_ms.load(Ordering::Relaxed);
        last != 0 && unix_ms().saturating_sub(last) <= WRITING_FOR_MS
    }
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
            graph_held_seconds: histogram(
                "tagflow_graph_write_hold_seconds",
                "Seconds the graph is held for writing per commit (reads wait for it)",
                prometheus::exponential_buckets(0.000_01, 2.0, 18).expect("valid buckets"),
            ),
            last_commit_ms: AtomicU64::default(),
        }
    }
}

/// The outcomes of one submission, in order, or why the whole batch failed.
pub(crate) type Outcomes = Result<Vec<Result<Outcome, Rejection>>, StoreError>;

/// A cloneable handle to the store: submit mutations, read cursors, reach the graph.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    backend: Backend,
    graph: SharedGraph,
    seen: Arc<RwLock<SeenSet>>,
    stats: Arc<WriteStats>,
    health: Arc<Health>,
    dir: Arc<PathBuf>,
    /// One count per live handle, to know when the data directory's lock is about to be released.
    live: Arc<()>,
    feed: feed::Feed,
}

/// Where commits go: the data directory, or the database replicas share.
#[derive(Clone)]
enum Backend {
    Sled(Sled),
    Postgres(Arc<PgBackend>),
}

struct PgBackend {
    db: Database,
    reader: pg::Reader,
    replication: Arc<Replication>,
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

/// Opens a data directory for a command (no service holds it), runs `work` on it, then stops the
/// store whatever `work` returned: `work`'s error first, else the final flush's.
///
/// # Errors
/// As [`open`], `work`'s, or [`Writer::join`]'s.
pub fn offline<T, E: From<StoreError>>(
    config: &StoreConfig,
    work: impl FnOnce(&StoreHandle, &LoadReport) -> Result<T, E>,
) -> Result<T, E> {
    let (handle, writer, loaded) = open(config)?;
    let result = work(&handle, &loaded);
    handle.close_blocking();
    drop(handle);
    let flushed = writer.join();
    let value = result?;
    flushed?;
    Ok(value)
}

/// Copies the store of a data directory no service holds into an empty database, exactly (the
/// graph, seen posts, post records and cursors; the log's numbering goes on after its last commit).
/// Through a backup archive in the system's temporary directory, removed after.
///
/// # Errors
/// As [`open`] on the directory, or the database holds a graph already or fails.
pub(crate) fn migrate_to_database(dir: &Path, db: &Database) -> Result<Counts, StoreError> {
    let tmp = TempArchive::new();
    let io = |e: std::io::Error| StoreError::Io { what: format!("writing {}", tmp.0.display()), cause: e };
    let file = std::fs::File::create(&tmp.0).map_err(io)?;
    offline(&StoreConfig::new(dir), |h, _| h.backup_blocking()?.write(std::io::BufWriter::new(file)))?;
    let file = std::fs::File::open(&tmp.0).map_err(io)?;
    pg::transfer::import(db, std::io::BufReader::new(file))
}

/// Copies a database's store into a new data directory, exactly; run while no replica writes.
///
/// # Errors
/// The database fails or holds no store; the directory is not empty or cannot be written.
pub(crate) fn migrate_to_dir(db: &Database, dir: &Path) -> Result<Counts, StoreError> {
    let tmp = TempArchive::new();
    let io = |e: std::io::Error| StoreError::Io { what: format!("writing {}", tmp.0.display()), cause: e };
    let file = std::fs::File::create(&tmp.0).map_err(io)?;
    pg::transfer::export(db, std::io::BufWriter::new(file))?;
    let file = std::fs::File::open(&tmp.0).map_err(io)?;
    restore(std::io::BufReader::new(file), dir)
}

/// Restores an archive into an empty database (as [`restore`] does into a new directory).
///
/// # Errors
/// The database holds a graph already, the archive is damaged (named), or the database fails.
pub(crate) fn restore_into_database(
    archive: impl std::io::Read,
    db: &Database,
) -> Result<Counts, StoreError> {
    pg::transfer::import(db, archive)
}

/// A migration's archive in the system's temporary directory, removed when dropped.
struct TempArchive(PathBuf);

impl TempArchive {
    fn new() -> TempArchive {
        let name = format!("tagflow-migrate-{}-{}.tfbackup", std::process::id(), load::new_store_id());
        TempArchive(std::env::temp_dir().join(name))
    }
}

impl Drop for TempArchive {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Opens (or creates) the data directory, loads the graph and starts the writer thread.
///
/// # Errors
/// [`StoreError::Locked`] if another process holds the directory, [`StoreError::Open`] for other
/// failures to open it, [`StoreError::Corrupt`] for damage (named), [`StoreError::Io`] if a
/// directory of an older layout cannot be rewritten.
pub fn open(config: &StoreConfig) -> Result<(StoreHandle, Writer, LoadReport), StoreError> {
    if let Some(db) = &config.database {
        return open_database(config, db);
    }
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
    let shared = writer::Shared {
        db: db.clone(),
        graph: graph.clone(),
        seen: seen.clone(),
        stats: stats.clone(),
        health: health.clone(),
        feed: feed.clone(),
    };
    let mut writer = WriterLoop::new(config, shared, disk);
    if writer.legacy() {
        // An older layout: rewritten now, before any commit adds pieces of the new kind to it.
        writer.upgrade()?;
    }
    let thread = std::thread::Builder::new()
        .name("tagflow-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Open { dir: dir.clone(), cause: sled::Error::Io(e) })?;
    let handle = StoreHandle {
        tx,
        backend: Backend::Sled(db),
        graph,
        seen,
        stats,
        health,
        dir: Arc::new(dir),
        live: Arc::new(()),
        feed,
    };
    Ok((handle, Writer { thread: Some(thread) }, report))
}

/// [`open`] on a PostgreSQL database: migrates its schema, loads the graph, starts the writer and
/// the listener that follows what other replicas commit.
fn open_database(
    config: &StoreConfig,
    db: &Database,
) -> Result<(StoreHandle, Writer, LoadReport), StoreError> {
    let started = Instant::now();
    let mut client = db.connect()?;
    pg::migrate(&mut client)?;
    let loaded = pg::load(&mut client, db)?;
    let report = LoadReport {
        users: loaded.graph.user_count(),
        ties: loaded.graph.tie_count(),
        elapsed: started.elapsed(),
    };
    let graph: SharedGraph = Arc::new(RwLock::new(loaded.graph));
    let seen = Arc::new(RwLock::new(loaded.seen));
    let (tx, rx) = mpsc::channel::<Command>(1024);
    let stats = Arc::new(WriteStats::default());
    let health = Arc::new(Health::default());
    let feed = feed::Feed::new();
    let replication = Arc::new(Replication::default());
    replication.applied.store(loaded.applied, std::sync::atomic::Ordering::Release);
    replication.head.store(loaded.applied, std::sync::atomic::Ordering::Release);
    let writer = pg::writer::PgWriter {
        db: db.clone(),
        client: Some(client),
        graph: graph.clone(),
        seen: seen.clone(),
        stats: stats.clone(),
        health: health.clone(),
        feed: feed.clone(),
        replication: replication.clone(),
        next_uid: loaded.next_uid,
        max_batch: config.max_batch,
        checkpoint_min: config.checkpoint_min_bytes,
        covered: loaded.covered,
        snapshot_bytes: loaded.snapshot_bytes,
        log_bytes: loaded.log_bytes,
        running: None,
        retry_at: None,
        forced: false,
        stop: Arc::default(),
    };
    let (stop, weak) = (writer.stop.clone(), tx.downgrade());
    let (listener_db, listener_replication) = (db.clone(), replication.clone());
    let spawn_error =
        |e: std::io::Error| StoreError::Database { what: "starting".into(), cause: e.to_string() };
    std::thread::Builder::new()
        .name("tagflow-pg-listen".into())
        .spawn(move || pg::writer::listen(listener_db, weak, listener_replication, stop))
        .map_err(spawn_error)?;
    let thread = std::thread::Builder::new()
        .name("tagflow-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(spawn_error)?;
    let backend = Backend::Postgres(Arc::new(PgBackend {
        db: db.clone(),
        reader: pg::Reader::start(db.clone()),
        replication,
    }));
    log::info!("store: {} at log record {}", db.shown(), loaded.applied);
    let handle = StoreHandle {
        tx,
        backend,
        graph,
        seen,
        stats,
        health,
        dir: Arc::new(config.dir.clone()),
        live: Arc::new(()),
        feed,
    };
    Ok((handle, Writer { thread: Some(thread) }, report))
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
    pub(crate) async fn submit_one(
        &self,
        mutation: Mutation,
    ) -> Result<Result<Outcome, Rejection>, StoreError> {
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
        self.backs_up()?;
        let (cmd, rx) = Command::backup();
        self.tx.send(cmd).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Blocking twin of [`StoreHandle::backup`], for commands outside the async runtime.
    ///
    /// # Errors
    /// As [`StoreHandle::backup`].
    pub fn backup_blocking(&self) -> Result<Backup, StoreError> {
        self.backs_up()?;
        let (cmd, rx) = Command::backup();
        self.tx.blocking_send(cmd).map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)
    }

    /// Backups are the data directory's: a database is backed up with its own tools.
    fn backs_up(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Postgres(_) => Err(StoreError::Unsupported(
                "this service keeps its graph in PostgreSQL: back the database up with its own tools (pg_dump, \
                 Heroku's pg:backups), or copy it into a data directory with `tagflow migrate --from URL --to-data-dir DIR`",
            )),
        }
    }

    /// Starts a checkpoint after the next commit, however small the log is, unless one runs (for
    /// benchmarks: the size rule would otherwise wait for as much log as the snapshot holds).
    #[doc(hidden)]
    pub fn checkpoint_soon(&self) {
        let _ = self.tx.blocking_send(Command::checkpoint());
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
        match &self.backend {
            Backend::Sled(db) => Ok(db.db()?.get(layout::cursor_key(name))?.map(|v| v.to_vec())),
            Backend::Postgres(pg) => pg.reader.get(layout::cursor_key(name)),
        }
    }

    /// Whether this process should run source `name`: always with a data directory; on a shared
    /// database, only the replica that holds the source's lock (taken here if no replica holds it).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub(crate) fn lead(&self, name: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(true),
            Backend::Postgres(pg) => pg.reader.lead(name),
        }
    }

    /// On a shared database: where it is (without password) and where this replica stands in its log.
    pub fn replication(&self) -> Option<(&str, &Replication)> {
        match &self.backend {
            Backend::Sled(_) => None,
            Backend::Postgres(pg) => Some((pg.db.shown(), &pg.replication)),
        }
    }

    /// Whether a post was seen (applied or deleted) before.
    ///
    /// # Errors
    /// sled read errors.
    pub fn has_post(&self, platform: Platform, id: &str) -> Result<bool, StoreError> {
        Ok(self.seen.read().contains(&layout::post_hash(platform, id)))
    }

    /// sled, for tests of what it holds (`None` on a database).
    #[cfg(test)]
    fn sled(&self) -> Option<sled::Db> {
        match &self.backend {
            Backend::Sled(db) => db.db().ok(),
            Backend::Postgres(_) => None,
        }
    }

    /// Bytes on disk, as sled counts them.
    pub fn size_on_disk(&self) -> u64 {
        match &self.backend {
            Backend::Sled(db) => db.db().ok().and_then(|db| db.size_on_disk().ok()).unwrap_or(0),
            Backend::Postgres(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests;
