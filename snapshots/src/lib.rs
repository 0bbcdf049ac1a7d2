//! Durability: the write-ahead log, snapshots and recovery. Knows files and
//! the engine's state and event types; knows no HTTP.
//!
//! Built by issues 5 (log) and 6 (snapshots); today it only pins the crate
//! graph: `snapshots` depends on `engine`.

pub use settle_engine as engine;
