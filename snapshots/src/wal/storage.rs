//! The few file operations the log needs, behind a trait, so tests can put
//! [`FaultyStorage`](super::faults::FaultyStorage) in front of the real
//! files and make fsyncs fail, disks fill up and writes tear at chosen bytes.
//!
//! The set is deliberately small: positional reads and writes (no shared
//! cursor), `set_len` to preallocate and to cut, the two syncs, and the
//! directory operations a durable create or remove needs (rename, remove,
//! fsync of the directory).

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use super::error::WalError;
use std::path::Path;

/// The file system, as the log uses it.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents if absent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// Creates a new file (failing if it exists) of `len` bytes (zeros, a
    /// sparse preallocation), open for reading and writing.
    fn create(&self, path: &Path, len: u64) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading and writing (appending).
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading only.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Removes `path` if it is there (a leftover of an interrupted attempt):
/// `true` if it was.
pub(crate) fn remove_if_present(storage: &dyn Storage, path: &Path) -> Result<bool, WalError> {
    match storage.remove(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(WalError::io(path, 0, e)),
    }
}

/// An open file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// The file's size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; fails if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`. On error, an unknown prefix of
    /// `buf` may have reached the file.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: the data, and the metadata needed to read it back.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: the data and all metadata.
    fn sync_all(&self) -> io::Result<()>;
}

/// Real files, through `std::fs` (Unix: positional I/O via `FileExt`).
#[derive(Clone, Copy, Debug, Default)]
pub struct FsStorage;

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn create(&self, path: &Path, len: u64) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        if len > 0 {
            file.set_len(len)?;
        }
        Ok(Box::new(FsFile(file)))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FsFile(
            OpenOptions::new().read(true).write(true).open(path)?,
        )))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FsFile(File::open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A real file.
#[derive(Debug)]
struct FsFile(File);

impl StorageFile for FsFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_storage_basics() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        let sub = dir.path().join("a/b");
        storage.create_dir_all(&sub).unwrap();
        let path = sub.join("f");
        let file = storage.create(&path, 100).unwrap();
        assert_eq!(file.size().unwrap(), 100);
        assert!(
            storage.create(&path, 100).is_err(),
            "create never replaces a file"
        );
        file.write_all_at(b"abc", 10).unwrap();
        file.sync_data().unwrap();
        let mut buf = [0u8; 5];
        storage
            .open_read(&path)
            .unwrap()
            .read_exact_at(&mut buf, 9)
            .unwrap();
        assert_eq!(&buf, b"\0abc\0");
        assert!(
            storage
                .open_read(&path)
                .unwrap()
                .read_exact_at(&mut buf, 98)
                .is_err()
        );
        storage.rename(&path, &sub.join("g")).unwrap();
        assert_eq!(storage.list(&sub).unwrap(), vec![OsString::from("g")]);
        storage.sync_dir(&sub).unwrap();
        storage.remove(&sub.join("g")).unwrap();
        assert!(storage.list(&sub).unwrap().is_empty());
    }
}
