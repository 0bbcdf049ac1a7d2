//! Creating segments durably, and the segment being appended to.
//!
//! A new segment is written under a temporary name (header, preallocation
//! with `set_len`), synced, renamed to `{first_lsn:020}.wal`, and the
//! directory synced. So a file with a segment's name always has a valid,
//! durable header: a crash mid-creation leaves only a `.wal.tmp` file
//! (holding no records), which `open` removes. That is why a bad header can
//! be treated as corruption rather than as a crash artefact.
//!
//! Preallocation (`set_len`) means later `fdatasync`s need not update the
//! file size (FACTS.md: cheaper), and zeros mark the end of the written log.
//! A spare (see `spare`) goes further: its zeros are written blocks, so
//! syncs on it need not allocate either; [`adopt_spare`] names one.

use std::io;
use std::path::{Path, PathBuf};

use super::config::Lsn;
use super::error::{WalError, is_disk_full};
use super::format;
use super::spare::Spare;
use super::storage::{Storage, StorageFile, remove_if_present};

/// The segment the writer appends to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub path: PathBuf,
    pub file: Box<dyn StorageFile>,
    pub first_lsn: Lsn,
    /// The file's (preallocated) size.
    pub size: u64,
    /// Where the next frame goes: everything before is durable (or written,
    /// under `FsyncPolicy::Never`), everything after is zeros.
    pub end: u64,
}

/// An error of a write or create: `DiskFull` if the disk is full (the caller
/// retries), `Io` otherwise.
pub(crate) fn write_error(path: &Path, offset: u64, error: io::Error) -> WalError {
    if is_disk_full(&error) {
        WalError::DiskFull {
            segment: path.to_path_buf(),
            offset,
        }
    } else {
        WalError::io(path, offset, error)
    }
}

/// Creates, preallocates and durably names the segment starting at
/// `first_lsn`. If a segment of that name exists (an empty last segment too
/// small for the next batch), it is replaced atomically by the rename.
/// Errors: `DiskFull` (retryable; nothing is left behind), `Io` (fatal:
/// a sync failed, or something other than space).
pub(crate) fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    first_lsn: Lsn,
    size: u64,
) -> Result<ActiveSegment, WalError> {
    let temp = dir.join(format::temp_name(first_lsn));
    remove_if_present(storage, &temp)?;
    let file = storage
        .create(&temp, size)
        .map_err(|e| write_error(&temp, 0, e))?;
    name_durably(storage, dir, &temp, file, first_lsn, size)
}

/// Makes a prepared spare (zeros, synced) the segment starting at
/// `first_lsn`: header written and synced, then renamed and the directory
/// synced, the same order as [`create_segment`]. On failure the spare is
/// removed (best effort); the caller may then create a segment instead.
pub(crate) fn adopt_spare(
    storage: &dyn Storage,
    dir: &Path,
    spare: Spare,
    first_lsn: Lsn,
) -> Result<ActiveSegment, WalError> {
    name_durably(storage, dir, &spare.path, spare.file, first_lsn, spare.size)
}

/// Writes the header into `file` (created as `temp`), syncs it, renames it
/// to the segment's name and syncs the directory: in that order, so a file
/// with a segment's name always has a durable, valid header. On failure
/// `temp` is removed, best effort: it holds no records, and the next
/// attempt (or `open`) removes a leftover anyway.
fn name_durably(
    storage: &dyn Storage,
    dir: &Path,
    temp: &Path,
    file: Box<dyn StorageFile>,
    first_lsn: Lsn,
    size: u64,
) -> Result<ActiveSegment, WalError> {
    let path = dir.join(format::segment_name(first_lsn));
    let named = file
        .write_all_at(&format::encode_header(first_lsn), 0)
        .map_err(|e| write_error(temp, 0, e))
        .and_then(|()| file.sync_all().map_err(|e| WalError::io(temp, 0, e)))
        .and_then(|()| {
            storage
                .rename(temp, &path)
                .map_err(|e| write_error(&path, 0, e))
        })
        .and_then(|()| storage.sync_dir(dir).map_err(|e| WalError::io(dir, 0, e)));
    if let Err(error) = named {
        let _ = storage.remove(temp);
        return Err(error);
    }
    Ok(ActiveSegment {
        path,
        file,
        first_lsn,
        size,
        end: format::SEGMENT_HEADER_LEN,
    })
}
