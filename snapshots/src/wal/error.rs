//! The log's errors and status. Every error the disk can cause names the
//! file and the byte offset, because the operator's next step (`settle wal
//! verify`, `repair`, a look with a hex editor, freeing space) starts there.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::config::{Lsn, MAX_RECORD};

/// What went wrong, and where.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O call failed. `segment` is the segment file (or the directory,
    /// for directory operations); `offset` the byte offset in it (0 when the
    /// operation has none).
    Io {
        /// The file or directory.
        segment: PathBuf,
        /// The byte offset of the operation.
        offset: u64,
        /// The OS's error.
        source: io::Error,
    },
    /// The bytes on disk are not a valid log at this place, and it is not a
    /// torn tail: `open` refuses to start; `repair` can cut the log here.
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// The byte offset of the bad frame or header field.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The disk is full. The writer keeps the batch and retries; callers
    /// only see this error when the log is closed while the disk is full.
    DiskFull {
        /// The file being written or created.
        segment: PathBuf,
        /// Where the write began.
        offset: u64,
    },
    /// The log stopped after a failed fsync or write (fail-stop): nothing
    /// more is written until the process restarts and recovers.
    Failed(String),
    /// A payload of this many bytes cannot be a record (1..=16 MiB).
    RecordSize {
        /// The payload's length.
        len: usize,
    },
    /// The log is closed.
    Closed,
    /// The configuration is outside the limits.
    Config(String),
}

impl WalError {
    pub(crate) fn io(segment: &Path, offset: u64, source: io::Error) -> Self {
        WalError::Io {
            segment: segment.to_path_buf(),
            offset,
            source,
        }
    }

    pub(crate) fn corrupt(segment: &Path, offset: u64, reason: impl Into<String>) -> Self {
        WalError::Corrupt {
            segment: segment.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// The file and offset this error names, if it names one.
    pub fn place(&self) -> Option<(&Path, u64)> {
        match self {
            WalError::Io {
                segment, offset, ..
            }
            | WalError::Corrupt {
                segment, offset, ..
            }
            | WalError::DiskFull { segment, offset } => Some((segment, *offset)),
            _ => None,
        }
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io {
                segment,
                offset,
                source,
            } => {
                write!(
                    f,
                    "I/O error on {} at offset {offset}: {source}",
                    segment.display()
                )
            }
            WalError::Corrupt {
                segment,
                offset,
                reason,
            } => write!(
                f,
                "log corrupt in {} at offset {offset}: {reason} (run `settle wal verify`; \
                 `settle wal repair` cuts the log there, keeping a backup)",
                segment.display()
            ),
            WalError::DiskFull { segment, offset } => {
                write!(
                    f,
                    "disk full writing {} at offset {offset}",
                    segment.display()
                )
            }
            WalError::Failed(reason) => write!(f, "log failed (fail-stop): {reason}"),
            WalError::RecordSize { len } => {
                write!(
                    f,
                    "record of {len} bytes refused: payloads must be 1..={MAX_RECORD} bytes"
                )
            }
            WalError::Closed => f.write_str("log closed"),
            WalError::Config(reason) => write!(f, "invalid log configuration: {reason}"),
        }
    }
}

impl Error for WalError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Whether the log takes writes. The engine refuses client writes (503)
/// unless it is `Ok`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalStatus {
    /// Writing.
    Ok,
    /// A write hit a full disk: the writer retries the same batch with
    /// backoff until it succeeds; appends queue behind it.
    DiskFull,
    /// Fail-stopped, with the reason. Every append fails.
    Failed(String),
}

/// A failed [`Recovery::replay`](super::Recovery::replay).
#[derive(Debug)]
pub enum ReplayError<E> {
    /// Reading the log failed, or it changed since `open` checked it.
    Wal(WalError),
    /// `from` is outside the log: records before `first_lsn` were removed
    /// (compaction), or `from` is past its end (the log lost records the
    /// caller believes exist).
    OutOfRange {
        /// The position asked for.
        from: Lsn,
        /// The first record in the log.
        first_lsn: Lsn,
        /// One past the last record.
        next_lsn: Lsn,
    },
    /// The caller's function failed on the record at `lsn`.
    Apply {
        /// The record's position.
        lsn: Lsn,
        /// The caller's error.
        source: E,
    },
}

impl<E: fmt::Display> fmt::Display for ReplayError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Wal(e) => write!(f, "replay: {e}"),
            ReplayError::OutOfRange {
                from,
                first_lsn,
                next_lsn,
            } => write!(
                f,
                "replay from LSN {from} impossible: the log holds records {first_lsn}..{next_lsn} \
                 (exclusive)"
            ),
            ReplayError::Apply { lsn, source } => write!(f, "replay of LSN {lsn} failed: {source}"),
        }
    }
}

impl<E: Error + 'static> Error for ReplayError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ReplayError::Wal(e) => Some(e),
            ReplayError::OutOfRange { .. } => None,
            ReplayError::Apply { source, .. } => Some(source),
        }
    }
}

/// Is this the disk (or quota) being full? Those errors are retried; every
/// other write error stops the log.
pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_place() {
        let e = WalError::corrupt(Path::new("/d/00000000000000000001.wal"), 4096, "bad crc");
        let text = e.to_string();
        assert!(text.contains("/d/00000000000000000001.wal"), "{text}");
        assert!(text.contains("offset 4096"), "{text}");
        assert_eq!(
            e.place(),
            Some((Path::new("/d/00000000000000000001.wal"), 4096))
        );

        let io = WalError::io(Path::new("/d/x.wal"), 7, io::Error::other("boom"));
        assert!(io.to_string().contains("/d/x.wal at offset 7: boom"));
        assert!(io.source().is_some());
    }

    #[test]
    fn disk_full_kinds() {
        assert!(is_disk_full(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(is_disk_full(&io::Error::from_raw_os_error(28))); // ENOSPC on Linux
        assert!(!is_disk_full(&io::Error::other("eio")));
    }
}
