//! What the offline tools share: a stopped data directory's state, rebuilt
//! the way start-up rebuilds it (a snapshot, then the log after it).

use crate::data_lock::{self, DataLock, Use};
use settle_gateway::GatewayConfig;
use settle_gateway::image::Image;
use settle_gateway::recovery::{self, Prefer, SnapshotUsed};
use settle_snapshots::snapshot;
use settle_snapshots::{FsStorage, Lsn, Recovery};
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
pub fn lock(data_dir: &Path) -> Result<DataLock, String> {
    data_lock::lock(data_dir, Use::Write { create: true })
}

/// Locks a stopped data directory that must already exist: a tool that
/// reads one says so when it is missing (a mistyped path), rather than
/// create it and report an empty one.
pub fn lock_existing(data_dir: &Path) -> Result<DataLock, String> {
    data_lock::lock(data_dir, Use::Write { create: false })
}

/// `lock_existing` for a tool that only reads (`wal verify`, `snapshot
/// list`), which must also work on a backup mounted read-only.
pub fn lock_to_read(data_dir: &Path) -> Result<DataLock, String> {
    data_lock::lock(data_dir, Use::Read)
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
    // A snapshot past the log's end (`Prefer::Serve`) holds all of it: the
    // server sets such a log aside rather than replay it.
    let past_the_end = base
        .snapshot
        .as_ref()
        .is_some_and(|s| s.position >= log.next_lsn);
    let records = if past_the_end {
        0
    } else {
        recovery::replay(&log, &mut image, until, None).map_err(|e| e.to_string())?
    };
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
