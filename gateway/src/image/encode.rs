//! Every wallet of an image, in id order, encoded: into a snapshot's wallet
//! sections, or for the state digest. A wallet is decoded (`Live`) or
//! stored packed (`Stored`: in memory, or read from the snapshot file as
//! it is encoded); both passes run on two threads.

use super::stored::{Stored, StoredWallet};
use super::{ImageError, PACKED_WALLETS};
use settle_engine::digest::{self, Digester};
use settle_engine::msgpack;
use settle_engine::wallet::pack;
use settle_engine::{Message, StateDigest, WalletState};

/// Wallets per chunk of the digest's two-thread encoding.
const DIGEST_CHUNK: usize = 2_048;

/// One wallet of an image, decoded or stored.
#[derive(Clone, Copy, Debug)]
pub(super) enum WalletRef<'a> {
    Live(&'a WalletState),
    Stored(&'a StoredWallet),
}

/// One section of wallets (empty bytes for no wallets): a named-field map
/// whose one entry holds each wallet's packed bytes. A stored wallet's
/// bytes are copied as they are: they are what packing it would give.
pub(super) fn encode_wallets(
    wallets: &[WalletRef<'_>],
    stored: &Stored,
) -> Result<Vec<u8>, ImageError> {
    if wallets.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(wallets.len() * 192);
    msgpack::write_map_len(&mut out, 1);
    msgpack::write_str(&mut out, PACKED_WALLETS);
    msgpack::write_array_len(&mut out, wallets.len());
    let mut one = Vec::with_capacity(256);
    let mut read = stored_bytes(wallets, stored)?.into_iter();
    for w in wallets {
        match w {
            WalletRef::Live(state) => {
                one.clear();
                pack::encode(state, &mut one);
                msgpack::write_bin(&mut out, &one);
            }
            WalletRef::Stored(w) => {
                let bytes = read
                    .next()
                    .ok_or_else(|| ImageError(format!("wallet {} was not read", w.id)))?;
                msgpack::write_bin(&mut out, &bytes);
            }
        }
    }
    Ok(out)
}

/// The bytes of the stored wallets among `wallets`, in order, read
/// together (`Stored::bytes_of`).
fn stored_bytes<'a>(
    wallets: &[WalletRef<'a>],
    stored: &'a Stored,
) -> Result<Vec<std::borrow::Cow<'a, [u8]>>, ImageError> {
    let list: Vec<&StoredWallet> = wallets
        .iter()
        .filter_map(|w| match w {
            WalletRef::Stored(w) => Some(*w),
            WalletRef::Live(_) => None,
        })
        .collect();
    stored.bytes_of(&list).map_err(ImageError)
}

/// The encodings the digest hashes, of `wallets` in order, in one buffer.
fn digest_chunk(wallets: &[WalletRef<'_>], stored: &Stored) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(wallets.len() * 512);
    let mut read = stored_bytes(wallets, stored)?.into_iter();
    for w in wallets {
        match w {
            WalletRef::Live(state) => digest::encode_wallet(state, &mut out),
            WalletRef::Stored(w) => {
                let bytes = read
                    .next()
                    .ok_or_else(|| ImageError(format!("wallet {} was not read", w.id)))?;
                let state = pack::decode(&bytes).map_err(|e| {
                    ImageError(format!(
                        "the snapshot's wallet {} does not decode: {e}",
                        w.id
                    ))
                })?;
                digest::encode_wallet(&state, &mut out)
            }
        }
        .map_err(|e| ImageError(format!("digest of the state: {e}")))?;
    }
    Ok(out)
}

/// The state digest of `wallets` (in id order) and `in_flight`, the same
/// as `settle_engine::digest::digest` of the decoded states: chunks are
/// encoded on two threads (decoding and encoding are most of the cost) and
/// hashed in order.
pub(super) fn digest<'a>(
    wallets: &[WalletRef<'_>],
    stored: &Stored,
    in_flight: impl IntoIterator<Item = &'a Message>,
) -> Result<StateDigest, ImageError> {
    let mut hasher = Digester::new(wallets.len());
    for round in wallets.chunks(DIGEST_CHUNK * 2) {
        let (a, b) = round.split_at(round.len().min(DIGEST_CHUNK));
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| digest_chunk(b, stored));
            (digest_chunk(a, stored), other.join())
        });
        hasher.encoded_wallets(&a?);
        match b {
            Ok(b) => hasher.encoded_wallets(&b?),
            Err(_) => return Err(ImageError("a digest thread panicked".into())),
        }
    }
    hasher
        .finish(in_flight)
        .map_err(|e| ImageError(format!("digest of the state: {e}")))
}
