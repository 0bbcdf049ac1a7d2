//! Fault injection for the log's tests: [`FaultyStorage`] is the real file
//! system ([`FsStorage`]) with switches a test flips while the log runs.
//!
//! - fsync fails: once, or from the n-th sync on (the log must fail-stop and
//!   never retry, whatever later syncs would do);
//! - the disk fills up after N more bytes (the write that crosses the limit
//!   writes its first bytes, then fails with `StorageFull`, like a real
//!   partial write), until the test frees space;
//! - a write tears: only its first K bytes reach the file, then the process
//!   "dies": that call and every later one fails, so the test drops the log
//!   and reopens the directory, as a restart would;
//! - syncs pause until resumed, so a test can hold the writer inside one
//!   batch while it queues the next (deterministic batch boundaries).
//!
//! It is compiled in the library (not only under `cfg(test)`) so that
//! integration tests, benches and the binary's own tests can use it.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::storage::{FsStorage, Storage, StorageFile};

/// The real file system with injectable faults. Every sync (file or
/// directory) counts as one sync for the sync faults.
#[derive(Debug, Default)]
pub struct FaultyStorage {
    inner: FsStorage,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    syncs: u64,
    fail_next_sync: bool,
    fail_syncs_from: Option<u64>,
    space_left: Option<u64>,
    tear_next_write: Option<usize>,
    dead: bool,
    paused: bool,
    waiting: usize,
    bytes_written: u64,
}

impl FaultyStorage {
    /// No faults armed: behaves as [`FsStorage`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The next sync fails; later ones succeed again.
    pub fn fail_next_sync(&self) {
        self.faults.state.lock().fail_next_sync = true;
    }

    /// The `nth` sync from now (1 = the next one) fails, and every one after it.
    pub fn fail_syncs_from(&self, nth: u64) {
        let mut state = self.faults.state.lock();
        state.fail_syncs_from = Some(state.syncs + nth.max(1));
    }

    /// After `bytes` more bytes are written, writes fail with `StorageFull`
    /// (the crossing write is partial) and creating files fails too.
    pub fn disk_full_after(&self, bytes: u64) {
        self.faults.state.lock().space_left = Some(bytes);
    }

    /// The operator freed space: writes succeed again.
    pub fn free_space(&self) {
        self.faults.state.lock().space_left = None;
    }

    /// The next write stores only its first `keep` bytes, then the process
    /// "dies": that call and every later call fails.
    pub fn tear_next_write(&self, keep: usize) {
        self.faults.state.lock().tear_next_write = Some(keep);
    }

    /// Whether a torn write has "killed" this storage.
    pub fn is_dead(&self) -> bool {
        self.faults.state.lock().dead
    }

    /// Syncs block until [`resume_syncs`](Self::resume_syncs).
    pub fn pause_syncs(&self) {
        self.faults.state.lock().paused = true;
    }

    /// Lets paused syncs go on.
    pub fn resume_syncs(&self) {
        self.faults.state.lock().paused = false;
        self.faults.changed.notify_all();
    }

    /// Waits until a sync is blocked by [`pause_syncs`](Self::pause_syncs);
    /// false if none is within `timeout`.
    pub fn wait_for_paused_sync(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.faults.state.lock();
        while state.waiting == 0 {
            if self
                .faults
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return state.waiting > 0;
            }
        }
        true
    }

    /// Syncs attempted so far (file and directory).
    pub fn syncs(&self) -> u64 {
        self.faults.state.lock().syncs
    }

    /// Bytes that reached files so far.
    pub fn bytes_written(&self) -> u64 {
        self.faults.state.lock().bytes_written
    }
}

fn died() -> io::Error {
    io::Error::other("the process died after a torn write (injected fault)")
}

impl Faults {
    fn alive(&self) -> io::Result<()> {
        if self.state.lock().dead {
            Err(died())
        } else {
            Ok(())
        }
    }

    fn sync(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.state.lock();
        while state.paused && !state.dead {
            state.waiting += 1;
            self.changed.notify_all();
            self.changed.wait(&mut state);
            state.waiting -= 1;
        }
        if state.dead {
            return Err(died());
        }
        state.syncs += 1;
        if state.fail_next_sync {
            state.fail_next_sync = false;
            return Err(io::Error::other("fsync failed: I/O error (injected fault)"));
        }
        if state
            .fail_syncs_from
            .is_some_and(|from| state.syncs >= from)
        {
            return Err(io::Error::other(
                "fsync failed: I/O error (injected fault, persistent)",
            ));
        }
        drop(state);
        sync()
    }

    fn write(&self, file: &dyn StorageFile, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.dead {
            return Err(died());
        }
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if let Some(keep) = state.tear_next_write.take() {
            state.dead = true;
            let keep = keep.min(buf.len());
            state.bytes_written += u64::try_from(keep).unwrap_or(u64::MAX);
            drop(state);
            file.write_all_at(&buf[..keep], offset)?;
            return Err(died());
        }
        if let Some(left) = state.space_left {
            if len > left {
                state.space_left = Some(0);
                state.bytes_written += left;
                drop(state);
                let keep = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                file.write_all_at(&buf[..keep], offset)?;
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (injected fault)",
                ));
            }
            state.space_left = Some(left - len);
        }
        state.bytes_written += len;
        drop(state);
        file.write_all_at(buf, offset)
    }

    fn create_allowed(&self) -> io::Result<()> {
        let state = self.state.lock();
        if state.dead {
            return Err(died());
        }
        if state.space_left == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected fault)",
            ));
        }
        Ok(())
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.faults.alive()?;
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.faults.alive()?;
        self.inner.list(dir)
    }

    fn create(&self, path: &Path, len: u64) -> io::Result<Box<dyn StorageFile>> {
        self.faults.create_allowed()?;
        let inner = self.inner.create(path, len)?;
        Ok(Box::new(FaultyFile {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.faults.alive()?;
        let inner = self.inner.open_write(path)?;
        Ok(Box::new(FaultyFile {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.faults.alive()?;
        let inner = self.inner.open_read(path)?;
        Ok(Box::new(FaultyFile {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.alive()?;
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.alive()?;
        self.inner.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.sync(|| self.inner.sync_dir(dir))
    }
}

/// A file opened through [`FaultyStorage`].
#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn StorageFile>,
    faults: Arc<Faults>,
}

impl StorageFile for FaultyFile {
    fn size(&self) -> io::Result<u64> {
        self.faults.alive()?;
        self.inner.size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.faults.alive()?;
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.faults.write(self.inner.as_ref(), buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.alive()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.sync(|| self.inner.sync_data())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.faults.sync(|| self.inner.sync_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_as_armed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new();
        let file = storage.create(&dir.path().join("f"), 64).unwrap();

        storage.fail_next_sync();
        assert!(file.sync_data().is_err());
        assert!(file.sync_data().is_ok());
        storage.fail_syncs_from(2);
        assert!(file.sync_data().is_ok());
        assert!(file.sync_all().is_err());
        assert!(storage.sync_dir(dir.path()).is_err());

        storage.disk_full_after(5);
        file.write_all_at(b"abc", 0).unwrap();
        let err = file.write_all_at(b"defg", 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(storage.create(&dir.path().join("g"), 0).is_err());
        storage.free_space();
        let mut buf = [0u8; 6];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"abcde\0", "the crossing write is partial");

        storage.tear_next_write(2);
        assert!(file.write_all_at(b"xyz", 10).is_err());
        assert!(storage.is_dead());
        assert!(file.read_exact_at(&mut buf, 0).is_err());
        let mut tail = [0u8; 3];
        FsStorage
            .open_read(&dir.path().join("f"))
            .unwrap()
            .read_exact_at(&mut tail, 10)
            .unwrap();
        assert_eq!(&tail, b"xy\0");
    }

    #[test]
    fn paused_syncs_wait() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FaultyStorage::new());
        let file = storage.create(&dir.path().join("f"), 0).unwrap();
        storage.pause_syncs();
        let waiter = std::thread::spawn(move || file.sync_data());
        assert!(storage.wait_for_paused_sync(Duration::from_secs(5)));
        assert_eq!(storage.syncs(), 0);
        storage.resume_syncs();
        waiter.join().unwrap().unwrap();
        assert_eq!(storage.syncs(), 1);
    }
}
