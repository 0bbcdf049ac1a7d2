//! One process at a time on a data directory: two servers on one directory
//! would interleave their logs and lose acknowledged writes, and a tool
//! that repairs or reads a log while a server writes it would see it move.
//!
//! The lock is an exclusive `flock` on the directory itself. It used to be
//! on the `LOCK` file inside it, but a lock on a file is a lock on that
//! file's inode: an operator who took the empty file for a stale lock and
//! deleted it let a second server start beside the first, and both wrote
//! the same segment (found by testing from outside). A directory cannot be
//! deleted under a running server without deleting its data too. `LOCK`
//! is still written, locked as before (so that a build from before this one
//! sees the directory taken) and now says what it is.
//!
//! Opening a directory needs no write access, so the same lock is taken on
//! a backup mounted read-only (`settle wal verify`, `snapshot list`,
//! `restore --wal`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// The file named for operators; locked for builds that locked only it.
pub const LOCK_FILE: &str = "LOCK";

/// Held while a data directory is in use; released when dropped (or when
/// the process dies: the kernel drops `flock`s with their descriptors).
#[derive(Debug)]
pub struct DataLock {
    _dir: File,
    _file: Option<File>,
}

/// What a process does with the directory it locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Serves or writes it (`serve`, `restore`'s target, `wal repair`):
    /// created if need be (`serve`, `restore`), and `LOCK` written.
    Write { create: bool },
    /// Only reads it, possibly on a read-only mount: nothing is created.
    Read,
}

/// Locks `dir` for this process, or says who holds it.
pub fn lock(dir: &Path, usage: Use) -> Result<DataLock, String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "{} is not a directory (the data directory must be one)",
                dir.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if usage != (Use::Write { create: true }) {
                return Err(format!("no data directory at {}", dir.display()));
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        }
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    }
    let in_use = || {
        format!(
            "the data directory {} is in use by another settle process",
            dir.display()
        )
    };
    let handle = File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    handle.try_lock().map_err(|_| in_use())?;

    let path = dir.join(LOCK_FILE);
    let file = match usage {
        Use::Write { .. } => Some(
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        ),
        // A read-only mount cannot create it; an existing one is locked
        // through a read-only handle.
        Use::Read => match File::open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        },
    };
    if let Some(file) = &file {
        file.try_lock().map_err(|_| in_use())?;
    }
    if let (Use::Write { .. }, Some(mut file)) = (usage, file.as_ref()) {
        // Only what it is for, so that nobody deletes it as a leftover.
        // Best effort: the lock is held whether or not this is written.
        let note = format!(
            "locked by settle process {} while it uses this directory; \
             deleting this file does not release the lock\n",
            std::process::id()
        );
        let _ = file
            .set_len(0)
            .and_then(|()| file.write_all(note.as_bytes()));
    }
    Ok(DataLock {
        _dir: handle,
        _file: file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_even_after_the_lock_file_is_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = lock(&dir, Use::Write { create: true }).unwrap();
        let said = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert!(said.contains("does not release the lock"), "{said}");
        std::fs::remove_file(dir.join(LOCK_FILE)).unwrap();
        for usage in [Use::Write { create: true }, Use::Read] {
            let e = lock(&dir, usage).unwrap_err();
            assert!(e.contains("in use by another settle process"), "{e}");
        }
        drop(first);
        lock(&dir, Use::Read).unwrap();
    }

    #[test]
    fn a_lock_file_held_alone_still_refuses() {
        // A build from before the directory lock holds only the file.
        let tmp = tempfile::tempdir().unwrap();
        let file = File::create(tmp.path().join(LOCK_FILE)).unwrap();
        file.try_lock().unwrap();
        let e = lock(tmp.path(), Use::Read).unwrap_err();
        assert!(e.contains("in use"), "{e}");
    }

    #[test]
    fn a_missing_or_wrong_directory_is_said() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        assert!(
            lock(&missing, Use::Read)
                .unwrap_err()
                .contains("no data directory")
        );
        assert!(
            lock(&missing, Use::Write { create: false })
                .unwrap_err()
                .contains("no data directory")
        );
        assert!(!missing.exists(), "a reader created the directory");
        let file = tmp.path().join("afile");
        std::fs::write(&file, b"x").unwrap();
        let e = lock(&file, Use::Write { create: true }).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
    }
}
