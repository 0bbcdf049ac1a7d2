//! The operator's offline tools, behind `settle wal verify|repair`.
//!
//! `verify` reads and never writes: it reports the segments, their record
//! counts, the LSN range and the first problem (kind, segment, offset),
//! using the same scanner as `open`, so it says exactly what `open` would do.
//!
//! `repair` is the explicit decision ENGINE.md reserves for the operator:
//! it cuts the log at the first problem (a torn tail, or corruption that
//! `open` refuses), after copying every file it will change or remove into
//! `backup_dir` (synced), so nothing is destroyed. Records after the cut
//! are no longer replayed; the report says what was cut. Afterwards
//! `NEWEST` names the newest segment left: a missing newest segment is
//! repaired by accepting the loss.
//!
//! `set_aside` moves a whole log out of the way, for a log that a snapshot
//! has overtaken (its records all lie at or before the snapshot's position,
//! as after a repair cut below it): the server then starts from the
//! snapshot with an empty log after it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::config::Lsn;
use super::error::WalError;
use super::newest;
use super::recovery::cut_tail;
use super::scan::{self, SegmentInfo, Stop};
use super::storage::{Storage, remove_if_present};

/// What kind of problem a scan found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A partial last write: `open` cuts it by itself.
    TornTail,
    /// Bad bytes before the end, a bad header or an LSN gap: `open` refuses
    /// to start; `repair` cuts there.
    Corrupt,
    /// A file or the directory could not be read.
    Io,
}

/// The first problem in a log, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What it is.
    pub kind: ProblemKind,
    /// The segment file (or the directory).
    pub segment: PathBuf,
    /// The byte offset.
    pub offset: u64,
    /// Details.
    pub detail: String,
}

impl Problem {
    fn from_stop(stop: &Stop) -> Problem {
        match stop {
            Stop::Torn(torn) => Problem {
                kind: ProblemKind::TornTail,
                segment: torn.segment.clone(),
                offset: torn.offset,
                detail: format!(
                    "torn tail ({}); {} bytes after it",
                    torn.reason, torn.bytes_cut
                ),
            },
            Stop::Broken(error) => {
                let kind = match error {
                    WalError::Corrupt { .. } => ProblemKind::Corrupt,
                    _ => ProblemKind::Io,
                };
                let (segment, offset) = error
                    .place()
                    .map_or((PathBuf::new(), 0), |(s, o)| (s.to_path_buf(), o));
                let detail = match error {
                    WalError::Corrupt { reason, .. } => reason.clone(),
                    WalError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                Problem {
                    kind,
                    segment,
                    offset,
                    detail,
                }
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ProblemKind::TornTail => "torn tail",
            ProblemKind::Corrupt => "corruption",
            ProblemKind::Io => "I/O error",
        };
        write!(
            f,
            "{kind} in {} at offset {}: {}",
            self.segment.display(),
            self.offset,
            self.detail
        )
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The log directory.
    pub dir: PathBuf,
    /// The valid segments, in LSN order (the last may end at `problem`).
    pub segments: Vec<SegmentInfo>,
    /// Segment files after the problem, not checked.
    pub unchecked: Vec<PathBuf>,
    /// Files in the directory that are no part of the log (including
    /// interrupted segment creations, `*.wal.tmp`).
    pub other_files: Vec<PathBuf>,
    /// Valid records.
    pub records: u64,
    /// The first valid record's LSN (equal to `next_lsn` if none).
    pub first_lsn: Lsn,
    /// One past the last valid record.
    pub next_lsn: Lsn,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// No problem at all.
    pub fn is_clean(&self) -> bool {
        self.problem.is_none()
    }

    /// `open` would start (a torn tail it cuts by itself is fine).
    pub fn opens(&self) -> bool {
        self.problem
            .as_ref()
            .is_none_or(|p| p.kind == ProblemKind::TornTail)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "log {}: {} segments, {} records, LSN {}..{} (exclusive)",
            self.dir.display(),
            self.segments.len(),
            self.records,
            self.first_lsn,
            self.next_lsn
        )?;
        for s in &self.segments {
            writeln!(
                f,
                "  {}  first LSN {}, {} records, {} of {} bytes used",
                s.path.display(),
                s.first_lsn,
                s.records,
                s.end,
                s.size
            )?;
        }
        for path in &self.unchecked {
            writeln!(f, "  {}  not checked (after the problem)", path.display())?;
        }
        for path in &self.other_files {
            writeln!(f, "  {}  not a log segment (ignored)", path.display())?;
        }
        match &self.problem {
            None => write!(f, "ok"),
            Some(problem) => write!(f, "problem: {problem}"),
        }
    }
}

/// Checks the log in `dir` without writing anything.
pub fn verify(storage: &dyn Storage, dir: &Path) -> VerifyReport {
    let scan = scan::scan_dir(storage, dir);
    let mut other_files: Vec<PathBuf> = scan.temp_files.clone();
    other_files.extend(scan.others.iter().map(|name| dir.join(name)));
    other_files.sort();
    VerifyReport {
        dir: dir.to_path_buf(),
        records: scan.next_lsn() - scan.first_lsn(),
        first_lsn: scan.first_lsn(),
        next_lsn: scan.next_lsn(),
        problem: scan.stop.as_ref().map(Problem::from_stop),
        unchecked: scan.after,
        other_files,
        segments: scan.segments,
    }
}

/// A segment cut short by [`repair`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment.
    pub segment: PathBuf,
    /// Its new end.
    pub offset: u64,
    /// Bytes of data cut (from `offset` to the last non-zero byte).
    pub bytes_cut: u64,
}

/// What [`repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the log was cut and why; `None` if there was nothing to repair.
    pub cut: Option<Problem>,
    /// The segment cut short, if the cut fell inside one.
    pub truncated: Option<Truncation>,
    /// Segments removed whole (they came after the cut).
    pub removed: Vec<PathBuf>,
    /// Copies, in the backup directory, of every file changed or removed.
    pub backups: Vec<PathBuf>,
    /// The log after the repair: first record.
    pub first_lsn: Lsn,
    /// The log after the repair: the next LSN to be written.
    pub next_lsn: Lsn,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(cut) = &self.cut else {
            return write!(
                f,
                "nothing to repair: LSN {}..{} (exclusive)",
                self.first_lsn, self.next_lsn
            );
        };
        writeln!(f, "cut the log at the first problem: {cut}")?;
        if let Some(t) = &self.truncated {
            writeln!(
                f,
                "  truncated {} at offset {} ({} bytes cut)",
                t.segment.display(),
                t.offset,
                t.bytes_cut
            )?;
        }
        for path in &self.removed {
            writeln!(f, "  removed {}", path.display())?;
        }
        // What the cut costs, so that nobody learns it from a balance: the
        // removed segments' names say where each began, so at least the
        // records up to the last one's start were past the cut.
        let last_removed = self
            .removed
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .filter_map(|n| match super::format::classify_name(n) {
                super::format::FileKind::Segment(lsn) => Some(lsn),
                _ => None,
            })
            .max();
        match last_removed {
            Some(start) if start > self.next_lsn => writeln!(
                f,
                "  at least {} records past the cut (LSN {}..{start}, and those of the last \
                 removed segment) are now only in the backup: they were acknowledged; to keep \
                 them, restore from a backup or a snapshot that holds them",
                start - self.next_lsn,
                self.next_lsn
            )?,
            _ => {
                if let Some(t) = &self.truncated {
                    writeln!(
                        f,
                        "  the {} bytes cut (any records in them) are now only in the backup",
                        t.bytes_cut
                    )?;
                }
            }
        }
        for path in &self.backups {
            writeln!(f, "  backup {}", path.display())?;
        }
        write!(
            f,
            "the log now holds LSN {}..{} (exclusive)",
            self.first_lsn, self.next_lsn
        )
    }
}

/// Cuts the log in `dir` at its first problem (torn tail or corruption),
/// after copying every file it changes or removes into `backup_dir`
/// (created if absent, synced). An unreadable file is not repaired: the
/// error is returned and nothing is changed.
pub fn repair(
    storage: &dyn Storage,
    dir: &Path,
    backup_dir: &Path,
) -> Result<RepairReport, WalError> {
    let mut scan = scan::scan_dir(storage, dir);
    let cut = match scan.stop.take() {
        None => None,
        Some(Stop::Broken(error)) if !matches!(error, WalError::Corrupt { .. }) => {
            return Err(error);
        }
        Some(stop) => Some(Problem::from_stop(&stop)),
    };
    let mut report = RepairReport {
        cut: None,
        truncated: None,
        removed: Vec::new(),
        backups: Vec::new(),
        first_lsn: scan.first_lsn(),
        next_lsn: scan.next_lsn(),
    };
    let Some(problem) = cut else {
        return Ok(report);
    };

    // The segment to truncate (the last valid one, if the problem is inside it).
    let truncate = match (scan.cut, scan.segments.last()) {
        (Some((offset, bytes_cut)), Some(last)) => Some((
            last.clone(),
            Truncation {
                segment: last.path.clone(),
                offset,
                bytes_cut,
            },
        )),
        _ => None,
    };

    // 1. Back up everything that will change, before changing anything.
    storage
        .create_dir_all(backup_dir)
        .map_err(|e| WalError::io(backup_dir, 0, e))?;
    let mut to_copy: Vec<&Path> = truncate.iter().map(|(s, _)| s.path.as_path()).collect();
    to_copy.extend(scan.after.iter().map(PathBuf::as_path));

    for path in to_copy {
        report.backups.push(backup(storage, path, backup_dir)?);
    }
    storage
        .sync_dir(backup_dir)
        .map_err(|e| WalError::io(backup_dir, 0, e))?;

    // 2. Remove the segments after the cut, newest first.
    for path in scan.after.iter().rev() {
        storage.remove(path).map_err(|e| WalError::io(path, 0, e))?;
    }
    report.removed = scan.after;

    // 3. Cut the segment the problem is in.
    if let Some((segment, truncation)) = truncate {
        let file = storage
            .open_write(&segment.path)
            .map_err(|e| WalError::io(&segment.path, 0, e))?;
        cut_tail(
            file.as_ref(),
            &segment.path,
            truncation.offset,
            segment.size,
        )?;
        report.truncated = Some(truncation);
    }
    storage.sync_dir(dir).map_err(|e| WalError::io(dir, 0, e))?;

    // 4. `NEWEST` names the newest segment left: it may have named one
    // removed above, or one that was missing (the loss is now accepted;
    // the problem reported names it). Not backed up: it holds no records.
    let marker = newest::path(dir);
    match scan.segments.last() {
        Some(last) => newest::record(storage, dir, last.first_lsn)?,
        None => {
            if remove_if_present(storage, &marker)? {
                storage.sync_dir(dir).map_err(|e| WalError::io(dir, 0, e))?;
            }
        }
    }
    report.cut = Some(problem);
    tracing::warn!(report = %report, "repaired the log");
    Ok(report)
}

/// Copies `path` into `backup_dir` under its own name (or `name.1`, `.2`,
/// ... if taken: earlier backups are never overwritten), in 8 MiB chunks,
/// synced. Returns the copy's path.
fn backup(storage: &dyn Storage, path: &Path, backup_dir: &Path) -> Result<PathBuf, WalError> {
    const CHUNK: u64 = 8 << 20;
    let source = storage
        .open_read(path)
        .map_err(|e| WalError::io(path, 0, e))?;
    let size = source.size().map_err(|e| WalError::io(path, 0, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut attempt = 0u32;
    let (target, copy) = loop {
        let target = if attempt == 0 {
            backup_dir.join(&name)
        } else {
            backup_dir.join(format!("{name}.{attempt}"))
        };
        match storage.create(&target, 0) {
            Ok(copy) => break (target, copy),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
            Err(e) => return Err(WalError::io(&target, 0, e)),
        }
    };
    let mut buf = Vec::new();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(CHUNK);
        buf.resize(usize::try_from(len).unwrap_or(0), 0);
        source
            .read_exact_at(&mut buf, offset)
            .map_err(|e| WalError::io(path, offset, e))?;
        copy.write_all_at(&buf, offset)
            .map_err(|e| WalError::io(&target, offset, e))?;
        offset += len;
    }
    copy.sync_all().map_err(|e| WalError::io(&target, 0, e))?;
    Ok(target)
}

/// Moves every file of the log in `dir` into `to` (created; never a file
/// overwritten: `to` must be new or empty), synced: `dir` is then empty
/// and a log opened there starts afresh, at the LSN its configuration says.
/// Returns the files' new paths. For a log whose every record a snapshot
/// already holds (`settle serve`, when the newest snapshot is past the end
/// of the log); the files are kept, not removed, for the operator.
pub fn set_aside(storage: &dyn Storage, dir: &Path, to: &Path) -> Result<Vec<PathBuf>, WalError> {
    storage
        .create_dir_all(to)
        .map_err(|e| WalError::io(to, 0, e))?;
    if let Some(name) = storage
        .list(to)
        .map_err(|e| WalError::io(to, 0, e))?
        .first()
    {
        return Err(WalError::io(
            &to.join(name),
            0,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the log's new place is not empty",
            ),
        ));
    }
    let mut names = storage.list(dir).map_err(|e| WalError::io(dir, 0, e))?;
    names.sort();
    let mut moved = Vec::with_capacity(names.len());
    for name in names {
        let (from, dest) = (dir.join(&name), to.join(&name));
        storage
            .rename(&from, &dest)
            .map_err(|e| WalError::io(&from, 0, e))?;
        moved.push(dest);
    }
    // Durable before the caller starts a new log in `dir`: a crash must
    // not bring the old segments back beside the new one.
    storage.sync_dir(to).map_err(|e| WalError::io(to, 0, e))?;
    storage.sync_dir(dir).map_err(|e| WalError::io(dir, 0, e))?;
    Ok(moved)
}
