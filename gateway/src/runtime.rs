//! Routing, activation, passivation and restart of wallet actors; the
//! `WalletHost` the actors run against.
//!
//! Routing takes a registry shard's read lock, counts the message in (per
//! wallet and in total) and casts it to the wallet's actor. A passivated
//! wallet (no actor) is activated on the slow path, under the shard's write
//! lock, so exactly one actor is ever spawned for it. The counters are the
//! backpressure: client commands past the limits are refused; messages
//! between wallets are never refused (money in flight must land).

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::gateway::{CommitHook, CommitObserver};
use crate::incoming::Incoming;
use crate::journal::{Journal, JournalError, Record};
use crate::registry::{Registry, Slot};
use parking_lot::Mutex;
use ractor::{ActorCell, ActorId, ActorRef, ActorRuntime, MessagingErr};
use settle_engine::actor::{
    Clock, CommitError, ReceiptsWaiting, Then, WalletActor, WalletHost, WalletMsg, WalletShared,
};
use settle_engine::{EngineConfig, Event, Message, Reject, Timestamp, WalletId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Who sent a message: clients are subject to the limits, wallets are not.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Admit {
    /// A client's message, carrying this many commands (a batch's
    /// commands for one wallet travel in one message).
    Client(u32),
    Internal,
}

impl Admit {
    /// Client commands the message carries.
    fn commands(self) -> u32 {
        match self {
            Admit::Client(n) => n,
            Admit::Internal => 0,
        }
    }

    /// What the message counts for in its wallet's `inflight`: each
    /// command, so that the per-wallet bound holds however they travel.
    fn weight(self) -> u32 {
        match self {
            Admit::Client(n) => n,
            Admit::Internal => 1,
        }
    }
}

pub(crate) struct Runtime {
    pub config: GatewayConfig,
    pub registry: Registry,
    pub clock: Arc<dyn Clock>,
    pub observer: Option<Arc<dyn CommitObserver>>,
    /// Sees commits with the wallet's state (the webhooks' outbox).
    pub hook: Option<Arc<dyn CommitHook>>,
    /// The write-ahead log; `None` keeps everything in memory (tests, benches).
    pub journal: Option<Arc<Journal>>,
    /// The transfers toward each wallet that have not reached it (listed
    /// in its history), kept from the commits.
    pub incoming: Mutex<Incoming>,
    /// Client commands routed and not yet finished, across all wallets.
    /// (Messages between wallets are counted per wallet only: they are never
    /// refused, and one shared counter touched by every message would be a
    /// cache line fought over by every core.)
    pub inflight: AtomicUsize,
    /// The wallet each running actor serves: the sweep's list of them, and
    /// how a failure report finds its slot. An entry goes when its actor
    /// is passivated, replaced or stopped.
    pub actors: Mutex<HashMap<ActorId, WalletId>>,
    /// Slots with an actor (`Slot::actor` is `Some`), changed only under
    /// the slot's shard write lock. Past `max_active`, actors passivate as
    /// soon as they are idle (`crowded`).
    running: AtomicUsize,
    /// Passivated wallets with a timer (`WalletShared::next_due`), soonest
    /// first: the sweep ticks these without looking at every wallet. An
    /// entry is pushed when a wallet comes to rest with a timer it is not
    /// already filed under (`WalletShared::filed_due`); one whose wallet
    /// has since woken, or whose timer moved, is skipped when it comes up.
    sleepers: Mutex<BinaryHeap<Reverse<(i64, WalletId)>>>,
    /// The gateway actor (the sweeper); wallets are activated only while it
    /// runs.
    pub supervisor: OnceLock<ActorCell>,
    /// The time as of the last sweep (ms): cheap to read on every route.
    pub coarse_now: AtomicI64,
    /// Wallet actors restarted after a failure.
    pub restarts: AtomicU64,
    /// Wallets whose actor the last sweep found used before this instant
    /// (ms) are passivated even if not idle: too many actors were running.
    evict_before: AtomicI64,
    /// The sweep's lists, kept between sweeps (and one sweep at a time).
    sweep_lists: Mutex<SweepLists>,
    me: Weak<Runtime>,
}

/// A sweep's working lists. With tens of thousands of running actors they
/// are hundreds of KB: allocated afresh, the allocator took them from the
/// OS each time (it gives freed large blocks back), and faulting their
/// pages in made a sweep of 10,000 running actors take ~6 ms instead of
/// ~2 (BENCHMARKS.md, "The sweep's lists kept, and the sweep off the
/// workers"). Kept up to twice `max_active` entries each; a burst past
/// that gives the rest back.
#[derive(Debug, Default)]
struct SweepLists {
    /// Running actors, copied out of `Runtime::actors`.
    live: Vec<(ActorId, WalletId)>,
    /// Running wallets with a timer due or receipts overdue.
    due: Vec<WalletId>,
    /// (last used, wallet) of actors that keep running.
    running: Vec<(i64, WalletId)>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("inflight", &self.inflight)
            .finish_non_exhaustive()
    }
}

fn not_found(wallet: WalletId) -> GatewayError {
    GatewayError::Rejected(Reject::NotFound(format!("wallet {wallet} not found")))
}

impl Runtime {
    pub fn new(
        config: GatewayConfig,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn CommitObserver>>,
        journal: Option<Arc<Journal>>,
        hook: Option<Arc<dyn CommitHook>>,
    ) -> Arc<Self> {
        let now = clock.now().millis();
        Arc::new_cyclic(|me| Runtime {
            registry: Registry::new(config.shards),
            config,
            clock,
            observer,
            hook,
            journal,
            incoming: Mutex::new(Incoming::default()),
            inflight: AtomicUsize::new(0),
            actors: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            sleepers: Mutex::new(BinaryHeap::new()),
            supervisor: OnceLock::new(),
            coarse_now: AtomicI64::new(now),
            restarts: AtomicU64::new(0),
            evict_before: AtomicI64::new(i64::MIN),
            sweep_lists: Mutex::new(SweepLists::default()),
            me: me.clone(),
        })
    }

    fn count_in(&self, shared: &WalletShared, admit: Admit) {
        shared.inflight.fetch_add(admit.weight(), Ordering::AcqRel);
        let commands = admit.commands();
        if commands > 0 {
            shared.client_inflight.fetch_add(commands, Ordering::AcqRel);
            self.inflight.fetch_add(commands as usize, Ordering::AcqRel);
        }
        shared
            .last_used
            .store(self.coarse_now.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Whether `commands` more client commands may be counted in for this
    /// wallet (and in total).
    fn admit(&self, shared: &WalletShared, commands: u32) -> Result<(), GatewayError> {
        if let Some(why) = self.journal.as_ref().and_then(|j| j.refusal()) {
            return Err(GatewayError::Unavailable(why));
        }
        let waiting = shared.inflight.load(Ordering::Acquire);
        if waiting.saturating_add(commands) > self.config.max_inflight_per_wallet {
            return Err(GatewayError::Overloaded { wallet: shared.id });
        }
        let total = self.inflight.load(Ordering::Acquire);
        if total.saturating_add(commands as usize) > self.config.max_inflight_total {
            return Err(GatewayError::Unavailable(
                "the engine is at capacity; retry later".to_owned(),
            ));
        }
        Ok(())
    }

    /// Routes a message to a wallet's actor, activating the wallet if it is
    /// passivated (or its actor has died).
    pub fn route(
        &self,
        wallet: WalletId,
        msg: WalletMsg,
        admit: Admit,
    ) -> Result<(), GatewayError> {
        let shard = self.registry.shard(wallet);
        let msg = {
            let slots = shard.read();
            let slot = slots.get(&wallet).ok_or_else(|| not_found(wallet))?;
            if let Admit::Client(commands) = admit {
                self.admit(&slot.shared, commands)?;
            }
            self.count_in(&slot.shared, admit);
            match self.try_cast(slot, msg, admit)? {
                None => return Ok(()),
                Some(msg) => msg,
            }
        };
        // Slow path: no live actor. The message is already counted. (Another
        // router may have activated the wallet meanwhile: try it first.)
        let mut slots = shard.write();
        let slot = slots.get_mut(&wallet).ok_or_else(|| not_found(wallet))?;
        let Some(msg) = self.try_cast(slot, msg, admit)? else {
            return Ok(());
        };
        let actor = self.activate(slot, admit)?;
        actor.cast(msg).map_err(|e| {
            self.uncount(&slot.shared, admit);
            GatewayError::Unavailable(format!("wallet {wallet}: {e}"))
        })
    }

    /// Casts to the slot's actor if it has a live one. `Ok(Some(msg))` gives
    /// the (counted) message back when there is no actor or it has died.
    fn try_cast(
        &self,
        slot: &Slot,
        msg: WalletMsg,
        admit: Admit,
    ) -> Result<Option<WalletMsg>, GatewayError> {
        let Some(actor) = &slot.actor else {
            return Ok(Some(msg));
        };
        match actor.cast(msg) {
            Ok(()) => Ok(None),
            Err(MessagingErr::SendErr(m)) => Ok(Some(m)),
            Err(e) => {
                self.uncount(&slot.shared, admit);
                Err(GatewayError::Unavailable(format!(
                    "wallet {}: {e}",
                    slot.shared.id
                )))
            }
        }
    }

    fn uncount(&self, shared: &WalletShared, admit: Admit) {
        shared.inflight.fetch_sub(admit.weight(), Ordering::AcqRel);
        let commands = admit.commands();
        if commands > 0 {
            shared.client_inflight.fetch_sub(commands, Ordering::AcqRel);
            self.inflight.fetch_sub(commands as usize, Ordering::AcqRel);
        }
    }

    /// Spawns an actor for a slot that has none (or a dead one). Called with
    /// the slot's shard write-locked. Messages counted for a dead actor died
    /// with its mailbox: only the one being routed now is still counted.
    fn activate(&self, slot: &mut Slot, admit: Admit) -> Result<ActorRef<WalletMsg>, GatewayError> {
        let (Some(me), Some(_)) = (self.me.upgrade(), self.supervisor.get()) else {
            return Err(GatewayError::Unavailable(
                "the gateway is stopping".to_owned(),
            ));
        };
        let replaced = slot.actor.take();
        if let Some(old) = &replaced {
            self.actors.lock().remove(&old.get_id());
            // Everything counted for the dead actor died with its mailbox,
            // but for the one message being routed now.
            let s = &slot.shared;
            let clients = s.client_inflight.swap(0, Ordering::AcqRel);
            self.inflight.fetch_sub(clients as usize, Ordering::AcqRel);
            s.inflight.store(0, Ordering::Release);
            self.count_in(s, admit);
            // Whoever notices first (the supervisor or a router) restarts it.
            self.restarts.fetch_add(1, Ordering::AcqRel);
        }
        let host: Arc<dyn WalletHost> = me;
        // Unlinked: a failing actor reports itself (`WalletHost::failed`).
        let (actor, _) = ActorRuntime::<WalletActor>::spawn_instant(
            None,
            WalletActor,
            (Arc::clone(&slot.shared), host),
        )
        .map_err(|e| {
            GatewayError::Unavailable(format!("cannot start wallet {}: {e}", slot.shared.id))
        })?;
        self.actors.lock().insert(actor.get_id(), slot.shared.id);
        slot.actor = Some(actor.clone());
        if replaced.is_none() {
            self.running.fetch_add(1, Ordering::AcqRel);
        }
        Ok(actor)
    }

    /// A wallet actor panicked: log it and start a new actor on the state its
    /// last applied event left. Its lost mailbox held client commands (their
    /// callers see `unavailable` and may retry) and messages from other
    /// wallets (their senders send them again until acknowledged).
    pub fn restart(&self, wallet: WalletId, dead: ActorId, error: &str) {
        tracing::error!(%wallet, %error, "wallet actor failed; restarting it from its last state");
        self.actors.lock().remove(&dead);
        let mut slots = self.registry.shard(wallet).write();
        let Some(slot) = slots.get_mut(&wallet) else {
            return;
        };
        if slot.actor.as_ref().map(|a| a.get_id()) != Some(dead) {
            return; // a router has already started a new one
        }
        // Count the tick we are about to send, as `route` would.
        self.count_in(&slot.shared, Admit::Internal);
        match self.activate(slot, Admit::Internal) {
            Ok(actor) => {
                if actor.cast(WalletMsg::Tick).is_err() {
                    self.uncount(&slot.shared, Admit::Internal);
                }
            }
            Err(e) => {
                self.uncount(&slot.shared, Admit::Internal);
                tracing::error!(%wallet, %e, "cannot restart wallet actor");
            }
        }
    }

    /// Wallet actors running now (slots with an actor).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Entries in `sleepers`.
    pub fn filed_timers(&self) -> usize {
        self.sleepers.lock().len()
    }

    /// A passivated wallet (or one about to be, under its shard's write
    /// lock) with a timer is remembered, so the sweep ticks it when due.
    pub fn rest(&self, shared: &WalletShared) {
        let due = shared.next_due.load(Ordering::Acquire);
        if due != i64::MAX && shared.filed_due.swap(due, Ordering::AcqRel) != due {
            self.sleepers.lock().push(Reverse((due, shared.id)));
        }
    }

    /// Passivates idle wallets (and, past `max_active`, the least recently
    /// used), and ticks wallets whose timers are due. Its work grows with
    /// the running actors and the due timers, not with every wallet: with
    /// 1,000,000 wallets a sweep over all of them took 50-100 ms of every
    /// 250 (BENCHMARKS.md).
    pub fn sweep(&self) {
        let mut lists = self.sweep_lists.lock();
        let SweepLists { live, due, running } = &mut *lists;
        let now = self.clock.now().millis();
        self.coarse_now.store(now, Ordering::Relaxed);
        let idle_ms = i64::try_from(self.config.idle_after.as_millis()).unwrap_or(i64::MAX);
        // Actors that keep running after this sweep (`running`): busy ones,
        // and idle ones past this sweep's share of passivations. Both hold
        // memory, so both count against `max_active`.
        let mut passivations_left = self.config.passivate_per_sweep;
        // Empty unless a sweep failed part way.
        live.clear();
        due.clear();
        running.clear();
        live.extend(self.actors.lock().iter().map(|(a, w)| (*a, *w)));
        for &(id, wallet) in live.iter() {
            let slots = self.registry.shard(wallet).read();
            let Some(slot) = slots.get(&wallet) else {
                continue;
            };
            let Some(actor) = slot.actor.as_ref().filter(|a| a.get_id() == id) else {
                continue; // passivated or replaced since the list was copied
            };
            let s = &slot.shared;
            let receipts = s.sweep_receipts();
            let used = s.last_used.load(Ordering::Relaxed);
            if s.next_due.load(Ordering::Acquire) <= now || receipts == ReceiptsWaiting::Overdue {
                due.push(wallet);
            } else if used.saturating_add(idle_ms) <= now
                && s.inflight.load(Ordering::Acquire) == 0
                && receipts == ReceiptsWaiting::None
                && passivations_left > 0
            {
                // Idle: passivated now, or by a later sweep once this one
                // has passivated its share.
                passivations_left -= 1;
                // Uncounted: the actor checks the count is zero.
                let _ = actor.cast(WalletMsg::Passivate);
            } else {
                running.push((used, wallet));
            }
        }
        if running.len() > self.config.max_active {
            self.evict_least_recent(running);
        } else {
            self.evict_before.store(i64::MIN, Ordering::Relaxed);
        }
        let tick = |wallet: WalletId| {
            let ticked = self.route(wallet, WalletMsg::Tick, Admit::Internal);
            if let Err(e) = &ticked {
                tracing::warn!(%wallet, %e, "cannot tick wallet");
            }
            ticked.is_ok()
        };
        // Running wallets not ticked now are looked at again next sweep.
        for &wallet in due.iter() {
            tick(wallet);
        }
        let keep = self.config.max_active.saturating_mul(2);
        live.clear();
        live.shrink_to(keep);
        running.clear();
        running.shrink_to(keep);
        due.clear();
        due.shrink_to(keep);
        for wallet in self.due_sleepers(now) {
            if !tick(wallet) {
                // Still asleep: filed again, to be tried at the next sweep.
                let slots = self.registry.shard(wallet).read();
                if let Some(slot) = slots.get(&wallet)
                    && slot.actor.is_none()
                {
                    self.rest(&slot.shared);
                }
            }
        }
    }

    /// Takes the passivated wallets whose timers are due off `sleepers`.
    /// (A wallet's entry leaves with it: filed again if it rests again.)
    fn due_sleepers(&self, now: i64) -> Vec<WalletId> {
        let mut woken = Vec::new();
        loop {
            let next = {
                let mut sleepers = self.sleepers.lock();
                match sleepers.peek() {
                    Some(Reverse((at, _))) if *at <= now => sleepers.pop(),
                    _ => None,
                }
            };
            let Some(Reverse((at, wallet))) = next else {
                return woken;
            };
            let slots = self.registry.shard(wallet).read();
            let Some(slot) = slots.get(&wallet) else {
                continue;
            };
            let s = &slot.shared;
            // The wallet's own entry (not one its timer has moved from):
            // it is no longer filed. Running wallets are the running
            // scan's; a passivated one is filed again when it rests again.
            let own = s
                .filed_due
                .compare_exchange(at, i64::MIN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if own && slot.actor.is_none() && s.next_due.load(Ordering::Acquire) <= now {
                woken.push(wallet);
            }
        }
    }

    /// Past `max_active` running actors, asks the least recently used to
    /// passivate, down to `max_active`. Idle actors are the least recently
    /// used of all, so they go first, past the sweep's share: the share
    /// spreads out the passivation of wallets that went idle together, but
    /// never at the price of the memory bound (a set-up or an import opening
    /// wallets faster than the share passivates them once kept them all
    /// running: 1,000,000 wallets peaked at 5.7 GB). An idle actor the sweep
    /// already asked may be asked again; the second request finds it gone.
    fn evict_least_recent(&self, active: &mut [(i64, WalletId)]) {
        let cap = self.config.max_active;
        let excess = active.len() - cap;
        active.select_nth_unstable_by_key(excess - 1, |(used, _)| *used);
        let cutoff = active[excess - 1].0.saturating_add(1);
        self.evict_before.store(cutoff, Ordering::Relaxed);
        for (_, wallet) in &active[..excess] {
            let slots = self.registry.shard(*wallet).read();
            if let Some(actor) = slots.get(wallet).and_then(|slot| slot.actor.as_ref()) {
                let _ = actor.cast(WalletMsg::Passivate);
            }
        }
    }

    /// Stops every wallet actor (shutdown).
    pub fn stop_all(&self) {
        for shard in self.registry.shards() {
            for slot in shard.write().values_mut() {
                if let Some(actor) = slot.actor.take() {
                    self.actors.lock().remove(&actor.get_id());
                    actor.stop(Some("shutdown".to_owned()));
                    self.running.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

impl WalletHost for Runtime {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn config(&self) -> &EngineConfig {
        &self.config.engine
    }

    fn post(&self, message: Message) {
        let to = message.recipient();
        if let Message::Receipt { txn, .. } = message {
            let slots = self.registry.shard(to).read();
            if let Some(slot) = slots.get(&to) {
                slot.shared.leave_receipt(txn);
            }
            return;
        }
        if let Err(e) = self.route(to, WalletMsg::Receive(Box::new(message)), Admit::Internal) {
            // The sender sends it again until it is acknowledged.
            tracing::warn!(wallet = %to, %e, "message not delivered yet");
        }
    }

    fn commit(&self, wallet: WalletId, events: Vec<Event>, then: Then) {
        if let Some(observer) = &self.observer {
            observer.committed(wallet, &events);
        }
        if Incoming::touched_by(&events) {
            // The index's lock, then the wallet's state: a history read
            // copies its entries out and lets go before it reads a state.
            let shared = self.registry.shared(wallet);
            self.incoming.lock().observe(wallet, &events, |txn| {
                shared
                    .as_ref()?
                    .read(|s| s.txn(txn).cloned())
                    .ok()
                    .flatten()
            });
        }
        // In the wallet's turn, so the hook sees commits in the wallet's
        // order and the state as of this commit. (A wallet's opening makes
        // no notice, so `wants` keeps the registry lookup off `open_wallet`,
        // which commits under the shard's write lock.)
        let durable = self.hook.as_ref().and_then(|hook| {
            if !hook.wants(&events) {
                return None;
            }
            let shared = self.registry.shared(wallet)?;
            shared
                .read(|state| hook.committing(state, &events))
                .ok()
                .flatten()
        });
        let Some(journal) = &self.journal else {
            if let Some(durable) = durable {
                durable();
            }
            return then(Ok(()));
        };
        let done = move |r: Result<_, JournalError>| {
            if let (Ok(_), Some(durable)) = (&r, durable) {
                durable();
            }
            then(r.map(|_| ()).map_err(|e| CommitError(e.to_string())))
        };
        if events.is_empty() {
            // Nothing to write, but the answer may rest on what is.
            journal.sync_point(done);
        } else {
            journal.append(&Record::Events { wallet, events }, done);
        }
    }

    fn finished(&self, shared: &WalletShared, commands: u32) {
        self.uncount(
            shared,
            if commands == 0 {
                Admit::Internal
            } else {
                Admit::Client(commands)
            },
        );
    }

    fn passivate(&self, shared: &Arc<WalletShared>) -> bool {
        let mut slots = self.registry.shard(shared.id).write();
        let idle_ms = i64::try_from(self.config.idle_after.as_millis()).unwrap_or(i64::MAX);
        let now = self.coarse_now.load(Ordering::Relaxed);
        let used = shared.last_used.load(Ordering::Relaxed);
        // Past `max_active`, the sweep evicts the least recently used early,
        // and every actor with nothing waiting stops as soon as it can.
        let evicted = used < self.evict_before.load(Ordering::Relaxed) || self.crowded();
        let idle = used.saturating_add(idle_ms) <= now;
        let busy = shared.inflight.load(Ordering::Acquire) != 0 || !(idle || evicted);
        if busy {
            return false;
        }
        if let Err(e) = shared.pack() {
            tracing::error!(wallet = %shared.id, %e, "cannot pack wallet; it stays active");
            return false;
        }
        if let Some(slot) = slots.get_mut(&shared.id)
            && let Some(actor) = slot.actor.take()
        {
            self.actors.lock().remove(&actor.get_id());
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
        self.rest(shared);
        true
    }

    /// Past `max_active` plus an eighth (at least one): the sweep, every
    /// `sweep_every`, brings running actors back to `max_active`, the least
    /// recently used first; the margin lets it, so that a hot set just over
    /// the bound is not passivated message by message, and beyond it the
    /// bound holds between sweeps too.
    fn failed(&self, shared: &Arc<WalletShared>, actor: ActorId, error: &str) {
        self.restart(shared.id, actor, error);
    }

    fn crowded(&self) -> bool {
        let cap = self.config.max_active;
        self.running.load(Ordering::Relaxed) > cap.saturating_add((cap / 8).max(1))
    }
}
