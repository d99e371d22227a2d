//! The writer thread of a PostgreSQL replica: the one write path, as with sled, and the follower of
//! the shared log. A group commit is one transaction: take the append lock, apply every record
//! other replicas committed since this one's last, stage the batch against that graph, insert its
//! record (and post records, cursors), notify, commit; only then apply it and answer. Between
//! commits, a wake-up from the listener applies what others committed. Checkpoints run on their own
//! thread and session, one replica at a time.

use super::super::feed;
use super::super::layout::Decoder;
use super::super::load::Effects;
use super::super::seen::SeenSet;
use super::super::snapshot::{self, FrameWriter};
use super::super::stage;
use super::super::writer::{answer, group, Command};
use super::super::{Health, SharedGraph, StoreError, WriteStats};
use super::{db_error, ChunkWriter, Database, Record, Replication, APPEND_LOCK, CHANNEL, CHECKPOINT_LOCK};
use crate::graph::{Cut, Graph, Mutation, Outcome, Rejection};
use parking_lot::RwLock;
use postgres::fallible_iterator::FallibleIterator;
use postgres::GenericClient;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Records applied per query (and per hold of the graph's write lock) while following.
const FOLLOW_BATCH: i64 = 256;

/// How long after a failed or skipped checkpoint the next is tried.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(10);

/// How often the listener looks for records it was not told of (a lost notification, a reconnect).
const POLL: Duration = Duration::from_millis(500);

pub(in crate::store) struct PgWriter {
    pub db: Database,
    pub client: Option<postgres::Client>,
    pub graph: SharedGraph,
    pub seen: Arc<RwLock<SeenSet>>,
    pub stats: Arc<WriteStats>,
    pub health: Arc<Health>,
    pub feed: feed::Feed,
    pub replication: Arc<Replication>,
    pub next_uid: u32,
    pub max_batch: usize,
    pub checkpoint_min: u64,
    /// The newest snapshot this replica knows of: the record it covers, its size, the log after it.
    pub covered: u64,
    pub snapshot_bytes: u64,
    pub log_bytes: u64,
    pub running: Option<std::thread::JoinHandle<Result<Checkpointed, StoreError>>>,
    pub retry_at: Option<Instant>,
    pub forced: bool,
    /// Set when the writer stops: the listener ends.
    pub stop: Arc<AtomicBool>,
}

/// How a checkpoint ended.
pub(in crate::store) enum Checkpointed {
    /// A snapshot covering the log up to `covered`, of `bytes`.
    Done { covered: u64, bytes: u64 },
    /// Another replica is writing one, or wrote a newer one (covering up to `covered`).
    Skipped { covered: u64 },
}

impl PgWriter {
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Result<(), StoreError> {
        let (mut stopping, mut abort) = (false, false);
        while let Some(first) = rx.blocking_recv() {
            let commands = group(first, &mut rx, self.max_batch, (&mut stopping, &mut abort));
            self.commit(commands);
            self.tend_checkpoint(false);
            if stopping {
                rx.close();
                break;
            }
        }
        self.stop.store(true, Ordering::Release);
        self.feed.close();
        self.tend_checkpoint(true);
        // A clean stop leaves a checkpoint of the log this replica saw (unless another replica is
        // writing one), so that the next start reads a snapshot and little log.
        if !abort && self.log_bytes > 0 {
            (self.forced, self.retry_at) = (true, None);
            self.tend_checkpoint(false);
            self.tend_checkpoint(true);
        }
        log::debug!("store: database writer stopped");
        Ok(())
    }

    fn commit(&mut self, commands: Vec<Command>) {
        let sizes: Vec<usize> = commands.iter().map(|c| c.mutations.len()).collect();
        let mut replies = Vec::with_capacity(commands.len());
        let mut all = Vec::with_capacity(sizes.iter().sum());
        for c in commands {
            replies.push(c.reply);
            all.extend(c.mutations);
            // Backups of a database store are the database's (pg_dump): the asker gets `Closed`.
            drop(c.backup);
            self.forced |= c.checkpoint;
        }
        let total = all.len();
        let started = Instant::now();
        let result = if all.is_empty() { self.follow().map(|()| Vec::new()) } else { self.persist(all) };
        if total > 0 {
            self.stats.commit_seconds.observe(started.elapsed().as_secs_f64());
            self.stats.commit_mutations.observe(total as f64);
            self.stats.committed();
            self.stats.mutations.fetch_add(total as u64, Ordering::Relaxed);
        }
        match &result {
            Err(e) if total == 0 => {
                // Following failed: no writer waits on it, and the next commit tries again. A
                // replica the log has left behind cannot catch up: it says so in `/status`.
                log::warn!("store: cannot follow the log now: {e}");
                if matches!(e, StoreError::Corrupt { .. }) {
                    self.health.failed(e);
                }
                return;
            }
            Err(e) => log::error!("store: commit of {total} mutations failed: {e}"),
            Ok(_) => {}
        }
        answer(&self.health, replies, &sizes, result);
    }

    /// The session, taken out to run one commit (put back by the caller), connected again if it was
    /// lost (once: a failure is the commit's).
    fn session(&mut self) -> Result<postgres::Client, StoreError> {
        match self.client.take() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => {
                let c = self.db.connect()?;
                log::info!("store: connected to {}", self.db.shown());
                Ok(c)
            }
        }
    }

    /// Applies what other replicas committed since the last record this one applied.
    fn follow(&mut self) -> Result<(), StoreError> {
        self.replication.wake_pending.store(false, Ordering::Release);
        let mut client = self.session()?;
        let r = self.catch_up(&mut client);
        self.client = Some(client);
        r
    }

    fn catch_up(&mut self, q: &mut impl GenericClient) -> Result<(), StoreError> {
        loop {
            let applied = self.replication.applied.load(Ordering::Acquire);
            let rows = q
                .query(
                    "SELECT seq, next_uid, crc, effects FROM tagflow_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&(applied as i64), &FOLLOW_BATCH],
                )
                .map_err(|e| db_error("following the log", &e))?;
            if rows.is_empty() {
                return Ok(());
            }
            let t = Instant::now();
            let mut effects = Effects::default();
            let mut last = applied;
            let mut feed = Vec::new();
            // Storage these records would make double is grown first, beside the readers.
            let (users, ties) = rows.iter().fold((0, 0), |(u, t), row| {
                let (users, ties) = Decoder::new(Record::from_row(row).effects).growth();
                (u + users, t + ties)
            });
            let grown = Graph::grow_beside(&self.graph, users, ties);
            let _replaced;
            {
                let mut graph = self.graph.write();
                let held = Instant::now();
                _replaced = grown.map(|g| graph.install(g));
                let listened = self.feed.listened();
                let mut seen = self.seen.write();
                for row in &rows {
                    let r = Record::from_row(row);
                    if r.seq != last + 1 {
                        // Dropped by a checkpoint before this replica applied it: it must load again.
                        return Err(StoreError::Corrupt {
                            dir: self.db.shown().into(),
                            what: format!(
                                "this replica applied the log up to {last}, and the log now starts at {}: \
                                 restart it to load the newest snapshot",
                                r.seq
                            ),
                        });
                    }
                    r.check().map_err(|what| StoreError::Corrupt { dir: self.db.shown().into(), what })?;
                    let mut changes = listened.then(feed::Changes::default);
                    effects
                        .apply_recording(&mut graph, &mut seen, r.effects, false, changes.as_mut())
                        .map_err(|off| StoreError::Corrupt {
                            dir: self.db.shown().into(),
                            what: format!("log record {} has an unreadable effect at byte {off}", r.seq),
                        })?;
                    if let Some(c) = changes {
                        // Consumers see each record's removals done before its changes arrive.
                        effects.settle(&mut graph);
                        graph.bump_version();
                        feed.push(feed::Changes { version: graph.version(), ..c });
                    }
                    self.next_uid = self.next_uid.max(r.next_uid);
                    self.log_bytes += r.effects.len() as u64;
                    last = r.seq;
                }
                effects.settle(&mut graph);
                graph.bump_version();
                self.stats.graph_held_seconds.observe(held.elapsed().as_secs_f64());
            }
            for changes in feed {
                self.feed.send(changes);
            }
            self.replication.applied.store(last, Ordering::Release);
            self.replication.head.fetch_max(last, Ordering::AcqRel);
            self.stats.apply_micros.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            if (rows.len() as i64) < FOLLOW_BATCH {
                return Ok(());
            }
        }
    }

    fn persist(&mut self, mutations: Vec<Mutation>) -> Result<Vec<Result<Outcome, Rejection>>, StoreError> {
        self.replication.wake_pending.store(false, Ordering::Release);
        let mut client = self.session()?;
        let r = self.transact(&mut client, mutations);
        self.client = Some(client);
        r
    }

    fn transact(
        &mut self,
        client: &mut postgres::Client,
        mutations: Vec<Mutation>,
    ) -> Result<Vec<Result<Outcome, Rejection>>, StoreError> {
        let err = |e: postgres::Error| db_error("committing", &e);
        let micros = |t: Instant| t.elapsed().as_micros() as u64;
        let mut tx = client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK]).map_err(err)?;
        // Holding the append lock: nothing can be committed after what this reads and before ours.
        self.catch_up(&mut tx)?;
        let t = Instant::now();
        let now = chrono::Utc::now().timestamp();
        let mut staged = {
            let graph = self.graph.read();
            let seen = self.seen.read();
            let lookup = Lookup { seen: &seen, tx: std::cell::RefCell::new(&mut tx) };
            stage::stage(&graph, &lookup, self.next_uid, now, mutations)?
        };
        self.stats.stage_micros.fetch_add(micros(t), Ordering::Relaxed);
        let outcomes = std::mem::take(&mut staged.outcomes);
        if staged.is_empty() {
            tx.commit().map_err(err)?;
            return Ok(outcomes);
        }
        let t = Instant::now();
        let seq = self.replication.applied.load(Ordering::Acquire) + 1;
        let log = std::mem::take(&mut staged.log);
        tx.execute(
            "INSERT INTO tagflow_log (seq, next_uid, crc, effects) VALUES ($1, $2, $3, $4)",
            &[&(seq as i64), &i64::from(staged.next_uid), &i64::from(crc32fast::hash(&log)), &log],
        )
        .map_err(err)?;
        let writes = std::mem::take(&mut staged.writes);
        if !writes.is_empty() {
            let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = writes.into_iter().unzip();
            tx.execute(
                "INSERT INTO tagflow_kv (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&keys, &values],
            )
            .map_err(err)?;
        }
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()]).map_err(err)?;
        self.stats.write_micros.fetch_add(micros(t), Ordering::Relaxed);
        let t = Instant::now();
        tx.commit().map_err(err)?;
        self.stats.flush_micros.fetch_add(micros(t), Ordering::Relaxed);
        self.stats.flush_seconds.observe(t.elapsed().as_secs_f64());
        let t = Instant::now();
        self.log_bytes += log.len() as u64;
        self.next_uid = staged.next_uid;
        self.seen.write().extend(std::mem::take(&mut staged.seen));
        staged.publish(&self.graph, &self.feed, &self.stats);
        self.replication.applied.store(seq, Ordering::Release);
        self.replication.head.fetch_max(seq, Ordering::AcqRel);
        self.stats.apply_micros.fetch_add(micros(t), Ordering::Relaxed);
        Ok(outcomes)
    }

    /// Collects a finished checkpoint (with `wait`, waits for it), and starts the next once the log
    /// is as large as the newest snapshot (and not tiny), as with sled.
    fn tend_checkpoint(&mut self, wait: bool) {
        if let Some(r) = self.running.take() {
            if !wait && !r.is_finished() {
                self.running = Some(r);
                return;
            }
            match r.join() {
                Ok(Ok(Checkpointed::Done { covered, bytes })) => {
                    self.covered = covered;
                    self.snapshot_bytes = bytes;
                    self.log_bytes = 0;
                    self.retry_at = None;
                    self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok(Checkpointed::Skipped { covered })) => {
                    if covered > self.covered {
                        self.covered = covered;
                        self.log_bytes = 0;
                    }
                    self.retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
                }
                Ok(Err(e)) => {
                    log::error!(
                        "store: checkpoint failed (retrying in {}s): {e}",
                        CHECKPOINT_RETRY.as_secs()
                    );
                    self.retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
                }
                Err(_) => {
                    log::error!("store: the checkpoint thread panicked");
                    self.retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
                }
            }
        }
        if wait || self.running.is_some() || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let due = self.log_bytes >= self.checkpoint_min.max(self.snapshot_bytes);
        if !(due || (self.forced && self.log_bytes > 0)) {
            return;
        }
        self.forced = false;
        let job = Job {
            db: self.db.clone(),
            graph: self.graph.clone(),
            seen: self.seen.clone(),
            cut: self.graph.write().open_cut(),
            covered: self.replication.applied.load(Ordering::Acquire),
            next_uid: self.next_uid,
            stats: self.stats.clone(),
        };
        self.stats.checkpointing.store(true, Ordering::Release);
        match std::thread::Builder::new().name("tagflow-checkpoint".into()).spawn(move || job.run()) {
            Ok(thread) => self.running = Some(thread),
            Err(e) => log::error!("store: cannot start a checkpoint thread: {e}"),
        }
    }
}

/// Staging's view of what earlier commits stored: the seen-set, and post records read in the
/// commit's own transaction.
struct Lookup<'a, 't> {
    seen: &'a SeenSet,
    tx: std::cell::RefCell<&'a mut postgres::Transaction<'t>>,
}

impl stage::PostLookup for Lookup<'_, '_> {
    fn seen(&self, hash: u64) -> bool {
        self.seen.contains(&hash)
    }

    fn post(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .tx
            .borrow_mut()
            .query_opt("SELECT value FROM tagflow_kv WHERE key = $1", &[&key])
            .map_err(|e| db_error("reading a post record", &e))?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// A checkpoint into the database: the graph as of the last applied record.
struct Job {
    db: Database,
    graph: SharedGraph,
    seen: Arc<RwLock<SeenSet>>,
    cut: Arc<Cut>,
    covered: u64,
    next_uid: u32,
    stats: Arc<WriteStats>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.graph.write().close_cut(&self.cut);
        self.stats.checkpointing.store(false, Ordering::Release);
    }
}

impl Job {
    fn run(self) -> Result<Checkpointed, StoreError> {
        let started = Instant::now();
        let err = |e: postgres::Error| db_error("writing a checkpoint", &e);
        // Its own session: the lock is released when it ends, whatever happens to this thread.
        let mut client = self.db.connect()?;
        let held: bool =
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&CHECKPOINT_LOCK]).map_err(err)?.get(0);
        let newest: i64 = client
            .query_one("SELECT coalesce(max(covered_seq), 0) FROM tagflow_snapshot WHERE complete", &[])
            .map_err(err)?
            .get(0);
        if !held || newest as u64 >= self.covered {
            return Ok(Checkpointed::Skipped { covered: newest as u64 });
        }
        let id: i64 = client
            .query_one("SELECT coalesce(max(id), 0) + 1 FROM tagflow_snapshot", &[])
            .map_err(err)?
            .get(0);
        client
            .execute(
                "INSERT INTO tagflow_snapshot (id, covered_seq, entry) VALUES ($1, $2, '')",
                &[&id, &(self.covered as i64)],
            )
            .map_err(err)?;
        let io = |e: std::io::Error| StoreError::Database {
            what: "writing a checkpoint".into(),
            cause: e.to_string(),
        };
        let chunks = ChunkWriter::new(&mut client, id);
        let mut w = FrameWriter::new(chunks).map_err(io)?;
        let mut counts =
            snapshot::write_graph(&mut w, &self.graph, &self.seen, &self.cut, |_| false).map_err(io)?;
        counts.seq = self.covered;
        counts.next_uid = self.next_uid;
        let (mut chunks, summary) = w.finish(&counts).map_err(io)?;
        chunks.write_chunk().map_err(io)?;
        let entry =
            super::SnapshotEntry { id: id as u32, file: format!("database snapshot {id}"), summary, counts };
        let json = serde_json::to_string(&entry).expect("a snapshot entry serialises");
        let mut tx = client.transaction().map_err(err)?;
        tx.execute("UPDATE tagflow_snapshot SET entry = $2, complete = true WHERE id = $1", &[&id, &json])
            .map_err(err)?;
        // Kept: this snapshot, the one before it, and the log after that one (a replica that lags
        // a little behind this checkpoint still finds the records it needs).
        let previous: Option<i64> = tx
            .query_one("SELECT max(id) FROM tagflow_snapshot WHERE complete AND id < $1", &[&id])
            .map_err(err)?
            .get(0);
        let previous = previous.unwrap_or(id);
        tx.execute(
            "DELETE FROM tagflow_log WHERE seq <= (SELECT covered_seq FROM tagflow_snapshot WHERE id = $1 AND id <> $2)",
            &[&previous, &id],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM tagflow_snapshot_chunk WHERE snapshot <> $1 AND snapshot <> $2",
            &[&id, &previous],
        )
        .map_err(err)?;
        tx.execute("DELETE FROM tagflow_snapshot WHERE id <> $1 AND id <> $2", &[&id, &previous])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        log::info!(
            "store: checkpoint {id} in the database covers the log up to {}: {:.1} MiB in {:.2}s",
            self.covered,
            summary.bytes as f64 / f64::from(1 << 20),
            started.elapsed().as_secs_f64()
        );
        self.stats.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
        Ok(Checkpointed::Done { covered: self.covered, bytes: summary.bytes })
    }
}

/// Wakes the writer when another replica commits (`LISTEN`), and every [`POLL`] when the log is
/// ahead of what it applied; reconnects with backoff when the database goes away.
pub(in crate::store) fn listen(
    db: Database,
    tx: mpsc::WeakSender<Command>,
    replication: Arc<Replication>,
    stop: Arc<AtomicBool>,
) {
    // A weak sender: the writer stops when the last handle is dropped, as with sled.
    let wake = |replication: &Replication| -> bool {
        if replication.wake_pending.swap(true, Ordering::AcqRel) {
            return true;
        }
        tx.upgrade().is_some_and(|tx| tx.blocking_send(Command::new(Vec::new(), None)).is_ok())
    };
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Acquire) {
        let mut client = match db.connect().and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANNEL}")).map_err(|e| db_error("listening", &e))?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("store: listener cannot reach the database: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // What was committed while we were not listening.
        if let Ok(row) = client.query_one("SELECT coalesce(max(seq), 0) FROM tagflow_log", &[]) {
            replication.head.fetch_max(row.get::<_, i64>(0) as u64, Ordering::AcqRel);
        }
        if !wake(&replication) {
            return;
        }
        while !stop.load(Ordering::Acquire) && !client.is_closed() {
            let next = client.notifications().timeout_iter(POLL).next();
            match next {
                Ok(Some(note)) => {
                    if let Ok(seq) = note.payload().parse::<u64>() {
                        replication.head.fetch_max(seq, Ordering::AcqRel);
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
            if replication.lag() > 0 && !wake(&replication) {
                return;
            }
        }
    }
}
