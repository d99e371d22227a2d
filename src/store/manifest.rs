//! The manifest: a small checksummed file beside sled's files saying what the data directory must
//! hold — which snapshot file (its size, checksum and counts), the last log record it covers, and
//! the last log record known durable — so that a damaged or missing piece is noticed on open
//! instead of served as a smaller graph. Written whole to a temporary file, synced and renamed over
//! the old one at every checkpoint and every clean stop.

use super::snapshot::{Counts, Summary};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) const FILE: &str = "MANIFEST";
const FORMAT: u32 = 1;

/// The snapshot a manifest names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapshotEntry {
    pub id: u32,
    pub file: String,
    #[serde(flatten)]
    pub summary: Summary,
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    /// Also kept in sled: a sled database replaced or emptied no longer matches.
    pub store_id: String,
    pub snapshot: Option<SnapshotEntry>,
    /// The last log record the snapshot covers (0: none).
    pub covered_seq: u64,
    /// Every log record up to this one was durable when the manifest was written: one missing on
    /// open is damage, never a crash.
    pub last_seq: u64,
    /// Written by a clean stop (nothing after `last_seq` should exist).
    pub clean: bool,
}

impl Manifest {
    pub fn new(store_id: String) -> Manifest {
        Manifest { format: FORMAT, store_id, snapshot: None, covered_seq: 0, last_seq: 0, clean: false }
    }
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The snapshot file of checkpoint `id`.
pub(crate) fn snapshot_file(id: u32) -> String {
    format!("checkpoint-{id:08}.tfs")
}

/// Reads the manifest: `Ok(None)` if there is none, `Err` with what is wrong if it is damaged.
pub fn read(dir: &Path) -> Result<Option<Manifest>, String> {
    let text = match std::fs::read(path(dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {FILE}: {e}")),
    };
    let text = String::from_utf8(text).map_err(|_| format!("{FILE} is not text: damaged"))?;
    let (body, sum) = text
        .trim_end()
        .rsplit_once("\ncrc32 ")
        .ok_or(format!("{FILE} has no checksum line: damaged or cut short"))?;
    let want = u32::from_str_radix(sum, 16).map_err(|_| format!("{FILE}'s checksum line is damaged"))?;
    if crc32fast::hash(body.as_bytes()) != want {
        return Err(format!("{FILE} fails its checksum: damaged"));
    }
    let m: Manifest = serde_json::from_str(body).map_err(|e| format!("{FILE} is unreadable: {e}"))?;
    if m.format != FORMAT {
        return Err(format!("{FILE} is of format {} (written by a newer tagflow?)", m.format));
    }
    Ok(Some(m))
}

/// Replaces the manifest atomically and durably: a crash leaves the old one or the new one.
pub fn write(dir: &Path, m: &Manifest) -> io::Result<()> {
    let body = serde_json::to_string_pretty(m).map_err(io::Error::other)?;
    let text = format!("{body}\ncrc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
    sync_dir(dir)
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_any_change_to_it_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read(tmp.path()), Ok(None));
        let mut m = Manifest::new("00ff".into());
        m.last_seq = 41;
        write(tmp.path(), &m).unwrap();
        assert_eq!(read(tmp.path()), Ok(Some(m)));
        let bytes = std::fs::read(path(tmp.path())).unwrap();
        for i in 0..bytes.len() - 1 {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            std::fs::write(path(tmp.path()), &bad).unwrap();
            assert!(read(tmp.path()).is_err(), "a flip at byte {i} went unnoticed");
        }
        std::fs::write(path(tmp.path()), &bytes[..bytes.len() / 2]).unwrap();
        assert!(read(tmp.path()).is_err());
    }
}
