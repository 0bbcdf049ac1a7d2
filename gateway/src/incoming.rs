//! The transfers and conversions toward a wallet that have not reached it:
//! queued at their source (`awaiting_funds`), or cancelled or expired
//! there before they were funded.
//!
//! API.md lists a transfer in both wallets' lists, but the destination
//! makes its own record only when the money arrives (`TransferReceived`).
//! Until then the destination lists the source's record seen from its
//! side: `direction` `in`, the source as counterparty. Once the source
//! funds it (`OutboundSettled`) the entry goes: the money is in flight,
//! and the destination's own record follows.
//!
//! Derived, never logged: kept from the events of each commit (live, and
//! as the log replays), seeded at load from a snapshot's records. The
//! same `observe` runs in both, so the two agree.
//!
//! The same events also count the items waiting in every wallet's FIFO
//! queue, payouts included (`queued`: the `settle_outbound_queued` gauge):
//! an operator's queue depth, read without visiting a million wallets.

use crate::shards::IdHash;
use settle_engine::{Direction, Event, Outbound, Txn, TxnId, TxnStatus, WalletId};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Default)]
pub struct Incoming {
    /// (destination, transaction) -> the record as the destination shows it.
    toward: BTreeMap<(WalletId, TxnId), Txn>,
    /// The entries still awaiting funds, with their destination: the only
    /// ones a later event can change.
    waiting: HashMap<TxnId, WalletId, IdHash>,
    /// Items waiting in a FIFO queue, over all wallets (not only those
    /// toward another wallet).
    queued: u64,
}

/// The destination of an outbound item that goes to another wallet.
fn destination(target: &Outbound, source: WalletId) -> Option<WalletId> {
    match target {
        Outbound::Transfer { to } | Outbound::Conversion { to, .. } if *to != source => Some(*to),
        _ => None,
    }
}

/// A source's record of a transfer or conversion as its destination shows
/// it before the money arrives: `in`, from the source, and without the
/// client's reference and metadata (the source's words: the destination's
/// own record does not carry them either). Its `expiresAt` stays: when
/// the transfer stops waiting.
pub fn as_destination_sees(t: &Txn, source: WalletId) -> Txn {
    let mut seen = t.clone();
    seen.direction = Some(Direction::In);
    seen.counterparty = Some(source);
    if seen.info().is_some() {
        seen.extra_mut().info = None;
    }
    seen
}

/// Whether `t` is an outbound transfer or conversion that has not left its
/// source (`refresh` keeps it if its destination is another wallet).
pub fn unfunded(t: &Txn) -> bool {
    matches!(
        t.status,
        TxnStatus::AwaitingFunds | TxnStatus::Cancelled | TxnStatus::Expired
    ) && t.counterparty.is_some()
        && t.outbound().is_some()
}

/// Whether `t` waits in its wallet's FIFO queue (what `queued` counts).
fn in_queue(t: &Txn) -> bool {
    t.status == TxnStatus::AwaitingFunds && t.outbound().is_some()
}

/// Whether a record found at load matters to the index (`seed` takes it).
pub fn seeds(t: &Txn) -> bool {
    unfunded(t) || in_queue(t)
}

impl Incoming {
    /// Cheap: whether any of these events can change the index or the
    /// count of queued items: a queue's events. False keeps a commit free
    /// of the index's lock.
    pub fn touched_by(events: &[Event]) -> bool {
        events.iter().any(|e| {
            matches!(
                e,
                Event::OutboundQueued { .. }
                    | Event::OutboundSettled { .. }
                    | Event::OutboundCancelled { .. }
                    | Event::OutboundExpired { .. }
            )
        })
    }

    /// Takes in a record of wallet `source` found at load (a snapshot's
    /// scan, a ledger built in memory), each record once.
    pub fn seed(&mut self, source: WalletId, t: &Txn) {
        if in_queue(t) {
            self.queued += 1;
        }
        self.refresh(source, t);
    }

    /// Takes in the record `t` of wallet `source`, as it now stands: kept
    /// if it is a transfer or conversion to another wallet that has not
    /// left `source`, dropped otherwise (funded: the destination's own
    /// record takes over).
    pub fn refresh(&mut self, source: WalletId, t: &Txn) {
        let Some(to) = t.outbound().and_then(|o| destination(&o, source)) else {
            return;
        };
        if !unfunded(t) {
            self.waiting.remove(&t.id);
            self.toward.remove(&(to, t.id));
            return;
        }
        if t.status == TxnStatus::AwaitingFunds {
            self.waiting.insert(t.id, to);
        } else {
            self.waiting.remove(&t.id);
        }
        self.toward
            .insert((to, t.id), as_destination_sees(t, source));
    }

    /// Follows one commit of wallet `source`: `record` finds a transaction
    /// of `source` as it stands after the commit.
    pub fn observe(
        &mut self,
        source: WalletId,
        events: &[Event],
        record: impl Fn(TxnId) -> Option<Txn>,
    ) {
        for e in events {
            let txn = match e {
                Event::OutboundQueued { txn, target, .. } => {
                    self.queued += 1;
                    if destination(target, source).is_none() {
                        continue;
                    }
                    *txn
                }
                // A queued payout's events too: only those of an entry
                // still waiting need its record.
                Event::OutboundSettled { txn, .. }
                | Event::OutboundCancelled { txn, .. }
                | Event::OutboundExpired { txn, .. } => {
                    // Each leaves its queue (the engine applied it: it was there).
                    self.queued = self.queued.saturating_sub(1);
                    if !self.waiting.contains_key(txn) {
                        continue;
                    }
                    *txn
                }
                _ => continue,
            };
            match record(txn) {
                Some(t) => self.refresh(source, &t),
                // Not in the wallet after its own commit: cannot happen;
                // an entry left waiting would only show a stale status.
                None => {
                    tracing::warn!(wallet = %source, %txn, "a committed transaction is not in its wallet")
                }
            }
        }
    }

    /// The records toward `wallet` that have not reached it, oldest id first.
    pub fn toward(&self, wallet: WalletId) -> Vec<Txn> {
        let from = (wallet, TxnId::from_u128(0));
        let to = (wallet, TxnId::from_u128(u128::MAX));
        self.toward
            .range(from..=to)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Takes in another index's entries (a snapshot's load, in two parts).
    pub fn merge(&mut self, other: Incoming) {
        let Incoming {
            mut toward,
            waiting,
            queued,
        } = other;
        self.toward.append(&mut toward);
        self.waiting.extend(waiting);
        self.queued += queued;
    }

    /// How many entries there are, and how many of them await funds.
    pub fn len(&self) -> (usize, usize) {
        (self.toward.len(), self.waiting.len())
    }

    /// Items waiting in a FIFO queue, over all wallets.
    pub fn queued(&self) -> u64 {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_engine::{AssetCode, Decimal, Timestamp, TxnKind};

    fn record(id: u128, to: WalletId, status: TxnStatus) -> Txn {
        let mut t = Txn::new(
            TxnId::from_u128(id),
            TxnKind::Transfer,
            status,
            AssetCode::new("USD").unwrap(),
            Decimal::new(500, 2),
            7,
            Timestamp::from_millis(1_000),
        );
        t.direction = Some(Direction::Out);
        t.counterparty = Some(to);
        t
    }

    #[test]
    fn an_entry_lives_from_queued_until_funded_and_stays_once_cancelled() {
        let (a, b) = (WalletId::from_u128(1), WalletId::from_u128(2));
        let mut index = Incoming::default();
        index.refresh(a, &record(10, b, TxnStatus::AwaitingFunds));
        index.refresh(a, &record(11, b, TxnStatus::AwaitingFunds));
        let shown = index.toward(b);
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[0].direction, Some(Direction::In));
        assert_eq!(shown[0].counterparty, Some(a));
        assert!(index.toward(a).is_empty());
        // 10 is funded: gone. 11 is cancelled: shown cancelled, no longer waiting.
        index.refresh(a, &record(10, b, TxnStatus::Settled));
        index.refresh(a, &record(11, b, TxnStatus::Cancelled));
        let shown = index.toward(b);
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].status, TxnStatus::Cancelled);
        assert_eq!(index.len(), (1, 0));
    }

    #[test]
    fn items_to_no_other_wallet_are_not_kept() {
        let a = WalletId::from_u128(1);
        let mut index = Incoming::default();
        // A transfer to itself, and a payout (no counterparty).
        index.refresh(a, &record(10, a, TxnStatus::AwaitingFunds));
        let mut payout = record(11, a, TxnStatus::AwaitingFunds);
        payout.kind = TxnKind::Debit;
        payout.counterparty = None;
        index.refresh(a, &payout);
        // An inbound record is the destination's own.
        let mut inbound = record(12, a, TxnStatus::AwaitingFunds);
        inbound.direction = Some(Direction::In);
        index.refresh(WalletId::from_u128(3), &inbound);
        assert_eq!(index.len(), (0, 0));
    }
}
