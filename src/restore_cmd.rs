//! `settle restore`: a new data directory holding the state of a snapshot,
//! optionally rolled forward through an old log to a chosen position
//! (point-in-time recovery). `settle serve --data-dir NEW` then serves it.

use crate::offline;
use clap::Args;
use settle_engine::SnapshotId;
use settle_gateway::image::Image;
use settle_snapshots::snapshot::{self, SnapshotFile};
use settle_snapshots::{FsStorage, Lsn, Recovery, Wal, WalConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The snapshot file to start from.
    #[arg(long)]
    pub from: PathBuf,
    /// The new data directory (created; it must not hold anything yet).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// An old log (`OLD_DATA_DIR/wal`) to roll forward through after the
    /// snapshot. Its server must be stopped.
    #[arg(long)]
    pub wal: Option<PathBuf>,
    /// Roll forward through this log position (inclusive); without it, to
    /// the end of the log. `settle wal show` lists positions and times.
    #[arg(long, requires = "wal")]
    pub until: Option<Lsn>,
    /// Roll forward through the last record at or before this time (RFC
    /// 3339, e.g. 2026-11-23T02:13:00Z): the log stops just before its
    /// first record stamped later. The snapshot must have been written at
    /// or before it.
    #[arg(long, requires = "wal", conflicts_with = "until", value_parser = parse_time)]
    pub until_time: Option<i64>,
}

/// `--until-time`: RFC 3339 to milliseconds since the epoch.
fn parse_time(text: &str) -> Result<i64, String> {
    settle_gateway::http::json::time_ms(text).map_err(str::to_owned)
}

pub fn run(args: &RestoreArgs) -> ExitCode {
    match restore(args) {
        Ok(summary) => {
            say!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("settle: restore: {e}");
            ExitCode::FAILURE
        }
    }
}

fn restore(args: &RestoreArgs) -> Result<String, String> {
    refuse_non_empty(&args.data_dir)?;
    let file = SnapshotFile::open(&args.from).map_err(|e| e.to_string())?;
    let mut image =
        Image::from_snapshot(&file, offline::engine_config()).map_err(|e| e.to_string())?;
    let snapshot_position = image.position;
    let mut rolled = 0;
    if let Some(wal_dir) = &args.wal {
        // The old server must be stopped: take its data directory's lock
        // (to read: the backup may be mounted read-only).
        let _old = match wal_dir.parent() {
            Some(old) if old.join(crate::data_lock::LOCK_FILE).exists() => {
                Some(offline::lock_to_read(old)?)
            }
            _ => None,
        };
        let log = Recovery::read_only(Arc::new(FsStorage), wal_dir)
            .map_err(|e| format!("the log at {}: {e}", wal_dir.display()))?;
        let end = log.next_lsn.saturating_sub(1);
        let until = match args.until_time {
            Some(ms) => {
                let written = file.header.created_at_ms;
                if written > ms {
                    return Err(format!(
                        "snapshot {} was written at {}, after --until-time {}: it may hold \
                         changes made after that time; pick one written before it (`settle \
                         snapshot list`)",
                        file.header.id,
                        offline::rfc3339(written),
                        offline::rfc3339(ms)
                    ));
                }
                let from = snapshot_position.saturating_add(1);
                if from > log.next_lsn || from < log.first_lsn {
                    // Not the log that goes on from this snapshot: the
                    // checks below and the replay say how.
                    end
                } else {
                    settle_gateway::recovery::position_at(
                        &log,
                        from,
                        settle_engine::Timestamp::from_millis(ms),
                    )
                    .map_err(|e| e.to_string())?
                }
            }
            None => args.until.unwrap_or(end),
        };
        if until < snapshot_position {
            return Err(match args.until {
                Some(_) => format!(
                    "--until {until} is before the snapshot's position {snapshot_position}; \
                     pick an older snapshot"
                ),
                // No --until: the log itself stops short of the snapshot.
                None => format!(
                    "the log at {} ends at record {end}, before the snapshot's position \
                     {snapshot_position}: it is not the log that goes on from this snapshot \
                     (--wal names a data directory's `wal/`, of the same server)",
                    wal_dir.display()
                ),
            });
        }
        if until > end {
            return Err(format!(
                "--until {until} is past the end of the log at {} (its last record is {end})",
                wal_dir.display()
            ));
        }
        rolled = settle_gateway::recovery::replay(&log, &mut image, until, None)
            .map_err(|e| e.to_string())?;
    }
    // Every wallet decoded and checked (the load kept them packed).
    image
        .check_invariants()
        .map_err(|e| format!("the restored state breaks an invariant: {e}"))?;
    let digest = image.digest().map_err(|e| e.to_string())?;

    // The new directory: the state as its one snapshot, and an empty log
    // that goes on from the state's position.
    let _lock = offline::lock(&args.data_dir)?;
    let id = SnapshotId::from_ulid(ulid::Ulid::new()).to_string();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX);
    let (path, size) = image
        .write_snapshot(&snapshot::snapshot_dir(&args.data_dir), &id, now)
        .map_err(|e| e.to_string())?;
    let wal = WalConfig {
        first_lsn: image.position + 1,
        ..WalConfig::new(args.data_dir.join("wal"))
    };
    let (wal, _) = Wal::open(Arc::new(FsStorage), wal).map_err(|e| e.to_string())?;
    wal.close().map_err(|e| e.to_string())?;
    let wallets = image.wallet_count();
    let forward = if args.wal.is_some() {
        let by = args.until_time.map_or_else(String::new, |ms| {
            format!(" (the last at or before {})", offline::rfc3339(ms))
        });
        format!(
            ", rolled forward {rolled} log records to position {}{by}",
            image.position
        )
    } else {
        String::new()
    };
    Ok(format!(
        "restored {} (position {snapshot_position}){forward} into {}: {wallets} wallets, \
         state digest {digest}\n  snapshot {} ({size} bytes)\n  start it with: settle serve --data-dir {}\n  \
         (clients' API keys carry over; the admin key does not: set SETTLE_ADMIN_KEY or let serve generate one)",
        file.header.id,
        args.data_dir.display(),
        path.display(),
        args.data_dir.display(),
    ))
}

/// A restore never writes into a directory that holds anything.
fn refuse_non_empty(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} is not empty; restore only into a new or empty directory",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}
