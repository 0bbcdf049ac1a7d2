//! How a log is opened: its directory, segment size, fsync policy and batch
//! limits, and the fixed limits of the format. Everything the disk or a
//! caller can make large has an explicit bound here, checked at `open` or at
//! `append`, so no size is ever trusted without a limit.

use std::path::PathBuf;

use super::error::WalError;
use super::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Log sequence number: the position of a record. Records are numbered from
/// 1, contiguously across segments; 0 means "no record".
pub type Lsn = u64;

/// The largest payload one record may carry (16 MiB). A bigger `append`
/// fails at once with [`WalError::RecordSize`].
pub const MAX_RECORD: usize = 16 << 20;

/// The smallest segment size accepted: a header and a few small frames.
/// Real logs use megabytes; tests use tiny segments to rotate often.
pub const MIN_SEGMENT_SIZE: u64 = 128;

/// The largest segment size accepted (1 GiB). Segments are read whole at
/// recovery, so this also bounds the memory recovery needs. A segment file
/// larger than this (or than a lone maximal record needs) is refused as
/// corrupt rather than read.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;

/// The default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// Default cap on records in one group commit.
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 4096;

/// Default cap on bytes (frames) in one group commit: 8 MiB.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 << 20;

/// When the writer makes a batch durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` after every batch, before any callback runs. The only
    /// setting that keeps ENGINE.md's durability promise.
    #[default]
    Always,
    /// Never sync (the OS writes back when it likes; a power loss loses an
    /// unknown suffix). For benchmarks only: `open` logs a warning.
    Never,
}

/// How to open a log. `WalConfig::new(dir)` gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// The directory of the segment files (created if absent). Nothing else
    /// may write into it.
    pub dir: PathBuf,
    /// Size each new segment is preallocated to (a batch bigger than this
    /// gets a segment of its own size).
    pub segment_size: u64,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// Most records in one batch (one write, one fsync).
    pub max_batch_records: usize,
    /// Most frame bytes in one batch; a single record larger than this is
    /// still written, alone.
    pub max_batch_bytes: usize,
    /// The LSN of the first record of a log created in an empty directory
    /// (1 by default). A data directory restored from a snapshot at
    /// position P starts its log at P + 1, so LSNs go on where the
    /// snapshot's left off. Ignored when the directory holds segments.
    pub first_lsn: Lsn,
    /// Prepare the next segment ahead of time as a file of written zeros,
    /// on a thread of its own (`spare-{n}.wal.tmp`, one segment of extra disk):
    /// fsyncs on it then flush data only, without allocating blocks, which
    /// halves their cost here. Off by default, because the preparer's
    /// writes run beside the writer's and the fault-injection tests count
    /// file operations; `settle serve` turns it on.
    pub spare_segments: bool,
}

impl WalConfig {
    /// The defaults: 64 MiB segments, fsync always, batches of at most 4096
    /// records and 8 MiB.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            fsync: FsyncPolicy::Always,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            first_lsn: 1,
            spare_segments: false,
        }
    }

    /// Refuses settings outside the limits above.
    pub(crate) fn validate(&self) -> Result<(), WalError> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(WalError::Config(format!(
                "segment_size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        if self.max_batch_records == 0 {
            return Err(WalError::Config(
                "max_batch_records must be at least 1".into(),
            ));
        }
        if self.first_lsn == 0 || self.first_lsn > super::format::MAX_LSN {
            return Err(WalError::Config(format!(
                "first_lsn {} is outside 1..={}",
                self.first_lsn,
                super::format::MAX_LSN
            )));
        }
        if self.max_batch_bytes == 0 {
            return Err(WalError::Config(
                "max_batch_bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The bytes of frames one batch may hold: the configured cap, and no
    /// more than fits in a fresh segment (so batches do not force oversized
    /// segments; a lone record bigger than that still goes, alone).
    pub(crate) fn batch_byte_limit(&self) -> u64 {
        let cap = u64::try_from(self.max_batch_bytes).unwrap_or(u64::MAX);
        cap.min(self.segment_size.saturating_sub(SEGMENT_HEADER_LEN))
    }
}

/// The size of a frame carrying `payload_len` bytes.
pub(crate) fn frame_len(payload_len: usize) -> u64 {
    FRAME_HEADER_LEN + u64::try_from(payload_len).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        let config = WalConfig::new("/tmp/x");
        assert!(config.validate().is_ok());
        assert_eq!(config.batch_byte_limit(), 8 << 20);

        let mut small = config.clone();
        small.segment_size = MIN_SEGMENT_SIZE - 1;
        assert!(matches!(small.validate(), Err(WalError::Config(_))));
        small.segment_size = MAX_SEGMENT_SIZE + 1;
        assert!(matches!(small.validate(), Err(WalError::Config(_))));
        small.segment_size = 1024;
        assert_eq!(small.batch_byte_limit(), 1024 - SEGMENT_HEADER_LEN);
        small.max_batch_records = 0;
        assert!(matches!(small.validate(), Err(WalError::Config(_))));
    }
}
