//! The snapshot directory: names, listing, retention.
//!
//! `<position:020>-<snp_id>.msgpack`: names sort by position, and the id
//! is in the name, so an operator can find a snapshot from the API's
//! answer. A file being written is `<name>.tmp` until it is complete.

use super::read::SnapshotError;
use crate::wal::Lsn;
use std::fs::File;
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".msgpack";
const TEMP_SUFFIX: &str = ".tmp";

/// `<data-dir>/snapshots`.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// The file name of the snapshot `id` at `position`.
pub fn file_name(position: Lsn, id: &str) -> String {
    format!("{position:020}-{id}{SUFFIX}")
}

pub(crate) fn temp_name(name: &str) -> String {
    format!("{name}{TEMP_SUFFIX}")
}

/// `(position, id)` from a snapshot's file name.
pub fn parse_name(name: &str) -> Option<(Lsn, String)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (digits, id) = stem.split_once('-')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !id.starts_with("snp_") || id.len() > 64 {
        return None;
    }
    Some((digits.parse().ok()?, id.to_owned()))
}

/// A snapshot file found in the directory (not yet read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub path: PathBuf,
    pub id: String,
    pub position: Lsn,
    pub size: u64,
}

/// The snapshots in `dir`, newest (highest position) first. A missing
/// directory holds none. Other files are left alone.
pub fn list(dir: &Path) -> Result<Vec<SnapshotEntry>, SnapshotError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SnapshotError::io(dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io(dir, e))?;
        let name = entry.file_name();
        let Some((position, id)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let size = entry
            .metadata()
            .map_err(|e| SnapshotError::io(&entry.path(), e))?
            .len();
        found.push(SnapshotEntry {
            path: entry.path(),
            id,
            position,
            size,
        });
    }
    // Ids are ULIDs: within one position, the later one sorts higher.
    found.sort_by(|a, b| (b.position, &b.id).cmp(&(a.position, &a.id)));
    Ok(found)
}

/// Removes what a crash left mid-write (`*.msgpack.tmp`). Returns the paths.
pub fn remove_temporaries(dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SnapshotError::io(dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io(dir, e))?;
        let name = entry.file_name();
        let partial = name
            .to_str()
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
            .is_some_and(|n| parse_name(n).is_some());
        if partial {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| SnapshotError::io(&path, e))?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Keeps the newest `keep` snapshots (at least one) and removes the rest,
/// oldest first. Returns what is kept, newest first: the log must still
/// reach back to the oldest of them.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<SnapshotEntry>, SnapshotError> {
    let mut all = list(dir)?;
    let keep = keep.max(1).min(all.len());
    let old = all.split_off(keep);
    for entry in old.iter().rev() {
        std::fs::remove_file(&entry.path).map_err(|e| SnapshotError::io(&entry.path, e))?;
        tracing::info!(snapshot = %entry.id, position = entry.position, "removed an old snapshot");
    }
    if !old.is_empty() {
        sync_dir(dir)?;
    }
    Ok(all)
}

/// Moves every snapshot whose position is `next_lsn` or later (past the end
/// of a log that ends before `next_lsn`) out of `dir` into `to` (created),
/// synced. Returns what was moved. A log that ends before a snapshot will
/// write new records at the positions the snapshot covers; left in place,
/// the snapshot would later be taken for their state, and as the newest it
/// would also count against `prune`'s `keep`. Kept, not removed: it may
/// hold what the log lost.
pub fn move_past(
    dir: &Path,
    next_lsn: Lsn,
    to: &Path,
) -> Result<Vec<SnapshotEntry>, SnapshotError> {
    let past: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|e| e.position >= next_lsn)
        .map(|e| e.path)
        .collect();
    move_out(dir, &past, to)
}

/// Moves the snapshots at `paths` (in `dir`) into `to` (created), synced,
/// and returns them as they now are. One already gone is passed over. Kept,
/// not removed: a snapshot that did not load may still hold what an
/// operator needs, but left in `dir` it would count against `prune`'s
/// `keep` and push a good one out.
pub fn move_out(
    dir: &Path,
    paths: &[PathBuf],
    to: &Path,
) -> Result<Vec<SnapshotEntry>, SnapshotError> {
    let mut moved = Vec::with_capacity(paths.len());
    for path in paths {
        let Some(name) = path.file_name() else {
            continue;
        };
        let Some((position, id)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        if !path.exists() {
            continue;
        }
        std::fs::create_dir_all(to).map_err(|e| SnapshotError::io(to, e))?;
        let dest = to.join(name);
        std::fs::rename(path, &dest).map_err(|e| SnapshotError::io(path, e))?;
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        moved.push(SnapshotEntry {
            position,
            id,
            path: dest,
            size,
        });
    }
    if !moved.is_empty() {
        sync_dir(to)?;
        sync_dir(dir)?;
    }
    Ok(moved)
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let name = file_name(42, "snp_01JABCDEFGHJKMNPQRSTVWXYZ0");
        assert_eq!(
            name,
            "00000000000000000042-snp_01JABCDEFGHJKMNPQRSTVWXYZ0.msgpack"
        );
        assert_eq!(
            parse_name(&name),
            Some((42, "snp_01JABCDEFGHJKMNPQRSTVWXYZ0".to_owned()))
        );
        for other in [
            "42-snp_x.msgpack",
            "00000000000000000042-snp_x.msgpack.tmp",
            "00000000000000000042-wal_x.msgpack",
            "0000000000000000004x-snp_x.msgpack",
            "README",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}
