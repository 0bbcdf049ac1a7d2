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
    let mut messages: Vec<&Message> = in_flight.into_iter().collect();
    messages.sort_unstable_by_key(|m| m.txn());
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"settle-state-v1");
    hasher.update(&(wallets.len() as u64).to_le_bytes());
    // Each value is encoded into a buffer, then hashed in one update: the
    // same bytes in the same order (so the same digest) as writing into the
    // hasher, without an update call per field (which cost more than the
    // hashing itself at a million wallets).
    let mut buf = Vec::with_capacity(1024);
    for w in wallets {
        buf.clear();
        rmp_serde::encode::write_named(&mut buf, w).map_err(DigestError)?;
        hasher.update(&buf);
    }
    hasher.update(&(messages.len() as u64).to_le_bytes());
    for m in messages {
        buf.clear();
        rmp_serde::encode::write_named(&mut buf, m).map_err(DigestError)?;
        hasher.update(&buf);
    }
    Ok(StateDigest(*hasher.finalize().as_bytes()))
}
