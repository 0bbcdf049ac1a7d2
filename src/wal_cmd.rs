//! `settle wal verify|repair|show`: the operator's tools for the write-ahead log,
//! offline (the server must be stopped: the data directory's lock says so).

use clap::{Args, Subcommand};
use settle_gateway::recovery::Prefer;
use settle_snapshots::{FsStorage, verify};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum WalCommand {
    /// Check every segment and record; exit 0 if the log is sound, 1 with
    /// what is wrong and where if not. Never writes to the log.
    Verify(WalArgs),
    /// Cut the log at its first problem (a torn tail or corruption), keeping
    /// a backup of everything removed under `<data-dir>/wal-repair-<time>/`.
    Repair(WalArgs),
    /// List the log's records, one per line: position, time, kind and what
    /// each holds. To choose where `settle restore --until` or
    /// `--until-time` stops, or to follow one wallet or transaction.
    Show(crate::wal_show::ShowArgs),
}

#[derive(Args, Debug)]
pub struct WalArgs {
    /// The server's data directory (the log is its `wal/`).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
}

pub fn run(command: WalCommand) -> ExitCode {
    match command {
        WalCommand::Show(args) => crate::wal_show::run(&args),
        WalCommand::Verify(args) => {
            let (dir, _lock) = match locked_log(&args.data_dir, Access::Read) {
                Ok(found) => found,
                Err(code) => return code,
            };
            let report = verify(&FsStorage, &dir);
            say!("{report}");
            if !report.opens() {
                return ExitCode::FAILURE;
            }
            // The frames are sound: replay them into an engine, as recovery
            // would, and show what state they describe. From the start if
            // the log still has it, else from the oldest snapshot that
            // verifies: as much of the log as there is gets replayed.
            // But a snapshot past the log's end (a repair cut below it) is
            // where `settle serve` starts, setting the log aside: then say
            // that, as the server will do it.
            let past_the_end = settle_snapshots::snapshot::list(
                &settle_snapshots::snapshot::snapshot_dir(&args.data_dir),
            )
            .is_ok_and(|all| all.iter().any(|e| e.position >= report.next_lsn));
            let served = past_the_end
                .then(|| crate::offline::rebuild(&args.data_dir, Prefer::Serve, u64::MAX).ok())
                .flatten()
                .filter(|r| {
                    r.snapshot
                        .as_ref()
                        .is_some_and(|s| s.position >= report.next_lsn)
                });
            let rebuilt = match served {
                Some(r) => Ok(r),
                None => crate::offline::rebuild(&args.data_dir, Prefer::MostLog, u64::MAX),
            };
            match rebuilt {
                Ok(r) => {
                    for (path, why) in &r.skipped {
                        say!("snapshot {} passed over: {why}", path.display());
                    }
                    let digest = r
                        .image
                        .digest()
                        .map_or_else(|e| e.to_string(), |d| d.to_string());
                    let start = r.snapshot.as_ref().map_or_else(
                        || "the start of the log".to_owned(),
                        |s| {
                            if s.position >= report.next_lsn {
                                format!(
                                    "snapshot {} (position {}, past the log's end: `settle serve` \
                                     starts from it and sets the log aside)",
                                    s.id, s.position
                                )
                            } else {
                                format!("snapshot {} (position {})", s.id, s.position)
                            }
                        },
                    );
                    say!(
                        "replay: {} records, {} wallets, state digest {digest}, position {}, from {start}",
                        r.records,
                        r.image.wallet_count(),
                        r.image.position,
                    );
                    if report.is_clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    say!("replay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        WalCommand::Repair(args) => {
            let (dir, _lock) = match locked_log(&args.data_dir, Access::Write) {
                Ok(found) => found,
                Err(code) => return code,
            };
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let backup = args.data_dir.join(format!("wal-repair-{stamp}"));
            match settle_snapshots::repair(&FsStorage, &dir, &backup) {
                Ok(report) => {
                    say!("{report}");
                    past_the_repaired_end(&args.data_dir, report.next_lsn);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("settle: repair failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// What a command does to the log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Only reads it: works on a data directory mounted read-only.
    Read,
    Write,
}

/// The log's directory, and the data directory's lock. Offline only: a
/// log being written may change under the reader. A missing log is said,
/// and nothing is created.
pub(crate) fn locked_log(
    data_dir: &Path,
    access: Access,
) -> Result<(PathBuf, crate::data_lock::DataLock), ExitCode> {
    let dir = data_dir.join("wal");
    if !dir.is_dir() {
        eprintln!("settle: no log at {}", dir.display());
        return Err(ExitCode::FAILURE);
    }
    let locked = match access {
        Access::Read => crate::offline::lock_to_read(data_dir),
        Access::Write => crate::offline::lock_existing(data_dir),
    };
    match locked {
        Ok(lock) => Ok((dir, lock)),
        Err(e) => {
            eprintln!("settle: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Says which snapshots a repair's cut left past the end of the log: the
/// server starts from the newest that verifies and sets the log aside
/// (`recovery::Prefer::Serve`), so the operator learns it now, not at start.
fn past_the_repaired_end(data_dir: &Path, next_lsn: settle_snapshots::Lsn) {
    let dir = settle_snapshots::snapshot::snapshot_dir(data_dir);
    match settle_snapshots::snapshot::list(&dir) {
        Ok(entries) => {
            for e in entries.iter().filter(|e| e.position >= next_lsn) {
                say!(
                    "snapshot {} (position {}) is past the log's new end (record {}): `settle serve` \
                     starts from the newest such snapshot that verifies (it holds every record the \
                     log has, and more) and sets the log aside",
                    e.id,
                    e.position,
                    next_lsn.saturating_sub(1)
                );
            }
        }
        Err(e) => say!("the snapshots could not be listed: {e}"),
    }
}
