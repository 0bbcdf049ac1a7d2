//! What `open` does before the first append: scan the directory, cut a torn
//! tail durably, remove half-created segments, make whatever a crashed
//! process left in the page cache durable, and hand back a [`Recovery`] to
//! replay from.
//!
//! Replay reads each segment front to back in 1 MiB sequential reads into
//! one reused buffer and hands the caller `&[u8]` slices of it: no
//! allocation per record, and every frame's checksum is checked again (the
//! disk may have changed since `open` looked).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::config::{Lsn, MAX_RECORD, WalConfig};
use super::error::{ReplayError, WalError};
use super::format::{self, Frame, SEGMENT_HEADER_BYTES};
use super::newest;
use super::scan::{self, SegmentInfo, Stop, TornTail};
use super::segment::{self, ActiveSegment};
use super::storage::{Storage, StorageFile};

/// What `open` found: the records to replay and what it cut.
pub struct Recovery {
    /// The first record in the log (1, or later after compaction). Equal to
    /// `next_lsn` if the log is empty.
    pub first_lsn: Lsn,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// The torn tail `open` cut, if any (also logged as a warning).
    pub torn_tail: Option<TornTail>,
    /// The segments holding the records, in LSN order.
    pub segments: Vec<SegmentInfo>,
    storage: Arc<dyn Storage>,
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("first_lsn", &self.first_lsn)
            .field("next_lsn", &self.next_lsn)
            .field("torn_tail", &self.torn_tail)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

impl Recovery {
    /// Reads a log without changing it (the offline tools): the valid
    /// records up to a torn tail, if there is one. Corruption before the
    /// tail is an error, as for `open`. The server must be stopped: a log
    /// being written may change under the reader.
    pub fn read_only(storage: Arc<dyn Storage>, dir: &Path) -> Result<Recovery, WalError> {
        let mut scan = scan::scan_dir(storage.as_ref(), dir);
        let torn_tail = match scan.stop.take() {
            None => None,
            Some(Stop::Torn(torn)) => Some(torn),
            Some(Stop::Broken(error)) => return Err(error),
        };
        Ok(Recovery {
            first_lsn: scan.first_lsn(),
            next_lsn: scan.next_lsn(),
            torn_tail,
            segments: std::mem::take(&mut scan.segments),
            storage,
        })
    }

    pub(crate) fn over(
        storage: Arc<dyn Storage>,
        first_lsn: Lsn,
        next_lsn: Lsn,
        segments: Vec<SegmentInfo>,
    ) -> Recovery {
        Recovery {
            first_lsn,
            next_lsn,
            torn_tail: None,
            segments,
            storage,
        }
    }

    /// Records in the log.
    pub fn records(&self) -> u64 {
        self.next_lsn - self.first_lsn
    }

    /// Calls `f` for each record from `from` (inclusive) to the end, in
    /// order. `from` must lie in `first_lsn..=next_lsn` (`next_lsn`: nothing
    /// to replay); otherwise records the caller needs are not in the log,
    /// and the answer is [`ReplayError::OutOfRange`].
    ///
    /// Replay reads the segments `open` found; call it before removing
    /// segments with [`Wal::remove_segments_before`](super::Wal::remove_segments_before).
    pub fn replay<E>(
        &self,
        from: Lsn,
        f: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<(), ReplayError<E>> {
        self.replay_range(from, Lsn::MAX, f)
    }

    /// As [`replay`](Self::replay), but stops after the record at `until`
    /// (inclusive; point-in-time recovery and snapshots).
    pub fn replay_range<E>(
        &self,
        from: Lsn,
        until: Lsn,
        mut f: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<(), ReplayError<E>> {
        if from < self.first_lsn || from > self.next_lsn {
            return Err(ReplayError::OutOfRange {
                from,
                first_lsn: self.first_lsn,
                next_lsn: self.next_lsn,
            });
        }
        let mut buf = Vec::new();
        for segment in &self.segments {
            if segment.first_lsn > until {
                break;
            }
            let stop = (segment.first_lsn + segment.records).min(until.saturating_add(1));
            if stop <= from {
                continue;
            }
            let path = &segment.path;
            let file = self
                .storage
                .open_read(path)
                .map_err(|e| ReplayError::Wal(WalError::io(path, 0, e)))?;
            let mut reader = ChunkReader::new(file.as_ref(), segment, &mut buf);
            for lsn in segment.first_lsn..stop {
                let payload = reader.next_record(lsn).map_err(ReplayError::Wal)?;
                if lsn >= from {
                    f(lsn, payload).map_err(|source| ReplayError::Apply { lsn, source })?;
                }
            }
        }
        Ok(())
    }
}

/// Bytes read per call while replaying: big sequential reads, into a
/// buffer small enough to stay in cache while its checksums are checked.
const CHUNK: usize = 1 << 20;

/// Reads a segment's frames front to back in `CHUNK`-sized reads into one
/// reused buffer (grown only for a record larger than a chunk).
struct ChunkReader<'a> {
    file: &'a dyn StorageFile,
    segment: &'a SegmentInfo,
    buf: &'a mut Vec<u8>,
    /// `buf[start..filled]` holds the file's bytes from `offset`.
    start: usize,
    filled: usize,
    offset: u64,
}

impl<'a> ChunkReader<'a> {
    fn new(file: &'a dyn StorageFile, segment: &'a SegmentInfo, buf: &'a mut Vec<u8>) -> Self {
        if buf.len() < CHUNK {
            buf.resize(CHUNK, 0);
        }
        ChunkReader {
            file,
            segment,
            buf,
            start: 0,
            filled: 0,
            offset: 0,
        }
    }

    /// The payload of the next record (the one at `lsn`); the first call
    /// also skips the segment header.
    fn next_record(&mut self, lsn: Lsn) -> Result<&[u8], WalError> {
        if self.offset == 0 && self.filled == 0 {
            self.fill(SEGMENT_HEADER_BYTES, lsn)?;
            self.consume(SEGMENT_HEADER_BYTES);
        }
        let at = self.offset;
        self.fill(8, lsn)?;
        let header = &self.buf[self.start..self.start + 4];
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len == 0 || len > MAX_RECORD {
            return Err(self.changed(lsn, at));
        }
        self.fill(8 + len, lsn)?;
        let frame = self.start..self.start + 8 + len;
        self.consume(8 + len);
        match format::read_frame(&self.buf[frame.clone()], 0) {
            Frame::Record(_) => Ok(&self.buf[frame.start + 8..frame.end]),
            _ => Err(self.changed(lsn, at)),
        }
    }

    /// Makes `buf[start..]` hold at least `need` bytes.
    fn fill(&mut self, need: usize, lsn: Lsn) -> Result<(), WalError> {
        if self.filled - self.start >= need {
            return Ok(());
        }
        if self.buf.len() - self.start < need {
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
            if self.buf.len() < need {
                self.buf.resize(need, 0);
            }
        }
        let file_pos = self.offset + (self.filled - self.start) as u64;
        let left = usize::try_from(self.segment.end.saturating_sub(file_pos)).unwrap_or(usize::MAX);
        let want = (self.buf.len() - self.filled).min(left);
        if self.filled - self.start + want < need {
            return Err(self.changed(lsn, self.offset));
        }
        let target = &mut self.buf[self.filled..self.filled + want];
        self.file
            .read_exact_at(target, file_pos)
            .map_err(|e| WalError::io(&self.segment.path, file_pos, e))?;
        self.filled += want;
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    fn changed(&self, lsn: Lsn, offset: u64) -> WalError {
        WalError::corrupt(
            &self.segment.path,
            offset,
            format!(
                "the record at LSN {lsn} no longer reads back: the segment changed since the log was opened"
            ),
        )
    }
}

/// What `open` hands the writer.
pub(crate) struct Recovered {
    pub recovery: Recovery,
    pub active: ActiveSegment,
    /// (first LSN, path) of every segment, in order; the last is `active`.
    pub segments: Vec<(Lsn, std::path::PathBuf)>,
}

/// Scans `config.dir` and prepares it for appending (see the module doc).
pub(crate) fn recover(
    storage: &Arc<dyn Storage>,
    config: &WalConfig,
) -> Result<Recovered, WalError> {
    let dir = config.dir.as_path();
    storage
        .create_dir_all(dir)
        .map_err(|e| WalError::io(dir, 0, e))?;
    let mut scan = scan::scan_dir(storage.as_ref(), dir);
    let torn_tail = match scan.stop.take() {
        None => None,
        Some(Stop::Broken(error)) => return Err(error),
        Some(Stop::Torn(torn)) => Some(torn),
    };
    for name in &scan.others {
        warn!(dir = %dir.display(), file = ?name, "ignoring a file that is not a log segment");
    }
    for temp in &scan.temp_files {
        storage.remove(temp).map_err(|e| WalError::io(temp, 0, e))?;
        info!(file = %temp.display(), "removed an unfinished segment file (an interrupted creation or an unused spare; it held no records)");
    }

    let active = match scan.segments.last() {
        None => {
            segment::create_segment(storage.as_ref(), dir, config.first_lsn, config.segment_size)?
        }
        Some(last) => {
            let path = &last.path;
            let file = storage
                .open_write(path)
                .map_err(|e| WalError::io(path, 0, e))?;
            if let Some(torn) = &torn_tail {
                cut_tail(file.as_ref(), path, torn.offset, last.size)?;
                warn!(
                    segment = %path.display(),
                    offset = torn.offset,
                    bytes_cut = torn.bytes_cut,
                    reason = %torn.reason,
                    "cut a torn tail from the log (a write the previous process did not finish)"
                );
            } else {
                // A crashed process may have left written but unsynced
                // records in the page cache; they are about to count as
                // durable, so make them so.
                file.sync_data()
                    .map_err(|e| WalError::io(path, last.end, e))?;
            }
            ActiveSegment {
                path: path.clone(),
                file,
                first_lsn: last.first_lsn,
                size: last.size,
                end: last.end,
            }
        }
    };
    storage.sync_dir(dir).map_err(|e| WalError::io(dir, 0, e))?;
    // A log from before `NEWEST`, a new one, or a crash between naming a
    // segment and recording it: record the segment the writer goes on in.
    // (One naming a segment that is not here stopped the scan above.)
    // On a full disk the log still opens (its writes wait for space like
    // any other); the next rotation records its segment.
    if newest::read(storage.as_ref(), dir)? != Some(active.first_lsn) {
        match newest::record(storage.as_ref(), dir, active.first_lsn) {
            Ok(()) => {}
            Err(WalError::DiskFull { .. }) => warn!(
                dir = %dir.display(),
                "the disk is full: NEWEST does not name the newest segment yet (the next one is \
                 recorded as it is created)"
            ),
            Err(e) => return Err(e),
        }
    }

    let mut segments: Vec<_> = scan
        .segments
        .iter()
        .map(|s| (s.first_lsn, s.path.clone()))
        .collect();
    if segments.is_empty() {
        segments.push((active.first_lsn, active.path.clone()));
    }
    // An empty directory's log starts where the configuration says.
    let (first_lsn, next_lsn) = if scan.segments.is_empty() {
        (active.first_lsn, active.first_lsn)
    } else {
        (scan.first_lsn(), scan.next_lsn())
    };
    let recovery = Recovery {
        first_lsn,
        next_lsn,
        torn_tail,
        segments: scan.segments,
        storage: Arc::clone(storage),
    };
    Ok(Recovered {
        recovery,
        active,
        segments,
    })
}

/// Cuts a segment at `offset`: everything from there on becomes zeros
/// (truncate, then extend back to the preallocated size), durably, so that
/// new appends overwrite the cut bytes and none of them can ever be read as
/// a frame after a later, shorter write. Truncation needs no free space.
pub(crate) fn cut_tail(
    file: &dyn StorageFile,
    path: &Path,
    offset: u64,
    size: u64,
) -> Result<(), WalError> {
    file.set_len(offset)
        .map_err(|e| WalError::io(path, offset, e))?;
    file.set_len(size)
        .map_err(|e| WalError::io(path, offset, e))?;
    file.sync_all().map_err(|e| WalError::io(path, offset, e))
}
