//! A scratch file replay spills into: wallets it packs again, idempotency
//! records of the log's tail. Unnamed (`O_TMPFILE`, or created and unlinked
//! at once), so a crash leaves nothing behind, and in the snapshot
//! directory, on the disk the snapshots are on (not in `/tmp`, which may be
//! memory).
//!
//! Why: a replay whose records touch every wallet (the first snapshot, or
//! a tail that funds a million wallets) held every one of them packed in
//! memory beside the live state, ~240 bytes each. Spilled, a wallet costs
//! its place here (see `stored::Packed`). Every part is written once and
//! read back any number of times; each read is checked against the CRC32C
//! taken when it was written.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where a part was written.
#[derive(Clone, Copy, Debug)]
pub(super) struct Place {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

#[derive(Debug)]
pub(super) struct Scratch {
    dir: PathBuf,
    /// Created at the first write.
    file: Option<File>,
    /// Bytes written.
    len: u64,
}

impl Scratch {
    /// A scratch file in `dir`, created when first written to.
    pub fn new(dir: &Path) -> Self {
        Scratch {
            dir: dir.to_owned(),
            file: None,
            len: 0,
        }
    }

    /// Writes `parts`, one after another, in one write; returns where each
    /// one is. Nothing is kept of a failed write (the caller keeps the
    /// parts in memory instead).
    pub fn write(&mut self, parts: &[&[u8]]) -> Result<Vec<Place>, String> {
        let mut places = Vec::with_capacity(parts.len());
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut at = self.len;
        for part in parts {
            let len = u32::try_from(part.len())
                .map_err(|_| format!("a part of {} bytes is too large", part.len()))?;
            places.push(Place {
                offset: at,
                len,
                crc: crc32c::crc32c(part),
            });
            buf.extend_from_slice(part);
            at += u64::from(len);
        }
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)
                .and_then(|()| tempfile::tempfile_in(&self.dir))
                .map(|f| self.file = Some(f))
                .map_err(|e| {
                    format!(
                        "cannot create a scratch file in {}: {e}",
                        self.dir.display()
                    )
                })?;
        }
        let Some(file) = &self.file else {
            return Err("no scratch file".to_owned());
        };
        file.write_all_at(&buf, self.len).map_err(|e| {
            format!(
                "cannot write the scratch file in {}: {e}",
                self.dir.display()
            )
        })?;
        self.len = at;
        Ok(places)
    }

    /// The part at `place`, checked.
    pub fn read(&self, place: Place) -> Result<Vec<u8>, String> {
        let Some(file) = &self.file else {
            return Err("nothing was written to the scratch file".to_owned());
        };
        let mut buf = vec![0u8; place.len as usize];
        file.read_exact_at(&mut buf, place.offset)
            .map_err(|e| format!("cannot read the scratch file: {e}"))?;
        let crc = crc32c::crc32c(&buf);
        if crc != place.crc {
            return Err(format!(
                "the scratch file's {} bytes at {} have CRC32C {crc:08x}, not {:08x}",
                place.len, place.offset, place.crc
            ));
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_as_written_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut scratch = Scratch::new(dir.path());
        let first = scratch
            .write(&[b"one", b"", b"three"])
            .unwrap_or_else(|e| panic!("{e}"));
        let second = scratch.write(&[b"four"]).unwrap_or_else(|e| panic!("{e}"));
        for (place, want) in first
            .iter()
            .chain(&second)
            .zip([&b"one"[..], b"", b"three", b"four"])
        {
            assert_eq!(scratch.read(*place).unwrap_or_else(|e| panic!("{e}")), want);
        }
        // A wrong checksum (as a changed byte would give) is refused.
        let bad = Place {
            crc: first[0].crc ^ 1,
            ..first[0]
        };
        assert!(scratch.read(bad).is_err());
        // Unnamed: the directory shows nothing.
        let names = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .count();
        assert_eq!(names, 0);
    }
}
