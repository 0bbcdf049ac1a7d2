//! Reading a snapshot back: the whole file, every frame's checksum, the
//! footer's count and hash. A snapshot that reads is sound to the byte.

use super::format::{self, FORMAT_VERSION, Footer, Kind, MAGIC, OLDEST_READ, SnapshotHeader};
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a snapshot could not be written or read.
#[derive(Debug)]
pub enum SnapshotError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a sound snapshot: where and why.
    Invalid {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl SnapshotError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SnapshotError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn encode(path: &Path, e: rmp_serde::encode::Error) -> Self {
        SnapshotError::Invalid {
            path: path.to_owned(),
            offset: 0,
            reason: format!("cannot encode: {e}"),
        }
    }

    fn invalid(path: &Path, offset: usize, reason: impl Into<String>) -> Self {
        SnapshotError::Invalid {
            path: path.to_owned(),
            offset: offset as u64,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SnapshotError::Invalid {
                path,
                offset,
                reason,
            } => write!(f, "{} at byte {offset}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// A snapshot read into memory and checked: magic, header, every frame's
/// checksum, the footer's section count and content hash.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub header: SnapshotHeader,
    bytes: Vec<u8>,
    sections: Vec<Range<usize>>,
}

impl SnapshotFile {
    /// Reads and checks `path` (see the type's doc).
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let bytes = std::fs::read(path).map_err(|e| SnapshotError::io(path, e))?;
        Self::check(path, bytes)
    }

    /// Reads only the header (cheap: for listings). Not a verification.
    pub fn header_only(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|e| SnapshotError::io(path, e))?;
        let mut head = vec![0u8; MAGIC.len() + format::FRAME_HEADER];
        file.read_exact(&mut head)
            .map_err(|_| SnapshotError::invalid(path, 0, "too short for a snapshot"))?;
        let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if len == 0 || len > 1 << 20 {
            return Err(SnapshotError::invalid(
                path,
                8,
                "the header frame's length is not plausible",
            ));
        }
        let mut body = vec![0u8; len];
        file.read_exact(&mut body)
            .map_err(|_| SnapshotError::invalid(path, 16, "the file ends inside its header"))?;
        head.extend_from_slice(&body);
        let (kind, body, _) = format::read_frame(&head, MAGIC.len())
            .map_err(|r| SnapshotError::invalid(path, 8, r))?;
        if kind != Kind::Header {
            return Err(SnapshotError::invalid(
                path,
                8,
                "the first frame is not a header",
            ));
        }
        decode_header(path, body)
    }

    fn check(path: &Path, bytes: Vec<u8>) -> Result<Self, SnapshotError> {
        if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(SnapshotError::invalid(
                path,
                0,
                "not a settle snapshot (bad magic)",
            ));
        }
        let mut pos = MAGIC.len();
        let mut hash = blake3::Hasher::new();
        let mut header = None;
        let mut sections = Vec::new();
        loop {
            let (kind, body, next) = format::read_frame(&bytes, pos)
                .map_err(|r| SnapshotError::invalid(path, pos, r))?;
            let body_at = pos + format::FRAME_HEADER + 1;
            match (kind, header.is_some()) {
                (Kind::Header, false) => header = Some(decode_header(path, body)?),
                (Kind::Section, true) => sections.push(body_at..body_at + body.len()),
                (Kind::Footer, true) => {
                    let footer: Footer = rmp_serde::from_slice(body).map_err(|e| {
                        SnapshotError::invalid(
                            path,
                            pos,
                            format!("the footer does not decode: {e}"),
                        )
                    })?;
                    if footer.sections != sections.len() as u64 {
                        return Err(SnapshotError::invalid(
                            path,
                            pos,
                            format!(
                                "the footer counts {} sections, the file holds {}",
                                footer.sections,
                                sections.len()
                            ),
                        ));
                    }
                    if footer.content_hash != *hash.finalize().as_bytes() {
                        return Err(SnapshotError::invalid(
                            path,
                            pos,
                            "the content hash does not match the footer's",
                        ));
                    }
                    if next != bytes.len() {
                        return Err(SnapshotError::invalid(
                            path,
                            next,
                            format!("{} bytes after the footer", bytes.len() - next),
                        ));
                    }
                    break;
                }
                (kind, _) => {
                    return Err(SnapshotError::invalid(
                        path,
                        pos,
                        format!("a {kind:?} frame out of place"),
                    ));
                }
            }
            hash.update(&[kind as u8]);
            hash.update(body);
            pos = next;
            if pos == bytes.len() {
                return Err(SnapshotError::invalid(
                    path,
                    pos,
                    "the file ends without a footer (cut short)",
                ));
            }
        }
        let Some(header) = header else {
            return Err(SnapshotError::invalid(path, 8, "no header"));
        };
        Ok(SnapshotFile {
            path: path.to_owned(),
            header,
            bytes,
            sections,
        })
    }

    /// Bytes of the file.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Number of sections.
    pub fn sections(&self) -> usize {
        self.sections.len()
    }

    /// The raw MessagePack of section `i`.
    pub fn section_bytes(&self, i: usize) -> Option<&[u8]> {
        self.sections.get(i).map(|r| &self.bytes[r.clone()])
    }

    /// Where section `i`'s body starts in the file (for error messages).
    pub fn section_offset(&self, i: usize) -> Option<u64> {
        self.sections.get(i).map(|r| r.start as u64)
    }

    /// Decodes section `i` as `T`.
    pub fn section<T: DeserializeOwned>(&self, i: usize) -> Result<T, SnapshotError> {
        let range = self
            .sections
            .get(i)
            .ok_or_else(|| SnapshotError::invalid(&self.path, 0, format!("no section {i}")))?;
        rmp_serde::from_slice(&self.bytes[range.clone()]).map_err(|e| {
            SnapshotError::invalid(
                &self.path,
                range.start,
                format!("section {i} does not decode: {e}"),
            )
        })
    }
}

fn decode_header(path: &Path, body: &[u8]) -> Result<SnapshotHeader, SnapshotError> {
    let header: SnapshotHeader = rmp_serde::from_slice(body)
        .map_err(|e| SnapshotError::invalid(path, 8, format!("the header does not decode: {e}")))?;
    // Format 1 was never deployed; 2 reads as 3 does (see `OLDEST_READ`). A
    // refused snapshot is passed over by recovery, which falls back to an
    // older one or to the log.
    if !(OLDEST_READ..=FORMAT_VERSION).contains(&header.version) {
        let who = if header.version > FORMAT_VERSION {
            "a newer settle wrote it; upgrade"
        } else {
            "an older settle wrote it; take a new snapshot, or replay the log"
        };
        return Err(SnapshotError::invalid(
            path,
            8,
            format!(
                "format version {} is not a version this settle reads ({OLDEST_READ} to {FORMAT_VERSION}): {who}",
                header.version
            ),
        ));
    }
    Ok(header)
}
