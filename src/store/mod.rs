//! Persistence in sled, and the one write path.
//!
//! sled is the source of truth: on open, the in-memory [`Graph`] is rebuilt from it. Every change goes
//! through [`StoreHandle::submit`]: a single writer thread drains all pending mutations (from HTTP
//! handlers and ingest sources alike), stages them against the graph, writes them as one atomic sled
//! batch, flushes (fsync), and only then applies them to the graph and answers. Many concurrent
//! writers therefore share one flush (group commit), and nothing is acknowledged before it is on disk.
//!
//! Knows the graph, never HTTP.

mod layout;
mod stage;

use crate::graph::{Graph, Mutation, Outcome, Platform, Rejection, Tie};
use parking_lot::RwLock;
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
    #[error("cannot open data directory {dir}: {source}")]
    Open { dir: PathBuf, source: sled::Error },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("data directory {dir} is corrupt: {what}")]
    Corrupt { dir: PathBuf, what: String },
    #[error("the store is shut down")]
    Closed,
}

/// Store tuning.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// sled's page cache, in bytes. Small by default: the service must fit a 512 MB dyno.
    pub cache_bytes: u64,
    /// The most mutations one group commit takes before it flushes.
    pub max_batch: usize,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig { dir: dir.into(), cache_bytes: 64 << 20, max_batch: 50_000 }
    }
}

/// What opening found, for logs and `/status`.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    pub users: usize,
    pub ties: usize,
    pub elapsed: Duration,
}

/// Counters of the write path.
#[derive(Debug, Default)]
pub struct WriteStats {
    pub commits: AtomicU64,
    pub mutations: AtomicU64,
    pub flush_micros: AtomicU64,
}

/// The outcomes of one submission, in order, or why the whole batch failed.
pub type Outcomes = Result<Vec<Result<Outcome, Rejection>>, StoreError>;

struct Command {
    mutations: Vec<Mutation>,
    reply: Option<oneshot::Sender<Outcomes>>,
    /// Commit everything queued before this command, then stop the writer.
    shutdown: bool,
}

/// A cloneable handle to the store: submit mutations, read cursors, reach the graph.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    db: sled::Db,
    graph: SharedGraph,
    stats: Arc<WriteStats>,
    dir: Arc<PathBuf>,
}

/// The running writer; joining it waits for every queued mutation to be committed.
pub struct Writer {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Waits until every handle is dropped and the queue is drained, then flushes one last time.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens (or creates) the data directory, loads the graph and starts the writer thread.
///
/// # Errors
/// [`StoreError::Locked`] if another process holds the directory, [`StoreError::Open`] for other
/// failures to open it, [`StoreError::Corrupt`] for unreadable records.
pub fn open(config: &StoreConfig) -> Result<(StoreHandle, Writer, LoadReport), StoreError> {
    let started = Instant::now();
    let dir = config.dir.clone();
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(config.cache_bytes)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| classify_open_error(&dir, e))?;
    match db.get(layout::META_VERSION)? {
        None => {
            db.insert(layout::META_VERSION, &layout::LAYOUT_VERSION.to_le_bytes()[..])?;
            db.flush()?;
        }
        Some(v) if v.as_ref() == layout::LAYOUT_VERSION.to_le_bytes() => {}
        Some(_) => {
            return Err(StoreError::Corrupt {
                dir,
                what: "unknown layout version (written by a newer tagflow?)".into(),
            })
        }
    }
    let (graph, next_uid) = load(&db, &dir)?;
    let report =
        LoadReport { users: graph.user_count(), ties: graph.tie_count(), elapsed: started.elapsed() };
    let graph: SharedGraph = Arc::new(RwLock::new(graph));
    // Bounded: a source that outruns the disk waits instead of growing memory.
    let (tx, rx) = mpsc::channel::<Command>(1024);
    let stats = Arc::new(WriteStats::default());
    let writer = WriterLoop {
        db: db.clone(),
        graph: graph.clone(),
        next_uid,
        stats: stats.clone(),
        max: config.max_batch,
    };
    let thread = std::thread::Builder::new()
        .name("tagflow-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Open { dir: dir.clone(), source: sled::Error::Io(e) })?;
    let handle = StoreHandle { tx, db, graph, stats, dir: Arc::new(dir) };
    Ok((handle, Writer { thread: Some(thread) }, report))
}

fn classify_open_error(dir: &Path, e: sled::Error) -> StoreError {
    // sled reports a held lock as an I/O error from its file lock ("could not acquire lock ...").
    let text = e.to_string();
    if matches!(&e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
        || text.contains("could not acquire lock")
        || text.contains("Resource temporarily unavailable")
    {
        StoreError::Locked { dir: dir.to_path_buf() }
    } else {
        StoreError::Open { dir: dir.to_path_buf(), source: e }
    }
}

/// Rebuilds the graph: users first (assigning node indices), then edges by uid.
fn load(db: &sled::Db, dir: &Path) -> Result<(Graph, u32), StoreError> {
    let corrupt = |what: String| StoreError::Corrupt { dir: dir.to_path_buf(), what };
    let mut graph = Graph::new();
    let mut max_uid: Option<u32> = None;
    for kv in db.scan_prefix([layout::USER]) {
        let (k, v) = kv?;
        let uid = layout::uid_from_user_key(&k).ok_or_else(|| corrupt(format!("bad user key {k:?}")))?;
        let rec = layout::decode_user(&v).ok_or_else(|| corrupt(format!("bad user record for uid {uid}")))?;
        graph.upsert_user(uid, &rec.key, rec.handle.as_deref(), rec.name.as_deref());
        max_uid = Some(max_uid.map_or(uid, |m| m.max(uid)));
    }
    let mut skipped = 0u64;
    for kv in db.scan_prefix([layout::TIE]) {
        let (k, v) = kv?;
        let (a, b) = layout::uids_from_tie_key(&k).ok_or_else(|| corrupt(format!("bad edge key {k:?}")))?;
        let tie = Tie::from_bytes(&v).ok_or_else(|| corrupt(format!("bad edge record {a}->{b}")))?;
        if !graph.load_tie(a, b, tie) {
            skipped += 1;
        }
    }
    if skipped > 0 {
        log::warn!("store: skipped {skipped} edge records that name no user");
    }
    let stored_next = match db.get(layout::META_NEXT_UID)? {
        Some(v) => u32::from_le_bytes(v.as_ref().try_into().map_err(|_| corrupt("bad next_uid".into()))?),
        None => 0,
    };
    let next_uid = stored_next.max(max_uid.map_or(0, |m| m + 1));
    Ok((graph, next_uid))
}

struct WriterLoop {
    db: sled::Db,
    graph: SharedGraph,
    next_uid: u32,
    stats: Arc<WriteStats>,
    max: usize,
}

impl WriterLoop {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut stopping = false;
        while let Some(first) = rx.blocking_recv() {
            stopping |= first.shutdown;
            let mut commands = vec![first];
            let mut n = commands[0].mutations.len();
            // Group commit: take whatever else is already queued, up to the batch limit.
            while n < self.max && !stopping {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.mutations.len();
                        stopping |= c.shutdown;
                        commands.push(c);
                    }
                    Err(_) => break,
                }
            }
            self.commit(commands);
            if stopping {
                // Later senders get `Closed`: their reply channels are dropped with the receiver.
                rx.close();
                break;
            }
        }
        if let Err(e) = self.db.flush() {
            log::error!("store: final flush failed: {e}");
        }
        log::debug!("store: writer stopped");
    }

    fn commit(&mut self, commands: Vec<Command>) {
        let sizes: Vec<usize> = commands.iter().map(|c| c.mutations.len()).collect();
        let mut replies = Vec::with_capacity(commands.len());
        let mut all = Vec::with_capacity(sizes.iter().sum());
        for c in commands {
            replies.push(c.reply);
            all.extend(c.mutations);
        }
        let total = all.len();
        let result = self.persist(all);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.mutations.fetch_add(total as u64, Ordering::Relaxed);
        match result {
            Ok(outcomes) => {
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
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(StoreError::Sled(e.clone())));
                }
            }
        }
    }

    fn persist(&mut self, mutations: Vec<Mutation>) -> Result<Vec<Result<Outcome, Rejection>>, sled::Error> {
        let now = chrono::Utc::now().timestamp();
        // Readers go on while we stage: only this thread ever mutates the graph.
        let mut staged = {
            let graph = self.graph.read();
            stage::stage(&graph, &self.db, self.next_uid, now, mutations)?
        };
        let outcomes = std::mem::take(&mut staged.outcomes);
        if staged.is_empty() {
            return Ok(outcomes);
        }
        self.db.apply_batch(std::mem::take(&mut staged.batch))?;
        let t = Instant::now();
        // Durability: sled's own background flush runs every 500 ms; an acknowledged write must not
        // wait for it, so flush (fsync) before anyone is answered.
        self.db.flush()?;
        self.stats.flush_micros.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.next_uid = staged.next_uid;
        staged.apply(&mut self.graph.write());
        Ok(outcomes)
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
        self.tx
            .send(Command { mutations, reply: Some(reply), shutdown: false })
            .await
            .map_err(|_| StoreError::Closed)?;
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
    pub fn enqueue_blocking(&self, mutations: Vec<Mutation>) -> Result<oneshot::Receiver<Outcomes>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(Command { mutations, reply: Some(reply), shutdown: false })
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Commits everything queued so far, flushes and stops the writer; later submissions fail with
    /// [`StoreError::Closed`]. Resolves when the last commit is durable.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command { mutations: Vec::new(), reply: Some(reply), shutdown: true }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Blocking twin of [`StoreHandle::close`].
    pub fn close_blocking(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .blocking_send(Command { mutations: Vec::new(), reply: Some(reply), shutdown: true })
            .is_ok()
        {
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

    /// A source's persisted resume position.
    ///
    /// # Errors
    /// sled read errors.
    pub fn cursor(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(layout::cursor_key(name))?.map(|v| v.to_vec()))
    }

    /// Whether a post was seen (applied or deleted) before.
    ///
    /// # Errors
    /// sled read errors.
    pub fn has_post(&self, platform: Platform, id: &str) -> Result<bool, StoreError> {
        Ok(self.db.contains_key(layout::post_key(platform, id))?)
    }

    /// Bytes on disk, as sled counts them.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
