//! [`Wal`], the handle callers hold: it recovers the directory at `open`,
//! starts the writer thread, and passes appends to it over an unbounded
//! channel, so `append` never blocks on I/O.
//!
//! The channel is unbounded on purpose (a bounded one would block callers,
//! which are actors that must not block). Callers bound what they append:
//! the engine bounds client commands in flight (`max_inflight_total`); the
//! records those commands cause (their events, their receivers' events,
//! idempotency claims and answers) are a small multiple of that.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{SendError, Sender};
use tracing::warn;

use super::config::{FsyncPolicy, Lsn, MAX_RECORD, WalConfig};
use super::error::{WalError, WalStatus};
use super::recovery::{self, Recovery};
use super::spare::Spares;
use super::storage::Storage;
use super::writer::{Request, Shared, WalStats, Writer};

/// An open write-ahead log. `Send + Sync`: share it (`Arc<Wal>`) among the
/// threads that append.
#[derive(Debug)]
pub struct Wal {
    requests: Option<Sender<Request>>,
    /// Dropped at close: wakes a writer waiting out a disk-full backoff.
    shutdown: Option<Sender<()>>,
    writer: Option<JoinHandle<Result<(), WalError>>>,
    shared: Arc<Shared>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
}

impl Wal {
    /// Opens the log in `config.dir` (creating the directory if absent),
    /// scans every segment, cuts a torn tail (with a warning naming segment
    /// and offset, and returned in [`Recovery::torn_tail`]), and returns the
    /// log ready to append plus what it read. Corruption before the tail is
    /// an error naming segment and offset ([`WalError::Corrupt`]); only
    /// [`repair`](super::repair) cuts it.
    pub fn open(storage: Arc<dyn Storage>, config: WalConfig) -> Result<(Wal, Recovery), WalError> {
        config.validate()?;
        if config.fsync == FsyncPolicy::Never {
            warn!(
                dir = %config.dir.display(),
                "log opened with FsyncPolicy::Never: acknowledged records can be lost on a crash \
                 (benchmarks only)"
            );
        }
        let recovered = recovery::recover(&storage, &config)?;
        let next_lsn = recovered.recovery.next_lsn;
        let shared = Arc::new(Shared::new(next_lsn - 1, recovered.segments));
        let (requests, receiver) = crossbeam_channel::unbounded();
        let (shutdown, shutdown_receiver) = crossbeam_channel::bounded(0);
        let dir = config.dir.clone();
        let spares = config
            .spare_segments
            .then(|| Spares::start(Arc::clone(&storage), &dir, config.segment_size))
            .flatten();
        let writer = Writer {
            storage: Arc::clone(&storage),
            config,
            requests: receiver,
            shutdown: shutdown_receiver,
            shared: Arc::clone(&shared),
            segment: recovered.active,
            next_lsn,
            batch: Vec::new(),
            carry: None,
            buf: Vec::new(),
            spares,
        };
        let writer = std::thread::Builder::new()
            .name("settle-wal".into())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io(&dir, 0, e))?;
        let wal = Wal {
            requests: Some(requests),
            shutdown: Some(shutdown),
            writer: Some(writer),
            shared,
            storage,
            dir,
        };
        Ok((wal, recovered.recovery))
    }

    /// Hands `payload` to the writer thread. `done` gets the record's LSN
    /// once it is durable, or the error. It runs on the writer thread (keep
    /// it short: it delays the next batch), except when the append is
    /// refused at once (a payload outside 1..=16 MiB, a failed or closed
    /// log): then it runs here, before `append` returns. Never blocks on
    /// I/O. Records become durable in append order, and their callbacks run
    /// in that order.
    pub fn append(&self, payload: Vec<u8>, done: Box<dyn FnOnce(Result<Lsn, WalError>) + Send>) {
        if payload.is_empty() || payload.len() > MAX_RECORD {
            return done(Err(WalError::RecordSize { len: payload.len() }));
        }
        if let Some(reason) = self.shared.failure() {
            return done(Err(WalError::Failed(reason)));
        }
        let Some(requests) = &self.requests else {
            return done(Err(WalError::Closed));
        };
        if let Err(SendError(request)) = requests.send(Request { payload, done }) {
            // The writer is gone: it can only have died of a bug.
            let error = self
                .shared
                .failure()
                .map_or(WalError::Closed, WalError::Failed);
            (request.done)(Err(error));
        }
    }

    /// Whether the log takes writes.
    pub fn status(&self) -> WalStatus {
        self.shared.status()
    }

    /// The last LSN known durable (0 if none). Under `FsyncPolicy::Never`,
    /// the last one written.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn()
    }

    /// A reader of the durable records up to `until` (at most the durable
    /// LSN), for building a snapshot while the log is being written: it
    /// reads only frames already written and synced, never the tail the
    /// writer is appending to. Its segments must not be removed while it
    /// is used (the snapshotter, the only caller of
    /// [`remove_segments_before`](Self::remove_segments_before), reads
    /// before it compacts).
    pub fn reader(&self, until: Lsn) -> Result<Recovery, WalError> {
        let until = until.min(self.durable_lsn());
        let segments = self.shared.segments.lock().clone();
        let first_lsn = segments.first().map_or(until + 1, |s| s.0);
        let mut infos = Vec::with_capacity(segments.len());
        for (i, (first, path)) in segments.iter().enumerate() {
            if *first > until {
                break;
            }
            let end_lsn = segments
                .get(i + 1)
                .map_or(until + 1, |next| next.0.min(until + 1));
            let size = self
                .storage
                .open_read(path)
                .and_then(|f| f.size())
                .map_err(|e| WalError::io(path, 0, e))?;
            infos.push(super::scan::SegmentInfo {
                path: path.clone(),
                first_lsn: *first,
                records: end_lsn - first,
                end: size,
                size,
            });
        }
        Ok(Recovery::over(
            Arc::clone(&self.storage),
            first_lsn.min(until + 1),
            until + 1,
            infos,
        ))
    }

    /// Counters since `open`.
    pub fn stats(&self) -> WalStats {
        self.shared.stats()
    }

    /// Removes the segments whose records all have LSN < `lsn` (compaction
    /// after a snapshot covering everything before `lsn`), oldest first, so
    /// a crash midway leaves a contiguous log. Never removes the segment
    /// being written. Returns how many were removed.
    pub fn remove_segments_before(&self, lsn: Lsn) -> Result<usize, WalError> {
        let mut segments = self.shared.segments.lock();
        let mut removed = 0;
        while segments.len() > 1 && segments[1].0 <= lsn {
            let path = segments[0].1.clone();
            match self.storage.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io(&path, 0, e)),
            }
            segments.remove(0);
            removed += 1;
        }
        drop(segments);
        if removed > 0 {
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io(&self.dir, 0, e))?;
        }
        Ok(removed)
    }

    /// Stops accepting, writes and syncs everything already appended, and
    /// joins the writer thread. Errors: `Failed` if the log had failed;
    /// `DiskFull` if the disk was still full (the records not written got
    /// `DiskFull` too; none of them had been acknowledged).
    pub fn close(mut self) -> Result<(), WalError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), WalError> {
        // Requests first, so the writer's last drain ends; then the
        // shutdown signal, which cuts a disk-full backoff short.
        drop(self.requests.take());
        drop(self.shutdown.take());
        match self.writer.take() {
            None => Ok(()),
            Some(writer) => writer
                .join()
                .unwrap_or_else(|_| Err(WalError::Failed("the log writer thread panicked".into()))),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            warn!(%error, "log dropped without close; closing it reported an error");
        }
    }
}
