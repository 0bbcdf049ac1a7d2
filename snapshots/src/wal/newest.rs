//! `NEWEST`: the file name of the log's newest segment, kept durably beside
//! the segments.
//!
//! A segment missing between two others shows as a gap in their LSNs, but
//! a missing *newest* segment leaves a log that looks whole and merely ends
//! early: the records it held, acknowledged to clients, would be lost
//! without a word (a partial copy of `wal/`, a file deleted by hand). So
//! the writer names each new segment here before any record goes into it
//! (written under a temporary name, synced, renamed over the old one, the
//! directory synced: it is always whole), and every scan checks that the
//! segment it names is there (`scan`).
//!
//! What may be seen, and what it means:
//! - `NEWEST` names the newest segment present: the normal case.
//! - It names an older one: a crash between naming a new segment and
//!   recording it here; that segment holds no records yet. `open` records it.
//! - It names one that is not there: records were lost. Startup stops;
//!   `repair` accepts the loss and names the newest segment left.
//! - There is none: a log from before this file, or a new directory.
//!   `open` writes it; until then the check has nothing to go on.

use std::io;
use std::path::{Path, PathBuf};

use super::config::Lsn;
use super::error::WalError;
use super::format::{self, FileKind, NEWEST_NAME, NEWEST_TEMP_NAME};
use super::segment::write_error;
use super::storage::{Storage, remove_if_present};

/// Longer than any name this module writes: a bigger file is not one.
const MAX_LEN: u64 = 64;

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(NEWEST_NAME)
}

/// The first LSN of the segment `NEWEST` names; `None` if there is no
/// `NEWEST`. A file that does not hold a segment's name is corruption.
pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Result<Option<Lsn>, WalError> {
    let path = path(dir);
    let file = match storage.open_read(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io(&path, 0, e)),
    };
    let size = file.size().map_err(|e| WalError::io(&path, 0, e))?;
    let not_a_name = |why: String| WalError::corrupt(&path, 0, why);
    if size > MAX_LEN {
        return Err(not_a_name(format!(
            "{size} bytes: not the name of a segment"
        )));
    }
    let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| WalError::io(&path, 0, e))?;
    let text = String::from_utf8_lossy(&buf);
    match format::classify_name(text.trim_end_matches('\n')) {
        FileKind::Segment(lsn) => Ok(Some(lsn)),
        _ => Err(not_a_name(format!("{text:?} is not the name of a segment"))),
    }
}

/// Makes `NEWEST` name the segment starting at `first_lsn`, durably.
/// Errors: `DiskFull` (retryable; the old `NEWEST` still stands), `Io`.
pub(crate) fn record(storage: &dyn Storage, dir: &Path, first_lsn: Lsn) -> Result<(), WalError> {
    let temp = dir.join(NEWEST_TEMP_NAME);
    let text = format!("{}\n", format::segment_name(first_lsn));
    let bytes = text.as_bytes();
    let len = u64::try_from(bytes.len()).unwrap_or(MAX_LEN);
    // A leftover of an interrupted attempt (a crash; `repair` runs before
    // `open` would remove it).
    remove_if_present(storage, &temp)?;
    let written = storage
        .create(&temp, len)
        .map_err(|e| write_error(&temp, 0, e))
        .and_then(|file| {
            file.write_all_at(bytes, 0)
                .map_err(|e| write_error(&temp, 0, e))?;
            file.sync_all().map_err(|e| WalError::io(&temp, 0, e))
        })
        .and_then(|()| {
            storage
                .rename(&temp, &path(dir))
                .map_err(|e| write_error(&temp, 0, e))
        })
        .and_then(|()| storage.sync_dir(dir).map_err(|e| WalError::io(dir, 0, e)));
    if written.is_err() {
        let _ = storage.remove(&temp);
    }
    written
}

/// The check every scan makes: `None` if the segment `NEWEST` names is
/// there (or older than the newest present, or there is no `NEWEST`),
/// else the corruption to report. `newest_present`: the first LSN of the
/// newest segment found, `next_lsn` where the records found end.
pub(crate) fn check(
    storage: &dyn Storage,
    dir: &Path,
    newest_present: Option<Lsn>,
    next_lsn: Lsn,
) -> Option<WalError> {
    let named = match read(storage, dir) {
        Ok(None) => return None,
        Ok(Some(named)) => named,
        Err(e) => return Some(e),
    };
    if newest_present.is_some_and(|present| present >= named) {
        return None;
    }
    Some(WalError::corrupt(
        &path(dir),
        0,
        format!(
            "the newest segment, {}, is missing: the records from LSN {next_lsn} on are lost. Copy \
             the whole `wal/` directory back from where it came, or run `settle wal repair` to \
             accept the loss",
            format::segment_name(named)
        ),
    ))
}
