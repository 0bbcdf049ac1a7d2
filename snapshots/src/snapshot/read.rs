//! Reading a snapshot back: every frame's checksum, the footer's count and
//! hash. A snapshot that reads is sound to the byte. `SnapshotStream`
//! reads it frame by frame (loads of large snapshots: a million wallets'
//! file is ~1 GB, and holding it whole beside the state it builds was the
//! largest part of a snapshot's peak memory); `SnapshotFile` keeps every
//! section in memory (offline tools, tests).

use super::SnapshotReread;
use super::format::{self, FORMAT_VERSION, Footer, Kind, MAGIC, OLDEST_READ, SnapshotHeader};
use serde::de::DeserializeOwned;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
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
    /// The sections' bodies, one after another.
    bytes: Vec<u8>,
    sections: Vec<Range<usize>>,
    /// Where each section's body starts in the file.
    offsets: Vec<u64>,
    /// Bytes of the file.
    len: u64,
}

impl SnapshotFile {
    /// Reads and checks `path` (see the type's doc), through
    /// `SnapshotStream`: the same checks, the sections kept in memory.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let mut stream = SnapshotStream::open(path)?;
        let mut bytes = Vec::with_capacity(usize::try_from(stream.len).unwrap_or(0));
        let (mut sections, mut offsets) = (Vec::new(), Vec::new());
        while let Some(section) = stream.next_section()? {
            let at = bytes.len();
            bytes.extend_from_slice(&section.bytes);
            sections.push(at..bytes.len());
            offsets.push(section.offset);
        }
        Ok(SnapshotFile {
            path: path.to_owned(),
            header: stream.header,
            bytes,
            sections,
            offsets,
            len: stream.len,
        })
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

    /// Bytes of the file.
    pub fn size(&self) -> u64 {
        self.len
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
        self.offsets.get(i).copied()
    }

    /// Decodes section `i` as `T`.
    pub fn section<T: DeserializeOwned>(&self, i: usize) -> Result<T, SnapshotError> {
        let range = self
            .sections
            .get(i)
            .ok_or_else(|| SnapshotError::invalid(&self.path, 0, format!("no section {i}")))?;
        rmp_serde::from_slice(&self.bytes[range.clone()]).map_err(|e| SnapshotError::Invalid {
            path: self.path.clone(),
            offset: self.section_offset(i).unwrap_or(0),
            reason: format!("section {i} does not decode: {e}"),
        })
    }
}

/// One section of a snapshot, as `SnapshotStream` reads it.
#[derive(Debug)]
pub struct StreamedSection {
    /// Its place among the sections (0 = first).
    pub index: usize,
    /// Where its body starts in the file.
    pub offset: u64,
    /// Its body: MessagePack.
    pub bytes: Vec<u8>,
}

/// A snapshot read frame by frame: the magic and the header at `open`,
/// then one section per `next_section`, each frame's checksum checked as
/// it is read, and at the end the footer's section count and content hash
/// and that nothing follows it. The file is sound only once
/// `next_section` returned `Ok(None)`: a caller builds from the sections
/// as they come and throws the result away on any error.
#[derive(Debug)]
pub struct SnapshotStream {
    pub path: PathBuf,
    pub header: SnapshotHeader,
    /// Bytes of the file.
    pub len: u64,
    frames: Frames,
    hash: blake3::Hasher,
    sections: usize,
    finished: bool,
}

impl SnapshotStream {
    /// Opens `path` and reads its magic and header frame.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let file = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| SnapshotError::io(path, e))?
            .len();
        let mut frames = Frames {
            path: path.to_owned(),
            file: BufReader::with_capacity(1 << 20, file),
            pos: 0,
            len,
        };
        let mut magic = [0u8; MAGIC.len()];
        if frames.read_exact(&mut magic).is_err() || magic != MAGIC {
            return Err(frames.bad(0, "not a settle snapshot (bad magic)"));
        }
        let (at, kind, body) = frames.next()?;
        if kind != Kind::Header {
            return Err(frames.bad(at, format!("a {kind:?} frame out of place")));
        }
        let header = decode_header(path, &body)?;
        let mut hash = blake3::Hasher::new();
        hash.update(&[kind as u8]);
        hash.update(&body);
        Ok(SnapshotStream {
            path: path.to_owned(),
            header,
            len,
            frames,
            hash,
            sections: 0,
            finished: false,
        })
    }

    /// The same file, open for reads of the parts this stream checks
    /// (`SnapshotReread`): valid only once the stream finished without an
    /// error, and then only for offsets it gave.
    pub fn reread(&self) -> Result<SnapshotReread, SnapshotError> {
        let file = self
            .frames
            .file
            .get_ref()
            .try_clone()
            .map_err(|e| SnapshotError::io(&self.path, e))?;
        Ok(SnapshotReread::new(&self.path, file))
    }

    /// The next section, or `None` after a footer that checks out.
    pub fn next_section(&mut self) -> Result<Option<StreamedSection>, SnapshotError> {
        if self.finished {
            return Ok(None);
        }
        let (at, kind, body) = self.frames.next()?;
        match kind {
            Kind::Section => {
                self.hash.update(&[kind as u8]);
                self.hash.update(&body);
                let index = self.sections;
                self.sections += 1;
                Ok(Some(StreamedSection {
                    index,
                    offset: at + (format::FRAME_HEADER + 1) as u64,
                    bytes: body,
                }))
            }
            Kind::Footer => {
                let footer: Footer = rmp_serde::from_slice(&body).map_err(|e| {
                    self.frames
                        .bad(at, format!("the footer does not decode: {e}"))
                })?;
                if footer.sections != self.sections as u64 {
                    return Err(self.frames.bad(
                        at,
                        format!(
                            "the footer counts {} sections, the file holds {}",
                            footer.sections, self.sections
                        ),
                    ));
                }
                if footer.content_hash != *self.hash.finalize().as_bytes() {
                    return Err(self
                        .frames
                        .bad(at, "the content hash does not match the footer's"));
                }
                let end = self.frames.pos;
                if end != self.len {
                    return Err(self
                        .frames
                        .bad(end, format!("{} bytes after the footer", self.len - end)));
                }
                self.finished = true;
                Ok(None)
            }
            Kind::Header => Err(self.frames.bad(at, "a Header frame out of place")),
        }
    }
}

/// The file under a `SnapshotStream`, read frame by frame.
#[derive(Debug)]
struct Frames {
    path: PathBuf,
    file: BufReader<File>,
    /// Where the next frame starts.
    pos: u64,
    /// Bytes of the file.
    len: u64,
}

impl Frames {
    /// Reads the frame at `pos`: where it started, its kind, its body
    /// (without the kind byte). A length is checked against what is left
    /// of the file before anything is allocated for it.
    fn next(&mut self) -> Result<(u64, Kind, Vec<u8>), SnapshotError> {
        let at = self.pos;
        if at == self.len {
            return Err(self.bad(at, "the file ends without a footer (cut short)"));
        }
        let mut head = [0u8; format::FRAME_HEADER];
        if self.read_exact(&mut head).is_err() {
            return Err(self.bad(
                at,
                format!(
                    "the file ends inside a frame header ({} bytes left)",
                    self.len - at
                ),
            ));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let left = self.len - self.pos;
        if len == 0 || len > format::MAX_FRAME || len as u64 > left {
            return Err(self.bad(
                at,
                format!("frame length {len} does not fit (1 to {left} bytes left)"),
            ));
        }
        let mut frame = vec![0u8; format::FRAME_HEADER + len];
        frame[..format::FRAME_HEADER].copy_from_slice(&head);
        if self.read_exact(&mut frame[format::FRAME_HEADER..]).is_err() {
            return Err(self.bad(at, "the file ends inside a frame"));
        }
        let (kind, _, _) = format::read_frame(&frame, 0).map_err(|r| self.bad(at, r))?;
        // The body without the frame's header and kind byte, in place.
        frame.drain(..=format::FRAME_HEADER);
        Ok((at, kind, frame))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn bad(&self, offset: u64, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Invalid {
            path: self.path.clone(),
            offset,
            reason: reason.into(),
        }
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
