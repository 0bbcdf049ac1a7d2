//! Snapshot files: the whole engine's state at a log position, so that
//! recovery is "newest good snapshot + log tail" and old log segments can
//! be removed.
//!
//! This module knows bytes and files, not the engine's types: the gateway
//! hands it MessagePack sections and a summary, and gets them back,
//! checked. The layout (see [`format`]):
//!
//! ```text
//! magic "SETLSNAP" | frame(header) | frame(section)* | frame(footer)
//! frame = len u32 LE | CRC32C(len ++ body) u32 LE | body = kind u8 ++ MessagePack
//! ```
//!
//! Each frame has its own checksum (a flipped bit is found and named), and
//! the footer holds the number of sections and a BLAKE3 hash of every
//! frame body before it (a file cut at a frame boundary, or with frames
//! reordered, does not pass). A file is written under a temporary name,
//! fsynced, renamed, and the directory fsynced: a file with a final name
//! is always complete.

mod dir;
mod format;
mod read;
mod reread;
mod write;

pub use dir::{
    SnapshotEntry, file_name, list, move_out, move_past, parse_name, prune, remove_temporaries,
    snapshot_dir,
};
pub use format::{AssetTotals, FORMAT_VERSION, SnapshotHeader, Summary};
pub use read::{SnapshotError, SnapshotFile, SnapshotStream, StreamedSection};
pub use reread::SnapshotReread;
pub use write::SnapshotWriter;
