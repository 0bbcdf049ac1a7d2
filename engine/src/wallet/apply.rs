//! Applying events: the only code that mutates a wallet.
//!
//! Each handler first checks that the event fits the state (the item is at
//! the head, the hold is held, the sums stay in range) and only then assigns,
//! so a refused event leaves the wallet untouched. Live execution and replay
//! both come through here.

use super::history::{History, Vacant};
use super::{AssetBook, AssetMap, Flows, QueuedItem, WalletState, WalletStatus};
use crate::asset::AssetCode;
use crate::event::Event;
use crate::ids::{Timestamp, TxnId, WalletId};
use crate::message::Leg;
use crate::money;
use crate::reject::ApplyError;
use crate::txn::{ConversionTerms, Direction, Outbound, Txn, TxnInfo, TxnKind, TxnStatus};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

fn bad(msg: impl Into<String>) -> ApplyError {
    ApplyError(msg.into())
}

/// A bounded sum (`money::add`), as an apply error when out of range.
fn sum(r: Result<Decimal, crate::reject::Reject>) -> Result<Decimal, ApplyError> {
    r.map_err(|e| bad(e.to_string()))
}

/// `a + units`, as an apply error on overflow.
fn plus(a: i128, units: i128) -> Result<i128, ApplyError> {
    a.checked_add(units)
        .ok_or_else(|| bad("flow counter overflow"))
}

/// The book of `asset`, checking that `amount` is a valid amount of it.
/// A free function over the books alone, so that a handler may hold a
/// transaction record mutably meanwhile (one lookup per record).
fn checked_book(
    books: &AssetMap<AssetBook>,
    wallet: WalletId,
    asset: AssetCode,
    amount: Decimal,
) -> Result<&AssetBook, ApplyError> {
    let book = books
        .get(&asset)
        .ok_or_else(|| bad(format!("{wallet} holds no {asset}")))?;
    if amount <= Decimal::ZERO || amount.scale() != book.asset.scale {
        return Err(bad(format!(
            "{wallet}: amount {amount} is not a valid {asset} amount"
        )));
    }
    Ok(book)
}

fn checked_book_mut(
    books: &mut AssetMap<AssetBook>,
    wallet: WalletId,
    asset: AssetCode,
) -> Result<&mut AssetBook, ApplyError> {
    books
        .get_mut(&asset)
        .ok_or_else(|| bad(format!("{wallet} holds no {asset}")))
}

fn flow_of(flows: &AssetMap<Flows>, asset: AssetCode) -> Flows {
    flows.get(&asset).copied().unwrap_or_default()
}

/// The record of `txn`, which must be in `status`, for update in place.
fn txn_in_mut(
    txns: &mut History,
    wallet: WalletId,
    txn: TxnId,
    status: TxnStatus,
) -> Result<&mut Txn, ApplyError> {
    match txns.get_mut(txn) {
        Some(t) if t.status == status => Ok(t),
        Some(t) => Err(bad(format!(
            "{wallet}: {txn} is {}, not {}",
            t.status.as_str(),
            status.as_str()
        ))),
        None => Err(bad(format!("{wallet}: no transaction {txn}"))),
    }
}

/// Sets the rarely used fields of a new record, allocating them only if
/// one of them is set.
fn fill_extra(
    t: &mut Txn,
    conversion: Option<ConversionTerms>,
    expires_at: Option<Timestamp>,
    info: &Option<Box<TxnInfo>>,
) {
    if conversion.is_none() && expires_at.is_none() && info.is_none() {
        return;
    }
    let extra = t.extra_mut();
    extra.conversion = conversion;
    extra.expires_at = expires_at;
    extra.info = info.as_deref().cloned();
}

/// A new outbound record with its rarely used fields (`fill_extra`).
fn with_extra(
    mut t: Txn,
    target: Outbound,
    expires_at: Option<Timestamp>,
    info: &Option<Box<TxnInfo>>,
) -> Txn {
    let conversion = match target {
        Outbound::Conversion { terms, .. } => Some(terms),
        _ => None,
    };
    fill_extra(&mut t, conversion, expires_at, info);
    t
}

/// An outbound item settling: its money leaves `cash` for flight (a
/// transfer, or a conversion's buy side to another wallet), for outside (a
/// payout) or for this wallet's buy side (a conversion within it). Either
/// the head of its queue (`from_queue`) or an item settling as it is
/// submitted, whose queue must then be empty.
struct Settling {
    wallet: WalletId,
    txn: TxnId,
    asset: AssetCode,
    amount: Decimal,
    target: Outbound,
    from_queue: bool,
}

impl Settling {
    /// Over the books, flows and receipts alone, so that the caller may
    /// hold the record meanwhile. Computes everything before it assigns
    /// anything: a refusal changes nothing.
    fn settle(
        &self,
        books: &mut AssetMap<AssetBook>,
        flows: &mut AssetMap<Flows>,
        awaiting_receipt: &mut BTreeMap<TxnId, (AssetCode, Decimal)>,
    ) -> Result<(), ApplyError> {
        let Settling {
            wallet: id,
            txn,
            asset,
            amount,
            target,
            from_queue,
        } = *self;
        let book = checked_book(books, id, asset, amount)?;
        let head = book.queue.front().map(|i| i.txn);
        let queued = if from_queue {
            if head != Some(txn) {
                return Err(bad(format!(
                    "{id}: {txn} is not at the head of the {asset} queue"
                )));
            }
            money::sub(book.queued, amount).ok_or_else(|| bad("queued below zero"))?
        } else {
            if head.is_some() {
                return Err(bad(format!(
                    "{id}: {txn} cannot settle at once: the {asset} queue is not empty"
                )));
            }
            book.queued
        };
        let cash = money::sub(book.cash, amount)
            .filter(|c| *c >= book.reserved)
            .ok_or_else(|| bad(format!("{id}: {txn} does not fit cash - reserved")))?;
        let units = money::units(amount);
        // New flow counters and, for a conversion within this wallet, the
        // buy side's new cash: all computed before anything is assigned.
        let mut sell_flows = flow_of(flows, asset);
        let mut buy_side: Option<(AssetCode, Flows, Option<Decimal>)> = None;
        let mut awaits_receipt = true;
        match target {
            Outbound::Payout => {
                sell_flows.debited = plus(sell_flows.debited, units)?;
                awaits_receipt = false;
            }
            Outbound::Transfer { .. } => sell_flows.sent = plus(sell_flows.sent, units)?,
            Outbound::Conversion { to, terms } => {
                sell_flows.converted_out = plus(sell_flows.converted_out, units)?;
                let buy_units = money::units(terms.buy_amount);
                let mut buy_flows = flow_of(flows, terms.buy_asset);
                buy_flows.converted_in = plus(buy_flows.converted_in, buy_units)?;
                let buy_cash = if to == id {
                    // Both sides here: converted at once, nothing in flight.
                    awaits_receipt = false;
                    let b = checked_book(books, id, terms.buy_asset, terms.buy_amount)?;
                    Some(sum(money::add(b.asset, b.cash, terms.buy_amount))?)
                } else {
                    buy_flows.sent = plus(buy_flows.sent, buy_units)?;
                    None
                };
                buy_side = Some((terms.buy_asset, buy_flows, buy_cash));
            }
        }
        let book = checked_book_mut(books, id, asset)?;
        book.cash = cash;
        book.queued = queued;
        if from_queue {
            book.queue.pop_front();
        }
        if awaits_receipt {
            // Cannot overflow: cash + unconfirmed_out is unchanged.
            book.unconfirmed_out += amount;
        }
        flows.insert(asset, sell_flows);
        if let Some((buy_asset, buy_flows, buy_cash)) = buy_side {
            flows.insert(buy_asset, buy_flows);
            if let Some(c) = buy_cash {
                checked_book_mut(books, id, buy_asset)?.cash = c;
            }
        }
        if awaits_receipt {
            awaiting_receipt.insert(txn, (asset, amount));
        }
        Ok(())
    }
}

/// The place of a new record: refused if the id is taken.
fn vacant(txns: &mut History, wallet: WalletId, txn: TxnId) -> Result<Vacant<'_>, ApplyError> {
    txns.vacant(txn)
        .ok_or_else(|| bad(format!("{wallet}: transaction {txn} exists")))
}

impl WalletState {
    /// A new wallet from its `WalletOpened` event.
    pub fn open(event: &Event) -> Result<WalletState, ApplyError> {
        let Event::WalletOpened {
            wallet,
            spec,
            settings,
            at,
        } = event
        else {
            return Err(bad("a wallet begins with WalletOpened"));
        };
        let mut books = AssetMap::new();
        for &asset in &spec.assets {
            if books.insert(asset.code, AssetBook::new(asset)).is_some() {
                return Err(bad(format!("{wallet}: asset {} listed twice", asset.code)));
            }
        }
        if books.is_empty() {
            return Err(bad(format!("{wallet}: a wallet holds at least one asset")));
        }
        Ok(WalletState {
            id: *wallet,
            spec: (**spec).clone(),
            settings: (**settings).clone(),
            status: WalletStatus::Active,
            status_reason: None,
            sequence: 1,
            created_at: *at,
            updated_at: *at,
            books,
            flows: AssetMap::new(),
            txns: History::default(),
            expiries: BTreeSet::new(),
            awaiting_receipt: BTreeMap::new(),
        })
    }

    /// Applies one event of this wallet.
    pub fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        if event.wallet() != self.id {
            return Err(bad(format!(
                "event for {} applied to {}",
                event.wallet(),
                self.id
            )));
        }
        let at = event.at();
        match event {
            Event::WalletOpened { .. } => return Err(bad(format!("{} is already open", self.id))),
            Event::StatusChanged { status, reason, .. } => {
                if self.status == WalletStatus::Closed {
                    return Err(bad(format!("{} is closed", self.id)));
                }
                self.status = *status;
                self.status_reason.clone_from(reason);
            }
            Event::SettingsChanged { settings, .. } => self.settings = (**settings).clone(),
            Event::CreditAccepted {
                txn,
                asset,
                amount,
                pending,
                info,
                ..
            } => self.credit_accepted(*txn, *asset, *amount, *pending, info, at)?,
            Event::PendingSettled { txn, .. } => self.pending_resolved(*txn, true, at)?,
            Event::PendingRejected { txn, .. } => self.pending_resolved(*txn, false, at)?,
            Event::OutboundQueued {
                txn,
                asset,
                amount,
                target,
                expires_at,
                info,
                ..
            } => self.outbound_queued(*txn, *asset, *amount, *target, *expires_at, info, at)?,
            Event::OutboundSettled { txn, .. } => self.outbound_settled(*txn, at)?,
            Event::OutboundSettledAtOnce {
                txn,
                asset,
                amount,
                target,
                expires_at,
                info,
                ..
            } => self.outbound_settled_at_once(
                *txn,
                *asset,
                *amount,
                *target,
                *expires_at,
                info,
                at,
            )?,
            Event::OutboundCancelled { txn, .. } => {
                self.outbound_removed(*txn, TxnStatus::Cancelled, at)?
            }
            Event::OutboundExpired { txn, .. } => {
                self.outbound_removed(*txn, TxnStatus::Expired, at)?
            }
            Event::ReservationHeld {
                txn,
                asset,
                amount,
                expires_at,
                info,
                ..
            } => self.reservation_held(*txn, *asset, *amount, *expires_at, info, at)?,
            Event::ReservationCaptured { txn, amount, .. } => {
                self.reservation_ended(*txn, Some(*amount), at)?
            }
            Event::ReservationReleased { txn, .. } => self.reservation_ended(*txn, None, at)?,
            Event::TransferReceived { leg, .. } => self.transfer_arrived(leg, true, at)?,
            Event::TransferBounced { leg, .. } => self.transfer_arrived(leg, false, at)?,
            Event::TransferReturned { txn, .. } => self.transfer_returned(*txn, at)?,
            Event::TransferDelivered { txn, .. } => self.transfer_delivered(*txn)?,
        }
        self.sequence += 1;
        self.updated_at = at;
        Ok(())
    }

    fn book_for(&self, asset: AssetCode, amount: Decimal) -> Result<&AssetBook, ApplyError> {
        checked_book(&self.books, self.id, asset, amount)
    }

    fn book_mut(&mut self, asset: AssetCode) -> Result<&mut AssetBook, ApplyError> {
        checked_book_mut(&mut self.books, self.id, asset)
    }

    fn flow(&self, asset: AssetCode) -> Flows {
        flow_of(&self.flows, asset)
    }

    fn txn_in(&self, txn: TxnId, status: TxnStatus) -> Result<&Txn, ApplyError> {
        match self.txns.get(txn) {
            Some(t) if t.status == status => Ok(t),
            Some(t) => Err(bad(format!(
                "{}: {txn} is {}, not {}",
                self.id,
                t.status.as_str(),
                status.as_str()
            ))),
            None => Err(bad(format!("{}: no transaction {txn}", self.id))),
        }
    }

    fn set_status(&mut self, txn: TxnId, status: TxnStatus, at: Timestamp) {
        if let Some(t) = self.txns.get_mut(txn) {
            t.status = status;
            t.updated_at = at;
        }
    }

    fn credit_accepted(
        &mut self,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        pending: bool,
        info: &Option<Box<TxnInfo>>,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        let book = self.book_for(asset, amount)?;
        let (cash, pend) = if pending {
            (
                book.cash,
                sum(money::add(book.asset, book.pending, amount))?,
            )
        } else {
            (
                sum(money::add(book.asset, book.cash, amount))?,
                book.pending,
            )
        };
        let mut flows = self.flow(asset);
        if !pending {
            flows.credited = plus(flows.credited, money::units(amount))?;
        }
        let status = if pending {
            TxnStatus::Pending
        } else {
            TxnStatus::Settled
        };
        let (id, sequence) = (self.id, self.sequence + 1);
        let slot = vacant(&mut self.txns, id, txn)?;
        let mut record = Txn::new(txn, TxnKind::Credit, status, asset, amount, sequence, at);
        record.direction = Some(Direction::In);
        fill_extra(&mut record, None, None, info);
        let book = checked_book_mut(&mut self.books, id, asset)?;
        book.cash = cash;
        book.pending = pend;
        self.flows.insert(asset, flows);
        slot.insert(record);
        Ok(())
    }

    fn pending_resolved(
        &mut self,
        txn: TxnId,
        settle: bool,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        let t = self.txn_in(txn, TxnStatus::Pending)?;
        let (asset, amount) = (t.asset, t.amount);
        let book = self.book_for(asset, amount)?;
        let pending = money::sub(book.pending, amount).ok_or_else(|| bad("pending below zero"))?;
        let cash = if settle {
            sum(money::add(book.asset, book.cash, amount))?
        } else {
            book.cash
        };
        let mut flows = self.flow(asset);
        if settle {
            flows.credited = plus(flows.credited, money::units(amount))?;
            self.flows.insert(asset, flows);
        }
        let book = self.book_mut(asset)?;
        book.pending = pending;
        book.cash = cash;
        let status = if settle {
            TxnStatus::Settled
        } else {
            TxnStatus::Rejected
        };
        self.set_status(txn, status, at);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn outbound_queued(
        &mut self,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        target: Outbound,
        expires_at: Option<Timestamp>,
        info: &Option<Box<TxnInfo>>,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        let book = self.book_for(asset, amount)?;
        let queued = sum(money::add(book.asset, book.queued, amount))?;
        let t = self.new_outbound(txn, asset, amount, target, TxnStatus::AwaitingFunds, at)?;
        let id = self.id;
        let slot = vacant(&mut self.txns, id, txn)?;
        let t = with_extra(t, target, expires_at, info);
        let book = checked_book_mut(&mut self.books, id, asset)?;
        book.queued = queued;
        book.queue.push_back(QueuedItem { txn, amount });
        if let Some(when) = expires_at {
            self.expiries.insert((when, txn));
        }
        slot.insert(t);
        Ok(())
    }

    fn outbound_settled(&mut self, txn: TxnId, at: Timestamp) -> Result<(), ApplyError> {
        let id = self.id;
        // One lookup of the record: it is updated in place at the end, while
        // the other fields (books, flows, indexes) are borrowed apart.
        let t = txn_in_mut(&mut self.txns, id, txn, TxnStatus::AwaitingFunds)?;
        let (asset, amount, expires_at) = (t.asset, t.amount, t.expires_at());
        let target = t
            .outbound()
            .ok_or_else(|| bad(format!("{txn} is not an outbound item")))?;
        Settling {
            wallet: id,
            txn,
            asset,
            amount,
            target,
            from_queue: true,
        }
        .settle(&mut self.books, &mut self.flows, &mut self.awaiting_receipt)?;
        if let Some(when) = expires_at {
            self.expiries.remove(&(when, txn));
        }
        t.status = TxnStatus::Settled;
        t.updated_at = at;
        Ok(())
    }

    /// `OutboundQueued` and `OutboundSettled` in one step, without the
    /// item ever entering the queue (which must be empty: FIFO).
    #[allow(clippy::too_many_arguments)]
    fn outbound_settled_at_once(
        &mut self,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        target: Outbound,
        expires_at: Option<Timestamp>,
        info: &Option<Box<TxnInfo>>,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        let id = self.id;
        let t = self.new_outbound(txn, asset, amount, target, TxnStatus::Settled, at)?;
        let slot = vacant(&mut self.txns, id, txn)?;
        Settling {
            wallet: id,
            txn,
            asset,
            amount,
            target,
            from_queue: false,
        }
        .settle(&mut self.books, &mut self.flows, &mut self.awaiting_receipt)?;
        slot.insert(with_extra(t, target, expires_at, info));
        Ok(())
    }

    /// The record of a new outbound item with `status`, after the checks
    /// that every way of creating one shares. Changes nothing.
    fn new_outbound(
        &self,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        target: Outbound,
        status: TxnStatus,
        at: Timestamp,
    ) -> Result<Txn, ApplyError> {
        self.book_for(asset, amount)?;
        if let Outbound::Conversion { to, terms } = target {
            if terms.buy_asset == asset || terms.buy_amount <= Decimal::ZERO {
                return Err(bad(format!("{}: conversion {txn} has bad terms", self.id)));
            }
            // Within this wallet, the buy side must be a book here (as
            // `submit_outbound` checks): a wallet with one book never holds
            // a conversion to itself (see `buy_side_has_room`).
            if to == self.id && !self.books.contains_key(&terms.buy_asset) {
                return Err(bad(format!(
                    "{}: conversion {txn} buys {}, which it does not hold",
                    self.id, terms.buy_asset
                )));
            }
        }
        if matches!(target, Outbound::Transfer { to } if to == self.id) {
            return Err(bad(format!("{}: transfer {txn} to itself", self.id)));
        }
        let kind = match target {
            Outbound::Payout => TxnKind::Debit,
            Outbound::Transfer { .. } => TxnKind::Transfer,
            Outbound::Conversion { .. } => TxnKind::Conversion,
        };
        let mut t = Txn::new(txn, kind, status, asset, amount, self.sequence + 1, at);
        t.direction = Some(Direction::Out);
        t.counterparty = match target {
            Outbound::Payout => None,
            Outbound::Transfer { to } | Outbound::Conversion { to, .. } => Some(to),
        };
        Ok(t)
    }

    fn outbound_removed(
        &mut self,
        txn: TxnId,
        status: TxnStatus,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        let t = self.txn_in(txn, TxnStatus::AwaitingFunds)?;
        let (asset, amount, expires_at) = (t.asset, t.amount, t.expires_at());
        let book = self.book_for(asset, amount)?;
        let pos = book
            .queue
            .iter()
            .position(|i| i.txn == txn)
            .ok_or_else(|| bad(format!("{}: {txn} is not queued", self.id)))?;
        let queued = money::sub(book.queued, amount).ok_or_else(|| bad("queued below zero"))?;
        let book = self.book_mut(asset)?;
        book.queue.remove(pos);
        book.queued = queued;
        if let Some(when) = expires_at {
            self.expiries.remove(&(when, txn));
        }
        self.set_status(txn, status, at);
        Ok(())
    }

    fn reservation_held(
        &mut self,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        expires_at: Option<Timestamp>,
        info: &Option<Box<TxnInfo>>,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        let book = self.book_for(asset, amount)?;
        let reserved = book
            .reserved
            .checked_add(amount)
            .filter(|r| *r <= book.cash)
            .ok_or_else(|| bad(format!("{}: hold {txn} exceeds cash", self.id)))?;
        let (id, sequence) = (self.id, self.sequence + 1);
        let slot = vacant(&mut self.txns, id, txn)?;
        let mut t = Txn::new(
            txn,
            TxnKind::Reservation,
            TxnStatus::Held,
            asset,
            amount,
            sequence,
            at,
        );
        t.direction = Some(Direction::Out);
        fill_extra(&mut t, None, expires_at, info);
        checked_book_mut(&mut self.books, id, asset)?.reserved = reserved;
        if let Some(when) = expires_at {
            self.expiries.insert((when, txn));
        }
        slot.insert(t);
        Ok(())
    }

    /// A hold ends: captured (`Some(amount)` leaves cash) or released (`None`).
    fn reservation_ended(
        &mut self,
        txn: TxnId,
        captured: Option<Decimal>,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        let t = self.txn_in(txn, TxnStatus::Held)?;
        let (asset, held, expires_at) = (t.asset, t.amount, t.expires_at());
        let book = self.book_for(asset, held)?;
        let reserved = money::sub(book.reserved, held).ok_or_else(|| bad("reserved below zero"))?;
        let mut cash = book.cash;
        let mut flows = self.flow(asset);
        if let Some(amount) = captured {
            if amount <= Decimal::ZERO || amount > held || amount.scale() != book.asset.scale {
                return Err(bad(format!(
                    "{}: capture of {amount} from a hold of {held}",
                    self.id
                )));
            }
            cash = money::sub(cash, amount).ok_or_else(|| bad("cash below zero"))?;
            flows.debited = plus(flows.debited, money::units(amount))?;
        }
        let book = self.book_mut(asset)?;
        book.reserved = reserved;
        book.cash = cash;
        if captured.is_some() {
            self.flows.insert(asset, flows);
        }
        if let Some(when) = expires_at {
            self.expiries.remove(&(when, txn));
        }
        let status = if captured.is_some() {
            TxnStatus::Captured
        } else {
            TxnStatus::Released
        };
        self.set_status(txn, status, at);
        if let (Some(t), Some(_)) = (self.txns.get_mut(txn), captured) {
            t.extra_mut().captured = captured;
        }
        Ok(())
    }

    /// A `Deliver` reaches this wallet: credited (`accepted`) or bounced.
    fn transfer_arrived(
        &mut self,
        leg: &Leg,
        accepted: bool,
        at: Timestamp,
    ) -> Result<(), ApplyError> {
        if leg.to != self.id || leg.from == self.id {
            return Err(bad(format!(
                "{}: delivery of {} is not for this wallet",
                self.id, leg.txn
            )));
        }
        let (asset, amount) = leg.in_flight();
        let mut credit = None;
        if accepted {
            let book = self.book_for(asset, amount)?;
            let cash = sum(money::add(book.asset, book.cash, amount))?;
            let mut flows = self.flow(asset);
            flows.received = plus(flows.received, money::units(amount))?;
            credit = Some((cash, flows));
        }
        let kind = if leg.conversion.is_some() {
            TxnKind::Conversion
        } else {
            TxnKind::Transfer
        };
        let status = if accepted {
            TxnStatus::Settled
        } else {
            TxnStatus::Returned
        };
        let (id, sequence) = (self.id, self.sequence + 1);
        let slot = vacant(&mut self.txns, id, leg.txn)?;
        let mut t = Txn::new(leg.txn, kind, status, leg.asset, leg.amount, sequence, at);
        // The transaction's creation at the source; it arrived `at`.
        t.created_at = leg.created_at.unwrap_or(at);
        t.direction = Some(Direction::In);
        t.counterparty = Some(leg.from);
        fill_extra(&mut t, leg.conversion, None, &None);
        if let Some((cash, flows)) = credit {
            checked_book_mut(&mut self.books, id, asset)?.cash = cash;
            self.flows.insert(asset, flows);
        }
        slot.insert(t);
        Ok(())
    }

    /// A `Receipt` reaches the source: nothing more can come back.
    /// (The record is not looked up: it is `settled` for as long as it
    /// awaits its receipt, and the amount it sent is kept with it there.)
    fn transfer_delivered(&mut self, txn: TxnId) -> Result<(), ApplyError> {
        let Some(&(asset, amount)) = self.awaiting_receipt.get(&txn) else {
            return Err(bad(format!("{}: no delivery of {txn} awaited", self.id)));
        };
        let book = self.book_for(asset, amount)?;
        let unconfirmed = money::sub(book.unconfirmed_out, amount)
            .ok_or_else(|| bad("unconfirmed below zero"))?;
        self.book_mut(asset)?.unconfirmed_out = unconfirmed;
        self.awaiting_receipt.remove(&txn);
        Ok(())
    }

    /// A `Return` reaches the source: the money is back where it started
    /// (a conversion is undone at its own rate: the sell amount returns).
    fn transfer_returned(&mut self, txn: TxnId, at: Timestamp) -> Result<(), ApplyError> {
        if !self.awaiting_receipt.contains_key(&txn) {
            return Err(bad(format!("{}: no delivery of {txn} awaited", self.id)));
        }
        let t = self.txn_in(txn, TxnStatus::Settled)?;
        let (asset, amount, conversion) = (t.asset, t.amount, t.conversion().copied());
        let book = self.book_for(asset, amount)?;
        let cash = sum(money::add(book.asset, book.cash, amount))?;
        let mut flows = self.flow(asset);
        let mut buy = None;
        match conversion {
            None => flows.received = plus(flows.received, money::units(amount))?,
            Some(terms) => {
                let buy_units = money::units(terms.buy_amount);
                let mut f = self.flow(terms.buy_asset);
                f.received = plus(f.received, buy_units)?;
                f.converted_out = plus(f.converted_out, buy_units)?;
                flows.converted_in = plus(flows.converted_in, money::units(amount))?;
                buy = Some((terms.buy_asset, f));
            }
        }
        let unconfirmed = money::sub(book.unconfirmed_out, amount)
            .ok_or_else(|| bad("unconfirmed below zero"))?;
        let book = self.book_mut(asset)?;
        book.cash = cash;
        book.unconfirmed_out = unconfirmed;
        self.flows.insert(asset, flows);
        if let Some((code, f)) = buy {
            self.flows.insert(code, f);
        }
        self.awaiting_receipt.remove(&txn);
        self.set_status(txn, TxnStatus::Returned, at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WalletId;

    #[test]
    fn an_event_for_another_wallet_is_refused() {
        let open = crate::test_support::opened(WalletId::from_u128(1), &["USD"]);
        let mut w = WalletState::open(&open).unwrap();
        let e = Event::PendingSettled {
            wallet: WalletId::from_u128(2),
            txn: TxnId::from_u128(9),
            at: Timestamp::from_millis(0),
        };
        assert!(w.apply(&e).is_err());
        assert!(w.apply(&open).is_err(), "a wallet opens once");
    }
}
