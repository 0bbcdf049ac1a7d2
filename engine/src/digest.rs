//! The state digest: a stable hash of the whole state, to compare the state
//! recovered from disk with the state before a crash.
//!
//! BLAKE3 over the MessagePack encoding (named fields) of every wallet in id
//! order, then every message in flight in transaction order. Every map in the
//! state is ordered, so equal states encode to equal bytes.

use crate::message::Message;
use crate::wallet::WalletState;
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateDigest(pub [u8; 32]);

impl fmt::Display for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateDigest({self})")
    }
}

/// The state could not be encoded (a defect in a serialisation impl).
#[derive(Debug)]
pub struct DigestError(pub rmp_serde::encode::Error);

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode state for its digest: {}", self.0)
    }
}

impl std::error::Error for DigestError {}

/// Digest of wallets and messages given in any order.
pub fn digest<'a>(
    wallets: impl IntoIterator<Item = &'a WalletState>,
    in_flight: impl IntoIterator<Item = &'a Message>,
) -> Result<StateDigest, DigestError> {
    let mut wallets: Vec<&WalletState> = wallets.into_iter().collect();
    wallets.sort_unstable_by_key(|w| w.id);
    let mut hasher = Digester::new(wallets.len());
    // Each value is encoded into a buffer, then hashed in one update: the
    // same bytes in the same order (so the same digest) as writing into the
    // hasher, without an update call per field (which cost more than the
    // hashing itself at a million wallets).
    let mut buf = Vec::with_capacity(1024);
    for w in wallets {
        buf.clear();
        encode_wallet(w, &mut buf)?;
        hasher.encoded_wallets(&buf);
    }
    hasher.finish(in_flight)
}

/// Appends a wallet's encoding as the digest hashes it. Encoding is the
/// costly part of a digest: callers may encode on several threads and hand
/// the bytes to one `Digester` in id order.
pub fn encode_wallet(w: &WalletState, out: &mut Vec<u8>) -> Result<(), DigestError> {
    rmp_serde::encode::write_named(out, w).map_err(DigestError)
}

/// The digest, fed wallet by wallet in id order (`digest` sorts first).
#[derive(Clone, Debug)]
pub struct Digester {
    hasher: blake3::Hasher,
}

impl Digester {
    /// For `wallets` wallets, to be given in id order.
    pub fn new(wallets: usize) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"settle-state-v1");
        hasher.update(&(wallets as u64).to_le_bytes());
        Digester { hasher }
    }

    /// The encodings (`encode_wallet`) of the next wallets in id order.
    pub fn encoded_wallets(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// After every wallet: the messages in flight (any order), and the digest.
    pub fn finish<'a>(
        mut self,
        in_flight: impl IntoIterator<Item = &'a Message>,
    ) -> Result<StateDigest, DigestError> {
        let mut messages: Vec<&Message> = in_flight.into_iter().collect();
        messages.sort_unstable_by_key(|m| m.txn());
        self.hasher.update(&(messages.len() as u64).to_le_bytes());
        let mut buf = Vec::with_capacity(256);
        for m in messages {
            buf.clear();
            rmp_serde::encode::write_named(&mut buf, m).map_err(DigestError)?;
            self.hasher.update(&buf);
        }
        Ok(StateDigest(*self.hasher.finalize().as_bytes()))
    }
}
