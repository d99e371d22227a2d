//! Moving a graph between a data directory and a database, exactly: the backup archive (the
//! snapshot's frames with the post records and cursors, checksummed) is written out of one store
//! and restored into the other. A database receives it in one transaction, so a damaged archive or
//! a failure leaves it as it was.

use super::super::archive::{unpack, write_archive};
use super::super::manifest::SnapshotEntry;
use super::super::snapshot::{Counts, FrameKind, FrameWriter};
use super::super::StoreError;
use super::{db_error, load, migrate, ChunkWriter, Database};
use parking_lot::RwLock;
use postgres::fallible_iterator::FallibleIterator;
use std::io::{Read, Write};

/// Records inserted per statement.
const RECORDS_PER_INSERT: usize = 4096;

/// Writes the database's graph, post records and cursors as an archive, as of its last commit. Run
/// while no replica writes (a migration), or the records may be newer than the graph.
///
/// # Errors
/// The database fails or holds no tagflow store; writing `out` fails.
pub(in crate::store) fn export(db: &Database, out: impl Write) -> Result<Counts, StoreError> {
    let mut client = db.connect()?;
    let err = |e: postgres::Error| db_error("reading the store", &e);
    let has_schema: bool =
        client.query_one("SELECT to_regclass('tagflow_schema') IS NOT NULL", &[]).map_err(err)?.get(0);
    if !has_schema {
        return Err(StoreError::Corrupt { dir: db.shown().into(), what: "it holds no tagflow store".into() });
    }
    let loaded = load(&mut client, db)?;
    let (applied, next_uid) = (loaded.applied, loaded.next_uid);
    let graph = RwLock::new(loaded.graph);
    let seen = RwLock::new(loaded.seen);
    let cut = graph.write().open_cut();
    let params: [&(dyn postgres::types::ToSql + Sync); 0] = [];
    let rows = client.query_raw("SELECT key, value FROM tagflow_kv ORDER BY key", params).map_err(err)?;
    let records =
        rows.map_err(err).map(|row| Ok((row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))).iterator();
    let counts = write_archive(out, (&graph, &seen, &cut), |_| false, records, (applied, next_uid));
    graph.write().close_cut(&cut);
    counts
}

/// Restores an archive into a database that holds no graph yet (its schema is created if missing):
/// the archive's graph becomes the first snapshot, covering its last commit, and its records the
/// post records and cursors. Replicas started on the database then serve exactly that graph.
///
/// # Errors
/// The database holds a graph already, the archive is damaged (named), or the database fails.
pub(in crate::store) fn import(db: &Database, archive: impl Read) -> Result<Counts, StoreError> {
    let mut client = db.connect()?;
    migrate(&mut client)?;
    let err = |e: postgres::Error| db_error("restoring into the database", &e);
    let mut tx = client.transaction().map_err(err)?;
    let used: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM tagflow_log) + (SELECT count(*) FROM tagflow_snapshot) \
             + (SELECT count(*) FROM tagflow_kv)",
            &[],
        )
        .map_err(err)?
        .get(0);
    if used > 0 {
        return Err(StoreError::Corrupt {
            dir: db.shown().into(),
            what: "it already holds a graph: a migration goes into an empty database".into(),
        });
    }
    tx.execute("INSERT INTO tagflow_snapshot (id, covered_seq, entry) VALUES (1, 0, '')", &[])
        .map_err(err)?;
    let io = |e: std::io::Error| StoreError::Database {
        what: "restoring into the database".into(),
        cause: e.to_string(),
    };
    let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let (end, summary) = {
        let mut w = FrameWriter::new(ChunkWriter::new(&mut tx, 1)).map_err(io)?;
        let place = std::path::PathBuf::from(db.shown());
        let end = unpack(
            archive,
            &place,
            |effects| w.frame(FrameKind::Effects, effects).map_err(io),
            |records| {
                pending.extend(records.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
                Ok(())
            },
        )?;
        let snapshot_counts = Counts { records: 0, ..end };
        let (mut chunks, summary) = w.finish(&snapshot_counts).map_err(io)?;
        chunks.write_chunk().map_err(io)?;
        (end, summary)
    };
    for batch in pending.chunks(RECORDS_PER_INSERT) {
        let (keys, values): (Vec<&[u8]>, Vec<&[u8]>) = batch.iter().map(|(k, v)| (&k[..], &v[..])).unzip();
        tx.execute(
            "INSERT INTO tagflow_kv (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])",
            &[&keys, &values],
        )
        .map_err(err)?;
    }
    let entry = SnapshotEntry {
        id: 1,
        file: "database snapshot 1".into(),
        summary,
        counts: Counts { records: 0, ..end },
    };
    let json = serde_json::to_string(&entry).expect("a snapshot entry serialises");
    tx.execute(
        "UPDATE tagflow_snapshot SET entry = $1, covered_seq = $2, complete = true WHERE id = 1",
        &[&json, &(end.seq as i64)],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(end)
}
