//! The bytes on disk: segment names, the segment header and the record
//! frame. Nothing here does I/O, so every rule of the format is checked by
//! plain unit tests.
//!
//! ```text
//! segment file  {first_lsn:020}.wal, preallocated (zeros past the written end)
//!   header      0..8 magic "SETLWAL\0" | 8..12 version u32 LE | 12..20 first LSN u64 LE
//!               | 20..24 CRC32C of bytes 0..20 | 24..32 reserved (zeros, ignored)
//!   frames      len u32 LE (1..=16 MiB) | crc u32 LE = CRC32C(len bytes ++ payload) | payload
//!   end         a frame header of 8 zero bytes (or the end of the file)
//! NEWEST        the newest segment's file name and a newline (`newest`)
//! ```
//!
//! The length is inside the checksum so that a flipped length bit cannot
//! make a shorter or longer frame that still checks. A zero length is never
//! valid, which is what lets zeros mark the end of the written log.

use super::config::{Lsn, MAX_RECORD};

/// The magic at the start of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"SETLWAL\0";
/// The format version this code writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: u64 = SEGMENT_HEADER_BYTES as u64;
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
/// Bytes of a frame header (length and checksum).
pub const FRAME_HEADER_LEN: u64 = 8;

/// The largest first LSN a header may carry (2^62): far beyond any real
/// log, and low enough that LSN arithmetic on what is read back can never
/// overflow.
pub(crate) const MAX_LSN: Lsn = 1 << 62;

/// Header field offsets, so that errors can name the exact byte.
pub(crate) const VERSION_OFFSET: u64 = 8;
pub(crate) const FIRST_LSN_OFFSET: u64 = 12;
pub(crate) const HEADER_CRC_OFFSET: u64 = 20;

const SUFFIX: &str = ".wal";
/// A segment being created: written and synced under this name, then
/// renamed, so a segment file with the final name always has a valid header.
const TEMP_SUFFIX: &str = ".wal.tmp";

/// `{first_lsn:020}.wal`: names sort in LSN order.
pub(crate) fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{SUFFIX}")
}

/// The name a segment is created under before it is renamed.
pub(crate) fn temp_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{TEMP_SUFFIX}")
}

/// The file naming the newest segment (`newest`).
pub(crate) const NEWEST_NAME: &str = "NEWEST";
/// `NEWEST` being replaced: written and synced, then renamed over it.
pub(crate) const NEWEST_TEMP_NAME: &str = "NEWEST.tmp";

/// What a file name in the log directory is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment(Lsn),
    Temp,
    /// `NEWEST`, the name of the newest segment.
    Newest,
    Other,
}

pub(crate) fn classify_name(name: &str) -> FileKind {
    let digits = |stem: &str| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit());
    if name == NEWEST_NAME {
        return FileKind::Newest;
    }
    if name == NEWEST_TEMP_NAME {
        return FileKind::Temp;
    }
    if let Some(stem) = name.strip_suffix(TEMP_SUFFIX) {
        // A spare (`spare-{n}.wal.tmp`) holds no records either.
        if digits(stem) || super::spare::is_spare_name(name) {
            return FileKind::Temp;
        }
    } else if let Some(stem) = name.strip_suffix(SUFFIX)
        && digits(stem)
        && let Ok(lsn) = stem.parse::<Lsn>()
    {
        return FileKind::Segment(lsn);
    }
    FileKind::Other
}

/// The header of a segment whose first record has `first_lsn`.
pub(crate) fn encode_header(first_lsn: Lsn) -> [u8; 32] {
    let mut header = [0u8; 32];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A header that does not check: the offset of the bad field and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadHeader {
    pub offset: u64,
    pub reason: String,
}

/// Reads a segment header; returns its first LSN.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Lsn, BadHeader> {
    let bad = |offset, reason: String| Err(BadHeader { offset, reason });
    let Some(header) = bytes.get(..32) else {
        return bad(
            0,
            format!(
                "file of {} bytes is shorter than a segment header",
                bytes.len()
            ),
        );
    };
    let magic = &header[0..8];
    let version = read_u32(header, 8);
    let first_lsn = read_u64(header, 12);
    let stored = read_u32(header, 20);
    let computed = crc32c::crc32c(&header[0..20]);
    if magic != MAGIC {
        return bad(
            0,
            format!("bad magic {magic:02x?} (not a settle log segment)"),
        );
    }
    if stored != computed {
        return bad(
            HEADER_CRC_OFFSET,
            format!("header checksum mismatch: stored {stored:08x}, computed {computed:08x}"),
        );
    }
    if version != VERSION {
        return bad(
            VERSION_OFFSET,
            format!("unsupported format version {version} (this build reads {VERSION})"),
        );
    }
    if first_lsn == 0 || first_lsn > MAX_LSN {
        return bad(
            FIRST_LSN_OFFSET,
            format!("first LSN {first_lsn} is outside 1..={MAX_LSN}"),
        );
    }
    Ok(first_lsn)
}

/// Appends the frame of `payload` to `buf`. The caller has checked the
/// length (1..=MAX_RECORD).
pub(crate) fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What is at a frame position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A valid record; the next frame starts `FRAME_HEADER_LEN + payload.len()` later.
    Record(&'a [u8]),
    /// Zeros where a header should be (or the end of the data): the end of
    /// the written log, provided nothing but zeros follows (the scanner checks).
    End,
    /// Not a valid frame, and why.
    Bad(String),
}

/// Decodes the frame at `pos` of `data` (a whole segment or its valid prefix).
pub(crate) fn read_frame(data: &[u8], pos: usize) -> Frame<'_> {
    let Some(rest) = data.get(pos..) else {
        return Frame::End;
    };
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < 8 {
        return if is_zero(rest) {
            Frame::End
        } else {
            Frame::Bad(format!(
                "short frame header: {} bytes before the end of the segment",
                rest.len()
            ))
        };
    }
    let len = read_u32(rest, 0);
    let stored = read_u32(rest, 4);
    if len == 0 {
        return if stored == 0 {
            Frame::End
        } else {
            Frame::Bad("frame length 0".into())
        };
    }
    let len = len as usize; // u32 -> usize: lossless on the 32/64-bit targets we build for
    if len > MAX_RECORD {
        return Frame::Bad(format!(
            "frame length {len} exceeds the {MAX_RECORD}-byte limit"
        ));
    }
    let Some(payload) = rest.get(8..8 + len) else {
        return Frame::Bad(format!(
            "frame of {len} bytes runs past the end of the segment ({} bytes left)",
            rest.len() - 8
        ));
    };
    let computed = crc32c::crc32c_append(crc32c::crc32c(&rest[0..4]), payload);
    if computed != stored {
        return Frame::Bad(format!(
            "frame checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        ));
    }
    Frame::Record(payload)
}

/// True if every byte is zero (vectorises: no early exit per byte).
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    for chunk in &mut chunks {
        if chunk.iter().fold(0u8, |acc, b| acc | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|b| *b == 0)
}

/// One past the last non-zero byte of `bytes` (0 if all are zero).
pub(crate) fn nonzero_extent(bytes: &[u8]) -> usize {
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(4096);
        if is_zero(&bytes[start..end]) {
            end = start;
        } else {
            return bytes[start..end]
                .iter()
                .rposition(|b| *b != 0)
                .map_or(start, |i| start + i + 1);
        }
    }
    0
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(segment_name(1), "00000000000000000001.wal");
        assert_eq!(
            classify_name("00000000000000000001.wal"),
            FileKind::Segment(1)
        );
        assert_eq!(
            classify_name(&segment_name(u64::MAX)),
            FileKind::Segment(u64::MAX)
        );
        assert_eq!(classify_name(&temp_name(7)), FileKind::Temp);
        assert_eq!(classify_name("spare-3.wal.tmp"), FileKind::Temp);
        assert_eq!(classify_name("other.wal.tmp"), FileKind::Other);
        assert_eq!(classify_name("1.wal"), FileKind::Other);
        assert_eq!(classify_name("0000000000000000000a.wal"), FileKind::Other);
        assert_eq!(classify_name("99999999999999999999.wal"), FileKind::Other); // > u64::MAX
        assert_eq!(classify_name("notes.txt"), FileKind::Other);
        assert_eq!(classify_name("NEWEST"), FileKind::Newest);
        assert_eq!(classify_name("NEWEST.tmp"), FileKind::Temp);
        assert_eq!(classify_name("newest"), FileKind::Other);
        assert!(segment_name(9) < segment_name(10));
    }

    #[test]
    fn header_round_trip_and_every_field_checked() {
        let header = encode_header(42);
        assert_eq!(decode_header(&header), Ok(42));
        assert_eq!(decode_header(&header[..31]).map_err(|e| e.offset), Err(0));

        let mut magic = header;
        magic[3] ^= 1;
        assert_eq!(decode_header(&magic).map_err(|e| e.offset), Err(0));
        for byte in 8..24 {
            let mut flipped = header;
            flipped[byte] ^= 0x10;
            assert_eq!(
                decode_header(&flipped).map_err(|e| e.offset),
                Err(HEADER_CRC_OFFSET),
                "byte {byte}"
            );
        }
        // Padding is reserved and ignored.
        let mut padded = header;
        padded[30] = 9;
        assert_eq!(decode_header(&padded), Ok(42));
    }

    #[test]
    fn header_version_and_zero_lsn() {
        let mut header = encode_header(5);
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&header[0..20]);
        header[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_header(&header).map_err(|e| e.offset),
            Err(VERSION_OFFSET)
        );
        let huge = encode_header(MAX_LSN + 1);
        assert_eq!(
            decode_header(&huge).map_err(|e| e.offset),
            Err(FIRST_LSN_OFFSET)
        );
        assert_eq!(decode_header(&encode_header(MAX_LSN)), Ok(MAX_LSN));
        let zero = encode_header(0);
        assert_eq!(
            decode_header(&zero).map_err(|e| e.offset),
            Err(FIRST_LSN_OFFSET)
        );
    }

    #[test]
    fn frames_round_trip_and_end_at_zeros() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, b"hello");
        encode_frame(&mut buf, &[0u8; 3]);
        buf.extend_from_slice(&[0u8; 20]);
        assert_eq!(read_frame(&buf, 0), Frame::Record(b"hello"));
        assert_eq!(read_frame(&buf, 13), Frame::Record(&[0, 0, 0]));
        assert_eq!(read_frame(&buf, 24), Frame::End);
        assert_eq!(read_frame(&buf, buf.len() - 3), Frame::End);
        assert_eq!(read_frame(&buf, buf.len()), Frame::End);
    }

    #[test]
    fn every_bit_of_a_frame_is_checked() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, b"payload bytes");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut flipped = buf.clone();
                flipped[byte] ^= 1 << bit;
                assert!(
                    matches!(read_frame(&flipped, 0), Frame::Bad(_)),
                    "byte {byte} bit {bit}"
                );
            }
        }
        assert!(matches!(
            read_frame(&buf[..buf.len() - 1], 0),
            Frame::Bad(_)
        ));
        assert!(matches!(read_frame(&buf[..5], 0), Frame::Bad(_)));
        let mut huge = buf.clone();
        huge[0..4].copy_from_slice(&(u32::try_from(MAX_RECORD).unwrap() + 1).to_le_bytes());
        assert!(matches!(read_frame(&huge, 0), Frame::Bad(r) if r.contains("exceeds")));
        let mut zero_len = buf;
        zero_len[0..4].copy_from_slice(&[0; 4]);
        assert!(matches!(read_frame(&zero_len, 0), Frame::Bad(r) if r.contains("length 0")));
    }

    #[test]
    fn zero_helpers() {
        assert!(is_zero(&[0u8; 1000]));
        let mut bytes = vec![0u8; 10_000];
        assert_eq!(nonzero_extent(&bytes), 0);
        bytes[0] = 1;
        assert_eq!(nonzero_extent(&bytes), 1);
        bytes[4097] = 3;
        assert_eq!(nonzero_extent(&bytes), 4098);
        bytes[9_999] = 3;
        assert_eq!(nonzero_extent(&bytes), 10_000);
        assert!(!is_zero(&bytes[9_990..]));
    }
}
