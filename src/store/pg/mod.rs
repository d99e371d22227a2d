//! The PostgreSQL store: the same log-plus-snapshot design as the data directory, in tables that
//! several tagflow processes share, each a replica of one graph.
//!
//! - `tagflow_log`: one row per group commit, its effects (the layout's encoding) with a CRC32 and
//!   the next uid after it. Appends are serialised by a transaction-scoped advisory lock, so commits
//!   become visible in sequence order and a follower can never skip one; the appender first applies
//!   every record after its own last one, then stages its batch against that graph, so rejections
//!   and outcomes are decided in log order, the same on every replica.
//! - `tagflow_kv`: post records and source cursors (what sled keeps beside its log).
//! - `tagflow_snapshot` / `tagflow_snapshot_chunk`: checkpoints, in the snapshot file format (frames
//!   with CRCs), cut into 1 MiB rows. One replica at a time writes one (a session advisory lock).
//! - `tagflow_schema`: the migrations applied; they run on start, under an advisory lock.
//!
//! Each replica loads the newest complete snapshot and the log after it, then follows the log: a
//! listener thread wakes the writer on `NOTIFY tagflow_log` (and checks every half second), and the
//! writer applies new records in order.
//!
//! Knows the graph and the database, never HTTP.

mod tls;
pub(super) mod transfer;
pub(super) mod writer;

use super::load::{read_frames, Replay};
use super::manifest::SnapshotEntry;
use super::seen::SeenSet;
use super::StoreError;
use crate::graph::Graph;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

/// The advisory lock keys tagflow takes (arbitrary constants, "tagf" + a number).
pub(super) const MIGRATE_LOCK: i64 = 0x7461_6766_0001;
pub(super) const APPEND_LOCK: i64 = 0x7461_6766_0002;
pub(super) const CHECKPOINT_LOCK: i64 = 0x7461_6766_0003;
/// Source locks: this plus a hash of the source's name.
const SOURCE_LOCK_BASE: i64 = 0x7461_6766_1000_0000;

/// The notification channel a commit signals, with its sequence number as payload.
pub(super) const CHANNEL: &str = "tagflow_log";

/// Each migration brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE tagflow_meta (key text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE tagflow_log (
    seq bigint PRIMARY KEY,
    next_uid bigint NOT NULL,
    crc bigint NOT NULL,
    effects bytea NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE tagflow_kv (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE tagflow_snapshot (
    id bigint PRIMARY KEY,
    covered_seq bigint NOT NULL,
    entry text NOT NULL,
    complete boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tagflow_snapshot_chunk (
    snapshot bigint NOT NULL,
    n integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (snapshot, n)
);
-- Frames and records carry their own checksums and are read whole: not compressed by TOAST, which
-- would cost a compression on every commit and a decompression on every start.
ALTER TABLE tagflow_log ALTER COLUMN effects SET STORAGE EXTERNAL;
ALTER TABLE tagflow_snapshot_chunk ALTER COLUMN data SET STORAGE EXTERNAL;
"];

/// The schema version this tagflow writes.
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Bytes of snapshot per `tagflow_snapshot_chunk` row.
pub(super) const CHUNK_BYTES: usize = 1 << 20;

/// Where the database is: parsed once, connected as often as needed. Its `Debug` and [`Database::shown`]
/// never include the password.
#[derive(Clone)]
pub struct Database {
    config: postgres::Config,
    verify_certificate: bool,
    shown: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("at", &self.shown).finish()
    }
}

impl Database {
    /// Parses a `postgres://` URL (or key=value string) as libpq does; `sslmode=verify-full` and
    /// `verify-ca` check the server's certificate against the web's roots, `require` and `prefer`
    /// encrypt without checking it (as libpq does, and as Heroku Postgres's certificates need).
    ///
    /// # Errors
    /// The URL does not parse; the message never repeats it (it holds the password).
    pub fn parse(url: &str) -> Result<Database, String> {
        let verify_certificate = url.contains("sslmode=verify-full") || url.contains("sslmode=verify-ca");
        let url = url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut config: postgres::Config =
            url.parse().map_err(|e: postgres::Error| format!("the database URL does not parse: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("tagflow");
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or("")
        );
        Ok(Database { config, verify_certificate, shown })
    }

    /// The database without its password: `postgres://user@host:port/db`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A new session.
    ///
    /// # Errors
    /// [`StoreError::Database`] if it cannot be reached or refuses us.
    pub(crate) fn connect(&self) -> Result<postgres::Client, StoreError> {
        self.config.connect(tls::connector(self.verify_certificate)).map_err(|e| db_error("connecting", &e))
    }
}

/// A database error as the store reports it (no URL, no password: postgres' messages hold neither).
pub(super) fn db_error(what: &str, e: &postgres::Error) -> StoreError {
    let cause = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s = format!("{s}: {inner}");
                source = inner.source();
            }
            s
        }
    };
    StoreError::Database { what: what.to_string(), cause }
}

/// Brings the schema to [`SCHEMA_VERSION`] (one migration at a time, each in the transaction that
/// records it), and gives a new database its store id. Replicas starting together wait for each other.
///
/// # Errors
/// The database's, or a schema newer than this tagflow knows.
pub(super) fn migrate(client: &mut postgres::Client) -> Result<i32, StoreError> {
    let err = |e: postgres::Error| db_error("migrating the schema", &e);
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tagflow_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .map_err(err)?;
    let current: i32 =
        tx.query_one("SELECT coalesce(max(version), 0) FROM tagflow_schema", &[]).map_err(err)?.get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Database {
            what: "opening the database".into(),
            cause: format!("its schema is version {current}, newer than this tagflow's {SCHEMA_VERSION}"),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).map_err(err)?;
        tx.execute("INSERT INTO tagflow_schema (version) VALUES ($1)", &[&(i as i32 + 1)]).map_err(err)?;
        log::info!("store: database schema migrated to version {}", i + 1);
    }
    tx.execute(
        "INSERT INTO tagflow_meta (key, value) VALUES ('store_id', $1) ON CONFLICT (key) DO NOTHING",
        &[&super::load::new_store_id().into_bytes()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(SCHEMA_VERSION)
}

/// What loading from the database found.
pub(super) struct Loaded {
    pub graph: Graph,
    pub seen: SeenSet,
    /// The last log record applied, and the next uid after it.
    pub applied: u64,
    pub next_uid: u32,
    /// The newest snapshot: the record it covers and its size; the log's bytes after it.
    pub covered: u64,
    pub snapshot_bytes: u64,
    pub log_bytes: u64,
}

/// Loads the newest complete snapshot and the log after it, checking every frame and record.
///
/// # Errors
/// [`StoreError::Corrupt`] names damage (a frame, a record's checksum, a record missing from the
/// sequence); [`StoreError::Database`] when the database fails.
pub(super) fn load(client: &mut postgres::Client, db: &Database) -> Result<Loaded, StoreError> {
    let shown = db.shown();
    let err = |e: postgres::Error| db_error("loading the graph", &e);
    let corrupt = |what: String| StoreError::Corrupt { dir: shown.into(), what };
    let started = std::time::Instant::now();
    let mut replay = Replay::new();
    let newest = client
        .query_opt(
            "SELECT id, covered_seq, entry FROM tagflow_snapshot WHERE complete ORDER BY id DESC LIMIT 1",
            &[],
        )
        .map_err(err)?;
    let (mut covered, mut snapshot_bytes) = (0u64, 0u64);
    let mut next_uid = 0u32;
    if let Some(row) = newest {
        let id: i64 = row.get(0);
        covered = row.get::<_, i64>(1) as u64;
        let entry: SnapshotEntry = serde_json::from_str(row.get(2))
            .map_err(|e| corrupt(format!("snapshot {id}'s record does not parse: {e}")))?;
        // Chunks are fetched on a session of their own while this thread replays the ones before.
        let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH);
        let read = std::thread::scope(|scope| {
            scope.spawn(|| fetch_chunks(db, id, tx));
            let chunks = Chunks { rx, buf: Vec::new(), at: 0 };
            read_frames(chunks, &entry, &mut replay)
        });
        read.map_err(|what| corrupt(format!("snapshot {id} (covering the log up to {covered}) {what}")))?;
        snapshot_bytes = entry.summary.bytes;
        next_uid = entry.counts.next_uid;
    }
    let snapshot_secs = started.elapsed().as_secs_f64();
    let mut applied = covered;
    let mut log_bytes = 0u64;
    let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&(covered as i64)];
    let mut rows = client
        .query_raw("SELECT seq, next_uid, crc, effects FROM tagflow_log WHERE seq > $1 ORDER BY seq", params)
        .map_err(err)?;
    use postgres::fallible_iterator::FallibleIterator;
    while let Some(row) = rows.next().map_err(err)? {
        let record = Record::from_row(&row);
        if record.seq != applied + 1 {
            return Err(corrupt(format!(
                "the log lacks record {} (the next is {}): the commits between are lost",
                applied + 1,
                record.seq
            )));
        }
        record.check().map_err(corrupt)?;
        replay.apply(record.effects, false).map_err(|off| {
            corrupt(format!("log record {} has an unreadable effect at byte {off}", record.seq))
        })?;
        applied = record.seq;
        next_uid = next_uid.max(record.next_uid);
        log_bytes += record.effects.len() as u64;
    }
    let (graph, seen, max_uid) = replay.finish();
    log::info!(
        "store: loaded the snapshot ({:.1} MiB, up to record {covered}) in {snapshot_secs:.2}s, then {} log records \
         ({:.1} MiB) in {:.2}s",
        snapshot_bytes as f64 / f64::from(1 << 20),
        applied - covered,
        log_bytes as f64 / f64::from(1 << 20),
        started.elapsed().as_secs_f64() - snapshot_secs
    );
    let next_uid = next_uid.max(max_uid.map_or(0, |m| m + 1));
    Ok(Loaded { graph, seen, applied, next_uid, covered, snapshot_bytes, log_bytes })
}

/// One row of `tagflow_log`, borrowed.
pub(super) struct Record<'r> {
    pub seq: u64,
    pub next_uid: u32,
    crc: u32,
    pub effects: &'r [u8],
}

impl<'r> Record<'r> {
    pub(crate) fn from_row(row: &'r postgres::Row) -> Record<'r> {
        Record {
            seq: row.get::<_, i64>(0) as u64,
            next_uid: row.get::<_, i64>(1) as u32,
            crc: row.get::<_, i64>(2) as u32,
            effects: row.get(3),
        }
    }

    /// Damage to the record's effects, named.
    pub fn check(&self) -> Result<(), String> {
        let crc = crc32fast::hash(self.effects);
        if crc != self.crc {
            return Err(format!(
                "log record {} is damaged: its checksum is {crc:08x}, it was written as {:08x}",
                self.seq, self.crc
            ));
        }
        Ok(())
    }
}

/// Chunks fetched ahead of the replay.
const PREFETCH: usize = 8;

/// Sends snapshot `id`'s chunks in order, then closes the channel; an error ends it.
fn fetch_chunks(db: &Database, id: i64, tx: std::sync::mpsc::SyncSender<Result<Vec<u8>, String>>) {
    let mut client = match db.connect() {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Err(e.to_string()));
            return;
        }
    };
    for n in 0i32.. {
        let row = client
            .query_opt("SELECT data FROM tagflow_snapshot_chunk WHERE snapshot = $1 AND n = $2", &[&id, &n]);
        let sent = match row {
            Ok(Some(row)) => tx.send(Ok(row.get(0))),
            Ok(None) => return,
            Err(e) => tx.send(Err(db_error("reading the snapshot", &e).to_string())),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// A snapshot's chunk rows, in order, as one stream.
struct Chunks {
    rx: std::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    at: usize,
}

impl std::io::Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => (self.buf, self.at) = (chunk, 0),
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A snapshot written as `tagflow_snapshot_chunk` rows of [`CHUNK_BYTES`].
pub(super) struct ChunkWriter<'c, C: postgres::GenericClient> {
    client: &'c mut C,
    snapshot: i64,
    n: i32,
    buf: Vec<u8>,
}

impl<'c, C: postgres::GenericClient> ChunkWriter<'c, C> {
    pub fn new(client: &'c mut C, snapshot: i64) -> Self {
        ChunkWriter { client, snapshot, n: 0, buf: Vec::with_capacity(CHUNK_BYTES) }
    }

    /// Writes what is buffered (the last, partial chunk).
    pub fn write_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.client
            .execute(
                "INSERT INTO tagflow_snapshot_chunk (snapshot, n, data) VALUES ($1, $2, $3)",
                &[&self.snapshot, &self.n, &self.buf],
            )
            .map_err(std::io::Error::other)?;
        self.n += 1;
        self.buf.clear();
        Ok(())
    }
}

impl<C: postgres::GenericClient> std::io::Write for ChunkWriter<'_, C> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.write_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a replica stands in the shared log, for `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct Replication {
    /// The last record this replica applied.
    pub applied: AtomicU64,
    /// The newest record it knows was committed (by anyone).
    pub head: AtomicU64,
    /// A wake-up for the writer is queued: the listener sends no second one.
    pub(super) wake_pending: AtomicBool,
}

impl Replication {
    pub fn lag(&self) -> u64 {
        self.head.load(Ordering::Acquire).saturating_sub(self.applied.load(Ordering::Acquire))
    }
}

/// A question for the reader thread: a key of `tagflow_kv`, or a source lock to try.
enum Ask {
    Get(Vec<u8>, std_mpsc::Sender<Result<Option<Vec<u8>>, StoreError>>),
    Lead(i64, std_mpsc::Sender<Result<bool, StoreError>>),
}

/// A session of its own for cursor reads and source locks, on its own thread (the synchronous
/// client must not run on the async runtime's threads). The source locks it holds last as long as
/// its session: if the process dies, they are released and another replica takes the sources over.
pub(crate) struct Reader {
    tx: std_mpsc::Sender<Ask>,
}

impl Reader {
    pub(super) fn start(db: Database) -> Reader {
        let (tx, rx) = std_mpsc::channel::<Ask>();
        let spawned = std::thread::Builder::new().name("tagflow-pg-reader".into()).spawn(move || {
            let mut client: Option<postgres::Client> = None;
            for ask in rx {
                match ask {
                    Ask::Get(key, reply) => {
                        let r = on_session(&db, &mut client, |c| {
                            c.query_opt("SELECT value FROM tagflow_kv WHERE key = $1", &[&key])
                                .map(|row| row.map(|r| r.get::<_, Vec<u8>>(0)))
                                .map_err(|e| db_error("reading a cursor", &e))
                        });
                        let _ = reply.send(r);
                    }
                    Ask::Lead(key, reply) => {
                        let r = on_session(&db, &mut client, |c| {
                            c.query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                                .map(|row| row.get::<_, bool>(0))
                                .map_err(|e| db_error("taking a source's lock", &e))
                        });
                        let _ = reply.send(r);
                    }
                }
            }
        });
        if let Err(e) = spawned {
            log::error!("store: cannot start the database reader thread: {e}");
        }
        Reader { tx }
    }

    /// A value of `tagflow_kv` (a cursor).
    pub(crate) fn get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        let (reply, rx) = std_mpsc::channel();
        self.tx.send(Ask::Get(key, reply)).map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Takes the lock of source `name` if no replica holds it; true once this replica holds it
    /// (asking again while holding it is harmless).
    pub(crate) fn lead(&self, name: &str) -> Result<bool, StoreError> {
        let key = source_lock_key(name);
        let (reply, rx) = std_mpsc::channel();
        self.tx.send(Ask::Lead(key, reply)).map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }
}

/// The advisory lock key of source `name`.
pub(super) fn source_lock_key(name: &str) -> i64 {
    SOURCE_LOCK_BASE + i64::from(crc32fast::hash(name.as_bytes()))
}

/// Asks `ask` on the reader's session, connecting one if there is none. A session that ended (the
/// network dropped it, the server ended it) took the source locks it held with it: the question is
/// asked again, once, on a new session, whose answer is the truth (a replica whose session ended
/// learns at its next check that another holds its source, instead of only that the check failed).
fn on_session<T>(
    db: &Database,
    client: &mut Option<postgres::Client>,
    ask: impl Fn(&mut postgres::Client) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut first = true;
    loop {
        if client.as_ref().is_some_and(postgres::Client::is_closed) {
            *client = None;
            log::warn!("store: the reader's database session ended; source locks it held are released");
        }
        let c = match client.as_mut() {
            Some(c) => c,
            None => client.insert(db.connect()?),
        };
        match ask(c) {
            Err(_) if first && c.is_closed() => first = false,
            r => return r,
        }
    }
}

/// The PostgreSQL server tests use: `TAGFLOW_TEST_PG` (a `postgres://user@host:port` URL without a
/// database name), by default the local one with trust auth that `.ci/run` starts.
#[doc(hidden)]
pub fn test_server() -> String {
    std::env::var("TAGFLOW_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Creates an empty database `name` on the [`test_server`] (dropping one of that name first) and
/// returns its URL; `Err` says why the server cannot be used. For tests.
#[doc(hidden)]
pub fn scratch_database(name: &str) -> Result<String, String> {
    // On a thread of its own: the synchronous client must not run on an async runtime's thread.
    let name = name.to_string();
    std::thread::spawn(move || create_database(&name))
        .join()
        .map_err(|_| "the test database thread panicked".to_string())?
}

fn create_database(name: &str) -> Result<String, String> {
    let server = test_server();
    let mut c = test_server_session()?;
    for sql in
        [format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"), format!("CREATE DATABASE \"{name}\"")]
    {
        c.batch_execute(&sql).map_err(|e| db_error("creating a test database", &e).to_string())?;
    }
    Ok(format!("{server}/{name}"))
}

/// A session on the [`test_server`]'s `postgres` database; `Err` says why there is none. For tests.
#[doc(hidden)]
pub(crate) fn test_server_session() -> Result<postgres::Client, String> {
    let admin = Database::parse(&format!("{}/postgres", test_server()))?;
    admin.connect().map_err(|e| e.to_string())
}
