//! Durability: the write-ahead log, snapshots and recovery. Knows files and
//! the engine's state and event types; knows no HTTP.
//!
//! [`wal`] is the write-ahead log: bytes-level, group-committed, fail-stop
//! on fsync failure, with offline `verify` and `repair`. [`snapshot`] is the
//! snapshot file: checked frames of MessagePack written atomically, and the
//! directory's naming and retention. What goes into a snapshot, and how
//! recovery combines the two, is the gateway's (`image`, `recovery`).

pub use settle_engine as engine;

pub mod background;
pub mod snapshot;
pub mod wal;

pub use wal::{
    FsStorage, FsyncPolicy, Lsn, MAX_RECORD, Recovery, ReplayError, Storage, TornTail, Wal,
    WalConfig, WalError, WalStats, WalStatus, repair, set_aside, verify,
};
