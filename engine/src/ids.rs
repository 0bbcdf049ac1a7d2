//! Identifiers and time.
//!
//! Every id is a ULID with a type prefix in its text form (`wal_01J…`), so that
//! ids sort by creation time and a wallet id can never be mistaken for a
//! transaction id. Ids are *inputs* to the state machine (the gateway mints
//! them), never generated inside it: replay must not depend on randomness.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use ulid::Ulid;

/// A malformed id: wrong prefix or not a ULID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    pub expected_prefix: &'static str,
    pub input: String,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a valid id (expected {}_ followed by a 26-character ULID)",
            self.input, self.expected_prefix
        )
    }
}

impl std::error::Error for IdError {}

/// A ULID's 128 bits as two words. Not a `u128`: that is aligned to 16
/// bytes, and every record holding an optional id (a transaction's
/// counterparty) then carried 15 bytes of padding; as two words it is
/// aligned to 8.
///
/// Order and hash go through the number: one branch-free 128-bit compare
/// (a `History` search compares ids in its inner loop) and one hash write,
/// where derived ones would compare and hash word by word.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdBits {
    high: u64,
    low: u64,
}

impl Ord for IdBits {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.get().cmp(&other.get())
    }
}

impl PartialOrd for IdBits {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for IdBits {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.get());
    }
}

impl IdBits {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the two halves, on purpose"
    )]
    const fn of(n: u128) -> Self {
        Self {
            high: (n >> 64) as u64,
            low: n as u64,
        }
    }

    const fn get(self) -> u128 {
        ((self.high as u128) << 64) | self.low as u128
    }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(IdBits);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub const fn from_ulid(ulid: Ulid) -> Self {
                Self(IdBits::of(ulid.0))
            }

            pub const fn from_u128(n: u128) -> Self {
                Self(IdBits::of(n))
            }

            pub const fn ulid(self) -> Ulid {
                Ulid(self.0.get())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.ulid())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                let err = || IdError { expected_prefix: $prefix, input: s.chars().take(64).collect() };
                let rest = s
                    .strip_prefix($prefix)
                    .and_then(|r| r.strip_prefix('_'))
                    .ok_or_else(err)?;
                Ulid::from_string(rest).map(Self::from_ulid).map_err(|_| err())
            }
        }

        // Text in human-readable formats (JSON, logs), 16 bytes in binary ones
        // (MessagePack in the log and snapshots).
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_u128(self.0.get())
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = String::deserialize(d)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    u128::deserialize(d).map(Self::from_u128)
                }
            }
        }
    };
}

prefixed_id!(
    /// A tenant of the engine (a business calling the API with its own key).
    ClientId,
    "cli"
);
prefixed_id!(
    /// An end user or business of a client.
    CustomerId,
    "cus"
);
prefixed_id!(
    /// A wallet: one balance and one FIFO queue per enabled asset.
    WalletId,
    "wal"
);
prefixed_id!(
    /// A money movement. A transfer keeps one id in both wallets.
    TxnId,
    "txn"
);
prefixed_id!(
    /// A snapshot of the whole engine (its file name carries it).
    SnapshotId,
    "snp"
);

prefixed_id!(
    /// A pay-in address (virtual account) issued for a wallet.
    PayinAddressId,
    "pia"
);
prefixed_id!(
    /// A client's webhook endpoint.
    WebhookId,
    "whk"
);

/// Milliseconds since the Unix epoch, UTC.
///
/// Time is an input: every command carries the instant it happened, and
/// the state machine never reads a clock, so that replaying the same
/// commands or events gives the same state.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_reject_wrong_prefixes() {
        let w = WalletId::from_u128(42);
        let text = w.to_string();
        assert!(text.starts_with("wal_"));
        assert_eq!(text.parse::<WalletId>(), Ok(w));
        assert!(text.replace("wal_", "txn_").parse::<WalletId>().is_err());
        assert!("wal_".parse::<WalletId>().is_err());
        assert!("wal_not-a-ulid".parse::<WalletId>().is_err());
        assert!("".parse::<TxnId>().is_err());
    }

    #[test]
    fn ids_are_binary_in_messagepack_and_text_in_json_like_formats() {
        let t = TxnId::from_u128(u128::MAX - 7);
        let bytes = rmp_serde::to_vec(&t).unwrap();
        assert!(
            bytes.len() <= 18,
            "16 bytes of id plus a header, got {}",
            bytes.len()
        );
        let back: TxnId = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn an_id_is_aligned_to_8_bytes_so_an_optional_one_pads_little() {
        assert_eq!(std::mem::align_of::<WalletId>(), 8);
        assert_eq!(std::mem::size_of::<Option<WalletId>>(), 24);
    }

    proptest::proptest! {
        /// Held as two words, an id still orders, prints and encodes as
        /// its 128-bit number (ULIDs sort by time; records are kept in id
        /// order, `wallet::history`).
        #[test]
        fn ids_order_and_encode_as_their_number(a: u128, b: u128) {
            let (x, y) = (TxnId::from_u128(a), TxnId::from_u128(b));
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            proptest::prop_assert_eq!(x.ulid().0, a);
            proptest::prop_assert_eq!(x.to_string(), format!("txn_{}", Ulid(a)));
            proptest::prop_assert_eq!(rmp_serde::to_vec(&x).unwrap(), rmp_serde::to_vec(&a).unwrap());
        }
    }
}
