//! Recovery: a starting image (the newest snapshot that verifies, or the
//! empty state), then the log after it, replayed into that image.
//!
//! Replay applies events with `Ledger::apply`, the code that applies them
//! live, and the ledger checks as it goes that every message consumed was
//! in flight: a log that does not describe a reachable state stops recovery
//! at the record that does not fit, named by its position.

use crate::image::Image;
use crate::journal::{self, Record};
use settle_engine::EngineConfig;
use settle_snapshots::snapshot::{self, SnapshotStream};
use settle_snapshots::{Lsn, Recovery, ReplayError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why recovery stopped.
#[derive(Debug)]
pub struct RecoveryError(pub String);

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecoveryError {}

/// Told how far replay has come: (records applied, records to apply).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Records decoded per hand-over between the two replay threads.
const BATCH: usize = 512;

/// Replays the log's records from `image.position + 1` through `until`
/// (inclusive; `Lsn::MAX` for the whole log) into `image`. Returns the
/// number of records applied.
///
/// Two threads, a pipeline: one reads, checks and decodes records (about
/// 40% of the work), the other applies them in order (the rest). Applying
/// stays strictly sequential, in log order, as the ledger's checks need.
pub fn replay(
    log: &Recovery,
    image: &mut Image,
    until: Lsn,
    progress: Option<Progress<'_>>,
) -> Result<u64, RecoveryError> {
    let from = image.position + 1;
    if from < log.first_lsn {
        return Err(RecoveryError(format!(
            "the log starts at record {}, but the state needs it from record {from} \
             (segments were removed); start from a newer snapshot",
            log.first_lsn
        )));
    }
    if from > log.next_lsn {
        return Err(RecoveryError(format!(
            "the state is at record {}, but the log ends at record {}: the log lost records \
             the state holds",
            image.position,
            log.next_lsn.saturating_sub(1)
        )));
    }
    let last = until.min(log.next_lsn.saturating_sub(1));
    let total = (last + 1).saturating_sub(from);
    let mut records = 0u64;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<(Lsn, Record)>>(64);
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let result = log.replay_range(from, last, |lsn, bytes| {
                batch.push((lsn, journal::decode(bytes)?));
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    // The applier stopped (a record did not apply): stop too.
                    tx.send(full)
                        .map_err(|_| journal::CodecError("replay stopped".to_owned()))?;
                }
                Ok::<(), journal::CodecError>(())
            });
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            result
        });
        let mut applied: Result<(), RecoveryError> = Ok(());
        for batch in rx.iter() {
            for (lsn, record) in batch {
                records += 1;
                if let Err(e) = image.apply(lsn, record) {
                    applied = Err(RecoveryError(format!(
                        "log record {lsn} does not apply: {e} (run `settle wal verify`)"
                    )));
                    break;
                }
            }
            if let Some(report) = progress {
                report(records, total);
            }
            if applied.is_err() {
                break;
            }
        }
        drop(rx);
        let read = reader
            .join()
            .map_err(|_| RecoveryError("the log reader failed".to_owned()));
        applied.and(read)
    })?;
    match read {
        Ok(()) => Ok(records),
        Err(ReplayError::Apply { lsn, source }) => Err(RecoveryError(format!(
            "log record {lsn} does not decode: {source} (run `settle wal verify`)"
        ))),
        Err(e) => Err(RecoveryError(format!("reading the log: {e}"))),
    }
}

/// Where point-in-time recovery to `time` stops, reading records `from`
/// on: just before the first record stamped later than `time`, or at the
/// log's last record if none is. Records that carry no instant
/// (`Record::time`) go with those around them: the cut is a position, so
/// what lies before it is whole, in log order. Log order is commit order;
/// two workers may commit instants a millisecond out of step, and the cut
/// then falls before the first record past `time`, never after it.
pub fn position_at(
    log: &Recovery,
    from: Lsn,
    time: settle_engine::Timestamp,
) -> Result<Lsn, RecoveryError> {
    enum Stop {
        Later,
        Codec(journal::CodecError),
    }
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Stop::Later => f.write_str("a record past the time"),
                Stop::Codec(e) => e.fmt(f),
            }
        }
    }
    let last = log.next_lsn.saturating_sub(1);
    let scan = log.replay_range(from, last, |_, bytes| {
        match journal::decode(bytes).map_err(Stop::Codec)?.time() {
            Some(at) if at > time => Err(Stop::Later),
            _ => Ok(()),
        }
    });
    match scan {
        Ok(()) => Ok(last.max(from.saturating_sub(1))),
        Err(ReplayError::Apply {
            lsn,
            source: Stop::Later,
        }) => Ok(lsn.saturating_sub(1)),
        Err(ReplayError::Apply { lsn, source }) => Err(RecoveryError(format!(
            "log record {lsn} does not decode: {source} (run `settle wal verify`)"
        ))),
        Err(e) => Err(RecoveryError(format!("reading the log: {e}"))),
    }
}

/// Which snapshot a recovery starts from, when several would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    /// The newest that verifies and that the log reaches (the snapshotter:
    /// the least log to replay).
    Newest,
    /// Start-up (`settle serve`): the newest that verifies, even one past
    /// the end of the log. Such a snapshot holds every record the log still
    /// has and more (the log was cut below it by `settle wal repair`, or
    /// lost an unsynced tail); the server then sets the log aside and
    /// starts a new one after the snapshot (`boot`). Passing it over would
    /// lose what it holds, and once new records took its positions, a later
    /// start would take it for their state.
    Serve,
    /// The empty state if the log reaches back to its first record, else
    /// the oldest snapshot that verifies (`settle wal verify`: replay as
    /// much of the log as there is, to check it against the newest).
    MostLog,
}

/// The snapshot a recovery started from.
#[derive(Clone, Debug)]
pub struct SnapshotUsed {
    pub id: String,
    pub path: PathBuf,
    pub position: Lsn,
    pub size: u64,
    pub load_time: Duration,
}

/// A starting image and where it came from.
#[derive(Debug)]
pub struct Base {
    pub image: Image,
    pub snapshot: Option<SnapshotUsed>,
    /// Snapshots passed over, and why (a failed check, a log that no
    /// longer reaches back to them). Recovery logs them as warnings.
    pub skipped: Vec<(PathBuf, String)>,
    /// Of those, the ones that did not load (damaged, unreadable, or named
    /// for another position): a server moves them out of the snapshots
    /// directory (`snapshot::move_out`), so that they never count as one
    /// of the snapshots it keeps.
    pub damaged: Vec<PathBuf>,
}

/// Moves the snapshots that did not load out of the snapshots directory
/// `dir`, into `snapshots-damaged-<now_ms>` beside it, each with a warning
/// that says where. Left in place, a damaged snapshot counted as one of
/// the `keep` newest, so a good one was removed in its stead and the log
/// compacted up to the damaged one (found by an outside test).
pub fn set_aside_damaged(dir: &Path, damaged: &[PathBuf], now_ms: i64) -> Result<(), String> {
    if damaged.is_empty() {
        return Ok(());
    }
    let to = dir.with_file_name(format!("snapshots-damaged-{now_ms}"));
    for e in snapshot::move_out(dir, damaged, &to).map_err(|e| e.to_string())? {
        tracing::warn!(
            snapshot = %e.id,
            position = e.position,
            moved_to = %e.path.display(),
            "a snapshot that does not load was moved out of the snapshots directory (it no \
             longer counts as one of the snapshots kept; delete it once it is not needed)"
        );
    }
    Ok(())
}

/// Chooses and loads the starting image for a log spanning
/// `first_lsn..next_lsn`, from the snapshots in `dir`.
pub fn base(
    dir: &Path,
    first_lsn: Lsn,
    next_lsn: Lsn,
    config: &EngineConfig,
    prefer: Prefer,
) -> Result<Base, RecoveryError> {
    let mut base = choose(dir, first_lsn, next_lsn, config, prefer)?;
    // What replay packs again, and records past a few thousand, go to a
    // scratch file beside the snapshots rather than into memory.
    base.image.spill_into(dir);
    Ok(base)
}

fn choose(
    dir: &Path,
    first_lsn: Lsn,
    next_lsn: Lsn,
    config: &EngineConfig,
    prefer: Prefer,
) -> Result<Base, RecoveryError> {
    let mut entries = snapshot::list(dir).map_err(|e| RecoveryError(e.to_string()))?;
    let mut skipped = Vec::new();
    let mut damaged = Vec::new();
    let from_scratch = first_lsn <= 1;
    let past_the_end = |position: Lsn| {
        format!(
            "its position {position} is past the end of the log (record {}); `settle serve` \
             starts from it if it is the newest that verifies, and sets the log aside",
            next_lsn.saturating_sub(1)
        )
    };
    if prefer == Prefer::MostLog {
        if from_scratch {
            // Said even so: the server would start from such a snapshot.
            for entry in entries {
                if entry.position >= next_lsn {
                    skipped.push((entry.path, past_the_end(entry.position)));
                }
            }
            return Ok(Base {
                image: Image::empty(config.clone()),
                snapshot: None,
                skipped,
                damaged,
            });
        }
        entries.reverse();
    }
    for entry in entries {
        // The log must hold every record after the snapshot.
        if entry.position + 1 < first_lsn {
            skipped.push((
                entry.path,
                format!(
                    "the log no longer reaches back to its position {} (it starts at {first_lsn})",
                    entry.position
                ),
            ));
            continue;
        }
        if entry.position >= next_lsn && prefer != Prefer::Serve {
            skipped.push((entry.path, past_the_end(entry.position)));
            continue;
        }
        let started = Instant::now();
        // Streamed: the file is never held whole beside the image.
        let loaded = SnapshotStream::open(&entry.path)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                if file.header.id != entry.id || file.header.position != entry.position {
                    return Err(format!(
                        "its header says {} at {}, its name {} at {}",
                        file.header.id, file.header.position, entry.id, entry.position
                    ));
                }
                Image::from_stream(file, config.clone()).map_err(|e| e.to_string())
            });
        match loaded {
            Ok(image) => {
                return Ok(Base {
                    image,
                    snapshot: Some(SnapshotUsed {
                        id: entry.id,
                        path: entry.path,
                        position: entry.position,
                        size: entry.size,
                        load_time: started.elapsed(),
                    }),
                    skipped,
                    damaged,
                });
            }
            Err(why) => {
                let why = without_path(&entry.path, why);
                damaged.push(entry.path.clone());
                skipped.push((entry.path, why));
            }
        }
    }
    if from_scratch {
        return Ok(Base {
            image: Image::empty(config.clone()),
            snapshot: None,
            skipped,
            damaged,
        });
    }
    let why: Vec<String> = skipped
        .iter()
        .map(|(p, why)| format!("{}: {why}", p.display()))
        .collect();
    Err(RecoveryError(format!(
        "no snapshot can start recovery and the log starts at record {first_lsn} (earlier \
         records were compacted into snapshots): {}. Restore from a backup with `settle restore`",
        if why.is_empty() {
            "there are no snapshots".to_owned()
        } else {
            why.join("; ")
        }
    )))
}

/// Why `path` was passed over, without the path when the error names it
/// itself (the snapshot reader's errors do): the path is shown beside the
/// reason, in the log and in the refusal, and was printed twice.
fn without_path(path: &Path, why: String) -> String {
    let shown = path.display().to_string();
    match why.strip_prefix(shown.as_str()) {
        Some(rest) => rest.trim_start_matches(':').trim_start().to_owned(),
        None => why,
    }
}

#[cfg(test)]
mod tests {
    use super::without_path;
    use std::path::Path;

    #[test]
    fn a_reason_does_not_repeat_the_path() {
        let p = Path::new("d/snapshots/1-snp_x.msgpack");
        assert_eq!(
            without_path(
                p,
                "d/snapshots/1-snp_x.msgpack at byte 7: frame checksum mismatch".into()
            ),
            "at byte 7: frame checksum mismatch"
        );
        assert_eq!(
            without_path(p, "d/snapshots/1-snp_x.msgpack: truncated".into()),
            "truncated"
        );
        assert_eq!(
            without_path(p, "its position 9 is past the end of the log".into()),
            "its position 9 is past the end of the log"
        );
    }
}
