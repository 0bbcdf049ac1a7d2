//! Durability: the write-ahead log, snapshots and recovery. Knows files and
//! the engine's state and event types; knows no HTTP.
//!
//! [`wal`] is the write-ahead log (issue 5): bytes-level, group-committed,
//! fail-stop on fsync failure, with offline `verify` and `repair`. Snapshots
//! (issue 6) come next; the crate already depends on `engine` for them.

pub use settle_engine as engine;

pub mod wal;

pub use wal::{
    FsStorage, FsyncPolicy, Lsn, MAX_RECORD, Recovery, ReplayError, Storage, TornTail, Wal,
    WalConfig, WalError, WalStats, WalStatus, repair, verify,
};
