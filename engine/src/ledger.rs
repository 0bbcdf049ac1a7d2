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
use crate::message::Message;
use crate::reject::{ApplyError, Reject};
use crate::wallet::{Done, WalletState};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    config: EngineConfig,
    /// Boxed: a tree node then holds ids and pointers, not 11 states of
    /// ~330 bytes, so restoring a million wallets moves each state once
    /// and builds a small tree, and lookups walk less memory.
    wallets: BTreeMap<WalletId, Box<WalletState>>,
    in_flight: BTreeMap<TxnId, Message>,
    /// The wallet that created each transaction. Ids are unique across the
    /// engine (a transfer's id names it in both wallets); the gateway mints
    /// them, and the ledger refuses a command that would reuse one.
    creators: HashMap<TxnId, WalletId, foldhash::fast::RandomState>,
}

impl Ledger {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            wallets: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            creators: HashMap::default(),
        }
    }

    /// Rebuilds a ledger from wallet states (a snapshot): the messages in
    /// flight are those the states imply, and each transaction's creator is
    /// the wallet that holds it other than as a transfer's inbound record.
    /// Refuses states that contradict each other (a transaction created by
    /// two wallets), as replay would.
    pub fn restore(
        config: EngineConfig,
        wallets: impl IntoIterator<Item = WalletState>,
    ) -> Result<Self, ApplyError> {
        let mut ledger = Self::new(config);
        let wallets = wallets.into_iter();
        // At least one transaction per wallet in practice: grow once, not
        // twenty times, for a million wallets.
        ledger.creators.reserve(wallets.size_hint().0);
        // Each state is boxed as it comes (moved once); the tree is then
        // built in bulk from the sorted boxes (a snapshot's are sorted
        // already: linear): full nodes, no splits.
        let mut boxed: Vec<(WalletId, Box<WalletState>)> =
            Vec::with_capacity(wallets.size_hint().0);
        for wallet in wallets {
            let id = wallet.id;
            for t in wallet.txns() {
                if t.is_inbound_record() {
                    continue;
                }
                if let Some(other) = ledger.creators.insert(t.id, id) {
                    return Err(ApplyError(format!("{} created by {other} and {id}", t.id)));
                }
            }
            boxed.push((id, Box::new(wallet)));
        }
        boxed.sort_unstable_by_key(|(id, _)| *id);
        if let Some(pair) = boxed.windows(2).find(|p| p[0].0 == p[1].0) {
            return Err(ApplyError(format!("{} appears twice", pair[0].0)));
        }
        ledger.wallets = boxed.into_iter().collect();
        let states: BTreeMap<WalletId, &WalletState> =
            ledger.wallets.iter().map(|(id, w)| (*id, &**w)).collect();
        let implied = crate::message::implied_in_flight(&states);
        for message in implied {
            ledger.send(message)?;
        }
        Ok(ledger)
    }

    /// Takes in one wallet restored on its own (a snapshot's wallet that
    /// the log's tail touches, decoded only then): its transactions'
    /// creators are recorded, as `restore` does. The messages in flight
    /// are not changed: the caller restores those the snapshot implies
    /// (`restore_in_flight`). Refuses a wallet already here, or a
    /// transaction another wallet created.
    pub fn adopt(&mut self, wallet: Box<WalletState>) -> Result<(), ApplyError> {
        let id = wallet.id;
        if self.wallets.contains_key(&id) {
            return Err(ApplyError(format!("{id} appears twice")));
        }
        for t in wallet.txns() {
            if t.is_inbound_record() {
                continue;
            }
            // Its own entry stays from before a `release`.
            match self.creators.insert(t.id, id) {
                Some(other) if other != id => {
                    return Err(ApplyError(format!("{} created by {other} and {id}", t.id)));
                }
                _ => {}
            }
        }
        self.wallets.insert(id, wallet);
        Ok(())
    }

    /// Gives up one wallet's state for the caller to keep elsewhere (a
    /// replay that packs wallets it has not touched lately), and `adopt`
    /// takes it back. Its transactions' creators and the messages in flight
    /// stay: the ledger still refuses a transaction the released wallet
    /// created, and tracks the messages it sent. Events for it are refused
    /// until it is adopted again.
    pub fn release(&mut self, id: WalletId) -> Option<Box<WalletState>> {
        self.wallets.remove(&id)
    }

    /// The wallet that created each transaction: of every wallet restored,
    /// adopted or opened here, released ones included. Unordered.
    pub fn creators(&self) -> impl ExactSizeIterator<Item = (TxnId, WalletId)> + '_ {
        self.creators.iter().map(|(t, w)| (*t, *w))
    }

    /// Puts messages in flight, as restored wallet states imply them
    /// (`message::implied_in_flight`); refuses two for one transaction.
    pub fn restore_in_flight(
        &mut self,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<(), ApplyError> {
        for message in messages {
            self.send(message)?;
        }
        Ok(())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn wallet(&self, id: WalletId) -> Option<&WalletState> {
        self.wallets.get(&id).map(|w| &**w)
    }

    pub fn wallets(&self) -> impl ExactSizeIterator<Item = &WalletState> {
        self.wallets.values().map(|w| &**w)
    }

    /// Gives the wallets up (recovery hands them to the actors).
    pub fn into_wallets(self) -> impl Iterator<Item = WalletState> {
        self.wallets.into_values().map(|w| *w)
    }

    /// Gives the wallets up, in id order, boxed as they are kept (no move
    /// of each state into a new vector).
    pub fn into_boxed_wallets(self) -> impl ExactSizeIterator<Item = Box<WalletState>> {
        self.wallets.into_values()
    }

    /// Messages in flight, by transaction id.
    pub fn in_flight(&self) -> impl ExactSizeIterator<Item = &Message> {
        self.in_flight.values()
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
        let op = &command.op;
        if let Op::OpenWallet { wallet, .. } = op {
            let event = crate::wallet::opening(&self.config, at, op)?;
            return match self.wallets.get(wallet) {
                Some(existing) => existing.reopened(&event),
                None => {
                    self.wallets
                        .insert(*wallet, Box::new(WalletState::open(&event)?));
                    out.push(event);
                    Ok(Done::Wallet(*wallet))
                }
            };
        }
        let wallet = op.wallet();
        if !self.wallets.contains_key(&wallet) {
            return Err(Reject::NotFound(format!("wallet {wallet} not found")));
        }
        if let Some(txn) = op.created_txn()
            && self
                .creators
                .get(&txn)
                .is_some_and(|&creator| creator != wallet)
        {
            // Time passes at the wallet whatever the command's fate.
            if let Some(w) = self.wallets.get_mut(&wallet) {
                w.expire_due(at, out)?;
            }
            return Err(Reject::InvalidRequest(format!(
                "transaction id {txn} is already used"
            )));
        }
        let destination = self.destination_verdict(op);
        let state = self
            .wallets
            .get_mut(&wallet)
            .ok_or_else(|| Reject::NotFound(format!("wallet {wallet} not found")))?;
        state.execute(at, &self.config, op, destination, out)
    }

    /// The verdict on a transfer's or conversion's destination, which only
    /// the ledger can see; the source wallet applies it after its own checks.
    fn destination_verdict(&self, op: &Op) -> Result<(), Reject> {
        match op {
            Op::Transfer {
                from,
                to,
                txn,
                asset,
                ..
            } if from != to => self.destination(*to, *asset),
            Op::Convert {
                from,
                to,
                txn,
                buy_asset,
                ..
            } if from != to => self.destination(*to, *buy_asset),
            _ => Ok(()),
        }
    }

    /// Checks a transfer's destination: it exists and takes the asset now.
    fn destination(&self, to: WalletId, asset: crate::AssetCode) -> Result<(), Reject> {
        let dest = self
            .wallets
            .get(&to)
            .ok_or_else(|| Reject::NotFound(format!("wallet {to} not found")))?;
        dest.accepts(asset)
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
        // (No message is ever applied twice here, so no acknowledgement is
        // re-sent; the check below catches one that changed nothing.)
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
                self.wallets
                    .insert(*wallet, Box::new(WalletState::open(event)?));
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

    /// Keeps the messages in flight in step with an applied event: the
    /// message it consumes leaves, the message it sends arrives.
    fn track(&mut self, event: &Event) -> Result<(), ApplyError> {
        if let Some(txn) = event.created_txn() {
            let wallet = event.wallet();
            if let Some(other) = self.creators.insert(txn, wallet) {
                return Err(ApplyError(format!("{txn} created by {other} and {wallet}")));
            }
        }
        match event {
            Event::TransferReceived { leg, .. } | Event::TransferBounced { leg, .. } => {
                self.take(leg.txn, |m| matches!(m, Message::Deliver(_)))?
            }
            Event::TransferReturned { txn, .. } => {
                self.take(*txn, |m| matches!(m, Message::Return(_)))?
            }
            Event::TransferDelivered { txn, .. } => {
                self.take(*txn, |m| matches!(m, Message::Receipt { .. }))?
            }
            _ => {}
        }
        let wallet = event.wallet();
        let sender = self
            .wallets
            .get(&wallet)
            .ok_or_else(|| ApplyError(format!("event for unknown wallet {wallet}")))?;
        if let Some(message) = crate::message::sent_by(sender, event)? {
            self.send(message)?;
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
        audit::audit(&self.config.assets, self.wallets(), self.in_flight.values())
    }

    /// A stable hash of the whole state.
    pub fn digest(&self) -> Result<StateDigest, DigestError> {
        digest::digest(self.wallets(), self.in_flight.values())
    }

    /// Checks every invariant that spans wallets, and each wallet's own.
    pub fn check_invariants(&self) -> Result<(), String> {
        audit::check(
            &self.config.assets,
            self.wallets.values().map(|w| &**w),
            self.in_flight.values(),
        )?;
        // The messages tracked event by event are those the states imply.
        let states: BTreeMap<WalletId, &WalletState> =
            self.wallets.iter().map(|(id, w)| (*id, &**w)).collect();
        let mut implied = crate::message::implied_in_flight(&states);
        implied.sort_by_key(Message::txn);
        let tracked: Vec<Message> = self.in_flight.values().copied().collect();
        if implied != tracked {
            return Err(format!(
                "messages in flight {tracked:?} != implied by the states {implied:?}"
            ));
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
