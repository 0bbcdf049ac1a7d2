//! The ledger: all wallets and the messages in flight between them.
//!
//! This is the whole engine as one deterministic value. It routes each
//! command to its wallet, checks what needs two wallets (a transfer's
//! destination, a conversion's terms), and tracks messages in flight as a
//! function of events. Deliveries are explicit steps (`deliver`), as they
//! are between actors, so money can be observed in flight. The actor layer
//! runs the same wallet code, one wallet per actor.

use crate::audit::{self, AssetAudit};
use crate::command::{Command, Op};
use crate::config::EngineConfig;
use crate::digest::{self, DigestError, StateDigest};
use crate::event::Event;
use crate::ids::{Timestamp, TxnId, WalletId};
use crate::message::{Leg, Message};
use crate::money;
use crate::reject::{ApplyError, Reject};
use crate::txn::{Outbound, TxnKind};
use crate::wallet::{Done, WalletSettings, WalletSpec, WalletState};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    config: EngineConfig,
    wallets: BTreeMap<WalletId, WalletState>,
    in_flight: BTreeMap<TxnId, Message>,
}

impl Ledger {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            wallets: BTreeMap::new(),
            in_flight: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn wallet(&self, id: WalletId) -> Option<&WalletState> {
        self.wallets.get(&id)
    }

    pub fn wallets(&self) -> impl ExactSizeIterator<Item = &WalletState> {
        self.wallets.values()
    }

    /// Messages in flight, by transaction id.
    pub fn in_flight(&self) -> impl ExactSizeIterator<Item = &Message> {
        self.in_flight.values()
    }

    fn wallet_mut(&mut self, id: WalletId) -> Result<&mut WalletState, Reject> {
        self.wallets
            .get_mut(&id)
            .ok_or_else(|| Reject::NotFound(format!("wallet {id} not found")))
    }

    /// Executes one command; the events it caused are appended to `out`
    /// (also when it is refused: expiry that ran first is kept).
    pub fn execute(&mut self, command: &Command, out: &mut Vec<Event>) -> Result<Done, Reject> {
        let start = out.len();
        let result = self.decide(command, out);
        for event in &out[start..] {
            self.track(event)?;
        }
        result
    }

    fn decide(&mut self, command: &Command, out: &mut Vec<Event>) -> Result<Done, Reject> {
        let at = command.at;
        let limits = self.config.limits;
        match &command.op {
            Op::OpenWallet {
                wallet,
                client,
                kind,
                customer,
                assets,
                single_asset,
                settings,
            } => {
                let spec = WalletSpec {
                    client: *client,
                    kind: *kind,
                    customer: *customer,
                    assets: assets
                        .iter()
                        .map(|&code| self.config.assets.resolve(code))
                        .collect::<Result<_, _>>()?,
                    single_asset: *single_asset,
                };
                self.open_wallet(at, *wallet, spec, settings, out)
            }
            Op::SetStatus {
                wallet,
                status,
                reason,
            } => self
                .wallet_mut(*wallet)?
                .change_status(at, *status, reason.clone(), out),
            Op::UpdateSettings { wallet, patch } => {
                self.wallet_mut(*wallet)?.update_settings(at, patch, out)
            }
            Op::Credit {
                wallet,
                txn,
                asset,
                amount,
                pending,
                info,
            } => self
                .wallet_mut(*wallet)?
                .credit(at, *txn, *asset, *amount, *pending, info, out),
            Op::SettlePending { wallet, txn } => self
                .wallet_mut(*wallet)?
                .resolve_pending(at, *txn, true, out),
            Op::RejectPending { wallet, txn } => self
                .wallet_mut(*wallet)?
                .resolve_pending(at, *txn, false, out),
            Op::Debit {
                wallet,
                txn,
                asset,
                amount,
                if_insufficient,
                expires_at,
                info,
            } => self.wallet_mut(*wallet)?.submit_outbound(
                at,
                &limits,
                *txn,
                *asset,
                *amount,
                Outbound::Payout,
                *if_insufficient,
                *expires_at,
                info,
                out,
            ),
            Op::Reserve {
                wallet,
                txn,
                asset,
                amount,
                expires_at,
                info,
            } => {
                self.wallet_mut(*wallet)?
                    .reserve(at, *txn, *asset, *amount, *expires_at, info, out)
            }
            Op::Capture {
                wallet,
                txn,
                amount,
            } => self.wallet_mut(*wallet)?.capture(at, *txn, *amount, out),
            Op::Release { wallet, txn } => self.wallet_mut(*wallet)?.release(at, *txn, out),
            Op::Cancel { wallet, txn } => self.wallet_mut(*wallet)?.cancel(at, *txn, out),
            Op::Transfer {
                from,
                to,
                txn,
                asset,
                amount,
                if_insufficient,
                expires_at,
                info,
            } => {
                if self.retried(*from, *txn, TxnKind::Transfer) {
                    return Ok(Done::Txn(*txn));
                }
                // Time has passed at the source whatever the fate of the command.
                self.wallet_mut(*from)?.expire_due(at, out)?;
                if from == to {
                    return Err(Reject::InvalidRequest(
                        "a transfer needs two different wallets".to_owned(),
                    ));
                }
                self.config.assets.resolve(*asset)?;
                self.destination(*to, *txn, *asset)?;
                self.wallet_mut(*from)?.submit_outbound(
                    at,
                    &limits,
                    *txn,
                    *asset,
                    *amount,
                    Outbound::Transfer { to: *to },
                    *if_insufficient,
                    *expires_at,
                    info,
                    out,
                )
            }
            Op::Convert {
                from,
                to,
                txn,
                sell_asset,
                buy_asset,
                sell_amount,
                rate,
                if_insufficient,
                expires_at,
                info,
            } => {
                if self.retried(*from, *txn, TxnKind::Conversion) {
                    return Ok(Done::Txn(*txn));
                }
                self.wallet_mut(*from)?.expire_due(at, out)?;
                if sell_asset == buy_asset {
                    return Err(Reject::InvalidRequest(
                        "a conversion needs two different assets".to_owned(),
                    ));
                }
                let sell = self.config.assets.resolve(*sell_asset)?;
                let buy = self.config.assets.resolve(*buy_asset)?;
                let sell_amount = money::validate(sell, *sell_amount)?;
                let terms = crate::txn::ConversionTerms {
                    buy_asset: buy.code,
                    buy_amount: money::convert(sell_amount, *rate, buy)?,
                    rate: *rate,
                };
                if to != from {
                    self.destination(*to, *txn, buy.code)?;
                }
                self.wallet_mut(*from)?.submit_outbound(
                    at,
                    &limits,
                    *txn,
                    *sell_asset,
                    sell_amount,
                    Outbound::Conversion { to: *to, terms },
                    *if_insufficient,
                    *expires_at,
                    info,
                    out,
                )
            }
            Op::Expire { wallet } => {
                self.wallet_mut(*wallet)?.expire_due(at, out)?;
                Ok(Done::Wallet(*wallet))
            }
        }
    }

    /// Whether `txn` was already submitted at `from` as this kind: a retry,
    /// answered before re-checking a destination that may have changed.
    fn retried(&self, from: WalletId, txn: TxnId, kind: TxnKind) -> bool {
        self.wallets
            .get(&from)
            .and_then(|w| w.txn(txn))
            .is_some_and(|t| t.kind == kind && t.direction == Some(crate::txn::Direction::Out))
    }

    /// Checks a transfer's destination: it exists, takes the asset now, and
    /// does not already use the transaction id (the id names the transfer in
    /// both wallets).
    fn destination(&self, to: WalletId, txn: TxnId, asset: crate::AssetCode) -> Result<(), Reject> {
        let dest = self
            .wallets
            .get(&to)
            .ok_or_else(|| Reject::NotFound(format!("wallet {to} not found")))?;
        dest.accepts(asset)?;
        if dest.txn(txn).is_some() {
            return Err(Reject::InvalidRequest(format!(
                "transaction id {txn} is already used"
            )));
        }
        Ok(())
    }

    fn open_wallet(
        &mut self,
        at: Timestamp,
        wallet: WalletId,
        spec: WalletSpec,
        settings: &WalletSettings,
        out: &mut Vec<Event>,
    ) -> Result<Done, Reject> {
        if let Some(existing) = self.wallets.get(&wallet) {
            return if existing.spec == spec {
                Ok(Done::Wallet(wallet))
            } else {
                Err(Reject::InvalidRequest(format!(
                    "wallet id {wallet} is already used"
                )))
            };
        }
        let n = spec.assets.len();
        if n == 0 || n > self.config.limits.max_assets_per_wallet {
            return Err(Reject::InvalidRequest(format!(
                "a wallet holds 1 to {} assets, got {n}",
                self.config.limits.max_assets_per_wallet
            )));
        }
        let distinct: BTreeSet<_> = spec.assets.iter().map(|a| a.code).collect();
        if distinct.len() != n {
            return Err(Reject::InvalidRequest(
                "an asset is listed twice".to_owned(),
            ));
        }
        if spec.single_asset && n != 1 {
            return Err(Reject::InvalidRequest(
                "a single-asset wallet holds one asset".to_owned(),
            ));
        }
        let name_ok = settings
            .name
            .as_ref()
            .is_none_or(|s| s.len() <= WalletSettings::MAX_NAME_LEN);
        let description_ok = settings
            .description
            .as_ref()
            .is_none_or(|s| s.len() <= WalletSettings::MAX_DESCRIPTION_LEN);
        if !(name_ok && description_ok) {
            return Err(Reject::InvalidRequest(
                "name or description is too long".to_owned(),
            ));
        }
        let event = Event::WalletOpened {
            wallet,
            spec: Box::new(spec),
            settings: Box::new(settings.clone()),
            at,
        };
        self.wallets.insert(wallet, WalletState::open(&event)?);
        out.push(event);
        Ok(Done::Wallet(wallet))
    }

    /// Applies the message in flight for `txn` at its recipient.
    pub fn deliver(
        &mut self,
        txn: TxnId,
        at: Timestamp,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let message = *self
            .in_flight
            .get(&txn)
            .ok_or_else(|| Reject::NotFound(format!("no message in flight for {txn}")))?;
        let start = out.len();
        let recipient = message.recipient();
        self.wallets
            .get_mut(&recipient)
            .ok_or_else(|| Reject::Internal(format!("message for unknown wallet {recipient}")))?
            .receive(at, &message, out)?;
        for event in &out[start..] {
            self.track(event)?;
        }
        if self.in_flight.get(&txn) == Some(&message) {
            return Err(Reject::Internal(format!(
                "{recipient} did not consume the message for {txn}"
            )));
        }
        Ok(())
    }

    /// Delivers until nothing is in flight (each transfer takes at most two
    /// steps: a delivery, then a receipt or a return).
    pub fn deliver_all(&mut self, at: Timestamp, out: &mut Vec<Event>) -> Result<(), Reject> {
        while let Some(&txn) = self.in_flight.keys().next() {
            self.deliver(txn, at, out)?;
        }
        Ok(())
    }

    /// Applies one event (replay).
    pub fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        match event {
            Event::WalletOpened { wallet, .. } => {
                if self.wallets.contains_key(wallet) {
                    return Err(ApplyError(format!("{wallet} opened twice")));
                }
                self.wallets.insert(*wallet, WalletState::open(event)?);
            }
            _ => {
                let wallet = event.wallet();
                self.wallets
                    .get_mut(&wallet)
                    .ok_or_else(|| ApplyError(format!("event for unknown wallet {wallet}")))?
                    .apply(event)?;
            }
        }
        self.track(event)
    }

    /// Keeps the messages in flight in step with an applied event.
    fn track(&mut self, event: &Event) -> Result<(), ApplyError> {
        match event {
            Event::OutboundSettled { wallet, txn, .. } => {
                let t = self
                    .wallets
                    .get(wallet)
                    .and_then(|w| w.txn(*txn))
                    .ok_or_else(|| ApplyError(format!("{wallet}: settled {txn} has no record")))?;
                let to_and_terms = match t.outbound() {
                    Some(Outbound::Transfer { to }) => Some((to, None)),
                    Some(Outbound::Conversion { to, terms }) if to != *wallet => {
                        Some((to, Some(terms)))
                    }
                    _ => None,
                };
                if let Some((to, conversion)) = to_and_terms {
                    let leg = Leg {
                        txn: *txn,
                        from: *wallet,
                        to,
                        asset: t.asset,
                        amount: t.amount,
                        conversion,
                    };
                    self.send(Message::Deliver(leg))?;
                }
            }
            Event::TransferReceived { leg, .. } => {
                self.take(leg.txn, |m| matches!(m, Message::Deliver(_)))?;
                self.send(Message::Receipt {
                    txn: leg.txn,
                    to: leg.from,
                })?;
            }
            Event::TransferBounced { leg, .. } => {
                self.take(leg.txn, |m| matches!(m, Message::Deliver(_)))?;
                self.send(Message::Return(*leg))?;
            }
            Event::TransferReturned { txn, .. } => {
                self.take(*txn, |m| matches!(m, Message::Return(_)))?
            }
            Event::TransferDelivered { txn, .. } => {
                self.take(*txn, |m| matches!(m, Message::Receipt { .. }))?
            }
            _ => {}
        }
        Ok(())
    }

    fn send(&mut self, message: Message) -> Result<(), ApplyError> {
        let txn = message.txn();
        if self.in_flight.insert(txn, message).is_some() {
            return Err(ApplyError(format!("two messages in flight for {txn}")));
        }
        Ok(())
    }

    fn take(&mut self, txn: TxnId, expected: impl Fn(&Message) -> bool) -> Result<(), ApplyError> {
        match self.in_flight.remove(&txn) {
            Some(m) if expected(&m) => Ok(()),
            other => Err(ApplyError(format!(
                "{txn}: unexpected message in flight: {other:?}"
            ))),
        }
    }

    /// The conservation audit of ENGINE.md, per asset.
    pub fn audit(&self) -> Vec<AssetAudit> {
        audit::audit(
            &self.config.assets,
            self.wallets.values(),
            self.in_flight.values(),
        )
    }

    /// A stable hash of the whole state.
    pub fn digest(&self) -> Result<StateDigest, DigestError> {
        digest::digest(self.wallets.values(), self.in_flight.values())
    }

    /// Checks every invariant that spans wallets, and each wallet's own.
    pub fn check_invariants(&self) -> Result<(), String> {
        for w in self.wallets.values() {
            w.check_invariants()?;
        }
        for a in self.audit() {
            if !a.ok() {
                return Err(format!("conservation broken: {a:?}"));
            }
            if a.sent - a.received != a.in_flight {
                return Err(format!(
                    "in flight disagrees with the wallets' flows: {a:?}"
                ));
            }
        }
        // Every transfer awaiting its receipt has exactly one message in
        // flight, and every message belongs to such a transfer.
        let awaiting: BTreeSet<TxnId> = self
            .wallets
            .values()
            .flat_map(|w| w.awaiting_receipt())
            .collect();
        let flying: BTreeSet<TxnId> = self.in_flight.keys().copied().collect();
        if awaiting != flying {
            return Err(format!(
                "transfers awaiting receipt {awaiting:?} != messages in flight {flying:?}"
            ));
        }
        Ok(())
    }
}
