//! Parts of a snapshot file read again after a `SnapshotStream` checked
//! the whole of it: for an image that keeps the file's bulk (packed
//! wallets, idempotency records) on disk and reads each part when it needs
//! it, instead of holding a second copy of the state in memory.
//!
//! The file could change on disk between the two reads (a failing disk, an
//! operator's mistake), and a part read again is copied into the next
//! snapshot: so every read is checked again. A section by its frame's own
//! checksum; a single wallet's bytes (a part of a frame) by the CRC32C the
//! caller took of them on the first read.

use super::format::{self, Kind};
use super::read::SnapshotError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A checked snapshot file, open for reads at any offset (`pread`: shared
/// by threads, no seek position).
#[derive(Clone, Debug)]
pub struct SnapshotReread {
    path: PathBuf,
    file: Arc<File>,
}

impl SnapshotReread {
    pub(crate) fn new(path: &Path, file: File) -> Self {
        SnapshotReread {
            path: path.to_owned(),
            file: Arc::new(file),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `len` bytes at `offset`, which must have the CRC32C `crc`.
    pub fn bytes(&self, offset: u64, len: usize, crc: u32) -> Result<Vec<u8>, SnapshotError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        self.check(offset, &buf, crc)?;
        Ok(buf)
    }

    /// Whether `part`, read again from `offset`, has the CRC32C `crc`
    /// (parts of a `span`).
    pub fn check(&self, offset: u64, part: &[u8], crc: u32) -> Result<(), SnapshotError> {
        let found = crc32c::crc32c(part);
        if found != crc {
            return Err(self.changed(
                offset,
                format!(
                    "{} bytes read again have CRC32C {found:08x}, not {crc:08x}",
                    part.len()
                ),
            ));
        }
        Ok(())
    }

    /// `len` bytes at `offset`, unchecked: for reading many parts at once,
    /// each of which the caller then checks against its own CRC32C.
    pub fn span(&self, offset: u64, len: usize) -> Result<Vec<u8>, SnapshotError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        Ok(buf)
    }

    /// The body of the section whose body starts at `offset` and is `len`
    /// bytes long (a `StreamedSection`'s `offset` and `bytes.len()`), its
    /// frame's checksum checked again.
    pub fn section(&self, offset: u64, len: usize) -> Result<Vec<u8>, SnapshotError> {
        // The frame starts before its header and kind byte.
        let before = (format::FRAME_HEADER + 1) as u64;
        let Some(start) = offset.checked_sub(before) else {
            return Err(self.changed(offset, "no frame ends a header before this offset"));
        };
        let mut frame = vec![0u8; format::FRAME_HEADER + 1 + len];
        self.file
            .read_exact_at(&mut frame, start)
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        let (kind, body, end) =
            format::read_frame(&frame, 0).map_err(|why| self.changed(start, why))?;
        if kind != Kind::Section || end != frame.len() {
            return Err(self.changed(start, "the frame read again is not the section it was"));
        }
        debug_assert_eq!(body.len(), len);
        frame.drain(..=format::FRAME_HEADER);
        Ok(frame)
    }

    fn changed(&self, offset: u64, why: impl std::fmt::Display) -> SnapshotError {
        SnapshotError::Invalid {
            path: self.path.clone(),
            offset,
            reason: format!("the file changed since it was checked: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::{SnapshotHeader, SnapshotStream, SnapshotWriter, Summary};

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            version: crate::snapshot::FORMAT_VERSION,
            id: "snp_01JREREAD000000000000000".into(),
            position: 7,
            created_at_ms: 1,
            summary: Summary::default(),
        }
    }

    #[test]
    fn parts_read_again_are_checked_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut w = SnapshotWriter::create(dir.path(), &header()).unwrap_or_else(|e| panic!("{e}"));
        w.section(b"first section")
            .unwrap_or_else(|e| panic!("{e}"));
        w.section(b"second").unwrap_or_else(|e| panic!("{e}"));
        let (path, _) = w.finish().unwrap_or_else(|e| panic!("{e}"));
        let mut stream = SnapshotStream::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let again = stream.reread().unwrap_or_else(|e| panic!("{e}"));
        let mut sections = Vec::new();
        while let Some(s) = stream.next_section().unwrap_or_else(|e| panic!("{e}")) {
            sections.push(s);
        }
        for s in &sections {
            let body = again
                .section(s.offset, s.bytes.len())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(body, s.bytes);
            let part = &s.bytes[1..4];
            let crc = crc32c::crc32c(part);
            let read = again
                .bytes(s.offset + 1, 3, crc)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read, part);
            assert!(again.bytes(s.offset + 1, 3, crc ^ 1).is_err());
            // An offset that is not a section's start is refused.
            assert!(again.section(s.offset + 1, s.bytes.len()).is_err());
        }

        // A byte changed on disk after the check: both reads refuse it.
        let first = &sections[0];
        let mut data = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        data[usize::try_from(first.offset).unwrap_or(0) + 2] ^= 0x10;
        std::fs::write(&path, &data).unwrap_or_else(|e| panic!("{e}"));
        let crc = crc32c::crc32c(&first.bytes[1..4]);
        let err = again
            .section(first.offset, first.bytes.len())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("changed since it was checked"), "{err}");
        assert!(again.bytes(first.offset + 1, 3, crc).is_err());
        // The other section is untouched and still reads.
        let second = &sections[1];
        assert!(again.section(second.offset, second.bytes.len()).is_ok());
    }
}
