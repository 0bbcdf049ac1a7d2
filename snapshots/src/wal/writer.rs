//! The writer thread: group commit, rotation, disk-full retries, fail-stop.
//!
//! One thread owns the active segment. It blocks for the first request,
//! then takes whatever else is already queued (up to the batch limits)
//! without waiting: no timer, so an idle log flushes at once and a busy one
//! grows its batches by itself (FACTS.md: fsync, ~0.1 ms, bounds one-at-a-time
//! durability, so one fsync must serve many records). It frames the batch
//! into one buffer, writes it with one positional write, `fdatasync`s, and
//! only then calls the batch's callbacks, in order.
//!
//! Failures:
//! - **disk full** (from the write or from creating a segment): the partial
//!   write is cut off again (truncate to the logical end, which needs no
//!   space), the status becomes `DiskFull`, and the *same* batch is retried
//!   with backoff (10 ms doubling to 1 s) until it fits. Its records were
//!   already applied in memory by the caller and acknowledged to no one, so
//!   they must reach the log, in order; later appends queue behind them.
//! - **any other write error, or a failed fsync**: fail-stop. After a failed
//!   fsync the page cache's state is unknown (the kernel may have dropped
//!   the dirty pages and marked them clean), so retrying could report lost
//!   data as durable. The batch and everything after it fail; the process
//!   must restart and recover from what is on disk.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use tracing::{error, info, warn};

use super::config::{FsyncPolicy, Lsn, WalConfig, frame_len};
use super::error::{WalError, WalStatus};
use super::format::{self, SEGMENT_HEADER_LEN};
use super::newest;
use super::segment::{self, ActiveSegment};
use super::spare::Spares;
use super::storage::Storage;

/// What `append` is told when its record is durable, or cannot be.
pub(crate) type Done = Box<dyn FnOnce(Result<Lsn, WalError>) + Send>;

/// One append on its way to the writer.
pub(crate) struct Request {
    pub payload: Vec<u8>,
    pub done: Done,
}

/// Counters of a log since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written (and synced, under `FsyncPolicy::Always`).
    pub records: u64,
    /// Frame bytes written.
    pub bytes: u64,
    /// Batches written: one write each, and one fsync each under
    /// `FsyncPolicy::Always`. `records / batches` is records per fsync.
    pub batches: u64,
    /// Most records in one batch.
    pub max_batch: u64,
    /// Total time spent in `fdatasync`.
    pub fsync_time: Duration,
    /// Segments created by rotation.
    pub segments_created: u64,
    /// Of those, how many were prepared spares (zeros written ahead).
    pub spares_used: u64,
    /// Writes retried because the disk was full.
    pub disk_full_retries: u64,
}

const OK: u8 = 0;
const DISK_FULL: u8 = 1;
const FAILED: u8 = 2;

/// State shared by the writer thread and the `Wal` handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    status: AtomicU8,
    failure: Mutex<Option<String>>,
    durable: AtomicU64,
    stats: Mutex<WalStats>,
    /// (first LSN, path) of every segment in order; the last one is active.
    pub segments: Mutex<Vec<(Lsn, PathBuf)>>,
}

impl Shared {
    pub(crate) fn new(durable: Lsn, segments: Vec<(Lsn, PathBuf)>) -> Self {
        Shared {
            durable: AtomicU64::new(durable),
            segments: Mutex::new(segments),
            ..Shared::default()
        }
    }

    pub(crate) fn status(&self) -> WalStatus {
        match self.status.load(Ordering::Acquire) {
            OK => WalStatus::Ok,
            DISK_FULL => WalStatus::DiskFull,
            _ => WalStatus::Failed(self.failure.lock().clone().unwrap_or_default()),
        }
    }

    /// The fail-stop reason, if the log has failed.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.status.load(Ordering::Acquire) == FAILED {
            self.failure.lock().clone()
        } else {
            None
        }
    }

    fn fail(&self, reason: String) {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            *failure = Some(reason);
        }
        self.status.store(FAILED, Ordering::Release);
    }

    fn set_disk_full(&self, full: bool) -> bool {
        let (from, to) = if full {
            (OK, DISK_FULL)
        } else {
            (DISK_FULL, OK)
        };
        self.status
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn durable_lsn(&self) -> Lsn {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> WalStats {
        *self.stats.lock()
    }
}

/// Marks the log failed if the writer thread panics (a bug), so appends
/// fail instead of waiting forever.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("the log writer thread panicked".into());
        }
    }
}

/// How a batch ended, when not durably.
enum Abort {
    /// Fail-stop, with the reason.
    Failed(String),
    /// The log was closed while the disk was full: the batch could not be written.
    GaveUp(WalError),
}

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) struct Writer {
    pub storage: Arc<dyn Storage>,
    pub config: WalConfig,
    pub requests: Receiver<Request>,
    /// Never sent on; disconnected when the log closes (wakes a backoff).
    pub shutdown: Receiver<()>,
    pub shared: Arc<Shared>,
    pub segment: ActiveSegment,
    pub next_lsn: Lsn,
    pub batch: Vec<Request>,
    pub carry: Option<Request>,
    pub buf: Vec<u8>,
    /// The preparer of the next segment (`WalConfig::spare_segments`).
    pub spares: Option<Spares>,
}

impl Writer {
    /// Runs until the log is closed and every request has been answered.
    pub(crate) fn run(mut self) -> Result<(), WalError> {
        let _guard = PanicGuard(Arc::clone(&self.shared));
        while self.collect() {
            if let Some(reason) = self.shared.failure() {
                self.answer_all(|| WalError::Failed(reason.clone()));
                continue;
            }
            match self.commit() {
                Ok(first) => {
                    for (request, lsn) in self.batch.drain(..).zip(first..) {
                        call(request.done, Ok(lsn));
                    }
                }
                Err(Abort::Failed(reason)) => self.answer_all(|| WalError::Failed(reason.clone())),
                Err(Abort::GaveUp(error)) => {
                    let (segment, offset) = match &error {
                        WalError::DiskFull { segment, offset } => (segment.clone(), *offset),
                        _ => (self.segment.path.clone(), self.segment.end),
                    };
                    let full = || WalError::DiskFull {
                        segment: segment.clone(),
                        offset,
                    };
                    self.answer_all(full);
                    while self.collect() {
                        self.answer_all(full);
                    }
                    return Err(error);
                }
            }
        }
        if let Some(reason) = self.shared.failure() {
            return Err(WalError::Failed(reason));
        }
        if self.config.fsync == FsyncPolicy::Never {
            // Closing is the one point where an unsynced log is made durable.
            let segment = &self.segment;
            segment
                .file
                .sync_data()
                .map_err(|e| WalError::io(&segment.path, segment.end, e))?;
        }
        Ok(())
    }

    /// Fills `batch`: blocks for the first request, then takes what is
    /// queued without waiting. False once the log is closed and drained.
    fn collect(&mut self) -> bool {
        let first = match self.carry.take() {
            Some(request) => request,
            None => match self.requests.recv() {
                Ok(request) => request,
                Err(_) => return false,
            },
        };
        let limit = self.config.batch_byte_limit();
        let mut bytes = frame_len(first.payload.len());
        self.batch.push(first);
        while self.batch.len() < self.config.max_batch_records {
            let Ok(request) = self.requests.try_recv() else {
                break;
            };
            let more = frame_len(request.payload.len());
            if bytes + more > limit {
                self.carry = Some(request);
                break;
            }
            bytes += more;
            self.batch.push(request);
        }
        true
    }

    /// Fails every request of the batch with `error()`.
    fn answer_all(&mut self, error: impl Fn() -> WalError) {
        for request in self.batch.drain(..) {
            call(request.done, Err(error()));
        }
    }

    /// Writes and syncs the batch; returns the LSN of its first record.
    fn commit(&mut self) -> Result<Lsn, Abort> {
        self.buf.clear();
        for request in &self.batch {
            format::encode_frame(&mut self.buf, &request.payload);
        }
        let bytes = self.buf.len() as u64;
        let records = self.batch.len() as u64;

        let mut backoff = FIRST_BACKOFF;
        let mut closing = false;
        loop {
            match self.write(bytes) {
                Ok(()) => break,
                Err(full @ WalError::DiskFull { .. }) => {
                    if self.shared.set_disk_full(true) {
                        warn!(
                            error = %full,
                            records,
                            "disk full: keeping the batch and retrying until space is freed \
                             (client writes are refused meanwhile)"
                        );
                    }
                    self.shared.stats.lock().disk_full_retries += 1;
                    if closing {
                        error!(error = %full, records, "log closed while the disk is full: batch not written");
                        return Err(Abort::GaveUp(full));
                    }
                    match self.shutdown.recv_timeout(backoff) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Closing: one more attempt, then give up.
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => closing = true,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(other) => return Err(self.fail_stop(other.to_string())),
            }
        }

        let start = self.segment.end;
        let mut fsync_time = Duration::ZERO;
        if self.config.fsync == FsyncPolicy::Always {
            let began = Instant::now();
            if let Err(e) = self.segment.file.sync_data() {
                let reason = format!(
                    "fsync of {} failed after writing bytes {start}..{}: {e}",
                    self.segment.path.display(),
                    start + bytes
                );
                return Err(self.fail_stop(reason));
            }
            fsync_time = began.elapsed();
        }

        self.segment.end += bytes;
        let first = self.next_lsn;
        self.next_lsn += records;
        self.shared
            .durable
            .store(self.next_lsn - 1, Ordering::Release);
        if self.shared.set_disk_full(false) {
            info!(segment = %self.segment.path.display(), "space freed: the log is writing again");
        }
        let mut stats = self.shared.stats.lock();
        stats.records += records;
        stats.bytes += bytes;
        stats.batches += 1;
        stats.max_batch = stats.max_batch.max(records);
        stats.fsync_time += fsync_time;
        drop(stats);
        // For /metrics (a no-op unless the binary installed a recorder).
        metrics::histogram!("settle_wal_fsync_seconds").record(fsync_time.as_secs_f64());
        #[allow(clippy::cast_precision_loss)] // a batch is at most a few thousand records
        metrics::histogram!("settle_wal_batch_records").record(records as f64);
        metrics::counter!("settle_wal_records_total").increment(records);
        metrics::counter!("settle_wal_bytes_total").increment(bytes);
        Ok(first)
    }

    fn fail_stop(&self, reason: String) -> Abort {
        error!(%reason, "the log failed and stops (fail-stop): restart to recover from disk");
        self.shared.fail(reason.clone());
        Abort::Failed(reason)
    }

    /// Writes `buf` at the logical end, rotating first if it does not fit.
    /// A disk-full error leaves nothing behind the logical end.
    fn write(&mut self, bytes: u64) -> Result<(), WalError> {
        if self.segment.end + bytes > self.segment.size {
            self.rotate(bytes)?;
        }
        let segment = &self.segment;
        let offset = segment.end;
        let Err(error) = segment.file.write_all_at(&self.buf, offset) else {
            return Ok(());
        };
        let error = segment::write_error(&segment.path, offset, error);
        if matches!(error, WalError::DiskFull { .. }) {
            // Undo the partial write: truncating needs no space, and the
            // extension back to the preallocated size reads as zeros.
            let undo = segment
                .file
                .set_len(offset)
                .and_then(|()| segment.file.set_len(segment.size));
            if let Err(e) = undo {
                return Err(WalError::io(&segment.path, offset, e));
            }
        }
        Err(error)
    }

    /// Starts a new segment at `next_lsn`, big enough for `bytes` of frames.
    /// Every batch of the old one is already synced. Uses the prepared
    /// spare when one is ready and big enough; else creates the segment.
    fn rotate(&mut self, bytes: u64) -> Result<(), WalError> {
        let size = self.config.segment_size.max(SEGMENT_HEADER_LEN + bytes);
        let storage = self.storage.as_ref();
        let dir = &self.config.dir;
        // Spares have the configured size: a batch that needs a bigger
        // segment leaves the spare for the next rotation.
        let spare = self
            .spares
            .as_ref()
            .filter(|_| size <= self.config.segment_size)
            .and_then(Spares::take);
        let from_spare = spare.is_some();
        let fresh = match spare {
            // The spare holds no records: if naming it fails, create one.
            Some(spare) => {
                segment::adopt_spare(storage, dir, spare, self.next_lsn).or_else(|e| {
                    warn!(error = %e, "could not use the spare log segment; creating one");
                    segment::create_segment(storage, dir, self.next_lsn, size)
                })?
            }
            None => segment::create_segment(storage, dir, self.next_lsn, size)?,
        };
        // Before any record goes into it: from here on, a log without this
        // segment is known to have lost records (`newest`). On a failure
        // the old segment stays the active one, and a retry replaces the
        // new, empty one.
        newest::record(storage, dir, fresh.first_lsn)?;
        if let Some(spares) = &self.spares {
            spares.prepare_next();
        }
        let mut segments = self.shared.segments.lock();
        // An empty segment too small for this batch is replaced (same name).
        if segments
            .last()
            .is_none_or(|(first, _)| *first != fresh.first_lsn)
        {
            segments.push((fresh.first_lsn, fresh.path.clone()));
        }
        drop(segments);
        self.segment = fresh;
        let mut stats = self.shared.stats.lock();
        stats.segments_created += 1;
        stats.spares_used += u64::from(from_spare);
        drop(stats);
        // A segment not from a spare is sparse: its fsyncs cost more. Many
        // of them say the preparer does not keep up with the log.
        let from = if from_spare { "spare" } else { "new" };
        metrics::counter!("settle_wal_segments_total", "from" => from).increment(1);
        Ok(())
    }
}

/// Calls a callback; a panicking callback is a caller's bug and must not
/// take the log down with it.
fn call(done: Done, result: Result<Lsn, WalError>) {
    if catch_unwind(AssertUnwindSafe(move || done(result))).is_err() {
        error!("a log append callback panicked; the log carries on");
    }
}
