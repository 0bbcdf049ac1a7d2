//! The bytes of a snapshot file. No I/O here.

use crate::engine::Decimal;
use crate::wal::Lsn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The first bytes of every snapshot file.
pub(crate) const MAGIC: [u8; 8] = *b"SETLSNAP";

/// The version this build writes. 2: wallet sections hold each wallet's
/// packed bytes (positional MessagePack, see `settle_engine::wallet::pack`)
/// instead of named-field `WalletState`s. 3: an idempotent answer's body may
/// be LZ4-compressed binary (`settle_gateway::answer_body`) where 2 always
/// has a string.
pub const FORMAT_VERSION: u16 = 3;

/// The oldest version this build reads: 2 differs from 3 only in what 3 may
/// add (compressed bodies), and a string body still reads as one.
pub const OLDEST_READ: u16 = 2;

/// Frames are at most 1 GiB: a section is a chunk of wallets, and one hot
/// wallet's history can be large, but a length beyond this is corruption.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Bytes of a frame header (length and checksum).
pub(crate) const FRAME_HEADER: usize = 8;

/// The kind byte that starts each frame body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Header = b'H' as isize,
    Section = b'S' as isize,
    Footer = b'F' as isize,
}

impl Kind {
    pub(crate) fn of(byte: u8) -> Option<Kind> {
        match byte {
            b'H' => Some(Kind::Header),
            b'S' => Some(Kind::Section),
            b'F' => Some(Kind::Footer),
            _ => None,
        }
    }
}

/// What a snapshot says about itself, readable without decoding the rest
/// (`settle snapshot list` and `inspect`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub version: u16,
    /// `snp_…`, also in the file name.
    pub id: String,
    /// The LSN of the last log record the state includes (0: none). Replay
    /// goes on from `position + 1`.
    pub position: Lsn,
    /// When it was written (ms since the epoch).
    pub created_at_ms: i64,
    pub summary: Summary,
}

/// Counts and totals of the state, computed when the snapshot was made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub wallets: u64,
    pub transactions: u64,
    /// Wallets by status (`active`, `restricted`, …).
    pub wallet_statuses: BTreeMap<String, u64>,
    /// Other things the state holds, by name (`clients`, `customers`,
    /// `idempotency_records`, …).
    pub counts: BTreeMap<String, u64>,
    /// The conservation audit per asset.
    pub assets: Vec<AssetTotals>,
}

/// One asset's totals over the whole state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetTotals {
    pub asset: String,
    pub cash: Decimal,
    pub in_flight: Decimal,
    pub external_credits: Decimal,
    pub external_debits: Decimal,
    pub converted_in: Decimal,
    pub converted_out: Decimal,
    /// `cash + in_flight == external_credits - external_debits
    /// + converted_in - converted_out`.
    pub conserved: bool,
}

/// The last frame: proof the file is whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Footer {
    pub sections: u64,
    /// BLAKE3 over every frame body before the footer, in order.
    pub content_hash: [u8; 32],
}

/// Appends one frame holding `kind` and `body`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, kind: Kind, body: &[u8]) {
    let len = u32::try_from(body.len() + 1)
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let kind = [kind as u8];
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&len), &kind), body);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&kind);
    out.extend_from_slice(body);
}

/// The frame at `pos`: its kind, its body (without the kind byte) and where
/// the next frame starts; or why it is not a frame.
pub(crate) fn read_frame(data: &[u8], pos: usize) -> Result<(Kind, &[u8], usize), String> {
    let rest = data.get(pos..).unwrap_or_default();
    if rest.len() < FRAME_HEADER {
        return Err(format!(
            "the file ends inside a frame header ({} bytes left)",
            rest.len()
        ));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_FRAME {
        return Err(format!("frame length {len} is outside 1..={MAX_FRAME}"));
    }
    let Some(body) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(format!(
            "a frame of {len} bytes runs past the end of the file ({} bytes left)",
            rest.len() - FRAME_HEADER
        ));
    };
    let computed = crc32c::crc32c_append(crc32c::crc32c(&rest[0..4]), body);
    if computed != stored {
        // Reported at the frame's start; the damage is anywhere in it.
        return Err(format!(
            "frame checksum mismatch over the frame's {len} bytes (damage within them): \
             stored {stored:08x}, computed {computed:08x}"
        ));
    }
    let kind = Kind::of(body[0]).ok_or_else(|| format!("unknown frame kind {:#04x}", body[0]))?;
    Ok((kind, &body[1..], pos + FRAME_HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_every_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, Kind::Section, b"hello");
        let (kind, body, next) = read_frame(&buf, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (kind, body, next),
            (Kind::Section, &b"hello"[..], buf.len())
        );
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    read_frame(&bad, 0).is_err(),
                    "flip at {byte}.{bit} not caught"
                );
            }
        }
        for cut in 0..buf.len() {
            assert!(
                read_frame(&buf[..cut], 0).is_err(),
                "cut at {cut} not caught"
            );
        }
    }
}
