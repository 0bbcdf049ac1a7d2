//! Transaction records: what a wallet remembers of every money movement.

use crate::asset::AssetCode;
use crate::ids::{Timestamp, TxnId, WalletId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnKind {
    Credit,
    Debit,
    Reservation,
    Transfer,
    Conversion,
}

/// Statuses, and the moves between them:
///
/// - credit: `settled`, or `pending` then `settled` | `rejected`;
/// - debit, outbound transfer, conversion: `awaiting_funds` then `settled` |
///   `cancelled` | `expired`; a settled transfer becomes `returned` if the
///   destination refused it;
/// - reservation: `held` then `captured` | `released`;
/// - inbound transfer: `settled`, or `returned` if this wallet refused it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnStatus {
    Pending,
    Settled,
    Rejected,
    AwaitingFunds,
    Cancelled,
    Expired,
    Held,
    Captured,
    Released,
    Returned,
}

impl TxnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnStatus::Pending => "pending",
            TxnStatus::Settled => "settled",
            TxnStatus::Rejected => "rejected",
            TxnStatus::AwaitingFunds => "awaiting_funds",
            TxnStatus::Cancelled => "cancelled",
            TxnStatus::Expired => "expired",
            TxnStatus::Held => "held",
            TxnStatus::Captured => "captured",
            TxnStatus::Released => "released",
            TxnStatus::Returned => "returned",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

/// What to do with an outbound item that cannot settle at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfInsufficient {
    /// Append it to the FIFO queue (`awaiting_funds`).
    #[default]
    Queue,
    /// Refuse it (409 `insufficient_funds`); nothing is kept.
    Reject,
}

/// The buy side of a conversion: `sell amount * rate`, rounded down.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ConversionTerms {
    pub buy_asset: AssetCode,
    pub buy_amount: Decimal,
    pub rate: Decimal,
}

/// Where an outbound item's money goes when it settles.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outbound {
    /// Out of the engine (a payout): an external debit.
    Payout,
    /// To another wallet, same asset.
    Transfer { to: WalletId },
    /// To a wallet (possibly this one), in another asset.
    Conversion {
        to: WalletId,
        terms: ConversionTerms,
    },
}

/// The client's own words on a transaction, kept verbatim. `metadata` is
/// opaque text here (the gateway keeps it as JSON); the engine only bounds it.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct TxnInfo {
    pub reference: Option<String>,
    pub metadata: Option<String>,
}

impl TxnInfo {
    pub const MAX_REFERENCE_LEN: usize = 255;
    pub const MAX_METADATA_LEN: usize = 16 * 1024;

    pub fn is_empty(&self) -> bool {
        self.reference.is_none() && self.metadata.is_none()
    }
}

/// The fields of a `Txn` that most records lack.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct TxnExtra {
    /// For captured reservations: how much left the wallet.
    pub captured: Option<Decimal>,
    /// For conversions: the buy side.
    pub conversion: Option<ConversionTerms>,
    pub expires_at: Option<Timestamp>,
    /// Most transactions carry neither reference nor metadata.
    pub info: Option<TxnInfo>,
}

/// One transaction as one wallet sees it. A transfer has a record in both
/// wallets under the same id: `direction` `out` at the source, `in` at the
/// destination.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Txn {
    pub id: TxnId,
    pub kind: TxnKind,
    pub status: TxnStatus,
    /// For conversions: the sell side.
    pub asset: AssetCode,
    pub amount: Decimal,
    pub direction: Option<Direction>,
    pub counterparty: Option<WalletId>,
    /// For captured reservations: how much left the wallet.
    /// The fields most records lack (capture, conversion terms, expiry, the
    /// client's words), boxed together: the record is kept for every
    /// transaction, so it is kept small. Read through the accessors.
    extra: Option<Box<TxnExtra>>,
    /// The wallet's sequence number when the transaction was created.
    pub sequence: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Txn {
    /// A record with no optional fields set.
    pub fn new(
        id: TxnId,
        kind: TxnKind,
        status: TxnStatus,
        asset: AssetCode,
        amount: Decimal,
        sequence: u64,
        at: Timestamp,
    ) -> Self {
        Self {
            id,
            kind,
            status,
            asset,
            amount,
            direction: None,
            counterparty: None,
            extra: None,
            sequence,
            created_at: at,
            updated_at: at,
        }
    }

    /// For captured reservations: how much left the wallet.
    pub fn captured(&self) -> Option<Decimal> {
        self.extra.as_ref().and_then(|e| e.captured)
    }

    /// For conversions: the buy side.
    pub fn conversion(&self) -> Option<&ConversionTerms> {
        self.extra.as_ref().and_then(|e| e.conversion.as_ref())
    }

    /// When a held reservation or a queued item expires.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.extra.as_ref().and_then(|e| e.expires_at)
    }

    /// The client's reference and metadata, if it gave any.
    pub fn info(&self) -> Option<&TxnInfo> {
        self.extra.as_ref().and_then(|e| e.info.as_ref())
    }

    /// The rarely set fields as stored (`Some` once any was filled in, even
    /// if all were later cleared): for codecs that must round-trip exactly.
    pub fn extra_fields(&self) -> Option<&TxnExtra> {
        self.extra.as_deref()
    }

    /// Replaces the rarely set fields as stored (a codec's decoder).
    pub fn set_extra_fields(&mut self, extra: Option<Box<TxnExtra>>) {
        self.extra = extra;
    }

    /// The rarely set fields, for filling in (allocated on first use).
    pub fn extra_mut(&mut self) -> &mut TxnExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// A transfer's or conversion's record at its destination: the one
    /// record of a transaction that its wallet did not create.
    pub fn is_inbound_record(&self) -> bool {
        self.direction == Some(Direction::In) && self.counterparty.is_some()
    }

    /// Where an outbound item's money goes, if this is one (as its source
    /// sees it).
    pub fn outbound(&self) -> Option<Outbound> {
        if self.direction != Some(Direction::Out) {
            return None;
        }
        match (self.kind, self.counterparty, self.conversion().copied()) {
            (TxnKind::Debit, None, None) => Some(Outbound::Payout),
            (TxnKind::Transfer, Some(to), None) => Some(Outbound::Transfer { to }),
            (TxnKind::Conversion, Some(to), Some(terms)) => {
                Some(Outbound::Conversion { to, terms })
            }
            _ => None,
        }
    }
}
