//! One wallet: its balances, FIFO queues and transactions.
//!
//! `decide` holds the commands (checks, then events); `apply` holds the
//! only code that mutates a wallet. A wallet never looks at another wallet:
//! what crosses between wallets travels as a `Message` (see `message`).

mod apply;
mod asset_map;
mod decide;
mod execute;
mod history;
mod open;
pub mod pack;

pub use asset_map::AssetMap;
pub use decide::Done;
pub use open::opening;

use crate::asset::{Asset, AssetCode};
use crate::ids::{ClientId, CustomerId, Timestamp, TxnId, WalletId};
use crate::money;
use crate::reject::Reject;
use crate::txn::{Txn, TxnKind, TxnStatus};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletKind {
    Customer,
    ClientAdmin,
    General,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletStatus {
    Active,
    Restricted,
    Suspended,
    Closed,
}

impl WalletStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WalletStatus::Active => "active",
            WalletStatus::Restricted => "restricted",
            WalletStatus::Suspended => "suspended",
            WalletStatus::Closed => "closed",
        }
    }

    /// Whether queued items may settle. A suspended wallet's queue waits;
    /// a restricted wallet still settles what it accepted before.
    pub fn drains(self) -> bool {
        matches!(self, WalletStatus::Active | WalletStatus::Restricted)
    }

    /// Refuses an action this status forbids (ENGINE.md "Wallet status").
    ///
    /// Decisions where the contract is silent: `restricted` forbids only
    /// *new* outbound obligations, so captures of earlier holds go on;
    /// release, cancel and reject of a pending credit move no money into or
    /// out of `cash`, so a suspended wallet allows them.
    pub fn permit(self, wallet: WalletId, action: Action) -> Result<(), Reject> {
        use Action::*;
        let allowed = match self {
            WalletStatus::Active => true,
            WalletStatus::Restricted => !matches!(action, NewOutbound | Reserve),
            WalletStatus::Suspended => matches!(action, Release | Cancel | RejectPending),
            WalletStatus::Closed => false,
        };
        if allowed {
            return Ok(());
        }
        Err(match self {
            WalletStatus::Restricted => Reject::WalletRestricted(wallet),
            WalletStatus::Suspended => Reject::WalletSuspended(wallet),
            WalletStatus::Active | WalletStatus::Closed => Reject::WalletClosed(wallet),
        })
    }
}

/// What a command would do to a wallet, for `WalletStatus::permit`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// A credit, settling a pending credit, or receiving a transfer.
    Credit,
    RejectPending,
    /// A debit, an outbound transfer or a conversion.
    NewOutbound,
    Reserve,
    Capture,
    Release,
    Cancel,
}

/// What a wallet is, fixed at creation.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct WalletSpec {
    pub client: ClientId,
    pub kind: WalletKind,
    pub customer: Option<CustomerId>,
    /// The enabled assets with their scales, in the order given.
    pub assets: Vec<Asset>,
    /// Created with one `ccyCode` (rather than a list of `assets`).
    pub single_asset: bool,
}

/// What a client may change about a wallet at any time.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct WalletSettings {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_favourite: bool,
}

impl WalletSettings {
    pub const MAX_NAME_LEN: usize = 200;
    pub const MAX_DESCRIPTION_LEN: usize = 2000;
}

/// A change of settings; `None` leaves a field as it is.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SettingsPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_favourite: Option<bool>,
}

/// One outbound item waiting in a FIFO queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct QueuedItem {
    pub txn: TxnId,
    pub amount: Decimal,
}

/// Cumulative money flows of one (wallet, asset), in minor units. They
/// explain `cash` (see `check_invariants`) and, summed over wallets, give the
/// conservation audit of ENGINE.md. `i128`: sums over time outgrow `Decimal`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Flows {
    /// Settled credits from outside the engine.
    pub credited: i128,
    /// Settled debits and captures: money that left the engine.
    pub debited: i128,
    /// Transfer legs sent to other wallets (into flight).
    pub sent: i128,
    /// Transfer legs received from flight (deliveries and returns).
    pub received: i128,
    /// Conversions: the buy side created here.
    pub converted_in: i128,
    /// Conversions: the sell side consumed here.
    pub converted_out: i128,
}

impl Flows {
    /// What `cash` must be, given these flows.
    pub fn net(&self) -> Option<i128> {
        self.credited
            .checked_sub(self.debited)?
            .checked_sub(self.sent)?
            .checked_add(self.received)?
            .checked_add(self.converted_in)?
            .checked_sub(self.converted_out)
    }
}

/// Balances and the FIFO queue of one (wallet, asset).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AssetBook {
    pub asset: Asset,
    pub cash: Decimal,
    pub reserved: Decimal,
    pub pending: Decimal,
    /// Kept equal to the sum of `queue` (checked, not recomputed per read).
    pub queued: Decimal,
    /// Sent by transfers and conversions whose receipt has not come back:
    /// money that may still return here. Credits keep `cash` plus this within
    /// the limit, so that a return always fits.
    pub unconfirmed_out: Decimal,
    queue: VecDeque<QueuedItem>,
}

impl AssetBook {
    fn new(asset: Asset) -> Self {
        let zero = Decimal::new(0, asset.scale);
        Self {
            asset,
            cash: zero,
            reserved: zero,
            pending: zero,
            queued: zero,
            unconfirmed_out: zero,
            queue: VecDeque::new(),
        }
    }

    /// Whether `amount` more cash fits under the limit, counting money that
    /// may still come back (`unconfirmed_out`).
    pub fn has_room_for(&self, amount: Decimal) -> Result<(), Reject> {
        money::add(self.asset, self.cash + self.unconfirmed_out, amount).map(|_| ())
    }

    /// `cash - reserved`: what the head of the queue may draw on.
    pub fn spendable(&self) -> Decimal {
        self.cash - self.reserved
    }

    pub fn balance(&self) -> Balance {
        let committed = self.reserved + self.queued;
        let zero = Decimal::new(0, self.asset.scale);
        Balance {
            asset: self.asset.code,
            cash: self.cash,
            reserved: self.reserved,
            pending: self.pending,
            queued: self.queued,
            committed,
            available: (self.cash - committed).max(zero),
        }
    }

    pub fn queue(&self) -> impl ExactSizeIterator<Item = &QueuedItem> {
        self.queue.iter()
    }
}

/// The balances of one (wallet, asset), as ENGINE.md names them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Balance {
    pub asset: AssetCode,
    pub cash: Decimal,
    pub reserved: Decimal,
    pub pending: Decimal,
    pub queued: Decimal,
    /// `reserved + queued`.
    pub committed: Decimal,
    /// `max(cash - committed, 0)`.
    pub available: Decimal,
}

/// A wallet's whole state. Plain data: cloning it is a snapshot of it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct WalletState {
    pub id: WalletId,
    pub spec: WalletSpec,
    pub settings: WalletSettings,
    pub status: WalletStatus,
    pub status_reason: Option<String>,
    /// Counts the events applied to this wallet.
    pub sequence: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Per asset: one or a few entries (see `asset_map` for why not a tree).
    books: AssetMap<AssetBook>,
    flows: AssetMap<Flows>,
    /// Every record the wallet ever had, by id (see `history` for why a
    /// sorted vector).
    txns: history::History,
    /// Held reservations and queued items that carry `expiresAt`, by instant.
    expiries: BTreeSet<(Timestamp, TxnId)>,
    /// Transfers sent from here whose delivery is not yet acknowledged. A
    /// wallet cannot close while money it sent may still come back.
    /// With each, the asset and amount it sent (as on its record, which is
    /// `settled` while it waits here): a receipt then settles the books
    /// without looking the record up.
    awaiting_receipt: BTreeMap<TxnId, (AssetCode, Decimal)>,
}

impl WalletState {
    // Reads.

    pub fn book(&self, asset: AssetCode) -> Option<&AssetBook> {
        self.books.get(&asset)
    }

    pub fn books(&self) -> impl Iterator<Item = &AssetBook> {
        self.books.values()
    }

    pub fn balance(&self, asset: AssetCode) -> Option<Balance> {
        self.books.get(&asset).map(AssetBook::balance)
    }

    pub fn flows(&self) -> impl Iterator<Item = (AssetCode, &Flows)> {
        self.flows.iter().map(|(&a, f)| (a, f))
    }

    pub fn txn(&self, id: TxnId) -> Option<&Txn> {
        self.txns.get(id)
    }

    /// All transactions, oldest id first.
    pub fn txns(&self) -> impl DoubleEndedIterator<Item = &Txn> {
        self.txns.iter()
    }

    /// How many transactions `txns` lists.
    pub fn txn_count(&self) -> usize {
        self.txns.len()
    }

    /// Where a queued item waits in its FIFO queue (1 = head), if it does.
    /// Linear in the queue's depth (bounded by `Limits::max_queue_depth`).
    pub fn queue_position(&self, txn: TxnId) -> Option<usize> {
        let t = self.txns.get(txn)?;
        if t.status != TxnStatus::AwaitingFunds || t.direction == Some(crate::txn::Direction::In) {
            return None;
        }
        let book = self.books.get(&t.asset)?;
        book.queue.iter().position(|i| i.txn == txn).map(|i| i + 1)
    }

    /// The earliest instant at which a hold or queued item expires: when the
    /// wallet's timer must next fire.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|&(at, _)| at)
    }

    pub fn awaiting_receipt(&self) -> impl Iterator<Item = TxnId> + '_ {
        self.awaiting_receipt.keys().copied()
    }

    /// For a conversion within this wallet: whether its buy side can take
    /// the bought amount now. Any other item has no buy side here.
    pub(crate) fn buy_side_has_room(&self, txn: TxnId) -> bool {
        // A conversion within a wallet buys another asset held here (checked
        // when it is queued), so a wallet with one book has none: no lookup.
        if self.books.len() == 1 {
            return true;
        }
        self.txns
            .get(txn)
            .and_then(|t| t.outbound())
            .is_none_or(|target| self.has_room_to_buy(target))
    }

    /// `buy_side_has_room` for an item's target, record or not (an item
    /// about to be submitted).
    pub(crate) fn has_room_to_buy(&self, target: crate::txn::Outbound) -> bool {
        match target {
            crate::txn::Outbound::Conversion { to, terms } if to == self.id => self
                .books
                .get(&terms.buy_asset)
                .is_some_and(|b| b.has_room_for(terms.buy_amount).is_ok()),
            _ => true,
        }
    }

    /// Checks every per-wallet invariant of ENGINE.md and of this design.
    /// Cost: linear in the wallet's transactions; for tests and audits.
    pub fn check_invariants(&self) -> Result<(), String> {
        let w = self.id;
        let mut held: BTreeMap<AssetCode, Decimal> = BTreeMap::new();
        let mut pending: BTreeMap<AssetCode, Decimal> = BTreeMap::new();
        let mut expiring = BTreeSet::new();
        for t in self.txns.iter() {
            match (t.kind, t.status) {
                (TxnKind::Reservation, TxnStatus::Held) => {
                    *held.entry(t.asset).or_default() += t.amount;
                }
                (TxnKind::Credit, TxnStatus::Pending) => {
                    *pending.entry(t.asset).or_default() += t.amount;
                }
                _ => {}
            }
            let live = matches!(t.status, TxnStatus::Held | TxnStatus::AwaitingFunds);
            if let (true, Some(at)) = (live, t.expires_at()) {
                expiring.insert((at, t.id));
            }
        }
        if expiring != self.expiries {
            return Err(format!("{w}: expiry index disagrees with live items"));
        }
        for (id, &(asset, amount)) in &self.awaiting_receipt {
            let fits = self.txns.get(*id).is_some_and(|t| {
                t.status == TxnStatus::Settled && t.asset == asset && t.amount == amount
            });
            if !fits {
                return Err(format!(
                    "{w}: {id} awaits its receipt but its record disagrees"
                ));
            }
        }
        for (code, b) in &self.books {
            let zero = Decimal::ZERO;
            let bal = b.balance();
            if !(zero <= b.reserved && b.reserved <= b.cash) {
                return Err(format!(
                    "{w}/{code}: not 0 <= reserved {} <= cash {}",
                    b.reserved, b.cash
                ));
            }
            if b.pending < zero || bal.available < zero {
                return Err(format!("{w}/{code}: negative pending or available"));
            }
            let sum: Decimal = b.queue.iter().map(|i| i.amount).sum();
            if sum != b.queued {
                return Err(format!(
                    "{w}/{code}: queued {} != sum of queue {sum}",
                    b.queued
                ));
            }
            if held.get(code).copied().unwrap_or(zero) != b.reserved {
                return Err(format!(
                    "{w}/{code}: reserved {} != sum of held reservations",
                    b.reserved
                ));
            }
            if pending.get(code).copied().unwrap_or(zero) != b.pending {
                return Err(format!(
                    "{w}/{code}: pending {} != sum of pending credits",
                    b.pending
                ));
            }
            for item in &b.queue {
                let t = self
                    .txns
                    .get(item.txn)
                    .ok_or(format!("{w}: queued {} has no record", item.txn))?;
                if t.status != TxnStatus::AwaitingFunds
                    || t.asset != *code
                    || t.amount != item.amount
                {
                    return Err(format!(
                        "{w}/{code}: queued {} does not match its record",
                        item.txn
                    ));
                }
            }
            let awaiting = self
                .txns
                .iter()
                .filter(|t| t.status == TxnStatus::AwaitingFunds && t.asset == *code)
                .count();
            if awaiting != b.queue.len() {
                return Err(format!(
                    "{w}/{code}: {awaiting} items awaiting funds, {} queued",
                    b.queue.len()
                ));
            }
            // Nothing is stuck: a drainable queue's head never fits.
            if let (true, Some(head)) = (self.status.drains(), b.queue.front())
                && head.amount <= b.spendable()
                && self.buy_side_has_room(head.txn)
            {
                return Err(format!(
                    "{w}/{code}: head {} fits but did not settle",
                    head.txn
                ));
            }
            let unconfirmed: Decimal = self
                .awaiting_receipt
                .keys()
                .filter_map(|id| self.txns.get(*id))
                .filter(|t| t.asset == *code)
                .map(|t| t.amount)
                .sum();
            if unconfirmed != b.unconfirmed_out {
                return Err(format!(
                    "{w}/{code}: unconfirmed_out {} != {unconfirmed}",
                    b.unconfirmed_out
                ));
            }
            if money::add(b.asset, b.cash, b.unconfirmed_out).is_err() {
                return Err(format!(
                    "{w}/{code}: cash plus money that may return exceeds the limit"
                ));
            }
            let scale_ok = [b.cash, b.reserved, b.pending, b.queued, b.unconfirmed_out]
                .iter()
                .all(|d| d.scale() == b.asset.scale);
            if !scale_ok {
                return Err(format!(
                    "{w}/{code}: a balance is not at scale {}",
                    b.asset.scale
                ));
            }
        }
        // Cash is explained by the flows, per asset (conservation, locally).
        for (code, f) in &self.flows {
            let cash = self.books.get(code).map_or(0, |b| money::units(b.cash));
            if f.net() != Some(cash) {
                return Err(format!(
                    "{w}/{code}: cash {cash} units != net flows {:?}",
                    f.net()
                ));
            }
        }
        for (code, b) in &self.books {
            if !self.flows.contains_key(code) && !b.cash.is_zero() {
                return Err(format!("{w}/{code}: cash without flows"));
            }
        }
        if self.status == WalletStatus::Closed {
            let empty = self.books.values().all(|b| {
                b.cash.is_zero()
                    && b.reserved.is_zero()
                    && b.pending.is_zero()
                    && b.queue.is_empty()
            });
            if !empty || !self.awaiting_receipt.is_empty() {
                return Err(format!("{w}: closed but not empty"));
            }
        }
        Ok(())
    }
}
