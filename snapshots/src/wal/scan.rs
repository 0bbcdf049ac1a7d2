//! Reading a log directory back and deciding what its bytes are: valid
//! records, a torn tail, or corruption. One scanner serves `open`, `verify`
//! and `repair`, so the three always agree on where a log ends and why.
//!
//! The rule (ENGINE.md: a torn tail is cut, corruption before it stops
//! startup): a bad frame is a *torn tail* only if it is in the last segment
//! and no valid frame follows it anywhere in that segment (a crash while
//! appending leaves a partial last batch and zeros, never a good record
//! after a bad one). Everything else (a bad frame followed by a valid one,
//! a bad frame in an earlier segment, a bad header, a gap or overlap of LSNs
//! between segments, non-zero bytes after the end of an earlier segment, a
//! newest segment that `NEWEST` names and that is missing) is
//! corruption: it cannot come from a crash, so records acknowledged to
//! clients may be behind it, and only the operator may cut it.
//!
//! Segments are read whole (one sequential read each, bounded by
//! `MAX_SEGMENT_SIZE`) into one reused buffer.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::config::{Lsn, MAX_RECORD, MAX_SEGMENT_SIZE};
use super::error::WalError;
use super::format::{
    self, FIRST_LSN_OFFSET, FRAME_HEADER_LEN, FileKind, Frame, SEGMENT_HEADER_BYTES,
    SEGMENT_HEADER_LEN,
};
use super::newest;
use super::storage::Storage;

/// One segment's valid part, as a scan found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment file.
    pub path: PathBuf,
    /// The LSN of its first record (from its header).
    pub first_lsn: Lsn,
    /// Valid records in it.
    pub records: u64,
    /// Offset just past its last valid frame (where the next one goes).
    pub end: u64,
    /// The file's size (preallocated).
    pub size: u64,
}

/// A torn tail: the partial last write of a crashed process, cut at `open`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub segment: PathBuf,
    /// Offset of the first bad frame: the new end of the log.
    pub offset: u64,
    /// Bytes of data cut (from `offset` to the last non-zero byte).
    pub bytes_cut: u64,
    /// What was wrong with the frame at `offset`.
    pub reason: String,
}

/// Why a scan stopped before the end of the directory.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A torn tail in the last segment; the log is valid up to it.
    Torn(TornTail),
    /// Corruption ([`WalError::Corrupt`]) or an unreadable file or
    /// directory ([`WalError::Io`]).
    Broken(WalError),
}

/// What a directory holds.
#[derive(Debug, Default)]
pub(crate) struct DirScan {
    /// The valid log, in LSN order: each segment valid up to its `end`.
    pub segments: Vec<SegmentInfo>,
    /// A bad frame in the last of `segments`: the log must be cut at this
    /// offset (a torn tail, or where `repair` cuts a corruption), and the
    /// bytes of data from there to the last non-zero byte.
    pub cut: Option<(u64, u64)>,
    /// Segment files after the problem (from the one with a bad header or
    /// an LSN gap on), not part of the valid log.
    pub after: Vec<PathBuf>,
    /// Segments being created when a process stopped (they hold no records).
    pub temp_files: Vec<PathBuf>,
    /// Files that are no part of the log.
    pub others: Vec<OsString>,
    /// Where and why the scan stopped, if it did.
    pub stop: Option<Stop>,
}

impl DirScan {
    pub(crate) fn first_lsn(&self) -> Lsn {
        self.segments.first().map_or(1, |s| s.first_lsn)
    }

    pub(crate) fn next_lsn(&self) -> Lsn {
        self.segments.last().map_or(1, |s| s.first_lsn + s.records)
    }
}

/// Upper bound on bytes checksummed while looking for a valid frame after a
/// bad one. A real torn tail is a partial batch followed by zeros, which
/// costs almost nothing to rule out; past this budget (megabytes of random
/// bytes, which no crash writes) the bad frame is reported as corruption.
const FORWARD_SCAN_BUDGET: u64 = 256 << 20;

/// Scans every segment of `dir`, in LSN order, up to the first problem.
pub(crate) fn scan_dir(storage: &dyn Storage, dir: &Path) -> DirScan {
    let mut scan = DirScan::default();
    let names = match storage.list(dir) {
        Ok(names) => names,
        Err(e) => {
            scan.stop = Some(Stop::Broken(WalError::io(dir, 0, e)));
            return scan;
        }
    };
    let mut segments = Vec::new();
    for name in names {
        match name.to_str().map(format::classify_name) {
            Some(FileKind::Segment(lsn)) => segments.push((lsn, dir.join(&name))),
            Some(FileKind::Temp) => scan.temp_files.push(dir.join(&name)),
            Some(FileKind::Newest) => {}
            _ => scan.others.push(name),
        }
    }
    segments.sort();

    let mut buf = Vec::new();
    let count = segments.len();
    for (index, (name_lsn, path)) in segments.into_iter().enumerate() {
        if scan.stop.is_some() {
            scan.after.push(path);
            continue;
        }
        let expected = scan
            .segments
            .last()
            .map(|s| (s.first_lsn + s.records, s.path.clone()));
        let last = index + 1 == count;
        match scan_segment(storage, &path, name_lsn, expected, last, &mut buf) {
            Err(error) => {
                scan.stop = Some(Stop::Broken(error));
                scan.after.push(path);
            }
            Ok((info, problem)) => {
                scan.segments.push(info);
                if let Some(bad) = problem {
                    scan.cut = Some((bad.offset, bad.bytes));
                    scan.stop = Some(bad.verdict);
                }
            }
        }
    }
    // The segments found may end early without a sign in them: the newest
    // may be missing altogether (`newest`). Checked after a torn tail too
    // (the loss is the larger problem), not after corruption (reported
    // first, where it is).
    if !matches!(scan.stop, Some(Stop::Broken(_)))
        && let Some(error) = newest::check(
            storage,
            dir,
            scan.segments.last().map(|s| s.first_lsn),
            scan.next_lsn(),
        )
    {
        scan.stop = Some(Stop::Broken(error));
    }
    scan
}

/// A bad frame that ends a segment's valid part.
struct BadFrame {
    offset: u64,
    /// Bytes of data from `offset` to the last non-zero byte.
    bytes: u64,
    verdict: Stop,
}

/// Scans one segment. `Err` means the segment is not part of the valid log
/// at all (unreadable, bad header, LSN gap); `Ok` gives its valid part and,
/// if a bad frame ends it early, the offset of that frame and the verdict.
fn scan_segment(
    storage: &dyn Storage,
    path: &Path,
    name_lsn: Lsn,
    expected: Option<(Lsn, PathBuf)>,
    last: bool,
    buf: &mut Vec<u8>,
) -> Result<(SegmentInfo, Option<BadFrame>), WalError> {
    let file = storage
        .open_read(path)
        .map_err(|e| WalError::io(path, 0, e))?;
    let size = file.size().map_err(|e| WalError::io(path, 0, e))?;
    let limit = MAX_SEGMENT_SIZE.max(SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + MAX_RECORD as u64);
    let len = match usize::try_from(size) {
        Ok(len) if size <= limit => len,
        _ => {
            return Err(WalError::corrupt(
                path,
                0,
                format!("segment file of {size} bytes exceeds the {limit}-byte limit"),
            ));
        }
    };
    buf.clear();
    buf.resize(len, 0);
    file.read_exact_at(buf, 0)
        .map_err(|e| WalError::io(path, 0, e))?;

    let first_lsn = format::decode_header(buf)
        .map_err(|bad| WalError::corrupt(path, bad.offset, bad.reason))?;
    if first_lsn != name_lsn {
        return Err(WalError::corrupt(
            path,
            FIRST_LSN_OFFSET,
            format!("header says first LSN {first_lsn}, the file name says {name_lsn}"),
        ));
    }
    if let Some((expected, previous)) = expected
        && first_lsn != expected
    {
        let what = if first_lsn > expected {
            format!("records {expected}..={} are missing", first_lsn - 1)
        } else {
            "the segments overlap".to_string()
        };
        return Err(WalError::corrupt(
            path,
            FIRST_LSN_OFFSET,
            format!(
                "segment starts at LSN {first_lsn}, but {} ends before LSN {expected}: {what}",
                previous.display()
            ),
        ));
    }

    let mut pos = SEGMENT_HEADER_BYTES;
    let mut records = 0u64;
    let bad = loop {
        match format::read_frame(buf, pos) {
            Frame::Record(payload) => {
                records += 1;
                pos += 8 + payload.len();
            }
            Frame::End => {
                let extent = format::nonzero_extent(&buf[pos..]);
                if extent == 0 {
                    break None;
                }
                break Some(format!(
                    "zeros where a frame header should be, but non-zero bytes follow up to offset {}",
                    pos + extent
                ));
            }
            Frame::Bad(reason) => break Some(reason),
        }
    };
    let info = SegmentInfo {
        path: path.to_path_buf(),
        first_lsn,
        records,
        end: pos as u64,
        size,
    };
    let Some(reason) = bad else {
        return Ok((info, None));
    };

    let offset = pos as u64;
    let extent = pos + format::nonzero_extent(&buf[pos..]);
    let verdict = if !last {
        Stop::Broken(WalError::corrupt(
            path,
            offset,
            format!("{reason}, in a segment that is not the last"),
        ))
    } else {
        match find_valid_frame(buf, pos + 1, extent) {
            Forward::Found(at) => Stop::Broken(WalError::corrupt(
                path,
                offset,
                format!(
                    "{reason}; a valid frame follows at offset {at}, so this is not a torn tail"
                ),
            )),
            Forward::TooLong => Stop::Broken(WalError::corrupt(
                path,
                offset,
                format!("{reason}; too many bytes follow to rule out a valid frame after it"),
            )),
            Forward::None => Stop::Torn(TornTail {
                segment: path.to_path_buf(),
                offset,
                bytes_cut: (extent - pos) as u64,
                reason,
            }),
        }
    };
    Ok((
        info,
        Some(BadFrame {
            offset,
            bytes: (extent - pos) as u64,
            verdict,
        }),
    ))
}

enum Forward {
    Found(u64),
    None,
    TooLong,
}

/// Looks for a valid frame starting anywhere in `from..until` (until: one
/// past the last non-zero byte; a frame header is never all zeros, so none
/// can start later).
fn find_valid_frame(data: &[u8], from: usize, until: usize) -> Forward {
    let mut budget = FORWARD_SCAN_BUDGET;
    for at in from..until {
        let Some(header) = data.get(at..at + 4) else {
            break;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        // Cheap filters before any checksum: a plausible length that fits.
        if len == 0 || len > MAX_RECORD || at + 8 + len > data.len() {
            continue;
        }
        let cost = len as u64 + 4;
        if cost > budget {
            return Forward::TooLong;
        }
        budget -= cost;
        if matches!(format::read_frame(data, at), Frame::Record(_)) {
            return Forward::Found(at as u64);
        }
    }
    Forward::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            format::encode_frame(&mut buf, p);
        }
        buf
    }

    #[test]
    fn forward_scan_finds_a_frame_after_garbage() {
        let mut data = vec![0xAB; 37];
        let at = data.len();
        data.extend(frames(&[b"valid"]));
        data.extend([0u8; 50]);
        let until = at + 13;
        assert!(matches!(find_valid_frame(&data, 0, until), Forward::Found(a) if a == at as u64));
        assert!(matches!(
            find_valid_frame(&data, at + 1, until),
            Forward::None
        ));
    }

    #[test]
    fn forward_scan_gives_up_past_its_budget() {
        // Headers claiming 16 MiB frames everywhere: each candidate costs 16 MiB.
        let mut data = vec![0u8; MAX_RECORD + 4096];
        for at in (0..4096).step_by(8) {
            data[at..at + 4].copy_from_slice(&u32::try_from(MAX_RECORD).unwrap().to_le_bytes());
            data[at + 4] = 1;
        }
        assert!(matches!(find_valid_frame(&data, 0, 4096), Forward::TooLong));
    }
}
