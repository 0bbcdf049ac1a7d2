//! Commands on one wallet: check everything, then emit events.
//!
//! A command is checked in full before its first event, so a refusal leaves
//! no trace; the one exception is expiry, which every command runs first
//! (time has passed whatever the command's fate) and which is kept.

use super::{Action, AssetBook, SettingsPatch, WalletSettings, WalletState, WalletStatus};
use crate::asset::AssetCode;
use crate::config::Limits;
use crate::event::Event;
use crate::ids::{Timestamp, TxnId, WalletId};
use crate::message::{Leg, Message};
use crate::money;
use crate::reject::Reject;
use crate::txn::{Direction, IfInsufficient, Outbound, Txn, TxnInfo, TxnKind, TxnStatus};
use rust_decimal::Decimal;

/// Which kind of transaction a follow-up command applies to.
#[derive(Clone, Copy)]
enum Target {
    Credit,
    Reservation,
    Outbound,
}

/// What a successful command produced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Done {
    Wallet(WalletId),
    Txn(TxnId),
}

/// Checks the client's words on a transaction against their limits.
pub(crate) fn checked_info(info: &TxnInfo) -> Result<Option<Box<TxnInfo>>, Reject> {
    if info
        .reference
        .as_ref()
        .is_some_and(|r| r.len() > TxnInfo::MAX_REFERENCE_LEN)
    {
        return Err(Reject::InvalidRequest(format!(
            "reference is longer than {} bytes",
            TxnInfo::MAX_REFERENCE_LEN
        )));
    }
    if info
        .metadata
        .as_ref()
        .is_some_and(|m| m.len() > TxnInfo::MAX_METADATA_LEN)
    {
        return Err(Reject::InvalidRequest(format!(
            "metadata is longer than {} bytes",
            TxnInfo::MAX_METADATA_LEN
        )));
    }
    Ok((!info.is_empty()).then(|| Box::new(info.clone())))
}

fn checked_expiry(expires_at: Option<Timestamp>, at: Timestamp) -> Result<(), Reject> {
    match expires_at {
        Some(when) if when <= at => Err(Reject::InvalidRequest(
            "expiresAt must be in the future".to_owned(),
        )),
        _ => Ok(()),
    }
}

impl WalletState {
    fn emit(&mut self, event: Event, out: &mut Vec<Event>) -> Result<(), Reject> {
        self.apply(&event)?;
        out.push(event);
        Ok(())
    }

    fn permit(&self, action: Action) -> Result<(), Reject> {
        self.status.permit(self.id, action)
    }

    /// The book of an asset this wallet holds, or `unknown_asset`.
    pub fn held_book(&self, asset: AssetCode) -> Result<&AssetBook, Reject> {
        self.books
            .get(&asset)
            .ok_or_else(|| Reject::UnknownAsset(format!("wallet {} holds no {asset}", self.id)))
    }

    /// `Some(Done)` when this transaction id was already used for the same
    /// kind of operation here: the command was a retry and does nothing more.
    pub(crate) fn seen(&self, txn: TxnId, kind: TxnKind) -> Result<Option<Done>, Reject> {
        match self.txns.get(txn) {
            None => Ok(None),
            // Inbound transfer records share the source's id; they are not
            // this wallet's commands, so a command reusing the id is refused.
            Some(t)
                if t.kind == kind
                    && (kind == TxnKind::Credit || t.direction == Some(Direction::Out)) =>
            {
                Ok(Some(Done::Txn(txn)))
            }
            Some(_) => Err(Reject::InvalidRequest(format!(
                "transaction id {txn} is already used for another operation"
            ))),
        }
    }

    /// The transaction a follow-up command (settle, capture, cancel, …) names.
    fn target_txn(&self, txn: TxnId, want: Target) -> Result<&Txn, Reject> {
        let t = self
            .txns
            .get(txn)
            .ok_or_else(|| Reject::NotFound(format!("transaction {txn} not found")))?;
        let fits = match want {
            Target::Credit => t.kind == TxnKind::Credit,
            Target::Reservation => t.kind == TxnKind::Reservation,
            Target::Outbound => t.direction == Some(Direction::Out) && t.outbound().is_some(),
        };
        if !fits {
            let what = match want {
                Target::Credit => "credit",
                Target::Reservation => "reservation",
                Target::Outbound => "debit, outbound transfer or conversion",
            };
            return Err(Reject::InvalidState(format!(
                "transaction {txn} is not a {what}"
            )));
        }
        Ok(t)
    }

    fn require_status(t: &Txn, status: TxnStatus) -> Result<(), Reject> {
        if t.status == status {
            Ok(())
        } else {
            Err(Reject::InvalidState(format!(
                "transaction {} is {}, not {}",
                t.id,
                t.status.as_str(),
                status.as_str()
            )))
        }
    }

    /// Brings the wallet up to `at`: expires what is due and settles every
    /// queue head that fits. Timers call it; so does a restart, which may
    /// follow a command cut short between two events.
    pub fn settle_due(&mut self, at: Timestamp, out: &mut Vec<Event>) -> Result<(), Reject> {
        self.expire_due(at, out)?;
        self.drain(at, out)
    }

    /// Expires every hold and queued item due at `at`, in (instant, id)
    /// order, then lets the queues drain.
    pub fn expire_due(&mut self, at: Timestamp, out: &mut Vec<Event>) -> Result<(), Reject> {
        let due: Vec<TxnId> = self
            .expiries
            .iter()
            .take_while(|(when, _)| *when <= at)
            .map(|&(_, txn)| txn)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let wallet = self.id;
        for txn in due {
            let status = self.txns.get(txn).map(|t| t.status);
            let event = match status {
                Some(TxnStatus::Held) => Event::ReservationReleased {
                    wallet,
                    txn,
                    expired: true,
                    at,
                },
                Some(TxnStatus::AwaitingFunds) => Event::OutboundExpired { wallet, txn, at },
                _ => {
                    return Err(Reject::Internal(format!(
                        "{wallet}: expiry of {txn} in state {status:?}"
                    )));
                }
            };
            self.emit(event, out)?;
        }
        self.drain(at, out)
    }

    /// Settles queued items from the head while the head fits. The head
    /// blocks everything behind it: a smaller later item never overtakes.
    fn drain_book(
        &mut self,
        asset: AssetCode,
        at: Timestamp,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if !self.status.drains() {
            return Ok(());
        }
        loop {
            let Some(book) = self.books.get(&asset) else {
                return Ok(());
            };
            let Some(head) = book.queue.front().copied() else {
                return Ok(());
            };
            if head.amount > book.spendable() {
                return Ok(());
            }
            // A conversion within this wallet credits the buy side at once;
            // if that balance is at its limit, the head waits.
            if !self.buy_side_has_room(head.txn) {
                return Ok(());
            }
            self.emit(
                Event::OutboundSettled {
                    wallet: self.id,
                    txn: head.txn,
                    at,
                },
                out,
            )?;
        }
    }

    /// Drains every queue of the wallet, until a whole pass settles
    /// nothing: a conversion within the wallet credits another asset, whose
    /// queue may then drain, and that asset's book may come earlier in the
    /// pass. (Each settlement removes a queued item, so this ends.)
    fn drain(&mut self, at: Timestamp, out: &mut Vec<Event>) -> Result<(), Reject> {
        if self.books.len() == 1 {
            let asset = self.books.keys().next().copied();
            return asset.map_or(Ok(()), |a| self.drain_book(a, at, out));
        }
        let assets: Vec<AssetCode> = self.books.keys().copied().collect();
        loop {
            let before = out.len();
            for &asset in &assets {
                self.drain_book(asset, at, out)?;
            }
            if out.len() == before {
                return Ok(());
            }
        }
    }

    /// A credit from outside: settled at once, or `pending` for review.
    #[allow(clippy::too_many_arguments)]
    pub fn credit(
        &mut self,
        at: Timestamp,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        pending: bool,
        info: &TxnInfo,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        if let Some(done) = self.seen(txn, TxnKind::Credit)? {
            return Ok(done);
        }
        let book = self.held_book(asset)?;
        let amount = money::validate(book.asset, amount)?;
        let info = checked_info(info)?;
        self.permit(Action::Credit)?;
        if pending {
            money::add(book.asset, book.pending, amount)?;
        } else {
            book.has_room_for(amount)?;
        }
        let wallet = self.id;
        self.emit(
            Event::CreditAccepted {
                wallet,
                txn,
                asset,
                amount,
                pending,
                info,
                at,
            },
            out,
        )?;
        if !pending {
            self.drain(at, out)?;
        }
        Ok(Done::Txn(txn))
    }

    /// Settles (`settle`) or rejects a pending credit.
    pub fn resolve_pending(
        &mut self,
        at: Timestamp,
        txn: TxnId,
        settle: bool,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        let t = self.target_txn(txn, Target::Credit)?;
        Self::require_status(t, TxnStatus::Pending)?;
        let (asset, amount) = (t.asset, t.amount);
        let wallet = self.id;
        if settle {
            self.permit(Action::Credit)?;
            // The request names no amount: a balance that cannot take the
            // credit's is the wallet's state, not a bad amount (409).
            self.held_book(asset)?
                .has_room_for(amount)
                .map_err(|e| match e {
                    Reject::InvalidAmount(why) => {
                        Reject::InvalidState(format!("cannot settle {txn}: {why}"))
                    }
                    other => other,
                })?;
            self.emit(Event::PendingSettled { wallet, txn, at }, out)?;
            self.drain(at, out)?;
        } else {
            self.permit(Action::RejectPending)?;
            self.emit(Event::PendingRejected { wallet, txn, at }, out)?;
        }
        Ok(Done::Txn(txn))
    }

    /// A debit, outbound transfer or conversion: into the FIFO queue, where
    /// it settles at once if the queue is empty and `cash - reserved` covers
    /// it. The caller has checked the destination and computed the terms.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_outbound(
        &mut self,
        at: Timestamp,
        limits: &Limits,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        target: Outbound,
        if_insufficient: IfInsufficient,
        expires_at: Option<Timestamp>,
        info: &TxnInfo,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        let kind = match target {
            Outbound::Payout => TxnKind::Debit,
            Outbound::Transfer { .. } => TxnKind::Transfer,
            Outbound::Conversion { .. } => TxnKind::Conversion,
        };
        if let Some(done) = self.seen(txn, kind)? {
            return Ok(done);
        }
        self.submit_new_outbound(
            at,
            limits,
            txn,
            asset,
            amount,
            target,
            if_insufficient,
            expires_at,
            info,
            out,
        )
    }

    /// `submit_outbound` once time has passed (`expire_due`) and `txn` is
    /// known not to be a retry (`seen`): `execute` has done both already.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit_new_outbound(
        &mut self,
        at: Timestamp,
        limits: &Limits,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        target: Outbound,
        if_insufficient: IfInsufficient,
        expires_at: Option<Timestamp>,
        info: &TxnInfo,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        let book = self.held_book(asset)?;
        let amount = money::validate(book.asset, amount)?;
        let info = checked_info(info)?;
        checked_expiry(expires_at, at)?;
        match target {
            Outbound::Transfer { to } if to == self.id => {
                return Err(Reject::InvalidRequest(
                    "a transfer needs two different wallets".to_owned(),
                ));
            }
            Outbound::Conversion { to, terms } if to == self.id => {
                self.held_book(terms.buy_asset)?
                    .has_room_for(terms.buy_amount)?;
            }
            _ => {}
        }
        self.permit(Action::NewOutbound)?;
        let fits_now = book.queue.is_empty() && amount <= book.spendable();
        if !fits_now {
            if if_insufficient == IfInsufficient::Reject {
                return Err(Reject::InsufficientFunds(format!(
                    "{} {asset} cannot settle now: {} available{}",
                    amount,
                    book.spendable(),
                    if book.queue.is_empty() {
                        ""
                    } else {
                        " and the queue is not empty"
                    }
                )));
            }
            if book.queue.len() >= limits.max_queue_depth {
                return Err(Reject::QueueFull {
                    wallet: self.id,
                    depth: book.queue.len(),
                });
            }
        }
        money::add(book.asset, book.queued, amount)?;
        let wallet = self.id;
        // An item that settles at once is one event, so that it is created
        // `settled` (its notice, its log record) rather than seen waiting.
        // It settles when `drain` would settle it as the head of its queue:
        // the wallet drains, it fits, and a conversion within the wallet has
        // room on its buy side (`has_room_to_buy`).
        let at_once = fits_now && self.status.drains() && self.has_room_to_buy(target);
        let event = if at_once {
            Event::OutboundSettledAtOnce {
                wallet,
                txn,
                asset,
                amount,
                target,
                expires_at,
                info,
                at,
            }
        } else {
            Event::OutboundQueued {
                wallet,
                txn,
                asset,
                amount,
                target,
                expires_at,
                info,
                at,
            }
        };
        self.emit(event, out)?;
        self.drain(at, out)?;
        Ok(Done::Txn(txn))
    }

    /// A hold, granted only if `available` covers it: a reservation never
    /// jumps ahead of queued items.
    #[allow(clippy::too_many_arguments)]
    pub fn reserve(
        &mut self,
        at: Timestamp,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        expires_at: Option<Timestamp>,
        info: &TxnInfo,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        if let Some(done) = self.seen(txn, TxnKind::Reservation)? {
            return Ok(done);
        }
        let book = self.held_book(asset)?;
        let amount = money::validate(book.asset, amount)?;
        let info = checked_info(info)?;
        checked_expiry(expires_at, at)?;
        self.permit(Action::Reserve)?;
        let available = self.held_book(asset)?.balance().available;
        if amount > available {
            return Err(Reject::InsufficientFunds(format!(
                "cannot hold {amount} {asset}: {available} available"
            )));
        }
        let wallet = self.id;
        self.emit(
            Event::ReservationHeld {
                wallet,
                txn,
                asset,
                amount,
                expires_at,
                info,
                at,
            },
            out,
        )?;
        Ok(Done::Txn(txn))
    }

    /// Captures a held reservation, in full (`None`) or in part; the rest is
    /// released, so the queue may drain.
    pub fn capture(
        &mut self,
        at: Timestamp,
        txn: TxnId,
        amount: Option<Decimal>,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        let t = self.target_txn(txn, Target::Reservation)?;
        Self::require_status(t, TxnStatus::Held)?;
        let (asset, held) = (t.asset, t.amount);
        let amount = match amount {
            None => held,
            Some(raw) => {
                let a = money::validate(self.held_book(asset)?.asset, raw)?;
                if a > held {
                    return Err(Reject::InvalidAmount(format!(
                        "cannot capture {a} of a {held} hold"
                    )));
                }
                a
            }
        };
        self.permit(Action::Capture)?;
        let wallet = self.id;
        self.emit(
            Event::ReservationCaptured {
                wallet,
                txn,
                amount,
                at,
            },
            out,
        )?;
        self.drain(at, out)?;
        Ok(Done::Txn(txn))
    }

    pub fn release(
        &mut self,
        at: Timestamp,
        txn: TxnId,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        let t = self.target_txn(txn, Target::Reservation)?;
        Self::require_status(t, TxnStatus::Held)?;
        self.permit(Action::Release)?;
        let wallet = self.id;
        self.emit(
            Event::ReservationReleased {
                wallet,
                txn,
                expired: false,
                at,
            },
            out,
        )?;
        self.drain(at, out)?;
        Ok(Done::Txn(txn))
    }

    /// Cancels a queued outbound item (anywhere in the queue).
    pub fn cancel(
        &mut self,
        at: Timestamp,
        txn: TxnId,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        let t = self.target_txn(txn, Target::Outbound)?;
        Self::require_status(t, TxnStatus::AwaitingFunds)?;
        self.permit(Action::Cancel)?;
        let wallet = self.id;
        self.emit(Event::OutboundCancelled { wallet, txn, at }, out)?;
        self.drain(at, out)?;
        Ok(Done::Txn(txn))
    }

    /// Changes the wallet's status. `closed` is terminal and needs empty
    /// books and no transfer whose money may still come back.
    pub fn change_status(
        &mut self,
        at: Timestamp,
        status: WalletStatus,
        reason: Option<String>,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        let wallet = self.id;
        if self.status == WalletStatus::Closed {
            return Err(Reject::WalletClosed(wallet));
        }
        if reason
            .as_ref()
            .is_some_and(|r| r.len() > WalletSettings::MAX_DESCRIPTION_LEN)
        {
            return Err(Reject::InvalidRequest("reason is too long".to_owned()));
        }
        if status == self.status && reason == self.status_reason {
            return Ok(Done::Wallet(wallet));
        }
        if status == WalletStatus::Closed {
            let busy = self.books.values().find(|b| {
                !(b.cash.is_zero()
                    && b.reserved.is_zero()
                    && b.pending.is_zero()
                    && b.queue.is_empty())
            });
            if let Some(b) = busy {
                let held = [
                    ("cash", b.cash.is_zero()),
                    ("reserved", b.reserved.is_zero()),
                    ("pending", b.pending.is_zero()),
                    ("queued", b.queue.is_empty()),
                ]
                .iter()
                .filter(|(_, zero)| !zero)
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ");
                return Err(Reject::InvalidState(format!(
                    "wallet {wallet} cannot close: its {} balance is not empty ({held})",
                    b.asset.code
                )));
            }
            if !self.awaiting_receipt.is_empty() {
                return Err(Reject::InvalidState(format!(
                    "wallet {wallet} cannot close: a transfer it sent is still in flight"
                )));
            }
        }
        self.emit(
            Event::StatusChanged {
                wallet,
                status,
                reason,
                at,
            },
            out,
        )?;
        self.drain(at, out)?;
        Ok(Done::Wallet(wallet))
    }

    pub fn update_settings(
        &mut self,
        at: Timestamp,
        patch: &SettingsPatch,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        self.expire_due(at, out)?;
        let wallet = self.id;
        if patch
            .name
            .as_ref()
            .is_some_and(|n| n.len() > WalletSettings::MAX_NAME_LEN)
        {
            return Err(Reject::InvalidRequest(format!(
                "name is longer than {} bytes",
                WalletSettings::MAX_NAME_LEN
            )));
        }
        if patch
            .description
            .as_ref()
            .is_some_and(|d| d.len() > WalletSettings::MAX_DESCRIPTION_LEN)
        {
            return Err(Reject::InvalidRequest(format!(
                "description is longer than {} bytes",
                WalletSettings::MAX_DESCRIPTION_LEN
            )));
        }
        let mut settings = self.settings.clone();
        if let Some(name) = &patch.name {
            settings.name = Some(name.clone());
        }
        if let Some(description) = &patch.description {
            settings.description = Some(description.clone());
        }
        if let Some(fav) = patch.is_favourite {
            settings.is_favourite = fav;
        }
        if settings != self.settings {
            self.emit(
                Event::SettingsChanged {
                    wallet,
                    settings: Box::new(settings),
                    at,
                },
                out,
            )?;
        }
        Ok(Done::Wallet(wallet))
    }

    /// Whether this wallet would take a transfer of `asset` now (checked when
    /// a transfer is submitted; checked again on delivery).
    pub fn accepts(&self, asset: AssetCode) -> Result<(), Reject> {
        self.held_book(asset)?;
        self.permit(Action::Credit)
    }

    /// Applies a message addressed to this wallet. Never refuses: money in
    /// flight must land somewhere, so a delivery this wallet cannot take is
    /// bounced back. Messages may arrive more than once (senders re-send
    /// until acknowledged): a repeated `Deliver` changes nothing and returns
    /// the acknowledgement to send again (`Receipt` or `Return`); a repeated
    /// `Receipt` or `Return` is ignored.
    pub fn receive(
        &mut self,
        at: Timestamp,
        message: &Message,
        out: &mut Vec<Event>,
    ) -> Result<Option<Message>, Reject> {
        let wallet = self.id;
        if message.recipient() != wallet {
            return Err(Reject::Internal(format!(
                "{wallet}: message for {}",
                message.recipient()
            )));
        }
        match message {
            Message::Deliver(leg) => {
                if let Some(t) = self.txns.get(leg.txn) {
                    // Applied before (a re-sent message) -- or an id clash,
                    // which the ledger refuses at submit.
                    let ours =
                        t.direction == Some(Direction::In) && t.counterparty == Some(leg.from);
                    return if ours {
                        Ok(Some(if t.status == TxnStatus::Returned {
                            Message::Return(*leg)
                        } else {
                            Message::Receipt {
                                txn: leg.txn,
                                to: leg.from,
                            }
                        }))
                    } else {
                        Err(Reject::Internal(format!(
                            "{wallet}: delivery of {} clashes with a record",
                            leg.txn
                        )))
                    };
                }
                let (asset, amount) = leg.in_flight();
                // `accepts`, then room, on one lookup of the book.
                let refusal = self.held_book(asset).and_then(|book| {
                    self.permit(Action::Credit)?;
                    book.has_room_for(amount)
                });
                let leg: Leg = *leg;
                match refusal {
                    Ok(()) => {
                        self.emit(Event::TransferReceived { wallet, leg, at }, out)?;
                        self.drain(at, out)?;
                    }
                    Err(why) => {
                        let reason = why.to_string();
                        self.emit(
                            Event::TransferBounced {
                                wallet,
                                leg,
                                reason,
                                at,
                            },
                            out,
                        )?;
                    }
                }
            }
            Message::Return(leg) => {
                if self.awaiting_receipt.contains_key(&leg.txn) {
                    self.emit(
                        Event::TransferReturned {
                            wallet,
                            txn: leg.txn,
                            at,
                        },
                        out,
                    )?;
                    self.drain(at, out)?;
                }
            }
            Message::Receipt { txn, .. } => {
                if self.awaiting_receipt.contains_key(txn) {
                    self.emit(
                        Event::TransferDelivered {
                            wallet,
                            txn: *txn,
                            at,
                        },
                        out,
                    )?;
                }
            }
        }
        Ok(None)
    }
}
