//! The write-ahead log: append-only segment files of framed records, made
//! durable by group commit before anything is acknowledged (ENGINE.md,
//! "Durability and recovery").
//!
//! The log is bytes-level: callers hand it opaque payloads and do their own
//! encoding and format versioning. It promises:
//!
//! - a record's callback reports `Ok(lsn)` only after the record is on disk
//!   (`fdatasync`), and records become durable in append order;
//! - one writer thread batches whatever is queued into one write and one
//!   fsync (`writer`): no timers, batches grow with load;
//! - at `open`, a torn tail (the partial last write of a crash) is cut with a
//!   warning naming segment and offset; anything else that does not check
//!   is corruption and stops startup, until the operator runs [`repair`]
//!   (`scan` holds the rule);
//! - a failed fsync stops the log for good (fail-stop); a full disk pauses
//!   it (status `DiskFull`) and the same batch is retried until space is freed;
//! - no panic on anything the disk can influence: every size read from disk
//!   is bounded and every error names the file and offset.
//!
//! Decisions where the contract is silent:
//!
//! - Segments are created under a temporary name, synced, then renamed, so
//!   a segment file always has a durable, valid header; a bad header is
//!   therefore corruption, never a crash artefact (`segment`).
//! - Zeros where a frame header should be end the log only if nothing but
//!   zeros follows in the segment; otherwise that position is a bad frame
//!   (a lost write in the middle of the log must not pass for its end).
//! - The byte-by-byte search for a valid frame after a bad one is bounded
//!   (256 MiB checksummed); past that, the bad frame counts as corruption.
//! - A cut (torn tail at `open`, undo of a partial write on a full disk,
//!   `repair`) truncates the segment and extends it back: zeros, without
//!   needing free space, so no old bytes can later be misread as frames.
//! - `open` fdatasyncs the last segment: records a crashed process left in
//!   the page cache are about to count as durable.
//! - A file `NEWEST` names the newest segment, written before any record
//!   goes into it, so that a missing newest segment (a log that would
//!   otherwise look whole and end early) stops startup like a gap
//!   (`newest`).
//! - Closing while the disk is full gives up after one more attempt: the
//!   unwritten records (acknowledged to no one) get `DiskFull`.
//! - A panicking callback is caught and logged; the log carries on.
//! - `FsyncPolicy::Never` still syncs once, at `close`.
//!
//! Known limits of format version 1: frames carry no LSN, so (a) if a crash
//! persists the pages of the last batch out of order, leaving a hole before
//! a whole frame, `open` reports corruption rather than a torn tail, and
//! (b) a payload that itself contains a valid frame, torn mid-write, does
//! too. Both fail safe (startup stops; `repair` cuts with a backup; no
//! acknowledged record is affected, since the torn batch was never synced).
//!
//! Modules, one job each: `format` (bytes on disk), `storage` (the file
//! operations, and [`faults`] to break them in tests), `segment`
//! (durable creation), `newest` (the record of the newest segment), `scan` (what the bytes are), `recovery` (open
//! and replay), `writer` (group commit), `log` (the handle), `tools`
//! (verify, repair).

mod config;
mod error;
pub mod faults;
mod format;
mod log;
mod newest;
mod recovery;
mod scan;
mod segment;
mod spare;
mod storage;
mod tools;
mod writer;

pub use config::{
    DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_RECORDS, DEFAULT_SEGMENT_SIZE, FsyncPolicy, Lsn,
    MAX_RECORD, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, WalConfig,
};
pub use error::{ReplayError, WalError, WalStatus};
pub use format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
pub use log::Wal;
pub use recovery::Recovery;
pub use scan::{SegmentInfo, TornTail};
pub use storage::{FsStorage, Storage, StorageFile};
pub use tools::{
    Problem, ProblemKind, RepairReport, Truncation, VerifyReport, repair, set_aside, verify,
};
pub use writer::WalStats;
