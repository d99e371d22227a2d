//! Persistence in sled, and the one write path.
//!
//! sled is the source of truth: on open, the in-memory [`Graph`] is rebuilt from it. Every change goes
//! through [`StoreHandle::submit`]: a single writer thread drains all pending mutations (from HTTP
//! handlers and ingest sources alike), stages them against the graph, writes them as one atomic sled
//! batch, flushes (fsync), and only then applies them to the graph and answers. Many concurrent
//! writers therefore share one flush (group commit), and nothing is acknowledged before it is on disk.
//!
//! Knows the graph, never HTTP.

pub mod feed;
mod layout;
mod stage;

use crate::graph::{Graph, Mutation, Outcome, Platform, Purge, Rejection};
use layout::Effect;
use parking_lot::RwLock;
use stage::SeenSet;
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
    #[error("data directory {dir} is corrupt: {what}")]
    Corrupt { dir: PathBuf, what: String },
    #[error("the store is shut down")]
    Closed,
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
}

/// A cloneable handle to the store: submit mutations, read cursors, reach the graph.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    db: sled::Db,
    graph: SharedGraph,
    seen: Arc<RwLock<SeenSet>>,
    stats: Arc<WriteStats>,
    dir: Arc<PathBuf>,
    /// One count per live handle, to know when the data directory's lock is about to be released.
    live: Arc<()>,
    feed: feed::Feed,
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
    // sled releases its file lock from a background thread just after the previous owner in this
    // process let go (an in-process restart): give it a moment before reporting the directory held.
    let deadline = Instant::now() + Duration::from_secs(1);
    let db = loop {
        let opened = sled::Config::new()
            .path(&dir)
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| classify_open_error(&dir, e));
        match opened {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other?,
        }
    };
    let mut upgrade = false;
    match db.get(layout::META_VERSION)? {
        None => {
            db.insert(layout::META_VERSION, &layout::LAYOUT_VERSION.to_le_bytes()[..])?;
            db.flush()?;
        }
        Some(v) if v.as_ref() == layout::LAYOUT_VERSION.to_le_bytes() => {}
        Some(v) if v.as_ref() == layout::LAYOUT_WITHOUT_TIMELINE.to_le_bytes() => upgrade = true,
        Some(_) => {
            return Err(StoreError::Corrupt {
                dir,
                what: "unknown layout version (written by a newer tagflow?)".into(),
            })
        }
    }
    let mut loaded = load(&db, &dir)?;
    if upgrade {
        // Written before the timeline: rebuild it from the edges, then rewrite the directory as the
        // current layout with the first checkpoint (until then, a restart rebuilds it again).
        loaded.graph.synthesize_timeline();
        log::warn!(
            "store: {} was written by an older tagflow without interaction times; the timeline was \
             rebuilt from each edge's first and last times (exact for edges seen once or twice)",
            dir.display()
        );
        loaded.disk.upgrade = true;
    }
    let graph = loaded.graph;
    let report =
        LoadReport { users: graph.user_count(), ties: graph.tie_count(), elapsed: started.elapsed() };
    let graph: SharedGraph = Arc::new(RwLock::new(graph));
    let seen = Arc::new(RwLock::new(loaded.seen));
    // Bounded: a source that outruns the disk waits instead of growing memory.
    let (tx, rx) = mpsc::channel::<Command>(1024);
    let stats = Arc::new(WriteStats::default());
    let feed = feed::Feed::new();
    let writer = WriterLoop {
        db: db.clone(),
        graph: graph.clone(),
        seen: seen.clone(),
        disk: loaded.disk,
        stats: stats.clone(),
        max: config.max_batch,
        checkpoint_min: config.checkpoint_min_bytes,
        feed: feed.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("tagflow-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Open { dir: dir.clone(), cause: sled::Error::Io(e) })?;
    let handle = StoreHandle { tx, db, graph, seen, stats, dir: Arc::new(dir), live: Arc::new(()), feed };
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
        StoreError::Open { dir: dir.to_path_buf(), cause: e }
    }
}

/// What opening the data directory found.
struct Loaded {
    graph: Graph,
    seen: SeenSet,
    disk: Disk,
}

/// Where the store stands on disk: found by `load`, then kept up to date by the writer.
struct Disk {
    next_uid: u32,
    next_seq: u64,
    /// The current snapshot id and the last log seq it covers.
    snapshot: (u32, u64),
    /// Bytes of log written since that snapshot, and the snapshot's own size.
    log_bytes: u64,
    snapshot_bytes: u64,
    /// How many chunks the current snapshot has, and how many pieces each log record after it has
    /// (0 for a record written whole, before pieces): what the next checkpoint drops, by key.
    snapshot_chunks: u32,
    log_pieces: Vec<u32>,
    /// The directory is of the layout before the timeline: the next checkpoint rewrites it.
    upgrade: bool,
}

/// Rebuilds the graph: the latest snapshot in bulk, then every log record after it, in order.
///
/// Everything is read by key, never by iterating a range: sled 0.34's iterators page in every leaf
/// they pass without ever counting it against the cache, so a scan of the snapshot left all of it
/// resident for the life of the process (measured: 310 MB at ten million interactions), while a
/// `get` is counted and evicted like any other access. Snapshot chunks and log pieces are numbered
/// densely, so the keys to read are known.
fn load(db: &sled::Db, dir: &Path) -> Result<Loaded, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt { dir: dir.to_path_buf(), what };
    let checkpoint = match db.get(layout::META_CHECKPOINT)? {
        Some(v) => layout::decode_checkpoint(&v).ok_or_else(|| corrupt("bad checkpoint record".into()))?,
        None => layout::Checkpoint::default(),
    };
    let (snapshot, covered) = (checkpoint.snapshot, checkpoint.seq);
    let mut graph = Graph::new();
    // Sized once: growing by doubling would leave up to half of the largest vectors unused.
    graph.reserve(checkpoint.users as usize, checkpoint.ties as usize);
    let mut seen = SeenSet::default();
    let mut max_uid: Option<u32> = None;
    let mut purge = Purge::default();
    let mut snapshot_bytes = 0u64;
    let mut snapshot_chunks = 0u32;
    // No checkpoint was ever completed when it covers nothing: any chunk is a leftover.
    if covered > 0 {
        while let Some(v) = db.get(layout::snapshot_key(snapshot, snapshot_chunks))? {
            snapshot_bytes += v.len() as u64;
            replay(&mut graph, &mut seen, &mut max_uid, &mut purge, &v, true)
                .map_err(|at| corrupt(format!("snapshot chunk {snapshot_chunks} at byte {at}")))?;
            snapshot_chunks += 1;
        }
    }
    drop_stale_chunks(db, if covered > 0 { Some(snapshot) } else { None })?;
    let mut next_seq = covered + 1;
    let mut log_bytes = 0u64;
    let mut log_pieces = Vec::new();
    loop {
        // A record written before log pieces is one value under the record's own key.
        let whole = db.get(layout::log_key(next_seq))?;
        let mut pieces = 0u32;
        let mut replay_one = |v: &[u8], what: &dyn Fn() -> String| {
            log_bytes += v.len() as u64;
            replay(&mut graph, &mut seen, &mut max_uid, &mut purge, v, false)
                .map_err(|at| corrupt(format!("log record {next_seq}{} at byte {at}", what())))
        };
        if let Some(v) = &whole {
            replay_one(v, &String::new)?;
        }
        while let Some(v) = db.get(layout::log_piece_key(next_seq, pieces))? {
            replay_one(&v, &|| format!(" piece {pieces}"))?;
            pieces += 1;
        }
        if whole.is_none() && pieces == 0 {
            break;
        }
        log_pieces.push(pieces);
        next_seq += 1;
    }
    // Records are numbered densely: anything past the first missing one means a lost record.
    if let Some(kv) = db.range(&layout::log_key(next_seq)[..]..layout::LOG_END).next() {
        let (k, _) = kv?;
        return Err(corrupt(format!(
            "log record {next_seq} is missing but {:?} follows it",
            layout::seq_of_log_key(&k)
        )));
    }
    let stored_next = match db.get(layout::META_NEXT_UID)? {
        Some(v) => u32::from_le_bytes(v.as_ref().try_into().map_err(|_| corrupt("bad next_uid".into()))?),
        None => 0,
    };
    let next_uid = stored_next.max(max_uid.map_or(0, |m| m + 1));
    graph.purge_timeline(&purge);
    graph.shrink_to_fit();
    // The tables are sized exactly by loading: the first writes would double them (see there).
    graph.reserve_headroom();
    Ok(Loaded {
        graph,
        seen,
        disk: Disk {
            next_uid,
            next_seq,
            snapshot: (snapshot, covered),
            log_bytes,
            snapshot_bytes,
            snapshot_chunks,
            log_pieces,
            upgrade: false,
        },
    })
}

/// Removes chunks of any snapshot but `current`: leftovers of a checkpoint cut short. Looks at one
/// key on each side of the current snapshot; only when something is there does it walk the rest.
fn drop_stale_chunks(db: &sled::Db, current: Option<u32>) -> Result<(), sled::Error> {
    let all = [layout::SNAPSHOT];
    let end = [layout::SNAPSHOT + 1];
    let (below, above) = match current {
        Some(id) => (
            layout::snapshot_prefix(id).to_vec(),
            id.checked_add(1).map(|n| layout::snapshot_prefix(n).to_vec()),
        ),
        None => (end.to_vec(), None),
    };
    let mut stale = sled::Batch::default();
    let mut n = 0usize;
    let mut sweep = |range: sled::Iter| -> Result<(), sled::Error> {
        for kv in range {
            stale.remove(kv?.0);
            n += 1;
        }
        Ok(())
    };
    if db.range(&all[..]..&below[..]).next().is_some() {
        sweep(db.range(&all[..]..&below[..]))?;
    }
    if let Some(above) = above {
        if db.range(&above[..]..&end[..]).next().is_some() {
            sweep(db.range(&above[..]..&end[..]))?;
        }
    }
    if n > 0 {
        log::info!("store: removing {n} chunks of an unfinished checkpoint");
        db.apply_batch(stale)?;
    }
    Ok(())
}

/// Applies one record's effects to the graph. Snapshot edges are known to be new (`fresh`): they
/// are added without looking for an existing edge.
///
/// Timeline removals are gathered in `purge` and carried out in one pass over the timeline, just
/// before a later stamp they could concern (or once the whole log is read): a pass per record
/// would make replaying a log of deletions quadratic.
fn replay(
    graph: &mut Graph,
    seen: &mut SeenSet,
    max_uid: &mut Option<u32>,
    purge: &mut Purge,
    record: &[u8],
    fresh: bool,
) -> Result<(), usize> {
    for effect in layout::Decoder::new(record) {
        match effect? {
            Effect::UserPut { uid, key, handle, name } => {
                graph.upsert_user(uid, key, handle, name);
                *max_uid = Some(max_uid.map_or(uid, |m| m.max(uid)));
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
            }
            Effect::TieSet { from, to, tie } => {
                if fresh {
                    graph.load_tie(from, to, tie);
                } else {
                    graph.set_tie_by_uid(from, to, tie);
                }
            }
            Effect::Seen { hash } => {
                seen.insert(hash);
            }
        }
    }
    Ok(())
}

struct WriterLoop {
    db: sled::Db,
    graph: SharedGraph,
    seen: Arc<RwLock<SeenSet>>,
    disk: Disk,
    stats: Arc<WriteStats>,
    max: usize,
    checkpoint_min: u64,
    feed: feed::Feed,
}

impl WriterLoop {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        if self.disk.upgrade {
            if let Err(e) = self.checkpoint() {
                log::error!("store: rewriting the data directory with its timeline failed: {e}");
            }
        }
        let mut stopping = false;
        let mut abort = false;
        while let Some(first) = rx.blocking_recv() {
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
            if stopping {
                // Later senders get `Closed`: their reply channels are dropped with the receiver.
                rx.close();
                break;
            }
        }
        self.feed.close();
        // A clean stop folds the log into a snapshot, so that the next start is a bulk load.
        if (self.disk.log_bytes > 0 || self.disk.upgrade) && !abort {
            if let Err(e) = self.checkpoint() {
                log::error!("store: checkpoint at shutdown failed: {e}");
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
        let started = Instant::now();
        let result = self.persist(all);
        self.stats.commit_seconds.observe(started.elapsed().as_secs_f64());
        self.stats.commit_mutations.observe(total as f64);
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
        let micros = |t: Instant| t.elapsed().as_micros() as u64;
        let t = Instant::now();
        // Readers go on while we stage: only this thread ever mutates the graph.
        let mut staged = {
            let graph = self.graph.read();
            let seen = self.seen.read();
            stage::stage(
                &graph,
                &stage::Lookup { seen: &seen, db: &self.db },
                self.disk.next_uid,
                now,
                mutations,
            )?
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
        let pieces = layout::pieces(&log, layout::PIECE_BYTES);
        let n_pieces = pieces.len() as u32;
        for (i, piece) in pieces.into_iter().enumerate() {
            batch.insert(&layout::log_piece_key(self.disk.next_seq, i as u32)[..], piece);
        }
        self.db.apply_batch(batch)?;
        self.stats.write_micros.fetch_add(micros(t), Ordering::Relaxed);
        let t = Instant::now();
        // Durability: sled's own background flush runs every 500 ms; an acknowledged write must not
        // wait for it, so flush (fsync) before anyone is answered.
        self.db.flush()?;
        self.stats.flush_micros.fetch_add(micros(t), Ordering::Relaxed);
        self.stats.flush_seconds.observe(t.elapsed().as_secs_f64());
        if log_len > 0 {
            self.disk.log_pieces.push(n_pieces);
            self.disk.next_seq += 1;
            self.disk.log_bytes += log_len;
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
        // A checkpoint once the log is as large as the last snapshot (and not tiny): checkpoints then
        // cost O(graph) amortised over the writes, and a restart never replays more log than snapshot.
        if self.disk.log_bytes >= self.checkpoint_min.max(self.disk.snapshot_bytes) {
            if let Err(e) = self.checkpoint() {
                // The log still holds everything: a failed checkpoint only costs restart time.
                log::error!("store: checkpoint failed: {e}");
            }
        }
        Ok(outcomes)
    }

    /// Writes the whole graph and seen-set as a new snapshot, then switches to it and drops the log
    /// it covers and the previous snapshot. Crash-safe at every step: until the one batch that
    /// switches, the old snapshot and the full log are what a restart loads.
    fn checkpoint(&mut self) -> Result<(), sled::Error> {
        let t = Instant::now();
        let covered = self.disk.next_seq - 1;
        let id = self.disk.snapshot.0.wrapping_add(1);
        // Leftovers of an attempt at this same snapshot that failed part-way would load with it.
        for kv in self.db.scan_prefix(layout::snapshot_prefix(id)) {
            self.db.remove(kv?.0)?;
        }
        let mut enc = layout::Encoder::default();
        let (mut users, mut ties) = (0u64, 0u64);
        // Chunks go to sled as they fill: the snapshot is never held whole in memory.
        let (mut chunk, mut bytes) = (0u32, 0u64);
        let mut failed: Option<sled::Error> = None;
        let db = &self.db;
        let mut cut = |enc: &mut layout::Encoder, last: bool| {
            if (enc.buf.len() >= layout::PIECE_BYTES || (last && !enc.buf.is_empty())) && failed.is_none() {
                bytes += enc.buf.len() as u64;
                if let Err(e) = db.insert(layout::snapshot_key(id, chunk), &enc.buf[..]) {
                    failed = Some(e);
                }
                chunk += 1;
                enc.buf.clear();
            }
        };
        {
            // Users first, then edges, then seen posts: the order load replays them in. Only this
            // thread writes the graph, so the read lock held meanwhile holds up no reader.
            let graph = self.graph.read();
            graph.for_each_user(|uid, key, handle, name| {
                enc.user_put(uid, key, handle, name);
                users += 1;
                cut(&mut enc, false);
            });
            graph.for_each_tie(|a, b, tie| {
                enc.tie_set(a, b, tie);
                ties += 1;
                cut(&mut enc, false);
            });
            graph.for_each_stamp(|a, b, kind, at| {
                enc.stamp(a, b, kind, at);
                cut(&mut enc, false);
            });
        }
        for h in self.seen.read().iter() {
            enc.seen(*h);
            cut(&mut enc, false);
        }
        cut(&mut enc, true);
        if let Some(e) = failed {
            return Err(e);
        }
        self.db.flush()?;
        // The switch: one atomic batch points at the new snapshot and drops what it replaces.
        let mut batch = sled::Batch::default();
        let record = layout::Checkpoint { snapshot: id, seq: covered, users, ties };
        batch.insert(layout::META_CHECKPOINT, &layout::encode_checkpoint(&record)[..]);
        // The snapshot holds the timeline: from here on the directory is of the current layout.
        batch.insert(layout::META_VERSION, &layout::LAYOUT_VERSION.to_le_bytes()[..]);
        // By key, not by scanning (see `load`): a scan would page in everything it drops.
        let first = self.disk.snapshot.1 + 1;
        for (seq, &pieces) in (first..).zip(&self.disk.log_pieces) {
            if pieces == 0 {
                batch.remove(&layout::log_key(seq)[..]);
            }
            for piece in 0..pieces {
                batch.remove(&layout::log_piece_key(seq, piece)[..]);
            }
        }
        for chunk in 0..self.disk.snapshot_chunks {
            batch.remove(&layout::snapshot_key(self.disk.snapshot.0, chunk)[..]);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        log::info!(
            "store: checkpoint {id} covers log up to {covered}: {:.1} MiB in {:.2}s (log was {:.1} MiB)",
            bytes as f64 / (1 << 20) as f64,
            t.elapsed().as_secs_f64(),
            self.disk.log_bytes as f64 / (1 << 20) as f64
        );
        self.disk.snapshot = (id, covered);
        self.disk.snapshot_bytes = bytes;
        self.disk.snapshot_chunks = chunk;
        self.disk.log_pieces.clear();
        self.disk.log_bytes = 0;
        self.disk.upgrade = false;
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.stats.checkpoint_seconds.observe(t.elapsed().as_secs_f64());
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
        self.tx
            .send(Command { mutations, reply: Some(reply), shutdown: false, abort: false })
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
    pub fn enqueue_blocking(
        &self,
        mutations: Vec<Mutation>,
    ) -> Result<oneshot::Receiver<Outcomes>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(Command { mutations, reply: Some(reply), shutdown: false, abort: false })
            .map_err(|_| StoreError::Closed)?;
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
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command { mutations: Vec::new(), reply: Some(reply), shutdown: true, abort: false })
            .await
            .is_ok()
        {
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
        let (reply, rx) = oneshot::channel();
        let cmd = Command { mutations: Vec::new(), reply: Some(reply), shutdown: true, abort: true };
        if self.tx.blocking_send(cmd).is_ok() {
            let _ = rx.blocking_recv();
        }
    }

    /// Blocking twin of [`StoreHandle::close`].
    pub fn close_blocking(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .blocking_send(Command {
                mutations: Vec::new(),
                reply: Some(reply),
                shutdown: true,
                abort: false,
            })
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
        Ok(self.seen.read().contains(&layout::post_hash(platform, id)))
    }

    /// Bytes on disk, as sled counts them.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
