//! What the offline tools share: a stopped data directory's state, rebuilt
//! the way start-up rebuilds it (a snapshot, then the log after it).

use settle_gateway::GatewayConfig;
use settle_gateway::image::Image;
use settle_gateway::recovery::{self, Prefer, SnapshotUsed};
use settle_snapshots::snapshot;
use settle_snapshots::{FsStorage, Lsn, Recovery};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A state rebuilt offline.
#[derive(Debug)]
pub struct Rebuilt {
    pub image: Image,
    pub snapshot: Option<SnapshotUsed>,
    pub skipped: Vec<(PathBuf, String)>,
    /// Log records replayed after the snapshot.
    pub records: u64,
}

/// Locks a stopped data directory (a running server holds the lock),
/// creating it if need be (`settle restore`'s target).
pub fn lock(data_dir: &Path) -> Result<File, String> {
    crate::serve::lock_data_dir(data_dir).map_err(|e| e.to_string())
}

/// Locks a stopped data directory that must already exist: a tool that
/// reads one says so when it is missing (a mistyped path), rather than
/// create it and report an empty one.
pub fn lock_existing(data_dir: &Path) -> Result<File, String> {
    if !data_dir.is_dir() {
        return Err(format!("no data directory at {}", data_dir.display()));
    }
    lock(data_dir)
}

/// `lock_existing` for a tool that only reads (`wal verify`, `snapshot
/// list`), which must also work on a backup mounted read-only. There the
/// lock's file cannot be created: if it exists, it is locked through a
/// read-only handle (a server writing the same directory through another
/// mount holds it); if it does not, no server has ever run there.
pub fn lock_to_read(data_dir: &Path) -> Result<Option<File>, String> {
    match lock_existing(data_dir) {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if on_read_only_fs(data_dir) => {
            let path = data_dir.join(crate::serve::LOCK_FILE);
            match File::open(&path) {
                Ok(file) => match file.try_lock() {
                    Ok(()) => Ok(Some(file)),
                    Err(_) => Err(format!(
                        "the data directory {} is in use by another settle process",
                        data_dir.display()
                    )),
                },
                Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether `dir` is on a file system mounted read-only (creating a file
/// in it says so).
fn on_read_only_fs(dir: &Path) -> bool {
    let probe = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(crate::serve::LOCK_FILE));
    matches!(probe, Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
}

/// The engine configuration the offline tools replay with (the server's).
pub fn engine_config() -> settle_engine::EngineConfig {
    GatewayConfig::default().engine
}

/// Rebuilds `data_dir`'s state from its snapshots and log, starting as
/// `prefer` says, through `until` (inclusive; `Lsn::MAX`: the whole log).
pub fn rebuild(data_dir: &Path, prefer: Prefer, until: Lsn) -> Result<Rebuilt, String> {
    let wal_dir = data_dir.join("wal");
    let log = Recovery::read_only(Arc::new(FsStorage), &wal_dir)
        .map_err(|e| format!("the log at {}: {e}", wal_dir.display()))?;
    let config = engine_config();
    let base = recovery::base(
        &snapshot::snapshot_dir(data_dir),
        log.first_lsn,
        log.next_lsn,
        &config,
        prefer,
    )
    .map_err(|e| e.to_string())?;
    let mut image = base.image;
    let records = recovery::replay(&log, &mut image, until, None).map_err(|e| e.to_string())?;
    Ok(Rebuilt {
        image,
        snapshot: base.snapshot,
        skipped: base.skipped,
        records,
    })
}

/// `2026-11-21T10:00:00.123Z` for milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    settle_gateway::http::json::format_time(settle_engine::Timestamp::from_millis(ms))
}
