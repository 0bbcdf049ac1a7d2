//! The body of an idempotent request's answer as it is kept for retries: in
//! the idempotency store, in the log's `Answer` records and in snapshots.
//!
//! A batch's answer is the JSON of every operation (~340 bytes each, the
//! same field names and id prefixes again and again), so the answer of a
//! batch of 1,000 is ~340 KB, kept for a day and written to the log: about
//! as many bytes as the batch's events. Bodies of at least `COMPRESS_FROM`
//! bytes are kept LZ4-compressed (about 8x smaller, ~0.3 ms for 340 KB:
//! BENCHMARKS.md); smaller ones (one transfer's answer is ~370 bytes) as
//! they are, where compression would gain little.
//!
//! In MessagePack a plain body is a string and a compressed one binary, so
//! the records written before compression (log format 1, snapshot format 2),
//! whose bodies are strings, read as plain bodies.
//!
//! Smaller bodies from `DICT_FROM` bytes up (a wallet's or a transaction's
//! answer, 250-600 bytes) are kept in memory LZ4-compressed against
//! `DICTIONARY`, two typical answers: their field names and fixed values
//! then cost a few bytes, and a ~470-byte wallet answer keeps ~100 (the
//! store holds one per request for a day: with 1,000,000 wallets opened,
//! ~400 MB less). The dictionary never reaches the disk: such a body is
//! written out as its plain text, so the dictionary may change between
//! versions without a format change.

use bytes::Bytes;
use lz4_flex::block::CompressTable;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;

/// Bodies from this size up are compressed on their own.
pub const COMPRESS_FROM: usize = 2048;

/// Bodies from this size up, and under `COMPRESS_FROM`, are compressed
/// against `DICTIONARY` (smaller ones are short errors: little to gain).
pub const DICT_FROM: usize = 128;

/// Typical answers, the ones kept most: a wallet's and a transaction's.
/// In memory only (see the module's comment), so free to change.
const DICTIONARY: &[u8] = concat!(
    r#"{"data":{"id":"wal_01M815YQV6XHBHK61RP9AEP2B1","type":"general","status":"active","#,
    r#""statusReason":null,"name":null,"description":null,"customerId":null,"#,
    r#""client":{"id":"cli_01M815YQMF70ZWC74VTZE39C2A","name":"a"},"assets":["USD"],"#,
    r#""balances":[{"asset":"USD","cash":"0.00","reserved":"0.00","pending":"0.00","#,
    r#""queued":"0.00","committed":"0.00","available":"0.00"}],"isFavourite":false,"#,
    r#""sequence":1,"createdAt":"2026-11-22T08:28:54.502Z","updatedAt":"2026-11-22T08:28:54.502Z"}}"#,
    r#"{"data":{"id":"txn_01M817HZVF1N2MP03E9GEM4QPW","type":"transfer","status":"settled","#,
    r#""walletId":"wal_01M817HZH4GY84XVZ5VD06DN0V","asset":"USD","amount":"1000.00","#,
    r#""direction":"out","counterpartyWalletId":"wal_01M817HZP8WT7B8SQPX4KJR69Y","#,
    r#""queuePosition":1,"sequence":6,"createdAt":"2026-11-22T08:56:53.871Z","#,
    r#""updatedAt":"2026-11-22T08:56:53.871Z"}}"#
)
.as_bytes();

/// The most a compressed body may expand to. Far above any answer (a batch
/// is at most 1,000 operations); a stored length beyond it is corruption,
/// refused before anything is allocated for it.
pub const MAX_EXPANDED: usize = 64 << 20;

#[derive(Clone)]
pub enum AnswerBody {
    /// The body as it was sent (our JSON, so UTF-8).
    Plain(Bytes),
    /// The body's length (u32, little endian), then its LZ4 block (the
    /// layout of `lz4_flex::compress_prepend_size`).
    Lz4(Bytes),
    /// The same layout, the block compressed against `DICTIONARY`. Made
    /// by `new` only, never read from disk.
    Dict(Bytes),
}

/// The same body, however it is kept.
impl PartialEq for AnswerBody {
    fn eq(&self, other: &AnswerBody) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for AnswerBody {}

impl AnswerBody {
    /// Keeps `body`, compressed if it is large and compression pays (an
    /// eighth smaller at least). Kept in exactly its own bytes: a reply's
    /// buffer can be twice its length (JSON grown by doubling: a wallet's
    /// ~600-byte answer sat in 1 KiB), and a stored answer lives a day.
    pub fn new(body: Bytes) -> AnswerBody {
        let pays = |packed: &Bytes| packed.len() <= body.len() - body.len() / 8;
        let kept = match body.len() {
            n if !(DICT_FROM..=MAX_EXPANDED).contains(&n) => None,
            n if n < COMPRESS_FROM => compress(&body, DICTIONARY)
                .filter(pays)
                .map(AnswerBody::Dict),
            _ => compress(&body, b"").filter(pays).map(AnswerBody::Lz4),
        };
        kept.unwrap_or_else(|| AnswerBody::Plain(Bytes::copy_from_slice(&body)))
    }

    /// The body kept as `new` keeps it. A body read from disk is plain
    /// below `COMPRESS_FROM` (the dictionary never reaches the disk): an
    /// image holding many such records keeps them compressed, as the live
    /// store does.
    #[must_use]
    pub fn compact(self) -> AnswerBody {
        match self {
            AnswerBody::Plain(body) => AnswerBody::new(body),
            kept => kept,
        }
    }

    /// The body as it was sent.
    pub fn bytes(&self) -> Result<Bytes, String> {
        match self {
            AnswerBody::Plain(body) => Ok(body.clone()),
            AnswerBody::Lz4(packed) => expand(packed, b"").map(Bytes::from),
            AnswerBody::Dict(packed) => expand(packed, DICTIONARY).map(Bytes::from),
        }
    }

    /// Bytes kept in memory.
    pub fn stored_len(&self) -> usize {
        match self {
            AnswerBody::Plain(b) | AnswerBody::Lz4(b) | AnswerBody::Dict(b) => b.len(),
        }
    }
}

thread_local! {
    /// Each thread's compression buffer and hash table, reused. A fresh
    /// output buffer per answer (as large as the body: `lz4_flex` zeroes it)
    /// came on new pages each time; it was 2% of a batch's CPU, all in the
    /// kernel zeroing them. It keeps the size of the largest body it took:
    /// a batch's answer, under half a MB, per thread that answers.
    static SCRATCH: RefCell<(Vec<u8>, CompressTable)> =
        RefCell::new((Vec::new(), CompressTable::default()));
}

/// The body's length (u32, little endian), then its LZ4 block, against
/// `dict` if it is not empty; exactly sized. `None` for a body longer than
/// a u32 can say.
fn compress(body: &[u8], dict: &[u8]) -> Option<Bytes> {
    let len = u32::try_from(body.len()).ok()?.to_le_bytes();
    SCRATCH.with_borrow_mut(|(buf, table)| {
        let need = len.len() + lz4_flex::block::get_maximum_output_size(body.len());
        if buf.len() < need {
            buf.resize(need, 0);
        }
        let (head, out) = buf.split_at_mut(len.len());
        head.copy_from_slice(&len);
        let n = if dict.is_empty() {
            lz4_flex::block::compress_into_with_table(body, out, table)
        } else {
            lz4_flex::block::compress_into_with_dict(body, out, dict)
        }
        .ok()?;
        buf.get(..len.len() + n).map(Bytes::copy_from_slice)
    })
}

fn expand(packed: &[u8], dict: &[u8]) -> Result<Vec<u8>, String> {
    let corrupt = |why: &dyn fmt::Display| format!("a stored answer does not decompress: {why}");
    let (size, block) = lz4_flex::block::uncompressed_size(packed).map_err(|e| corrupt(&e))?;
    if size > MAX_EXPANDED {
        return Err(corrupt(&format_args!(
            "it claims {size} bytes, more than the {MAX_EXPANDED} an answer may have"
        )));
    }
    let body = if dict.is_empty() {
        lz4_flex::block::decompress(block, size)
    } else {
        lz4_flex::block::decompress_with_dict(block, size, dict)
    }
    .map_err(|e| corrupt(&e))?;
    if body.len() != size {
        return Err(corrupt(&format_args!(
            "{} bytes where its header says {size}",
            body.len()
        )));
    }
    Ok(body)
}

impl From<&str> for AnswerBody {
    fn from(text: &str) -> AnswerBody {
        AnswerBody::Plain(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// Lengths only: a body can be hundreds of KB.
impl fmt::Debug for AnswerBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerBody::Plain(b) => write!(f, "Plain({} bytes)", b.len()),
            AnswerBody::Lz4(b) => write!(f, "Lz4({} bytes)", b.len()),
            AnswerBody::Dict(b) => write!(f, "Dict({} bytes)", b.len()),
        }
    }
}

impl Serialize for AnswerBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AnswerBody::Lz4(packed) => s.serialize_bytes(packed),
            // A dictionary's body is written as its text: the dictionary
            // stays out of the formats.
            AnswerBody::Plain(_) | AnswerBody::Dict(_) => {
                let body = self.bytes().map_err(serde::ser::Error::custom)?;
                match std::str::from_utf8(&body) {
                    Ok(text) => s.serialize_str(text),
                    // Never our JSON; kept readable rather than refused.
                    Err(_) => s.serialize_str(&String::from_utf8_lossy(&body)),
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for AnswerBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AnswerBody, D::Error> {
        struct Either;
        impl Visitor<'_> for Either {
            type Value = AnswerBody;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an answer body: a string, or LZ4-compressed binary")
            }
            // Kept as `new` keeps a fresh answer (recovery loads the store).
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AnswerBody, E> {
                Ok(AnswerBody::new(Bytes::copy_from_slice(v.as_bytes())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<AnswerBody, E> {
                Ok(AnswerBody::new(Bytes::from(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<AnswerBody, E> {
                Ok(AnswerBody::Lz4(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<AnswerBody, E> {
                Ok(AnswerBody::Lz4(Bytes::from(v)))
            }
        }
        d.deserialize_any(Either)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch-like answer: many similar results.
    fn batch_json(n: usize) -> Bytes {
        let results: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"status":201,"data":{{"id":"txn_01M80V4N93E3VD74J72{i:07}","type":"transfer","status":"settled","amount":"{}.{:02}"}}}}"#,
                    i % 97,
                    i % 100
                )
            })
            .collect();
        Bytes::from(format!(
            r#"{{"data":{{"results":[{}]}}}}"#,
            results.join(",")
        ))
    }

    #[test]
    fn small_bodies_stay_plain_and_large_ones_shrink_and_come_back_whole() {
        let small = Bytes::from_static(br#"{"data":{"id":"txn_1"}}"#);
        let kept = AnswerBody::new(small.clone());
        assert_eq!(kept, AnswerBody::Plain(small.clone()));
        assert_eq!(kept.bytes(), Ok(small));

        let large = batch_json(1_000);
        let kept = AnswerBody::new(large.clone());
        let AnswerBody::Lz4(packed) = &kept else {
            panic!("a {}-byte batch answer was not compressed", large.len())
        };
        assert!(
            packed.len() * 4 < large.len(),
            "{} of {}",
            packed.len(),
            large.len()
        );
        assert_eq!(kept.bytes(), Ok(large));
    }

    #[test]
    fn the_reused_buffer_and_table_carry_nothing_from_one_body_to_the_next() {
        // Large (a table of 32-bit entries), small (16-bit), large again,
        // on one thread: each comes back whole.
        for n in [2_000, 20, 700, 3_000, 40] {
            let body = batch_json(n);
            let kept = AnswerBody::new(body.clone());
            assert_eq!(kept.bytes(), Ok(body), "{n} results");
        }
    }

    const WALLET: &str = r#"{"data":{"id":"wal_01M81ABCDEXHBHK61RP9AEQQQQ","type":"general","status":"active","statusReason":null,"name":"Savings","description":null,"customerId":"cus_01M81AB0000HBHK61RP9AEQQQQ","client":{"id":"cli_01M81AAAAAF70ZWC74VTZE3999","name":"loadgen-1"},"assets":["EUR"],"balances":[{"asset":"EUR","cash":"12.50","reserved":"0.00","pending":"0.00","queued":"0.00","committed":"0.00","available":"12.50"}],"isFavourite":true,"sequence":4,"createdAt":"2026-11-23T09:41:13.007Z","updatedAt":"2026-11-23T09:41:13.107Z"}}"#;
    const CREDIT: &str = r#"{"data":{"id":"txn_01M817HZTNKHKBH2P1949MQCGC","type":"credit","status":"settled","walletId":"wal_01M817HZH4GY84XVZ5VD06DN0V","asset":"USD","amount":"100.00","direction":"in","sequence":2,"createdAt":"2026-11-22T08:56:53.846Z","updatedAt":"2026-11-22T08:56:53.846Z"}}"#;

    #[test]
    fn typical_answers_keep_a_quarter_of_their_bytes_and_come_back_whole() {
        for text in [WALLET, CREDIT] {
            let body = Bytes::from_static(text.as_bytes());
            let kept = AnswerBody::new(body.clone());
            let AnswerBody::Dict(packed) = &kept else {
                panic!("{kept:?}: not compressed against the dictionary")
            };
            assert!(
                packed.len() * 3 < body.len(),
                "{} of {}",
                packed.len(),
                body.len()
            );
            assert_eq!(kept.bytes(), Ok(body));
        }
        // Short answers (errors) stay as they are.
        let short =
            Bytes::from_static(br#"{"error":{"code":"not_found","message":"no such wallet"}}"#);
        assert_eq!(AnswerBody::new(short.clone()), AnswerBody::Plain(short));
    }

    #[test]
    fn dictionary_bodies_are_written_as_their_text() {
        let kept = AnswerBody::new(Bytes::from_static(WALLET.as_bytes()));
        assert!(matches!(kept, AnswerBody::Dict(_)));
        let written = rmp_serde::to_vec_named(&kept).unwrap_or_else(|e| panic!("{e}"));
        let text: String = rmp_serde::from_slice(&written).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, WALLET, "the disk never sees the dictionary");
        let back: AnswerBody = rmp_serde::from_slice(&written).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(back, AnswerBody::Dict(_)),
            "kept small again when read"
        );
        assert_eq!(back, kept);
    }

    #[test]
    fn damaged_dictionary_bodies_are_refused_without_panic() {
        let AnswerBody::Dict(packed) = AnswerBody::new(Bytes::from_static(WALLET.as_bytes()))
        else {
            panic!("not compressed")
        };
        for cut in 0..packed.len() {
            let _ = AnswerBody::Dict(packed.slice(..cut)).bytes();
        }
        for i in 0..packed.len() {
            let mut bad = packed.to_vec();
            bad[i] ^= 0xA5;
            if let Ok(body) = AnswerBody::Dict(Bytes::from(bad)).bytes() {
                assert!(body.len() <= MAX_EXPANDED);
            }
        }
    }

    #[test]
    fn bodies_that_do_not_compress_stay_plain() {
        // A xorshift stream: no repetition for LZ4 to find.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..8_192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let body = Bytes::from(noise);
        assert_eq!(AnswerBody::new(body.clone()), AnswerBody::Plain(body));
    }

    #[test]
    fn messagepack_keeps_the_kind_and_reads_the_old_string_bodies() {
        for body in [
            AnswerBody::new(Bytes::from_static(b"{\"data\":{}}")),
            AnswerBody::new(batch_json(200)),
        ] {
            let bytes = rmp_serde::to_vec_named(&body).unwrap_or_else(|e| panic!("{e}"));
            let back: AnswerBody = rmp_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, body);
        }
        // What log format 1 and snapshot format 2 wrote: a String.
        let old = rmp_serde::to_vec_named("{\"data\":1}").unwrap_or_else(|e| panic!("{e}"));
        let back: AnswerBody = rmp_serde::from_slice(&old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.bytes(), Ok(Bytes::from_static(b"{\"data\":1}")));
    }

    #[test]
    fn damaged_compressed_bodies_are_refused_without_panic_or_huge_allocation() {
        let AnswerBody::Lz4(packed) = AnswerBody::new(batch_json(300)) else {
            panic!("not compressed")
        };
        // A length far beyond any answer.
        let mut huge = packed.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = AnswerBody::Lz4(Bytes::from(huge)).bytes().unwrap_err();
        assert!(err.contains("claims"), "{err}");
        // A length shorter than the data.
        let mut short = packed.to_vec();
        short[..4].copy_from_slice(&100u32.to_le_bytes());
        assert!(AnswerBody::Lz4(Bytes::from(short)).bytes().is_err());
        // Every truncation, and every flipped byte of the block.
        for cut in 0..packed.len() {
            let _ = AnswerBody::Lz4(packed.slice(..cut)).bytes();
        }
        for i in 4..packed.len() {
            let mut bad = packed.to_vec();
            bad[i] ^= 0xA5;
            if let Ok(body) = AnswerBody::Lz4(Bytes::from(bad)).bytes() {
                assert!(body.len() <= MAX_EXPANDED);
            }
        }
        assert!(
            AnswerBody::Lz4(Bytes::from_static(b"\x01"))
                .bytes()
                .is_err()
        );
    }
}
