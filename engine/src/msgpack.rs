//! A minimal MessagePack writer and reader over byte slices, for the
//! hand-written wallet codec (`wallet::pack`) and the snapshot sections
//! built on it.
//!
//! Why not serde: decoding a wallet through `rmp_serde` cost several
//! microseconds (field names matched as strings, decimals parsed from
//! text, a visitor per value); a million wallets took seconds. These
//! functions emit and accept standard MessagePack (any reader can walk the
//! bytes), always in the smallest form, and the reader never panics or
//! over-allocates on hostile input: every length is checked against the
//! bytes that remain.

use std::fmt;

/// Why bytes did not decode: what was expected, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for DecodeError {}

// Writing. Appending to a `Vec` cannot fail, so these return nothing.

pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xc3 } else { 0xc2 });
}

pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if let Ok(b) = u8::try_from(v) {
        if b < 0x80 {
            out.push(b);
        } else {
            out.extend_from_slice(&[0xcc, b]);
        }
    } else if let Ok(v) = u16::try_from(v) {
        out.push(0xcd);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        out.push(0xce);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if let Ok(u) = u64::try_from(v) {
        write_uint(out, u);
    } else if v >= -32 {
        out.push(v.to_be_bytes()[7]);
    } else if let Ok(v) = i8::try_from(v) {
        out.extend_from_slice(&[0xd0, v.to_be_bytes()[0]]);
    } else if let Ok(v) = i16::try_from(v) {
        out.push(0xd1);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(v) {
        out.push(0xd2);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn write_len(out: &mut Vec<u8>, len: usize, fix: Option<(u8, usize)>, tags: [u8; 3]) {
    match (fix, u8::try_from(len)) {
        (Some((base, max)), Ok(small)) if len <= max => out.push(base | small),
        _ => {
            if let (Ok(n), true) = (u8::try_from(len), tags[0] != 0) {
                out.extend_from_slice(&[tags[0], n]);
            } else if let Ok(n) = u16::try_from(len) {
                out.push(tags[1]);
                out.extend_from_slice(&n.to_be_bytes());
            } else {
                // Lengths past u32 cannot be framed; callers bound them far below.
                out.push(tags[2]);
                out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
            }
        }
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_len(out, s.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb]);
    out.extend_from_slice(s.as_bytes());
}

pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    write_len(out, b.len(), None, [0xc4, 0xc5, 0xc6]);
    out.extend_from_slice(b);
}

pub fn write_array_len(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, Some((0x90, 15)), [0, 0xdc, 0xdd]);
}

pub fn write_map_len(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, Some((0x80, 15)), [0, 0xde, 0xdf]);
}

/// Reads MessagePack values from a slice, front to back.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

// The small methods are `#[inline]`: they are called from the gateway's
// crate too, and a call per byte read showed in load profiles.
impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Where the next value starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn error(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.error(format!("{n} bytes needed, {} left", self.remaining())))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn unexpected(&self, tag: u8, what: &str) -> DecodeError {
        DecodeError {
            offset: self.pos.saturating_sub(1),
            reason: format!("expected {what}, found tag {tag:#04x}"),
        }
    }

    /// Whether a binary value is next (fields that are an integer or bin).
    #[inline]
    pub fn next_is_bin(&self) -> bool {
        matches!(self.peek(), Some(0xc4..=0xc6))
    }

    /// Takes a nil if one is next (then `true`): for optional fields.
    #[inline]
    pub fn nil(&mut self) -> bool {
        if self.peek() == Some(0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            t => Err(self.unexpected(t, "a boolean")),
        }
    }

    /// Any integer, widened.
    #[inline]
    pub fn i128(&mut self) -> Result<i128, DecodeError> {
        let tag = self.byte()?;
        Ok(match tag {
            0x00..=0x7f => i128::from(tag),
            0xe0..=0xff => i128::from(i8::from_be_bytes([tag])),
            0xcc => i128::from(self.byte()?),
            0xcd => i128::from(u16::from_be_bytes(self.be()?)),
            0xce => i128::from(u32::from_be_bytes(self.be()?)),
            0xcf => i128::from(u64::from_be_bytes(self.be()?)),
            0xd0 => i128::from(i8::from_be_bytes(self.be()?)),
            0xd1 => i128::from(i16::from_be_bytes(self.be()?)),
            0xd2 => i128::from(i32::from_be_bytes(self.be()?)),
            0xd3 => i128::from(i64::from_be_bytes(self.be()?)),
            t => return Err(self.unexpected(t, "an integer")),
        })
    }

    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let at = self.pos;
        let v = self.i128()?;
        u64::try_from(v).map_err(|_| DecodeError {
            offset: at,
            reason: format!("{v} is not an unsigned 64-bit integer"),
        })
    }

    #[inline]
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let at = self.pos;
        let v = self.i128()?;
        i64::try_from(v).map_err(|_| DecodeError {
            offset: at,
            reason: format!("{v} is not a 64-bit integer"),
        })
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let at = self.pos;
        let v = self.i128()?;
        u8::try_from(v).map_err(|_| DecodeError {
            offset: at,
            reason: format!("{v} is not a small code"),
        })
    }

    /// A length: `fix` is the fixed form's (tag base, length mask), if any.
    #[inline]
    fn len(
        &mut self,
        fix: Option<(u8, u8)>,
        tags: [u8; 3],
        what: &str,
    ) -> Result<usize, DecodeError> {
        let tag = self.byte()?;
        let n = match tag {
            t if fix.is_some_and(|(base, mask)| t & !mask == base) => {
                usize::from(t & fix.map_or(0, |(_, mask)| mask))
            }
            t if t == tags[0] && t != 0 => usize::from(self.byte()?),
            t if t == tags[1] => usize::from(u16::from_be_bytes(self.be()?)),
            t if t == tags[2] => {
                usize::try_from(u32::from_be_bytes(self.be()?)).unwrap_or(usize::MAX)
            }
            t => return Err(self.unexpected(t, what)),
        };
        Ok(n)
    }

    #[inline]
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len(Some((0xa0, 0x1f)), [0xd9, 0xda, 0xdb], "a string")?;
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError {
            offset: at,
            reason: "a string that is not UTF-8".to_owned(),
        })
    }

    #[inline]
    pub fn bin(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len(None, [0xc4, 0xc5, 0xc6], "binary")?;
        self.take(n)
    }

    /// An array's length. Each element takes at least one byte, so a length
    /// beyond the bytes left is refused here, before anyone allocates.
    #[inline]
    pub fn array_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.len(Some((0x90, 0x0f)), [0, 0xdc, 0xdd], "an array")?;
        self.fits(n)
    }

    /// An array that must have exactly `n` elements (a positional record).
    #[inline]
    pub fn record(&mut self, n: usize, what: &str) -> Result<(), DecodeError> {
        let at = self.pos;
        let got = self.array_len()?;
        if got == n {
            Ok(())
        } else {
            Err(DecodeError {
                offset: at,
                reason: format!("{what}: {got} fields, expected {n}"),
            })
        }
    }

    pub fn map_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.len(Some((0x80, 0x0f)), [0, 0xde, 0xdf], "a map")?;
        self.fits(n.saturating_mul(2)).map(|_| n)
    }

    #[inline]
    fn fits(&self, n: usize) -> Result<usize, DecodeError> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "{n} elements announced, {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.error(format!("{} bytes left over", self.remaining())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ints_round_trip_and_rmp_agrees(v in any::<i64>(), u in any::<u64>()) {
            let mut out = Vec::new();
            write_array_len(&mut out, 2);
            write_int(&mut out, v);
            write_uint(&mut out, u);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.array_len().ok(), Some(2));
            prop_assert_eq!(r.i64().ok(), Some(v));
            prop_assert_eq!(r.u64().ok(), Some(u));
            prop_assert!(r.finish().is_ok());
            // Standard MessagePack: the reference implementation reads it.
            let theirs: (i64, u64) = rmp_serde::from_slice(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(theirs, (v, u));
        }

        #[test]
        fn strings_bins_and_lengths_round_trip(s in ".{0,300}", b in proptest::collection::vec(any::<u8>(), 0..300), n in 0usize..70_000) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            write_bin(&mut out, &b);
            write_array_len(&mut out, n);
            write_map_len(&mut out, n);
            out.resize(out.len() + 2 * n, 0xc0);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.str().ok(), Some(s.as_str()));
            prop_assert_eq!(r.bin().ok(), Some(&b[..]));
            prop_assert_eq!(r.array_len().ok(), Some(n));
            prop_assert_eq!(r.map_len().ok(), Some(n));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = (r.array_len(), r.str(), r.bin(), r.i128(), r.bool(), r.map_len());
        }
    }

    #[test]
    fn an_announced_length_past_the_end_is_refused() {
        let mut out = Vec::new();
        write_array_len(&mut out, 1_000_000);
        assert!(Reader::new(&out).array_len().is_err());
        let mut out = Vec::new();
        write_str(&mut out, "abcdef");
        assert!(Reader::new(&out[..4]).str().is_err());
    }
}
