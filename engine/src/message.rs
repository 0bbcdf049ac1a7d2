//! Messages between wallets: how a transfer's money crosses from one wallet
//! to another without ever being in two places or in none.
//!
//! Protocol (one transfer `t` from `S` to `D`):
//! 1. `S` settles the outbound item: its cash falls, and `Deliver(t)` is in
//!    flight to `D` carrying the money.
//! 2. `D` applies it: either `TransferReceived` (cash rises) and a money-less
//!    `Receipt(t)` goes back to `S`; or `TransferBounced` (it cannot accept:
//!    closed, suspended, asset not held, limit) and `Return(t)` carries the
//!    money back to `S`.
//! 3. `S` applies the `Receipt` (`TransferDelivered`: nothing more owed) or
//!    the `Return` (`TransferReturned`: cash rises again, status `returned`).
//!
//! Every step is an event of one wallet, so the set of messages in flight is a
//! function of the events applied so far (see `Ledger::track`) and is rebuilt
//! by replay. Applying a message twice is harmless: receivers ignore a
//! transaction id they already hold.

use crate::asset::AssetCode;
use crate::event::Event;
use crate::ids::{Timestamp, TxnId, WalletId};
use crate::reject::ApplyError;
use crate::txn::{ConversionTerms, Outbound, TxnStatus};
use crate::wallet::WalletState;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The money of one transfer or conversion on its way between two wallets.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Leg {
    pub txn: TxnId,
    /// The source wallet (where the transfer was submitted).
    pub from: WalletId,
    /// The destination wallet.
    pub to: WalletId,
    /// The asset and amount the source sent (the sell side of a conversion).
    pub asset: AssetCode,
    pub amount: Decimal,
    pub conversion: Option<ConversionTerms>,
    /// When the transaction was created at the source: the destination's
    /// record keeps it as its `created_at`, so that a transaction has one
    /// creation time at both ends (and a transfer listed at its destination
    /// while queued keeps its place when it arrives). `None` in logs
    /// written before it existed: their records took the arrival's time.
    /// Last, with a default: the log's records are positional.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
}

impl Leg {
    /// What the money in flight is: the buy side of a conversion (converted
    /// when the source leg settled), else the transfer itself.
    pub fn in_flight(&self) -> (AssetCode, Decimal) {
        match self.conversion {
            Some(terms) => (terms.buy_asset, terms.buy_amount),
            None => (self.asset, self.amount),
        }
    }
}

/// A message in flight between two wallets.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// Money on its way from the source to the destination.
    Deliver(Leg),
    /// Money refused by the destination, on its way back to the source.
    Return(Leg),
    /// The destination's acknowledgement; carries no money.
    Receipt { txn: TxnId, to: WalletId },
}

impl Message {
    pub fn txn(&self) -> TxnId {
        match self {
            Message::Deliver(leg) | Message::Return(leg) => leg.txn,
            Message::Receipt { txn, .. } => *txn,
        }
    }

    /// The wallet that must apply this message.
    pub fn recipient(&self) -> WalletId {
        match self {
            Message::Deliver(leg) => leg.to,
            Message::Return(leg) => leg.from,
            Message::Receipt { to, .. } => *to,
        }
    }

    /// The money this message carries, if any.
    pub fn money(&self) -> Option<(AssetCode, Decimal)> {
        match self {
            Message::Deliver(leg) | Message::Return(leg) => Some(leg.in_flight()),
            Message::Receipt { .. } => None,
        }
    }
}

/// The message an event of `wallet` sends, if any: a settled transfer or
/// conversion sends `Deliver`; a received one, `Receipt`; a bounced one,
/// `Return`. `wallet` is the sender's state after the event was applied.
pub fn sent_by(wallet: &WalletState, event: &Event) -> Result<Option<Message>, ApplyError> {
    Ok(match event {
        Event::OutboundSettled { txn, .. } => {
            let Some(t) = wallet.txn(*txn) else {
                return Err(ApplyError(format!(
                    "{}: settled {txn} has no record",
                    wallet.id
                )));
            };
            delivery_of(wallet, t)
        }
        // The event holds all a `Deliver` needs: no lookup of the record.
        Event::OutboundSettledAtOnce {
            wallet: from,
            txn,
            asset,
            amount,
            target,
            at,
            ..
        } => deliver(*from, *txn, *asset, *amount, *target, *at),
        Event::TransferReceived { leg, .. } => Some(Message::Receipt {
            txn: leg.txn,
            to: leg.from,
        }),
        Event::TransferBounced { leg, .. } => Some(Message::Return(*leg)),
        _ => None,
    })
}

/// The `Deliver` of a transfer or conversion this wallet sent to another
/// wallet (also to send again while its receipt is awaited).
pub fn delivery(wallet: &WalletState, txn: TxnId) -> Option<Message> {
    delivery_of(wallet, wallet.txn(txn)?)
}

/// `delivery` for a record already at hand.
fn delivery_of(wallet: &WalletState, t: &crate::txn::Txn) -> Option<Message> {
    deliver(
        wallet.id,
        t.id,
        t.asset,
        t.amount,
        t.outbound()?,
        t.created_at,
    )
}

/// The `Deliver` of an outbound item `from` sent: none for a payout or a
/// conversion within the wallet, whose money goes nowhere else.
fn deliver(
    from: WalletId,
    txn: TxnId,
    asset: AssetCode,
    amount: Decimal,
    target: Outbound,
    created_at: Timestamp,
) -> Option<Message> {
    let (to, conversion) = match target {
        Outbound::Transfer { to } => (to, None),
        Outbound::Conversion { to, terms } if to != from => (to, Some(terms)),
        _ => return None,
    };
    Some(Message::Deliver(Leg {
        txn,
        from,
        to,
        asset,
        amount,
        conversion,
        created_at: Some(created_at),
    }))
}

/// The messages in flight implied by a set of wallet states: for every
/// transfer a source still awaits the receipt of, what its destination has
/// made of it (nothing yet: `Deliver`; received: `Receipt`; bounced:
/// `Return`). The `Ledger` tracks the same set event by event; the actor
/// runtime, whose messages sit in mailboxes, reconstructs it from a
/// consistent cut of the states (audit) or after recovery (what to send).
pub fn implied_in_flight(wallets: &BTreeMap<WalletId, &WalletState>) -> Vec<Message> {
    let at_destination = |to: WalletId, txn: TxnId| {
        Ok::<_, std::convert::Infallible>(
            wallets.get(&to).and_then(|d| d.txn(txn)).map(|r| r.status),
        )
    };
    match implied_by(wallets.values().copied(), at_destination) {
        Ok(messages) => messages,
        Err(never) => match never {},
    }
}

/// `implied_in_flight` for sources given one by one, with the destination's
/// side looked up by `at_destination(wallet, txn)`: the status of `txn`'s
/// record at `wallet`, if it holds one. For a snapshot's load, whose wallets
/// stay packed: only the few sources awaiting a receipt, and their
/// destinations, are decoded.
pub fn implied_by<'a, E>(
    sources: impl IntoIterator<Item = &'a WalletState>,
    mut at_destination: impl FnMut(WalletId, TxnId) -> Result<Option<TxnStatus>, E>,
) -> Result<Vec<Message>, E> {
    let mut messages = Vec::new();
    for source in sources {
        for txn in source.awaiting_receipt() {
            let Some(Message::Deliver(leg)) = delivery(source, txn) else {
                continue;
            };
            messages.push(match at_destination(leg.to, txn)? {
                None => Message::Deliver(leg),
                Some(TxnStatus::Returned) => Message::Return(leg),
                Some(_) => Message::Receipt { txn, to: leg.from },
            });
        }
    }
    Ok(messages)
}
