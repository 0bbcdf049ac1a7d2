//! The spare segment: a file of zeros, written and synced ahead of time on
//! a thread of its own, that the writer names as its next segment when it
//! rotates.
//!
//! Why: a segment preallocated with `set_len` is sparse, so every
//! `fdatasync` on it also allocates the blocks it wrote and commits the
//! file system's metadata (ext4's journal). On blocks that were already
//! written, `fdatasync` only flushes data. Measured on this machine, one
//! 8 KiB write plus `fdatasync`: 148 µs of CPU (137 µs in the kernel) on a
//! sparse file against 83 µs on a zero-filled one, and about half the wall
//! time (BENCHMARKS.md, "Zero-filled log segments"). Zero-filling 64 MiB
//! at rotation would stall every append for the length of that write, so
//! it happens here, off the writer's path.
//!
//! A spare is named `spare-{n}.wal.tmp` ([`spare_name`]; `n` counts the
//! spares of this process): `open` removes it like an interrupted segment
//! creation, since it never holds records under that name. Each spare has
//! a name of its own so that the preparer can never touch the file the
//! writer is naming: a wake left in the channel may start the next spare
//! while the writer is still renaming the last one. If no spare is ready when the writer rotates (the
//! preparer is behind, the disk was full, the batch needs a bigger
//! segment), the writer creates a sparse segment as before: spares change
//! how fast a sync is, never what the log holds.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use tracing::warn;

use super::storage::{Storage, StorageFile};

/// The prefix and suffix of a spare's file name: `spare-{n}.wal.tmp`.
const SPARE_PREFIX: &str = "spare-";
const SPARE_SUFFIX: &str = ".wal.tmp";

/// The name of this process's `n`-th spare.
pub(crate) fn spare_name(n: u64) -> String {
    format!("{SPARE_PREFIX}{n}{SPARE_SUFFIX}")
}

/// Whether `name` is a spare's (any process's).
pub(crate) fn is_spare_name(name: &str) -> bool {
    name.strip_prefix(SPARE_PREFIX)
        .and_then(|rest| rest.strip_suffix(SPARE_SUFFIX))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Zeros are written, and synced, in pieces of this size (one buffer,
/// reused). Written whole and synced once, a 64 MiB spare went to the disk
/// in one burst, and the log's fsyncs in the meantime waited behind it: on
/// two cores at 12,000 requests/s each rotation showed as a second of
/// 20–30 ms client p99 (BENCHMARKS.md, "The spare segment, synced in
/// pieces"). A piece's sync also gives up the core, so the preparer never
/// holds one for long (it held one for up to 14 ms at a stretch).
const CHUNK: usize = 256 << 10;

/// A spare file, synced, of `size` bytes of zeros.
pub(crate) struct Spare {
    pub path: PathBuf,
    pub file: Box<dyn StorageFile>,
    pub size: u64,
}

/// What the writer and the preparer thread share.
#[derive(Default)]
struct Slot {
    ready: Mutex<Option<Spare>>,
    stop: AtomicBool,
}

/// The handle the writer holds. Dropping it stops the preparer (between two
/// chunks), waits for it, and removes an unused spare.
pub(crate) struct Spares {
    storage: Arc<dyn Storage>,
    slot: Arc<Slot>,
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Spares {
    /// Starts the preparer thread and asks it for a first spare of `size`
    /// bytes in `dir`. `None` (with a warning) if the thread cannot start:
    /// the log then works as without spares.
    pub(crate) fn start(storage: Arc<dyn Storage>, dir: &Path, size: u64) -> Option<Spares> {
        let slot = Arc::new(Slot::default());
        let (wake, woken) = crossbeam_channel::bounded(1);
        let preparer = Preparer {
            storage: Arc::clone(&storage),
            dir: dir.to_path_buf(),
            size,
            slot: Arc::clone(&slot),
            woken,
        };
        let thread = std::thread::Builder::new()
            .name("settle-wal-spare".into())
            .spawn(move || {
                crate::background::lower_this_threads_priority("settle-wal-spare");
                preparer.run();
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                warn!(error = %e, "could not start the thread preparing log segments; creating them sparse");
                return None;
            }
        };
        let spares = Spares {
            storage,
            slot,
            wake: Some(wake),
            thread: Some(thread),
        };
        spares.prepare_next();
        Some(spares)
    }

    /// The ready spare, if there is one (never waits).
    pub(crate) fn take(&self) -> Option<Spare> {
        self.slot.ready.lock().take()
    }

    /// Asks for the next spare (once the last one was taken and renamed).
    pub(crate) fn prepare_next(&self) {
        if let Some(wake) = &self.wake {
            // Full means a request is already pending: one is enough.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.slot.stop.store(true, Ordering::Release);
        self.wake = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the thread preparing log segments panicked");
        }
        // Leave only segments behind a closed log (a leftover would be
        // removed by the next open anyway).
        if let Some(spare) = self.slot.ready.lock().take() {
            let _ = self.storage.remove(&spare.path);
        }
    }
}

/// The preparer thread's side.
struct Preparer {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    size: u64,
    slot: Arc<Slot>,
    woken: Receiver<()>,
}

impl Preparer {
    fn run(self) {
        let zeros = vec![0u8; CHUNK];
        let mut warned = false;
        let mut made = 0u64;
        while self.woken.recv().is_ok() {
            if self.stopping() || self.slot.ready.lock().is_some() {
                continue;
            }
            let path = self.dir.join(spare_name(made));
            made += 1;
            match self.prepare(&path, &zeros) {
                Ok(Some(spare)) => {
                    *self.slot.ready.lock() = Some(spare);
                    warned = false;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = self.storage.remove(&path);
                    if !warned {
                        warn!(
                            file = %path.display(),
                            error = %e,
                            "could not prepare a spare log segment; the next segment is created \
                             sparse (slower fsyncs), and the next rotation tries again"
                        );
                        warned = true;
                    }
                }
            }
        }
    }

    fn stopping(&self) -> bool {
        self.slot.stop.load(Ordering::Acquire)
    }

    /// Writes the spare at `path` (a new name: `create` refuses an existing
    /// file); `None` if asked to stop midway (the file removed).
    fn prepare(&self, path: &Path, zeros: &[u8]) -> io::Result<Option<Spare>> {
        let file = self.storage.create(path, 0)?;
        let mut offset = 0u64;
        while offset < self.size {
            if self.stopping() {
                drop(file);
                let _ = self.storage.remove(path);
                return Ok(None);
            }
            let left = usize::try_from(self.size - offset).unwrap_or(usize::MAX);
            let piece = zeros.get(..left.min(zeros.len())).unwrap_or(zeros);
            file.write_all_at(piece, offset)?;
            // Each piece goes to the disk before the next is written: the
            // log's own fsyncs, which share the disk, then wait behind at
            // most one piece instead of the whole file's writeback.
            file.sync_data()?;
            offset += piece.len() as u64;
        }
        file.sync_all()?;
        Ok(Some(Spare {
            path: path.to_path_buf(),
            file,
            size: self.size,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_names() {
        assert_eq!(spare_name(0), "spare-0.wal.tmp");
        assert!(is_spare_name(&spare_name(u64::MAX)));
        for other in [
            "spare-.wal.tmp",
            "spare-x.wal.tmp",
            "spare-1.wal",
            "spare.wal.tmp",
        ] {
            assert!(!is_spare_name(other), "{other}");
        }
    }
}
