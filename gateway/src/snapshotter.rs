//! The snapshotter: a thread that follows the log and writes snapshots,
//! then removes the snapshots and log segments no longer needed.
//!
//! A snapshot is built from the log, not from the live wallets: the newest
//! snapshot on disk, plus the durable records after it, replayed into an
//! `Image` up to the log's durable position at that moment. The wallet
//! actors are never stopped or locked for it, so a snapshot stalls no
//! request (it competes for CPU only), and the state it holds is exactly
//! the state after its position, by the same replay recovery uses. The
//! thread runs at a low CPU priority (`background`), so on 2 cores it
//! takes what requests leave idle rather than half the machine. The
//! price is CPU (loading the previous snapshot and replaying the records
//! since, every time) and some memory: the image keeps the previous
//! snapshot's wallets and idempotency records in its file (`Image`'s
//! `from_stream`), so what it holds is the records since and the wallets
//! they touched.

use crate::journal::Journal;
use crate::recovery::{self, Prefer};
use settle_engine::actor::Clock;
use settle_engine::{EngineConfig, SnapshotId};
use settle_snapshots::Lsn;
use settle_snapshots::snapshot::{self, SnapshotFile};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// When and where to take snapshots.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    /// `<data-dir>/snapshots`.
    pub dir: PathBuf,
    /// Take one this often (if the log moved since the last).
    pub interval: Option<Duration>,
    /// Take one once this many records were logged since the last.
    pub every_records: Option<u64>,
    /// Snapshots kept (at least 1). Log segments are removed once the
    /// oldest kept snapshot covers them.
    pub keep: usize,
}

impl SnapshotPolicy {
    /// Every 60 s, 3 kept.
    pub fn new(dir: PathBuf) -> Self {
        SnapshotPolicy {
            dir,
            interval: Some(Duration::from_secs(60)),
            every_records: None,
            keep: 3,
        }
    }
}

/// A snapshot on disk, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    pub position: Lsn,
    pub size_bytes: u64,
    pub wallets: u64,
    pub created_at_ms: i64,
    pub path: PathBuf,
}

type Reply = tokio::sync::oneshot::Sender<Result<SnapshotInfo, String>>;

/// How often the thread looks whether a snapshot is due.
const TICK: Duration = Duration::from_millis(250);

/// The running snapshotter. `stop` (or drop) ends its thread, after the
/// snapshot being written, if any.
#[derive(Debug)]
pub struct Snapshotter {
    requests: parking_lot::Mutex<Option<crossbeam_channel::Sender<Reply>>>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

/// What a snapshot build needs.
struct Worker {
    policy: SnapshotPolicy,
    journal: Arc<Journal>,
    engine: EngineConfig,
    clock: Arc<dyn Clock>,
    idempotency_ttl_ms: i64,
    last_position: Lsn,
    last_time: Instant,
}

impl Snapshotter {
    /// Starts the thread. `last_position`: the position of the snapshot
    /// recovery started from (0 if none), so the first periodic snapshot
    /// waits for new records.
    pub fn start(
        policy: SnapshotPolicy,
        journal: Arc<Journal>,
        engine: EngineConfig,
        clock: Arc<dyn Clock>,
        idempotency_ttl: Duration,
        last_position: Lsn,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Reply>();
        let dir = policy.dir.clone();
        let mut worker = Worker {
            policy,
            journal,
            engine,
            clock,
            idempotency_ttl_ms: i64::try_from(idempotency_ttl.as_millis()).unwrap_or(i64::MAX),
            last_position,
            last_time: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("settle-snapshot".into())
            .spawn(move || {
                settle_snapshots::background::lower_this_threads_priority("settle-snapshot");
                worker.run(&rx);
            })?;
        Ok(Snapshotter {
            requests: parking_lot::Mutex::new(Some(tx)),
            thread: parking_lot::Mutex::new(Some(thread)),
            dir,
        })
    }

    /// Takes a snapshot now (after the one being written, if any) and
    /// returns it once it is durable.
    pub async fn take(&self) -> Result<SnapshotInfo, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = match &*self.requests.lock() {
            Some(requests) => requests.send(tx).is_ok(),
            None => false,
        };
        if !sent {
            return Err("the snapshotter is stopping".to_owned());
        }
        rx.await
            .unwrap_or_else(|_| Err("the snapshotter stopped".to_owned()))
    }

    /// The snapshots on disk, newest first (from their headers; a file
    /// whose header does not read is left out, with a warning).
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, String> {
        let entries = snapshot::list(&self.dir).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            match SnapshotFile::header_only(&entry.path) {
                Ok(h) => out.push(SnapshotInfo {
                    id: h.id,
                    position: h.position,
                    size_bytes: entry.size,
                    wallets: h.summary.wallets,
                    created_at_ms: h.created_at_ms,
                    path: entry.path,
                }),
                Err(e) => tracing::warn!(%e, "a snapshot's header does not read"),
            }
        }
        Ok(out)
    }

    /// Stops the thread (waits for a snapshot being written).
    pub fn stop(&self) {
        drop(self.requests.lock().take());
        if let Some(thread) = self.thread.lock().take()
            && thread.join().is_err()
        {
            tracing::error!("the snapshot thread panicked");
        }
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Worker {
    fn run(&mut self, requests: &crossbeam_channel::Receiver<Reply>) {
        loop {
            match requests.recv_timeout(TICK) {
                Ok(reply) => {
                    let result = self.take();
                    let _ = reply.send(result);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.due()
                        && let Err(e) = self.take()
                    {
                        tracing::error!(%e, "periodic snapshot failed; the log is kept");
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn due(&self) -> bool {
        let new = self
            .journal
            .wal()
            .durable_lsn()
            .saturating_sub(self.last_position);
        if new == 0 {
            return false;
        }
        let by_time = self
            .policy
            .interval
            .is_some_and(|every| self.last_time.elapsed() >= every);
        let by_count = self.policy.every_records.is_some_and(|n| new >= n);
        by_time || by_count
    }

    fn take(&mut self) -> Result<SnapshotInfo, String> {
        let started = Instant::now();
        // On a thread of its own, which ends with the build: the image is a
        // second copy of the state, and the allocator returns the memory a
        // thread freed when the thread ends. Freed by this long-lived
        // thread, it stayed resident: 1,000,000 wallets' snapshot left
        // 2.6 GB more resident than the state it copied (BENCHMARKS.md).
        let result = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("settle-snapshot-build".into())
                .spawn_scoped(scope, || self.build())
                .map_err(|e| format!("cannot start the snapshot's thread: {e}"))?
                .join()
                .unwrap_or_else(|_| Err("the snapshot's build panicked".to_owned()))
        });
        self.last_time = Instant::now();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("settle_snapshots_total", "outcome" => outcome).increment(1);
        if let Ok(info) = &result {
            self.last_position = info.position;
            metrics::histogram!("settle_snapshot_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            #[allow(clippy::cast_precision_loss)] // a gauge: bytes well below 2^52
            metrics::gauge!("settle_snapshot_size_bytes").set(info.size_bytes as f64);
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("settle_snapshot_position").set(info.position as f64);
        }
        result
    }

    fn build(&mut self) -> Result<SnapshotInfo, String> {
        let started = Instant::now();
        let wal = self.journal.wal();
        let position = wal.durable_lsn();
        let log = wal.reader(position).map_err(|e| e.to_string())?;
        let base = recovery::base(
            &self.policy.dir,
            log.first_lsn,
            log.next_lsn,
            &self.engine,
            Prefer::Newest,
        )
        .map_err(|e| e.to_string())?;
        for (path, why) in &base.skipped {
            tracing::warn!(snapshot = %path.display(), %why, "snapshot passed over");
        }
        recovery::set_aside_damaged(&self.policy.dir, &base.damaged, self.clock.now().millis())?;
        let loaded = started.elapsed();
        let mut image = base.image;
        let records =
            recovery::replay(&log, &mut image, position, None).map_err(|e| e.to_string())?;
        let now = self.clock.now().millis();
        image.expire_idempotency(now, self.idempotency_ttl_ms);
        let id = SnapshotId::from_ulid(ulid::Ulid::new()).to_string();
        let replayed = started.elapsed();
        let (path, size) = image
            .write_snapshot(&self.policy.dir, &id, now)
            .map_err(|e| e.to_string())?;
        let wallets = image.wallet_count() as u64;
        drop(image);
        tracing::info!(
            snapshot = %id,
            position,
            wallets,
            size_bytes = size,
            base = base.snapshot.as_ref().map_or("none", |s| s.id.as_str()),
            records_replayed = records,
            load_ms = millis(loaded),
            replay_ms = millis(replayed - loaded),
            write_ms = millis(started.elapsed() - replayed),
            "snapshot written"
        );
        self.compact()?;
        Ok(SnapshotInfo {
            id,
            position,
            size_bytes: size,
            wallets,
            created_at_ms: now,
            path,
        })
    }

    /// Keeps the newest `keep` snapshots, and removes the log segments the
    /// oldest of them covers.
    fn compact(&self) -> Result<(), String> {
        let kept =
            snapshot::prune(&self.policy.dir, self.policy.keep).map_err(|e| e.to_string())?;
        if let Some(oldest) = kept.last() {
            let removed = self
                .journal
                .wal()
                .remove_segments_before(oldest.position + 1)
                .map_err(|e| e.to_string())?;
            if removed > 0 {
                tracing::info!(
                    segments = removed,
                    covered_by = %oldest.id,
                    "removed log segments the oldest kept snapshot covers"
                );
            }
        }
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
